//! The page (`/ui`): its three files embedded in the binary, and the HTML report, which is
//! the same page with its style, its code and one batch's picture inlined.

use crate::engine::picture::ReportData;

pub const INDEX_HTML: &str = include_str!("../ui/index.html");
pub const APP_JS: &str = include_str!("../ui/app.js");
pub const STYLE_CSS: &str = include_str!("../ui/style.css");

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
    let code = APP_JS.replace("</script", "<\\/script");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_its_style_and_code_by_the_tags_the_report_replaces() {
        assert!(INDEX_HTML.contains(STYLE_TAG));
        assert!(INDEX_HTML.contains(SCRIPT_TAG));
        assert!(INDEX_HTML.contains("<head>"));
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
