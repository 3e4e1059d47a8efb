//! A body read for singular JSONPaths only (`$.status`, `$.items[0].id`): parsed into a tree
//! that keeps what the paths name and skips the rest without building it, so that a check on one
//! field of a large answer costs a scan, not a `Value` of every key and string.
//!
//! The paths are still queried by serde_json_path, on the pruned tree: an object keeps only the
//! members the paths name, an array keeps its length (elements no path names are `null`), so a
//! path selects there exactly the node it selects in the whole document. Only the plain forms
//! are read here (`.name`, `['name']`, `["name"]` without escapes, `[0]`); any other path, a
//! negative index among them, leaves the body to the full parse.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// One step of a singular path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Name(String),
    Index(usize),
}

/// The steps of a singular path in its plain forms; `None` for anything else.
pub fn steps(source: &str) -> Option<Vec<Step>> {
    let mut rest = source.strip_prefix('$')?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || !c.is_ascii()))
                .unwrap_or(after.len());
            let name = &after[..end];
            let first = name.chars().next()?;
            if first.is_ascii_digit() {
                return None;
            }
            steps.push(Step::Name(name.to_owned()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let close = after.find(']')?;
            let inner = &after[..close];
            steps.push(bracket(inner)?);
            rest = &after[close + 1..];
        } else {
            return None;
        }
    }
    Some(steps)
}

/// `'name'`, `"name"` (no escapes, no quote inside) or a non-negative index without leading
/// zeros.
fn bracket(inner: &str) -> Option<Step> {
    for quote in ['\'', '"'] {
        if let Some(name) = inner
            .strip_prefix(quote)
            .and_then(|s| s.strip_suffix(quote))
        {
            let plain = !name.contains(['\\', '\'', '"']) && !name.chars().any(char::is_control);
            return plain.then(|| Step::Name(name.to_owned()));
        }
    }
    let digits = inner.bytes().all(|b| b.is_ascii_digit()) && !inner.is_empty();
    let canonical = inner == "0" || !inner.starts_with('0');
    if digits && canonical && inner.len() <= 15 {
        return inner.parse().ok().map(Step::Index);
    }
    None
}

/// What to keep of a node: the members and elements some path goes on through, or the whole of
/// it (a path ends here).
#[derive(Debug, Default)]
pub struct Keep {
    whole: bool,
    names: BTreeMap<String, Keep>,
    indices: BTreeMap<usize, Keep>,
}

impl Keep {
    /// What `paths` read, together.
    pub fn of<'p>(paths: impl IntoIterator<Item = &'p [Step]>) -> Keep {
        let mut root = Keep::default();
        for path in paths {
            let mut node = &mut root;
            for step in path {
                node = match step {
                    Step::Name(n) => node.names.entry(n.clone()).or_default(),
                    Step::Index(i) => node.indices.entry(*i).or_default(),
                };
            }
            node.whole = true;
        }
        root
    }

    /// The body as a tree holding what the paths read; the error is serde_json's, as for the
    /// full parse (a body that is not JSON, or nested deeper than its limit).
    pub fn read(&self, body: &[u8]) -> Result<Value, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let value = self.deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }
}

impl<'de> DeserializeSeed<'de> for &Keep {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.whole {
            return serde::Deserialize::deserialize(d);
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &Keep {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(found) = map.next_key_seed(Member(self))? {
            match found {
                // A name given twice: the last one counts, as in the full parse.
                Some((name, keep)) => {
                    let value = map.next_value_seed(keep)?;
                    kept.insert(name, value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(kept))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut kept = Vec::new();
        loop {
            let next = match self.indices.get(&kept.len()) {
                Some(keep) => seq.next_element_seed(keep)?,
                None => seq.next_element::<IgnoredAny>()?.map(|_| Value::Null),
            };
            match next {
                Some(v) => kept.push(v),
                None => return Ok(Value::Array(kept)),
            }
        }
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// A member's name, matched against the names kept without allocating for the others.
struct Member<'k>(&'k Keep);

impl<'de, 'k> DeserializeSeed<'de> for Member<'k> {
    type Value = Option<(String, &'k Keep)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'k> Visitor<'_> for Member<'k> {
    type Value = Option<(String, &'k Keep)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self
            .0
            .names
            .get_key_value(v)
            .map(|(k, keep)| (k.clone(), keep)))
    }
}
