//! The FQDN controller: its logic against an in-memory API (apply, status, requeue, no write
//! when nothing changed, restart recovery from status, observations, the Lease), resolution
//! against a real DNS server (dnsmasq on 127.0.0.1), and kube's real client code paths against
//! a mocked API server (tower-test).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use common::respond;
#[path = "../../linter/tests/common/dnsmasq.rs"]
mod dnsmasq;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use hyper::{Request, Response};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use kube::client::Body;
use portcullis_linter::config::DnsConfig;
use portcullis_linter::egress::resolve::{LookupError, Resolution};
use portcullis_linter::egress::{
    Answer, CacheConfig, ClientPod, EgressIntent, EgressIntentStatus, IntentKey, NameState, Observation,
};
use portcullis_linter::project::Project;
use portcullis_webhook::controller::api::{ApiError, ControllerApi, FIELD_MANAGER, Fenced, KubeApi};
use portcullis_webhook::controller::dns::DnsLookup;
use portcullis_webhook::controller::lease::{Elector, LeaseConfig};
use portcullis_webhook::controller::{
    GUARD_LABEL, GuardedNamespace, Reconciler, Settings, guard_policies, status_needs_write,
};
use serde_json::{Value, json};

/// An in-memory API server for the controller: records writes; policies and Leases with
/// resourceVersions, checked as the API server checks a precondition.
#[derive(Default)]
struct FakeApi {
    policies: Mutex<Vec<Value>>,
    statuses: Mutex<Vec<EgressIntentStatus>>,
    leases: Mutex<HashMap<String, Lease>>,
    /// The stored resourceVersion of each policy, by name.
    policy_versions: Mutex<HashMap<String, u64>>,
    /// The precondition each policy write carried.
    preconditions: Mutex<Vec<Option<String>>>,
}

impl ControllerApi for FakeApi {
    fn apply_policy<'a>(&'a self, _: &'a str, policy: &'a Value) -> BoxFuture<'a, Result<Option<String>, ApiError>> {
        let name = policy["metadata"]["name"].as_str().unwrap().to_owned();
        let mut versions = self.policy_versions.lock().unwrap();
        let stored = versions.get(&name).copied();
        let precondition = policy["metadata"]["resourceVersion"].as_str().map(str::to_owned);
        self.preconditions.lock().unwrap().push(precondition.clone());
        let result = match precondition {
            Some(rv) if Some(rv.parse::<u64>().unwrap()) != stored => Err(ApiError::Conflict("policy changed".into())),
            _ => {
                let next = stored.unwrap_or(0) + 1;
                versions.insert(name, next);
                let mut written = policy.clone();
                written["metadata"].as_object_mut().unwrap().remove("resourceVersion");
                self.policies.lock().unwrap().push(written);
                Ok(Some(next.to_string()))
            }
        };
        Box::pin(async move { result })
    }
    fn patch_status<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        s: &'a EgressIntentStatus,
        _: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        self.statuses.lock().unwrap().push(s.clone());
        Box::pin(async { Ok(()) })
    }
    fn get_lease<'a>(&'a self, _: &'a str, name: &'a str) -> BoxFuture<'a, Result<Option<Lease>, ApiError>> {
        let lease = self.leases.lock().unwrap().get(name).cloned();
        Box::pin(async move { Ok(lease) })
    }
    fn create_lease<'a>(&'a self, _: &'a str, lease: &'a Lease) -> BoxFuture<'a, Result<Lease, ApiError>> {
        let mut leases = self.leases.lock().unwrap();
        let name = lease.metadata.name.clone().unwrap();
        let result = match leases.entry(name) {
            std::collections::hash_map::Entry::Occupied(_) => Err(ApiError::Conflict("exists".into())),
            std::collections::hash_map::Entry::Vacant(slot) => {
                let mut stored = lease.clone();
                stored.metadata.resource_version = Some("1".into());
                slot.insert(stored.clone());
                Ok(stored)
            }
        };
        Box::pin(async move { result })
    }
    fn replace_lease<'a>(&'a self, _: &'a str, lease: &'a Lease) -> BoxFuture<'a, Result<Lease, ApiError>> {
        let mut leases = self.leases.lock().unwrap();
        let name = lease.metadata.name.clone().unwrap();
        let current = leases.get(&name).and_then(|l| l.metadata.resource_version.clone());
        let result = if current != lease.metadata.resource_version {
            Err(ApiError::Conflict("resourceVersion changed".into()))
        } else {
            let mut stored = lease.clone();
            let next = current.unwrap_or_default().parse::<u64>().unwrap_or(0) + 1;
            stored.metadata.resource_version = Some(next.to_string());
            leases.insert(name, stored.clone());
            Ok(stored)
        };
        Box::pin(async move { result })
    }
}

