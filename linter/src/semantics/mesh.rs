//! What Istio's egress objects mean for a pod's traffic, beside (not inside) the L4 verdict.
//!
//! The L4 layers (ClusterNetworkPolicy, NetworkPolicy, Cilium, Calico) answer whether a packet
//! may pass, combined in one place ([`super::DirectionVerdict::decided`]). Istio answers two other
//! questions for a pod with a sidecar: which *hosts* it may reach (`outboundTrafficPolicy`
//! `ALLOW_ANY`, Istio's default, or `REGISTRY_ONLY`, where only hosts of the registry visible to
//! the pod are reached) and *through which hop* (a VirtualService bound to `mesh` may send a host
//! to an egress gateway's Service first). [`Mesh::route`] gives that answer; each hop of a route is
//! then an L4 question asked of the one evaluator ([`Mesh::l4_to_pod`]), so rules never judge packets
//! here. Istio's egress-gateway task says the mesh cannot make traffic use the gateway, only the
//! L4 layers can: the rules built on this module check one layer against the other.
//!
//! Ambient mode (`istio.io/dataplane-mode: ambient`) sends egress through the node's ztunnel and
//! waypoints, which this module does not model: such pods are [`Proxy::Ambient`] and rules leave
//! them alone.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::selector::labels_match;
use super::{Decided, DirectionVerdict, Endpoint, Evaluator, Traffic};
use crate::model::istio::{
    self, DEFAULT_ROOT_NAMESPACE, Injection, MESH_GATEWAY, MeshObject, MeshSettings, MeshSpec, ServiceEntrySpec,
    SidecarSpec, VirtualServiceSpec,
};
use crate::model::{Inventory, Protocol, ServiceFacts, WorkloadId};

/// `outboundTrafficPolicy.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    AllowAny,
    RegistryOnly,
}

/// The outbound mode of a pod and what set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMode {
    pub mode: Outbound,
    /// `Sidecar shop/default`, `ConfigMap istio-system/istio (data.mesh)`, or
    /// `Istio's default`.
    pub set_by: String,
}

/// What proxies a workload's pods.
#[derive(Debug, Clone, PartialEq)]
pub enum Proxy<'a> {
    /// An injected sidecar: the mesh's routes and registry apply.
    Sidecar,
    /// A gateway's proxy pods: the Gateways selecting them.
    Gateway(Vec<&'a MeshObject>),
    /// Ambient mode (not modelled).
    Ambient,
    /// No proxy, and why.
    None(&'static str),
}

/// Where a meshed pod's connection to an external host goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Route<'a> {
    /// Straight to the host, on `port`. `via` is what changed the port, if anything: a
    /// VirtualService's destination port, or a ServiceEntry port's `targetPort` (TLS
    /// origination: the application speaks HTTP on 80, the sidecar HTTPS on 443).
    Direct { port: u32, via: Option<&'a MeshObject> },
    /// To an egress gateway first.
    /// To an egress gateway first (shared: the same hop serves every pod routed there).
    ViaGateway(std::sync::Arc<GatewayHop<'a>>),
    /// `REGISTRY_ONLY` and no ServiceEntry visible to the pod admits the host on the port.
    Refused { set_by: String },
    /// The pod has no sidecar: the mesh does not see its traffic.
    NotMeshed,
}

/// The gateway hop of a route.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayHop<'a> {
    /// The VirtualService routing the host to the gateway.
    pub virtual_service: &'a MeshObject,
    /// The destination host of the sidecar's route (the gateway's Service).
    pub service_host: String,
    /// The Service's port the sidecar connects to.
    pub service_port: u32,
    /// The Service, when it is in the input.
    pub service: Option<&'a ServiceFacts>,
    /// The gateway's pods, when they are in the input.
    pub pods: Vec<WorkloadId>,
    /// The Gateway bound by the VirtualService that selects those pods, when known.
    pub gateway: Option<&'a MeshObject>,
    /// The port the gateway connects to the host on.
    pub upstream_port: u32,
}

impl GatewayHop<'_> {
    /// The container port of gateway pod `pod` behind the Service port (its `targetPort`,
    /// named ports resolved against the pod's ports, so not known without the pod); the
    /// Service port when the Service is not in the input.
    pub fn pod_port(&self, inv: &Inventory, pod: Option<WorkloadId>) -> Option<i32> {
        let Some(service) = self.service else { return i32::try_from(self.service_port).ok() };
        let (_, target) = service.ports.iter().find(|(port, _)| i64::from(*port) == i64::from(self.service_port))?;
        match target {
            IntOrString::Int(n) => Some(*n),
            IntOrString::String(name) => {
                inv.workload(pod?).ports.iter().find(|p| p.name.as_deref() == Some(name.as_str())).map(|p| p.port)
            }
        }
    }
}

