//! Gitignore-style path patterns: `.gitignore` files met while walking a directory, and the
//! `exclude`/`include` globs of `portcullis.yaml` and `--exclude`.
//!
//! The syntax is gitignore's (git-scm.com/docs/gitignore): `*` matches within one path segment,
//! `?` one character, `[a-z]`/`[!a-z]` a class, `**` any number of segments, `\` escapes; a
//! pattern with a slash (other than a trailing one) is anchored to its base directory, one
//! without matches a name at any depth; a trailing `/` matches directories only; `!` re-includes.
//! The last pattern that matches decides. Patterns are compiled once: a segment without
//! wildcards is compared as a string; one with wildcards by a table over the two lengths.
//! Patterns come from the repository being linted (a hostile pull request can write its
//! `.gitignore`), so their length and number are bounded well below git's own limits.

use std::path::{Component, Path};

/// Longest pattern kept; longer lines (hostile or broken files) are ignored.
const MAX_PATTERN: usize = 256;
/// Patterns kept per list.
const MAX_PATTERNS: usize = 1024;

/// One compiled pattern segment.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`: any number of path segments.
    Any,
    /// No wildcard: equal bytes (escapes resolved).
    Literal(Vec<u8>),
    Glob(Vec<Token>),
}

impl Segment {
    fn compile(text: &str) -> Segment {
        if text == "**" {
            return Segment::Any;
        }
        let tokens = tokens(text.as_bytes());
        if tokens.iter().all(|t| matches!(t, Token::One(Test::Byte(_)))) {
            return Segment::Literal(
                tokens.iter().filter_map(|t| if let Token::One(Test::Byte(b)) = t { Some(*b) } else { None }).collect(),
            );
        }
        Segment::Glob(tokens)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// Segments to match, `**` as its own segment. Unanchored patterns start with `**`.
    segments: Vec<Segment>,
    negated: bool,
    dir_only: bool,
}

/// An ordered list of patterns relative to one base directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patterns {
    patterns: Vec<Pattern>,
}

/// The verdict of a pattern list on one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No pattern matched.
    None,
    /// The last matching pattern excludes it.
    Excluded,
    /// The last matching pattern is a `!` re-include.
    Included,
}

impl Patterns {
    /// Parses gitignore text: one pattern per line, `#` comments, blank lines skipped.
    pub fn parse(text: &str) -> Patterns {
        let mut patterns = Patterns::default();
        for line in text.lines() {
            patterns.push(line);
        }
        patterns
    }

    /// Builds a list from globs (the config's `exclude`, `--exclude`).
    pub fn from_globs<S: AsRef<str>>(globs: &[S]) -> Patterns {
        let mut patterns = Patterns::default();
        for glob in globs {
            patterns.push(glob.as_ref());
        }
        patterns
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Adds one line of gitignore syntax.
    pub fn push(&mut self, line: &str) {
        if self.patterns.len() >= MAX_PATTERNS || line.len() > MAX_PATTERN {
            return;
        }
        // Trailing spaces are ignored unless escaped.
        let mut line = line.trim_end_matches(['\r', '\n']);
        while line.ends_with(' ') && !line.ends_with("\\ ") {
            line = &line[..line.len() - 1];
        }
        if line.is_empty() || line.starts_with('#') {
            return;
        }
        let (negated, mut body) = match line.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, line.strip_prefix('\\').filter(|r| r.starts_with(['#', '!'])).unwrap_or(line)),
        };
        let dir_only = body.ends_with('/');
        body = body.trim_end_matches('/');
        if body.is_empty() {
            return;
        }
        let anchored = body.contains('/');
        let body = body.strip_prefix('/').unwrap_or(body);
        let mut segments: Vec<Segment> = Vec::new();
        if !anchored {
            segments.push(Segment::Any);
        }
        for segment in body.split('/').filter(|s| !s.is_empty()) {
            let segment = Segment::compile(segment);
            // Consecutive `**` are one.
            if segment == Segment::Any && segments.last() == Some(&Segment::Any) {
                continue;
            }
            segments.push(segment);
        }
        self.patterns.push(Pattern { segments, negated, dir_only });
    }

    /// The verdict on `relative` (a path relative to the list's base, `/`-separated segments
    /// from its components), which is a directory when `is_dir`.
    pub fn verdict(&self, relative: &[&str], is_dir: bool) -> Verdict {
        let mut verdict = Verdict::None;
        for pattern in &self.patterns {
            if pattern.dir_only && !is_dir {
                continue;
            }
            if matches_segments(&pattern.segments, relative) {
                verdict = if pattern.negated { Verdict::Included } else { Verdict::Excluded };
            }
        }
        verdict
    }

    /// Whether `relative` or one of its parent directories is excluded: a file under an
    /// excluded directory is excluded whatever the later patterns say (as in git).
    pub fn excludes(&self, relative: &[&str], is_dir: bool) -> bool {
        for end in 1..relative.len() {
            if self.verdict(&relative[..end], true) == Verdict::Excluded {
                return true;
            }
        }
        !relative.is_empty() && self.verdict(relative, is_dir) == Verdict::Excluded
    }

    /// Whether any pattern matches `relative` (for `include` lists; `!` lines do not count).
    pub fn matches(&self, relative: &[&str], is_dir: bool) -> bool {
        self.verdict(relative, is_dir) == Verdict::Excluded
    }
}