impl FakeApi {
    fn writes(&self) -> (usize, usize) {
        (self.policies.lock().unwrap().len(), self.statuses.lock().unwrap().len())
    }
    fn last_policy(&self) -> Value {
        self.policies.lock().unwrap().last().cloned().unwrap()
    }
    fn last_status(&self) -> EgressIntentStatus {
        self.statuses.lock().unwrap().last().cloned().unwrap()
    }
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn settings() -> Settings {
    let cache =
        CacheConfig { ttl_floor: Duration::from_secs(5), grace: Duration::from_secs(60), ..CacheConfig::default() };
    Settings { cache, ..Settings::from_config(&Default::default()) }
}

fn intent(targets: Value, status: Option<&EgressIntentStatus>) -> EgressIntent {
    serde_json::from_value(json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "EgressIntent",
        "metadata": {"name": "pay", "namespace": "shop", "uid": "u-1", "generation": 3},
        "spec": {"podSelector": {"matchLabels": {"app": "pay"}}, "egress": targets},
        "status": status,
    }))
    .unwrap()
}

fn cidrs(policy: &Value) -> Vec<String> {
    policy["spec"]["egress"].as_array().unwrap()[1..]
        .iter()
        .flat_map(|r| r["to"].as_array().unwrap().clone())
        .map(|p| p["ipBlock"]["cidr"].as_str().unwrap().to_owned())
        .collect()
}

fn key() -> IntentKey {
    IntentKey { namespace: "shop".into(), name: "pay".into() }
}

/// The controller's resolver answers what the CLI's stub answers (`linter/tests/dns.rs`): A and
/// AAAA with TTLs, the CNAME chain, case and a final dot ignored, NXDOMAIN as no address.
#[tokio::test(flavor = "current_thread")]
async fn the_controller_resolver_follows_cname_chains_with_ttls() {
    let server = dnsmasq::Dnsmasq::start(
        "controller-chain",
        "192.0.2.10 host.example.test\n2001:db8::10 host.example.test\n192.0.2.20 api.example.test\n",
        42,
        &["www.example.test,edge.example.test", "edge.example.test,host.example.test"],
    );
    let dns = DnsLookup::new(&[server.addr], Duration::from_millis(300)).unwrap();
    let ips = |r: &Resolution| r.answers.iter().map(|a| (a.ip.to_string(), a.ttl)).collect::<Vec<_>>();
    let r = dns.lookup("www.example.test").await.unwrap();
    assert_eq!(ips(&r), [("192.0.2.10".to_owned(), 42), ("2001:db8::10".to_owned(), 42)]);
    assert_eq!(r.cnames, ["edge.example.test", "host.example.test"]);
    let r = dns.lookup("API.example.test.").await.unwrap();
    assert_eq!(ips(&r), [("192.0.2.20".to_owned(), 42)]);
    assert!(r.cnames.is_empty());
    assert_eq!(dns.lookup("nope.example.test").await, Err(LookupError::NoAddress("nope.example.test".into())));
}

