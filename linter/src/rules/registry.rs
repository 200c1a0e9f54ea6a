//! The code table: every rule, in code order. Codes are stable forever.

use super::{FixAvailability, Rule, RuleMeta};
use super::{
    admin_accept_overrides_default_deny::AdminAcceptOverridesDefaultDeny, allow_shadowed_by_deny::AllowShadowedByDeny,
    dns_open_to_any::DnsOpenToAny, dns_tcp_missing::DnsTcpMissing,
    domain_names_outside_admin_accept::DomainNamesOutsideAdminAccept, egress_allow_all::EgressAllowAll,
    egress_blocks_dns::EgressBlocksDns, egress_gateway_blocked::EgressGatewayBlocked,
    forbidden_ignore::ForbiddenIgnore, fqdn_allow_all::FqdnAllowAll, fqdn_without_dns_proxy::FqdnWithoutDnsProxy,
    gateway_bypass::GatewayBypass, guarded_address_allowed::GuardedAddressAllowed,
    host_network_bypass::HostNetworkBypass, ignored_rules::IgnoredRules, ingress_allow_all::IngressAllowAll,
    invalid_egress_intent::InvalidEgressIntent, invalid_ip_block::InvalidIpBlock, invalid_manifest::InvalidManifest,
    invalid_port::InvalidPort, mesh_registry_allow_all::MeshRegistryAllowAll,
    mesh_registry_mismatch::MeshRegistryMismatch, missing_default_deny_egress::MissingDefaultDenyEgress,
    missing_default_deny_ingress::MissingDefaultDenyIngress, observed_traffic_denied::ObservedTrafficDenied,
    outside_mesh::OutsideMesh, peer_and_or_confusion::PeerAndOrConfusion, same_priority_overlap::SamePriorityOverlap,
    selector_matches_nothing::SelectorMatchesNothing, unknown_named_port::UnknownNamedPort,
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
    &ForbiddenIgnore,
    &GuardedAddressAllowed,
    &DomainNamesOutsideAdminAccept,
    &FqdnWithoutDnsProxy,
    &FqdnAllowAll,
    &AllowShadowedByDeny,
    &AdminAcceptOverridesDefaultDeny,
    &SamePriorityOverlap,
    &ObservedTrafficDenied,
    &GatewayBypass,
    &EgressGatewayBlocked,
    &MeshRegistryMismatch,
    &OutsideMesh,
    &MeshRegistryAllowAll,
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

/// `docs/rules.md`: the table and every rule's docs (a test keeps the file equal to this).
pub fn rules_document() -> String {
    let mut out = String::from(
        "# Rules\n\n<!-- Generated from the rule registry: `cargo run -p portcullis-linter --example rules-doc > docs/rules.md`. -->\n\n",
    );
    out.push_str("Levels can be changed per rule in `portcullis.yaml`; findings on one object are suppressed with the\nannotation `portcullis.dev/ignore: \"PC010,host-network-bypass\"`.\n\n");
    out.push_str(&markdown_table());
    for m in all() {
        out.push_str(&format!("\n## {} {}\n\nDefault severity: **{}**.\n\n", m.code, m.name, m.severity));
        for line in m.docs_markdown().lines() {
            if let Some(rest) = line.strip_prefix("## ") {
                out.push_str("### ");
                out.push_str(rest);
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
    }
    out
}
