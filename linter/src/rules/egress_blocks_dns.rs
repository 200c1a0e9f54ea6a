use k8s_openapi::api::networking::v1::{NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::{Applicability, Edit, Finding, Fix};
use crate::fix::dns_patch;
use crate::model::{NAMESPACE_NAME_LABEL, Policy, PolicyId, Protocol};
use crate::semantics::calico::TierOutcome;
use crate::semantics::dns::{DNS_PORT, DnsTarget, LayerDecision};
use crate::semantics::evaluator::{numeric_range, peer_matches, port_matches};
use crate::semantics::selector::{describe_selector, selector_matches};
use crate::semantics::{Endpoint, ParsedIpBlock, Traffic};

declare_rule! {
    /// ## What it does
    /// Finds workloads whose pods are egress-isolated yet cannot reach cluster DNS (the
    /// `k8s-app=kube-dns` pods in `kube-system`, or a configured extra address such as NodeLocal
    /// DNSCache `169.254.20.10`) on UDP 53, and says why: which policies isolate the pods and
    /// what is wrong with the rule that was meant to allow DNS.
    ///
    /// ClusterNetworkPolicies (`policy.networking.k8s.io/v1alpha2`) and the v1alpha1
    /// AdminNetworkPolicy and BaselineAdminNetworkPolicy are followed: an Admin-tier
    /// Accept of DNS lets it through whatever NetworkPolicy says, an Admin-tier Deny blocks it
    /// whatever NetworkPolicy allows, and a Baseline-tier Deny blocks it for pods no
    /// NetworkPolicy isolates. A finding caused by a ClusterNetworkPolicy names its tier, policy
    /// and rule, and has no automatic fix: the cluster's administrators own that policy.
    ///
    /// Cilium policies (`cilium.io/v2`) are followed too: a Cilium deny of port 53 blocks DNS
    /// whatever any allow says, and a Cilium policy's default deny isolates the pods like a
    /// NetworkPolicy (allowed when a rule of either allows DNS). When only Cilium policies
    /// isolate the pods there is no NetworkPolicy to patch, so the finding has no fix. A DNS
    /// allowance that cannot be decided offline (`toServices`) is not reported as a block.
    ///
    /// ## Why is this bad?
    /// Every name lookup times out, so the application fails in ways that do not look like a
    /// network policy problem. The classic causes: no DNS rule at all; a namespaceSelector on
    /// `name: kube-system`, a label Kubernetes does not set (it sets
    /// `kubernetes.io/metadata.name`); a podSelector without a namespaceSelector, which looks in
    /// the policy's own namespace; or an ipBlock holding the kube-dns Service IP, which policies
    /// never see because Service addresses are translated first.
    ///
    /// ## Example
    /// ```yaml
    /// spec:
    ///   podSelector: {}
    ///   policyTypes: [Egress]
    ///   egress:
    ///   - to:
    ///     - namespaceSelector: {matchLabels: {name: kube-system}}
    ///     ports:
    ///     - {port: 53, protocol: UDP}
    /// ```
    ///
    /// Use instead:
    /// ```yaml
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
    /// Safe: the fix appends the DNS rule above to a policy that isolates the pods (and writes out
    /// its `policyTypes` if they were defaulted). It only adds DNS to cluster DNS.
    pub struct EgressBlocksDns {
        code: "PC003",
        name: "egress-blocks-dns",
        severity: Error,
        fix: Safe,
    }
}

impl Rule for EgressBlocksDns {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        let inv = cx.inventory;
        for (i, w) in inv.workloads.iter().enumerate() {
            let id = crate::model::WorkloadId(i);
            let Some(reach) = cx.dns_reach(id) else { continue };
            // Allowed, or a rule the input cannot settle may allow it: nothing certain to report.
            if reach.udp_allowed || reach.udp_undecided {
                continue;
            }
            if let Some(decision) = reach.udp_layer.filter(|_| !network_policy_decides(cx, reach)) {
                out.push(layer_blocks_dns(cx, &Self::META, id, decision));
                continue;
            }
            if reach.isolated_by.is_empty() {
                // Only Cilium policies isolate the pods: no NetworkPolicy to diagnose or patch.
                out.push(cilium_isolation_blocks_dns(cx, &Self::META, id, &reach.cilium_isolated_by));
                continue;
            }
            let names: Vec<String> = reach.isolated_by.iter().map(|&p| inv.policy(p).name.clone()).collect();
            let diagnoses = diagnose(cx, &reach.isolated_by);
            let why = why_blocked(cx, &diagnoses, &names);
            let mut f = cx.finding(
                &Self::META,
                w.object,
                "/metadata/name",
                format!(
                    "pods of {} cannot resolve names (egress isolated by {}): {why}",
                    super::workload_label(cx, id),
                    plural_policies(&names)
                ),
            );
            for &p in &reach.isolated_by {
                let policy = inv.policy(p);
                f.related.push(cx.related(
                    policy.object,
                    "/spec/podSelector",
                    format!("policy {} isolates egress of these pods", policy.name),
                ));
            }
            for &r in &reach.cilium_isolated_by {
                let rule = inv.cilium_rule(r);
                f.related.push(cx.related(
                    rule.object,
                    &format!("{}/endpointSelector", rule.pointer),
                    format!("{} also isolates egress of these pods, and none of its rules allows DNS", rule.describe()),
                ));
            }
            for (n, d) in diagnoses.iter().enumerate() {
                let policy = inv.policy(d.policy);
                let note = if n == 0 { "the rule meant to allow DNS".to_owned() } else { d.reason.clone() };
                f.related.push(cx.related(policy.object, &d.pointer, note));
            }
            let target = reach.isolated_by[0];
            let policy = inv.policy(target);
            let object = inv.object(policy.object);
            f.fix = Some(Fix {
                description: format!(
                    "append a DNS egress rule (UDP and TCP 53 to cluster DNS) to policy {}",
                    policy.name
                ),
                applicability: Applicability::Safe,
                edits: vec![Edit::Patch {
                    object: policy.object,
                    patch: dns_patch(policy, object.has_annotations, &cx.config.dns),
                }],
            });
            out.push(f);
        }
    }
}

