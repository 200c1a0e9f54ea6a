//! The controller's in-memory state: every intent, compiled, with its own address cache.
//!
//! One cache per intent is what makes scope exact: an address a pod learned from DNS is
//! recorded only in the caches of the intents that select that pod, so one pod can never widen
//! another pod's egress. Addresses from the controller's own lookups go to every intent naming
//! the looked-up name.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::cache::{Address, AddressCache, AddressSource, CacheConfig};
use super::guard::{AddressGuard, Refusal};
use super::render::{RenderConfig, Rendered, render};
use super::{EgressIntentSpec, EgressIntentStatus, NamePattern, parse_fqdn, parse_pattern};
use crate::model::{Labels, Protocol};
use crate::semantics::selector::{selector_matches, selector_problem};

/// Namespace and name of an intent; orders by namespace first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IntentKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for IntentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The metadata rendering needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentMeta {
    pub namespace: String,
    pub name: String,
    /// Present for objects read from a cluster; the rendered policy's owner reference needs it.
    pub uid: Option<String>,
    pub generation: Option<i64>,
    /// The kind the intent was written as: `EgressIntent`, or `ClientIntents` (Otterize).
    pub kind: &'static str,
}

impl IntentMeta {
    /// An EgressIntent read from a manifest (no uid, no generation).
    pub fn new(namespace: &str, name: &str) -> IntentMeta {
        IntentMeta {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid: None,
            generation: None,
            kind: super::KIND,
        }
    }

    pub fn key(&self) -> IntentKey {
        IntentKey { namespace: self.namespace.clone(), name: self.name.clone() }
    }
}

/// A target name after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetName {
    /// A normalized exact name.
    Exact(String),
    /// A pattern and its text as written.
    Pattern(NamePattern, String),
}

impl TargetName {
    pub fn matches(&self, name: &str) -> bool {
        match self {
            TargetName::Exact(n) => n == name,
            TargetName::Pattern(p, _) => p.matches(name),
        }
    }
}

/// A target after validation: ports sorted, deduplicated, protocol explicit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: TargetName,
    /// Empty means every port and protocol.
    pub ports: Vec<(u16, Protocol)>,
}

/// A fixed address block with ports (Otterize `internet.ips`; EgressIntents have none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticBlock {
    pub net: IpNet,
    pub ports: Vec<(u16, Protocol)>,
}

/// An intent after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledIntent {
    pub meta: IntentMeta,
    pub selector: LabelSelector,
    pub targets: Vec<Target>,
    pub statics: Vec<StaticBlock>,
}

impl CompiledIntent {
    /// Whether `name` is an exact target or matches a pattern target.
    pub fn wants(&self, name: &str) -> bool {
        self.targets.iter().any(|t| t.name.matches(name))
    }

    /// The exact names, which the controller resolves itself.
    pub fn exact_names(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().filter_map(|t| match &t.name {
            TargetName::Exact(n) => Some(n.as_str()),
            TargetName::Pattern(..) => None,
        })
    }
}

/// Something wrong with an intent's spec, at a JSON pointer relative to the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    pub pointer: String,
    pub message: String,
}

/// Every intent in `inventory`, EgressIntents, Otterize ClientIntents and annotated Istio
/// Gateways ([`super::istio`]) alike, compiled, with
/// the object each came from (for locating its problems).
pub fn compile_inventory(
    inventory: &crate::model::Inventory,
) -> Vec<(crate::model::ObjectId, Result<CompiledIntent, Vec<SpecProblem>>)> {
    let mut out = Vec::new();
    for intent in &inventory.intents {
        let meta = IntentMeta::new(&intent.namespace, &intent.name);
        let compiled = match &intent.spec {
            Some(spec) => compile(meta, spec),
            None => Err(vec![SpecProblem {
                pointer: String::new(),
                message: format!("intent {} has no valid spec", intent.name),
            }]),
        };
        out.push((intent.object, compiled));
    }
    for converted in super::otterize::convert_all(inventory).into_iter().chain(super::istio::convert_all(inventory)) {
        let compiled = converted.intent.map_err(|p| vec![SpecProblem { pointer: p.pointer, message: p.message }]);
        out.push((converted.object, compiled));
    }
    out
}

