//! Replay: which observed connections a set of policies would deny, and the smallest change that
//! allows each.
//!
//! Every edge of a [`TrafficLog`] is judged by the one evaluator ([`crate::semantics::Evaluator`],
//! every layer the engine knows), as `trace` judges one connection. Its ends are the workloads of
//! the manifests when they are there (so a relabel in the change under test counts), else the pod
//! the recorder saw, with its recorded labels; an outside address the pod resolved from a DNS name
//! is matched by address rules through the address and by name rules through the name
//! ([`Endpoint::Resolved`]).
//!
//! Denied edges are grouped by what denies them (the direction and the deciding policy or
//! policies), each group with the smallest change that allows its edges: one rule per peer added
//! to one of the NetworkPolicies that isolate the pod (as an RFC 6902 patch, like `fix`'s), or an
//! EgressIntent for a destination known by name (its addresses rotate; an `ipBlock` would rot).
//! A denial decided by another layer (an Admin-tier or Cilium deny, a Calico tier) has no
//! NetworkPolicy fix; the group says which rule to change.

pub mod traffic;

mod capture;
mod export;
pub mod history;
mod render;

pub use capture::traffic_from_records;
pub use export::{PolicyExport, SYSTEM_NAMESPACES, export_policies};

pub use render::{render_human, render_json, render_markdown, render_sarif};
pub use traffic::{Bounds, Edge, Peer, TrafficError, TrafficLog};

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde::Serialize;
use serde_json::{Value, json};

use crate::diff::{Location, Port};
use crate::model::{ContainerPort, Inventory, Labels, NAMESPACE_NAME_LABEL, ObjectId, Policy, PolicyId, WorkloadId};
use crate::project::Project;
use crate::semantics::evaluator::Applicable;
use crate::semantics::{Decided, Direction, DirectionVerdict, Endpoint, Evaluator, PodView, Traffic};
use traffic::{AddressPeer, WorkloadPeer};

/// The JSON schema version of [`Replay`].
pub const SCHEMA_VERSION: u32 = 1;

/// Pod labels that name one revision or one pod of a workload, left out of the selectors a fix
/// writes (a rule written with them would stop matching at the next rollout).
use crate::egress::map::VOLATILE_LABELS as PER_REVISION_LABELS;

/// What replaying a traffic log against manifests found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Replay {
    pub version: u32,
    /// Edges judged.
    pub edges: usize,
    /// Edges some group denies.
    pub denied_edges: usize,
    /// Connections (the edges' counts) those edges stand for.
    pub denied_connections: u64,
    /// Allowed edges whose verdict a rule the input cannot settle could turn around.
    pub undecided_allowed: usize,
    pub groups: Vec<DeniedGroup>,
}

/// Edges denied in one direction by the same policies.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeniedGroup {
    pub direction: Direction,
    /// The deciding layer: `isolation`, `admin`, `baseline`, `ciliumDeny` or `calico`.
    pub decided_by: &'static str,
    /// What denies, in words, with where it is written.
    pub why: String,
    pub at: Option<Location>,
    /// The object findings about this group are anchored at (`lint --traffic`).
    #[serde(skip)]
    pub object: Option<ObjectId>,
    pub edges: Vec<DeniedEdge>,
    /// The sum of the edges' counts, and the last time one was seen.
    pub connections: u64,
    pub last_seen: Timestamp,
    pub fix: Fix,
}

/// One denied edge.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeniedEdge {
    #[serde(serialize_with = "serialize_shared_str")]
    pub source: Arc<str>,
    #[serde(serialize_with = "serialize_shared_str")]
    pub destination: Arc<str>,
    #[serde(flatten)]
    pub port: Port,
    pub count: u64,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// A rule the input cannot settle that could allow it after all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undecided: Option<String>,
}

/// The smallest change that allows a group's edges.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Fix {
    /// Rules added to one NetworkPolicy (paths relative to it), and EgressIntents to apply
    /// for destinations known by name.
    Change {
        #[serde(skip_serializing_if = "Option::is_none")]
        policy: Option<PolicyPatch>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        objects: Vec<FixObject>,
    },
    /// No NetworkPolicy rule can allow these edges: what decides them must change.
    None { why: String },
}

/// An object a fix adds: a NetworkPolicy for one workload, or an EgressIntent.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum FixObject {
    Policy(NewPolicy),
    Intent(Value),
}

