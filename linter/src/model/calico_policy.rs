//! Calico's policy resources (`projectcalico.org/v3`, and the same spec stored as
//! `crd.projectcalico.org/v1`), as the Calico API reference defines them: NetworkPolicy,
//! GlobalNetworkPolicy, their staged forms, Tier, NetworkSet and GlobalNetworkSet. What the
//! fields mean for traffic is in `semantics::calico`.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;

use super::ObjectId;
use super::calico_selector::Selector;

/// The API version of Calico's API server.
pub const API_VERSION: &str = "projectcalico.org/v3";
/// The API version of the CRDs behind it (applied directly by some installs).
pub const CRD_API_VERSION: &str = "crd.projectcalico.org/v1";

/// The tier policies without `tier` belong to, and Kubernetes NetworkPolicies are placed in.
pub const DEFAULT_TIER: &str = "default";
/// The default tier's fixed order.
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;
/// The order of the tier Calico keeps the Admin tier of ClusterNetworkPolicy (and
/// AdminNetworkPolicy) in: `kube-admin` (formerly `adminnetworkpolicy`).
pub const ADMIN_TIER_ORDER: f64 = 1_000.0;
/// The order of the tier Calico keeps the Baseline tier in: `kube-baseline` (formerly
/// `baselineadminnetworkpolicy`).
pub const BASELINE_TIER_ORDER: f64 = 10_000_000.0;
/// The order Calico gives each Kubernetes NetworkPolicy inside the default tier.
pub const NETWORK_POLICY_ORDER: f64 = 1_000.0;

/// Calico's kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CalicoKind {
    NetworkPolicy,
    GlobalNetworkPolicy,
    StagedNetworkPolicy,
    StagedGlobalNetworkPolicy,
    StagedKubernetesNetworkPolicy,
    Tier,
    NetworkSet,
    GlobalNetworkSet,
}

impl CalicoKind {
    /// The kind for a Calico `kind` name.
    pub fn parse(kind: &str) -> Option<CalicoKind> {
        Some(match kind {
            "NetworkPolicy" => CalicoKind::NetworkPolicy,
            "GlobalNetworkPolicy" => CalicoKind::GlobalNetworkPolicy,
            "StagedNetworkPolicy" => CalicoKind::StagedNetworkPolicy,
            "StagedGlobalNetworkPolicy" => CalicoKind::StagedGlobalNetworkPolicy,
            "StagedKubernetesNetworkPolicy" => CalicoKind::StagedKubernetesNetworkPolicy,
            "Tier" => CalicoKind::Tier,
            "NetworkSet" => CalicoKind::NetworkSet,
            "GlobalNetworkSet" => CalicoKind::GlobalNetworkSet,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CalicoKind::NetworkPolicy => "NetworkPolicy",
            CalicoKind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            CalicoKind::StagedNetworkPolicy => "StagedNetworkPolicy",
            CalicoKind::StagedGlobalNetworkPolicy => "StagedGlobalNetworkPolicy",
            CalicoKind::StagedKubernetesNetworkPolicy => "StagedKubernetesNetworkPolicy",
            CalicoKind::Tier => "Tier",
            CalicoKind::NetworkSet => "NetworkSet",
            CalicoKind::GlobalNetworkSet => "GlobalNetworkSet",
        }
    }

    /// Whether objects of the kind have no namespace.
    pub fn cluster_scoped(self) -> bool {
        matches!(
            self,
            CalicoKind::GlobalNetworkPolicy
                | CalicoKind::StagedGlobalNetworkPolicy
                | CalicoKind::Tier
                | CalicoKind::GlobalNetworkSet
        )
    }

    /// Whether the kind is a policy that is only staged: evaluated by Calico's tooling, never
    /// enforced.
    pub fn staged(self) -> bool {
        matches!(
            self,
            CalicoKind::StagedNetworkPolicy
                | CalicoKind::StagedGlobalNetworkPolicy
                | CalicoKind::StagedKubernetesNetworkPolicy
        )
    }
}

/// Index of a [`CalicoPolicy`] in [`super::Inventory::calico_policies`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CalicoPolicyId(pub usize);

/// A Calico NetworkPolicy or GlobalNetworkPolicy (or a staged one), with its selectors parsed.
#[derive(Debug, Clone)]
pub struct CalicoPolicy {
    pub object: ObjectId,
    pub kind: CalicoKind,
    pub name: String,
    /// `None` for the global kinds.
    pub namespace: Option<String>,
    /// The tier (`default` when unset).
    pub tier: String,
    /// `spec.order`; `None` is after every number.
    pub order: Option<f64>,
    /// `spec.selector` (`all()` when unset).
    pub selector: Selector,
    /// `spec.namespaceSelector` of a global policy (`None`: every namespace, and non-namespaced
    /// endpoints).
    pub namespace_selector: Option<Selector>,
    /// `spec.serviceAccountSelector`, when set.
    pub service_account_selector: Option<Selector>,
    /// `spec.types` after Calico's defaulting.
    pub ingress: bool,
    pub egress: bool,
    pub ingress_rules: Vec<CalicoRule>,
    pub egress_rules: Vec<CalicoRule>,
}

impl CalicoPolicy {
    /// How messages name the policy: `Calico NetworkPolicy shop/deny-all (tier default, order 10)`.
    pub fn describe(&self) -> String {
        let name = match &self.namespace {
            Some(ns) => format!("Calico {} {ns}/{}", self.kind.as_str(), self.name),
            None => format!("Calico {} {}", self.kind.as_str(), self.name),
        };
        match self.order {
            Some(order) => format!("{name} (tier {}, order {order})", self.tier),
            None => format!("{name} (tier {}, no order)", self.tier),
        }
    }

