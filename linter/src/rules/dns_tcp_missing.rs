use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::{Applicability, Edit, Finding, Fix};
use crate::fix::dns_tcp_patch;
use crate::model::WorkloadId;

declare_rule! {
    /// ## What it does
    /// Finds egress-isolated workloads that reach cluster DNS on UDP 53 but not on TCP 53.
    ///
    /// ## Why is this bad?
    /// A DNS answer that does not fit in one UDP packet comes back truncated (the TC flag) and
    /// the client retries over TCP. With TCP 53 blocked, large answers (many records, DNSSEC,
    /// long CNAME chains) fail intermittently, which is hard to debug.
    ///
    /// ## Example
    /// ```yaml
    ///   egress:
    ///   - to:
    ///     - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
    ///       podSelector: {matchLabels: {k8s-app: kube-dns}}
    ///     ports:
    ///     - {port: 53, protocol: UDP}
    /// ```
    ///
    /// Use instead:
    /// ```yaml
    ///     ports:
    ///     - {port: 53, protocol: UDP}
    ///     - {port: 53, protocol: TCP}
    /// ```
    ///
    /// ## Fix safety
    /// Safe: the fix adds `{port: 53, protocol: TCP}` to the rule that already allows UDP 53,
    /// towards the same destinations.
    pub struct DnsTcpMissing {
        code: "PC004",
        name: "dns-tcp-missing",
        severity: Warning,
        fix: Safe,
    }
}

impl Rule for DnsTcpMissing {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        let inv = cx.inventory;
        for (i, w) in inv.workloads.iter().enumerate() {
            let id = WorkloadId(i);
            let Some(reach) = cx.dns_reach(id) else { continue };
            // NetworkPolicy's answer only: when another layer decides DNS (a ClusterNetworkPolicy
            // tier, a Cilium deny) or a Cilium rule allows it, the rule this finding would point
            // at is not the one that matters.
            if reach.udp_layer.is_some()
                || reach.tcp_layer.is_some()
                || !reach.cilium_isolated_by.is_empty()
                || !reach.udp_allowed
                || reach.tcp_allowed
            {
                continue;
            }
            let Some(udp_rule) = reach.udp.first() else { continue };
            let policy = inv.policy(udp_rule.policy);
            let mut f = cx.finding(
                &Self::META,
                w.object,
                "/metadata/name",
                format!(
                    "pods of {} reach DNS over UDP 53 but not TCP 53; truncated answers will fail (the rule in policy {} allows only UDP)",
                    super::workload_label(cx, id),
                    policy.name
                ),
            );
            let pointer = format!("/spec/egress/{}/ports", udp_rule.index);
            f.related.push(cx.related(policy.object, &pointer, "this rule allows DNS over UDP only".to_owned()));
            if policy
                .spec
                .egress
                .as_ref()
                .and_then(|e| e.get(udp_rule.index))
                .is_some_and(|r| r.ports.as_ref().is_some_and(|p| !p.is_empty()))
            {
                f.fix = Some(Fix {
                    description: format!("add TCP 53 to egress rule {} of policy {}", udp_rule.index, policy.name),
                    applicability: Applicability::Safe,
                    edits: vec![Edit::Patch {
                        object: policy.object,
                        patch: dns_tcp_patch(inv.object(policy.object).has_annotations, udp_rule.index),
                    }],
                });
            }
            out.push(f);
        }
    }
}