/// A destination outside the cluster the mesh has a say about: a host of a ServiceEntry, of a
/// VirtualService, or of an EgressIntent, on one port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub host: String,
    pub port: u32,
}

/// Istio's egress objects of one input, indexed for [`Mesh::route`]: rules ask for every
/// meshed workload and every external host, so what does not depend on the workload is
/// computed once (each workload's proxy, the objects by host, and each route per namespace and
/// Sidecar, memoised).
#[derive(Debug)]
pub struct Mesh<'a> {
    inv: &'a Inventory,
    settings: Option<&'a MeshSettings>,
    root: &'a str,
    entries: Vec<(&'a MeshObject, &'a ServiceEntrySpec)>,
    sidecars: Vec<(&'a MeshObject, &'a SidecarSpec)>,
    gateways: Vec<&'a MeshObject>,
    virtual_services: Vec<(&'a MeshObject, &'a VirtualServiceSpec)>,
    /// [`Mesh::proxy`] of each workload, by [`WorkloadId`].
    proxies: Vec<Proxy<'a>>,
    /// Indexes into `virtual_services` and `entries` of the objects naming a host exactly
    /// (lower case), and of those with a wildcard host, each in input order.
    vs_hosts: HostIndex,
    entry_hosts: HostIndex,
    /// The routes to every [`Mesh::targets`] already worked out, by what they depend on
    /// besides the host and port: the pod's namespace and the Sidecars configuring it.
    routes: std::sync::Mutex<HashMap<RouteKey, std::sync::Arc<[Route<'a>]>>>,
    /// See [`Mesh::targets`].
    targets: std::sync::OnceLock<Vec<Target>>,
    /// Gateway hops already worked out, by VirtualService, destination, port and host.
    hops: std::sync::Mutex<HashMap<HopKey, std::sync::Arc<GatewayHop<'a>>>>,
}

/// How many routes [`Mesh::routes_of`] keeps (about 32 bytes each).
const MAX_MEMO_ROUTES: usize = 2_000_000;

/// A gateway hop's inputs: the VirtualService (its index), the destination and its port, the
/// host.
type HopKey = (usize, String, u32, String);

/// What a meshed pod's routes depend on: its namespace and its Sidecars (most specific first).
type RouteKey = (String, Vec<crate::model::ObjectId>);

/// Objects by the hosts they name.
#[derive(Debug, Default)]
struct HostIndex {
    exact: HashMap<String, Vec<usize>>,
    wildcard: Vec<usize>,
}

