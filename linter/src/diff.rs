//! Semantic diff: which connections a change to the manifests opens and which it closes.
//!
//! Both sides are judged by the one evaluator ([`crate::semantics::Evaluator`]), every layer
//! included. What is compared: for each workload present on both sides (by namespace, kind and
//! name), its connections to every such workload and to the external destinations either side's
//! policies name (one address per CIDR and per `except`, one outside every CIDR, and the DNS
//! names of `domainNames`, `toFQDNs` and EgressIntents), on the ports either side mentions (policy
//! ports and range ends, container ports) plus one port nothing mentions, per protocol. Names are
//! those of ClusterNetworkPolicy `domainNames`, Cilium `toFQDNs` `matchName` and EgressIntents.
//!
//! Not pod by pod: without a cluster-scoped change, a connection can change only if its source's
//! identity (labels, namespace labels, ports, addresses) or the content of the policies that
//! apply to its egress differ between the sides, or the same of its destination's ingress. Each
//! workload's policies are found once per side and direction; a source whose egress cannot
//! have changed is judged only towards destinations whose ingress may have. The rest are equal
//! on both sides by construction ([`Diff::judged_pairs`] counts what was judged).
//! `tests/diff.rs` checks that against judging every pair. A change that touches every
//! workload (a cluster-scoped policy, or every namespace's policy) still judges every pair:
//! grouping workloads into equivalence classes is the next step (`docs/benchmarks.md`).
//!
//! Changes are grouped by what changed (opened or closed), the ports, and why, so one edit that
//! opens a port to 200 workloads is one group.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::model::{Inventory, Protocol, WorkloadId};
use crate::project::Project;
use crate::semantics::{Decided, DirectionVerdict, Endpoint, Evaluator, Traffic};

/// The JSON schema version of [`Diff`].
pub const SCHEMA_VERSION: u32 = 1;

/// A workload as both sides name it: `namespace/Kind/name`.
pub type WorkloadKey = String;

/// Where a connection goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Destination {
    Workload {
        workload: WorkloadKey,
    },
    /// An address outside the cluster's pods, standing for the CIDR it was taken from.
    Address {
        address: IpAddr,
        stands_for: String,
    },
    /// An external destination by DNS name.
    Name {
        name: String,
    },
}

impl Destination {
    /// How output names it.
    pub fn label(&self) -> String {
        match self {
            Destination::Workload { workload } => workload.clone(),
            Destination::Address { address, stands_for } => format!("{address} ({stands_for})"),
            Destination::Name { name } => name.clone(),
        }
    }
}

/// Whether a change opens or closes connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Opened,
    Closed,
}

/// A port and protocol, as output shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Port {
    pub port: i32,
    pub protocol: Protocol,
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol.as_str())
    }
}

/// Where a rule is written: file and line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Location {
    pub file: String,
    pub line: usize,
}

/// Connections that changed the same way for the same reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub change: Change,
    pub ports: Vec<Port>,
    /// Why, on the HEAD side: the layer and rule that now allows or denies.
    pub why: String,
    /// Where HEAD's deciding rule (or, without one, the isolating policy) is written.
    pub at: Option<Location>,
    pub sources: Vec<WorkloadKey>,
    pub destinations: Vec<Destination>,
    /// The (source, destination) pairs; when every source reaches every destination this is
    /// their product.
    pub pairs: Vec<Pair>,
}

/// A source workload and a destination.
pub type Pair = (WorkloadKey, Destination);

/// The semantic difference between two sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    pub version: u32,
    pub groups: Vec<Group>,
    pub added_workloads: Vec<WorkloadKey>,
    pub removed_workloads: Vec<WorkloadKey>,
    /// Source/destination pairs judged (the rest cannot have changed).
    pub judged_pairs: usize,
}

impl Diff {
    pub fn opened(&self) -> impl Iterator<Item = &Group> {
        self.groups.iter().filter(|g| g.change == Change::Opened)
    }

    pub fn closed(&self) -> impl Iterator<Item = &Group> {
        self.groups.iter().filter(|g| g.change == Change::Closed)
    }
}

/// A connection whose verdict changed: how, why on HEAD, and where HEAD's deciding rule is.
pub type Changed = (Connection, Change, String, Option<Location>);

/// One connection's verdict on one side.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Connection {
    pub source: WorkloadKey,
    pub destination: Destination,
    pub port: Port,
}

fn key(inventory: &Inventory, id: WorkloadId) -> WorkloadKey {
    let w = inventory.workload(id);
    format!("{}/{}/{}", w.namespace, inventory.object(w.object).id.kind, w.name)
}

fn workloads(inventory: &Inventory) -> BTreeMap<WorkloadKey, WorkloadId> {
    (0..inventory.workloads.len()).map(|i| (key(inventory, WorkloadId(i)), WorkloadId(i))).collect()
}

/// The ports probed: every port either side mentions, plus one nothing mentions, per protocol.
fn ports(sides: [&Inventory; 2]) -> Vec<Port> {
    let mut ports: BTreeSet<Port> = BTreeSet::new();
    let mut ranges: Vec<(i32, i32)> = Vec::new();
    let add = |port: i32, protocol: Protocol, ports: &mut BTreeSet<Port>| {
        if (1..=65535).contains(&port) {
            ports.insert(Port { port, protocol });
        }
    };
    for inv in sides {
        for w in &inv.workloads {
            for c in &w.ports {
                add(c.port, c.protocol, &mut ports);
            }
        }
        for p in &inv.policies {
            // The names a generated policy allows (EgressIntents), on their ports.
            for (port, protocol) in p.names.iter().flat_map(|n| &n.ports) {
                add(i32::from(*port), *protocol, &mut ports);
            }
            for list in crate::semantics::evaluator::port_lists(p) {
                for entry in list.items {
                    let protocol = entry.protocol.as_deref().and_then(Protocol::parse).unwrap_or(Protocol::Tcp);
                    if let Some(range) = crate::semantics::evaluator::numeric_range(entry) {
                        add(*range.start(), protocol, &mut ports);
                        add(*range.end(), protocol, &mut ports);
                        ranges.push((*range.start(), *range.end()));
                    }
                }
            }
        }
        // The other layers' ports: ClusterNetworkPolicy protocols, Cilium toPorts, Calico ports.
        let mut range = |a: i32, b: i32, protocol: Protocol, ports: &mut BTreeSet<Port>| {
            add(a, protocol, ports);
            add(b, protocol, ports);
            ranges.push((a, b));
        };
        for c in &inv.cluster_policies {
            let protocols =
                c.spec.ingress.iter().flat_map(|r| &r.protocols).chain(c.spec.egress.iter().flat_map(|r| &r.protocols));
            for m in protocols {
                for (p, protocol) in [(&m.tcp, Protocol::Tcp), (&m.udp, Protocol::Udp), (&m.sctp, Protocol::Sctp)] {
                    let Some(port) = p.as_ref().and_then(|p| p.destination_port.as_ref()) else { continue };
                    if let Some(n) = port.number {
                        range(n, n, protocol, &mut ports);
                    }
                    if let Some(r) = port.range {
                        range(r.start, r.end, protocol, &mut ports);
                    }
                }
            }
        }
        for rule in &inv.cilium_rules {
            for pp in cilium_peers(rule).flat_map(|p| p.to_ports.iter().flatten()).flat_map(|r| &r.ports) {
                let Ok(n) = pp.port.parse::<i32>() else { continue };
                let protocols = match pp.protocol.as_deref().map(str::to_ascii_uppercase).as_deref() {
                    Some("UDP") => vec![Protocol::Udp],
                    Some("SCTP") => vec![Protocol::Sctp],
                    Some("TCP") => vec![Protocol::Tcp],
                    _ => vec![Protocol::Tcp, Protocol::Udp],
                };
                for protocol in protocols {
                    range(n, pp.end_port.unwrap_or(n), protocol, &mut ports);
                }
            }
        }
        for p in &inv.calico_policies {
            for rule in p.ingress_rules.iter().chain(&p.egress_rules) {
                let protocol = match &rule.protocol {
                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s)) => Protocol::parse(s),
                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(17)) => Some(Protocol::Udp),
                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(132)) => Some(Protocol::Sctp),
                    _ => Some(Protocol::Tcp),
                };
                let Some(protocol) = protocol else { continue };
                let specs =
                    [&rule.source, &rule.destination].into_iter().flat_map(|e| e.ports.iter().chain(&e.not_ports));
                for spec in specs {
                    if let crate::model::calico_policy::PortSpec::Range(a, b) = spec {
                        range(i32::from(*a), i32::from(*b), protocol, &mut ports);
                    }
                }
            }
        }
    }
    // DNS is the port every lockdown is judged by.
    for protocol in [Protocol::Udp, Protocol::Tcp] {
        add(crate::semantics::dns::DNS_PORT, protocol, &mut ports);
    }
    // A port no policy names and no range covers: "every other port".
    let mentioned = |p: i32| ports.iter().any(|x| x.port == p) || ranges.iter().any(|(a, b)| (*a..=*b).contains(&p));
    if let Some(other) = (40000..=65535).find(|p| !mentioned(*p)) {
        ports.insert(Port { port: other, protocol: Protocol::Tcp });
    }
    ports.into_iter().collect()
}