    /// The rules of one direction (empty when `types` leaves it out: Calico ignores them).
    pub fn rules(&self, egress: bool) -> &[CalicoRule] {
        match (egress, self.egress, self.ingress) {
            (true, true, _) => &self.egress_rules,
            (false, _, true) => &self.ingress_rules,
            _ => &[],
        }
    }
}

/// A rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum CalicoAction {
    Allow,
    Deny,
    /// Skips the rest of the tier.
    Pass,
    /// Logs and goes on with the next rule.
    Log,
}

impl CalicoAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CalicoAction::Allow => "Allow",
            CalicoAction::Deny => "Deny",
            CalicoAction::Pass => "Pass",
            CalicoAction::Log => "Log",
        }
    }
}

/// A rule with its selectors parsed.
#[derive(Debug, Clone)]
pub struct CalicoRule {
    pub action: CalicoAction,
    pub protocol: Option<IntOrString>,
    pub not_protocol: Option<IntOrString>,
    /// `icmp` is set: the rule matches ICMP only.
    pub icmp: bool,
    pub ip_version: Option<u8>,
    /// `http` is set: an application-layer match (ingress Allow rules only).
    pub http: bool,
    pub source: Entity,
    pub destination: Entity,
}

/// An EntityRule with its selectors parsed.
#[derive(Debug, Clone, Default)]
pub struct Entity {
    pub nets: Vec<ipnet::IpNet>,
    pub not_nets: Vec<ipnet::IpNet>,
    pub selector: Option<Selector>,
    pub not_selector: Option<Selector>,
    pub namespace_selector: Option<Selector>,
    pub ports: Vec<PortSpec>,
    pub not_ports: Vec<PortSpec>,
    /// `serviceAccounts` is set (names or a selector over service accounts).
    pub service_accounts: bool,
    /// `services` is set (a Kubernetes Service by name).
    pub services: bool,
}

impl Entity {
    /// Whether the entity sets nothing, and so matches every packet.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
            && self.not_nets.is_empty()
            && self.selector.is_none()
            && self.not_selector.is_none()
            && self.namespace_selector.is_none()
            && self.ports.is_empty()
            && self.not_ports.is_empty()
            && !self.service_accounts
            && !self.services
    }
}

impl CalicoRule {
    /// Whether the rule matches every packet: no protocol, address, selector or port criteria.
    pub fn matches_everything(&self) -> bool {
        self.protocol.is_none()
            && self.not_protocol.is_none()
            && !self.icmp
            && self.ip_version.is_none()
            && self.source.is_empty()
            && self.destination.is_empty()
    }
}

/// A port entry: a number, a `start:end` range, or a named port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    Range(u16, u16),
    Named(String),
}

impl PortSpec {
    /// Parses one `ports` item as Calico writes them.
    pub fn parse(raw: &IntOrString) -> Result<PortSpec, String> {
        match raw {
            IntOrString::Int(n) => {
                let port = u16::try_from(*n).map_err(|_| format!("port {n} is outside 0-65535"))?;
                Ok(PortSpec::Range(port, port))
            }
            IntOrString::String(s) => {
                let number = |t: &str| t.trim().parse::<u16>().map_err(|_| format!("port {s:?}: {t:?} is not 0-65535"));
                if let Some((a, b)) = s.split_once(':') {
                    let (a, b) = (number(a)?, number(b)?);
                    if a > b {
                        return Err(format!("port range {s:?} starts after it ends"));
                    }
                    return Ok(PortSpec::Range(a, b));
                }
                if let Ok(n) = s.trim().parse::<u16>() {
                    return Ok(PortSpec::Range(n, n));
                }
                let valid = !s.is_empty()
                    && s.len() <= 128
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if valid {
                    Ok(PortSpec::Named(s.clone()))
                } else {
                    Err(format!("port {s:?} is not a number, a start:end range or a port name"))
                }
            }
        }
    }
}

