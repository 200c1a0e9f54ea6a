//! FQDN egress intents (`EgressIntent`, DESIGN §7): the custom resource's types, the name
//! grammar, the address cache, rendering to NetworkPolicies, the controller's in-memory state
//! and DNS resolution.
//!
//! Everything here except [`resolve`] is pure: time is a parameter, so tests travel in time.
//! With the `crd` feature the spec also derives kube's `CustomResource` and a JSON schema, so
//! the CRD the webhook installs is generated from the very types the linter validates.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};

pub mod cache;
pub mod guard;
pub mod intents;
pub mod istio;
pub mod map;
pub mod observation;
pub mod otterize;
pub mod render;
pub mod resolve;
pub mod schedule;
pub mod wire;

pub use cache::{AddressCache, AddressSource, CacheConfig};
pub use guard::{AddressGuard, Refusal};
pub use intents::{Answer, ClientPod, IntentKey, IntentMeta, IntentSet, Observation};
pub use render::{RenderConfig, Rendered};

/// API group of EgressIntent.
pub const GROUP: &str = "portcullis.dev";
/// `apiVersion` of EgressIntent.
pub const API_VERSION: &str = "portcullis.dev/v1alpha1";
/// `kind` of EgressIntent.
pub const KIND: &str = "EgressIntent";

/// An exact name: RFC 1123 labels (underscores tolerated, as in DNS), a dot, optional final dot.
#[cfg(feature = "crd")]
const FQDN_REGEX: &str =
    r"^([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)+[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?$";
/// `*.suffix` or `**.suffix` where the suffix is an exact name.
#[cfg(feature = "crd")]
const PATTERN_REGEX: &str =
    r"^\*\*?\.([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)+[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?$";

/// Which pods of the namespace may reach which external names.
// The fields are deliberately tolerant (`Option`, wide integers) so that a wrong value is a
// `PC015` finding with a location rather than a type error; the CRD schema is strict.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "crd", derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    feature = "crd",
    kube(
        group = "portcullis.dev",
        version = "v1alpha1",
        kind = "EgressIntent",
        namespaced,
        shortname = "ei",
        category = "portcullis",
        status = "EgressIntentStatus",
        doc = "Allows the selected pods to reach external names (FQDNs); portcullis renders it to a NetworkPolicy with ipBlocks kept fresh from DNS.",
        printcolumn = r#"{"name":"Policy","type":"string","jsonPath":".status.policyName"}"#,
        printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    )
)]
#[cfg_attr(feature = "crd", schemars(transform = egress_required))]
pub struct EgressIntentSpec {
    /// The pods of the namespace allowed to reach the targets; `{}` selects every pod.
    #[cfg_attr(feature = "crd", schemars(required))]
    pub pod_selector: Option<LabelSelector>,
    /// The destinations.
    // `serde(default)` keeps a missing list a located PC015 finding; the schema requires the
    // list and carries no `default` (an empty default would fail its own `minItems`, and the
    // API server refuses such a CRD).
    #[serde(default)]
    #[cfg_attr(feature = "crd", schemars(length(min = 1, max = 64), transform = without_default))]
    pub egress: Vec<EgressTarget>,
}

/// One allowed destination: an exact name or a wildcard pattern, with ports.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "crd",
    schemars(extend("x-kubernetes-validations" = [
        {
            "rule": "has(self.fqdn) != has(self.fqdnPattern)",
            "message": "set exactly one of fqdn and fqdnPattern",
        },
        {
            "rule": "!has(self.fqdn) || !self.fqdn.matches('(^|[.])[0-9]+[.]?$')",
            "message": "fqdn is an IP address, not a DNS name; allow addresses with a NetworkPolicy ipBlock",
        },
        {
            "rule": "!has(self.fqdn) || !self.fqdn.matches('(?i)(^|[.])(localhost|svc|cluster[.]local)[.]?$')",
            "message": "fqdn is an in-cluster name (localhost, .svc, .cluster.local); allow in-cluster destinations with a NetworkPolicy selector",
        },
        {
            "rule": "!has(self.fqdnPattern) || !self.fqdnPattern.matches('(?i)(^|[.])(localhost|svc|cluster[.]local|[0-9]+)[.]?$')",
            "message": "fqdnPattern must name external hosts, not in-cluster names or addresses",
        },
    ]))
)]
pub struct EgressTarget {
    /// An exact name such as `api.stripe.com`, resolved by the controller and learned by the sensor.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(length(max = 253), regex(pattern = FQDN_REGEX)))]
    pub fqdn: Option<String>,
    /// `*.example.com` (exactly one label) or `**.example.com` (one or more labels); learned
    /// only from DNS answers the sensor sees.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(length(max = 253), regex(pattern = PATTERN_REGEX)))]
    pub fqdn_pattern: Option<String>,
    /// Ports; none means every port and protocol.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "crd", schemars(length(max = 32)))]
    pub ports: Vec<IntentPort>,
}

