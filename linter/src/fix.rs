//! Fixes as data: the NetworkPolicies that make a namespace default-deny without breaking DNS,
//! and RFC 6902 patches that add DNS to an existing policy. `portcullis fix` writes them; the
//! webhook's mutations are these same patches.

use json_patch::{AddOperation, Patch, PatchOperation};
use serde_json::{Value, json};

use crate::config::DnsConfig;
use crate::model::{Directions, NAMESPACE_NAME_LABEL, Policy};
use crate::semantics::dns::DNS_PORT;

/// Annotation on objects portcullis generates or changes, saying what it did.
pub const GENERATED_ANNOTATION: &str = "portcullis.dev/generated";

/// A default-deny policy for the given directions: empty podSelector, no rules.
pub fn default_deny_policy(namespace: &str, name: &str, directions: Directions) -> Value {
    let mut types = Vec::new();
    if directions.ingress {
        types.push("Ingress");
    }
    if directions.egress {
        types.push("Egress");
    }
    generated_policy(namespace, name, "default-deny", json!({"podSelector": {}, "policyTypes": types}))
}

/// A policy letting every pod of a namespace reach cluster DNS on UDP and TCP 53.
pub fn allow_dns_policy(namespace: &str, name: &str, dns: &DnsConfig) -> Value {
    let spec = json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [dns_egress_rule(dns)]});
    generated_policy(namespace, name, "DNS allowance", spec)
}

/// A NetworkPolicy written by `portcullis fix`, annotated as such.
pub fn generated_policy(namespace: &str, name: &str, what: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {GENERATED_ANNOTATION: format!("{what} written by portcullis fix")},
        },
        "spec": spec,
    })
}

/// The egress rule allowing DNS: the DNS pods in the DNS namespace (selected by the label
/// Kubernetes sets on every namespace) plus any extra DNS addresses, on UDP and TCP 53.
pub fn dns_egress_rule(dns: &DnsConfig) -> Value {
    let mut to = vec![json!({
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: dns.namespace}},
        "podSelector": {"matchLabels": dns.pod_labels},
    })];
    for block in &dns.extra_ip_blocks {
        to.push(json!({"ipBlock": {"cidr": block.to_string()}}));
    }
    json!({
        "to": to,
        "ports": [
            {"port": DNS_PORT, "protocol": "UDP"},
            {"port": DNS_PORT, "protocol": "TCP"},
        ],
    })
}

/// A patch that appends the DNS rule to a policy's egress rules and writes out `policyTypes`
/// when it was left to defaulting (so the policy's meaning no longer depends on it).
///
/// Paths are relative to the policy object; `has_annotations` says whether it has a
/// `metadata.annotations` mapping ([`crate::model::Object::has_annotations`],
/// [`crate::model::has_annotations`]).
pub fn dns_patch(policy: &Policy, has_annotations: bool, dns: &DnsConfig) -> Patch {
    let mut ops = Vec::new();
    if !policy.types_explicit {
        let mut types = Vec::new();
        if policy.types.ingress {
            types.push("Ingress");
        }
        types.push("Egress");
        ops.push(add("/spec/policyTypes", json!(types)));
    }
    // An egress list, even an empty one (`egress: null` is no list).
    if policy.spec.egress.is_some() {
        ops.push(add("/spec/egress/-", dns_egress_rule(dns)));
    } else {
        ops.push(add("/spec/egress", json!([dns_egress_rule(dns)])));
    }
    ops.push(annotate(has_annotations, "added an egress rule allowing DNS (UDP and TCP 53) to cluster DNS"));
    Patch(ops)
}

/// A patch adding TCP 53 next to the UDP 53 entry of an egress rule (`has_annotations` as for
/// [`dns_patch`]).
pub fn dns_tcp_patch(has_annotations: bool, rule_index: usize) -> Patch {
    Patch(vec![
        add(&format!("/spec/egress/{rule_index}/ports/-"), json!({"port": DNS_PORT, "protocol": "TCP"})),
        annotate(has_annotations, &format!("added TCP 53 to egress rule {rule_index} so truncated DNS answers work")),
    ])
}

/// A patch asking for an Istio Gateway's egress to follow the mesh's routes
/// ([`crate::egress::istio::ANNOTATION`]), for `portcullis resolve` and the controller.
pub fn routes_annotation_patch(has_annotations: bool) -> Patch {
    let what = "asked portcullis to keep the gateway's egress to the hosts routed through it";
    if has_annotations {
        Patch(vec![
            add("/metadata/annotations/portcullis.dev~1egress-from-routes", json!("true")),
            annotate(true, what),
        ])
    } else {
        Patch(vec![add(
            "/metadata/annotations",
            json!({crate::egress::istio::ANNOTATION: "true", GENERATED_ANNOTATION: what}),
        )])
    }
}

/// Sets the annotation saying what portcullis changed (creating `annotations` if needed).
fn annotate(has_annotations: bool, what: &str) -> PatchOperation {
    if has_annotations {
        add("/metadata/annotations/portcullis.dev~1generated", json!(what))
    } else {
        add("/metadata/annotations", json!({GENERATED_ANNOTATION: what}))
    }
}

fn add(path: &str, value: Value) -> PatchOperation {
    // Paths here are built from constants and indexes, so they are always valid pointers.
    PatchOperation::Add(AddOperation { path: path.parse().unwrap_or_default(), value })
}

/// Applies a patch to a copy of `value`.
pub fn apply(value: &Value, patch: &Patch) -> Result<Value, json_patch::PatchError> {
    let mut out = value.clone();
    json_patch::patch(&mut out, patch)?;
    Ok(out)
}
