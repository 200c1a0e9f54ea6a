//! Can a workload resolve names? Cluster DNS as a destination, shared by the DNS rules, `fix`
//! and the webhook's mutation.

use std::net::IpAddr;

use ipnet::IpNet;

use super::cilium::CiliumRuleRef;
use super::cluster::{NamespaceCandidates, TierDecision};
use super::evaluator::{Decided, Direction, Endpoint, Evaluator, PodView, RuleRef, Traffic};
use crate::config::DnsConfig;
use crate::model::cilium_policy::CiliumRuleId;
use crate::model::{ContainerPort, Labels, NAMESPACE_NAME_LABEL, PolicyId, Protocol, WorkloadId};

/// DNS port.
pub const DNS_PORT: i32 = 53;

/// Cluster DNS as the evaluator sees it: the kube-dns pods (with the container ports CoreDNS
/// declares: `dns` UDP 53, `dns-tcp` TCP 53) and any extra addresses such as NodeLocal DNSCache.
#[derive(Debug, Clone)]
pub struct DnsTarget {
    pub namespace: String,
    pub pod_labels: Labels,
    pub namespace_labels: Labels,
    pub ports: Vec<ContainerPort>,
    pub extra: Vec<IpNet>,
    extra_addresses: Vec<IpAddr>,
}

impl DnsTarget {
    /// Builds the target from config, taking the namespace's labels from the inventory when the
    /// Namespace object is in the input.
    pub fn new(config: &DnsConfig, eval: &Evaluator<'_>) -> DnsTarget {
        let mut namespace_labels = eval.namespace_labels(&config.namespace).clone();
        namespace_labels.insert(NAMESPACE_NAME_LABEL.to_owned(), config.namespace.clone());
        DnsTarget {
            namespace: config.namespace.clone(),
            pod_labels: config.pod_labels.clone(),
            namespace_labels,
            ports: vec![
                ContainerPort { name: Some("dns".to_owned()), port: DNS_PORT, protocol: Protocol::Udp },
                ContainerPort { name: Some("dns-tcp".to_owned()), port: DNS_PORT, protocol: Protocol::Tcp },
            ],
            extra: config.extra_ip_blocks.clone(),
            extra_addresses: config.extra_ip_blocks.iter().map(|n| n.addr()).collect(),
        }
    }

    /// The kube-dns pods as a peer.
    pub fn pod(&self) -> PodView<'_> {
        PodView {
            namespace: &self.namespace,
            labels: &self.pod_labels,
            namespace_labels: &self.namespace_labels,
            ports: &self.ports,
            ips: &[],
            host_network: false,
            workload: None,
        }
    }

    /// Every DNS destination: the pods, then each extra address.
    pub fn endpoints(&self) -> impl Iterator<Item = Endpoint<'_>> {
        std::iter::once(Endpoint::Pod(self.pod())).chain(self.extra_addresses.iter().map(|ip| Endpoint::Address(*ip)))
    }
}

/// How a workload's egress treats DNS: what NetworkPolicy says, and the combined verdict of
/// every layer ([`super::evaluator::DirectionVerdict::allowed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsReach {
    /// NetworkPolicies isolating the workload's egress.
    pub isolated_by: Vec<PolicyId>,
    /// NetworkPolicy rules that let UDP 53 through to some DNS destination.
    pub udp: Vec<RuleRef>,
    /// NetworkPolicy rules that let TCP 53 through to some DNS destination.
    pub tcp: Vec<RuleRef>,
    /// Whether UDP 53 reaches some DNS destination, all layers considered.
    pub udp_allowed: bool,
    /// Whether TCP 53 reaches some DNS destination, all layers considered.
    pub tcp_allowed: bool,
    /// The rule that decided UDP 53 when a layer above or below isolation did (a
    /// ClusterNetworkPolicy tier's Accept or Deny, a Cilium deny), to the first destination
    /// that lets it through, or else the first one.
    pub udp_layer: Option<LayerDecision>,
    /// The same for TCP 53.
    pub tcp_layer: Option<LayerDecision>,
    /// Cilium rules isolating the workload's egress.
    pub cilium_isolated_by: Vec<CiliumRuleId>,
    /// Whether a rule the input cannot settle may let UDP 53 through (or block it).
    pub udp_undecided: bool,
}

