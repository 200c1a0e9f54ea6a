//! The block-style fast path (`load::block`) must agree with the full YAML parser wherever it
//! answers: same events, same start position of every node. Checked on every manifest of the
//! repository's testcases and of the real-world corpus (`../shared/conformance`, read in place),
//! and on generated variations of them. The fast path must also actually take the common case.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use portcullis_linter::load::block;
use portcullis_linter::load::yaml::split_documents;

/// Compares the two parsers on one document; returns whether the fast path took it.
fn check(name: &str, src: &str) -> bool {
    block::check_against_full_parser(src).unwrap_or_else(|e| panic!("{name}: {e}:\n{src}"))
}

/// Every document of every file; returns (documents, taken by the fast path).
fn check_files(files: &[std::path::PathBuf]) -> (usize, usize) {
    let (mut documents, mut fast) = (0, 0);
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        let name = file.display().to_string();
        for chunk in split_documents(&text) {
            let src = &text[chunk.offset..chunk.offset + chunk.len];
            documents += 1;
            fast += usize::from(check(&name, src));
            // Variations that move the same content across the subset's edges.
            for (what, variant) in variations(src) {
                check(&format!("{name} ({what})"), &variant);
            }
        }
    }
    (documents, fast)
}

/// The document re-indented, with comments, blank lines and trailing spaces sprinkled in, and
/// cut short at every tenth line (cuts make half-finished structures and empty values).
fn variations(src: &str) -> Vec<(&'static str, String)> {
    let lines: Vec<&str> = src.lines().collect();
    let mut out = vec![
        ("indented", lines.iter().map(|l| format!("  {l}\n")).collect()),
        (
            "commented",
            lines
                .iter()
                .enumerate()
                .map(|(i, l)| if i % 3 == 0 { format!("{l}   # note\n\n") } else { format!("{l}  \n") })
                .collect(),
        ),
    ];
    for cut in (1..lines.len()).step_by(10) {
        out.push(("cut", lines[..cut].join("\n")));
    }
    out
}

#[test]
fn the_fast_path_agrees_with_the_full_parser_on_every_testcase() {
    let files = common::manifest_files(&common::repo().join("testcases"));
    let (json, yaml): (Vec<_>, Vec<_>) = files.into_iter().partition(|f| f.extension().is_some_and(|e| e == "json"));
    check_files(&json);
    let (documents, fast) = check_files(&yaml);
    assert!(documents > 200, "expected the testcases, found {documents} documents");
    // The rule fixtures are ordinary block-style manifests: nearly all take the fast path (the
    // rest hold syntax errors, or IPv6 addresses inside flow collections).
    assert!(fast * 100 >= documents * 97, "the fast path took only {fast} of {documents} documents");
}

#[test]
fn the_fast_path_agrees_with_the_full_parser_on_real_world_manifests() {
    let Some(corpus) = common::conformance() else { return };
    let files = common::manifest_files(&corpus.join("manifests"));
    let (documents, fast) = check_files(&files);
    assert!(documents > 100, "expected the conformance manifests, found {documents} documents");
    assert!(fast * 2 >= documents, "the fast path took only {fast} of {documents} documents");
}

#[test]
fn the_fast_path_takes_the_demo_whole() {
    let files = common::manifest_files(&common::repo().join("testcases/demo"));
    let (documents, fast) = check_files(&files);
    assert_eq!(fast, documents);
}
