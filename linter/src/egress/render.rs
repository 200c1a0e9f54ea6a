//! Rendering an intent and its address cache to the NetworkPolicy of DESIGN §7, and to the
//! status that persists the cache.
//!
//! The output is deterministic (names, ports and addresses sorted) so that an unchanged input
//! renders byte-identical output and the controller can skip the write.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::{Value, json};

use super::cache::AddressCache;
use super::intents::{CompiledIntent, TargetName};
use super::{API_VERSION, AddressStatus, EgressIntentStatus, KIND, NameState, NameStatus, RefusedAddress};
use crate::config::DnsConfig;
use crate::fix::{GENERATED_ANNOTATION, dns_egress_rule};
use crate::model::Protocol;

/// Label on every object portcullis manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Its value.
pub const MANAGED_BY: &str = "portcullis";
/// Annotation on a rendered policy naming its intent (names may exceed a label value's 63 characters).
pub const INTENT_ANNOTATION: &str = "portcullis.dev/egress-intent";
/// Prefix of rendered policy names.
pub const POLICY_PREFIX: &str = "egress-intent-";
/// The `Ready` condition type.
pub const READY: &str = "Ready";
/// Refused addresses listed in one intent's status, across all its names.
pub const MAX_REFUSED_IN_STATUS: usize = 64;

/// A sorted port set; empty means every port.
type Ports = Vec<(u16, Protocol)>;

/// What rendering needs besides the intent and its cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderConfig {
    /// Where cluster DNS lives; the rendered policy always allows it.
    pub dns: DnsConfig,
    /// Budget for the rendered policy's JSON size. The API server refuses objects above
    /// about 1.5 MiB; the default, 256 KiB, is far below that. Addresses beyond the budget are
    /// left out, least recently seen first, and the intent's status says so.
    pub max_policy_bytes: usize,
}

impl Default for RenderConfig {
    fn default() -> Self {
        RenderConfig { dns: DnsConfig::default(), max_policy_bytes: 256 * 1024 }
    }
}

/// A rendered intent.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub policy_name: String,
    /// The NetworkPolicy, ready for server-side apply.
    pub policy: Value,
    /// Addresses in the policy.
    pub addresses: usize,
    /// Addresses left out by the size budget.
    pub dropped: usize,
    /// The status without conditions (see [`ready_condition`]).
    pub status: EgressIntentStatus,
}

/// The rendered policy's name for an intent: `egress-intent-NAME`, shortened with a hash when
/// it would exceed the 253 characters of a DNS subdomain.
pub fn policy_name(intent: &str) -> String {
    let full = format!("{POLICY_PREFIX}{intent}");
    if full.len() <= 253 {
        return full;
    }
    // FNV-1a: stable across releases and platforms, which std's hasher is not.
    let hash = intent.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let keep = 253 - POLICY_PREFIX.len() - 17;
    let head = intent.get(..keep).unwrap_or(intent).trim_end_matches(['-', '.']);
    format!("{POLICY_PREFIX}{head}-{hash:016x}")
}

/// The JSON text of one `ipBlock` peer, as it is counted against the size budget.
fn peer_cost(net: &IpNet) -> usize {
    // {"ipBlock":{"cidr":"IP/NN"}}, plus a comma.
    24 + net.to_string().len()
}

