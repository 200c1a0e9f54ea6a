//! Istio's egress objects (`networking.istio.io` `v1`, `v1beta1` and `v1alpha3`, which share one
//! schema): ServiceEntry, Sidecar, Gateway, VirtualService and DestinationRule, as Istio's
//! configuration reference defines them; the mesh-wide settings they are read against
//! (`MeshConfig` from the `istio` ConfigMap or an `IstioOperator`); and sidecar injection.
//! Only the fields that decide where a pod's traffic may go are read; the rest is ignored as
//! Istio's own validation leaves it to other features. What they mean for traffic is in
//! `semantics::mesh`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ObjectId;

/// The API group of every kind here.
pub const GROUP: &str = "networking.istio.io";
/// The versions served for the kinds read here (the same schema in each).
pub const VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];
/// `IstioOperator`'s API version (`spec.meshConfig` holds the mesh-wide settings).
pub const OPERATOR_API_VERSION: &str = "install.istio.io/v1alpha1";
/// The name of the ConfigMap holding `MeshConfig` under its `mesh` key.
pub const MESH_CONFIG_MAP: &str = "istio";
/// Istio's root namespace when `MeshConfig.rootNamespace` is not set.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

/// The reserved gateway name that stands for every sidecar in a VirtualService's `gateways`.
pub const MESH_GATEWAY: &str = "mesh";

/// The namespace label turning injection on (`enabled`) or off (`disabled`).
pub const NAMESPACE_INJECTION_LABEL: &str = "istio-injection";
/// The pod label (or, in older manifests, annotation) turning injection on (`"true"`) or off.
pub const POD_INJECTION_KEY: &str = "sidecar.istio.io/inject";
/// The revision label: on a namespace or pod, injection by that control-plane revision.
pub const REVISION_LABEL: &str = "istio.io/rev";
/// The ambient-mode label (`ambient` on a namespace or pod; `none` on a pod opts out).
pub const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";

/// The Istio kinds read here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IstioKind {
    ServiceEntry,
    Sidecar,
    Gateway,
    VirtualService,
    DestinationRule,
}

impl IstioKind {
    /// The kind for `apiVersion` + `kind`, when it is one of Istio's served versions.
    pub fn classify(api_version: &str, kind: &str) -> Option<IstioKind> {
        let (group, version) = api_version.split_once('/')?;
        if group != GROUP || !VERSIONS.contains(&version) {
            return None;
        }
        Some(match kind {
            "ServiceEntry" => IstioKind::ServiceEntry,
            "Sidecar" => IstioKind::Sidecar,
            "Gateway" => IstioKind::Gateway,
            "VirtualService" => IstioKind::VirtualService,
            "DestinationRule" => IstioKind::DestinationRule,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IstioKind::ServiceEntry => "ServiceEntry",
            IstioKind::Sidecar => "Sidecar",
            IstioKind::Gateway => "Gateway",
            IstioKind::VirtualService => "VirtualService",
            IstioKind::DestinationRule => "DestinationRule",
        }
    }
}

/// One Istio object of the input.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshObject {
    pub object: ObjectId,
    pub namespace: String,
    pub name: String,
    pub spec: MeshSpec,
}

impl MeshObject {
    /// How messages name it: `VirtualService default/direct-cnn`.
    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.spec.kind().as_str(), self.namespace, self.name)
    }
}

/// The spec of a [`MeshObject`], by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum MeshSpec {
    ServiceEntry(ServiceEntrySpec),
    Sidecar(SidecarSpec),
    Gateway(GatewaySpec),
    VirtualService(VirtualServiceSpec),
    DestinationRule(DestinationRuleSpec),
}

impl MeshSpec {
    pub fn kind(&self) -> IstioKind {
        match self {
            MeshSpec::ServiceEntry(_) => IstioKind::ServiceEntry,
            MeshSpec::Sidecar(_) => IstioKind::Sidecar,
            MeshSpec::Gateway(_) => IstioKind::Gateway,
            MeshSpec::VirtualService(_) => IstioKind::VirtualService,
            MeshSpec::DestinationRule(_) => IstioKind::DestinationRule,
        }
    }
}

