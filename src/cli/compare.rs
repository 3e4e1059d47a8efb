//! `fanout compare A B`: two runs' figures side by side, from a server (`--server`, batch
//! ids) or from two JSON reports (`fanout run --format json --out FILE`).

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Args;

use crate::engine::compare::{Comparison, compare};
use crate::engine::summary::Summary;

#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// The run compared from (a baseline): a batch id with `--server`, else a JSON report.
    pub a: String,
    /// The run compared to it.
    pub b: String,
    /// The fanout server both batches are on.
    #[arg(long, env = "FANOUT_SERVER")]
    pub server: Option<String>,
    /// Bearer token for `--server`.
    #[arg(long, env = "FANOUT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the comparison as JSON (as `GET /batches/{a}/compare/{b}` answers).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: CompareArgs) -> ExitCode {
    let comparison = match &args.server {
        Some(server) => from_server(server, args.token.as_deref(), &args.a, &args.b),
        None => read(&args.a).and_then(|a| Ok(compare(a, read(&args.b)?))),
    };
    match comparison {
        Ok(c) if args.json => {
            println!("{}", serde_json::to_string_pretty(&c).expect("JSON"));
            ExitCode::SUCCESS
        }
        Ok(c) => {
            print!("{}", table(&c, &args.a, &args.b));
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("fanout compare: {why}");
            ExitCode::from(2)
        }
    }
}

/// A JSON report's summary.
fn read(path: &str) -> Result<Summary, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let report: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("{path} is not JSON: {e}"))?;
    serde_json::from_value(report["summary"].clone())
        .map_err(|e| format!("{path} is not a fanout JSON report (--format json): {e}"))
}

fn from_server(server: &str, token: Option<&str>, a: &str, b: &str) -> Result<Comparison, String> {
    let url = format!("{}/batches/{a}/compare/{b}", server.trim_end_matches('/'));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    runtime.block_on(async {
        let mut request = reqwest::Client::new().get(&url);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let answer = request.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = answer.status();
        let text = answer.text().await.map_err(|e| format!("{url}: {e}"))?;
        if !status.is_success() {
            let detail = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|p| p["detail"].as_str().map(str::to_owned))
                .unwrap_or(text);
            return Err(format!("{url} answered {status}: {detail}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{url}: not a comparison: {e}"))
    })
}

/// The changes as a table: figure, a, b, change.
fn table(c: &Comparison, a: &str, b: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "a: {a}\nb: {b}\n");
    let _ = writeln!(
        out,
        "  {:<24} {:>12} {:>12} {:>9}",
        "figure", "a", "b", "change"
    );
    // The batch's figures in the order reports give them, then the jobs'.
    let order = |name: &str| {
        crate::engine::spec::Figure::ALL
            .iter()
            .position(|f| f.key() == name)
            .unwrap_or(usize::MAX)
    };
    let mut rows: Vec<_> = c.changes.iter().collect();
    rows.sort_by_key(|(name, _)| (order(name), (*name).clone()));
    for (name, ch) in rows {
        let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
        let pct = ch
            .change_pct
            .map_or("-".to_owned(), |p| format!("{p:+.1} %"));
        let noise = ch.noise_pct.map_or(String::new(), |n| {
            format!("  (noise ±{n:.1} % at {})", tasks(c))
        });
        let _ = writeln!(
            out,
            "  {name:<24} {:>12} {:>12} {pct:>9}{noise}",
            f(ch.a),
            f(ch.b)
        );
    }
    let _ = writeln!(out, "\n{}", noise_note(c));
    out
}

/// What the noise column means, or why there is none.
fn noise_note(c: &Comparison) -> &'static str {
    if c.same_request {
        "noise: the change sampling alone makes likely (95 %), from both runs' histograms; \
         drift between the runs adds to it"
    } else {
        "noise: not shown, the two did not run one request (a rerun, or the same stored \
         request, on a server)"
    }
}

/// The task counts the noise was read at: `3,000 tasks`, or `3,000 and 2,950 tasks`.
fn tasks(c: &Comparison) -> String {
    let ended = |s: &Summary| thousands(s.tasks.saturating_sub(s.pending));
    let (a, b) = (ended(&c.a), ended(&c.b));
    if a == b {
        format!("{a} tasks")
    } else {
        format!("{a} and {b} tasks")
    }
}

/// `3000` as `3,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn counts_read_with_thousands_separators() {
        assert_eq!(thousands(7), "7");
        assert_eq!(thousands(3_000), "3,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
