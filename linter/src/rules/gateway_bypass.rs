use std::collections::BTreeMap;

use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::{Applicability, Edit, Finding, Fix};
use crate::model::{NAMESPACE_NAME_LABEL, ObjectId, WorkloadId};
use crate::semantics::mesh::{Proxy, Route, l4_reason};
use crate::semantics::{Decided, Direction, Endpoint};

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
    /// Unsafe, and offered only when no policy isolates the workload's egress: a new
    /// NetworkPolicy selecting its pods allows cluster DNS and the gateway's pods on the routed
    /// ports, and nothing else. Every other destination the pods reach today (in-cluster
    /// services included) is then denied until allowed. When a policy already allows the host,
    /// adding one cannot take that away (allows add up): that rule must be narrowed by hand.
    pub struct GatewayBypass {
        code: "PC025",
        name: "gateway-bypass",
        severity: Warning,
        fix: Unsafe,
    }
}

/// What the mesh's routes through egress gateways leave open for one workload.
#[derive(Default)]
struct Bypass {
    /// The VirtualServices routing the hosts, each once, in the order met.
    routes: Vec<ObjectId>,
    /// The gateways (service host and port), each once.
    gateways: Vec<(String, u32)>,
    /// The targets the pods reach directly (indexes into [`crate::semantics::mesh::Mesh::targets`]),
    /// and why (each reason once).
    hosts: Vec<usize>,
    why: Vec<String>,
    /// Whether nothing isolates the pods' egress (the only case with a fix).
    open: bool,
    /// Each gateway's pods as a peer with their ports, when known.
    peers: Vec<(Peer, std::collections::BTreeSet<i32>)>,
}

/// Pods as a NetworkPolicy peer: their namespace and labels.
type Peer = (String, BTreeMap<String, String>);

impl Rule for GatewayBypass {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        let Some((mesh, targets)) = cx.mesh_targets() else { return };
        let inv = cx.inventory;
        for (i, w) in inv.workloads.iter().enumerate() {
            let id = WorkloadId(i);
            if !cx.reports_on(w.object) || !matches!(mesh.proxy(id), Proxy::Sidecar) {
                continue;
            }
            let Some(routes) = mesh.routes_of(id) else { continue };
            if !routes.iter().any(|r| matches!(r, Route::ViaGateway(_))) {
                continue;
            }
            let egress = mesh.egress_of(id);
            let mut bypass = Bypass { open: true, ..Bypass::default() };
            // Reasons are worked out once per deciding layer and rule.
            let mut reasons = Vec::new();
            for (k, (t, route)) in targets.iter().zip(routes.iter()).enumerate() {
                let Route::ViaGateway(hop) = route else { continue };
                let Some(direct) = egress.judge(&Endpoint::Name(&t.host), t.port) else { continue };
                if !direct.allowed() {
                    continue;
                }
                let vs = hop.virtual_service.object;
                if !bypass.routes.contains(&vs) {
                    bypass.routes.push(vs);
                }
                let gateway = (hop.service_host.as_str(), hop.service_port);
                if !bypass.gateways.iter().any(|(h, p)| (h.as_str(), *p) == gateway) {
                    bypass.gateways.push((hop.service_host.clone(), hop.service_port));
                }
                bypass.hosts.push(k);
                let reason_key =
                    (direct.decided(), direct.allowed_by.first().copied(), direct.cilium.allowed_by.first().copied());
                if !reasons.contains(&reason_key) {
                    reasons.push(reason_key);
                    let why = l4_reason(inv, &direct, Direction::Egress);
                    if !bypass.why.contains(&why) {
                        bypass.why.push(why);
                    }
                }
                bypass.open &= direct.decided() == Decided::Default;
                match gateway_peer(inv, hop) {
                    Some(peer) => {
                        let ports = hop.pod_port(inv, hop.pods.first().copied());
                        match bypass.peers.iter_mut().find(|(p, _)| *p == peer) {
                            Some((_, known)) => known.extend(ports),
                            None => bypass.peers.push((peer, ports.into_iter().collect())),
                        }
                    }
                    None => bypass.open = false,
                }
            }
            let Some(&first_route) = bypass.routes.first() else { continue };
            let named = bypass.hosts.iter().filter_map(|&k| targets.get(k).map(|t| format!("{}:{}", t.host, t.port)));
            let hosts = super::first_few(named, bypass.hosts.len());
            let gateways: Vec<String> = bypass.gateways.iter().map(|(h, p)| format!("{h}:{p}")).collect();
            let routes = match bypass.routes.len() {
                1 => format!("VirtualService {} routes", describe_object(inv, first_route)),
                n => format!("{n} VirtualServices route"),
            };
            let mut finding = cx.finding(
                &Self::META,
                w.object,
                w.template,
                format!(
                    "pods of {} can skip the egress gateway: {routes} their sidecar traffic to {hosts} through {}, yet nothing at L4 keeps them from going there directly ({}); isolate their egress and allow the gateway instead",
                    super::workload_label(cx, id),
                    gateways.join(", "),
                    bypass.why.join("; "),
                ),
            );
            for &vs in bypass.routes.iter().take(super::NAMED_IN_MESSAGE) {
                finding.related.push(cx.related(vs, "/spec/hosts", "a route through the gateway".to_owned()));
            }
            finding.fix = fix(cx, id, &bypass);
            out.push(finding);
        }
    }
}

