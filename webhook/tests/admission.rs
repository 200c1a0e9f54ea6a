//! `testcases/admission/`: AdmissionReview requests shaped as kube-apiserver sends them,
//! decided against the state in `testcases/admission/state/`, with the responses as reviewed
//! insta snapshots beside each request. Also every captured review of the conformance corpus.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use base64::Engine as _;
use portcullis_linter::config::Config;
use portcullis_linter::project::Project;
use portcullis_webhook::admission::{self, Endpoint};
use portcullis_webhook::state::{ClusterState, StaticState};
use serde_json::{Value, json};

mod common;

use common::repo;

fn cases_dir() -> PathBuf {
    repo().join("testcases/admission")
}

fn state() -> StaticState {
    let (state, problems) = StaticState::load(&cases_dir().join("state")).unwrap();
    assert_eq!(problems, 0);
    state
}

/// Decides one body; returns the HTTP-level result as JSON for snapshots, with the patch decoded.
fn decide(endpoint: Endpoint, body: &[u8], state: &StaticState, config: &Config) -> (Value, Option<Value>) {
    let req = admission::parse(body).unwrap();
    let snapshot = state.snapshot(&req.namespace(), &config.dns.namespace);
    let outcome = admission::decide(endpoint, &req, &snapshot, config);
    let decision = outcome.decision.as_str();
    let body = admission::response_body(outcome.response).unwrap();
    let mut review: Value = serde_json::from_slice(&body).unwrap();
    let mut patch = None;
    if let Some(p) = review.pointer_mut("/response/patch") {
        let bytes = base64::engine::general_purpose::STANDARD.decode(p.as_str().unwrap()).unwrap();
        let decoded: Value = serde_json::from_slice(&bytes).unwrap();
        *p = json!("<base64, decoded in `patch` below>");
        patch = Some(decoded);
    }
    let mut shown = json!({"decision": decision, "review": review});
    if let Some(p) = &patch {
        shown["patch"] = p.clone();
    }
    (shown, patch)
}

#[derive(serde::Deserialize)]
struct Case {
    endpoint: String,
    case: String,
    expect: String,
}

#[test]
fn admission_cases() {
    let state = state();
    let config = Config::default();
    let cases: Vec<Case> =
        serde_json::from_str(&std::fs::read_to_string(cases_dir().join("cases.json")).unwrap()).unwrap();
    let mut listed = BTreeSet::new();
    for case in &cases {
        let dir = cases_dir().join(&case.endpoint);
        let file = dir.join(format!("{}.json", case.case));
        listed.insert(file.clone());
        let body = std::fs::read(&file).unwrap();
        let endpoint = match case.endpoint.as_str() {
            "validate" => Endpoint::Validate,
            "mutate" => Endpoint::Mutate,
            other => panic!("unknown endpoint {other}"),
        };
        let (shown, patch) = decide(endpoint, &body, &state, &config);
        // The response carries the request's uid.
        let request: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(shown["review"]["response"]["uid"], request["request"]["uid"], "{}", case.case);
        if let Some(patch) = patch {
            check_patched(&request["request"]["object"], patch, &case.case);
        }
        insta::with_settings!({
            snapshot_path => dir.clone(),
            prepend_module_to_snapshot => false,
            description => case.expect.clone(),
            omit_expression => true,
            sort_maps => true,
        }, {
            insta::assert_yaml_snapshot!(case.case.clone(), shown);
        });
    }
    // Every request file is a listed case.
    for endpoint in ["validate", "mutate"] {
        for e in std::fs::read_dir(cases_dir().join(endpoint)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "json") {
                assert!(listed.contains(&p), "{} is not listed in cases.json", p.display());
            }
        }
    }
}

/// A mutation applies, yields a valid NetworkPolicy, and the result lints without DNS findings.
fn check_patched(object: &Value, patch: Value, case: &str) {
    let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
    let mut patched = object.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    serde_json::from_value::<k8s_openapi::api::networking::v1::NetworkPolicy>(patched.clone()).unwrap();
    let mut project = Project::new("default");
    let namespaces = std::fs::read_to_string(cases_dir().join("state/namespaces.yaml")).unwrap();
    project.add_text("namespaces.yaml", namespaces, false);
    project.add_text("patched.json", serde_json::to_string(&patched).unwrap(), true);
    let ns = patched["metadata"]["namespace"].as_str().unwrap();
    // A pod the policy selects, so the DNS rules have something to check.
    let labels = patched["spec"]["podSelector"]["matchLabels"].clone();
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "i"}]}});
    project.add_text("pod.json", pod.to_string(), true);
    let findings = project.lint(&Config::default());
    let dns: Vec<_> = findings.iter().filter(|f| matches!(f.code, "PC003" | "PC004")).map(|f| &f.message).collect();
    assert!(dns.is_empty(), "{case}: patched policy still blocks DNS: {dns:?}");
}

#[test]
fn conformance_reviews_never_fail_badly() {
    let dir = repo().join("../shared/conformance/admission");
    assert!(dir.is_dir(), "the conformance corpus is missing at {}", dir.display());
    let state = state();
    let config = Config::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut table = String::new();
    for file in files {
        let body = std::fs::read(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let line = match admission::parse(&body) {
            Err(e) => format!("400 {e}"),
            Ok(req) => {
                let snapshot = state.snapshot(&req.namespace(), &config.dns.namespace);
                let v = admission::decide(Endpoint::Validate, &req, &snapshot, &config);
                let m = admission::decide(Endpoint::Mutate, &req, &snapshot, &config);
                assert_eq!(v.response.uid, req.inner.uid);
                let codes = portcullis_webhook::review::codes(&v.problems);
                format!(
                    "200 {} {} validate={} mutate={} {}{}",
                    req.inner.kind.kind,
                    req.operation(),
                    v.decision.as_str(),
                    m.decision.as_str(),
                    codes,
                    v.skipped.map(|s| format!("({s})")).unwrap_or_default()
                )
            }
        };
        table.push_str(&format!("{name}\n    {line}\n"));
    }
    insta::assert_snapshot!("conformance_admission", table);
}
