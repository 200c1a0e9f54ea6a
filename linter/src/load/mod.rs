//! Loading manifests: bytes → documents with source positions.
//!
//! [`scan_source`] and [`parse_source`] are pure (text in, documents and load problems out):
//! the first hands over fast-path documents as events ([`block`]) so controllers can be typed
//! straight from them ([`de`]), the second builds every document's value. [`fs`] is the thin
//! filesystem and stdin shell around them used by the CLI.

pub mod block;
pub mod de;
pub mod fs;
pub mod glob;
pub mod yaml;

use std::collections::HashMap;
use std::sync::Arc;

use saphyr_parser::{Event, Span};
use serde_json::Value;

pub use yaml::{Chunk, NodeSpan};

/// A 1-based line and 1-based column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    pub const START: Position = Position { line: 1, column: 1 };
}

/// Index of a [`SourceFile`] in a [`Sources`] table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceId(pub u32);

/// One input file (or stdin) with its text, kept for locating findings and showing source lines.
#[derive(Debug)]
pub struct SourceFile {
    /// The name shown to users: the path as given, or `<stdin>`.
    pub name: String,
    /// The UTF-8 text; empty when the input was rejected before parsing.
    pub text: String,
    /// Whether findings in this file are reported (false for `--context` inputs).
    pub reported: bool,
}

impl SourceFile {
    /// The text of 1-based line `line`, without its newline.
    pub fn line_text(&self, line: usize) -> Option<&str> {
        self.text.lines().nth(line.checked_sub(1)?)
    }
}

/// All input files of a run.
#[derive(Debug, Default)]
pub struct Sources {
    files: Vec<Arc<SourceFile>>,
}

impl Sources {
    pub fn add(&mut self, file: SourceFile) -> SourceId {
        // Runs hold far fewer than 2^32 files; the loader stops long before.
        let id = SourceId(u32::try_from(self.files.len()).unwrap_or(u32::MAX));
        self.files.push(Arc::new(file));
        id
    }

    pub fn get(&self, id: SourceId) -> Option<&SourceFile> {
        self.files.get(id.0 as usize).map(Arc::as_ref)
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (SourceId, &SourceFile)> {
        self.files.iter().enumerate().map(|(i, f)| (SourceId(i as u32), f.as_ref()))
    }

    /// Where `pointer` (relative to the document) starts in the source. Points at the key of a
    /// mapping entry when there is one (that is what people look for), else at the value.
    pub fn locate(&self, doc: &DocumentRef, pointer: &str) -> Position {
        let Some(file) = self.get(doc.source) else { return Position::START };
        match yaml::locate(&file.text, doc.chunk, pointer) {
            Some((span, _)) => span.key.unwrap_or(span.value),
            None => doc.start,
        }
    }
}

/// [`Sources::locate`] with a memory: findings about the pods of one namespace point at the
/// same policy nodes again and again, and each lookup reads the whole document.
#[derive(Debug)]
pub struct Locator<'a> {
    sources: &'a Sources,
    /// Pointers already looked up, by document (source and chunk offset).
    memo: HashMap<(SourceId, usize), Memo>,
}

/// What a [`Locator`] knows of one document: a few looked-up pointers, or, once a document is
/// asked about often, the position of every node (read in one pass).
#[derive(Debug)]
enum Memo {
    Few(Vec<(String, Position)>),
    Indexed(HashMap<String, yaml::NodeSpan>),
}

/// Distinct pointers looked up in one document before it is indexed whole.
const INDEX_AFTER: usize = 8;

impl<'a> Locator<'a> {
    pub fn new(sources: &'a Sources) -> Locator<'a> {
        Locator { sources, memo: HashMap::new() }
    }

    pub fn sources(&self) -> &'a Sources {
        self.sources
    }

    /// [`Sources::locate`], each document read at most `INDEX_AFTER` + 1 times.
    pub fn locate(&mut self, doc: &DocumentRef, pointer: &str) -> Position {
        let sources = self.sources;
        let memo = self.memo.entry((doc.source, doc.chunk.offset)).or_insert_with(|| Memo::Few(Vec::new()));
        if let Memo::Few(known) = memo {
            if let Some((_, position)) = known.iter().find(|(p, _)| p == pointer) {
                return *position;
            }
            if known.len() < INDEX_AFTER {
                let position = sources.locate(doc, pointer);
                known.push((pointer.to_owned(), position));
                return position;
            }
            let index = sources.get(doc.source).map(|f| yaml::index_nodes(&f.text, doc.chunk)).unwrap_or_default();
            *memo = Memo::Indexed(index);
        }
        let Memo::Indexed(index) = memo else { return sources.locate(doc, pointer) };
        // The deepest existing node along the pointer, as `yaml::locate` answers.
        let mut prefix = pointer;
        loop {
            if let Some(span) = index.get(prefix) {
                return span.key.unwrap_or(span.value);
            }
            match prefix.rfind('/') {
                Some(i) => prefix = &prefix[..i],
                None => return doc.start,
            }
        }
    }
}