impl FixObject {
    /// The object as JSON text (a manifest `kubectl apply` and `portcullis` read).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// `metadata.namespace` and `metadata.name`.
    pub fn namespace_and_name(&self) -> (&str, &str) {
        match self {
            FixObject::Policy(p) => (&p.metadata.namespace, &p.metadata.name),
            FixObject::Intent(v) => (
                v["metadata"]["namespace"].as_str().unwrap_or_default(),
                v["metadata"]["name"].as_str().unwrap_or_default(),
            ),
        }
    }

    /// The kind, as written.
    pub fn kind(&self) -> &str {
        match self {
            FixObject::Policy(_) => "NetworkPolicy",
            FixObject::Intent(_) => "EgressIntent",
        }
    }
}

/// A NetworkPolicy a fix writes (typed: a large replay writes tens of thousands of rules, and a
/// typed rule serializes without building a JSON map per selector).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewPolicy {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: NewMetadata,
    pub spec: NewSpec,
}

#[derive(Debug, Clone, Serialize)]
pub struct NewMetadata {
    pub name: String,
    pub namespace: String,
    pub annotations: BTreeMap<&'static str, String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSpec {
    pub pod_selector: MatchLabels,
    pub policy_types: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<RuleOut>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<RuleOut>>,
}

/// A selector by labels (shared: a replay writes the same workload's selector into many rules).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchLabels {
    #[serde(serialize_with = "serialize_shared")]
    pub match_labels: Arc<Labels>,
}

fn serialize_shared<T: Serialize, S: serde::Serializer>(value: &Arc<T>, serializer: S) -> Result<S::Ok, S::Error> {
    value.as_ref().serialize(serializer)
}

fn serialize_shared_str<S: serde::Serializer>(value: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value)
}

/// A NetworkPolicy rule: its peers (`to` or `from`) and ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<PeerOut>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<PeerOut>>,
    pub ports: Vec<PortOut>,
}

/// A NetworkPolicy peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<MatchLabels>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<MatchLabels>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<Cidr>,
}

impl PeerOut {
    /// The pods with these labels in `namespace`, as a policy of `policy_namespace` names them
    /// (a namespace selector only for another namespace).
    pub fn workload(namespace: &str, labels: &Arc<Labels>, policy_namespace: &str) -> PeerOut {
        PeerOut::selecting(labels, namespace != policy_namespace, || namespace_selector(namespace))
    }

    /// The pods `pods` selects, in the namespace `namespace` selects when `other_namespace`.
    fn selecting(pods: &Arc<Labels>, other_namespace: bool, namespace: impl FnOnce() -> Arc<Labels>) -> PeerOut {
        PeerOut {
            pod_selector: Some(MatchLabels { match_labels: pods.clone() }),
            namespace_selector: other_namespace.then(|| MatchLabels { match_labels: namespace() }),
            ip_block: None,
        }
    }