impl HostIndex {
    fn new<'h>(hosts: impl Iterator<Item = (usize, &'h [String])>) -> HostIndex {
        let mut index = HostIndex::default();
        for (i, names) in hosts {
            for name in names {
                if name.contains('*') {
                    if index.wildcard.last() != Some(&i) {
                        index.wildcard.push(i);
                    }
                } else {
                    let list = index.exact.entry(name.trim_end_matches('.').to_ascii_lowercase()).or_default();
                    if list.last() != Some(&i) {
                        list.push(i);
                    }
                }
            }
        }
        index
    }

    /// The objects that may name `host`, in input order.
    fn candidates(&self, host: &str) -> Vec<usize> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let mut out: Vec<usize> = self.exact.get(&host).into_iter().flatten().copied().collect();
        out.extend(&self.wildcard);
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl<'a> Mesh<'a> {
    /// The mesh of an input; `None` when it holds no Istio object and no mesh settings, so
    /// inputs without Istio pay nothing.
    pub fn new(inv: &'a Inventory) -> Option<Mesh<'a>> {
        if inv.mesh_objects.is_empty() && inv.mesh_settings.is_empty() {
            return None;
        }
        // istiod reads the ConfigMap; an IstioOperator is what generates it.
        let settings =
            inv.mesh_settings.iter().find(|s| s.source.starts_with("ConfigMap")).or_else(|| inv.mesh_settings.first());
        let root = settings.and_then(|s| s.config.root_namespace.as_deref()).unwrap_or(DEFAULT_ROOT_NAMESPACE);
        let mut mesh = Mesh {
            inv,
            settings,
            root,
            entries: Vec::new(),
            sidecars: Vec::new(),
            gateways: Vec::new(),
            virtual_services: Vec::new(),
            proxies: Vec::new(),
            vs_hosts: HostIndex::default(),
            entry_hosts: HostIndex::default(),
            routes: std::sync::Mutex::new(HashMap::new()),
            targets: std::sync::OnceLock::new(),
            hops: std::sync::Mutex::new(HashMap::new()),
        };
        for o in &inv.mesh_objects {
            match &o.spec {
                MeshSpec::ServiceEntry(s) => mesh.entries.push((o, s)),
                MeshSpec::Sidecar(s) => mesh.sidecars.push((o, s)),
                MeshSpec::Gateway(_) => mesh.gateways.push(o),
                MeshSpec::VirtualService(s) => mesh.virtual_services.push((o, s)),
                MeshSpec::DestinationRule(_) => {}
            }
        }
        mesh.vs_hosts = HostIndex::new(mesh.virtual_services.iter().enumerate().map(|(i, (_, s))| (i, &s.hosts[..])));
        mesh.entry_hosts = HostIndex::new(mesh.entries.iter().enumerate().map(|(i, (_, s))| (i, &s.hosts[..])));
        mesh.proxies = (0..inv.workloads.len()).map(|w| mesh.find_proxy(WorkloadId(w))).collect();
        Some(mesh)
    }

    /// The ServiceEntries.
    pub fn entries(&self) -> impl Iterator<Item = (&'a MeshObject, &'a ServiceEntrySpec)> + '_ {
        self.entries.iter().copied()
    }

    /// What proxies workload `w`'s pods: a Gateway's selector (in any namespace, as Istio
    /// selects by default), else an injected sidecar ([`istio::injected`]), else ambient mode.
    pub fn proxy(&self, w: WorkloadId) -> Proxy<'a> {
        match self.proxies.get(w.0) {
            Some(proxy) => proxy.clone(),
            None => self.find_proxy(w),
        }
    }

    fn find_proxy(&self, w: WorkloadId) -> Proxy<'a> {
        let workload = self.inv.workload(w);
        let gateways: Vec<&'a MeshObject> = self
            .gateways
            .iter()
            .copied()
            .filter(|g| match &g.spec {
                MeshSpec::Gateway(spec) => !spec.selector.is_empty() && labels_match(&spec.selector, &workload.labels),
                _ => false,
            })
            .collect();
        if !gateways.is_empty() {
            return Proxy::Gateway(gateways);
        }
        if workload.host_network {
            return Proxy::None("host network: Istio never injects such pods");
        }
        let ns_labels = self.namespace_labels(&workload.namespace);
        match istio::injected(ns_labels, &workload.labels, workload.inject_annotation.as_deref()) {
            Injection::Yes => Proxy::Sidecar,
            Injection::No(why) => {
                let pod_mode = workload.labels.get(istio::DATAPLANE_MODE_LABEL).map(String::as_str);
                let ns_mode = ns_labels.get(istio::DATAPLANE_MODE_LABEL).map(String::as_str);
                if pod_mode == Some("ambient") || (ns_mode == Some("ambient") && pod_mode != Some("none")) {
                    Proxy::Ambient
                } else {
                    Proxy::None(why)
                }
            }
        }
    }

    fn namespace_labels(&self, namespace: &str) -> &'a BTreeMap<String, String> {
        Evaluator::new(self.inv).namespace_labels(namespace)
    }

    /// The Sidecar resource configuring workload `w`: one in its namespace whose
    /// `workloadSelector` matches its pods, else its namespace's one without a selector, else
    /// the root namespace's one without a selector. Istio leaves several matches undefined;
    /// the first in input order is taken.
    pub fn sidecar(&self, w: WorkloadId) -> Option<&'a MeshObject> {
        self.sidecar_chain(w).into_iter().next()
    }

    /// The Sidecars that can configure `w`, most specific first (selected, namespace-wide,
    /// root namespace's).
    fn sidecar_chain(&self, w: WorkloadId) -> Vec<&'a MeshObject> {
        let workload = self.inv.workload(w);
        let own = workload.namespace.as_str();
        let selected = self.sidecars.iter().find(|(o, s)| {
            o.namespace == own
                && s.workload_selector.as_ref().is_some_and(|sel| labels_match(&sel.labels, &workload.labels))
        });
        let wide = |ns: &str| self.sidecars.iter().find(|(o, s)| o.namespace == ns && s.workload_selector.is_none());
        let namespace_wide = wide(own);
        let root = if self.root == own { None } else { wide(self.root) };
        [selected, namespace_wide, root].into_iter().flatten().map(|(o, _)| *o).collect()
    }

    /// The outbound mode of workload `w`'s sidecar: the most specific Sidecar that sets one
    /// (Istio's Sidecar reference: unset, it inherits the namespace-wide or the global default
    /// Sidecar's), else the mesh-wide setting, else `ALLOW_ANY`, Istio's default.
    pub fn outbound(&self, w: WorkloadId) -> OutboundMode {
        for o in self.sidecar_chain(w) {
            let MeshSpec::Sidecar(spec) = &o.spec else { continue };
            if let Some(mode) = spec.outbound_traffic_policy.as_ref().and_then(|p| p.mode.as_deref()) {
                return OutboundMode { mode: parse_mode(mode), set_by: o.describe() };
            }
        }
        if let Some(settings) = self.settings
            && let Some(mode) = settings.config.outbound_traffic_policy.as_ref().and_then(|p| p.mode.as_deref())
        {
            return OutboundMode { mode: parse_mode(mode), set_by: settings.source.clone() };
        }
        OutboundMode { mode: Outbound::AllowAny, set_by: "Istio's default".to_owned() }
    }

    /// The ServiceEntry visible to workload `w` that admits `host` on `port`: exported to the
    /// pod's namespace (`exportTo`, or the mesh's `defaultServiceExportTo`, or every
    /// namespace) and, when the pod's Sidecar lists egress hosts, among them.
    pub fn registry_entry(&self, w: WorkloadId, host: &str, port: u32) -> Option<&'a MeshObject> {
        let namespace = self.inv.workload(w).namespace.as_str();
        let listed = self.sidecar(w).and_then(|o| match &o.spec {
            MeshSpec::Sidecar(s) => s.egress.as_ref().map(|e| (o, e)),
            _ => None,
        });
        self.entry_hosts.candidates(host).into_iter().find_map(|i| {
            let (o, spec) = self.entries.get(i)?;
            let exported = self.exported(spec.export_to.as_deref(), &o.namespace, namespace, true);
            let admits =
                spec.hosts.iter().any(|h| host_matches(h, host)) && spec.ports.iter().any(|p| p.number == Some(port));
            // A listener host narrows what it imports: the host asked for must match both the
            // entry's host and the listener's.
            let in_sidecar = listed.is_none_or(|(sidecar, listeners)| {
                listeners.iter().flat_map(|l| &l.hosts).any(|entry| {
                    let (ns, name) = entry.split_once('/').unwrap_or(("*", entry));
                    let ns_ok = match ns {
                        "*" => true,
                        "." => o.namespace == sidecar.namespace,
                        "~" => false,
                        ns => ns == o.namespace,
                    };
                    ns_ok && host_matches(name, host)
                })
            });
            (exported && admits && in_sidecar).then_some(*o)
        })
    }

    /// Whether an object of `owner` with `export_to` is visible in `namespace`.
    fn exported(&self, export_to: Option<&[String]>, owner: &str, namespace: &str, service: bool) -> bool {
        let default = self.settings.and_then(|s| match service {
            true => s.config.default_service_export_to.as_deref(),
            false => s.config.default_virtual_service_export_to.as_deref(),
        });
        let Some(list) = export_to.filter(|l| !l.is_empty()).or(default) else { return true };
        list.iter().any(|e| match e.as_str() {
            "*" => true,
            "." => owner == namespace,
            "~" => false,
            ns => ns == namespace,
        })
    }

    /// Where workload `w`'s connection to external `host` on `port` goes.
    pub fn route(&self, w: WorkloadId, host: &str, port: u32) -> Route<'a> {
        if !matches!(self.proxy(w), Proxy::Sidecar) {
            return Route::NotMeshed;
        }
        self.find_route(w, host, port)
    }

    /// [`Mesh::route`] to each of [`Mesh::targets`], in their order; `None` for a workload
    /// without a sidecar. Worked out once per namespace and Sidecars, as routes depend on
    /// nothing else of the pod.
    pub fn routes_of(&self, w: WorkloadId) -> Option<std::sync::Arc<[Route<'a>]>> {
        if !matches!(self.proxy(w), Proxy::Sidecar) {
            return None;
        }
        let key: RouteKey =
            (self.inv.workload(w).namespace.clone(), self.sidecar_chain(w).iter().map(|o| o.object).collect());
        if let Some(routes) = self.routes.lock().ok().and_then(|memo| memo.get(&key).cloned()) {
            return Some(routes);
        }
        let routes: std::sync::Arc<[Route<'a>]> =
            self.targets().iter().map(|t| self.find_route(w, &t.host, t.port)).collect();
        // Kept while the memo stays small (classes × targets can grow as namespaces × hosts);
        // past that, routes are worked out again per workload: slower, never more memory.
        if let Ok(mut memo) = self.routes.lock()
            && (memo.len() + 1).saturating_mul(routes.len()) <= MAX_MEMO_ROUTES
        {
            memo.insert(key, std::sync::Arc::clone(&routes));
        }
        Some(routes)
    }

    fn find_route(&self, w: WorkloadId, host: &str, port: u32) -> Route<'a> {
        let namespace = self.inv.workload(w).namespace.as_str();
        for i in self.vs_hosts.candidates(host) {
            let Some((vs, spec)) = self.virtual_services.get(i) else { continue };
            let gateways = vs_gateways(spec);
            if !gateways.contains(&MESH_GATEWAY)
                || !self.exported(spec.export_to.as_deref(), &vs.namespace, namespace, false)
                || !spec.hosts.iter().any(|h| host_matches(h, host))
            {
                continue;
            }
            let Some(destination) = first_destination(spec, MESH_GATEWAY, &vs.namespace, port) else { continue };
            let dest_port = destination.1.unwrap_or(port);
            let to_service = is_cluster_host(&destination.0) || self.service(&destination.0, &vs.namespace).is_some();
            if host_matches(&destination.0, host) || !to_service {
                return Route::Direct { port: dest_port, via: Some(vs) };
            }
            let key = (i, destination.0.clone(), dest_port, host.to_ascii_lowercase());
            if let Some(hop) = self.hops.lock().ok().and_then(|hops| hops.get(&key).cloned()) {
                return Route::ViaGateway(hop);
            }
            let hop = std::sync::Arc::new(self.gateway_hop(vs, spec, &destination.0, dest_port, host));
            if let Ok(mut hops) = self.hops.lock() {
                hops.insert(key, std::sync::Arc::clone(&hop));
            }
            return Route::ViaGateway(hop);
        }
        let entry = self.registry_entry(w, host, port);
        let outbound = self.outbound(w);
        if outbound.mode == Outbound::RegistryOnly && entry.is_none() {
            return Route::Refused { set_by: outbound.set_by };
        }
        // A ServiceEntry port's `targetPort` is where the sidecar connects.
        let target = entry.and_then(|o| match &o.spec {
            MeshSpec::ServiceEntry(spec) => {
                spec.ports.iter().find(|p| p.number == Some(port)).and_then(|p| p.target_port)
            }
            _ => None,
        });
        match target.filter(|t| (1..=65535).contains(t) && *t != port) {
            Some(target) => Route::Direct { port: target, via: entry },
            None => Route::Direct { port, via: None },
        }
    }

    /// The hop to the gateway Service `service_host` on `service_port`, for `host`.
    fn gateway_hop(
        &self,
        vs: &'a MeshObject,
        spec: &'a VirtualServiceSpec,
        service_host: &str,
        service_port: u32,
        host: &str,
    ) -> GatewayHop<'a> {
        let service = self.service(service_host, &vs.namespace);
        let pods: Vec<WorkloadId> = service
            .map(|s| {
                self.inv
                    .workloads_in(&s.namespace)
                    .filter(|(_, wl)| {
                        s.selector.as_ref().is_some_and(|sel| !sel.is_empty() && labels_match(sel, &wl.labels))
                    })
                    .map(|(id, _)| id)
                    .collect()
            })
            .unwrap_or_default();
        // The Gateway the VirtualService binds whose selector picks those pods (or, without
        // the pods in the input, the first it binds).
        let bound: Vec<&'a MeshObject> = vs_gateways(spec)
            .into_iter()
            .filter(|g| *g != MESH_GATEWAY)
            .filter_map(|g| {
                let (ns, name) = g.split_once('/').unwrap_or((vs.namespace.as_str(), g));
                self.gateways.iter().copied().find(|o| o.namespace == ns && o.name == name)
            })
            .collect();
        let gateway = bound
            .iter()
            .copied()
            .find(|g| pods.iter().any(|p| matches!(self.proxy(*p), Proxy::Gateway(gs) if gs.contains(g))))
            .or_else(|| bound.first().copied());
        // The gateway's own route for the host: in this VirtualService or another binding the
        // same Gateway.
        let upstream_port = gateway
            .and_then(|g| {
                let reference = format!("{}/{}", g.namespace, g.name);
                self.vs_hosts.candidates(host).into_iter().find_map(|i| {
                    let (other, other_spec) = self.virtual_services.get(i)?;
                    let names = vs_gateways(other_spec);
                    let name = names
                        .iter()
                        .find(|n| **n == reference || (other.namespace == g.namespace && **n == g.name.as_str()))?;
                    if !other_spec.hosts.iter().any(|h| host_matches(h, host)) {
                        return None;
                    }
                    first_destination(other_spec, name, &other.namespace, service_port)
                        .filter(|(dest, _)| host_matches(dest, host) || host_matches(host, dest))
                        .map(|(_, port)| port.unwrap_or(service_port))
                })
            })
            .unwrap_or(service_port);
        GatewayHop {
            virtual_service: vs,
            service_host: service_host.to_owned(),
            service_port,
            service,
            pods,
            gateway,
            upstream_port,
        }
    }

    /// The Service a cluster host names (`name`, `name.ns`, `name.ns.svc`,
    /// `name.ns.svc.cluster.local`; a short name is relative to `namespace`).
    fn service(&self, host: &str, namespace: &str) -> Option<&'a ServiceFacts> {
        let trimmed = host.trim_end_matches('.');
        let trimmed = trimmed.strip_suffix(".cluster.local").unwrap_or(trimmed);
        let trimmed = trimmed.strip_suffix(".svc").unwrap_or(trimmed);
        let (name, ns) = trimmed.split_once('.').unwrap_or((trimmed, namespace));
        self.inv.services.iter().find(|s| s.name == name && s.namespace == ns)
    }

    /// The external destinations the mesh has a say about: hosts (not wildcards) of
    /// `MESH_EXTERNAL` ServiceEntries on their ports, of VirtualServices bound to `mesh` on
    /// their routes' ports, and of EgressIntents on their ports.
    pub fn targets(&self) -> &[Target] {
        self.targets.get_or_init(|| self.find_targets())
    }

    fn find_targets(&self) -> Vec<Target> {
        let mut out = std::collections::BTreeSet::new();
        for (_, spec) in &self.entries {
            if !spec.is_external() {
                continue;
            }
            for host in spec.hosts.iter().filter(|h| is_external_name(h)) {
                for port in spec.ports.iter().filter_map(|p| p.number) {
                    out.insert(Target { host: host.to_ascii_lowercase(), port });
                }
            }
        }
        for (_, spec) in &self.virtual_services {
            if !vs_gateways(spec).contains(&MESH_GATEWAY) {
                continue;
            }
            let ports: Vec<u32> = routes(spec)
                .flat_map(|r| &r.matches)
                .filter(|m| m.gateways.as_ref().is_none_or(|g| g.iter().any(|g| g == MESH_GATEWAY)))
                .filter_map(|m| m.port)
                .collect();
            for host in spec.hosts.iter().filter(|h| is_external_name(h)) {
                for port in &ports {
                    out.insert(Target { host: host.to_ascii_lowercase(), port: *port });
                }
            }
        }
        for intent in &self.inv.intents {
            for target in intent.spec.iter().flat_map(|s| &s.egress) {
                let Some(host) = target.fqdn.as_deref().filter(|h| is_external_name(h)) else { continue };
                for port in target.ports.iter().filter(|p| p.protocol.as_deref().is_none_or(|p| p == "TCP")) {
                    if let Ok(port) = u32::try_from(port.port) {
                        out.insert(Target { host: host.to_ascii_lowercase(), port });
                    }
                }
            }
        }
        out.into_iter().filter(|t| (1..=65535).contains(&t.port)).collect()
    }

    /// The external destinations VirtualServices send through `gateway` (a Gateway object):
    /// the destination host and port of every route bound to it whose destination is a name
    /// outside the cluster. The port is the destination's, else the route's match port; a
    /// route naming neither is left out (its upstream port is not known).
    pub fn gateway_routes(&self, gateway: &MeshObject) -> Vec<Target> {
        let reference = format!("{}/{}", gateway.namespace, gateway.name);
        let mut out = std::collections::BTreeSet::new();
        for (vs, spec) in &self.virtual_services {
            let binds = |name: &str| name == reference || (vs.namespace == gateway.namespace && name == gateway.name);
            if !vs_gateways(spec).into_iter().any(binds) {
                continue;
            }
            for route in routes(spec) {
                let matching: Vec<&istio::RouteMatch> = route
                    .matches
                    .iter()
                    .filter(|m| m.gateways.as_ref().is_none_or(|gs| gs.iter().any(|g| binds(g))))
                    .collect();
                if !route.matches.is_empty() && matching.is_empty() {
                    continue;
                }
                for destination in route.route.iter().filter_map(|d| d.destination.as_ref()) {
                    if !is_external_name(&destination.host) {
                        continue;
                    }
                    let port = destination.port.as_ref().and_then(|p| p.number);
                    let ports: Vec<u32> = match port {
                        Some(p) => vec![p],
                        None => matching.iter().filter_map(|m| m.port).collect(),
                    };
                    for port in ports.into_iter().filter(|p| (1..=65535).contains(p)) {
                        out.insert(Target { host: destination.host.to_ascii_lowercase(), port });
                    }
                }
            }
        }
        out.into_iter().collect()
    }

    /// The namespaces of `gateway`'s proxy pods: those of the input's workloads its selector
    /// picks, else those of the Services the mesh's routes send to it.
    pub fn gateway_namespaces(&self, gateway: &MeshObject) -> std::collections::BTreeSet<String> {
        let mut out: std::collections::BTreeSet<String> = (0..self.inv.workloads.len())
            .map(WorkloadId)
            .filter(|&w| matches!(self.proxy(w), Proxy::Gateway(gs) if gs.iter().any(|g| std::ptr::eq(*g, gateway))))
            .map(|w| self.inv.workload(w).namespace.clone())
            .collect();
        if out.is_empty() {
            let reference = format!("{}/{}", gateway.namespace, gateway.name);
            for (vs, spec) in &self.virtual_services {
                let binds =
                    |name: &str| name == reference || (vs.namespace == gateway.namespace && name == gateway.name);
                if !vs_gateways(spec).into_iter().any(binds) {
                    continue;
                }
                for destination in routes(spec).flat_map(|r| &r.route).filter_map(|d| d.destination.as_ref()) {
                    if let Some(service) = self.service(&destination.host, &vs.namespace) {
                        out.insert(service.namespace.clone());
                    } else if is_cluster_host(&destination.host)
                        && let Some(ns) = destination.host.split('.').nth(1)
                    {
                        out.insert(ns.to_owned());
                    }
                }
            }
        }
        out
    }
}

