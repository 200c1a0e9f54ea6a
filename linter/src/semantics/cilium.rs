//! Cilium's policies (`cilium.io/v2`), as Cilium documents and implements them:
//!
//! - a rule applies to the pods its `endpointSelector` selects: in the policy's namespace for a
//!   CiliumNetworkPolicy, in every namespace for a CiliumClusterwideNetworkPolicy; a
//!   `nodeSelector` rule is a host policy and applies to no pod;
//! - a rule puts the pods it selects in default deny for a direction when `enableDefaultDeny`
//!   says so, or, when it is unset, when the rule has allow or deny rules in that direction
//!   (`Rule.Sanitize`); NetworkPolicy isolation counts the same, since Cilium enforces both;
//! - a deny rule that matches wins over every allow, of Cilium or NetworkPolicy ("Deny
//!   policies take precedence over allow policies"); otherwise any allow rule allows;
//! - a rule's peer fields are alternatives (any one matches); a rule without any peer field
//!   matches every peer; a field written as an empty list makes the rule match no peer;
//!   `toPorts` then restricts ports (`port` `"0"` or empty: every port; `protocol` absent or
//!   `ANY`: TCP, UDP and SCTP; `endPort` a range; a name: a named port of the destination);
//! - `toEndpoints`/`fromEndpoints` select pods by their labels, `io.kubernetes.pod.namespace`
//!   and `io.cilium.k8s.namespace.labels.*`; without a namespace key a CiliumNetworkPolicy's
//!   selector means its own namespace, a clusterwide one's every namespace (`getEndpointSelector`);
//!   a selector with `reserved:` keys selects no pod;
//! - CIDR selectors never select pods ("CIDR-based selectors do not match in-cluster
//!   entities"); `world` is everything outside the cluster, `cluster` every pod;
//! - `toFQDNs` allows the addresses Cilium's DNS proxy saw for the names, so only for pods whose
//!   DNS goes through a `toPorts` rule with `rules.dns`.
//!
//! What the input cannot settle (Service backends, CIDR groups, node and API server addresses,
//! service-account labels, the addresses behind a name) is answered [`Tri::Unknown`] with the
//! reason, never guessed.

use super::evaluator::{Direction, Endpoint, PodView, Traffic, destination_ports, named_port_matches};
use super::ip_block::parse_cidr;
use crate::model::cilium_policy::{CidrRule, CiliumRule, CiliumRuleId, FqdnSelector, PeerRule, PortRule};
use crate::model::{ContainerPort, Inventory, Protocol};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The pod label Cilium gives a pod's namespace.
pub const NAMESPACE_KEY: &str = "io.kubernetes.pod.namespace";
/// The prefix of the labels Cilium copies from a pod's namespace.
pub const NAMESPACE_LABELS_PREFIX: &str = "io.cilium.k8s.namespace.labels.";

/// An answer that may not be known offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tri {
    Yes,
    No,
    /// Not decidable from the input, and why.
    Unknown(&'static str),
}

impl Tri {
    /// Kleene's or: yes when either is, unknown when neither is and one is unknown.
    pub fn or(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::Yes, _) | (_, Tri::Yes) => Tri::Yes,
            (Tri::Unknown(w), _) | (_, Tri::Unknown(w)) => Tri::Unknown(w),
            _ => Tri::No,
        }
    }

    /// Kleene's and: no when either is, unknown when neither is and one is unknown.
    pub fn and(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::No, _) | (_, Tri::No) => Tri::No,
            (Tri::Unknown(w), _) | (_, Tri::Unknown(w)) => Tri::Unknown(w),
            _ => Tri::Yes,
        }
    }

    pub fn from(b: bool) -> Tri {
        if b { Tri::Yes } else { Tri::No }
    }
}

impl std::ops::Not for Tri {
    type Output = Tri;

    /// Negation; unknown stays unknown.
    fn not(self) -> Tri {
        match self {
            Tri::Yes => Tri::No,
            Tri::No => Tri::Yes,
            u => u,
        }
    }
}

/// One rule of a Cilium policy: `<pointer>/<ingress|ingressDeny|egress|egressDeny>/<index>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CiliumRuleRef {
    pub rule: CiliumRuleId,
    pub direction: Direction,
    pub deny: bool,
    pub index: usize,
}

