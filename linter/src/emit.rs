//! Writes `serde_json::Value`s as block-style YAML, for `portcullis fix` output. Strings that a
//! YAML 1.1 or 1.2 reader could take for something else are double-quoted (JSON escapes are
//! valid YAML), so the output reads back exactly as it was written.

use serde_json::Value;

/// One YAML document (no `---`), ending in a newline.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => write_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => write_seq(&mut out, a, 0),
        other => {
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
    out
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    let mut first = true;
    for (k, v) in map {
        if !first {
            out.push_str(&" ".repeat(indent));
        }
        first = false;
        out.push_str(&quote(k));
        out.push(':');
        write_value(out, v, indent, false);
    }
}

fn write_seq(out: &mut String, items: &[Value], indent: usize) {
    let mut first = true;
    for v in items {
        if !first {
            out.push_str(&" ".repeat(indent));
        }
        first = false;
        out.push('-');
        write_value(out, v, indent, true);
    }
}

/// Writes the value after `key:` or `-`; nested collections start on the next line, except a
/// mapping inside a sequence item, which starts on the dash line.
fn write_value(out: &mut String, v: &Value, indent: usize, in_seq: bool) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            if in_seq {
                out.push(' ');
                write_map(out, m, indent + 2);
            } else {
                out.push('\n');
                out.push_str(&" ".repeat(indent + 2));
                write_map(out, m, indent + 2);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            if in_seq {
                out.push(' ');
                write_seq(out, a, indent + 2);
            } else {
                // Kubernetes style: sequence items at the key's indentation.
                out.push('\n');
                out.push_str(&" ".repeat(indent));
                write_seq(out, a, indent);
            }
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
    }
}

/// A string as a plain scalar when that is unambiguous, else double-quoted.
fn quote(s: &str) -> String {
    if needs_quotes(s) { serde_json::Value::String(s.to_owned()).to_string() } else { s.to_owned() }
}

fn needs_quotes(s: &str) -> bool {
    let Some(first) = s.chars().next() else { return true };
    if s.trim() != s || "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        return true;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') || s.chars().any(char::is_control) {
        return true;
    }
    let lower = s.to_ascii_lowercase();
    if matches!(lower.as_str(), "null" | "~" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n") {
        return true;
    }
    // Anything that starts like a number (ints, floats, octal, hex, sexagesimal, .inf).
    first.is_ascii_digit() || (matches!(first, '+' | '.') && s.len() > 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{SourceId, parse_source};
    use serde_json::json;

    #[test]
    fn output_reads_back_identically() {
        let v = json!({
            "apiVersion": "networking.k8s.io/v1",
            "metadata": {"name": "a", "labels": {"x": "true", "y": "8080", "z": "a: b", "e": ""}},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
                {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                 "ports": [{"port": 53, "protocol": "UDP"}, {"port": "dns"}]},
                {}
            ], "list": [[1, 2], []]}
        });
        let text = to_yaml(&v);
        let (docs, problems) = parse_source(SourceId(0), &text);
        assert!(problems.is_empty(), "{problems:?}\n{text}");
        assert_eq!(docs[0].value, v, "{text}");
    }
}
