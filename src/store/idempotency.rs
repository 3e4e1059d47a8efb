//! Idempotency keys: a repeat of a request with the same key and the same JSON answers the
//! first batch. The request is compared by a hash of its JSON, and a repeat that arrives while
//! the first is still being accepted waits for it.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

/// One lock per idempotency key being accepted, so that a repeat waits for the first.
#[derive(Default)]
pub struct KeyLocks {
    held: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyLocks {
    /// Runs `accept` while holding the key's lock.
    pub async fn with<T>(&self, key: &str, accept: impl Future<Output = T>) -> T {
        let lock = self.held.lock().entry(key.to_owned()).or_default().clone();
        let turn = lock.lock().await;
        let out = accept.await;
        drop(turn);
        self.held.lock().remove(key);
        out
    }
}

/// SHA-256 of the request's JSON with object keys sorted: the same JSON, however spelled,
/// hashes the same.
pub fn request_hash(body: &[u8]) -> String {
    fn canonical(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    canonical(&map[k], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut text = String::new();
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => canonical(&v, &mut text),
        Err(_) => text = String::from_utf8_lossy(body).into_owned(),
    }
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::request_hash;

    #[test]
    fn the_same_json_spelled_differently_hashes_the_same() {
        let a = request_hash(br#"{"jobs":[{"kind":"sleep","duration_ms":1}],"label":"x"}"#);
        let b = request_hash(
            b"{ \"label\": \"x\",\n \"jobs\": [ {\"duration_ms\": 1, \"kind\": \"sleep\"} ] }",
        );
        let c = request_hash(br#"{"jobs":[{"kind":"sleep","duration_ms":2}],"label":"x"}"#);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