impl CiliumRuleRef {
    /// The rule's list key: `ingress`, `ingressDeny`, `egress` or `egressDeny`.
    pub fn key(&self) -> &'static str {
        match (self.direction, self.deny) {
            (Direction::Ingress, false) => "ingress",
            (Direction::Ingress, true) => "ingressDeny",
            (Direction::Egress, false) => "egress",
            (Direction::Egress, true) => "egressDeny",
        }
    }

    /// JSON pointer of the rule inside its object.
    pub fn pointer(&self, inventory: &Inventory) -> String {
        format!("{}/{}/{}", inventory.cilium_rule(self.rule).pointer, self.key(), self.index)
    }
}

/// A rule whose match cannot be decided offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undecided {
    pub rule: CiliumRuleRef,
    pub why: &'static str,
}

/// How Cilium's policies judged one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CiliumVerdict {
    /// Rules that put the pod in default deny for this direction.
    pub isolated_by: Vec<CiliumRuleId>,
    /// Allow rules that match.
    pub allowed_by: Vec<CiliumRuleRef>,
    /// The first deny rule that matches.
    pub denied_by: Option<CiliumRuleRef>,
    /// Allow and deny rules that may match, for reasons the input does not settle.
    pub undecided: Vec<Undecided>,
}

/// The Cilium rules that can select pods of the namespace with these labels (the namespace's
/// own, and the clusterwide ones whose namespace requirements match), in input order, each with
/// whether its selector also asks about pod labels. Workloads of a namespace share it
/// ([`super::cluster::NamespaceCandidates`]), so a clusterwide rule's namespace part is judged
/// once per namespace, not once per workload.
pub fn namespace_candidates(
    inventory: &Inventory,
    namespace_labels: &crate::model::Labels,
) -> Vec<(CiliumRuleId, bool)> {
    if inventory.cilium_rules.is_empty() {
        return Vec::new();
    }
    let Some(namespace) = namespace_labels.get(crate::model::NAMESPACE_NAME_LABEL) else { return Vec::new() };
    let probe = namespace_probe(namespace, namespace_labels);
    let own = inventory.namespace(namespace).map(|ns| ns.cilium_rules.as_slice()).unwrap_or(&[]);
    let mut out: Vec<(CiliumRuleId, bool)> = own
        .iter()
        .chain(&inventory.cilium_clusterwide)
        .filter_map(|&id| {
            let rule = inventory.cilium_rule(id);
            let selector = rule.spec.endpoint_selector.as_ref()?;
            if rule.spec.node_selector.is_some() {
                return None;
            }
            let namespace_part = scoped_matches(selector, &probe, Scope::Namespace);
            let pod_part = requirement_keys(selector).any(|k| scope(k) == Scope::Pod);
            (namespace_part == Tri::Yes).then_some((id, pod_part))
        })
        .collect();
    out.sort_unstable();
    out
}

/// A pod of the namespace without labels of its own: what a selector's namespace requirements
/// are judged against.
fn namespace_probe<'a>(namespace: &'a str, namespace_labels: &'a crate::model::Labels) -> PodView<'a> {
    static NO_LABELS: std::sync::OnceLock<crate::model::Labels> = std::sync::OnceLock::new();
    PodView {
        namespace,
        labels: NO_LABELS.get_or_init(crate::model::Labels::new),
        namespace_labels,
        ports: &[],
        ips: &[],
        host_network: false,
        workload: None,
    }
}

/// Whether the rule applies to the pod (an undecidable selector counts as not selecting).
pub fn subject_matches(rule: &CiliumRule, pod: &PodView<'_>) -> bool {
    let Some(selector) = &rule.spec.endpoint_selector else { return false };
    if rule.spec.node_selector.is_some() || pod.host_network {
        return false;
    }
    if let Some(ns) = &rule.namespace
        && ns != pod.namespace
    {
        return false;
    }
    selector_matches(selector, pod) == Tri::Yes
}

/// Which part of a pod's identity a selector key asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Namespace,
    Pod,
}

/// A selector key without its `k8s:` or `any:` source prefix (both select pod labels).
fn bare_key(key: &str) -> &str {
    key.strip_prefix("k8s:").or_else(|| key.strip_prefix("any:")).unwrap_or(key)
}

fn scope(key: &str) -> Scope {
    let key = bare_key(key);
    if key == NAMESPACE_KEY || key.starts_with(NAMESPACE_LABELS_PREFIX) { Scope::Namespace } else { Scope::Pod }
}

fn requirement_keys(selector: &LabelSelector) -> impl Iterator<Item = &str> {
    selector
        .match_labels
        .iter()
        .flat_map(|m| m.keys())
        .chain(selector.match_expressions.iter().flatten().map(|r| &r.key))
        .map(String::as_str)
}

