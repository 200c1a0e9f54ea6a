//! `testcases/admission/`: AdmissionReview requests shaped as kube-apiserver sends them,
//! decided against the state in `testcases/admission/state/`, with the responses as reviewed
//! insta snapshots beside each request. Also every captured review of the conformance corpus.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

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
    // Without a patch the body is written straight: the same text as written through a `Value`.
    let via_value =
        outcome.response.patch.is_none().then(|| {
            serde_json::to_vec(&serde_json::to_value(outcome.response.clone().into_review()).unwrap()).unwrap()
        });
    let body = admission::response_body(outcome.response).unwrap();
    if let Some(via_value) = via_value {
        assert_eq!(String::from_utf8_lossy(&body), String::from_utf8_lossy(&via_value));
    }
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
    let Some(dir) = common::conformance_reviews() else { return };
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

/// The workloads in real admission reviews (pods, a Deployment, their old objects) are read
/// the short way the webhook reads what the API server decoded, and that reading is the full
/// one: the same pods, labels and ports. A wrongly typed field the model does not read (which
/// the API server would have refused) is not typed again: that is how the test knows the short
/// way was taken.
#[test]
fn real_workloads_are_read_decoded_as_typing_reads_them() {
    use portcullis_linter::load::{DocumentRef, SourceId};
    use portcullis_linter::model::inventory::{Inventory, ScannedObject, head_of};
    use portcullis_linter::model::{Kind, lookup};
    let Some(dir) = common::conformance_reviews() else { return };
    let at = DocumentRef::detached(SourceId(0), 0);
    let workloads_of = |scanned: ScannedObject| {
        let mut inventory = Inventory::new("default");
        inventory.add_scanned_object(scanned);
        format!("{:?}", inventory.workloads)
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut read = Vec::new();
    for file in files {
        let review: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        for key in ["object", "oldObject"] {
            let Some(object) = review["request"].get(key).filter(|o| o.is_object()) else { continue };
            let (Some(api_version), Some(kind)) = (object["apiVersion"].as_str(), object["kind"].as_str()) else {
                continue;
            };
            let Some(template) = Kind::classify(api_version, kind).0.pod_template_pointer() else { continue };
            let name = format!("{}#{key}", file.file_name().unwrap().to_string_lossy());
            let full = ScannedObject::workload(at, head_of(object), object).map(workloads_of);
            let decoded = ScannedObject::decoded_workload(at, head_of(object), object).map(workloads_of);
            assert_eq!(decoded, full, "{name}");
            let mut wrong_elsewhere = object.clone();
            let pointer = format!("{template}/spec");
            if lookup(object, &pointer).is_some_and(Value::is_object) {
                wrong_elsewhere.pointer_mut(&pointer).unwrap()["terminationGracePeriodSeconds"] = json!("soon");
                assert!(ScannedObject::workload(at, head_of(&wrong_elsewhere), &wrong_elsewhere).is_err(), "{name}");
                let decoded =
                    ScannedObject::decoded_workload(at, head_of(&wrong_elsewhere), &wrong_elsewhere).map(workloads_of);
                assert_eq!(decoded, full, "{name}: read the short way");
                read.push(name);
            }
        }
    }
    // Pods with init and ephemeral containers, a privileged init container, a Deployment.
    assert!(read.len() >= 10, "{read:?}");
    assert!(read.iter().any(|n| n.contains("deployment")), "{read:?}");
}

/// A case's request body with `edit` applied to its `request`.
fn edited(case: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut review: Value =
        serde_json::from_slice(&std::fs::read(cases_dir().join(format!("validate/{case}.json"))).unwrap()).unwrap();
    edit(&mut review["request"]);
    serde_json::to_vec(&review).unwrap()
}

/// Decides one validate body; returns the decision, whether it was allowed and the codes.
fn verdict(body: &[u8], state: &StaticState, config: &Config, terminating: bool) -> (&'static str, bool, String) {
    let req = admission::parse(body).unwrap();
    let mut snapshot = state.snapshot(&req.namespace(), &config.dns.namespace);
    snapshot.namespace_terminating |= terminating;
    let outcome = admission::decide(Endpoint::Validate, &req, &snapshot, config);
    (outcome.decision.as_str(), outcome.response.allowed, portcullis_webhook::review::codes(&outcome.problems))
}

/// Regression (issue 15, item 2): `kubectl delete deploy --cascade=foreground` hung because the
/// garbage collector's UPDATE removing the `foregroundDeletion` finalizer was denied (PC001/PC002
/// in an enforcing namespace without default-deny).
#[test]
fn the_garbage_collectors_finalizer_update_is_never_denied() {
    let state = state();
    let config = Config::default();
    let body = edited("deployment-create-no-default-deny", |r| {
        let mut old = r["object"].clone();
        old["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
        old["metadata"]["deletionTimestamp"] = json!("2026-11-25T10:00:00Z");
        let mut new = old.clone();
        new["metadata"].as_object_mut().unwrap().remove("finalizers");
        new["metadata"]["resourceVersion"] = json!("400099");
        r["operation"] = json!("UPDATE");
        r["userInfo"] = json!({"username": "system:serviceaccount:kube-system:generic-garbage-collector"});
        r["object"] = new;
        r["oldObject"] = old;
    });
    assert_eq!(verdict(&body, &state, &config, false), ("skip", true, String::new()));
    // The same object created in that namespace is still denied: the rule itself is unchanged.
    let create = std::fs::read(cases_dir().join("validate/deployment-create-no-default-deny.json")).unwrap();
    assert_eq!(verdict(&create, &state, &config, false).0, "deny");
}

#[test]
fn updates_of_cluster_maintained_metadata_only_are_housekeeping() {
    let state = state();
    let config = Config::default();
    let body = edited("deployment-create-no-default-deny", |r| {
        let old = r["object"].clone();
        let mut new = old.clone();
        new["metadata"]["finalizers"] = json!(["example.com/cleanup"]);
        new["metadata"]["ownerReferences"] = json!([]);
        new["metadata"]["managedFields"] = json!([]);
        new["status"] = json!({"replicas": 2});
        r["operation"] = json!("UPDATE");
        r["object"] = new;
        r["oldObject"] = old;
    });
    assert_eq!(verdict(&body, &state, &config, false), ("skip", true, String::new()));
}

/// Regression (issue 15, item 2): `kubectl delete namespace` stayed Terminating because the
/// namespace controller's DELETE of the default-deny was denied.
#[test]
fn nothing_in_a_terminating_namespace_is_denied() {
    let state = state();
    let config = Config::default();
    let delete = std::fs::read(cases_dir().join("validate/networkpolicy-delete-default-deny.json")).unwrap();
    assert_eq!(verdict(&delete, &state, &config, false).0, "deny", "deleting a default-deny is still denied");
    assert_eq!(verdict(&delete, &state, &config, true), ("skip", true, String::new()));
    let create = std::fs::read(cases_dir().join("validate/deployment-create-no-default-deny.json")).unwrap();
    assert_eq!(verdict(&create, &state, &config, true).0, "skip");
}

#[test]
fn objects_being_deleted_are_never_denied() {
    let state = state();
    let config = Config::default();
    let body = edited("deployment-create-no-default-deny", |r| {
        let mut old = r["object"].clone();
        old["metadata"]["deletionTimestamp"] = json!("2026-11-25T10:00:00Z");
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(0);
        r["operation"] = json!("UPDATE");
        r["object"] = new;
        r["oldObject"] = old;
    });
    assert_eq!(verdict(&body, &state, &config, false).0, "skip");
}

/// Only the stored object (oldObject) says whether an object is being deleted: a client can
/// write `deletionTimestamp` into what it sends, and `/mutate` sees that before the API server
/// clears it.
#[test]
fn a_deletion_timestamp_the_client_wrote_exempts_nothing() {
    let state = state();
    let config = Config::default();
    let forged = edited("deployment-create-no-default-deny", |r| {
        r["object"]["metadata"]["deletionTimestamp"] = json!("2026-11-25T10:00:00Z");
    });
    assert_eq!(verdict(&forged, &state, &config, false).0, "deny");
}

/// A scale or rollout restart of an app that predates enforce mode: the namespace's missing
/// default-deny is not new, so the update is admitted with warnings; an update that introduces
/// a new error is still denied.
#[test]
fn updates_are_denied_only_for_problems_they_introduce() {
    let state = state();
    let config = Config::default();
    let restart = edited("deployment-create-no-default-deny", |r| {
        let old = r["object"].clone();
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(5);
        new["spec"]["template"]["metadata"]["annotations"] =
            json!({"kubectl.kubernetes.io/restartedAt": "2026-11-25T10:00:00Z"});
        r["operation"] = json!("UPDATE");
        r["object"] = new;
        r["oldObject"] = old;
    });
    assert_eq!(verdict(&restart, &state, &config, false), ("warn", true, "PC001,PC002".to_owned()));

    // The old policy was valid; the update writes a CIDR the API server rejects: denied.
    let broken = edited("networkpolicy-update-ignored-and-invalid", |r| {
        let mut old = r["object"].clone();
        old["spec"]["policyTypes"] = json!(["Ingress", "Egress"]);
        old["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"] = json!("10.0.0.0/8");
        r["oldObject"] = old;
    });
    let (decision, allowed, codes) = verdict(&broken, &state, &config, false);
    assert_eq!((decision, allowed), ("deny", false), "{codes}");
}

/// Regression (issue 15, item 3): any `ownerReferences` entry with `controller: true` turned a
/// denial into a warning. Only a trusted controller creating an object its workload owns is
/// exempt; the API server sets `userInfo`, so it cannot be forged by the client.
#[test]
fn the_controller_exemption_trusts_the_requesting_controller_not_the_owner_reference() {
    let state = state();
    let config = Config::default();
    let real = std::fs::read(cases_dir().join("validate/pod-create-owned-by-replicaset.json")).unwrap();
    assert_eq!(verdict(&real, &state, &config, false).0, "warn", "the replicaset-controller's pod");
    let by_a_person = edited("pod-create-owned-by-replicaset", |r| {
        r["userInfo"] = json!({"username": "mallory@example.com", "groups": ["system:authenticated"]});
    });
    assert_eq!(verdict(&by_a_person, &state, &config, false).0, "deny", "a person writing an ownerReference");
    let fake_owner = edited("deployment-create-no-default-deny", |r| {
        r["object"]["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap",
            "name": "anything", "uid": "0000", "controller": true}]);
    });
    assert_eq!(verdict(&fake_owner, &state, &config, false).0, "deny", "a ConfigMap named as controller");
    let controller_with_odd_owner = edited("pod-create-owned-by-replicaset", |r| {
        r["object"]["metadata"]["ownerReferences"][0]["kind"] = json!("ConfigMap");
    });
    assert_eq!(verdict(&controller_with_odd_owner, &state, &config, false).0, "deny", "the owner must be a workload");
    // The trusted list is configuration (e.g. an Argo Rollouts controller).
    let custom = Config::parse("webhook: {trustedControllers: [mallory@example.com]}\n", "p.yaml").unwrap();
    assert_eq!(verdict(&by_a_person, &state, &custom, false).0, "warn");
}

