//! `--format json`: the stable, versioned schema of DESIGN §5. Structs (not maps) fix the key
//! order to the documented one.

use serde::Serialize;

use super::{Report, Summary};
use crate::finding::Severity;
use crate::model::ObjectRef;

#[derive(Serialize)]
struct Document<'a> {
    version: u32,
    summary: Summary,
    findings: Vec<Finding<'a>>,
}

#[derive(Serialize)]
struct Finding<'a> {
    code: &'a str,
    rule: &'a str,
    severity: Severity,
    message: &'a str,
    file: &'a str,
    line: usize,
    column: usize,
    object: Option<&'a ObjectRef>,
    related: Vec<Related<'a>>,
}

#[derive(Serialize)]
struct Related<'a> {
    file: &'a str,
    line: usize,
    message: &'a str,
}

pub fn render(report: &Report<'_>) -> String {
    let doc = Document {
        version: 1,
        summary: report.summary,
        findings: report
            .diagnostics
            .iter()
            .map(|d| Finding {
                code: d.code,
                rule: d.rule,
                severity: d.severity,
                message: &d.message,
                file: &d.file,
                line: d.position.line,
                column: d.position.column,
                object: d.object.as_ref(),
                related: d
                    .related
                    .iter()
                    .map(|r| Related { file: &r.file, line: r.position.line, message: &r.message })
                    .collect(),
            })
            .collect(),
    };
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
    out.push('\n');
    out
}