    /// Exactly one address: a /32 or a /128.
    pub fn address(address: std::net::IpAddr) -> PeerOut {
        let bits = if address.is_ipv4() { 32 } else { 128 };
        PeerOut {
            pod_selector: None,
            namespace_selector: None,
            ip_block: Some(Cidr { cidr: format!("{address}/{bits}") }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cidr {
    pub cidr: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortOut {
    pub port: i32,
    pub protocol: crate::model::Protocol,
}

/// A patch to one NetworkPolicy.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPatch {
    /// `namespace/name`.
    pub policy: String,
    pub at: Location,
    pub patch: RulePatch,
    #[serde(skip)]
    pub id: PolicyId,
}

/// The selector of one namespace by its name label.
fn namespace_selector(namespace: &str) -> Arc<Labels> {
    Arc::new([(NAMESPACE_NAME_LABEL.to_owned(), namespace.to_owned())].into())
}

/// Rules appended to a NetworkPolicy: an RFC 6902 patch of `add` operations, typed (a large
/// replay patches tens of thousands of rules, and a rule as a JSON value costs a map per
/// selector). It serializes as the patch; [`RulePatch::to_patch`] gives it to `json_patch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RulePatch(pub Vec<AddRules>);

/// One `add` operation of a [`RulePatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddRules {
    pub op: &'static str,
    pub path: String,
    pub value: RulesValue,
}

/// What an [`AddRules`] adds: one rule appended to a list, or the whole list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum RulesValue {
    One(RuleOut),
    All(Vec<RuleOut>),
}

impl RulePatch {
    /// The same patch as `json_patch` operations (what `fix::apply` applies).
    pub fn to_patch(&self) -> Patch {
        let ops = self
            .0
            .iter()
            .map(|op| {
                let value = serde_json::to_value(&op.value).unwrap_or_default();
                add(&op.path, value)
            })
            .collect();
        Patch(ops)
    }
}

/// One end of an edge as the evaluator sees it, with what its view borrows.
enum End {
    Known(WorkloadId, Labels),
    Recorded { namespace: String, labels: Labels, namespace_labels: Labels, ports: Vec<ContainerPort> },
}

/// The manifests' workloads by `namespace/Kind/name`.
fn workload_index(inventory: &Inventory) -> BTreeMap<String, WorkloadId> {
    (0..inventory.workloads.len())
        .map(|i| {
            let w = inventory.workload(WorkloadId(i));
            (format!("{}/{}/{}", w.namespace, inventory.object(w.object).id.kind, w.name), WorkloadId(i))
        })
        .collect()
}

/// The namespace's labels: the manifests' Namespace object when there is one, else the
/// recorded ones, always with the name label Kubernetes sets.
fn namespace_labels(inventory: &Inventory, peer: &WorkloadPeer) -> Labels {
    if let Some(ns) = inventory.namespace(&peer.namespace).filter(|ns| ns.object.is_some()) {
        return ns.labels.clone();
    }
    let mut labels = peer.namespace_labels.clone().unwrap_or_default();
    labels.insert(NAMESPACE_NAME_LABEL.to_owned(), peer.namespace.clone());
    labels
}

impl End {
    fn new(inventory: &Inventory, index: &BTreeMap<String, WorkloadId>, peer: &WorkloadPeer) -> End {
        let namespace_labels = namespace_labels(inventory, peer);
        match index.get(&peer.key()) {
            Some(&id) => End::Known(id, namespace_labels),
            None => End::Recorded {
                namespace: peer.namespace.clone(),
                labels: peer.labels.clone(),
                namespace_labels,
                ports: peer
                    .ports
                    .iter()
                    .map(|p| ContainerPort { name: p.name.clone(), port: p.port, protocol: p.protocol })
                    .collect(),
            },
        }
    }

    fn view<'a>(&'a self, eval: &Evaluator<'a>) -> PodView<'a> {
        match self {
            End::Known(id, ns) => PodView { namespace_labels: ns, ..eval.pod(*id) },
            End::Recorded { namespace, labels, namespace_labels, ports } => {
                PodView { namespace, labels, namespace_labels, ports, ips: &[], host_network: false, workload: None }
            }
        }
    }
}

/// Every workload end of the log, each once, and each edge's ends by index.
struct Ends<'p> {
    ends: Vec<End>,
    /// Per end: the workload peer it was made from and its stable labels (what selectors name).
    info: Vec<(WorkloadPeer, Arc<Labels>)>,
    /// Per end: how output names it, and the selector of its namespace (built once, shared by
    /// every denied edge and rule that names the end).
    names: Vec<(Arc<str>, Arc<Labels>)>,
    /// Per edge: its source's and destination's end, when a workload.
    edges: Vec<[Option<usize>; 2]>,
    eval: Evaluator<'p>,
}

impl<'p> Ends<'p> {
    fn new(inventory: &'p Inventory, log: &TrafficLog) -> Ends<'p> {
        let workloads = workload_index(inventory);
        let mut ends = Vec::new();
        let mut info = Vec::new();
        let mut names = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut end = |p: &Peer| {
            let Peer::Workload(w) = p else { return None };
            let next = ends.len();
            let i = *index.entry(w.key()).or_insert(next);
            if i == next {
                let end = End::new(inventory, &workloads, w);
                let labels = match &end {
                    End::Known(id, _) => &inventory.workload(*id).labels,
                    End::Recorded { labels, .. } => labels,
                };
                let stable = labels
                    .iter()
                    .filter(|(k, _)| !PER_REVISION_LABELS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                names.push((Arc::from(w.key()), namespace_selector(&w.namespace)));
                info.push((w.clone(), Arc::new(stable)));
                ends.push(end);
            }
            Some(i)
        };
        let edges = log.edges.iter().map(|e| [end(&e.source), end(&e.destination)]).collect();
        Ends { ends, info, names, edges, eval: Evaluator::new(inventory) }
    }

    /// The end's workload and stable labels.
    fn info(&self, end: usize) -> Option<&(WorkloadPeer, Arc<Labels>)> {
        self.info.get(end)
    }

    /// How output names an edge's end: the end's shared name, or the address peer's label.
    fn label(&self, peer: &Peer, end: Option<usize>) -> Arc<str> {
        match end.and_then(|e| self.names.get(e)) {
            Some((name, _)) => name.clone(),
            None => Arc::from(peer.label()),
        }
    }
}

/// The policies that apply to each end, per direction (egress, ingress), computed once.
type ApplicableCache = Vec<[Option<Applicable>; 2]>;

/// The verdict of edge `i`, each direction judged with the policies that apply to its pod.
fn judge<'a>(
    ends: &'a Ends<'_>,
    cache: &mut ApplicableCache,
    i: usize,
    edge: &'a Edge,
) -> crate::semantics::PolicyVerdict {
    let traffic = Traffic { port: edge.port, protocol: edge.protocol };
    let eval = &ends.eval;
    let [from_end, to_end] = ends.edges.get(i).copied().unwrap_or_default();
    let endpoint = |peer: &'a Peer, end: Option<usize>| -> Endpoint<'a> {
        match (peer, end.and_then(|e| ends.ends.get(e))) {
            (Peer::Workload(_), Some(end)) => Endpoint::Pod(end.view(eval)),
            (Peer::Workload(_), None) => Endpoint::UnknownAddress,
            (Peer::Address(AddressPeer { address, name: Some(name) }), _) => Endpoint::Resolved(*address, name),
            (Peer::Address(AddressPeer { address, name: None }), _) => Endpoint::Address(*address),
        }
    };
    let from = endpoint(&edge.source, from_end);
    let to = endpoint(&edge.destination, to_end);
    if cache.len() < ends.ends.len() {
        cache.resize_with(ends.ends.len(), Default::default);
    }
    let mut direction = |end: &Endpoint<'_>, index: Option<usize>, dir: Direction, peer: &Endpoint<'_>| {
        let (Endpoint::Pod(pod), Some(index)) = (end, index) else { return None };
        let slot = &mut cache.get_mut(index)?[usize::from(dir == Direction::Ingress)];
        let applicable = slot.get_or_insert_with(|| eval.applicable(pod, dir));
        Some(eval.judge(pod, dir, applicable, peer, traffic))
    };
    let egress = direction(&from, from_end, Direction::Egress, &to);
    let ingress = direction(&to, to_end, Direction::Ingress, &from);
    let allowed =
        egress.as_ref().is_none_or(DirectionVerdict::allowed) && ingress.as_ref().is_none_or(DirectionVerdict::allowed);
    crate::semantics::PolicyVerdict { allowed, egress, ingress }
}

/// Whether each edge is allowed, as `trace` would answer: the evaluator's verdict for it.
pub fn allowed(project: &Project, log: &TrafficLog) -> Vec<bool> {
    allowed_edges(&project.inventory, log)
}

/// [`allowed`] against an inventory built by the caller (the controller's staged policies).
pub fn allowed_edges(inventory: &Inventory, log: &TrafficLog) -> Vec<bool> {
    let ends = Ends::new(inventory, log);
    let mut cache = ApplicableCache::new();
    log.edges.iter().enumerate().map(|(i, e)| judge(&ends, &mut cache, i, e).allowed).collect()
}

/// What groups denials: the direction and everything [`crate::diff::why_direction`] reads of a
/// denying verdict (so the text is built once per group, not per edge).
fn group_key(direction: Direction, dv: &DirectionVerdict) -> (Direction, String) {
    let decided = dv.decided();
    let calico = match decided {
        Decided::Calico(i) => dv.calico.tiers.get(i).map(|t| t.outcome),
        _ => None,
    };
    (direction, format!("{decided:?}|{:?}|{calico:?}", dv.isolated_by))
}

/// Where a group's rules go: a NetworkPolicy of the manifests, or a new one selecting the
/// isolated workload.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Existing(PolicyId),
    /// A new policy for the workload of this end.
    New(usize),
}

/// What names a peer in a rule: a workload end, or an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PeerKey {
    End(usize),
    Address(std::net::IpAddr),
}

