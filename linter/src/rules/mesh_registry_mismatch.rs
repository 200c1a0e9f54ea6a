use std::collections::BTreeMap;

use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;
use crate::model::WorkloadId;
use crate::semantics::mesh::{Proxy, Route, denial_may_not_hold, l4_reason};
use crate::semantics::{Direction, Endpoint, selector_matches};

declare_rule! {
    /// ## What it does
    /// Finds external hosts the mesh and the L4 layers disagree about, for pods with an Istio
    /// sidecar.
    ///
    /// - a `MESH_EXTERNAL` ServiceEntry in the pods' namespace admits a host they reach
    ///   directly, but their L4 egress (NetworkPolicy and the other policy layers) denies it;
    /// - an EgressIntent allows the pods a host that the mesh refuses: the pods run with
    ///   `outboundTrafficPolicy: REGISTRY_ONLY` and no ServiceEntry visible to them admits the
    ///   host on that port.
    ///
    /// ## Why is this bad?
    /// Either layer alone blocks the connection, and each reads as if it were allowed. Istio's
    /// "Accessing external services" task shows REGISTRY_ONLY refusing every host without a
    /// ServiceEntry (the request fails, exit code 35 for HTTPS); NetworkPolicy refuses every
    /// address no rule allows. An allowlist kept in one layer and not the other breaks the
    /// application the day it enforces.
    ///
    /// ## Example
    /// ```yaml
    /// kind: EgressIntent
    /// spec:
    ///   podSelector: {matchLabels: {app: pay}}
    ///   egress: [{fqdn: api.stripe.com, ports: [{port: 443}]}]
    /// # ...the mesh runs REGISTRY_ONLY and no ServiceEntry names api.stripe.com
    /// ```
    ///
    /// Use instead: a ServiceEntry for every host an EgressIntent allows (and the reverse: an
    /// L4 allowance for every ServiceEntry host the pods reach directly).
    ///
    /// ## Fix safety
    /// No automatic fix.
    pub struct MeshRegistryMismatch {
        code: "PC027",
        name: "mesh-registry-mismatch",
        severity: Error,
        fix: None,
    }
}

impl Rule for MeshRegistryMismatch {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        let Some(mesh) = cx.mesh() else { return };
        let inv = cx.inventory;
        // A ServiceEntry host the L4 layers deny: per (entry, host index, port), the workloads
        // and why.
        // The route gives the port the sidecar really connects on (a `targetPort`, a
        // VirtualService's destination port).
        let mut denied: BTreeMap<(usize, usize, u32), Vec<(WorkloadId, String)>> = BTreeMap::new();
        let mut egress_of = std::collections::HashMap::new();
        for (e, (o, spec)) in mesh.entries().enumerate() {
            if !spec.is_external() || !cx.reports_on(o.object) {
                continue;
            }
            for (id, _) in inv.workloads_in(&o.namespace) {
                if !matches!(mesh.proxy(id), Proxy::Sidecar) {
                    continue;
                }
                for (h, host) in spec.hosts.iter().enumerate() {
                    if host.contains('*') {
                        continue;
                    }
                    for port in spec.ports.iter().filter_map(|p| p.number) {
                        let Route::Direct { port: to_port, .. } = mesh.route(id, host, port) else { continue };
                        let egress = egress_of.entry(id).or_insert_with(|| mesh.egress_of(id));
                        let Some(d) = egress.judge(&Endpoint::Name(host), to_port) else { continue };
                        if !d.allowed() && !denial_may_not_hold(inv, &d, to_port) {
                            let mut why = l4_reason(inv, &d, Direction::Egress);
                            if to_port != port {
                                why = format!("the sidecar connects on port {to_port}, and {why}");
                            }
                            denied.entry((e, h, port)).or_default().push((id, why));
                        }
                    }
                }
            }
        }
        let entries: Vec<_> = mesh.entries().collect();
        for ((e, h, port), workloads) in denied {
            let Some((o, spec)) = entries.get(e) else { continue };
            let (Some((first, why)), Some(host)) = (workloads.first(), spec.hosts.get(h)) else { continue };
            let more = match workloads.len() {
                1 => String::new(),
                n => format!(" and {} other workload{}", n - 1, if n == 2 { "" } else { "s" }),
            };
            out.push(cx.finding(
                &Self::META,
                o.object,
                &format!("/spec/hosts/{h}"),
                format!(
                    "{}:{port} is admitted by {} but unreachable for {}{more}: their L4 egress denies it ({why})",
                    host,
                    o.describe(),
                    super::workload_label(cx, *first),
                ),
            ));
        }
        // An EgressIntent host the mesh refuses.
        for intent in &inv.intents {
            if !cx.reports_on(intent.object) {
                continue;
            }
            let Some(spec) = &intent.spec else { continue };
            let Some(selector) = &spec.pod_selector else { continue };
            let selected: Vec<WorkloadId> = inv
                .workloads_in(&intent.namespace)
                .filter(|(id, w)| selector_matches(selector, &w.labels) && matches!(mesh.proxy(*id), Proxy::Sidecar))
                .map(|(id, _)| id)
                .collect();
            for (t, target) in spec.egress.iter().enumerate() {
                let Some(host) = &target.fqdn else { continue };
                for port in &target.ports {
                    let Ok(number) = u32::try_from(port.port) else { continue };
                    if port.protocol.as_deref().is_some_and(|p| p != "TCP") {
                        continue;
                    }
                    let refused = selected.iter().find_map(|&id| match mesh.route(id, host, number) {
                        Route::Refused { set_by } => Some((id, set_by)),
                        _ => None,
                    });
                    let Some((id, set_by)) = refused else { continue };
                    out.push(cx.finding(
                        &Self::META,
                        intent.object,
                        &format!("/spec/egress/{t}"),
                        format!(
                            "the mesh refuses {host}:{number}, which EgressIntent {}/{} allows {}: REGISTRY_ONLY (set by {set_by}) and no ServiceEntry visible to its pods admits the host on that port",
                            intent.namespace,
                            intent.name,
                            super::workload_label(cx, id),
                        ),
                    ));
                }
            }
        }
    }
}
