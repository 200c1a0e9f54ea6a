//! NetworkPolicy truth tables: `testcases/semantics/*.yaml` hold policies, pods and a
//! `TrafficQueries` document of queries with the verdict the Kubernetes reference gives
//! (`allowed`, `denied`, or `unknown` when the input cannot settle it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use std::net::IpAddr;

use portcullis_linter::semantics::{Endpoint, Evaluator, Traffic};
use serde_json::Value;

fn endpoint<'a>(project: &'a portcullis_linter::project::Project, eval: &Evaluator<'a>, raw: &'a str) -> Endpoint<'a> {
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Endpoint::Address(ip);
    }
    if !raw.contains('/') {
        // An external destination known by name (FQDN peers).
        return Endpoint::Name(raw);
    }
    let id = project.find_workload(raw).unwrap_or_else(|e| panic!("{e}"));
    Endpoint::Pod(eval.pod(id))
}

#[test]
fn truth_tables_match_the_kubernetes_reference() {
    let dir = common::repo().join("testcases/semantics");
    let files = common::manifest_files(&dir);
    assert!(files.len() >= 20, "expected the semantics scenarios in {}", dir.display());
    let mut total = 0;
    let mut failures = Vec::new();
    for file in files {
        let project = common::project_from(&dir, std::slice::from_ref(&file));
        assert!(
            project.load_problems.is_empty() && project.inventory.problems.is_empty(),
            "{}: invalid input",
            file.display()
        );
        let eval = Evaluator::new(&project.inventory);
        let queries = project
            .inventory
            .objects
            .iter()
            .find(|o| o.id.kind == "TrafficQueries")
            .unwrap_or_else(|| panic!("{}: no TrafficQueries document", file.display()));
        for q in queries.value["queries"].as_array().unwrap() {
            let text = |k: &str| match &q[k] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let traffic = Traffic::parse(&text("port")).unwrap();
            let (from, to) = (text("from"), text("to"));
            let verdict = eval.evaluate(&endpoint(&project, &eval, &from), &endpoint(&project, &eval, &to), traffic);
            // `unknown`: the input cannot settle it (the verdict names a rule it cannot decide).
            let got = match (verdict.undecided(), verdict.allowed) {
                (Some(_), _) => "unknown",
                (None, true) => "allowed",
                (None, false) => "denied",
            };
            total += 1;
            if got != text("expect") {
                failures.push(format!(
                    "{}: {} -> {} on {}: expected {}, got {got} ({})",
                    file.file_name().unwrap().to_string_lossy(),
                    text("from"),
                    text("to"),
                    text("port"),
                    text("expect"),
                    text("why")
                ));
            }
        }
    }
    assert!(total >= 60, "only {total} queries");
    assert!(failures.is_empty(), "{} of {total} queries disagree:\n{}", failures.len(), failures.join("\n"));
}
