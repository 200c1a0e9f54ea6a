//! Calico's policies (`projectcalico.org/v3` NetworkPolicy and GlobalNetworkPolicy), as the
//! Calico reference defines them:
//!
//! - a policy applies to the endpoints its `selector` selects (a NetworkPolicy: in its own
//!   namespace; a GlobalNetworkPolicy: in the namespaces its `namespaceSelector` selects, every
//!   one when unset), for the directions in its (defaulted) `types`;
//! - tiers are taken by `order` (no order last, then by name); a tier applies to an endpoint
//!   when one of its policies does. Within a tier, policies go by `order` (none last, then name)
//!   and rules in the order written; the first rule that matches decides: `Allow` and `Deny`
//!   are final, `Pass` skips to the next tier that applies, `Log` goes on. A tier that applies
//!   but takes no action ends in its `defaultAction` (`Deny` unless set to `Pass`);
//! - Kubernetes NetworkPolicies live in the `default` tier (order 1,000,000) at order 1,000,
//!   each an allow-only policy; the Admin tier of ClusterNetworkPolicy is Calico's `kube-admin`
//!   tier (order 1,000), the Baseline tier `kube-baseline` (order 10,000,000). Where they fall
//!   between Calico's own tiers is decided in one place,
//!   [`super::evaluator::DirectionVerdict::decided`];
//! - a rule's `source` and `destination` must both match: on an egress rule `source` is the pod
//!   itself and `destination` the peer, on an ingress rule the other way round. An entity
//!   matches on `nets`, not `notNets`, `selector` (scoped by `namespaceSelector`, the policy's
//!   namespace by default for a NetworkPolicy), not `notSelector`, destination `ports` and not
//!   `notPorts`. Selectors match known resources only: pods, and the addresses of NetworkSets
//!   and GlobalNetworkSets;
//! - staged kinds are never enforced, and so never evaluated here.
//!
//! What the input cannot settle (service accounts, Services, source ports, the address behind
//! a name) is [`Tri::Unknown`]: such a rule is skipped and reported in
//! [`CalicoVerdict::undecided`].

use std::net::IpAddr;

use ipnet::IpNet;

use super::cilium::Tri;
use super::evaluator::{Direction, Endpoint, PodView, RuleRef, Traffic, destination_ports, named_port_matches};
use crate::model::calico_policy::{
    ADMIN_TIER_ORDER, BASELINE_TIER_ORDER, CalicoAction, CalicoPolicy, CalicoPolicyId, CalicoRule, DEFAULT_TIER,
    DEFAULT_TIER_ORDER, Entity, NETWORK_POLICY_ORDER, PortSpec,
};
use crate::model::calico_selector::{Expr, Selector};
use crate::model::{Inventory, Labels, NAMESPACE_NAME_LABEL, PolicyId, Protocol};

/// The label Calico gives every pod: its namespace.
pub const NAMESPACE_LABEL: &str = "projectcalico.org/namespace";
/// The label Calico gives every Kubernetes pod: `k8s`.
pub const ORCHESTRATOR_LABEL: &str = "projectcalico.org/orchestrator";
/// The label Calico gives every pod: its service account.
pub const SERVICE_ACCOUNT_LABEL: &str = "projectcalico.org/serviceaccount";
/// The label a namespace selector reads a namespace's name from.
pub const NAME_LABEL: &str = "projectcalico.org/name";

/// One rule of a Calico policy: `spec.<ingress|egress>[index]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CalicoRuleRef {
    pub policy: CalicoPolicyId,
    pub direction: Direction,
    pub index: usize,
}

impl CalicoRuleRef {
    /// JSON pointer of the rule inside its object.
    pub fn pointer(&self) -> String {
        format!("/spec/{}/{}", self.direction.key(), self.index)
    }
}

/// What one tier did with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierOutcome {
    /// A rule matched: `Allow`, `Deny` or `Pass`.
    Rule(CalicoRuleRef, CalicoAction),
    /// An allow rule of a Kubernetes NetworkPolicy (the default tier only).
    NetworkPolicy(RuleRef),
    /// The tier applies but nothing acted: its `defaultAction`. `policy` is the first policy
    /// of the tier that applies.
    EndOfTier { policy: CalicoPolicyId, pass: bool },
}

