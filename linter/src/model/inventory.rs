//! The [`Inventory`]: every object of a run, typed where the engine needs types, indexed by
//! namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSetSpec, DeploymentSpec, ReplicaSetSpec, StatefulSetSpec};
use k8s_openapi::api::batch::v1::{CronJobSpec, JobSpec};
use k8s_openapi::api::core::v1::{PodSpec, PodStatus, ReplicationControllerSpec, ServiceSpec};
use k8s_openapi::api::networking::v1::NetworkPolicySpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use saphyr_parser::{Event, Span};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::calico_policy::{CalicoKind, CalicoNetworkSet, CalicoPolicy, CalicoPolicyId, CalicoTier};
use super::cilium_policy::{CiliumRule, CiliumRuleId, RuleSpec};
use super::cluster_policy::{ClusterNetworkPolicySpec, ClusterPolicy, ClusterPolicyId};
use super::istio::{IstioKind, MeshConfig, MeshObject, MeshSettings, MeshSpec};
use super::object::{ApiVersionStatus, Kind, Object, ObjectId, ObjectRef, has_annotations};
use crate::egress::EgressIntentSpec;
use crate::load::yaml::{MAX_NODES_PER_DOCUMENT, build_value, resolve_untagged};
use crate::load::{Document, DocumentRef, Scanned, de};

/// The label the API server puts on every namespace.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// Annotation listing rule codes or names to suppress on one object.
pub const IGNORE_ANNOTATION: &str = "portcullis.dev/ignore";

pub type Labels = BTreeMap<String, String>;

/// Index of a [`Policy`] in [`Inventory::policies`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyId(pub usize);
/// Index of a [`Workload`] in [`Inventory::workloads`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkloadId(pub usize);

/// Transport protocols a NetworkPolicy port may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// Parses the exact (case-sensitive) names the API server accepts.
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A port a container declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub port: i32,
    pub protocol: Protocol,
}

/// Policy types after the API server's defaulting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Directions {
    pub ingress: bool,
    pub egress: bool,
}

/// A NetworkPolicy.
#[derive(Debug)]
pub struct Policy {
    pub object: ObjectId,
    pub namespace: String,
    pub name: String,
    /// Shared: a caller that keeps policies typed (the webhook's state) lends them without a
    /// copy.
    pub spec: Arc<NetworkPolicySpec>,
    /// Which directions the policy isolates, with `policyTypes` defaulting applied.
    pub types: Directions,
    /// Whether `policyTypes` was written out.
    pub types_explicit: bool,
    /// A policy the input does not contain but that the cluster will have: the one portcullis
    /// renders from the EgressIntent `object`. Rules about how policies are written skip it;
    /// the evaluator counts it.
    pub generated: bool,
    /// Labelled `app.kubernetes.io/managed-by: portcullis`: written by the controller or
    /// `portcullis resolve`, so every address in it passed the address guard.
    pub managed_by_portcullis: bool,
    /// For a generated policy: the names its intent allows. In the cluster each name's
    /// addresses become `ipBlock`s of the policy, kept fresh from DNS; offline the name stands
    /// for them. Judged as egress rules after the spec's (see [`Policy::rule_pointer`]).
    pub names: Vec<NameRule>,
}

/// A name (or pattern) a generated policy allows, on ports (none: every port).
#[derive(Debug, Clone)]
pub struct NameRule {
    pub name: NameMatch,
    pub ports: Vec<(u16, Protocol)>,
    /// Where the rule is written in the intent (relative to the object), e.g. `/spec/egress/1`.
    pub pointer: String,
}

/// An exact (normalized) name or a wildcard pattern.
#[derive(Debug, Clone)]
pub enum NameMatch {
    Exact(String),
    Pattern(crate::egress::NamePattern),
}

impl NameRule {
    /// Whether the rule admits `name` (as written in the probe: case and a trailing dot do not
    /// matter) on `port`/`protocol`.
    pub fn admits(&self, name: &str, port: i32, protocol: Protocol) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        let named = match &self.name {
            NameMatch::Exact(n) => *n == name,
            NameMatch::Pattern(p) => p.matches(&name),
        };
        named && (self.ports.is_empty() || u16::try_from(port).is_ok_and(|port| self.ports.contains(&(port, protocol))))
    }
}

impl Policy {
    /// Where rule `index` of `direction` is written, relative to the policy's object: the
    /// spec's rules first, then (egress of a generated policy) the intent rules of [`Policy::names`].
    pub fn rule_pointer(&self, direction: crate::semantics::Direction, index: usize) -> String {
        let written = self.spec.egress.as_ref().map_or(0, Vec::len);
        match index.checked_sub(written).and_then(|k| self.names.get(k)) {
            Some(rule) if direction == crate::semantics::Direction::Egress => rule.pointer.clone(),
            _ => format!("/spec/{}/{index}", direction.key()),
        }
    }

    /// Rule `index` of `direction` in words, e.g. `egress[1]`: for an intent's name, the entry
    /// of the intent it comes from.
    pub fn rule_label(&self, direction: crate::semantics::Direction, index: usize) -> String {
        let pointer = self.rule_pointer(direction, index);
        match pointer.strip_prefix(&format!("/spec/{}/", direction.key())) {
            Some(i) => format!("{}[{i}]", direction.key()),
            None => format!("{}[{index}]", direction.key()),
        }
    }
}

/// Pods: a Pod, or the pods a workload controller would create from its template.
#[derive(Debug)]
pub struct Workload {
    pub object: ObjectId,
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    /// Labels of the pods.
    pub labels: Labels,
    pub ports: Vec<ContainerPort>,
    pub host_network: bool,
    /// `status.podIPs` of a Pod, when the input is captured cluster state.
    pub pod_ips: Vec<IpAddr>,
    /// Pointer (relative to the object) of the pod template (`""` for a Pod).
    pub template: &'static str,
    /// The pods' `sidecar.istio.io/inject` annotation, the older form of the label Istio's
    /// injector still honours ([`super::istio::injected`]).
    pub inject_annotation: Option<String>,
}

/// What the engine reads of a Service: where its ports lead.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceFacts {
    pub object: ObjectId,
    pub namespace: String,
    pub name: String,
    /// `spec.selector`; `None` selects no pod (a Service with manual endpoints).
    pub selector: Option<BTreeMap<String, String>>,
    /// `(port, targetPort)` pairs.
    pub ports: Vec<(i32, IntOrString)>,
}

/// An EgressIntent.
#[derive(Debug)]
pub struct Intent {
    pub object: ObjectId,
    pub namespace: String,
    pub name: String,
    pub spec: Option<EgressIntentSpec>,
}

/// A namespace, whether or not its Namespace object is in the input.
#[derive(Debug, Default)]
pub struct NamespaceInfo {
    pub name: String,
    /// Labels, always including `kubernetes.io/metadata.name`.
    pub labels: Labels,
    pub object: Option<ObjectId>,
    pub policies: Vec<PolicyId>,
    pub workloads: Vec<WorkloadId>,
    pub intents: Vec<usize>,
    /// Rules of the namespace's CiliumNetworkPolicies.
    pub cilium_rules: Vec<CiliumRuleId>,
    /// The namespace's Calico NetworkPolicies (staged ones included).
    pub calico_policies: Vec<CalicoPolicyId>,
    /// Objects of API groups outside Kubernetes (custom resources), which operators may turn
    /// into pods the input does not show.
    pub custom_resources: usize,
}

/// Something about an object that makes it invalid for the API server (becomes `PC000`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelProblem {
    pub doc: DocumentRef,
    /// Pointer relative to the document.
    pub pointer: String,
    pub message: String,
    pub object: Option<ObjectRef>,
}

/// Names of NetworkPolicies that exist beyond those an inventory models
/// ([`Inventory::reserve_policy_names`]).
pub trait PolicyNames: Send + Sync + std::fmt::Debug {
    fn contains(&self, name: &str) -> bool;
}

/// All objects of a run.
#[derive(Debug)]
pub struct Inventory {
    default_namespace: String,
    pub objects: Vec<Object>,
    pub namespaces: BTreeMap<String, NamespaceInfo>,
    pub policies: Vec<Policy>,
    pub workloads: Vec<Workload>,
    pub intents: Vec<Intent>,
    /// ClusterNetworkPolicies (cluster-scoped: no namespace holds them).
    pub cluster_policies: Vec<ClusterPolicy>,
    /// Rules of CiliumNetworkPolicies and CiliumClusterwideNetworkPolicies, one per `spec` or
    /// `specs` item, in input order.
    pub cilium_rules: Vec<CiliumRule>,
    /// [`Inventory::cilium_rules`] of clusterwide policies; those of a namespace's policies are
    /// in its [`NamespaceInfo::cilium_rules`].
    pub cilium_clusterwide: Vec<CiliumRuleId>,
    /// Calico NetworkPolicies and GlobalNetworkPolicies (and their staged forms), in input
    /// order.
    pub calico_policies: Vec<CalicoPolicy>,
    /// [`Inventory::calico_policies`] that are global; a namespace's are in its
    /// [`NamespaceInfo::calico_policies`].
    pub calico_global: Vec<CalicoPolicyId>,
    /// Calico Tiers in the input.
    pub calico_tiers: Vec<CalicoTier>,
    /// Calico NetworkSets and GlobalNetworkSets.
    pub calico_network_sets: Vec<CalicoNetworkSet>,
    /// Istio's egress objects (ServiceEntry, Sidecar, Gateway, VirtualService,
    /// DestinationRule), in input order.
    pub mesh_objects: Vec<MeshObject>,
    /// Istio's mesh-wide settings, from the `istio` ConfigMap or an `IstioOperator`, in input
    /// order (`semantics::mesh` says which one counts).
    pub mesh_settings: Vec<MeshSettings>,
    /// Services (`v1`), for where a route's `*.svc.cluster.local` host leads.
    pub services: Vec<ServiceFacts>,
    pub problems: Vec<ModelProblem>,
    /// Documents skipped as plainly not Kubernetes objects ([`is_kubernetes_shaped`]):
    /// `package.json`, `docker-compose.yml`, CI workflows, OpenAPI specs, Helm values.
    pub skipped: Vec<DocumentRef>,
    /// Objects left out because a fix file loaded before them defines the same object (see
    /// [`Inventory::set_superseding`]): the original a patched copy replaces.
    pub replaced: Vec<DocumentRef>,
    /// Identities (API group, kind, namespace, name) defined by superseding files.
    superseding_ids: std::collections::HashSet<(String, String, Option<String>, String)>,
    /// Whether objects being added now supersede later ones with the same identity.
    superseding: bool,
    /// See [`Inventory::keep_values`].
    keep_values: bool,
    /// See [`Inventory::reserve_policy_names`].
    reserved_policy_names: BTreeMap<String, Vec<Arc<dyn PolicyNames>>>,
}

