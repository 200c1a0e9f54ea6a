//! The decision memo (`portcullis_webhook::memo`, issue 22): a remembered answer is the answer
//! the review would give, over the repository's admission cases and every captured review of
//! the conformance corpus, also when only the metadata the cluster maintains changed; a change
//! to the namespace's cached state is decided again; memory stays within its budget.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

use std::path::PathBuf;
use std::sync::Arc;

use portcullis_linter::config::Config;
use portcullis_linter::model::Labels;
use portcullis_webhook::admission::{self, Endpoint, Request};
use portcullis_webhook::memo::{CLUSTER_METADATA, DecisionMemo};
use portcullis_webhook::metrics::Metrics;
use portcullis_webhook::state::{ClusterState, Index, IndexEvent, NamespaceInfo, StaticState, StoredPolicy, write};
use serde_json::{Value, json};

mod common;

use common::repo;

/// Every review body of `testcases/admission/` and, when present, of the conformance corpus.
fn bodies() -> Vec<(String, Vec<u8>)> {
    let mut dirs = vec![repo().join("testcases/admission/validate"), repo().join("testcases/admission/mutate")];
    dirs.extend(common::conformance_reviews());
    let mut out = Vec::new();
    for dir in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for file in files {
            out.push((file.display().to_string(), std::fs::read(&file).unwrap()));
        }
    }
    out
}

/// The review with different cluster-maintained metadata on its object and old object, as a
/// dry run and the real request (or two syncs of a GitOps controller) differ.
fn with_other_cluster_metadata(body: &[u8]) -> Option<Vec<u8>> {
    let mut review: Value = serde_json::from_slice(body).ok()?;
    let mut changed = false;
    for pointer in ["/request/object/metadata", "/request/oldObject/metadata"] {
        if let Some(Value::Object(meta)) = review.pointer_mut(pointer) {
            meta.insert("uid".into(), json!("6a0c1f3e-0000-4000-8000-000000000042"));
            meta.insert("resourceVersion".into(), json!("987654"));
            meta.insert("generation".into(), json!(42));
            meta.insert("creationTimestamp".into(), json!("2026-11-27T10:00:00Z"));
            meta.insert(
                "managedFields".into(),
                json!([{"manager": "flux", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {}}]),
            );
            changed = true;
        }
    }
    changed.then(|| serde_json::to_vec(&review).unwrap())
}

/// The decision, the problems and the response as JSON (`auditAnnotations` is a map: compared
/// as one, not as text).
fn answer(outcome: admission::Outcome) -> (&'static str, Vec<String>, Value) {
    let decision = outcome.decision.as_str();
    let problems: Vec<String> = outcome.problems.iter().map(|p| format!("{p:?}")).collect();
    let body = admission::response_body(outcome.response).unwrap();
    (decision, problems, serde_json::from_slice(&body).unwrap())
}

fn memo(budget: usize) -> (DecisionMemo, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    (metrics.decision_memo(budget), metrics)
}

fn counts(metrics: &Metrics) -> (u64, u64) {
    (metrics.memo_hits.get(), metrics.memo_misses.get())
}

#[test]
fn remembered_answers_are_the_answers_decided_again() {
    let (state, problems) = StaticState::load(&repo().join("testcases/admission/state")).unwrap();
    assert_eq!(problems, 0);
    let config = Config::default();
    let (memo, metrics) = memo(portcullis_webhook::memo::DEFAULT_BUDGET_BYTES);
    let mut asked = 0u64;
    let mut altered = 0u64;
    for (name, body) in bodies() {
        let Ok(req) = admission::parse(&body) else { continue };
        let snapshot = state.snapshot(&req.namespace(), &config.dns.namespace);
        for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
            let decided = answer(admission::decide(endpoint, &req, &snapshot, &config));
            // Asked the first time (decided, on the object without cluster metadata) and again
            // (remembered): both are the answer decided without the memo.
            for round in ["first", "again"] {
                let remembered = answer(admission::decide_with(endpoint, &req, &snapshot, &config, None, Some(&memo)));
                assert_eq!(remembered, decided, "{name} {endpoint:?} asked {round}");
            }
            asked += 1;
            // The same request with other cluster-maintained metadata: decided without the
            // memo, the answer does not change, and the memo answers it as remembered.
            let Some(other) = with_other_cluster_metadata(&body) else { continue };
            let other: Request = admission::parse(&other).unwrap();
            let decided_other = answer(admission::decide(endpoint, &other, &snapshot, &config));
            let (hits, _) = counts(&metrics);
            let remembered_other =
                answer(admission::decide_with(endpoint, &other, &snapshot, &config, None, Some(&memo)));
            assert_eq!(remembered_other, decided_other, "{name} {endpoint:?} with other cluster metadata");
            if counts(&metrics).0 > hits {
                altered += 1;
            }
        }
    }
    let (hits, misses) = counts(&metrics);
    eprintln!("{asked} questions, {altered} with other cluster metadata remembered; {hits} hits, {misses} misses");
    assert!(asked >= 40, "{asked}");
    // Reviews the webhook skips (mode off, a subresource, …) never reach the memo; every other
    // question was decided once and remembered when asked again.
    assert!(misses > 0 && hits >= misses, "{hits} hits, {misses} misses");
    assert!(altered >= 20, "only {altered} reviews with other cluster metadata were remembered");
}