/// `ServiceEntry.spec`: hosts added to the mesh's registry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntrySpec {
    /// DNS names, possibly with a wildcard prefix (`*.example.com`), or `*`.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Virtual addresses or CIDRs; empty means traffic is matched by port alone.
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// `MESH_EXTERNAL` (the default) or `MESH_INTERNAL`.
    pub location: Option<String>,
    /// `NONE` (the default), `STATIC`, `DNS` or `DNS_ROUND_ROBIN`.
    pub resolution: Option<String>,
    /// Namespaces the entry is visible to: `*` (the default), `.` (its own), `~` (none) or names.
    pub export_to: Option<Vec<String>>,
}

impl ServiceEntrySpec {
    /// Whether the hosts are outside the mesh (`location` unset or `MESH_EXTERNAL`).
    pub fn is_external(&self) -> bool {
        self.location.as_deref().is_none_or(|l| l == "MESH_EXTERNAL")
    }

    /// The resolution, `NONE` when unset.
    pub fn resolution(&self) -> &str {
        self.resolution.as_deref().unwrap_or("NONE")
    }
}

/// A port of a ServiceEntry or a Gateway server.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    pub number: Option<u32>,
    /// `HTTP`, `HTTPS`, `GRPC`, `HTTP2`, `MONGO`, `TCP`, `TLS`; unset is read from the name's
    /// prefix by Istio, else TCP.
    pub protocol: Option<String>,
    pub name: Option<String>,
    pub target_port: Option<u32>,
}

impl ServicePort {
    /// The protocol as Istio infers it: `protocol`, else the name's prefix before `-`
    /// (`http-web` is HTTP), else TCP; upper case.
    pub fn protocol(&self) -> String {
        if let Some(p) = &self.protocol {
            return p.to_ascii_uppercase();
        }
        let prefix = self.name.as_deref().map(|n| n.split('-').next().unwrap_or(n)).unwrap_or("");
        match prefix.to_ascii_lowercase().as_str() {
            p @ ("http" | "http2" | "https" | "grpc" | "grpc-web" | "tls" | "mongo" | "redis" | "mysql" | "tcp") => {
                p.to_ascii_uppercase()
            }
            _ => "TCP".to_owned(),
        }
    }

    /// Whether the sidecar tells this port's destinations apart by name (HTTP's Host header or
    /// TLS's SNI) rather than by address and port alone.
    pub fn matches_by_name(&self) -> bool {
        matches!(self.protocol().as_str(), "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" | "HTTPS" | "TLS")
    }
}

/// A `workloadSelector`: labels the pods must carry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct WorkloadSelector {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `Sidecar.spec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSpec {
    /// The pods it configures; absent, every pod of its namespace.
    pub workload_selector: Option<WorkloadSelector>,
    /// Egress listeners; absent, the pods see every host exported to their namespace.
    pub egress: Option<Vec<EgressListener>>,
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
}

/// An egress listener of a Sidecar.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct EgressListener {
    /// `namespace/dnsName` entries (`*/`, `./`, `~/` namespaces; wildcard names).
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// `outboundTrafficPolicy` of a Sidecar or of MeshConfig.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct OutboundTrafficPolicy {
    /// `ALLOW_ANY` or `REGISTRY_ONLY`.
    pub mode: Option<String>,
}

impl OutboundTrafficPolicy {
    /// Why the mode is not one Istio accepts (its API refuses any other value), if it is not.
    pub fn problem(&self) -> Option<String> {
        match self.mode.as_deref() {
            None | Some("ALLOW_ANY" | "REGISTRY_ONLY") => None,
            Some(other) => Some(format!("outboundTrafficPolicy.mode {other:?} is neither ALLOW_ANY nor REGISTRY_ONLY")),
        }
    }
}

