//! Cilium's policies (`cilium.io/v2` CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy),
//! as their CRDs and `pkg/policy/api` define them. One object holds one rule (`spec`) or several
//! (`specs`); each becomes a [`CiliumRule`]. What the fields mean for traffic is in
//! `semantics::cilium`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::{Deserialize, Deserializer};

use super::ObjectId;

/// The API version both kinds are served at.
pub const API_VERSION: &str = "cilium.io/v2";

/// Index of a [`CiliumRule`] in [`super::Inventory::cilium_rules`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CiliumRuleId(pub usize);

/// One rule of a Cilium policy object.
#[derive(Debug, Clone)]
pub struct CiliumRule {
    pub object: ObjectId,
    /// The object's name.
    pub name: String,
    /// The policy's namespace; `None` for a CiliumClusterwideNetworkPolicy.
    pub namespace: Option<String>,
    /// Where the rule is written in the object: `/spec` or `/specs/N`.
    pub pointer: String,
    pub spec: RuleSpec,
}

impl CiliumRule {
    /// The kind the rule was written in.
    pub fn kind(&self) -> &'static str {
        match self.namespace {
            Some(_) => "CiliumNetworkPolicy",
            None => "CiliumClusterwideNetworkPolicy",
        }
    }

    /// How messages name the rule: `CiliumNetworkPolicy shop/allow-dns`,
    /// `CiliumClusterwideNetworkPolicy default-deny (specs[1])`.
    pub fn describe(&self) -> String {
        let name = match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind(), self.name),
            None => format!("{} {}", self.kind(), self.name),
        };
        match self.pointer.strip_prefix("/specs/") {
            Some(i) => format!("{name} (specs[{i}])"),
            None => name,
        }
    }
}

/// A rule (`spec`, or an item of `specs`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleSpec {
    /// The pods the rule applies to (in the policy's namespace for a CiliumNetworkPolicy).
    pub endpoint_selector: Option<LabelSelector>,
    /// Nodes (host policies, clusterwide only): such a rule applies to no pod.
    pub node_selector: Option<LabelSelector>,
    #[serde(default)]
    pub ingress: Vec<PeerRule>,
    #[serde(default)]
    pub ingress_deny: Vec<PeerRule>,
    #[serde(default)]
    pub egress: Vec<PeerRule>,
    #[serde(default)]
    pub egress_deny: Vec<PeerRule>,
    #[serde(default)]
    pub enable_default_deny: DefaultDeny,
    #[serde(default)]
    pub description: Option<String>,
}

/// `enableDefaultDeny`: unset means "on for a direction that has rules" (allow or deny).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct DefaultDeny {
    pub ingress: Option<bool>,
    pub egress: Option<bool>,
}

/// An ingress or egress rule, allow or deny. The ingress field names (`fromEndpoints`, …) and
/// the egress ones (`toEndpoints`, …) are read into the same fields. A field that is absent
/// does not restrict the rule; a field that is present but empty makes it select no peer
/// (Cilium's `mergeEndpointSelectors`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerRule {
    #[serde(rename = "toEndpoints", alias = "fromEndpoints")]
    pub endpoints: Option<Vec<LabelSelector>>,
    #[serde(rename = "toRequires", alias = "fromRequires")]
    pub requires: Option<Vec<LabelSelector>>,
    #[serde(rename = "toCIDR", alias = "fromCIDR")]
    pub cidr: Option<Vec<String>>,
    #[serde(rename = "toCIDRSet", alias = "fromCIDRSet")]
    pub cidr_set: Option<Vec<CidrRule>>,
    #[serde(rename = "toEntities", alias = "fromEntities")]
    pub entities: Option<Vec<String>>,
    #[serde(rename = "toNodes", alias = "fromNodes")]
    pub nodes: Option<Vec<LabelSelector>>,
    #[serde(rename = "toGroups", alias = "fromGroups")]
    pub groups: Option<Vec<serde_json::Value>>,
    /// Egress only.
    pub to_services: Option<Vec<serde_json::Value>>,
    /// Egress only.
    #[serde(rename = "toFQDNs")]
    pub to_fqdns: Option<Vec<FqdnSelector>>,
    pub to_ports: Option<Vec<PortRule>>,
    pub icmps: Option<Vec<serde_json::Value>>,
}

/// `toCIDRSet`/`fromCIDRSet` item.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CidrRule {
    pub cidr: Option<String>,
    #[serde(default)]
    pub except: Vec<String>,
    /// A CiliumCIDRGroup by name (its CIDRs are not in the input).
    pub cidr_group_ref: Option<String>,
    pub cidr_group_selector: Option<LabelSelector>,
}

/// `toFQDNs` item.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FqdnSelector {
    pub match_name: Option<String>,
    pub match_pattern: Option<String>,
}

/// `toPorts` item: ports, and optional layer-7 rules.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortRule {
    #[serde(default)]
    pub ports: Vec<PortProtocol>,
    /// `rules`: `dns`, `http`, `kafka`, `l7proto`. Only whether `dns` is present matters here.
    pub rules: Option<serde_json::Value>,
}

impl PortRule {
    /// Whether the port rule sends DNS through Cilium's DNS proxy (`rules.dns`), which is how
    /// Cilium learns the addresses `toFQDNs` rules allow.
    pub fn has_dns_rules(&self) -> bool {
        self.rules.as_ref().and_then(|r| r.get("dns")).is_some_and(|d| !d.is_null())
    }
}

/// `ports` item: a port number, name or range, and a protocol (any when absent).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortProtocol {
    /// A number (`"0"` or empty: every port) or a named port.
    #[serde(default, deserialize_with = "string_or_number")]
    pub port: String,
    pub end_port: Option<i32>,
    pub protocol: Option<String>,
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        S(String),
        N(i64),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::S(s) => s,
        Raw::N(n) => n.to_string(),
    })
}
