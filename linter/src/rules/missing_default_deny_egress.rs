use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::{Applicability, Edit, Finding, Fix};
use crate::fix::{allow_dns_policy, default_deny_policy};
use crate::model::Directions;
use crate::semantics::Direction;

declare_rule! {
    /// ## What it does
    /// Finds namespaces that run workloads but have no NetworkPolicy with an empty `podSelector`
    /// isolating `Egress`: a namespace-wide default-deny for outgoing traffic.
    ///
    /// A ClusterNetworkPolicy (`policy.networking.k8s.io/v1alpha2`, Admin or Baseline tier), or
    /// a v1alpha1 AdminNetworkPolicy or BaselineAdminNetworkPolicy, counts as the namespace's
    /// default-deny when its subject is the whole namespace and one of its
    /// egress rules is a `Deny` without protocols to `networks` `0.0.0.0/0` and `::/0` (both
    /// families: an IPv4-only Deny leaves IPv6 open). So does a Cilium policy that puts every pod
    /// of the namespace in default deny at egress: a CiliumNetworkPolicy of the namespace with
    /// an empty `endpointSelector`, or a CiliumClusterwideNetworkPolicy whose `endpointSelector`
    /// names only namespaces (`io.kubernetes.pod.namespace`, `io.cilium.k8s.namespace.labels.*`)
    /// and matches this one, with egress rules (or `enableDefaultDeny.egress: true`).
    ///
    /// A Calico policy counts too: a `projectcalico.org/v3` NetworkPolicy of the namespace, or a
    /// GlobalNetworkPolicy whose `namespaceSelector` takes it, that selects every pod (`all()`),
    /// governs egress, sits in a tier that denies by default, and has no rule that allows or
    /// passes everything: the tier's end denies what its rules leave. Staged kinds never count.
    ///
    /// ## Why is this bad?
    /// Without it, pods may connect anywhere: other namespaces, cloud metadata endpoints, the
    /// internet. A compromised pod can exfiltrate data or move laterally.
    ///
    /// ## Example
    /// A namespace `shop` with a Deployment and only ingress policies.
    ///
    /// Use instead (default-deny plus the DNS allowance every pod needs):
    /// ```yaml
    /// apiVersion: networking.k8s.io/v1
    /// kind: NetworkPolicy
    /// metadata: {name: default-deny-egress, namespace: shop}
    /// spec:
    ///   podSelector: {}
    ///   policyTypes: [Egress]
    /// ---
    /// apiVersion: networking.k8s.io/v1
    /// kind: NetworkPolicy
    /// metadata: {name: allow-dns, namespace: shop}
    /// spec:
    ///   podSelector: {}
    ///   policyTypes: [Egress]
    ///   egress:
    ///   - to:
    ///     - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
    ///       podSelector: {matchLabels: {k8s-app: kube-dns}}
    ///     ports:
    ///     - {port: 53, protocol: UDP}
    ///     - {port: 53, protocol: TCP}
    /// ```
    ///
    /// ## Fix safety
    /// Unsafe: the fix writes both policies above. DNS keeps working, but every other outgoing
    /// connection that no policy allows is blocked.
    pub struct MissingDefaultDenyEgress {
        code: "PC002",
        name: "missing-default-deny-egress",
        severity: Error,
        fix: Unsafe,
    }
}

impl Rule for MissingDefaultDenyEgress {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        check_default_deny(cx, &Self::META, Direction::Egress, out);
    }
}

/// Shared by PC001 and PC002: one finding per namespace with workloads and no default-deny.
pub(super) fn check_default_deny(
    cx: &Context<'_>,
    meta: &'static RuleMeta,
    direction: Direction,
    out: &mut Vec<Finding>,
) {
    let inv = cx.inventory;
    for ns in inv.namespaces_with_workloads() {
        if cx.eval.has_default_deny(&ns.name, direction) {
            continue;
        }
        // The finding is about the namespace's workloads: one whose annotation ignores the
        // rule does not count (so `lint` and the webhook, which sees one workload, agree).
        // The Namespace object's own annotation is honoured by `rules::run` like any other.
        let workloads: Vec<_> = ns
            .workloads
            .iter()
            .copied()
            .filter(|&w| !super::ignores(cx, inv.workload(w).object, meta.code, meta.name))
            .collect();
        let Some(&first) = workloads.first() else { continue };
        let (object, pointer) = match ns.object {
            Some(o) => (o, "/metadata/name"),
            None => (inv.workload(first).object, "/metadata/namespace"),
        };
        let (dir, consequence) = match direction {
            Direction::Ingress => ("Ingress", "any pod in the cluster may connect to its pods"),
            Direction::Egress => ("Egress", "its pods may connect to any destination"),
        };
        let mut f = cx.finding(
            meta,
            object,
            pointer,
            format!(
                "namespace {} has workloads but no policy with an empty podSelector isolates {dir}; {consequence}",
                ns.name
            ),
        );
        for &w in workloads.iter().take(3) {
            f.related.push(cx.related(
                inv.workload(w).object,
                "/metadata/name",
                format!("{} runs here", super::workload_label(cx, w)),
            ));
        }
        let name_free = |name: &str| !inv.policy_name_taken(&ns.name, name);
        let pick = |base: &str| if name_free(base) { base.to_owned() } else { format!("portcullis-{base}") };
        let mut edits = Vec::new();
        match direction {
            Direction::Ingress => {
                let name = pick("default-deny-ingress");
                edits.push(Edit::Create(default_deny_policy(
                    &ns.name,
                    &name,
                    Directions { ingress: true, egress: false },
                )));
            }
            Direction::Egress => {
                let name = pick("default-deny-egress");
                edits.push(Edit::Create(default_deny_policy(
                    &ns.name,
                    &name,
                    Directions { ingress: false, egress: true },
                )));
                edits.push(Edit::Create(allow_dns_policy(&ns.name, &pick("allow-dns"), &cx.config.dns)));
            }
        }
        f.fix = Some(Fix {
            description: format!("add a default-deny {dir} policy to namespace {}", ns.name),
            applicability: Applicability::Unsafe,
            edits,
        });
        out.push(f);
    }
}