/// Regression (issue 15, item 4): `portcullis.dev/ignore: "PC001,PC002"` on a Deployment
/// silenced `portcullis lint` while the webhook denied the same object. Same engine, same answer.
#[test]
fn lint_and_the_webhook_agree_on_ignore_annotations() {
    let state = state();
    let annotate = |r: &mut Value| {
        r["object"]["metadata"]["annotations"] = json!({"portcullis.dev/ignore": "PC001,PC002"});
    };
    let body = edited("deployment-create-no-default-deny", annotate);
    let object = serde_json::from_slice::<Value>(&body).unwrap()["request"]["object"].clone();
    let lint = |config: &Config| {
        let mut project = Project::new("default");
        let namespaces = std::fs::read_to_string(cases_dir().join("state/namespaces.yaml")).unwrap();
        // Reported too: PC001/PC002 point at the Namespace object when the input has one.
        project.add_text("namespaces.yaml", namespaces, true);
        project.add_text("deployment.json", object.to_string(), true);
        let codes: BTreeSet<&str> = project.lint(config).iter().map(|f| f.code).collect();
        codes.into_iter().collect::<Vec<_>>().join(",")
    };

    let allowed = Config::default();
    assert_eq!(lint(&allowed), "");
    assert_eq!(verdict(&body, &state, &allowed, false), ("allow", true, String::new()));

    // The platform team forbids ignoring PC001/PC002: both report them, and say why.
    let forbidden = Config::parse("ignoreAnnotations: {forbiddenRules: [PC001, PC002]}\n", "p.yaml").unwrap();
    assert_eq!(lint(&forbidden), "PC001,PC002,PC016");
    assert_eq!(verdict(&body, &state, &forbidden, false), ("deny", false, "PC001,PC002,PC016".to_owned()));
}

