use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;
use crate::semantics::Direction;

declare_rule! {
    /// ## What it does
    /// Finds namespaces that run workloads but have no NetworkPolicy with an empty `podSelector`
    /// isolating `Ingress`: a namespace-wide default-deny for incoming traffic.
    ///
    /// A ClusterNetworkPolicy (`policy.networking.k8s.io/v1alpha2`, Admin or Baseline tier), or
    /// a v1alpha1 AdminNetworkPolicy or BaselineAdminNetworkPolicy, counts as the namespace's
    /// default-deny when its subject is the whole namespace and one of its
    /// ingress rules is a `Deny` without protocols from every pod (`namespaces: {}`): the usual
    /// cluster-wide default-deny, which the namespace's NetworkPolicies then open (Baseline).
    /// So does a Cilium policy that puts every pod of the namespace in default deny at ingress:
    /// a CiliumNetworkPolicy of the namespace with an empty `endpointSelector`, or a
    /// CiliumClusterwideNetworkPolicy whose `endpointSelector` names only namespaces and matches
    /// this one, with ingress rules (or `enableDefaultDeny.ingress: true`).
    ///
    /// A Calico policy counts too: a `projectcalico.org/v3` NetworkPolicy of the namespace, or a
    /// GlobalNetworkPolicy whose `namespaceSelector` takes it, that selects every pod (`all()`),
    /// governs ingress, sits in a tier that denies by default, and has no rule that allows or
    /// passes everything: the tier's end denies what its rules leave. Staged kinds never count.
    ///
    /// ## Why is this bad?
    /// Without it, every pod that no other policy selects accepts connections from anywhere in
    /// the cluster. A new workload is open until someone remembers to write its policy.
    ///
    /// ## Example
    /// A namespace `shop` with a Deployment and no policies.
    ///
    /// Use instead:
    /// ```yaml
    /// apiVersion: networking.k8s.io/v1
    /// kind: NetworkPolicy
    /// metadata: {name: default-deny-ingress, namespace: shop}
    /// spec:
    ///   podSelector: {}
    ///   policyTypes: [Ingress]
    /// ```
    ///
    /// ## Fix safety
    /// Unsafe: the fix writes the default-deny policy above, which blocks every connection to the
    /// namespace that no other policy allows. Review which traffic must stay allowed first.
    pub struct MissingDefaultDenyIngress {
        code: "PC001",
        name: "missing-default-deny-ingress",
        severity: Error,
        fix: Unsafe,
    }
}

impl Rule for MissingDefaultDenyIngress {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        super::missing_default_deny_egress::check_default_deny(cx, &Self::META, Direction::Ingress, out);
    }
}
