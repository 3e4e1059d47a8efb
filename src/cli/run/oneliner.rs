//! `fanout run --url URL -n N -c C ...` (or `fanout run URL ...`, as oha and hey users type
//! it): the batch a one-liner describes, built as the JSON `POST /batches` takes, and its
//! `--threshold` expressions (`p95<200ms`, `error_rate<1%`, `throughput>500/s`).

use serde_json::{Map, Value, json};

/// Requests when neither `-n` nor `--duration` is given: as oha and hey.
pub const DEFAULT_REQUESTS: u64 = 200;
/// Concurrency when `-c` is not given: as oha and hey.
pub const DEFAULT_CONCURRENCY: u64 = 50;

/// What a one-liner says.
#[derive(Debug, Default, Clone)]
pub struct OneLiner {
    pub url: String,
    pub requests: Option<u64>,
    pub concurrency: Option<u64>,
    pub rate: Option<f64>,
    pub duration_ms: Option<u64>,
    pub method: Option<String>,
    pub headers: Vec<String>,
    pub body: Option<String>,
    pub thresholds: Vec<String>,
    /// `--check` expressions (`status == 200`).
    pub checks: Vec<String>,
}

impl OneLiner {
    /// The batch, as `POST /batches` takes it; a sentence naming the bad part otherwise.
    pub fn batch(&self) -> Result<Value, String> {
        let mut job = Map::new();
        job.insert("kind".into(), json!("http"));
        job.insert("url".into(), json!(self.url));
        if let Some(m) = &self.method {
            job.insert("method".into(), json!(m.to_ascii_uppercase()));
        }
        if !self.headers.is_empty() {
            let mut headers = Map::new();
            for h in &self.headers {
                let (name, value) = h
                    .split_once(':')
                    .ok_or_else(|| format!("-H {h:?}: write a header as 'Name: value'"))?;
                let name = name.trim();
                if name.is_empty() {
                    return Err(format!("-H {h:?}: the header has no name"));
                }
                headers.insert(name.to_owned(), json!(value.trim()));
            }
            job.insert("headers".into(), Value::Object(headers));
        }
        if let Some(body) = &self.body {
            job.insert("body".into(), json!(body));
        }
        if !self.checks.is_empty() {
            let checks = self
                .checks
                .iter()
                .map(|c| super::check_expr::parse_check_expr(c))
                .collect::<Result<Vec<Value>, String>>()?;
            job.insert("checks".into(), Value::Array(checks));
        }
        let mut load = Map::new();
        let requests = match (self.requests, self.duration_ms) {
            (None, None) => Some(DEFAULT_REQUESTS),
            (n, _) => n,
        };
        if let Some(n) = requests {
            load.insert("repeat".into(), json!(n));
        }
        if let Some(d) = self.duration_ms {
            load.insert("duration_ms".into(), json!(d));
        }
        if let Some(r) = self.rate {
            load.insert("rate_per_s".into(), json!(r));
        }
        let mut batch = Map::new();
        batch.insert("jobs".into(), json!([Value::Object(job)]));
        batch.insert("load".into(), Value::Object(load));
        batch.insert(
            "concurrency".into(),
            json!(self.concurrency.unwrap_or(DEFAULT_CONCURRENCY)),
        );
        // A load run's answer holds its failures, not a record of every request.
        batch.insert("results".into(), json!("errors"));
        if !self.thresholds.is_empty() {
            let mut thresholds = Map::new();
            for t in &self.thresholds {
                let (key, value) = threshold(t)?;
                thresholds.insert(key.into(), json!(value));
            }
            batch.insert("thresholds".into(), Value::Object(thresholds));
        }
        Ok(Value::Object(batch))
    }
}

