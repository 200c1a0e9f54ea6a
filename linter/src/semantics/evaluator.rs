//! The one evaluator: "may A send to B on port/protocol, and which policy rules decide it?"
//!
//! Follows the NetworkPolicy reference (networking.k8s.io/v1):
//! - a pod is isolated for a direction when any policy of its namespace selects it and has that
//!   direction in its (defaulted) `policyTypes`;
//! - an isolated pod's allowed traffic is the union of all rules of those policies;
//! - traffic between two pods needs both the sender's egress and the receiver's ingress;
//! - a rule with no `to`/`from` matches every peer, a rule with no `ports` every port;
//! - a peer with `namespaceSelector` and `podSelector` is their AND; without
//!   `namespaceSelector` it means the policy's own namespace;
//! - ports default to TCP; named ports resolve against the destination pod's containers;
//!   `endPort` makes an inclusive range;
//! - NetworkPolicy does not apply to hostNetwork pods.
//!
//! Around it, the ClusterNetworkPolicy tiers ([`super::cluster`]): the Admin tier decides
//! first, NetworkPolicy next for the pods it isolates, the Baseline tier last
//! ([`DirectionVerdict::allowed`] is the one place that combines them).

use std::net::IpAddr;

use k8s_openapi::api::networking::v1::{
    NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::calico::{Band, CalicoUndecided, CalicoVerdict, KubernetesPart, TierOutcome};
use super::cilium::{CiliumRuleRef, CiliumVerdict, Undecided};
use super::cluster::TierDecision;
use super::ip_block::ParsedIpBlock;
use super::selector::selector_matches;
use crate::model::cilium_policy::CiliumRuleId;
use crate::model::cluster_policy::{Action, Tier};
use crate::model::{ContainerPort, Inventory, Labels, Policy, PolicyId, Protocol, Workload, WorkloadId};

/// The traffic direction a policy rule governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    /// The `spec` key of the direction's rules: `ingress` or `egress`.
    pub fn key(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// A pod as the evaluator sees it.
#[derive(Debug, Clone, Copy)]
pub struct PodView<'a> {
    pub namespace: &'a str,
    pub labels: &'a Labels,
    pub namespace_labels: &'a Labels,
    pub ports: &'a [ContainerPort],
    /// Known addresses (`status.podIPs`); empty when unknown.
    pub ips: &'a [IpAddr],
    pub host_network: bool,
    pub workload: Option<WorkloadId>,
}

/// One end of a connection.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint<'a> {
    Pod(PodView<'a>),
    /// An address outside the cluster's pods.
    Address(IpAddr),
    /// An external destination whose address is not known.
    UnknownAddress,
    /// An external destination known by its DNS name (its address is not known offline).
    Name(&'a str),
    /// An external address the pod was given in a DNS answer for the name (an observed
    /// connection): rules written with addresses match the address, rules written with names
    /// match the name, as in the cluster, where name rules are enforced through the addresses
    /// the pod's DNS answers gave.
    Resolved(IpAddr, &'a str),
}

/// Destination port and protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    pub port: i32,
    pub protocol: Protocol,
}

impl Traffic {
    /// Parses `443`, `53/UDP` (protocol case-insensitive, TCP by default).
    pub fn parse(raw: &str) -> Result<Traffic, String> {
        let (port, proto) = raw.split_once('/').unwrap_or((raw, "TCP"));
        let port: i32 =
            port.parse().map_err(|_| format!("port {raw:?}: expected a number, optionally /TCP, /UDP or /SCTP"))?;
        if !(1..=65535).contains(&port) {
            return Err(format!("port {port} is outside 1-65535"));
        }
        let protocol = Protocol::parse(&proto.to_ascii_uppercase())
            .ok_or_else(|| format!("port {raw:?}: protocol must be TCP, UDP or SCTP"))?;
        Ok(Traffic { port, protocol })
    }
}

/// A rule of a policy: `spec.<direction>[index]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleRef {
    pub policy: PolicyId,
    pub direction: Direction,
    pub index: usize,
}

/// How one direction judged the traffic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectionVerdict {
    /// Whether NetworkPolicy isolates the pod for this direction.
    pub isolated: bool,
    /// Policies that select the pod for this direction.
    pub isolated_by: Vec<PolicyId>,
    /// Rules that allow the traffic.
    pub allowed_by: Vec<RuleRef>,
    /// The Admin-tier ClusterNetworkPolicy rule that matched first, if any.
    pub admin: Option<TierDecision>,
    /// The Baseline-tier ClusterNetworkPolicy rule that matched first, if any.
    pub baseline: Option<TierDecision>,
    /// What Cilium's policies say (empty without any).
    pub cilium: CiliumVerdict,
    /// What Calico's tiers say (empty without Calico policies for the pod).
    pub calico: CalicoVerdict,
}