/// Whether the rule puts the pods it selects in default deny for `direction`.
pub fn isolates(rule: &CiliumRule, direction: Direction) -> bool {
    let spec = &rule.spec;
    let (explicit, has_rules) = match direction {
        Direction::Ingress => {
            (spec.enable_default_deny.ingress, !spec.ingress.is_empty() || !spec.ingress_deny.is_empty())
        }
        Direction::Egress => (spec.enable_default_deny.egress, !spec.egress.is_empty() || !spec.egress_deny.is_empty()),
    };
    explicit.unwrap_or(has_rules)
}

/// The rules of one direction: (deny?, index, rule).
fn direction_rules(rule: &CiliumRule, direction: Direction) -> impl Iterator<Item = (bool, usize, &PeerRule)> {
    let (allow, deny) = match direction {
        Direction::Ingress => (&rule.spec.ingress, &rule.spec.ingress_deny),
        Direction::Egress => (&rule.spec.egress, &rule.spec.egress_deny),
    };
    let deny = deny.iter().enumerate().map(|(i, r)| (true, i, r));
    let allow = allow.iter().enumerate().map(|(i, r)| (false, i, r));
    deny.chain(allow)
}

/// Judges `pod`'s `direction` towards `peer` on `traffic` with the Cilium rules selecting it
/// (from [`super::cluster::NamespaceCandidates::cilium`]).
pub fn judge(
    inventory: &Inventory,
    applicable: &[CiliumRuleId],
    pod: &PodView<'_>,
    direction: Direction,
    peer: &Endpoint<'_>,
    traffic: Traffic,
) -> CiliumVerdict {
    let mut out = CiliumVerdict::default();
    if applicable.is_empty() {
        return out;
    }
    let destination_ports = destination_ports(pod, direction, peer);
    let dns_visible = direction == Direction::Egress && dns_visible(inventory, applicable);
    for &id in applicable {
        let rule = inventory.cilium_rule(id);
        if isolates(rule, direction) {
            out.isolated_by.push(id);
        }
        for (deny, index, peer_rule) in direction_rules(rule, direction) {
            let at = CiliumRuleRef { rule: id, direction, deny, index };
            let matched = peers_match(rule, peer_rule, deny, peer, dns_visible).and(ports_match(
                peer_rule,
                destination_ports,
                traffic,
            ));
            match (matched, deny) {
                (Tri::Yes, true) => {
                    if out.denied_by.is_none() {
                        out.denied_by = Some(at);
                    }
                }
                (Tri::Yes, false) => out.allowed_by.push(at),
                (Tri::Unknown(why), _) => out.undecided.push(Undecided { rule: at, why }),
                (Tri::No, _) => {}
            }
        }
    }
    out
}

/// Whether the pod's DNS goes through Cilium's DNS proxy: an egress allow rule of a rule
/// selecting it has `toPorts` with `rules.dns`.
pub fn dns_visible(inventory: &Inventory, applicable: &[CiliumRuleId]) -> bool {
    applicable.iter().any(|&id| {
        inventory.cilium_rule(id).spec.egress.iter().any(|r| r.to_ports.iter().flatten().any(PortRule::has_dns_rules))
    })
}

