use k8s_openapi::api::networking::v1::NetworkPolicyPeer;

use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::{Anchor, Finding};
use crate::model::cilium_policy::CiliumRule;
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
    /// current CRD silently turns into "every namespace"), Cilium policy values its CRD or agent
    /// rejects (selectors, CIDRs, ports, protocols, entities, `toFQDNs` beside other peers) and
    /// `toFQDNs` in a deny rule, which the API server drops (leaving a deny of everything), and
    /// unknown rule
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
            if !cx.reports_on(crate::model::ObjectId(i)) {
                continue;
            }
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
        for policy in cx.written_policies() {
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
        for rule in &cx.inventory.cilium_rules {
            for (pointer, msg) in cilium_problems(rule) {
                out.push(cx.finding(meta, rule.object, &pointer, msg));
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

/// What Cilium's CRD (or, where noted, the agent) rejects in a rule, and the one field the API
/// server silently drops with a dangerous result (`toFQDNs` in a deny rule).
fn cilium_problems(rule: &CiliumRule) -> Vec<(String, String)> {
    /// The CRD's enum of entities.
    const ENTITIES: [&str; 13] = [
        "all",
        "world",
        "world-ipv4",
        "world-ipv6",
        "cluster",
        "host",
        "init",
        "ingress",
        "unmanaged",
        "remote-node",
        "health",
        "none",
        "kube-apiserver",
    ];
    /// The CRD's enum of `toPorts` protocols.
    const PROTOCOLS: [&str; 8] = ["TCP", "UDP", "SCTP", "ICMP", "ICMPV6", "VRRP", "IGMP", "ANY"];
    let base = &rule.pointer;
    let spec = &rule.spec;
    let mut out = Vec::new();
    match (&spec.endpoint_selector, &spec.node_selector) {
        (None, None) => out.push((base.clone(), "a rule needs endpointSelector or nodeSelector".to_owned())),
        (Some(_), Some(_)) => out.push((
            base.clone(),
            "endpointSelector and nodeSelector exclude each other; the API server rejects both".to_owned(),
        )),
        (None, Some(_)) if rule.namespace.is_some() => out.push((
            format!("{base}/nodeSelector"),
            "nodeSelector (a host policy) is only for CiliumClusterwideNetworkPolicy; Cilium refuses it here"
                .to_owned(),
        )),
        _ => {}
    }
    let lists = [
        ("ingress", &spec.ingress, false),
        ("ingressDeny", &spec.ingress_deny, true),
        ("egress", &spec.egress, false),
        ("egressDeny", &spec.egress_deny, true),
    ];
    for (key, rules, deny) in lists {
        for (i, r) in rules.iter().enumerate() {
            let at = format!("{base}/{key}/{i}");
            if let Some(fqdns) = &r.to_fqdns {
                if deny {
                    out.push((
                        format!("{at}/toFQDNs"),
                        "a deny rule has no toFQDNs (Cilium cannot deny by name): the API server drops the field, and the rule left denies every destination".to_owned(),
                    ));
                } else if !fqdns.is_empty()
                    && (r.endpoints.is_some()
                        || r.cidr.is_some()
                        || r.cidr_set.is_some()
                        || r.entities.is_some()
                        || r.to_services.is_some())
                {
                    out.push((
                        format!("{at}/toFQDNs"),
                        "toFQDNs cannot share a rule with other peer fields (toEndpoints, toCIDR, toEntities, …); Cilium refuses the policy".to_owned(),
                    ));
                }
            }
            let cidrs = r
                .cidr
                .iter()
                .flatten()
                .chain(r.cidr_set.iter().flatten().flat_map(|set| set.cidr.iter().chain(&set.except)));
            for cidr in cidrs {
                let parsed = if cidr.contains('/') {
                    crate::semantics::ip_block::parse_cidr(cidr).map(|_| ())
                } else {
                    cidr.parse::<std::net::IpAddr>().map(|_| ()).map_err(|_| format!("{cidr:?} is not a valid CIDR"))
                };
                if let Err(e) = parsed {
                    out.push((at.clone(), e));
                }
            }
            for entity in r.entities.iter().flatten().filter(|e| !ENTITIES.contains(&e.as_str())) {
                out.push((
                    at.clone(),
                    format!("unknown entity {entity:?}; the API server accepts {}", ENTITIES.join(", ")),
                ));
            }
            for (j, port_rule) in r.to_ports.iter().flatten().enumerate() {
                for (k, port) in port_rule.ports.iter().enumerate() {
                    let here = format!("{at}/toPorts/{j}/ports/{k}");
                    if let Some(problem) = cilium_port_problem(port) {
                        out.push((here.clone(), problem));
                    }
                    if let Some(protocol) = &port.protocol
                        && !PROTOCOLS.contains(&protocol.to_ascii_uppercase().as_str())
                    {
                        out.push((
                            here,
                            format!("unknown protocol {protocol:?}; the API server accepts {}", PROTOCOLS.join(", ")),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// A `toPorts` port the CRD rejects: a number over 65535, a name outside its pattern, or an
/// `endPort` below the port.
fn cilium_port_problem(port: &crate::model::cilium_policy::PortProtocol) -> Option<String> {
    let raw = port.port.as_str();
    match raw.parse::<i64>() {
        Ok(n) if !(0..=65535).contains(&n) => Some(format!("port {n} is outside 0-65535")),
        Ok(n) => port
            .end_port
            .filter(|&end| end != 0 && (i64::from(end) < n || end > 65535))
            .map(|end| format!("endPort {end} must be at least port {n} and at most 65535")),
        Err(_) if raw.is_empty() => None,
        Err(_) => {
            // The CRD's pattern: letters and digits with single hyphens between, a letter somewhere.
            let valid = raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && raw.bytes().any(|b| b.is_ascii_alphabetic())
                && !raw.starts_with('-')
                && !raw.ends_with('-')
                && !raw.contains("--");
            (!valid).then(|| format!("port {raw:?} is neither a number nor a valid port name"))
        }
    }
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