/// Every peer rule of a Cilium rule, allowing and denying, both directions.
fn cilium_peers(
    rule: &crate::model::cilium_policy::CiliumRule,
) -> impl Iterator<Item = &crate::model::cilium_policy::PeerRule> {
    let spec = &rule.spec;
    spec.ingress.iter().chain(&spec.ingress_deny).chain(&spec.egress).chain(&spec.egress_deny)
}

/// A CIDR as a range of numbers in its family (`bits`: 32 or 128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Span {
    bits: u32,
    lo: u128,
    hi: u128,
}

impl Span {
    fn of(net: &IpNet) -> Span {
        match net {
            IpNet::V4(n) => Span { bits: 32, lo: u32::from(n.network()).into(), hi: u32::from(n.broadcast()).into() },
            IpNet::V6(n) => Span { bits: 128, lo: u128::from(n.network()), hi: u128::from(n.broadcast()) },
        }
    }

    fn contains(&self, other: &Span) -> bool {
        self.bits == other.bits && self.lo <= other.lo && other.hi <= self.hi
    }

    fn address(bits: u32, n: u128) -> IpAddr {
        match u32::try_from(n) {
            Ok(v4) if bits == 32 => IpAddr::V4(std::net::Ipv4Addr::from(v4)),
            _ => IpAddr::V6(std::net::Ipv6Addr::from(n)),
        }
    }
}

/// The CIDRs covering `lo..=hi` exactly, largest first in address order.
fn cidrs(bits: u32, mut lo: u128, hi: u128) -> Vec<IpNet> {
    let mut out = Vec::new();
    while lo <= hi {
        // The largest aligned block starting at `lo` that ends within `hi` (2^128 has no u128:
        // `None` is the whole IPv6 space).
        let last = |log: u32| match 1u128.checked_shl(log) {
            Some(size) => lo.checked_add(size - 1),
            None => Some(u128::MAX),
        };
        let mut size_log = lo.trailing_zeros().min(bits);
        while size_log > 0 && last(size_log).is_none_or(|end| end > hi) {
            size_log -= 1;
        }
        let prefix = u8::try_from(bits - size_log).unwrap_or(0);
        if let Ok(net) = IpNet::new(Span::address(bits, lo), prefix) {
            out.push(net);
        }
        let Some(next) = last(size_log).and_then(|end| end.checked_add(1)) else { break };
        lo = next;
    }
    out
}

/// The address destinations probed. Whether an address matches a rule depends only on which of
/// the CIDRs named anywhere contain it, and CIDRs are nested or disjoint, so that set is fixed
/// by the innermost CIDR containing the address (or none). So one address per CIDR that its
/// nested CIDRs do not cover, plus one address in none of them, stand for every address. Each
/// is labelled with the part of its CIDR it stands for (`203.0.113.128/25` for a /24 whose
/// first half a /25 names) or, outside every CIDR narrower than a whole family, "any other
/// address".
fn address_probes(nets: &BTreeSet<IpNet>) -> Vec<Destination> {
    // An address in no CIDR (TEST-NET-2, never routed): "the rest of the internet".
    let outside = Span::of(&IpNet::from(IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 77))));
    let mut spans: Vec<Span> = nets.iter().map(Span::of).collect();
    // Parents before their children: by family, start, then widest first.
    spans.sort_by_key(|s| (s.bits, s.lo, std::cmp::Reverse(s.hi)));
    spans.dedup();
    // The nesting tree, built with a stack of the open ancestors: each CIDR's children.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut roots: Vec<usize> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        while open.last().is_some_and(|&p| !spans[p].contains(span)) {
            open.pop();
        }
        match open.last() {
            Some(&p) => children[p].push(i),
            None => roots.push(i),
        }
        open.push(i);
    }
    // The gaps of `lo..=hi` its (disjoint, sorted) children leave.
    let gaps = |lo: u128, hi: u128, kids: &[usize]| -> Vec<(u128, u128)> {
        let mut out = Vec::new();
        let mut at = Some(lo);
        for &k in kids {
            let Some(from) = at else { break };
            if spans[k].lo > from {
                out.push((from, spans[k].lo - 1));
            }
            at = spans[k].hi.checked_add(1);
        }
        if let Some(from) = at.filter(|f| *f <= hi) {
            out.push((from, hi));
        }
        out
    };
    let pick = |bits: u32, gaps: &[(u128, u128)]| -> Option<u128> {
        // The outside address where it is in a gap; else the first usable address of the first
        // gap (the network address itself only for the smallest blocks).
        if bits == outside.bits && gaps.iter().any(|(lo, hi)| *lo <= outside.lo && outside.lo <= *hi) {
            return Some(outside.lo);
        }
        let (lo, hi) = *gaps.first()?;
        Some(if hi.saturating_sub(lo) >= 2 { lo + 1 } else { lo })
    };
    let mut out = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        let left = gaps(span.lo, span.hi, &children[i]);
        let Some(address) = pick(span.bits, &left) else { continue };
        let whole_family = span.lo == 0 && span.hi == u128::MAX >> (128 - span.bits);
        let stands_for = if whole_family {
            if span.bits == 32 { "any other address" } else { "any other IPv6 address" }.to_owned()
        } else {
            let parts: Vec<IpNet> = left.iter().flat_map(|(lo, hi)| cidrs(span.bits, *lo, *hi)).collect();
            let net = |s: &Span| cidrs(s.bits, s.lo, s.hi).first().map(ToString::to_string).unwrap_or_default();
            if parts.len() <= 3 {
                parts.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            } else {
                let inner: Vec<String> = children[i].iter().map(|&k| net(&spans[k])).collect();
                format!("{} except {}", net(span), list(&inner, 3))
            }
        };
        out.push(Destination::Address { address: Span::address(span.bits, address), stands_for });
    }
    // Outside every CIDR of IPv4 (IPv6 addresses outside every CIDR read the same sets).
    let v4_max = u128::from(u32::MAX);
    let v4_roots: Vec<usize> = roots.iter().copied().filter(|r| spans[*r].bits == 32).collect();
    if let Some(address) = pick(32, &gaps(0, v4_max, &v4_roots)) {
        out.push(Destination::Address {
            address: Span::address(32, address),
            stands_for: "any other address".to_owned(),
        });
    }
    out
}

/// Adds the names probed for a name or pattern as policies write it. A name is itself. A
/// pattern (`*.suffix`, one label; `**.suffix`, one or more; Cilium's `*` in a leading label)
/// gets the names that tell the pattern forms apart: its suffix itself (no pattern matches it),
/// `any.SUFFIX` (one label) and `any.any.SUFFIX` (two). A pattern with a wildcard elsewhere
/// (Cilium's `*`, `sub.*.example.com`) adds nothing: no finite set of names stands for it.
fn add_name(names: &mut BTreeSet<String>, written: &str) {
    let written = written.trim_end_matches('.').to_ascii_lowercase();
    let suffix = written.strip_prefix("**.").or_else(|| written.strip_prefix("*."));
    match suffix {
        None if !written.contains('*') && !written.is_empty() => {
            names.insert(written);
        }
        Some(suffix) if !suffix.contains('*') && !suffix.is_empty() => {
            names.insert(suffix.to_owned());
            names.insert(format!("any.{suffix}"));
            names.insert(format!("any.any.{suffix}"));
        }
        _ => {}
    }
}

