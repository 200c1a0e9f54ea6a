use std::collections::BTreeMap;

use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;
use crate::model::{ObjectId, WorkloadId};
use crate::semantics::mesh::{Proxy, Route, l4_reason};
use crate::semantics::{Direction, Endpoint};

declare_rule! {
    /// ## What it does
    /// Finds egress-gateway routes the L4 layers break: a VirtualService sends a sidecar's
    /// traffic to an external host through an egress gateway, but the client's pods cannot
    /// reach the gateway's pods on the routed port (the client's egress or the gateway's
    /// ingress denies it), or the gateway's pods cannot reach the host on the port they
    /// forward to.
    ///
    /// ## Why is this bad?
    /// The route is then a dead end: every request to the host fails, and the mesh's own
    /// configuration reads as correct. Locking the gateway down is right (only the gateway
    /// should leave the cluster), but its pods need the hosts their Gateway and
    /// ServiceEntries serve, and the clients need the gateway. DNS for the gateway, which
    /// resolves `resolution: DNS` entries, is checked by PC003 like every workload's.
    ///
    /// ## Example
    /// ```yaml
    /// kind: NetworkPolicy
    /// metadata: {name: lockdown, namespace: istio-system}
    /// spec:
    ///   podSelector: {}
    ///   policyTypes: [Egress]   # the egress gateway can no longer reach edition.cnn.com
    /// ```
    ///
    /// Use instead: allow the gateway's pods egress to the hosts on the forwarded ports (an
    /// EgressIntent keeps their addresses fresh), and the clients egress to the gateway.
    ///
    /// ## Fix safety
    /// No automatic fix.
    pub struct EgressGatewayBlocked {
        code: "PC026",
        name: "egress-gateway-blocked",
        severity: Error,
        fix: None,
    }
}

impl Rule for EgressGatewayBlocked {
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
        // (client, gateway pod) pairs that cannot connect, and (gateway pod, host:port) pairs
        // that cannot leave: each reported once, with the VirtualService that routes them.
        let mut to_gateway: BTreeMap<(WorkloadId, WorkloadId, i32), (ObjectId, String, String)> = BTreeMap::new();
        let mut from_gateway: BTreeMap<(WorkloadId, String, u32), (ObjectId, String, String)> = BTreeMap::new();
        for i in 0..inv.workloads.len() {
            let id = WorkloadId(i);
            if !matches!(mesh.proxy(id), Proxy::Sidecar) {
                continue;
            }
            for t in &targets {
                let Route::ViaGateway(hop) = mesh.route(id, &t.host, t.port) else { continue };
                let vs = hop.virtual_service;
                for &pod in &hop.pods {
                    if let Some(port) = hop.pod_port(inv, pod)
                        && !to_gateway.contains_key(&(id, pod, port))
                    {
                        let verdict = mesh.l4_to_pod(id, pod, port);
                        if !verdict.allowed {
                            let why = match (&verdict.egress, &verdict.ingress) {
                                (Some(e), _) if !e.allowed() => {
                                    format!("the client's {}", l4_reason(inv, e, Direction::Egress))
                                }
                                (_, Some(i)) => format!("the gateway's {}", l4_reason(inv, i, Direction::Ingress)),
                                _ => "the policies deny it".to_owned(),
                            };
                            to_gateway.insert((id, pod, port), (vs.object, vs.describe(), why));
                        }
                    }
                    let key = (pod, t.host.clone(), hop.upstream_port);
                    if from_gateway.contains_key(&key) {
                        continue;
                    }
                    if let Some(d) = mesh.l4(pod, &Endpoint::Name(&t.host), hop.upstream_port)
                        && !d.allowed()
                    {
                        from_gateway.insert(key, (vs.object, vs.describe(), l4_reason(inv, &d, Direction::Egress)));
                    }
                }
            }
        }
        for ((client, pod, port), (vs, describe, why)) in to_gateway {
            let w = inv.workload(client);
            if !cx.reports_on(w.object) {
                continue;
            }
            let mut finding = cx.finding(
                &Self::META,
                w.object,
                w.template,
                format!(
                    "pods of {} cannot reach the egress gateway's pods ({}) on port {port}, where {describe} routes their sidecar traffic: {why}",
                    super::workload_label(cx, client),
                    super::workload_label(cx, pod),
                ),
            );
            finding.related.push(cx.related(vs, "/spec/hosts", "the route through the gateway".to_owned()));
            out.push(finding);
        }
        for ((pod, host, port), (vs, describe, why)) in from_gateway {
            let w = inv.workload(pod);
            if !cx.reports_on(w.object) {
                continue;
            }
            let mut finding = cx.finding(
                &Self::META,
                w.object,
                w.template,
                format!(
                    "the egress gateway's pods ({}) cannot reach {host}:{port}, which {describe} routes through them: {why}",
                    super::workload_label(cx, pod),
                ),
            );
            finding.related.push(cx.related(vs, "/spec/hosts", "the route through the gateway".to_owned()));
            out.push(finding);
        }
    }
}