/// The policies of every layer that apply to one pod in one direction
/// ([`Evaluator::applicable`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applicable {
    /// NetworkPolicies isolating the pod.
    pub isolated_by: Vec<PolicyId>,
    /// Admin-tier ClusterNetworkPolicies selecting the pod, in evaluation order.
    pub admin: Vec<crate::model::ClusterPolicyId>,
    /// Baseline-tier ClusterNetworkPolicies selecting the pod, in evaluation order.
    pub baseline: Vec<crate::model::ClusterPolicyId>,
    /// Cilium rules selecting the pod (either direction).
    pub cilium: Vec<CiliumRuleId>,
    /// Calico policies applying to the pod in this direction.
    pub calico: Vec<crate::model::calico_policy::CalicoPolicyId>,
}

impl Applicable {
    /// Whether no policy of any layer applies: every peer and port is then judged alike
    /// (not isolated, allowed by default).
    pub fn is_empty(&self) -> bool {
        self.isolated_by.is_empty()
            && self.admin.is_empty()
            && self.baseline.is_empty()
            && self.cilium.is_empty()
            && self.calico.is_empty()
    }
}

/// A rule the input cannot settle that could turn a verdict around.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerUndecided {
    Cilium(Undecided),
    Calico(CalicoUndecided),
}

impl LayerUndecided {
    /// Why the rule cannot be settled.
    pub fn why(&self) -> &'static str {
        match self {
            LayerUndecided::Cilium(u) => u.why,
            LayerUndecided::Calico(u) => u.why,
        }
    }
}

/// Which layer decided a direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decided {
    /// An Admin-tier rule's Accept or Deny.
    Admin(TierDecision),
    /// A Cilium deny rule, which wins over every allow of NetworkPolicy and Cilium.
    CiliumDeny(CiliumRuleRef),
    /// The pod is isolated (by NetworkPolicy, or by a Cilium policy's default deny): allowed
    /// when an allow rule of either matches.
    Isolation,
    /// A Baseline-tier rule's Accept or Deny.
    Baseline(TierDecision),
    /// A Calico tier's outcome: the index of the tier in [`DirectionVerdict::calico`]'s tiers.
    Calico(usize),
    /// Nothing decided: Kubernetes allows.
    Default,
}

impl Decided {
    /// The layer's name in JSON output (`trace`'s `decidedBy`, `replay`'s groups).
    pub fn key(&self) -> &'static str {
        match self {
            Decided::Admin(_) => "admin",
            Decided::CiliumDeny(_) => "ciliumDeny",
            Decided::Isolation => "isolation",
            Decided::Baseline(_) => "baseline",
            Decided::Calico(_) => "calico",
            Decided::Default => "default",
        }
    }
}

impl DirectionVerdict {
    /// The combined verdict, in the order the ClusterNetworkPolicy API defines: an Admin Accept
    /// or Deny is final; then a Cilium deny rule (which Cilium puts above every allow); then,
    /// for a pod NetworkPolicy or a Cilium policy isolates, any allow rule of either; then a
    /// Baseline Accept or Deny; then the default, allow. Pass moves on to the next layer.
    /// Calico's tiers fall in by their order (see [`DirectionVerdict::decided`]).
    pub fn allowed(&self) -> bool {
        match self.decided() {
            Decided::Admin(d) | Decided::Baseline(d) => d.action == Action::Accept,
            Decided::CiliumDeny(_) => false,
            Decided::Isolation => !self.allowed_by.is_empty() || !self.cilium.allowed_by.is_empty(),
            Decided::Calico(i) => self.calico.tiers.get(i).and_then(|t| t.outcome.verdict()).unwrap_or(false),
            Decided::Default => true,
        }
    }

    /// Whether NetworkPolicy, a Cilium policy or a Calico tier that denies by default isolates
    /// the pod in this direction.
    pub fn is_isolated(&self) -> bool {
        self.isolated
            || !self.cilium.isolated_by.is_empty()
            || self.calico.tiers.iter().any(|t| !matches!(t.outcome, TierOutcome::EndOfTier { pass: true, .. }))
    }