/// The external destinations probed: one address per CIDR and per `except` either side's
/// NetworkPolicies name, one public address outside all of them, and names.
fn externals(sides: [&Inventory; 2]) -> Vec<Destination> {
    let mut nets: BTreeSet<IpNet> = BTreeSet::new();
    let mut names: BTreeSet<String> = BTreeSet::new();
    for inv in sides {
        for p in &inv.policies {
            for list in crate::semantics::evaluator::peer_lists(p) {
                for peer in list.items {
                    if let Some(block) = &peer.ip_block {
                        for raw in std::iter::once(&block.cidr).chain(block.except.iter().flatten()) {
                            if let Ok(net) = raw.parse::<IpNet>() {
                                nets.insert(net.trunc());
                            }
                        }
                    }
                }
            }
        }
        for c in &inv.cluster_policies {
            for rule in c.spec.egress.iter() {
                for peer in &rule.to {
                    for raw in peer.networks.iter().flatten() {
                        if let Ok(net) = raw.parse::<IpNet>() {
                            nets.insert(net.trunc());
                        }
                    }
                    for name in peer.domain_names.iter().flatten() {
                        add_name(&mut names, name);
                    }
                }
            }
        }
        for rule in &inv.cilium_rules {
            for peer in rule.spec.egress.iter().chain(&rule.spec.egress_deny) {
                for f in peer.to_fqdns.iter().flatten() {
                    for name in f.match_name.iter().chain(&f.match_pattern) {
                        add_name(&mut names, name);
                    }
                }
            }
            for peer in cilium_peers(rule) {
                let sets = peer.cidr_set.iter().flatten().flat_map(|c| c.cidr.iter().chain(&c.except));
                for raw in peer.cidr.iter().flatten().chain(sets) {
                    if let Ok(net) = raw.parse::<IpNet>() {
                        nets.insert(net.trunc());
                    }
                }
            }
        }
        for p in &inv.calico_policies {
            for rule in p.ingress_rules.iter().chain(&p.egress_rules) {
                for e in [&rule.source, &rule.destination] {
                    nets.extend(e.nets.iter().chain(&e.not_nets).map(IpNet::trunc));
                }
            }
        }
        for set in &inv.calico_network_sets {
            nets.extend(set.nets.iter().map(IpNet::trunc));
        }
        for intent in &inv.intents {
            for rule in intent.spec.iter().flat_map(|s| &s.egress) {
                for name in rule.fqdn.iter().chain(&rule.fqdn_pattern) {
                    add_name(&mut names, name);
                }
            }
        }
    }
    let mut out = address_probes(&nets);
    out.extend(names.into_iter().map(|name| Destination::Name { name }));
    out.sort();
    out.dedup();
    out
}

/// A fingerprint of everything in a namespace that reachability reads: its objects' values, and
/// what the model took from its workloads (their pod templates are not kept as values) and its
/// policies.
fn namespace_fingerprints(inventory: &Inventory) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let mut namespaced: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cluster: Vec<String> = Vec::new();
    for o in &inventory.objects {
        let text = format!("{}/{}/{}", o.id.kind, o.id.name, serde_json::to_string(&o.value).unwrap_or_default());
        match (o.namespace(), o.kind) {
            (None, crate::model::Kind::Namespace) => namespaced.entry(o.id.name.clone()).or_default().push(text),
            (None, _) => cluster.push(text),
            (Some(ns), _) => namespaced.entry(ns.to_owned()).or_default().push(text),
        }
    }
    for w in &inventory.workloads {
        let facts = format!("workload {} {:?} {:?} {} {:?}", w.name, w.labels, w.ports, w.host_network, w.pod_ips);
        namespaced.entry(w.namespace.clone()).or_default().push(facts);
    }
    for p in &inventory.policies {
        let facts = format!("policy {} {}", p.name, serde_json::to_string(&p.spec).unwrap_or_default());
        namespaced.entry(p.namespace.clone()).or_default().push(facts);
    }
    for ns in inventory.namespaces.values() {
        namespaced.entry(ns.name.clone()).or_default().push(format!("labels {:?}", ns.labels));
    }
    for v in namespaced.values_mut() {
        v.sort();
    }
    cluster.sort();
    (namespaced, cluster)
}

/// The namespaces whose objects differ between the sides, or `None` when a cluster-scoped object
/// differs (then every pair may have changed).
pub fn changed_namespaces(base: &Inventory, head: &Inventory) -> Option<BTreeSet<String>> {
    let (b, bc) = namespace_fingerprints(base);
    let (h, hc) = namespace_fingerprints(head);
    if bc != hc {
        return None;
    }
    let names: BTreeSet<&String> = b.keys().chain(h.keys()).collect();
    Some(names.into_iter().filter(|n| b.get(*n) != h.get(*n)).cloned().collect())
}

/// Where `pointer` of an object is written.
fn locate(project: &Project, object: crate::model::ObjectId, pointer: &str) -> Location {
    let (file, line) = project.place(object, pointer);
    Location { file, line }
}

/// Why HEAD decides a direction the way it does, in words, and where the deciding rule is.
fn why_direction(project: &Project, d: &DirectionVerdict, what: &str) -> (String, Option<Location>) {
    let inv = &project.inventory;
    let state = if d.allowed() { "allows" } else { "denies" };
    match d.decided() {
        Decided::Admin(t) | Decided::Baseline(t) => {
            let p = inv.cluster_policy(t.policy);
            let at = locate(project, p.object, &format!("/spec/{}/{}", t.direction.key(), t.rule));
            let text = format!(
                "{what}: {} {} {} {}[{}] {state} ({}:{})",
                t.tier.as_str(),
                p.kind.as_str(),
                p.name,
                t.direction.key(),
                t.rule,
                at.file,
                at.line
            );
            (text, Some(at))
        }
        Decided::CiliumDeny(r) => {
            let rule = inv.cilium_rule(r.rule);
            let at = locate(project, rule.object, &r.pointer(inv));
            (format!("{what}: {} {}[{}] denies ({}:{})", rule.describe(), r.key(), r.index, at.file, at.line), Some(at))
        }
        Decided::Calico(i) => match d.calico.tiers.get(i).map(|t| t.outcome) {
            Some(crate::semantics::calico::TierOutcome::Rule(r, _)) => {
                let p = inv.calico_policy(r.policy);
                let at = locate(project, p.object, &r.pointer());
                let text = format!(
                    "{what}: {} {}[{}] {state} ({}:{})",
                    p.describe(),
                    r.direction.key(),
                    r.index,
                    at.file,
                    at.line
                );
                (text, Some(at))
            }
            Some(crate::semantics::calico::TierOutcome::EndOfTier { policy, .. }) => {
                let p = inv.calico_policy(policy);
                let at = locate(project, p.object, "/spec/selector");
                (
                    format!(
                        "{what}: Calico tier {} ends in its default action, {state} ({}:{})",
                        p.tier, at.file, at.line
                    ),
                    Some(at),
                )
            }
            Some(crate::semantics::calico::TierOutcome::NetworkPolicy(r)) => allowed_by(project, r, what),
            None => (format!("{what}: Calico {state}"), None),
        },
        Decided::Isolation => match d.allowed_by.first() {
            Some(r) => allowed_by(project, *r, what),
            None => match d.cilium.allowed_by.first() {
                Some(r) => {
                    let rule = inv.cilium_rule(r.rule);
                    let at = locate(project, rule.object, &r.pointer(inv));
                    let text = format!(
                        "{what}: allowed by {} {}[{}] ({}:{})",
                        rule.describe(),
                        r.key(),
                        r.index,
                        at.file,
                        at.line
                    );
                    (text, Some(at))
                }
                None => isolated(project, d, what),
            },
        },
        Decided::Default => (format!("{what}: no policy isolates it"), None),
    }
}

/// A NetworkPolicy rule that allows, in words, with where it is.
fn allowed_by(project: &Project, r: crate::semantics::RuleRef, what: &str) -> (String, Option<Location>) {
    let p = project.inventory.policy(r.policy);
    let at = locate(project, p.object, &p.rule_pointer(r.direction, r.index));
    let text = format!(
        "{what}: allowed by {}/{} {} ({}:{})",
        p.namespace,
        p.name,
        p.rule_label(r.direction, r.index),
        at.file,
        at.line
    );
    (text, Some(at))
}

