use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;
use crate::semantics::evaluator::policy_selects;
use crate::semantics::selector::{describe_selector, selector_is_empty, selector_problem};

declare_rule! {
    /// ## What it does
    /// Finds policies whose `podSelector` matches no workload of their namespace. Only fires when
    /// the namespace's workloads are in the input (pass them with `--context` otherwise), and
    /// not in namespaces holding custom resources, whose operators create pods the input does
    /// not show (a `Prometheus` resource becomes a StatefulSet).
    ///
    /// ## Why is this bad?
    /// The policy protects nothing. Usually a label was renamed in the Deployment (`app: web` →
    /// `app.kubernetes.io/name: web`) and the policy was not updated, so the pods it was written
    /// for are unprotected, or left open by a default-deny.
    ///
    /// ## Example
    /// ```yaml
    /// spec:
    ///   podSelector: {matchLabels: {app: paymnets}}
    /// ```
    ///
    /// Use instead:
    /// ```yaml
    ///   podSelector: {matchLabels: {app: payments}}
    /// ```
    ///
    /// ## Fix safety
    /// No automatic fix.
    pub struct SelectorMatchesNothing {
        code: "PC010",
        name: "selector-matches-nothing",
        severity: Warning,
        fix: None,
    }
}

impl Rule for SelectorMatchesNothing {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        for policy in cx.written_policies() {
            let Some(selector) = &policy.spec.pod_selector else { continue };
            if selector_is_empty(Some(selector)) || selector_problem(selector).is_some() {
                continue;
            }
            let mut workloads = cx.inventory.workloads_in(&policy.namespace).peekable();
            if workloads.peek().is_none() {
                continue;
            }
            if workloads.any(|(_, w)| policy_selects(policy, &w.labels)) {
                continue;
            }
            if cx.inventory.namespace(&policy.namespace).is_some_and(|ns| ns.custom_resources > 0) {
                continue;
            }
            out.push(cx.finding(
                &Self::META,
                policy.object,
                "/spec/podSelector",
                format!(
                    "policy {} selects pods {} but no workload in namespace {} has those labels; the policy protects nothing",
                    policy.name,
                    describe_selector(selector),
                    policy.namespace
                ),
            ));
        }
    }
}