/// Whether a document's top-level mapping claims to be a Kubernetes object, even a broken one:
/// it has `kind`, or `metadata` beside `apiVersion` or `spec`. Anything else (no `kind`, no
/// `metadata`; or a scalar or a list) is another tool's file and is skipped, not reported. A
/// `Chart.yaml` (`apiVersion: v2`, no `kind`, no `metadata`) is skipped too.
pub fn is_kubernetes_shaped(map: &serde_json::Map<String, Value>) -> bool {
    map.contains_key("kind")
        || (map.contains_key("metadata") && (map.contains_key("apiVersion") || map.contains_key("spec")))
}

impl Inventory {
    /// An empty inventory; objects without `metadata.namespace` go to `default_namespace`.
    pub fn new(default_namespace: &str) -> Inventory {
        Inventory {
            default_namespace: default_namespace.to_owned(),
            objects: Vec::new(),
            namespaces: BTreeMap::new(),
            policies: Vec::new(),
            workloads: Vec::new(),
            intents: Vec::new(),
            cluster_policies: Vec::new(),
            cilium_rules: Vec::new(),
            cilium_clusterwide: Vec::new(),
            calico_policies: Vec::new(),
            calico_global: Vec::new(),
            calico_tiers: Vec::new(),
            calico_network_sets: Vec::new(),
            mesh_objects: Vec::new(),
            mesh_settings: Vec::new(),
            services: Vec::new(),
            problems: Vec::new(),
            skipped: Vec::new(),
            replaced: Vec::new(),
            superseding_ids: std::collections::HashSet::new(),
            reserved_policy_names: BTreeMap::new(),
            superseding: false,
            keep_values: true,
        }
    }

    /// Whether objects keep their value in [`Object::value`] (the default). A run that only
    /// lints turns it off: a workload or NetworkPolicy the fast path read then keeps
    /// `Value::Null` there, which spares building values nothing reads. What the engine needs of
    /// such an object is typed from its events instead: its header in [`Object::id`],
    /// [`Object::ignore`] and [`Object::has_annotations`], its pods in [`Workload`], a policy's
    /// spec in [`Policy::spec`]. Whatever writes objects back (applied fixes, the webhook's state
    /// and patches) needs the values and keeps the default.
    pub fn keep_values(&mut self, keep: bool) {
        self.keep_values = keep;
    }

    /// While set, objects added define their identity for good: an object with the same API
    /// group, kind, namespace and name added later (while not set) is left out and recorded in
    /// [`Inventory::replaced`]. `portcullis fix` output is loaded this way before the files it
    /// patched, so linting both sees each patched object once, as `kubectl apply` of both would.
    pub fn set_superseding(&mut self, on: bool) {
        self.superseding = on;
    }

    /// Builds an inventory from parsed documents.
    pub fn from_documents(documents: impl IntoIterator<Item = Document>, default_namespace: &str) -> Inventory {
        let mut inventory = Inventory::new(default_namespace);
        for doc in documents {
            inventory.add_document(doc);
        }
        inventory
    }

    pub fn object(&self, id: ObjectId) -> &Object {
        &self.objects[id.0]
    }

    pub fn policy(&self, id: PolicyId) -> &Policy {
        &self.policies[id.0]
    }

    pub fn cluster_policy(&self, id: ClusterPolicyId) -> &ClusterPolicy {
        &self.cluster_policies[id.0]
    }

    pub fn workload(&self, id: WorkloadId) -> &Workload {
        &self.workloads[id.0]
    }

    pub fn namespace(&self, name: &str) -> Option<&NamespaceInfo> {
        self.namespaces.get(name)
    }

    /// Records NetworkPolicies of `namespace` that exist but are not modeled here: the webhook
    /// models only the policies that can select the reviewed pods, yet a fix must not create a
    /// policy under a name another one already has. The names are asked only when a fix picks
    /// one, so the caller lends them rather than copying a namespace's names for every review.
    pub fn reserve_policy_names(&mut self, namespace: &str, names: Arc<dyn PolicyNames>) {
        self.reserved_policy_names.entry(namespace.to_owned()).or_default().push(names);
    }

    /// Whether a NetworkPolicy named `name` exists in `namespace` (modeled or reserved).
    pub fn policy_name_taken(&self, namespace: &str, name: &str) -> bool {
        self.policies_in(namespace).any(|(_, p)| p.name == name)
            || self.reserved_policy_names.get(namespace).is_some_and(|sets| sets.iter().any(|s| s.contains(name)))
    }

