use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;
use crate::model::cluster_policy::{Action, Tier};

declare_rule! {
    /// ## What it does
    /// Finds `domainNames` egress peers of a ClusterNetworkPolicy (or a v1alpha1
    /// AdminNetworkPolicy) outside the one place the API supports them: an `Accept` (`Allow`)
    /// rule of the Admin tier.
    ///
    /// ## Why is this bad?
    /// The API documents `domainNames` for Accept rules only, and its proposal (NPEP-133) says
    /// why. A **Deny** or **Pass** by name is unsafe: no implementation is sure to know every
    /// address behind a name, and traffic to the addresses it does not know is not denied. A
    /// **Baseline** Accept by name cannot be carried over by the namespace's NetworkPolicy,
    /// which has no names: the day a team writes a NetworkPolicy for its pods, the baseline's
    /// allowance is gone. Implementations may reject or ignore such rules.
    ///
    /// ## Example
    /// ```yaml
    /// spec:
    ///   tier: Admin
    ///   priority: 10
    ///   subject: {namespaces: {}}
    ///   egress:
    ///   - action: Deny
    ///     to:
    ///     - domainNames: [pastebin.com]
    /// ```
    ///
    /// Use instead: allow the names that are needed, and deny the rest after them.
    /// ```yaml
    ///   egress:
    ///   - action: Accept
    ///     to:
    ///     - domainNames: [api.stripe.com]
    ///   - action: Deny
    ///     to:
    ///     - networks: [0.0.0.0/0, ::/0]
    /// ```
    ///
    /// ## Fix safety
    /// No automatic fix: turning a deny-list into an allow-list is the administrator's call.
    pub struct DomainNamesOutsideAdminAccept {
        code: "PC018",
        name: "domain-names-outside-admin-accept",
        severity: Warning,
        fix: None,
    }
}

impl Rule for DomainNamesOutsideAdminAccept {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        for policy in &cx.inventory.cluster_policies {
            for (i, rule) in policy.spec.egress.iter().enumerate() {
                let action = match policy.kind.action_name(rule.action) {
                    "Deny" => "denies",
                    "Pass" => "passes",
                    "Allow" => "allows",
                    _ => "accepts",
                };
                let why = match (policy.spec.tier, rule.action) {
                    (_, Action::Deny | Action::Pass) => format!(
                        "{action} by domain name, which the API supports only in Accept rules: an implementation may not know every address behind a name, and traffic to the others is not matched (NPEP-133); match addresses with networks, or accept only the names needed and deny the rest after them"
                    ),
                    (Tier::Baseline, Action::Accept) => format!(
                        "{action} by domain name in the Baseline tier, which the API does not support: NetworkPolicy has no names, so the allowance is lost once a NetworkPolicy selects the pods (NPEP-133); accept the names in the Admin tier"
                    ),
                    (Tier::Admin, Action::Accept) => continue,
                };
                for (j, peer) in rule.to.iter().enumerate() {
                    if peer.domain_names.is_some() {
                        let at = format!("/spec/egress/{i}/to/{j}");
                        out.push(cx.finding(
                            &Self::META,
                            policy.object,
                            &at,
                            format!("egress rule {i} of the {} {why}", policy.describe()),
                        ));
                    }
                }
            }
        }
    }
}
