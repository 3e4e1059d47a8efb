//! The page (`/ui`): its files embedded in the binary, and the HTML report, which is the same
//! page with its style, its code and one batch's picture inlined.
//!
//! The page's code is plain ES modules, one per view or shared part, with no build step: the
//! served page loads `app.js` and the browser fetches what it imports from `/ui/`. A report
//! fetches nothing, so it cannot import: [`report`] inlines the modules as one script instead,
//! each in dependency order ([`MODULES`]) with its `import` lines dropped and the `export ` that
//! opens a declaration stripped. That reads the same as the modules because they keep to a form
//! the tests below check: imports are single lines at the top, naming what they take without
//! renaming it, from a module listed earlier; exports are declarations only; and no two modules
//! declare one name, so the one script's top level holds every module's declarations unchanged.

use crate::engine::picture::ReportData;

pub const INDEX_HTML: &str = include_str!("../ui/index.html");
pub const STYLE_CSS: &str = include_str!("../ui/style.css");

/// The page's modules by the names they import each other by, each after those it imports:
/// the order a report inlines them in.
pub const MODULES: &[(&str, &str)] = &[
    ("format.js", include_str!("../ui/format.js")),
    ("dom.js", include_str!("../ui/dom.js")),
    ("state.js", include_str!("../ui/state.js")),
    ("sse.js", include_str!("../ui/sse.js")),
    ("api.js", include_str!("../ui/api.js")),
    ("report.js", include_str!("../ui/report.js")),
    ("canvas.js", include_str!("../ui/canvas.js")),
    ("sidebar.js", include_str!("../ui/sidebar.js")),
    ("cards.js", include_str!("../ui/cards.js")),
    ("tables.js", include_str!("../ui/tables.js")),
    ("task.js", include_str!("../ui/task.js")),
    ("timeline.js", include_str!("../ui/timeline.js")),
    ("waterfall.js", include_str!("../ui/waterfall.js")),
    ("latency.js", include_str!("../ui/latency.js")),
    ("batch.js", include_str!("../ui/batch.js")),
    ("live.js", include_str!("../ui/live.js")),
    ("app.js", include_str!("../ui/app.js")),
];

/// Every file the page loads from `/ui/`: its name there, its body and its content type.
pub fn files() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    let style = ("style.css", STYLE_CSS, "text/css; charset=utf-8");
    let modules = MODULES
        .iter()
        .map(|&(name, code)| (name, code, "text/javascript; charset=utf-8"));
    std::iter::once(style).chain(modules)
}

/// The tags of `index.html` the report replaces with what they load.
const STYLE_TAG: &str = r#"<link rel="stylesheet" href="/ui/style.css">"#;
const SCRIPT_TAG: &str = r#"<script type="module" src="/ui/app.js"></script>"#;

/// What the served page may load: its own files and its own API, nothing from elsewhere.
pub const PAGE_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
     script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// What a report may load: nothing at all, whoever opens it and wherever it is kept.
const REPORT_POLICY: &str = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; \
     script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'";

/// The report of one batch: one self-contained HTML file that fetches nothing.
pub fn report(data: &ReportData) -> String {
    // Inside a <script> element only `</script` (and `<!--`) can end it early: `<` appears in
    // JSON only within strings, where `\u003c` reads the same.
    let json = serde_json::to_string(data)
        .expect("report data serializes")
        .replace('<', "\\u003c");
    let code = inlined_script().replace("</script", "<\\/script");
    let style = STYLE_CSS.replace("</style", "<\\/style");
    INDEX_HTML
        .replacen(
            "<head>",
            &format!(
                "<head>\n<meta http-equiv=\"Content-Security-Policy\" content=\"{REPORT_POLICY}\">"
            ),
            1,
        )
        .replacen(STYLE_TAG, &format!("<style>\n{style}\n</style>"), 1)
        .replacen(
            SCRIPT_TAG,
            &format!(
                "<script type=\"application/json\" id=\"fanout-report\">{json}</script>\n<script type=\"module\">\n{code}\n</script>"
            ),
            1,
        )
}