/// A destination port; the protocol defaults to TCP.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
pub struct IntentPort {
    /// The port number, 1-65535.
    // Kept wide so an out-of-range value is a finding, not a type error.
    #[cfg_attr(feature = "crd", schemars(range(min = 1, max = 65535)))]
    pub port: i64,
    /// TCP (the default), UDP or SCTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "crd", schemars(extend("enum" = ["TCP", "UDP", "SCTP"])))]
    pub protocol: Option<String>,
}

/// Written by the portcullis controller: the rendered policy and the addresses it allows.
// The learned addresses persist here so a restarted controller loses none of them.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
pub struct EgressIntentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The NetworkPolicy rendered from the intent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
    /// Per name: its state and known addresses.
    #[serde(default)]
    pub addresses: Vec<NameStatus>,
    /// `Ready` is true when every exact name has an address and the policy is written.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// The addresses of one name.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
pub struct NameStatus {
    /// The name (absent for a pattern that has not matched any answer yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    /// The `fqdnPattern` this name was learned for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// `Pending` until the name has an address.
    pub state: NameState,
    /// The addresses the policy allows for this name.
    #[serde(default)]
    pub ips: Vec<AddressStatus>,
    /// Addresses DNS or a sensor gave for this name that the address guard refused (cloud
    /// metadata, loopback, link-local, cluster or private ranges), with why; never allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedAddress>,
}

/// An address the address guard kept out of the policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
pub struct RefusedAddress {
    /// The address.
    #[cfg_attr(feature = "crd", schemars(with = "String"))]
    pub ip: std::net::IpAddr,
    /// Why it is refused.
    pub reason: String,
}

/// Whether a name has an address yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
pub enum NameState {
    Pending,
    Resolved,
}

/// One known address of a name.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
pub struct AddressStatus {
    /// An IPv4 or IPv6 address.
    #[cfg_attr(feature = "crd", schemars(with = "String"))]
    pub ip: std::net::IpAddr,
    /// `resolver` (the controller's own lookup) or `sensor` (an answer a selected pod received).
    pub source: AddressSource,
    /// When a DNS answer last contained the address.
    pub last_seen: Time,
    /// When the DNS answer expires (TTL after the floor and cap); the address stays in the
    /// policy for the grace period after this.
    pub expires_at: Time,
}

/// Marks `egress` required (schemars leaves `serde(default)` fields optional).
#[cfg(feature = "crd")]
fn egress_required(schema: &mut schemars::Schema) {
    if let Some(serde_json::Value::Array(required)) = schema.get_mut("required")
        && !required.iter().any(|r| r == "egress")
    {
        required.push(serde_json::Value::String("egress".to_owned()));
    }
}

/// Drops the `default` schemars derives from `serde(default)`.
#[cfg(feature = "crd")]
fn without_default(schema: &mut schemars::Schema) {
    schema.remove("default");
}

/// A wildcard pattern per DESIGN §7.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NamePattern {
    /// `*.suffix`: exactly one label before the suffix.
    OneLabel(String),
    /// `**.suffix`: one or more labels before the suffix.
    AnyLabels(String),
}

impl NamePattern {
    /// Whether a normalized name matches.
    pub fn matches(&self, name: &str) -> bool {
        let (suffix, many) = match self {
            NamePattern::OneLabel(s) => (s, false),
            NamePattern::AnyLabels(s) => (s, true),
        };
        let Some(head) = name.strip_suffix(suffix.as_str()).and_then(|h| h.strip_suffix('.')) else {
            return false;
        };
        !head.is_empty() && (many || !head.contains('.'))
    }
}