fn namespace(labels: &[(&str, &str)]) -> IndexEvent<Arc<NamespaceInfo>> {
    let mut l: Labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    l.insert("kubernetes.io/metadata.name".into(), "shop".into());
    IndexEvent::Apply {
        namespace: String::new(),
        name: "shop".into(),
        value: Arc::new(NamespaceInfo { labels: Arc::new(l), terminating: false }),
    }
}

fn policy(name: &str, spec: Value) -> IndexEvent<StoredPolicy> {
    IndexEvent::Apply {
        namespace: "shop".into(),
        name: name.into(),
        value: StoredPolicy::new(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "shop"}, "spec": spec})),
    }
}

fn deployment_review() -> Request {
    named_deployment_review("web")
}

fn named_deployment_review(name: &str) -> Request {
    let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "0b7c8a52-0000-4000-8000-000000000001",
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "name": name, "namespace": "shop", "operation": "CREATE",
        "userInfo": {"username": "alice"},
        "object": {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:1"}]}}}}}});
    admission::parse(&serde_json::to_vec(&body).unwrap()).unwrap()
}

fn codes(outcome: &admission::Outcome) -> String {
    portcullis_webhook::review::codes(&outcome.problems)
}

/// Expected verdicts from the rules' documentation: an egress default-deny without a DNS rule
/// cuts the pods off from DNS (PC003); a policy allowing DNS to kube-dns mends it.
#[test]
fn a_change_to_the_namespace_state_is_decided_again() {
    let index = Index::default();
    write(&index.namespaces).apply(namespace(&[("portcullis.dev/mode", "enforce")]));
    write(&index.namespaces).apply(IndexEvent::Apply {
        namespace: String::new(),
        name: "kube-system".into(),
        value: Arc::new(NamespaceInfo {
            labels: Arc::new([("kubernetes.io/metadata.name".to_owned(), "kube-system".to_owned())].into()),
            terminating: false,
        }),
    });
    write(&index.policies).apply(policy("default-deny", json!({"podSelector": {}, "policyTypes": ["Egress"]})));
    let config = Config::default();
    let (memo, metrics) = memo(portcullis_webhook::memo::DEFAULT_BUDGET_BYTES);
    let req = deployment_review();
    let ask = || {
        let snapshot = index.snapshot("shop", "kube-system");
        let remembered = admission::decide_with(Endpoint::Validate, &req, &snapshot, &config, None, Some(&memo));
        let decided = admission::decide(Endpoint::Validate, &req, &snapshot, &config);
        let (codes, decision) = (codes(&remembered), remembered.decision.as_str());
        assert_eq!(answer(remembered), answer(decided));
        (codes, decision)
    };

    let (first, decision) = ask();
    assert!(first.contains("PC003"), "{first}");
    assert_eq!(decision, "deny");
    assert_eq!(counts(&metrics), (0, 1));
    assert!(ask().0.contains("PC003"));
    assert_eq!(counts(&metrics), (1, 1), "asked again in the same state: remembered");

    // A policy allowing DNS: the namespace's compiled set changes, the review is decided again.
    write(&index.policies).apply(policy(
        "allow-dns",
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"namespaceSelector":
            {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]}),
    ));
    let (mended, _) = ask();
    assert!(!mended.contains("PC003"), "{mended}");
    assert_eq!(counts(&metrics), (1, 2));

    // The namespace relabelled (mode warn): its labels are a new value, decided again.
    write(&index.policies).apply(IndexEvent::Delete { namespace: "shop".into(), name: "allow-dns".into() });
    write(&index.namespaces).apply(namespace(&[("portcullis.dev/mode", "warn")]));
    let (warned, decision) = ask();
    assert!(warned.contains("PC003"), "{warned}");
    assert_eq!(decision, "warn");
    assert_eq!(counts(&metrics), (1, 3));
    ask();
    assert_eq!(counts(&metrics), (2, 3));
}

