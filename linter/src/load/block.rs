//! A fast path for the YAML that manifests are made of.
//!
//! Almost every manifest is block mappings and sequences of one-line scalars and one-line flow
//! collections, or (from `kubectl`, the API server or a program) one JSON object on one line.
//! [`scan`] reads exactly that subset, line by line, and produces the same events
//! (and the same start positions) as `saphyr-parser`, several times faster. The moment it meets
//! anything outside the subset (anchors, tags, block or multi-line scalars, escapes, tabs, complex
//! keys, syntax errors, ...) it gives up and the caller runs the full parser on the document, so
//! the subset only ever decides speed, never meaning. A differential test and a fuzz target hold
//! it to that: wherever the fast path answers, its answer equals the full parser's.

use std::borrow::Cow;

use saphyr_parser::{Event, Marker, ScalarStyle, Span};

/// Longest mapping key the fast path handles (YAML's limit for implicit keys is 1,024
/// characters; bytes are never fewer than characters).
const MAX_KEY_BYTES: usize = 1000;

/// Deepest nesting the fast path handles; deeper documents go to the full parser.
const MAX_DEPTH: usize = 64;

/// Reads `src` (one document) into parser events, or returns `None` when the document is outside
/// the subset. The events are those `saphyr_parser::Parser` produces, including `StreamStart`
/// and `StreamEnd`; the start marker (line and column) of every node event is the full parser's.
pub fn scan(src: &str) -> Option<Vec<(Event<'_>, Span)>> {
    // Manifests run at about one event per six bytes: room for all of them up front saves
    // growing (and copying) the vector, within a bound for huge documents.
    let capacity = (src.len() / 4 + 16).min(4096);
    let mut scanner = Scanner {
        out: Vec::with_capacity(capacity),
        stack: Vec::new(),
        pending: None,
        started: false,
        flow_root: false,
    };
    scanner.run(src).ok()?;
    Some(scanner.out)
}

/// The differential oracle the tests and the fuzz target hold the fast path to: whether the fast
/// path took `src` (`Ok(false)`: it left it to the full parser), or how it disagrees with the
/// full parser (events, or the start of a node) or accepted what the full parser rejects.
#[doc(hidden)]
pub fn check_against_full_parser(src: &str) -> Result<bool, String> {
    type Key<'a> = Vec<(Event<'a>, Option<(usize, usize)>)>;
    fn key(events: Vec<(Event<'_>, Span)>) -> Key<'_> {
        events
            .into_iter()
            .map(|(e, s)| {
                let node = matches!(e, Event::Scalar(..) | Event::MappingStart(..) | Event::SequenceStart(..));
                (e, node.then(|| (s.start.line(), s.start.col())))
            })
            .collect()
    }
    let Some(fast) = scan(src) else { return Ok(false) };
    let full: Result<Vec<_>, _> = saphyr_parser::Parser::new_from_str(src).keep_tags(true).collect();
    let full = full.map_err(|e| format!("the fast path accepted what the full parser rejects ({e})"))?;
    let (fast, full) = (key(fast), key(full));
    match fast.iter().zip(&full).position(|(a, b)| a != b) {
        Some(i) => Err(format!("event {i}: fast path {:?}, full parser {:?}", fast[i], full[i])),
        None if fast.len() != full.len() => {
            Err(format!("{} events from the fast path, {} from the full parser", fast.len(), full.len()))
        }
        None => Ok(true),
    }
}

/// Why the fast path stopped: the document needs the full parser.
struct Unsupported;

type Step<T = ()> = Result<T, Unsupported>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Map,
    Seq,
    /// A sequence whose dashes sit at the same column as its parent mapping's keys.
    IndentlessSeq,
}

#[derive(Debug, Clone, Copy)]
struct Block {
    indent: usize,
    kind: BlockKind,
}

/// A key or dash whose value did not follow on its own line.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Column of the key or dash: the value must be indented further (or be an indentless
    /// sequence, for a key).
    indent: usize,
    is_key: bool,
    /// Where the full parser puts an empty value: at a key's colon; at the end of a dash's line.
    after: Marker,
}