    pub fn policies_in<'a>(&'a self, namespace: &str) -> impl Iterator<Item = (PolicyId, &'a Policy)> + 'a {
        self.namespaces
            .get(namespace)
            .into_iter()
            .flat_map(|ns| ns.policies.iter())
            .map(move |&id| (id, &self.policies[id.0]))
    }

    /// Workloads of a namespace.
    pub fn workloads_in<'a>(&'a self, namespace: &str) -> impl Iterator<Item = (WorkloadId, &'a Workload)> + 'a {
        self.namespaces
            .get(namespace)
            .into_iter()
            .flat_map(|ns| ns.workloads.iter())
            .map(move |&id| (id, &self.workloads[id.0]))
    }

    /// Adds one document: an object, or each item of a `List`.
    pub fn add_document(&mut self, doc: Document) {
        let Document { at, value } = doc;
        let map = match value {
            Value::Object(map) if is_kubernetes_shaped(&map) => map,
            Value::Null => return,
            _ => {
                self.skipped.push(at);
                return;
            }
        };
        let is_list = map.get("kind").and_then(Value::as_str).is_some_and(|k| k == "List" || k.ends_with("List"))
            && map.get("items").is_some();
        if is_list {
            match map.get("items") {
                Some(Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        self.add_object(at, format!("/items/{i}"), item.clone());
                    }
                }
                Some(Value::Null) => {}
                _ => self.problem(at, "/items", "`items` of a List must be a list of objects", None),
            }
            return;
        }
        self.add_object(at, String::new(), Value::Object(map));
    }

    /// Adds a document the fast path read, without building the value of a controller's `spec`:
    /// its pod template is deserialized straight from the events, and the object keeps only
    /// `apiVersion`, `kind` and `metadata` (all it would keep anyway). The same for a
    /// NetworkPolicy when objects do not keep their values ([`Inventory::keep_values`]), and
    /// then neither keeps any value. Returns `false`, having added nothing, for anything else
    /// (other kinds, lists, anything the `Value` path would report); the caller then builds the
    /// document's value and calls [`Inventory::add_document`].
    pub fn add_scanned(&mut self, scanned: &Scanned<'_>) -> bool {
        match ScannedObject::read(scanned, self.keep_values) {
            Some(object) => {
                self.add_scanned_object(object);
                true
            }
            None => false,
        }
    }

    /// Adds an object [`ScannedObject::read`] read (in any thread) from a document's events.
    pub fn add_scanned_object(&mut self, object: ScannedObject) {
        let ScannedObject { at, header, value, typed } = object;
        self.add_object_with(at, String::new(), header, value, typed);
    }

    /// Whether [`Inventory::keep_values`] is on: what [`ScannedObject::read`] must be told.
    pub fn keeps_values(&self) -> bool {
        self.keep_values
    }

    fn problem(&mut self, doc: DocumentRef, pointer: &str, message: &str, object: Option<ObjectRef>) {
        self.problems.push(ModelProblem { doc, pointer: pointer.to_owned(), message: message.to_owned(), object });
    }

    /// Adds one object found at `pointer` in `doc`.
    pub fn add_object(&mut self, doc: DocumentRef, pointer: String, value: Value) {
        let api_version = value.get("apiVersion").and_then(Value::as_str);
        let kind = value.get("kind").and_then(Value::as_str);
        let (Some(api_version), Some(kind)) = (api_version, kind) else {
            let field = |name: &str, example: &str| match value.get(name) {
                None => format!("`{name}` is missing (e.g. `{name}: {example}`)"),
                Some(_) => format!("`{name}` must be a string"),
            };
            let what = match (value.is_object(), api_version, kind) {
                (false, _, _) => "expected a Kubernetes object (a mapping with apiVersion and kind)".to_owned(),
                (true, None, None) if value.get("apiVersion").is_none() && value.get("kind").is_none() => {
                    "not a Kubernetes object: `apiVersion` and `kind` are missing".to_owned()
                }
                (true, None, _) => format!("not a Kubernetes object: {}", field("apiVersion", "apps/v1")),
                (true, _, _) => format!("not a Kubernetes object: {}", field("kind", "Deployment")),
            };
            self.problem(doc, &pointer, &what, None);
            return;
        };
        let meta = match typed(&value, "/metadata", &pointer) {
            Ok(m) => m.unwrap_or_default(),
            Err((at, msg)) => {
                self.problem(doc, &at, &msg, None);
                ObjectMeta::default()
            }
        };
        let header = Header {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            meta,
            has_annotations: has_annotations(&value),
        };
        self.add_object_with(doc, pointer, header, value, None);
    }

    /// Adds one object whose header has been read; a workload's pods or a policy's spec may
    /// come already read from the document's events (then `value` holds only `apiVersion`,
    /// `kind` and `metadata`, or nothing: [`Inventory::keep_values`]).
    fn add_object_with(
        &mut self,
        doc: DocumentRef,
        pointer: String,
        header: Header,
        value: Value,
        read: Option<Typed>,
    ) {
        let Header { api_version, kind, meta, has_annotations } = header;
        let (kind_enum, status) = Kind::classify(&api_version, &kind);
        let ObjectMeta { name, generate_name, namespace, labels, annotations, .. } = meta;
        let name = name.or(generate_name).unwrap_or_default();
        let cluster_scoped = kind_enum.cluster_scoped();
        let namespace = if cluster_scoped || (kind_enum == Kind::Other && namespace.is_none()) {
            namespace
        } else {
            Some(namespace.unwrap_or_else(|| self.default_namespace.clone()))
        };
        let id = ObjectRef { api_version, kind, namespace, name };
        // Built only when asked: most inventories supersede nothing, and a review builds one
        // per object it adds.
        let identity = || {
            let group = id.api_version.rsplit_once('/').map_or("", |(group, _)| group).to_owned();
            (group, id.kind.clone(), id.namespace.clone(), id.name.clone())
        };
        if self.superseding {
            self.superseding_ids.insert(identity());
        } else if !id.name.is_empty() && !self.superseding_ids.is_empty() && self.superseding_ids.contains(&identity())
        {
            self.replaced.push(doc);
            return;
        }
        let ignore = annotations
            .as_ref()
            .and_then(|a| a.get(IGNORE_ANNOTATION))
            .map(|list| list.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        if let ApiVersionStatus::Removed(release) = status {
            let served = match kind_enum {
                Kind::NetworkPolicy => "networking.k8s.io/v1",
                Kind::CronJob => "batch/v1",
                _ => "apps/v1",
            };
            self.problem(
                doc,
                &format!("{pointer}/apiVersion"),
                &format!(
                    "apiVersion {} of {} was removed in Kubernetes {release}; the API server rejects it (use {served})",
                    id.api_version, id.kind
                ),
                Some(id.clone()),
            );
        }
        if id.name.is_empty() && kind_enum != Kind::Other {
            self.problem(doc, &format!("{pointer}/metadata"), "metadata.name is missing", Some(id.clone()));
        }
        let custom_group = kind_enum == Kind::Other
            && id
                .api_version
                .split_once('/')
                .is_some_and(|(group, _)| group.contains('.') && !group.ends_with("k8s.io"));
        let ns_name = id.namespace.clone();
        let namespace_object = (kind_enum == Kind::Namespace).then(|| id.name.clone());
        let managed_by_portcullis = labels.as_ref().is_some_and(|l| {
            l.get(crate::egress::render::MANAGED_BY_LABEL).map(String::as_str)
                == Some(crate::egress::render::MANAGED_BY)
        });
        let object_id = ObjectId(self.objects.len());
        self.objects.push(Object { id, kind: kind_enum, doc, pointer, value, ignore, has_annotations });
        if let Some(ns) = &ns_name {
            self.ensure_namespace(ns);
        }
        if let Some(name) = namespace_object {
            self.ensure_namespace(&name);
            if let Some(info) = self.namespaces.get_mut(&name) {
                info.object = Some(object_id);
                if let Some(labels) = labels {
                    info.labels.extend(labels);
                }
                info.labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name);
            }
            return;
        }
        if kind_enum.is_cluster_policy() {
            self.add_cluster_policy(object_id);
            return;
        }
        if kind_enum == Kind::CiliumClusterwideNetworkPolicy {
            self.add_cilium_policy(object_id, None);
            return;
        }
        if let Kind::Calico(kind) = kind_enum {
            self.add_calico(object_id, kind, ns_name, labels.unwrap_or_default());
            return;
        }
        let Some(ns) = ns_name else {
            if kind_enum == Kind::Other {
                self.add_mesh_settings(object_id);
            }
            return;
        };
        if let Kind::Istio(kind) = kind_enum {
            // Counted as custom resources, as before they were read.
            if let Some(info) = self.namespaces.get_mut(&ns) {
                info.custom_resources += 1;
            }
            self.add_mesh_object(object_id, kind, ns);
            return;
        }
        if custom_group && let Some(info) = self.namespaces.get_mut(&ns) {
            info.custom_resources += 1;
        }
        let (pods, spec) = match read {
            Some(Typed::Pods(pods)) => (Some(pods), None),
            Some(Typed::Policy(spec)) => (None, Some(spec)),
            None => (None, None),
        };
        match kind_enum {
            Kind::NetworkPolicy => self.add_policy(object_id, ns, spec, managed_by_portcullis),
            Kind::EgressIntent => self.add_intent(object_id, ns),
            Kind::CiliumNetworkPolicy => self.add_cilium_policy(object_id, Some(ns)),
            k if k.is_workload() => self.add_workload(object_id, ns, pods),
            Kind::Other if self.objects[object_id.0].id.api_version == "v1" => {
                match self.objects[object_id.0].id.kind.as_str() {
                    "Service" => self.add_service(object_id, ns),
                    "ConfigMap" => self.add_mesh_settings(object_id),
                    _ => {}
                }
            }
            Kind::Other => self.add_mesh_settings(object_id),
            _ => {}
        }
    }

    /// Reads an Istio object; a spec of the wrong shape is a problem (PC000), as the API
    /// server's schema would refuse it.
    fn add_mesh_object(&mut self, object_id: ObjectId, kind: IstioKind, namespace: String) {
        fn read<T: DeserializeOwned + Default>(
            object: &Object,
            wrap: fn(T) -> MeshSpec,
        ) -> Result<MeshSpec, (String, String)> {
            typed::<T>(&object.value, "/spec", &object.pointer).map(|spec| wrap(spec.unwrap_or_default()))
        }
        let object = &self.objects[object_id.0];
        let spec = match kind {
            IstioKind::ServiceEntry => read(object, MeshSpec::ServiceEntry),
            IstioKind::Sidecar => read(object, MeshSpec::Sidecar),
            IstioKind::Gateway => read(object, MeshSpec::Gateway),
            IstioKind::VirtualService => read(object, MeshSpec::VirtualService),
            IstioKind::DestinationRule => read(object, MeshSpec::DestinationRule),
        };
        let spec = spec.and_then(|spec| match &spec {
            MeshSpec::Sidecar(s) => match s.outbound_traffic_policy.as_ref().and_then(|p| p.problem()) {
                Some(msg) => Err((format!("{}/spec/outboundTrafficPolicy/mode", object.pointer), msg)),
                None => Ok(spec),
            },
            _ => Ok(spec),
        });
        match spec {
            Ok(spec) => {
                let name = object.id.name.clone();
                self.mesh_objects.push(MeshObject { object: object_id, namespace, name, spec });
            }
            Err((at, msg)) => {
                let (doc, id) = (object.doc, object.id.clone());
                self.problem(doc, &at, &msg, Some(id));
            }
        }
    }

    /// Reads Istio's mesh-wide settings from the `istio` ConfigMap (`data.mesh`, a YAML
    /// document) or an `IstioOperator` (`spec.meshConfig`); anything else is left alone. A
    /// setting that does not parse is a problem (PC000): Istio would not start with it.
    fn add_mesh_settings(&mut self, object_id: ObjectId) {
        let object = &self.objects[object_id.0];
        // Where a wrong setting is reported: inside the ConfigMap's string, only the key holding
        // it can be pointed at.
        let (config, source, at) = if object.id.kind == "ConfigMap" && object.id.name == super::istio::MESH_CONFIG_MAP {
            let Some(text) = lookup(&object.value, "/data/mesh").and_then(Value::as_str) else { return };
            let at = format!("{}/data/mesh", object.pointer);
            let parsed = crate::load::yaml::split_documents(text)
                .into_iter()
                .next()
                .map(|chunk| crate::load::yaml::parse_chunk(text, chunk));
            let config = match parsed {
                None | Some(Ok(None)) => Ok(None),
                Some(Ok(Some(value))) => {
                    typed::<MeshConfig>(&value, "", "").map_err(|(_, msg)| (at.clone(), format!("data.mesh: {msg}")))
                }
                Some(Err(e)) => Err((at.clone(), format!("data.mesh is not YAML: {}", e.message))),
            };
            (config, format!("ConfigMap {}/{} (data.mesh)", object.namespace().unwrap_or(""), object.id.name), at)
        } else if object.id.kind == "IstioOperator" && object.id.api_version == super::istio::OPERATOR_API_VERSION {
            let source = match object.namespace() {
                Some(ns) => format!("IstioOperator {ns}/{} (spec.meshConfig)", object.id.name),
                None => format!("IstioOperator {} (spec.meshConfig)", object.id.name),
            };
            let at = format!("{}/spec/meshConfig/outboundTrafficPolicy/mode", object.pointer);
            (typed::<MeshConfig>(&object.value, "/spec/meshConfig", &object.pointer), source, at)
        } else {
            return;
        };
        let mode_problem = |c: &Option<MeshConfig>| c.as_ref()?.outbound_traffic_policy.as_ref()?.problem();
        let config = config.and_then(|config| match mode_problem(&config) {
            Some(msg) => Err((at, msg)),
            None => Ok(config),
        });
        match config {
            Ok(Some(config)) => self.mesh_settings.push(MeshSettings { object: object_id, source, config }),
            Ok(None) => {}
            Err((at, msg)) => {
                let (doc, id) = (object.doc, object.id.clone());
                self.problem(doc, &at, &msg, Some(id));
            }
        }
    }

    /// Reads a Service's selector and ports; a Service that does not parse is left out (the
    /// engine judges no Service itself).
    fn add_service(&mut self, object_id: ObjectId, namespace: String) {
        let object = &self.objects[object_id.0];
        let Ok(Some(spec)) = typed::<ServiceSpec>(&object.value, "/spec", &object.pointer) else { return };
        let ports = spec
            .ports
            .iter()
            .flatten()
            .map(|p| (p.port, p.target_port.clone().unwrap_or(IntOrString::Int(p.port))))
            .collect();
        let name = object.id.name.clone();
        self.services.push(ServiceFacts { object: object_id, namespace, name, selector: spec.selector, ports });
    }

    fn ensure_namespace(&mut self, name: &str) {
        if !self.namespaces.contains_key(name) {
            let mut labels = Labels::new();
            labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.to_owned());
            self.namespaces
                .insert(name.to_owned(), NamespaceInfo { name: name.to_owned(), labels, ..NamespaceInfo::default() });
        }
    }

    /// Adds a policy; its spec comes typed (`Some`) from the document's events or is read from
    /// the object's value.
    fn add_policy(
        &mut self,
        object_id: ObjectId,
        namespace: String,
        spec: Option<Option<Arc<NetworkPolicySpec>>>,
        managed_by_portcullis: bool,
    ) {
        let object = &self.objects[object_id.0];
        let spec = match spec {
            Some(spec) => Ok(spec),
            None => typed(&object.value, "/spec", &object.pointer).map(|spec| spec.map(Arc::new)),
        };
        let spec: Arc<NetworkPolicySpec> = match spec {
            Ok(spec) => spec.unwrap_or_default(),
            Err((at, msg)) => {
                let (doc, id) = (object.doc, object.id.clone());
                self.problem(doc, &at, &msg, Some(id));
                return;
            }
        };
        // The API server defaults an absent or empty list alike.
        let types_explicit = spec.policy_types.as_ref().is_some_and(|t| !t.is_empty());
        let types = match spec.policy_types.as_ref().filter(|t| !t.is_empty()) {
            Some(types) => Directions {
                ingress: types.iter().any(|t| t == "Ingress"),
                egress: types.iter().any(|t| t == "Egress"),
            },
            // API server defaulting: Ingress always; Egress when the egress list is non-empty.
            None => Directions { ingress: true, egress: spec.egress.as_ref().is_some_and(|e| !e.is_empty()) },
        };
        let id = PolicyId(self.policies.len());
        let name = object.id.name.clone();
        self.policies.push(Policy {
            object: object_id,
            namespace: namespace.clone(),
            name,
            spec,
            types,
            types_explicit,
            generated: false,
            managed_by_portcullis,
            names: Vec::new(),
        });
        if let Some(ns) = self.namespaces.get_mut(&namespace) {
            ns.policies.push(id);
        }
    }

    fn add_cluster_policy(&mut self, object_id: ObjectId) {
        use super::admin_policy::{self, Flavor};
        use super::cluster_policy::ClusterPolicyKind;
        let object = &self.objects[object_id.0];
        let name = object.id.name.clone();
        let (doc, id, base) = (object.doc, object.id.clone(), object.pointer.clone());
        let (kind, flavor) = match object.kind {
            Kind::AdminNetworkPolicy => (ClusterPolicyKind::AdminNetworkPolicy, Some(Flavor::Admin)),
            Kind::BaselineAdminNetworkPolicy => (ClusterPolicyKind::BaselineAdminNetworkPolicy, Some(Flavor::Baseline)),
            _ => (ClusterPolicyKind::ClusterNetworkPolicy, None),
        };
        let typed_spec = match flavor {
            None => typed::<ClusterNetworkPolicySpec>(&object.value, "/spec", &object.pointer),
            Some(flavor) => {
                let old_forms = admin_policy_old_forms(&object.value);
                let converted = typed::<admin_policy::Spec>(&object.value, "/spec", &object.pointer)
                    .map(|spec| spec.map(|spec| spec.convert(flavor)));
                for (at, msg) in old_forms {
                    self.problem(doc, &format!("{base}{at}"), &msg, Some(id.clone()));
                }
                if flavor == Flavor::Baseline && name != admin_policy::BASELINE_NAME {
                    let msg = format!(
                        "a BaselineAdminNetworkPolicy must be named {:?} (one per cluster); the API server rejects {name:?}",
                        admin_policy::BASELINE_NAME
                    );
                    self.problem(doc, &format!("{base}/metadata/name"), &msg, Some(id.clone()));
                }
                converted.map(|spec| {
                    spec.map(|(spec, problems)| {
                        for (at, msg) in problems {
                            self.problem(doc, &format!("{base}{at}"), &msg, Some(id.clone()));
                        }
                        spec
                    })
                })
            }
        };
        match typed_spec {
            Ok(Some(spec)) => self.cluster_policies.push(ClusterPolicy { object: object_id, name, kind, spec }),
            Ok(None) => {
                let msg = format!("a {} needs a spec (priority, subject)", kind.as_str());
                self.problem(doc, &format!("{base}/spec"), &msg, Some(id));
            }
            Err((at, msg)) => self.problem(doc, &at, &msg, Some(id)),
        }
    }

    /// Reads `spec` and `specs` of a Cilium policy into one [`CiliumRule`] each.
    fn add_cilium_policy(&mut self, object_id: ObjectId, namespace: Option<String>) {
        let object = &self.objects[object_id.0];
        let (doc, id, base, name) = (object.doc, object.id.clone(), object.pointer.clone(), object.id.name.clone());
        let mut rules = Vec::new();
        let mut problems = Vec::new();
        match typed::<RuleSpec>(&object.value, "/spec", &object.pointer) {
            Ok(Some(spec)) => rules.push(("/spec".to_owned(), spec)),
            Ok(None) => {}
            Err(problem) => problems.push(problem),
        }
        let specs = object.value.get("specs").and_then(Value::as_array).map_or(0, Vec::len);
        for i in 0..specs {
            let at = format!("/specs/{i}");
            match typed::<RuleSpec>(&object.value, &at, &object.pointer) {
                Ok(Some(spec)) => rules.push((at, spec)),
                Ok(None) => {}
                Err(problem) => problems.push(problem),
            }
        }
        if rules.is_empty() && problems.is_empty() {
            problems.push((format!("{base}/spec"), format!("a {} needs spec or specs", id.kind)));
        }
        for (at, msg) in problems {
            self.problem(doc, &at, &msg, Some(id.clone()));
        }
        for (pointer, spec) in rules {
            let rule = CiliumRuleId(self.cilium_rules.len());
            self.cilium_rules.push(CiliumRule {
                object: object_id,
                name: name.clone(),
                namespace: namespace.clone(),
                pointer,
                spec,
            });
            match &namespace {
                None => self.cilium_clusterwide.push(rule),
                Some(ns) => {
                    if let Some(info) = self.namespaces.get_mut(ns) {
                        info.cilium_rules.push(rule);
                    }
                }
            }
        }
    }

    /// Reads a Calico object: a policy (compiled, or `PC000` problems when the API server
    /// would reject it), a Tier or a network set.
    fn add_calico(&mut self, object_id: ObjectId, kind: CalicoKind, namespace: Option<String>, labels: Labels) {
        use super::calico_policy as calico;
        let object = &self.objects[object_id.0];
        let (doc, id, base, name) = (object.doc, object.id.clone(), object.pointer.clone(), object.id.name.clone());
        let mut problems: Vec<calico::Problem> = Vec::new();
        match kind {
            CalicoKind::StagedKubernetesNetworkPolicy => {}
            CalicoKind::Tier => match typed::<calico::RawTierSpec>(&object.value, "/spec", &base) {
                Ok(raw) => {
                    let tier = calico::compile_tier(&raw.unwrap_or_default(), object_id, &name, &mut problems);
                    self.calico_tiers.push(tier);
                }
                Err(p) => problems.push(p),
            },
            CalicoKind::NetworkSet | CalicoKind::GlobalNetworkSet => {
                match typed::<calico::RawNetworkSetSpec>(&object.value, "/spec", &base) {
                    Ok(raw) => {
                        let set = calico::compile_network_set(
                            &raw.unwrap_or_default(),
                            object_id,
                            &name,
                            namespace.as_deref(),
                            labels,
                            &mut problems,
                        );
                        self.calico_network_sets.push(set);
                    }
                    Err(p) => problems.push(p),
                }
            }
            _ => match typed::<calico::RawPolicySpec>(&object.value, "/spec", &base) {
                Ok(raw) => {
                    let raw = raw.unwrap_or_default();
                    let compiled =
                        calico::compile_policy(&raw, kind, object_id, &name, namespace.as_deref(), &mut problems);
                    if let Some(policy) = compiled {
                        let pid = CalicoPolicyId(self.calico_policies.len());
                        self.calico_policies.push(policy);
                        match &namespace {
                            None => self.calico_global.push(pid),
                            Some(ns) => {
                                if let Some(info) = self.namespaces.get_mut(ns) {
                                    info.calico_policies.push(pid);
                                }
                            }
                        }
                    }
                }
                Err(p) => problems.push(p),
            },
        }
        for (at, msg) in problems {
            // Problems from `typed` carry the object's pointer already; the compilers' do not.
            let at = if at.starts_with(&base) && !base.is_empty() { at } else { format!("{base}{at}") };
            self.problem(doc, &at, &msg, Some(id.clone()));
        }
    }

    /// A Calico policy by id.
    pub fn calico_policy(&self, id: CalicoPolicyId) -> &CalicoPolicy {
        &self.calico_policies[id.0]
    }

    /// The Calico Tier named `name`, when the input has it.
    pub fn calico_tier(&self, name: &str) -> Option<&CalicoTier> {
        self.calico_tiers.iter().find(|t| t.name == name)
    }

    /// A Cilium rule by id.
    pub fn cilium_rule(&self, id: CiliumRuleId) -> &CiliumRule {
        &self.cilium_rules[id.0]
    }

    fn add_intent(&mut self, object_id: ObjectId, namespace: String) {
        let object = &self.objects[object_id.0];
        let name = object.id.name.clone();
        let spec = match typed::<EgressIntentSpec>(&object.value, "/spec", &object.pointer) {
            Ok(spec) => spec,
            Err((at, msg)) => {
                let (doc, id) = (object.doc, object.id.clone());
                self.problem(doc, &at, &msg, Some(id));
                None
            }
        };
        let index = self.intents.len();
        self.intents.push(Intent { object: object_id, namespace: namespace.clone(), name, spec });
        if let Some(ns) = self.namespaces.get_mut(&namespace) {
            ns.intents.push(index);
        }
    }

    fn add_workload(&mut self, object_id: ObjectId, namespace: String, pods: Option<PodFacts>) {
        let object = &self.objects[object_id.0];
        let kind = object.kind;
        let template = kind.pod_template_pointer().unwrap_or("");
        let parsed = match pods {
            Some(pods) => Ok(pods),
            None => pod_facts(kind, &object.value, &object.pointer),
        };
        let PodFacts { labels, inject_annotation, ports, host_network, pod_ips } = match parsed {
            Ok(v) => v,
            Err((at, msg)) => {
                let (doc, id) = (object.doc, object.id.clone());
                self.problem(doc, &at, &msg, Some(id));
                return;
            }
        };
        let id = WorkloadId(self.workloads.len());
        let name = object.id.name.clone();
        let object = &mut self.objects[object_id.0];
        if let Value::Object(map) = &mut object.value {
            map.retain(|k, _| HEAD_FIELDS.contains(&k.as_str()));
        }
        self.workloads.push(Workload {
            object: object_id,
            kind,
            namespace: namespace.clone(),
            name,
            labels,
            ports,
            host_network,
            pod_ips,
            template,
            inject_annotation,
        });
        if let Some(ns) = self.namespaces.get_mut(&namespace) {
            ns.workloads.push(id);
        }
    }

    /// The policies written in the input (not [`Policy::generated`]).
    pub fn written_policies(&self) -> impl Iterator<Item = &Policy> {
        self.policies.iter().filter(|p| !p.generated)
    }

    /// Adds the policy the cluster will have for an intent (`source`): a NetworkPolicy object
    /// rendered by [`crate::egress::render`]. A value that is not a valid policy is ignored.
    pub fn add_generated_policy(&mut self, source: ObjectId, policy: &Value, names: Vec<NameRule>) {
        let (Some(namespace), Some(name)) = (
            policy.pointer("/metadata/namespace").and_then(Value::as_str),
            policy.pointer("/metadata/name").and_then(Value::as_str),
        ) else {
            return;
        };
        let Ok(spec) = typed::<NetworkPolicySpec>(policy, "/spec", "") else {
            return;
        };
        let spec = Arc::new(spec.unwrap_or_default());
        let types = Directions {
            ingress: spec.policy_types.iter().flatten().any(|t| t == "Ingress"),
            egress: spec.policy_types.iter().flatten().any(|t| t == "Egress"),
        };
        self.ensure_namespace(namespace);
        let id = PolicyId(self.policies.len());
        self.policies.push(Policy {
            object: source,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            spec,
            types,
            types_explicit: true,
            generated: true,
            managed_by_portcullis: true,
            names,
        });
        if let Some(ns) = self.namespaces.get_mut(namespace) {
            ns.policies.push(id);
        }
    }

    /// Namespace names that have workloads.
    pub fn namespaces_with_workloads(&self) -> impl Iterator<Item = &NamespaceInfo> {
        self.namespaces.values().filter(|ns| !ns.workloads.is_empty())
    }

    /// Every rule code or name ignored on an object.
    pub fn ignored(&self, object: ObjectId) -> &BTreeSet<String> {
        &self.objects[object.0].ignore
    }
}