/// Renders the policy and the status for `intent` at `now`.
pub fn render(intent: &CompiledIntent, cache: &AddressCache, config: &RenderConfig, now: Timestamp) -> Rendered {
    let name = policy_name(&intent.meta.name);
    // Port set → addresses. An empty port set means every port.
    let mut groups: BTreeMap<Ports, BTreeMap<IpNet, Timestamp>> = BTreeMap::new();
    for block in &intent.statics {
        // Fixed blocks (Otterize `internet.ips`) are never left out first.
        groups.entry(block.ports.clone()).or_default().insert(block.net, Timestamp::MAX);
    }
    let mut statuses: BTreeMap<(Option<String>, Option<String>), NameStatus> = BTreeMap::new();
    let mut refused_shown = 0;
    for target in &intent.targets {
        let names: Vec<&str> = match &target.name {
            TargetName::Exact(n) => vec![n.as_str()],
            TargetName::Pattern(p, _) => cache.names().map(|(n, _)| n).filter(|n| p.matches(n)).collect(),
        };
        let pattern = match &target.name {
            TargetName::Pattern(_, raw) => Some(raw.clone()),
            TargetName::Exact(_) => None,
        };
        if names.is_empty() {
            statuses.entry((None, pattern.clone())).or_insert(NameStatus {
                fqdn: None,
                pattern: pattern.clone(),
                state: NameState::Pending,
                ips: Vec::new(),
                refused: Vec::new(),
            });
        }
        for n in names {
            let group = groups.entry(target.ports.clone()).or_default();
            let mut ips = Vec::new();
            for (ip, a) in cache.live(n, now) {
                let seen = group.entry(IpNet::from(ip)).or_insert(a.last_seen);
                *seen = (*seen).max(a.last_seen);
                ips.push(AddressStatus {
                    ip,
                    source: a.source,
                    last_seen: Time(a.last_seen),
                    expires_at: Time(a.expires_at),
                });
            }
            let state = if ips.is_empty() { NameState::Pending } else { NameState::Resolved };
            // Bounded per intent too: a pattern learns up to `max_names` names, each with refused
            // addresses, and status must stay far below the API server's object size limit.
            let refused: Vec<RefusedAddress> = cache
                .get(n)
                .into_iter()
                .flat_map(|e| e.refused.iter())
                .take(MAX_REFUSED_IN_STATUS.saturating_sub(refused_shown))
                .map(|(ip, why)| RefusedAddress { ip: *ip, reason: why.clone() })
                .collect();
            refused_shown += refused.len();
            statuses.entry((Some(n.to_owned()), pattern.clone())).or_insert(NameStatus {
                fqdn: Some(n.to_owned()),
                pattern: pattern.clone(),
                state,
                ips,
                refused,
            });
        }
    }

    let dns_rule = dns_egress_rule(&config.dns);
    let mut metadata = json!({
        "name": name,
        "namespace": intent.meta.namespace,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY},
        "annotations": {
            INTENT_ANNOTATION: intent.meta.name,
            GENERATED_ANNOTATION: format!("rendered from {} {} by portcullis", intent.meta.kind, intent.meta.name),
        },
    });
    if let Some(uid) = &intent.meta.uid {
        metadata["ownerReferences"] = json!([{
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": intent.meta.name,
            "uid": uid,
            "controller": true,
            "blockOwnerDeletion": true,
        }]);
    }
    let selector = serde_json::to_value(&intent.selector).unwrap_or_else(|_| json!({}));

    // The size budget: everything but the peers, then peers most recently seen first.
    let port_rules: Vec<(Ports, Value)> = groups.keys().map(|ports| (ports.clone(), ports_json(ports))).collect();
    let mut skeleton_egress = vec![dns_rule.clone()];
    skeleton_egress.extend(port_rules.iter().map(|(_, p)| json!({"to": [], "ports": p})));
    let skeleton = json!({"metadata": metadata, "spec": {"podSelector": selector, "egress": skeleton_egress}});
    // The skeleton lacks apiVersion, kind and policyTypes: 128 bytes cover them.
    let base = serde_json::to_string(&skeleton).map(|s| s.len()).unwrap_or(0) + 128;
    let mut candidates: Vec<(Timestamp, IpNet, &Ports)> =
        groups.iter().flat_map(|(ports, ips)| ips.iter().map(move |(ip, seen)| (*seen, *ip, ports))).collect();
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(b.2)));
    let mut budget = config.max_policy_bytes.saturating_sub(base);
    let mut kept: BTreeMap<&Ports, BTreeSet<IpNet>> = BTreeMap::new();
    let mut dropped = 0;
    for (_, ip, ports) in &candidates {
        let cost = peer_cost(ip);
        if cost <= budget {
            budget -= cost;
            kept.entry(ports).or_default().insert(*ip);
        } else {
            dropped += 1;
        }
    }

    let mut egress = vec![dns_rule];
    for (ports, ports_value) in &port_rules {
        // Never a rule without peers: an empty `to` would allow every destination.
        let Some(ips) = kept.get(ports).filter(|ips| !ips.is_empty()) else { continue };
        let to: Vec<Value> = ips.iter().map(|net| json!({"ipBlock": {"cidr": net.to_string()}})).collect();
        let mut rule = json!({"to": to});
        if !ports.is_empty() {
            rule["ports"] = ports_value.clone();
        }
        egress.push(rule);
    }
    let addresses = candidates.len() - dropped;
    let policy = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": {"podSelector": selector, "policyTypes": ["Egress"], "egress": egress},
    });
    let status = EgressIntentStatus {
        observed_generation: intent.meta.generation,
        policy_name: Some(name.clone()),
        addresses: statuses.into_values().collect(),
        conditions: Vec::new(),
    };
    Rendered { policy_name: name, policy, addresses, dropped, status }
}

