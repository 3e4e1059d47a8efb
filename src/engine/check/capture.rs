//! Captures: what a flow's `http` step keeps of its answer for the steps after it (`{{token}}`),
//! read with the subjects checks read, and cut by a pattern when one is given.

use regex::Regex;
use serde_json::Value;

use super::{Judge, Subject, text};

/// Built-in placeholder names a capture may not take: `{{seq}}` must keep meaning the task's
/// number, whatever a step captured.
pub const RESERVED: [&str; 5] = ["seq", "uuid", "now_ms", "random_int", "data"];

/// One capture: its name, the subject it reads, and the pattern that cuts the value.
#[derive(Debug, Clone)]
pub struct Capture {
    pub name: String,
    pub subject: Subject,
    /// The first group of its first match is kept, else the whole match.
    pub pattern: Option<Regex>,
}

impl Capture {
    /// The value the answer gives it, as text (a string as it is, any other JSON value as its
    /// JSON text); the error says which capture selected nothing, and why.
    pub fn take(&self, judge: &Judge<'_>) -> Result<String, String> {
        let value = self
            .subject
            .select(judge)
            .map_err(|why| format!("capture {:?} failed: {} {why}", self.name, self.subject))?;
        let text = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let Some(pattern) = &self.pattern else {
            return Ok(text);
        };
        let found = pattern
            .captures(&text)
            .and_then(|c| c.get(1).or_else(|| c.get(0)));
        match found {
            Some(m) => Ok(m.as_str().to_owned()),
            None => Err(format!(
                "capture {:?} failed: {} matches nothing in {}",
                self.name,
                text::quoted(pattern.as_str()),
                text::json_cut(&text, super::MAX_ACTUAL_CHARS)
            )),
        }
    }
}

/// Why `name` cannot name a capture: it is not a placeholder name, or a built-in one.
pub fn bad_name(name: &str) -> Option<String> {
    let plain = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !plain {
        return Some(format!(
            "{name:?} is not a capture name: letters, digits and _, not starting with a digit, \
             at most 64"
        ));
    }
    RESERVED
        .contains(&name)
        .then(|| format!("{name:?} is a built-in placeholder; name the capture otherwise"))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{NONE, answer, good};
    use super::*;

    fn capture(on: &str, pattern: Option<&str>) -> Capture {
        Capture {
            name: "token".into(),
            subject: Subject::parse(on).unwrap(),
            pattern: pattern.map(|p| Regex::new(p).unwrap()),
        }
    }

    #[test]
    fn a_capture_keeps_text_as_is_other_values_as_json_and_a_pattern_cuts_them() {
        let body = r#"{"access_token":"abc.def","n":42,"items":[1,2],"order":"order-981 ok"}"#;
        let judge = Judge::new(answer(body, &NONE));
        assert_eq!(
            capture("json:$.access_token", None).take(&judge).unwrap(),
            "abc.def"
        );
        assert_eq!(capture("json:$.n", None).take(&judge).unwrap(), "42");
        assert_eq!(capture("json:$.items", None).take(&judge).unwrap(), "[1,2]");
        assert_eq!(capture("status", None).take(&judge).unwrap(), "200");
        let order = capture("json:$.order", Some(r"order-(\d+)"));
        assert_eq!(order.take(&judge).unwrap(), "981");
        let whole = capture("json:$.order", Some(r"\d+ ok"));
        assert_eq!(whole.take(&judge).unwrap(), "981 ok");
    }

    #[test]
    fn a_capture_that_selects_nothing_says_which_and_why() {
        let judge = Judge::new(good());
        let err = capture("json:$.nope", None).take(&judge).unwrap_err();
        assert!(
            err.starts_with("capture \"token\" failed: json:$.nope"),
            "{err}"
        );
        let err = capture("json:$.status", Some("^x(y)"))
            .take(&judge)
            .unwrap_err();
        assert!(err.contains("matches nothing in \"ok\""), "{err}");
        let html = Judge::new(answer("<html>", &NONE));
        assert!(
            capture("json:$.a", None)
                .take(&html)
                .unwrap_err()
                .contains("not JSON")
        );
    }

    #[test]
    fn names_are_plain_and_never_a_built_in_placeholder() {
        assert_eq!(bad_name("token"), None);
        assert_eq!(bad_name("order_id2"), None);
        for bad in ["", "1st", "a-b", "a.b", "seq", "data", "uuid"] {
            assert!(bad_name(bad).is_some(), "{bad}");
        }
    }
}
