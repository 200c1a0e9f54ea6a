//! The frozen `policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy and
//! BaselineAdminNetworkPolicy (kubernetes-sigs/network-policy-api v0.1.x, still deployed), read
//! into the [`ClusterNetworkPolicySpec`] their successor defines: the semantics are the same
//! (an AdminNetworkPolicy is an Admin-tier policy, the BaselineAdminNetworkPolicy the Baseline
//! tier's), so one evaluator serves both API versions.
//!
//! The types follow `apis/v1alpha1` field for field. The conversion is one to one: rule `i`, peer
//! `j` and port `k` keep their indexes, so a finding on the converted spec points at the same
//! place in the manifest (`ports` where v1alpha2 says `protocols`).

use serde::Deserialize;

use super::cluster_policy::{
    Action, ClusterNetworkPolicySpec, EgressRule, IngressRule, Peer, Port, PortRange, ProtocolMatch, ProtocolPort,
    Subject, Tier,
};

/// The API version of both kinds.
pub const API_VERSION: &str = "policy.networking.k8s.io/v1alpha1";
/// The only name a BaselineAdminNetworkPolicy may have (the CRD's validation rule).
pub const BASELINE_NAME: &str = "default";

/// `spec` of an AdminNetworkPolicy or the BaselineAdminNetworkPolicy (which has no `priority`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    #[serde(default)]
    pub priority: Option<i32>,
    pub subject: Subject,
    #[serde(default)]
    pub ingress: Vec<Rule>,
    #[serde(default)]
    pub egress: Vec<Rule>,
}

/// An ingress (`from`) or egress (`to`) rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub name: Option<String>,
    pub action: RuleAction,
    /// Ingress peers (an egress rule's are in `to`; the other list is pruned by the API server).
    #[serde(default)]
    pub from: Vec<Peer>,
    #[serde(default)]
    pub to: Vec<Peer>,
    pub ports: Option<Vec<AdminPort>>,
}

/// `Allow`, `Deny` or `Pass` (the Baseline kind allows only the first two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RuleAction {
    Allow,
    Deny,
    Pass,
}

/// `ports[]`: exactly one of the three.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminPort {
    pub port_number: Option<PortNumber>,
    pub named_port: Option<String>,
    pub port_range: Option<AdminPortRange>,
}

/// `portNumber`: protocol (TCP by default) and port.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortNumber {
    #[serde(default = "tcp")]
    pub protocol: String,
    pub port: i32,
}

/// `portRange`: protocol (TCP by default), `start` and `end`, inclusive.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminPortRange {
    #[serde(default = "tcp")]
    pub protocol: String,
    pub start: i32,
    pub end: i32,
}

fn tcp() -> String {
    "TCP".to_owned()
}

/// Which of the two kinds a spec came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Admin,
    Baseline,
}