/// One workload's egress with the policies of every layer that apply to it found once
/// ([`Mesh::egress_of`]), to judge many destinations.
#[derive(Debug)]
pub struct EgressOf<'a> {
    eval: Evaluator<'a>,
    pod: super::PodView<'a>,
    applicable: super::evaluator::Applicable,
    /// With no policy applying, the one verdict every destination gets, once judged.
    unpoliced: std::sync::OnceLock<DirectionVerdict>,
}

impl EgressOf<'_> {
    /// The combined L4 verdict on the pods reaching `to` on TCP `port`; `None` for a
    /// host-network pod (NetworkPolicy does not apply) or a port outside 1-65535.
    pub fn judge(&self, to: &Endpoint<'_>, port: u32) -> Option<DirectionVerdict> {
        if self.pod.host_network {
            return None;
        }
        let traffic = Traffic { port: i32::try_from(port).ok()?, protocol: Protocol::Tcp };
        let judge = || self.eval.judge(&self.pod, super::Direction::Egress, &self.applicable, to, traffic);
        if self.applicable.is_empty() {
            return Some(self.unpoliced.get_or_init(judge).clone());
        }
        Some(judge())
    }
}

impl<'a> Mesh<'a> {
    /// Workload `w`'s egress, to judge many destinations with [`EgressOf::judge`].
    pub fn egress_of(&self, w: WorkloadId) -> EgressOf<'a> {
        let eval = Evaluator::new(self.inv);
        let pod = eval.pod(w);
        let applicable = eval.applicable(&pod, super::Direction::Egress);
        EgressOf { eval, pod, applicable, unpoliced: std::sync::OnceLock::new() }
    }
}