impl TierOutcome {
    /// `Some(allowed)` when the outcome ends evaluation; `None` for a pass to the next tier.
    pub fn verdict(&self) -> Option<bool> {
        match self {
            TierOutcome::Rule(_, CalicoAction::Allow) | TierOutcome::NetworkPolicy(_) => Some(true),
            TierOutcome::Rule(_, CalicoAction::Deny) | TierOutcome::EndOfTier { pass: false, .. } => Some(false),
            _ => None,
        }
    }
}

/// One tier that applies to the pod for the direction.
#[derive(Debug, Clone, PartialEq)]
pub struct TierVerdict {
    pub tier: String,
    /// The tier's order (`None`: after every number).
    pub order: Option<f64>,
    pub outcome: TierOutcome,
}

impl Eq for TierVerdict {}

/// A rule whose match the input cannot settle, met before its tier's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CalicoUndecided {
    pub rule: CalicoRuleRef,
    pub action: CalicoAction,
    /// Index of the tier in [`CalicoVerdict::tiers`].
    pub tier: usize,
    pub why: &'static str,
}

/// How Calico's tiers judged one direction (empty without Calico policies for the pod).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalicoVerdict {
    /// The tiers that apply, in evaluation order.
    pub tiers: Vec<TierVerdict>,
    pub undecided: Vec<CalicoUndecided>,
}

impl CalicoVerdict {
    /// Whether the `default` tier applies (then it holds the NetworkPolicies' verdict too).
    pub fn has_default_tier(&self) -> bool {
        self.tiers.iter().any(|t| t.tier == DEFAULT_TIER)
    }
}

/// Where tiers fall against the layers Calico places by tier order: before the Admin tier,
/// between it and the default tier, at the default tier, between it and the Baseline tier, and
/// after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Band {
    BeforeAdmin,
    BeforeDefault,
    Default,
    BeforeBaseline,
    AfterBaseline,
}

/// The band of a tier.
pub fn band(tier: &TierVerdict) -> Band {
    if tier.tier == DEFAULT_TIER {
        return Band::Default;
    }
    match tier.order {
        Some(o) if o < ADMIN_TIER_ORDER => Band::BeforeAdmin,
        Some(o) if o < DEFAULT_TIER_ORDER => Band::BeforeDefault,
        Some(o) if o < BASELINE_TIER_ORDER => Band::BeforeBaseline,
        _ => Band::AfterBaseline,
    }
}

/// The order and default action of a tier: from its Tier object, else Calico's built-in ones;
/// a tier the input does not define has no order (last) and denies by default.
fn tier_facts(inventory: &Inventory, name: &str) -> (Option<f64>, bool) {
    match name {
        DEFAULT_TIER => return (Some(DEFAULT_TIER_ORDER), false),
        "kube-admin" | "adminnetworkpolicy" => return (Some(ADMIN_TIER_ORDER), true),
        "kube-baseline" | "baselineadminnetworkpolicy" => return (Some(BASELINE_TIER_ORDER), true),
        _ => {}
    }
    inventory.calico_tier(name).map_or((None, false), |t| (t.order, t.pass_by_default))
}

/// `a` before `b` when ordered by an optional order (none last), then by name.
fn by_order(a: (Option<f64>, &str), b: (Option<f64>, &str)) -> std::cmp::Ordering {
    let key = |o: Option<f64>| o.unwrap_or(f64::INFINITY);
    key(a.0).total_cmp(&key(b.0)).then_with(|| (a.0.is_none()).cmp(&b.0.is_none())).then_with(|| a.1.cmp(b.1))
}