/// A Calico Tier.
#[derive(Debug, Clone, PartialEq)]
pub struct CalicoTier {
    pub object: ObjectId,
    pub name: String,
    pub order: Option<f64>,
    /// `defaultAction: Pass` (else `Deny`): what happens when the tier applies but no rule acts.
    pub pass_by_default: bool,
}

/// A NetworkSet or GlobalNetworkSet: addresses with labels that rule selectors select.
#[derive(Debug, Clone, PartialEq)]
pub struct CalicoNetworkSet {
    pub object: ObjectId,
    pub name: String,
    /// `None` for a GlobalNetworkSet.
    pub namespace: Option<String>,
    pub labels: super::Labels,
    pub nets: Vec<ipnet::IpNet>,
}

/// The spec fields of a NetworkPolicy or GlobalNetworkPolicy (and their staged forms), as
/// written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawPolicySpec {
    pub tier: Option<String>,
    pub order: Option<f64>,
    pub selector: Option<String>,
    pub namespace_selector: Option<String>,
    pub service_account_selector: Option<String>,
    pub types: Option<Vec<String>>,
    #[serde(default)]
    pub ingress: Vec<RawRule>,
    #[serde(default)]
    pub egress: Vec<RawRule>,
    /// Staged kinds: `Set` (the default) or `Delete`.
    pub staged_action: Option<String>,
}

/// A rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawRule {
    pub action: Option<String>,
    pub protocol: Option<IntOrString>,
    pub not_protocol: Option<IntOrString>,
    pub icmp: Option<serde_json::Value>,
    #[serde(rename = "notICMP")]
    pub not_icmp: Option<serde_json::Value>,
    pub ip_version: Option<i64>,
    #[serde(default)]
    pub source: RawEntity,
    #[serde(default)]
    pub destination: RawEntity,
    pub http: Option<serde_json::Value>,
}

/// An EntityRule as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawEntity {
    #[serde(default)]
    pub nets: Vec<String>,
    #[serde(default)]
    pub not_nets: Vec<String>,
    pub selector: Option<String>,
    pub not_selector: Option<String>,
    pub namespace_selector: Option<String>,
    #[serde(default)]
    pub ports: Vec<IntOrString>,
    #[serde(default)]
    pub not_ports: Vec<IntOrString>,
    pub service_accounts: Option<serde_json::Value>,
    pub services: Option<serde_json::Value>,
}

/// A Tier's spec as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawTierSpec {
    pub order: Option<f64>,
    pub default_action: Option<String>,
}

/// A network set's spec as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawNetworkSetSpec {
    #[serde(default)]
    pub nets: Vec<String>,
}

/// Where a problem is, relative to the object, and what it is.
pub type Problem = (String, String);

/// Reads a selector field, recording a problem when it does not parse.
fn selector(raw: Option<&str>, at: &str, problems: &mut Vec<Problem>) -> Option<Selector> {
    let raw = raw?;
    match super::calico_selector::parse(raw) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push((at.to_owned(), format!("selector {raw:?} does not parse: {e}")));
            None
        }
    }
}

fn nets(raw: &[String], at: &str, problems: &mut Vec<Problem>) -> Vec<ipnet::IpNet> {
    let mut out = Vec::new();
    for (i, n) in raw.iter().enumerate() {
        // Calico accepts a bare address as a /32 or /128.
        let parsed = n.parse::<ipnet::IpNet>().or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(net) => out.push(net.trunc()),
            Err(_) => problems.push((format!("{at}/{i}"), format!("{n:?} is not a CIDR"))),
        }
    }
    out
}

fn ports(raw: &[IntOrString], at: &str, problems: &mut Vec<Problem>) -> Vec<PortSpec> {
    let mut out = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        match PortSpec::parse(p) {
            Ok(p) => out.push(p),
            Err(e) => problems.push((format!("{at}/{i}"), e)),
        }
    }
    out
}