impl Mesh<'_> {
    /// The L4 verdict (both ends' policies) on workload `from` reaching workload `to`'s pods on
    /// TCP `port`.
    pub fn l4_to_pod(&self, from: WorkloadId, to: WorkloadId, port: i32) -> super::PolicyVerdict {
        let eval = Evaluator::new(self.inv);
        let traffic = Traffic { port, protocol: Protocol::Tcp };
        eval.evaluate(&Endpoint::Pod(eval.pod(from)), &Endpoint::Pod(eval.pod(to)), traffic)
    }
}

/// Whether a denial of an external *name* may not hold for its addresses: NetworkPolicy
/// isolation decided it, and a rule of an isolating policy allows part of the address space
/// (an `ipBlock` narrower than a whole family) on the port. Offline a name has no address,
/// so such a rule can neither be matched nor ruled out: rules that report a blocked host do
/// not report this one (the issue-18 rule for what cannot be decided).
pub fn denial_may_not_hold(inv: &Inventory, d: &DirectionVerdict, port: u32) -> bool {
    if d.decided() != Decided::Isolation {
        return false;
    }
    let Ok(port) = i32::try_from(port) else { return false };
    let traffic = Traffic { port, protocol: Protocol::Tcp };
    d.isolated_by.iter().any(|&p| {
        super::evaluator::rules(inv.policy(p), super::Direction::Egress).any(|(peers, ports)| {
            super::evaluator::ports_match(ports, &[], traffic)
                && peers.into_iter().flatten().any(|peer| {
                    peer.ip_block
                        .as_ref()
                        .and_then(|b| super::ParsedIpBlock::parse(b).ok())
                        .is_some_and(|b| !b.is_whole_family())
                })
        })
    })
}

