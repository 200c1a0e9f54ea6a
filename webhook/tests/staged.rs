//! Staged policies in the cluster: the controller's judge against an in-memory status API, the
//! webhook's own state (a manifest directory) and a fixed traffic history. Expected verdicts are
//! written from the NetworkPolicy semantics (see `portcullis_linter::staged`'s tests).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};
use portcullis_linter::replay::TrafficLog;
use portcullis_linter::replay::traffic::{Bounds, parse};
use portcullis_linter::staged::{StagedPolicy, StagedPolicySpec, StagedPolicyStatus};
use portcullis_webhook::controller::api::{ApiError, Fenced};
use portcullis_webhook::controller::lease::Fence;
use portcullis_webhook::controller::staged::{HistorySource, Judge, Judgement, StagedApi};
use portcullis_webhook::state::StaticState;
use serde_json::json;

/// A status write: namespace, name, status, the resourceVersion precondition.
type Write = (String, String, StagedPolicyStatus, Option<String>);

#[derive(Default)]
struct FakeStatus {
    written: Mutex<Vec<Write>>,
    fail: Mutex<bool>,
}

impl StagedApi for FakeStatus {
    fn patch_staged_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a StagedPolicyStatus,
        resource_version: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            if *self.fail.lock().unwrap() {
                return Err(ApiError::Other("connection refused".to_owned()));
            }
            self.written.lock().unwrap().push((
                namespace.to_owned(),
                name.to_owned(),
                status.clone(),
                resource_version.map(str::to_owned),
            ));
            Ok(())
        })
    }
}

/// A history that answers what the test set (`None`: not the leader).
#[derive(Default)]
struct FixedHistory(Mutex<Option<TrafficLog>>);

impl HistorySource for FixedHistory {
    fn live_log(&self) -> BoxFuture<'_, Option<TrafficLog>> {
        let log = self.0.lock().unwrap().clone();
        Box::pin(async move { log })
    }

    fn window(&self) -> SignedDuration {
        SignedDuration::from_hours(14 * 24)
    }
}

fn log(edges: serde_json::Value) -> TrafficLog {
    parse(json!({"version": 1, "edges": edges}).to_string().as_bytes(), Bounds::default()).unwrap()
}

fn web() -> serde_json::Value {
    json!({"namespace": "shop", "workload": "Deployment/web", "labels": {"app": "web"}})
}

/// web → api.stripe.com:443 and web → DNS, since the 1st; the DNS edge last seen at `dns_last`.
fn traffic(stripe_count: u64) -> TrafficLog {
    log(json!([
        {"source": web(), "destination": {"address": "203.0.113.7", "name": "api.stripe.com"}, "port": 443, "protocol": "TCP",
         "firstSeen": "2026-11-01T00:00:00Z", "lastSeen": "2026-11-20T10:00:00Z", "count": stripe_count},
        {"source": web(), "destination": {"namespace": "kube-system", "workload": "Deployment/coredns", "labels": {"k8s-app": "kube-dns"}},
         "port": 53, "protocol": "UDP", "firstSeen": "2026-11-01T00:00:00Z", "lastSeen": "2026-11-20T11:00:00Z", "count": 900},
    ]))
}

/// The cluster: namespaces shop and kube-system, and (with a name) a policy of shop already
/// isolating web's egress and allowing 443.
fn state(allow_stripe: Option<&str>) -> Arc<StaticState> {
    // One directory per call: the tests run side by side.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("portcullis-staged-{}-{call}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: kube-system}\n".to_owned();
    if let Some(name) = allow_stripe {
        text.push_str(&format!("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  podSelector: {{matchLabels: {{app: web}}}}\n  policyTypes: [Egress]\n  egress: [{{ports: [{{port: 443}}]}}]\n"));
    }
    std::fs::write(dir.join("state.yaml"), text).unwrap();
    let (state, problems) = StaticState::load(&dir).unwrap();
    assert_eq!(problems, 0);
    Arc::new(state)
}

/// Staged: web's egress to cluster DNS only.
fn staged(ready_after: Option<&str>) -> StagedPolicy {
    let spec: StagedPolicySpec = serde_json::from_value(json!({
        "networkPolicy": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                        "ports": [{"port": 53, "protocol": "UDP"}]}],
        },
        "readyAfter": ready_after,
    }))
    .unwrap();
    let mut s = StagedPolicy::new("web-egress", spec);
    s.metadata.namespace = Some("shop".to_owned());
    s.metadata.generation = Some(2);
    s.metadata.resource_version = Some("41".to_owned());
    s
}

fn at(t: &str) -> Timestamp {
    t.parse().unwrap()
}

fn ready(status: &StagedPolicyStatus) -> (String, String) {
    let c = &status.conditions[0];
    (c.status.clone(), c.reason.clone())
}

