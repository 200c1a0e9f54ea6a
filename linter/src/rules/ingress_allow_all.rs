use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;
use crate::semantics::Direction;

declare_rule! {
    /// ## What it does
    /// Finds ingress rules that allow every source on every port: `- {}`, a rule with no `from`
    /// and no `ports`, or one whose only limits are `0.0.0.0/0` and/or `::/0` without `ports`.
    ///
    /// ## Why is this bad?
    /// The selected pods accept connections from anywhere, as if no policy selected them; an
    /// attacker who gets into any pod can reach them.
    ///
    /// ## Example
    /// ```yaml
    ///   policyTypes: [Ingress]
    ///   ingress:
    ///   - {}
    /// ```
    ///
    /// Use instead: allow the clients that need the pods, on the ports they serve.
    /// ```yaml
    ///   ingress:
    ///   - from:
    ///     - podSelector: {matchLabels: {app: frontend}}
    ///     ports:
    ///     - port: 8080
    /// ```
    ///
    /// ## Fix safety
    /// No automatic fix: only the owner knows who the clients are.
    pub struct IngressAllowAll {
        code: "PC007",
        name: "ingress-allow-all",
        severity: Warning,
        fix: None,
    }
}

impl Rule for IngressAllowAll {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        super::egress_allow_all::check_allow_all(cx, &Self::META, Direction::Ingress, out);
    }
}
