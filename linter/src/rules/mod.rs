//! The rule catalogue. One rule per file; [`registry`] maps codes and names to rules.
//!
//! A rule is declared with `declare_rule!`: its doc comment (fixed headings `## What it does`,
//! `## Why is this bad?`, `## Example`, `Use instead:`, `## Fix safety`) is written once and
//! reused by `portcullis rule`, SARIF and `docs/rules.md`.

use crate::config::Config;
use crate::finding::{Anchor, Finding, Related, Severity};
use crate::load::LoadProblem;
use crate::model::{Inventory, Object, ObjectId, WorkloadId};
use crate::semantics::Evaluator;
use crate::semantics::cluster::NamespaceCandidates;
use crate::semantics::dns::{DnsReach, DnsTarget, dns_reach_among};

pub mod registry;

mod admin_accept_overrides_default_deny;
mod allow_shadowed_by_deny;

pub use egress_blocks_dns::explain_dns_block;

mod dns_open_to_any;
mod dns_tcp_missing;
mod domain_names_outside_admin_accept;
mod egress_allow_all;
mod egress_blocks_dns;
mod egress_gateway_blocked;
mod forbidden_ignore;
mod fqdn_allow_all;
mod fqdn_without_dns_proxy;
mod gateway_bypass;
mod guarded_address_allowed;
mod host_network_bypass;
mod ignored_rules;
mod ingress_allow_all;
mod invalid_egress_intent;
mod invalid_ip_block;
mod invalid_manifest;
mod invalid_port;
mod mesh_registry_allow_all;
mod mesh_registry_mismatch;
mod missing_default_deny_egress;
mod missing_default_deny_ingress;
mod observed_traffic_denied;
mod outside_mesh;
mod peer_and_or_confusion;
mod same_priority_overlap;
mod selector_matches_nothing;
mod unknown_named_port;

/// Whether a rule offers fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixAvailability {
    None,
    Safe,
    Unsafe,
}

/// A rule's identity and documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleMeta {
    pub code: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    pub fix: FixAvailability,
    /// Markdown docs, from the rule's doc comment.
    pub docs: &'static str,
}

impl RuleMeta {
    /// Docs with the one leading space of each doc-comment line removed.
    pub fn docs_markdown(&self) -> String {
        let mut out = String::new();
        for line in self.docs.lines() {
            out.push_str(line.strip_prefix(' ').unwrap_or(line));
            out.push('\n');
        }
        out.trim().to_owned() + "\n"
    }

    /// The first sentence of "What it does", for tables.
    pub fn summary(&self) -> String {
        let docs = self.docs_markdown();
        let body = docs.split("## What it does").nth(1).unwrap_or(&docs);
        let para: Vec<&str> = body.trim_start().lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
        let para = para.join(" ");
        match para.find(". ") {
            Some(i) => para[..=i].to_owned(),
            None => para,
        }
    }
}

/// A rule: metadata plus a check over the whole input.
pub trait Rule: Sync {
    fn meta(&self) -> &'static RuleMeta;
    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>);
}