#[tokio::test]
async fn a_staged_policy_is_judged_against_the_live_history_and_written_on_change() {
    let api = Arc::new(FakeStatus::default());
    let history = Arc::new(FixedHistory::default());
    let judge = Judge::new(api.clone(), state(None), history.clone());
    let now = at("2026-11-21T00:00:00Z");

    // Not the leader: nothing to judge with, nothing written.
    assert_eq!(judge.judge(&staged(None), now).await.unwrap(), Judgement::NoHistory);
    assert!(api.written.lock().unwrap().is_empty());

    *history.0.lock().unwrap() = Some(traffic(40));
    assert_eq!(judge.judge(&staged(None), now).await.unwrap(), Judgement::Written);
    {
        let written = api.written.lock().unwrap();
        let (ns, name, status, version) = written.last().unwrap();
        assert_eq!((ns.as_str(), name.as_str(), version.as_deref()), ("shop", "web-egress", Some("41")));
        // Today nothing isolates web: its 443 would be denied, DNS not.
        assert_eq!(ready(status), ("False".to_owned(), "WouldDeny".to_owned()));
        assert_eq!((status.edges, status.denied_edges, status.denied_connections), (2, 1, 40));
        assert_eq!(status.examples[0].destination, "api.stripe.com (203.0.113.7)");
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(status.history_since.as_ref().map(|t| t.0), Some(at("2026-11-01T00:00:00Z")));
    }
    // The same verdict a minute later: not written again.
    let later = at("2026-11-21T00:01:00Z");
    assert_eq!(judge.judge(&staged(None), later).await.unwrap(), Judgement::Unchanged);
    // New traffic (read at the next round): the counts changed, so the status is written.
    *history.0.lock().unwrap() = Some(traffic(45));
    judge.invalidate().await;
    assert_eq!(judge.judge(&staged(None), later).await.unwrap(), Judgement::Written);
    assert_eq!(api.written.lock().unwrap().last().unwrap().2.denied_connections, 45);
    // An unchanged verdict is still written once it is an hour old.
    let hour_later = at("2026-11-21T01:02:00Z");
    assert_eq!(judge.judge(&staged(None), hour_later).await.unwrap(), Judgement::Written);
    assert_eq!(api.written.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn only_what_the_cluster_allows_today_counts_and_readiness_needs_the_window() {
    let api = Arc::new(FakeStatus::default());
    let history = Arc::new(FixedHistory(Mutex::new(Some(traffic(40)))));
    // Today web is isolated with 443 open by policy web-https: staged beside it, the DNS-only
    // policy adds to it (policies add up) and denies nothing; 14 days recorded cover 7d.
    let judge = Judge::new(api.clone(), state(Some("web-https")), history.clone());
    judge.judge(&staged(Some("7d")), at("2026-11-21T00:00:00Z")).await.unwrap();
    let status = api.written.lock().unwrap().last().unwrap().2.clone();
    assert_eq!(ready(&status), ("True".to_owned(), "NothingDenied".to_owned()));
    // Named like the stored policy, it is that policy's next version: 443 goes.
    let judge = Judge::new(api.clone(), state(Some("web-egress")), history.clone());
    judge.judge(&staged(Some("7d")), at("2026-11-21T00:00:00Z")).await.unwrap();
    let status = api.written.lock().unwrap().last().unwrap().2.clone();
    assert_eq!(ready(&status), ("False".to_owned(), "WouldDeny".to_owned()));
    assert_eq!(status.denied_connections, 40);

    // Traffic that the staged policy allows, recorded for 3 days of a 7-day readiness window:
    // observing; after 7 days: ready.
    let dns_only = log(json!([
        {"source": web(), "destination": {"namespace": "kube-system", "workload": "Deployment/coredns", "labels": {"k8s-app": "kube-dns"}},
         "port": 53, "protocol": "UDP", "firstSeen": "2026-11-18T00:00:00Z", "lastSeen": "2026-11-20T23:00:00Z", "count": 900},
    ]));
    *history.0.lock().unwrap() = Some(dns_only);
    judge.invalidate().await;
    judge.judge(&staged(Some("7d")), at("2026-11-21T00:00:00Z")).await.unwrap();
    assert_eq!(ready(&api.written.lock().unwrap().last().unwrap().2), ("False".to_owned(), "Observing".to_owned()));
    judge.judge(&staged(Some("7d")), at("2026-11-25T00:00:00Z")).await.unwrap();
    let status = api.written.lock().unwrap().last().unwrap().2.clone();
    assert_eq!(ready(&status), ("True".to_owned(), "NothingDenied".to_owned()));
    assert_eq!(status.denied_edges, 0);
}

#[tokio::test]
async fn failed_writes_are_retried_and_a_closed_fence_sends_nothing() {
    let api = Arc::new(FakeStatus::default());
    let history = Arc::new(FixedHistory(Mutex::new(Some(traffic(40)))));
    let judge = Judge::new(api.clone(), state(None), history.clone());
    let now = at("2026-11-21T00:00:00Z");
    *api.fail.lock().unwrap() = true;
    assert!(judge.judge(&staged(None), now).await.is_err());
    *api.fail.lock().unwrap() = false;
    // The failed write is not remembered as written: the retry writes.
    assert_eq!(judge.judge(&staged(None), now).await.unwrap(), Judgement::Written);

    // A replica whose Lease fence is closed sends no status.
    let fenced = Judge::new(Fenced::new(api.clone(), Fence::default()), state(None), history);
    assert_eq!(fenced.judge(&staged(None), now).await, Err(ApiError::Fenced));
    assert_eq!(api.written.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_ready_after_the_controller_cannot_read_is_said_in_status() {
    let api = Arc::new(FakeStatus::default());
    let history = Arc::new(FixedHistory(Mutex::new(Some(traffic(40)))));
    let judge = Judge::new(api.clone(), state(None), history);
    // The CRD's pattern refuses this; an object stored before the pattern existed can have it.
    judge.judge(&staged(Some("2w")), at("2026-11-21T00:00:00Z")).await.unwrap();
    let status = api.written.lock().unwrap().last().unwrap().2.clone();
    assert_eq!(ready(&status), ("False".to_owned(), "InvalidSpec".to_owned()));
    assert!(status.conditions[0].message.contains("readyAfter \"2w\""));
}