/// A direction isolated with no rule allowing the traffic, in words.
fn isolated(project: &Project, d: &DirectionVerdict, what: &str) -> (String, Option<Location>) {
    let inv = &project.inventory;
    let names: Vec<String> =
        d.isolated_by.iter().map(|p| format!("{}/{}", inv.policy(*p).namespace, inv.policy(*p).name)).collect();
    let at = d.isolated_by.first().map(|p| locate(project, inv.policy(*p).object, "/spec/podSelector"));
    if names.is_empty() {
        (format!("{what}: isolated, no rule allows it"), at)
    } else {
        (format!("{what}: isolated by {}, no rule allows it", names.join(", ")), at)
    }
}

/// What is probed: every workload present on both sides and the external destinations, and the
/// ports ([`ports`], [`externals`]).
pub fn probes(base: &Project, head: &Project) -> (Vec<Destination>, Vec<Port>) {
    let (bi, hi) = (&base.inventory, &head.inventory);
    let (bw, hw) = (workloads(bi), workloads(hi));
    let mut destinations: Vec<Destination> =
        bw.keys().filter(|k| hw.contains_key(*k)).map(|k| Destination::Workload { workload: k.clone() }).collect();
    destinations.extend(externals([bi, hi]));
    (destinations, ports([bi, hi]))
}

/// One side's evaluator with each workload's applicable policies computed once per direction.
struct Judge<'p> {
    eval: Evaluator<'p>,
    ids: BTreeMap<WorkloadKey, WorkloadId>,
    egress: Vec<Option<crate::semantics::evaluator::Applicable>>,
    ingress: Vec<Option<crate::semantics::evaluator::Applicable>>,
    /// Per workload: what its verdicts read as an end of a connection: its identity as a peer
    /// (labels, namespace labels, ports, addresses), and the content of the policies that apply
    /// to it per direction.
    identity: Vec<String>,
    egress_inputs: Vec<String>,
    ingress_inputs: Vec<String>,
}

/// The content of the policies in `applicable`, in order.
fn applied_text(inventory: &Inventory, applicable: Option<&crate::semantics::evaluator::Applicable>) -> String {
    let Some(a) = applicable else { return "host network".to_owned() };
    let value =
        |object: crate::model::ObjectId| serde_json::to_string(&inventory.object(object).value).unwrap_or_default();
    let mut out = String::new();
    for p in &a.isolated_by {
        let p = inventory.policy(*p);
        out.push_str(&format!("np {} {} {:?};", p.name, serde_json::to_string(&p.spec).unwrap_or_default(), p.names));
    }
    for c in a.admin.iter().chain(&a.baseline) {
        out.push_str(&format!("cnp {};", value(inventory.cluster_policy(*c).object)));
    }
    for r in &a.cilium {
        let rule = inventory.cilium_rule(*r);
        out.push_str(&format!("cilium {} {};", rule.pointer, value(rule.object)));
    }
    for c in &a.calico {
        out.push_str(&format!("calico {};", value(inventory.calico_policy(*c).object)));
    }
    out
}

impl<'p> Judge<'p> {
    fn new(inventory: &'p Inventory) -> Judge<'p> {
        let eval = Evaluator::new(inventory);
        let applicable = |direction| {
            (0..inventory.workloads.len())
                .map(|i| {
                    let pod = eval.pod(WorkloadId(i));
                    (!pod.host_network).then(|| eval.applicable(&pod, direction))
                })
                .collect()
        };
        let egress: Vec<_> = applicable(crate::semantics::Direction::Egress);
        let ingress: Vec<_> = applicable(crate::semantics::Direction::Ingress);
        let identity = (0..inventory.workloads.len())
            .map(|i| {
                let w = inventory.workload(WorkloadId(i));
                let ns = eval.namespace_labels(&w.namespace);
                format!("{:?} {:?} {:?} {:?} {}", w.labels, ns, w.ports, w.pod_ips, w.host_network)
            })
            .collect();
        let egress_inputs = egress.iter().map(|a| applied_text(inventory, a.as_ref())).collect();
        let ingress_inputs = ingress.iter().map(|a| applied_text(inventory, a.as_ref())).collect();
        Judge { ids: workloads(inventory), egress, ingress, eval, identity, egress_inputs, ingress_inputs }
    }

    /// The verdict of `source` → `destination` on `port`: each direction judged with the
    /// policies that apply to its pod, combined as [`Evaluator::evaluate`] does.
    fn verdict(&self, source: WorkloadId, destination: &Destination, port: Port) -> Option<Verdicts> {
        use crate::semantics::Direction::{Egress, Ingress};
        let traffic = Traffic { port: port.port, protocol: port.protocol };
        let pod = self.eval.pod(source);
        let (to, to_id) = match destination {
            Destination::Workload { workload } => {
                let id = *self.ids.get(workload)?;
                (Endpoint::Pod(self.eval.pod(id)), Some(id))
            }
            Destination::Address { address, .. } => (Endpoint::Address(*address), None),
            Destination::Name { name } => (Endpoint::Name(name), None),
        };
        let egress = self.egress[source.0].as_ref().map(|a| self.eval.judge(&pod, Egress, a, &to, traffic));
        let ingress = to_id.and_then(|id| {
            let a = self.ingress[id.0].as_ref()?;
            let to_pod = self.eval.pod(id);
            Some(self.eval.judge(&to_pod, Ingress, a, &Endpoint::Pod(pod), traffic))
        });
        let allowed = egress.as_ref().is_none_or(DirectionVerdict::allowed)
            && ingress.as_ref().is_none_or(DirectionVerdict::allowed);
        Some(Verdicts { allowed, egress, ingress })
    }
}

/// Both directions of one connection.
struct Verdicts {
    allowed: bool,
    egress: Option<DirectionVerdict>,
    ingress: Option<DirectionVerdict>,
}

/// Destination classes for sources whose egress inputs changed. When only NetworkPolicies
/// govern a source's egress on both sides and its identity is unchanged, a destination workload
/// that (a) lives in neither the source's namespace nor any namespace a `namespaceSelector` of
/// those policies' egress peers selects and (b) has no known pod address is judged by the
/// source's egress rules only through its container ports: no peer names it, only peers that
/// match every pod can. So all such destinations with the same ports (on both sides) share one
/// egress answer per port and side. Combined with the destination's ingress answers (equal on
/// both sides when its ingress inputs are unchanged, else those of its representative source),
/// they settle whether the connection can change without judging it. The property test in
/// `tests/diff.rs` checks this against judging every pair.
struct Classes {
    /// Per destination (by index): its namespace and class, when it may be judged by class.
    member: Vec<Option<(String, usize)>>,
    /// Per class: its destinations (base and head workload ids, namespace), in order.
    members: Vec<Vec<(WorkloadId, WorkloadId, String)>>,
}

impl Classes {
    fn new(bj: &Judge<'_>, hj: &Judge<'_>, destinations: &[Destination]) -> Classes {
        let mut keys: BTreeMap<String, usize> = BTreeMap::new();
        let mut members: Vec<Vec<(WorkloadId, WorkloadId, String)>> = Vec::new();
        let member = destinations
            .iter()
            .map(|d| {
                let Destination::Workload { workload } = d else { return None };
                let (db, dh) = (bj.ids[workload.as_str()], hj.ids[workload.as_str()]);
                let (wb, wh) = (bj.eval.inventory.workload(db), hj.eval.inventory.workload(dh));
                if !wb.pod_ips.is_empty() || !wh.pod_ips.is_empty() || wb.namespace != wh.namespace {
                    return None;
                }
                // Ports on both sides: a destination whose container ports changed is in the
                // class of those with the same change.
                let key = format!("{:?} {:?}", wb.ports, wh.ports);
                let next = keys.len();
                let class = *keys.entry(key).or_insert(next);
                if class == members.len() {
                    members.push(Vec::new());
                }
                members[class].push((db, dh, wb.namespace.clone()));
                Some((wb.namespace.clone(), class))
            })
            .collect();
        Classes { member, members }
    }
}

/// Per port, one direction's verdict on each side: `None` where the end is not isolated in that
/// direction (host network), else whether the direction allows.
type Answers = Vec<[Option<bool>; 2]>;

/// A destination's ingress class: the namespaces its ingress peers can name, and the answers
/// of a source outside them.
type IngressClass = (BTreeSet<String>, Answers);

/// Whether a connection is allowed on each side, from its two directions' answers on one port.
fn combined(egress: [Option<bool>; 2], ingress: [Option<bool>; 2]) -> [bool; 2] {
    let ok = |o: Option<bool>| o.unwrap_or(true);
    [ok(egress[0]) && ok(ingress[0]), ok(egress[1]) && ok(ingress[1])]
}

/// For a source whose egress inputs changed: the namespaces its egress peers can name, when only
/// NetworkPolicies govern its egress on both sides and its identity is unchanged (else `None`:
/// judge every destination).
fn named_namespaces(bj: &Judge<'_>, hj: &Judge<'_>, source: &str) -> Option<BTreeSet<String>> {
    named_by(bj, hj, source, true)
}

/// The namespaces the peers of the policies governing `workload` in one direction can name (its
/// own included), when only NetworkPolicies govern it on both sides and its identity is
/// unchanged.
fn named_by(bj: &Judge<'_>, hj: &Judge<'_>, workload: &str, egress: bool) -> Option<BTreeSet<String>> {
    let (b, h) = (bj.ids[workload], hj.ids[workload]);
    if bj.identity[b.0] != hj.identity[h.0] {
        return None;
    }
    let applicable =
        |j: &'_ Judge<'_>, id: WorkloadId| if egress { j.egress[id.0].clone() } else { j.ingress[id.0].clone() };
    let only_network_policy = |j: &Judge<'_>, id: WorkloadId| {
        applicable(j, id)
            .is_some_and(|a| a.admin.is_empty() && a.baseline.is_empty() && a.cilium.is_empty() && a.calico.is_empty())
    };
    if !only_network_policy(bj, b) || !only_network_policy(hj, h) {
        return None;
    }
    let mut named: BTreeSet<String> = BTreeSet::new();
    for (j, id) in [(bj, b), (hj, h)] {
        let inv = j.eval.inventory;
        named.insert(inv.workload(id).namespace.clone());
        for &pid in applicable(j, id).iter().flat_map(|a| &a.isolated_by) {
            for list in crate::semantics::evaluator::peer_lists(inv.policy(pid)) {
                for peer in list.items.iter().filter_map(|p| p.namespace_selector.as_ref()) {
                    for side in [bj, hj] {
                        for ns in side.eval.inventory.namespaces.values() {
                            if crate::semantics::selector_matches(peer, &ns.labels) {
                                named.insert(ns.name.clone());
                            }
                        }
                    }
                }
            }
        }
    }
    Some(named)
}

