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
use portcullis_webhook::watched::WatchedPolicy;
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

/// A policy as the watch reads it from the API server's JSON.
fn watched(p: NetworkPolicy) -> WatchedPolicy {
    serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap()
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
    state.apply_policy_event(Event::InitApply(watched(default_deny("billing"))));
    state.apply_policy_event(Event::InitApply(watched(policy(
        "billing",
        "allow-dns",
        dns_rule(json!({"name": "kube-system"})),
    ))));
    state.apply_policy_event(Event::InitDone);
    state.apply_intent_event(Event::Init);
    state.apply_intent_event(Event::InitDone);
}

/// A watched policy is stored as its object's `Value` is (its spec written out as text while it
/// is read, the metadata no review reads skipped unread): the same policy to every review, and
/// the same text (the store shares specs by their text), whatever the spec and metadata hold.
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
        if i == 1 {
            // Every metadata field the API server writes: what the store keeps is read, the
            // rest (managed fields, the last applied object, the server's bookkeeping) is not.
            p.metadata = serde_json::from_value(json!({
                "name": "p1", "namespace": "shapes", "generateName": "p", "uid": "0f0e", "generation": 3,
                "resourceVersion": "12", "creationTimestamp": "2026-11-25T12:00:00Z", "selfLink": "/x",
                "deletionTimestamp": "2026-11-26T12:00:00Z", "deletionGracePeriodSeconds": 30,
                "labels": {"team": "a", "tier": "<b>"}, "finalizers": ["example.com/hold"],
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"kind\":\"NetworkPolicy\"}",
                    "owner": "payments"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": "1a2b",
                    "controller": true}],
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "networking.k8s.io/v1",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:podSelector": {}}}}],
            }))
            .unwrap();
        }
        if i == 2 {
            // Only the last applied object: no annotations are left.
            p.metadata.annotations =
                Some([("kubectl.kubernetes.io/last-applied-configuration".to_owned(), "{}".to_owned())].into());
        }
        expected.push(StoredPolicy::new(serde_json::to_value(&p).unwrap()).value());
        state.apply_policy_event(Event::Apply(watched(p)));
    }
    let mut without_spec = policy("shapes", "p9", json!({}));
    without_spec.spec = None;
    expected.push(StoredPolicy::new(serde_json::to_value(&without_spec).unwrap()).value());
    state.apply_policy_event(Event::Apply(watched(without_spec)));
    let mut stored: Vec<Value> = state.snapshot("shapes", "kube-system").policies.iter().map(|p| p.value()).collect();
    let name = |v: &Value| v["metadata"]["name"].as_str().unwrap().to_owned();
    stored.sort_by_key(name);
    expected.sort_by_key(name);
    let text = |v: &Vec<Value>| v.iter().map(|v| serde_json::to_string(v).unwrap()).collect::<Vec<_>>();
    assert_eq!(text(&stored), text(&expected));
    assert!(stored.iter().all(|p| p["metadata"].get("managedFields").is_none()));
    assert_eq!(stored[1]["metadata"]["annotations"], json!({"owner": "payments"}));
    assert_eq!(stored[1]["metadata"]["ownerReferences"][0]["name"], "d");
    assert_eq!(stored[1]["metadata"]["deletionTimestamp"], "2026-11-26T12:00:00Z");
    assert!(stored[2]["metadata"].get("annotations").is_none());
}

/// The watch writes a policy's spec out as text while it reads it: the text `serde_json` writes
/// for the `Value` of the same JSON (key order, escapes, numbers), read directly or through
/// serde's buffer (a watch event whose object comes before its type).
#[test]
fn a_spec_is_read_into_the_text_its_value_writes() {
    let specs = [
        r#"{"podSelector":{},"policyTypes":["Ingress","Egress"]}"#,
        r#"{ "podSelector" : { "matchLabels" : { "app" : "\u003cb\u003e&", "é": "\ud83d\ude00" } } ,
            "egress" : [ ] , "ingress":[{}] }"#,
        r#"{"n":[-1,0,18446744073709551615,-9223372036854775808,1.5,1e300,2.0,-0.0],"b":[true,false,null],
            "s":"a\"\\\/\b\f\n\r\t\u0001"}"#,
        r#"{"z":1,"a":{"y":[[],{},[[1]]],"x":null}}"#,
        r#"[]"#,
        r#""text""#,
    ];
    for spec in specs {
        let expected = serde_json::to_string(&serde_json::from_str::<Value>(spec).unwrap()).unwrap();
        let object = format!(r#"{{"metadata":{{"name":"p","namespace":"n","resourceVersion":"3"}},"spec":{spec}}}"#);
        let read: WatchedPolicy = serde_json::from_str(&object).unwrap();
        assert_eq!(read.spec.unwrap().0, expected, "{spec}");
        let event = format!(r#"{{"object":{object},"type":"MODIFIED"}}"#);
        match serde_json::from_str::<kube::core::WatchEvent<WatchedPolicy>>(&event).unwrap() {
            kube::core::WatchEvent::Modified(read) => assert_eq!(read.spec.unwrap().0, expected, "{spec}"),
            other => panic!("{other:?}"),
        }
    }
    for object in [r#"{"metadata":{"name":"p"},"spec":null}"#, r#"{"metadata":{"name":"p"}}"#] {
        assert_eq!(serde_json::from_str::<WatchedPolicy>(object).unwrap().spec, None, "{object}");
    }
    // What is not JSON's is refused, as the typed reading refused it.
    assert!(serde_json::from_str::<WatchedPolicy>(r#"{"metadata":{"name":"p"},"spec":{"a":}}"#).is_err());
    assert!(serde_json::from_str::<WatchedPolicy>(r#"{"metadata":{"labels":{"a":1}}}"#).is_err());
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

    state.apply_policy_event(Event::Delete(watched(default_deny("billing"))));
    state.apply_policy_event(Event::Apply(watched(default_deny("other"))));
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