/// Regression (issue 16, class 3): a name with a newline forged a log line
/// (`decision="allow"`) and control characters reached the deny message verbatim.
#[test]
fn names_with_control_characters_cannot_forge_lines_or_repaint_terminals() {
    let state = state();
    let config = Config::default();
    let body = edited("deployment-create-no-default-deny", |r| {
        let forged = "web\ndecision=\"allow\" \u{1b}[2J\u{202e}";
        r["name"] = json!(forged);
        r["object"]["metadata"]["name"] = json!(forged);
    });
    let req = admission::parse(&body).unwrap();
    let snapshot = state.snapshot(&req.namespace(), &config.dns.namespace);
    let outcome = admission::decide(Endpoint::Validate, &req, &snapshot, &config);
    assert!(!outcome.response.allowed);
    let message = &outcome.response.result.message;
    assert!(message.contains("web\\u{a}decision=\"allow\" \\u{1b}[2J\\u{202e}"), "{message}");
    assert!(!message.contains('\u{1b}') && !message.contains('\u{202e}'));
    // Every line of the message is portcullis' own: the name adds none.
    assert!(
        message.lines().all(|l| l.starts_with("portcullis denied")
            || l.starts_with("- ")
            || l.starts_with("fix:")
            || l.starts_with("(set namespace")
            || !l.contains("decision=")),
        "{message}"
    );
}