/// One direction's answers for a connection from `source` to `destination` (base and head ids),
/// per port, on both sides: the destination's ingress, or the source's egress.
fn answers(
    (bj, hj): (&Judge<'_>, &Judge<'_>),
    source: (WorkloadId, WorkloadId),
    destination: (WorkloadId, WorkloadId),
    direction: crate::semantics::Direction,
    ports: &[Port],
) -> Answers {
    use crate::semantics::Direction::Egress;
    let judge = |j: &Judge<'_>, s: WorkloadId, d: WorkloadId, traffic: Traffic| {
        let (from, to) = (j.eval.pod(s), j.eval.pod(d));
        let (pod, peer, applicable) =
            if direction == Egress { (from, to, &j.egress[s.0]) } else { (to, from, &j.ingress[d.0]) };
        applicable.as_ref().map(|a| j.eval.judge(&pod, direction, a, &Endpoint::Pod(peer), traffic).allowed())
    };
    ports
        .iter()
        .map(|port| {
            let traffic = Traffic { port: port.port, protocol: port.protocol };
            [judge(bj, source.0, destination.0, traffic), judge(hj, source.1, destination.1, traffic)]
        })
        .collect()
}

/// `destination`'s ingress answers for connections from `source`, per port, on both sides.
fn ingress_answers(bj: &Judge<'_>, hj: &Judge<'_>, source: &str, destination: &str, ports: &[Port]) -> Answers {
    let (s, d) = ((bj.ids[source], hj.ids[source]), (bj.ids[destination], hj.ids[destination]));
    answers((bj, hj), s, d, crate::semantics::Direction::Ingress, ports)
}

/// `source`'s egress answers towards a class's representative, per port, on both sides.
fn egress_answers(
    bj: &Judge<'_>,
    hj: &Judge<'_>,
    source: &str,
    rep: (WorkloadId, WorkloadId),
    ports: &[Port],
) -> Answers {
    answers((bj, hj), (bj.ids[source], hj.ids[source]), rep, crate::semantics::Direction::Egress, ports)
}