/// Why the L4 layers decided as they did, for messages: `no policy isolates its egress`,
/// `NetworkPolicy shop/allow-web (egress[1]) allows it`, `NetworkPolicy shop/lockdown isolates
/// it and no rule allows it`, or the deciding ClusterNetworkPolicy, Cilium or Calico policy.
pub fn l4_reason(inv: &Inventory, d: &DirectionVerdict, direction: super::Direction) -> String {
    let allowed = d.allowed();
    let verb = if allowed { "allows it" } else { "denies it" };
    match d.decided() {
        Decided::Admin(t) | Decided::Baseline(t) => format!("{} {verb}", inv.cluster_policy(t.policy).describe()),
        Decided::CiliumDeny(r) => format!("{} denies it", inv.cilium_rule(r.rule).describe()),
        Decided::Calico(i) => match d.calico.tiers.get(i) {
            Some(t) => format!("Calico tier {} {verb}", t.tier),
            None => format!("a Calico tier {verb}"),
        },
        Decided::Isolation if allowed => match (d.allowed_by.first(), d.cilium.allowed_by.first()) {
            (Some(r), _) => {
                let p = inv.policy(r.policy);
                format!("NetworkPolicy {}/{} ({}) allows it", p.namespace, p.name, p.rule_label(r.direction, r.index))
            }
            (None, Some(r)) => format!("{} allows it", inv.cilium_rule(r.rule).describe()),
            (None, None) => "its egress policies allow it".to_owned(),
        },
        Decided::Isolation => match (d.isolated_by.first(), d.cilium.isolated_by.first()) {
            (Some(p), _) => {
                let p = inv.policy(*p);
                format!("NetworkPolicy {}/{} isolates it and no rule allows it", p.namespace, p.name)
            }
            (None, Some(r)) => format!("{} isolates it and no rule allows it", inv.cilium_rule(*r).describe()),
            (None, None) => format!("its {} is isolated and no rule allows it", direction.key()),
        },
        Decided::Default => format!("no policy isolates its {}", direction.key()),
    }
}

