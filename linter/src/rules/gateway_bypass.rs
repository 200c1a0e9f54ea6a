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

/// What one VirtualService's routes through a gateway leave open for one workload.
struct Bypass {
    describe: String,
    gateway: String,
    /// `host:port` the pods reach directly, and why (each reason once).
    hosts: Vec<String>,
    why: Vec<String>,
    /// Whether nothing isolates the pods' egress (the only case with a fix).
    open: bool,
    /// The gateway's pods as a peer (namespace, labels) and their ports, when known.
    peer: Option<(String, BTreeMap<String, String>)>,
    ports: std::collections::BTreeSet<i32>,
}

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
                let entry = bypassed.entry(vs.object).or_insert_with(|| Bypass {
                    describe: vs.describe(),
                    gateway: format!("{}:{}", hop.service_host, hop.service_port),
                    hosts: Vec::new(),
                    why: Vec::new(),
                    open: true,
                    peer: gateway_peer(inv, &hop),
                    ports: std::collections::BTreeSet::new(),
                });
                entry.hosts.push(format!("{}:{}", t.host, t.port));
                let why = l4_reason(inv, &direct, Direction::Egress);
                if !entry.why.contains(&why) {
                    entry.why.push(why);
                }
                entry.open &= direct.decided() == Decided::Default;
                entry.ports.extend(hop.pod_port(inv, hop.pods.first().copied()));
            }
            for (vs, bypass) in bypassed {
                let Bypass { describe, gateway, hosts, why, .. } = &bypass;
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
                finding.fix = fix(cx, id, &bypass);
                out.push(finding);
            }
        }
    }
}

/// The gateway's pods as a NetworkPolicy peer: their namespace and the labels the Gateway
/// selects them by (else the Service's selector); `None` when neither is known.
fn gateway_peer(
    inv: &crate::model::Inventory,
    hop: &crate::semantics::mesh::GatewayHop<'_>,
) -> Option<(String, BTreeMap<String, String>)> {
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

/// A policy isolating the workload's egress to DNS and the gateway (see "Fix safety").
fn fix(cx: &Context<'_>, id: WorkloadId, bypass: &Bypass) -> Option<Fix> {
    let w = cx.inventory.workload(id);
    let (namespace, labels) = bypass.peer.as_ref()?;
    if !bypass.open || w.labels.is_empty() || bypass.ports.is_empty() {
        return None;
    }
    let base = format!("egress-via-gateway-{}", w.name);
    let name = if cx.inventory.policy_name_taken(&w.namespace, &base) { format!("portcullis-{base}") } else { base };
    let ports: Vec<serde_json::Value> =
        bypass.ports.iter().map(|p| serde_json::json!({"port": p, "protocol": "TCP"})).collect();
    let spec = serde_json::json!({
        "podSelector": {"matchLabels": w.labels},
        "policyTypes": ["Egress"],
        "egress": [
            crate::fix::dns_egress_rule(&cx.config.dns),
            {
                "to": [{
                    "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}},
                    "podSelector": {"matchLabels": labels},
                }],
                "ports": ports,
            },
        ],
    });
    let policy = crate::fix::generated_policy(&w.namespace, &name, "egress through the gateway", spec);
    Some(Fix {
        description: format!("isolate the egress of {} to DNS and the egress gateway", super::workload_label(cx, id)),
        applicability: Applicability::Unsafe,
        edits: vec![Edit::Create(policy)],
    })
}
