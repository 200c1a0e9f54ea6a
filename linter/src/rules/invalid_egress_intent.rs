use super::{Context, Rule, RuleMeta, declare_rule};
use crate::egress::{parse_fqdn, parse_pattern};
use crate::finding::Finding;
use crate::model::Protocol;
use crate::semantics::selector::selector_problem;

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
            let name = &intent.name;
            let Some(spec) = &intent.spec else {
                // A spec of the wrong shape is already a PC000; only a missing one is ours.
                if cx.inventory.object(obj).value.get("spec").is_none() {
                    out.push(cx.finding(meta, obj, "", format!("intent {name} has no spec")));
                }
                continue;
            };
            match &spec.pod_selector {
                None => out.push(cx.finding(
                    meta,
                    obj,
                    "/spec",
                    format!("intent {name} has no podSelector; use {{}} to select every pod of the namespace"),
                )),
                Some(sel) => {
                    if let Some(p) = selector_problem(sel) {
                        out.push(cx.finding(
                            meta,
                            obj,
                            "/spec/podSelector",
                            format!("intent {name}: invalid podSelector: {p}"),
                        ));
                    }
                }
            }
            if spec.egress.is_empty() {
                out.push(cx.finding(meta, obj, "/spec", format!("intent {name} lists no egress targets")));
            }
            for (i, target) in spec.egress.iter().enumerate() {
                let at = format!("/spec/egress/{i}");
                match (&target.fqdn, &target.fqdn_pattern) {
                    (Some(_), Some(_)) => out.push(cx.finding(
                        meta,
                        obj,
                        &at,
                        format!("intent {name}: target {i} sets both fqdn and fqdnPattern; set exactly one"),
                    )),
                    (None, None) => out.push(cx.finding(
                        meta,
                        obj,
                        &at,
                        format!("intent {name}: target {i} sets neither fqdn nor fqdnPattern"),
                    )),
                    (Some(fqdn), None) => {
                        if let Err(e) = parse_fqdn(fqdn) {
                            out.push(cx.finding(
                                meta,
                                obj,
                                &format!("{at}/fqdn"),
                                format!("intent {name}: invalid fqdn: {e}"),
                            ));
                        }
                    }
                    (None, Some(pattern)) => {
                        if let Err(e) = parse_pattern(pattern) {
                            out.push(cx.finding(
                                meta,
                                obj,
                                &format!("{at}/fqdnPattern"),
                                format!("intent {name}: invalid fqdnPattern: {e}"),
                            ));
                        }
                    }
                }
                for (pi, port) in target.ports.iter().enumerate() {
                    let pat = format!("{at}/ports/{pi}");
                    if !(1..=65535).contains(&port.port) {
                        out.push(cx.finding(
                            meta,
                            obj,
                            &format!("{pat}/port"),
                            format!("intent {name}: port {} is outside 1-65535", port.port),
                        ));
                    }
                    if let Some(p) = port.protocol.as_deref().filter(|p| Protocol::parse(p).is_none()) {
                        out.push(cx.finding(
                            meta,
                            obj,
                            &format!("{pat}/protocol"),
                            format!("intent {name}: protocol {p:?} is not one of TCP, UDP, SCTP"),
                        ));
                    }
                }
            }
        }
    }
}