fn ports_json(ports: &[(u16, Protocol)]) -> Value {
    Value::Array(ports.iter().map(|(port, proto)| json!({"port": port, "protocol": proto.as_str()})).collect())
}

/// The `Ready` condition for a rendered status, keeping `lastTransitionTime` from `previous`
/// when the status did not flip.
pub fn ready_condition(rendered: &Rendered, previous: Option<&EgressIntentStatus>, now: Timestamp) -> Condition {
    let pending: Vec<&str> = rendered
        .status
        .addresses
        .iter()
        .filter(|n| n.state == NameState::Pending && n.pattern.is_none())
        .filter_map(|n| n.fqdn.as_deref())
        .collect();
    let (status, reason, message) = if rendered.dropped > 0 {
        (
            "False",
            "PolicyTooLarge",
            format!(
                "{} addresses are left out of policy {} to keep it under the size limit; split the intent",
                rendered.dropped, rendered.policy_name
            ),
        )
    } else if let Some(name) = rendered
        .status
        .addresses
        .iter()
        .find(|n| n.state == NameState::Pending && n.pattern.is_none() && !n.refused.is_empty())
    {
        let (ip, why) = name.refused.first().map(|r| (r.ip.to_string(), r.reason.as_str())).unwrap_or_default();
        (
            "False",
            "AddressRefused",
            format!(
                "every address of {} was refused by the address guard ({ip}: {why}); see status.addresses",
                name.fqdn.as_deref().unwrap_or_default()
            ),
        )
    } else if !pending.is_empty() {
        ("False", "Pending", format!("no address yet for {}", pending.join(", ")))
    } else {
        ("True", "Resolved", format!("policy {} allows {} addresses", rendered.policy_name, rendered.addresses))
    };
    ready(status, reason, message, rendered.status.observed_generation, previous, now)
}

