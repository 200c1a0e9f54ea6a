//! Real inputs written by others (`../shared/conformance`, read in place): every manifest set
//! loads and lints without a crash, with the findings snapshotted and the notable ones asserted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use portcullis_linter::config::Config;
use portcullis_linter::project::Project;

#[test]
fn real_world_manifests_lint_as_expected() {
    let Some(corpus) = common::conformance() else { return };
    let root = corpus.join("manifests");
    let files = common::manifest_files(&root);
    assert!(files.len() > 50, "expected the conformance manifests under {}", root.display());
    let mut listing = String::new();
    for set in std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect::<std::collections::BTreeSet<_>>() {
        // Each set is its own "repository": lint it alone, as its users would.
        let files = common::manifest_files(&set);
        let project = common::project_from(&root, &files);
        for d in common::lint(&project, &Config::default()) {
            listing
                .push_str(&format!("{}:{}:{} {} {}\n", d.file, d.position.line, d.position.column, d.code, d.message));
        }
    }
    insta::assert_snapshot!("conformance_manifests", listing);

    let has = |needle: &str| listing.lines().any(|l| l.contains(needle));
    // Legacy API versions are rejected by today's API servers.
    assert!(has("calico-stars-policy-legacy/default-deny.yaml:2:1 PC000 apiVersion extensions/v1beta1"));
    // Markdown fragments are not manifests: skipped (issue 17), not reported.
    assert!(!has("fragment-not-a-full-manifest"));
    // The Kubernetes docs' own example uses namespaceSelector and podSelector as two peers.
    assert!(has("kubernetes-website-docs/networkpolicy.yaml:22:7 PC011"));
    // JSON-like flow-style YAML parses: no syntax errors anywhere in the docs set.
    assert!(!listing.lines().any(|l| l.contains("kubernetes-website-docs") && l.contains("invalid YAML")));
    // kube-prometheus: `egress: [{}]` is an allow-all.
    assert!(has("kube-prometheus/manifests/grafana-networkPolicy.yaml:13:5 PC006"));
    // The Otterize tutorial's "default-deny" lets port 53 go anywhere.
    assert!(has("otterize-docs/code-examples/egress-access-control/default-deny-policy.yaml:13:11 PC005"));
}

#[test]
fn objects_inside_real_admission_reviews_load() {
    let Some(corpus) = common::conformance() else { return };
    let root = corpus.join("admission");
    let mut listing = String::new();
    let mut files: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 25);
    for file in files {
        let review: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let mut project = Project::new("default");
        for key in ["object", "oldObject"] {
            if let Some(obj) = review["request"].get(key).filter(|o| o.is_object()) {
                project.add_text(&format!("{name}#{key}"), serde_json::to_string_pretty(obj).unwrap(), true);
            }
        }
        for d in common::lint(&project, &Config::default()) {
            listing.push_str(&format!("{} {}:{} {}\n", d.file, d.position.line, d.code, d.message));
        }
    }
    insta::assert_snapshot!("conformance_admission_objects", listing);
}