/// A label lookup for selector evaluation.
enum Look<'a> {
    Value(&'a str),
    Absent,
    Unknown(&'static str),
}

fn eval<'v>(expr: &Expr, global: bool, look: &dyn Fn(&str) -> Look<'v>) -> Tri {
    let value = |k: &str, f: &dyn Fn(&str) -> bool, absent: bool| match look(k) {
        Look::Value(v) => Tri::from(f(v)),
        Look::Absent => Tri::from(absent),
        Look::Unknown(why) => Tri::Unknown(why),
    };
    match expr {
        Expr::All => Tri::Yes,
        Expr::Global => Tri::from(global),
        Expr::Has(k) => value(k, &|_| true, false),
        Expr::Eq(k, want) => value(k, &|v| v == want, false),
        Expr::Ne(k, want) => value(k, &|v| v != want, true),
        Expr::In(k, set) => value(k, &|v| set.iter().any(|s| s == v), false),
        Expr::NotIn(k, set) => value(k, &|v| !set.iter().any(|s| s == v), true),
        Expr::Contains(k, s) => value(k, &|v| v.contains(s.as_str()), false),
        Expr::StartsWith(k, s) => value(k, &|v| v.starts_with(s.as_str()), false),
        Expr::EndsWith(k, s) => value(k, &|v| v.ends_with(s.as_str()), false),
        Expr::Not(e) => !eval(e, global, look),
        Expr::And(a, b) => {
            let left = eval(a, global, look);
            if left == Tri::No { Tri::No } else { left.and(eval(b, global, look)) }
        }
        Expr::Or(a, b) => {
            let left = eval(a, global, look);
            if left == Tri::Yes { Tri::Yes } else { left.or(eval(b, global, look)) }
        }
    }
}

/// Whether a selector selects a pod, with the labels Calico gives it: its own, its namespace
/// (`projectcalico.org/namespace`), its namespace's labels as `pcns.<key>`, the orchestrator;
/// its service account (`projectcalico.org/serviceaccount`, `pcsa.<key>`) is not read.
pub fn selects_pod<'a>(selector: &Selector, pod: &PodView<'a>) -> Tri {
    let (namespace, labels, namespace_labels) = (pod.namespace, pod.labels, pod.namespace_labels);
    let look = move |k: &str| -> Look<'a> {
        match k {
            NAMESPACE_LABEL => Look::Value(namespace),
            ORCHESTRATOR_LABEL => Look::Value("k8s"),
            SERVICE_ACCOUNT_LABEL => Look::Unknown("the pod's service account is not read"),
            _ if k.starts_with("pcsa.") => Look::Unknown("the labels of the pod's service account are not read"),
            _ => match k.strip_prefix("pcns.") {
                Some(NAME_LABEL) => Look::Value(namespace),
                Some(ns_key) => namespace_labels.get(ns_key).map_or(Look::Absent, |v| Look::Value(v)),
                None => labels.get(k).map_or(Look::Absent, |v| Look::Value(v)),
            },
        }
    };
    eval(&selector.expr, false, &look)
}

/// Whether a namespace selector selects the namespace with these labels (its name is
/// `projectcalico.org/name`).
pub fn selects_namespace<'a>(selector: &Selector, labels: &'a Labels) -> Tri {
    let look = move |k: &str| -> Look<'a> {
        let key = if k == NAME_LABEL { NAMESPACE_NAME_LABEL } else { k };
        labels.get(key).map_or(Look::Absent, |v| Look::Value(v))
    };
    eval(&selector.expr, false, &look)
}

/// Whether a selector selects resources with these plain labels (a network set).
fn selects_labels<'a>(selector: &Selector, labels: &'a Labels, global: bool) -> Tri {
    let look = move |k: &str| -> Look<'a> { labels.get(k).map_or(Look::Absent, |v| Look::Value(v)) };
    eval(&selector.expr, global, &look)
}

/// Whether the policy applies to the pod (before `types`).
pub fn policy_selects(policy: &CalicoPolicy, pod: &PodView<'_>) -> Tri {
    if pod.host_network {
        return Tri::No;
    }
    let namespace = match (&policy.namespace, &policy.namespace_selector) {
        (Some(ns), _) => Tri::from(ns == pod.namespace),
        (None, Some(sel)) => selects_namespace(sel, pod.namespace_labels),
        (None, None) => Tri::Yes,
    };
    if namespace == Tri::No {
        return Tri::No;
    }
    let service_account = match &policy.service_account_selector {
        Some(s) if !s.expr.is_all() => Tri::Unknown("serviceAccountSelector: the pod's service account is not read"),
        _ => Tri::Yes,
    };
    namespace.and(selects_pod(&policy.selector, pod)).and(service_account)
}

