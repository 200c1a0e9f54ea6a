//! The per-namespace policy index changes what a review reads, never what it decides: every
//! review is decided twice, once reading only the stored policies that may select the reviewed
//! pods (the index) and once reading every policy of the namespace (the reference, as before
//! the index), and the two responses must be the same. The states are generated
//! (seeded, so a failure replays): many policies per namespace with overlapping selectors,
//! `matchExpressions`, DNS rules right and wrong, names a fix would want, and workloads, policy
//! creates, updates and deletes reviewed against them. The admission test cases and the
//! conformance corpus's reviews are decided both ways too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use portcullis_linter::config::Config;
use portcullis_linter::model::Labels;
use portcullis_webhook::admission::{self, Endpoint};
use portcullis_webhook::state::{ClusterState, Snapshot, StaticState, StoredPolicy};
use serde_json::{Value, json};

mod common;

#[path = "../../linter/tests/common/rng.rs"]
mod rng;

use rng::Rng;

const KEYS: [&str; 3] = ["app", "tier", "team"];
const VALUES: [&str; 3] = ["a", "b", "c"];
const NAMES: [&str; 6] = ["default-deny-egress", "default-deny-ingress", "allow-dns", "p", "q", "portcullis-allow-dns"];

fn labels(rng: &mut Rng) -> Value {
    let mut out = serde_json::Map::new();
    for key in KEYS {
        if rng.chance(50) {
            out.insert(key.to_owned(), json!(rng.pick(&VALUES)));
        }
    }
    Value::Object(out)
}

fn selector(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 | 1 => json!({}),
        2 => json!({"matchLabels": labels(rng)}),
        3 => {
            json!({"matchExpressions": [{"key": rng.pick(&KEYS), "operator": rng.pick(&["In", "NotIn"]), "values": [rng.pick(&VALUES)]}]})
        }
        4 => json!({"matchExpressions": [{"key": rng.pick(&KEYS), "operator": rng.pick(&["Exists", "DoesNotExist"])}]}),
        // Invalid: the engine reports it and selects nothing; the index reads it every time.
        _ => json!({"matchExpressions": [{"key": "app", "operator": "Sometimes"}]}),
    }
}

fn egress_rule(rng: &mut Rng) -> Value {
    let dns_ns = match rng.below(4) {
        0 => json!({"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}),
        1 => json!({"matchLabels": {"name": "kube-system"}}),
        2 => json!({}),
        _ => json!({"matchLabels": {"kubernetes.io/metadata.name": "other"}}),
    };
    let ports = match rng.below(4) {
        0 => json!([{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]),
        1 => json!([{"port": 53, "protocol": "UDP"}]),
        2 => json!([{"port": 443}]),
        _ => json!([]),
    };
    match rng.below(3) {
        0 => {
            json!({"to": [{"namespaceSelector": dns_ns, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}], "ports": ports})
        }
        1 => json!({"to": [{"namespaceSelector": dns_ns}], "ports": ports}),
        _ => json!({"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": ports}),
    }
}

fn policy(rng: &mut Rng, namespace: &str, name: &str) -> Value {
    let types: Vec<&str> = match rng.below(4) {
        0 => vec!["Ingress"],
        1 => vec!["Egress"],
        2 => vec!["Ingress", "Egress"],
        _ => vec![],
    };
    let mut spec = json!({"podSelector": selector(rng)});
    if !types.is_empty() {
        spec["policyTypes"] = json!(types);
    }
    if rng.chance(60) {
        spec["egress"] = json!((0..rng.below(3)).map(|_| egress_rule(rng)).collect::<Vec<_>>());
    }
    if rng.chance(30) {
        spec["ingress"] = json!([{}]);
    }
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": namespace}, "spec": spec})
}

fn workload(rng: &mut Rng, namespace: &str) -> (Value, (&'static str, &'static str, &'static str)) {
    let pod_labels = labels(rng);
    let pod = json!({"metadata": {"labels": pod_labels}, "spec": {"hostNetwork": rng.chance(10), "containers": [{"name": "c", "image": "x"}]}});
    match rng.below(3) {
        0 => (
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "namespace": namespace}, "spec": {"selector": {"matchLabels": pod_labels}, "template": pod}}),
            ("apps", "Deployment", "deployments"),
        ),
        1 => {
            let mut pod = pod;
            pod["apiVersion"] = json!("v1");
            pod["kind"] = json!("Pod");
            pod["metadata"]["name"] = json!("w");
            pod["metadata"]["namespace"] = json!(namespace);
            (pod, ("", "Pod", "pods"))
        }
        _ => (
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "w", "namespace": namespace}, "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": pod}}}}),
            ("batch", "CronJob", "cronjobs"),
        ),
    }
}

fn review(
    operation: &str,
    gvk: (&str, &str, &str),
    namespace: &str,
    name: &str,
    object: Option<&Value>,
    old: Option<&Value>,
) -> Vec<u8> {
    let (group, kind, resource) = gvk;
    let version = "v1";
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-4000-8000-000000000001",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "namespace": namespace,
            "name": name,
            "operation": operation,
            "userInfo": {"username": "jane@example.com"},
            "object": object,
            "oldObject": old,
            "dryRun": false
        }
    }))
    .unwrap()
}

