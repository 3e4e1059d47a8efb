//! Reads a request's JSON against its serde types and lists every field of the wrong shape
//! (unknown, missing, of the wrong type, out of its type's range), in the API's words.
//!
//! serde stops at the first error. Here the JSON is read again and again: each error is noted
//! and the value at its path replaced by one of the type serde wanted (or removed, for an
//! unknown field), until the value reads. The rules stay those of the request types: the known
//! fields, the types and the enum names all come from serde's errors, which [`Problem`] keeps
//! as parts instead of a sentence. What read is then validated as usual, so a request's ranges
//! and cross-field rules are checked too; [`merge`] puts the two lists together.

use std::collections::HashMap;
use std::fmt;

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Unexpected, Visitor};
use serde_json::{Map, Value};

use super::{FieldError, Rejected};

/// A field of the wrong shape.
#[derive(Debug, Clone)]
pub(super) struct Flaw {
    error: FieldError,
    /// A number out of its type's range: the validation's own message for the field, which
    /// states the range the API allows, says it better.
    yields: bool,
}

impl Flaw {
    fn new(field: String, message: impl Into<String>, yields: bool) -> Self {
        Flaw {
            error: FieldError::new(field, message),
            yields,
        }
    }

    pub(super) fn field(&self) -> &str {
        &self.error.field
    }

    pub(super) fn at(field: impl Into<String>, message: impl Into<String>) -> Self {
        Flaw::new(field.into(), message, false)
    }
}

/// The flaws and the validation's errors of one part of a request, one message per field: a
/// validation error about a flawed field, or about a field above or below one, judged a value
/// put there in place of the one sent, and is dropped; unless the flaw yields to it.
pub(super) fn merge(flaws: Vec<Flaw>, found: Vec<FieldError>) -> Vec<FieldError> {
    let mut out: Vec<FieldError> = Vec::with_capacity(flaws.len() + found.len());
    let mut yielding = Vec::new();
    for flaw in flaws {
        if flaw.yields {
            yielding.push(out.len());
        }
        out.push(flaw.error);
    }
    let flawed = out.len();
    for e in found {
        if let Some(&i) = yielding.iter().find(|&&i| out[i].field == e.field) {
            out[i].message = e.message;
        } else if !out[..flawed].iter().any(|f| related(&f.field, &e.field)) {
            out.push(e);
        }
    }
    out
}

/// Whether one field path is the other, or above or below it.
fn related(a: &str, b: &str) -> bool {
    below(a, b) || below(b, a)
}

/// Whether the field path `inner` is `outer` or beneath it.
fn below(inner: &str, outer: &str) -> bool {
    inner == outer
        || outer.is_empty()
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with(['.', '[']))
}

/// Parses a body into JSON; a key given twice in one object is a flaw (serde's own reading of
/// the typed request refuses it, and a JSON value would keep only the last).
pub(super) fn parse(body: &[u8]) -> Result<(Value, Vec<Flaw>), Rejected> {
    let mut flaws = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = de::DeserializeSeed::deserialize(
        Strict {
            at: String::new(),
            flaws: &mut flaws,
        },
        &mut de,
    )
    .and_then(|v| de.end().map(|()| v))
    .map_err(|e| Rejected::Malformed(e.to_string()))?;
    Ok((value, flaws))
}

/// The path of a field beneath `at`.
fn join(at: &str, step: &Step) -> String {
    match step {
        Step::Key(k) if at.is_empty() => k.clone(),
        Step::Key(k) => format!("{at}.{k}"),
        Step::Index(i) => format!("{at}[{i}]"),
    }
}

/// A JSON value at `at`, read as it is and noting keys given twice.
struct Strict<'a> {
    at: String,
    flaws: &'a mut Vec<Flaw>,
}

impl<'de> de::DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict {
            at: join(&self.at, &Step::Index(items.len())),
            flaws: &mut *self.flaws,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let at = join(&self.at, &Step::Key(key.clone()));
            let value = map.next_value_seed(Strict {
                at: at.clone(),
                flaws: &mut *self.flaws,
            })?;
            if object.insert(key, value).is_some() {
                self.flaws.push(Flaw::at(at, "given more than once"));
            }
        }
        Ok(Value::Object(object))
    }
}