/// `Gateway.spec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct GatewaySpec {
    /// Labels of the gateway's proxy pods (in any namespace, as Istio selects by default).
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    #[serde(default)]
    pub servers: Vec<GatewayServer>,
}

/// A server of a Gateway.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct GatewayServer {
    pub port: Option<ServicePort>,
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// `VirtualService.spec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualServiceSpec {
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Gateways (`name` or `namespace/name`) and `mesh`; absent, `mesh` alone.
    pub gateways: Option<Vec<String>>,
    #[serde(default)]
    pub http: Vec<Route>,
    #[serde(default)]
    pub tls: Vec<Route>,
    #[serde(default)]
    pub tcp: Vec<Route>,
    pub export_to: Option<Vec<String>>,
}

/// An `http`, `tls` or `tcp` route: the fields of the three that decide where traffic goes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Route {
    #[serde(default, rename = "match")]
    pub matches: Vec<RouteMatch>,
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// A route's `match` item.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RouteMatch {
    /// Restricts the match to these gateways (`mesh` for sidecars).
    pub gateways: Option<Vec<String>>,
    pub port: Option<u32>,
}

/// A route's destination.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RouteDestination {
    pub destination: Option<Destination>,
}

/// Where a route sends traffic.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Destination {
    #[serde(default)]
    pub host: String,
    pub port: Option<PortSelector>,
}

/// `destination.port`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PortSelector {
    pub number: Option<u32>,
}

/// `DestinationRule.spec`: read for TLS origination (the upstream port's `tls.mode`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRuleSpec {
    #[serde(default)]
    pub host: String,
    pub traffic_policy: Option<TrafficPolicy>,
    pub export_to: Option<Vec<String>>,
}

/// `trafficPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    pub tls: Option<ClientTls>,
    #[serde(default)]
    pub port_level_settings: Vec<PortTrafficPolicy>,
}

/// A port-level traffic policy.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PortTrafficPolicy {
    pub port: Option<PortSelector>,
    pub tls: Option<ClientTls>,
}

/// `tls` of a traffic policy: `SIMPLE` or `MUTUAL` originate TLS.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ClientTls {
    pub mode: Option<String>,
}

/// The part of `MeshConfig` read here.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshConfig {
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    pub root_namespace: Option<String>,
    pub default_service_export_to: Option<Vec<String>>,
    pub default_virtual_service_export_to: Option<Vec<String>>,
}

/// Where the mesh-wide settings were read.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshSettings {
    pub object: ObjectId,
    /// `ConfigMap istio-system/istio (data.mesh)`, for messages.
    pub source: String,
    pub config: MeshConfig,
}

/// Whether a sidecar is injected into a pod, by the logic of Istio's "Installing the Sidecar"
/// page (`enableNamespacesByDefault` off, its default):
/// 1. if the namespace's `istio-injection` is `disabled` or the pod's `sidecar.istio.io/inject`
///    is `"false"`, no;
/// 2. else if the namespace's `istio-injection` is `enabled`, the namespace or pod carries an
///    `istio.io/rev` label, or the pod's `sidecar.istio.io/inject` is `"true"`, yes;
/// 3. else no.
///
/// `istio-injection` takes precedence over `istio.io/rev` on a namespace (rule 1 and 2 give
/// that). The pod's label is read before its annotation of the same key, which older manifests
/// use and the injector still honours.
pub fn injected(
    namespace_labels: &BTreeMap<String, String>,
    pod_labels: &BTreeMap<String, String>,
    pod_annotation: Option<&str>,
) -> Injection {
    let pod = pod_labels.get(POD_INJECTION_KEY).map(String::as_str).or(pod_annotation);
    let namespace = namespace_labels.get(NAMESPACE_INJECTION_LABEL).map(String::as_str);
    if namespace == Some("disabled") {
        return Injection::No("the namespace is labelled istio-injection=disabled");
    }
    if pod == Some("false") {
        return Injection::No("sidecar.istio.io/inject is \"false\"");
    }
    if namespace == Some("enabled")
        || namespace_labels.contains_key(REVISION_LABEL)
        || pod_labels.contains_key(REVISION_LABEL)
        || pod == Some("true")
    {
        return Injection::Yes;
    }
    Injection::No("neither the namespace nor the pods enable injection")
}

