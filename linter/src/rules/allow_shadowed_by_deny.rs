use std::net::IpAddr;

use k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;
use crate::model::cluster_policy::{Action, Tier};
use crate::model::{NAMESPACE_NAME_LABEL, Protocol, WorkloadId};
use crate::semantics::evaluator::{applies, peer_matches, policy_selects, rules};
use crate::semantics::selector_matches;
use crate::semantics::{Direction, Endpoint, ParsedIpBlock, PodView, Traffic};
use crate::semantics::{cilium, cluster};

/// At most this many (pod, peer, port) probes per rule; a rule that needs more is not judged.
const MAX_PROBES: usize = 512;

declare_rule! {
    /// ## What it does
    /// Finds NetworkPolicy allow rules that never take effect because a higher layer denies the
    /// same traffic first: an Admin-tier ClusterNetworkPolicy (or AdminNetworkPolicy) `Deny`, or a
    /// Cilium deny rule, which both come before NetworkPolicy. The rule is judged on the input's
    /// own workloads and addresses: for every pod the policy selects, every workload or address
    /// the rule names and every port it lists, the combined verdict is such a deny.
    ///
    /// ## Why is this bad?
    /// The team reads its policy and believes the traffic is allowed; the connection is dropped
    /// by a policy they may not even see. Either the allow is dead code, or the higher layer is
    /// wrong, and someone should know which.
    ///
    /// ## Example
    /// ```yaml
    /// # ClusterNetworkPolicy, Admin tier: Deny egress to 10.0.0.0/8 on 5432
    /// # NetworkPolicy of the team:
    ///   egress:
    ///   - to:
    ///     - ipBlock: {cidr: 10.20.0.0/16}
    ///     ports:
    ///     - port: 5432
    /// ```
    ///
    /// Use instead: ask the cluster's administrators for an exception (a `Pass` or `Accept`
    /// before their `Deny`), or remove the allow.
    ///
    /// ## Fix safety
    /// No automatic fix: which of the two policies is wrong is a decision between teams.
    pub struct AllowShadowedByDeny {
        code: "PC021",
        name: "allow-shadowed-by-deny",
        severity: Warning,
        fix: None,
    }
}

impl Rule for AllowShadowedByDeny {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        let inv = cx.inventory;
        let admin_deny = inv.cluster_policies.iter().any(|p| {
            p.spec.tier == Tier::Admin
                && (p.spec.ingress.iter().any(|r| r.action == Action::Deny)
                    || p.spec.egress.iter().any(|r| r.action == Action::Deny))
        });
        let cilium_deny =
            inv.cilium_rules.iter().any(|r| !r.spec.ingress_deny.is_empty() || !r.spec.egress_deny.is_empty());
        if !admin_deny && !cilium_deny {
            return;
        }
        // What applies to each pod, per direction, computed once (pods are subjects of several
        // policies).
        let mut memo = Memo::default();
        let mut selected = Selected::new();
        for policy in cx.written_policies() {
            let subjects: Vec<WorkloadId> = inv
                .namespace(&policy.namespace)
                .map(|ns| ns.workloads.as_slice())
                .unwrap_or_default()
                .iter()
                .copied()
                .filter(|&w| !inv.workload(w).host_network && policy_selects(policy, &inv.workload(w).labels))
                .collect();
            if subjects.is_empty() {
                continue;
            }
            for direction in [Direction::Ingress, Direction::Egress] {
                if !applies(policy, direction) {
                    continue;
                }
                if rules(policy, direction).next().is_none() {
                    continue;
                }
                // The layers above NetworkPolicy for each pod; only a deny of theirs in this
                // direction can shadow a rule.
                let Some(judged) = higher_layers(cx, &mut memo, &subjects, direction) else { continue };
                for (index, (peers, ports)) in rules(policy, direction).enumerate() {
                    let Some(why) = shadowed(cx, &mut selected, &policy.namespace, &judged, direction, peers, ports)
                    else {
                        continue;
                    };
                    out.push(cx.finding(
                        &Self::META,
                        policy.object,
                        &format!("/spec/{}/{index}", direction.key()),
                        format!(
                            "{} rule {index} of policy {} never takes effect: {why} denies the same traffic first, for every pod, peer and port it names",
                            direction.key(),
                            policy.name
                        ),
                    ));
                }
            }
        }
    }
}

/// Namespaces matched by a namespace selector, remembered per distinct selector (policies of
/// many namespaces repeat the same one).
type Selected<'a> = Vec<(&'a LabelSelector, Vec<&'a str>)>;