#[tokio::test(flavor = "current_thread")]
async fn resolves_for_real_applies_and_writes_only_on_change() {
    let server =
        dnsmasq::Dnsmasq::start("controller", "192.0.2.20 api.example.test\n2001:db8::20 api.example.test\n", 30, &[]);
    let dns = DnsLookup::new(&[server.addr], Duration::from_millis(300)).unwrap();
    let rec = Reconciler::new(FakeApi::default(), settings());
    let obj = intent(json!([{"fqdn": "api.example.test", "ports": [{"port": 443}]}]), None);

    // Admitted: the policy exists at once (DNS only), the name is Pending.
    let out = rec.reconcile(&obj, t(0)).await.unwrap();
    assert!(out.policy_written && out.status_written);
    let policy = rec.api().last_policy();
    assert_eq!(policy["metadata"]["ownerReferences"][0]["uid"], "u-1");
    assert_eq!(policy["metadata"]["ownerReferences"][0]["controller"], true);
    assert!(cidrs(&policy).is_empty());
    let status = rec.api().last_status();
    assert_eq!(status.addresses[0].state, NameState::Pending);
    assert_eq!((status.conditions[0].status.as_str(), status.conditions[0].reason.as_str()), ("False", "Pending"));
    assert_eq!(status.observed_generation, Some(3));

    // Nothing changed: no write at all.
    let out = rec
        .reconcile(
            &intent(obj.spec.egress.iter().map(|e| serde_json::to_value(e).unwrap()).collect(), Some(&status)),
            t(1),
        )
        .await
        .unwrap();
    assert!(!out.policy_written && !out.status_written);
    assert_eq!(rec.api().writes(), (1, 1));

    // The controller's own lookup against the DNS server.
    assert_eq!(rec.next_resolution(), Some(t(0)));
    assert_eq!(rec.resolve_due(&dns, t(2)).await, [key()]);
    let out = rec.reconcile(&obj, t(2)).await.unwrap();
    assert!(out.policy_written && out.status_written);
    assert_eq!(cidrs(&rec.api().last_policy()), ["192.0.2.20/32", "2001:db8::20/128"]);
    assert_eq!(rec.api().last_policy()["spec"]["egress"][1]["ports"], json!([{"port": 443, "protocol": "TCP"}]));
    let status = rec.api().last_status();
    assert_eq!(status.addresses[0].state, NameState::Resolved);
    assert_eq!(status.conditions[0].reason, "Resolved");
    // Requeued when the first address would age out: TTL 30 + grace 60.
    assert_eq!(out.requeue_after, Duration::from_secs(90), "resolved at 2, TTL 30, grace 60");
    assert_eq!(rec.next_resolution(), Some(t(32)), "re-resolved at the TTL");

    // Re-resolving the same answer changes nothing visible: no writes.
    assert!(rec.resolve_due(&dns, t(32)).await.is_empty());
    let out = rec.reconcile(&obj, t(32)).await.unwrap();
    assert!(!out.policy_written && !out.status_written, "a refresh within grace/2 is not written");
    assert_eq!(rec.api().writes(), (2, 2));
    // Much later the persisted expiry lags by more than grace/2: status (only) is refreshed.
    assert!(rec.resolve_due(&dns, t(62)).await.is_empty());
    let out = rec.reconcile(&obj, t(62)).await.unwrap();
    assert!(!out.policy_written && out.status_written);
}

