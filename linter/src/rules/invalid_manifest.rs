use k8s_openapi::api::networking::v1::NetworkPolicyPeer;

use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::{Anchor, Finding};
use crate::model::cluster_policy::{ClusterNetworkPolicySpec, ClusterPolicyKind, NamespacedPod};
use crate::model::inventory::IGNORE_ANNOTATION;
use crate::semantics::evaluator::peer_lists;
use crate::semantics::selector::selector_problem;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

declare_rule! {
    /// ## What it does
    /// Reports input that is not a valid Kubernetes object: YAML or JSON that does not parse,
    /// binary or oversized files, objects missing `apiVersion` or `kind` (a document with `kind`,
    /// or with `metadata` beside `apiVersion` or `spec`; other YAML and JSON, such as
    /// `package.json` or a CI workflow, is skipped and counted), fields of the wrong type in a
    /// kind portcullis knows, removed API versions, NetworkPolicy values the API server
    /// rejects that no other rule covers (selector operators, label keys and values, empty
    /// peers, unknown `policyTypes`), ClusterNetworkPolicy (and v1alpha1 AdminNetworkPolicy
    /// and BaselineAdminNetworkPolicy) values their CRDs reject (priority, subjects and peers
    /// without exactly one field, selectors, CIDRs, ports, the v0.1.0-v0.1.4 peer form the
    /// current CRD silently turns into "every namespace"), and unknown rule
    /// names in a `portcullis.dev/ignore` annotation.
    ///
    /// ## Why is this bad?
    /// `kubectl apply` refuses the object, so the policy you think protects a namespace does not
    /// exist. The rest of the input is still linted.
    ///
    /// ## Example
    /// ```yaml
    /// apiVersion: networking.k8s.io/v1
    /// kind: NetworkPolicy
    /// metadata: {name: web}
    /// spec:
    ///   podSelector: {matchLabels: {app: web}}
    ///   ingress:
    ///   - from:
    ///     - {}          # a peer must set podSelector, namespaceSelector or ipBlock
    /// ```
    ///
    /// Use instead:
    /// ```yaml
    ///   ingress:
    ///   - from:
    ///     - podSelector: {}
    /// ```
    ///
    /// ## Fix safety
    /// No automatic fix: only the author knows what was meant.
    pub struct InvalidManifest {
        code: "PC000",
        name: "invalid-manifest",
        severity: Error,
        fix: None,
    }
}

impl Rule for InvalidManifest {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        let meta = &Self::META;
        for p in cx.load_problems {
            out.push(Finding {
                code: meta.code,
                rule: meta.name,
                severity: meta.severity,
                message: p.message.clone(),
                anchor: Anchor::Position { source: p.source, position: p.position },
                object: None,
                object_id: None,
                related: Vec::new(),
                fix: None,
            });
        }
        for p in &cx.inventory.problems {
            out.push(Finding {
                code: meta.code,
                rule: meta.name,
                severity: meta.severity,
                message: p.message.clone(),
                anchor: Anchor::Node { doc: p.doc, pointer: p.pointer.clone() },
                object: p.object.clone(),
                object_id: None,
                related: Vec::new(),
                fix: None,
            });
        }
        for (i, object) in cx.inventory.objects.iter().enumerate() {
            for name in &object.ignore {
                if super::registry::find(name).is_none() {
                    out.push(cx.finding(
                        meta,
                        crate::model::ObjectId(i),
                        "/metadata/annotations/portcullis.dev~1ignore",
                        format!("{IGNORE_ANNOTATION} names unknown rule {name:?}; run `portcullis rules` for the list"),
                    ));
                }
            }
        }
        for policy in cx.inventory.written_policies() {
            let obj = policy.object;
            for (i, t) in policy.spec.policy_types.iter().flatten().enumerate() {
                if t != "Ingress" && t != "Egress" {
                    out.push(cx.finding(
                        meta,
                        obj,
                        &format!("/spec/policyTypes/{i}"),
                        format!("unknown policy type {t:?}; expected Ingress or Egress"),
                    ));
                }
            }
            if let Some(problem) = policy.spec.pod_selector.as_ref().and_then(selector_problem) {
                out.push(cx.finding(meta, obj, "/spec/podSelector", format!("invalid podSelector: {problem}")));
            }
            for list in peer_lists(policy) {
                for (pi, peer) in list.items.iter().enumerate() {
                    if let Some(msg) = peer_problem(peer) {
                        out.push(cx.finding(meta, obj, &list.peer_pointer(pi), msg));
                    }
                }
            }
        }
        for policy in &cx.inventory.cluster_policies {
            for (pointer, msg) in cluster_policy_problems(policy.kind, &policy.spec) {
                out.push(cx.finding(meta, policy.object, &pointer, msg));
            }
        }
    }
}