/// `path`'s segments relative to `base`, when it lies under it (lexically: `.` and `..` as
/// written are resolved against each other; the caller passes comparable forms).
pub fn relative_segments<'a>(path: &'a Path, base: &Path) -> Option<Vec<&'a str>> {
    let rest = path.strip_prefix(base).ok()?;
    rest.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| match c {
            Component::Normal(name) => name.to_str(),
            _ => None,
        })
        .collect()
}

/// Matches pattern segments (with `**`) against path segments.
fn matches_segments(pattern: &[Segment], path: &[&str]) -> bool {
    // table[i][j]: pattern[i..] matches path[j..]. Filled from the end.
    let (p, t) = (pattern.len(), path.len());
    let mut table = vec![vec![false; t + 1]; p + 1];
    table[p][t] = true;
    for i in (0..p).rev() {
        for j in (0..=t).rev() {
            table[i][j] = match &pattern[i] {
                // Zero segments, or one more.
                Segment::Any => table[i + 1][j] || (j < t && table[i][j + 1]),
                Segment::Literal(bytes) => j < t && table[i + 1][j + 1] && path[j].as_bytes() == bytes.as_slice(),
                Segment::Glob(tokens) => j < t && table[i + 1][j + 1] && matches_segment(tokens, path[j].as_bytes()),
            };
        }
    }
    table[0][0]
}

/// One segment: `*`, `?`, classes and escapes (no `/` inside a segment).
fn matches_segment(tokens: &[Token], text: &[u8]) -> bool {
    // reach[j]: the tokens so far can match text[..j].
    let mut reach = vec![false; text.len() + 1];
    reach[0] = true;
    for token in tokens {
        let mut next = vec![false; text.len() + 1];
        match token {
            Token::Star => {
                let mut on = false;
                for j in 0..=text.len() {
                    on |= reach[j];
                    next[j] = on;
                }
            }
            Token::One(test) => {
                for j in 0..text.len() {
                    if reach[j] && test.accepts(text[j]) {
                        next[j + 1] = true;
                    }
                }
            }
        }
        reach = next;
    }
    reach[text.len()]
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Star,
    One(Test),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Test {
    Any,
    Byte(u8),
    Class { negated: bool, ranges: Vec<(u8, u8)> },
}

impl Test {
    fn accepts(&self, byte: u8) -> bool {
        match self {
            Test::Any => true,
            Test::Byte(b) => *b == byte,
            Test::Class { negated, ranges } => ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&byte)) != *negated,
        }
    }
}

fn tokens(pattern: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'*' => {
                if !matches!(out.last(), Some(Token::Star)) {
                    out.push(Token::Star);
                }
                i += 1;
            }
            b'?' => {
                out.push(Token::One(Test::Any));
                i += 1;
            }
            b'\\' if i + 1 < pattern.len() => {
                out.push(Token::One(Test::Byte(pattern[i + 1])));
                i += 2;
            }
            b'[' => match class(&pattern[i + 1..]) {
                Some((test, used)) => {
                    out.push(Token::One(test));
                    i += 1 + used;
                }
                None => {
                    out.push(Token::One(Test::Byte(b'[')));
                    i += 1;
                }
            },
            byte => {
                out.push(Token::One(Test::Byte(byte)));
                i += 1;
            }
        }
    }
    out
}