/// Rules gathered for one target: by peer, the peer and its ports.
type Rules = BTreeMap<PeerKey, (PeerOut, Vec<Port>)>;

/// Everything a group's fix gathers.
#[derive(Default)]
struct Gathered {
    /// The written policy rules go to, found once per group (`None`: a new policy per workload).
    existing: Option<Option<PolicyId>>,
    rules: BTreeMap<Target, Rules>,
    /// By source end and name: the intent and its ports.
    intents: BTreeMap<(usize, String), (Value, Vec<Port>)>,
}

/// Replays the log's edges against the project's policies.
pub fn replay(project: &Project, log: &TrafficLog) -> Replay {
    let inv = &project.inventory;
    let ends = Ends::new(inv, log);
    // The edges are judged in contiguous runs, one per thread the project may use, and the runs'
    // groups merged in order: the answer is the same on any number of threads.
    let threads = project.threads().min(log.edges.len() / MIN_EDGES_PER_THREAD).max(1);
    let per = log.edges.len().div_ceil(threads).max(1);
    let runs: Vec<std::ops::Range<usize>> =
        (0..threads).map(|t| (t * per).min(log.edges.len())..((t + 1) * per).min(log.edges.len())).collect();
    let partials = crate::parallel::map(&runs, threads, |run| judge_run(project, &ends, log, run.clone()));
    let mut all = Partial::default();
    for partial in partials {
        all.merge(partial);
    }
    let Partial { groups, denied_edges, denied_connections, undecided_allowed } = all;
    let mut out: Vec<DeniedGroup> = Vec::new();
    for (_, (mut group, gathered)) in groups {
        if let Some(fix) = fix_of(project, &ends, group.direction, gathered) {
            group.fix = fix;
        }
        group.edges.sort_by(|a, b| (&a.source, &a.destination, a.port).cmp(&(&b.source, &b.destination, b.port)));
        out.push(group);
    }
    // Most traffic first: what a rollout would break most.
    out.sort_by(|a, b| b.connections.cmp(&a.connections).then_with(|| a.why.cmp(&b.why)));
    Replay {
        version: SCHEMA_VERSION,
        edges: log.edges.len(),
        denied_edges,
        denied_connections,
        undecided_allowed,
        groups: out,
    }
}