/// One `--threshold` expression as a `thresholds` key and limit: `p95<200ms`, `p99<=1s`,
/// `mean<50ms`, `max<2s`, `error_rate<1%` (or `<0.01`), `throughput>500/s`, `lost<5s` (the
/// longest a lost instance's shards may go without a runner), `checks>99%` (the share of
/// check judgements that passed).
pub fn threshold(expr: &str) -> Result<(&'static str, f64), String> {
    let bad = |why: &str| {
        format!(
            "--threshold {expr:?}: {why} (write e.g. 'p95<200ms', 'p99<1s', 'error_rate<1%', \
             'throughput>500/s')"
        )
    };
    let compact: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
    let (name, op, value) = ["<=", ">=", "<", ">"]
        .iter()
        .find_map(|op| {
            compact
                .split_once(op)
                .map(|(n, v)| (n.to_ascii_lowercase(), *op, v.to_ascii_lowercase()))
        })
        .ok_or_else(|| bad("no < or > in it"))?;
    let upper = op.starts_with('<');
    let latency = match name.as_str() {
        "p50" | "med" | "median" => Some("p50_ms"),
        "p90" => Some("p90_ms"),
        "p95" => Some("p95_ms"),
        "p99" => Some("p99_ms"),
        "p999" | "p99.9" => Some("p999_ms"),
        "max" => Some("max_ms"),
        "mean" | "avg" => Some("mean_ms"),
        // Not a latency, but a stretch of time bounded the same way: how long a run that lost
        // an instance may go without applying part of its load.
        "lost" | "lost_window" => Some("max_lost_window_ms"),
        _ => None,
    };
    let number = |text: &str| -> Result<f64, String> {
        text.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| bad(&format!("{text:?} is not a number")))
    };
    if let Some(key) = latency {
        if !upper {
            return Err(bad("a latency is bounded from above: use <"));
        }
        let ms = if let Some(v) = value.strip_suffix("ms") {
            number(v)?
        } else if let Some(v) = value.strip_suffix("us") {
            number(v)? / 1000.0
        } else if let Some(v) = value.strip_suffix('s') {
            number(v)? * 1000.0
        } else {
            return Err(bad("give the latency's unit: ms or s"));
        };
        return Ok((key, ms));
    }
    // A share of the tasks or judgements: `1%` or `0.01`, at most all of them.
    let share = |text: &str, what: &str| -> Result<f64, String> {
        let rate = match text.strip_suffix('%') {
            Some(pct) => number(pct)? / 100.0,
            None => number(text)?,
        };
        if rate > 1.0 {
            return Err(bad(&format!("{what} is at most 100%")));
        }
        Ok(rate)
    };
    match name.as_str() {
        "error_rate" | "errors" | "error-rate" => {
            if !upper {
                return Err(bad("an error rate is bounded from above: use <"));
            }
            Ok(("max_error_rate", share(&value, "an error rate")?))
        }
        "checks" | "check_rate" | "check-rate" => {
            if upper {
                return Err(bad("a check rate is bounded from below: use >"));
            }
            Ok(("min_check_rate", share(&value, "a check rate")?))
        }
        "throughput" | "rps" | "rate" => {
            if upper {
                return Err(bad("a throughput is bounded from below: use >"));
            }
            let v = value.strip_suffix("/s").unwrap_or(&value);
            Ok(("min_throughput_per_s", number(v)?))
        }
        _ => Err(bad(&format!("{name:?} is not a figure fanout judges"))),
    }
}

/// Whether `fanout run`'s first argument is a URL rather than a batch file.
pub fn is_url(arg: &str) -> bool {
    let lower = arg.get(..8).unwrap_or(arg).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_read_as_people_write_them() {
        assert_eq!(threshold("p95<200ms"), Ok(("p95_ms", 200.0)));
        assert_eq!(threshold("p99 < 1s"), Ok(("p99_ms", 1000.0)));
        assert_eq!(threshold("p99.9<=1.5s"), Ok(("p999_ms", 1500.0)));
        assert_eq!(threshold("mean<50ms"), Ok(("mean_ms", 50.0)));
        assert_eq!(threshold("error_rate<1%"), Ok(("max_error_rate", 0.01)));
        assert_eq!(threshold("lost<5s"), Ok(("max_lost_window_ms", 5000.0)));
        assert_eq!(threshold("lost < 0ms"), Ok(("max_lost_window_ms", 0.0)));
        assert_eq!(threshold("error_rate<0.05"), Ok(("max_error_rate", 0.05)));
        assert_eq!(threshold("checks>99%"), Ok(("min_check_rate", 0.99)));
        assert_eq!(threshold("check_rate >= 0.5"), Ok(("min_check_rate", 0.5)));
        assert!(threshold("checks<99%").is_err());
        assert!(threshold("checks>101%").is_err());
        assert_eq!(
            threshold("throughput>500/s"),
            Ok(("min_throughput_per_s", 500.0))
        );
        for bad in [
            "p95>200ms",
            "p95<200",
            "p42<1s",
            "error_rate<200%",
            "throughput<5/s",
            "p95",
        ] {
            assert!(threshold(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_one_liner_is_a_load_run_of_one_job() {
        let line = OneLiner {
            url: "http://127.0.0.1:3000/".into(),
            requests: Some(10_000),
            concurrency: Some(64),
            headers: vec!["X-Id: 7".into()],
            method: Some("post".into()),
            body: Some("{}".into()),
            thresholds: vec!["p95<200ms".into()],
            ..Default::default()
        };
        assert_eq!(
            line.batch().unwrap(),
            json!({
                "jobs": [{ "kind": "http", "url": "http://127.0.0.1:3000/", "method": "POST",
                           "headers": { "X-Id": "7" }, "body": "{}" }],
                "load": { "repeat": 10_000 }, "concurrency": 64, "results": "errors",
                "thresholds": { "p95_ms": 200.0 }
            })
        );
        let defaults = OneLiner {
            url: "http://x/".into(),
            ..Default::default()
        };
        let b = defaults.batch().unwrap();
        assert_eq!(b["load"], json!({ "repeat": DEFAULT_REQUESTS }));
        assert_eq!(b["concurrency"], DEFAULT_CONCURRENCY);
        assert!(is_url("HTTPS://example.test/") && !is_url("batch.json"));
    }
}
