//! Wiring the controller to a cluster: kube-runtime Controllers on EgressIntent (owning the
//! rendered NetworkPolicies) and, for the namespace guard, on Namespace; a resolution loop; and
//! the Lease election gating every write. Kept thin: the logic is in [`super::Reconciler`].

use std::sync::Arc;
use std::time::Duration;

use super::dns::DnsLookup;
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};
use portcullis_linter::config::Config;
use portcullis_linter::egress::render::{MANAGED_BY, MANAGED_BY_LABEL};
use portcullis_linter::egress::{EgressIntent, IntentKey, Observation};
use tokio::sync::mpsc;

use super::api::{ApiError, ControllerApi, Fenced, KubeApi};
use super::lease::{Elector, Fence, LeaseConfig};
use super::{GuardedNamespace, Reconciler, Settings, guard_policies};
use crate::metrics::{Metrics, RefusalLabels};

/// Reconcile requests queued from observations and lookups; beyond this, triggers are dropped
/// (the intent's periodic requeue still picks the change up).
const TRIGGER_QUEUE: usize = 4096;

/// The running controller, for the parts of the webhook that feed it.
#[derive(Clone, Debug)]
pub struct Handle {
    reconciler: Arc<Reconciler<Fenced<KubeApi>>>,
    trigger: mpsc::Sender<ObjectRef<EgressIntent>>,
    metrics: Arc<Metrics>,
    leader: tokio::sync::watch::Receiver<bool>,
    fence: Fence,
}

impl Handle {
    /// Whether this replica holds the Lease, as it changes.
    pub fn leader(&self) -> tokio::sync::watch::Receiver<bool> {
        self.leader.clone()
    }

    /// The Lease fence every write of the leader passes.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// Feeds a DNS answer a pod received (the sensor's `observe`); returns the intents that
    /// changed, whose reconciles are queued.
    pub fn observe(&self, observation: &Observation) -> Vec<IntentKey> {
        let changed = self.reconciler.observe(observation);
        report_refusals(&self.reconciler, &self.metrics);
        trigger(&self.trigger, &changed);
        changed
    }
}

/// Logs and counts the addresses the guard kept out since the last call.
fn report_refusals<A: ControllerApi>(reconciler: &Reconciler<A>, metrics: &Metrics) {
    for r in reconciler.take_refusals() {
        let source = match r.source {
            portcullis_linter::egress::AddressSource::Resolver => "resolver",
            portcullis_linter::egress::AddressSource::Sensor => "sensor",
        };
        metrics.guard_refusals.get_or_create(&RefusalLabels { reason: r.refusal.label(), source }).inc();
        tracing::warn!(intent = %r.intent, name = %r.name, ip = %r.ip, source, reason = %r.refusal, "address refused by the address guard");
    }
}

fn trigger(queue: &mpsc::Sender<ObjectRef<EgressIntent>>, keys: &[IntentKey]) {
    for key in keys {
        if queue.try_send(ObjectRef::new(&key.name).within(&key.namespace)).is_err() {
            tracing::warn!(intent = %key, "reconcile queue full; the intent's periodic requeue will catch up");
        }
    }
}

struct Context {
    reconciler: Arc<Reconciler<Fenced<KubeApi>>>,
    api: Arc<Fenced<KubeApi>>,
    leader: tokio::sync::watch::Receiver<bool>,
    config: Arc<Config>,
}

/// Starts the controller tasks; they stop with the process.
pub fn start(client: Client, config: Arc<Config>, lease: LeaseConfig, metrics: Arc<Metrics>) -> anyhow::Result<Handle> {
    lease.validate().map_err(anyhow::Error::msg)?;
    let elector = Arc::new(Elector::new(Arc::new(KubeApi::new(client.clone())), lease));
    let fence = elector.fence();
    // Every write (policies, statuses, the namespace guard) passes the Lease fence.
    let api = Arc::new(Fenced::new(KubeApi::new(client.clone()), fence.clone()));
    let reconciler = Arc::new(Reconciler::new(
        Fenced::new(KubeApi::new(client.clone()), fence.clone()),
        Settings::from_config(&config),
    ));
    let dns = DnsLookup::new(&config.controller.nameservers, Duration::from_secs(2)).map_err(anyhow::Error::msg)?;
    let leader = elector.leader();
    tokio::spawn({
        let elector = elector.clone();
        async move { elector.run(std::future::pending()).await }
    });
    let (tx, rx) = mpsc::channel(TRIGGER_QUEUE);
    let ctx = Arc::new(Context { reconciler: reconciler.clone(), api, leader: leader.clone(), config: config.clone() });

    let intents: Api<EgressIntent> = Api::all(client.clone());
    let owned = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let controller = Controller::new(intents, watcher::Config::default())
        .owns(Api::<NetworkPolicy>::all(client.clone()), owned.clone())
        .reconcile_on(tokio_stream(rx));
    let store = controller.store();
    tokio::spawn(controller.run(reconcile_intent, retry, ctx.clone()).for_each(|_| async {}));

    // Resolution: exact names at their expiry; forget intents that left the store.
    tokio::spawn({
        let (reconciler, tx, mut leader, metrics) = (reconciler.clone(), tx.clone(), leader.clone(), metrics.clone());
        async move {
            loop {
                let wait = reconciler
                    .next_resolution()
                    .map(|t| {
                        Duration::from_secs(u64::try_from(t.as_second() - Timestamp::now().as_second()).unwrap_or(0))
                    })
                    .unwrap_or(Duration::from_secs(1))
                    .clamp(Duration::from_millis(200), Duration::from_secs(5));
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = leader.changed() => {}
                }
                if !*leader.borrow() {
                    continue;
                }
                let changed = reconciler.resolve_due(&dns, Timestamp::now()).await;
                report_refusals(&reconciler, &metrics);
                trigger(&tx, &changed);
                let present: std::collections::HashSet<IntentKey> = store
                    .state()
                    .iter()
                    .map(|i| IntentKey {
                        namespace: i.metadata.namespace.clone().unwrap_or_default(),
                        name: i.metadata.name.clone().unwrap_or_default(),
                    })
                    .collect();
                reconciler.forget_absent(&present);
            }
        }
    });

    // The namespace guard (policies restored if deleted: their deletion triggers the owner).
    let guard = Controller::new(Api::<Namespace>::all(client.clone()), watcher::Config::default())
        .owns(Api::<NetworkPolicy>::all(client), owned);
    tokio::spawn(guard.run(reconcile_namespace, retry_namespace, ctx).for_each(|_| async {}));

    Ok(Handle { reconciler, trigger: tx, metrics, leader, fence })
}