/// Below this many edges per thread, a replay runs on one.
const MIN_EDGES_PER_THREAD: usize = 4096;

/// What judging a run of edges found: its groups (with what their fixes gather) and counts.
#[derive(Default)]
struct Partial {
    groups: BTreeMap<(Direction, String), (DeniedGroup, Gathered)>,
    denied_edges: usize,
    denied_connections: u64,
    undecided_allowed: usize,
}

impl Partial {
    /// Adds a later run's findings (its edges after this run's, as one run would have them).
    fn merge(&mut self, later: Partial) {
        self.denied_edges += later.denied_edges;
        self.denied_connections = self.denied_connections.saturating_add(later.denied_connections);
        self.undecided_allowed += later.undecided_allowed;
        for (key, (group, gathered)) in later.groups {
            match self.groups.entry(key) {
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert((group, gathered));
                }
                std::collections::btree_map::Entry::Occupied(mut o) => {
                    let (mine, my_gathered) = o.get_mut();
                    mine.connections = mine.connections.saturating_add(group.connections);
                    mine.last_seen = mine.last_seen.max(group.last_seen);
                    mine.edges.extend(group.edges);
                    my_gathered.merge(gathered);
                }
            }
        }
    }
}

impl Gathered {
    fn merge(&mut self, later: Gathered) {
        if self.existing.is_none() {
            self.existing = later.existing;
        }
        for (target, rules) in later.rules {
            let mine = self.rules.entry(target).or_default();
            for (key, (peer, ports)) in rules {
                let entry = mine.entry(key).or_insert_with(|| (peer, Vec::new()));
                for port in ports {
                    push_port(entry, port);
                }
            }
        }
        for (key, (intent, ports)) in later.intents {
            let entry = self.intents.entry(key).or_insert_with(|| (intent, Vec::new()));
            for port in ports {
                push_port(entry, port);
            }
        }
    }
}

