//! One Kubernetes object as found in the input, and the kinds the engine understands.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::load::DocumentRef;

/// Identifies an object the way people name it: `apps/v1 Deployment shop/pay`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    /// `None` for cluster-scoped kinds (Namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Kinds with meaning to the engine. Everything else is carried as [`Kind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Namespace,
    NetworkPolicy,
    Pod,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    ReplicationController,
    EgressIntent,
    /// `policy.networking.k8s.io/v1alpha2` (cluster-scoped).
    ClusterNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1` (cluster-scoped).
    AdminNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1` (cluster-scoped, named `default`).
    BaselineAdminNetworkPolicy,
    /// `cilium.io/v2`.
    CiliumNetworkPolicy,
    /// `cilium.io/v2` (cluster-scoped).
    CiliumClusterwideNetworkPolicy,
    /// `projectcalico.org/v3` (or `crd.projectcalico.org/v1`) kinds.
    Calico(super::calico_policy::CalicoKind),
    /// `networking.istio.io` `v1`, `v1beta1` or `v1alpha3` egress kinds (namespaced).
    Istio(super::istio::IstioKind),
    Other,
}

/// How an `apiVersion` stands for a known kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersionStatus {
    Served,
    /// Removed from Kubernetes in the given minor version; the API server rejects it.
    Removed(&'static str),
}

impl Kind {
    /// Classifies `apiVersion` + `kind`. Unknown groups (CRDs that happen to reuse a kind name)
    /// are `Other`.
    pub fn classify(api_version: &str, kind: &str) -> (Kind, ApiVersionStatus) {
        use ApiVersionStatus::{Removed, Served};
        if matches!(api_version, super::calico_policy::API_VERSION | super::calico_policy::CRD_API_VERSION) {
            return match super::calico_policy::CalicoKind::parse(kind) {
                Some(k) => (Kind::Calico(k), Served),
                None => (Kind::Other, Served),
            };
        }
        if let Some(k) = super::istio::IstioKind::classify(api_version, kind) {
            return (Kind::Istio(k), Served);
        }
        let k = match kind {
            "Namespace" => Kind::Namespace,
            "NetworkPolicy" => Kind::NetworkPolicy,
            "Pod" => Kind::Pod,
            "Deployment" => Kind::Deployment,
            "ReplicaSet" => Kind::ReplicaSet,
            "StatefulSet" => Kind::StatefulSet,
            "DaemonSet" => Kind::DaemonSet,
            "Job" => Kind::Job,
            "CronJob" => Kind::CronJob,
            "ReplicationController" => Kind::ReplicationController,
            "EgressIntent" => Kind::EgressIntent,
            "ClusterNetworkPolicy" => Kind::ClusterNetworkPolicy,
            "AdminNetworkPolicy" => Kind::AdminNetworkPolicy,
            "BaselineAdminNetworkPolicy" => Kind::BaselineAdminNetworkPolicy,
            "CiliumNetworkPolicy" => Kind::CiliumNetworkPolicy,
            "CiliumClusterwideNetworkPolicy" => Kind::CiliumClusterwideNetworkPolicy,
            _ => return (Kind::Other, Served),
        };
        let status = match (k, api_version) {
            (Kind::Namespace | Kind::Pod | Kind::ReplicationController, "v1")
            | (Kind::NetworkPolicy, "networking.k8s.io/v1")
            | (Kind::Deployment | Kind::ReplicaSet | Kind::StatefulSet | Kind::DaemonSet, "apps/v1")
            | (Kind::Job | Kind::CronJob, "batch/v1")
            | (Kind::EgressIntent, crate::egress::API_VERSION)
            | (Kind::ClusterNetworkPolicy, super::cluster_policy::API_VERSION)
            | (Kind::AdminNetworkPolicy | Kind::BaselineAdminNetworkPolicy, super::admin_policy::API_VERSION)
            | (Kind::CiliumNetworkPolicy | Kind::CiliumClusterwideNetworkPolicy, super::cilium_policy::API_VERSION) => {
                Served
            }
            (Kind::NetworkPolicy, "extensions/v1beta1") => Removed("1.16"),
            (Kind::Deployment | Kind::ReplicaSet | Kind::DaemonSet, "extensions/v1beta1")
            | (
                Kind::Deployment | Kind::ReplicaSet | Kind::StatefulSet | Kind::DaemonSet,
                "apps/v1beta1" | "apps/v1beta2",
            ) => Removed("1.16"),
            (Kind::CronJob, "batch/v1beta1") => Removed("1.25"),
            _ => return (Kind::Other, Served),
        };
        (k, status)
    }

