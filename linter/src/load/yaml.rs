//! YAML (and therefore JSON) documents to `serde_json::Value`, with source positions on demand.
//!
//! One parser, `saphyr-parser`, drives everything (see `docs/decisions.md`); the common block
//! style of manifests takes a fast path ([`super::block`]) that yields the very same events. A
//! file is first cut into documents at `---`/`...` lines, so a syntax error in one document never
//! hides the others.
//! Each document is parsed once into a `Value`; positions of individual keys are only computed
//! when a finding needs them, by re-reading that one document (findings are rare, objects are
//! many, so the hot path allocates no position index).

use std::borrow::Cow;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, ScanError, Span, StrInput, Tag};
use serde_json::{Map, Number, Value};

use super::Position;

/// Deepest nesting accepted; deeper input is reported, not recursed into.
pub const MAX_DEPTH: usize = 128;
/// Most nodes one document may expand to (aliases included): stops "billion laughs" input.
pub const MAX_NODES_PER_DOCUMENT: usize = 1_000_000;

/// One document's text inside its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Byte offset of the chunk in the file.
    pub offset: usize,
    /// Byte length.
    pub len: usize,
    /// 1-based line of the chunk's first line.
    pub first_line: usize,
}

/// A parse failure, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub position: Position,
    pub message: String,
}

/// Cuts `text` into chunks that each hold at most one YAML document.
///
/// YAML forbids `---` and `...` at the start of a line inside content (they end block scalars
/// too), so cutting there is exact. Lines holding only comments, directives or blanks stay with
/// the document that follows them.
pub fn split_documents(text: &str) -> Vec<Chunk> {
    // Only marker lines (`---`, `...` at the start of a line) can cut a document, so they are
    // found with a vectorised search; the lines between two markers are looked at only until
    // one with content shows up (usually the first). This runs over every byte of every input.
    let mut chunks = Vec::new();
    let mut lines = LineCounter::default();
    let mut start = 0usize;
    let mut has_content = false;
    // Lines before this offset have been looked at for content.
    let mut scanned = 0usize;
    for (offset, is_end) in marker_lines(text) {
        has_content = has_content || any_content(text, scanned, offset);
        let next = next_line(text, offset);
        if !is_end && has_content {
            chunks.push(Chunk { offset: start, len: offset - start, first_line: lines.line_at(text, start) });
            start = offset;
            has_content = false;
        }
        if is_end {
            if has_content {
                chunks.push(Chunk { offset: start, len: next - start, first_line: lines.line_at(text, start) });
            }
            start = next;
            has_content = false;
        } else {
            // `--- {a: 1}` carries content on the marker line itself.
            let rest = text[offset + 3..next].trim_end_matches(['\n', '\r']);
            has_content |= !rest.trim().is_empty() && !rest.trim_start().starts_with('#');
        }
        scanned = next;
    }
    if has_content || any_content(text, scanned, text.len()) {
        chunks.push(Chunk { offset: start, len: text.len() - start, first_line: lines.line_at(text, start) });
    }
    chunks
}

/// Offsets of the lines that are document markers, in order, each with whether it is an end
/// marker (`...`) rather than a start marker (`---`).
fn marker_lines(text: &str) -> impl Iterator<Item = (usize, bool)> + '_ {
    let bytes = text.as_bytes();
    let at_line_start = |marker: &'static [u8]| {
        let first = bytes.starts_with(marker).then_some(0);
        // The match is at the newline before the marker.
        let rest = memchr::memmem::find_iter(bytes, &[b"\n", marker].concat()).map(|i| i + 1).collect::<Vec<_>>();
        first.into_iter().chain(rest)
    };
    let mut starts = at_line_start(b"---").peekable();
    let mut ends = at_line_start(b"...").peekable();
    std::iter::from_fn(move || {
        let is_end = match (starts.peek(), ends.peek()) {
            (Some(s), Some(e)) => e < s,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (None, None) => return None,
        };
        let offset = if is_end { ends.next() } else { starts.next() }?;
        Some((offset, is_end))
    })
    .filter(|&(offset, is_end)| {
        let line = text[offset..next_line(text, offset)].trim_end_matches(['\n', '\r']);
        marker_line(line, if is_end { "..." } else { "---" })
    })
}