    /// A rule the input cannot settle that could turn [`DirectionVerdict::allowed`] around: an
    /// undecidable deny when it allows, an undecidable allow when isolation denies; for Calico,
    /// an undecidable rule met before the deciding tier whose action differs from the verdict.
    pub fn undecided(&self) -> Option<LayerUndecided> {
        let decided = self.decided();
        let allowed = self.allowed();
        let last_tier = match decided {
            Decided::Calico(i) => Some(i),
            _ => None,
        };
        let calico = self.calico.undecided.iter().find(|u| {
            let before = match last_tier {
                Some(i) => u.tier <= i,
                None => match decided {
                    Decided::Admin(_) | Decided::CiliumDeny(_) => {
                        self.calico.tiers.get(u.tier).is_some_and(|t| super::calico::band(t) == Band::BeforeAdmin)
                    }
                    _ => true,
                },
            };
            let differs = match u.action {
                crate::model::calico_policy::CalicoAction::Allow => !allowed,
                crate::model::calico_policy::CalicoAction::Deny => allowed,
                _ => true,
            };
            before && differs
        });
        if let Some(u) = calico {
            return Some(LayerUndecided::Calico(*u));
        }
        let cilium = match decided {
            Decided::Admin(_) | Decided::CiliumDeny(_) | Decided::Calico(_) => None,
            _ if allowed => self.cilium.undecided.iter().find(|u| u.rule.deny).copied(),
            Decided::Isolation => self.cilium.undecided.iter().find(|u| !u.rule.deny).copied(),
            _ => None,
        };
        cilium.map(LayerUndecided::Cilium)
    }

    /// The layer whose answer [`DirectionVerdict::allowed`] gives. The order, from the
    /// ClusterNetworkPolicy API and Calico's tier orders: Calico tiers before the Admin tier
    /// (order < 1,000); the Admin tier; a Cilium deny; Calico tiers before the default tier;
    /// the default tier (Calico's policies there and the NetworkPolicies at order 1,000) or,
    /// without Calico policies there, isolation by NetworkPolicy or Cilium; Calico tiers
    /// before the Baseline tier (order < 10,000,000); the Baseline tier; the remaining Calico
    /// tiers; the default, allow. A Pass, or a tier ending in Pass, moves on.
    pub fn decided(&self) -> Decided {
        let calico = |band: Band| {
            self.calico
                .tiers
                .iter()
                .enumerate()
                .find(|(_, t)| super::calico::band(t) == band && t.outcome.verdict().is_some())
                .map(|(i, _)| Decided::Calico(i))
        };
        if let Some(d) = calico(Band::BeforeAdmin) {
            return d;
        }
        if let Some(d) = self.admin.filter(|d| d.action != Action::Pass) {
            return Decided::Admin(d);
        }
        if let Some(rule) = self.cilium.denied_by {
            return Decided::CiliumDeny(rule);
        }
        if let Some(d) = calico(Band::BeforeDefault) {
            return d;
        }
        if self.calico.has_default_tier() {
            if let Some(d) = calico(Band::Default) {
                return d;
            }
        } else if self.isolated || !self.cilium.isolated_by.is_empty() {
            return Decided::Isolation;
        }
        if let Some(d) = calico(Band::BeforeBaseline) {
            return d;
        }
        if let Some(d) = self.baseline.filter(|d| d.action != Action::Pass) {
            return Decided::Baseline(d);
        }
        calico(Band::AfterBaseline).unwrap_or(Decided::Default)
    }
}

/// The answer for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVerdict {
    pub allowed: bool,
    /// The sender's egress (`None` when the sender is not a pod NetworkPolicy applies to).
    pub egress: Option<DirectionVerdict>,
    /// The receiver's ingress (`None` when the receiver is not a pod NetworkPolicy applies to).
    pub ingress: Option<DirectionVerdict>,
}

impl PolicyVerdict {
    /// A rule the input cannot settle that could turn the verdict around (see
    /// [`DirectionVerdict::undecided`]): for a denied connection, one in a direction that
    /// denies (the other must allow for it to matter); for an allowed one, in either.
    pub fn undecided(&self) -> Option<LayerUndecided> {
        let sides = [self.egress.as_ref(), self.ingress.as_ref()];
        let denying: Vec<&DirectionVerdict> = sides.iter().flatten().copied().filter(|d| !d.allowed()).collect();
        match denying.as_slice() {
            [] => sides.iter().flatten().find_map(|d| d.undecided()),
            [only] => only.undecided(),
            _ => None,
        }
    }
}

