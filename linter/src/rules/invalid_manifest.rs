use k8s_openapi::api::networking::v1::NetworkPolicyPeer;

use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::{Anchor, Finding};
use crate::model::inventory::IGNORE_ANNOTATION;
use crate::semantics::evaluator::peer_lists;
use crate::semantics::selector::selector_problem;

declare_rule! {
    /// ## What it does
    /// Reports input that is not a valid Kubernetes object: YAML or JSON that does not parse,
    /// binary or oversized files, objects missing `apiVersion` or `kind` (a document with `kind`,
    /// or with `metadata` beside `apiVersion` or `spec`; other YAML and JSON, such as
    /// `package.json` or a CI workflow, is skipped and counted), fields of the wrong type in a
    /// kind portcullis knows, removed API versions, and NetworkPolicy values the API server
    /// rejects that no other rule covers (selector operators, empty peers, unknown `policyTypes`),
    /// and unknown rule names in a `portcullis.dev/ignore` annotation.
    ///
    /// ## Why is this bad?
    /// `kubectl apply` refuses the object, so the policy you think protects a namespace does not
    /// exist. The rest of the input is still linted.
    ///
    /// ## Example
    /// ```yaml
    /// apiVersion: networking.k8s.io/v1
    /// kind: NetworkPolicy
    /// metadata: {name: web}
    /// spec:
    ///   podSelector: {matchLabels: {app: web}}
    ///   ingress:
    ///   - from:
    ///     - {}          # a peer must set podSelector, namespaceSelector or ipBlock
    /// ```
    ///
    /// Use instead:
    /// ```yaml
    ///   ingress:
    ///   - from:
    ///     - podSelector: {}
    /// ```
    ///
    /// ## Fix safety
    /// No automatic fix: only the author knows what was meant.
    pub struct InvalidManifest {
        code: "PC000",
        name: "invalid-manifest",
        severity: Error,
        fix: None,
    }
}

impl Rule for InvalidManifest {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        let meta = &Self::META;
        for p in cx.load_problems {
            out.push(Finding {
                code: meta.code,
                rule: meta.name,
                severity: meta.severity,
                message: p.message.clone(),
                anchor: Anchor::Position { source: p.source, position: p.position },
                object: None,
                object_id: None,
                related: Vec::new(),
                fix: None,
            });
        }
        for p in &cx.inventory.problems {
            out.push(Finding {
                code: meta.code,
                rule: meta.name,
                severity: meta.severity,
                message: p.message.clone(),
                anchor: Anchor::Node { doc: p.doc, pointer: p.pointer.clone() },
                object: p.object.clone(),
                object_id: None,
                related: Vec::new(),
                fix: None,
            });
        }
        for (i, object) in cx.inventory.objects.iter().enumerate() {
            for name in &object.ignore {
                if super::registry::find(name).is_none() {
                    out.push(cx.finding(
                        meta,
                        crate::model::ObjectId(i),
                        "/metadata/annotations/portcullis.dev~1ignore",
                        format!("{IGNORE_ANNOTATION} names unknown rule {name:?}; run `portcullis rules` for the list"),
                    ));
                }
            }
        }
        for policy in cx.inventory.written_policies() {
            let obj = policy.object;
            for (i, t) in policy.spec.policy_types.iter().flatten().enumerate() {
                if t != "Ingress" && t != "Egress" {
                    out.push(cx.finding(
                        meta,
                        obj,
                        &format!("/spec/policyTypes/{i}"),
                        format!("unknown policy type {t:?}; expected Ingress or Egress"),
                    ));
                }
            }
            if let Some(problem) = policy.spec.pod_selector.as_ref().and_then(selector_problem) {
                out.push(cx.finding(meta, obj, "/spec/podSelector", format!("invalid podSelector: {problem}")));
            }
            for list in peer_lists(policy) {
                for (pi, peer) in list.items.iter().enumerate() {
                    if let Some(msg) = peer_problem(peer) {
                        out.push(cx.finding(meta, obj, &list.peer_pointer(pi), msg));
                    }
                }
            }
        }
    }
}

fn peer_problem(peer: &NetworkPolicyPeer) -> Option<String> {
    if peer.ip_block.is_none() && peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
        return Some(
            "peer sets none of podSelector, namespaceSelector or ipBlock; the API server rejects it".to_owned(),
        );
    }
    for (what, sel) in [("podSelector", &peer.pod_selector), ("namespaceSelector", &peer.namespace_selector)] {
        if let Some(problem) = sel.as_ref().and_then(selector_problem) {
            return Some(format!("invalid {what}: {problem}"));
        }
    }
    None
}
