//! Placeholders in an HTTP job's URL, header values and body (`{{seq}}`, `{{uuid}}`,
//! `{{random_int A B}}`, `{{now_ms}}`, `{{data.COLUMN}}`), parsed once into segments when the
//! batch is validated and rendered per task by appending each segment's bytes: no text is
//! parsed again while the run goes.

use std::fmt::Write as _;
use std::sync::Arc;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What a placeholder substitutes into the URL is percent-encoded but for RFC 3986's
/// unreserved characters, so that a value cannot change the URL's structure.
const URL_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Text with placeholders, as segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(Box<str>),
    /// The task's number in the batch.
    Seq,
    /// A random UUID (v4).
    Uuid,
    /// A random integer from `lo` to `hi`, both included.
    RandomInt(i64, i64),
    /// Milliseconds since the Unix epoch when the task's request is made.
    NowMs,
    /// A column of the task's row of `load.data`; `column` is its place once bound.
    Data {
        name: Box<str>,
        column: usize,
    },
    /// What an earlier step of a flow captured: its place among the flow's captures.
    Capture(usize),
}

/// The names a placeholder may use, for messages.
const KNOWN: &str = "seq, uuid, random_int A B, now_ms, data.COLUMN";

impl Template {
    /// Parses `text`; `None` when it has no placeholder. The error says what is wrong, in
    /// words, for the field it came from.
    pub fn parse(text: &str) -> Result<Option<Template>, String> {
        Template::parse_with(text, &[])
    }

    /// The same, where `captures` (a flow's, captured by the steps before this one) may be
    /// named too: `{{token}}` becomes the capture's place among them.
    pub fn parse_with(text: &str, captures: &[&str]) -> Result<Option<Template>, String> {
        if !text.contains("{{") {
            return Ok(None);
        }
        let mut segments = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                segments.push(Segment::Text(rest[..open].into()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| {
                format!("a placeholder opened with {{{{ is not closed with }}}}: use {KNOWN}")
            })?;
            segments.push(placeholder(after[..close].trim(), captures)?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Text(rest.into()));
        }
        Ok(Some(Template { segments }))
    }