#[tokio::test(flavor = "current_thread")]
async fn a_restart_rebuilds_the_cache_from_status_and_loses_nothing() {
    let before = Reconciler::new(FakeApi::default(), settings());
    let obj = intent(json!([{"fqdnPattern": "*.s3.example.test"}]), None);
    before.reconcile(&obj, t(0)).await.unwrap();
    let pod = ClientPod { namespace: "shop".into(), labels: BTreeMap::from([("app".into(), "pay".into())]) };
    let answer = |ip: &str| Observation {
        client: pod.clone(),
        qname: "bucket.s3.example.test".into(),
        answers: vec![Answer { ip: ip.parse().unwrap(), ttl: 300 }],
        cnames: vec![],
        at: t(5),
    };
    assert_eq!(before.observe(&answer("198.51.100.9")), [key()]);
    before.reconcile(&obj, t(5)).await.unwrap();
    let persisted = before.api().last_status();
    let policy = before.api().last_policy();
    assert_eq!(cidrs(&policy), ["198.51.100.9/32"]);

    // A new process: the intent arrives with its status; the policy is the same without any
    // DNS answer, and the status needs no rewrite.
    let after = Reconciler::new(FakeApi::default(), settings());
    let out = after
        .reconcile(&intent(json!([{"fqdnPattern": "*.s3.example.test"}]), Some(&persisted)), t(100))
        .await
        .unwrap();
    assert!(out.policy_written, "a new process applies once");
    assert_eq!(after.api().last_policy(), policy);
    assert!(!out.status_written);

    // Another pod's answers never widen this intent.
    let stranger =
        Observation { client: ClientPod { labels: BTreeMap::new(), ..pod.clone() }, ..answer("203.0.113.66") };
    assert!(after.observe(&stranger).is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn an_invalid_intent_gets_a_condition_and_no_policy() {
    let rec = Reconciler::new(FakeApi::default(), settings());
    let obj = intent(json!([{"fqdnPattern": "api.*.example.com"}]), None);
    let out = rec.reconcile(&obj, t(0)).await.unwrap();
    assert!(!out.policy_written && out.status_written);
    let c = &rec.api().last_status().conditions[0];
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "Invalid"));
    assert!(c.message.contains("invalid fqdnPattern"), "{}", c.message);
    assert!(rec.is_empty());
}

#[test]
fn status_writes_follow_shape_changes_and_expiry_lag() {
    let grace = Duration::from_secs(60);
    let status = |expires: i64| -> EgressIntentStatus {
        serde_json::from_value(json!({"policyName": "p", "addresses": [{"fqdn": "a.example.com", "state": "Resolved",
            "ips": [{"ip": "192.0.2.1", "source": "resolver", "lastSeen": t(0).to_string(), "expiresAt": t(expires).to_string()}]}]}))
        .unwrap()
    };
    assert!(status_needs_write(None, &status(10), grace));
    assert!(!status_needs_write(Some(&status(10)), &status(10), grace));
    assert!(!status_needs_write(Some(&status(10)), &status(40), grace), "lag of exactly grace/2");
    assert!(status_needs_write(Some(&status(10)), &status(41), grace));
    let mut other = status(10);
    other.addresses[0].state = NameState::Pending;
    assert!(status_needs_write(Some(&status(10)), &other, grace));
}

#[tokio::test(flavor = "current_thread")]
async fn one_writer_holds_the_lease_and_a_stand_by_takes_over_when_it_stops() {
    let api = Arc::new(FakeApi::default());
    let config = |id: &str| LeaseConfig { duration: Duration::from_secs(15), ..LeaseConfig::new("portcullis", id) };
    let a = Elector::new(api.clone(), config("a"));
    let b = Elector::new(api.clone(), config("b"));
    assert!(a.tick(t(0)).await, "the first replica creates the lease");
    assert!(!b.tick(t(1)).await, "the second stands by");
    assert!(a.tick(t(5)).await, "the holder renews");
    assert!(!b.tick(t(19)).await, "renewed at 5: still held at 19");
    // a stops renewing; 15 s after its last renewal b takes over.
    assert!(b.tick(t(21)).await);
    assert!(!a.tick(t(22)).await, "a sees b holding a fresh lease");
    assert!(!a.is_leader() && b.is_leader());
    let lease = api.leases.lock().unwrap()["portcullis-controller"].clone();
    assert_eq!(lease.spec.as_ref().unwrap().lease_transitions, Some(1));
}

