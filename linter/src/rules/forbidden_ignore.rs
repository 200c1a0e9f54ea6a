use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;
use crate::model::ObjectId;
use crate::model::inventory::IGNORE_ANNOTATION;

declare_rule! {
    /// ## What it does
    /// Finds `portcullis.dev/ignore` annotations that name a rule `portcullis.yaml` does not allow
    /// to be ignored (`ignoreAnnotations.forbiddenRules`). The ignored rule's findings are
    /// reported anyway; this finding says why the annotation had no effect.
    ///
    /// ## Why is this bad?
    /// A platform team that requires default-deny in every namespace cannot have any application
    /// team opt out with an annotation: that would turn every enforced denial into a choice. The
    /// same configuration file governs `portcullis lint` in CI and the admission webhook, so the
    /// refusal is the same in both.
    ///
    /// ## Example
    /// With `ignoreAnnotations: {forbiddenRules: [PC001, PC002]}` in `portcullis.yaml`:
    /// ```yaml
    /// apiVersion: apps/v1
    /// kind: Deployment
    /// metadata:
    ///   name: api
    ///   namespace: shop
    ///   annotations: {portcullis.dev/ignore: "PC001,PC002"}
    /// ```
    ///
    /// Use instead: add the namespace's default-deny policies (`portcullis fix` writes them), or
    /// ask the platform team to change `portcullis.yaml`.
    ///
    /// ## Fix safety
    /// No fix: whether to remove the annotation or change the configuration is a decision.
    pub struct ForbiddenIgnore {
        code: "PC016",
        name: "forbidden-ignore",
        severity: Warning,
        fix: None,
    }
}

impl Rule for ForbiddenIgnore {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        if cx.config.forbidden_ignores.is_empty() {
            return;
        }
        for (i, object) in cx.inventory.objects.iter().enumerate() {
            let refused: Vec<&str> = object
                .ignore
                .iter()
                .filter_map(|name| super::registry::find(name))
                .filter(|meta| !cx.config.may_ignore(meta.code))
                .map(|meta| meta.code)
                .collect();
            if refused.is_empty() {
                continue;
            }
            let id = &object.id;
            let what = match &id.namespace {
                Some(ns) => format!("{} {ns}/{}", id.kind, id.name),
                None => format!("{} {}", id.kind, id.name),
            };
            out.push(cx.finding(
                &Self::META,
                ObjectId(i),
                "/metadata/annotations/portcullis.dev~1ignore",
                format!(
                    "{IGNORE_ANNOTATION} on {what} names {}, which portcullis.yaml does not allow to be ignored (ignoreAnnotations.forbiddenRules); the findings are reported anyway",
                    refused.join(", ")
                ),
            ));
        }
    }
}