/// A memo of a few kilobytes asked hundreds of different questions keeps only what fits, and
/// the most recent answers; a budget of 0 remembers nothing.
#[test]
fn the_memo_stays_within_its_budget() {
    let (state, _) = StaticState::load(&repo().join("testcases/admission/state")).unwrap();
    let config = Config::default();
    let (memo, metrics) = memo(16 * 1024);
    let review = |i: usize| named_deployment_review(&format!("web-{i}"));
    for i in 0..500 {
        let req = review(i);
        let snapshot = state.snapshot("shop", &config.dns.namespace);
        admission::decide_with(Endpoint::Validate, &req, &snapshot, &config, None, Some(&memo));
    }
    eprintln!("{} answers held in 16 KiB", memo.len());
    assert!(memo.len() < 100, "{} answers held in 16 KiB", memo.len());
    assert!(!memo.is_empty());
    let snapshot = state.snapshot("shop", &config.dns.namespace);
    let (hits, _) = counts(&metrics);
    admission::decide_with(Endpoint::Validate, &review(499), &snapshot, &config, None, Some(&memo));
    assert_eq!(counts(&metrics).0, hits + 1, "the last question is still remembered");
    admission::decide_with(Endpoint::Validate, &review(0), &snapshot, &config, None, Some(&memo));
    assert_eq!(counts(&metrics).0, hits + 1, "the first one was forgotten");

    let (none, metrics) = self::memo(0);
    for _ in 0..2 {
        admission::decide_with(Endpoint::Validate, &review(1), &snapshot, &config, None, Some(&none));
    }
    assert!(none.is_empty());
    assert_eq!(counts(&metrics), (0, 0));
}

#[test]
fn the_metadata_left_out_is_the_metadata_the_cluster_maintains() {
    // What a client writes (labels, annotations, name) is never left out.
    for key in ["name", "namespace", "labels", "annotations", "generateName"] {
        assert!(!CLUSTER_METADATA.contains(&key), "{key}");
    }
}

/// What a hostile client could send in a review's object: nesting as deep as the parser takes
/// (serde_json refuses more than 128 levels, so the key's walk is as deep as the parse at most),
/// an empty object, `metadata` that is not a map, cluster metadata of the wrong types. Each is
/// answered as decided, asked first and again, and never panics.
#[test]
fn hostile_objects_are_answered_as_decided() {
    let (state, _) = StaticState::load(&repo().join("testcases/admission/state")).unwrap();
    let config = Config::default();
    let (memo, _) = memo(portcullis_webhook::memo::DEFAULT_BUDGET_BYTES);
    let mut deep = json!("leaf");
    for _ in 0..120 {
        deep = json!({"x": deep});
    }
    let objects = [
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}, "x": deep}}),
        json!({}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": "not a map"}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "uid": 7, "managedFields": "x",
            "resourceVersion": {"a": [1, 2]}}, "spec": {}}),
    ];
    for object in objects {
        let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "0b7c8a52-0000-4000-8000-000000000009",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "web", "namespace": "shop", "operation": "CREATE", "userInfo": {"username": "alice"},
            "object": object}});
        let Ok(req) = admission::parse(&serde_json::to_vec(&body).unwrap()) else { continue };
        let snapshot = state.snapshot("shop", &config.dns.namespace);
        for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
            let decided = answer(admission::decide(endpoint, &req, &snapshot, &config));
            for round in ["first", "again"] {
                let remembered = answer(admission::decide_with(endpoint, &req, &snapshot, &config, None, Some(&memo)));
                assert_eq!(remembered, decided, "{endpoint:?} asked {round}: {object}");
            }
        }
    }
    assert!(!memo.is_empty(), "at least one hostile object was parsed and remembered");
}
