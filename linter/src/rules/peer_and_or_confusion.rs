use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;
use crate::semantics::evaluator::peer_lists;
use crate::semantics::selector::describe_selector;

declare_rule! {
    /// ## What it does
    /// Finds a `from`/`to` list holding a peer with only a `namespaceSelector` and another peer
    /// with only a `podSelector`, as two list items.
    ///
    /// ## Why is this bad?
    /// Two items are alternatives (OR): the rule allows every pod of the selected namespaces,
    /// and also the selected pods of the policy's own namespace. Most authors meant the AND
    /// ("pods labelled X in namespaces labelled Y"), which is ONE item with both selectors. The
    /// difference is a single `-`, and it silently opens whole namespaces.
    ///
    /// ## Example
    /// ```yaml
    ///   ingress:
    ///   - from:
    ///     - namespaceSelector: {matchLabels: {team: web}}
    ///     - podSelector: {matchLabels: {app: frontend}}
    /// ```
    ///
    /// Use instead:
    /// ```yaml
    ///   ingress:
    ///   - from:
    ///     - namespaceSelector: {matchLabels: {team: web}}
    ///       podSelector: {matchLabels: {app: frontend}}
    /// ```
    ///
    /// ## Fix safety
    /// No automatic fix: both readings are legal and only the author knows which was meant.
    /// Suppress with `portcullis.dev/ignore: PC011` when the OR is intended.
    pub struct PeerAndOrConfusion {
        code: "PC011",
        name: "peer-and-or-confusion",
        severity: Warning,
        fix: None,
    }
}

impl Rule for PeerAndOrConfusion {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        for policy in cx.written_policies() {
            for list in peer_lists(policy) {
                let peers = list.items;
                let ns_only = peers
                    .iter()
                    .position(|p| p.namespace_selector.is_some() && p.pod_selector.is_none() && p.ip_block.is_none());
                let pod_only = peers
                    .iter()
                    .position(|p| p.pod_selector.is_some() && p.namespace_selector.is_none() && p.ip_block.is_none());
                let (Some(n), Some(p)) = (ns_only, pod_only) else { continue };
                let ns_sel = describe_selector(peers[n].namespace_selector.as_ref().unwrap_or(&Default::default()));
                let pod_sel = describe_selector(peers[p].pod_selector.as_ref().unwrap_or(&Default::default()));
                let mut f = cx.finding(
                    &Self::META,
                    policy.object,
                    &list.peer_pointer(p),
                    format!(
                        "{} rule {} of policy {} lists namespaceSelector {{{ns_sel}}} and podSelector {{{pod_sel}}} as separate peers, which means OR: every pod in those namespaces, or those pods in namespace {}; for pods {{{pod_sel}}} in namespaces {{{ns_sel}}}, put both selectors in one peer",
                        list.key(),
                        list.rule,
                        policy.name,
                        policy.namespace
                    ),
                );
                f.related.push(cx.related(policy.object, &list.peer_pointer(n), "the namespace-only peer".to_owned()));
                out.push(f);
            }
        }
    }
}