/// What the model keeps of a workload's pods (not to be confused with the evaluator's
/// `semantics::PodView`, which borrows these from a [`Workload`]).
#[derive(Debug)]
struct PodFacts {
    labels: Labels,
    inject_annotation: Option<String>,
    ports: Vec<ContainerPort>,
    host_network: bool,
    pod_ips: Vec<IpAddr>,
}

impl PodFacts {
    fn new(labels: Labels, annotations: Option<&Labels>, spec: &PodSpec, status: Option<PodStatus>) -> PodFacts {
        let inject_annotation = annotations.and_then(|a| a.get(super::istio::POD_INJECTION_KEY)).cloned();
        let sidecars =
            spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some(SIDECAR_RESTART));
        let ports = spec.containers.iter().chain(sidecars).flat_map(|c| c.ports.iter().flatten()).filter_map(port_fact);
        let pod_ips =
            status.and_then(|s| s.pod_ips).into_iter().flatten().filter_map(|ip| ip.ip.parse().ok()).collect();
        PodFacts {
            labels,
            inject_annotation,
            ports: ports.collect(),
            host_network: spec.host_network.unwrap_or(false),
            pod_ips,
        }
    }

    /// What [`pod_facts`] reads of a workload, read from the few fields it needs without typing
    /// the rest: for an object an API server decoded, whose types it has checked. `None` when
    /// one of those fields is missing where the full reading would need it, or is not of its
    /// type: the full reading then types the object and says what is wrong.
    fn decoded(kind: Kind, value: &Value) -> Option<PodFacts> {
        // The pod template is there: a missing step to it is left to the full reading, which
        // knows, kind by kind, which of them may be absent.
        let template = lookup(value, kind.pod_template_pointer()?).filter(|v| v.is_object())?;
        let (labels, annotations) = match optional(template, "metadata")? {
            Some(meta) => (optional(meta, "labels")?, optional(meta, "annotations")?),
            None => (None, None),
        };
        let labels = match labels {
            Some(labels) => Labels::deserialize(labels).ok()?,
            None => Labels::new(),
        };
        let inject_annotation = match annotations {
            Some(Value::Object(annotations)) if annotations.values().all(Value::is_string) => {
                annotations.get(super::istio::POD_INJECTION_KEY).and_then(Value::as_str).map(str::to_owned)
            }
            Some(_) => return None,
            None => None,
        };
        let (mut ports, mut host_network) = (Vec::new(), false);
        if let Some(spec) = optional(template, "spec")? {
            host_network = match optional(spec, "hostNetwork")? {
                Some(v) => v.as_bool()?,
                None => false,
            };
            let containers = spec.get("containers")?.as_array()?;
            let init = match optional(spec, "initContainers")? {
                Some(init) => init.as_array()?.as_slice(),
                None => &[],
            };
            let mut sidecars = Vec::new();
            for c in init {
                match optional(c, "restartPolicy")? {
                    Some(v) if v.as_str()? == SIDECAR_RESTART => sidecars.push(c),
                    _ => {}
                }
            }
            for container in containers.iter().chain(sidecars) {
                let Some(declared) = optional(container, "ports")? else { continue };
                for port in declared.as_array()? {
                    let port = k8s_openapi::api::core::v1::ContainerPort::deserialize(port).ok()?;
                    ports.extend(port_fact(&port));
                }
            }
        }
        let mut pod_ips = Vec::new();
        if kind == Kind::Pod
            && let Some(status) = optional(value, "status")?
            && let Some(ips) = optional(status, "podIPs")?
        {
            for ip in ips.as_array()? {
                let ip = k8s_openapi::api::core::v1::PodIP::deserialize(ip).ok()?;
                pod_ips.extend(ip.ip.parse::<IpAddr>().ok());
            }
        }
        Some(PodFacts { labels, inject_annotation, ports, host_network, pod_ips })
    }
}