/// Regression (issue 15, item 6): leader A was paused, B took the Lease, and A wrote on resume.
/// A replica writes only until the renew deadline after its last successful renewal was sent.
#[tokio::test(flavor = "current_thread")]
async fn a_paused_leader_stops_writing_before_its_lease_can_expire() {
    let api = Arc::new(FakeApi::default());
    let a = Elector::new(api.clone(), LeaseConfig::new("portcullis", "a"));
    let config = LeaseConfig::new("portcullis", "a");
    assert!(config.validate().is_ok());
    let fence = a.fence();
    assert!(!fence.is_open(), "closed before the first renewal");
    // The renewal is sent at some instant between `before` and `after`; the fence is open until
    // that instant plus the renew deadline. (A bound of `before` plus a millisecond failed in CI:
    // a loaded machine can take longer than that between the two clock reads.)
    let before = std::time::Instant::now();
    assert!(a.tick(t(0)).await);
    let after = std::time::Instant::now();
    assert!(fence.is_open());
    assert!(fence.is_open_at(before + config.renew_deadline - Duration::from_millis(1)));
    // Paused past the renew deadline (10 s) but not yet past the lease duration (15 s):
    // another replica cannot hold the Lease yet, and this one already writes nothing.
    assert!(!fence.is_open_at(after + config.renew_deadline));
    assert!(config.renew_deadline < config.duration);

    // With the fence closed, a reconcile sends nothing at all.
    let fenced = Fenced::new(FakeApi::default(), portcullis_webhook::controller::lease::Fence::default());
    let reconciler = Reconciler::new(fenced, settings());
    let err = reconciler.reconcile(&intent(json!([{"fqdn": "api.example.com"}]), None), t(0)).await.unwrap_err();
    assert_eq!(err, ApiError::Fenced);
    assert_eq!(reconciler.api().inner().writes(), (0, 0));
}

#[test]
fn lease_timing_must_leave_room_between_renewal_and_expiry() {
    let bad = LeaseConfig { renew_deadline: Duration::from_secs(15), ..LeaseConfig::new("portcullis", "a") };
    assert!(bad.validate().unwrap_err().contains("renew_deadline"));
}

/// A replica whose view is stale (another leader wrote the policy since) gets a conflict, not
/// an overwrite, and applies afresh on the retry.
#[tokio::test(flavor = "current_thread")]
async fn policy_writes_carry_the_last_seen_resource_version() {
    let reconciler = Reconciler::new(FakeApi::default(), settings());
    let first = intent(json!([{"fqdn": "api.example.com", "ports": [{"port": 443}]}]), None);
    let key = key();
    assert!(reconciler.reconcile(&first, t(0)).await.unwrap().policy_written);
    assert_eq!(reconciler.api().preconditions.lock().unwrap().clone(), [None], "a first apply has no precondition");
    // Another writer changes the stored policy.
    *reconciler.api().policy_versions.lock().unwrap().values_mut().next().unwrap() += 1;
    reconciler.observe(&Observation {
        client: ClientPod { namespace: key.namespace.clone(), labels: [("app".to_owned(), "pay".to_owned())].into() },
        qname: "api.example.com".into(),
        answers: vec![Answer { ip: "192.0.2.2".parse().unwrap(), ttl: 600 }],
        cnames: vec![],
        at: t(1),
    });
    let err = reconciler.reconcile(&first, t(1)).await.unwrap_err();
    assert!(matches!(err, ApiError::Conflict(_)), "{err:?}");
    // The retry applies without the stale precondition (its view was dropped).
    assert!(reconciler.reconcile(&first, t(2)).await.unwrap().policy_written);
    assert_eq!(reconciler.api().writes().0, 2);
    assert_eq!(reconciler.api().preconditions.lock().unwrap().clone(), [None, Some("1".to_owned()), None]);
}