/// Whether any line in `from..to` (whole lines) has content: not blank, not a comment, not a
/// directive.
fn any_content(text: &str, mut from: usize, to: usize) -> bool {
    while from < to {
        let next = next_line(text, from);
        let body = text[from..next].trim_end_matches(['\n', '\r']);
        let t = body.trim_start();
        if !(t.is_empty() || t.starts_with('#') || (t.starts_with('%') && body.starts_with('%'))) {
            return true;
        }
        from = next;
    }
    false
}

/// 1-based line numbers of increasing offsets, counting each newline once.
#[derive(Default)]
struct LineCounter {
    offset: usize,
    newlines: usize,
}

impl LineCounter {
    fn line_at(&mut self, text: &str, offset: usize) -> usize {
        if let Some(between) = text.as_bytes().get(self.offset..offset) {
            self.newlines += memchr::memchr_iter(b'\n', between).count();
            self.offset = offset;
        }
        self.newlines + 1
    }
}

/// The start of the line after the one starting at `offset` (or the end of `text`).
pub(crate) fn next_line(text: &str, offset: usize) -> usize {
    let bytes = text.as_bytes();
    match bytes.get(offset..).and_then(|rest| memchr::memchr(b'\n', rest)) {
        Some(i) => offset + i + 1,
        None => bytes.len(),
    }
}

fn marker_line(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker).is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
}

/// The parser events of one document: the fast path's when the document is in its subset, else
/// the full parser's (identical wherever both answer).
pub enum Events<'a> {
    Fast(std::vec::IntoIter<(Event<'a>, Span)>),
    Full(Box<Parser<'a, StrInput<'a>>>),
}

impl std::fmt::Debug for Events<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Events::Fast(_) => "Events::Fast",
            Events::Full(_) => "Events::Full",
        })
    }
}

impl<'a> Events<'a> {
    pub fn new(src: &'a str) -> Events<'a> {
        match super::block::scan(src) {
            Some(events) => Events::Fast(events.into_iter()),
            None => Events::Full(Box::new(Parser::new_from_str(src).keep_tags(true))),
        }
    }
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<(Event<'a>, Span), ScanError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Events::Fast(events) => events.next().map(Ok),
            Events::Full(parser) => parser.next_event(),
        }
    }
}

/// Parses one chunk into its document value (`None` for a chunk with no document).
pub fn parse_chunk(text: &str, chunk: Chunk) -> Result<Option<Value>, SyntaxError> {
    build_value(Events::new(&text[chunk.offset..chunk.offset + chunk.len]), chunk)
}

/// Builds the document value of one chunk's events (`None` for a chunk with no document).
pub fn build_value<'a>(
    events: impl IntoIterator<Item = Result<(Event<'a>, Span), ScanError>>,
    chunk: Chunk,
) -> Result<Option<Value>, SyntaxError> {
    let mut builder = ValueBuilder::default();
    for event in events {
        let (event, span) = event.map_err(|e| SyntaxError {
            position: position_in(chunk, e.marker().line(), e.marker().col()),
            message: e.info().to_owned(),
        })?;
        if let Err((message, at)) = builder.push(event, span.start) {
            let at = at.unwrap_or(span.start);
            return Err(SyntaxError { position: position_in(chunk, at.line(), at.col()), message });
        }
        if builder.documents > 1 {
            // Cannot happen after `split_documents`, but never merge two documents silently.
            return Err(SyntaxError {
                position: position_in(chunk, span.start.line(), span.start.col()),
                message: "more than one document in one chunk".to_owned(),
            });
        }
    }
    Ok(builder.root.take())
}

fn position_in(chunk: Chunk, line: usize, col: usize) -> Position {
    Position { line: chunk.first_line + line.saturating_sub(1), column: col + 1 }
}

/// An open collection: where its items start on the builder's item stacks, and its anchor.
#[derive(Debug)]
enum Frame {
    Seq {
        start: usize,
        anchor: usize,
    },
    /// `key`: the key awaiting its value.
    Map {
        start: usize,
        key: Option<(String, Marker)>,
        anchor: usize,
    },
}