    /// The `data.` columns it names.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Data { name, .. } => Some(&**name),
            _ => None,
        })
    }

    /// Binds each `data.` column to its place among `columns`; the error names the first
    /// that is not there.
    pub fn bind(&mut self, columns: &[String]) -> Result<(), String> {
        for s in &mut self.segments {
            if let Segment::Data { name, column } = s {
                *column = columns.iter().position(|c| **c == **name).ok_or_else(|| {
                    if columns.is_empty() {
                        format!("{{{{data.{name}}}}} needs load.data: a CSV file with a header row")
                    } else {
                        format!(
                            "load.data has no column {name:?}; its columns are {}",
                            columns.join(", ")
                        )
                    }
                })?;
            }
        }
        Ok(())
    }

    /// Appends the text for the task `vars` describes; `url`: percent-encode what the
    /// placeholders put in.
    pub fn render(&self, vars: &Vars<'_>, url: bool, out: &mut Vec<u8>) {
        let mut number = String::new();
        for s in &self.segments {
            number.clear();
            let value: &str = match s {
                Segment::Text(t) => {
                    out.extend_from_slice(t.as_bytes());
                    continue;
                }
                Segment::Seq => {
                    let _ = write!(number, "{}", vars.seq);
                    &number
                }
                Segment::Uuid => {
                    let _ = write!(number, "{}", uuid::Uuid::new_v4());
                    &number
                }
                Segment::RandomInt(lo, hi) => {
                    let _ = write!(number, "{}", rand::random_range(*lo..=*hi));
                    &number
                }
                Segment::NowMs => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default();
                    let _ = write!(number, "{}", now.as_millis());
                    &number
                }
                Segment::Data { column, .. } => vars
                    .row
                    .and_then(|r| r.get(*column))
                    .map_or("", String::as_str),
                Segment::Capture(i) => vars.captures.get(*i).map_or("", String::as_str),
            };
            if url {
                for piece in utf8_percent_encode(value, URL_VALUE) {
                    out.extend_from_slice(piece.as_bytes());
                }
            } else {
                out.extend_from_slice(value.as_bytes());
            }
        }
    }

    /// Rendered to text (for the paths that build a request from text).
    pub fn render_string(&self, vars: &Vars<'_>, url: bool) -> String {
        let mut out = Vec::new();
        self.render(vars, url, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

fn placeholder(inner: &str, captures: &[&str]) -> Result<Segment, String> {
    let mut words = inner.split_whitespace();
    let name = words.next().unwrap_or_default();
    let args: Vec<&str> = words.collect();
    let no_args = |s: Segment| {
        if args.is_empty() {
            Ok(s)
        } else {
            Err(format!("{{{{{name}}}}} takes no arguments"))
        }
    };
    match name {
        "seq" => no_args(Segment::Seq),
        "uuid" => no_args(Segment::Uuid),
        "now_ms" => no_args(Segment::NowMs),
        "random_int" => {
            let bounds: Vec<i64> = args.iter().filter_map(|a| a.parse().ok()).collect();
            match bounds.as_slice() {
                [lo, hi] if args.len() == 2 && lo <= hi => Ok(Segment::RandomInt(*lo, *hi)),
                _ => Err(
                    "{{random_int A B}} takes two whole numbers, the lower first, e.g. {{random_int 1 100}}"
                        .to_owned(),
                ),
            }
        }
        _ => match name.strip_prefix("data.") {
            Some(column) if !column.is_empty() && args.is_empty() => Ok(Segment::Data {
                name: column.into(),
                column: usize::MAX,
            }),
            _ => match captures.iter().position(|c| *c == inner) {
                Some(i) => Ok(Segment::Capture(i)),
                None if captures.is_empty() => {
                    Err(format!("unknown placeholder {{{{{inner}}}}}: use {KNOWN}"))
                }
                None => Err(format!(
                    "unknown placeholder {{{{{inner}}}}}: use {KNOWN}, or what an earlier step \
                     captured ({})",
                    captures.join(", ")
                )),
            },
        },
    }
}

/// What one task renders with: its number, its row of `load.data`, and in a flow what its
/// earlier steps captured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vars<'a> {
    pub seq: u64,
    pub row: Option<&'a [String]>,
    pub captures: &'a [String],
}

/// `load.data`: the rows of a CSV file with a header row, read once when the batch is
/// accepted.
#[derive(Debug, PartialEq, Eq)]
pub struct DataTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub random: bool,
}

impl DataTable {
    /// Reads CSV text (a header row, then at least one row).
    pub fn from_csv(reader: impl std::io::Read, random: bool) -> Result<DataTable, String> {
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(reader);
        let columns: Vec<String> = csv
            .headers()
            .map_err(|e| format!("not CSV: {e}"))?
            .iter()
            .map(|h| h.trim().to_owned())
            .collect();
        if columns.iter().all(String::is_empty) {
            return Err("the file has no header row".to_owned());
        }
        let mut rows = Vec::new();
        for (i, record) in csv.records().enumerate() {
            let record = record.map_err(|e| format!("row {}: {e}", i + 1))?;
            rows.push(record.iter().map(str::to_owned).collect());
        }
        if rows.is_empty() {
            return Err("the file has a header row and no rows".to_owned());
        }
        Ok(DataTable {
            columns,
            rows,
            random,
        })
    }

    /// The row task `seq` uses: in order, cycling, or one at random.
    pub fn row(&self, seq: u64) -> &[String] {
        let i = if self.random {
            rand::random_range(0..self.rows.len())
        } else {
            (seq % self.rows.len() as u64) as usize
        };
        &self.rows[i]
    }

    /// The first row whose `column` holds a byte a header value cannot carry (CR, LF, NUL).
    pub fn unfit_for_header(&self, column: usize) -> Option<usize> {
        self.rows.iter().position(|r| {
            r.get(column)
                .is_some_and(|v| v.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)))
        })
    }
}

/// An HTTP job's placeholders: in the URL's path and query, in header values, in the body.
/// Which parts are literal stays in the job itself.
#[derive(Debug)]
pub struct HttpTemplates {
    /// The request target (path and query) as written after the URL's host.
    pub target: Option<Template>,
    /// By header, as the job gives them.
    pub headers: Vec<(http::HeaderName, Template)>,
    pub body: Option<Template>,
    /// The placeholders in its checks' values: bound to `load.data`'s columns when the batch
    /// is accepted, to find a column that is not there (the checks render their own values).
    pub checks: Vec<Template>,
    /// `load.data`, when a placeholder names a column.
    pub data: Option<Arc<DataTable>>,
}

