//! `--format junit`: one test case per finding (a failure), grouped by file; CI systems show
//! them as failed tests. A run without findings is one passing case.

use std::collections::BTreeMap;

use super::{Report, escape_markup as escape};
use crate::finding::Diagnostic;

pub fn render(report: &Report<'_>) -> String {
    let mut by_file: BTreeMap<&str, Vec<&Diagnostic>> = BTreeMap::new();
    for d in report.diagnostics {
        by_file.entry(&d.file).or_default().push(d);
    }
    let total = report.diagnostics.len().max(1);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"portcullis\" tests=\"{total}\" failures=\"{}\">\n",
        report.diagnostics.len()
    ));
    if by_file.is_empty() {
        out.push_str("  <testsuite name=\"portcullis lint\" tests=\"1\" failures=\"0\">\n");
        out.push_str("    <testcase name=\"no findings\" classname=\"portcullis\"/>\n  </testsuite>\n");
    }
    for (file, diags) in by_file {
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\">\n",
            escape(file),
            diags.len(),
            diags.len()
        ));
        for d in diags {
            let name = format!("{} {} at {}:{}", d.code, d.rule, d.position.line, d.position.column);
            out.push_str(&format!(
                "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" line=\"{}\">\n",
                escape(&name),
                escape(file),
                escape(file),
                d.position.line
            ));
            out.push_str(&format!(
                "      <failure type=\"{}\" message=\"{}\">{}:{}:{}: {}</failure>\n    </testcase>\n",
                d.severity,
                escape(&d.message),
                escape(file),
                d.position.line,
                d.position.column,
                escape(&d.message)
            ));
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
