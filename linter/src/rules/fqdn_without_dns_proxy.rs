use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;
use crate::model::WorkloadId;
use crate::semantics::cilium::dns_visible;

declare_rule! {
    /// ## What it does
    /// Finds Cilium `toFQDNs` egress rules that select workloads whose DNS traffic does not go
    /// through Cilium's DNS proxy: no egress rule of a Cilium policy selecting them has `toPorts`
    /// with `rules.dns`.
    ///
    /// ## Why is this bad?
    /// Cilium allows a `toFQDNs` name by learning its addresses from the DNS answers its proxy
    /// sees. Without a `rules.dns` rule the proxy never sees the pods' lookups, so the rule
    /// allows nothing: the application fails to reach the very hosts the policy names, while the
    /// policy reads as if they were allowed.
    ///
    /// ## Example
    /// ```yaml
    ///   egress:
    ///   - toEndpoints:
    ///     - matchLabels: {"k8s:io.kubernetes.pod.namespace": kube-system, "k8s:k8s-app": kube-dns}
    ///     toPorts:
    ///     - ports: [{port: "53", protocol: ANY}]   # DNS allowed, but not seen by the proxy
    ///   - toFQDNs: [{matchName: api.stripe.com}]
    /// ```
    ///
    /// Use instead:
    /// ```yaml
    ///     toPorts:
    ///     - ports: [{port: "53", protocol: ANY}]
    ///       rules:
    ///         dns: [{matchPattern: "*"}]
    /// ```
    ///
    /// ## Fix safety
    /// No automatic fix: which names the proxy should allow is the owner's choice.
    pub struct FqdnWithoutDnsProxy {
        code: "PC019",
        name: "fqdn-without-dns-proxy",
        severity: Error,
        fix: None,
    }
}

impl Rule for FqdnWithoutDnsProxy {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        let inv = cx.inventory;
        if !inv.cilium_rules.iter().any(|r| r.spec.egress.iter().any(|e| e.to_fqdns.is_some())) {
            return;
        }
        // Per workload: the Cilium rules selecting it, and whether its DNS is proxied.
        let mut blind: std::collections::BTreeMap<usize, Vec<WorkloadId>> = std::collections::BTreeMap::new();
        for i in 0..inv.workloads.len() {
            let id = WorkloadId(i);
            let pod = cx.eval.pod(id);
            let Some(candidates) = cx.candidates(pod.namespace) else { continue };
            let rules = candidates.cilium(inv, &pod);
            if rules.is_empty() || dns_visible(inv, &rules) {
                continue;
            }
            for r in rules {
                if inv.cilium_rule(r).spec.egress.iter().any(|e| e.to_fqdns.is_some()) {
                    blind.entry(r.0).or_default().push(id);
                }
            }
        }
        for (rule_index, workloads) in blind {
            let rule = &inv.cilium_rules[rule_index];
            let Some(first) = workloads.first() else { continue };
            let Some(e) = rule.spec.egress.iter().position(|e| e.to_fqdns.is_some()) else { continue };
            let more = match workloads.len() {
                1 => String::new(),
                n => format!(" and {} other workload{}", n - 1, if n == 2 { "" } else { "s" }),
            };
            out.push(cx.finding(
                &Self::META,
                rule.object,
                &format!("{}/egress/{e}/toFQDNs", rule.pointer),
                format!(
                    "toFQDNs of {} allows nothing for {}{more}: no Cilium egress rule selecting their pods sends DNS through the DNS proxy (toPorts with rules.dns), so Cilium never learns the names' addresses",
                    rule.describe(),
                    super::workload_label(cx, *first)
                ),
            ));
        }
    }
}