/// Evaluates traffic over an inventory. Cheap to build; borrows the inventory.
#[derive(Debug, Clone, Copy)]
pub struct Evaluator<'a> {
    pub inventory: &'a Inventory,
}

impl<'a> Evaluator<'a> {
    pub fn new(inventory: &'a Inventory) -> Evaluator<'a> {
        Evaluator { inventory }
    }

    /// The pod view of a workload.
    pub fn pod(&self, id: WorkloadId) -> PodView<'a> {
        let w: &'a Workload = self.inventory.workload(id);
        PodView {
            namespace: &w.namespace,
            labels: &w.labels,
            namespace_labels: self.namespace_labels(&w.namespace),
            ports: &w.ports,
            ips: &w.pod_ips,
            host_network: w.host_network,
            workload: Some(id),
        }
    }

    /// Labels of a namespace (`kubernetes.io/metadata.name` at least).
    pub fn namespace_labels(&self, namespace: &str) -> &'a Labels {
        static EMPTY: std::sync::OnceLock<Labels> = std::sync::OnceLock::new();
        match self.inventory.namespace(namespace) {
            Some(ns) => &ns.labels,
            None => EMPTY.get_or_init(Labels::new),
        }
    }

    /// Policies of the pod's namespace that select it for `direction`.
    pub fn isolating_policies(&self, pod: &PodView<'_>, direction: Direction) -> Vec<PolicyId> {
        if pod.host_network {
            return Vec::new();
        }
        self.inventory
            .policies_in(pod.namespace)
            .filter(|(_, p)| applies(p, direction) && policy_selects(p, pod.labels))
            .map(|(id, _)| id)
            .collect()
    }

    /// A policy of the namespace with an empty `podSelector` that isolates `direction`: the
    /// namespace's default-deny (or default-allow-list) for that direction.
    pub fn default_deny_policy(&self, namespace: &str, direction: Direction) -> Option<PolicyId> {
        self.inventory
            .policies_in(namespace)
            .find(|(_, p)| applies(p, direction) && super::selector::selector_is_empty(p.spec.pod_selector.as_ref()))
            .map(|(id, _)| id)
    }

    /// A ClusterNetworkPolicy that is the namespace's default-deny for `direction`
    /// ([`super::cluster::namespace_default_deny`]).
    pub fn cluster_default_deny(&self, namespace: &str, direction: Direction) -> Option<crate::model::ClusterPolicyId> {
        super::cluster::namespace_default_deny(self.inventory, self.namespace_labels(namespace), direction)
    }

    /// A Calico policy that denies every pod of the namespace by default for `direction`
    /// ([`super::calico::namespace_default_deny`]).
    pub fn calico_default_deny(
        &self,
        namespace: &str,
        direction: Direction,
    ) -> Option<crate::model::calico_policy::CalicoPolicyId> {
        super::calico::namespace_default_deny(self.inventory, namespace, direction)
    }

    /// A Cilium rule that puts every pod of the namespace in default deny for `direction`
    /// ([`super::cilium::namespace_default_deny`]).
    pub fn cilium_default_deny(&self, namespace: &str, direction: Direction) -> Option<CiliumRuleId> {
        super::cilium::namespace_default_deny(self.inventory, namespace, direction)
    }

    /// Whether the namespace has a default deny for `direction` from any layer: a NetworkPolicy
    /// with an empty `podSelector`, a ClusterNetworkPolicy that denies the whole namespace
    /// everything (either tier), a Cilium policy that puts every pod of it in default deny, or a
    /// Calico policy that does (its tier's default deny). PC001/PC002 and the webhook's review of
    /// deletions ask this one question.
    pub fn has_default_deny(&self, namespace: &str, direction: Direction) -> bool {
        self.default_deny_policy(namespace, direction).is_some()
            || self.cluster_default_deny(namespace, direction).is_some()
            || self.cilium_default_deny(namespace, direction).is_some()
            || self.calico_default_deny(namespace, direction).is_some()
    }

    /// Judges `from` → `to` on `traffic`.
    pub fn evaluate(&self, from: &Endpoint<'_>, to: &Endpoint<'_>, traffic: Traffic) -> PolicyVerdict {
        let egress = match from {
            Endpoint::Pod(pod) if !pod.host_network => Some(self.direction(pod, Direction::Egress, to, traffic)),
            _ => None,
        };
        let ingress = match to {
            Endpoint::Pod(pod) if !pod.host_network => Some(self.direction(pod, Direction::Ingress, from, traffic)),
            _ => None,
        };
        let allowed = egress.as_ref().is_none_or(DirectionVerdict::allowed)
            && ingress.as_ref().is_none_or(DirectionVerdict::allowed);
        PolicyVerdict { allowed, egress, ingress }
    }

    /// The policies of every layer that apply to `pod` in `direction`, to judge many peers or
    /// ports of one pod with [`Evaluator::judge`].
    pub fn applicable(&self, pod: &PodView<'_>, direction: Direction) -> Applicable {
        let candidates = super::cluster::NamespaceCandidates::new(self.inventory, pod.namespace_labels);
        self.applicable_among(pod, direction, &candidates)
    }

    /// [`Evaluator::applicable`] with the ClusterNetworkPolicies that can select pods of the
    /// pod's namespace already known (shared by the workloads of a namespace).
    pub fn applicable_among(
        &self,
        pod: &PodView<'_>,
        direction: Direction,
        candidates: &super::cluster::NamespaceCandidates<'_>,
    ) -> Applicable {
        Applicable {
            isolated_by: self.isolating_policies(pod, direction),
            admin: candidates.applicable(Tier::Admin, pod),
            baseline: candidates.applicable(Tier::Baseline, pod),
            cilium: candidates.cilium(self.inventory, pod),
            calico: candidates.calico(self.inventory, pod, direction),
        }
    }

    /// Judges one direction: `pod`'s egress towards `peer`, or `pod`'s ingress from `peer`.
    pub fn direction(
        &self,
        pod: &PodView<'_>,
        direction: Direction,
        peer: &Endpoint<'_>,
        traffic: Traffic,
    ) -> DirectionVerdict {
        self.judge(pod, direction, &self.applicable(pod, direction), peer, traffic)
    }

    /// [`Evaluator::direction`] with the policies that apply to the pod already known (from
    /// [`Evaluator::applicable`]), for judging many peers or ports of one pod.
    pub fn judge(
        &self,
        pod: &PodView<'_>,
        direction: Direction,
        applicable: &Applicable,
        peer: &Endpoint<'_>,
        traffic: Traffic,
    ) -> DirectionVerdict {
        let allowed_by = self.allowing_rules(pod, direction, &applicable.isolated_by, peer, traffic);
        let tier = |tier, policies: &[crate::model::ClusterPolicyId]| {
            super::cluster::decide(self.inventory, tier, policies, pod, direction, peer, traffic)
        };
        let calico = super::calico::judge(
            self.inventory,
            &applicable.calico,
            KubernetesPart { isolated_by: &applicable.isolated_by, allowed_by: &allowed_by },
            pod,
            direction,
            peer,
            traffic,
        );
        DirectionVerdict {
            isolated: !applicable.isolated_by.is_empty(),
            isolated_by: applicable.isolated_by.clone(),
            allowed_by,
            admin: tier(Tier::Admin, &applicable.admin),
            baseline: tier(Tier::Baseline, &applicable.baseline),
            cilium: super::cilium::judge(self.inventory, &applicable.cilium, pod, direction, peer, traffic),
            calico,
        }
    }

    /// The rules of the policies `isolated_by` (those isolating `pod` for `direction`, from
    /// [`Evaluator::isolating_policies`]) that allow `peer` on `traffic`: the heart of
    /// [`Evaluator::direction`], for judging many peers or ports of one pod.
    pub fn allowing_rules(
        &self,
        pod: &PodView<'_>,
        direction: Direction,
        isolated_by: &[PolicyId],
        peer: &Endpoint<'_>,
        traffic: Traffic,
    ) -> Vec<RuleRef> {
        let mut allowed_by = Vec::new();
        let destination_ports = destination_ports(pod, direction, peer);
        for &pid in isolated_by {
            let policy = self.inventory.policy(pid);
            for (index, (peers, ports)) in rules(policy, direction).enumerate() {
                if ports_match(ports, destination_ports, traffic) && peers_match(peers, &policy.namespace, peer) {
                    allowed_by.push(RuleRef { policy: pid, direction, index });
                }
            }
            // A generated policy's names: in the cluster, their addresses (`Policy::names`).
            if let (Direction::Egress, Endpoint::Name(name) | Endpoint::Resolved(_, name)) = (direction, peer)
                && policy.types.egress
            {
                let written = policy.spec.egress.as_ref().map_or(0, Vec::len);
                for (k, rule) in policy.names.iter().enumerate() {
                    if rule.admits(name, traffic.port, traffic.protocol) {
                        allowed_by.push(RuleRef { policy: pid, direction, index: written + k });
                    }
                }
            }
        }
        allowed_by
    }
}