/// Every connection whose verdict differs between the sides, with HEAD's reason, and the number
/// of pairs judged. `all_pairs` judges every pair (the slow reference for tests) instead of those
/// a change can reach.
pub fn changes(base: &Project, head: &Project, all_pairs: bool) -> (Vec<Changed>, usize) {
    let (bi, hi) = (&base.inventory, &head.inventory);
    // The two sides are independent: built on two threads.
    let (bj, hj) = std::thread::scope(|scope| {
        let base = scope.spawn(|| Judge::new(bi));
        let head = Judge::new(hi);
        (base.join(), head)
    });
    // A panic while building the base side is the same panic here.
    let bj = bj.unwrap_or_else(|e| std::panic::resume_unwind(e));
    let common: Vec<&WorkloadKey> = bj.ids.keys().filter(|k| hj.ids.contains_key(*k)).collect();
    let (destinations, ports) = probes(base, head);
    // Without a cluster-scoped change, a pair can change only if an end's identity or the
    // policies applying to it (in the direction it takes part in) differ between the sides.
    let shortcut = !all_pairs && changed_namespaces(bi, hi).is_some();
    let same = |k: &str, egress: bool| {
        let (b, h) = (bj.ids[k], hj.ids[k]);
        let inputs = if egress {
            bj.egress_inputs[b.0] == hj.egress_inputs[h.0]
        } else {
            bj.ingress_inputs[b.0] == hj.ingress_inputs[h.0]
        };
        bj.identity[b.0] == hj.identity[h.0] && inputs
    };
    let egress_changed: BTreeSet<&str> =
        common.iter().filter(|k| !shortcut || !same(k, true)).map(|k| k.as_str()).collect();
    let ingress_changed: Vec<Destination> = common
        .iter()
        .filter(|k| !shortcut || !same(k, false))
        .map(|k| Destination::Workload { workload: (*k).clone() })
        .collect();
    let ingress_set: BTreeSet<&Destination> = ingress_changed.iter().collect();
    let classes = Classes::new(&bj, &hj, &destinations);
    // The mirror image for destinations whose ingress inputs changed: a source outside the
    // namespaces their ingress peers can name, without a known address and with its identity
    // unchanged, is seen by their ingress rules like every other such source (its own policies
    // play no part in the destination's ingress). So one representative source answers for all
    // of them, per port and side.
    let anonymous = |k: &str| {
        let (b, h) = (bj.ids[k], hj.ids[k]);
        bj.identity[b.0] == hj.identity[h.0]
            && bj.eval.inventory.workload(b).pod_ips.is_empty()
            && hj.eval.inventory.workload(h).pod_ips.is_empty()
    };
    let namespace_of = |k: &str| bj.eval.inventory.workload(bj.ids[k]).namespace.clone();
    let ingress_classes: BTreeMap<&Destination, IngressClass> = if shortcut {
        ingress_changed
            .iter()
            .filter_map(|d| {
                let Destination::Workload { workload } = d else { return None };
                let named = named_by(&bj, &hj, workload, false)?;
                let rep = common.iter().find(|k| anonymous(k) && !named.contains(&namespace_of(k)))?;
                let answers = ingress_answers(&bj, &hj, rep, workload, &ports);
                Some((d, (named, answers)))
            })
            .collect()
    } else {
        BTreeMap::new()
    };
    // Per target list, by index: whether the destination's ingress inputs changed, and its
    // ingress class when it has one (looked up once, not per source).
    let lookup = |list: &[Destination]| -> Vec<(bool, Option<&IngressClass>)> {
        list.iter().map(|d| (ingress_set.contains(d), ingress_classes.get(d))).collect()
    };
    let (all_lookup, changed_lookup) = (lookup(&destinations), lookup(&ingress_changed));
    let per_source = crate::parallel::map(&common, crate::parallel::threads(8), |source| {
        let mut out = Vec::new();
        let mut judged = 0;
        // A source whose egress cannot have changed only matters towards destinations whose
        // ingress may have.
        let all = egress_changed.contains(source.as_str());
        let (targets, looked_up) = if all { (&destinations, &all_lookup) } else { (&ingress_changed, &changed_lookup) };
        let (source_ns, source_anonymous) = (namespace_of(source), anonymous(source));
        // The destination's ingress answers for this source, when one representative gives
        // them (the source is outside the namespaces the destination's ingress peers name).
        let ingress_of = |i: usize| {
            let (named, answers) = looked_up[i].1?;
            (source_anonymous && !named.contains(&source_ns)).then_some(answers)
        };
        // Destinations judged by class ([`Classes`]): the namespaces the source names, and each
        // class's egress answers, found on first use.
        let named = if shortcut && all { named_namespaces(&bj, &hj, source) } else { None };
        let mut class_answers: Vec<Option<Option<Answers>>> = vec![None; classes.members.len()];
        for (i, destination) in targets.iter().enumerate() {
            if let (Some(named), Some(Some((namespace, class)))) = (&named, classes.member.get(i))
                && all
                && !named.contains(namespace)
            {
                // The class's answers, from a member outside the named namespaces (this one is).
                let egress = class_answers[*class].get_or_insert_with(|| {
                    let rep = classes.members[*class].iter().find(|m| !named.contains(&m.2))?;
                    Some(egress_answers(&bj, &hj, source, (rep.0, rep.1), &ports))
                });
                // Towards a destination whose ingress inputs are unchanged its ingress answers
                // are equal on both sides; else they come from its representative source.
                let ingress_changed = looked_up[i].0;
                let ingress = if ingress_changed { ingress_of(i) } else { None };
                let same = match (egress.as_ref(), ingress) {
                    (Some(e), _) if !ingress_changed => e.iter().all(|[b, h]| b == h),
                    (Some(e), Some(i)) => e.iter().zip(i).all(|(e, i)| {
                        let [b, h] = combined(*e, *i);
                        b == h
                    }),
                    _ => false,
                };
                if same {
                    continue;
                }
            }
            // Its egress unchanged (towards a destination whose identity is unchanged, as
            // named_by requires), such a source's connection moves only with the ingress answers.
            if !all && ingress_of(i).is_some_and(|i| i.iter().all(|[b, h]| b == h)) {
                continue;
            }
            judged += 1;
            for &port in &ports {
                let (Some(vb), Some(vh)) =
                    (bj.verdict(bj.ids[*source], destination, port), hj.verdict(hj.ids[*source], destination, port))
                else {
                    continue;
                };
                if vb.allowed == vh.allowed {
                    continue;
                }
                let change = if vh.allowed { Change::Opened } else { Change::Closed };
                // The direction whose verdict moved, explained on HEAD.
                let mut why = Vec::new();
                let mut at = None;
                for (label, b, h) in [
                    ("egress of the source", &vb.egress, &vh.egress),
                    ("ingress of the destination", &vb.ingress, &vh.ingress),
                ] {
                    let ok = |d: &Option<DirectionVerdict>| d.as_ref().is_none_or(DirectionVerdict::allowed);
                    if ok(b) != ok(h)
                        && let Some(h) = h
                    {
                        let (text, location) = why_direction(head, h, label);
                        why.push(text);
                        at = at.or(location);
                    }
                }
                let connection = Connection { source: (*source).clone(), destination: destination.clone(), port };
                out.push((connection, change, why.join("; "), at));
            }
        }
        (out, judged)
    });
    let mut out = Vec::new();
    let mut judged = 0;
    for (changes, n) in per_source {
        out.extend(changes);
        judged += n;
    }
    (out, judged)
}

/// Groups connections that changed the same way, on the same ports, for the same reason.
pub fn group(changes: Vec<Changed>) -> Vec<Group> {
    // First the ports of each (source, destination, change, why).
    let mut by_pair: BTreeMap<(Change, String, WorkloadKey, Destination), BTreeSet<Port>> = BTreeMap::new();
    let mut locations: BTreeMap<String, Location> = BTreeMap::new();
    for (c, change, why, at) in changes {
        if let Some(at) = at {
            locations.entry(why.clone()).or_insert(at);
        }
        by_pair.entry((change, why, c.source, c.destination)).or_default().insert(c.port);
    }
    // Then the pairs that share change, ports and why.
    let mut groups: BTreeMap<(Change, Vec<Port>, String), Vec<Pair>> = BTreeMap::new();
    for ((change, why, source, destination), ports) in by_pair {
        groups.entry((change, ports.into_iter().collect(), why)).or_default().push((source, destination));
    }
    groups
        .into_iter()
        .map(|((change, ports, why), pairs)| {
            let sources: BTreeSet<WorkloadKey> = pairs.iter().map(|p| p.0.clone()).collect();
            let destinations: BTreeSet<Destination> = pairs.iter().map(|p| p.1.clone()).collect();
            Group {
                change,
                ports,
                at: locations.get(&why).cloned(),
                why,
                sources: sources.into_iter().collect(),
                destinations: destinations.into_iter().collect(),
                pairs,
            }
        })
        .collect()
}

/// The semantic diff of `base` → `head`.
pub fn diff(base: &Project, head: &Project) -> Diff {
    let (bw, hw) = (workloads(&base.inventory), workloads(&head.inventory));
    let (changes, judged_pairs) = changes(base, head, false);
    Diff {
        version: SCHEMA_VERSION,
        groups: group(changes),
        added_workloads: hw.keys().filter(|k| !bw.contains_key(*k)).cloned().collect(),
        removed_workloads: bw.keys().filter(|k| !hw.contains_key(*k)).cloned().collect(),
        judged_pairs,
    }
}

/// Lists names, the first `limit` and a count of the rest.
pub fn list(names: &[String], limit: usize) -> String {
    let mut shown = names.iter().take(limit).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > limit {
        shown.push_str(&format!(" and {} more", names.len() - limit));
    }
    shown
}

impl Group {
    /// Whether the pairs are every source with every destination.
    pub fn is_product(&self) -> bool {
        self.pairs.len() == self.sources.len() * self.destinations.len()
    }

    /// The ports as `80/TCP, 443/TCP`.
    pub fn ports_text(&self) -> String {
        self.ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }
}

/// Groups as a reader sees them: groups that changed the same way on the same ports for the same
/// reason in different namespaces (one templated policy applied in each) read as one, with
/// every place the reason is written. JSON and SARIF keep each group and its location.
struct Shown<'d> {
    change: Change,
    ports: &'d [Port],
    why: String,
    places: Vec<String>,
    sources: Vec<String>,
    destinations: Vec<String>,
    pairs: Vec<&'d Pair>,
}

impl Shown<'_> {
    fn is_product(&self) -> bool {
        self.pairs.len() == self.sources.len() * self.destinations.len()
    }

    fn ports_text(&self) -> String {
        self.ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }

    /// The reason, and where it is written when that is more than one place.
    fn why_text(&self) -> String {
        match self.places.as_slice() {
            [] | [_] => self.why.clone(),
            places => format!("{}, in {} places: {}", self.why, places.len(), list(places, 3)),
        }
    }
}