fn entity(raw: &RawEntity, at: &str, problems: &mut Vec<Problem>) -> Entity {
    Entity {
        nets: nets(&raw.nets, &format!("{at}/nets"), problems),
        not_nets: nets(&raw.not_nets, &format!("{at}/notNets"), problems),
        selector: selector(raw.selector.as_deref(), &format!("{at}/selector"), problems),
        not_selector: selector(raw.not_selector.as_deref(), &format!("{at}/notSelector"), problems),
        namespace_selector: selector(raw.namespace_selector.as_deref(), &format!("{at}/namespaceSelector"), problems),
        ports: ports(&raw.ports, &format!("{at}/ports"), problems),
        not_ports: ports(&raw.not_ports, &format!("{at}/notPorts"), problems),
        service_accounts: raw.service_accounts.is_some(),
        services: raw.services.is_some(),
    }
}

/// The protocols ports may go with.
fn protocol_has_ports(p: &IntOrString) -> bool {
    match p {
        IntOrString::String(s) => matches!(s.as_str(), "TCP" | "UDP" | "SCTP"),
        IntOrString::Int(n) => matches!(n, 6 | 17 | 132),
    }
}

fn protocol_valid(p: &IntOrString) -> bool {
    match p {
        IntOrString::String(s) => {
            matches!(s.as_str(), "TCP" | "UDP" | "ICMP" | "ICMPv6" | "SCTP" | "UDPLite")
                || s.parse::<u8>().is_ok_and(|n| n >= 1)
        }
        IntOrString::Int(n) => (1..=255).contains(n),
    }
}

fn rule(raw: &RawRule, at: &str, problems: &mut Vec<Problem>) -> Option<CalicoRule> {
    let action = match raw.action.as_deref() {
        Some("Allow") => CalicoAction::Allow,
        Some("Deny") => CalicoAction::Deny,
        Some("Pass") => CalicoAction::Pass,
        Some("Log") => CalicoAction::Log,
        Some(other) => {
            problems.push((format!("{at}/action"), format!("action {other:?} is not Allow, Deny, Pass or Log")));
            return None;
        }
        None => {
            problems.push((format!("{at}/action"), "a rule needs an action (Allow, Deny, Pass or Log)".to_owned()));
            return None;
        }
    };
    let before = problems.len();
    for (field, p) in [("protocol", &raw.protocol), ("notProtocol", &raw.not_protocol)] {
        if let Some(p) = p
            && !protocol_valid(p)
        {
            problems.push((
                format!("{at}/{field}"),
                "protocol must be TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1-255".to_owned(),
            ));
        }
    }
    let ip_version = match raw.ip_version {
        None => None,
        Some(v @ (4 | 6)) => u8::try_from(v).ok(),
        Some(_) => {
            problems.push((format!("{at}/ipVersion"), "ipVersion must be 4 or 6".to_owned()));
            None
        }
    };
    let source = entity(&raw.source, &format!("{at}/source"), problems);
    let destination = entity(&raw.destination, &format!("{at}/destination"), problems);
    let has_ports = [&source, &destination].iter().any(|e| !e.ports.is_empty() || !e.not_ports.is_empty());
    if has_ports && !raw.protocol.as_ref().is_some_and(protocol_has_ports) {
        problems.push((
            format!("{at}/protocol"),
            "ports need protocol TCP, UDP or SCTP on the rule; Calico's API server rejects the policy".to_owned(),
        ));
    }
    (problems.len() == before).then_some(CalicoRule {
        action,
        protocol: raw.protocol.clone(),
        not_protocol: raw.not_protocol.clone(),
        icmp: raw.icmp.is_some(),
        ip_version,
        http: raw.http.is_some(),
        source,
        destination,
    })
}

