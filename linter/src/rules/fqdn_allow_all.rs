use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;

declare_rule! {
    /// ## What it does
    /// Finds Cilium `toFQDNs` selectors with `matchPattern: "*"` in egress allow rules.
    ///
    /// ## Why is this bad?
    /// `*` alone matches every name, so the rule allows every address any pod of the node
    /// looked up: the egress allowlist allows the internet to anyone who can resolve a name. It
    /// belongs in `rules.dns` (to let the proxy see every lookup), not in `toFQDNs`.
    ///
    /// ## Example
    /// ```yaml
    ///   egress:
    ///   - toFQDNs: [{matchPattern: "*"}]
    /// ```
    ///
    /// Use instead: the names the workload needs, with `*` only inside a label or as `**.`.
    /// ```yaml
    ///   - toFQDNs:
    ///     - matchName: api.stripe.com
    ///     - matchPattern: "*.s3.amazonaws.com"
    /// ```
    ///
    /// ## Fix safety
    /// No automatic fix: only the owner knows which names are needed.
    pub struct FqdnAllowAll {
        code: "PC020",
        name: "fqdn-allow-all",
        severity: Warning,
        fix: None,
    }
}

impl Rule for FqdnAllowAll {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        for rule in &cx.inventory.cilium_rules {
            for (e, egress) in rule.spec.egress.iter().enumerate() {
                for (f, fqdn) in egress.to_fqdns.iter().flatten().enumerate() {
                    if fqdn.match_pattern.as_deref().map(str::trim) == Some("*") {
                        out.push(cx.finding(
                            &Self::META,
                            rule.object,
                            &format!("{}/egress/{e}/toFQDNs/{f}", rule.pointer),
                            format!(
                                "toFQDNs matchPattern \"*\" in {} allows every name any pod looked up: the whole internet on these ports",
                                rule.describe()
                            ),
                        ));
                    }
                }
            }
        }
    }
}