struct Scanner<'a> {
    out: Vec<(Event<'a>, Span)>,
    stack: Vec<Block>,
    pending: Option<Pending>,
    /// Whether the document's first node has been seen.
    started: bool,
    /// Whether the document's root was a flow collection, which closed on its line: nothing
    /// but comments may follow it.
    flow_root: bool,
}

/// One line of the document.
#[derive(Clone, Copy)]
struct Line<'a> {
    text: &'a str,
    /// Whether the line is ASCII (then columns are byte offsets).
    ascii: bool,
    /// 1-based line number in the document.
    number: usize,
    /// Byte offset of the line in the document.
    offset: usize,
}

impl<'a> Line<'a> {
    fn byte(&self, at: usize) -> u8 {
        self.text.as_bytes().get(at).copied().unwrap_or(b'\n')
    }

    /// The marker of byte `at` of the line (columns count characters, like the full parser).
    fn marker(&self, at: usize) -> Marker {
        let col = if self.ascii { at } else { self.text.get(..at).map_or(at, |s| s.chars().count()) };
        Marker::new(self.offset + at, self.number, col)
    }

    fn skip_spaces(&self, mut at: usize) -> usize {
        while self.byte(at) == b' ' {
            at += 1;
        }
        at
    }

    /// After a node ends at `at`: only spaces and a comment may follow.
    fn expect_end(&self, at: usize) -> Step {
        let next = self.skip_spaces(at);
        if next >= self.text.len() || (self.byte(next) == b'#' && next > at) { Ok(()) } else { Err(Unsupported) }
    }

    /// Whether a dash at `at` starts a block sequence entry (`- x` or a lone `-`).
    fn is_dash_entry(&self, at: usize) -> bool {
        self.byte(at) == b'-' && matches!(self.byte(at + 1), b' ' | b'\n')
    }
}

/// Characters that may not start a plain scalar (YAML 1.2 c-indicator), plus the ones the
/// fast path leaves to the full parser.
fn starts_special(b: u8) -> bool {
    matches!(
        b,
        b'-' | b'?'
            | b':'
            | b','
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'#'
            | b'&'
            | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'\''
            | b'"'
            | b'%'
            | b'@'
            | b'`'
            | b'\\'
    )
}

/// Characters outside ASCII that YAML refuses or treats as line breaks or byte order marks (C1
/// controls, NEL, U+2028/U+2029, U+FEFF, U+FFFE/U+FFFF): left to the full parser.
fn unusual(c: char) -> bool {
    matches!(c, '\u{80}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}')
}

fn span(at: Marker) -> Span {
    Span::new(at, at)
}

impl<'a> Scanner<'a> {
    fn emit(&mut self, event: Event<'a>, at: Marker) {
        self.out.push((event, span(at)));
    }

    fn scalar(&mut self, text: Cow<'a, str>, style: ScalarStyle, at: Marker) {
        self.emit(Event::Scalar(text, style, 0, None), at);
    }

