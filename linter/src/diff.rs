//! Semantic diff: which connections a change to the manifests opens and which it closes.
//!
//! Both sides are judged by the one evaluator ([`crate::semantics::Evaluator`]), every layer
//! included. What is compared: for each workload present on both sides (by namespace, kind and
//! name), its connections to every such workload and to the external destinations either side's
//! policies name (one address per CIDR and per `except`, one outside every CIDR, and the DNS
//! names of `domainNames`, `toFQDNs` and EgressIntents), on the ports either side mentions (policy
//! ports and range ends, container ports) plus one port nothing mentions, per protocol.
//!
//! Not pod by pod: a connection can change only if one of its ends lives in a namespace whose
//! objects changed (its policies, its workloads' labels or ports, its own labels), or if a
//! cluster-scoped policy changed. Only those pairs are judged ([`Diff::judged_pairs`]); the rest
//! are equal on both sides by construction. `tests/diff.rs` checks that against judging every
//! pair.
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

/// Connections that changed the same way for the same reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub change: Change,
    pub ports: Vec<Port>,
    /// Why, on the HEAD side: the layer and rule that now allows or denies.
    pub why: String,
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

/// One address standing for a CIDR: its first usable address.
fn representative(net: &IpNet) -> IpAddr {
    match net {
        IpNet::V4(n) if n.prefix_len() < 31 => {
            IpAddr::V4(std::net::Ipv4Addr::from(u32::from(n.network()).saturating_add(1)))
        }
        IpNet::V6(n) if n.prefix_len() < 127 => {
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(n.network()).saturating_add(1)))
        }
        other => other.network(),
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
                    names.extend(peer.domain_names.iter().flatten().map(|n| n.trim_start_matches("*.").to_owned()));
                }
            }
        }
        for intent in &inv.intents {
            for rule in intent.spec.iter().flat_map(|s| &s.egress) {
                names.extend(rule.fqdn.iter().cloned());
            }
        }
    }
    // A whole address family is stood for by the address outside every CIDR, below.
    let mut out: Vec<Destination> = nets
        .iter()
        .filter(|n| n.prefix_len() > 0)
        .map(|n| Destination::Address { address: representative(n), stands_for: n.to_string() })
        .collect();
    // An address in none of the CIDRs (TEST-NET-2, never routed): "the rest of the internet".
    let outside: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 77));
    if !nets.iter().any(|n| n.prefix_len() > 0 && n.contains(&outside)) {
        out.push(Destination::Address { address: outside, stands_for: "any other address".to_owned() });
    }
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

/// Why HEAD decides a direction the way it does, in words.
fn why_direction(project: &Project, d: &DirectionVerdict, what: &str) -> String {
    let inv = &project.inventory;
    let state = if d.allowed() { "allows" } else { "denies" };
    match d.decided() {
        Decided::Admin(t) | Decided::Baseline(t) => {
            let p = inv.cluster_policy(t.policy);
            format!(
                "{what}: {} {} {} {}[{}] {state}",
                t.tier.as_str(),
                p.kind.as_str(),
                p.name,
                t.direction.key(),
                t.rule
            )
        }
        Decided::CiliumDeny(r) => {
            format!("{what}: {} {}[{}] denies", inv.cilium_rule(r.rule).describe(), r.key(), r.index)
        }
        Decided::Calico(i) => match d.calico.tiers.get(i) {
            Some(t) => format!("{what}: Calico tier {} {state}", t.tier),
            None => format!("{what}: Calico {state}"),
        },
        Decided::Isolation => match d.allowed_by.first() {
            Some(r) => {
                let p = inv.policy(r.policy);
                let obj = inv.object(p.object);
                let at = project
                    .sources
                    .locate(&obj.doc, &obj.doc_pointer(&format!("/spec/{}/{}", r.direction.key(), r.index)));
                let file = project.sources.get(obj.doc.source).map(|s| s.name.clone()).unwrap_or_default();
                format!(
                    "{what}: allowed by {}/{} {}[{}] ({file}:{})",
                    p.namespace,
                    p.name,
                    r.direction.key(),
                    r.index,
                    at.line
                )
            }
            None if !d.cilium.allowed_by.is_empty() => format!("{what}: allowed by a Cilium rule"),
            None => {
                let names: Vec<String> = d
                    .isolated_by
                    .iter()
                    .map(|p| format!("{}/{}", inv.policy(*p).namespace, inv.policy(*p).name))
                    .collect();
                if names.is_empty() {
                    format!("{what}: isolated, no rule allows it")
                } else {
                    format!("{what}: isolated by {}, no rule allows it", names.join(", "))
                }
            }
        },
        Decided::Default => format!("{what}: no policy isolates it"),
    }
}

/// Judges one connection on one side; `None` when an end is missing there.
fn verdict<'p>(
    eval: &Evaluator<'p>,
    source: WorkloadId,
    destination: &Endpoint<'p>,
    port: Port,
) -> crate::semantics::PolicyVerdict {
    eval.evaluate(&Endpoint::Pod(eval.pod(source)), destination, Traffic { port: port.port, protocol: port.protocol })
}

