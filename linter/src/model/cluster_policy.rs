//! ClusterNetworkPolicy (`policy.networking.k8s.io/v1alpha2`, kubernetes-sigs/network-policy-api
//! v0.2.0+): the cluster-wide tiers that sit before (Admin) and after (Baseline) NetworkPolicy.
//!
//! The types follow the API's Go types field for field (`apis/v1alpha2/clusternetworkpolicy_types.go`);
//! what each field means for traffic is in `semantics::cluster`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;

use super::ObjectId;

/// The API version and kind this module reads.
pub const API_VERSION: &str = "policy.networking.k8s.io/v1alpha2";
pub const KIND: &str = "ClusterNetworkPolicy";

/// Index of a [`ClusterPolicy`] in [`super::Inventory::cluster_policies`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterPolicyId(pub usize);

/// A cluster-wide tiered policy of the input: a ClusterNetworkPolicy, or a v1alpha1
/// AdminNetworkPolicy or BaselineAdminNetworkPolicy read into the same spec
/// ([`super::admin_policy`]).
#[derive(Debug, Clone)]
pub struct ClusterPolicy {
    pub object: ObjectId,
    pub name: String,
    pub kind: ClusterPolicyKind,
    pub spec: ClusterNetworkPolicySpec,
}

/// The kind a [`ClusterPolicy`] was written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterPolicyKind {
    /// `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy.
    ClusterNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy (the Admin tier).
    AdminNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1` BaselineAdminNetworkPolicy (the Baseline tier).
    BaselineAdminNetworkPolicy,
}

impl ClusterPolicyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterPolicyKind::ClusterNetworkPolicy => KIND,
            ClusterPolicyKind::AdminNetworkPolicy => "AdminNetworkPolicy",
            ClusterPolicyKind::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
        }
    }

    /// The action as this kind writes it (v1alpha1 says `Allow` where v1alpha2 says `Accept`).
    pub fn action_name(self, action: Action) -> &'static str {
        match (self, action) {
            (ClusterPolicyKind::ClusterNetworkPolicy, a) => a.as_str(),
            (_, Action::Accept) => "Allow",
            (_, a) => a.as_str(),
        }
    }

    /// The `spec` key of a rule's port list: `protocols` (v1alpha2) or `ports` (v1alpha1).
    pub fn ports_key(self) -> &'static str {
        match self {
            ClusterPolicyKind::ClusterNetworkPolicy => "protocols",
            _ => "ports",
        }
    }
}

impl ClusterPolicy {
    /// How messages name the policy: `Admin-tier ClusterNetworkPolicy x (priority 5)`,
    /// `AdminNetworkPolicy x (priority 5)`, `BaselineAdminNetworkPolicy default`.
    pub fn describe(&self) -> String {
        match self.kind {
            ClusterPolicyKind::ClusterNetworkPolicy => {
                format!("{}-tier {KIND} {} (priority {})", self.spec.tier.as_str(), self.name, self.spec.priority)
            }
            ClusterPolicyKind::AdminNetworkPolicy => {
                format!("AdminNetworkPolicy {} (priority {})", self.name, self.spec.priority)
            }
            ClusterPolicyKind::BaselineAdminNetworkPolicy => format!("BaselineAdminNetworkPolicy {}", self.name),
        }
    }
}

/// `spec`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetworkPolicySpec {
    pub tier: Tier,
    /// 0 to 1000; lower is evaluated first within the tier.
    pub priority: i32,
    pub subject: Subject,
    #[serde(default)]
    pub ingress: Vec<IngressRule>,
    #[serde(default)]
    pub egress: Vec<EgressRule>,
}

/// `spec.tier`: Admin before NetworkPolicy, Baseline after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize)]
pub enum Tier {
    Admin,
    Baseline,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Admin => "Admin",
            Tier::Baseline => "Baseline",
        }
    }
}

/// `spec.subject`: exactly one of the two (the API server enforces it).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    pub namespaces: Option<LabelSelector>,
    pub pods: Option<NamespacedPod>,
}

/// Pods selected by namespace AND pod labels.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedPod {
    /// Empty (or absent) selects every namespace.
    #[serde(default)]
    pub namespace_selector: LabelSelector,
    #[serde(default)]
    pub pod_selector: LabelSelector,
}

/// `Accept`, `Deny` or `Pass`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
pub enum Action {
    Accept,
    Deny,
    Pass,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "Accept",
            Action::Deny => "Deny",
            Action::Pass => "Pass",
        }
    }
}

/// `spec.ingress[]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngressRule {
    #[serde(default)]
    pub name: Option<String>,
    pub action: Action,
    #[serde(default)]
    pub from: Vec<Peer>,
    #[serde(default)]
    pub protocols: Vec<ProtocolMatch>,
}

/// `spec.egress[]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressRule {
    #[serde(default)]
    pub name: Option<String>,
    pub action: Action,
    #[serde(default)]
    pub to: Vec<Peer>,
    #[serde(default)]
    pub protocols: Vec<ProtocolMatch>,
}

/// One peer of a rule: exactly one field is set (ingress peers have only `namespaces` and
/// `pods`). A peer with none of the fields this version knows is a newer API's: the API says to
/// fail closed with it (an Accept rule matches nothing through it, Deny and Pass match all).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    pub namespaces: Option<LabelSelector>,
    pub pods: Option<NamespacedPod>,
    pub nodes: Option<LabelSelector>,
    pub networks: Option<Vec<String>>,
    pub domain_names: Option<Vec<String>>,
}

/// `protocols[]`: one of `tcp`, `udp`, `sctp` or `destinationNamedPort`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolMatch {
    pub tcp: Option<ProtocolPort>,
    pub udp: Option<ProtocolPort>,
    pub sctp: Option<ProtocolPort>,
    pub destination_named_port: Option<String>,
}

/// `tcp`/`udp`/`sctp`: the destination port matched.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolPort {
    pub destination_port: Option<Port>,
}

/// A port number or an inclusive range (exactly one).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    pub number: Option<i32>,
    pub range: Option<PortRange>,
}

/// `start`..=`end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct PortRange {
    pub start: i32,
    pub end: i32,
}