/// Declares a rule struct with its metadata; the doc comment becomes its docs.
macro_rules! declare_rule {
    (
        $(#[doc = $doc:literal])*
        pub struct $name:ident {
            code: $code:literal,
            name: $rule:literal,
            severity: $sev:ident,
            fix: $fix:ident $(,)?
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;

        impl $name {
            pub const META: $crate::rules::RuleMeta = $crate::rules::RuleMeta {
                code: $code,
                name: $rule,
                severity: $crate::finding::Severity::$sev,
                fix: $crate::rules::FixAvailability::$fix,
                docs: concat!($($doc, "\n"),*),
            };
        }
    };
}
pub(crate) use declare_rule;

/// What a rule sees.
#[derive(Debug)]
pub struct Context<'a> {
    pub inventory: &'a Inventory,
    pub config: &'a Config,
    pub eval: Evaluator<'a>,
    pub dns: DnsTarget,
    pub load_problems: &'a [LoadProblem],
    /// Observed traffic replayed against the input (`lint --traffic`), for PC024.
    pub traffic: Option<&'a crate::replay::Replay>,
    /// DNS reachability per workload, computed once for the rules that need it (PC003, PC004).
    dns_reach: std::sync::OnceLock<Vec<Option<DnsReach>>>,
    /// The cluster-wide policies that can select each namespace's pods, computed once.
    candidates: std::sync::OnceLock<std::collections::HashMap<&'a str, NamespaceCandidates<'a>>>,
    /// See [`Context::focused`].
    focus: Option<Vec<ObjectId>>,
    /// Istio's objects, indexed once for the mesh rules (PC025-PC029).
    mesh: std::sync::OnceLock<Option<crate::semantics::mesh::Mesh<'a>>>,
}

impl<'a> Context<'a> {
    pub fn new(inventory: &'a Inventory, config: &'a Config, load_problems: &'a [LoadProblem]) -> Context<'a> {
        let eval = Evaluator::new(inventory);
        let dns = DnsTarget::new(&config.dns, &eval);
        Context {
            inventory,
            config,
            eval,
            dns,
            load_problems,
            traffic: None,
            dns_reach: std::sync::OnceLock::new(),
            candidates: std::sync::OnceLock::new(),
            focus: None,
            mesh: std::sync::OnceLock::new(),
        }
    }

    /// Only findings about `objects` are wanted (the webhook reviews one object among the
    /// stored ones it reads for context): rules that judge each policy on its own skip the
    /// others ([`Context::written_policies`]). Every other finding is still made; a caller
    /// keeps what it wants, so a focused run finds what an unfocused one finds about `objects`.
    pub fn focused(mut self, objects: impl IntoIterator<Item = ObjectId>) -> Context<'a> {
        self.focus = Some(objects.into_iter().collect());
        self
    }

    /// Whether findings about `object` are wanted ([`Context::focused`]).
    pub fn reports_on(&self, object: ObjectId) -> bool {
        self.focus.as_ref().is_none_or(|focus| focus.contains(&object))
    }

    /// The policies written in the input ([`Inventory::written_policies`]) that findings are
    /// wanted about: what rules judging each policy on its own go through.
    pub fn written_policies(&self) -> impl Iterator<Item = &'a crate::model::Policy> + '_ {
        self.inventory.written_policies().filter(|p| self.reports_on(p.object))
    }

    /// The ClusterNetworkPolicies and Cilium rules that can select pods of `namespace` (a
    /// namespace of some workload), computed once per namespace.
    pub fn candidates(&self, namespace: &str) -> Option<&NamespaceCandidates<'a>> {
        let all = self.candidates.get_or_init(|| {
            let mut all = std::collections::HashMap::new();
            for w in &self.inventory.workloads {
                all.entry(w.namespace.as_str()).or_insert_with(|| {
                    NamespaceCandidates::new(self.inventory, self.eval.namespace_labels(&w.namespace))
                });
            }
            all
        });
        all.get(namespace)
    }

    /// Istio's egress objects of the input (`None` without any), indexed once.
    pub fn mesh(&self) -> Option<&crate::semantics::mesh::Mesh<'a>> {
        self.mesh.get_or_init(|| crate::semantics::mesh::Mesh::new(self.inventory)).as_ref()
    }

    /// The mesh and the external hosts it has a say about, for the rules that judge routes;
    /// `None` without Istio objects or without such hosts.
    pub fn mesh_targets(&self) -> Option<(&crate::semantics::mesh::Mesh<'a>, &[crate::semantics::mesh::Target])> {
        let mesh = self.mesh()?;
        let targets = mesh.targets();
        (!targets.is_empty()).then_some((mesh, targets))
    }

    /// How a workload's egress treats DNS (`None` when its egress is not isolated).
    pub fn dns_reach(&self, workload: WorkloadId) -> Option<&DnsReach> {
        let all = self.dns_reach.get_or_init(|| {
            let none = NamespaceCandidates::default();
            let mut all = Vec::with_capacity(self.inventory.workloads.len());
            for (i, w) in self.inventory.workloads.iter().enumerate() {
                let namespace = self.candidates(&w.namespace).unwrap_or(&none);
                all.push(dns_reach_among(&self.eval, WorkloadId(i), &self.dns, namespace));
            }
            all
        });
        all.get(workload.0).and_then(Option::as_ref)
    }

    /// An anchor at `pointer` (relative to the object) in an object.
    pub fn at(&self, object: ObjectId, pointer: &str) -> Anchor {
        let o: &Object = self.inventory.object(object);
        Anchor::Node { doc: o.doc, pointer: o.doc_pointer(pointer) }
    }

    /// A finding about an object, with the rule's default severity.
    pub fn finding(&self, meta: &'static RuleMeta, object: ObjectId, pointer: &str, message: String) -> Finding {
        Finding {
            code: meta.code,
            rule: meta.name,
            severity: meta.severity,
            message,
            anchor: self.at(object, pointer),
            object: Some(self.inventory.object(object).id.clone()),
            object_id: Some(object),
            related: Vec::new(),
            fix: None,
        }
    }

    /// A related location inside an object.
    pub fn related(&self, object: ObjectId, pointer: &str, message: String) -> Related {
        Related { anchor: self.at(object, pointer), message }
    }
}

