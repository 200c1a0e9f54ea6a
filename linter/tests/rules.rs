//! Every rule's fixtures: `testcases/rules/<CODE>/<case>/input.yaml`, with an optional
//! `portcullis.yaml` and `traffic.json` (observed traffic, for PC024), and the rule's findings
//! snapshotted beside them in `findings.snap`.
//! Cases named `ok-*` must produce no finding of their rule; all others at least one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use portcullis_linter::config::Config;
use portcullis_linter::model::Kind;
use portcullis_linter::rules::registry;

fn cases() -> BTreeMap<String, Vec<PathBuf>> {
    let root = common::repo().join("testcases/rules");
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for code in std::fs::read_dir(&root).unwrap() {
        let code = code.unwrap().path();
        let name = code.file_name().unwrap().to_string_lossy().to_string();
        let mut list: Vec<PathBuf> =
            std::fs::read_dir(&code).unwrap().map(|c| c.unwrap().path()).filter(|p| p.is_dir()).collect();
        list.sort();
        out.insert(name, list);
    }
    out
}

#[test]
fn every_rule_fixture_matches_its_snapshot() {
    let mut failures = Vec::new();
    for (code, dirs) in cases() {
        let meta = registry::find(&code).unwrap_or_else(|| panic!("testcases/rules/{code} names no rule"));
        for dir in dirs {
            let case = dir.file_name().unwrap().to_string_lossy().to_string();
            let config = match std::fs::read_to_string(dir.join("portcullis.yaml")) {
                Ok(text) => Config::parse(&text, "portcullis.yaml").unwrap(),
                Err(_) => Config::default(),
            };
            let mut project = common::project_from(&dir, &[dir.join("input.yaml")]);
            project.expand_intents(&config.dns);
            // Observed traffic, when the case has it (PC024), replayed as `lint --traffic` does.
            let replayed = std::fs::read(dir.join("traffic.json")).ok().map(|bytes| {
                let log = portcullis_linter::replay::traffic::parse(&bytes, Default::default()).unwrap();
                portcullis_linter::replay::replay(&project, &log)
            });
            let findings = project.lint_with_traffic(&config, replayed.as_ref());
            let diagnostics: Vec<_> =
                project.diagnostics(&findings).into_iter().filter(|d| d.code == meta.code).collect();
            let expect_none = case.starts_with("ok-");
            if expect_none != diagnostics.is_empty() {
                failures.push(format!(
                    "{code}/{case}: expected {}, got {}",
                    if expect_none { "no finding" } else { "findings" },
                    diagnostics.len()
                ));
            }
            for d in &diagnostics {
                let first = d.message.chars().next().unwrap();
                if first.is_uppercase() || d.message.ends_with('.') {
                    failures.push(format!(
                        "{code}/{case}: messages start lowercase and end without a period: {:?}",
                        d.message
                    ));
                }
            }
            insta::with_settings!({
                snapshot_path => dir.clone(),
                prepend_module_to_snapshot => false,
                input_file => dir.join("input.yaml"),
                omit_expression => true,
            }, {
                insta::assert_snapshot!("findings", common::human(&project, &diagnostics));
            });
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_rule_has_positive_and_negative_fixtures() {
    let cases = cases();
    for meta in registry::all() {
        let dirs = cases
            .get(meta.code)
            .unwrap_or_else(|| panic!("{} has no fixtures in testcases/rules/{}", meta.code, meta.code));
        let names: Vec<String> = dirs.iter().map(|d| d.file_name().unwrap().to_string_lossy().to_string()).collect();
        assert!(names.iter().any(|n| n.starts_with("ok-")), "{} has no negative (ok-*) fixture", meta.code);
        assert!(names.iter().any(|n| !n.starts_with("ok-")), "{} has no positive fixture", meta.code);
    }
}

#[test]
fn every_rule_has_complete_docs() {
    for meta in registry::all() {
        let docs = meta.docs_markdown();
        for heading in ["## What it does", "## Why is this bad?", "## Example", "## Fix safety"] {
            assert!(docs.contains(heading), "{} docs lack {heading:?}", meta.code);
        }
        assert!(docs.contains("Use instead"), "{} docs lack \"Use instead\"", meta.code);
        assert!(meta.name.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{} name is not kebab-case", meta.code);
    }
}

#[test]
fn codes_are_dense_and_in_order() {
    for (i, meta) in registry::all().enumerate() {
        assert_eq!(meta.code, format!("PC{i:03}"));
    }
}

/// `portcullis lint` keeps no value for the workloads and policies the fast path reads
/// (`Inventory::keep_values(false)`); every fixture and the demo must give the same findings,
/// fixes included, as a run that keeps them.
#[test]
fn lint_only_runs_find_and_fix_what_full_runs_do() {
    let mut inputs: Vec<(PathBuf, Vec<PathBuf>)> =
        cases().into_values().flatten().map(|dir| (dir.clone(), vec![dir.join("input.yaml")])).collect();
    let demo = common::repo().join("testcases/demo");
    inputs.push((demo.clone(), common::manifest_files(&demo)));
    let (mut lean_policies, mut lean_workloads) = (0, 0);
    for (dir, files) in inputs {
        let config = match std::fs::read_to_string(dir.join("portcullis.yaml")) {
            Ok(text) => Config::parse(&text, "portcullis.yaml").unwrap(),
            Err(_) => Config::default(),
        };
        let run = |keep: bool| {
            let mut project = portcullis_linter::project::Project::new("default");
            project.inventory.keep_values(keep);
            for f in &files {
                project.add_text(&f.display().to_string(), std::fs::read_to_string(f).unwrap(), true);
            }
            project.expand_intents(&config.dns);
            let findings = project.lint(&config);
            (project, findings)
        };
        let ((full, full_findings), (lean, lean_findings)) = (run(true), run(false));
        assert_eq!(full_findings, lean_findings, "{}", dir.display());
        for (a, b) in full.inventory.policies.iter().zip(&lean.inventory.policies) {
            assert_eq!((&a.name, &a.spec, a.types), (&b.name, &b.spec, b.types), "{}", dir.display());
        }
        let header = |o: &portcullis_linter::model::Object| {
            (o.id.clone(), o.kind, o.doc, o.pointer.clone(), o.ignore.clone(), o.has_annotations)
        };
        let headers =
            |p: &portcullis_linter::project::Project| p.inventory.objects.iter().map(header).collect::<Vec<_>>();
        assert_eq!(headers(&full), headers(&lean), "{}", dir.display());
        // Policies and workloads that keep no value.
        let without_value = |p: &portcullis_linter::project::Project| {
            let lean = |o: &&portcullis_linter::model::Object| o.value.is_null();
            let objects = || p.inventory.objects.iter().filter(lean);
            (
                objects().filter(|o| o.kind == Kind::NetworkPolicy).count(),
                objects().filter(|o| o.kind.is_workload()).count(),
            )
        };
        assert_eq!(without_value(&full), (0, 0), "{}", dir.display());
        let (policies, workloads) = without_value(&lean);
        lean_policies += policies;
        lean_workloads += workloads;
    }
    assert!(lean_policies > 20, "only {lean_policies} policies were read without their value");
    assert!(lean_workloads > 20, "only {lean_workloads} workloads were read without their value");
}