    fn run(&mut self, src: &'a str) -> Step {
        // Control characters (tabs and CRs included) are rare enough to look for them everywhere
        // first; YAML refuses most of them. A fold without early exit vectorises.
        let control = |b: u8| (b < 0x20 && b != b'\n') | (b == 0x7f);
        if src.as_bytes().chunks(64).any(|c| c.iter().fold(false, |any, &b| any | control(b))) {
            return Err(Unsupported);
        }
        self.emit(Event::StreamStart, Marker::new(0, 1, 0));
        let mut explicit_start = false;
        let mut offset = 0;
        let mut last = Marker::new(0, 1, 0);
        let mut number = 0;
        while offset < src.len() {
            let next = super::yaml::next_line(src, offset);
            let text = src[offset..next].strip_suffix('\n').unwrap_or(&src[offset..next]);
            number += 1;
            let line = Line { text, ascii: text.is_ascii(), number, offset };
            if !line.ascii && text.chars().any(unusual) {
                return Err(Unsupported);
            }
            offset = next;
            let indent = line.skip_spaces(0);
            if indent == text.len() || line.byte(indent) == b'#' {
                continue;
            }
            last = line.marker(text.len());
            if indent == 0 && (text.starts_with("---") || text.starts_with("...") || text.starts_with('%')) {
                // Only a leading `---` (the chunker cut the file there) is handled here.
                let is_start = text.starts_with("---") && matches!(line.byte(3), b' ' | b'\n');
                if !is_start || self.started || explicit_start {
                    return Err(Unsupported);
                }
                line.expect_end(3)?;
                explicit_start = true;
                self.emit(Event::DocumentStart(true), line.marker(0));
                continue;
            }
            if !self.started && !explicit_start {
                self.emit(Event::DocumentStart(false), line.marker(indent));
            }
            self.line(line, indent)?;
            self.started = true;
        }
        if !self.started {
            return Err(Unsupported);
        }
        if let Some(p) = self.pending.take() {
            self.scalar(Cow::Borrowed(""), ScalarStyle::Plain, p.after);
        }
        while let Some(block) = self.stack.pop() {
            self.close(block, last);
        }
        self.emit(Event::DocumentEnd, last);
        self.emit(Event::StreamEnd, last);
        Ok(())
    }

    fn close(&mut self, block: Block, at: Marker) {
        let event = if block.kind == BlockKind::Map { Event::MappingEnd } else { Event::SequenceEnd };
        self.emit(event, at);
    }

    /// One line with content, `indent` spaces in.
    fn line(&mut self, line: Line<'a>, indent: usize) -> Step {
        let dash = line.is_dash_entry(indent);
        if self.flow_root {
            return Err(Unsupported);
        }
        if !self.started {
            if matches!(line.byte(indent), b'{' | b'[') {
                // A flow collection as the root (a one-line JSON document). As a key
                // (`{a: 1}: b`) or spanning lines it is the full parser's.
                let end = self.flow(line, indent, 0)?;
                line.expect_end(end)?;
                self.flow_root = true;
                return Ok(());
            }
            return self.open_block(line, indent, dash);
        }
        if let Some(p) = self.pending.take() {
            if indent > p.indent {
                return self.open_block(line, indent, dash);
            }
            if p.is_key && indent == p.indent && dash {
                self.push(Block { indent, kind: BlockKind::IndentlessSeq })?;
                // The full parser starts an indentless sequence where its first item's content
                // starts, or at the end of the line when the item continues below.
                let content = line.skip_spaces(indent + 1);
                let at =
                    if content < line.text.len() && line.byte(content) != b'#' { content } else { line.text.len() };
                self.emit(Event::SequenceStart(0, None), line.marker(at));
                return self.seq_item(line, indent);
            }
            self.scalar(Cow::Borrowed(""), ScalarStyle::Plain, p.after);
        }
        let here = line.marker(indent);
        while let Some(&top) = self.stack.last() {
            let ends = top.indent > indent || (top.kind == BlockKind::IndentlessSeq && top.indent == indent && !dash);
            if !ends {
                break;
            }
            self.stack.pop();
            self.close(top, here);
        }
        match self.stack.last() {
            Some(top) if top.indent == indent => match (top.kind, dash) {
                (BlockKind::Map, false) => self.map_entry(line, indent),
                (BlockKind::Seq | BlockKind::IndentlessSeq, true) => self.seq_item(line, indent),
                _ => Err(Unsupported),
            },
            // A second root node, or text continuing a scalar: the full parser decides.
            _ => Err(Unsupported),
        }
    }

    fn push(&mut self, block: Block) -> Step {
        if self.stack.len() >= MAX_DEPTH {
            return Err(Unsupported);
        }
        self.stack.push(block);
        Ok(())
    }