/// Whether a rule's peer fields match the peer. A deny rule has no `toFQDNs` (Cilium's
/// `EgressDenyRule` lacks the field, so the API server prunes it): one written there is read as
/// absent, as the cluster stores it.
fn peers_match(rule: &CiliumRule, r: &PeerRule, deny: bool, peer: &Endpoint<'_>, dns_visible: bool) -> Tri {
    let to_fqdns = if deny { None } else { r.to_fqdns.as_ref() };
    if r.requires.is_some() {
        return Tri::Unknown(
            "fromRequires/toRequires constrain every rule with the same selector (removed in Cilium 1.19)",
        );
    }
    let fields_present = [
        r.endpoints.as_ref().map(Vec::len),
        r.cidr.as_ref().map(Vec::len),
        r.cidr_set.as_ref().map(Vec::len),
        r.entities.as_ref().map(Vec::len),
        r.nodes.as_ref().map(Vec::len),
        r.groups.as_ref().map(Vec::len),
        r.to_services.as_ref().map(Vec::len),
        to_fqdns.map(Vec::len),
    ];
    if fields_present.iter().all(Option::is_none) {
        return Tri::Yes;
    }
    // Cilium's mergeEndpointSelectors: an empty list selects nothing, whatever else is set.
    if fields_present.contains(&Some(0)) {
        return Tri::No;
    }
    let mut result = Tri::No;
    for selector in r.endpoints.iter().flatten() {
        result = result.or(endpoint_matches(rule, selector, peer));
    }
    for cidr in r.cidr.iter().flatten() {
        result = result.or(cidr_matches(&CidrRule { cidr: Some(cidr.clone()), ..CidrRule::default() }, peer));
    }
    for set in r.cidr_set.iter().flatten() {
        result = result.or(cidr_matches(set, peer));
    }
    for entity in r.entities.iter().flatten() {
        result = result.or(entity_matches(entity, peer));
    }
    if r.nodes.is_some() {
        result = result.or(match peer {
            Endpoint::Pod(p) if !p.host_network => Tri::No,
            _ => Tri::Unknown("node selectors need the cluster's nodes"),
        });
    }
    if r.groups.is_some() {
        result = result.or(Tri::Unknown("toGroups needs the cloud provider's groups"));
    }
    if r.to_services.is_some() {
        result = result.or(Tri::Unknown("toServices needs the Service and its backends"));
    }
    for fqdn in to_fqdns.into_iter().flatten() {
        result = result.or(fqdn_matches(fqdn, peer, dns_visible));
    }
    result
}

/// A pod's label as Cilium sees it, for a selector key (with or without a `k8s:`/`any:`
/// source prefix).
enum Label<'a> {
    Value(&'a str),
    Absent,
    Unknown,
}

fn label<'a>(pod: &PodView<'a>, key: &str) -> Label<'a> {
    let key = match key.split_once(':') {
        Some(("k8s" | "any", rest)) => rest,
        // `reserved:`, `cidr:`, `fqdn:` … name identities that are not pods.
        Some(_) => return Label::Absent,
        None => key,
    };
    if key == NAMESPACE_KEY {
        return Label::Value(pod.namespace);
    }
    if let Some(ns_key) = key.strip_prefix(NAMESPACE_LABELS_PREFIX) {
        return pod.namespace_labels.get(ns_key).map_or(Label::Absent, |v| Label::Value(v));
    }
    if key == "io.cilium.k8s.policy.serviceaccount" || key == "io.cilium.k8s.policy.cluster" {
        return Label::Unknown;
    }
    pod.labels.get(key).map_or(Label::Absent, |v| Label::Value(v))
}

/// Kubernetes label-selector semantics over Cilium's view of a pod's labels.
pub fn selector_matches(selector: &LabelSelector, pod: &PodView<'_>) -> Tri {
    scoped_matches(selector, pod, None)
}

/// [`selector_matches`] over the requirements whose keys are of `only` (all when `None`).
fn scoped_matches(selector: &LabelSelector, pod: &PodView<'_>, only: impl Into<Option<Scope>>) -> Tri {
    const UNKNOWN: &str = "service-account and cluster labels are not in the input";
    let only = only.into();
    let wanted = |key: &str| only.is_none_or(|s| scope(key) == s);
    let mut result = Tri::Yes;
    for (k, v) in selector.match_labels.iter().flatten().filter(|(k, _)| wanted(k)) {
        result = result.and(match label(pod, k) {
            Label::Value(x) => Tri::from(x == v),
            Label::Absent => Tri::No,
            Label::Unknown => Tri::Unknown(UNKNOWN),
        });
        if result == Tri::No {
            return result;
        }
    }
    for req in selector.match_expressions.iter().flatten().filter(|r| wanted(&r.key)) {
        let values = req.values.as_deref().unwrap_or_default();
        let value = match label(pod, &req.key) {
            Label::Value(v) => Some(v),
            Label::Absent => None,
            Label::Unknown => {
                result = result.and(Tri::Unknown(UNKNOWN));
                continue;
            }
        };
        let ok = match req.operator.as_str() {
            "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
            "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        };
        result = result.and(Tri::from(ok));
        if result == Tri::No {
            return result;
        }
    }
    result
}

/// Whether a selector names the namespace itself (the pod namespace key) or its labels.
fn has_namespace_key(selector: &LabelSelector) -> (bool, bool) {
    let mut namespace = false;
    let mut namespace_labels = false;
    for key in requirement_keys(selector) {
        let key = bare_key(key);
        namespace |= key == NAMESPACE_KEY;
        namespace_labels |= key.starts_with(NAMESPACE_LABELS_PREFIX);
    }
    (namespace, namespace_labels)
}

/// `toEndpoints`/`fromEndpoints`: pods only; a CiliumNetworkPolicy's selector without a
/// namespace key (or namespace labels) means its own namespace.
fn endpoint_matches(rule: &CiliumRule, selector: &LabelSelector, peer: &Endpoint<'_>) -> Tri {
    let Endpoint::Pod(pod) = peer else { return Tri::No };
    if pod.host_network {
        return Tri::No;
    }
    let (namespace, namespace_labels) = has_namespace_key(selector);
    if let Some(own) = &rule.namespace
        && !namespace
        && !namespace_labels
        && own != pod.namespace
    {
        return Tri::No;
    }
    selector_matches(selector, pod)
}

fn parse(raw: &str) -> Option<ipnet::IpNet> {
    if raw.contains('/') { parse_cidr(raw).ok() } else { raw.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from) }
}

