//! The ClusterNetworkPolicy tiers (`policy.networking.k8s.io/v1alpha2`), as the API defines them:
//!
//! - a policy applies to the pods its `subject` selects (never host-network pods);
//! - within a tier, policies are evaluated by ascending `priority` and, within a policy, rules
//!   in the order written; the first rule whose peers and protocols match the connection
//!   decides: `Accept` and `Deny` are final for the direction, `Pass` skips the rest of the tier;
//! - the Admin tier comes before NetworkPolicy, the Baseline tier after it (see
//!   [`super::evaluator::DirectionVerdict::allowed`], which combines them);
//! - two policies of one tier with the same priority may be applied in any order, the API says;
//!   here they are taken by name, so a verdict never depends on input order;
//! - a peer with none of the fields this version knows fails closed: an `Accept` rule matches
//!   nothing through it, `Deny` and `Pass` match everything;
//! - `networks` matches addresses, pod addresses included; `nodes` and `domainNames` cannot be
//!   decided without the cluster's nodes or DNS, so they match only what they certainly match
//!   (`domainNames` an external destination named exactly, or under its `*.` wildcard).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::evaluator::{Direction, Endpoint, PodView, Traffic, destination_ports, named_port_matches};
use super::ip_block::parse_cidr;
use super::selector::selector_matches;
use crate::model::cluster_policy::{Action, ClusterPolicy, NamespacedPod, Peer, ProtocolMatch, Subject, Tier};
use crate::model::{ClusterPolicyId, ContainerPort, Inventory, Labels, Protocol};

/// The rule of a tier that decided one direction of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierDecision {
    pub tier: Tier,
    pub policy: ClusterPolicyId,
    pub direction: Direction,
    /// Index of the rule in `spec.ingress` or `spec.egress`.
    pub rule: usize,
    pub action: Action,
}