    /// A new block collection whose first entry is on this line, `indent` spaces in.
    fn open_block(&mut self, line: Line<'a>, indent: usize, dash: bool) -> Step {
        if dash {
            self.push(Block { indent, kind: BlockKind::Seq })?;
            self.emit(Event::SequenceStart(0, None), line.marker(indent));
            self.seq_item(line, indent)
        } else {
            // A scalar or flow node alone on its line is left to the full parser.
            self.push(Block { indent, kind: BlockKind::Map })?;
            self.emit(Event::MappingStart(0, None), line.marker(indent));
            self.map_entry(line, indent)
        }
    }

    /// `- …` with the dash at `dash`.
    fn seq_item(&mut self, line: Line<'a>, dash: usize) -> Step {
        let at = line.skip_spaces(dash + 1);
        if at >= line.text.len() || line.byte(at) == b'#' {
            self.pending = Some(Pending { indent: dash, is_key: false, after: line.marker(line.text.len()) });
            return Ok(());
        }
        if line.is_dash_entry(at) {
            return Err(Unsupported);
        }
        if let Some(colon) = self.key_end(line, at) {
            // A compact mapping: `- key: value`, its keys aligned with this one.
            self.push(Block { indent: at, kind: BlockKind::Map })?;
            self.emit(Event::MappingStart(0, None), line.marker(at));
            return self.map_entry_at(line, at, colon);
        }
        let end = self.inline_value(line, at, true)?;
        line.expect_end(end)
    }

    /// Where a block mapping key starting at `at` ends (the byte of its `:`), if the line is
    /// `key: …`.
    fn key_end(&self, line: Line<'a>, at: usize) -> Option<usize> {
        // YAML limits implicit keys to 1,024 characters; long ones are left to the full parser.
        self.key_colon(line, at).filter(|&colon| colon - at <= MAX_KEY_BYTES)
    }

    fn key_colon(&self, line: Line<'a>, at: usize) -> Option<usize> {
        let bytes = line.text.as_bytes();
        match line.byte(at) {
            b'"' | b'\'' => {
                let close = quoted_end(bytes, at)?;
                (line.byte(close) == b':' && matches!(line.byte(close + 1), b' ' | b'\n')).then_some(close)
            }
            b if starts_special(b) => None,
            _ => {
                let mut i = at;
                while i < bytes.len() {
                    match bytes[i] {
                        b':' if matches!(line.byte(i + 1), b' ' | b'\n') => return Some(i),
                        b'#' if i > at && bytes[i - 1] == b' ' => return None,
                        _ => {}
                    }
                    i += 1;
                }
                None
            }
        }
    }

    /// `key: …` with the key at `at`.
    fn map_entry(&mut self, line: Line<'a>, at: usize) -> Step {
        let colon = self.key_end(line, at).ok_or(Unsupported)?;
        self.map_entry_at(line, at, colon)
    }

    /// `key: …` with the key at `at` and its `:` at `colon` (already found).
    fn map_entry_at(&mut self, line: Line<'a>, at: usize, colon: usize) -> Step {
        let key_at = line.marker(at);
        match line.byte(at) {
            b'"' | b'\'' => {
                let (text, style, _) = quoted(line, at)?;
                self.scalar(text, style, key_at);
            }
            _ => {
                let key = line.text[at..colon].trim_end_matches(' ');
                self.scalar(Cow::Borrowed(key), ScalarStyle::Plain, key_at);
            }
        }
        let value = line.skip_spaces(colon + 1);
        if value >= line.text.len() || line.byte(value) == b'#' {
            self.pending = Some(Pending { indent: at, is_key: true, after: line.marker(colon) });
            return Ok(());
        }
        let end = self.inline_value(line, value, true)?;
        line.expect_end(end)
    }

    /// A node that starts and ends on this line, at `at`; returns where it ends.
    fn inline_value(&mut self, line: Line<'a>, at: usize, block: bool) -> Step<usize> {
        match line.byte(at) {
            b'"' | b'\'' => {
                let (text, style, end) = quoted(line, at)?;
                self.scalar(text, style, line.marker(at));
                Ok(end)
            }
            b'{' | b'[' => self.flow(line, at, 0),
            b'-' if !block => Err(Unsupported),
            b'-' if !matches!(line.byte(at + 1), b' ' | b'\n') => self.plain(line, at, block),
            b if starts_special(b) => Err(Unsupported),
            _ => self.plain(line, at, block),
        }
    }

