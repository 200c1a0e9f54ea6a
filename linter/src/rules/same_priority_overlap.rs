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