/// Builds a `Value` from parser events with an explicit stack (no recursion on input depth).
///
/// Items of open collections wait on two shared stacks and each collection is allocated once,
/// at its exact size, when it closes: a run keeps hundreds of thousands of small maps, and
/// growing each one entry by entry leaves most of their memory as spare capacity.
#[derive(Debug, Default)]
struct ValueBuilder {
    stack: Vec<Frame>,
    items: Vec<Value>,
    /// Entries of open mappings, with where each key was written.
    entries: Vec<(String, Marker, Value)>,
    anchors: Vec<(usize, Value)>,
    root: Option<Value>,
    documents: usize,
    nodes: usize,
}

/// A build failure and, when it is not the current event, where it is.
type BuildError = (String, Option<Marker>);

impl ValueBuilder {
    fn push(&mut self, event: Event<'_>, at: Marker) -> Result<(), BuildError> {
        match event {
            Event::DocumentStart(_) => self.documents += 1,
            Event::Scalar(text, style, anchor, tag) => {
                let value = resolve_scalar(text, style, tag.as_deref()).map_err(|e| (e, None))?;
                self.finish(value, anchor, at)?;
            }
            Event::SequenceStart(anchor, _) => self.open(Frame::Seq { start: self.items.len(), anchor })?,
            Event::MappingStart(anchor, _) => {
                self.open(Frame::Map { start: self.entries.len(), key: None, anchor })?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { start, anchor }) => (Value::Array(self.items.split_off(start)), anchor),
                    Some(Frame::Map { start, anchor, .. }) => (Value::Object(self.close_map(start)?), anchor),
                    None => return Err(("unbalanced collection end".to_owned(), None)),
                };
                self.finish(value, anchor, at)?;
            }
            Event::Alias(id) => {
                let value = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(a, _)| *a == id)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| ("alias to an unknown anchor".to_owned(), None))?;
                self.nodes += count_nodes(&value);
                self.finish(value, 0, at)?;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        Ok(())
    }

    fn open(&mut self, frame: Frame) -> Result<(), BuildError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err((format!("nesting deeper than {MAX_DEPTH} levels"), None));
        }
        self.stack.push(frame);
        Ok(())
    }

    fn finish(&mut self, value: Value, anchor: usize, at: Marker) -> Result<(), BuildError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES_PER_DOCUMENT {
            return Err((format!("document expands to more than {MAX_NODES_PER_DOCUMENT} nodes (alias bomb?)"), None));
        }
        if anchor != 0 {
            self.anchors.push((anchor, value.clone()));
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq { .. }) => self.items.push(value),
            Some(Frame::Map { key: key @ None, .. }) => *key = Some((key_string(value).map_err(|e| (e, None))?, at)),
            Some(Frame::Map { key: key @ Some(_), .. }) => {
                if let Some((k, key_at)) = key.take() {
                    self.entries.push((k, key_at, value));
                }
            }
        }
        Ok(())
    }

    /// The mapping whose entries start at `start` on the entry stack.
    fn close_map(&mut self, start: usize) -> Result<Map<String, Value>, BuildError> {
        let mut map = Map::with_capacity(self.entries.len() - start);
        // Keys that came from merge keys: an explicit key overrides them.
        let mut merged: Vec<String> = Vec::new();
        for (k, at, value) in self.entries.drain(start..) {
            if k == "<<" {
                merge_into(&mut map, value, &mut merged).map_err(|e| (e, Some(at)))?;
            } else if let Some(i) = merged.iter().position(|m| *m == k) {
                merged.swap_remove(i);
                map.insert(k, value);
            } else {
                match map.entry(k) {
                    // The API server's decoder rejects duplicate keys; so do we.
                    serde_json::map::Entry::Occupied(e) => {
                        return Err((format!("duplicate key {:?}", e.key()), Some(at)));
                    }
                    serde_json::map::Entry::Vacant(e) => {
                        e.insert(value);
                    }
                }
            }
        }
        Ok(map)
    }
}

fn count_nodes(value: &Value) -> usize {
    let mut count = 0;
    let mut todo = vec![value];
    while let Some(v) = todo.pop() {
        count += 1;
        match v {
            Value::Array(items) => todo.extend(items),
            Value::Object(map) => todo.extend(map.values()),
            _ => {}
        }
    }
    count
}

