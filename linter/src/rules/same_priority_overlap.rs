use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;
use crate::model::cluster_policy::{Action, ClusterPolicy};
use crate::model::{ClusterPolicyId, Labels};
use crate::semantics::cluster::subject_covers_namespace;

/// Pairs of one priority compared at most; a larger group is judged on its first pairs only.
const MAX_PAIRS: usize = 1000;

declare_rule! {
    /// ## What it does
    /// Finds two ClusterNetworkPolicies (or v1alpha1 AdminNetworkPolicies) of the same tier and
    /// priority that apply to pods of a common namespace and have rules of different actions in
    /// the same direction.
    ///
    /// ## Why is this bad?
    /// The API leaves their order to the implementation: "If two (or more) policies with the same
    /// priority could both match a connection, then the implementation can apply any of the
    /// matching policies to the connection, and there is no way for the user to reliably determine
    /// which one it will choose." One cluster may accept what another denies, or the same cluster
    /// after an upgrade. (portcullis evaluates them by name, so its own answers stay stable.)
    ///
    /// ## Example
    /// Two Admin policies at priority 10 over all namespaces: one Denies egress to
    /// `10.0.0.0/8`, the other Accepts egress to the database's pods.
    ///
    /// Use instead: distinct priorities, the one that must win lower.
    ///
    /// ## Fix safety
    /// No automatic fix: which policy should win is the administrators' call.
    pub struct SamePriorityOverlap {
        code: "PC023",
        name: "same-priority-overlap",
        severity: Warning,
        fix: None,
    }
}

impl Rule for SamePriorityOverlap {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        let inv = cx.inventory;
        let mut groups: std::collections::BTreeMap<_, Vec<ClusterPolicyId>> = std::collections::BTreeMap::new();
        for (i, p) in inv.cluster_policies.iter().enumerate() {
            groups.entry((p.spec.tier, p.spec.priority)).or_default().push(ClusterPolicyId(i));
        }
        let namespaces: Vec<(&str, &Labels)> = inv
            .namespaces
            .values()
            .filter(|ns| !ns.workloads.is_empty())
            .map(|ns| (ns.name.as_str(), &ns.labels))
            .collect();
        let mut pairs = 0;
        for ids in groups.values().filter(|ids| ids.len() > 1) {
            let mut ids = ids.clone();
            ids.sort_by(|a, b| inv.cluster_policy(*a).name.cmp(&inv.cluster_policy(*b).name));
            for (n, &a) in ids.iter().enumerate() {
                for &b in &ids[n + 1..] {
                    pairs += 1;
                    if pairs > MAX_PAIRS {
                        return;
                    }
                    let (pa, pb) = (inv.cluster_policy(a), inv.cluster_policy(b));
                    let Some(direction) = conflicting_direction(pa, pb) else { continue };
                    let Some((namespace, _)) = namespaces.iter().find(|(_, labels)| {
                        subject_covers_namespace(&pa.spec.subject, labels)
                            && subject_covers_namespace(&pb.spec.subject, labels)
                    }) else {
                        continue;
                    };
                    out.push(cx.finding(
                        &Self::META,
                        pb.object,
                        "/spec/priority",
                        format!(
                            "priority {} is also that of {} {}, and both apply to pods of namespace {namespace} with {direction} rules of different actions: which one applies first is up to the implementation",
                            pb.spec.priority,
                            pa.kind.as_str(),
                            pa.name
                        ),
                    ));
                }
            }
        }
    }
}

/// A direction in which the two policies have rules of different actions.
fn conflicting_direction(a: &ClusterPolicy, b: &ClusterPolicy) -> Option<&'static str> {
    let differ = |x: &[Action], y: &[Action]| x.iter().any(|p| y.iter().any(|q| p != q));
    let actions = |p: &ClusterPolicy| {
        (
            p.spec.ingress.iter().map(|r| r.action).collect::<Vec<_>>(),
            p.spec.egress.iter().map(|r| r.action).collect::<Vec<_>>(),
        )
    };
    let ((ai, ae), (bi, be)) = (actions(a), actions(b));
    if differ(&ai, &bi) {
        Some("ingress")
    } else if differ(&ae, &be) {
        Some("egress")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::project::Project;

    /// `n` Admin-tier policies at one priority over every namespace, alternately Deny and
    /// Accept in egress: every pair of different actions conflicts.
    fn findings(n: usize) -> usize {
        let mut text = String::from(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: api, namespace: shop}\nspec: {containers: [{name: c, image: x}]}\n",
        );
        for i in 0..n {
            let action = if i % 2 == 0 { "Deny" } else { "Accept" };
            text.push_str(&format!(
                "---\napiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: p-{i:04}}}\nspec:\n  tier: Admin\n  priority: 7\n  subject: {{namespaces: {{}}}}\n  egress:\n  - action: {action}\n    to: [{{networks: [192.0.2.0/24]}}]\n"
            ));
        }
        let mut project = Project::new("default");
        project.add_text("input.yaml", text, true);
        project.lint(&Config::default()).iter().filter(|f| f.code == "PC023").count()
    }

    #[test]
    fn pairs_are_judged_up_to_the_bound() {
        // 4 policies: 6 pairs, 4 of them Deny/Accept.
        assert_eq!(findings(4), 4);
        // 46 policies: 1,035 pairs, of which the first 1,000 (by name) are judged. The pairs of
        // different actions among them: each policy p-i pairs with the later ones of the other
        // action, counted here in the order the rule walks them.
        let n = 46;
        let mut judged = 0;
        let mut conflicting = 0;
        'walk: for a in 0..n {
            for b in a + 1..n {
                judged += 1;
                if judged > super::MAX_PAIRS {
                    break 'walk;
                }
                conflicting += usize::from(a % 2 != b % 2);
            }
        }
        assert!(n * (n - 1) / 2 > super::MAX_PAIRS);
        assert_eq!(findings(n), conflicting);
        assert!(conflicting < n * n / 4, "fewer than every conflicting pair: the walk stopped");
    }
}