/// The `restartPolicy` of an init container that runs beside the others (a sidecar), whose
/// ports are the pod's like any container's.
const SIDECAR_RESTART: &str = "Always";

/// A declared port as the model keeps it; `None` for a protocol the model does not know.
fn port_fact(p: &k8s_openapi::api::core::v1::ContainerPort) -> Option<ContainerPort> {
    let protocol = match p.protocol.as_deref() {
        None => Protocol::Tcp,
        Some(s) => Protocol::parse(s)?,
    };
    Some(ContainerPort { name: p.name.clone(), port: p.container_port, protocol })
}

/// A mapping's field: `Some(None)` when absent or null, `None` when `value` is not a mapping.
fn optional<'v>(value: &'v Value, field: &str) -> Option<Option<&'v Value>> {
    Some(value.as_object()?.get(field).filter(|v| !v.is_null()))
}

/// A document the fast path read into an object's header and typed contents, ready for
/// [`Inventory::add_scanned_object`]. Reading needs nothing of the inventory but whether it
/// keeps values, so files are read in parallel and added in order.
#[derive(Debug)]
pub struct ScannedObject {
    at: DocumentRef,
    header: Header,
    value: Value,
    /// `None` for a kind with nothing typed beyond its header (a Namespace).
    typed: Option<Typed>,
}

impl ScannedObject {
    /// A NetworkPolicy typed by the caller (the webhook reads its stored policies' JSON straight
    /// into these types): the object [`ScannedObject::read`] gives for it when values are not
    /// kept. `None` when `api_version` and `kind` are not a NetworkPolicy's.
    pub fn network_policy(
        at: DocumentRef,
        api_version: String,
        kind: String,
        meta: ObjectMeta,
        spec: Option<Arc<NetworkPolicySpec>>,
    ) -> Option<ScannedObject> {
        if Kind::classify(&api_version, &kind).0 != Kind::NetworkPolicy {
            return None;
        }
        let header = Header { api_version, kind, has_annotations: meta.annotations.is_some(), meta };
        Some(ScannedObject { at, header, value: Value::Null, typed: Some(Typed::Policy(spec)) })
    }

    /// A workload whose pods are read from `source` (the object as written) while the
    /// inventory keeps `head`: the object's `apiVersion`, `kind` and `metadata` ([`head_of`]),
    /// all that [`Inventory::add_object`] keeps of a workload once its pods are read. The webhook adds
    /// the object under review this way, without copying its spec. Gives `head` back for
    /// anything but a workload, and for anything [`Inventory::add_object`] would report (a
    /// header or a pod template that does not type): add the whole object then.
    pub fn workload(at: DocumentRef, head: Value, source: &Value) -> Result<ScannedObject, Value> {
        ScannedObject::workload_read(at, head, source, false)
    }

