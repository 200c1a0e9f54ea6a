use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;
use crate::model::cluster_policy::{Action, Tier};
use crate::semantics::Direction;
use crate::semantics::cluster::subject_covers_namespace;

/// At most this many namespaces are named in a message; the rest are counted.
const NAMED: usize = 3;

declare_rule! {
    /// ## What it does
    /// Finds Admin-tier `Accept` (`Allow`) rules of ClusterNetworkPolicies and v1alpha1
    /// AdminNetworkPolicies that apply to namespaces whose own NetworkPolicies are a default-deny
    /// in the same direction, and names those namespaces.
    ///
    /// ## Why is this bad?
    /// An Admin Accept is final: the traffic it matches is allowed before any NetworkPolicy is
    /// consulted. A team that wrote a default-deny believes nothing reaches its pods that its
    /// policies do not allow, and for the Accept's peers that is no longer true. Often that is
    /// the administrators' intent (monitoring, a platform service); a reviewer should still see
    /// which teams' lockdowns it opens. When the intent is only a safety net, `Pass` hands the
    /// traffic to the namespace's policies instead.
    ///
    /// ## Example
    /// ```yaml
    /// spec:
    ///   tier: Admin
    ///   priority: 10
    ///   subject: {namespaces: {}}
    ///   ingress:
    ///   - action: Accept
    ///     from:
    ///     - namespaces: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
    /// ```
    ///
    /// Use instead, when the teams should decide: `action: Pass`.
    ///
    /// ## Fix safety
    /// No automatic fix: whether the override is intended is the administrators' call.
    pub struct AdminAcceptOverridesDefaultDeny {
        code: "PC022",
        name: "admin-accept-overrides-default-deny",
        severity: Info,
        fix: None,
    }
}

impl Rule for AdminAcceptOverridesDefaultDeny {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        let inv = cx.inventory;
        for policy in inv.cluster_policies.iter().filter(|p| p.spec.tier == Tier::Admin) {
            let spec = &policy.spec;
            if !spec.ingress.iter().any(|r| r.action == Action::Accept)
                && !spec.egress.iter().any(|r| r.action == Action::Accept)
            {
                continue;
            }
            let subject = &policy.spec.subject;
            // The namespaces whose pods the subject can select.
            let namespaces: Vec<&str> = inv
                .namespaces
                .values()
                .filter(|ns| subject_covers_namespace(subject, &ns.labels))
                .filter(|ns| !ns.workloads.is_empty())
                .map(|ns| ns.name.as_str())
                .collect();
            let accepts = policy
                .spec
                .ingress
                .iter()
                .map(|r| (Direction::Ingress, r.action))
                .chain(policy.spec.egress.iter().map(|r| (Direction::Egress, r.action)));
            let mut index = [0usize; 2];
            for (direction, action) in accepts {
                let slot = usize::from(direction == Direction::Egress);
                let rule = index[slot];
                index[slot] += 1;
                if action != Action::Accept {
                    continue;
                }
                let locked: Vec<&str> = namespaces
                    .iter()
                    .copied()
                    .filter(|ns| cx.eval.default_deny_policy(ns, direction).is_some())
                    .collect();
                if locked.is_empty() {
                    continue;
                }
                let mut names: Vec<String> = locked.iter().take(NAMED).map(|n| (*n).to_owned()).collect();
                if locked.len() > NAMED {
                    names.push(format!("{} more", locked.len() - NAMED));
                }
                out.push(cx.finding(
                    &Self::META,
                    policy.object,
                    &format!("/spec/{}/{rule}", direction.key()),
                    format!(
                        "{} rule {rule} of the {} is final for the traffic it matches, so it overrides the {} default-deny of namespace{} {} (use Pass to let their NetworkPolicies decide)",
                        direction.key(),
                        policy.describe(),
                        direction.key(),
                        if locked.len() == 1 { "" } else { "s" },
                        names.join(", "),
                    ),
                ));
            }
        }
    }
}
