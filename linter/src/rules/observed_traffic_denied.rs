use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;
use crate::replay::Fix;

/// Edges named in one finding's message; the rest are counted.
const EDGES_NAMED: usize = 3;

declare_rule! {
    /// ## What it does
    /// With `portcullis lint --traffic FILE`: finds policies that would deny connections the
    /// sensor observed (the traffic file, `docs/traffic.md`), as `portcullis replay` reports
    /// them: "this policy would block traffic seen N times, last at T".
    ///
    /// ## Why is this bad?
    /// A policy that blocks traffic the workloads really send breaks them the moment it is
    /// applied, and what runs once a night or once a week breaks last, long after the rollout
    /// looked fine. Recorded traffic is the evidence a review of a default-deny lacks.
    ///
    /// ## Example
    /// A lockdown for `shop` whose `payments-egress` allows the database, while the traffic
    /// file shows `payments` calling `api.stripe.com` on 443 5,120 times in two weeks.
    ///
    /// Use instead: the rule `portcullis replay` proposes (an EgressIntent for the name, a rule in
    /// the policy written for the pods), or remove the edge from the workload if it is not
    /// wanted.
    ///
    /// ## Fix safety
    /// No automatic fix in `lint`: `portcullis replay` prints the patches and objects; allowing
    /// observed traffic is the owner's decision.
    pub struct ObservedTrafficDenied {
        code: "PC024",
        name: "observed-traffic-denied",
        severity: Error,
        fix: None,
    }
}

impl Rule for ObservedTrafficDenied {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        let Some(replay) = cx.traffic else { return };
        for g in &replay.groups {
            // At the policy the fix changes, else at what decides.
            let object = match &g.fix {
                Fix::Change { policy: Some(p), .. } => Some(cx.inventory.policy(p.id).object),
                _ => g.object,
            };
            let Some(object) = object else { continue };
            let named: Vec<String> = g
                .edges
                .iter()
                .take(EDGES_NAMED)
                .map(|e| format!("{} -> {} on {}", e.source, e.destination, e.port))
                .collect();
            let more = g.edges.len().saturating_sub(EDGES_NAMED);
            let more = if more > 0 { format!(" and {more} more") } else { String::new() };
            out.push(cx.finding(
                &Self::META,
                object,
                "/metadata/name",
                format!(
                    "would block traffic seen {} time(s), last at {}: {}{more} ({}; `portcullis replay` shows the fix)",
                    g.connections,
                    g.last_seen,
                    named.join(", "),
                    g.why
                ),
            ));
        }
    }
}