impl HttpTemplates {
    /// Whether the request itself has placeholders (not only the checks' values).
    pub fn renders_request(&self) -> bool {
        self.target.is_some() || !self.headers.is_empty() || self.body.is_some()
    }

    /// The variables of task `seq`.
    pub fn vars(&self, seq: u64) -> Vars<'_> {
        Vars {
            seq,
            row: self.data.as_ref().map(|d| d.row(seq)),
            captures: &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str, vars: &Vars<'_>, url: bool) -> String {
        Template::parse(t)
            .unwrap()
            .unwrap()
            .render_string(vars, url)
    }

    #[test]
    fn a_flows_captures_are_placeholders_of_the_steps_after_them() {
        let t = Template::parse_with(
            "/cart/{{order}}?t={{ token }}&n={{seq}}",
            &["token", "order"],
        )
        .unwrap()
        .unwrap();
        let captured = ["a b/c".to_owned(), "981".to_owned()];
        let vars = Vars {
            seq: 7,
            row: None,
            captures: &captured,
        };
        assert_eq!(t.render_string(&vars, true), "/cart/981?t=a%20b%2Fc&n=7");
        assert_eq!(t.render_string(&vars, false), "/cart/981?t=a b/c&n=7");
        let err = Template::parse_with("{{tokn}}", &["token"]).unwrap_err();
        assert!(
            err.contains("what an earlier step captured (token)"),
            "{err}"
        );
        assert!(
            Template::parse("{{token}}").is_err(),
            "no capture outside a flow"
        );
    }

    #[test]
    fn placeholders_render_per_task() {
        let vars = Vars {
            seq: 41,
            ..Vars::default()
        };
        assert_eq!(render("/items/{{seq}}?x=1", &vars, true), "/items/41?x=1");
        assert_eq!(render("{{ seq }}-{{seq}}", &vars, false), "41-41");
        let n: i64 = render("{{random_int 3 5}}", &vars, false).parse().unwrap();
        assert!((3..=5).contains(&n));
        let id = render("{{uuid}}", &vars, false);
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
        assert_ne!(id, render("{{uuid}}", &vars, false));
        let now: u128 = render("{{now_ms}}", &vars, false).parse().unwrap();
        assert!(now > 1_700_000_000_000);
        assert_eq!(Template::parse("no placeholder").unwrap(), None);
    }

    #[test]
    fn data_columns_bind_and_values_are_encoded_in_urls() {
        let table = DataTable::from_csv("user,token\nann smith,a/b\nbob,c\n".as_bytes(), false)
            .expect("CSV");
        let mut t = Template::parse("/u/{{data.user}}?t={{data.token}}")
            .unwrap()
            .unwrap();
        t.bind(&table.columns).unwrap();
        let row = Vars {
            seq: 0,
            row: Some(table.row(0)),
            ..Vars::default()
        };
        assert_eq!(t.render_string(&row, true), "/u/ann%20smith?t=a%2Fb");
        assert_eq!(t.render_string(&row, false), "/u/ann smith?t=a/b");
        assert_eq!(table.row(3), ["bob", "c"], "rows cycle in order");
        let mut missing = Template::parse("{{data.email}}").unwrap().unwrap();
        let e = missing.bind(&table.columns).unwrap_err();
        assert!(e.contains("\"email\"") && e.contains("user, token"), "{e}");
    }

    #[test]
    fn bad_placeholders_say_what_is_wrong() {
        for (text, words) in [
            ("{{seqq}}", "unknown placeholder {{seqq}}"),
            ("{{seq", "not closed"),
            ("{{random_int 5 1}}", "two whole numbers"),
            ("{{uuid 4}}", "takes no arguments"),
            ("{{data.}}", "unknown placeholder"),
        ] {
            let e = Template::parse(text).unwrap_err();
            assert!(e.contains(words), "{text}: {e}");
        }
    }

    #[test]
    fn csv_needs_a_header_and_rows_and_flags_header_breaking_values() {
        assert!(DataTable::from_csv("a,b\n".as_bytes(), false).is_err());
        let t = DataTable::from_csv("a,b\n1,\"x\ny\"\n".as_bytes(), false).unwrap();
        assert_eq!(t.unfit_for_header(1), Some(0));
        assert_eq!(t.unfit_for_header(0), None);
    }
}
