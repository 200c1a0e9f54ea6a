use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;
use crate::semantics::dns::DNS_PORT;
use crate::semantics::evaluator::{applies, numeric_range};
use crate::semantics::{Direction, ParsedIpBlock};

declare_rule! {
    /// ## What it does
    /// Finds egress rules that allow port 53 to any destination: no `to` at all, or an ipBlock
    /// covering a whole address family (`0.0.0.0/0`, `::/0`).
    ///
    /// ## Why is this bad?
    /// Pods can then talk DNS to any server on the internet. DNS tunnelling tools use exactly
    /// that to exfiltrate data or run a command channel through an otherwise locked-down
    /// namespace. Cluster DNS is the only resolver pods need.
    ///
    /// ## Example
    /// ```yaml
    ///   egress:
    ///   - ports:
    ///     - {port: 53, protocol: UDP}
    /// ```
    ///
    /// Use instead:
    /// ```yaml
    ///   egress:
    ///   - to:
    ///     - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
    ///       podSelector: {matchLabels: {k8s-app: kube-dns}}
    ///     ports:
    ///     - {port: 53, protocol: UDP}
    ///     - {port: 53, protocol: TCP}
    /// ```
    ///
    /// ## Fix safety
    /// No automatic fix: some clusters run DNS elsewhere; restrict `to` by hand.
    pub struct DnsOpenToAny {
        code: "PC005",
        name: "dns-open-to-any",
        severity: Warning,
        fix: None,
    }
}

impl Rule for DnsOpenToAny {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        for policy in cx.written_policies() {
            if !applies(policy, Direction::Egress) {
                continue;
            }
            for (i, rule) in policy.spec.egress.iter().flatten().enumerate() {
                let Some(port_index) = rule.ports.iter().flatten().position(|p| match &p.port {
                    Some(IntOrString::Int(_)) => numeric_range(p).is_some_and(|r| r.contains(&DNS_PORT)),
                    _ => false,
                }) else {
                    continue;
                };
                let peers = rule.to.as_deref().unwrap_or_default();
                let open_block = peers.iter().position(|p| {
                    p.ip_block.as_ref().and_then(|b| ParsedIpBlock::parse(b).ok()).is_some_and(|b| b.is_whole_family())
                });
                let (pointer, what) = match (peers.is_empty(), open_block) {
                    (true, _) => (format!("/spec/egress/{i}/ports/{port_index}"), "with no `to`".to_owned()),
                    (false, Some(b)) => (
                        format!("/spec/egress/{i}/to/{b}/ipBlock/cidr"),
                        format!("to {}", peers[b].ip_block.as_ref().map(|b| b.cidr.as_str()).unwrap_or_default()),
                    ),
                    (false, None) => continue,
                };
                out.push(cx.finding(
                    &Self::META,
                    policy.object,
                    &pointer,
                    format!(
                        "egress rule {i} of policy {} allows port 53 {what}: pods may query any DNS server, a tunnelling and exfiltration path; allow only cluster DNS",
                        policy.name
                    ),
                ));
            }
        }
    }
}