/// Where one document lives: its file, its text range and its first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentRef {
    pub source: SourceId,
    /// 0-based index of the document in its file.
    pub index: usize,
    pub chunk: Chunk,
    /// Position of the document's first content.
    pub start: Position,
}

impl DocumentRef {
    /// A document that has no text behind it: an object that arrived as data (an admission
    /// review, a cluster watch). Findings in it resolve to the start of the "file".
    pub fn detached(source: SourceId, index: usize) -> DocumentRef {
        DocumentRef { source, index, chunk: Chunk { offset: 0, len: 0, first_line: 1 }, start: Position::START }
    }
}

/// A parsed document.
#[derive(Debug)]
pub struct Document {
    pub at: DocumentRef,
    pub value: Value,
}

/// Why (part of) an input could not be read as manifests. Becomes a `PC000` finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadProblem {
    pub source: SourceId,
    pub position: Position,
    pub message: String,
}

/// Limits that keep hostile input from exhausting memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest file read, in bytes.
    pub max_file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_file_bytes: 32 * 1024 * 1024 }
    }
}

/// Checks that `bytes` are text we can parse: UTF-8 without NUL bytes.
pub fn decode_text(bytes: Vec<u8>) -> Result<String, (Position, String)> {
    // `contains` on bytes is memchr; the position is only needed for the message.
    if bytes.contains(&0)
        && let Some(at) = bytes.iter().position(|&b| b == 0)
    {
        return Err((
            position_of_byte(&bytes, at),
            format!("binary data (a NUL byte at offset {at}); expected YAML or JSON text"),
        ));
    }
    let mut text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let pos = position_of_byte(e.as_bytes(), at);
        (pos, format!("not UTF-8 text (invalid byte at offset {at}); expected YAML or JSON"))
    })?;
    // A byte order mark is legal in YAML; dropping it keeps columns right on the first line.
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    Ok(text)
}

fn position_of_byte(bytes: &[u8], at: usize) -> Position {
    let before = &bytes[..at.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    Position { line, column: at - line_start + 1 }
}

/// A document the fast path read: its parser events, not yet built into a value.
#[derive(Debug)]
pub struct Scanned<'a> {
    pub at: DocumentRef,
    /// Every event of the document, `StreamStart` to `StreamEnd`.
    pub events: Vec<(Event<'a>, Span)>,
}

impl Scanned<'_> {
    /// The document's value (`Ok(None)`: no document), or why it is invalid.
    pub fn into_document(self) -> Result<Option<Document>, LoadProblem> {
        let Scanned { at, events } = self;
        match yaml::build_value(events.into_iter().map(Ok), at.chunk) {
            Ok(value) => Ok(value.map(|value| Document { at, value })),
            Err(e) => Err(invalid_yaml(at.source, e)),
        }
    }
}

/// One document of a file: a value, or (from the fast path) events the caller may read typed
/// fields from before building the value ([`Scanned::into_document`]).
#[derive(Debug)]
pub enum Parsed<'a> {
    Value(Document),
    Scanned(Scanned<'a>),
}

impl Parsed<'_> {
    pub fn into_document(self) -> Result<Option<Document>, LoadProblem> {
        match self {
            Parsed::Value(document) => Ok(Some(document)),
            Parsed::Scanned(scanned) => scanned.into_document(),
        }
    }
}

fn invalid_yaml(source: SourceId, e: yaml::SyntaxError) -> LoadProblem {
    LoadProblem { source, position: e.position, message: format!("invalid YAML: {}", e.message) }
}

/// Cuts a file's text into documents and hands each to `each`, in order, as soon as it is read:
/// the ones the fast path reads stay events, the others are parsed into values, and unparseable
/// ones become problems. (One document at a time: a file's documents are never all in memory as
/// events at once.)
pub fn scan_source<'a>(source: SourceId, text: &'a str, mut each: impl FnMut(Result<Parsed<'a>, LoadProblem>)) {
    for (index, chunk) in yaml::split_documents(text).into_iter().enumerate() {
        let src = &text[chunk.offset..chunk.offset + chunk.len];
        let at = DocumentRef { source, index, chunk, start: first_content(text, chunk) };
        if let Some(events) = block::scan(src) {
            each(Ok(Parsed::Scanned(Scanned { at, events })));
            continue;
        }
        let full = saphyr_parser::Parser::new_from_str(src).keep_tags(true);
        match yaml::build_value(full, chunk) {
            Ok(Some(value)) => each(Ok(Parsed::Value(Document { at, value }))),
            Ok(None) => {}
            Err(e) => each(Err(invalid_yaml(source, e))),
        }
    }
}