/// The answer of [`injected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    Yes,
    /// Not injected, and why.
    No(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// The truth table of Istio's "Controlling the injection policy", written from the page
    /// before the code: namespace label × pod label.
    #[test]
    fn injection_follows_istios_table() {
        let ns_values: [&[(&str, &str)]; 5] = [
            &[],
            &[("istio-injection", "enabled")],
            &[("istio-injection", "disabled")],
            &[("istio.io/rev", "canary")],
            &[("istio-injection", "disabled"), ("istio.io/rev", "canary")],
        ];
        let pod_values: [&[(&str, &str)]; 4] = [
            &[],
            &[("sidecar.istio.io/inject", "true")],
            &[("sidecar.istio.io/inject", "false")],
            &[("istio.io/rev", "canary")],
        ];
        // Rows: namespace (none, enabled, disabled, rev, disabled+rev); columns: pod (none,
        // true, false, rev).
        let expected = [
            [false, true, false, true],
            [true, true, false, true],
            [false, false, false, false],
            [true, true, false, true],
            [false, false, false, false],
        ];
        for (i, ns) in ns_values.iter().enumerate() {
            for (j, pod) in pod_values.iter().enumerate() {
                let got = injected(&labels(ns), &labels(pod), None) == Injection::Yes;
                assert_eq!(got, expected[i][j], "namespace {ns:?}, pod {pod:?}");
            }
        }
    }

    #[test]
    fn the_annotation_counts_when_no_label_says_otherwise() {
        let enabled = labels(&[("istio-injection", "enabled")]);
        assert_eq!(
            injected(&enabled, &labels(&[]), Some("false")),
            Injection::No("sidecar.istio.io/inject is \"false\"")
        );
        assert_eq!(injected(&labels(&[]), &labels(&[]), Some("true")), Injection::Yes);
        // The label is read first.
        assert_eq!(
            injected(&labels(&[]), &labels(&[("sidecar.istio.io/inject", "true")]), Some("false")),
            Injection::Yes
        );
    }

    #[test]
    fn only_istios_group_and_versions_are_read() {
        assert_eq!(IstioKind::classify("networking.istio.io/v1", "ServiceEntry"), Some(IstioKind::ServiceEntry));
        assert_eq!(IstioKind::classify("networking.istio.io/v1alpha3", "Gateway"), Some(IstioKind::Gateway));
        assert_eq!(IstioKind::classify("networking.istio.io/v2", "Gateway"), None);
        assert_eq!(IstioKind::classify("gateway.networking.k8s.io/v1", "Gateway"), None);
        assert_eq!(IstioKind::classify("networking.istio.io/v1", "EnvoyFilter"), None);
    }

    #[test]
    fn port_protocols_are_inferred_as_istio_does() {
        let port = |protocol: Option<&str>, name: Option<&str>| ServicePort {
            number: Some(80),
            protocol: protocol.map(str::to_owned),
            name: name.map(str::to_owned),
            target_port: None,
        };
        assert_eq!(port(Some("https"), None).protocol(), "HTTPS");
        assert_eq!(port(None, Some("http-web")).protocol(), "HTTP");
        assert_eq!(port(None, Some("web")).protocol(), "TCP");
        assert_eq!(port(None, None).protocol(), "TCP");
        assert!(port(Some("TLS"), None).matches_by_name());
        assert!(!port(Some("TCP"), None).matches_by_name());
        assert!(!port(Some("MONGO"), None).matches_by_name());
    }
}