    /// A one-line plain scalar.
    fn plain(&mut self, line: Line<'a>, at: usize, block: bool) -> Step<usize> {
        let bytes = line.text.as_bytes();
        let mut end = at;
        while end < bytes.len() {
            match bytes[end] {
                b'#' if end > at && bytes[end - 1] == b' ' => break,
                // `a: b: c` is an error in block context.
                b':' if block && matches!(line.byte(end + 1), b' ' | b'\n') => return Err(Unsupported),
                // In flow context `: ` ends a key and `a:b` is one scalar (`image: nginx:1.25`);
                // a `:` before a flow indicator, `#` and quotes are left to the full parser.
                b':' if !block && line.byte(end + 1) == b' ' => break,
                b':' if !block && matches!(line.byte(end + 1), b',' | b'[' | b']' | b'{' | b'}' | b'\n') => {
                    return Err(Unsupported);
                }
                // The full parser refuses ` -` before a flow indicator (`[x -]`).
                b'-' if !block
                    && end > at
                    && bytes[end - 1] == b' '
                    && matches!(line.byte(end + 1), b',' | b'[' | b']' | b'{' | b'}' | b'\n') =>
                {
                    return Err(Unsupported);
                }
                b',' | b'[' | b']' | b'{' | b'}' if !block => break,
                b'#' | b'\'' | b'"' if !block => return Err(Unsupported),
                _ => {}
            }
            end += 1;
        }
        let text = line.text[at..end].trim_end_matches(' ');
        if text.is_empty() {
            return Err(Unsupported);
        }
        self.scalar(Cow::Borrowed(text), ScalarStyle::Plain, line.marker(at));
        Ok(at + text.len())
    }

    /// A flow collection that closes on this line; returns where it ends.
    fn flow(&mut self, line: Line<'a>, at: usize, depth: usize) -> Step<usize> {
        if self.stack.len() + depth >= MAX_DEPTH {
            return Err(Unsupported);
        }
        let is_map = line.byte(at) == b'{';
        let close = if is_map { b'}' } else { b']' };
        self.emit(if is_map { Event::MappingStart(0, None) } else { Event::SequenceStart(0, None) }, line.marker(at));
        let mut i = line.skip_spaces(at + 1);
        if line.byte(i) == close {
            self.emit(if is_map { Event::MappingEnd } else { Event::SequenceEnd }, line.marker(i));
            return Ok(i + 1);
        }
        loop {
            if is_map {
                i = self.flow_node(line, i, depth)?;
                // `key: value`, `"key": value` and JSON's `"key":value`.
                let json_key = i > 0 && matches!(line.byte(i - 1), b'"' | b'\'');
                i = line.skip_spaces(i);
                if line.byte(i) != b':' || !(json_key || line.byte(i + 1) == b' ') {
                    return Err(Unsupported);
                }
                i = line.skip_spaces(i + 1);
                if matches!(line.byte(i), b',' | b'}') {
                    return Err(Unsupported);
                }
            }
            i = self.flow_node(line, i, depth)?;
            i = line.skip_spaces(i);
            match line.byte(i) {
                b',' => {
                    i = line.skip_spaces(i + 1);
                    if matches!(line.byte(i), b']' | b'}') {
                        return Err(Unsupported);
                    }
                }
                b if b == close => {
                    self.emit(if is_map { Event::MappingEnd } else { Event::SequenceEnd }, line.marker(i));
                    return Ok(i + 1);
                }
                _ => return Err(Unsupported),
            }
        }
    }

    /// One node inside a flow collection.
    fn flow_node(&mut self, line: Line<'a>, at: usize, depth: usize) -> Step<usize> {
        match line.byte(at) {
            b'{' | b'[' => self.flow(line, at, depth + 1),
            _ => self.inline_value(line, at, false),
        }
    }
}

