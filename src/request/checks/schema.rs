//! The OpenAPI schema of a check, written by hand: one closed object per predicate, so that a
//! client generated from it sends a subject and exactly one predicate (a derived schema would
//! allow none, or all eleven at once).

use utoipa::openapi::schema::{
    ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::{RefOr, schema::AdditionalProperties};

use super::{CheckRequest, SUBJECT_PATTERN};

/// Each predicate, what its value is, and what it says.
const PREDICATES: [(&str, Value, &str); 11] = [
    (
        "equals",
        Value::Any,
        "JSON equality (`200` is not `\"200\"`); strings may hold placeholders.",
    ),
    ("not_equals", Value::Any, "Not `equals`."),
    (
        "contains",
        Value::Any,
        "A substring of text, or an element of a list.",
    ),
    ("not_contains", Value::Any, "Not `contains`."),
    (
        "matches",
        Value::Pattern,
        "A regular expression (Rust `regex` syntax) found anywhere in the text; compiled once, \
         when the batch is accepted, its program at most 1 MiB.",
    ),
    (
        "exists",
        Value::Bool,
        "Whether the subject is there (a header sent, a path that selects a node).",
    ),
    ("lt", Value::Number, "Less than this number."),
    ("lte", Value::Number, "At most this number."),
    ("gt", Value::Number, "More than this number."),
    ("gte", Value::Number, "At least this number."),
    (
        "one_of",
        Value::List,
        "Equal to one of these (at least one).",
    ),
];

#[derive(Clone, Copy)]
enum Value {
    Any,
    Pattern,
    Bool,
    Number,
    List,
}

fn value(kind: Value, description: &str) -> Schema {
    let described = |b: ObjectBuilder| b.description(Some(description)).build().into();
    match kind {
        Value::Any => described(ObjectBuilder::new()),
        Value::Pattern => described(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::Custom("regex".into()))),
        ),
        Value::Bool => described(ObjectBuilder::new().schema_type(Type::Boolean)),
        Value::Number => described(ObjectBuilder::new().schema_type(Type::Number)),
        Value::List => ArrayBuilder::new()
            .items(ObjectBuilder::new())
            .min_items(Some(1))
            .description(Some(description))
            .build()
            .into(),
    }
}

/// One predicate's check: `on`, the predicate, and the optional `name` and `soft`.
fn variant(predicate: &str, kind: Value, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .title(Some(predicate))
        .property(
            "name",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(256))
                .description(Some(
                    "What results, the summary and thresholds call it. Default: the check \
                     written out (`json:$.status equals \"ok\"`).",
                )),
        )
        .property(
            "on",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(SUBJECT_PATTERN))
                .max_length(Some(1024))
                .description(Some(
                    "The subject: `status`, `body`, `bytes`, `duration_ms`, `ttfb_ms`, \
                     `header:NAME` (case-insensitive; repeated values joined with `, `) or \
                     `json:PATH`, an RFC 9535 JSONPath over the body (a path that can select \
                     several nodes reads as their list).",
                ))
                .examples(["json:$.status"]),
        )
        .required("on")
        .property(predicate, value(kind, description))
        .required(predicate)
        .property(
            "soft",
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .description(Some(
                    "Only count a failure (k6's `check()`): the task's status does not change.",
                )),
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
}

impl utoipa::PartialSchema for CheckRequest {
    fn schema() -> RefOr<Schema> {
        let mut one_of = OneOfBuilder::new();
        for (predicate, kind, description) in PREDICATES {
            one_of = one_of.item(variant(predicate, kind, description));
        }
        one_of
            .description(Some(
                "What an answer must be, judged after `expect_status` passed: a subject (`on`) \
                 and exactly one predicate. Strings in the values of `equals`, `not_equals`, \
                 `contains`, `not_contains` and `one_of` may hold placeholders (`{{seq}}`, \
                 `{{data.COL}}`); a `matches` pattern may not.",
            ))
            .examples([
                serde_json::json!({ "name": "healthy", "on": "json:$.status", "equals": "ok" }),
            ])
            .into()
    }
}

impl utoipa::ToSchema for CheckRequest {}