/// Issue 18: the other policy layers' objects the webhook watches take part in every review. A
/// cluster-wide default deny from ClusterNetworkPolicy or Calico satisfies PC001/PC002 for a
/// namespace without NetworkPolicy default-deny (with DNS allowed, PC003 stays quiet); without
/// it the same Deployment is denied.
#[test]
fn the_other_layers_count_in_reviews() {
    use portcullis_webhook::state::StoredObject;
    let state = state();
    let config = Config::default();
    let create = std::fs::read(cases_dir().join("validate/deployment-create-no-default-deny.json")).unwrap();
    let (decision, _, codes) = verdict(&create, &state, &config, false);
    assert_eq!(decision, "deny");
    assert!(codes.contains("PC001") && codes.contains("PC002"), "{codes}");
    let calico = json!({
        "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "default-deny"},
        "spec": {
            "selector": "projectcalico.org/namespace not in {'kube-system'}",
            "types": ["Ingress", "Egress"],
            "egress": [
                {"action": "Allow", "protocol": "UDP", "destination": {
                    "namespaceSelector": "projectcalico.org/name == 'kube-system'",
                    "selector": "k8s-app == 'kube-dns'", "ports": [53]}},
                {"action": "Allow", "protocol": "TCP", "destination": {
                    "namespaceSelector": "projectcalico.org/name == 'kube-system'",
                    "selector": "k8s-app == 'kube-dns'", "ports": [53]}},
            ],
        },
    });
    let baseline = json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "baseline-default-deny"},
        "spec": {"tier": "Baseline", "priority": 10, "subject": {"namespaces": {}},
            "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}],
            "egress": [
                {"action": "Accept", "to": [{"pods": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}}],
                 "protocols": [{"udp": {"destinationPort": {"number": 53}}}, {"tcp": {"destinationPort": {"number": 53}}}]},
                {"action": "Deny", "to": [{"networks": ["0.0.0.0/0", "::/0"]}]},
            ]},
    });
    for layer in [calico, baseline] {
        let req = admission::parse(&create).unwrap();
        let mut snapshot = state.snapshot(&req.namespace(), &config.dns.namespace);
        snapshot.layers.push(StoredObject::new(layer.clone()));
        let outcome = admission::decide(Endpoint::Validate, &req, &snapshot, &config);
        let codes = portcullis_webhook::review::codes(&outcome.problems);
        assert_eq!(outcome.decision.as_str(), "allow", "{}: {codes}", layer["kind"]);
    }
}

