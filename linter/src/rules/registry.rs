//! The code table: every rule, in code order. Codes are stable forever.

use super::{FixAvailability, Rule, RuleMeta};
use super::{
    dns_open_to_any::DnsOpenToAny, dns_tcp_missing::DnsTcpMissing, egress_allow_all::EgressAllowAll,
    egress_blocks_dns::EgressBlocksDns, host_network_bypass::HostNetworkBypass, ignored_rules::IgnoredRules,
    ingress_allow_all::IngressAllowAll, invalid_egress_intent::InvalidEgressIntent, invalid_ip_block::InvalidIpBlock,
    invalid_manifest::InvalidManifest, invalid_port::InvalidPort,
    missing_default_deny_egress::MissingDefaultDenyEgress, missing_default_deny_ingress::MissingDefaultDenyIngress,
    peer_and_or_confusion::PeerAndOrConfusion, selector_matches_nothing::SelectorMatchesNothing,
    unknown_named_port::UnknownNamedPort,
};

/// Every rule, in code order.
pub static RULES: &[&dyn Rule] = &[
    &InvalidManifest,
    &MissingDefaultDenyIngress,
    &MissingDefaultDenyEgress,
    &EgressBlocksDns,
    &DnsTcpMissing,
    &DnsOpenToAny,
    &EgressAllowAll,
    &IngressAllowAll,
    &IgnoredRules,
    &InvalidIpBlock,
    &SelectorMatchesNothing,
    &PeerAndOrConfusion,
    &UnknownNamedPort,
    &InvalidPort,
    &HostNetworkBypass,
    &InvalidEgressIntent,
];

/// Metadata of every rule, in code order.
pub fn all() -> impl Iterator<Item = &'static RuleMeta> {
    RULES.iter().map(|r| r.meta())
}

/// Finds a rule by code (`PC003`, case-insensitive) or name (`egress-blocks-dns`).
pub fn find(code_or_name: &str) -> Option<&'static RuleMeta> {
    all().find(|m| m.code.eq_ignore_ascii_case(code_or_name) || m.name == code_or_name)
}

/// The rule table as Markdown; also embedded in README.md (a test keeps them equal).
pub fn markdown_table() -> String {
    let mut out = String::from("| code | name | severity | fix | what it finds |\n|---|---|---|---|---|\n");
    for m in all() {
        let fix = match m.fix {
            FixAvailability::None => "",
            FixAvailability::Safe => "safe",
            FixAvailability::Unsafe => "unsafe",
        };
        out.push_str(&format!("| {} | {} | {} | {} | {} |\n", m.code, m.name, m.severity, fix, m.summary()));
    }
    out
}