/// The container ports named ports resolve against: the destination's, which is the peer for
/// egress and the pod itself for ingress (none for a destination that is not a pod).
pub fn destination_ports<'p>(pod: &PodView<'p>, direction: Direction, peer: &Endpoint<'p>) -> &'p [ContainerPort] {
    match (direction, peer) {
        (Direction::Egress, Endpoint::Pod(p)) => p.ports,
        (Direction::Egress, _) => &[],
        (Direction::Ingress, _) => pod.ports,
    }
}

/// Whether the destination declares a container port named `name` with the traffic's port and
/// protocol (NetworkPolicy's named ports and ClusterNetworkPolicy's `destinationNamedPort`).
pub fn named_port_matches(destination_ports: &[ContainerPort], name: &str, traffic: Traffic) -> bool {
    destination_ports
        .iter()
        .any(|c| c.name.as_deref() == Some(name) && c.protocol == traffic.protocol && c.port == traffic.port)
}

/// Whether the policy governs `direction` (after `policyTypes` defaulting).
pub fn applies(policy: &Policy, direction: Direction) -> bool {
    match direction {
        Direction::Ingress => policy.types.ingress,
        Direction::Egress => policy.types.egress,
    }
}

/// Whether the policy's `podSelector` selects pods with these labels (absent = empty = all).
pub fn policy_selects(policy: &Policy, labels: &Labels) -> bool {
    policy.spec.pod_selector.as_ref().is_none_or(|s| selector_matches(s, labels))
}