/// The peers to try for a rule: the workloads it names, and an address of each ipBlock (of the
/// outside world when it names no peer); `None` when they are more than [`MAX_PROBES`].
fn probe_peers<'a>(
    cx: &Context<'a>,
    selected: &mut Selected<'a>,
    namespace: &'a str,
    peers: Option<&'a [NetworkPolicyPeer]>,
) -> Option<Vec<Endpoint<'a>>> {
    let inv = cx.inventory;
    let peers = peers.filter(|p| !p.is_empty());
    // Only namespaces some peer can reach: a peer without namespaceSelector means the policy's
    // own, one selecting `kubernetes.io/metadata.name` that one namespace.
    let mut names: Vec<&str> = Vec::new();
    match peers {
        None => names.extend(inv.namespaces.keys().map(String::as_str)),
        Some(peers) => {
            for peer in peers.iter().filter(|p| p.ip_block.is_none()) {
                let Some(selector) = &peer.namespace_selector else {
                    names.push(namespace);
                    continue;
                };
                if let Some(name) = selector.match_labels.as_ref().and_then(|m| m.get(NAMESPACE_NAME_LABEL)) {
                    names.push(name);
                    continue;
                }
                match selected.iter().find(|(s, _)| *s == selector) {
                    Some((_, found)) => names.extend(found),
                    None => {
                        let found: Vec<&'a str> = inv
                            .namespaces
                            .iter()
                            .filter(|(_, ns)| selector_matches(selector, &ns.labels))
                            .map(|(n, _)| n.as_str())
                            .collect();
                        names.extend(&found);
                        if selected.len() < 64 {
                            selected.push((selector, found));
                        }
                    }
                }
            }
        }
    }
    names.sort_unstable();
    names.dedup();
    let mut out: Vec<Endpoint<'a>> = Vec::new();
    for ns in names.into_iter().filter_map(|n| inv.namespace(n)) {
        for &w in &ns.workloads {
            if inv.workload(w).host_network {
                continue;
            }
            let endpoint = Endpoint::Pod(cx.eval.pod(w));
            if peers
                .is_none_or(|peers| peers.iter().any(|p| p.ip_block.is_none() && peer_matches(p, namespace, &endpoint)))
            {
                out.push(endpoint);
                if out.len() > MAX_PROBES {
                    return None;
                }
            }
        }
    }
    match peers {
        None => out.push(Endpoint::Address(IpAddr::from([192, 0, 2, 1]))),
        Some(peers) => {
            for block in peers.iter().filter_map(|p| p.ip_block.as_ref()) {
                let Ok(block) = ParsedIpBlock::parse(block) else { continue };
                // The block's first address, or its last when that one is excepted.
                let candidates = [block.cidr.network(), block.cidr.broadcast()];
                if let Some(ip) = candidates.into_iter().find(|ip| block.contains(*ip)) {
                    out.push(Endpoint::Address(ip));
                }
            }
        }
    }
    Some(out)
}

/// The traffic to try for a rule's ports: each listed port (a range by its ends; a named port
/// by the destination's port of that name), or, without ports, both ends of TCP and UDP.
fn probe_traffic(ports: Option<&[NetworkPolicyPort]>, destination: &[crate::model::ContainerPort]) -> Vec<Traffic> {
    let all = || {
        [Protocol::Tcp, Protocol::Udp]
            .into_iter()
            .flat_map(|protocol| [1, 65535].map(|port| Traffic { port, protocol }))
            .collect::<Vec<_>>()
    };
    let Some(ports) = ports.filter(|p| !p.is_empty()) else { return all() };
    let mut out = Vec::new();
    for entry in ports {
        let protocol = entry.protocol.as_deref().and_then(Protocol::parse).unwrap_or(Protocol::Tcp);
        match &entry.port {
            None => out.extend([1, 65535].map(|port| Traffic { port, protocol })),
            Some(IntOrString::Int(port)) => {
                out.push(Traffic { port: *port, protocol });
                if let Some(end) = entry.end_port.filter(|e| e > port) {
                    out.push(Traffic { port: end, protocol });
                }
            }
            Some(IntOrString::String(name)) => out.extend(
                destination
                    .iter()
                    .filter(|p| p.name.as_deref() == Some(name.as_str()) && p.protocol == protocol)
                    .map(|p| Traffic { port: p.port, protocol }),
            ),
        }
    }
    out
}

/// What sits above NetworkPolicy for one pod and direction: the Admin-tier policies and the
/// Cilium rules selecting it.
#[derive(Debug, Clone, Default)]
struct Above {
    admin: Vec<crate::model::ClusterPolicyId>,
    cilium: Vec<crate::model::cilium_policy::CiliumRuleId>,
}

/// [`higher_layers`]' answers per workload and direction: what is above NetworkPolicy for the
/// pod, when an Admin-tier or Cilium deny in that direction applies to it.
type Memo = std::collections::HashMap<(WorkloadId, Direction), Option<Above>>;

