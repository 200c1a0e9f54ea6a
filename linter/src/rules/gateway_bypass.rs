use std::collections::BTreeMap;

use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;
use crate::model::{ObjectId, WorkloadId};
use crate::semantics::mesh::{Proxy, Route, l4_reason};
use crate::semantics::{Direction, Endpoint};

declare_rule! {
    /// ## What it does
    /// Finds workloads with an Istio sidecar whose traffic to an external host a VirtualService
    /// sends through an egress gateway, while their own L4 egress (NetworkPolicy and the other
    /// policy layers, combined) still lets them reach that host directly.
    ///
    /// ## Why is this bad?
    /// Istio's egress-gateway task ("Additional security considerations") says it plainly: Istio
    /// cannot securely enforce that egress traffic flows through the gateway; it only routes
    /// what the sidecar sees. A process that skips the sidecar (a pod that opts out, a raw
    /// socket, a compromised container) reaches the host straight away and escapes the
    /// gateway's policy, monitoring and fixed source addresses. Only an L4 policy that allows
    /// the gateway and not the host makes the route the only way out.
    ///
    /// ## Example
    /// ```yaml
    /// kind: VirtualService
    /// spec:
    ///   hosts: [edition.cnn.com]
    ///   gateways: [istio-egressgateway, mesh]
    ///   http:
    ///   - match: [{gateways: [mesh], port: 80}]
    ///     route: [{destination: {host: istio-egressgateway.istio-system.svc.cluster.local}}]
    /// # ...and no NetworkPolicy isolates the clients' egress
    /// ```
    ///
    /// Use instead: a default-deny egress policy in the clients' namespace that allows DNS and
    /// the gateway's namespace only (the task's "Apply Kubernetes network policies" section).
    ///
    /// ## Fix safety
    /// No automatic fix: which pods may still leave directly is the owner's decision.
    pub struct GatewayBypass {
        code: "PC025",
        name: "gateway-bypass",
        severity: Warning,
        fix: None,
    }
}

/// Per VirtualService: its description, the gateway, the hosts it routes there that the pods
/// reach directly, and why they do.
type Bypass = (String, String, Vec<String>, Vec<String>);

impl Rule for GatewayBypass {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        let Some(mesh) = cx.mesh() else { return };
        let targets = mesh.targets();
        if targets.is_empty() {
            return;
        }
        let inv = cx.inventory;
        for (i, w) in inv.workloads.iter().enumerate() {
            let id = WorkloadId(i);
            if !cx.reports_on(w.object) || !matches!(mesh.proxy(id), Proxy::Sidecar) {
                continue;
            }
            let mut bypassed: BTreeMap<ObjectId, Bypass> = BTreeMap::new();
            for t in &targets {
                let Route::ViaGateway(hop) = mesh.route(id, &t.host, t.port) else { continue };
                let Some(direct) = mesh.l4(id, &Endpoint::Name(&t.host), t.port) else { continue };
                if !direct.allowed() {
                    continue;
                }
                let vs = hop.virtual_service;
                let entry = bypassed.entry(vs.object).or_insert_with(|| {
                    (vs.describe(), format!("{}:{}", hop.service_host, hop.service_port), Vec::new(), Vec::new())
                });
                entry.2.push(format!("{}:{}", t.host, t.port));
                let why = l4_reason(inv, &direct, Direction::Egress);
                if !entry.3.contains(&why) {
                    entry.3.push(why);
                }
            }
            for (vs, (describe, gateway, hosts, why)) in bypassed {
                let mut finding = cx.finding(
                    &Self::META,
                    w.object,
                    w.template,
                    format!(
                        "pods of {} can skip the egress gateway: {describe} routes their sidecar traffic to {} through {gateway}, yet nothing at L4 keeps them from going there directly ({}); isolate their egress and allow the gateway instead",
                        super::workload_label(cx, id),
                        hosts.join(", "),
                        why.join("; "),
                    ),
                );
                finding.related.push(cx.related(vs, "/spec/hosts", "the route through the gateway".to_owned()));
                out.push(finding);
            }
        }
    }
}
