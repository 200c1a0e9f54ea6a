//! `--format github`: GitHub Actions workflow commands, shown as annotations on the diff.

use super::Report;
use crate::finding::Severity;

pub fn render(report: &Report<'_>) -> String {
    let mut out = String::new();
    for d in report.diagnostics {
        let level = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "notice",
        };
        out.push_str(&format!(
            "::{level} file={},line={},col={},title={}::{}\n",
            property(&d.file),
            d.position.line,
            d.position.column,
            property(&format!("{} {}", d.code, d.rule)),
            data(&d.message)
        ));
    }
    out
}

/// Escapes a workflow-command message.
fn data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escapes a workflow-command property value.
fn property(s: &str) -> String {
    data(s).replace(':', "%3A").replace(',', "%2C")
}