/// Issue 18: an object of another layer is reviewed on write: what its API server would
/// reject is reported (a Calico selector that does not parse), a valid one passes.
#[test]
fn layer_objects_are_reviewed() {
    let state = state();
    let config = Config::default();
    let body = |selector: &str| {
        edited("deployment-create-no-default-deny", |r| {
            let gvk = json!({"group": "projectcalico.org", "version": "v3", "kind": "NetworkPolicy"});
            let gvr = json!({"group": "projectcalico.org", "version": "v3", "resource": "networkpolicies"});
            r["kind"] = gvk.clone();
            r["requestKind"] = gvk;
            r["resource"] = gvr.clone();
            r["requestResource"] = gvr;
            r["name"] = json!("db-ingress");
            r["object"] = json!({
                "apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
                "metadata": {"name": "db-ingress", "namespace": "legacy"},
                "spec": {"selector": selector, "ingress": [{"action": "Allow", "source": {"selector": "app == 'api'"}}]},
            });
        })
    };
    let (decision, _, codes) = verdict(&body("app = 'db'"), &state, &config, false);
    assert_eq!(decision, "deny", "{codes}");
    assert!(codes.contains("PC000"), "{codes}");
    let (decision, _, codes) = verdict(&body("app == 'db'"), &state, &config, false);
    assert_eq!(decision, "allow", "{codes}");
}

/// Issue 18: deleting a cluster-wide default deny is as serious as deleting a namespace's: the
/// review names the namespaces (from the cache) that it leaves without one.
#[test]
fn deleting_a_cluster_wide_default_deny_names_the_namespaces_it_opens() {
    use std::sync::Arc;
    let state = state();
    let mut config = Config::default();
    config.webhook.mode = portcullis_linter::config::WebhookMode::Enforce;
    let baseline = json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "baseline-default-deny"},
        "spec": {"tier": "Baseline", "priority": 10, "subject": {"namespaces": {}},
            "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]},
    });
    let body = edited("deployment-create-no-default-deny", |r| {
        let gvk = json!({"group": "policy.networking.k8s.io", "version": "v1alpha2", "kind": "ClusterNetworkPolicy"});
        let gvr =
            json!({"group": "policy.networking.k8s.io", "version": "v1alpha2", "resource": "clusternetworkpolicies"});
        r["kind"] = gvk.clone();
        r["requestKind"] = gvk;
        r["resource"] = gvr.clone();
        r["requestResource"] = gvr;
        r["name"] = json!("baseline-default-deny");
        r.as_object_mut().unwrap().remove("namespace");
        r["operation"] = json!("DELETE");
        r["object"] = Value::Null;
        r["oldObject"] = baseline.clone();
    });
    let req = admission::parse(&body).unwrap();
    assert!(admission::needs_cluster_view(&req));
    let mut snapshot = state.snapshot(&req.namespace(), &config.dns.namespace);
    snapshot.cluster = Some(Arc::new(state.cluster_view()));
    let outcome = admission::decide(Endpoint::Validate, &req, &snapshot, &config);
    let text = outcome.problems.iter().map(|p| p.message.clone()).collect::<Vec<_>>().join("\n");
    assert_eq!(outcome.decision.as_str(), "deny", "{text}");
    assert_eq!(portcullis_webhook::review::codes(&outcome.problems), "PC001", "{text}");
    // legacy has no NetworkPolicy default-deny; shop and billing have theirs, so only ingress
    // of the namespaces without one is lost.
    assert!(text.contains("deleting ClusterNetworkPolicy baseline-default-deny leaves"), "{text}");
    assert!(text.contains("legacy"), "{text}");
    assert!(!text.contains("shop"), "{text}");
    // Without the cluster view (a cache that cannot say), nothing is claimed.
    snapshot.cluster = None;
    let outcome = admission::decide(Endpoint::Validate, &req, &snapshot, &config);
    assert!(outcome.problems.is_empty());
}