/// The enforced Calico policies that can apply to pods of the namespace with these labels, in
/// input order, each with whether the pod's own labels still need checking: the namespace's
/// NetworkPolicies and the GlobalNetworkPolicies whose `namespaceSelector` takes it; a policy
/// whose selector reads only namespace-level labels is settled here once. A policy whose
/// selection the input cannot settle is left out (the verdict then reads as if it did not
/// select the pod; see `docs/decisions.md`).
pub fn namespace_candidates(inventory: &Inventory, namespace_labels: &Labels) -> Vec<(CalicoPolicyId, bool)> {
    if inventory.calico_policies.is_empty() {
        return Vec::new();
    }
    let Some(namespace) = namespace_labels.get(NAMESPACE_NAME_LABEL) else { return Vec::new() };
    let own = inventory.namespace(namespace).map(|ns| ns.calico_policies.as_slice()).unwrap_or_default();
    own.iter()
        .chain(&inventory.calico_global)
        .copied()
        .filter_map(|id| {
            let p = inventory.calico_policy(id);
            if p.kind.staged() {
                return None;
            }
            if let (None, Some(sel)) = (&p.namespace, &p.namespace_selector)
                && selects_namespace(sel, namespace_labels) != Tri::Yes
            {
                return None;
            }
            let plain_account = p.service_account_selector.as_ref().is_none_or(|s| s.expr.is_all());
            if plain_account && p.selector.expr.reads_only(&namespace_level_key) {
                return selects_whole_namespace(&p.selector, namespace, namespace_labels).then_some((id, false));
            }
            Some((id, true))
        })
        .collect()
}

/// Whether the policy's `types` has the direction.
pub fn governs(policy: &CalicoPolicy, direction: Direction) -> bool {
    match direction {
        Direction::Ingress => policy.ingress,
        Direction::Egress => policy.egress,
    }
}

/// The NetworkPolicies isolating the pod in the direction, and their rules that allow the
/// traffic: the default tier's Kubernetes part.
#[derive(Debug, Clone, Copy, Default)]
pub struct KubernetesPart<'a> {
    pub isolated_by: &'a [PolicyId],
    pub allowed_by: &'a [RuleRef],
}