/// A workload whose DNS a rule outside the isolation layer denies (a ClusterNetworkPolicy tier's
/// Deny, a Cilium deny): named, located, no fix (the administrators own a tier's policy; a
/// Cilium deny wins over every allow, so only narrowing it helps).
fn layer_blocks_dns(
    cx: &Context<'_>,
    meta: &'static RuleMeta,
    workload: crate::model::WorkloadId,
    decision: LayerDecision,
) -> Finding {
    let inv = cx.inventory;
    let (object, who, pointer, tail) = match decision {
        LayerDecision::Tier(d) => {
            let policy = inv.cluster_policy(d.policy);
            let who = format!("the {} denies UDP 53 to cluster DNS in egress rule {}", policy.describe(), d.rule);
            (policy.object, who, format!("/spec/egress/{}", d.rule), "")
        }
        LayerDecision::CiliumDeny(r) => {
            let owner = inv.cilium_rule(r.rule);
            let who = format!("{} denies UDP 53 to cluster DNS in {} rule {}", owner.describe(), r.key(), r.index);
            (owner.object, who, r.pointer(inv), ", and a Cilium deny wins over every allow")
        }
        LayerDecision::Calico(TierOutcome::Rule(r, _)) => {
            let policy = inv.calico_policy(r.policy);
            let who = format!("the {} denies UDP 53 to cluster DNS in egress rule {}", policy.describe(), r.index);
            (policy.object, who, r.pointer(), "")
        }
        LayerDecision::Calico(TierOutcome::EndOfTier { policy: id, .. }) => {
            let policy = inv.calico_policy(id);
            let who = format!(
                "the {} selects them and no rule of Calico tier {} allows UDP 53 to cluster DNS, so the tier's default action denies it",
                policy.describe(),
                policy.tier
            );
            (policy.object, who, "/spec/selector".to_owned(), "")
        }
        LayerDecision::Calico(TierOutcome::NetworkPolicy(r)) => {
            let policy = inv.policy(r.policy);
            let who = format!("policy {} decides UDP 53 to cluster DNS", policy.name);
            (policy.object, who, format!("/spec/egress/{}", r.index), "")
        }
    };
    let note = match decision {
        LayerDecision::Calico(TierOutcome::EndOfTier { .. }) => {
            "this policy selects the pods, so its tier's default action applies to them"
        }
        _ => "this rule denies DNS for these pods",
    };
    let mut f = cx.finding(
        meta,
        inv.workload(workload).object,
        "/metadata/name",
        format!("pods of {} cannot resolve names: {who}{tail}", super::workload_label(cx, workload)),
    );
    f.related.push(cx.related(object, &pointer, note.to_owned()));
    f
}

