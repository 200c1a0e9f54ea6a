//! FQDN egress intents (`EgressIntent`, DESIGN §7): the types and the name grammar.
//!
//! Rendering intents to NetworkPolicies and the address cache arrive with the FQDN-intents
//! issue; the linter already validates intents (`PC015`) with the grammar defined here.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// `apiVersion` of EgressIntent.
pub const API_VERSION: &str = "portcullis.dev/v1alpha1";

/// `spec` of an EgressIntent.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressIntentSpec {
    /// The pods allowed to reach the targets (required).
    pub pod_selector: Option<LabelSelector>,
    #[serde(default)]
    pub egress: Vec<EgressTarget>,
}

/// One allowed destination: an exact name or a wildcard pattern, with ports.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressTarget {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fqdn_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<IntentPort>,
}

/// A destination port; the protocol defaults to TCP.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntentPort {
    /// Kept wide so an out-of-range value is a finding, not a type error.
    pub port: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
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
    Ok(name)
}

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
}