    /// [`ScannedObject::workload`] for an object an API server decoded (an admission review's
    /// object or old object): the API server typed it against the kind's schema before any
    /// webhook saw it, so the pods are read from the fields the model keeps (labels, the mesh
    /// injection annotation, declared ports, `hostNetwork`, pod IPs) without typing the whole
    /// spec again. The same workload as [`ScannedObject::workload`] whenever that one types;
    /// anything unexpected in those fields is read the full way.
    pub fn decoded_workload(at: DocumentRef, head: Value, source: &Value) -> Result<ScannedObject, Value> {
        ScannedObject::workload_read(at, head, source, true)
    }

    fn workload_read(at: DocumentRef, head: Value, source: &Value, decoded: bool) -> Result<ScannedObject, Value> {
        let header = (|| {
            let api_version = head.get("apiVersion")?.as_str()?;
            let kind = head.get("kind")?.as_str()?;
            let kind_enum = Kind::classify(api_version, kind).0;
            if !kind_enum.is_workload() {
                return None;
            }
            let meta = typed::<ObjectMeta>(&head, "/metadata", "").ok()?.unwrap_or_default();
            let pods = match decoded.then(|| PodFacts::decoded(kind_enum, source)).flatten() {
                Some(pods) => pods,
                None => pod_facts(kind_enum, source, "").ok()?,
            };
            let header = Header {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
                meta,
                has_annotations: has_annotations(&head),
            };
            Some((header, pods))
        })();
        match header {
            Some((header, pods)) => Ok(ScannedObject { at, header, value: head, typed: Some(Typed::Pods(pods)) }),
            None => Err(head),
        }
    }

    /// A Namespace known by its name and labels (the webhook keeps them for the namespaces a
    /// review reads): what [`Inventory::add_object`] makes of
    /// `{apiVersion: v1, kind: Namespace, metadata: {name, labels}}`, without its value (no
    /// rule reads a Namespace's value; its anchors name the object).
    pub fn namespace(at: DocumentRef, name: &str, labels: Labels) -> ScannedObject {
        let meta = ObjectMeta { name: Some(name.to_owned()), labels: Some(labels), ..ObjectMeta::default() };
        let header =
            Header { api_version: "v1".to_owned(), kind: "Namespace".to_owned(), meta, has_annotations: false };
        ScannedObject { at, header, value: Value::Null, typed: None }
    }

    /// Reads a scanned document; `None` for anything the fast path does not take (other kinds,
    /// lists, anything the `Value` path would report): build the document's value then.
    pub fn read(scanned: &Scanned<'_>, keep_values: bool) -> Option<ScannedObject> {
        let events = &scanned.events;
        // StreamStart, DocumentStart, MappingStart, entries…, MappingEnd, DocumentEnd, StreamEnd.
        let end = events.len().checked_sub(3)?;
        if events.len() > MAX_NODES_PER_DOCUMENT
            || !matches!(events.get(2), Some((Event::MappingStart(0, None), _)))
            || !matches!(events[end].0, Event::MappingEnd)
        {
            return None;
        }
        let mut entries: Vec<(&str, std::ops::Range<usize>)> = Vec::new();
        let mut i = 3;
        while i < end {
            let (Event::Scalar(key, style, 0, None), _) = &events[i] else { return None };
            let value_end = de::node_end(events, i + 1).filter(|&e| e <= end)?;
            let key: &str = key;
            if resolve_untagged(key, *style).is_some() || key == "<<" || entries.iter().any(|(k, _)| *k == key) {
                return None;
            }
            entries.push((key, i + 1..value_end));
            i = value_end;
        }
        let node = |name: &str| entries.iter().find(|(k, _)| *k == name).map(|(_, r)| &events[r.clone()]);
        let string = |name: &str| -> Option<&str> {
            match node(name)? {
                [(Event::Scalar(text, style, 0, None), _)] if resolve_untagged(text, *style).is_none() => Some(text),
                _ => None,
            }
        };
        let (Some(api_version), Some(kind)) = (string("apiVersion"), string("kind")) else { return None };
        let (kind_enum, _) = Kind::classify(api_version, kind);
        let spec = node("spec");
        let typed = match kind_enum {
            Kind::NetworkPolicy if !keep_values => match EventSpec(spec).spec() {
                Ok(spec) => Typed::Policy(spec.map(Arc::new)),
                Err(_) => return None,
            },
            Kind::Pod => return None,
            kind if kind.is_workload() => match template_facts(kind, &EventSpec(spec)) {
                Ok(pods) => Typed::Pods(pods),
                Err(_) => return None,
            },
            _ => return None,
        };
        let Ok(meta) = node("metadata").map_or(Ok(None), de::from_events::<Option<ObjectMeta>>) else { return None };
        let meta = meta.unwrap_or_default();
        // Entries the object does not keep must still be what the `Value` path accepts.
        let kept = |k: &str| HEAD_FIELDS.contains(&k);
        let rest_ok = entries
            .iter()
            .filter(|(k, _)| !kept(k) && *k != "spec")
            .all(|(_, r)| de::from_events::<serde::de::IgnoredAny>(&events[r.clone()]).is_ok());
        if !rest_ok {
            return None;
        }
        let value = if keep_values {
            let head = events[..3].iter();
            let body = entries.iter().filter(|(k, _)| kept(k)).flat_map(|(_, r)| &events[r.start - 1..r.end]);
            let tail = events[end..].iter();
            match build_value(head.chain(body).chain(tail).cloned().map(Ok), scanned.at.chunk) {
                Ok(Some(value)) => value,
                _ => return None,
            }
        } else {
            Value::Null
        };
        let header = Header {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            // `annotations: null` deserialized to `None`, and anything but a mapping was refused
            // above, so this is exactly `has_annotations` of the value.
            has_annotations: meta.annotations.is_some(),
            meta,
        };
        Some(ScannedObject { at: scanned.at, header, value, typed: Some(typed) })
    }
}

/// What an object says of itself: `apiVersion`, `kind` and `metadata`, with whether
/// `metadata.annotations` is a mapping in the value. That cannot always be read from `meta`: a
/// type error elsewhere in `metadata` leaves `meta` at its default on the value path.
#[derive(Debug)]
struct Header {
    api_version: String,
    kind: String,
    meta: ObjectMeta,
    has_annotations: bool,
}

/// What [`ScannedObject::read`] typed straight from a document's events.
#[derive(Debug)]
enum Typed {
    Pods(PodFacts),
    Policy(Option<Arc<NetworkPolicySpec>>),
}

/// Where a workload's `spec` is deserialized from: the object's value, or the document's events.
trait SpecSource {
    type Error;
    /// The `spec`, typed (absent or null → `None`).
    fn spec<T: DeserializeOwned>(&self) -> Result<Option<T>, Self::Error>;
}

/// The `spec` of an object value; errors name the offending field.
struct ValueSpec<'a> {
    value: &'a Value,
    base: &'a str,
}

impl SpecSource for ValueSpec<'_> {
    type Error = (String, String);
    fn spec<T: DeserializeOwned>(&self) -> Result<Option<T>, Self::Error> {
        typed(self.value, "/spec", self.base)
    }
}

/// The events of a document's `spec` (`None`: no `spec`); any error means "use the value".
struct EventSpec<'a, 'e>(Option<&'a [(Event<'e>, Span)]>);

impl SpecSource for EventSpec<'_, '_> {
    type Error = de::Refused;
    fn spec<T: DeserializeOwned>(&self) -> Result<Option<T>, Self::Error> {
        self.0.map_or(Ok(None), de::from_events::<Option<T>>)
    }
}

/// Labels, spec and status of the pods a workload object runs. The controller's whole spec is
/// type-checked (so a wrong type anywhere is found) and deserialized once.
fn pod_facts(kind: Kind, value: &Value, base: &str) -> Result<PodFacts, (String, String)> {
    if kind == Kind::Pod {
        let labels: Option<Labels> = typed(value, "/metadata/labels", base)?;
        let spec: Option<PodSpec> = typed(value, "/spec", base)?;
        let status: Option<PodStatus> = typed(value, "/status", base)?;
        let annotations: Option<Labels> = typed(value, "/metadata/annotations", base)?;
        return Ok(PodFacts::new(labels.unwrap_or_default(), annotations.as_ref(), &spec.unwrap_or_default(), status));
    }
    template_facts(kind, &ValueSpec { value, base })
}

/// Labels and spec of the pod template of a controller kind.
fn template_facts<S: SpecSource>(kind: Kind, source: &S) -> Result<PodFacts, S::Error> {
    use k8s_openapi::api::core::v1::PodTemplateSpec;
    let from_template = |t: Option<PodTemplateSpec>| -> PodFacts {
        let t = t.unwrap_or_default();
        let (labels, annotations) = t.metadata.map_or((None, None), |m| (m.labels, m.annotations));
        PodFacts::new(labels.unwrap_or_default(), annotations.as_ref(), &t.spec.unwrap_or_default(), None)
    };
    Ok(match kind {
        Kind::Deployment => from_template(source.spec::<DeploymentSpec>()?.map(|s| s.template)),
        Kind::ReplicaSet => from_template(source.spec::<ReplicaSetSpec>()?.and_then(|s| s.template)),
        Kind::StatefulSet => from_template(source.spec::<StatefulSetSpec>()?.map(|s| s.template)),
        Kind::DaemonSet => from_template(source.spec::<DaemonSetSpec>()?.map(|s| s.template)),
        Kind::Job => from_template(source.spec::<JobSpec>()?.map(|s| s.template)),
        Kind::ReplicationController => {
            from_template(source.spec::<ReplicationControllerSpec>()?.and_then(|s| s.template))
        }
        Kind::CronJob => {
            from_template(source.spec::<CronJobSpec>()?.and_then(|s| s.job_template.spec).map(|s| s.template))
        }
        _ => PodFacts::new(Labels::new(), None, &PodSpec::default(), None),
    })
}