/// The byte just after the closing quote of the one-line quoted scalar at `at`.
fn quoted_end(bytes: &[u8], at: usize) -> Option<usize> {
    let quote = *bytes.get(at)?;
    let mut i = at + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 2,
            b if b == quote => {
                if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                    i += 2;
                    continue;
                }
                return Some(i + 1);
            }
            _ => i += 1,
        }
    }
    None
}

/// The one-line quoted scalar at `at`: its text, style and end. `''` in single quotes is one
/// quote; double quotes may hold JSON's escapes.
fn quoted<'a>(line: Line<'a>, at: usize) -> Step<(Cow<'a, str>, ScalarStyle, usize)> {
    let end = quoted_end(line.text.as_bytes(), at).ok_or(Unsupported)?;
    let inner = &line.text[at + 1..end - 1];
    Ok(if line.byte(at) == b'"' {
        let text = if inner.contains('\\') { Cow::Owned(unescape(inner)?) } else { Cow::Borrowed(inner) };
        (text, ScalarStyle::DoubleQuoted, end)
    } else if inner.contains("''") {
        (Cow::Owned(inner.replace("''", "'")), ScalarStyle::SingleQuoted, end)
    } else {
        (Cow::Borrowed(inner), ScalarStyle::SingleQuoted, end)
    })
}