/// A decision on DNS made by a rule outside the isolation layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerDecision {
    /// A ClusterNetworkPolicy (or AdminNetworkPolicy/BaselineAdminNetworkPolicy) rule.
    Tier(TierDecision),
    /// A Cilium deny rule.
    CiliumDeny(CiliumRuleRef),
    /// A Calico tier's outcome.
    Calico(super::calico::TierOutcome),
}

/// DNS reachability of a workload's pods; `None` when nothing governs their egress to DNS (no
/// NetworkPolicy or Cilium policy isolates it and no ClusterNetworkPolicy or Cilium deny rule
/// matches it), or they use the host
/// network, where neither applies.
pub fn dns_reach(eval: &Evaluator<'_>, workload: WorkloadId, target: &DnsTarget) -> Option<DnsReach> {
    let pod = eval.pod(workload);
    let candidates = NamespaceCandidates::new(eval.inventory, pod.namespace_labels);
    dns_reach_among(eval, workload, target, &candidates)
}

/// [`dns_reach`] with the ClusterNetworkPolicies that can select pods of the workload's
/// namespace already known (the rules compute them once per namespace).
pub fn dns_reach_among(
    eval: &Evaluator<'_>,
    workload: WorkloadId,
    target: &DnsTarget,
    candidates: &NamespaceCandidates<'_>,
) -> Option<DnsReach> {
    let pod = eval.pod(workload);
    if pod.host_network {
        return None;
    }
    let applicable = eval.applicable_among(&pod, Direction::Egress, candidates);
    let mut reach = DnsReach {
        isolated_by: applicable.isolated_by.clone(),
        udp: Vec::new(),
        tcp: Vec::new(),
        udp_allowed: false,
        tcp_allowed: false,
        udp_layer: None,
        tcp_layer: None,
        cilium_isolated_by: applicable
            .cilium
            .iter()
            .copied()
            .filter(|&id| super::cilium::isolates(eval.inventory.cilium_rule(id), Direction::Egress))
            .collect(),
        udp_undecided: false,
    };
    let mut governed = !reach.isolated_by.is_empty() || !reach.cilium_isolated_by.is_empty();
    for endpoint in target.endpoints() {
        for protocol in [Protocol::Udp, Protocol::Tcp] {
            let traffic = Traffic { port: DNS_PORT, protocol };
            let verdict = eval.judge(&pod, Direction::Egress, &applicable, &endpoint, traffic);
            if protocol == Protocol::Udp && verdict.undecided().is_some() {
                reach.udp_undecided = true;
            }
            let (rules, allowed, tier) = match protocol {
                Protocol::Udp => (&mut reach.udp, &mut reach.udp_allowed, &mut reach.udp_layer),
                _ => (&mut reach.tcp, &mut reach.tcp_allowed, &mut reach.tcp_layer),
            };
            for rule in verdict.allowed_by.iter().copied() {
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
            }
            let decided = match verdict.decided() {
                Decided::Admin(d) | Decided::Baseline(d) => Some(LayerDecision::Tier(d)),
                Decided::CiliumDeny(r) => Some(LayerDecision::CiliumDeny(r)),
                Decided::Calico(i) => verdict.calico.tiers.get(i).map(|t| LayerDecision::Calico(t.outcome)),
                Decided::Isolation | Decided::Default => None,
            };
            governed |= decided.is_some();
            if verdict.allowed() && !*allowed {
                // The first destination that lets DNS through says which layer did.
                *allowed = true;
                *tier = decided;
            } else if !*allowed && tier.is_none() {
                *tier = decided;
            }
        }
    }
    governed.then_some(reach)
}
