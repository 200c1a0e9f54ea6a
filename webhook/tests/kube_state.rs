//! The watch-backed state: its index filled with real watcher events, and the stale-cache
//! re-read against a mocked API server (tower-test) through kube's real client code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use hyper::{Request, Response};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::client::Body;
use kube::runtime::watcher::Event;
use portcullis_linter::config::Config;
use portcullis_webhook::admission::{self, Endpoint};
use portcullis_webhook::kube_state::KubeState;
use portcullis_webhook::metrics::Metrics;
use portcullis_webhook::server::App;
use portcullis_webhook::state::{ClusterState, StoredPolicy};
use portcullis_webhook::tls;
use serde_json::{Value, json};
use tower_test::mock::{Handle, pair};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

mod common;

use common::{https, repo};

fn mocked() -> (KubeState, ApiHandle) {
    let (service, handle) = pair::<Request<Body>, Response<Body>>();
    (KubeState::new(kube::Client::new(service, "default")), handle)
}

fn namespace(name: &str, labels: Value) -> Namespace {
    serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}),
    )
    .unwrap()
}

fn policy(ns: &str, name: &str, spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": "7",
            "managedFields": [{"manager": "kubectl", "operation": "Update"}]},
        "spec": spec,
    }))
    .unwrap()
}

fn default_deny(ns: &str) -> NetworkPolicy {
    policy(ns, "default-deny", json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}))
}

fn dns_rule(namespace_labels: Value) -> Value {
    json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
        "to": [{"namespaceSelector": {"matchLabels": namespace_labels}}],
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]})
}

/// The cache as a watch leaves it after its first list: billing's DNS rule is the broken one.
fn synced(state: &KubeState) {
    state.apply_namespace_event(Event::Init);
    state.apply_namespace_event(Event::InitApply(namespace("billing", json!({"portcullis.dev/mode": "enforce"}))));
    state.apply_namespace_event(Event::InitApply(namespace("kube-system", json!({}))));
    state.apply_namespace_event(Event::InitDone);
    state.apply_policy_event(Event::Init);
    state.apply_policy_event(Event::InitApply(default_deny("billing")));
    state.apply_policy_event(Event::InitApply(policy(
        "billing",
        "allow-dns",
        dns_rule(json!({"name": "kube-system"})),
    )));
    state.apply_policy_event(Event::InitDone);
    state.apply_intent_event(Event::Init);
    state.apply_intent_event(Event::InitDone);
}

/// A watched policy is stored as its object's `Value` is (its spec written straight from its
/// typed form, its managed fields left out before it is written): the same policy to every
/// review, whatever the spec holds.
#[tokio::test]
async fn a_watched_policy_is_stored_as_its_value_is() {
    let specs = [
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        dns_rule(json!({"kubernetes.io/metadata.name": "kube-system"})),
        json!({"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]},
            "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                "ports": [{"port": "https", "protocol": "TCP"}, {"port": 8000, "endPort": 9000}]}],
            "ingress": []}),
        json!({"podSelector": {"matchLabels": {"app": "<&>é"}}, "egress": []}),
    ];
    let (state, _api) = mocked();
    synced(&state);
    let mut expected = Vec::new();
    for (i, spec) in specs.into_iter().enumerate() {
        let mut p = policy("shapes", &format!("p{i}"), spec);
        p.metadata.labels = Some([("team".to_owned(), "a".to_owned())].into());
        // The spec's text, written from the typed spec and from its `Value`, is the same text:
        // one spec shared by policies from either path (the store interns specs by text).
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(
            serde_json::to_string(spec).unwrap(),
            serde_json::to_string(&serde_json::to_value(spec).unwrap()).unwrap()
        );
        expected.push(StoredPolicy::new(serde_json::to_value(&p).unwrap()).value());
        state.apply_policy_event(Event::Apply(p));
    }
    let mut without_spec = policy("shapes", "p9", json!({}));
    without_spec.spec = None;
    expected.push(StoredPolicy::new(serde_json::to_value(&without_spec).unwrap()).value());
    state.apply_policy_event(Event::Apply(without_spec));
    let mut stored: Vec<Value> = state.snapshot("shapes", "kube-system").policies.iter().map(|p| p.value()).collect();
    let name = |v: &Value| v["metadata"]["name"].as_str().unwrap().to_owned();
    stored.sort_by_key(name);
    expected.sort_by_key(name);
    assert_eq!(stored, expected);
    assert!(stored.iter().all(|p| p["metadata"].get("managedFields").is_none()));
}