fn parse_mode(mode: &str) -> Outbound {
    match mode {
        "REGISTRY_ONLY" => Outbound::RegistryOnly,
        _ => Outbound::AllowAny,
    }
}

/// A VirtualService's `gateways`, `mesh` when absent.
fn vs_gateways(spec: &VirtualServiceSpec) -> Vec<&str> {
    match &spec.gateways {
        Some(g) if !g.is_empty() => g.iter().map(String::as_str).collect(),
        _ => vec![MESH_GATEWAY],
    }
}

fn routes(spec: &VirtualServiceSpec) -> impl Iterator<Item = &istio::Route> {
    spec.http.iter().chain(&spec.tls).chain(&spec.tcp)
}

/// The first destination (host, port) of the first route of `spec` that traffic through
/// `gateway` on `port` takes: a route matches when it has no `match`, or one of its matches
/// names no gateways or names `gateway` (as written, or `namespace/name` against the
/// VirtualService's namespace), and names no port or `port`.
fn first_destination(
    spec: &VirtualServiceSpec,
    gateway: &str,
    namespace: &str,
    port: u32,
) -> Option<(String, Option<u32>)> {
    let names_gateway =
        |g: &String| g == gateway || (g.split_once('/').is_some_and(|(ns, name)| ns == namespace && name == gateway));
    routes(spec)
        .find(|r| {
            r.matches.is_empty()
                || r.matches.iter().any(|m| {
                    m.gateways.as_ref().is_none_or(|gs| gs.iter().any(names_gateway))
                        && m.port.is_none_or(|p| p == port)
                })
        })
        .and_then(|r| r.route.iter().find_map(|d| d.destination.as_ref()))
        .map(|d| (d.host.clone(), d.port.as_ref().and_then(|p| p.number)))
}