/// Judges one direction through every Calico tier that applies.
pub fn judge(
    inventory: &Inventory,
    applicable: &[CalicoPolicyId],
    kubernetes: KubernetesPart<'_>,
    pod: &PodView<'_>,
    direction: Direction,
    peer: &Endpoint<'_>,
    traffic: Traffic,
) -> CalicoVerdict {
    let mut verdict = CalicoVerdict::default();
    if applicable.is_empty() {
        return verdict;
    }
    let mut tiers: Vec<(&str, Option<f64>, bool)> = Vec::new();
    for &id in applicable {
        let name = inventory.calico_policy(id).tier.as_str();
        if !tiers.iter().any(|t| t.0 == name) {
            let (order, pass) = tier_facts(inventory, name);
            tiers.push((name, order, pass));
        }
    }
    tiers.sort_by(|a, b| by_order((a.1, a.0), (b.1, b.0)));
    for (tier, order, pass) in tiers {
        // The tier's members in order: Calico policies, and in the default tier the
        // NetworkPolicies at order 1000, named `knp.default.<name>` as Calico names them.
        enum Member {
            Calico(CalicoPolicyId),
            Kubernetes(PolicyId),
        }
        let mut members: Vec<(Option<f64>, std::borrow::Cow<'_, str>, Member)> = applicable
            .iter()
            .filter(|&&id| inventory.calico_policy(id).tier == tier)
            .map(|&id| {
                let p = inventory.calico_policy(id);
                (p.order, std::borrow::Cow::Borrowed(p.name.as_str()), Member::Calico(id))
            })
            .collect();
        if tier == DEFAULT_TIER {
            for &pid in kubernetes.isolated_by {
                let name = format!("knp.default.{}", inventory.policy(pid).name);
                members.push((Some(NETWORK_POLICY_ORDER), std::borrow::Cow::Owned(name), Member::Kubernetes(pid)));
            }
        }
        members.sort_by(|a, b| by_order((a.0, &a.1), (b.0, &b.1)));
        let tier_index = verdict.tiers.len();
        let mut outcome = None;
        'members: for (_, _, member) in &members {
            match member {
                Member::Kubernetes(pid) => {
                    if let Some(rule) = kubernetes.allowed_by.iter().find(|r| r.policy == *pid) {
                        outcome = Some(TierOutcome::NetworkPolicy(*rule));
                        break 'members;
                    }
                }
                Member::Calico(id) => {
                    let policy = inventory.calico_policy(*id);
                    for (index, rule) in policy.rules(direction == Direction::Egress).iter().enumerate() {
                        if rule.action == CalicoAction::Log {
                            continue;
                        }
                        let at = CalicoRuleRef { policy: *id, direction, index };
                        match rule_matches(inventory, policy, rule, pod, direction, peer, traffic) {
                            Tri::Yes => {
                                outcome = Some(TierOutcome::Rule(at, rule.action));
                                break 'members;
                            }
                            Tri::Unknown(why) => verdict.undecided.push(CalicoUndecided {
                                rule: at,
                                action: rule.action,
                                tier: tier_index,
                                why,
                            }),
                            Tri::No => {}
                        }
                    }
                }
            }
        }
        let first = members.iter().find_map(|m| match m.2 {
            Member::Calico(id) => Some(id),
            Member::Kubernetes(_) => None,
        });
        let Some(first) = first else { continue };
        let outcome = outcome.unwrap_or(TierOutcome::EndOfTier { policy: first, pass });
        verdict.tiers.push(TierVerdict { tier: tier.to_owned(), order, outcome });
    }
    verdict
}

/// Whether the traffic's protocol is the one written (a name or a number).
fn protocol_is(written: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString, protocol: Protocol) -> bool {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let number = match protocol {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    };
    match written {
        IntOrString::String(s) => s == protocol.as_str() || s.parse::<i32>().is_ok_and(|n| n == number),
        IntOrString::Int(n) => *n == number,
    }
}

/// Whether a rule matches the connection.
pub fn rule_matches(
    inventory: &Inventory,
    policy: &CalicoPolicy,
    rule: &CalicoRule,
    pod: &PodView<'_>,
    direction: Direction,
    peer: &Endpoint<'_>,
    traffic: Traffic,
) -> Tri {
    if rule.icmp
        || rule.protocol.as_ref().is_some_and(|p| !protocol_is(p, traffic.protocol))
        || rule.not_protocol.as_ref().is_some_and(|p| protocol_is(p, traffic.protocol))
    {
        return Tri::No;
    }
    if let Some(version) = rule.ip_version
        && let Some(ip) = peer_address(peer)
        && (version == 4) != ip.is_ipv4()
    {
        return Tri::No;
    }
    let this = Endpoint::Pod(*pod);
    let ports = destination_ports(pod, direction, peer);
    let (source, destination) = match direction {
        Direction::Egress => ((&rule.source, &this), (&rule.destination, peer)),
        Direction::Ingress => ((&rule.source, peer), (&rule.destination, &this)),
    };
    let src = entity_matches(inventory, policy, source.0, source.1, None, traffic);
    if src == Tri::No {
        return Tri::No;
    }
    src.and(entity_matches(inventory, policy, destination.0, destination.1, Some(ports), traffic))
}

/// A known address of the endpoint, when it has one.
fn peer_address(endpoint: &Endpoint<'_>) -> Option<IpAddr> {
    match endpoint {
        Endpoint::Address(ip) | Endpoint::Resolved(ip, _) => Some(*ip),
        Endpoint::Pod(p) => p.ips.first().copied(),
        Endpoint::UnknownAddress | Endpoint::Name(_) => None,
    }
}