/// Reads `value` as a `T`, noting every field of the wrong shape (their paths beneath `at`),
/// each replaced or removed so that the next one is found. `None` when it still does not read
/// after every repair tried.
pub(super) fn read<T: DeserializeOwned>(mut value: Value, at: &str) -> (Option<T>, Vec<Flaw>) {
    /// Each round notes at most one flaw: more than a request has fields, and a bound on the
    /// work a body can cause (each round reads the whole value).
    const MAX_ROUNDS: usize = 100;
    let mut flaws: Vec<Flaw> = Vec::new();
    let mut repairs: HashMap<Vec<Step>, u8> = HashMap::new();
    for _ in 0..MAX_ROUNDS {
        let error = match serde_path_to_error::deserialize::<_, T>(Node(&value)) {
            Ok(read) => return (Some(read), flaws),
            Err(e) => e,
        };
        let mut path = steps(error.path());
        let problem = error.into_inner();
        if let Problem::UnknownField { name, .. } = &problem
            && path.last() != Some(&Step::Key(name.clone()))
        {
            path.push(Step::Key(name.clone()));
        }
        if let Problem::Missing(name) = &problem {
            path.push(Step::Key((*name).to_owned()));
        }
        let field = path.iter().fold(at.to_owned(), |at, s| join(&at, s));
        // A field beneath one already noted is one a repair put there.
        if !flaws.iter().any(|f| below(&field, f.field())) {
            let (message, yields) = problem.message();
            flaws.push(Flaw::new(field, message, yields));
        }
        let tries = repairs.entry(path.clone()).or_default();
        *tries += 1;
        if *tries > 3 || !problem.repair(&mut value, &path) {
            return (None, flaws);
        }
    }
    (None, flaws)
}

/// One step of a path into a JSON value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Step {
    Key(String),
    Index(usize),
}

fn steps(path: &serde_path_to_error::Path) -> Vec<Step> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

/// The value at `path`, if there is one.
fn at_path<'v>(value: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |v, step| match (v, step) {
        (Value::Object(o), Step::Key(k)) => o.get_mut(k),
        (Value::Array(a), Step::Index(i)) => a.get_mut(*i),
        _ => None,
    })
}

/// Puts `new` at `path` (a missing key of an object is added); false when the path leads
/// nowhere.
fn put(value: &mut Value, path: &[Step], new: Value) -> bool {
    let Some((last, parent)) = path.split_last() else {
        *value = new;
        return true;
    };
    match (at_path(value, parent), last) {
        (Some(Value::Object(o)), Step::Key(k)) => {
            o.insert(k.clone(), new);
            true
        }
        (Some(Value::Array(a)), Step::Index(i)) if *i < a.len() => {
            a[*i] = new;
            true
        }
        _ => false,
    }
}

/// Removes the key at `path`; an array's item becomes `null` (the items after it keep their
/// places, and so their paths).
fn remove(value: &mut Value, path: &[Step]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    match (at_path(value, parent), last) {
        (Some(Value::Object(o)), Step::Key(k)) => o.remove(k).is_some(),
        (Some(Value::Array(a)), Step::Index(i)) if *i < a.len() && !a[*i].is_null() => {
            a[*i] = Value::Null;
            true
        }
        _ => false,
    }
}

/// What serde found wrong, in parts.
#[derive(Debug)]
enum Problem {
    /// A value of another type than `want`, or a number beyond its type's range.
    Wrong {
        found: Found,
        want: Want,
    },
    UnknownField {
        name: String,
        known: &'static [&'static str],
    },
    UnknownVariant {
        known: &'static [&'static str],
    },
    Missing(&'static str),
    /// Anything else serde may say (a request type's own check): no parts to word it by.
    Other,
}

/// What a wrong value was, as far as its message differs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Found {
    /// A number below 0 where a whole number 0 or more was wanted.
    Negative,
    /// A number above its type's range.
    TooLarge,
    Other,
}

/// The type serde wanted, from the name its visitor gives (`u64`, `a string`, `struct X`).
#[derive(Debug, Clone)]
enum Want {
    Whole { max: u64 },
    Number,
    String,
    Bool,
    Array,
    Object,
    OneOf(&'static [&'static str]),
    Other,
}

impl Want {
    fn of(expected: &dyn de::Expected) -> Want {
        match expected.to_string().as_str() {
            "u8" => Want::Whole {
                max: u8::MAX.into(),
            },
            "u16" => Want::Whole {
                max: u16::MAX.into(),
            },
            "u32" => Want::Whole {
                max: u32::MAX.into(),
            },
            "u64" | "usize" | "u128" => Want::Whole { max: u64::MAX },
            "f32" | "f64" => Want::Number,
            "a string" | "a borrowed string" | "a character" => Want::String,
            "a boolean" => Want::Bool,
            "a sequence" => Want::Array,
            "a map" => Want::Object,
            s if s.starts_with("struct ") => Want::Object,
            _ => Want::Other,
        }
    }

    /// A value of this type, put in the place of a wrong one. A whole number gets its type's
    /// largest, so that the validation, which bounds every such field, words the range.
    fn stand_in(&self) -> Option<Value> {
        Some(match self {
            Want::Whole { max } => Value::from(*max),
            Want::Number => Value::from(0),
            Want::String => Value::from(""),
            Want::Bool => Value::Bool(false),
            Want::Array => Value::Array(Vec::new()),
            Want::Object => Value::Object(Map::new()),
            Want::OneOf(names) => Value::from(*names.first()?),
            Want::Other => return None,
        })
    }