/// The pods with what is above NetworkPolicy for them in `direction`, when every one of them has
/// an Admin-tier policy or a Cilium rule with a deny in that direction (else no rule can be
/// shadowed for all).
fn higher_layers<'m, 'a>(
    cx: &Context<'a>,
    memo: &'m mut Memo,
    subjects: &[WorkloadId],
    direction: Direction,
) -> Option<Vec<(PodView<'a>, &'m Above)>> {
    let inv = cx.inventory;
    for &subject in subjects {
        let answer = memo.entry((subject, direction)).or_insert_with(|| {
            let pod = cx.eval.pod(subject);
            let candidates = cx.candidates(pod.namespace)?;
            let above = Above { admin: candidates.applicable(Tier::Admin, &pod), cilium: candidates.cilium(inv, &pod) };
            let admin_deny = above.admin.iter().any(|&id| {
                let spec = &inv.cluster_policy(id).spec;
                match direction {
                    Direction::Ingress => spec.ingress.iter().any(|r| r.action == Action::Deny),
                    Direction::Egress => spec.egress.iter().any(|r| r.action == Action::Deny),
                }
            });
            let cilium_deny = above.cilium.iter().any(|&id| {
                let spec = &inv.cilium_rule(id).spec;
                match direction {
                    Direction::Ingress => !spec.ingress_deny.is_empty(),
                    Direction::Egress => !spec.egress_deny.is_empty(),
                }
            });
            (admin_deny || cilium_deny).then_some(above)
        });
        answer.as_ref()?;
    }
    let memo: &'m Memo = memo;
    subjects.iter().map(|&s| Some((cx.eval.pod(s), memo.get(&(s, direction))?.as_ref()?))).collect()
}

/// What denies every probe of the rule first (a description), or `None` when some probe is not
/// denied by a higher layer, there is nothing to probe, or too much.
fn shadowed<'a>(
    cx: &Context<'a>,
    selected: &mut Selected<'a>,
    namespace: &'a str,
    judged: &[(PodView<'_>, &Above)],
    direction: Direction,
    peers: Option<&'a [NetworkPolicyPeer]>,
    ports: Option<&[NetworkPolicyPort]>,
) -> Option<String> {
    let inv = cx.inventory;
    let peers = probe_peers(cx, selected, namespace, peers)?;
    let mut first = None;
    let mut probes = 0;
    for (pod, above) in judged {
        for peer in &peers {
            let destination = match (direction, peer) {
                (Direction::Ingress, _) => pod.ports,
                (Direction::Egress, Endpoint::Pod(p)) => p.ports,
                (Direction::Egress, _) => &[],
            };
            for traffic in probe_traffic(ports, destination) {
                probes += 1;
                if probes > MAX_PROBES {
                    return None;
                }
                // The layers before NetworkPolicy, in the evaluator's order: an Admin decision,
                // then a Cilium deny (`DirectionVerdict::decided`).
                let admin = cluster::decide(inv, Tier::Admin, &above.admin, pod, direction, peer, traffic);
                let why = match admin {
                    Some(d) if d.action == Action::Deny => {
                        let policy = inv.cluster_policy(d.policy);
                        format!("{} rule {} of the {}", direction.key(), d.rule, policy.describe())
                    }
                    Some(d) if d.action == Action::Accept => return None,
                    _ => match cilium::judge(inv, &above.cilium, pod, direction, peer, traffic).denied_by {
                        Some(r) => format!("{} rule {} of {}", r.key(), r.index, inv.cilium_rule(r.rule).describe()),
                        None => return None,
                    },
                };
                first.get_or_insert(why);
            }
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::project::Project;

    /// A shadowed allow over `pods` peer workloads, all denied by an Admin-tier Deny of the port.
    fn project(pods: usize) -> Project {
        let mut text = String::from(
            "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: no-5432}\nspec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  egress:\n  - action: Deny\n    to: [{namespaces: {}}]\n    protocols: [{tcp: {destinationPort: {number: 5432}}}]\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: api, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: api}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{podSelector: {matchLabels: {role: db}}}]\n    ports: [{port: 5432}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: api, namespace: shop, labels: {app: api}}\nspec: {containers: [{name: c, image: x}]}\n",
        );
        for i in 0..pods {
            text.push_str(&format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: db-{i}, namespace: shop, labels: {{role: db}}}}\nspec: {{containers: [{{name: c, image: x}}]}}\n"
            ));
        }
        let mut project = Project::new("default");
        project.add_text("input.yaml", text, true);
        project
    }

    fn shadowed(project: &Project) -> usize {
        project.lint(&Config::default()).iter().filter(|f| f.code == "PC021").count()
    }

    #[test]
    fn a_rule_needing_more_probes_than_the_bound_is_not_judged() {
        // Under the bound, the Deny shadows the allow; one peer past it, the rule is left alone
        // (no finding) instead of probing without end.
        assert_eq!(shadowed(&project(super::MAX_PROBES)), 1);
        assert_eq!(shadowed(&project(super::MAX_PROBES + 1)), 0);
    }
}