/// Whether the endpoint's address is in one of the networks.
fn in_nets(nets: &[IpNet], endpoint: &Endpoint<'_>) -> Tri {
    let whole = nets.iter().any(|n| n.prefix_len() == 0);
    match endpoint {
        Endpoint::Address(ip) | Endpoint::Resolved(ip, _) => Tri::from(nets.iter().any(|n| n.contains(ip))),
        Endpoint::Pod(p) if !p.ips.is_empty() => Tri::from(p.ips.iter().any(|ip| nets.iter().any(|n| n.contains(ip)))),
        _ if whole => Tri::Yes,
        Endpoint::Pod(_) => Tri::Unknown("the pod's address is not known offline"),
        Endpoint::UnknownAddress | Endpoint::Name(_) => {
            Tri::Unknown("the address behind the name is not known offline")
        }
    }
}

/// Whether the endpoint is one a selector (in the scope of a namespace selector) selects: a pod,
/// or an address of a network set.
fn selected(
    inventory: &Inventory,
    policy: &CalicoPolicy,
    selector: Option<&Selector>,
    namespace_selector: Option<&Selector>,
    endpoint: &Endpoint<'_>,
) -> Tri {
    // Whether a namespaced resource of `namespace` (with these labels) is in scope.
    let namespace_in_scope = |namespace: &str, labels: &Labels| match namespace_selector {
        Some(sel) => selects_namespace(sel, labels),
        None => match &policy.namespace {
            Some(own) => Tri::from(own == namespace),
            None => Tri::Yes,
        },
    };
    // Whether a non-namespaced resource (a GlobalNetworkSet) is in scope.
    let global_in_scope = match namespace_selector {
        // `all()` means every namespace (as Calico turns it into a namespace label check).
        Some(sel) if sel.expr.is_all() => Tri::No,
        Some(sel) => eval(&sel.expr, true, &|_| Look::<'static>::Absent),
        None => Tri::from(policy.namespace.is_none()),
    };
    match endpoint {
        Endpoint::Pod(pod) => {
            let scope = namespace_in_scope(pod.namespace, pod.namespace_labels);
            if scope == Tri::No {
                return Tri::No;
            }
            scope.and(selector.map_or(Tri::Yes, |s| selects_pod(s, pod)))
        }
        Endpoint::Address(_) | Endpoint::Resolved(..) | Endpoint::UnknownAddress | Endpoint::Name(_) => {
            let mut result = Tri::No;
            for set in &inventory.calico_network_sets {
                let scope = match &set.namespace {
                    None => global_in_scope,
                    Some(ns) => {
                        let labels = inventory.namespace(ns).map(|n| &n.labels);
                        let empty = Labels::new();
                        namespace_in_scope(ns, labels.unwrap_or(&empty))
                    }
                };
                let labels = selector.map_or(Tri::Yes, |s| selects_labels(s, &set.labels, set.namespace.is_none()));
                let picked = scope.and(labels);
                if picked == Tri::No {
                    continue;
                }
                let contains = match endpoint {
                    Endpoint::Address(ip) | Endpoint::Resolved(ip, _) => {
                        Tri::from(set.nets.iter().any(|n| n.contains(ip)))
                    }
                    _ => Tri::Unknown("the address behind the name may be in a network set"),
                };
                result = result.or(picked.and(contains));
                if result == Tri::Yes {
                    break;
                }
            }
            result
        }
    }
}

fn port_in(ports: &[PortSpec], destination_ports: &[crate::model::ContainerPort], traffic: Traffic) -> bool {
    ports.iter().any(|p| match p {
        PortSpec::Range(a, b) => (i32::from(*a)..=i32::from(*b)).contains(&traffic.port),
        PortSpec::Named(name) => named_port_matches(destination_ports, name, traffic),
    })
}

/// Whether an entity rule matches one end. `destination_ports` is `Some` (the destination's
/// container ports, for named ports) when the entity is the destination.
fn entity_matches(
    inventory: &Inventory,
    policy: &CalicoPolicy,
    entity: &Entity,
    endpoint: &Endpoint<'_>,
    destination_ports: Option<&[crate::model::ContainerPort]>,
    traffic: Traffic,
) -> Tri {
    let mut result = Tri::Yes;
    let mut check = |t: Tri| {
        result = result.and(t);
        result != Tri::No
    };
    if !entity.nets.is_empty() && !check(in_nets(&entity.nets, endpoint)) {
        return Tri::No;
    }
    if !entity.not_nets.is_empty() && !check(!in_nets(&entity.not_nets, endpoint)) {
        return Tri::No;
    }
    if !entity.ports.is_empty() || !entity.not_ports.is_empty() {
        let t = match destination_ports {
            None => Tri::Unknown("source ports are not known offline"),
            Some(dp) => Tri::from(
                (entity.ports.is_empty() || port_in(&entity.ports, dp, traffic))
                    && !port_in(&entity.not_ports, dp, traffic),
            ),
        };
        if !check(t) {
            return Tri::No;
        }
    }
    let scope = entity.namespace_selector.as_ref();
    if (entity.selector.is_some() || scope.is_some())
        && !check(selected(inventory, policy, entity.selector.as_ref(), scope, endpoint))
    {
        return Tri::No;
    }
    if let Some(not) = &entity.not_selector
        && !check(!selected(inventory, policy, Some(not), scope, endpoint))
    {
        return Tri::No;
    }
    if entity.service_accounts {
        let t = match endpoint {
            Endpoint::Pod(_) => Tri::Unknown("serviceAccounts: the pod's service account is not read"),
            _ => Tri::No,
        };
        if !check(t) {
            return Tri::No;
        }
    }
    if entity.services && !check(Tri::Unknown("services: a Service's endpoints are not known offline")) {
        return Tri::No;
    }
    result
}

/// Whether a label key is one every pod of a namespace has alike (its namespace, the
/// orchestrator, the namespace's labels).
fn namespace_level_key(key: &str) -> bool {
    key == NAMESPACE_LABEL || key == ORCHESTRATOR_LABEL || key.starts_with("pcns.")
}

/// Whether a policy selector takes every pod of the namespace: it reads only what Calico
/// knows of every pod of a namespace (`projectcalico.org/namespace`, the orchestrator, the
/// namespace's labels as `pcns.<key>`), and takes this one. Calico's documented default deny,
/// `projectcalico.org/namespace not in {'kube-system', 'calico-system'}`, is such a selector.
pub fn selects_whole_namespace(selector: &Selector, namespace: &str, namespace_labels: &Labels) -> bool {
    let namespace_level = selector.expr.reads_only(&namespace_level_key);
    let no_labels = Labels::new();
    let probe = PodView {
        namespace,
        labels: &no_labels,
        namespace_labels,
        ports: &[],
        ips: &[],
        host_network: false,
        workload: None,
    };
    namespace_level && selects_pod(selector, &probe) == Tri::Yes
}

/// A Calico policy that denies every pod of the namespace in `direction` unless a rule allows:
/// it applies to all of the namespace's pods (a NetworkPolicy of the namespace, or a
/// GlobalNetworkPolicy whose namespace selector takes the namespace), sits in a tier that denies
/// by default, and has no rule that allows or passes everything.
pub fn namespace_default_deny(inventory: &Inventory, namespace: &str, direction: Direction) -> Option<CalicoPolicyId> {
    if inventory.calico_policies.is_empty() {
        return None;
    }
    let info = inventory.namespace(namespace)?;
    info.calico_policies.iter().chain(&inventory.calico_global).copied().find(|&id| {
        let p = inventory.calico_policy(id);
        let covers = match (&p.namespace, &p.namespace_selector) {
            (Some(ns), _) => ns == namespace,
            (None, Some(sel)) => selects_namespace(sel, &info.labels) == Tri::Yes,
            (None, None) => true,
        };
        let selects_all = selects_whole_namespace(&p.selector, namespace, &info.labels);
        let tier_denies = !tier_facts(inventory, &p.tier).1;
        let opens = p
            .rules(direction == Direction::Egress)
            .iter()
            .any(|r| matches!(r.action, CalicoAction::Allow | CalicoAction::Pass) && r.matches_everything());
        !p.kind.staged()
            && covers
            && selects_all
            && p.service_account_selector.as_ref().is_none_or(|s| s.expr.is_all())
            && governs(p, direction)
            && tier_denies
            && !opens
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::calico_selector::parse;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn selector_semantics_of_the_reference() {
        let pod_labels = labels(&[("role", "frontend"), ("my-label", "production")]);
        let ns_labels = labels(&[(NAMESPACE_NAME_LABEL, "shop"), ("team", "a")]);
        let pod = PodView {
            namespace: "shop",
            labels: &pod_labels,
            namespace_labels: &ns_labels,
            ports: &[],
            ips: &[],
            host_network: false,
            workload: None,
        };
        let cases: &[(&str, Tri)] = &[
            ("", Tri::Yes),
            ("all()", Tri::Yes),
            ("!all()", Tri::No),
            ("global()", Tri::No),
            ("role == 'frontend'", Tri::Yes),
            ("role == 'backend'", Tri::No),
            // `!=` and `not in` match resources without the label.
            ("missing != 'x'", Tri::Yes),
            ("role != 'frontend'", Tri::No),
            ("missing not in {'x'}", Tri::Yes),
            ("missing in {'x'}", Tri::No),
            ("role in {'frontend', 'business'}", Tri::Yes),
            ("has(role)", Tri::Yes),
            ("!has(role)", Tri::No),
            ("my-label starts with 'prod'", Tri::Yes),
            ("my-label ends with 'tion'", Tri::Yes),
            ("my-label contains 'duct'", Tri::Yes),
            ("missing contains ''", Tri::No),
            // The reference's precedence example.
            ("! has(my-label) || my-label starts with 'prod' && role in {'frontend','business'}", Tri::Yes),
            ("projectcalico.org/namespace == 'shop'", Tri::Yes),
            ("projectcalico.org/orchestrator == 'k8s'", Tri::Yes),
            ("pcns.team == 'a'", Tri::Yes),
            ("pcns.projectcalico.org/name == 'shop'", Tri::Yes),
            ("projectcalico.org/serviceaccount == 'api'", Tri::Unknown("the pod's service account is not read")),
            // Kleene logic: a known answer settles an unknown one.
            ("role == 'backend' && projectcalico.org/serviceaccount == 'api'", Tri::No),
            ("role == 'frontend' || projectcalico.org/serviceaccount == 'api'", Tri::Yes),
        ];
        for (text, want) in cases {
            let sel = parse(text).expect(text);
            assert_eq!(selects_pod(&sel, &pod), *want, "{text}");
        }
        let ns = parse("projectcalico.org/name == 'shop' && team == 'a'").expect("ns");
        assert_eq!(selects_namespace(&ns, &ns_labels), Tri::Yes);
    }

    #[test]
    fn whole_namespace_selectors() {
        let ns_labels = labels(&[(NAMESPACE_NAME_LABEL, "shop"), ("team", "a")]);
        for (text, want) in [
            ("all()", true),
            ("", true),
            ("projectcalico.org/namespace not in {'kube-system', 'calico-system'}", true),
            ("projectcalico.org/namespace == 'shop'", true),
            ("projectcalico.org/namespace == 'other'", false),
            ("pcns.team == 'a' && projectcalico.org/orchestrator == 'k8s'", true),
            ("app == 'web'", false),
            ("!has(app)", false),
            ("projectcalico.org/namespace == 'shop' && app == 'web'", false),
        ] {
            let sel = parse(text).expect(text);
            assert_eq!(selects_whole_namespace(&sel, "shop", &ns_labels), want, "{text}");
        }
    }

    #[test]
    fn tiers_sort_by_order_none_last_then_name() {
        let mut tiers = vec![(None, "z"), (Some(100.0), "b"), (None, "a"), (Some(100.0), "a"), (Some(5.0), "q")];
        tiers.sort_by(|a, b| by_order(*a, *b));
        assert_eq!(tiers, vec![(Some(5.0), "q"), (Some(100.0), "a"), (Some(100.0), "b"), (None, "a"), (None, "z")]);
    }
}