#[tokio::test]
async fn watcher_events_fill_the_index() {
    let (state, _api) = mocked();
    assert!(!state.ready(), "not ready before every watch listed once");
    synced(&state);
    assert!(state.ready());
    let snap = state.snapshot("billing", "kube-system");
    assert_eq!(snap.policies.len(), 2);
    assert!(
        snap.policies.iter().all(|p| p.value()["metadata"].get("managedFields").is_none()),
        "managedFields dropped"
    );
    let labels = snap.namespace_labels.unwrap();
    assert_eq!(labels["kubernetes.io/metadata.name"], "billing", "the API server's label is implied");
    assert_eq!(labels["portcullis.dev/mode"], "enforce");
    assert!(snap.dns_namespace_labels.is_some());

    state.apply_policy_event(Event::Delete(default_deny("billing")));
    state.apply_policy_event(Event::Apply(default_deny("other")));
    assert_eq!(state.snapshot("billing", "kube-system").policies.len(), 1);
    assert_eq!(state.sizes().policies, 2);
    assert_eq!(state.sizes().namespaces, 2);
}

/// Answers one fresh read: the list of a namespace's NetworkPolicies with `items`, then the
/// Namespace itself (being deleted when `terminating`).
async fn answer_list(api: &mut ApiHandle, namespace: &str, items: Vec<NetworkPolicy>) {
    answer_fresh(api, namespace, items, false).await;
}

async fn answer_fresh(api: &mut ApiHandle, namespace: &str, items: Vec<NetworkPolicy>, terminating: bool) {
    let (request, send) = api.next_request().await.expect("the webhook reads the namespace's policies");
    assert_eq!(request.method(), "GET");
    assert_eq!(request.uri().path(), format!("/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies"));
    let list = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicyList",
        "metadata": {"resourceVersion": "8"}, "items": items});
    send.send_response(Response::builder().status(200).body(Body::from(serde_json::to_vec(&list).unwrap())).unwrap());
    let (request, send) = api.next_request().await.expect("the webhook reads the namespace");
    assert_eq!(request.uri().path(), format!("/api/v1/namespaces/{namespace}"));
    let mut ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}, "status": {"phase": "Active"}});
    if terminating {
        ns["metadata"]["deletionTimestamp"] = json!("2026-11-25T12:00:00Z");
        ns["status"]["phase"] = json!("Terminating");
    }
    send.send_response(Response::builder().status(200).body(Body::from(serde_json::to_vec(&ns).unwrap())).unwrap());
}

#[tokio::test]
async fn fresh_reads_list_policies_and_get_the_namespace_through_the_kube_client() {
    let (state, mut api) = mocked();
    let server = tokio::spawn(async move {
        answer_fresh(&mut api, "billing", vec![default_deny("billing")], true).await;
    });
    let fresh = state.fresh("billing").await.unwrap();
    server.await.unwrap();
    assert_eq!(fresh.policies.len(), 1);
    assert_eq!(fresh.policies[0].value()["metadata"]["name"], "default-deny");
    assert!(fresh.terminating);
}

/// Regression (issue 15, item 2): `kubectl delete namespace` hung in Terminating because the
/// namespace controller's DELETE of the default-deny was denied. The cache has not seen the
/// namespace's deletion yet; the fresh read before the denial has, and the DELETE goes through.
#[tokio::test]
async fn a_namespace_being_deleted_is_never_blocked_even_before_the_cache_knows() {
    tls::install_crypto_provider();
    let (state, mut api) = mocked();
    synced(&state);
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "d-1", "kind": {"group": "networking.k8s.io", "version": "v1", "kind": "NetworkPolicy"},
        "resource": {"group": "networking.k8s.io", "version": "v1", "resource": "networkpolicies"},
        "name": "default-deny", "namespace": "billing", "operation": "DELETE",
        "userInfo": {"username": "system:serviceaccount:kube-system:namespace-controller"},
        "oldObject": serde_json::to_value(default_deny("billing")).unwrap(), "object": null}});
    let body = serde_json::to_vec(&review).unwrap();
    let response = validate_confirmed(state, body, async move {
        answer_fresh(&mut api, "billing", vec![default_deny("billing")], true).await;
    })
    .await;
    assert_eq!(response["response"]["allowed"], true, "{response}");
}