/// The same snapshot, with every policy read by every review (the behaviour before the index).
fn unindexed(snapshot: &Snapshot) -> Snapshot {
    Snapshot {
        policies: snapshot.policies.iter().map(|p| StoredPolicy::read_always(p.value())).collect(),
        ..snapshot.clone()
    }
}

fn decide_both(body: &[u8], snapshot: &Snapshot, config: &Config, what: &str) -> bool {
    let Ok(req) = admission::parse(body) else { return false };
    let reference = unindexed(snapshot);
    for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
        let indexed = admission::response_body(admission::decide(endpoint, &req, snapshot, config).response).unwrap();
        let all = admission::response_body(admission::decide(endpoint, &req, &reference, config).response).unwrap();
        // Compared as JSON: `auditAnnotations` is a map whose key order is not part of the answer.
        let (indexed, all): (Value, Value) =
            (serde_json::from_slice(&indexed).unwrap(), serde_json::from_slice(&all).unwrap());
        assert_eq!(indexed, all, "{what} ({endpoint:?}): the index changed the decision");
    }
    true
}

#[test]
fn the_index_never_changes_a_decision() {
    let config = Config::default();
    let mut decisions = 0;
    let mut found = 0;
    for seed in 1..=100u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let namespace = "shop";
        let count = 1 + rng.below(12);
        let mut policies = Vec::new();
        for i in 0..count {
            let name = match NAMES.get(i) {
                Some(name) if rng.chance(70) => (*name).to_owned(),
                _ => format!("gen-{i}"),
            };
            policies.push(policy(&mut rng, namespace, &name));
        }
        let mut ns_labels = Labels::new();
        ns_labels.insert("kubernetes.io/metadata.name".into(), namespace.into());
        if rng.chance(50) {
            ns_labels.insert("portcullis.dev/mode".into(), "enforce".into());
        }
        let mut dns_labels = Labels::new();
        dns_labels.insert("kubernetes.io/metadata.name".into(), "kube-system".into());
        let snapshot = Snapshot {
            namespace_labels: Some(std::sync::Arc::new(ns_labels)),
            namespace_terminating: false,
            dns_namespace_labels: rng.chance(80).then_some(std::sync::Arc::new(dns_labels)),
            policies: policies.iter().cloned().map(StoredPolicy::new).collect(),
            intents: Vec::new(),
            layers: Vec::new(),
            cluster: None,
        };
        for _ in 0..6 {
            let body = match rng.below(4) {
                0 | 1 => {
                    let (object, gvk) = workload(&mut rng, namespace);
                    review("CREATE", gvk, namespace, "w", Some(&object), None)
                }
                2 => {
                    // A new policy, or an update of a stored one.
                    let name = if rng.chance(50) {
                        policies[rng.below(policies.len())]["metadata"]["name"].as_str().unwrap().to_owned()
                    } else {
                        "new".to_owned()
                    };
                    let object = policy(&mut rng, namespace, &name);
                    let old = policies.iter().find(|p| p["metadata"]["name"] == name.as_str());
                    let operation = if old.is_some() { "UPDATE" } else { "CREATE" };
                    let gvk = ("networking.k8s.io", "NetworkPolicy", "networkpolicies");
                    review(operation, gvk, namespace, &name, Some(&object), old)
                }
                _ => {
                    let old = &policies[rng.below(policies.len())];
                    let name = old["metadata"]["name"].as_str().unwrap();
                    let gvk = ("networking.k8s.io", "NetworkPolicy", "networkpolicies");
                    review("DELETE", gvk, namespace, name, None, Some(old))
                }
            };
            assert!(decide_both(&body, &snapshot, &config, &format!("seed {seed}")));
            let req = admission::parse(&body).unwrap();
            if !admission::decide(Endpoint::Validate, &req, &snapshot, &config).problems.is_empty() {
                found += 1;
            }
            decisions += 1;
        }
    }
    // The generator must reach reviews with and without problems, or the comparison proves little.
    assert!(found > decisions / 10 && found < decisions * 9 / 10, "{found} reviews with problems of {decisions}");
}

#[test]
fn admission_cases_and_the_conformance_reviews_decide_alike_with_and_without_the_index() {
    let config = Config::default();
    let cases = common::repo().join("testcases/admission");
    let (state, _) = StaticState::load(&cases.join("state")).unwrap();
    let mut bodies: Vec<(String, Vec<u8>)> = Vec::new();
    for endpoint in ["validate", "mutate"] {
        for entry in std::fs::read_dir(cases.join(endpoint)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                bodies.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    let dir = common::repo().join("../shared/conformance/admission");
    if dir.is_dir() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            bodies.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    let mut decided = 0;
    for (name, body) in &bodies {
        let Ok(req) = admission::parse(body) else { continue };
        let snapshot = state.snapshot(&req.namespace(), &config.dns.namespace);
        if decide_both(body, &snapshot, &config, name) {
            decided += 1;
        }
    }
    assert!(decided >= 30, "only {decided} reviews decided");
}
