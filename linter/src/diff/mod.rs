//! Semantic diff: which connections a change to the manifests opens and which it closes.
//!
//! Both sides are judged by the one evaluator ([`crate::semantics::Evaluator`]), every layer
//! included. What is compared: for each workload present on both sides (by namespace, kind and
//! name), its connections to every such workload and to the external destinations either side's
//! policies name, on the ports either side mentions ([`probes`]: one address per part of a CIDR
//! its nested CIDRs leave, one outside every CIDR, the names policies and intents write).
//!
//! Not pod by pod: without a cluster-scoped change, a connection can change only if its source's
//! identity (labels, namespace labels, ports, addresses) or the content of the policies that
//! apply to its egress differ between the sides, or the same of its destination's ingress. Each
//! workload's policies are found once per side and direction; a source whose egress cannot
//! have changed is judged only towards destinations whose ingress may have, and ends that no
//! changed peer can name are settled by class (`Classes`). [`Diff::judged_pairs`] counts what
//! was judged; `tests/diff.rs` checks the result against judging every pair.
//!
//! Changes are grouped by what changed (opened or closed), the ports, and why, so one edit that
//! opens a port to 200 workloads is one group. Output: [`render_human`], [`render_markdown`], [`render_sarif`].

mod probes;
pub(crate) mod render;

pub use probes::probes;
pub use render::{render_human, render_markdown, render_matrix_csv, render_matrix_table, render_sarif};

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

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
        let facts = format!("policy {} {}", p.name, serde_json::to_string(&*p.spec).unwrap_or_default());
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
pub(crate) fn why_direction(project: &Project, d: &DirectionVerdict, what: &str) -> (String, Option<Location>) {
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
        out.push_str(&format!("np {} {} {:?};", p.name, serde_json::to_string(&*p.spec).unwrap_or_default(), p.names));
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