/// Whether Istio host `pattern` (`api.example.com`, `*.example.com`, `*`) covers `host`,
/// case-insensitively. A wildcard prefix covers any name ending in the rest.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let (pattern, host) = (pattern.trim_end_matches('.'), host.trim_end_matches('.'));
    match pattern.strip_prefix('*') {
        Some("") => true,
        Some(suffix) => {
            host.len() > suffix.len()
                && host.is_char_boundary(host.len() - suffix.len())
                && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// Whether a host names a Service of the cluster.
fn is_cluster_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    !host.contains('.')
        || host.ends_with(".svc")
        || host.ends_with(".svc.cluster.local")
        || host.ends_with(".cluster.local")
}

/// Whether a host is a name outside the cluster (not a wildcard, not a cluster name).
fn is_external_name(host: &str) -> bool {
    !host.contains('*') && host.contains('.') && !is_cluster_host(host) && host.parse::<std::net::IpAddr>().is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_as_istio_writes_them() {
        assert!(host_matches("edition.cnn.com", "EDITION.cnn.com."));
        assert!(host_matches("*.wikipedia.org", "en.wikipedia.org"));
        assert!(host_matches("*.wikipedia.org", "a.b.wikipedia.org"));
        assert!(!host_matches("*.wikipedia.org", "wikipedia.org"));
        assert!(host_matches("*", "anything.example"));
        assert!(!host_matches("cnn.com", "edition.cnn.com"));
    }

    #[test]
    fn cluster_and_external_names_are_told_apart() {
        assert!(is_cluster_host("istio-egressgateway.istio-system.svc.cluster.local"));
        assert!(is_cluster_host("reviews"));
        assert!(!is_cluster_host("edition.cnn.com"));
        assert!(is_external_name("api.stripe.com"));
        assert!(!is_external_name("*.stripe.com"));
        assert!(!is_external_name("10.0.0.1"));
        assert!(!is_external_name("db.shop.svc"));
    }
}