/// Validates a spec (the checks of `PC015`) and compiles it.
pub fn compile(meta: IntentMeta, spec: &EgressIntentSpec) -> Result<CompiledIntent, Vec<SpecProblem>> {
    compile_spec(meta, spec, true)
}

/// [`compile`], optionally accepting a spec without targets (a converted Otterize intent
/// whose only targets are fixed addresses).
pub(crate) fn compile_spec(
    meta: IntentMeta,
    spec: &EgressIntentSpec,
    require_targets: bool,
) -> Result<CompiledIntent, Vec<SpecProblem>> {
    let name = &meta.name;
    let mut problems = Vec::new();
    let mut problem = |pointer: String, message: String| problems.push(SpecProblem { pointer, message });
    let selector = match &spec.pod_selector {
        None => {
            problem(
                "/spec".to_owned(),
                format!("intent {name} has no podSelector; use {{}} to select every pod of the namespace"),
            );
            None
        }
        Some(sel) => match selector_problem(sel) {
            Some(p) => {
                problem("/spec/podSelector".to_owned(), format!("intent {name}: invalid podSelector: {p}"));
                None
            }
            None => Some(sel.clone()),
        },
    };
    if require_targets && spec.egress.is_empty() {
        problem("/spec".to_owned(), format!("intent {name} lists no egress targets"));
    }
    let mut targets = Vec::new();
    for (i, target) in spec.egress.iter().enumerate() {
        let at = format!("/spec/egress/{i}");
        let parsed = match (&target.fqdn, &target.fqdn_pattern) {
            (Some(_), Some(_)) => {
                problem(
                    at.clone(),
                    format!("intent {name}: target {i} sets both fqdn and fqdnPattern; set exactly one"),
                );
                None
            }
            (None, None) => {
                problem(at.clone(), format!("intent {name}: target {i} sets neither fqdn nor fqdnPattern"));
                None
            }
            (Some(fqdn), None) => match parse_fqdn(fqdn) {
                Ok(n) => Some(TargetName::Exact(n)),
                Err(e) => {
                    problem(format!("{at}/fqdn"), format!("intent {name}: invalid fqdn: {e}"));
                    None
                }
            },
            (None, Some(pattern)) => match parse_pattern(pattern) {
                Ok(p) => Some(TargetName::Pattern(p, pattern.clone())),
                Err(e) => {
                    problem(format!("{at}/fqdnPattern"), format!("intent {name}: invalid fqdnPattern: {e}"));
                    None
                }
            },
        };
        let mut ports = BTreeSet::new();
        for (pi, port) in target.ports.iter().enumerate() {
            let pat = format!("{at}/ports/{pi}");
            let number = u16::try_from(port.port).ok().filter(|p| *p >= 1);
            if number.is_none() {
                problem(format!("{pat}/port"), format!("intent {name}: port {} is outside 1-65535", port.port));
            }
            let protocol = match port.protocol.as_deref() {
                None => Some(Protocol::Tcp),
                Some(p) => {
                    let parsed = Protocol::parse(p);
                    if parsed.is_none() {
                        problem(
                            format!("{pat}/protocol"),
                            format!("intent {name}: protocol {p:?} is not one of TCP, UDP, SCTP"),
                        );
                    }
                    parsed
                }
            };
            if let (Some(n), Some(p)) = (number, protocol) {
                ports.insert((n, p));
            }
        }
        if let Some(name) = parsed {
            targets.push(Target { name, ports: ports.into_iter().collect() });
        }
    }
    match selector {
        Some(selector) if problems.is_empty() => Ok(CompiledIntent { meta, selector, targets, statics: Vec::new() }),
        _ => Err(problems),
    }
}

/// The pod that asked, as far as the sensor could tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPod {
    pub namespace: String,
    pub labels: Labels,
}

/// One address in a DNS answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub ip: IpAddr,
    pub ttl: u32,
}

