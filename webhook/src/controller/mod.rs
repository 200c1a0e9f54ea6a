//! The FQDN controller (DESIGN §7): turns EgressIntents into NetworkPolicies with `ipBlock`s kept
//! fresh from DNS, and (opt-in) guards namespaces with default-deny and DNS policies.
//!
//! - [`Reconciler`] is the logic: the engine's [`IntentSet`] (one address cache per intent),
//!   rendering, "write only on change", status with `Ready` and the persisted addresses, the
//!   re-resolution schedule and the `observe` entry point the sensor feeds. It talks to the
//!   cluster only through [`api::ControllerApi`], so tests run it against an in-memory API.
//! - [`api::KubeApi`] is that API over kube-rs (server-side apply, status patches, Leases).
//! - [`lease`] elects the one active writer; [`run`] wires it all to kube-runtime.

pub mod api;
pub mod dns;
pub mod lease;
pub mod run;
pub mod staged;

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use portcullis_linter::config::{Config, DnsConfig};
use portcullis_linter::egress::cache::add;
use portcullis_linter::egress::intents::GuardRefusal;
use portcullis_linter::egress::render::{MANAGED_BY, MANAGED_BY_LABEL, ready, ready_condition};
use portcullis_linter::egress::resolve::apply_results;

use dns::{DnsLookup, lookup_many};
use portcullis_linter::egress::schedule::{Backoff, Jitter, Schedule};
use portcullis_linter::egress::{
    AddressGuard, CacheConfig, EgressIntent, EgressIntentStatus, IntentKey, IntentMeta, IntentSet, Observation,
    RenderConfig,
};
use portcullis_linter::fix::{GENERATED_ANNOTATION, allow_dns_policy, default_deny_policy};
use portcullis_linter::model::Directions;
use serde_json::{Value, json};

pub use api::{ApiError, ControllerApi};

/// Namespace label that turns the namespace guard on (`"true"`) or off (`"false"`) for one
/// namespace, whatever the configuration says.
pub const GUARD_LABEL: &str = "portcullis.dev/guard";

/// Longest wait before an intent is looked at again even if nothing expires.
pub const MAX_REQUEUE: Duration = Duration::from_secs(600);

/// Lookups in flight at once.
const LOOKUP_CONCURRENCY: usize = 32;

/// What the controller needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub cache: CacheConfig,
    pub render: RenderConfig,
    pub backoff: Backoff,
    /// Which addresses may ever be allowed.
    pub guard: AddressGuard,
}

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            cache: config.controller.cache,
            render: RenderConfig { dns: config.dns.clone(), ..RenderConfig::default() },
            backoff: Backoff::default(),
            guard: config.address_guard.clone(),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    set: IntentSet,
    schedule: Schedule,
    jitter: Jitter,
    /// The policy last applied per intent (writes happen only when it changes).
    applied: HashMap<IntentKey, Value>,
    /// The stored policy's resourceVersion after our last apply: the next apply's precondition,
    /// so a replica with a stale view cannot overwrite a newer leader's policy.
    applied_version: HashMap<IntentKey, String>,
    /// The status last written per intent.
    written: HashMap<IntentKey, EgressIntentStatus>,
}

/// What one reconcile did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub policy_written: bool,
    pub status_written: bool,
    /// When to look at the intent again (an address ages out, or [`MAX_REQUEUE`]).
    pub requeue_after: Duration,
}

/// The controller logic over an API.
#[derive(Debug)]
pub struct Reconciler<A> {
    api: A,
    settings: Settings,
    inner: Mutex<Inner>,
}

impl<A: ControllerApi> Reconciler<A> {
    pub fn new(api: A, settings: Settings) -> Reconciler<A> {
        let inner = Inner {
            set: IntentSet::new(settings.cache).with_guard(settings.guard.clone()),
            schedule: Schedule::new(settings.backoff),
            ..Inner::default()
        };
        Reconciler { api, settings, inner: Mutex::new(inner) }
    }

