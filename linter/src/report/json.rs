//! `--format json`: the stable, versioned schema of DESIGN §5.

use serde_json::{Value, json};

use super::Report;

pub fn render(report: &Report<'_>) -> String {
    let findings: Vec<Value> = report
        .diagnostics
        .iter()
        .map(|d| {
            json!({
                "code": d.code,
                "rule": d.rule,
                "severity": d.severity,
                "message": d.message,
                "file": d.file,
                "line": d.position.line,
                "column": d.position.column,
                "object": d.object,
                "related": d.related.iter().map(|r| json!({"file": r.file, "line": r.position.line, "message": r.message})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let doc = json!({"version": 1, "summary": report.summary, "findings": findings});
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
    out.push('\n');
    out
}