/// The modules as one script: each in [`MODULES`]' order, without its `import` lines (what they
/// name is declared above it) and with `export ` stripped from its declarations.
fn inlined_script() -> String {
    let mut script = String::new();
    for (name, code) in MODULES {
        script.push_str(&format!("// ui/{name}\n"));
        for line in code.lines().filter(|line| !line.starts_with("import ")) {
            script.push_str(line.strip_prefix("export ").unwrap_or(line));
            script.push('\n');
        }
    }
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_its_style_and_code_by_the_tags_the_report_replaces() {
        assert!(INDEX_HTML.contains(STYLE_TAG));
        assert!(INDEX_HTML.contains(SCRIPT_TAG));
        assert!(INDEX_HTML.contains("<head>"));
    }

    /// A module's `import { a, b } from "./x.js";` lines: the names and the module of each.
    fn imports(code: &str) -> Vec<(Vec<&str>, &str)> {
        code.lines()
            .filter(|line| line.starts_with("import "))
            .map(|line| {
                let rest = line.strip_prefix("import { ").expect(line);
                let (names, from) = rest.split_once(" } from \"./").expect(line);
                let from = from.strip_suffix("\";").expect(line);
                (names.split(", ").collect(), from)
            })
            .collect()
    }

    /// The names a module declares at its top level (where a declaration starts a line).
    fn declared(code: &str) -> Vec<&str> {
        code.lines()
            .map(|line| line.strip_prefix("export ").unwrap_or(line))
            .map(|line| line.strip_prefix("async ").unwrap_or(line))
            .filter_map(|line| {
                ["function ", "const ", "let ", "class "]
                    .iter()
                    .find_map(|keyword| line.strip_prefix(keyword))
            })
            .map(|rest| rest.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$')))
            .filter_map(|mut words| words.next())
            .collect()
    }

    #[test]
    fn every_module_on_disk_is_served_and_inlined() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/ui");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".js"))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = MODULES.iter().map(|(name, _)| name.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed, "ui/*.js and MODULES differ");
        let script = inlined_script();
        for (name, code) in MODULES {
            let opening = code.lines().next().unwrap();
            assert!(
                opening.starts_with("// ") && code.lines().nth(1) == Some(""),
                "{name} opens with a one-line comment saying what it is for"
            );
            assert!(script.contains(opening), "{name} is inlined");
            assert!(code.lines().count() <= 700, "{name} is short");
        }
    }

    #[test]
    fn the_inlined_script_has_no_import_and_no_export() {
        for line in inlined_script().lines() {
            let line = line.trim_start();
            assert!(!line.starts_with("import "), "{line}");
            assert!(!line.starts_with("export "), "{line}");
        }
    }

    #[test]
    fn modules_import_by_name_from_modules_inlined_before_them() {
        for (i, (name, code)) in MODULES.iter().enumerate() {
            let earlier: Vec<&str> = MODULES[..i].iter().map(|(n, _)| *n).collect();
            for (names, from) in imports(code) {
                assert!(
                    earlier.contains(&from),
                    "{name} imports {from}, inlined after it"
                );
                let (_, source) = MODULES.iter().find(|(n, _)| *n == from).unwrap();
                for imported in names {
                    assert!(!imported.contains(' '), "{name} renames {imported}");
                    assert!(
                        source
                            .lines()
                            .any(|l| l.starts_with("export ") && declared(l) == [imported]),
                        "{name} imports {imported}, which {from} does not export"
                    );
                }
            }
            // Imports at the top only: after the opening comment, before any code.
            let first_code = code
                .lines()
                .position(|l| !(l.is_empty() || l.starts_with("//") || l.starts_with("import ")))
                .unwrap_or(0);
            assert!(
                code.lines()
                    .skip(first_code)
                    .all(|l| !l.trim_start().starts_with("import ")),
                "{name} imports below its code"
            );
            assert!(
                !code
                    .lines()
                    .any(|l| l.starts_with("export default") || l.starts_with("export {")),
                "{name} exports declarations only"
            );
        }
    }

    #[test]
    fn no_two_modules_declare_one_name() {
        let mut seen = std::collections::HashMap::new();
        for (name, code) in MODULES {
            for declared in declared(code) {
                if let Some(other) = seen.insert(declared, name) {
                    panic!("{declared} is declared by {other} and {name}");
                }
            }
        }
        assert!(seen.contains_key("renderTaskDetail") && seen.contains_key("$"));
    }

    #[test]
    fn a_report_inlines_everything_and_no_value_can_end_its_script() {
        let data = ReportData {
            batch: serde_json::json!({ "label": "</script><script>alert(1)</script>" }),
            timeline: serde_json::json!({}),
            latency: Default::default(),
        };
        let html = report(&data);
        assert!(
            !html.contains("src=\"/ui/"),
            "nothing loaded from the server"
        );
        assert!(!html.contains("href=\"/ui/"));
        assert!(!html.contains("</script><script>alert"));
        let start = html.find("id=\"fanout-report\">").unwrap() + "id=\"fanout-report\">".len();
        let end = start + html[start..].find("</script>").unwrap();
        let back: serde_json::Value = serde_json::from_str(&html[start..end]).unwrap();
        assert_eq!(back["batch"]["label"], "</script><script>alert(1)</script>");
    }
}
