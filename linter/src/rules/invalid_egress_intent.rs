use super::{Context, Rule, RuleMeta, declare_rule};
use crate::egress::IntentMeta;
use crate::egress::intents::compile;
use crate::finding::Finding;

declare_rule! {
    /// ## What it does
    /// Validates EgressIntents (`portcullis.dev/v1alpha1`): a `podSelector` is required; each
    /// egress target has exactly one of `fqdn` (a fully qualified name such as `api.stripe.com`)
    /// or `fqdnPattern` (`*.example.com` for one label, `**.example.com` for one or more; no
    /// other wildcard form); ports are 1–65535 with protocol TCP, UDP or SCTP.
    ///
    /// ## Why is this bad?
    /// The controller cannot render an invalid intent into a NetworkPolicy, so the pods it was
    /// meant for stay blocked (or, without default-deny, unrestricted).
    ///
    /// ## Example
    /// ```yaml
    /// spec:
    ///   podSelector: {matchLabels: {app: payments}}
    ///   egress:
    ///   - fqdnPattern: "api.*.stripe.com"
    /// ```
    ///
    /// Use instead:
    /// ```yaml
    ///   egress:
    ///   - fqdn: api.stripe.com
    ///     ports: [{port: 443, protocol: TCP}]
    /// ```
    ///
    /// ## Fix safety
    /// No automatic fix.
    pub struct InvalidEgressIntent {
        code: "PC015",
        name: "invalid-egress-intent",
        severity: Error,
        fix: None,
    }
}

impl Rule for InvalidEgressIntent {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        let meta = &Self::META;
        for intent in &cx.inventory.intents {
            let obj = intent.object;
            let Some(spec) = &intent.spec else {
                // A spec of the wrong shape is already a PC000; only a missing one is ours.
                if cx.inventory.object(obj).value.get("spec").is_none() {
                    out.push(cx.finding(meta, obj, "", format!("intent {} has no spec", intent.name)));
                }
                continue;
            };
            if let Err(problems) = compile(IntentMeta::new(&intent.namespace, &intent.name), spec) {
                for p in problems {
                    out.push(cx.finding(meta, obj, &p.pointer, p.message));
                }
            }
        }
    }
}