    /// Whether objects of the kind have no namespace.
    pub fn cluster_scoped(self) -> bool {
        match self {
            Kind::Namespace | Kind::CiliumClusterwideNetworkPolicy => true,
            Kind::Calico(k) => k.cluster_scoped(),
            k => k.is_cluster_policy(),
        }
    }

    /// The cluster-wide tiered policy kinds ([`super::ClusterPolicy`]).
    pub fn is_cluster_policy(self) -> bool {
        matches!(self, Kind::ClusterNetworkPolicy | Kind::AdminNetworkPolicy | Kind::BaselineAdminNetworkPolicy)
    }

    pub fn is_workload(self) -> bool {
        matches!(
            self,
            Kind::Pod
                | Kind::Deployment
                | Kind::ReplicaSet
                | Kind::StatefulSet
                | Kind::DaemonSet
                | Kind::Job
                | Kind::CronJob
                | Kind::ReplicationController
        )
    }

    /// JSON pointer to the pod template of a workload kind (`""` for a Pod: the object itself).
    pub fn pod_template_pointer(self) -> Option<&'static str> {
        match self {
            Kind::Pod => Some(""),
            Kind::Deployment
            | Kind::ReplicaSet
            | Kind::StatefulSet
            | Kind::DaemonSet
            | Kind::Job
            | Kind::ReplicationController => Some("/spec/template"),
            Kind::CronJob => Some("/spec/jobTemplate/spec/template"),
            _ => None,
        }
    }
}

/// Index of an [`Object`] in its [`crate::model::Inventory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId(pub usize);

/// One object with where it came from.
#[derive(Debug)]
pub struct Object {
    pub id: ObjectRef,
    pub kind: Kind,
    /// The document holding the object.
    pub doc: DocumentRef,
    /// Pointer to the object inside its document (`""`, or `/items/3` in a `List`).
    pub pointer: String,
    /// The object as parsed. Workloads keep only `apiVersion`, `kind` and `metadata` once their
    /// pods are modelled (see [`crate::model::Workload`]): their specs are most of a run's
    /// memory and nothing reads them again. In runs that only lint
    /// ([`crate::model::Inventory::keep_values`]) the workloads and NetworkPolicies the fast path
    /// read keep `Value::Null`: what the engine needs of them is typed elsewhere.
    pub value: Value,
    /// Rule codes and names from the `portcullis.dev/ignore` annotation.
    pub ignore: BTreeSet<String>,
    /// Whether `metadata.annotations` is a mapping (a patch then adds its annotation to it
    /// rather than creating it); known even when `value` is not kept.
    pub has_annotations: bool,
}

impl Object {
    /// `pointer` relative to the object, made relative to its document.
    pub fn doc_pointer(&self, pointer: &str) -> String {
        format!("{}{}", self.pointer, pointer)
    }

    /// The object's namespace (resolved; `None` for cluster-scoped kinds).
    pub fn namespace(&self) -> Option<&str> {
        self.id.namespace.as_deref()
    }
}

/// Whether an object value has a `metadata.annotations` mapping.
pub fn has_annotations(value: &Value) -> bool {
    value.get("metadata").and_then(|m| m.get("annotations")).is_some_and(Value::is_object)
}

/// Escapes one segment for a JSON pointer (RFC 6901).
pub fn pointer_escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}