/// A reason without its namespaces and locations: `team-1/api-egress egress[1] (a.yaml:9)` and
/// `team-2/api-egress egress[1] (b.yaml:9)` both read `api-egress egress[1]`.
fn reason_shape(why: &str) -> String {
    // Locations first: ` (FILE:LINE)`, where FILE may hold spaces.
    let mut bare = String::new();
    let mut rest = why;
    while let Some(i) = rest.find(" (") {
        let after = &rest[i + 2..];
        let end = after.match_indices(')').map(|(j, _)| j).find(|&j| {
            after[..j].rsplit_once(':').is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
        match end {
            Some(j) => {
                bare.push_str(&rest[..i]);
                rest = &after[j + 1..];
            }
            None => {
                bare.push_str(&rest[..i + 2]);
                rest = after;
            }
        }
    }
    bare.push_str(rest);
    // Then the namespaces of `NAMESPACE/NAME` (a DNS label before the slash).
    bare.split(' ')
        .map(|word| match word.split_once('/') {
            Some((ns, name))
                if !ns.is_empty()
                    && !name.is_empty()
                    && ns.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    // Object names are lowercase; `53/UDP` is a port.
                    && !name.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                name
            }
            _ => word,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Groups read as one: by ports and reason shape, with the index of the first and the groups.
type Merged<'d> = BTreeMap<(&'d [Port], String), (usize, Vec<&'d Group>)>;

fn shown(groups: &[Group], change: Change) -> Vec<Shown<'_>> {
    let mut merged: Merged<'_> = BTreeMap::new();
    for (i, g) in groups.iter().enumerate().filter(|(_, g)| g.change == change) {
        merged.entry((g.ports.as_slice(), reason_shape(&g.why))).or_insert((i, Vec::new())).1.push(g);
    }
    let mut merged: Vec<_> = merged.into_iter().collect();
    // In the order of the first group each came from.
    merged.sort_by_key(|(_, (first, _))| *first);
    merged
        .into_iter()
        .map(|((ports, shape), (_, gs))| {
            let one = gs.len() == 1;
            let sources: BTreeSet<&String> = gs.iter().flat_map(|g| &g.sources).collect();
            let destinations: BTreeSet<&Destination> = gs.iter().flat_map(|g| &g.destinations).collect();
            Shown {
                change,
                ports,
                why: if one { gs[0].why.clone() } else { shape },
                places: if one {
                    Vec::new()
                } else {
                    gs.iter().filter_map(|g| g.at.as_ref()).map(|a| format!("{}:{}", a.file, a.line)).collect()
                },
                sources: sources.into_iter().cloned().collect(),
                destinations: destinations.into_iter().map(Destination::label).collect(),
                pairs: gs.iter().flat_map(|g| &g.pairs).collect(),
            }
        })
        .collect()
}

/// Human output.
pub fn render_human(d: &Diff) -> String {
    let mut out = String::new();
    let section = |out: &mut String, title: &str, sign: char, groups: Vec<Shown<'_>>| {
        if groups.is_empty() {
            return;
        }
        out.push_str(&format!("{title}:\n"));
        for g in groups {
            if g.is_product() {
                out.push_str(&format!(
                    "  {sign} {} from {} to {}\n",
                    g.ports_text(),
                    list(&g.sources, 5),
                    list(&g.destinations, 5)
                ));
            } else {
                out.push_str(&format!("  {sign} {} on {} connections:\n", g.ports_text(), g.pairs.len()));
                for (s, dst) in g.pairs.iter().take(5) {
                    out.push_str(&format!("      {s} -> {}\n", dst.label()));
                }
                if g.pairs.len() > 5 {
                    out.push_str(&format!("      and {} more\n", g.pairs.len() - 5));
                }
            }
            out.push_str(&format!("      why: {}\n", g.why_text()));
        }
    };
    section(&mut out, "Opened", '+', shown(&d.groups, Change::Opened));
    section(&mut out, "Closed", '-', shown(&d.groups, Change::Closed));
    if !d.added_workloads.is_empty() {
        out.push_str(&format!("Workloads added (not compared): {}\n", list(&d.added_workloads, 10)));
    }
    if !d.removed_workloads.is_empty() {
        out.push_str(&format!("Workloads removed (not compared): {}\n", list(&d.removed_workloads, 10)));
    }
    let (opened, closed) = (shown(&d.groups, Change::Opened).len(), shown(&d.groups, Change::Closed).len());
    if opened + closed == 0 {
        out.push_str("No connection opened or closed.\n");
    } else {
        out.push_str(&format!("{opened} group(s) opened, {closed} closed.\n"));
    }
    out
}

/// The markdown stays under GitHub's 65,536 characters per comment: rows and connections past
/// these sizes are counted, not listed (the JSON output has them all).
const MARKDOWN_TABLE_BUDGET: usize = 40_000;
const MARKDOWN_BUDGET: usize = 60_000;

/// Text for a markdown table cell or code span written by anyone (names, file paths): no
/// markup, no column break, no code-span end.
fn markdown_text(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('|', "\\|").replace('`', "'")
}

/// Markdown output: fits a pull-request comment and a job summary.
pub fn render_markdown(d: &Diff) -> String {
    let mut out = String::from("### portcullis diff\n\n");
    let groups: Vec<Shown<'_>> =
        shown(&d.groups, Change::Opened).into_iter().chain(shown(&d.groups, Change::Closed)).collect();
    let opened = groups.iter().filter(|g| g.change == Change::Opened).count();
    let closed = groups.len() - opened;
    if groups.is_empty() {
        out.push_str("No connection opened or closed.\n");
        return out;
    }
    out.push_str(&format!("**{opened}** group(s) of connections opened, **{closed}** closed.\n\n"));
    out.push_str("| | ports | from | to | why |\n|---|---|---|---|---|\n");
    let cell = markdown_text;
    for (i, g) in groups.iter().enumerate() {
        if out.len() > MARKDOWN_TABLE_BUDGET {
            out.push_str(&format!(
                "| | | | | … and {} more groups: `portcullis diff --format json` lists them all |\n",
                groups.len() - i
            ));
            break;
        }
        let sign = if g.change == Change::Opened { "➕ opened" } else { "➖ closed" };
        out.push_str(&format!(
            "| {sign} | {} | {} | {} | {} |\n",
            cell(&g.ports_text()),
            cell(&list(&g.sources, 5)),
            cell(&list(&g.destinations, 5)),
            cell(&g.why_text())
        ));
    }
    let long: Vec<&Shown<'_>> = groups.iter().filter(|g| g.pairs.len() > 5).collect();
    if !long.is_empty() {
        out.push_str("\n<details><summary>Every connection of the larger groups</summary>\n\n");
        'groups: for g in long {
            out.push_str(&format!(
                "- {} {}:\n",
                if g.change == Change::Opened { "opened" } else { "closed" },
                g.ports_text()
            ));
            for (i, (s, dst)) in g.pairs.iter().enumerate() {
                if out.len() > MARKDOWN_BUDGET {
                    out.push_str(&format!("  - … and {} more (the JSON output lists them all)\n", g.pairs.len() - i));
                    break 'groups;
                }
                out.push_str(&format!("  - `{}` → `{}`\n", cell(s), cell(&dst.label())));
            }
        }
        out.push_str("\n</details>\n");
    }
    out
}

/// SARIF 2.1.0: one result per opened connection (source to destination, its ports), located at
/// the rule that opens it on HEAD.
pub fn render_sarif(d: &Diff) -> String {
    use serde_json::json;
    let mut results = Vec::new();
    for g in d.opened() {
        for (source, destination) in &g.pairs {
            let mut result = json!({
                "ruleId": "opened-connection",
                "ruleIndex": 0,
                "level": "warning",
                "message": {"text": format!("{source} may now reach {} on {}: {}", destination.label(), g.ports_text(), g.why)},
            });
            if let Some(at) = &g.at {
                result["locations"] = json!([{"physicalLocation": {
                    "artifactLocation": {"uri": crate::report::sarif::uri(&at.file)},
                    "region": {"startLine": at.line.max(1)},
                }}]);
            }
            results.push(result);
        }
    }
    let doc = json!({
        "$schema": crate::report::sarif::SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "portcullis diff",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/portcullis-dev/portcullis",
                "rules": [{
                    "id": "opened-connection",
                    "name": "opened-connection",
                    "shortDescription": {"text": "A connection the change opens"},
                    "fullDescription": {"text": "The change to the manifests allows a connection that was denied before: the source workload may now reach the destination on these ports."},
                }],
            }},
            "results": results,
        }],
    });
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
    out.push('\n');
    out
}

/// One row of the connectivity matrix: a workload, a destination, and the probed ports that are
/// allowed and denied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MatrixRow {
    pub source: WorkloadKey,
    pub destination: Destination,
    pub allowed: Vec<Port>,
    pub denied: Vec<Port>,
}

