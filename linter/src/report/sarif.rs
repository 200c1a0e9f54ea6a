//! `--format sarif`: SARIF 2.1.0 with every rule and its docs, for GitHub code scanning and
//! other SARIF consumers. Validated against the official 2.1.0 schema in the test suite.

use serde_json::{Value, json};

use super::Report;
use crate::finding::Severity;
use crate::rules::registry;

pub(crate) const SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// A SARIF 2.1.0 log of one run by `tool` (`portcullis diff`, `portcullis replay`) with one rule
/// and its results, pretty-printed.
pub(crate) fn single_rule_log(tool: &str, rule: &str, short: &str, full: &str, results: Vec<Value>) -> String {
    let doc = json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": tool,
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/portcullis-dev/portcullis",
                "rules": [{
                    "id": rule,
                    "name": rule,
                    "shortDescription": {"text": short},
                    "fullDescription": {"text": full},
                }],
            }},
            "results": results,
        }],
    });
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
    out.push('\n');
    out
}

/// One result of a [`single_rule_log`]: the rule's only entry, `level`, the message, and where
/// (file and line), when known.
pub(crate) fn single_rule_result(rule: &str, level: &str, text: String, at: Option<(&str, usize)>) -> Value {
    let mut result = json!({"ruleId": rule, "ruleIndex": 0, "level": level, "message": {"text": text}});
    if let Some((file, line)) = at {
        result["locations"] = json!([{"physicalLocation": {
            "artifactLocation": {"uri": uri(file)},
            "region": {"startLine": line.max(1)},
        }}]);
    }
    result
}

/// A file name as a URI reference (relative paths stay relative).
pub(crate) fn uri(file: &str) -> String {
    if file == "<stdin>" {
        return "stdin".to_owned();
    }
    let mut out = String::with_capacity(file.len());
    for b in file.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub fn render(report: &Report<'_>) -> String {
    let rules: Vec<Value> = registry::all()
        .map(|m| {
            let docs = m.docs_markdown();
            json!({
                "id": m.code,
                "name": m.name,
                "shortDescription": {"text": m.summary()},
                "fullDescription": {"text": m.summary()},
                "help": {"text": docs, "markdown": docs},
                "helpUri": format!("https://github.com/portcullis-dev/portcullis/blob/main/docs/rules.md#{}", m.code.to_lowercase()),
                "defaultConfiguration": {"level": level(m.severity)},
            })
        })
        .collect();
    let index = |code: &str| registry::all().position(|m| m.code == code).unwrap_or(0);
    let results: Vec<Value> = report
        .diagnostics
        .iter()
        .map(|d| {
            let related: Vec<Value> = d
                .related
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    json!({
                        "id": i,
                        "message": {"text": r.message},
                        "physicalLocation": {
                            "artifactLocation": {"uri": uri(&r.file)},
                            "region": {"startLine": r.position.line, "startColumn": r.position.column},
                        },
                    })
                })
                .collect();
            let mut result = json!({
                "ruleId": d.code,
                "ruleIndex": index(d.code),
                "level": level(d.severity),
                "message": {"text": d.message},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri(&d.file)},
                        "region": {"startLine": d.position.line, "startColumn": d.position.column},
                    },
                }],
            });
            if !related.is_empty() {
                result["relatedLocations"] = Value::Array(related);
            }
            result
        })
        .collect();
    let doc = json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "portcullis",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/portcullis-dev/portcullis",
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    });
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
    out.push('\n');
    out
}