fn tokio_stream(
    mut rx: mpsc::Receiver<ObjectRef<EgressIntent>>,
) -> impl futures::Stream<Item = ObjectRef<EgressIntent>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn reconcile_intent(intent: Arc<EgressIntent>, ctx: Arc<Context>) -> Result<Action, ApiError> {
    if !*ctx.leader.borrow() {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let outcome = ctx.reconciler.reconcile(&intent, Timestamp::now()).await?;
    let name = format!(
        "{}/{}",
        intent.metadata.namespace.as_deref().unwrap_or(""),
        intent.metadata.name.as_deref().unwrap_or("")
    );
    // Writes happen only on change, so one line per write is cheap and lets an operator (and
    // the real-API-server suite) see which replica wrote what.
    if outcome.policy_written || outcome.status_written {
        tracing::info!(
            intent = %name,
            policy_written = outcome.policy_written,
            status_written = outcome.status_written,
            "controller wrote"
        );
    } else {
        tracing::debug!(intent = %name, "reconciled; nothing to write");
    }
    Ok(Action::requeue(outcome.requeue_after))
}

fn retry(_: Arc<EgressIntent>, error: &ApiError, _: Arc<Context>) -> Action {
    match error {
        ApiError::Fenced => tracing::info!(%error, "write withheld; retrying"),
        _ => tracing::warn!(%error, "reconcile failed; retrying"),
    }
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile_namespace(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, ApiError> {
    if !*ctx.leader.borrow() {
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let guarded = GuardedNamespace {
        name: name.clone(),
        uid: ns.metadata.uid.clone(),
        labels: ns.metadata.labels.clone().unwrap_or_default(),
    };
    let config = &ctx.config;
    if let Some(policies) =
        guard_policies(&guarded, config.controller.namespace_guard, config.is_excluded(&name), &config.dns)
    {
        for policy in &policies {
            ctx.api.apply_policy(&name, policy).await?;
        }
    }
    Ok(Action::await_change())
}

fn retry_namespace(_: Arc<Namespace>, error: &ApiError, _: Arc<Context>) -> Action {
    tracing::warn!(%error, "namespace guard failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// Judges StagedPolicies against the traffic history while this replica leads (the history
/// counts only there): a kube-runtime Controller on StagedPolicy, each requeued every
/// [`JUDGE_EVERY`](super::staged::JUDGE_EVERY).
pub fn start_staged(
    client: Client,
    handle: &Handle,
    state: Arc<dyn crate::state::ClusterState>,
    history: Arc<crate::traffic::Aggregator>,
) {
    use super::staged::{JUDGE_EVERY, Judge};
    use portcullis_linter::staged::StagedPolicy;
    let judge = Arc::new(Judge::new(Fenced::new(KubeApi::new(client.clone()), handle.fence()), state, history));
    let controller = Controller::new(Api::<StagedPolicy>::all(client), watcher::Config::default());
    let store = controller.store();
    let reconcile = |staged: Arc<StagedPolicy>, judge: Arc<Judge<Fenced<KubeApi>>>| async move {
        let name = format!(
            "{}/{}",
            staged.metadata.namespace.as_deref().unwrap_or(""),
            staged.metadata.name.as_deref().unwrap_or("")
        );
        match judge.judge(&staged, Timestamp::now()).await? {
            super::staged::Judgement::NoHistory => {
                tracing::debug!(staged = %name, "no traffic history here (not the leader, or loading)");
                Ok::<_, ApiError>(Action::requeue(Duration::from_secs(30)))
            }
            super::staged::Judgement::Written => {
                tracing::info!(staged = %name, "staged policy status written");
                Ok(Action::requeue(JUDGE_EVERY))
            }
            super::staged::Judgement::Unchanged => Ok(Action::requeue(JUDGE_EVERY)),
        }
    };
    let retry = |_: Arc<StagedPolicy>, error: &ApiError, _: Arc<Judge<Fenced<KubeApi>>>| {
        tracing::warn!(%error, "judging a staged policy failed; retrying");
        Action::requeue(Duration::from_secs(30))
    };
    tokio::spawn(controller.run(reconcile, retry, judge.clone()).for_each(|_| async {}));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(JUDGE_EVERY).await;
            let present = store
                .state()
                .iter()
                .map(|s| {
                    (s.metadata.namespace.clone().unwrap_or_default(), s.metadata.name.clone().unwrap_or_default())
                })
                .collect();
            judge.forget_absent(&present);
        }
    });
}