/// Runs every enabled rule and applies configuration: levels, excluded namespaces and
/// `portcullis.dev/ignore` annotations. Findings come back ordered by file and document.
pub fn run(cx: &Context<'_>) -> Vec<Finding> {
    run_on(cx, 1)
}

/// [`run`], the rules spread over up to `threads` threads; the findings are the same, in the
/// same order, on any number.
pub fn run_on(cx: &Context<'_>, threads: usize) -> Vec<Finding> {
    run_rules(cx, threads, |_| true)
}

/// [`run`] with only the rules whose codes are in `codes` (the webhook's mutation needs one).
pub fn run_only(cx: &Context<'_>, codes: &[&str]) -> Vec<Finding> {
    run_rules(cx, 1, |code| codes.contains(&code))
}

fn run_rules(cx: &Context<'_>, threads: usize, wanted: impl Fn(&str) -> bool) -> Vec<Finding> {
    let enabled: Vec<(&dyn Rule, Severity)> = registry::RULES
        .iter()
        .filter_map(|&rule| {
            let meta = rule.meta();
            if !wanted(meta.code) {
                return None;
            }
            Some((rule, cx.config.severity(meta.code, meta.severity)?))
        })
        .collect();
    let each = crate::parallel::map(&enabled, threads, |&(rule, severity)| {
        let mut found = Vec::new();
        rule.check(cx, &mut found);
        for f in &mut found {
            f.severity = severity;
        }
        found
    });
    let mut findings: Vec<Finding> = each.into_iter().flatten().collect();
    findings.retain(|f| !suppressed(cx, f));
    findings.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    findings
}

fn sort_key(f: &Finding) -> (u32, usize, &'static str) {
    match &f.anchor {
        Anchor::Node { doc, .. } => (doc.source.0, doc.index, f.code),
        Anchor::Position { source, position } => (source.0, position.line, f.code),
    }
}

fn suppressed(cx: &Context<'_>, f: &Finding) -> bool {
    let Some(object) = &f.object else { return false };
    let namespace = if object.kind == "Namespace" { Some(object.name.as_str()) } else { object.namespace.as_deref() };
    if namespace.is_some_and(|ns| cx.config.is_excluded(ns)) {
        return true;
    }
    f.object_id.is_some_and(|id| ignores(cx, id, f.code, f.rule))
}

/// Whether an object's `portcullis.dev/ignore` annotation silences a rule for it: it names the
/// rule by code or name and `portcullis.yaml` allows ignoring that rule. The one place this is
/// decided, for `lint` and the webhook alike. A refused ignore is itself reported (PC016),
/// which no annotation silences.
pub fn ignores(cx: &Context<'_>, object: ObjectId, code: &str, name: &str) -> bool {
    if code == forbidden_ignore::ForbiddenIgnore::META.code || !cx.config.may_ignore(code) {
        return false;
    }
    let ignore = cx.inventory.ignored(object);
    ignore.contains(code) || ignore.contains(name)
}

/// How many items a message names before "and N more".
pub(crate) const NAMED_IN_MESSAGE: usize = 3;

/// The first [`NAMED_IN_MESSAGE`] of `total` items, named, and how many more: a message stays
/// short whatever the input lists.
pub(crate) fn first_few(names: impl Iterator<Item = String>, total: usize) -> String {
    let named = names.take(NAMED_IN_MESSAGE).collect::<Vec<_>>().join(", ");
    match total {
        n if n <= NAMED_IN_MESSAGE => named,
        n => format!("{named} and {} more", n - NAMED_IN_MESSAGE),
    }
}

/// Human name of a workload for messages: `Deployment shop/pay`.
pub(crate) fn workload_label(cx: &Context<'_>, id: crate::model::WorkloadId) -> String {
    workload_label_of(cx.inventory, id)
}

/// Human name of a workload for messages: `Deployment shop/pay`.
pub fn workload_label_of(inventory: &Inventory, id: crate::model::WorkloadId) -> String {
    let w = inventory.workload(id);
    format!("{} {}/{}", inventory.object(w.object).id.kind, w.namespace, w.name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_name_a_few_items_and_count_the_rest() {
        let hosts = |n: usize| (0..n).map(|i| format!("h{i}.example.com"));
        assert_eq!(
            super::first_few(hosts(10_000), 10_000),
            "h0.example.com, h1.example.com, h2.example.com and 9997 more"
        );
        assert_eq!(super::first_few(hosts(2), 2), "h0.example.com, h1.example.com");
    }
}