/// YAML merge keys (`<<: *base`), which Kubernetes' YAML decoder honours: keys already present win.
fn merge_into(map: &mut Map<String, Value>, value: Value, merged: &mut Vec<String>) -> Result<(), String> {
    let sources = match value {
        Value::Object(m) => vec![m],
        Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Value::Object(m) => Ok(m),
                _ => Err("merge key `<<` expects a mapping or a list of mappings".to_owned()),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err("merge key `<<` expects a mapping or a list of mappings".to_owned()),
    };
    for source in sources {
        for (k, v) in source {
            if !map.contains_key(&k) {
                merged.push(k.clone());
                map.insert(k, v);
            }
        }
    }
    Ok(())
}

pub(crate) fn key_string(value: Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Ok("null".to_owned()),
        Value::Array(_) | Value::Object(_) => Err("a mapping key must be a scalar, found a collection".to_owned()),
    }
}

/// Resolves a scalar with the YAML 1.2 core schema (JSON-compatible), honouring `!!str` and
/// friends; quoted scalars are always strings.
fn resolve_scalar(text: Cow<'_, str>, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(tag) = tag.filter(|t| t.is_yaml_core_schema()) {
        return match tag.suffix.as_str() {
            "null" => Ok(Value::Null),
            "bool" => plain_bool(&text).map(Value::Bool).ok_or_else(|| format!("{text:?} is not a !!bool")),
            "int" | "float" => plain_number(&text).ok_or_else(|| format!("{text:?} is not a !!{}", tag.suffix)),
            _ => Ok(Value::String(text.into_owned())),
        };
    }
    Ok(resolve_untagged(&text, style).unwrap_or_else(|| Value::String(text.into_owned())))
}

/// What an untagged scalar stands for under the core schema, or `None` when it is the string
/// of its own text (every quoted scalar, and most plain ones).
pub(crate) fn resolve_untagged(t: &str, style: ScalarStyle) -> Option<Value> {
    if style != ScalarStyle::Plain {
        return None;
    }
    // Most plain scalars are words; only those starting like a number, bool or null need more.
    let first = t.as_bytes().first().copied().unwrap_or(b'~');
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.' | b'~' | b'n' | b'N' | b't' | b'T' | b'f' | b'F'))
    {
        return None;
    }
    if matches!(t, "" | "~" | "null" | "Null" | "NULL") {
        return Some(Value::Null);
    }
    if let Some(b) = plain_bool(t) {
        return Some(Value::Bool(b));
    }
    plain_number(t)
}

fn plain_bool(t: &str) -> Option<bool> {
    match t {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn plain_number(t: &str) -> Option<Value> {
    let first = *t.as_bytes().first()?;
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return None;
    }
    let (sign, digits) = match t.strip_prefix('-') {
        Some(rest) => (-1i64, rest),
        None => (1, t.strip_prefix('+').unwrap_or(t)),
    };
    if let Some(hex) = digits.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(|n| Value::from(sign * n));
    }
    if let Some(oct) = digits.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok().map(|n| Value::from(sign * n));
    }
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = t.trim_start_matches('+').parse::<i64>() {
            return Some(Value::from(n));
        }
        if let Ok(n) = digits.parse::<u64>()
            && sign > 0
        {
            return Some(Value::from(n));
        }
    }
    match digits {
        ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN" => {
            // JSON has no infinities; keep the text so a type error names it.
            return Some(Value::String(t.to_owned()));
        }
        _ => {}
    }
    let is_float = digits.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && digits.bytes().any(|b| b.is_ascii_digit())
        && !digits.starts_with(['e', 'E']);
    if is_float && let Ok(f) = t.parse::<f64>() {
        return Number::from_f64(f).map(Value::Number);
    }
    None
}

/// Where a key path (JSON pointer, relative to the document) starts in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSpan {
    /// The key of the mapping entry holding the node (absent for sequence items and the root).
    pub key: Option<Position>,
    /// The node's value.
    pub value: Position,
}

/// One open collection on the path of the node being read by [`locate`].
#[derive(Debug)]
enum Level<'a> {
    Seq { index: usize },
    Map { key: Option<Cow<'a, str>>, key_pos: Option<Position>, expecting_key: bool },
}