/// One rule's peer or port list, with where it is: `spec.<key>[rule].<field>`.
#[derive(Debug, Clone, Copy)]
pub struct RuleList<'p, T> {
    pub direction: Direction,
    /// Index of the rule in its direction's list.
    pub rule: usize,
    pub items: &'p [T],
}

impl<T> RuleList<'_, T> {
    /// `ingress` or `egress`.
    pub fn key(&self) -> &'static str {
        self.direction.key()
    }

    /// Pointer (relative to the object) of item `index` of a peer list.
    pub fn peer_pointer(&self, index: usize) -> String {
        let field = if self.direction == Direction::Ingress { "from" } else { "to" };
        format!("/spec/{}/{}/{field}/{index}", self.key(), self.rule)
    }

    /// Pointer (relative to the object) of item `index` of a port list.
    pub fn port_pointer(&self, index: usize) -> String {
        format!("/spec/{}/{}/ports/{index}", self.key(), self.rule)
    }
}

/// Every rule's peers (`from`/`to`), ingress then egress, whether or not `policyTypes` governs
/// the direction (validation rules look at everything written).
pub fn peer_lists(policy: &Policy) -> impl Iterator<Item = RuleList<'_, NetworkPolicyPeer>> {
    rule_lists(policy, |r| r.from.as_deref(), |r| r.to.as_deref())
}

/// Every rule's ports, ingress then egress, whether or not `policyTypes` governs the direction.
pub fn port_lists(policy: &Policy) -> impl Iterator<Item = RuleList<'_, NetworkPolicyPort>> {
    rule_lists(policy, |r| r.ports.as_deref(), |r| r.ports.as_deref())
}

