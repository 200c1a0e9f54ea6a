use std::collections::BTreeMap;

use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::{Applicability, Edit, Finding, Fix};
use crate::model::{NAMESPACE_NAME_LABEL, ObjectId, WorkloadId};
use crate::semantics::mesh::{Route, denial_may_not_hold, l4_reason};
use crate::semantics::{Decided, Direction, Endpoint};

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
    /// Use instead: allow the gateway's pods egress to the hosts on the forwarded ports (the
    /// annotation `portcullis.dev/egress-from-routes: "true"` on the Gateway keeps that policy
    /// in step with the routes), and the clients egress to the gateway.
    ///
    /// ## Fix safety
    /// Safe, when NetworkPolicy isolation is what denies (allows only add up, so nothing else
    /// changes): for the gateway's pods, the annotation `portcullis.dev/egress-from-routes:
    /// "true"` on the Gateway, so `portcullis resolve` and the controller render their egress
    /// to exactly the routed hosts, kept fresh from DNS; for a client, a policy allowing its
    /// pods egress to the gateway's pods on the port, and one allowing the gateway's pods
    /// ingress from them, whichever side denies. A deny of another layer (an Admin-tier
    /// ClusterNetworkPolicy, a Cilium deny rule, a Calico tier) is not overridden: no fix then.
    pub struct EgressGatewayBlocked {
        code: "PC026",
        name: "egress-gateway-blocked",
        severity: Error,
        fix: Safe,
    }
}

impl Rule for EgressGatewayBlocked {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        let Some((mesh, targets)) = cx.mesh_targets() else { return };
        let inv = cx.inventory;
        // (client, gateway pod) pairs that cannot connect, and (gateway pod, host:port) pairs
        // that cannot leave: each reported once, with the VirtualService that routes them.
        let mut to_gateway: BTreeMap<(WorkloadId, WorkloadId, i32), Blocked> = BTreeMap::new();
        let mut from_gateway: BTreeMap<(WorkloadId, String, u32), Blocked> = BTreeMap::new();
        // Every hop once (hops are shared by every pod routed there), with the host it serves.
        let mut hops: Vec<(&crate::semantics::mesh::Target, std::sync::Arc<crate::semantics::mesh::GatewayHop<'_>>)> =
            Vec::new();
        let mut seen_hops = std::collections::HashSet::new();
        for i in 0..inv.workloads.len() {
            let id = WorkloadId(i);
            let Some(routes) = mesh.routes_of(id) else { continue };
            // Each (gateway pod, port) is judged once per client, whatever the hosts.
            let mut judged_for_client = std::collections::BTreeSet::new();
            for (t, route) in targets.iter().zip(routes.iter()) {
                let Route::ViaGateway(hop) = route else { continue };
                if seen_hops.insert(std::sync::Arc::as_ptr(hop)) {
                    hops.push((t, std::sync::Arc::clone(hop)));
                }
                let vs = hop.virtual_service;
                for &pod in &hop.pods {
                    if let Some(port) = hop.pod_port(inv, Some(pod))
                        && judged_for_client.insert((pod, port))
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
                            // Which sides a NetworkPolicy allow would open (`None`: another
                            // layer denies, no fix).
                            let side = |d: &Option<crate::semantics::DirectionVerdict>| match d {
                                Some(d) if !d.allowed() => (d.decided() == Decided::Isolation).then_some(true),
                                _ => Some(false),
                            };
                            let fixable = side(&verdict.egress).zip(side(&verdict.ingress));
                            let gateway_labels = gateway_labels(hop, inv.workload(pod));
                            to_gateway.insert(
                                (id, pod, port),
                                Blocked {
                                    vs: vs.object,
                                    describe: vs.describe(),
                                    why,
                                    fixable,
                                    gateway: hop.gateway.map(|g| g.object),
                                    gateway_labels,
                                },
                            );
                        }
                    }
                }
            }
        }
        // The gateways' own egress, once per hop and gateway pod.
        let mut gateway_egress = std::collections::HashMap::new();
        for (t, hop) in &hops {
            let vs = hop.virtual_service;
            for &pod in &hop.pods {
                let key = (pod, t.host.clone(), hop.upstream_port);
                if from_gateway.contains_key(&key) {
                    continue;
                }
                let egress = gateway_egress.entry(pod).or_insert_with(|| mesh.egress_of(pod));
                if let Some(d) = egress.judge(&Endpoint::Name(&t.host), hop.upstream_port)
                    && !d.allowed()
                    && !denial_may_not_hold(inv, &d, hop.upstream_port)
                {
                    let fixable = (d.decided() == Decided::Isolation).then_some((true, false));
                    let blocked = Blocked {
                        vs: vs.object,
                        describe: vs.describe(),
                        why: l4_reason(inv, &d, Direction::Egress),
                        fixable,
                        gateway: hop.gateway.map(|g| g.object),
                        gateway_labels: gateway_labels(hop, inv.workload(pod)),
                    };
                    from_gateway.insert(key, blocked);
                }
            }
        }
        for ((client, pod, port), blocked) in to_gateway {
            let Blocked { describe, why, .. } = &blocked;
            let message = format!(
                "pods of {} cannot reach the egress gateway's pods ({}) on port {port}, where {describe} routes their sidecar traffic: {why}",
                super::workload_label(cx, client),
                super::workload_label(cx, pod),
            );
            let Some(mut finding) = hop_finding(cx, client, &blocked, message) else { continue };
            finding.fix = client_fix(cx, client, pod, port, &blocked);
            out.push(finding);
        }
        // One annotation serves every host of a gateway: offered on its first finding.
        let mut annotated = std::collections::BTreeSet::new();
        for ((pod, host, port), blocked) in from_gateway {
            let Blocked { describe, why, .. } = &blocked;
            let message = format!(
                "the egress gateway's pods ({}) cannot reach {host}:{port}, which {describe} routes through them: {why}",
                super::workload_label(cx, pod),
            );
            let Some(mut finding) = hop_finding(cx, pod, &blocked, message) else { continue };
            if let (Some(gateway), Some(_)) = (blocked.gateway, blocked.fixable)
                && annotated.insert(gateway)
            {
                let object = inv.object(gateway);
                finding.fix = Some(Fix {
                    description: format!(
                        "annotate Gateway {}/{} so its pods' egress follows the hosts routed through it (`portcullis resolve`, the controller)",
                        object.namespace().unwrap_or(""),
                        object.id.name
                    ),
                    applicability: Applicability::Safe,
                    edits: vec![Edit::Patch {
                        object: gateway,
                        patch: crate::fix::routes_annotation_patch(object.has_annotations),
                    }],
                });
            }
            out.push(finding);
        }
    }
}

