//! Values written out for people: JSON text cut to a number of characters, without writing
//! out more of a large value (a 10 MB body) than is kept.

use std::io;

use serde::Serialize;

/// `s` as a JSON string: `"ok"`, with quotes and escapes.
pub fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// `value` as compact JSON text, cut at `max_chars` characters.
pub fn json_cut<T: Serialize + ?Sized>(value: &T, max_chars: usize) -> String {
    // A character is at most 4 bytes: this many bytes always hold `max_chars` of them.
    let mut out = Capped {
        buf: Vec::new(),
        room: max_chars * 4,
    };
    // The writer's refusal once full is how the serializer is stopped early: not an error.
    let _ = serde_json::to_writer(&mut out, value);
    let text = match std::str::from_utf8(&out.buf) {
        Ok(t) => t,
        // The cap cut a character in two: keep what is before it.
        Err(e) => std::str::from_utf8(&out.buf[..e.valid_up_to()]).unwrap_or_default(),
    };
    cut(text, max_chars).to_owned()
}

/// The first `max_chars` characters of `s`.
pub fn cut(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

/// A writer that keeps up to `room` bytes, then refuses more.
struct Capped {
    buf: Vec<u8>,
    room: usize,
}

impl io::Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let left = self.room - self.buf.len();
        if left == 0 {
            return Err(io::Error::other("full"));
        }
        let n = bytes.len().min(left);
        self.buf.extend_from_slice(&bytes[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_cut_keeps_whole_characters_and_stops_at_the_limit() {
        let long = "é".repeat(1000);
        let cut_text = json_cut(long.as_str(), 200);
        assert_eq!(cut_text.chars().count(), 200);
        assert!(cut_text.starts_with("\"é"));
    }

    #[test]
    fn json_cut_leaves_short_values_whole() {
        assert_eq!(
            json_cut(&serde_json::json!({"a": [1, 2]}), 200),
            r#"{"a":[1,2]}"#
        );
    }

    #[test]
    fn cut_counts_characters_not_bytes() {
        assert_eq!(cut("日本語です", 2), "日本");
        assert_eq!(cut("ab", 5), "ab");
    }
}