#[test]
fn the_namespace_guard_writes_what_fix_writes_and_it_passes_lint() {
    let ns = |labels: &[(&str, &str)]| GuardedNamespace {
        name: "team-a".into(),
        uid: Some("ns-uid".into()),
        labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
    };
    let dns = DnsConfig::default();
    assert!(guard_policies(&ns(&[]), false, false, &dns).is_none(), "off by default");
    assert!(guard_policies(&ns(&[(GUARD_LABEL, "false")]), true, false, &dns).is_none(), "the label opts out");
    assert!(guard_policies(&ns(&[]), true, true, &dns).is_none(), "excluded namespaces are left alone");
    let policies = guard_policies(&ns(&[(GUARD_LABEL, "true")]), false, false, &dns).unwrap();
    let names: Vec<&str> = policies.iter().map(|p| p["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["portcullis-default-deny-ingress", "portcullis-default-deny-egress", "portcullis-allow-dns"]);
    assert_eq!(policies[0]["metadata"]["ownerReferences"][0]["kind"], "Namespace");
    // With a workload in the namespace, the guard's policies leave nothing to report.
    let mut project = Project::new("team-a");
    let mut text = String::from(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: team-a}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx}]}\n",
    );
    for p in &policies {
        text.push_str("---\n");
        text.push_str(&serde_json::to_string(p).unwrap());
        text.push('\n');
    }
    project.add_text("guard.yaml", text, true);
    let findings = project.lint(&Default::default());
    let codes: Vec<&str> = findings.iter().map(|f| f.code).collect();
    assert!(codes.is_empty(), "{codes:?}");
}

type ApiHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn kube_api() -> (KubeApi, ApiHandle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (KubeApi::new(kube::Client::new(service, "default")), handle)
}

async fn body(request: Request<Body>) -> Value {
    let bytes = http_body_util::BodyExt::collect(request.into_body()).await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn the_kube_client_sends_server_side_apply_and_status_patches() {
    let (api, mut server) = kube_api();
    let policy = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "egress-intent-pay", "namespace": "shop"}, "spec": {"podSelector": {}}});
    let expected = policy.clone();
    let serving = tokio::spawn(async move {
        let (request, send) = server.next_request().await.unwrap();
        assert_eq!(request.method(), "PATCH");
        assert_eq!(
            request.uri().path(),
            "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies/egress-intent-pay"
        );
        let query = request.uri().query().unwrap().to_owned();
        assert!(query.contains(&format!("fieldManager={FIELD_MANAGER}")) && query.contains("force=true"), "{query}");
        assert_eq!(request.headers()["content-type"], "application/apply-patch+yaml");
        assert_eq!(body(request).await, expected);
        respond(send, 200, &expected);

        let (request, send) = server.next_request().await.unwrap();
        assert_eq!(request.method(), "PATCH");
        assert_eq!(request.uri().path(), "/apis/portcullis.dev/v1alpha1/namespaces/shop/egressintents/pay/status");
        assert_eq!(request.headers()["content-type"], "application/merge-patch+json");
        let sent = body(request).await;
        assert_eq!(sent["status"]["policyName"], "egress-intent-pay");
        // The intent's resourceVersion as read is the write's precondition.
        assert_eq!(sent["metadata"]["resourceVersion"], "42");
        respond(
            send,
            200,
            &json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "EgressIntent",
            "metadata": {"name": "pay", "namespace": "shop"}, "spec": {"podSelector": {}, "egress": []}}),
        );
    });
    api.apply_policy("shop", &policy).await.unwrap();
    let status = EgressIntentStatus { policy_name: Some("egress-intent-pay".into()), ..Default::default() };
    api.patch_status("shop", "pay", &status, Some("42")).await.unwrap();
    serving.await.unwrap();
}

#[tokio::test]
async fn the_kube_client_reads_and_races_for_the_lease() {
    let (api, mut server) = kube_api();
    let serving = tokio::spawn(async move {
        let (request, send) = server.next_request().await.unwrap();
        assert_eq!(
            request.uri().path(),
            "/apis/coordination.k8s.io/v1/namespaces/portcullis/leases/portcullis-controller"
        );
        respond(
            send,
            404,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
        );
        let (request, send) = server.next_request().await.unwrap();
        assert_eq!(request.method(), "POST");
        respond(
            send,
            409,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409, "message": "exists"}),
        );
    });
    let elector = Elector::new(Arc::new(api), LeaseConfig::new("portcullis", "a"));
    assert!(!elector.tick(Timestamp::now()).await, "losing the create race means standing by");
    serving.await.unwrap();
}