/// Posts `body` to `/validate` of a webhook serving `state`, while `api_server` answers the
/// fresh read the webhook makes before denying; the cache alone would deny. Returns the review.
async fn validate_confirmed(
    state: KubeState,
    body: Vec<u8>,
    api_server: impl std::future::Future<Output = ()> + Send + 'static,
) -> Value {
    let req = admission::parse(&body).unwrap();
    let cached =
        admission::decide(Endpoint::Validate, &req, &state.snapshot("billing", "kube-system"), &Config::default());
    assert!(cached.needs_confirmation(), "with the cache alone the request is denied");
    let metrics = Arc::new(Metrics::new());
    let app = App {
        config: Arc::new(Config::default()),
        state: Arc::new(state),
        memo: Arc::new(metrics.decision_memo(portcullis_webhook::memo::DEFAULT_BUDGET_BYTES)),
        metrics,
        timeout: Duration::from_secs(10),
        ingest: None,
    };
    let (running, ca, _) = common::serve(app).await;
    let api_server = tokio::spawn(api_server);
    let (status, body, _) = https(running.https, &ca, "/validate", body, &rustls::version::TLS13).await.unwrap();
    assert_eq!(status, 200);
    api_server.await.unwrap();
    running.shutdown().await.unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn api_errors_are_reported_not_panicked() {
    let (state, mut api) = mocked();
    let server = tokio::spawn(async move {
        let (_, send) = api.next_request().await.unwrap();
        let status = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
            "message": "networkpolicies is forbidden", "reason": "Forbidden", "code": 403});
        send.send_response(Response::builder().status(403).body(Body::from(status.to_string().into_bytes())).unwrap());
    });
    let err = state.fresh("billing").await.unwrap_err();
    server.await.unwrap();
    assert!(err.to_string().contains("forbidden"), "{err}");
}

/// The cache still holds billing's broken DNS rule, the API server already has the fixed one:
/// the webhook confirms before denying and admits the Deployment.
#[tokio::test]
async fn a_stale_cache_never_rejects_a_correct_apply() {
    tls::install_crypto_provider();
    let (state, mut api) = mocked();
    synced(&state);
    let body = std::fs::read(repo().join("testcases/admission/validate/deployment-create-dns-blocked.json")).unwrap();

    let response = validate_confirmed(state, body, async move {
        let fixed = policy("billing", "allow-dns", dns_rule(json!({"kubernetes.io/metadata.name": "kube-system"})));
        answer_list(&mut api, "billing", vec![default_deny("billing"), fixed]).await;
    })
    .await;
    assert_eq!(response["response"]["allowed"], true, "{response}");
}

/// Issue 18: a layer kind's watch events (list items come without apiVersion and kind) are
/// stored with the group-version-kind they are served as; a review sees the cluster-scoped ones
/// and those of its namespace, and readiness waits for every layer watch registered.
#[tokio::test]
async fn layer_watch_events_fill_the_index() {
    use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
    let (state, _api) = mocked();
    synced(&state);
    let cnp = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("policy.networking.k8s.io", "v1alpha2", "ClusterNetworkPolicy"),
        "clusternetworkpolicies",
    );
    let cilium = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cilium.io", "v2", "CiliumNetworkPolicy"),
        "ciliumnetworkpolicies",
    );
    let object = |name: &str, namespace: Option<&str>| {
        let mut o = DynamicObject::new(name, &cnp).data(json!({"spec": {"tier": "Baseline", "priority": 1}}));
        o.types = None;
        o.metadata.namespace = namespace.map(str::to_owned);
        o.metadata.managed_fields = Some(Vec::new());
        o
    };
    state.apply_layer_event(&cnp, Event::Init);
    assert!(!state.ready(), "a layer watch that has not listed keeps the webhook unready");
    state.apply_layer_event(&cnp, Event::InitApply(object("baseline", None)));
    state.apply_layer_event(&cnp, Event::InitDone);
    state.apply_layer_event(&cilium, Event::Init);
    state.apply_layer_event(&cilium, Event::InitApply(object("api", Some("billing"))));
    state.apply_layer_event(&cilium, Event::InitApply(object("api", Some("other"))));
    state.apply_layer_event(&cilium, Event::InitDone);
    assert!(state.ready());
    let layers = state.snapshot("billing", "kube-system").layers;
    let seen: Vec<(String, String, String)> = layers
        .iter()
        .map(|o| {
            let v = o.value();
            let text = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or_default().to_owned();
            (text("/apiVersion"), text("/kind"), text("/metadata/name"))
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("cilium.io/v2".to_owned(), "CiliumNetworkPolicy".to_owned(), "api".to_owned()),
            ("policy.networking.k8s.io/v1alpha2".to_owned(), "ClusterNetworkPolicy".to_owned(), "baseline".to_owned()),
        ]
    );
    assert!(layers.iter().all(|o| o.value()["metadata"].get("managedFields").is_none()));
    assert_eq!(state.sizes().layer_objects, 3);
    state.apply_layer_event(&cnp, Event::Delete(object("baseline", None)));
    assert_eq!(state.snapshot("billing", "kube-system").layers.len(), 1);
}
