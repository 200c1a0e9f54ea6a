//! Staged policies in the cluster (issue 20): on the replica holding the Lease, each
//! StagedPolicy is judged against the traffic history it counts, and its status says what the
//! policy would deny and whether it is ready to promote.
//!
//! The judgement is the engine's ([`portcullis_linter::staged`]); this module brings it the
//! cluster's objects (the admission cache), the live history (the [`Aggregator`]) and the time,
//! and writes the status through [`StagedApi`] (fenced by the Lease) only when the verdict
//! changes, or at least every [`REFRESH`]. The controller never creates the NetworkPolicy:
//! promotion is `portcullis promote`, applied with the user's own rights (decisions.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams};
use portcullis_linter::replay::TrafficLog;
use portcullis_linter::staged::{
    Evaluation, Judged, StagedPolicy, StagedPolicyStatus, evaluate, invalid, network_policy, ready_after, same_verdict,
    status,
};
use serde_json::{Value, json};

use super::api::{ApiError, FIELD_MANAGER, Fenced, KubeApi};
use crate::state::ClusterState;
use crate::traffic::Aggregator;

/// How often each staged policy is judged again.
pub const JUDGE_EVERY: Duration = Duration::from_secs(300);
/// A status whose verdict has not changed is still written this often (its `evaluatedAt`
/// says the judgement is current).
pub const REFRESH: SignedDuration = SignedDuration::from_hours(1);
/// The history and the cluster's objects are read again at most this often: every staged
/// policy judged in between uses the same copies.
const ROUND_MAX_AGE: Duration = Duration::from_secs(60);

/// Writes a StagedPolicy's status.
pub trait StagedApi: Send + Sync {
    /// Merge-patches the status subresource; `resource_version`, when given, is a precondition.
    fn patch_staged_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a StagedPolicyStatus,
        resource_version: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
}

impl StagedApi for KubeApi {
    fn patch_staged_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a StagedPolicyStatus,
        resource_version: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let api: Api<StagedPolicy> = Api::namespaced(self.client(), namespace);
            let mut patch = json!({"status": status});
            if let Some(rv) = resource_version {
                patch["metadata"] = json!({"resourceVersion": rv});
            }
            let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PatchParams::default() };
            api.patch_status(name, &params, &Patch::Merge(&patch)).await?;
            Ok(())
        })
    }
}

impl<A: StagedApi + ?Sized> StagedApi for Arc<A> {
    fn patch_staged_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a StagedPolicyStatus,
        resource_version: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        self.as_ref().patch_staged_status(namespace, name, status, resource_version)
    }
}

impl<A: StagedApi> StagedApi for Fenced<A> {
    fn patch_staged_status<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        status: &'a StagedPolicyStatus,
        resource_version: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        if !self.is_open() {
            return Box::pin(async { Err(ApiError::Fenced) });
        }
        self.inner().patch_staged_status(namespace, name, status, resource_version)
    }
}

/// Where the history comes from: the aggregator, or a fixed log in tests.
pub trait HistorySource: Send + Sync {
    /// The merged live history; `None` while this replica does not count (not the leader, or
    /// the stored history is not loaded yet).
    fn live_log(&self) -> BoxFuture<'_, Option<TrafficLog>>;
    /// How long the history keeps counts.
    fn window(&self) -> SignedDuration;
}

impl HistorySource for Aggregator {
    fn live_log(&self) -> BoxFuture<'_, Option<TrafficLog>> {
        Box::pin(Aggregator::live_log(self))
    }

    fn window(&self) -> SignedDuration {
        Aggregator::window(self)
    }
}

/// One read of the history and the cluster, shared by the judgements that follow it.
struct Round {
    at: Instant,
    log: Arc<TrafficLog>,
    objects: Arc<Vec<Value>>,
    /// The earliest connection in the history.
    since: Option<Timestamp>,
}

/// What one judgement did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// This replica has no history to judge with (not the leader, or not loaded).
    NoHistory,
    /// The status was written.
    Written,
    /// The verdict is the one already written.
    Unchanged,
}