fn cidr_matches(rule: &CidrRule, peer: &Endpoint<'_>) -> Tri {
    if rule.cidr_group_ref.is_some() || rule.cidr_group_selector.is_some() {
        return match peer {
            Endpoint::Pod(_) => Tri::No,
            _ => Tri::Unknown("CiliumCIDRGroup contents are not in the input"),
        };
    }
    let Some(net) = rule.cidr.as_deref().and_then(parse) else { return Tri::No };
    let except: Vec<ipnet::IpNet> = rule.except.iter().filter_map(|e| parse(e)).collect();
    match peer {
        // CIDR selectors do not select pods.
        Endpoint::Pod(_) => Tri::No,
        Endpoint::Address(ip) | Endpoint::Resolved(ip, _) => {
            Tri::from(net.contains(ip) && !except.iter().any(|e| e.contains(ip)))
        }
        Endpoint::Name(_) | Endpoint::UnknownAddress => {
            if net.prefix_len() == 0 && except.is_empty() {
                Tri::Yes
            } else {
                Tri::Unknown("the destination's address is not known offline")
            }
        }
    }
}

/// The entities of Cilium's policy language.
fn entity_matches(entity: &str, peer: &Endpoint<'_>) -> Tri {
    let external =
        matches!(peer, Endpoint::Address(_) | Endpoint::Resolved(..) | Endpoint::Name(_) | Endpoint::UnknownAddress);
    match entity {
        "all" => Tri::Yes,
        "world" => Tri::from(external),
        "world-ipv4" | "world-ipv6" => match peer {
            Endpoint::Address(ip) | Endpoint::Resolved(ip, _) => Tri::from(ip.is_ipv4() == (entity == "world-ipv4")),
            Endpoint::Name(_) | Endpoint::UnknownAddress => {
                Tri::Unknown("the destination's address family is not known offline")
            }
            Endpoint::Pod(_) => Tri::No,
        },
        "cluster" => Tri::from(matches!(peer, Endpoint::Pod(_))),
        "host" | "remote-node" => match peer {
            Endpoint::Pod(p) if p.host_network => {
                Tri::Unknown("which node a host-network pod runs on is not known offline")
            }
            _ => Tri::No,
        },
        "kube-apiserver" => {
            if external {
                Tri::Unknown("the API server's addresses are not in the input")
            } else {
                Tri::No
            }
        }
        _ => Tri::No,
    }
}

fn fqdn_matches(selector: &FqdnSelector, peer: &Endpoint<'_>, dns_visible: bool) -> Tri {
    match peer {
        // An observed connection's address counts as the name the pod resolved to it: Cilium's
        // DNS proxy saw that answer and allowed the address for the name's selectors.
        Endpoint::Name(name) | Endpoint::Resolved(_, name) => {
            let matched = selector.match_name.as_deref().is_some_and(|n| fqdn_name_matches(n, name))
                || selector.match_pattern.as_deref().is_some_and(|p| fqdn_pattern_matches(p, name));
            // Without the DNS proxy Cilium never learns the name's addresses.
            Tri::from(matched && dns_visible)
        }
        Endpoint::Address(_) | Endpoint::UnknownAddress => {
            if dns_visible {
                Tri::Unknown("which names resolve to the address is not known offline")
            } else {
                Tri::No
            }
        }
        Endpoint::Pod(_) => Tri::No,
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// `matchName`: the name exactly, case-insensitive, a final dot ignored.
pub fn fqdn_name_matches(pattern: &str, name: &str) -> bool {
    normalize(pattern) == normalize(name)
}

/// `matchPattern`: `*` alone matches every name; a leading `**.` matches one or more labels;
/// any other `*` matches zero or more characters within one label.
pub fn fqdn_pattern_matches(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (normalize(pattern), normalize(name));
    if pattern == "*" {
        return true;
    }
    if let Some(suffix) = pattern.strip_prefix("**.") {
        let mut labels = name.split('.').collect::<Vec<_>>();
        // One or more labels in front of the suffix, the suffix matched label by label.
        let suffix_labels: Vec<&str> = suffix.split('.').collect();
        if labels.len() <= suffix_labels.len() {
            return false;
        }
        let tail = labels.split_off(labels.len() - suffix_labels.len());
        return tail.iter().zip(&suffix_labels).all(|(n, p)| label_glob(p, n));
    }
    let (p, n): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), name.split('.').collect());
    p.len() == n.len() && p.iter().zip(&n).all(|(p, n)| label_glob(p, n))
}

