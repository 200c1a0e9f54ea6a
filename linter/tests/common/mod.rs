//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

use std::path::{Path, PathBuf};

use portcullis_linter::config::Config;
use portcullis_linter::finding::Diagnostic;
use portcullis_linter::project::Project;
use portcullis_linter::report::{OutputFormat, Report, render};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// The conformance corpus beside the checkout. CI (`.ci/run` sets
/// `PORTCULLIS_REQUIRE_CONFORMANCE`) has it, so there its absence is a loud failure; in a
/// contributor's plain clone the tests that read it are skipped, said on stderr and by `.ci/test`.
pub fn conformance() -> Option<PathBuf> {
    let dir = repo().join("../shared/conformance");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("PORTCULLIS_REQUIRE_CONFORMANCE").is_none(),
        "the conformance corpus is missing at {}: these tests read real-world inputs from ../shared/conformance",
        dir.display()
    );
    eprintln!("SKIPPED: no conformance corpus at {} (CI requires it)", dir.display());
    None
}

/// Loads files into a project, naming each by its path relative to `base`.
pub fn project_from(base: &Path, files: &[PathBuf]) -> Project {
    let mut project = Project::new("default");
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        let name = f.strip_prefix(base).unwrap_or(f).display().to_string();
        project.add_text(&name, text, true);
    }
    project
}

/// Renders diagnostics in the human format without colour.
pub fn human(project: &Project, diagnostics: &[Diagnostic]) -> String {
    let summary = project.summary(diagnostics);
    render(OutputFormat::Human, &Report { diagnostics, summary, sources: &project.sources, color: false, width: None })
}

/// Lints and resolves.
pub fn lint(project: &Project, config: &Config) -> Vec<Diagnostic> {
    project.diagnostics(&project.lint(config))
}

/// Every `*.yaml`/`*.yml`/`*.json` file below a directory, sorted.
pub fn manifest_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A generated HTML page (`map`, `matrix`): the hostile name `<b>evil</b>.example` from its input
/// escaped, one script (the page's own) and nothing loaded from elsewhere.
pub fn assert_self_contained_and_escaped(page: &str) {
    assert!(!page.contains("<b>evil"), "names must be escaped");
    assert!(page.contains("&lt;b&gt;evil&lt;/b&gt;.example"));
    assert_eq!(page.matches("<script>").count(), 1, "only the page's own script");
    for external in ["src=\"http", "href=\"http", "@import", "url("] {
        assert!(!page.contains(external), "no external resource: {external}");
    }
}