/// Parses a file's text into documents; unparseable documents become problems, the others are
/// still returned.
pub fn parse_source(source: SourceId, text: &str) -> (Vec<Document>, Vec<LoadProblem>) {
    let mut documents = Vec::new();
    let mut problems = Vec::new();
    scan_source(source, text, |parsed| match parsed.and_then(Parsed::into_document) {
        Ok(Some(document)) => documents.push(document),
        Ok(None) => {}
        Err(problem) => problems.push(problem),
    });
    (documents, problems)
}

/// The first line of a chunk that holds content (skipping `---`, comments and blanks).
fn first_content(text: &str, chunk: Chunk) -> Position {
    let src = &text[chunk.offset..chunk.offset + chunk.len];
    for (i, line) in src.lines().enumerate() {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') || t.starts_with('%') || line == "---" {
            continue;
        }
        let column = line.len() - t.len() + 1;
        return Position { line: chunk.first_line + i, column };
    }
    Position { line: chunk.first_line, column: 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_input_is_refused_with_its_offset() {
        let (pos, msg) = decode_text(b"a: 1\nb\x00c".to_vec()).unwrap_err();
        assert_eq!(pos, Position { line: 2, column: 2 });
        assert!(msg.contains("NUL byte at offset 6"));
    }

    #[test]
    fn non_utf8_input_is_refused_with_its_offset() {
        let (pos, msg) = decode_text(b"name: caf\xe9\n".to_vec()).unwrap_err();
        assert_eq!(pos, Position { line: 1, column: 10 });
        assert!(msg.contains("not UTF-8"));
    }

    #[test]
    fn the_locator_answers_as_sources_do_for_each_document() {
        let text = "kind: A\nspec: {x: 1}\n---\nkind: B\nspec:\n  x: 2\n";
        let mut sources = Sources::default();
        let id = sources.add(SourceFile { name: "f".to_owned(), text: text.to_owned(), reported: true });
        let (docs, _) = parse_source(id, text);
        let mut locator = Locator::new(&sources);
        // Twice each: the second answer comes from the memo and must not mix up documents.
        for _ in 0..2 {
            for doc in &docs {
                for pointer in ["/spec/x", "/kind", "/missing"] {
                    assert_eq!(locator.locate(&doc.at, pointer), sources.locate(&doc.at, pointer), "{pointer}");
                }
            }
        }
        assert_eq!(locator.locate(&docs[1].at, "/spec/x"), Position { line: 6, column: 3 });
    }

    /// Regression (issue 16, class 5): a `kind: List` of N policies with a finding each was
    /// read once per finding (1,000 items: 19 s). Past a few lookups a document is indexed in
    /// one pass, and the index answers exactly as a fresh read does.
    #[test]
    fn an_indexed_document_answers_as_a_fresh_read_does() {
        let mut text = String::from("apiVersion: v1\nkind: List\nitems:\n");
        for i in 0..50 {
            text.push_str(&format!(
                "- kind: NetworkPolicy\n  metadata: {{name: p{i}, annotations: {{a/b~c: x}}}}\n  spec:\n    egress:\n    - to: [{{ipBlock: {{cidr: 10.0.0.0/8}}}}]\n"
            ));
        }
        text.push_str("- [flow, 'quoted key': {k: v}]\n");
        let mut sources = Sources::default();
        let id = sources.add(SourceFile { name: "list.yaml".to_owned(), text: text.clone(), reported: true });
        let (docs, _) = parse_source(id, &text);
        let mut locator = Locator::new(&sources);
        let mut pointers =
            vec![String::new(), "/items".to_owned(), "/nope/deeper".to_owned(), "/items/50/1/quoted key/k".to_owned()];
        for i in 0..51 {
            for tail in [
                "",
                "/kind",
                "/metadata/name",
                "/metadata/annotations/a~1b~0c",
                "/spec/egress/0/to/0/ipBlock/cidr",
                "/spec/policyTypes",
                "/spec/egress/7",
                "/1",
            ] {
                pointers.push(format!("/items/{i}{tail}"));
            }
        }
        for pointer in &pointers {
            assert_eq!(locator.locate(&docs[0].at, pointer), sources.locate(&docs[0].at, pointer), "{pointer}");
        }
        assert!(matches!(locator.memo.values().next(), Some(Memo::Indexed(_))), "the document was indexed");
    }

    #[test]
    fn documents_know_their_first_content_line() {
        let text = "---\n# c\nkind: A\n---\n\n  kind: B\n";
        let (docs, problems) = parse_source(SourceId(0), text);
        assert!(problems.is_empty());
        assert_eq!(docs[0].at.start, Position { line: 3, column: 1 });
        assert_eq!(docs[1].at.start, Position { line: 6, column: 3 });
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        let text = decode_text("\u{feff}kind: A\n".as_bytes().to_vec()).unwrap();
        let (docs, problems) = parse_source(SourceId(0), &text);
        assert!(problems.is_empty());
        assert_eq!(docs[0].value["kind"], "A");
    }
}