fn rule_lists<'p, T: 'p>(
    policy: &'p Policy,
    ingress: impl Fn(&'p NetworkPolicyIngressRule) -> Option<&'p [T]> + 'p,
    egress: impl Fn(&'p NetworkPolicyEgressRule) -> Option<&'p [T]> + 'p,
) -> impl Iterator<Item = RuleList<'p, T>> {
    let ingress =
        policy.spec.ingress.iter().flatten().map(ingress).enumerate().map(|(rule, p)| (Direction::Ingress, rule, p));
    let egress =
        policy.spec.egress.iter().flatten().map(egress).enumerate().map(|(rule, p)| (Direction::Egress, rule, p));
    ingress.chain(egress).map(|(direction, rule, items)| RuleList { direction, rule, items: items.unwrap_or_default() })
}

type RuleParts<'p> = (Option<&'p [NetworkPolicyPeer]>, Option<&'p [NetworkPolicyPort]>);

/// The rules of one direction as (peers, ports). Rules of a direction the policy does not
/// govern are ignored by Kubernetes, and so yield nothing here.
pub fn rules(policy: &Policy, direction: Direction) -> impl Iterator<Item = RuleParts<'_>> + '_ {
    let governed = applies(policy, direction);
    let ingress = policy.spec.ingress.as_ref().filter(|_| governed && direction == Direction::Ingress);
    let egress = policy.spec.egress.as_ref().filter(|_| governed && direction == Direction::Egress);
    let ingress = ingress.into_iter().flatten().map(|r| (r.from.as_deref(), r.ports.as_deref()));
    let egress = egress.into_iter().flatten().map(|r| (r.to.as_deref(), r.ports.as_deref()));
    ingress.chain(egress)
}

/// Whether a rule's peer list admits `peer`. Absent or empty lists admit everything.
pub fn peers_match(peers: Option<&[NetworkPolicyPeer]>, policy_namespace: &str, peer: &Endpoint<'_>) -> bool {
    match peers {
        None | Some([]) => true,
        Some(list) => list.iter().any(|p| peer_matches(p, policy_namespace, peer)),
    }
}

/// Whether one peer admits `endpoint`.
pub fn peer_matches(peer: &NetworkPolicyPeer, policy_namespace: &str, endpoint: &Endpoint<'_>) -> bool {
    if let Some(block) = &peer.ip_block {
        let Ok(block) = ParsedIpBlock::parse(block) else { return false };
        return match endpoint {
            Endpoint::Address(ip) | Endpoint::Resolved(ip, _) => block.contains(*ip),
            // A pod matches by its known addresses; with none known, only a block that covers a
            // whole address family certainly contains it.
            Endpoint::Pod(pod) if !pod.ips.is_empty() => pod.ips.iter().any(|ip| block.contains(*ip)),
            Endpoint::Pod(_) | Endpoint::UnknownAddress | Endpoint::Name(_) => block.is_whole_family(),
        };
    }
    let Endpoint::Pod(pod) = endpoint else { return false };
    if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
        // The API server rejects a peer with nothing set.
        return false;
    }
    let namespace_ok = match &peer.namespace_selector {
        Some(sel) => selector_matches(sel, pod.namespace_labels),
        None => pod.namespace == policy_namespace,
    };
    let pod_ok = peer.pod_selector.as_ref().is_none_or(|sel| selector_matches(sel, pod.labels));
    namespace_ok && pod_ok
}

/// Whether a rule's port list admits the traffic. Absent or empty lists admit every port.
pub fn ports_match(ports: Option<&[NetworkPolicyPort]>, destination_ports: &[ContainerPort], traffic: Traffic) -> bool {
    match ports {
        None | Some([]) => true,
        Some(list) => list.iter().any(|p| port_matches(p, destination_ports, traffic)),
    }
}

/// Whether one port entry admits the traffic.
pub fn port_matches(entry: &NetworkPolicyPort, destination_ports: &[ContainerPort], traffic: Traffic) -> bool {
    let protocol = match entry.protocol.as_deref() {
        None => Protocol::Tcp,
        Some(p) => match Protocol::parse(p) {
            Some(p) => p,
            None => return false,
        },
    };
    if protocol != traffic.protocol {
        return false;
    }
    match &entry.port {
        None => true,
        Some(IntOrString::Int(_)) => numeric_range(entry).is_some_and(|r| r.contains(&traffic.port)),
        // `protocol` is the traffic's here (checked above).
        Some(IntOrString::String(name)) => {
            entry.end_port.is_none() && named_port_matches(destination_ports, name, traffic)
        }
    }
}

/// The ports a numeric entry covers: `port`, or `port..=endPort`. `None` for named or absent ports.
pub fn numeric_range(entry: &NetworkPolicyPort) -> Option<std::ops::RangeInclusive<i32>> {
    match &entry.port {
        Some(IntOrString::Int(port)) => Some(*port..=entry.end_port.unwrap_or(*port)),
        _ => None,
    }
}