/// Normalizes and validates an exact name: lowercase, no trailing dot, RFC 1123 labels.
pub fn parse_fqdn(raw: &str) -> Result<String, String> {
    let name = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    if name.is_empty() {
        return Err("the name is empty".to_owned());
    }
    if !name.is_ascii() {
        return Err(format!("{raw:?} is not ASCII; write internationalized names in their IDNA (xn--) form"));
    }
    if name.len() > 253 {
        return Err(format!("{raw:?} is longer than 253 characters"));
    }
    if name.contains('*') {
        return Err(format!("{raw:?} contains a wildcard; use fqdnPattern for patterns"));
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err(format!("{raw:?} is not a fully qualified name (it has no dot)"));
    }
    for label in &labels {
        check_label(raw, label)?;
    }
    // A last label of digits is an IPv4 literal (or no hostname at all, RFC 3696 §2): the
    // controller would query DNS for it forever.
    if labels.last().is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("{raw:?} is an IP address, not a DNS name; allow addresses with a NetworkPolicy ipBlock"));
    }
    if let Some(suffix) = IN_CLUSTER_SUFFIXES.iter().find(|s| name == **s || name.ends_with(&format!(".{s}"))) {
        return Err(format!(
            "{raw:?} is an in-cluster name (.{suffix}); allow in-cluster destinations with a NetworkPolicy podSelector or namespaceSelector"
        ));
    }
    Ok(name)
}

/// Name suffixes that never leave the cluster or the node: an EgressIntent for them would
/// open in-cluster or loopback addresses through DNS.
pub const IN_CLUSTER_SUFFIXES: [&str; 3] = ["localhost", "svc", "cluster.local"];

fn check_label(raw: &str, label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err(format!("{raw:?} has an empty label"));
    }
    if label.len() > 63 {
        return Err(format!("{raw:?} has a label longer than 63 characters"));
    }
    if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(format!("{raw:?} has a label with characters other than letters, digits, '-' and '_'"));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(format!("{raw:?} has a label that starts or ends with '-'"));
    }
    Ok(())
}

/// Parses `*.example.com` or `**.example.com`; no other wildcard form is valid.
pub fn parse_pattern(raw: &str) -> Result<NamePattern, String> {
    let (many, rest) = if let Some(rest) = raw.strip_prefix("**.") {
        (true, rest)
    } else if let Some(rest) = raw.strip_prefix("*.") {
        (false, rest)
    } else {
        return Err(format!("{raw:?} must start with \"*.\" (one label) or \"**.\" (one or more labels)"));
    };
    if rest.contains('*') {
        return Err(format!("{raw:?} has a wildcard after its first label; only a leading \"*.\" or \"**.\" is valid"));
    }
    let suffix = parse_fqdn(rest).map_err(|e| format!("pattern {raw:?}: {e}"))?;
    Ok(if many { NamePattern::AnyLabels(suffix) } else { NamePattern::OneLabel(suffix) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_label_patterns_match_exactly_one_label() {
        let p = parse_pattern("*.example.com").unwrap();
        assert!(p.matches("a.example.com"));
        assert!(!p.matches("a.b.example.com"));
        assert!(!p.matches("example.com"));
        assert!(!p.matches("aexample.com"));
    }

    #[test]
    fn many_label_patterns_match_one_or_more_labels() {
        let p = parse_pattern("**.example.com").unwrap();
        assert!(p.matches("a.example.com"));
        assert!(p.matches("a.b.example.com"));
        assert!(!p.matches("example.com"));
    }

    #[test]
    fn other_wildcard_forms_are_invalid() {
        for bad in ["a.*.com", "*example.com", "*", "*.", "***.example.com", "*.*.example.com", "example.*"] {
            assert!(parse_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_normalized() {
        assert_eq!(parse_fqdn("API.Stripe.com.").unwrap(), "api.stripe.com");
        assert!(parse_fqdn("localhost").is_err());
        assert!(parse_fqdn("-a.com").is_err());
        assert!(parse_fqdn("a..com").is_err());
        assert!(parse_fqdn("bücher.de").is_err());
    }

    #[test]
    fn ip_literals_and_in_cluster_names_are_refused() {
        for bad in [
            "10.0.0.1",
            "169.254.169.254.",
            "a.123",
            "localhost",
            "app.localhost",
            "kubernetes.default.svc",
            "api.shop.svc.cluster.local",
            "Kube-DNS.Kube-System.SVC.Cluster.Local.",
        ] {
            assert!(parse_fqdn(bad).is_err(), "{bad}");
        }
        assert!(parse_fqdn("10.0.0.1").unwrap_err().contains("is an IP address"));
        assert!(parse_fqdn("api.shop.svc.cluster.local").unwrap_err().contains("in-cluster name (.cluster.local)"));
        for bad in ["*.svc.cluster.local", "**.cluster.local", "*.localhost", "**.0.10"] {
            assert!(parse_pattern(bad).is_err(), "{bad}");
        }
        for good in ["api.stripe.com", "s3.eu-west-2.amazonaws.com", "1password.com", "svc.example.com", "x.local"] {
            assert!(parse_fqdn(good).is_ok(), "{good}");
        }
    }
}
