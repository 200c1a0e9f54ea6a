use k8s_openapi::api::networking::v1::NetworkPolicyPort;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;
use crate::model::Protocol;
use crate::semantics::evaluator::port_lists;

declare_rule! {
    /// ## What it does
    /// Finds NetworkPolicy ports the API server rejects: a number outside 1–65535, a port name
    /// that is not a valid IANA service name, `endPort` without a numeric `port`, `endPort`
    /// below `port`, and a protocol other than `TCP`, `UDP` or `SCTP` (case matters: `tcp` is
    /// rejected).
    ///
    /// ## Why is this bad?
    /// `kubectl apply` fails, and the traffic the policy was meant to allow stays blocked (or the
    /// isolation it was meant to add never happens).
    ///
    /// ## Example
    /// ```yaml
    ///     ports:
    ///     - {port: 32000, endPort: 31000, protocol: tcp}
    /// ```
    ///
    /// Use instead:
    /// ```yaml
    ///     ports:
    ///     - {port: 31000, endPort: 32000, protocol: TCP}
    /// ```
    ///
    /// ## Fix safety
    /// No automatic fix.
    pub struct InvalidPort {
        code: "PC013",
        name: "invalid-port",
        severity: Error,
        fix: None,
    }
}

impl Rule for InvalidPort {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        for policy in cx.written_policies() {
            for list in port_lists(policy) {
                for (pi, port) in list.items.iter().enumerate() {
                    let at = list.port_pointer(pi);
                    if let Some((field, msg)) = port_problem(port) {
                        out.push(cx.finding(
                            &Self::META,
                            policy.object,
                            &format!("{at}/{field}"),
                            format!("policy {}: {msg}", policy.name),
                        ));
                    }
                }
            }
        }
    }
}

/// The first problem of a port entry: (field, message).
fn port_problem(port: &NetworkPolicyPort) -> Option<(&'static str, String)> {
    if let Some(p) = &port.protocol
        && Protocol::parse(p).is_none()
    {
        return Some(("protocol", format!("protocol {p:?} is not one of TCP, UDP, SCTP (names are case-sensitive)")));
    }
    match (&port.port, port.end_port) {
        (Some(IntOrString::Int(n)), _) if !(1..=65535).contains(n) => {
            Some(("port", format!("port {n} is outside 1-65535")))
        }
        (Some(IntOrString::String(name)), _) if let Some(why) = service_name_problem(name) => {
            Some(("port", format!("port name {name:?} is not a valid IANA service name: {why}")))
        }
        (None, Some(_)) => Some(("endPort", "endPort needs a numeric port".to_owned())),
        (Some(IntOrString::String(name)), Some(_)) => {
            Some(("endPort", format!("endPort needs a numeric port, not the named port {name:?}")))
        }
        (Some(IntOrString::Int(n)), Some(end)) if end < *n => {
            Some(("endPort", format!("endPort {end} is below port {n}")))
        }
        (Some(IntOrString::Int(_)), Some(end)) if end > 65535 => {
            Some(("endPort", format!("endPort {end} is outside 1-65535")))
        }
        _ => None,
    }
}

/// RFC 6335 service names as Kubernetes validates them (IsValidPortName).
fn service_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 15 {
        return Some("it must be 1 to 15 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Some("only lowercase letters, digits and '-' are allowed");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        return Some("it must contain a letter (a number in quotes is a name, not a port)");
    }
    if name.starts_with('-') || name.ends_with('-') || name.contains("--") {
        return Some("'-' may not start or end it, or appear twice in a row");
    }
    None
}
