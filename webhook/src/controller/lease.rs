//! One active writer: a `coordination.k8s.io/v1` Lease. The holder renews it every
//! `renew_every`; another replica takes it over only after `duration` without a renewal. Writes
//! use the Lease's `resourceVersion`, so two replicas racing for it cannot both win.
//!
//! Holding the Lease is not enough to write: a replica that was paused (SIGSTOP, a long GC, a
//! frozen VM) still believes it leads when it resumes. Every write therefore passes the
//! [`Fence`], which is open only until `renew_deadline` after the last successful Lease write
//! was *sent* — measured on the monotonic clock, which keeps counting while the process is
//! stopped — and `renew_deadline` is shorter than `duration`, as client-go's leader election
//! does. Another replica can take the Lease only after `duration`, so by then this one has
//! stopped writing in everyone's view. Writes also carry `resourceVersion` preconditions
//! ([`super::Reconciler`]), so a write already in flight when the fence closes cannot overwrite
//! a newer one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use portcullis_linter::egress::cache::add;
use tokio::sync::watch;

use super::api::{ApiError, ControllerApi};

/// Which Lease, who we are, and the timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica (the pod name).
    pub identity: String,
    /// How long a holder keeps the Lease without renewing.
    pub duration: Duration,
    /// How often the holder renews (and a stand-by checks).
    pub renew_every: Duration,
    /// How long after a successful renewal was sent the holder may still write. Shorter than
    /// `duration`, longer than `renew_every`.
    pub renew_deadline: Duration,
}

impl LeaseConfig {
    pub fn new(namespace: &str, identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: namespace.to_owned(),
            name: "portcullis-controller".to_owned(),
            identity: identity.to_owned(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            renew_deadline: Duration::from_secs(10),
        }
    }

    /// Checks the timing: `renew_every < renew_deadline < duration`.
    pub fn validate(&self) -> Result<(), String> {
        if self.renew_every >= self.renew_deadline || self.renew_deadline >= self.duration {
            return Err(format!(
                "lease timing must satisfy renew_every ({:?}) < renew_deadline ({:?}) < duration ({:?})",
                self.renew_every, self.renew_deadline, self.duration
            ));
        }
        Ok(())
    }
}

/// Open while this replica may write: until its last successful Lease write, as sent, plus the
/// renew deadline. Cheap to clone; every clone sees the same state.
#[derive(Debug, Clone, Default)]
pub struct Fence {
    until: Arc<Mutex<Option<Instant>>>,
}

impl Fence {
    /// Whether a write may be sent now.
    pub fn is_open(&self) -> bool {
        self.is_open_at(Instant::now())
    }

    /// Whether a write may be sent at `now` (monotonic).
    pub fn is_open_at(&self, now: Instant) -> bool {
        self.slot().is_some_and(|until| now < until)
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // The slot holds a plain value; a panic elsewhere cannot leave it half-written.
        self.until.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens the fence until `until` (a Lease write sent at `until - renew_deadline` succeeded).
    pub fn open_until(&self, until: Instant) {
        *self.slot() = Some(until);
    }

    /// Closes the fence (the Lease was lost or could not be renewed).
    pub fn close(&self) {
        *self.slot() = None;
    }
}

/// What to do with the Lease as read.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// No Lease yet: create it, held by us.
    Create(Lease),
    /// We hold it: renew.
    Renew(Lease),
    /// Its holder stopped renewing: take it over.
    TakeOver(Lease),
    /// Someone else holds it and is alive.
    StandBy { holder: String },
}

/// Decides from the Lease as read at `now`.
pub fn step(current: Option<&Lease>, config: &LeaseConfig, now: Timestamp) -> Step {
    let seconds = i32::try_from(config.duration.as_secs()).unwrap_or(i32::MAX);
    let Some(lease) = current else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return Step::Create(lease);
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let mut next = lease.clone();
    let mut next_spec = spec.clone();
    next_spec.renew_time = Some(MicroTime(now));
    next_spec.lease_duration_seconds = Some(seconds);
    if holder == config.identity {
        next.spec = Some(next_spec);
        return Step::Renew(next);
    }
    let held_for = Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(seconds)).unwrap_or(0));
    let expired = spec.renew_time.as_ref().is_none_or(|r| add(r.0, held_for) < now);
    if holder.is_empty() || expired {
        next_spec.holder_identity = Some(config.identity.clone());
        next_spec.acquire_time = Some(MicroTime(now));
        next_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        next.spec = Some(next_spec);
        return Step::TakeOver(next);
    }
    Step::StandBy { holder }
}

/// Runs the election; [`Elector::leader`] tells whether this replica may write.
#[derive(Debug)]
pub struct Elector<A> {
    api: Arc<A>,
    config: LeaseConfig,
    leader: watch::Sender<bool>,
    fence: Fence,
}

impl<A: ControllerApi> Elector<A> {
    pub fn new(api: Arc<A>, config: LeaseConfig) -> Elector<A> {
        Elector { api, config, leader: watch::Sender::new(false), fence: Fence::default() }
    }

    /// The fence every write of this replica must pass.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// `true` while this replica holds the Lease.
    pub fn leader(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// One round at `now`: read, decide, write. Any failure means "not the leader" until the
    /// next round: pausing writes is always safe, two writers are not.
    pub async fn tick(&self, now: Timestamp) -> bool {
        // The deadline counts from before the read: the renewal can only have been seen
        // by others after this instant.
        let sent = Instant::now();
        let leader = self.try_tick(now).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, lease = %self.config.name, "lease round failed; standing by");
            false
        });
        if leader {
            self.fence.open_until(sent + self.config.renew_deadline);
        } else {
            self.fence.close();
        }
        self.leader.send_if_modified(|current| std::mem::replace(current, leader) != leader);
        leader
    }

    async fn try_tick(&self, now: Timestamp) -> Result<bool, ApiError> {
        let ns = &self.config.namespace;
        let current = self.api.get_lease(ns, &self.config.name).await?;
        match step(current.as_ref(), &self.config, now) {
            Step::Create(lease) => match self.api.create_lease(ns, &lease).await {
                Ok(_) => Ok(true),
                Err(ApiError::Conflict(_)) => Ok(false),
                Err(e) => Err(e),
            },
            Step::Renew(lease) | Step::TakeOver(lease) => match self.api.replace_lease(ns, &lease).await {
                Ok(_) => Ok(true),
                Err(ApiError::Conflict(_)) => Ok(false),
                Err(e) => Err(e),
            },
            Step::StandBy { .. } => Ok(false),
        }
    }

    /// Rounds every `renew_every` until `shutdown` resolves.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let was = self.is_leader();
            let is = self.tick(Timestamp::now()).await;
            if was != is {
                tracing::info!(identity = %self.config.identity, leader = is, "controller leadership changed");
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(self.config.renew_every) => {}
            }
        }
    }
}