    fn message(&self, found: Found) -> String {
        let said = match (self, found) {
            (Want::Whole { .. }, Found::Negative) => "must be a whole number, 0 or more",
            (Want::Whole { .. }, Found::TooLarge) => {
                "must be a whole number; this one is too large"
            }
            (Want::Whole { .. }, Found::Other) => "must be a whole number",
            (Want::Number, _) => "must be a number",
            (Want::String, _) => "must be a string",
            (Want::Bool, _) => "must be true or false",
            (Want::Array, _) => "must be an array",
            (Want::Object, _) => "must be an object",
            (Want::OneOf(names), _) => return format!("must be one of: {}", names.join(", ")),
            (Want::Other, _) => "not a valid value",
        };
        said.to_owned()
    }
}

impl Problem {
    fn wrong(unexpected: Unexpected, want: Want) -> Problem {
        let found = match (unexpected, &want) {
            (Unexpected::Signed(n), Want::Whole { .. }) if n < 0 => Found::Negative,
            (Unexpected::Unsigned(_), Want::Whole { .. }) => Found::TooLarge,
            (Unexpected::Float(f), Want::Whole { .. }) if f < 0.0 && f.fract() == 0.0 => {
                Found::Negative
            }
            (Unexpected::Float(f), Want::Whole { max }) if f >= *max as f64 + 1.0 => {
                Found::TooLarge
            }
            _ => Found::Other,
        };
        Problem::Wrong { found, want }
    }

    /// The message, and whether the validation's own message for the field replaces it.
    fn message(&self) -> (String, bool) {
        match self {
            Problem::Wrong { found, want } => (want.message(*found), *found != Found::Other),
            Problem::UnknownVariant { known } => (Want::OneOf(known).message(Found::Other), false),
            Problem::UnknownField { name, known: [] } => (
                format!("unknown field {name:?}; this object has none"),
                false,
            ),
            Problem::UnknownField { name, known } => (
                format!(
                    "unknown field {name:?}; expected one of: {}",
                    known.join(", ")
                ),
                false,
            ),
            Problem::Missing(_) => ("required".to_owned(), false),
            Problem::Other => ("not a valid value".to_owned(), false),
        }
    }

    /// Changes `value` at `path` so that this problem is gone; false when it cannot.
    fn repair(&self, value: &mut Value, path: &[Step]) -> bool {
        match self {
            Problem::Wrong { want, .. } => match want.stand_in() {
                Some(new) => put(value, path, new),
                None => remove(value, path),
            },
            Problem::UnknownVariant { known } => known
                .first()
                .is_some_and(|name| put(value, path, Value::from(*name))),
            // Then read as a value of the wrong type, which says which type to put there.
            Problem::Missing(_) => put(value, path, Value::Null),
            Problem::UnknownField { .. } | Problem::Other => remove(value, path),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.message().0)
    }
}

impl std::error::Error for Problem {}

impl de::Error for Problem {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Problem::Other
    }

    fn invalid_type(unexpected: Unexpected, expected: &dyn de::Expected) -> Self {
        Problem::wrong(unexpected, Want::of(expected))
    }

    fn invalid_value(unexpected: Unexpected, expected: &dyn de::Expected) -> Self {
        Problem::wrong(unexpected, Want::of(expected))
    }

    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        Problem::UnknownVariant { known: expected }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Problem::UnknownField {
            name: field.to_owned(),
            known: expected,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Problem::Missing(field)
    }
}

/// A JSON value as serde reads it, with [`Problem`] as the error so that every error keeps
/// its parts. Structs read only from objects (not arrays of their fields in order), enums
/// only from their names.
struct Node<'v>(&'v Value);

impl<'de, 'v> IntoDeserializer<'de, Problem> for Node<'v> {
    type Deserializer = Node<'v>;

    fn into_deserializer(self) -> Node<'v> {
        self
    }
}

impl<'v> Node<'v> {
    fn unexpected(&self) -> Unexpected<'v> {
        match self.0 {
            Value::Null => Unexpected::Unit,
            Value::Bool(b) => Unexpected::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Unexpected::Unsigned(u),
                (None, Some(i)) => Unexpected::Signed(i),
                _ => Unexpected::Float(n.as_f64().unwrap_or_default()),
            },
            Value::String(s) => Unexpected::Str(s),
            Value::Array(_) => Unexpected::Seq,
            Value::Object(_) => Unexpected::Map,
        }
    }
}

impl<'de> Deserializer<'de> for Node<'_> {
    type Error = Problem;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => visitor.visit_u64(u),
                (None, Some(i)) => visitor.visit_i64(i),
                _ => visitor.visit_f64(n.as_f64().unwrap_or_default()),
            },
            Value::String(s) => visitor.visit_str(s),
            Value::Array(items) => visitor.visit_seq(SeqDeserializer::new(items.iter().map(Node))),
            Value::Object(fields) => visitor.visit_map(MapDeserializer::new(
                fields.iter().map(|(k, v)| (k.as_str(), Node(v))),
            )),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Problem> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Problem> {
        match self.0 {
            Value::Object(_) => self.deserialize_any(visitor),
            _ => Err(Problem::wrong(self.unexpected(), Want::Object)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Problem> {
        match self.0 {
            Value::String(name) => visitor.visit_enum(name.as_str().into_deserializer()),
            _ => Err(Problem::wrong(self.unexpected(), Want::OneOf(variants))),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Problem> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}