impl Spec {
    /// The spec as the v1alpha2 API writes it, and what the API server would reject that the
    /// conversion cannot carry (JSON pointer under the object, message).
    pub fn convert(self, flavor: Flavor) -> (ClusterNetworkPolicySpec, Vec<(String, String)>) {
        let mut problems = Vec::new();
        let tier = match flavor {
            Flavor::Admin => Tier::Admin,
            Flavor::Baseline => Tier::Baseline,
        };
        let priority = match (flavor, self.priority) {
            (Flavor::Admin, Some(p)) => p,
            (Flavor::Admin, None) => {
                problems.push(("/spec".to_owned(), "an AdminNetworkPolicy needs spec.priority (0-1000)".to_owned()));
                // Evaluated last among Admin policies, where a missing priority does least harm.
                1000
            }
            (Flavor::Baseline, Some(_)) => {
                problems.push((
                    "/spec/priority".to_owned(),
                    "a BaselineAdminNetworkPolicy has no priority; the API server drops the field".to_owned(),
                ));
                0
            }
            (Flavor::Baseline, None) => 0,
        };
        let mut convert_rules = |key: &str,
                                 field: &str,
                                 rules: Vec<Rule>|
         -> Vec<(String, Action, Vec<Peer>, Vec<ProtocolMatch>)> {
            rules
                .into_iter()
                .enumerate()
                .map(|(i, mut rule)| {
                    let peers = std::mem::take(if field == "to" { &mut rule.to } else { &mut rule.from });
                    let action = match (flavor, rule.action) {
                        (_, RuleAction::Allow) => Action::Accept,
                        (_, RuleAction::Deny) => Action::Deny,
                        (Flavor::Admin, RuleAction::Pass) => Action::Pass,
                        (Flavor::Baseline, RuleAction::Pass) => {
                            problems.push((
                                format!("/spec/{key}/{i}/action"),
                                "a BaselineAdminNetworkPolicy rule's action is Allow or Deny; the API server rejects Pass"
                                    .to_owned(),
                            ));
                            Action::Pass
                        }
                    };
                    if peers.is_empty() {
                        problems.push((
                            format!("/spec/{key}/{i}"),
                            format!("{key} rule needs at least one peer in {field}; the API server rejects it"),
                        ));
                    }
                    if rule.ports.as_ref().is_some_and(Vec::is_empty) {
                        problems.push((
                            format!("/spec/{key}/{i}/ports"),
                            "ports, when set, needs at least one entry; the API server rejects an empty list".to_owned(),
                        ));
                    }
                    if flavor == Flavor::Baseline
                        && let Some(j) = peers.iter().position(|p| p.domain_names.is_some())
                    {
                        problems.push((
                            format!("/spec/{key}/{i}/{field}/{j}"),
                            "a BaselineAdminNetworkPolicy peer has no domainNames; the API server drops the field"
                                .to_owned(),
                        ));
                    }
                    let protocols = rule
                        .ports
                        .unwrap_or_default()
                        .into_iter()
                        .enumerate()
                        .map(|(k, port)| convert_port(port, &format!("/spec/{key}/{i}/ports/{k}"), &mut problems))
                        .collect();
                    (rule.name.unwrap_or_default(), action, peers, protocols)
                })
                .collect()
        };
        let ingress = convert_rules("ingress", "from", self.ingress)
            .into_iter()
            .map(|(name, action, from, protocols)| IngressRule {
                name: Some(name).filter(|n| !n.is_empty()),
                action,
                from,
                protocols,
            })
            .collect();
        let egress = convert_rules("egress", "to", self.egress)
            .into_iter()
            .map(|(name, action, to, protocols)| EgressRule {
                name: Some(name).filter(|n| !n.is_empty()),
                action,
                to,
                protocols,
            })
            .collect();
        (ClusterNetworkPolicySpec { tier, priority, subject: self.subject, ingress, egress }, problems)
    }
}

/// One `ports[]` entry as a v1alpha2 `protocols[]` entry. An entry that sets none (or more than
/// one) of the three fields is rejected by the API server; it converts to one that matches no
/// port, so a broken Allow opens nothing.
fn convert_port(port: AdminPort, at: &str, problems: &mut Vec<(String, String)>) -> ProtocolMatch {
    let set = [port.port_number.is_some(), port.named_port.is_some(), port.port_range.is_some()];
    if set.iter().filter(|s| **s).count() != 1 {
        problems.push((at.to_owned(), "a port must set exactly one of portNumber, namedPort or portRange".to_owned()));
        return ProtocolMatch::default();
    }
    let (protocol, port) = if let Some(n) = port.port_number {
        (n.protocol, Port { number: Some(n.port), range: None })
    } else if let Some(r) = port.port_range {
        (r.protocol, Port { number: None, range: Some(PortRange { start: r.start, end: r.end }) })
    } else {
        return ProtocolMatch { destination_named_port: port.named_port, ..ProtocolMatch::default() };
    };
    let destination = Some(ProtocolPort { destination_port: Some(port) });
    match protocol.as_str() {
        "TCP" => ProtocolMatch { tcp: destination, ..ProtocolMatch::default() },
        "UDP" => ProtocolMatch { udp: destination, ..ProtocolMatch::default() },
        "SCTP" => ProtocolMatch { sctp: destination, ..ProtocolMatch::default() },
        other => {
            problems.push((at.to_owned(), format!("protocol {other:?}: expected TCP, UDP or SCTP")));
            ProtocolMatch::default()
        }
    }
}

/// Keys of a `namespaces` peer written in the v0.1.0–v0.1.4 form (`namespaceSelector`,
/// `sameLabels`, `notSameLabels` under `namespaces`). Today's CRD reads `namespaces` as a label
/// selector and prunes those keys, which leaves an empty selector: every namespace.
pub const OLD_NAMESPACES_KEYS: [&str; 3] = ["namespaceSelector", "sameLabels", "notSameLabels"];