/// A `Ready` condition. `lastTransitionTime` is kept from `previous` while `status` stays the
/// same (the Kubernetes convention: it marks flips of status, not of reason or message).
pub fn ready(
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    previous: Option<&EgressIntentStatus>,
    now: Timestamp,
) -> Condition {
    let since = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == READY))
        .filter(|c| c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: READY.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::Duration;

    use super::*;
    use crate::egress::cache::{CacheConfig, add};
    use crate::egress::intents::{IntentMeta, Target};

    /// xorshift64*: a deterministic generator for property tests without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn intent(rng: &mut Rng) -> CompiledIntent {
        let targets = (0..1 + rng.below(4))
            .map(|i| Target {
                name: TargetName::Exact(format!("n{i}.example.com")),
                ports: match rng.below(3) {
                    0 => vec![],
                    1 => vec![(443, Protocol::Tcp)],
                    _ => vec![(53, Protocol::Udp), (443, Protocol::Tcp)],
                },
            })
            .collect();
        CompiledIntent { meta: IntentMeta::new("ns", "x"), selector: Default::default(), targets, statics: vec![] }
    }

    /// Random answers for random names at random times, in the order given.
    fn events(rng: &mut Rng) -> Vec<(String, IpAddr, u32, i64)> {
        (0..rng.below(200))
            .map(|_| {
                let ip = if rng.below(4) == 0 {
                    IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, rng.below(64) as u16))
                } else {
                    IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, rng.below(64) as u8))
                };
                (format!("n{}.example.com", rng.below(5)), ip, rng.below(600) as u32, rng.below(3000) as i64)
            })
            .collect()
    }

    fn cache_from(events: &[(String, IpAddr, u32, i64)], config: CacheConfig) -> AddressCache {
        let mut c = AddressCache::new(config);
        let mut sorted = events.to_vec();
        sorted.sort_by_key(|e| e.3);
        for (name, ip, ttl, at) in sorted {
            c.record(&name, [(ip, ttl)], AddressSource::Resolver, t(at));
        }
        c
    }

    use crate::egress::AddressSource;

    #[test]
    fn rendering_is_deterministic_and_never_allows_everything() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..300 {
            let intent = intent(&mut rng);
            let events = events(&mut rng);
            let config = CacheConfig { max_per_name: 1 + rng.below(40) as usize, ..CacheConfig::default() };
            let a = cache_from(&events, config);
            let mut reversed = events.clone();
            reversed.reverse();
            let b = cache_from(&reversed, config);
            let now = t(rng.below(4000) as i64);
            let ra = render(&intent, &a, &RenderConfig::default(), now);
            let rb = render(&intent, &b, &RenderConfig::default(), now);
            assert_eq!(ra.policy, rb.policy, "insertion order must not matter");
            assert_eq!(ra, render(&intent, &a, &RenderConfig::default(), now));
            for rule in ra.policy["spec"]["egress"].as_array().unwrap() {
                assert!(rule["to"].as_array().is_some_and(|to| !to.is_empty()), "a rule without peers: {rule}");
            }
            for (_, entry) in a.names() {
                assert!(entry.addresses.len() <= config.max_per_name, "per-name bound");
            }
        }
    }

    #[test]
    fn an_address_is_never_dropped_before_expiry_plus_grace() {
        let mut rng = Rng(42);
        let config = CacheConfig { max_per_name: 10_000, ..CacheConfig::default() };
        for _ in 0..200 {
            let intent = intent(&mut rng);
            let events = events(&mut rng);
            let mut cache = cache_from(&events, config);
            let now = t(rng.below(4000) as i64);
            cache.prune(now, |n| intent.wants(n));
            let text = serde_json::to_string(&render(&intent, &cache, &RenderConfig::default(), now).policy).unwrap();
            for (name, ip, ttl, at) in &events {
                let ttl = Duration::from_secs(u64::from(*ttl)).clamp(config.ttl_floor, config.ttl_cap);
                let alive = add(add(t(*at), ttl), config.grace) > now && t(*at) <= now;
                if alive && intent.wants(name) {
                    let cidr = IpNet::from(*ip).to_string();
                    assert!(text.contains(&format!("\"{cidr}\"")), "{cidr} of {name} dropped early at {now}");
                }
            }
        }
    }

    #[test]
    fn the_size_budget_holds_and_drops_the_least_recently_seen() {
        let intent = CompiledIntent {
            meta: IntentMeta::new("ns", "big"),
            selector: Default::default(),
            targets: vec![Target {
                name: TargetName::Exact("big.example.com".into()),
                ports: vec![(443, Protocol::Tcp)],
            }],
            statics: vec![],
        };
        let mut cache = AddressCache::new(CacheConfig { max_per_name: 100_000, ..CacheConfig::default() });
        for i in 0..5000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            cache.record("big.example.com", [(ip, 300)], AddressSource::Sensor, t(i64::from(i) / 10));
        }
        let config = RenderConfig { max_policy_bytes: 16 * 1024, ..RenderConfig::default() };
        let r = render(&intent, &cache, &config, t(500));
        let size = serde_json::to_string(&r.policy).unwrap().len();
        assert!(size <= config.max_policy_bytes, "{size} bytes");
        assert!(r.dropped > 0 && r.addresses + r.dropped == 5000);
        let text = serde_json::to_string(&r.policy).unwrap();
        assert!(text.contains("\"10.0.19.135/32\""), "the most recently seen address is kept");
        assert!(!text.contains("\"10.0.0.0/32\""), "the least recently seen address goes first");
        assert_eq!(ready_condition(&r, None, t(500)).reason, "PolicyTooLarge");
    }

    #[test]
    fn transition_time_marks_status_flips_only() {
        let with = |c: Condition| EgressIntentStatus { conditions: vec![c], ..Default::default() };
        let pending = ready("False", "Pending", "no address yet".into(), Some(1), None, t(0));
        assert_eq!(pending.last_transition_time, Time(t(0)));
        let invalid = ready("False", "Invalid", "bad".into(), Some(2), Some(&with(pending)), t(10));
        assert_eq!(invalid.last_transition_time, Time(t(0)), "a new reason is not a transition");
        let resolved = ready("True", "Resolved", "ok".into(), Some(2), Some(&with(invalid)), t(20));
        assert_eq!(resolved.last_transition_time, Time(t(20)));
    }

    #[test]
    fn long_names_are_shortened_stably() {
        assert_eq!(policy_name("stripe"), "egress-intent-stripe");
        let long = "a".repeat(253);
        let n = policy_name(&long);
        assert!(n.len() <= 253, "{}", n.len());
        assert_eq!(n, policy_name(&long));
        assert_ne!(n, policy_name(&format!("{}b", "a".repeat(252))));
    }
}