/// A DNS answer a pod received (DESIGN §8), as the sensor reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub client: ClientPod,
    /// The question's name.
    pub qname: String,
    pub answers: Vec<Answer>,
    /// The CNAME chain from the question to the name the addresses belong to.
    pub cnames: Vec<String>,
    pub at: Timestamp,
}

#[derive(Debug, Clone)]
struct Tracked {
    intent: CompiledIntent,
    cache: AddressCache,
}

/// Every intent the controller knows, with its cache.
#[derive(Debug, Clone, Default)]
pub struct IntentSet {
    cache_config: CacheConfig,
    intents: BTreeMap<IntentKey, Tracked>,
    /// Exact name → the intents naming it.
    by_name: BTreeMap<String, BTreeSet<IntentKey>>,
    /// Exact name → the controller's last successful lookup and when it was made. A new intent
    /// for a name others already track starts from it instead of waiting for the name's next
    /// lookup (up to the TTL cap). Only resolver answers are kept: sensor answers are scoped to
    /// the pods that asked and never cross intents.
    resolved: BTreeMap<String, (Vec<Answer>, Timestamp)>,
    /// Which addresses may ever be allowed; every address passes it before any cache.
    guard: AddressGuard,
    /// Refusals since the last [`IntentSet::take_refusals`] (bounded), for logs, metrics and
    /// `portcullis resolve`'s stderr.
    refusals: Vec<GuardRefusal>,
}

/// Refusals buffered between two [`IntentSet::take_refusals`]; beyond this they are only counted.
const MAX_BUFFERED_REFUSALS: usize = 1024;

/// An address the guard kept out of an intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardRefusal {
    pub intent: IntentKey,
    pub name: String,
    pub ip: IpAddr,
    pub refusal: Refusal,
    /// Where the address came from.
    pub source: AddressSource,
}

/// Lowercase, no trailing dot: how names are compared.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

impl IntentSet {
    pub fn new(cache_config: CacheConfig) -> IntentSet {
        IntentSet {
            cache_config,
            intents: BTreeMap::new(),
            by_name: BTreeMap::new(),
            resolved: BTreeMap::new(),
            guard: AddressGuard::default(),
            refusals: Vec::new(),
        }
    }

    /// The same set with `guard` deciding which addresses may be allowed.
    pub fn with_guard(mut self, guard: AddressGuard) -> IntentSet {
        self.guard = guard;
        self
    }

    /// The refusals since the last call (at most 1,024 are kept between calls).
    pub fn take_refusals(&mut self) -> Vec<GuardRefusal> {
        std::mem::take(&mut self.refusals)
    }