/// Judges the edges of `run`, grouping the denied ones.
fn judge_run(project: &Project, ends: &Ends<'_>, log: &TrafficLog, run: std::ops::Range<usize>) -> Partial {
    let inv = &project.inventory;
    let mut cache = ApplicableCache::new();
    let mut out = Partial::default();
    for (i, edge) in log.edges.iter().enumerate().skip(run.start).take(run.len()) {
        let verdict = judge(ends, &mut cache, i, edge);
        let sides = [(Direction::Egress, &verdict.egress), (Direction::Ingress, &verdict.ingress)];
        let denying: Vec<(Direction, &DirectionVerdict)> =
            sides.iter().filter_map(|(d, v)| v.as_ref().filter(|v| !v.allowed()).map(|v| (*d, v))).collect();
        let undecided = verdict.undecided().map(|u| u.why().to_owned());
        if denying.is_empty() {
            out.undecided_allowed += usize::from(undecided.is_some());
            continue;
        }
        out.denied_edges += 1;
        out.denied_connections = out.denied_connections.saturating_add(edge.count);
        let port = Port { port: edge.port, protocol: edge.protocol };
        for (direction, dv) in denying {
            let (group, gathered) = out.groups.entry(group_key(direction, dv)).or_insert_with(|| {
                let (why, at) = crate::diff::why_direction(project, dv, direction.key());
                let group = DeniedGroup {
                    direction,
                    decided_by: dv.decided().key(),
                    why,
                    at,
                    object: deciding_object(inv, dv),
                    edges: Vec::new(),
                    connections: 0,
                    last_seen: edge.last_seen,
                    fix: no_fix(dv),
                };
                (group, Gathered::default())
            });
            group.connections = group.connections.saturating_add(edge.count);
            group.last_seen = group.last_seen.max(edge.last_seen);
            let [from_end, to_end] = ends.edges.get(i).copied().unwrap_or_default();
            group.edges.push(DeniedEdge {
                source: ends.label(&edge.source, from_end),
                destination: ends.label(&edge.destination, to_end),
                port,
                count: edge.count,
                first_seen: edge.first_seen,
                last_seen: edge.last_seen,
                undecided: undecided.clone(),
            });
            gather(ends, dv, direction, (edge, from_end, to_end), port, gathered);
        }
    }
    out
}

/// Adds what allows one denied edge in one direction to its group's fix: for a name, an
/// EgressIntent; else a rule, in the target policy.
fn gather(
    ends: &Ends<'_>,
    dv: &DirectionVerdict,
    direction: Direction,
    (edge, from_end, to_end): (&Edge, Option<usize>, Option<usize>),
    port: Port,
    into: &mut Gathered,
) {
    if dv.decided() != Decided::Isolation || dv.isolated_by.is_empty() {
        return;
    }
    let (subject, other, other_end) = match direction {
        Direction::Egress => (from_end, &edge.destination, to_end),
        Direction::Ingress => (to_end, &edge.source, from_end),
    };
    let Some(subject) = subject else { return };
    let named = |end: usize| ends.info(end).is_some_and(|(_, stable)| !stable.is_empty());
    // A selector without labels would name every pod of the namespace: no such rule is written.
    if !named(subject) || other_end.is_some_and(|e| !named(e)) {
        return;
    }
    let Some((subject_peer, stable)) = ends.info(subject) else { return };
    // What each edge adds is keyed by what names it; its JSON is built once per key.
    if let (Direction::Egress, Peer::Address(AddressPeer { name: Some(name), .. })) = (direction, other) {
        let entry = into
            .intents
            .entry((subject, name.clone()))
            .or_insert_with(|| (intent_for(subject_peer, stable, name), Vec::new()));
        push_port(entry, port);
        return;
    }
    let existing = *into.existing.get_or_insert_with(|| target_policy(ends.eval.inventory, dv, direction));
    let target = existing.map_or(Target::New(subject), Target::Existing);
    let key = match (other, other_end) {
        (_, Some(end)) => PeerKey::End(end),
        (Peer::Address(a), _) => PeerKey::Address(a.address),
        (Peer::Workload(_), None) => return,
    };
    let rules = into.rules.entry(target).or_default();
    let entry =
        rules.entry(key).or_insert_with(|| (peer_value(ends, &subject_peer.namespace, other, other_end), Vec::new()));
    push_port(entry, port);
}

