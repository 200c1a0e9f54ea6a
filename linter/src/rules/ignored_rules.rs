use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;

declare_rule! {
    /// ## What it does
    /// Finds `ingress` or `egress` rules in a policy whose explicit `policyTypes` leaves that
    /// direction out.
    ///
    /// ## Why is this bad?
    /// Kubernetes silently ignores rules for a direction that `policyTypes` does not list. The
    /// author believes traffic is restricted (or allowed) and it is not.
    ///
    /// ## Example
    /// ```yaml
    /// spec:
    ///   podSelector: {matchLabels: {app: api}}
    ///   policyTypes: [Ingress]
    ///   egress:                 # ignored
    ///   - to:
    ///     - podSelector: {matchLabels: {app: db}}
    /// ```
    ///
    /// Use instead:
    /// ```yaml
    ///   policyTypes: [Ingress, Egress]
    /// ```
    ///
    /// ## Fix safety
    /// No automatic fix: adding the direction isolates the pods for it, which may block traffic
    /// the ignored rules do not list.
    pub struct IgnoredRules {
        code: "PC008",
        name: "ignored-rules",
        severity: Error,
        fix: None,
    }
}

impl Rule for IgnoredRules {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        for policy in cx.written_policies() {
            if !policy.types_explicit {
                continue;
            }
            let listed = policy.spec.policy_types.as_deref().unwrap_or_default().join(", ");
            let cases = [
                ("egress", "Egress", policy.types.egress, policy.spec.egress.as_ref().map_or(0, Vec::len)),
                ("ingress", "Ingress", policy.types.ingress, policy.spec.ingress.as_ref().map_or(0, Vec::len)),
            ];
            for (key, ty, governed, count) in cases {
                if governed || count == 0 {
                    continue;
                }
                let rules = if count == 1 { "rule" } else { "rules" };
                out.push(cx.finding(
                    &Self::META,
                    policy.object,
                    &format!("/spec/{key}"),
                    format!(
                        "policy {} lists policyTypes [{listed}] without {ty}, so Kubernetes ignores its {count} {key} {rules}; add {ty} to policyTypes or remove the rules",
                        policy.name
                    ),
                ));
            }
        }
    }
}
