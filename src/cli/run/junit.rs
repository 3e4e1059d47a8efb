//! The JUnit file `fanout run --format junit` writes for CI dashboards: a test case per
//! verdict check (or one for "every task succeeded", without thresholds) and one per check on
//! the answers, read from the batch as the API answers it.

use std::fmt::Write as _;

use super::report::*;

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// JUnit XML: one test case per threshold (or, without thresholds, one for "every task
/// succeeded"), so CI dashboards show which limit failed.
pub fn junit(b: &Report) -> String {
    let name = b.label.as_deref().unwrap_or(&b.id);
    let time = b.wall_ms.unwrap_or(0.0) / 1000.0;
    let mut cases = Vec::new();
    match &b.verdict {
        Some(v) => {
            for c in &v.checks {
                let check = c.name.clone();
                let failure = (!c.passed).then(|| match &c.detail {
                    Some(detail) => format!("{check}: {detail}"),
                    None => format!(
                        "{check}: actual {} against limit {}",
                        num(c.actual),
                        num(Some(c.limit))
                    ),
                });
                cases.push(("fanout.thresholds", check, failure));
            }
        }
        None => {
            let failure = (!b.passed()).then(|| {
                format!(
                    "{} of {} tasks succeeded; batch {}",
                    count(b.summary.succeeded),
                    count(b.summary.tasks),
                    b.status
                )
            });
            cases.push((
                "fanout.thresholds",
                "every task succeeded".to_owned(),
                failure,
            ));
        }
    }
    cases.extend(check_cases(b));
    let failures = cases.iter().filter(|c| c.2.is_some()).count();
    // What went wrong, in words, beside each failure: the first message of each error code,
    // and the guard's refusal when it stopped most tasks.
    let mut why: Vec<String> = refused_by_the_guard(&b.summary).into_iter().collect();
    why.extend(first_errors(&b.summary));
    let why = why.join("\n");
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"fanout\" tests=\"{}\" failures=\"{failures}\" time=\"{time:.3}\">",
        cases.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{time:.3}\">",
        xml(name),
        cases.len()
    );
    for (class, case, failure) in cases {
        match failure {
            None => {
                let _ = writeln!(
                    out,
                    "    <testcase classname=\"{class}\" name=\"{}\" time=\"{time:.3}\"/>",
                    xml(&case)
                );
            }
            Some(message) => {
                let _ = writeln!(
                    out,
                    "    <testcase classname=\"{class}\" name=\"{}\" time=\"{time:.3}\">",
                    xml(&case)
                );
                let body = if why.is_empty() {
                    message.clone()
                } else {
                    format!("{message}\n{why}")
                };
                let _ = writeln!(
                    out,
                    "      <failure type=\"threshold\" message=\"{}\">{}</failure>",
                    xml(&message),
                    xml(&body)
                );
                let _ = writeln!(out, "    </testcase>");
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// A test case per check on the answers (`fanout.checks`), failed when its failures failed
/// the run: its own `checks.NAME` limit failed, or `check_rate` failed and it had failures
/// (without thresholds: it had failures and not every task succeeded). A soft check's
/// failures that the verdict allows leave its case passed, with the counts in its name.
fn check_cases(b: &Report) -> Vec<(&'static str, String, Option<String>)> {
    let Some(checks) = &b.summary.checks else {
        return Vec::new();
    };
    let verdict = |name: &str| {
        b.verdict
            .as_ref()
            .and_then(|v| v.checks.iter().find(|c| c.name == name))
    };
    let rate_failed = match &b.verdict {
        Some(_) => verdict("check_rate").is_some_and(|c| !c.passed),
        None => !b.passed(),
    };
    checks
        .iter()
        .map(|(name, c)| {
            let judged = c.passed + c.failed;
            let failed = match verdict(&format!("checks.{name}")) {
                Some(own) => !own.passed,
                None => rate_failed && c.failed > 0,
            };
            let message = failed.then(|| {
                format!(
                    "check {name:?}: {} of {} judgements failed",
                    count(c.failed),
                    count(judged)
                )
            });
            ("fanout.checks", name.clone(), message)
        })
        .collect()
}