/// The direct reading of a review gives exactly what the typed one gives (the objects key by
/// key and in order, and every other request field), for every review the tests hold: the
/// cases, the conformance corpus, and edited cases the direct reading must hand back (no
/// `apiVersion`, metadata `ObjectMeta` does not read, `null` metadata).
#[test]
fn direct_and_typed_readings_agree() {
    let mut bodies: Vec<(String, Vec<u8>)> = Vec::new();
    for endpoint in ["validate", "mutate"] {
        for e in std::fs::read_dir(cases_dir().join(endpoint)).unwrap() {
            let path = e.unwrap().path();
            bodies.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    let corpus = repo().join("../shared/conformance/admission");
    for e in std::fs::read_dir(&corpus).into_iter().flatten() {
        let path = e.unwrap().path();
        bodies.push((path.display().to_string(), std::fs::read(&path).unwrap()));
    }
    // A CREATE with an object to edit (the first file of the directory was once a DELETE, whose
    // `object` is null: no edit below then reached the direct reader).
    let case = "deployment-create-dns-blocked".to_owned();
    type Edit = (&'static str, fn(&mut Value));
    let edits: [Edit; 8] = [
        ("no apiVersion", |r| drop(r["object"].as_object_mut().map(|o| o.remove("apiVersion")))),
        ("labels not strings", |r| r["object"]["metadata"]["labels"] = serde_json::json!({"a": 1})),
        ("null metadata", |r| r["object"]["metadata"] = Value::Null),
        // Metadata as `ObjectMeta` writes it back: fields and map keys in order, nulls left out.
        ("plain metadata: labels out of order, a null field, annotations", |r| {
            r["object"]["metadata"] = serde_json::json!({
                "uid": "u-1", "namespace": "billing", "name": "invoices", "generateName": null,
                "labels": {"z": "1", "a": "2", "m": ""}, "annotations": {"b": "x", "a": "y"},
            });
        }),
        ("plain metadata: empty labels, null annotations", |r| {
            r["object"]["metadata"] = serde_json::json!({"name": "invoices", "labels": {}, "annotations": null});
        }),
        ("a timestamp", |r| r["object"]["metadata"]["creationTimestamp"] = serde_json::json!("2026-11-27T08:00:00Z")),
        ("managed fields", |r| {
            r["object"]["metadata"]["managedFields"] = serde_json::json!([{"manager": "kubectl-client-side-apply",
                "operation": "Update", "apiVersion": "apps/v1", "time": "2026-11-27T08:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {"f:replicas": {}}}}]);
        }),
        ("metadata reordered, extra field", |r| {
            let meta = r["object"]["metadata"].take();
            let mut fields: Vec<(String, Value)> = meta.as_object().cloned().unwrap_or_default().into_iter().collect();
            fields.reverse();
            let mut reordered: serde_json::Map<String, Value> = fields.into_iter().collect();
            reordered.insert("unknownField".to_owned(), Value::from(1));
            r["object"]["metadata"] = Value::Object(reordered);
        }),
    ];
    let edited_from = bodies.len();
    for (what, edit) in edits {
        bodies.push((format!("{case} edited: {what}"), edited(&case, edit)));
    }
    // Fields the one-pass reader must take as kube's type does: unknown ones at either level
    // (ignored), a response next to the request (read, not kept), a request field of the wrong
    // type (refused by both).
    let text = String::from_utf8(std::fs::read(cases_dir().join(format!("validate/{case}.json"))).unwrap()).unwrap();
    for (what, from, to) in [
        ("unknown review field", "\"request\":", "\"unknownField\": [1, {\"a\": 2}],\n  \"request\":"),
        ("unknown request field", "\"operation\":", "\"unknownField\": {\"x\": null},\n    \"operation\":"),
        ("a response too", "\"request\":", "\"response\": {\"uid\": \"u\", \"allowed\": true},\n  \"request\":"),
        ("a bad response", "\"request\":", "\"response\": {\"allowed\": \"yes\"},\n  \"request\":"),
        ("dryRun not a bool", "\"operation\":", "\"dryRun\": \"no\",\n    \"operation\":"),
        // Inside metadata, as the typed reader reads it: a label given twice, the last one kept.
        ("a label given twice", "\"labels\": {", "\"labels\": {\"app\": \"first\", "),
        (
            "a metadata field given twice",
            "\"uid\": \"7e570000-0000-4000-8000-000000000003\",",
            "\"uid\": \"first\", \"uid\": \"7e570000-0000-4000-8000-000000000003\",",
        ),
    ] {
        let body = text.replacen(from, to, 1);
        assert_ne!(body, text, "{what}: not edited");
        bodies.push((format!("{case} edited: {what}"), body.into_bytes()));
    }
    let mut direct_count = 0;
    for (i, (name, body)) in bodies.iter().enumerate() {
        let typed = admission::parse_typed(body);
        let direct = admission::parse_direct(body);
        // These edits must reach the direct reader, or they test nothing.
        let direct_expected = [
            "plain metadata",
            "a timestamp",
            "managed fields",
            "extra field",
            "unknown review",
            "unknown request",
            "a label given twice",
            "a metadata field given twice",
        ]
        .iter()
        .any(|what| name.contains(what));
        assert!(i < edited_from || !direct_expected || direct.is_some(), "{name}: not read directly");
        let Some(direct) = direct else { continue };
        direct_count += 1;
        let mut typed = typed.unwrap_or_else(|e| panic!("{name}: read directly, refused typed: {e}"));
        let text = |v: &Option<Value>| v.as_ref().map(|v| serde_json::to_string(v).unwrap());
        assert_eq!(text(&direct.object), text(&typed.object), "{name}: object");
        assert_eq!(text(&direct.old_object), text(&typed.old_object), "{name}: oldObject");
        typed.inner.object = None;
        typed.inner.old_object = None;
        assert_eq!(format!("{:?}", direct.inner), format!("{:?}", typed.inner), "{name}: request");
    }
    assert!(direct_count >= bodies.len() / 2, "only {direct_count} of {} read directly", bodies.len());
}

/// Found by the `admission_review` fuzz target: a body naming a request field twice was read by
/// the direct reader (the last value winning) and refused by the typed one, so the two readings
/// disagreed about what was under review. A body with a key twice is not settled directly; the
/// typed reader refuses it (400).
#[test]
fn a_key_given_twice_is_not_read_directly() {
    let body = std::fs::read_to_string(cases_dir().join("validate/pod-create-shop-allowed.json")).unwrap();
    assert!(admission::parse_direct(body.as_bytes()).is_some());
    let twice = body.replacen("\"operation\":", "\"name\": \"other\",\n    \"operation\":", 1);
    assert_ne!(twice, body);
    assert!(admission::parse_direct(twice.as_bytes()).is_none(), "read directly although a key is given twice");
    assert!(admission::parse(twice.as_bytes()).is_err());
    // Inside the object too (where the typed reader's flattened fields would keep one of them).
    let inner = body.replacen("\"spec\":", "\"spec\": {},\n      \"spec\":", 1);
    assert_ne!(inner, body);
    assert!(admission::parse_direct(inner.as_bytes()).is_none());
    // The object's own head, which the direct reader takes apart: each given twice.
    let object = body.find("\"object\":").unwrap();
    let (before, after) = body.split_at(object);
    for (key, twice) in [
        ("apiVersion", "\"apiVersion\": \"v1\", \"apiVersion\":"),
        ("kind", "\"kind\": \"Pod\", \"kind\":"),
        ("metadata", "\"metadata\": {}, \"metadata\":"),
    ] {
        let edited = format!("{before}{}", after.replacen(&format!("\"{key}\":"), twice, 1));
        assert_ne!(edited, body, "{key}: not edited");
        assert!(admission::parse_direct(edited.as_bytes()).is_none(), "{key} given twice in the object, read directly");
    }
}

/// JSON is UTF-8 (RFC 8259, section 8.1). The direct reader checks the whole body once instead of
/// string by string; a byte that is not UTF-8, inside a string or outside one, leaves the body to
/// the typed reader, which refuses it (400) and says where.
#[test]
fn a_body_that_is_not_utf8_is_refused() {
    let body = std::fs::read(cases_dir().join("validate/pod-create-shop-allowed.json")).unwrap();
    assert!(admission::parse_direct(&body).is_some());
    let at = |needle: &[u8]| body.windows(needle.len()).position(|w| w == needle).unwrap();
    // An invalid byte inside a string (a label value), then one between tokens.
    for (what, spliced) in [("in a string", at(b"\"operation\"") + 1), ("between tokens", at(b"\"request\""))] {
        let mut bad = body.clone();
        bad.insert(spliced, 0xff);
        assert!(admission::parse_direct(&bad).is_none(), "{what}: read directly");
        let refused = admission::parse(&bad).map(|_| ()).unwrap_err().to_string();
        assert!(refused.contains("line"), "{what}: the refusal names no place: {refused}");
    }
}

/// Issue 21: with the `istio` layer, Istio's objects are reviewed on write and count in the
/// reviews of their namespace. A ServiceEntry admitting every host is PC029; a Deployment with
/// a sidecar whose host a VirtualService of its namespace sends through an egress gateway,
/// while nothing at L4 stops it going direct, is PC025 (Istio's egress-gateway task).
#[test]
fn istio_objects_are_reviewed_and_routes_count() {
    use portcullis_webhook::state::StoredObject;
    let state = state();
    let config = Config::default();
    let entry = edited("deployment-create-no-default-deny", |r| {
        let gvk = json!({"group": "networking.istio.io", "version": "v1", "kind": "ServiceEntry"});
        let gvr = json!({"group": "networking.istio.io", "version": "v1", "resource": "serviceentries"});
        r["kind"] = gvk.clone();
        r["requestKind"] = gvk;
        r["resource"] = gvr.clone();
        r["requestResource"] = gvr;
        r["name"] = json!("everything");
        r["object"] = json!({
            "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": "everything", "namespace": "legacy"},
            "spec": {"hosts": ["*"], "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}]},
        });
    });
    let (_, allowed, codes) = verdict(&entry, &state, &config, false);
    assert!(allowed && codes.contains("PC029"), "{codes}");

    let route = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "direct-cnn-through-egress-gateway", "namespace": "legacy"},
        "spec": {
            "hosts": ["edition.cnn.com"],
            "gateways": ["istio-egressgateway", "mesh"],
            "tls": [{
                "match": [{"gateways": ["mesh"], "port": 443, "sniHosts": ["edition.cnn.com"]}],
                "route": [{"destination": {"host": "istio-egressgateway.istio-system.svc.cluster.local", "port": {"number": 443}}}],
            }],
        },
    });
    let deployment = |inject: &str| {
        edited("deployment-create-no-default-deny", |r| {
            r["object"]["spec"]["template"]["metadata"]["labels"]["sidecar.istio.io/inject"] = json!(inject);
        })
    };
    let codes_with_route = |body: &[u8]| {
        let req = admission::parse(body).unwrap();
        let mut snapshot = state.snapshot(&req.namespace(), &config.dns.namespace);
        snapshot.layers.push(StoredObject::new(route.clone()));
        let outcome = admission::decide(Endpoint::Validate, &req, &snapshot, &config);
        portcullis_webhook::review::codes(&outcome.problems)
    };
    assert!(codes_with_route(&deployment("true")).contains("PC025"));
    // Without a sidecar the route does not apply to its pods.
    let codes = codes_with_route(&deployment("false"));
    assert!(!codes.contains("PC025"), "{codes}");
}