/// A workload that only Cilium policies isolate, none of whose rules allows DNS. No fix: the
/// rule to add belongs in a Cilium policy, ideally with `rules.dns` so `toFQDNs` rules work.
fn cilium_isolation_blocks_dns(
    cx: &Context<'_>,
    meta: &'static RuleMeta,
    workload: crate::model::WorkloadId,
    isolated_by: &[crate::model::cilium_policy::CiliumRuleId],
) -> Finding {
    let inv = cx.inventory;
    let names: Vec<String> = isolated_by.iter().map(|&r| inv.cilium_rule(r).describe()).collect();
    let mut f = cx.finding(
        meta,
        inv.workload(workload).object,
        "/metadata/name",
        format!(
            "pods of {} cannot resolve names: egress isolated by {} and no rule allows UDP 53 to cluster DNS (add an egress rule to the kube-dns pods on port 53, with rules.dns if the pods use toFQDNs)",
            super::workload_label(cx, workload),
            names.join(", ")
        ),
    );
    for &r in isolated_by {
        let rule = inv.cilium_rule(r);
        f.related.push(cx.related(
            rule.object,
            &format!("{}/endpointSelector", rule.pointer),
            format!("{} isolates egress of these pods", rule.describe()),
        ));
    }
    f
}

/// Whether the layer that blocks DNS is Calico's default tier ending in its default deny for
/// pods a NetworkPolicy isolates: the NetworkPolicies sit in that tier, so a DNS rule added to
/// them lets DNS through (no Calico rule of the tier matched DNS).
fn network_policy_decides(cx: &Context<'_>, reach: &crate::semantics::dns::DnsReach) -> bool {
    match reach.udp_layer {
        Some(LayerDecision::Calico(TierOutcome::EndOfTier { policy, .. })) => {
            !reach.isolated_by.is_empty()
                && cx.inventory.calico_policy(policy).tier == crate::model::calico_policy::DEFAULT_TIER
        }
        _ => false,
    }
}

/// Why NetworkPolicy blocks DNS for pods whose egress `reach` describes, or `None` when UDP 53
/// reaches cluster DNS or a ClusterNetworkPolicy decides it (which no NetworkPolicy change
/// helps). The webhook uses it for the pods a reviewed policy selects.
pub fn explain_dns_block(cx: &Context<'_>, reach: &crate::semantics::dns::DnsReach) -> Option<String> {
    let layer = reach.udp_layer.is_some() && !network_policy_decides(cx, reach);
    if reach.udp_allowed || reach.udp_undecided || layer || reach.isolated_by.is_empty() {
        return None;
    }
    let names: Vec<String> = reach.isolated_by.iter().map(|&p| cx.inventory.policy(p).name.clone()).collect();
    Some(why_blocked(cx, &diagnose(cx, &reach.isolated_by), &names))
}

fn why_blocked(cx: &Context<'_>, diagnoses: &[Diagnosis], names: &[String]) -> String {
    match diagnoses.first() {
        Some(d) => d.reason.clone(),
        None => format!(
            "no egress rule of {} allows UDP 53 to cluster DNS ({})",
            plural_policies(names),
            describe_target(&cx.dns)
        ),
    }
}

fn plural_policies(names: &[String]) -> String {
    match names {
        [one] => format!("policy {one}"),
        many => format!("policies {}", many.join(", ")),
    }
}

fn describe_target(dns: &DnsTarget) -> String {
    let labels: Vec<String> = dns.pod_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut s = format!("pods {} in namespace {}", labels.join(","), dns.namespace);
    for block in &dns.extra {
        s.push_str(&format!(" or {block}"));
    }
    s
}

/// Why a rule that looks like a DNS rule does not let DNS through.
struct Diagnosis {
    policy: PolicyId,
    pointer: String,
    reason: String,
}

/// Finds the rules that were probably meant to allow DNS and explains each failure.
fn diagnose(cx: &Context<'_>, policies: &[PolicyId]) -> Vec<Diagnosis> {
    let mut out = Vec::new();
    for &pid in policies {
        let policy = cx.inventory.policy(pid);
        for (i, rule) in policy.spec.egress.iter().flatten().enumerate() {
            if !looks_like_dns(rule, &cx.dns) {
                continue;
            }
            let base = format!("/spec/egress/{i}");
            if let Some((pointer, reason)) = explain_rule(cx, policy, rule, &base) {
                out.push(Diagnosis { policy: pid, pointer, reason });
            }
        }
    }
    out
}