/// `*` matches any run of characters inside one label.
fn label_glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// `toPorts` (and `icmps`) of a rule against the traffic.
fn ports_match(r: &PeerRule, destination_ports: &[ContainerPort], traffic: Traffic) -> Tri {
    let to_ports = r.to_ports.as_deref().unwrap_or_default();
    if to_ports.is_empty() {
        // A rule with only ICMP matches no TCP, UDP or SCTP traffic.
        return Tri::from(r.icmps.as_ref().is_none_or(Vec::is_empty));
    }
    Tri::from(to_ports.iter().any(|pr| {
        pr.ports.is_empty()
            || pr.ports.iter().any(|p| {
                let protocol = match p.protocol.as_deref().map(str::to_ascii_uppercase).as_deref() {
                    None | Some("" | "ANY") => true,
                    Some("TCP") => traffic.protocol == Protocol::Tcp,
                    Some("UDP") => traffic.protocol == Protocol::Udp,
                    Some("SCTP") => traffic.protocol == Protocol::Sctp,
                    _ => false,
                };
                protocol
                    && match p.port.parse::<i32>() {
                        Ok(0) => true,
                        Ok(n) => match p.end_port {
                            Some(end) if end > n => (n..=end).contains(&traffic.port),
                            _ => n == traffic.port,
                        },
                        Err(_) if p.port.is_empty() => true,
                        Err(_) => named_port_matches(destination_ports, &p.port, traffic),
                    }
            })
    }))
}

/// A Cilium rule that puts every pod of the namespace in default deny for `direction`: a
/// CiliumNetworkPolicy of the namespace with an empty `endpointSelector`, or a clusterwide one
/// whose selector names only the namespace (or its labels) and matches it.
pub fn namespace_default_deny(inventory: &Inventory, namespace: &str, direction: Direction) -> Option<CiliumRuleId> {
    let info = inventory.namespace(namespace)?;
    let probe = namespace_probe(namespace, &info.labels);
    info.cilium_rules.iter().chain(&inventory.cilium_clusterwide).copied().find(|&id| {
        let rule = inventory.cilium_rule(id);
        let Some(selector) = &rule.spec.endpoint_selector else { return false };
        if rule.spec.node_selector.is_some() || !isolates(rule, direction) {
            return false;
        }
        requirement_keys(selector).all(|k| scope(k) == Scope::Namespace)
            && selector_matches(selector, &probe) == Tri::Yes
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fqdn_patterns_match_as_cilium_documents() {
        // The examples of Cilium's "DNS based" policy documentation.
        assert!(fqdn_pattern_matches("*.cilium.io", "sub.cilium.io"));
        assert!(!fqdn_pattern_matches("*.cilium.io", "cilium.io"));
        assert!(!fqdn_pattern_matches("*.cilium.io", "sub.sub.cilium.io"));
        assert!(fqdn_pattern_matches("part*ial.com", "partial.com"));
        assert!(fqdn_pattern_matches("part*ial.com", "part-extra-ial.com"));
        assert!(fqdn_pattern_matches("*", "anything.example"));
        assert!(fqdn_pattern_matches("**.cilium.io", "app.cilium.io"));
        assert!(fqdn_pattern_matches("**.cilium.io", "test.app.cilium.io"));
        assert!(!fqdn_pattern_matches("**.cilium.io", "cilium.io"));
        assert!(fqdn_name_matches("API.Stripe.com.", "api.stripe.com"));
        assert!(!fqdn_name_matches("api.stripe.com", "stripe.com"));
        assert!(!label_glob("a*b*c", "ac"));
        assert!(label_glob("a*b*c", "abc"));
        assert!(label_glob("a*b*c", "axxbyyc"));
    }
}