fn endpoint<'p>(
    eval: &Evaluator<'p>,
    ids: &BTreeMap<WorkloadKey, WorkloadId>,
    d: &'p Destination,
) -> Option<Endpoint<'p>> {
    match d {
        Destination::Workload { workload } => ids.get(workload).map(|id| Endpoint::Pod(eval.pod(*id))),
        Destination::Address { address, .. } => Some(Endpoint::Address(*address)),
        Destination::Name { name } => Some(Endpoint::Name(name)),
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

/// Every connection whose verdict differs between the sides, with HEAD's reason. `all_pairs`
/// judges every pair (the slow reference for tests) instead of those a change can reach.
pub fn changes(base: &Project, head: &Project, all_pairs: bool) -> (Vec<(Connection, Change, String)>, usize) {
    let (bi, hi) = (&base.inventory, &head.inventory);
    let (bw, hw) = (workloads(bi), workloads(hi));
    let common: Vec<&WorkloadKey> = bw.keys().filter(|k| hw.contains_key(*k)).collect();
    let (destinations, ports) = probes(base, head);
    let changed = if all_pairs { None } else { changed_namespaces(bi, hi) };
    let namespace_of = |k: &str| k.split('/').next().unwrap_or_default().to_owned();
    let touched = |k: &str| changed.as_ref().is_none_or(|set| set.contains(&namespace_of(k)));
    let (be, he) = (Evaluator::new(bi), Evaluator::new(hi));
    let mut out = Vec::new();
    let mut judged = 0;
    for source in &common {
        for destination in &destinations {
            let dest_touched = match destination {
                Destination::Workload { workload } => touched(workload),
                _ => false,
            };
            if !touched(source) && !dest_touched {
                continue;
            }
            let (Some(b_end), Some(h_end)) = (endpoint(&be, &bw, destination), endpoint(&he, &hw, destination)) else {
                continue;
            };
            judged += 1;
            for &port in &ports {
                let vb = verdict(&be, bw[*source], &b_end, port);
                let vh = verdict(&he, hw[*source], &h_end, port);
                if vb.allowed == vh.allowed {
                    continue;
                }
                let change = if vh.allowed { Change::Opened } else { Change::Closed };
                // The direction whose verdict moved, explained on HEAD.
                let mut why = Vec::new();
                for (label, b, h) in [
                    ("egress of the source", &vb.egress, &vh.egress),
                    ("ingress of the destination", &vb.ingress, &vh.ingress),
                ] {
                    let (b_ok, h_ok) = (
                        b.as_ref().is_none_or(DirectionVerdict::allowed),
                        h.as_ref().is_none_or(DirectionVerdict::allowed),
                    );
                    if b_ok != h_ok
                        && let Some(h) = h
                    {
                        why.push(why_direction(head, h, label));
                    }
                }
                let connection = Connection { source: (*source).clone(), destination: destination.clone(), port };
                out.push((connection, change, why.join("; ")));
            }
        }
    }
    (out, judged)
}

/// Groups connections that changed the same way, on the same ports, for the same reason.
pub fn group(changes: Vec<(Connection, Change, String)>) -> Vec<Group> {
    // First the ports of each (source, destination, change, why).
    let mut by_pair: BTreeMap<(Change, String, WorkloadKey, Destination), BTreeSet<Port>> = BTreeMap::new();
    for (c, change, why) in changes {
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

/// Human output.
pub fn render_human(d: &Diff) -> String {
    let mut out = String::new();
    let section = |out: &mut String, title: &str, sign: char, groups: Vec<&Group>| {
        if groups.is_empty() {
            return;
        }
        out.push_str(&format!("{title}:\n"));
        for g in groups {
            let dests: Vec<String> = g.destinations.iter().map(Destination::label).collect();
            if g.is_product() {
                out.push_str(&format!(
                    "  {sign} {} from {} to {}\n",
                    g.ports_text(),
                    list(&g.sources, 5),
                    list(&dests, 5)
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
            out.push_str(&format!("      why: {}\n", g.why));
        }
    };
    section(&mut out, "Opened", '+', d.opened().collect());
    section(&mut out, "Closed", '-', d.closed().collect());
    if !d.added_workloads.is_empty() {
        out.push_str(&format!("Workloads added (not compared): {}\n", list(&d.added_workloads, 10)));
    }
    if !d.removed_workloads.is_empty() {
        out.push_str(&format!("Workloads removed (not compared): {}\n", list(&d.removed_workloads, 10)));
    }
    let (opened, closed) = (d.opened().count(), d.closed().count());
    if opened + closed == 0 {
        out.push_str("No connection opened or closed.\n");
    } else {
        out.push_str(&format!("{opened} group(s) opened, {closed} closed.\n"));
    }
    out
}

/// Markdown output: fits a pull-request comment and a job summary.
pub fn render_markdown(d: &Diff) -> String {
    let mut out = String::from("### portcullis diff\n\n");
    let (opened, closed) = (d.opened().count(), d.closed().count());
    if opened + closed == 0 {
        out.push_str("No connection opened or closed.\n");
        return out;
    }
    out.push_str(&format!("**{opened}** group(s) of connections opened, **{closed}** closed.\n\n"));
    out.push_str("| | ports | from | to | why |\n|---|---|---|---|---|\n");
    let cell = |s: &str| s.replace('|', "\\|");
    for g in &d.groups {
        let sign = if g.change == Change::Opened { "➕ opened" } else { "➖ closed" };
        let dests: Vec<String> = g.destinations.iter().map(Destination::label).collect();
        out.push_str(&format!(
            "| {sign} | {} | {} | {} | {} |\n",
            cell(&g.ports_text()),
            cell(&list(&g.sources, 5)),
            cell(&list(&dests, 5)),
            cell(&g.why)
        ));
    }
    let long: Vec<&Group> = d.groups.iter().filter(|g| g.pairs.len() > 5).collect();
    if !long.is_empty() {
        out.push_str("\n<details><summary>Every connection of the larger groups</summary>\n\n");
        for g in long {
            out.push_str(&format!(
                "- {} {}:\n",
                if g.change == Change::Opened { "opened" } else { "closed" },
                g.ports_text()
            ));
            for (s, dst) in &g.pairs {
                out.push_str(&format!("  - `{s}` → `{}`\n", dst.label()));
            }
        }
        out.push_str("\n</details>\n");
    }
    out
}