/// Judges staged policies and writes their status.
pub struct Judge<A> {
    api: A,
    state: Arc<dyn ClusterState>,
    history: Arc<dyn HistorySource>,
    round: tokio::sync::Mutex<Option<Round>>,
    /// One evaluation at a time: each holds two inventories of its namespaces' objects, and
    /// anyone who may create StagedPolicies decides how many there are (kube-runtime reconciles
    /// them concurrently).
    evaluating: tokio::sync::Semaphore,
    /// The status last written per staged policy (namespace, name).
    written: Mutex<HashMap<(String, String), StagedPolicyStatus>>,
}

impl<A> std::fmt::Debug for Judge<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Judge").finish_non_exhaustive()
    }
}

impl<A: StagedApi> Judge<A> {
    pub fn new(api: A, state: Arc<dyn ClusterState>, history: Arc<dyn HistorySource>) -> Judge<A> {
        Judge {
            api,
            state,
            history,
            round: tokio::sync::Mutex::new(None),
            evaluating: tokio::sync::Semaphore::new(1),
            written: Mutex::new(HashMap::new()),
        }
    }

    fn written(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), StagedPolicyStatus>> {
        self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current round, read again when older than [`ROUND_MAX_AGE`] (or `fresh`).
    async fn round(&self, fresh: bool) -> Option<(Arc<TrafficLog>, Arc<Vec<Value>>, Option<Timestamp>)> {
        let mut round = self.round.lock().await;
        if fresh || round.as_ref().is_none_or(|r| r.at.elapsed() > ROUND_MAX_AGE) {
            let Some(log) = self.history.live_log().await else {
                *round = None;
                return None;
            };
            let objects = self.state.objects();
            let since = log.edges.iter().map(|e| e.first_seen).min();
            *round = Some(Round { at: Instant::now(), log: Arc::new(log), objects: Arc::new(objects), since });
        }
        round.as_ref().map(|r| (r.log.clone(), r.objects.clone(), r.since))
    }

    /// Forgets what was read, so the next judgement reads the history and the cluster again.
    pub async fn invalidate(&self) {
        *self.round.lock().await = None;
    }

    /// Judges one staged policy at `now` and writes its status when the verdict changed (or
    /// the written one is older than [`REFRESH`]).
    pub async fn judge(&self, staged: &StagedPolicy, now: Timestamp) -> Result<Judgement, ApiError> {
        let namespace = staged.metadata.namespace.clone().unwrap_or_default();
        let name = staged.metadata.name.clone().unwrap_or_default();
        let Some((log, objects, since)) = self.round(false).await else { return Ok(Judgement::NoHistory) };
        let key = (namespace.clone(), name.clone());
        let previous = self.written().get(&key).cloned().or_else(|| staged.status.clone());
        let generation = staged.metadata.generation;
        let window = self.history.window();
        let new = match ready_after(staged.spec.ready_after.as_deref(), window) {
            Err(message) => invalid(message, generation, previous.as_ref(), now),
            Ok(ready_after) => {
                let spec =
                    serde_json::to_value(&staged.spec.network_policy).map_err(|e| ApiError::Other(e.to_string()))?;
                let policy = network_policy(&namespace, &name, &spec);
                let cut = now.checked_sub(ready_after).unwrap_or(now);
                // Seconds of CPU at scale (two replays of the namespace's edges): off the async
                // workers, which also serve admission.
                let _turn = self.evaluating.acquire().await.map_err(|e| ApiError::Other(e.to_string()))?;
                let evaluation: Evaluation =
                    tokio::task::spawn_blocking(move || evaluate(&objects, &policy, &log, Some(cut)))
                        .await
                        .map_err(|e| ApiError::Other(e.to_string()))?;
                let judged = Judged { now, generation, ready_after, history_since: since, previous: previous.as_ref() };
                status(evaluation, judged)
            }
        };
        let current = previous.as_ref().is_some_and(|p| {
            same_verdict(p, &new) && p.evaluated_at.as_ref().is_some_and(|t| now.duration_since(t.0) < REFRESH)
        });
        if current {
            return Ok(Judgement::Unchanged);
        }
        let version = staged.metadata.resource_version.as_deref();
        match self.api.patch_staged_status(&namespace, &name, &new, version).await {
            Ok(()) => {
                self.written().insert(key, new);
                Ok(Judgement::Written)
            }
            Err(e) => {
                self.written().remove(&key);
                Err(e)
            }
        }
    }

    /// Forgets staged policies no longer present.
    pub fn forget_absent(&self, present: &std::collections::HashSet<(String, String)>) {
        self.written().retain(|k, _| present.contains(k));
    }
}
