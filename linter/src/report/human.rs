//! `--format human`: rustc-like diagnostics with the source line and a caret.

use super::{Report, Summary};
use crate::finding::{Diagnostic, Severity};

struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_owned() }
    }
    fn severity(&self, s: Severity) -> String {
        match s {
            Severity::Error => self.paint("1;31", "error"),
            Severity::Warning => self.paint("1;33", "warning"),
            Severity::Info => self.paint("1;36", "info"),
        }
    }
    fn blue(&self, s: &str) -> String {
        self.paint("1;34", s)
    }
}

pub fn render(report: &Report<'_>) -> String {
    let style = Style { on: report.color };
    let mut out = String::new();
    let mut lines = LineIndex::default();
    for d in report.diagnostics {
        render_one(&mut out, d, report, &style, &mut lines);
    }
    let s = report.summary;
    let scope = scope(&s);
    if s.findings == 0 {
        out.push_str(&format!("No findings in {scope}.\n"));
    } else {
        out.push_str(&format!(
            "Found {} {} ({} {}, {} {}, {} {}) in {scope}.\n",
            s.findings,
            plural(s.findings, "finding", "findings"),
            s.errors,
            plural(s.errors, "error", "errors"),
            s.warnings,
            plural(s.warnings, "warning", "warnings"),
            s.infos,
            plural(s.infos, "info", "infos"),
        ));
        let fixable = report.diagnostics.iter().filter(|d| d.fixable).count();
        if fixable > 0 {
            out.push_str(&format!("{fixable} of them can be fixed with `portcullis fix`.\n"));
        }
    }
    out
}

/// "3 files (12 objects)", with the documents skipped as not Kubernetes when there are any.
fn scope(s: &Summary) -> String {
    let mut text = format!(
        "{} {} ({} {}",
        s.files,
        plural(s.files, "file", "files"),
        s.objects,
        plural(s.objects, "object", "objects")
    );
    for part in s.left_out() {
        text.push_str("; ");
        text.push_str(&part);
    }
    text.push(')');
    text
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// Where each line of a file starts, built once per file on its first finding: looking a line
/// up by scanning from the start of the file made 30,000 findings in one file take 23 s.
#[derive(Default)]
struct LineIndex {
    starts: std::collections::HashMap<crate::load::SourceId, Vec<usize>>,
}

impl LineIndex {
    fn line<'t>(&mut self, source: crate::load::SourceId, text: &'t str, line: usize) -> Option<&'t str> {
        let starts = self.starts.entry(source).or_insert_with(|| {
            std::iter::once(0).chain(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1)).collect()
        });
        let start = *starts.get(line.checked_sub(1)?)?;
        if start >= text.len() {
            return None;
        }
        let rest = &text[start..];
        let end = memchr::memchr(b'\n', rest.as_bytes()).unwrap_or(rest.len());
        Some(rest[..end].strip_suffix('\r').unwrap_or(&rest[..end]))
    }
}

/// `text` broken at spaces so no line is wider than `width` (a word longer than a line stays
/// whole, and so does a `quoted command`, to stay copyable), the first line following `used`
/// columns of prefix, the others indented by `indent`.
fn wrap(text: &str, used: usize, width: Option<usize>, indent: usize) -> String {
    let Some(width) = width else { return text.to_owned() };
    let mut words: Vec<String> = Vec::new();
    let mut quoted = false;
    for word in text.split(' ') {
        match words.last_mut() {
            Some(last) if quoted => {
                last.push(' ');
                last.push_str(word);
            }
            _ => words.push(word.to_owned()),
        }
        quoted ^= word.matches('`').count() % 2 == 1;
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut column = used;
    for (i, word) in words.iter().enumerate() {
        let len = word.chars().count();
        if i > 0 {
            if column + 1 + len > width && column > indent {
                out.push('\n');
                out.push_str(&" ".repeat(indent));
                column = indent;
            } else {
                out.push(' ');
                column += 1;
            }
        }
        out.push_str(word);
        column += len;
    }
    out
}

fn render_one(out: &mut String, d: &Diagnostic, report: &Report<'_>, style: &Style, lines: &mut LineIndex) {
    let word = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "info",
    };
    let used = word.len() + d.code.len() + d.rule.len() + 5;
    let message = wrap(&d.message, used, report.width, 2);
    out.push_str(&format!("{}[{}] {}: {}\n", style.severity(d.severity), d.code, d.rule, message));
    let line = d.position.line;
    let width = line.to_string().len();
    let pad = " ".repeat(width);
    out.push_str(&format!("{pad}{} {}:{}:{}\n", style.blue("-->"), d.file, line, d.position.column));
    let text = report.sources.get(d.source).and_then(|f| lines.line(d.source, &f.text, line));
    if let Some(text) = text.filter(|t| !t.is_empty()) {
        let bar = style.blue("|");
        out.push_str(&format!("{pad} {bar}\n"));
        let (shown, start) = window(text, d.position.column.saturating_sub(1));
        out.push_str(&format!("{} {bar} {}\n", style.blue(&line.to_string()), shown));
        let text = shown.as_str();
        let token = token_len(text, start);
        out.push_str(&format!(
            "{pad} {bar} {}{}\n",
            " ".repeat(start),
            style.paint(if d.severity == Severity::Error { "1;31" } else { "1;33" }, &"^".repeat(token))
        ));
    }
    for r in &d.related {
        let note = format!("{} ({}:{}:{})", r.message, r.file, r.position.line, r.position.column);
        let note = wrap(&note, width + 9, report.width, width + 9);
        out.push_str(&format!("{pad} = {}: {note}\n", style.blue("note")));
    }
    out.push('\n');
}

