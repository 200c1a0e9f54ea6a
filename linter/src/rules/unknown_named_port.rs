use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;
use crate::model::{Protocol, Workload};
use crate::semantics::Endpoint;
use crate::semantics::evaluator::{peers_match, policy_selects};
use crate::semantics::selector::selector_matches;

declare_rule! {
    /// ## What it does
    /// Finds a named port (`port: http`) that no container of the pods concerned declares: for
    /// ingress, the pods the policy selects; for egress, the destination pods the rule's peers
    /// select. Only judged when those pods' workloads are in the input.
    ///
    /// ## Why is this bad?
    /// A named port resolves against the destination pod's `containerPort` names (and protocol).
    /// A name no container declares matches nothing, so the rule allows nothing, usually after a
    /// port was renamed in the Deployment.
    ///
    /// ## Example
    /// ```yaml
    ///   ingress:
    ///   - ports:
    ///     - port: htpp
    /// ```
    ///
    /// Use instead:
    /// ```yaml
    ///     - port: http
    /// ```
    ///
    /// ## Fix safety
    /// No automatic fix.
    pub struct UnknownNamedPort {
        code: "PC012",
        name: "unknown-named-port",
        severity: Warning,
        fix: None,
    }
}

impl Rule for UnknownNamedPort {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        let inv = cx.inventory;
        for policy in cx.written_policies() {
            // Ingress: names resolve on the selected pods of the policy's namespace.
            if policy.spec.ingress.as_ref().is_some_and(|r| !r.is_empty()) {
                let selected: Vec<&Workload> = inv
                    .workloads_in(&policy.namespace)
                    .map(|(_, w)| w)
                    .filter(|w| policy_selects(policy, &w.labels))
                    .collect();
                for (ri, rule) in policy.spec.ingress.iter().flatten().enumerate() {
                    report(
                        cx,
                        policy,
                        "ingress",
                        ri,
                        rule.ports.as_deref(),
                        &selected,
                        "the pods this policy selects",
                        out,
                    );
                }
            }
            // Egress: names resolve on the destination pods the rule's peers select.
            for (ri, rule) in policy.spec.egress.iter().flatten().enumerate() {
                if !rule.ports.iter().flatten().any(|p| matches!(p.port, Some(IntOrString::String(_)))) {
                    continue;
                }
                let destinations: Vec<&Workload> = candidate_namespaces(cx, &policy.namespace, rule.to.as_deref())
                    .into_iter()
                    .flat_map(|ns| inv.workloads_in(ns))
                    .filter(|(id, _)| {
                        peers_match(rule.to.as_deref(), &policy.namespace, &Endpoint::Pod(cx.eval.pod(*id)))
                    })
                    .map(|(_, w)| w)
                    .collect();
                report(
                    cx,
                    policy,
                    "egress",
                    ri,
                    rule.ports.as_deref(),
                    &destinations,
                    "the destination pods of this rule",
                    out,
                );
            }
        }
    }
}

/// Namespaces whose pods a peer list can select, so a rule is judged against its own
/// namespaces' workloads rather than every workload of the input.
fn candidate_namespaces<'a>(
    cx: &Context<'a>,
    policy_namespace: &'a str,
    peers: Option<&[NetworkPolicyPeer]>,
) -> Vec<&'a str> {
    let inv = cx.inventory;
    let peers = peers.unwrap_or_default();
    // No peers selects everything; an ipBlock matches pods by address, wherever they run.
    if peers.is_empty() || peers.iter().any(|p| p.ip_block.is_some()) {
        return inv.namespaces.keys().map(String::as_str).collect();
    }
    let mut out: Vec<&str> = Vec::new();
    for peer in peers {
        match &peer.namespace_selector {
            None => out.push(policy_namespace),
            Some(sel) => out.extend(
                inv.namespaces.values().filter(|ns| selector_matches(sel, &ns.labels)).map(|ns| ns.name.as_str()),
            ),
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[allow(clippy::too_many_arguments)]
fn report(
    cx: &Context<'_>,
    policy: &crate::model::Policy,
    key: &str,
    ri: usize,
    ports: Option<&[k8s_openapi::api::networking::v1::NetworkPolicyPort]>,
    pods: &[&Workload],
    whose: &str,
    out: &mut Vec<Finding>,
) {
    if pods.is_empty() {
        return;
    }
    for (pi, port) in ports.unwrap_or_default().iter().enumerate() {
        let Some(IntOrString::String(name)) = &port.port else { continue };
        let protocol = port.protocol.as_deref().and_then(Protocol::parse).unwrap_or(Protocol::Tcp);
        let declared =
            pods.iter().any(|w| w.ports.iter().any(|c| c.name.as_deref() == Some(name) && c.protocol == protocol));
        if declared {
            continue;
        }
        let same_name_other_protocol = pods.iter().any(|w| w.ports.iter().any(|c| c.name.as_deref() == Some(name)));
        let hint = if same_name_other_protocol { " (it is declared, but for another protocol)" } else { "" };
        out.push(cx.finding(
            &UnknownNamedPort::META,
            policy.object,
            &format!("/spec/{key}/{ri}/ports/{pi}/port"),
            format!(
                "named port {name:?} ({protocol}) in policy {} is not declared by any container of {whose}{hint}; the rule matches no traffic on it",
                policy.name
            ),
        ));
    }
}
