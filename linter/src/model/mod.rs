//! The typed model of the input: objects, workloads, policies and namespaces.

pub mod admin_policy;
pub mod calico_policy;
pub mod calico_selector;
pub mod cilium_policy;
pub mod cluster_policy;
pub mod inventory;
pub mod istio;
pub mod object;

pub use cluster_policy::{ClusterPolicy, ClusterPolicyId, ClusterPolicyKind};
pub use inventory::{
    ContainerPort, Directions, Intent, Inventory, Labels, ModelProblem, NAMESPACE_NAME_LABEL, NameMatch, NameRule,
    NamespaceInfo, Policy, PolicyId, Protocol, ServiceFacts, Workload, WorkloadId, lookup,
};
pub use object::{Kind, Object, ObjectId, ObjectRef, has_annotations};