/// The connectivity matrix of one side (`portcullis matrix`): every workload towards every
/// workload and external destination, on the ports [`probes`] chooses, judged as `diff` and
/// `trace` judge. Every pair is judged (no classes: there is nothing to compare against).
pub fn matrix(project: &Project) -> Vec<MatrixRow> {
    let judge = Judge::new(&project.inventory);
    let (destinations, ports) = probes(project, project);
    let sources: Vec<&WorkloadKey> = judge.ids.keys().collect();
    let rows = crate::parallel::map(&sources, crate::parallel::threads(8), |source| {
        let id = judge.ids[source.as_str()];
        destinations
            .iter()
            .filter_map(|destination| {
                let (mut allowed, mut denied) = (Vec::new(), Vec::new());
                for &port in &ports {
                    let v = judge.verdict(id, destination, port)?;
                    if v.allowed { allowed.push(port) } else { denied.push(port) }
                }
                Some(MatrixRow { source: (*source).clone(), destination: destination.clone(), allowed, denied })
            })
            .collect::<Vec<_>>()
    });
    rows.into_iter().flatten().collect()
}

/// The matrix as a table: one line per pair with at least one allowed port.
pub fn render_matrix_table(rows: &[MatrixRow]) -> String {
    let mut out = String::new();
    for r in rows.iter().filter(|r| !r.allowed.is_empty()) {
        let ports: Vec<String> = r.allowed.iter().map(ToString::to_string).collect();
        let all = if r.denied.is_empty() { " (every probed port)" } else { "" };
        out.push_str(&format!("{} -> {}: {}{all}\n", r.source, r.destination.label(), ports.join(", ")));
    }
    let open = rows.iter().filter(|r| !r.allowed.is_empty()).count();
    out.push_str(&format!("{open} of {} pairs allow some probed port.\n", rows.len()));
    out
}

/// The matrix as CSV: `source,destination,port,protocol,verdict`, one line per probed port.
pub fn render_matrix_csv(rows: &[MatrixRow]) -> String {
    // Quoted when it holds a separator; a cell a spreadsheet would run as a formula (OWASP's
    // CSV injection: `=`, `+`, `-`, `@`, tab, carriage return first) is made text with `'`.
    let field = |s: &str| {
        let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_owned() };
        if s.contains([',', '"', '\n', '\r', '\'']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
    };
    let mut out = String::from("source,destination,port,protocol,verdict\n");
    for r in rows {
        for (ports, verdict) in [(&r.allowed, "allowed"), (&r.denied, "denied")] {
            for p in ports {
                out.push_str(&format!(
                    "{},{},{},{},{verdict}\n",
                    field(&r.source),
                    field(&r.destination.label()),
                    p.port,
                    p.protocol.as_str()
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn probes(nets: &[&str]) -> Vec<String> {
        let nets: BTreeSet<IpNet> = nets.iter().map(|n| n.parse().unwrap()).collect();
        address_probes(&nets).iter().map(Destination::label).collect()
    }

    #[test]
    fn reasons_read_the_same_across_namespaces_and_files() {
        let a = "egress of the source: allowed by team-1/api-egress egress[1] (a/ns 1.yaml:191)";
        let b = "egress of the source: allowed by team-2/api-egress egress[1] (b.yaml:9)";
        assert_eq!(reason_shape(a), "egress of the source: allowed by api-egress egress[1]");
        assert_eq!(reason_shape(a), reason_shape(b));
        // Different rules, policies or layers stay apart.
        assert_ne!(reason_shape(a), reason_shape(&b.replace("egress[1]", "egress[0]")));
        assert_ne!(reason_shape(a), reason_shape(&b.replace("api-egress", "db-egress")));
        // Addresses and ports are not namespaces.
        assert_eq!(reason_shape("to 10.0.0.0/8 on 53/UDP"), "to 10.0.0.0/8 on 53/UDP");
    }

    #[test]
    fn markdown_text_cannot_break_out() {
        let hostile = "a|b`c<img src=x>&";
        assert_eq!(markdown_text(hostile), "a\\|b'c&lt;img src=x&gt;&amp;");
    }

    /// The claim the probes rest on: every address has the CIDR membership of one probe, and no
    /// two probes have the same. Random nested and overlapping blocks in a small space, and
    /// every address of it checked.
    #[test]
    fn every_address_reads_like_exactly_one_probe() {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for _ in 0..300 {
            // Blocks inside 10.0.0.0/24 and a few around it.
            let mut nets: BTreeSet<IpNet> = BTreeSet::new();
            for _ in 0..1 + next(6) {
                let prefix = 22 + next(11) as u8;
                let address = std::net::Ipv4Addr::from(0x0A00_0000 + next(1024) as u32);
                nets.insert(IpNet::new(IpAddr::V4(address), prefix).unwrap().trunc());
            }
            let members = |a: IpAddr| nets.iter().filter(|n| n.contains(&a)).copied().collect::<Vec<_>>();
            let probes: Vec<IpAddr> = address_probes(&nets)
                .into_iter()
                .filter_map(|d| match d {
                    Destination::Address { address, .. } => Some(address),
                    _ => None,
                })
                .collect();
            let sets: BTreeSet<Vec<IpNet>> = probes.iter().map(|a| members(*a)).collect();
            assert_eq!(sets.len(), probes.len(), "two probes read alike: {nets:?} {probes:?}");
            for n in 0x09FF_FC00_u32..0x0A00_0800 {
                let set = members(IpAddr::V4(std::net::Ipv4Addr::from(n)));
                assert!(
                    sets.contains(&set),
                    "{} reads like no probe: {nets:?} {probes:?}",
                    std::net::Ipv4Addr::from(n)
                );
            }
        }
    }

    #[test]
    fn cidrs_cover_a_range_exactly() {
        let v4 = |lo: &str, hi: &str| {
            let (lo, hi): (std::net::Ipv4Addr, std::net::Ipv4Addr) = (lo.parse().unwrap(), hi.parse().unwrap());
            cidrs(32, u32::from(lo).into(), u32::from(hi).into()).iter().map(ToString::to_string).collect::<Vec<_>>()
        };
        assert_eq!(v4("0.0.0.0", "255.255.255.255"), ["0.0.0.0/0"]);
        assert_eq!(v4("10.0.0.1", "10.0.0.6"), ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]);
        assert_eq!(
            v4("11.0.0.0", "255.255.255.255"),
            ["11.0.0.0/8", "12.0.0.0/6", "16.0.0.0/4", "32.0.0.0/3", "64.0.0.0/2", "128.0.0.0/1"]
        );
        assert_eq!(cidrs(128, 0, u128::MAX).iter().map(ToString::to_string).collect::<Vec<_>>(), ["::/0"]);
    }

    #[test]
    fn one_probe_per_cidr_part_its_nested_cidrs_leave() {
        // The whole family is "any other address", at the outside address; the hole is probed.
        assert_eq!(
            probes(&["0.0.0.0/0", "10.0.0.0/8"]),
            ["198.51.100.77 (any other address)", "10.0.0.1 (10.0.0.0/8)"]
        );
        // A widened block: the part the narrower one does not name.
        assert_eq!(
            probes(&["203.0.113.0/24", "203.0.113.0/25"]),
            ["203.0.113.129 (203.0.113.128/25)", "203.0.113.1 (203.0.113.0/25)", "198.51.100.77 (any other address)"]
        );
        // A block its nested blocks cover wholly has no address of its own.
        assert_eq!(probes(&["10.0.0.0/24", "10.0.0.0/25", "10.0.0.128/25"]).len(), 3);
        // Smallest blocks: the network address itself.
        assert_eq!(probes(&["10.0.0.0/31", "10.0.0.0/32"])[..2], ["10.0.0.1 (10.0.0.1/32)", "10.0.0.0 (10.0.0.0/32)"]);
        // A block holding the outside address: probed there, and "any other address" elsewhere.
        assert_eq!(probes(&["198.51.100.0/24"]), ["198.51.100.77 (198.51.100.0/24)", "0.0.0.1 (any other address)"]);
        // IPv6 keeps its own whole family.
        assert_eq!(
            probes(&["::/0", "2001:db8::/32"])[..2],
            ["::1 (any other IPv6 address)", "2001:db8::1 (2001:db8::/32)"]
        );
    }
}