/// A group's fix from what its edges gathered (`None`: keep the group's explanation).
fn fix_of(project: &Project, ends: &Ends<'_>, direction: Direction, gathered: Gathered) -> Option<Fix> {
    let inv = &project.inventory;
    let mut policy = None;
    let mut objects = Vec::new();
    for (target, rules) in gathered.rules {
        match target {
            Target::Existing(id) => {
                let p = inv.policy(id);
                let (file, line) = project.place(p.object, "");
                policy = Some(PolicyPatch {
                    policy: format!("{}/{}", p.namespace, p.name),
                    at: Location { file, line },
                    patch: rule_patch(p, direction, rules.into_values()),
                    id,
                });
            }
            Target::New(end) => {
                if let Some((peer, labels)) = ends.info(end) {
                    objects.push(FixObject::Policy(new_policy(
                        &peer.namespace,
                        &peer.workload,
                        labels,
                        direction,
                        rules.into_values(),
                    )));
                }
            }
        }
    }
    for (mut intent, ports) in gathered.intents.into_values() {
        intent["spec"]["egress"][0]["ports"] = ports_value(&ports);
        objects.push(FixObject::Intent(intent));
    }
    (policy.is_some() || !objects.is_empty()).then_some(Fix::Change { policy, objects })
}

fn push_port<T>(entry: &mut (T, Vec<Port>), port: Port) {
    if !entry.1.contains(&port) {
        entry.1.push(port);
        entry.1.sort();
    }
}

/// The object the denial is written in.
fn deciding_object(inv: &Inventory, d: &DirectionVerdict) -> Option<ObjectId> {
    match d.decided() {
        Decided::Admin(t) | Decided::Baseline(t) => Some(inv.cluster_policy(t.policy).object),
        Decided::CiliumDeny(r) => Some(inv.cilium_rule(r.rule).object),
        Decided::Calico(i) => d.calico.tiers.get(i).map(|t| match t.outcome {
            crate::semantics::calico::TierOutcome::Rule(r, _) => inv.calico_policy(r.policy).object,
            crate::semantics::calico::TierOutcome::EndOfTier { policy, .. } => inv.calico_policy(policy).object,
            crate::semantics::calico::TierOutcome::NetworkPolicy(r) => inv.policy(r.policy).object,
        }),
        Decided::Isolation => match d.isolated_by.first() {
            Some(p) => Some(inv.policy(*p).object),
            None => d.cilium.isolated_by.first().map(|r| inv.cilium_rule(*r).object),
        },
        Decided::Default => None,
    }
}

/// Why no NetworkPolicy rule can allow a denial, or a placeholder the edges fill in.
fn no_fix(d: &DirectionVerdict) -> Fix {
    let why = match d.decided() {
        Decided::Admin(_) => "an Admin-tier ClusterNetworkPolicy decides before any NetworkPolicy: change its rule",
        Decided::CiliumDeny(_) => "a Cilium deny rule wins over every allow: change the deny rule",
        Decided::Baseline(_) => {
            "a Baseline-tier rule denies: a NetworkPolicy that selects the pod and allows the edge overrides it"
        }
        Decided::Calico(_) => "a Calico tier decides: change its rule or its tier's default action",
        Decided::Isolation if d.isolated_by.is_empty() => {
            "only a Cilium policy isolates the pod: add the rule to it (portcullis writes NetworkPolicy rules)"
        }
        Decided::Isolation => {
            "the pods have no labels a selector could name (only per-revision ones): label the workload, then allow it"
        }
        Decided::Default => "nothing denies",
    };
    Fix::None { why: why.to_owned() }
}

/// The NetworkPolicy a rule is added to: one written in the manifests (not generated) that
/// isolates the pod and whose `podSelector` names pods (a rule added to a namespace-wide
/// policy would allow the edge for every pod of the namespace), preferring one that already
/// has rules in the direction, then by name. `None`: a new policy for the workload.
fn target_policy(inv: &Inventory, d: &DirectionVerdict, direction: Direction) -> Option<PolicyId> {
    d.isolated_by
        .iter()
        .copied()
        .filter(|p| {
            let policy = inv.policy(*p);
            let selects_all = policy.spec.pod_selector.as_ref().is_none_or(|s| {
                s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                    && s.match_expressions.as_ref().is_none_or(|m| m.is_empty())
            });
            !policy.generated && !selects_all
        })
        .min_by_key(|p| {
            let policy = inv.policy(*p);
            let rules = match direction {
                Direction::Egress => policy.spec.egress.as_ref().is_some_and(|r| !r.is_empty()),
                Direction::Ingress => policy.spec.ingress.as_ref().is_some_and(|r| !r.is_empty()),
            };
            (!rules, policy.namespace.as_str(), policy.name.as_str())
        })
}