/// `namespace/name` of an object.
fn describe_object(inv: &crate::model::Inventory, object: ObjectId) -> String {
    let o = inv.object(object);
    format!("{}/{}", o.namespace().unwrap_or(""), o.id.name)
}

/// The gateway's pods as a NetworkPolicy peer: their namespace and the labels the Gateway
/// selects them by (else the Service's selector); `None` when neither is known.
fn gateway_peer(inv: &crate::model::Inventory, hop: &crate::semantics::mesh::GatewayHop<'_>) -> Option<Peer> {
    let selector = match hop.gateway.map(|g| &g.spec) {
        Some(crate::model::istio::MeshSpec::Gateway(spec)) if !spec.selector.is_empty() => Some(spec.selector.clone()),
        _ => hop.service.and_then(|s| s.selector.clone()).filter(|s| !s.is_empty()),
    }?;
    let namespace = match (hop.pods.first(), hop.service) {
        (Some(&pod), _) => inv.workload(pod).namespace.clone(),
        (None, Some(service)) => service.namespace.clone(),
        (None, None) => hop.service_host.split('.').nth(1)?.to_owned(),
    };
    Some((namespace, selector))
}

/// A policy isolating the workload's egress to DNS and the gateways (see "Fix safety").
fn fix(cx: &Context<'_>, id: WorkloadId, bypass: &Bypass) -> Option<Fix> {
    let w = cx.inventory.workload(id);
    if !bypass.open || w.labels.is_empty() || bypass.peers.iter().any(|(_, ports)| ports.is_empty()) {
        return None;
    }
    let base = format!("egress-via-gateway-{}", w.name);
    let name = if cx.inventory.policy_name_taken(&w.namespace, &base) { format!("portcullis-{base}") } else { base };
    let mut egress = vec![crate::fix::dns_egress_rule(&cx.config.dns)];
    for ((namespace, labels), ports) in &bypass.peers {
        let ports: Vec<serde_json::Value> =
            ports.iter().map(|p| serde_json::json!({"port": p, "protocol": "TCP"})).collect();
        egress.push(serde_json::json!({
            "to": [{
                "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}},
                "podSelector": {"matchLabels": labels},
            }],
            "ports": ports,
        }));
    }
    let spec = serde_json::json!({
        "podSelector": {"matchLabels": w.labels},
        "policyTypes": ["Egress"],
        "egress": egress,
    });
    let policy = crate::fix::generated_policy(&w.namespace, &name, "egress through the gateway", spec);
    Some(Fix {
        description: format!("isolate the egress of {} to DNS and the egress gateway", super::workload_label(cx, id)),
        applicability: Applicability::Unsafe,
        edits: vec![Edit::Create(policy)],
    })
}