/// The finding about workload `w` for a blocked hop (`None` when findings about it are not
/// wanted), pointing at the route.
fn hop_finding(cx: &Context<'_>, w: WorkloadId, blocked: &Blocked, message: String) -> Option<Finding> {
    let workload = cx.inventory.workload(w);
    if !cx.reports_on(workload.object) {
        return None;
    }
    let mut finding = cx.finding(&EgressGatewayBlocked::META, workload.object, workload.template, message);
    finding.related.push(cx.related(blocked.vs, "/spec/hosts", "the route through the gateway".to_owned()));
    Some(finding)
}

/// A blocked hop: the VirtualService routing it, why the L4 layers deny it, which sides a
/// NetworkPolicy allow would open (egress, ingress; `None` when another layer denies), and
/// the gateway (its object and the labels selecting its pods).
struct Blocked {
    vs: ObjectId,
    describe: String,
    why: String,
    fixable: Option<(bool, bool)>,
    gateway: Option<ObjectId>,
    gateway_labels: BTreeMap<String, String>,
}

/// The labels the Gateway selects its pods by, else the pod's own.
fn gateway_labels(
    hop: &crate::semantics::mesh::GatewayHop<'_>,
    pod: &crate::model::Workload,
) -> BTreeMap<String, String> {
    match hop.gateway.map(|g| &g.spec) {
        Some(crate::model::istio::MeshSpec::Gateway(spec)) if !spec.selector.is_empty() => spec.selector.clone(),
        _ => pod.labels.clone(),
    }
}

/// The policies opening a client → gateway hop: egress for the client, ingress for the
/// gateway, whichever NetworkPolicy isolation denies.
fn client_fix(cx: &Context<'_>, client: WorkloadId, pod: WorkloadId, port: i32, blocked: &Blocked) -> Option<Fix> {
    let (egress, ingress) = blocked.fixable?;
    let (c, g) = (cx.inventory.workload(client), cx.inventory.workload(pod));
    if c.labels.is_empty() || blocked.gateway_labels.is_empty() {
        return None;
    }
    let pick = |namespace: &str, base: String| {
        if cx.inventory.policy_name_taken(namespace, &base) { format!("portcullis-{base}") } else { base }
    };
    let ports = serde_json::json!([{"port": port, "protocol": "TCP"}]);
    let mut edits = Vec::new();
    if egress {
        let spec = serde_json::json!({
            "podSelector": {"matchLabels": c.labels},
            "policyTypes": ["Egress"],
            "egress": [{
                "to": [{
                    "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: g.namespace}},
                    "podSelector": {"matchLabels": blocked.gateway_labels},
                }],
                "ports": ports,
            }],
        });
        let name = pick(&c.namespace, format!("allow-{}-to-egress-gateway", c.name));
        edits.push(Edit::Create(crate::fix::generated_policy(&c.namespace, &name, "egress to the gateway", spec)));
    }
    if ingress {
        let spec = serde_json::json!({
            "podSelector": {"matchLabels": blocked.gateway_labels},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{
                    "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: c.namespace}},
                    "podSelector": {"matchLabels": c.labels},
                }],
                "ports": ports,
            }],
        });
        let name = pick(&g.namespace, format!("allow-{}-{}-to-egress-gateway", c.namespace, c.name));
        edits.push(Edit::Create(crate::fix::generated_policy(
            &g.namespace,
            &name,
            "ingress from a routed client",
            spec,
        )));
    }
    if edits.is_empty() {
        return None;
    }
    Some(Fix {
        description: format!("allow {} to reach the egress gateway on port {port}", super::workload_label(cx, client)),
        applicability: Applicability::Safe,
        edits,
    })
}