/// A NetworkPolicy peer that admits exactly the edge's other end (from a policy of
/// `policy_namespace`).
fn peer_value(ends: &Ends<'_>, policy_namespace: &str, peer: &Peer, end: Option<usize>) -> PeerOut {
    match (peer, end.and_then(|e| ends.info(e))) {
        (Peer::Workload(w), Some((_, stable))) => PeerOut::selecting(stable, w.namespace != policy_namespace, || {
            end.and_then(|e| ends.names.get(e)).map_or_else(|| namespace_selector(&w.namespace), |(_, ns)| ns.clone())
        }),
        (Peer::Address(AddressPeer { address, .. }), _) => PeerOut::address(*address),
        (Peer::Workload(_), None) => PeerOut { pod_selector: None, namespace_selector: None, ip_block: None },
    }
}

fn ports_value(ports: &[Port]) -> Value {
    Value::Array(ports.iter().map(|p| json!({"port": p.port, "protocol": p.protocol.as_str()})).collect())
}

/// One rule per peer, with its ports.
pub(crate) fn rule_values(direction: Direction, added: impl Iterator<Item = (PeerOut, Vec<Port>)>) -> Vec<RuleOut> {
    added
        .map(|(peer, ports)| {
            let ports = ports.iter().map(|p| PortOut { port: p.port, protocol: p.protocol }).collect();
            match direction {
                Direction::Egress => RuleOut { to: Some(vec![peer]), from: None, ports },
                Direction::Ingress => RuleOut { to: None, from: Some(vec![peer]), ports },
            }
        })
        .collect()
}

/// A NetworkPolicy selecting the workload's pods with the rules.
fn new_policy(
    namespace: &str,
    workload: &str,
    labels: &Arc<Labels>,
    direction: Direction,
    added: impl Iterator<Item = (PeerOut, Vec<Port>)>,
) -> NewPolicy {
    let (_, name) = workload.split_once('/').unwrap_or(("", workload));
    let mut policy_name = format!("allow-observed-{}-{name}", direction.key());
    policy_name.truncate(253);
    let rules = Some(rule_values(direction, added));
    let (types, ingress, egress) = match direction {
        Direction::Egress => ("Egress", None, rules),
        Direction::Ingress => ("Ingress", rules, None),
    };
    NewPolicy {
        api_version: "networking.k8s.io/v1",
        kind: "NetworkPolicy",
        metadata: NewMetadata {
            name: policy_name.trim_end_matches(['-', '.']).to_owned(),
            namespace: namespace.to_owned(),
            annotations: [(
                crate::fix::GENERATED_ANNOTATION,
                format!("{} traffic observed for {workload}, written by portcullis replay", direction.key()),
            )]
            .into(),
        },
        spec: NewSpec {
            pod_selector: MatchLabels { match_labels: labels.clone() },
            policy_types: [types],
            ingress,
            egress,
        },
    }
}

/// The patch appending one rule per peer to the policy's rules of `direction`.
fn rule_patch(policy: &Policy, direction: Direction, added: impl Iterator<Item = (PeerOut, Vec<Port>)>) -> RulePatch {
    let rules = rule_values(direction, added);
    let existing = match direction {
        Direction::Egress => policy.spec.egress.is_some(),
        Direction::Ingress => policy.spec.ingress.is_some(),
    };
    let key = direction.key();
    let op = |path: String, value| AddRules { op: "add", path, value };
    let ops = if existing {
        let append = format!("/spec/{key}/-");
        rules.into_iter().map(|r| op(append.clone(), RulesValue::One(r))).collect()
    } else {
        vec![op(format!("/spec/{key}"), RulesValue::All(rules))]
    };
    RulePatch(ops)
}

fn add(path: &str, value: Value) -> PatchOperation {
    // Paths here are built from constants, so they are always valid pointers.
    PatchOperation::Add(AddOperation { path: path.parse().unwrap_or_default(), value })
}

/// An EgressIntent letting the source's pods reach the name (ports filled in by the caller).
fn intent_for(source: &WorkloadPeer, labels: &Labels, name: &str) -> Value {
    let (_, workload) = source.kind_and_name();
    // Short enough for the policy the controller renders from it to be named after it too.
    let intent_name = crate::egress::map::sanitize(&format!("{workload}-{name}"));
    json!({
        "apiVersion": crate::egress::API_VERSION,
        "kind": "EgressIntent",
        "metadata": {"name": intent_name, "namespace": source.namespace},
        "spec": {
            "podSelector": {"matchLabels": labels},
            "egress": [{"fqdn": name, "ports": []}],
        },
    })
}
