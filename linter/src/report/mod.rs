//! Report formats: one [`OutputFormat`], one renderer file each.

mod github;
mod human;
mod json;
mod junit;
pub(crate) mod sarif;

use crate::finding::{Diagnostic, Severity};
use crate::load::Sources;

/// How findings are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// rustc-like text with source lines.
    Human,
    /// The stable JSON schema (DESIGN §5).
    Json,
    /// SARIF 2.1.0, for code scanning.
    Sarif,
    /// GitHub Actions workflow commands (annotations).
    Github,
    /// JUnit XML, for CI test reports.
    Junit,
}

impl OutputFormat {
    pub fn parse(s: &str) -> Option<OutputFormat> {
        match s {
            "human" => Some(OutputFormat::Human),
            "json" => Some(OutputFormat::Json),
            "sarif" => Some(OutputFormat::Sarif),
            "github" => Some(OutputFormat::Github),
            "junit" => Some(OutputFormat::Junit),
            _ => None,
        }
    }
}

/// Counts for the summary line and the JSON `summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Summary {
    pub files: usize,
    pub objects: usize,
    pub findings: usize,
    pub errors: usize,
    pub warnings: usize,
    pub infos: usize,
    /// Documents skipped as not Kubernetes objects: shown by the human format; not part of the
    /// JSON schema (DESIGN §5), whose summary keys are fixed.
    #[serde(skip)]
    pub skipped: usize,
    /// Paths the walk left out by `exclude`/`include` globs, and by `.gitignore` (human format).
    #[serde(skip)]
    pub excluded: usize,
    #[serde(skip)]
    pub ignored: usize,
    /// Objects replaced by their patched copies in `portcullis fix` output (human format).
    #[serde(skip)]
    pub replaced: usize,
}

impl Summary {
    /// What the run read but did not lint, one phrase each ("2 documents skipped: not
    /// Kubernetes", "1 path excluded", ...), for the human summary and the empty-input error.
    pub fn left_out(&self) -> Vec<String> {
        [
            (self.skipped, "document skipped: not Kubernetes", "documents skipped: not Kubernetes"),
            (self.excluded, "path excluded", "paths excluded"),
            (
                self.replaced,
                "object replaced by `portcullis fix` output",
                "objects replaced by `portcullis fix` output",
            ),
            (self.ignored, "path in .gitignore", "paths in .gitignore"),
        ]
        .into_iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, one, many)| format!("{n} {}", if n == 1 { one } else { many }))
        .collect()
    }

    pub fn new(files: usize, objects: usize, diagnostics: &[Diagnostic]) -> Summary {
        let count = |s| diagnostics.iter().filter(|d| d.severity == s).count();
        Summary {
            skipped: 0,
            excluded: 0,
            ignored: 0,
            replaced: 0,
            files,
            objects,
            findings: diagnostics.len(),
            errors: count(Severity::Error),
            warnings: count(Severity::Warning),
            infos: count(Severity::Info),
        }
    }
}

/// What a renderer needs.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    pub diagnostics: &'a [Diagnostic],
    pub summary: Summary,
    /// For source lines in human output.
    pub sources: &'a Sources,
    /// ANSI colour (human output on a terminal only).
    pub color: bool,
    /// Terminal width to wrap messages to (human output on a terminal only).
    pub width: Option<usize>,
}

/// Renders a report.
pub fn render(format: OutputFormat, report: &Report<'_>) -> String {
    match format {
        OutputFormat::Human => human::render(report),
        OutputFormat::Json => json::render(report),
        OutputFormat::Sarif => sarif::render(report),
        OutputFormat::Github => github::render(report),
        OutputFormat::Junit => junit::render(report),
    }
}

/// Makes attacker-controlled text safe to show on one line of a terminal, a log or a kubectl
/// message: control characters (newlines, ESC and every ANSI sequence, C1 controls) and the
/// invisible formatting characters that reorder or hide text (bidirectional overrides, zero
/// widths) become `\u{..}` escapes, and a backslash is doubled so an escape cannot be forged.
/// Borrowed when there is nothing to escape.
pub fn escape_control(s: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        c == '\\'
            || c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
    };
    if !s.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The start of a self-contained HTML page (`map` and `matrix` `--format html`): doctype, head,
/// and the style rules both share; the page adds its own rules, then closes `</style></head>`.
pub(crate) fn html_start(title: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1d2a2e; }}
h1 {{ font-size: 1.4rem; }}
table {{ border-collapse: collapse; font-family: ui-monospace, monospace; font-size: 13px; }}
th, td {{ text-align: left; padding: .3rem .8rem; border-bottom: 1px solid #dde; }}
th {{ background: #f2f5f7; }}
"#,
        escape_markup(title)
    )
}

/// Escapes text for XML and HTML (JUnit reports, `portcullis map --format html`). Control
/// characters XML 1.0 forbids even escaped become `?`.
pub(crate) fn escape_markup(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod escape_tests {
    use super::escape_control;

    #[test]
    fn control_and_invisible_characters_are_escaped() {
        assert_eq!(escape_control("shop/pay-7f9c"), "shop/pay-7f9c");
        assert!(matches!(escape_control("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(escape_control("x\n decision=\"allow\""), "x\\u{a} decision=\"allow\"");
        assert_eq!(escape_control("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(escape_control("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(escape_control("\\u{a}"), "\\\\u{a}", "a literal escape cannot pass as one");
    }
}