/// JSON's escapes (`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, `\uXXXX` outside the
/// surrogates); any other escape is left to the full parser.
fn unescape(inner: &str) -> Step<String> {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next().ok_or(Unsupported)? {
            '"' => '"',
            '\\' => '\\',
            '/' => '/',
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16).map_err(|_| Unsupported)?;
                if hex.len() != 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Unsupported);
                }
                char::from_u32(code).ok_or(Unsupported)?
            }
            _ => return Err(Unsupported),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts that the fast path handles `src` and agrees with the full parser.
    fn agrees(src: &str) {
        match check_against_full_parser(src) {
            Ok(true) => {}
            Ok(false) => panic!("fast path declined:\n{src}"),
            Err(e) => panic!("{e}:\n{src}"),
        }
    }

    fn declines(src: &str) {
        assert!(scan(src).is_none(), "fast path should decline:\n{src}");
    }

    #[test]
    fn block_manifests_agree_with_the_full_parser() {
        agrees("kind: A\n");
        agrees(
            "---\n# c\napiVersion: v1\nkind: Pod\nmetadata:\n  name: x  # trailing\n  labels: {app: x, 'b': \"c\"}\n",
        );
        agrees(
            "spec:\n  egress:\n  - to:\n    - podSelector: {}\n    ports:\n    - port: 53\n      protocol: UDP\n  - {}\n",
        );
        agrees("list:\n    - a\n    -\n    - 'q'\nz: x y  # comment\nempty:\ne2: []\n");
        agrees("- a\n- b: 1\n  c: 2\n-\n  d: 3\n- [1, 'x', \"y\", {a: b}]\n");
        agrees("  indented: root\n  next: 1\n");
        // Found by the fuzz target: an indentless sequence whose first dash has trailing spaces.
        agrees("to:\n- \n  app: foo\nx: 1\n");
        agrees("to:\n-   \n  app: foo\n");
        agrees("to:\n-\n  app: foo\n");
        agrees("- \n- x\n-   \n-\n");
        agrees("to:\n- # c\n  app: foo\n");
        agrees("a:\n  -   \n  - x\nb:   \nc: 1\n");
        agrees("- # c\n- x\n");
        agrees("a:\n  - # c\n  - y\n");
        agrees("a: # c\nb: 1\nc:   # c\n");
        agrees("a:\n  b:\n    c:\nd: \"\"\ne: ''\nf: 'it''s'\ng: a#b\nh: a:b\ni: -1\nj: x - y\n");
        agrees("k: {\"a\":1, \"b\": [x, y]}\nl: [ ]\nm: { }\nn: café\nnämé: ü # c\n");
        agrees("a: [x - , x --, x -y, x ?, x ? , x :y]\nb: {c: x - y, d: x ? y}\ne: d- -\n");
        agrees("s: \"a\\\"b\\\\c\\/d\\n\\t\\u00e9\"\nt: [\"x\\\"\"]\nu: {image: nginx:1.25, ip: 2001:db8::1}\n");
        agrees("o: [[1, 2], [3]]\np: {a: {b: {c: d}}}\nq: http://example.com/a?b=c\nr: 10.0.0.0/8\n");
    }

    #[test]
    fn one_line_json_documents_agree_with_the_full_parser() {
        agrees(
            r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"a","namespace":"b","labels":{"x":"y"}},"spec":{"podSelector":{},"policyTypes":["Egress"],"egress":[{"to":[{"ipBlock":{"cidr":"10.0.0.0/8","except":["10.1.0.0/16"]}}],"ports":[{"port":53,"protocol":"UDP"},{"port":443}]}]}}"#,
        );
        agrees("{\"a\": 1, \"b\": [true, false, null, 1.5, \"\\u00e9\\n\"], \"c\": {}}\n");
        agrees("---\n{\"a\":{\"b\":[]}}   # c\n\n# trailing comment\n");
        agrees("  [1, \"two\", {\"three\": 3}]\n");
        agrees("{}\n");
        agrees("[]");
        agrees("{a: b, c: [d]}\n");
        // Not one JSON document on its line: the full parser's.
        declines("{\"a\": 1}\nb: 2\n");
        declines("{\"a\": 1}\n{\"b\": 2}\n");
        declines("{\"a\": 1}: b\n");
        declines("{\"a\": 1} x\n");
        declines("{\"a\": -1}\n");
        declines("{\"a\": 1,}\n");
        declines("{\"a\": \"\\ud800\"}\n");
        declines("[1,\n 2]\n");
    }

    #[test]
    fn everything_else_goes_to_the_full_parser() {
        declines("a: &x 1\nb: *x\n");
        declines("a: !!str 1\n");
        declines("a: |\n  text\n");
        declines("a: >-\n  text\n");
        declines("a: multi\n  line\n");
        declines("a: \"esc\\x41\"\n");
        declines("a: \"\\ud800\"\n");
        declines("a: \"open\n  quote\"\n");
        declines("a: [1,\n  2]\n");
        declines("a:\n\tb: 1\n");
        declines("a: 1\r\n");
        declines("? complex\n: key\n");
        declines("a: b: c\n");
        declines("scalar document\n");
        declines("{\"json\": \"multi-line\",\n \"x\": 1}\n");
        declines("a: 1\n---\nb: 2\n");
        declines("a: [1, 2, ]\n");
        declines("a: {b}\n");
        declines("- - nested\n");
        declines("a: 1\n b: 2\n");
        declines("%YAML 1.2\n---\na: 1\n");
        declines("a: @x\n");
        declines("# only a comment\n");
        // Found by the fuzz target: the full parser refuses unprintable characters.
        declines("kind: Service\0");
        declines("a: b\u{1}c\n");
        declines("a: b\u{7f}\n");
        declines("a: b\u{85}c\n");
        declines("a: b\u{2028}c\n");
        // Found by the fuzz target: the full parser refuses ` -` before a flow indicator.
        declines("a: {b: d- -}\n");
        declines("a: [x -, y]\n");
        declines("a: [x -]\n");
        // Found by the fuzz target: implicit keys are limited to 1,024 characters.
        declines(&format!("- {}: x\n", "k".repeat(1100)));
        declines(&format!("{}: x\n", "k".repeat(1100)));
        agrees(&format!("{}: x\n", "k".repeat(900)));
    }

    #[test]
    fn errors_are_left_to_the_full_parser() {
        for src in ["a: 1\n- b\n", "- a\nb: 1\n", "a: [1, 2\n", "a: 'x' y\n", "a: {b: c}}\n"] {
            declines(src);
        }
    }
}