/// The policies whose subject can select pods of one namespace (its namespace part matches),
/// per tier in evaluation order (priority, then name), each with the pod selector still to
/// check. Workloads of one namespace share it: [`NamespaceCandidates::applicable`] is then one
/// pod-selector check per candidate instead of a subject check per policy of the cluster.
#[derive(Debug, Clone, Default)]
pub struct NamespaceCandidates<'i> {
    admin: Vec<(ClusterPolicyId, Option<&'i LabelSelector>)>,
    baseline: Vec<(ClusterPolicyId, Option<&'i LabelSelector>)>,
    /// Cilium rules whose `endpointSelector` can select pods of the namespace (its namespace
    /// part matches), each with whether pod labels still need checking.
    cilium: Vec<(crate::model::cilium_policy::CiliumRuleId, bool)>,
    /// Calico policies that can apply to pods of the namespace, each with whether pod labels
    /// still need checking ([`super::calico::namespace_candidates`]).
    calico: Vec<(crate::model::calico_policy::CalicoPolicyId, bool)>,
}

impl<'i> NamespaceCandidates<'i> {
    /// The candidates for a namespace with these labels.
    pub fn new(inventory: &'i Inventory, namespace_labels: &Labels) -> NamespaceCandidates<'i> {
        let mut out = NamespaceCandidates {
            cilium: super::cilium::namespace_candidates(inventory, namespace_labels),
            calico: super::calico::namespace_candidates(inventory, namespace_labels),
            ..NamespaceCandidates::default()
        };
        if inventory.cluster_policies.is_empty() {
            return out;
        }
        let mut found: Vec<(ClusterPolicyId, &ClusterPolicy, Option<&LabelSelector>)> = Vec::new();
        for (i, p) in inventory.cluster_policies.iter().enumerate() {
            if !subject_covers_namespace(&p.spec.subject, namespace_labels) {
                continue;
            }
            let pods = p.spec.subject.pods.as_ref().map(|pods| &pods.pod_selector);
            found.push((ClusterPolicyId(i), p, pods));
        }
        found.sort_by(|(_, a, _), (_, b, _)| (a.spec.priority, &a.name).cmp(&(b.spec.priority, &b.name)));
        for (id, p, pods) in found {
            match p.spec.tier {
                Tier::Admin => out.admin.push((id, pods)),
                Tier::Baseline => out.baseline.push((id, pods)),
            }
        }
        out
    }

    /// The policies of `tier` whose subject selects `pod` (of this namespace), in evaluation
    /// order.
    pub fn applicable(&self, tier: Tier, pod: &PodView<'_>) -> Vec<ClusterPolicyId> {
        if pod.host_network {
            return Vec::new();
        }
        let list = match tier {
            Tier::Admin => &self.admin,
            Tier::Baseline => &self.baseline,
        };
        list.iter()
            .filter(|(_, pods)| pods.is_none_or(|s| selector_matches(s, pod.labels)))
            .map(|(id, _)| *id)
            .collect()
    }
}

impl NamespaceCandidates<'_> {
    /// The Cilium rules whose `endpointSelector` selects `pod` (of this namespace).
    pub fn cilium(&self, inventory: &Inventory, pod: &PodView<'_>) -> Vec<crate::model::cilium_policy::CiliumRuleId> {
        if pod.host_network {
            return Vec::new();
        }
        self.cilium
            .iter()
            .filter(|(id, check)| !check || super::cilium::subject_matches(inventory.cilium_rule(*id), pod))
            .map(|(id, _)| *id)
            .collect()
    }
}

impl NamespaceCandidates<'_> {
    /// The enforced Calico policies that apply to `pod` (of this namespace) for `direction`.
    pub fn calico(
        &self,
        inventory: &Inventory,
        pod: &PodView<'_>,
        direction: Direction,
    ) -> Vec<crate::model::calico_policy::CalicoPolicyId> {
        if pod.host_network {
            return Vec::new();
        }
        self.calico
            .iter()
            .filter(|(id, check)| {
                let policy = inventory.calico_policy(*id);
                super::calico::governs(policy, direction)
                    && (!check || super::calico::policy_selects(policy, pod) == super::cilium::Tri::Yes)
            })
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Whether a subject can select pods of a namespace with these labels (its namespace part
/// matches; a `pods` subject's pod selector is still to check).
pub fn subject_covers_namespace(subject: &Subject, namespace_labels: &Labels) -> bool {
    match (&subject.namespaces, &subject.pods) {
        (Some(selector), None) => selector_matches(selector, namespace_labels),
        (None, Some(pods)) => selector_matches(&pods.namespace_selector, namespace_labels),
        _ => false,
    }
}

/// The first rule of the `applicable` policies of `tier` (from
/// [`NamespaceCandidates::applicable`], for this pod)
/// that matches the pod's traffic in `direction` with `peer` (the destination for egress, the
/// source for ingress); `None` when no rule matches.
pub fn decide(
    inventory: &Inventory,
    tier: Tier,
    applicable: &[ClusterPolicyId],
    pod: &PodView<'_>,
    direction: Direction,
    peer: &Endpoint<'_>,
    traffic: Traffic,
) -> Option<TierDecision> {
    if applicable.is_empty() {
        return None;
    }
    let destination_ports = destination_ports(pod, direction, peer);
    let matches = |action: Action, peers: &[Peer], protocols: &[ProtocolMatch]| {
        peers.iter().any(|p| peer_matches(p, action, peer)) && protocols_match(protocols, destination_ports, traffic)
    };
    for &id in applicable {
        let spec = &inventory.cluster_policy(id).spec;
        let first = match direction {
            Direction::Ingress => spec
                .ingress
                .iter()
                .enumerate()
                .find(|(_, r)| matches(r.action, &r.from, &r.protocols))
                .map(|(i, r)| (i, r.action)),
            Direction::Egress => spec
                .egress
                .iter()
                .enumerate()
                .find(|(_, r)| matches(r.action, &r.to, &r.protocols))
                .map(|(i, r)| (i, r.action)),
        };
        if let Some((rule, action)) = first {
            return Some(TierDecision { tier, policy: id, direction, rule, action });
        }
    }
    None
}

/// A ClusterNetworkPolicy (either tier) that denies every pod of a namespace with these labels
/// all traffic in `direction`: the namespace's default-deny, written cluster-wide. Its subject
/// selects the whole namespace (a `namespaces` selector, or `pods` with an empty pod selector),
/// and one of its rules of that direction is a `Deny` without protocols whose peers cover every
/// pod (`namespaces: {}`, or `pods` with both selectors empty) and, for egress, every address
/// of both families (`networks` `0.0.0.0/0` and `::/0`): ingress peers are pods and namespaces
/// only in this API. Rules before the Deny may accept or pass some traffic, exactly as a
/// NetworkPolicy default-deny leaves room for the allows beside it.
pub fn namespace_default_deny(
    inventory: &Inventory,
    namespace_labels: &crate::model::Labels,
    direction: Direction,
) -> Option<ClusterPolicyId> {
    let empty = super::selector::selector_is_empty;
    let whole_namespace = |subject: &Subject| match (&subject.namespaces, &subject.pods) {
        (Some(namespaces), None) => selector_matches(namespaces, namespace_labels),
        (None, Some(pods)) => {
            empty(Some(&pods.pod_selector)) && selector_matches(&pods.namespace_selector, namespace_labels)
        }
        _ => false,
    };
    let all_pods = |peers: &[Peer]| {
        peers.iter().any(|p| {
            p.namespaces.as_ref().is_some_and(|s| empty(Some(s)))
                || p.pods.as_ref().is_some_and(|s| empty(Some(&s.namespace_selector)) && empty(Some(&s.pod_selector)))
        })
    };
    let all_addresses = |peers: &[Peer]| {
        let nets: Vec<_> =
            peers.iter().flat_map(|p| p.networks.iter().flatten()).filter_map(|c| parse_cidr(c).ok()).collect();
        let family = |v4: bool| nets.iter().any(|n| n.prefix_len() == 0 && matches!(n, ipnet::IpNet::V4(_)) == v4);
        family(true) && family(false)
    };
    inventory.cluster_policies.iter().enumerate().find_map(|(i, p)| {
        if !whole_namespace(&p.spec.subject) {
            return None;
        }
        let denies_all = match direction {
            Direction::Ingress => {
                p.spec.ingress.iter().any(|r| r.action == Action::Deny && r.protocols.is_empty() && all_pods(&r.from))
            }
            Direction::Egress => p.spec.egress.iter().any(|r| {
                r.action == Action::Deny
                    && r.protocols.is_empty()
                    // Addresses of both families cover the pods too.
                    && all_addresses(&r.to)
            }),
        };
        denies_all.then_some(ClusterPolicyId(i))
    })
}

fn namespaced_pod_matches(selector: &NamespacedPod, pod: &PodView<'_>) -> bool {
    !pod.host_network
        && selector_matches(&selector.namespace_selector, pod.namespace_labels)
        && selector_matches(&selector.pod_selector, pod.labels)
}

/// Whether one peer matches the endpoint, for a rule with `action`.
pub fn peer_matches(peer: &Peer, action: Action, endpoint: &Endpoint<'_>) -> bool {
    let Peer { namespaces, pods, nodes, networks, domain_names } = peer;
    if let Some(selector) = namespaces {
        return matches!(endpoint, Endpoint::Pod(p) if !p.host_network && selector_matches(selector, p.namespace_labels));
    }
    if let Some(selector) = pods {
        return matches!(endpoint, Endpoint::Pod(p) if namespaced_pod_matches(selector, p));
    }
    if let Some(networks) = networks {
        return networks.iter().any(|cidr| network_matches(cidr, endpoint));
    }
    if let Some(names) = domain_names {
        return matches!(endpoint, Endpoint::Name(name) | Endpoint::Resolved(_, name) if names.iter().any(|n| domain_matches(n, name)));
    }
    if nodes.is_some() {
        // Node addresses are not in the input.
        return false;
    }
    // A peer of a newer API version: fail closed.
    action != Action::Accept
}

fn network_matches(cidr: &str, endpoint: &Endpoint<'_>) -> bool {
    let Ok(net) = parse_cidr(cidr) else { return false };
    let whole_family = net.prefix_len() == 0;
    match endpoint {
        Endpoint::Address(ip) | Endpoint::Resolved(ip, _) => net.contains(ip),
        Endpoint::Pod(pod) if !pod.ips.is_empty() => pod.ips.iter().any(|ip| net.contains(ip)),
        // Without a known address only a whole address family certainly contains it.
        Endpoint::Pod(_) | Endpoint::UnknownAddress | Endpoint::Name(_) => whole_family,
    }
}

/// `example.com` matches itself only; `*.example.com` matches names with one or more labels
/// before `example.com` (not `example.com` itself). Case-insensitive, a final dot ignored.
pub fn domain_matches(pattern: &str, name: &str) -> bool {
    let norm = |s: &str| s.trim_end_matches('.').to_ascii_lowercase();
    let (pattern, name) = (norm(pattern), norm(name));
    match pattern.strip_prefix("*.") {
        Some(suffix) => name.len() > suffix.len() + 1 && name.ends_with(&format!(".{suffix}")),
        None => pattern == name,
    }
}

/// Whether a rule's protocols admit the traffic (none listed: every protocol and port).
pub fn protocols_match(protocols: &[ProtocolMatch], destination_ports: &[ContainerPort], traffic: Traffic) -> bool {
    protocols.is_empty() || protocols.iter().any(|p| protocol_matches(p, destination_ports, traffic))
}

fn protocol_matches(entry: &ProtocolMatch, destination_ports: &[ContainerPort], traffic: Traffic) -> bool {
    let by_protocol = [(Protocol::Tcp, &entry.tcp), (Protocol::Udp, &entry.udp), (Protocol::Sctp, &entry.sctp)];
    for (protocol, port) in by_protocol {
        let Some(port) = port else { continue };
        if protocol != traffic.protocol {
            return false;
        }
        return match &port.destination_port {
            // The API requires a port; without one the whole protocol matches.
            None => true,
            Some(p) => match (p.number, p.range) {
                (Some(n), None) => n == traffic.port,
                (None, Some(r)) => (r.start..=r.end).contains(&traffic.port),
                _ => false,
            },
        };
    }
    entry.destination_named_port.as_deref().is_some_and(|name| named_port_matches(destination_ports, name, traffic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_names_match_as_the_api_documents() {
        // The examples of the API's DomainName documentation.
        assert!(domain_matches("kubernetes.io", "kubernetes.io"));
        for other in ["www.kubernetes.io", "blog.kubernetes.io", "my-kubernetes.io", "wikipedia.org"] {
            assert!(!domain_matches("kubernetes.io", other), "{other}");
        }
        assert!(domain_matches("blog.kubernetes.io", "blog.kubernetes.io"));
        assert!(!domain_matches("blog.kubernetes.io", "www.kubernetes.io"));
        for sub in ["www.kubernetes.io", "blog.kubernetes.io", "latest.blog.kubernetes.io"] {
            assert!(domain_matches("*.kubernetes.io", sub), "{sub}");
        }
        for other in ["kubernetes.io", "wikipedia.org", "xkubernetes.io"] {
            assert!(!domain_matches("*.kubernetes.io", other), "{other}");
        }
        assert!(domain_matches("Kubernetes.IO.", "kubernetes.io"));
    }
}
