use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;

declare_rule! {
    /// ## What it does
    /// Points out workloads whose pods use `hostNetwork: true`.
    ///
    /// ## Why is this bad?
    /// NetworkPolicy does not apply to host-network pods: they share the node's network
    /// namespace, so no ingress or egress rule restricts them, whatever the namespace's
    /// default-deny says. That is sometimes necessary (CNI agents, node exporters), but it
    /// should be a conscious choice.
    ///
    /// ## Example
    /// ```yaml
    ///   template:
    ///     spec:
    ///       hostNetwork: true
    /// ```
    ///
    /// Use instead: drop `hostNetwork` unless the pod must bind node ports or see node traffic;
    /// restrict such pods with host firewalling instead.
    ///
    /// ## Fix safety
    /// No automatic fix.
    pub struct HostNetworkBypass {
        code: "PC014",
        name: "host-network-bypass",
        severity: Info,
        fix: None,
    }
}

impl Rule for HostNetworkBypass {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        for (i, w) in cx.inventory.workloads.iter().enumerate() {
            if !w.host_network {
                continue;
            }
            out.push(cx.finding(
                &Self::META,
                w.object,
                &format!("{}/spec/hostNetwork", w.template),
                format!(
                    "pods of {} use the host network; NetworkPolicy does not apply to them",
                    super::workload_label(cx, crate::model::WorkloadId(i))
                ),
            ));
        }
    }
}