    /// Splits answers into those the guard allows, and records the others as refused.
    fn admit<'a>(
        guard: &AddressGuard,
        refusals: &mut Vec<GuardRefusal>,
        key: &IntentKey,
        cache: &mut AddressCache,
        name: &str,
        answers: impl IntoIterator<Item = &'a Answer>,
        source: AddressSource,
    ) -> Vec<(IpAddr, u32)> {
        let mut allowed = Vec::new();
        for a in answers {
            match guard.check(a.ip) {
                Ok(()) => allowed.push((a.ip, a.ttl)),
                Err(refusal) => {
                    cache.refuse(name, a.ip, refusal.to_string());
                    if refusals.len() < MAX_BUFFERED_REFUSALS {
                        refusals.push(GuardRefusal {
                            intent: key.clone(),
                            name: name.to_owned(),
                            ip: a.ip,
                            refusal,
                            source,
                        });
                    }
                }
            }
        }
        allowed
    }

    pub fn len(&self) -> usize {
        self.intents.len()
    }

    pub fn cache_config(&self) -> &CacheConfig {
        &self.cache_config
    }

    pub fn is_empty(&self) -> bool {
        self.intents.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &IntentKey> {
        self.intents.keys()
    }

    /// The intent and its cache.
    pub fn get(&self, key: &IntentKey) -> Option<(&CompiledIntent, &AddressCache)> {
        self.intents.get(key).map(|t| (&t.intent, &t.cache))
    }

    /// Adds or updates an intent from its spec; an invalid spec removes the intent.
    pub fn upsert(
        &mut self,
        meta: IntentMeta,
        spec: &EgressIntentSpec,
        status: Option<&EgressIntentStatus>,
    ) -> Result<(), Vec<SpecProblem>> {
        let key = meta.key();
        match compile(meta, spec) {
            Ok(intent) => {
                self.upsert_compiled(intent, status);
                Ok(())
            }
            Err(problems) => {
                self.remove(&key);
                Err(problems)
            }
        }
    }

    /// Adds or updates a compiled intent. A new intent's cache is rebuilt from `status`
    /// (restart recovery); an updated one keeps its cache minus the names it no longer wants.
    pub fn upsert_compiled(&mut self, intent: CompiledIntent, status: Option<&EgressIntentStatus>) {
        let key = intent.meta.key();
        self.unindex(&key);
        let mut tracked = match self.intents.remove(&key) {
            Some(mut t) => {
                t.cache.retain_names(|n| intent.wants(n));
                t.intent = intent;
                t
            }
            None => {
                let mut cache = AddressCache::new(self.cache_config);
                for entry in status.map(|s| s.addresses.as_slice()).unwrap_or_default() {
                    let Some(name) = entry.fqdn.as_deref().map(normalize).filter(|n| intent.wants(n)) else { continue };
                    // Status is written by whoever may patch it: it passes the guard like DNS.
                    for ip in entry.ips.iter().filter(|ip| self.guard.check(ip.ip).is_ok()) {
                        let address =
                            Address { source: ip.source, last_seen: ip.last_seen.0, expires_at: ip.expires_at.0 };
                        cache.restore(&name, ip.ip, address);
                    }
                }
                Tracked { intent, cache }
            }
        };
        let exact: Vec<String> = tracked.intent.exact_names().map(str::to_owned).collect();
        for name in exact {
            let known = tracked.cache.get(&name).is_some_and(|e| !e.addresses.is_empty());
            match self.resolved.get(&name) {
                // Stored answers already passed the guard.
                Some((answers, at)) if !known => {
                    tracked.cache.record(&name, answers.iter().map(|a| (a.ip, a.ttl)), AddressSource::Resolver, *at);
                }
                _ => tracked.cache.ensure(&name),
            }
            self.by_name.entry(name).or_default().insert(key.clone());
        }
        self.intents.insert(key, tracked);
        self.forget_unwanted_lookups();
    }

    pub fn remove(&mut self, key: &IntentKey) -> bool {
        self.unindex(key);
        let removed = self.intents.remove(key).is_some();
        self.forget_unwanted_lookups();
        removed
    }

    /// Drops the last lookups of names no intent wants any more. Done after re-indexing, not in
    /// `unindex`: every reconcile re-indexes its intent, and the lookup must survive that.
    fn forget_unwanted_lookups(&mut self) {
        let by_name = &self.by_name;
        self.resolved.retain(|name, _| by_name.contains_key(name));
    }

    fn unindex(&mut self, key: &IntentKey) {
        if let Some(t) = self.intents.get(key) {
            for name in t.intent.exact_names() {
                if let Some(keys) = self.by_name.get_mut(name) {
                    keys.remove(key);
                    if keys.is_empty() {
                        self.by_name.remove(name);
                    }
                }
            }
        }
    }

    /// The exact names some intent wants, which the controller resolves.
    pub fn exact_names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Applies the controller's own lookup of `name`: `Some(answers)` on success, `None` when it
    /// failed or returned no address. Returns the intents whose address set changed.
    pub fn apply_lookup(&mut self, name: &str, answers: Option<&[Answer]>, now: Timestamp) -> Vec<IntentKey> {
        let name = normalize(name);
        let Some(keys) = self.by_name.get(&name) else { return Vec::new() };
        let answers = answers.filter(|a| !a.is_empty());
        if let Some(answers) = answers {
            let allowed: Vec<Answer> = answers.iter().copied().filter(|a| self.guard.check(a.ip).is_ok()).collect();
            if allowed.is_empty() {
                self.resolved.remove(&name);
            } else {
                self.resolved.insert(name.clone(), (allowed, now));
            }
        }
        let mut changed = Vec::new();
        for key in keys {
            let Some(t) = self.intents.get_mut(key) else { continue };
            match answers {
                Some(answers) => {
                    let before = t.cache.get(&name).map(|e| e.refused.len());
                    let allowed = Self::admit(
                        &self.guard,
                        &mut self.refusals,
                        key,
                        &mut t.cache,
                        &name,
                        answers,
                        AddressSource::Resolver,
                    );
                    let refused_changed = t.cache.get(&name).map(|e| e.refused.len()) != before;
                    if t.cache.record(&name, allowed, AddressSource::Resolver, now) || refused_changed {
                        changed.push(key.clone());
                    }
                }
                None => t.cache.record_failure(&name),
            }
        }
        changed
    }

    /// Applies a DNS answer a pod received. Only intents in the pod's namespace that select it
    /// learn the addresses, under every name of the chain (the question and each CNAME) that one
    /// of their targets wants. Returns the intents whose address set changed.
    pub fn observe(&mut self, observation: &Observation) -> Vec<IntentKey> {
        if observation.answers.is_empty() {
            return Vec::new();
        }
        let names: Vec<String> =
            std::iter::once(&observation.qname).chain(&observation.cnames).map(|n| normalize(n)).collect();
        let namespace = &observation.client.namespace;
        let start = IntentKey { namespace: namespace.clone(), name: String::new() };
        let mut changed = Vec::new();
        for (key, t) in self.intents.range_mut(start..) {
            if &key.namespace != namespace {
                break;
            }
            if !selector_matches(&t.intent.selector, &observation.client.labels) {
                continue;
            }
            let mut any = false;
            for name in names.iter().filter(|n| t.intent.wants(n)) {
                let before = t.cache.get(name).map(|e| e.refused.len());
                let allowed = Self::admit(
                    &self.guard,
                    &mut self.refusals,
                    key,
                    &mut t.cache,
                    name,
                    &observation.answers,
                    AddressSource::Sensor,
                );
                any |= t.cache.get(name).map(|e| e.refused.len()) != before;
                any |= t.cache.record(name, allowed, AddressSource::Sensor, observation.at);
            }
            if any {
                changed.push(key.clone());
            }
        }
        changed
    }

    /// Drops expired addresses of one intent; returns whether its address set changed.
    pub fn prune(&mut self, key: &IntentKey, now: Timestamp) -> bool {
        match self.intents.get_mut(key) {
            Some(t) => {
                let intent = &t.intent;
                t.cache.prune(now, |n| intent.wants(n))
            }
            None => false,
        }
    }

    /// When the intent's policy next changes by itself (an address ages out).
    pub fn next_expiry(&self, key: &IntentKey) -> Option<Timestamp> {
        self.intents.get(key).and_then(|t| t.cache.next_expiry())
    }

    pub fn render(&self, key: &IntentKey, config: &RenderConfig, now: Timestamp) -> Option<Rendered> {
        self.intents.get(key).map(|t| render(&t.intent, &t.cache, config, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::{EgressTarget, IntentPort};

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn meta(ns: &str, name: &str) -> IntentMeta {
        IntentMeta { generation: Some(1), ..IntentMeta::new(ns, name) }
    }

    fn spec(app: &str, targets: &[&str]) -> EgressIntentSpec {
        EgressIntentSpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some([("app".to_owned(), app.to_owned())].into()),
                ..LabelSelector::default()
            }),
            egress: targets
                .iter()
                .map(|t| EgressTarget {
                    fqdn: (!t.starts_with('*')).then(|| (*t).to_owned()),
                    fqdn_pattern: t.starts_with('*').then(|| (*t).to_owned()),
                    ports: vec![IntentPort { port: 443, protocol: None }],
                })
                .collect(),
        }
    }

    fn pod(ns: &str, app: &str) -> ClientPod {
        ClientPod { namespace: ns.into(), labels: [("app".to_owned(), app.to_owned())].into() }
    }

    fn obs(client: ClientPod, qname: &str, ip: &str) -> Observation {
        Observation {
            client,
            qname: qname.into(),
            answers: vec![Answer { ip: ip.parse().unwrap(), ttl: 60 }],
            cnames: vec![],
            at: t(0),
        }
    }

    fn key(ns: &str, name: &str) -> IntentKey {
        IntentKey { namespace: ns.into(), name: name.into() }
    }

    #[test]
    fn observations_count_only_for_intents_selecting_the_pod() {
        let mut set = IntentSet::new(CacheConfig::default());
        set.upsert(meta("shop", "pay"), &spec("pay", &["api.stripe.com"]), None).unwrap();
        set.upsert(meta("shop", "web"), &spec("web", &["api.stripe.com"]), None).unwrap();
        set.upsert(meta("other", "pay"), &spec("pay", &["api.stripe.com"]), None).unwrap();
        let changed = set.observe(&obs(pod("shop", "pay"), "API.stripe.com.", "192.0.2.1"));
        assert_eq!(changed, [key("shop", "pay")]);
        // The same answer again changes nothing.
        assert!(set.observe(&obs(pod("shop", "pay"), "api.stripe.com", "192.0.2.1")).is_empty());
        // A name the intent does not want is ignored.
        assert!(set.observe(&obs(pod("shop", "pay"), "evil.example.com", "192.0.2.66")).is_empty());
    }

    #[test]
    fn patterns_learn_from_observations_and_cnames_count() {
        let mut set = IntentSet::new(CacheConfig::default());
        set.upsert(meta("shop", "s3"), &spec("pay", &["*.s3.amazonaws.com"]), None).unwrap();
        assert!(set.observe(&obs(pod("shop", "pay"), "a.b.s3.amazonaws.com", "192.0.2.1")).is_empty());
        let mut o = obs(pod("shop", "pay"), "files.example.com", "192.0.2.2");
        o.cnames = vec!["bucket.s3.amazonaws.com".into()];
        assert_eq!(set.observe(&o), [key("shop", "s3")]);
        let (_, cache) = set.get(&key("shop", "s3")).unwrap();
        assert_eq!(cache.names().map(|(n, _)| n).collect::<Vec<_>>(), ["bucket.s3.amazonaws.com"]);
    }

    #[test]
    fn lookups_go_to_every_intent_naming_the_name() {
        let mut set = IntentSet::new(CacheConfig::default());
        set.upsert(meta("a", "x"), &spec("x", &["api.stripe.com"]), None).unwrap();
        set.upsert(meta("b", "y"), &spec("y", &["api.stripe.com", "example.com"]), None).unwrap();
        assert_eq!(set.exact_names().collect::<Vec<_>>(), ["api.stripe.com", "example.com"]);
        let answers = [Answer { ip: "192.0.2.1".parse().unwrap(), ttl: 60 }];
        assert_eq!(set.apply_lookup("api.stripe.com", Some(&answers), t(0)), [key("a", "x"), key("b", "y")]);
        assert!(set.apply_lookup("api.stripe.com", None, t(10_000)).is_empty());
        assert!(!set.prune(&key("a", "x"), t(10_000)), "a failing name keeps its addresses");
        set.remove(&key("a", "x"));
        set.upsert(meta("b", "y"), &spec("y", &["example.com"]), None).unwrap();
        assert_eq!(set.exact_names().collect::<Vec<_>>(), ["example.com"]);
        assert!(set.get(&key("b", "y")).unwrap().1.get("api.stripe.com").is_none());
    }

    /// Regression (issue 15, item 5): a second intent for a name another intent tracks stayed
    /// Pending until the name's next lookup, up to the TTL cap.
    #[test]
    fn a_new_intent_for_a_tracked_name_starts_from_the_last_lookup() {
        let mut set = IntentSet::new(CacheConfig::default());
        set.upsert(meta("a", "x"), &spec("x", &["api.stripe.com"]), None).unwrap();
        let answers = [Answer { ip: "192.0.2.1".parse().unwrap(), ttl: 300 }];
        set.apply_lookup("api.stripe.com", Some(&answers), t(0));
        // The controller upserts an intent on every reconcile; that must not lose the lookup
        // (found by the real-API-server suite: the unit test without this line passed).
        set.upsert(meta("a", "x"), &spec("x", &["api.stripe.com"]), None).unwrap();
        set.upsert(meta("b", "y"), &spec("y", &["api.stripe.com"]), None).unwrap();
        let rendered = set.render(&key("b", "y"), &RenderConfig::default(), t(40)).unwrap();
        let ips: Vec<_> = rendered.status.addresses.iter().flat_map(|n| n.ips.iter().map(|a| a.ip)).collect();
        assert_eq!(ips, ["192.0.2.1".parse::<std::net::IpAddr>().unwrap()]);
        // The address keeps the lookup's expiry, not one counted from the second intent's arrival.
        let (_, cache) = set.get(&key("b", "y")).unwrap();
        let expiry = cache.get("api.stripe.com").unwrap().addresses.values().next().unwrap().expires_at;
        assert_eq!(expiry, t(300));
    }

    #[test]
    fn sensor_answers_never_seed_another_intent() {
        let mut set = IntentSet::new(CacheConfig::default());
        set.upsert(meta("shop", "pay"), &spec("pay", &["api.stripe.com"]), None).unwrap();
        set.observe(&obs(pod("shop", "pay"), "api.stripe.com", "192.0.2.9"));
        set.upsert(meta("shop", "web"), &spec("web", &["api.stripe.com"]), None).unwrap();
        let (_, cache) = set.get(&key("shop", "web")).unwrap();
        assert!(cache.get("api.stripe.com").unwrap().addresses.is_empty());
    }

    #[test]
    fn the_last_lookup_is_forgotten_with_the_last_intent_naming_it() {
        let mut set = IntentSet::new(CacheConfig::default());
        set.upsert(meta("a", "x"), &spec("x", &["api.stripe.com"]), None).unwrap();
        set.apply_lookup("api.stripe.com", Some(&[Answer { ip: "192.0.2.1".parse().unwrap(), ttl: 60 }]), t(0));
        set.remove(&key("a", "x"));
        set.upsert(meta("b", "y"), &spec("y", &["api.stripe.com"]), None).unwrap();
        let (_, cache) = set.get(&key("b", "y")).unwrap();
        assert!(cache.get("api.stripe.com").unwrap().addresses.is_empty());
    }

    /// Regression (issue 16, class 2): whoever controls DNS for a name, or a pod's answers,
    /// could have an intent allow the metadata service or the node.
    #[test]
    fn the_address_guard_keeps_node_and_metadata_addresses_out_of_every_path() {
        let mut set = IntentSet::new(CacheConfig::default());
        set.upsert(meta("shop", "pay"), &spec("pay", &["api.stripe.com", "*.s3.example.com"]), None).unwrap();
        let answers = [
            Answer { ip: "169.254.169.254".parse().unwrap(), ttl: 60 },
            Answer { ip: "192.0.2.1".parse().unwrap(), ttl: 60 },
            Answer { ip: "::ffff:127.0.0.1".parse().unwrap(), ttl: 60 },
        ];
        assert_eq!(set.apply_lookup("api.stripe.com", Some(&answers), t(0)), [key("shop", "pay")]);
        let mut o = obs(pod("shop", "pay"), "bucket.s3.example.com", "10.96.0.1");
        o.cnames = vec![];
        assert_eq!(set.observe(&o), [key("shop", "pay")], "a refusal is a status change");
        let rendered = set.render(&key("shop", "pay"), &RenderConfig::default(), t(1)).unwrap();
        let text = serde_json::to_string(&rendered.policy).unwrap();
        assert!(text.contains("192.0.2.1/32"));
        for bad in ["169.254.169.254", "127.0.0.1", "10.96.0.1"] {
            assert!(!text.contains(bad), "{bad} in {text}");
        }
        let refusals = set.take_refusals();
        assert_eq!(refusals.len(), 3);
        assert_eq!(refusals[0].refusal.label(), "metadata");
        assert_eq!(refusals[2].source, AddressSource::Sensor);
        assert!(set.take_refusals().is_empty());
        let stripe = rendered.status.addresses.iter().find(|n| n.fqdn.as_deref() == Some("api.stripe.com")).unwrap();
        assert_eq!(stripe.refused.len(), 2);
        assert!(stripe.refused[0].reason.contains("metadata"), "{:?}", stripe.refused);
        // A name whose only answers were refused is Pending, and Ready says why.
        let bucket =
            rendered.status.addresses.iter().find(|n| n.fqdn.as_deref() == Some("bucket.s3.example.com")).unwrap();
        assert_eq!((bucket.state, bucket.refused.len()), (crate::egress::NameState::Pending, 1));

        // Status written by someone else (or an older version) passes the guard on restore.
        let mut restored = IntentSet::new(CacheConfig::default());
        let mut status = rendered.status.clone();
        status.addresses[0].ips.push(crate::egress::AddressStatus {
            ip: "169.254.169.254".parse().unwrap(),
            source: AddressSource::Resolver,
            last_seen: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(0)),
            expires_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(600)),
        });
        restored.upsert(meta("shop", "pay"), &spec("pay", &["api.stripe.com"]), Some(&status)).unwrap();
        let text = serde_json::to_string(
            &restored.render(&key("shop", "pay"), &RenderConfig::default(), t(1)).unwrap().policy,
        )
        .unwrap();
        assert!(!text.contains("169.254.169.254"));
    }

    /// A hostile pod answering a pattern's names with refused addresses cannot grow the intent's
    /// status without bound.
    #[test]
    fn refused_addresses_in_status_are_bounded_per_intent() {
        let mut set = IntentSet::new(CacheConfig::default());
        set.upsert(meta("shop", "s3"), &spec("pay", &["*.s3.example.com"]), None).unwrap();
        for n in 0..200 {
            let mut o = obs(pod("shop", "pay"), &format!("b{n}.s3.example.com"), "127.0.0.1");
            o.answers.push(Answer { ip: "169.254.169.254".parse().unwrap(), ttl: 60 });
            set.observe(&o);
        }
        let rendered = set.render(&key("shop", "s3"), &RenderConfig::default(), t(1)).unwrap();
        let shown: usize = rendered.status.addresses.iter().map(|n| n.refused.len()).sum();
        assert_eq!(shown, crate::egress::render::MAX_REFUSED_IN_STATUS);
    }

    #[test]
    fn private_addresses_are_allowed_only_when_configured() {
        let answers = [Answer { ip: "10.20.0.5".parse().unwrap(), ttl: 60 }];
        let mut strict = IntentSet::new(CacheConfig::default());
        strict.upsert(meta("a", "x"), &spec("x", &["onprem.example.com"]), None).unwrap();
        strict.apply_lookup("onprem.example.com", Some(&answers), t(0));
        assert_eq!(strict.take_refusals()[0].refusal.label(), "private");
        let guard = AddressGuard { allow_ranges: vec!["10.20.0.0/16".parse().unwrap()], ..AddressGuard::default() };
        let mut open = IntentSet::new(CacheConfig::default()).with_guard(guard);
        open.upsert(meta("a", "x"), &spec("x", &["onprem.example.com"]), None).unwrap();
        assert_eq!(open.apply_lookup("onprem.example.com", Some(&answers), t(0)), [key("a", "x")]);
        assert!(open.take_refusals().is_empty());
    }

    #[test]
    fn invalid_specs_are_refused_with_located_problems() {
        let mut set = IntentSet::new(CacheConfig::default());
        let mut bad = spec("x", &["api.*.com"]);
        bad.egress[0].fqdn = None;
        bad.egress[0].fqdn_pattern = Some("api.*.com".into());
        bad.egress[0].ports[0].port = 70000;
        let problems = set.upsert(meta("a", "x"), &bad, None).unwrap_err();
        let pointers: Vec<&str> = problems.iter().map(|p| p.pointer.as_str()).collect();
        assert_eq!(pointers, ["/spec/egress/0/fqdnPattern", "/spec/egress/0/ports/0/port"]);
        assert!(set.is_empty());
    }
}
