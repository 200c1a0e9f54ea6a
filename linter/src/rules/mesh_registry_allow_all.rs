use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;

declare_rule! {
    /// ## What it does
    /// Finds `MESH_EXTERNAL` ServiceEntries that admit every destination rather than the hosts
    /// they name: a host `*`, or `resolution: NONE` with no `addresses` on a port Istio cannot
    /// tell hosts apart on (TCP and the other protocols that are neither HTTP nor TLS).
    ///
    /// ## Why is this bad?
    /// With `outboundTrafficPolicy: REGISTRY_ONLY` the registry is the mesh's egress allowlist.
    /// Istio's ServiceEntry reference says that when `addresses` is empty, traffic is matched
    /// by its destination port alone and the sidecar forwards it, as a plain TCP proxy, to the
    /// address the application asked for; only HTTP (Host header) and TLS (SNI) let the sidecar
    /// check the name. Such an entry therefore admits every address on its port, whatever its
    /// `hosts` say, and `*` admits every host outright: REGISTRY_ONLY reads as a lockdown while
    /// the registry allows all.
    ///
    /// ## Example
    /// ```yaml
    /// kind: ServiceEntry
    /// spec:
    ///   hosts: [db.example.com]
    ///   ports: [{number: 5432, name: tcp-postgres, protocol: TCP}]
    ///   resolution: NONE        # any address on 5432 passes
    /// ```
    ///
    /// Use instead: `resolution: DNS` (the sidecar connects to the host's own addresses), or
    /// the host's `addresses`, or a TLS port so the name is checked.
    ///
    /// ## Fix safety
    /// No automatic fix.
    pub struct MeshRegistryAllowAll {
        code: "PC029",
        name: "mesh-registry-allow-all",
        severity: Warning,
        fix: None,
    }
}

impl Rule for MeshRegistryAllowAll {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        let Some(mesh) = cx.mesh() else { return };
        for (o, spec) in mesh.entries() {
            if !spec.is_external() || !cx.reports_on(o.object) {
                continue;
            }
            if let Some(i) = spec.hosts.iter().position(|h| h == "*") {
                out.push(cx.finding(
                    &Self::META,
                    o.object,
                    &format!("/spec/hosts/{i}"),
                    format!("host `*` of {} admits every host on its ports: the registry allows all", o.describe()),
                ));
                continue;
            }
            if spec.resolution() != "NONE" || !spec.addresses.is_empty() {
                continue;
            }
            for (j, port) in spec.ports.iter().enumerate() {
                let Some(number) = port.number else { continue };
                if port.matches_by_name() {
                    continue;
                }
                out.push(cx.finding(
                    &Self::META,
                    o.object,
                    &format!("/spec/ports/{j}"),
                    format!(
                        "port {number} ({}) of {} admits every destination on {number}, not only {}: with resolution NONE and no addresses the sidecar forwards to whatever address was asked",
                        port.protocol(),
                        o.describe(),
                        super::first_few(spec.hosts.iter().cloned(), spec.hosts.len())
                    ),
                ));
            }
        }
    }
}