    pub fn api(&self) -> &A {
        &self.api
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the engine state half-written in a way
        // later calls would misread (every method rebuilds from the set), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Brings the intent's policy and status in line with what is known at `now`.
    pub async fn reconcile(&self, intent: &EgressIntent, now: Timestamp) -> Result<Outcome, ApiError> {
        let namespace = intent.metadata.namespace.clone().unwrap_or_default();
        let name = intent.metadata.name.clone().unwrap_or_default();
        let meta = IntentMeta {
            uid: intent.metadata.uid.clone(),
            generation: intent.metadata.generation,
            ..IntentMeta::new(&namespace, &name)
        };
        let key = meta.key();
        let previous = intent.status.as_ref();
        let compiled = {
            let mut inner = self.lock();
            match inner.set.upsert(meta, &intent.spec, previous) {
                Ok(()) => {
                    inner.set.prune(&key, now);
                    // New names are due at once; names no intent wants any more leave the
                    // schedule at the next resolution round (`resolve_due` syncs it).
                    let Inner { set, schedule, .. } = &mut *inner;
                    if let Some((intent, _)) = set.get(&key) {
                        for name in intent.exact_names() {
                            schedule.ensure(name, now);
                        }
                    }
                    Ok((inner.set.render(&key, &self.settings.render, now), inner.set.next_expiry(&key)))
                }
                Err(problems) => {
                    inner.applied.remove(&key);
                    Err(problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; "))
                }
            }
        };
        let (rendered, next_expiry) = match compiled {
            Ok(r) => r,
            Err(message) => {
                let status = invalid_status(intent, previous, message, now);
                let version = intent.metadata.resource_version.as_deref();
                let status_written = self.write_status(&key, previous, status, version).await?;
                return Ok(Outcome { policy_written: false, status_written, requeue_after: MAX_REQUEUE });
            }
        };
        let Some(rendered) = rendered else {
            return Ok(Outcome { policy_written: false, status_written: false, requeue_after: MAX_REQUEUE });
        };
        let policy_written = if self.lock().applied.get(&key) == Some(&rendered.policy) {
            false
        } else {
            let mut policy = rendered.policy.clone();
            if let Some(rv) = self.lock().applied_version.get(&key) {
                policy["metadata"]["resourceVersion"] = json!(rv);
            }
            match self.api.apply_policy(&namespace, &policy).await {
                Ok(version) => {
                    let mut inner = self.lock();
                    inner.applied.insert(key.clone(), rendered.policy.clone());
                    match version {
                        Some(v) => inner.applied_version.insert(key.clone(), v),
                        None => inner.applied_version.remove(&key),
                    };
                }
                Err(e) => {
                    // A conflict means someone wrote the policy since we did (another leader,
                    // a person): forget our view; the retry applies fresh.
                    let mut inner = self.lock();
                    inner.applied.remove(&key);
                    inner.applied_version.remove(&key);
                    return Err(e);
                }
            }
            true
        };
        let mut status = rendered.status.clone();
        let last = self.lock().written.get(&key).cloned();
        status.conditions = vec![ready_condition(&rendered, last.as_ref().or(previous), now)];
        let version = intent.metadata.resource_version.as_deref();
        let status_written = self.write_status(&key, last.as_ref().or(previous), status, version).await?;
        let requeue_after = next_expiry
            .map(|t| Duration::from_secs(u64::try_from(t.as_second() - now.as_second()).unwrap_or(0).max(1)))
            .unwrap_or(MAX_REQUEUE)
            .min(MAX_REQUEUE);
        Ok(Outcome { policy_written, status_written, requeue_after })
    }

    async fn write_status(
        &self,
        key: &IntentKey,
        persisted: Option<&EgressIntentStatus>,
        status: EgressIntentStatus,
        resource_version: Option<&str>,
    ) -> Result<bool, ApiError> {
        if !status_needs_write(persisted, &status, self.settings.cache.grace) {
            return Ok(false);
        }
        if let Err(e) = self.api.patch_status(&key.namespace, &key.name, &status, resource_version).await {
            self.lock().written.remove(key);
            return Err(e);
        }
        self.lock().written.insert(key.clone(), status);
        Ok(true)
    }

    /// Forgets a deleted intent (its policy goes with it: the owner reference).
    pub fn forget(&self, key: &IntentKey) {
        let mut inner = self.lock();
        inner.set.remove(key);
        inner.applied.remove(key);
        inner.applied_version.remove(key);
        inner.written.remove(key);
        let Inner { set, schedule, .. } = &mut *inner;
        let wanted: BTreeSet<&str> = set.exact_names().collect();
        schedule.retain(|n| wanted.contains(n));
    }

    /// Forgets every intent not in `present` (deleted while no reconcile saw it).
    pub fn forget_absent(&self, present: &std::collections::HashSet<IntentKey>) {
        let gone: Vec<IntentKey> = self.lock().set.keys().filter(|k| !present.contains(*k)).cloned().collect();
        for key in gone {
            self.forget(&key);
        }
    }

    /// The sensor's entry point: a DNS answer a pod received. Returns the intents to reconcile.
    pub fn observe(&self, observation: &Observation) -> Vec<IntentKey> {
        self.lock().set.observe(observation)
    }

    /// The addresses the guard refused since the last call (for logs and metrics).
    pub fn take_refusals(&self) -> Vec<GuardRefusal> {
        self.lock().set.take_refusals()
    }

    /// When the next name is due for resolution.
    pub fn next_resolution(&self) -> Option<Timestamp> {
        self.lock().schedule.next_due()
    }

    /// Resolves the names due at `now` and applies the answers. Returns the intents whose
    /// addresses changed (to reconcile).
    pub async fn resolve_due(&self, dns: &DnsLookup, now: Timestamp) -> Vec<IntentKey> {
        let due = {
            let mut inner = self.lock();
            let names: Vec<String> = inner.set.exact_names().map(str::to_owned).collect();
            inner.schedule.sync(names.iter().map(String::as_str), now);
            inner.schedule.due(now)
        };
        if due.is_empty() {
            return Vec::new();
        }
        let results = lookup_many(dns, due, LOOKUP_CONCURRENCY).await;
        let mut inner = self.lock();
        let Inner { set, schedule, jitter, .. } = &mut *inner;
        apply_results(set, schedule, &results, jitter, now)
    }

    /// Number of intents tracked.
    pub fn len(&self) -> usize {
        self.lock().set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The status of an intent whose spec is invalid: `Ready=False`, reason `Invalid`.
fn invalid_status(
    intent: &EgressIntent,
    previous: Option<&EgressIntentStatus>,
    message: String,
    now: Timestamp,
) -> EgressIntentStatus {
    let generation = intent.metadata.generation;
    EgressIntentStatus {
        observed_generation: generation,
        policy_name: None,
        addresses: Vec::new(),
        conditions: vec![ready("False", "Invalid", message, generation, previous, now)],
    }
}

/// Whether `new` must be written over `persisted`: anything but the address times differs, or
/// a persisted expiry lags the known one by more than half the grace period (so a restart,
/// which rebuilds the cache from status, never drops an address that is still live). Refreshes
/// of a stable answer therefore cost at most one status write per `grace / 2` per intent.
pub fn status_needs_write(persisted: Option<&EgressIntentStatus>, new: &EgressIntentStatus, grace: Duration) -> bool {
    let Some(old) = persisted else { return true };
    let shape = |s: &EgressIntentStatus| {
        let names: Vec<_> = s
            .addresses
            .iter()
            .map(|n| {
                let ips: BTreeSet<_> = n.ips.iter().map(|a| (a.ip, a.source)).collect();
                let refused: BTreeSet<_> = n.refused.iter().map(|r| r.ip).collect();
                (n.fqdn.clone(), n.pattern.clone(), n.state, ips, refused)
            })
            .collect();
        let conditions: Vec<_> = s
            .conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone(), c.message.clone(), c.observed_generation))
            .collect();
        (s.observed_generation, s.policy_name.clone(), names, conditions)
    };
    if shape(old) != shape(new) {
        return true;
    }
    let half = grace / 2;
    let persisted_expiry: HashMap<_, _> = old
        .addresses
        .iter()
        .flat_map(|n| n.ips.iter().map(move |a| ((n.fqdn.clone(), a.ip), a.expires_at.0)))
        .collect();
    new.addresses
        .iter()
        .flat_map(|n| n.ips.iter().map(move |a| (n, a)))
        .any(|(n, a)| persisted_expiry.get(&(n.fqdn.clone(), a.ip)).is_none_or(|old| add(*old, half) < a.expires_at.0))
}

/// A namespace as the guard sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardedNamespace {
    pub name: String,
    pub uid: Option<String>,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Names of the guard's policies (the `portcullis fix` fallback names, so they never collide
/// with a policy the namespace's owners wrote).
pub const GUARD_POLICIES: [&str; 3] =
    ["portcullis-default-deny-ingress", "portcullis-default-deny-egress", "portcullis-allow-dns"];

/// The policies the namespace guard keeps in `namespace`, or `None` when the guard is off for
/// it (excluded namespace, configuration, or the [`GUARD_LABEL`] label). They are the objects
/// `portcullis fix` writes (same engine functions), labelled as managed by portcullis and owned
/// by the Namespace.
pub fn guard_policies(
    namespace: &GuardedNamespace,
    enabled: bool,
    excluded: bool,
    dns: &DnsConfig,
) -> Option<Vec<Value>> {
    let on = match namespace.labels.get(GUARD_LABEL).map(String::as_str) {
        Some("true") => true,
        Some("false") => false,
        _ => enabled,
    };
    if !on || excluded {
        return None;
    }
    let ns = &namespace.name;
    let mut policies = vec![
        default_deny_policy(ns, GUARD_POLICIES[0], Directions { ingress: true, egress: false }),
        default_deny_policy(ns, GUARD_POLICIES[1], Directions { ingress: false, egress: true }),
        allow_dns_policy(ns, GUARD_POLICIES[2], dns),
    ];
    for policy in &mut policies {
        policy["metadata"]["labels"] = json!({MANAGED_BY_LABEL: MANAGED_BY});
        policy["metadata"]["annotations"] = json!({GENERATED_ANNOTATION: "kept by the portcullis namespace guard"});
        if let Some(uid) = &namespace.uid {
            policy["metadata"]["ownerReferences"] =
                json!([{"apiVersion": "v1", "kind": "Namespace", "name": ns, "uid": uid}]);
        }
    }
    Some(policies)
}