/// Characters of a source line shown around the column; one-line JSON would otherwise print
/// its whole document once per finding (1,000 findings in a 300 KB line: 312 MB of output).
const WINDOW: usize = 120;

/// The part of `text` shown for a finding at character `column`, and the column within it.
fn window(text: &str, column: usize) -> (String, usize) {
    let count = text.chars().count();
    if count <= WINDOW {
        return (text.to_owned(), column);
    }
    let first = column.saturating_sub(WINDOW / 3).min(count.saturating_sub(WINDOW));
    let mut shown: String = text.chars().skip(first).take(WINDOW).collect();
    let mut at = column - first;
    if first > 0 {
        shown.insert(0, '…');
        at += 1;
    }
    if first + WINDOW < count {
        shown.push('…');
    }
    (shown, at)
}

/// Length (in characters) of the key or word starting at `start`.
fn token_len(text: &str, start: usize) -> usize {
    let n = text
        .chars()
        .skip(start)
        .take_while(|c| !c.is_whitespace() && !matches!(c, ':' | ',' | '{' | '}' | '[' | ']'))
        .count();
    n.max(1)
}

#[cfg(test)]
mod line_tests {
    use super::{LineIndex, WINDOW, window};

    #[test]
    fn long_lines_are_shown_around_the_column() {
        assert_eq!(window("spec: {}", 0), ("spec: {}".to_owned(), 0));
        let line: String = (0..10_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let (shown, at) = window(&line, 5_000);
        assert!(shown.chars().count() <= WINDOW + 2, "{}", shown.len());
        assert_eq!(shown.chars().nth(at), line.chars().nth(5_000));
        let (shown, at) = window(&line, 3);
        assert_eq!((shown.chars().nth(at), shown.starts_with('…')), (line.chars().nth(3), false));
    }
    use crate::load::{SourceFile, SourceId};

    #[test]
    fn the_line_index_reads_what_str_lines_reads() {
        for text in ["", "a", "a\n", "a\nb", "a\r\nb\r\n", "\n\n", "x: 1\n\ny: \"\u{e9}\"\r\n  z\n"] {
            let file = SourceFile { name: "f".into(), text: text.to_owned(), reported: true };
            let mut index = LineIndex::default();
            for line in 0..6 {
                assert_eq!(index.line(SourceId(0), text, line), file.line_text(line), "{text:?} line {line}");
            }
        }
    }
}

#[cfg(test)]
mod wrap_tests {
    use super::wrap;

    #[test]
    fn messages_wrap_at_spaces_to_the_terminal() {
        let text = "pods of Deployment shop/api cannot resolve names (egress isolated by policy deny)";
        assert_eq!(wrap(text, 10, None, 2), text, "no terminal, no wrapping");
        let wrapped = wrap(text, 10, Some(40), 2);
        assert!(wrapped.lines().enumerate().all(|(i, l)| l.len() + if i == 0 { 10 } else { 0 } <= 40), "{wrapped}");
        assert!(wrapped.lines().skip(1).all(|l| l.starts_with("  ") && !l.starts_with("   ")), "{wrapped}");
        assert_eq!(wrapped.replace("\n  ", " "), text, "only spaces become breaks");
        // A word longer than the line stays whole.
        let long = format!("see {}", "x".repeat(80));
        assert_eq!(wrap(&long, 0, Some(40), 2), format!("see\n  {}", "x".repeat(80)));
        // A quoted command is never broken: it must stay copyable.
        let command =
            "render it first: `helm template api ./charts/api --namespace shop | portcullis lint -` (no helm)";
        let wrapped = wrap(command, 0, Some(40), 2);
        assert!(wrapped.contains("`helm template api ./charts/api --namespace shop | portcullis lint -`"), "{wrapped}");
    }
}
