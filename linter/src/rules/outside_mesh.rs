use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;
use crate::model::WorkloadId;
use crate::semantics::mesh::{Outbound, Proxy, Route, Target, l4_reason};
use crate::semantics::{Direction, Endpoint};

declare_rule! {
    /// ## What it does
    /// Finds workloads without an Istio sidecar in a namespace whose egress the mesh controls
    /// (its other pods have sidecars that run `REGISTRY_ONLY` or route external hosts through an
    /// egress gateway), when their L4 egress lets them reach those external hosts directly.
    ///
    /// ## Why is this bad?
    /// The mesh only controls what its sidecars see. A pod that opts out of injection
    /// (`sidecar.istio.io/inject: "false"`, `istio-injection=disabled`) or was created before
    /// the namespace was labelled sends its traffic straight out: the registry, the gateway and
    /// the mesh's telemetry never see it. Istio's egress-gateway task demonstrates exactly this
    /// with a `sleep` pod without a sidecar, and closes the gap with a NetworkPolicy. Injection
    /// follows the table of Istio's "Installing the Sidecar" page; ambient-mode pods
    /// (`istio.io/dataplane-mode: ambient`) are not judged.
    ///
    /// ## Example
    /// ```yaml
    /// kind: Deployment
    /// metadata: {name: legacy, namespace: shop}   # shop: istio-injection=enabled
    /// spec:
    ///   template:
    ///     metadata:
    ///       labels: {sidecar.istio.io/inject: "false"}
    /// ```
    ///
    /// Use instead: inject the sidecar, or isolate the workload's egress with a NetworkPolicy
    /// that allows only what it needs.
    ///
    /// ## Fix safety
    /// No automatic fix.
    pub struct OutsideMesh {
        code: "PC028",
        name: "outside-mesh",
        severity: Warning,
        fix: None,
    }
}

impl Rule for OutsideMesh {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        let Some(mesh) = cx.mesh() else { return };
        let inv = cx.inventory;
        let targets = mesh.targets();
        for ns in inv.namespaces.values() {
            // What the mesh controls for this namespace's meshed pods: hosts routed through a
            // gateway, and whether any of them runs REGISTRY_ONLY (and set by what).
            let meshed: Vec<WorkloadId> =
                ns.workloads.iter().copied().filter(|&id| matches!(mesh.proxy(id), Proxy::Sidecar)).collect();
            if meshed.is_empty() {
                continue;
            }
            let routes: Vec<_> = meshed.iter().filter_map(|&id| mesh.routes_of(id)).collect();
            let routed: Vec<&Target> = targets
                .iter()
                .enumerate()
                .filter(|(i, _)| routes.iter().any(|r| matches!(r.get(*i), Some(Route::ViaGateway(_)))))
                .map(|(_, t)| t)
                .collect();
            let registry_only = meshed.iter().map(|&id| mesh.outbound(id)).find(|m| m.mode == Outbound::RegistryOnly);
            if routed.is_empty() && registry_only.is_none() {
                continue;
            }
            let control = match (&registry_only, routed.first()) {
                (Some(m), _) => format!("REGISTRY_ONLY, set by {}", m.set_by),
                (None, Some(t)) => format!("{} goes through an egress gateway", t.host),
                (None, None) => continue,
            };
            for &id in &ns.workloads {
                let w = inv.workload(id);
                if w.host_network || !cx.reports_on(w.object) {
                    continue;
                }
                let Proxy::None(why) = mesh.proxy(id) else { continue };
                let egress = mesh.egress_of(id);
                // The first controlled destination its L4 egress reaches directly.
                let mut reached = routed.iter().find_map(|t| {
                    let d = egress.judge(&Endpoint::Name(&t.host), t.port)?;
                    d.allowed().then(|| (format!("{}:{}", t.host, t.port), l4_reason(inv, &d, Direction::Egress)))
                });
                if reached.is_none() && registry_only.is_some() {
                    let names =
                        targets.iter().map(|t| (Endpoint::Name(&t.host), t.port, format!("{}:{}", t.host, t.port)));
                    let any = [(Endpoint::UnknownAddress, 443, "any external address on port 443".to_owned())];
                    reached = names.chain(any).find_map(|(to, port, label)| {
                        let d = egress.judge(&to, port)?;
                        d.allowed().then(|| (label, l4_reason(inv, &d, Direction::Egress)))
                    });
                }
                let Some((destination, reason)) = reached else { continue };
                out.push(cx.finding(
                    &Self::META,
                    w.object,
                    w.template,
                    format!(
                        "pods of {} run without an Istio sidecar ({why}) in namespace {}, whose egress the mesh controls ({control}): the mesh cannot see their traffic, and their L4 egress reaches {destination} directly ({reason})",
                        super::workload_label(cx, id),
                        ns.name,
                    ),
                ));
            }
        }
    }
}