/// A class after its `[`: the test and the bytes used up to and including `]`.
fn class(rest: &[u8]) -> Option<(Test, usize)> {
    let mut i = 0;
    let negated = matches!(rest.first(), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    while i < rest.len() {
        let byte = rest[i];
        if byte == b']' && !first {
            return Some((Test::Class { negated, ranges }, i + 1));
        }
        first = false;
        let lo = if byte == b'\\' && i + 1 < rest.len() {
            i += 1;
            rest[i]
        } else {
            byte
        };
        if rest.get(i + 1) == Some(&b'-') && rest.get(i + 2).is_some_and(|b| *b != b']') {
            ranges.push((lo, rest[i + 2]));
            i += 3;
        } else {
            ranges.push((lo, lo));
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(patterns: &str, path: &str, is_dir: bool) -> bool {
        let segments: Vec<&str> = path.split('/').collect();
        Patterns::parse(patterns).excludes(&segments, is_dir)
    }

    /// Expected verdicts from git's documentation (gitignore(5), "PATTERN FORMAT" and "EXAMPLES").
    #[test]
    fn gitignore_semantics() {
        // No slash: a name at any depth.
        assert!(excluded("*.log", "a.log", false));
        assert!(excluded("*.log", "deep/dir/a.log", false));
        assert!(!excluded("*.log", "a.log.yaml", false));
        // A middle or leading slash anchors to the base.
        assert!(excluded("doc/frotz", "doc/frotz", false));
        assert!(!excluded("doc/frotz", "a/doc/frotz", false));
        assert!(excluded("/build", "build", true));
        assert!(!excluded("/build", "src/build", true));
        // Trailing slash: directories only; what is under them goes with them.
        assert!(excluded("frotz/", "frotz", true));
        assert!(!excluded("frotz/", "frotz", false));
        assert!(excluded("frotz/", "a/frotz/b.yaml", false));
        // `*` stays within a segment, `**` spans them.
        assert!(excluded("foo/*", "foo/bar", false));
        assert!(excluded("foo/*", "foo/bar/baz", false), "under the excluded directory foo/bar");
        assert!(!excluded("foo/*.yaml", "foo/bar/x.yaml", false));
        assert!(excluded("**/foo", "a/b/foo", false));
        assert!(excluded("**/foo/bar", "x/foo/bar", false));
        assert!(excluded("abc/**", "abc/x/y", false));
        assert!(excluded("a/**/b", "a/b", false));
        assert!(excluded("a/**/b", "a/x/y/b", false));
        assert!(!excluded("a/**/b", "a/x/y/c", false));
        // Negation: the last match wins, but not under an excluded directory.
        assert!(!excluded("*.yaml\n!keep.yaml", "keep.yaml", false));
        assert!(excluded("*.yaml\n!keep.yaml", "other.yaml", false));
        assert!(excluded("dir/\n!dir/keep.yaml", "dir/keep.yaml", false));
        // Classes, `?`, escapes, comments.
        assert!(excluded("v[0-9].yaml", "v1.yaml", false));
        assert!(!excluded("v[!0-9].yaml", "v1.yaml", false));
        assert!(excluded("?.yaml", "a.yaml", false));
        assert!(!excluded("?.yaml", "ab.yaml", false));
        assert!(excluded("\\#x", "#x", false));
        assert!(!excluded("#x", "#x", false));
        assert!(excluded("\\!x", "!x", false));
    }

    #[test]
    fn hostile_patterns_stay_bounded() {
        // Many stars against a long name: a table, not backtracking.
        let pattern = "*a".repeat(120);
        let name = "a".repeat(1000) + "b";
        assert!(!excluded(&pattern, &name, false));
        let long = "x".repeat(MAX_PATTERN + 1);
        assert!(Patterns::parse(&long).is_empty());
        let many: String = (0..MAX_PATTERNS + 10).map(|i| format!("p{i}\n")).collect();
        assert_eq!(Patterns::parse(&many).patterns.len(), MAX_PATTERNS);
    }
}