/// Walks a chunk's nodes in document order, calling `visit` with the open collections above
/// each node that is not a mapping key, and the node's span; `visit` returns `false` to stop.
/// The one event walk [`locate`] and [`index_nodes`] share. Complex keys (never in manifests)
/// end the walk rather than mis-track.
fn walk_nodes<'a>(src: &'a str, chunk: Chunk, mut visit: impl FnMut(&[Level<'a>], NodeSpan) -> bool) {
    let mut levels: Vec<Level<'a>> = Vec::new();
    let pos = |span: &Span| position_in(chunk, span.start.line(), span.start.col());
    for (event, span) in Events::new(src).map_while(Result::ok) {
        let starts_node =
            matches!(event, Event::Scalar(..) | Event::SequenceStart(..) | Event::MappingStart(..) | Event::Alias(_));
        if starts_node {
            if matches!(levels.last(), Some(Level::Map { expecting_key: true, .. })) {
                let Event::Scalar(text, ..) = event else { return };
                if let Some(Level::Map { key, key_pos, expecting_key }) = levels.last_mut() {
                    *key = Some(text);
                    *key_pos = Some(pos(&span));
                    *expecting_key = false;
                }
                continue;
            }
            let key = match levels.last() {
                Some(Level::Map { key_pos, .. }) => *key_pos,
                _ => None,
            };
            if !visit(&levels, NodeSpan { key, value: pos(&span) }) {
                return;
            }
        }
        match event {
            Event::SequenceStart(..) => levels.push(Level::Seq { index: 0 }),
            Event::MappingStart(..) => levels.push(Level::Map { key: None, key_pos: None, expecting_key: true }),
            Event::SequenceEnd | Event::MappingEnd => {
                levels.pop();
                advance(&mut levels);
            }
            Event::Scalar(..) | Event::Alias(_) => advance(&mut levels),
            _ => {}
        }
    }
}

/// Finds the deepest node along `pointer` that exists in the chunk, and how deep it got.
///
/// Returns the span of the deepest existing ancestor when the full path does not exist (e.g. a
/// finding about a missing `policyTypes` points at `spec`).
/// `None` too when the chunk is not in `text` (a file whose text is not the one its documents
/// were read from: a cached parse whose file changed since).
pub fn locate(text: &str, chunk: Chunk, pointer: &str) -> Option<(NodeSpan, bool)> {
    let src = text.get(chunk.offset..chunk.offset.saturating_add(chunk.len))?;
    let target: Vec<String> = pointer_segments(pointer);
    let mut best: Option<(NodeSpan, usize)> = None;
    let mut found = None;
    walk_nodes(src, chunk, |levels, node| {
        // How many leading path segments the open collections match.
        let mut depth = 0;
        for (i, level) in levels.iter().enumerate() {
            let Some(want) = target.get(i) else { break };
            let ok = match level {
                Level::Seq { index } => want.parse::<usize>().ok() == Some(*index),
                Level::Map { key, .. } => key.as_deref() == Some(want.as_str()),
            };
            if !ok {
                break;
            }
            depth += 1;
        }
        if depth == levels.len() {
            if best.is_none_or(|(_, d)| depth >= d) {
                best = Some((node, depth));
            }
            if depth == target.len() {
                found = Some(node);
                return false;
            }
        }
        true
    });
    match found {
        Some(node) => Some((node, true)),
        None => best.map(|(node, _)| (node, false)),
    }
}

/// Every node of a chunk by its JSON pointer, in one pass: what [`locate`] finds for each
/// pointer, for documents looked up many times (a `kind: List` with a finding per item would
/// otherwise be read once per finding).
pub fn index_nodes(text: &str, chunk: Chunk) -> std::collections::HashMap<String, NodeSpan> {
    let mut out = std::collections::HashMap::new();
    let Some(src) = text.get(chunk.offset..chunk.offset.saturating_add(chunk.len)) else { return out };
    walk_nodes(src, chunk, |levels, node| {
        let mut pointer = String::new();
        for level in levels {
            pointer.push('/');
            match level {
                Level::Seq { index } => pointer.push_str(&index.to_string()),
                Level::Map { key, .. } => {
                    pointer.push_str(&key.as_deref().unwrap_or_default().replace('~', "~0").replace('/', "~1"))
                }
            }
        }
        // The first node of a path wins, as in `locate` (a duplicate key is an error anyway).
        out.entry(pointer).or_insert(node);
        true
    });
    out
}

/// After a node ends: the next sequence item, or the next key of a mapping.
fn advance(levels: &mut [Level<'_>]) {
    match levels.last_mut() {
        Some(Level::Seq { index }) => *index += 1,
        Some(Level::Map { expecting_key, .. }) => *expecting_key = true,
        None => {}
    }
}

/// Splits an RFC 6901 JSON pointer into unescaped segments.
pub fn pointer_segments(pointer: &str) -> Vec<String> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer.trim_start_matches('/').split('/').map(|s| s.replace("~1", "/").replace("~0", "~")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_all(text: &str) -> Vec<Result<Option<Value>, SyntaxError>> {
        split_documents(text).into_iter().map(|c| parse_chunk(text, c)).collect()
    }

    #[test]
    fn a_chunk_outside_the_text_locates_nothing() {
        // A document read from another version of the file (or a text never read).
        let text = "a: 1\nb: 2\n";
        let chunk = split_documents(text)[0];
        for other in ["", "a: 1\n"] {
            assert_eq!(locate(other, chunk, "/b"), None);
            assert!(index_nodes(other, chunk).is_empty());
        }
        let inside = Chunk { offset: 1, len: 2, first_line: 1 };
        assert_eq!(locate("é", inside, "/a"), None, "not on a character boundary");
    }

    #[test]
    fn splits_multi_document_streams_and_keeps_line_numbers() {
        let text = "# header\na: 1\n---\nb: 2\n--- # c\nc: 3\n...\n";
        let chunks = split_documents(text);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].first_line, 1);
        assert_eq!(chunks[1].first_line, 3);
        assert_eq!(chunks[2].first_line, 5);
        let values: Vec<_> = parse_all(text).into_iter().map(|r| r.unwrap().unwrap()).collect();
        assert_eq!(values, vec![json!({"a": 1}), json!({"b": 2}), json!({"c": 3})]);
    }

    /// The splitter as the YAML spec reads: every line in turn (the oracle for the vectorised one).
    fn split_line_by_line(text: &str) -> Vec<Chunk> {
        let (mut chunks, mut start, mut start_line, mut has_content) = (Vec::new(), 0, 1, false);
        let mut offset = 0;
        for (i, line) in text.split_inclusive('\n').enumerate() {
            let (next, line_no) = (offset + line.len(), i + 1);
            let body = line.trim_end_matches(['\n', '\r']);
            let (is_start, is_end) = (marker_line(body, "---"), marker_line(body, "..."));
            if is_start && has_content {
                chunks.push(Chunk { offset: start, len: offset - start, first_line: start_line });
                (start, start_line, has_content) = (offset, line_no, false);
            }
            if is_end {
                if has_content {
                    chunks.push(Chunk { offset: start, len: next - start, first_line: start_line });
                }
                (start, start_line, has_content) = (next, line_no + 1, false);
            } else if is_start {
                has_content |= !body[3..].trim().is_empty() && !body[3..].trim_start().starts_with('#');
            } else if !has_content {
                let t = body.trim_start();
                has_content = !(t.is_empty() || t.starts_with('#') || (t.starts_with('%') && body.starts_with('%')));
            }
            offset = next;
        }
        if has_content {
            chunks.push(Chunk { offset: start, len: offset - start, first_line: start_line });
        }
        chunks
    }

    #[test]
    fn the_marker_search_splits_as_reading_every_line_does() {
        let texts = [
            "",
            "\n",
            "---",
            "---\n",
            "...\n",
            "a: 1",
            "a: 1\n---",
            "--- {a: 1}\n--- # c\n---\tb\n",
            "%YAML 1.2\n---\na: 1\n...\n%TAG ! x\n---\nb: 2\n",
            "a: |\n  ---\n  ...\n---x\n----\n...x\n....\n-- -\n",
            "# c\n\n  # d\n---\n---\n\n...\n...\nk: v\r\n---\r\nj: w\r\n...\r\n",
            "x: 1\n---\n...\n---\n  \n--- \n... # end\ny: 2",
            "  %not-a-directive\n---\n%directive\n",
        ];
        for text in texts {
            assert_eq!(split_documents(text), split_line_by_line(text), "{text:?}");
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testcases");
        let mut todo = vec![dir];
        let mut files = 0;
        while let Some(dir) = todo.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    todo.push(path);
                } else if let Ok(text) = std::fs::read_to_string(&path) {
                    files += 1;
                    assert_eq!(split_documents(&text), split_line_by_line(&text), "{}", path.display());
                }
            }
        }
        assert!(files > 100, "only {files} testcase files read");
    }

    #[test]
    fn leading_separator_and_comment_only_chunks_do_not_make_documents() {
        let text = "---\n# only a comment\n---\nkind: A\n---\n";
        assert_eq!(split_documents(text).len(), 1);
    }

    #[test]
    fn a_broken_document_does_not_hide_the_next_one() {
        let text = "a: [1, 2\n---\nb: 2\n";
        let results = parse_all(text);
        assert!(results[0].is_err());
        assert_eq!(results[1].as_ref().unwrap().as_ref().unwrap(), &json!({"b": 2}));
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let text =
            "a: 1\nb: '1'\nc: true\nd: ~\ne: 1.5\nf: 0x1F\ng: yes\nh: !!str 80\ni: -3\nj: \"\"\nk: 1e3\nl: 1.2.3.4\n";
        let v = parse_all(text).remove(0).unwrap().unwrap();
        assert_eq!(
            v,
            json!({"a": 1, "b": "1", "c": true, "d": null, "e": 1.5, "f": 31, "g": "yes", "h": "80", "i": -3, "j": "", "k": 1000.0, "l": "1.2.3.4"})
        );
    }

    #[test]
    fn json_and_flow_style_parse() {
        let text = "{ \"kind\": \"List\", items: [ {a: 1}, {b: [2, 3]} ] }";
        let v = parse_all(text).remove(0).unwrap().unwrap();
        assert_eq!(v, json!({"kind": "List", "items": [{"a": 1}, {"b": [2, 3]}]}));
    }

    #[test]
    fn anchors_aliases_and_merge_keys_expand() {
        let text = "base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\nlist: [*b]\n";
        let v = parse_all(text).remove(0).unwrap().unwrap();
        assert_eq!(v["use"], json!({"y": 3, "x": 1}));
        assert_eq!(v["list"], json!([{"x": 1, "y": 2}]));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let prev = i - 1;
            text.push_str(&format!("a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"));
        }
        let err = parse_all(&text).remove(0).unwrap_err();
        assert!(err.message.contains("more than"), "{err:?}");
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let text = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = parse_all(&text).remove(0).unwrap_err();
        assert!(err.message.contains("nesting") || err.message.contains("recursion"), "{err:?}");
    }

    #[test]
    fn duplicate_keys_are_errors_with_a_position() {
        let text = "kind: A\nmetadata:\n  name: a\n  name: b\n";
        let err = parse_all(text).remove(0).unwrap_err();
        assert!(err.message.contains("duplicate key \"name\""));
        assert_eq!(err.position.line, 4);
    }

    #[test]
    fn syntax_errors_point_at_the_line_in_the_file() {
        let text = "a: 1\n---\nb: 2\nc: [\n";
        let err = parse_all(text).remove(1).unwrap_err();
        assert!(err.position.line >= 4, "{err:?}");
    }

    #[test]
    fn locate_finds_keys_and_items_and_falls_back_to_ancestors() {
        let text = "x: 0\n---\nspec:\n  egress:\n  - to:\n    - podSelector: {}\n    ports:\n    - port: 53\n";
        let chunk = split_documents(text)[1];
        let (span, exact) = locate(text, chunk, "/spec/egress/0/ports/0/port").unwrap();
        assert!(exact);
        assert_eq!(span.key, Some(Position { line: 8, column: 7 }));
        assert_eq!(span.value, Position { line: 8, column: 13 });
        let (span, exact) = locate(text, chunk, "/spec/policyTypes").unwrap();
        assert!(!exact);
        assert_eq!(span.key, Some(Position { line: 3, column: 1 }));
        let (span, _) = locate(text, chunk, "/spec/egress/0/to/0").unwrap();
        assert_eq!(span.value, Position { line: 6, column: 7 });
    }
}