/// What the API server rejects in a ClusterNetworkPolicy (or a v1alpha1 AdminNetworkPolicy or
/// BaselineAdminNetworkPolicy, read into the same spec) that its types alone do not say: the
/// priority range, a subject or peer without exactly one field, label selectors, CIDRs, port
/// ranges, lists over the CRD's bounds, named ports beside peers that have none (the CRDs'
/// validation rules in `apis/v1alpha2` and `apis/v1alpha1`).
fn cluster_policy_problems(kind: ClusterPolicyKind, spec: &ClusterNetworkPolicySpec) -> Vec<(String, String)> {
    /// `MaxItems` of the address lists (`networks`, `domainNames`) in both versions.
    const MAX_ADDRESSES: usize = 25;
    // v1alpha2 bounds every list at 25; v1alpha1 its rules, peers and ports at 100.
    let (max_items, ports_key, named_port_field) = match kind {
        ClusterPolicyKind::ClusterNetworkPolicy => (25, "protocols", "destinationNamedPort"),
        _ => (100, "ports", "namedPort"),
    };
    // v1alpha1 bounds a range's ends only; v1alpha2 also asks start < end.
    let ordered_ranges = kind == ClusterPolicyKind::ClusterNetworkPolicy;
    let mut out = Vec::new();
    let too_many = |at: String, what: &str, n: usize, max: usize| {
        (n > max).then(|| (at, format!("{n} {what}; the API server accepts at most {max}")))
    };
    out.extend(too_many("/spec/ingress".to_owned(), "ingress rules", spec.ingress.len(), max_items));
    out.extend(too_many("/spec/egress".to_owned(), "egress rules", spec.egress.len(), max_items));
    if !(0..=1000).contains(&spec.priority) {
        out.push(("/spec/priority".to_owned(), format!("priority {} is outside 0-1000", spec.priority)));
    }
    let subject = &spec.subject;
    if subject.namespaces.is_some() == subject.pods.is_some() {
        out.push(("/spec/subject".to_owned(), "subject must set exactly one of namespaces or pods".to_owned()));
    }
    let selectors = |at: &str, namespaces: &Option<LabelSelector>, pods: &Option<NamespacedPod>| {
        let mut found = Vec::new();
        let mut check = |what: &str, sel: &LabelSelector| {
            if let Some(problem) = selector_problem(sel) {
                found.push((at.to_owned(), format!("invalid {what}: {problem}")));
            }
        };
        if let Some(sel) = namespaces {
            check("namespaces selector", sel);
        }
        if let Some(pods) = pods {
            check("namespaceSelector", &pods.namespace_selector);
            check("podSelector", &pods.pod_selector);
        }
        found
    };
    out.extend(selectors("/spec/subject", &subject.namespaces, &subject.pods));
    let ingress = spec.ingress.iter().map(|r| ("ingress", "from", &r.from[..], &r.protocols[..]));
    let egress = spec.egress.iter().map(|r| ("egress", "to", &r.to[..], &r.protocols[..]));
    let mut index = std::collections::HashMap::new();
    for (key, field, peers, protocols) in ingress.chain(egress) {
        let rule: &mut usize = index.entry(key).or_default();
        out.extend(too_many(format!("/spec/{key}/{rule}/{field}"), "peers", peers.len(), max_items));
        out.extend(too_many(format!("/spec/{key}/{rule}/{ports_key}"), ports_key, protocols.len(), max_items));
        let named_port = protocols.iter().any(|p| p.destination_named_port.is_some());
        for (pi, peer) in peers.iter().enumerate() {
            let at = format!("/spec/{key}/{rule}/{field}/{pi}");
            let set = [
                peer.namespaces.is_some(),
                peer.pods.is_some(),
                peer.nodes.is_some(),
                peer.networks.is_some(),
                peer.domain_names.is_some(),
            ];
            if set.iter().filter(|s| **s).count() > 1 {
                out.push((at.clone(), "a peer must set exactly one field".to_owned()));
            }
            out.extend(selectors(&at, &peer.namespaces, &peer.pods));
            out.extend(too_many(at.clone(), "networks", peer.networks.as_ref().map_or(0, Vec::len), MAX_ADDRESSES));
            out.extend(too_many(
                at.clone(),
                "domainNames",
                peer.domain_names.as_ref().map_or(0, Vec::len),
                MAX_ADDRESSES,
            ));
            if named_port && (peer.networks.is_some() || peer.nodes.is_some() || peer.domain_names.is_some()) {
                out.push((
                    at.clone(),
                    format!(
                        "networks, nodes and domainNames peers have no named ports: the API server rejects {named_port_field} beside them"
                    ),
                ));
            }
            for cidr in peer.networks.iter().flatten() {
                if let Err(e) = crate::semantics::ip_block::parse_cidr(cidr) {
                    out.push((at.clone(), format!("networks: {e}")));
                }
            }
        }
        for (i, protocol) in protocols.iter().enumerate() {
            for port in [&protocol.tcp, &protocol.udp, &protocol.sctp].into_iter().flatten() {
                let Some(port) = &port.destination_port else { continue };
                let bad = match (port.number, port.range) {
                    (Some(n), None) => !(1..=65535).contains(&n),
                    (None, Some(r)) => {
                        !(1..=65535).contains(&r.start)
                            || !(1..=65535).contains(&r.end)
                            || (ordered_ranges && r.start >= r.end)
                    }
                    _ => true,
                };
                if bad {
                    out.push((
                        format!("/spec/{key}/{rule}/{ports_key}/{i}"),
                        if ordered_ranges {
                            "destinationPort must be a number in 1-65535 or a range with start < end in 1-65535"
                        } else {
                            "a port must be a number in 1-65535 or a range with ends in 1-65535"
                        }
                        .to_owned(),
                    ));
                }
            }
        }
        *rule += 1;
    }
    out
}

fn peer_problem(peer: &NetworkPolicyPeer) -> Option<String> {
    if peer.ip_block.is_none() && peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
        return Some(
            "peer sets none of podSelector, namespaceSelector or ipBlock; the API server rejects it".to_owned(),
        );
    }
    for (what, sel) in [("podSelector", &peer.pod_selector), ("namespaceSelector", &peer.namespace_selector)] {
        if let Some(problem) = sel.as_ref().and_then(selector_problem) {
            return Some(format!("invalid {what}: {problem}"));
        }
    }
    None
}