fn looks_like_dns(rule: &NetworkPolicyEgressRule, dns: &DnsTarget) -> bool {
    let port_53 = rule.ports.iter().flatten().any(|p| match &p.port {
        Some(IntOrString::Int(_)) => numeric_range(p).is_some_and(|r| r.contains(&DNS_PORT)),
        Some(IntOrString::String(name)) => name.contains("dns"),
        None => false,
    });
    let mentions_dns = rule.to.iter().flatten().any(|peer| {
        let sel_mentions = |s: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>| {
            s.as_ref().is_some_and(|s| {
                s.match_labels
                    .iter()
                    .flatten()
                    .any(|(k, v)| v == &dns.namespace || dns.pod_labels.get(k) == Some(v) || v.contains("dns"))
            })
        };
        sel_mentions(&peer.namespace_selector) || sel_mentions(&peer.pod_selector)
    });
    port_53 || mentions_dns
}

/// The first reason the rule misses UDP 53 to cluster DNS, with the pointer to blame.
fn explain_rule(
    cx: &Context<'_>,
    policy: &Policy,
    rule: &NetworkPolicyEgressRule,
    base: &str,
) -> Option<(String, String)> {
    let dns = &cx.dns;
    let name = &policy.name;
    let udp = Traffic { port: DNS_PORT, protocol: Protocol::Udp };
    let ports: &[NetworkPolicyPort] = rule.ports.as_deref().unwrap_or_default();
    if !ports.is_empty() && !ports.iter().any(|p| port_matches(p, &dns.ports, udp)) {
        let tcp_only =
            ports.iter().any(|p| port_matches(p, &dns.ports, Traffic { port: DNS_PORT, protocol: Protocol::Tcp }));
        let reason = if tcp_only {
            format!("the DNS rule in policy {name} allows port 53 only over TCP; lookups use UDP first")
        } else {
            format!("the DNS rule in policy {name} does not allow UDP port 53")
        };
        return Some((format!("{base}/ports"), reason));
    }
    let peers: &[NetworkPolicyPeer] = rule.to.as_deref().unwrap_or_default();
    let pod = Endpoint::Pod(dns.pod());
    for (i, peer) in peers.iter().enumerate() {
        if peer_matches(peer, &policy.namespace, &pod) {
            return None;
        }
        let at = format!("{base}/to/{i}");
        if let Some(block) = &peer.ip_block {
            let covers_extra =
                ParsedIpBlock::parse(block).is_ok_and(|b| dns.extra.iter().any(|e| b.contains(e.addr())));
            if covers_extra {
                return None;
            }
            return Some((
                format!("{at}/ipBlock"),
                format!(
                    "the DNS rule in policy {name} allows ipBlock {}, which does not hold the DNS pods: policies see pod addresses after Service translation, so a kube-dns Service IP never matches; select the DNS pods instead",
                    block.cidr
                ),
            ));
        }
        match &peer.namespace_selector {
            None => {
                if peer.pod_selector.as_ref().is_some_and(|s| selector_matches(s, &dns.pod_labels)) {
                    return Some((
                        format!("{at}/podSelector"),
                        format!(
                            "the DNS rule in policy {name} has a podSelector without a namespaceSelector, which selects pods in namespace {}, not {}",
                            policy.namespace, dns.namespace
                        ),
                    ));
                }
            }
            Some(ns_sel) if !selector_matches(ns_sel, &dns.namespace_labels) => {
                let wrong_key = ns_sel
                    .match_labels
                    .iter()
                    .flatten()
                    .find(|(k, v)| *v == &dns.namespace && k.as_str() != NAMESPACE_NAME_LABEL);
                let reason = match wrong_key {
                    Some((k, v)) => format!(
                        "the DNS rule in policy {name} selects namespaces labelled {k}={v}; Kubernetes only sets {NAMESPACE_NAME_LABEL}"
                    ),
                    None => format!(
                        "the DNS rule in policy {name} selects namespaces {}, which does not match namespace {} (labels: {})",
                        describe_selector(ns_sel),
                        dns.namespace,
                        dns.namespace_labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
                    ),
                };
                return Some((format!("{at}/namespaceSelector"), reason));
            }
            Some(_) => {
                if let Some(pod_sel) = &peer.pod_selector {
                    return Some((
                        format!("{at}/podSelector"),
                        format!(
                            "the DNS rule in policy {name} selects pods {}, which does not match the DNS pods ({})",
                            describe_selector(pod_sel),
                            dns.pod_labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
                        ),
                    ));
                }
            }
        }
    }
    if peers.is_empty() {
        return None;
    }
    Some((
        format!("{base}/to"),
        format!("the DNS rule in policy {name} does not select cluster DNS ({})", describe_target(dns)),
    ))
}