/// A policy's spec checked and compiled; `problems` (pointers relative to the object) make the
/// policy one the API server rejects, and then no policy is returned.
pub fn compile_policy(
    raw: &RawPolicySpec,
    kind: CalicoKind,
    object: ObjectId,
    name: &str,
    namespace: Option<&str>,
    problems: &mut Vec<Problem>,
) -> Option<CalicoPolicy> {
    let before = problems.len();
    let sel = selector(raw.selector.as_deref(), "/spec/selector", problems).unwrap_or_else(Selector::all);
    let namespace_selector = match (kind.cluster_scoped(), &raw.namespace_selector) {
        (true, Some(s)) => selector(Some(s), "/spec/namespaceSelector", problems),
        (false, Some(_)) => {
            problems.push((
                "/spec/namespaceSelector".to_owned(),
                "a namespaced Calico policy has no spec.namespaceSelector (it applies to its own namespace)".to_owned(),
            ));
            None
        }
        (_, None) => None,
    };
    let service_account_selector =
        selector(raw.service_account_selector.as_deref(), "/spec/serviceAccountSelector", problems);
    if let Some(order) = raw.order
        && !order.is_finite()
    {
        problems.push(("/spec/order".to_owned(), "order must be a finite number".to_owned()));
    }
    let (mut ingress, mut egress) = (false, false);
    match &raw.types {
        None => {
            egress = !raw.egress.is_empty();
            ingress = !egress || !raw.ingress.is_empty();
        }
        Some(types) => {
            for (i, t) in types.iter().enumerate() {
                match t.as_str() {
                    "Ingress" => ingress = true,
                    "Egress" => egress = true,
                    other => {
                        problems.push((format!("/spec/types/{i}"), format!("type {other:?} is not Ingress or Egress")))
                    }
                }
            }
        }
    }
    let mut compile = |rules: &[RawRule], key: &str| {
        rules.iter().enumerate().filter_map(|(i, r)| rule(r, &format!("/spec/{key}/{i}"), problems)).collect::<Vec<_>>()
    };
    let ingress_rules = compile(&raw.ingress, "ingress");
    let egress_rules = compile(&raw.egress, "egress");
    (problems.len() == before).then(|| CalicoPolicy {
        object,
        kind,
        name: name.to_owned(),
        namespace: namespace.map(str::to_owned),
        tier: raw.tier.clone().filter(|t| !t.is_empty()).unwrap_or_else(|| DEFAULT_TIER.to_owned()),
        order: raw.order,
        selector: sel,
        namespace_selector,
        service_account_selector,
        ingress,
        egress,
        ingress_rules,
        egress_rules,
    })
}

/// Reads a Tier.
pub fn compile_tier(raw: &RawTierSpec, object: ObjectId, name: &str, problems: &mut Vec<Problem>) -> CalicoTier {
    let pass_by_default = match raw.default_action.as_deref() {
        None | Some("Deny") => false,
        Some("Pass") => true,
        Some(other) => {
            problems.push(("/spec/defaultAction".to_owned(), format!("defaultAction {other:?} is not Deny or Pass")));
            false
        }
    };
    let order = match name {
        // Calico fixes these orders whatever the object says.
        DEFAULT_TIER => Some(DEFAULT_TIER_ORDER),
        _ => raw.order.filter(|o| o.is_finite()),
    };
    CalicoTier { object, name: name.to_owned(), order, pass_by_default }
}

/// Reads a network set.
pub fn compile_network_set(
    raw: &RawNetworkSetSpec,
    object: ObjectId,
    name: &str,
    namespace: Option<&str>,
    labels: super::Labels,
    problems: &mut Vec<Problem>,
) -> CalicoNetworkSet {
    CalicoNetworkSet {
        object,
        name: name.to_owned(),
        namespace: namespace.map(str::to_owned),
        labels,
        nets: nets(&raw.nets, "/spec/nets", problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_as_calico_writes_them() {
        assert_eq!(PortSpec::parse(&IntOrString::Int(80)), Ok(PortSpec::Range(80, 80)));
        assert_eq!(PortSpec::parse(&IntOrString::String("6040:6050".into())), Ok(PortSpec::Range(6040, 6050)));
        assert_eq!(
            PortSpec::parse(&IntOrString::String("named-port".into())),
            Ok(PortSpec::Named("named-port".into()))
        );
        assert!(PortSpec::parse(&IntOrString::String("6050:6040".into())).is_err());
        assert!(PortSpec::parse(&IntOrString::Int(70000)).is_err());
        assert!(PortSpec::parse(&IntOrString::String("a b".into())).is_err());
    }

    #[test]
    fn types_default_as_the_reference_tables() {
        let rule = || RawRule {
            action: Some("Allow".into()),
            protocol: None,
            not_protocol: None,
            icmp: None,
            not_icmp: None,
            ip_version: None,
            source: RawEntity::default(),
            destination: RawEntity::default(),
            http: None,
        };
        let cases = [
            (false, false, true, false),
            (true, false, true, false),
            (false, true, false, true),
            (true, true, true, true),
        ];
        for (has_in, has_out, want_in, want_out) in cases {
            let raw = RawPolicySpec {
                ingress: if has_in { vec![rule()] } else { vec![] },
                egress: if has_out { vec![rule()] } else { vec![] },
                ..RawPolicySpec::default()
            };
            let mut problems = Vec::new();
            let p = compile_policy(&raw, CalicoKind::NetworkPolicy, ObjectId(0), "p", Some("ns"), &mut problems)
                .expect("valid");
            assert_eq!((p.ingress, p.egress), (want_in, want_out), "ingress rules {has_in}, egress rules {has_out}");
        }
    }
}