/// The fields the inventory keeps of a workload's value once its pods are read: all that
/// anchors and names need.
const HEAD_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// An object's head: its `HEAD_FIELDS`, copied, in the object's order (a value that is not a
/// mapping is copied whole). What [`ScannedObject::workload`] takes as the value to keep.
pub fn head_of(object: &Value) -> Value {
    match object {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| HEAD_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `Value::pointer` without allocating for an escape-free pointer (serde_json unescapes every
/// segment into a new string); a pointer with an escape, or not starting with `/`, goes to
/// `Value::pointer`.
pub fn lookup<'v>(value: &'v Value, pointer: &str) -> Option<&'v Value> {
    if pointer.contains('~') || !(pointer.is_empty() || pointer.starts_with('/')) {
        return value.pointer(pointer);
    }
    pointer.split('/').skip(1).try_fold(value, |node, key| match node {
        Value::Object(map) => map.get(key),
        // As serde_json: no sign, no leading zero.
        Value::Array(items) if !(key.starts_with('+') || (key.starts_with('0') && key.len() > 1)) => {
            key.parse::<usize>().ok().and_then(|i| items.get(i))
        }
        _ => None,
    })
}

/// Deserializes the node at `pointer` (absent or null → `None`). On a type error returns the
/// pointer of the offending field (relative to the document: `base` + path) and a message.
/// Peers and subjects of a v1alpha1 policy written in the v0.1.0–v0.1.4 form, which today's
/// CRD prunes into something else: `namespaces: {namespaceSelector: ...}` becomes an empty
/// selector (every namespace) and `pods: {namespaces: ...}` loses its namespaces.
fn admin_policy_old_forms(value: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut check = |at: String, peer: &Value| {
        if let Some(ns) = peer.get("namespaces").and_then(Value::as_object)
            && let Some(key) = super::admin_policy::OLD_NAMESPACES_KEYS.iter().find(|k| ns.contains_key(**k))
        {
            out.push((
                format!("{at}/namespaces"),
                format!(
                    "namespaces.{key} is the v0.1.0-v0.1.4 form: today's CRD reads namespaces as a label selector and drops {key}, which selects every namespace"
                ),
            ));
        }
        if let Some(pods) = peer.get("pods").and_then(Value::as_object)
            && pods.contains_key("namespaces")
        {
            out.push((
                format!("{at}/pods"),
                "pods.namespaces is the v0.1.0-v0.1.4 form: today's CRD needs pods.namespaceSelector and drops namespaces".to_owned(),
            ));
        }
    };
    if let Some(subject) = value.pointer("/spec/subject") {
        check("/spec/subject".to_owned(), subject);
    }
    for (key, field) in [("ingress", "from"), ("egress", "to")] {
        let rules = value.pointer(&format!("/spec/{key}")).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        for (i, rule) in rules.iter().enumerate() {
            let peers = rule.get(field).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
            for (j, peer) in peers.iter().enumerate() {
                check(format!("/spec/{key}/{i}/{field}/{j}"), peer);
            }
        }
    }
    out
}

fn typed<T: DeserializeOwned>(value: &Value, pointer: &str, base: &str) -> Result<Option<T>, (String, String)> {
    let node = match lookup(value, pointer) {
        None | Some(Value::Null) => return Ok(None),
        Some(node) => node,
    };
    // The fast path tracks no field path; only a failure is re-read to say where it failed. It
    // costs a second copy of every Kubernetes type's deserializer in the library (12 s of a
    // clean release build) and saves about a fifth of a webhook review (docs/benchmarks.md).
    if let Ok(v) = T::deserialize(node) {
        return Ok(Some(v));
    }
    serde_path_to_error::deserialize(node).map(Some).map_err(|e| {
        let mut at = format!("{base}{pointer}");
        let mut dotted = pointer.trim_start_matches('/').replace('/', ".");
        for segment in e.path().iter() {
            use serde_path_to_error::Segment;
            match segment {
                Segment::Seq { index } => {
                    at.push_str(&format!("/{index}"));
                    dotted.push_str(&format!("[{index}]"));
                }
                Segment::Map { key } | Segment::Enum { variant: key } => {
                    at.push('/');
                    at.push_str(&super::object::pointer_escape(key));
                    dotted.push('.');
                    dotted.push_str(key);
                }
                Segment::Unknown => {}
            }
        }
        (at, format!("wrong type at {dotted}: {}", e.inner()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Parsed, SourceId, scan_source};

    /// The one scanned document of `text`.
    fn scanned(text: &str) -> Scanned<'_> {
        let mut documents = Vec::new();
        scan_source(SourceId(0), text, |parsed| documents.push(parsed));
        match documents.pop() {
            Some(Ok(Parsed::Scanned(s))) => s,
            other => panic!("expected the fast path to read the document: {other:?}"),
        }
    }

    /// Adds `text` both ways: from its events, and from its value.
    fn both_ways(text: &str) -> (bool, Inventory, Inventory) {
        both_ways_keeping(text, true)
    }

    /// [`both_ways`], the events way keeping policy values or not.
    fn both_ways_keeping(text: &str, keep_values: bool) -> (bool, Inventory, Inventory) {
        let mut fast = Inventory::new("default");
        fast.keep_values(keep_values);
        let taken = fast.add_scanned(&scanned(text));
        let mut slow = Inventory::new("default");
        if let Ok(Some(document)) = scanned(text).into_document() {
            slow.add_document(document);
        }
        (taken, fast, slow)
    }

    const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n  namespace: shop\n  labels: {app: api}\nspec:\n  selector: {matchLabels: {app: api}}\n  template:\n    metadata:\n      labels: {app: api, tier: backend}\n    spec:\n      hostNetwork: true\n      containers:\n      - name: api\n        image: example/api:1\n        ports:\n        - {name: http, containerPort: 8080}\n        - {containerPort: 53, protocol: UDP}\nstatus: {replicas: 1}\n";

    /// A workload added from its head (the webhook's way, [`ScannedObject::workload`]) is the
    /// workload [`Inventory::add_object`] makes of the whole value, and anything that way would
    /// report (or that is not a workload) is given back to be added whole.
    #[test]
    fn a_workload_added_from_its_head_is_the_workload_added_whole() {
        use serde_json::json;
        let template = json!({"metadata": {"labels": {"app": "a"}, "annotations": {"sidecar.istio.io/inject": "true"}},
            "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "i",
                "ports": [{"name": "http", "containerPort": 8080}]}]}});
        let taken = [
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "d", "namespace": "n", "annotations": {"a": "b"}},
                "spec": {"selector": {}, "template": template.clone()}}),
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
                "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template.clone()}}}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "p"}},
                "spec": template["spec"].clone(), "status": {"podIPs": [{"ip": "10.0.0.7"}]}}),
            json!({"apiVersion": "extensions/v1beta1", "kind": "Deployment", "metadata": {"name": "old"},
                "spec": {"template": template.clone()}}),
        ];
        let given_back = [
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad"},
                "spec": {"template": {"metadata": {"labels": {"app": 1}}}}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": 7}}),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "np"}}),
            json!({"kind": "Deployment", "metadata": {"name": "no-api-version"}}),
        ];
        let at = DocumentRef::detached(SourceId(0), 0);
        for value in &taken {
            let mut whole = Inventory::new("default");
            whole.add_object(at, String::new(), value.clone());
            for read in [ScannedObject::workload, ScannedObject::decoded_workload] {
                let mut from_head = Inventory::new("default");
                from_head.add_scanned_object(read(at, head_of(value), value).expect("taken"));
                assert_eq!(format!("{:?}", from_head.workloads), format!("{:?}", whole.workloads), "{value}");
                assert_eq!(from_head.objects.len(), 1, "{value}");
                assert_eq!(from_head.objects[0].value, whole.objects[0].value, "{value}");
                assert_eq!(format!("{:?}", from_head.objects[0]), format!("{:?}", whole.objects[0]), "{value}");
                assert_eq!(format!("{:?}", from_head.problems), format!("{:?}", whole.problems), "{value}");
                assert_eq!(format!("{:?}", from_head.namespaces), format!("{:?}", whole.namespaces), "{value}");
            }
        }
        for value in &given_back {
            assert_eq!(ScannedObject::workload(at, head_of(value), value).err(), Some(head_of(value)), "{value}");
            assert_eq!(
                ScannedObject::decoded_workload(at, head_of(value), value).err(),
                Some(head_of(value)),
                "{value}"
            );
        }
    }

    /// What a decoded workload's pods are read from (`PodFacts::decoded`, without typing the
    /// spec) is what typing the whole spec reads, field by field; a shape the short reading
    /// does not expect is left to the full one.
    #[test]
    fn a_decoded_workloads_pods_are_read_as_typing_reads_them() {
        use serde_json::json;
        let deployment = |template: Value| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                "spec": {"selector": {}, "template": template}})
        };
        let port = |p: Value| json!({"name": "c", "image": "i", "ports": [p]});
        let read_short = [
            // Sidecars (init containers that keep running) declare the pod's ports; other
            // init containers do not.
            deployment(json!({"metadata": {"labels": {"app": "a"}}, "spec": {
                "initContainers": [
                    {"name": "proxy", "image": "p", "restartPolicy": "Always", "ports": [{"containerPort": 15001}]},
                    {"name": "migrate", "image": "m", "restartPolicy": "OnFailure", "ports": [{"containerPort": 9}]},
                    {"name": "setup", "image": "s", "ports": [{"containerPort": 10}]}],
                "containers": [{"name": "c", "image": "i", "ports": [
                    {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                    {"containerPort": 53, "protocol": "UDP"},
                    {"containerPort": 9000, "protocol": "SCTP"},
                    {"containerPort": 1, "protocol": "QUIC"}]}]}})),
            // Absent and null read as the types' defaults.
            deployment(json!({"metadata": {"labels": null, "annotations": null}, "spec": {"hostNetwork": null,
                "initContainers": null, "containers": [{"name": "c", "image": "i", "ports": null}]}})),
            deployment(json!({"spec": {"containers": []}})),
            deployment(json!({"metadata": null, "spec": null})),
            deployment(json!({})),
            deployment(json!({"metadata": {"annotations": {"sidecar.istio.io/inject": "false", "other": "x"}},
                "spec": {"hostNetwork": true, "containers": [port(json!({"containerPort": 80, "hostIP": "0.0.0.0"}))]}})),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "p"}},
                "spec": {"containers": [port(json!({"containerPort": 80}))]},
                "status": {"podIPs": [{"ip": "10.0.0.7"}, {"ip": "fd00::7"}, {"ip": "not an address"}]}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "status": {"podIPs": null}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
                "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template":
                    {"metadata": {"labels": {"job": "c"}}, "spec": {"containers": [port(json!({"containerPort": 443}))]}}}}}}),
        ];
        let read_in_full = [
            // A step to the template missing: whether that is allowed depends on the kind.
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"}, "spec": {"selector": {}}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}),
            // Fields of the wrong type: the full reading reports them.
            deployment(json!({"metadata": {"labels": {"app": 1}}})),
            deployment(json!({"metadata": {"annotations": {"sidecar.istio.io/inject": true}}})),
            deployment(json!({"metadata": {"annotations": {"other": 1}}})),
            deployment(json!({"metadata": "m"})),
            deployment(json!({"spec": {"hostNetwork": "yes", "containers": []}})),
            deployment(json!({"spec": {}})),
            deployment(json!({"spec": {"containers": [port(json!({"containerPort": "80"}))]}})),
            deployment(json!({"spec": {"containers": [{"name": "c", "ports": {"containerPort": 80}}]}})),
            deployment(json!({"spec": {"containers": ["c"]}})),
            deployment(json!({"spec": {"containers": [], "initContainers": [{"name": "s", "restartPolicy": 1}]}})),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "status": {"podIPs": [{"ip": 7}]}}),
        ];
        let at = DocumentRef::detached(SourceId(0), 0);
        for value in read_short.iter().chain(&read_in_full) {
            let kind = Kind::classify(value["apiVersion"].as_str().unwrap(), value["kind"].as_str().unwrap()).0;
            let short = PodFacts::decoded(kind, value);
            assert_eq!(short.is_some(), read_short.contains(value), "read short: {value}");
            let full = pod_facts(kind, value, "");
            if let (Some(short), Ok(full)) = (&short, &full) {
                assert_eq!(format!("{short:?}"), format!("{full:?}"), "{value}");
            }
            if short.is_some() {
                assert!(full.is_ok(), "read short, but the full reading reports {full:?}: {value}");
            }
            // Either way the decoded workload is the one added whole, or both are given back.
            let mut whole = Inventory::new("default");
            whole.add_object(at, String::new(), value.clone());
            match ScannedObject::decoded_workload(at, head_of(value), value) {
                Ok(scanned) => {
                    let mut decoded = Inventory::new("default");
                    decoded.add_scanned_object(scanned);
                    assert_eq!(format!("{:?}", decoded.workloads), format!("{:?}", whole.workloads), "{value}");
                }
                Err(_) => assert!(full.is_err(), "{value}"),
            }
        }
        // Only what the API server checks and the model does not read is taken on trust: a
        // wrongly typed field elsewhere in the spec is not typed again.
        let mut elsewhere = read_short[0].clone();
        elsewhere["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!("soon");
        assert!(pod_facts(Kind::Deployment, &elsewhere, "").is_err());
        let short = PodFacts::decoded(Kind::Deployment, &elsewhere).map(|p| format!("{p:?}"));
        let typed = pod_facts(Kind::Deployment, &read_short[0], "").map(|p| format!("{p:?}")).ok();
        assert_eq!(short, typed);
    }

    #[test]
    fn lookup_agrees_with_value_pointer() {
        let value = serde_json::json!({"a": {"b": [1, {"c/d": 2, "e~f": 3}]}, "": 4});
        let pointers = [
            "",
            "/a",
            "/a/b",
            "/a/b/1",
            "/a/b/1/c~1d",
            "/a/b/1/e~0f",
            "/a/x",
            "/a/b/9",
            "/a/b/x",
            "/",
            "/a/b/01",
            "/a/b/+1",
            "a",
        ];
        for p in pointers {
            assert_eq!(lookup(&value, p), value.pointer(p), "{p}");
        }
    }

    #[test]
    fn controllers_are_read_from_events_as_from_their_value() {
        let (taken, fast, slow) = both_ways(DEPLOYMENT);
        assert!(taken);
        assert_eq!(fast.objects[0].value, slow.objects[0].value);
        assert_eq!(fast.objects[0].value.as_object().map(|m| m.len()), Some(3));
        assert_same_header(&fast.objects[0], &slow.objects[0]);
        let (a, b) = (&fast.workloads[0], &slow.workloads[0]);
        assert_eq!(
            (&a.labels, &a.ports, a.host_network, a.template),
            (&b.labels, &b.ports, b.host_network, b.template)
        );
        assert_eq!(a.ports.len(), 2);
        assert!(a.host_network);
        assert_eq!(fast.problems, slow.problems);
    }

    /// What an object says of itself is the same however it was read.
    fn assert_same_header(a: &Object, b: &Object) {
        assert_eq!(
            (&a.id, a.kind, a.doc, &a.pointer, &a.ignore, a.has_annotations),
            (&b.id, b.kind, b.doc, &b.pointer, &b.ignore, b.has_annotations)
        );
    }

    #[test]
    fn objects_keep_no_value_when_values_are_not_kept() {
        let annotated = DEPLOYMENT.replace(
            "  labels: {app: api}\n",
            "  labels: {app: api}\n  annotations: {portcullis.dev/ignore: 'PC005, host-network-bypass'}\n",
        );
        for (text, annotations) in [(DEPLOYMENT, false), (annotated.as_str(), true)] {
            let (taken, fast, slow) = both_ways_keeping(text, false);
            assert!(taken);
            assert_same_header(&fast.objects[0], &slow.objects[0]);
            assert_eq!(fast.objects[0].has_annotations, annotations);
            assert_eq!(fast.objects[0].ignore.len(), if annotations { 2 } else { 0 });
            assert_eq!(fast.objects[0].value, Value::Null);
            assert_eq!(fast.workloads[0].labels, slow.workloads[0].labels);
        }
        // Metadata the value path reports on is left to it: type errors (a model problem there)
        // and duplicate keys (the document is invalid YAML there).
        for metadata in ["  labels: {app: [api]}\n", "  annotations: [a]\n"] {
            let text = DEPLOYMENT.replace("  labels: {app: api}\n", metadata);
            let (taken, fast, slow) = both_ways_keeping(&text, false);
            assert!(!taken && fast.objects.is_empty() && fast.problems.is_empty(), "{metadata}");
            // The type error, then the name its default metadata lacks.
            let pointers: Vec<_> = slow.problems.iter().map(|p| p.pointer.as_str()).collect();
            assert_eq!(pointers.len(), 2, "{metadata}: {pointers:?}");
            assert!(pointers[0].starts_with("/metadata/") && pointers[1] == "/metadata", "{metadata}: {pointers:?}");
        }
        let duplicate = DEPLOYMENT.replace("  labels: {app: api}\n", "  labels: {app: api, app: web}\n");
        let (taken, fast, _) = both_ways_keeping(&duplicate, false);
        assert!(!taken && fast.objects.is_empty());
        assert!(scanned(&duplicate).into_document().is_err());
    }

    const POLICY: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n  namespace: shop\n  annotations: {a: b}\nspec:\n  podSelector: {matchLabels: {app: api}}\n  egress:\n  - to:\n    - namespaceSelector: {matchLabels: {name: kube-system}}\n    ports:\n    - {port: 53, protocol: UDP}\n    - {port: dns, endPort: 60}\n";

    #[test]
    fn policies_are_read_from_events_when_their_values_are_not_kept() {
        let (taken, fast, slow) = both_ways_keeping(POLICY, false);
        assert!(taken);
        let (a, b) = (&fast.policies[0], &slow.policies[0]);
        assert_eq!((&a.name, &a.namespace, &a.spec, a.types), (&b.name, &b.namespace, &b.spec, b.types));
        assert!(a.spec.egress.as_ref().is_some_and(|e| e[0].ports.as_ref().is_some_and(|p| p.len() == 2)));
        assert_same_header(&fast.objects[0], &slow.objects[0]);
        assert!(fast.objects[0].has_annotations);
        assert_eq!(fast.objects[0].value, Value::Null);
        assert_eq!(fast.problems, slow.problems);
        // Kept values (the default): the policy is left to the value path.
        assert!(!both_ways(POLICY).0);
        // Type errors are left to the value path, which reports them.
        let wrong_type = POLICY.replace("{port: dns, endPort: 60}", "{port: dns, endPort: sixty}");
        let (taken, fast, slow) = both_ways_keeping(&wrong_type, false);
        assert!(!taken && fast.objects.is_empty());
        assert_eq!(slow.problems.len(), 1);
    }

    #[test]
    fn what_the_value_path_reports_is_left_to_it() {
        let wrong_type = DEPLOYMENT.replace("hostNetwork: true", "hostNetwork: [yes]");
        let duplicate_in_status = DEPLOYMENT.replace("{replicas: 1}", "{replicas: 1, replicas: 2}");
        let policy =
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: {}}\n";
        let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n";
        let list = "apiVersion: v1\nkind: List\nitems: []\n";
        for text in [wrong_type.as_str(), duplicate_in_status.as_str(), policy, pod, list] {
            let (taken, fast, _) = both_ways(text);
            assert!(!taken, "{text}");
            assert!(fast.objects.is_empty() && fast.problems.is_empty());
        }
    }
}
