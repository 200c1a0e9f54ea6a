use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;
use crate::semantics::Direction;

declare_rule! {
    /// ## What it does
    /// Finds egress rules that allow every destination on every port: `- {}`, a rule with no
    /// `to` and no `ports`, or one whose only limits are `0.0.0.0/0` and/or `::/0` without
    /// `ports`.
    ///
    /// ## Why is this bad?
    /// The pods the policy selects are egress-isolated on paper only: the rule undoes the
    /// isolation. Often it is left over from debugging, or copied from a chart.
    ///
    /// ## Example
    /// ```yaml
    ///   policyTypes: [Egress]
    ///   egress:
    ///   - {}
    /// ```
    ///
    /// Use instead: list the destinations the pods need, plus DNS.
    ///
    /// ## Fix safety
    /// No automatic fix: only the owner knows what the pods need to reach.
    pub struct EgressAllowAll {
        code: "PC006",
        name: "egress-allow-all",
        severity: Warning,
        fix: None,
    }
}

impl Rule for EgressAllowAll {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        check_allow_all(cx, &Self::META, Direction::Egress, out);
    }
}

/// Shared by PC006 and PC007.
pub(super) fn check_allow_all(cx: &Context<'_>, meta: &'static RuleMeta, direction: Direction, out: &mut Vec<Finding>) {
    use crate::semantics::ParsedIpBlock;
    use crate::semantics::evaluator::{applies, rules};
    let (key, peers_key, noun) = match direction {
        Direction::Egress => ("egress", "to", "destination"),
        Direction::Ingress => ("ingress", "from", "source"),
    };
    for policy in cx.written_policies() {
        if !applies(policy, direction) {
            continue;
        }
        for (i, (peers, ports)) in rules(policy, direction).enumerate() {
            if ports.is_some_and(|p| !p.is_empty()) {
                continue;
            }
            let peers = peers.unwrap_or_default();
            let everything = peers.is_empty()
                || peers.iter().all(|p| {
                    p.ip_block.as_ref().and_then(|b| ParsedIpBlock::parse(b).ok()).is_some_and(|b| b.is_whole_family())
                });
            if !everything {
                continue;
            }
            let scope = if peers.is_empty() {
                format!("every {noun}")
            } else {
                let cidrs: Vec<&str> =
                    peers.iter().filter_map(|p| p.ip_block.as_ref()).map(|b| b.cidr.as_str()).collect();
                format!("every {noun} in {}", cidrs.join(" and "))
            };
            out.push(cx.finding(
                meta,
                policy.object,
                &format!("/spec/{key}/{i}"),
                format!(
                    "{key} rule {i} of policy {} allows {scope} on every port, which undoes the isolation of the pods it selects; list the {peers_key} peers and ports the pods need",
                    policy.name
                ),
            ));
        }
    }
}
