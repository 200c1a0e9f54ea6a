//! Files parsed and rules run in parallel give exactly the run one thread gives: the same
//! objects in the same order, the same problems, the same findings.

use std::path::{Path, PathBuf};

use portcullis_linter::config::Config;
use portcullis_linter::project::{Project, TextFile};

fn manifests(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            manifests(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json") {
            out.push(path);
        }
    }
}

/// A debug rendering of everything a run produced, for comparison.
fn run(files: &[(String, String)], threads: usize) -> (usize, String) {
    let mut project = Project::new("default");
    project.set_threads(threads);
    // Every other file supersedes, so the order of `fix` output handling is exercised too.
    let texts = files
        .iter()
        .enumerate()
        .map(|(i, (name, text))| TextFile { name: name.clone(), text: text.clone(), superseding: i % 7 == 0 })
        .collect();
    project.add_texts(texts, true);
    let findings = project.lint(&Config::default());
    let diagnostics = project.diagnostics(&findings);
    let objects = project.inventory.objects.len();
    (
        objects,
        format!(
            "{:#?}\n{:#?}\n{:#?}\n{:#?}\n{:#?}\n{:#?}\n{:#?}\n{:#?}\n{:#?}",
            project.inventory.objects,
            project.inventory.namespaces,
            project.inventory.policies,
            project.inventory.workloads,
            project.inventory.intents,
            project.inventory.skipped,
            project.load_problems,
            project.inventory.problems,
            diagnostics
        ),
    )
}

#[test]
fn parallel_parsing_changes_nothing_but_the_time() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut paths = Vec::new();
    manifests(&root.join("testcases"), &mut paths);
    // The conformance corpus, when this clone has it beside it (CI requires it elsewhere).
    manifests(&root.join("../shared/conformance/manifests"), &mut paths);
    let files: Vec<(String, String)> =
        paths.iter().filter_map(|p| Some((p.display().to_string(), std::fs::read_to_string(p).ok()?))).collect();
    let bytes: usize = files.iter().map(|(_, t)| t.len()).sum();
    // Enough to be parsed in parallel (inputs under 64 KiB are parsed inline), from
    // `testcases/` alone.
    assert!(bytes > 128 * 1024, "only {bytes} bytes of manifests found");
    let (objects, one) = run(&files, 1);
    assert!(objects > 150, "only {objects} objects");
    for threads in [2, 3, 8] {
        let (_, many) = run(&files, threads);
        assert!(one == many, "{threads} threads gave a different run");
    }
}
