//! The admission decision as pure code: (reviewed object, cluster snapshot, config) → problems
//! and, for `/mutate`, a patch. No I/O, no clock: everything is a parameter, so every decision
//! is a unit test.
//!
//! Each review builds a small [`Inventory`]: the reviewed namespace and the DNS namespace with
//! their labels, the namespace's NetworkPolicies from the snapshot (the reviewed policy
//! replacing its stored version), and the reviewed object. The engine's rules run on it and
//! the findings about the reviewed object are kept. The webhook sees no workloads besides the
//! reviewed one, so rules that need all of a namespace's pods (PC010, PC012) do not run here.

use std::collections::BTreeSet;
use std::sync::Arc;

use json_patch::Patch;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::admission::Operation;
use portcullis_linter::config::Config;
use portcullis_linter::emit::to_yaml;
use portcullis_linter::finding::{Anchor, Edit, Finding, Severity};
use portcullis_linter::fix::{self, default_deny_policy, dns_patch};
use portcullis_linter::load::{DocumentRef, SourceId};
use portcullis_linter::model::inventory::{PolicyNames, ScannedObject, head_of};
use portcullis_linter::model::{Directions, Inventory, Kind, Labels, ObjectId, PolicyId, has_annotations, lookup};
use portcullis_linter::rules::{self, Context, explain_dns_block};
use portcullis_linter::semantics::{Direction, describe_selector, selector_matches};
use portcullis_linter::staged;
use serde::Deserialize as _;
use serde_json::{Value, json};

use crate::state::{PolicySet, Snapshot, StoredPolicy};

/// Rules that need every workload of a namespace, which the webhook does not watch (the mesh
/// rules but PC025 judge routes between workloads: clients, gateways, neighbours).
const NEEDS_ALL_WORKLOADS: [&str; 5] = ["PC010", "PC012", "PC026", "PC027", "PC028"];
/// Rules about a namespace as a whole, reported on any workload review in it.
const NAMESPACE_RULES: [&str; 2] = ["PC001", "PC002"];

/// The reviewed object, as the API server describes it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// `group/version` (`v1` for the core group) from `request.kind`.
    pub api_version: &'a str,
    pub kind: &'a str,
    pub operation: &'a Operation,
    pub namespace: &'a str,
    pub name: &'a str,
    pub sub_resource: Option<&'a str>,
    pub object: Option<&'a Value>,
    pub old_object: Option<&'a Value>,
}

/// What kind of review a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Pods a workload would run: namespace default-deny and DNS rules.
    Workload,
    /// A NetworkPolicy created or updated: its own rules plus what it does to DNS.
    Policy,
    /// A NetworkPolicy deleted: does the namespace keep its default-deny?
    PolicyDelete,
    /// An EgressIntent created or updated.
    Intent,
    /// A StagedPolicy created or updated: reviewed as the NetworkPolicy it stands for.
    Staged,
    /// An object of another policy layer (ClusterNetworkPolicy, AdminNetworkPolicy, Cilium,
    /// Calico) created or updated: its own findings (what the API server or the CNI would
    /// reject, shadowed rules, …).
    Layer,
    /// An object of another policy layer deleted: does every namespace keep its default deny?
    LayerDelete,
}

impl Scope {
    /// Which review a request gets, or why it gets none.
    pub fn of(subject: &Subject<'_>) -> Result<Scope, &'static str> {
        if subject.sub_resource.is_some_and(|s| !s.is_empty()) {
            return Err("subresource requests are not reviewed");
        }
        let (kind, _) = Kind::classify(subject.api_version, subject.kind);
        let writes = matches!(subject.operation, Operation::Create | Operation::Update);
        if subject.api_version == staged::API_VERSION && subject.kind == staged::KIND {
            return if writes { Ok(Scope::Staged) } else { Err("operation not reviewed for this kind") };
        }
        match kind {
            k if k.is_workload() && writes => Ok(Scope::Workload),
            Kind::NetworkPolicy if writes => Ok(Scope::Policy),
            Kind::NetworkPolicy if matches!(subject.operation, Operation::Delete) => Ok(Scope::PolicyDelete),
            Kind::EgressIntent if writes => Ok(Scope::Intent),
            k if crate::state::is_layer_kind(k) && writes => Ok(Scope::Layer),
            k if crate::state::is_layer_kind(k) && matches!(subject.operation, Operation::Delete) => {
                Ok(Scope::LayerDelete)
            }
            Kind::Other | Kind::Namespace => Err("kind not reviewed"),
            _ => Err("operation not reviewed for this kind"),
        }
    }
}

/// One problem with the reviewed object, ready to become a denial or a warning.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub code: &'static str,
    pub rule: &'static str,
    pub severity: Severity,
    pub message: String,
    /// What fixes it: a sentence and the YAML to apply.
    pub fix: Option<String>,
}

impl Problem {
    /// One line: `PC003 egress-blocks-dns: message`.
    pub fn headline(&self) -> String {
        format!("{} {}: {}", self.code, self.rule, self.message)
    }
}

/// A patch for `/mutate`, verified to apply to the request's object.
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub patch: Patch,
    /// What it does, for logs and the annotation.
    pub description: String,
}

/// Reviews a request for `/validate`.
pub fn validate(subject: &Subject<'_>, snapshot: &Snapshot, config: &Config) -> Vec<Problem> {
    match Scope::of(subject) {
        Ok(Scope::Workload) | Ok(Scope::Intent) | Ok(Scope::Layer) => review_object(subject, snapshot, config),
        Ok(Scope::Policy) => review_policy(subject, snapshot, config, Want::Problems).0,
        Ok(Scope::Staged) => review_staged(subject, snapshot, config),
        Ok(Scope::PolicyDelete) => review_delete(subject, snapshot, config),
        Ok(Scope::LayerDelete) => review_layer_delete(subject, snapshot, config),
        Err(_) => Vec::new(),
    }
}

/// Computes the `/mutate` patch: the DNS allowance for a policy that would cut its pods off
/// from cluster DNS. `None` when nothing needs adding.
pub fn mutate(subject: &Subject<'_>, snapshot: &Snapshot, config: &Config) -> Option<Mutation> {
    verified(subject, dns_mutation(subject, snapshot, config)?)
}

/// The DNS mutation [`mutate`] would make, not yet checked against the request's object
/// ([`verified`]).
pub fn dns_mutation(subject: &Subject<'_>, snapshot: &Snapshot, config: &Config) -> Option<Mutation> {
    if !config.webhook.add_dns_allowance || Scope::of(subject) != Ok(Scope::Policy) {
        return None;
    }
    review_policy(subject, snapshot, config, Want::Mutation).1
}

/// `mutation` if its patch applies to the request's object exactly as the API server sent it
/// and the result is still a NetworkPolicy.
pub fn verified(subject: &Subject<'_>, mutation: Mutation) -> Option<Mutation> {
    let original = subject.object?;
    let patched = fix::apply(original, &mutation.patch).ok()?;
    serde_json::from_value::<k8s_openapi::api::networking::v1::NetworkPolicy>(patched).ok()?;
    Some(mutation)
}

/// An inventory under construction: every object is its own detached document.
struct Build {
    inv: Inventory,
    docs: usize,
    namespace: String,
    /// Stored policies added typed, without their value: read again only to show a fix that
    /// patches one ([`Build::value_of`]).
    typed: Vec<(ObjectId, StoredPolicy)>,
}

impl Build {
    fn new(subject: &Subject<'_>, snapshot: &Snapshot, config: &Config) -> Build {
        let mut b = Build {
            inv: Inventory::new(subject.namespace),
            docs: 0,
            namespace: subject.namespace.to_owned(),
            typed: Vec::new(),
        };
        let dns_ns = config.dns.namespace.as_str();
        let mut namespaces = vec![(subject.namespace, &snapshot.namespace_labels)];
        if dns_ns != subject.namespace {
            namespaces.push((dns_ns, &snapshot.dns_namespace_labels));
        }
        for (name, labels) in namespaces {
            // An unknown namespace still gets its metadata.name label from the inventory.
            if let Some(labels) = labels {
                let at = DocumentRef::detached(SourceId(0), b.docs);
                b.docs += 1;
                b.inv.add_scanned_object(ScannedObject::namespace(at, name, Labels::clone(labels)));
            }
        }
        b.add_layers(snapshot, subject);
        b
    }

    /// Adds an object; returns its document index.
    fn add(&mut self, value: Value) -> usize {
        let index = self.docs;
        self.docs += 1;
        self.inv.add_object(DocumentRef::detached(SourceId(0), index), String::new(), value);
        index
    }

    /// Adds a workload whose types are already checked (the API server decoded it, or the
    /// review made it up), keeping `head` and reading its pods from `source` the short way
    /// ([`ScannedObject::decoded_workload`]). Returns its document index, or `head` back for
    /// anything that is not such a workload.
    fn add_decoded_workload(&mut self, head: Value, source: &Value) -> Result<usize, Value> {
        let at = DocumentRef::detached(SourceId(0), self.docs);
        let scanned = ScannedObject::decoded_workload(at, head, source)?;
        self.docs += 1;
        self.inv.add_scanned_object(scanned);
        Ok(at.index)
    }

    /// Adds a pod the review makes up: well typed by construction. Returns its document index.
    fn add_made_up(&mut self, pod: Value) -> usize {
        match self.add_decoded_workload(head_of(&pod), &pod) {
            Ok(index) => index,
            Err(_) => self.add(pod),
        }
    }

    /// Adds the other layers' objects from the snapshot, except the reviewed object's stored
    /// version (the reviewed one replaces it).
    fn add_layers(&mut self, snapshot: &Snapshot, subject: &Subject<'_>) {
        for stored in &snapshot.layers {
            let value = stored.value();
            let same = |pointer: &str, want: &str| lookup(&value, pointer).and_then(Value::as_str) == Some(want);
            let namespace = lookup(&value, "/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
            let reviewed = same("/kind", subject.kind)
                && same("/metadata/name", subject.name)
                && (namespace.is_empty() || namespace == subject.namespace);
            if !reviewed {
                self.add(value);
            }
        }
    }

    /// Adds the namespace's stored policies that may select a pod with `labels` (every one
    /// when `labels` is `None`), except the one named `except`. The others cannot change a
    /// finding about those pods; their names are reserved so a fix never reuses one.
    fn add_policies(&mut self, snapshot: &Snapshot, except: Option<&str>, labels: Option<&Labels>) {
        let names = StoredNames { policies: snapshot.policies.clone(), except: except.map(str::to_owned) };
        self.inv.reserve_policy_names(&self.namespace, Arc::new(names));
        let selecting: Box<dyn Iterator<Item = &StoredPolicy>> = match labels {
            Some(labels) => Box::new(snapshot.policies.selecting(labels)),
            None => Box::new(snapshot.policies.iter()),
        };
        for p in selecting {
            if except != Some(p.name()) {
                self.add_stored(p);
            }
        }
    }

    /// Adds a stored policy, typed straight from its text when it types.
    fn add_stored(&mut self, policy: &StoredPolicy) {
        let at = DocumentRef::detached(SourceId(0), self.docs);
        match policy.typed(at) {
            Some(object) => {
                self.docs += 1;
                let id = ObjectId(self.inv.objects.len());
                self.inv.add_scanned_object(object);
                if self.inv.objects.len() > id.0 {
                    self.typed.push((id, policy.clone()));
                }
            }
            None => {
                self.add(policy.value());
            }
        }
    }

    /// An object's value: as added, or read again for a stored policy added typed.
    fn value_of(&self, object: ObjectId) -> std::borrow::Cow<'_, Value> {
        match self.typed.iter().find(|(id, _)| *id == object) {
            Some((_, stored)) => std::borrow::Cow::Owned(stored.value()),
            None => std::borrow::Cow::Borrowed(&self.inv.object(object).value),
        }
    }

    /// Adds the object under review: a workload without copying its spec (its pods are read
    /// from `object`, which the API server decoded, so only the fields the model keeps are
    /// read: [`ScannedObject::decoded_workload`]; the inventory keeps `head`), anything else
    /// completed whole. Returns its document index.
    fn add_reviewed(&mut self, subject: &Subject<'_>, head: Value, object: &Value) -> usize {
        match self.add_decoded_workload(head, object) {
            Ok(index) => index,
            Err(_) => self.add(completed(subject, object)),
        }
    }

    fn object_at(&self, index: usize) -> Option<ObjectId> {
        self.inv.objects.iter().position(|o| o.doc.index == index).map(ObjectId)
    }

    fn policy_at(&self, index: usize) -> Option<PolicyId> {
        let object = self.object_at(index)?;
        self.inv.policies.iter().position(|p| p.object == object).map(PolicyId)
    }
}

/// The names of a namespace's stored policies but one, read only when a fix picks a name.
#[derive(Debug)]
struct StoredNames {
    policies: PolicySet,
    except: Option<String>,
}

impl PolicyNames for StoredNames {
    fn contains(&self, name: &str) -> bool {
        self.except.as_deref() != Some(name) && self.policies.iter().any(|p| p.name() == name)
    }
}

/// The labels of the pods a workload object runs, its kind read from `head` (`None`: not a
/// workload, or labels that are not a string map, which the engine reports; the review then
/// reads every policy).
fn pod_labels(head: &Value, object: &Value) -> Option<Labels> {
    let api_version = head.get("apiVersion").and_then(Value::as_str)?;
    let kind = head.get("kind").and_then(Value::as_str)?;
    let template = Kind::classify(api_version, kind).0.pod_template_pointer()?;
    match lookup(object, &format!("{template}/metadata/labels")) {
        None | Some(Value::Null) => Some(Labels::new()),
        Some(labels) => Labels::deserialize(labels).ok(),
    }
}

fn doc_index(f: &Finding) -> Option<usize> {
    match &f.anchor {
        Anchor::Node { doc, .. } => Some(doc.index),
        Anchor::Position { .. } => None,
    }
}

/// The object as the engine should see it: `apiVersion`/`kind` from the request when the
/// object omits them, and a name for objects created with `generateName`.
fn completed(subject: &Subject<'_>, object: &Value) -> Value {
    complete(subject, object.clone())
}

/// [`completed`] with only `apiVersion`, `kind` and `metadata`: what the inventory keeps of a
/// workload ([`Build::add_reviewed`]).
fn completed_head(subject: &Subject<'_>, object: &Value) -> Value {
    complete(subject, head_of(object))
}

fn complete(subject: &Subject<'_>, mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.entry("apiVersion").or_insert_with(|| json!(subject.api_version));
        map.entry("kind").or_insert_with(|| json!(subject.kind));
        if let Some(Value::Object(meta)) = map.get_mut("metadata")
            && !meta.contains_key("name")
        {
            let name = match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if subject.name.is_empty() => format!("{prefix}<generated>"),
                _ => subject.name.to_owned(),
            };
            meta.insert("name".to_owned(), json!(name));
        }
    }
    value
}

/// Workloads and EgressIntents: the rules' findings about the object itself, plus the
/// namespace-level rules for the namespace the pods would run in.
fn review_object(subject: &Subject<'_>, snapshot: &Snapshot, config: &Config) -> Vec<Problem> {
    let Some(object) = subject.object else { return Vec::new() };
    let head = completed_head(subject, object);
    let mut b = Build::new(subject, snapshot, config);
    b.add_policies(snapshot, None, pod_labels(&head, object).as_ref());
    let reviewed = b.add_reviewed(subject, head, object);
    let cx = Context::new(&b.inv, config, &[]).focused(b.object_at(reviewed));
    let is_workload = Scope::of(subject) == Ok(Scope::Workload);
    rules::run(&cx)
        .into_iter()
        .filter(|f| !NEEDS_ALL_WORKLOADS.contains(&f.code))
        .filter(|f| doc_index(f) == Some(reviewed) || (is_workload && NAMESPACE_RULES.contains(&f.code)))
        .map(|f| problem(&b, &f))
        .collect()
}

/// What a policy's review is for: `/validate` wants the problems, `/mutate` only the DNS
/// mutation (the same one, found the same way, without running the other rules or rendering
/// fixes nobody reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Problems,
    Mutation,
}

/// A NetworkPolicy: its own findings, and whether the pods it selects can still resolve names
/// (checked on a representative pod). Returns the problems (none when only the mutation is
/// wanted) and the DNS mutation, if one helps.
fn review_policy(
    subject: &Subject<'_>,
    snapshot: &Snapshot,
    config: &Config,
    want: Want,
) -> (Vec<Problem>, Option<Mutation>) {
    let Some(object) = subject.object else { return (Vec::new(), None) };
    let value = completed(subject, object);
    let name = lookup(&value, "/metadata/name").and_then(Value::as_str).unwrap_or(subject.name).to_owned();
    let mut b = Build::new(subject, snapshot, config);
    b.add_policies(snapshot, Some(&name), Some(&probe_labels(&value)));
    let reviewed = b.add(value);
    let policy = b.policy_at(reviewed);
    // A pod the policy selects, with as few labels as the selector allows: other policies'
    // selectors match it only if they match every pod this policy selects.
    let probe = policy.and_then(|p| {
        let policy = b.inv.policy(p);
        if !policy.types.egress {
            return None;
        }
        let selector = policy.spec.pod_selector.clone().unwrap_or_default();
        let labels = representative_labels(&selector)?;
        Some((b.add_made_up(probe_pod(&policy.namespace, labels)), describe_selector(&selector)))
    });
    let focus =
        [Some(reviewed), probe.as_ref().map(|(doc, _)| *doc)].into_iter().flatten().filter_map(|doc| b.object_at(doc));
    let cx = Context::new(&b.inv, config, &[]).focused(focus);
    let findings = match want {
        Want::Problems => rules::run(&cx),
        // A mutation reads one finding (PC004's own fix), found below when it is needed.
        Want::Mutation => Vec::new(),
    };
    let mut problems: Vec<Problem> = match want {
        Want::Problems => findings
            .iter()
            .filter(|f| !NEEDS_ALL_WORKLOADS.contains(&f.code) && doc_index(f) == Some(reviewed))
            .map(|f| problem(&b, f))
            .collect(),
        Want::Mutation => Vec::new(),
    };
    let (Some(pid), Some((probe, selected))) = (policy, probe) else { return (problems, None) };
    let Some(workload) = b.inv.workloads.iter().position(|w| b.inv.object(w.object).doc.index == probe) else {
        return (problems, None);
    };
    let Some(reach) = cx.dns_reach(portcullis_linter::model::WorkloadId(workload)) else {
        return (problems, None);
    };
    let policy = b.inv.policy(pid);
    let ignored = b.inv.ignored(policy.object);
    let enabled = |code: &str, rule: &str, default: Severity| {
        if ignored.contains(code) || ignored.contains(rule) {
            return None;
        }
        config.severity(code, default)
    };
    let pods = if selected == "{}" { "every pod of the namespace".to_owned() } else { format!("pods {selected}") };
    // Borrowed: the policy under review is the inventory's own value (a stored one is built
    // from its typed spec), read only when a fix is shown.
    let original = b.value_of(policy.object);
    let mut mutation = None;
    if let Some(why) = explain_dns_block(&cx, reach) {
        let patch = dns_patch(policy, has_annotations(subject.object.unwrap_or(&original)), &config.dns);
        let description = "appended an egress rule allowing DNS (UDP and TCP 53) to cluster DNS".to_owned();
        if want == Want::Problems
            && let Some(severity) = enabled("PC003", "egress-blocks-dns", Severity::Error)
        {
            problems.push(Problem {
                code: "PC003",
                rule: "egress-blocks-dns",
                severity,
                message: format!(
                    "NetworkPolicy {}/{} isolates egress of {pods}, which then cannot resolve names: {why}",
                    policy.namespace, policy.name
                ),
                fix: render_patched("append a DNS egress rule to this policy", &original, &patch),
            });
        }
        mutation = Some(Mutation { patch, description });
    } else if reach.udp_allowed
        && reach.udp_layer.is_none()
        && reach.tcp_layer.is_none()
        && reach.cilium_isolated_by.is_empty()
        && !reach.tcp_allowed
    {
        // NetworkPolicy lets UDP reach DNS, not TCP: PC004's own fix, when it patches this policy.
        let pc004 = match want {
            Want::Problems => findings,
            Want::Mutation => rules::run_only(&cx, &["PC004"]),
        };
        let finding = pc004.iter().find(|f| f.code == "PC004" && doc_index(f) == Some(probe));
        let own_patch = finding.and_then(|f| f.fix.as_ref()).and_then(|fix| {
            fix.edits.iter().find_map(|e| match e {
                Edit::Patch { object, patch } if *object == policy.object => Some(patch.clone()),
                _ => None,
            })
        });
        if want == Want::Problems
            && let Some(severity) = enabled("PC004", "dns-tcp-missing", Severity::Warning)
        {
            problems.push(Problem {
                code: "PC004",
                rule: "dns-tcp-missing",
                severity,
                message: format!(
                    "with NetworkPolicy {}/{}, {pods} reach cluster DNS on UDP 53 but not TCP 53; answers too large for UDP will fail",
                    policy.namespace, policy.name
                ),
                fix: own_patch.as_ref().and_then(|p| render_patched("add TCP 53 next to UDP 53", &original, p)),
            });
        }
        if let Some(patch) = own_patch {
            mutation = Some(Mutation { patch, description: "added TCP 53 to the DNS egress rule".to_owned() });
        }
    }
    (problems, mutation)
}

/// A StagedPolicy: the same rules as the NetworkPolicy it stands for (its spec under its name),
/// reviewed as if it were created. The fixes are left out: their YAML is a NetworkPolicy, and
/// applying it would enforce what is only staged; the message says where to change it.
fn review_staged(subject: &Subject<'_>, snapshot: &Snapshot, config: &Config) -> Vec<Problem> {
    let Some(spec) = subject.object.and_then(|o| lookup(o, "/spec/networkPolicy")) else { return Vec::new() };
    let name = subject.object.and_then(|o| lookup(o, "/metadata/name")).and_then(Value::as_str).unwrap_or(subject.name);
    let policy = staged::network_policy(subject.namespace, name, spec);
    let as_policy = Subject {
        api_version: "networking.k8s.io/v1",
        kind: "NetworkPolicy",
        object: Some(&policy),
        old_object: None,
        ..*subject
    };
    review_policy(&as_policy, snapshot, config, Want::Problems)
        .0
        .into_iter()
        .map(|p| Problem {
            message: format!(
                "StagedPolicy {}/{name}, once promoted: {} (change spec.networkPolicy)",
                subject.namespace, p.message
            ),
            fix: None,
            ..p
        })
        .collect()
}

/// The labels of the pod a NetworkPolicy's review probes with (its selector's representative
/// pod; none when it has none): only policies that may select that pod can change what the
/// review finds.
fn probe_labels(policy: &Value) -> Labels {
    lookup(policy, "/spec/podSelector")
        .map_or(Some(LabelSelector::default()), |s| LabelSelector::deserialize(s).ok())
        .and_then(|selector| representative_labels(&selector))
        .unwrap_or_default()
}

/// How many of the namespace's stored policies reviewing `subject` reads: those that may select
/// the pods it judges ([`crate::state::PolicySet::selecting`]), or every one when that is not
/// known without deciding. The server bounds it to decide on its async worker.
pub fn policies_read(subject: &Subject<'_>, snapshot: &Snapshot) -> usize {
    let labels = match Scope::of(subject) {
        Ok(Scope::Workload | Scope::Intent | Scope::Layer) => {
            subject.object.and_then(|object| pod_labels(&completed_head(subject, object), object))
        }
        Ok(Scope::Policy) => subject.object.map(probe_labels),
        Ok(Scope::PolicyDelete) => Some(Labels::new()),
        Ok(Scope::Staged | Scope::LayerDelete) | Err(_) => None,
    };
    match labels {
        Some(labels) => snapshot.policies.selecting(&labels).count(),
        None => snapshot.policies.len(),
    }
}

/// NetworkPolicy DELETE: removing the policy that makes the namespace default-deny.
fn review_delete(subject: &Subject<'_>, snapshot: &Snapshot, config: &Config) -> Vec<Problem> {
    let Some(old) = subject.old_object else { return Vec::new() };
    let old = completed(subject, old);
    let name = lookup(&old, "/metadata/name").and_then(Value::as_str).unwrap_or(subject.name).to_owned();
    let default_deny = |with_deleted: bool| {
        let mut b = Build::new(subject, snapshot, config);
        // A default-deny policy has an empty podSelector, which selects a pod without labels.
        b.add_policies(snapshot, Some(&name), Some(&Labels::new()));
        if with_deleted {
            b.add(old.clone());
        }
        let cx = Context::new(&b.inv, config, &[]);
        [Direction::Ingress, Direction::Egress].map(|d| cx.eval.has_default_deny(subject.namespace, d))
    };
    let before = default_deny(true);
    let after = default_deny(false);
    let ns = subject.namespace;
    let mut problems = Vec::new();
    for (i, (code, rule, dir, consequence)) in [
        ("PC001", "missing-default-deny-ingress", "Ingress", "any pod in the cluster may connect to its pods"),
        ("PC002", "missing-default-deny-egress", "Egress", "its pods may connect to any destination"),
    ]
    .into_iter()
    .enumerate()
    {
        if !before[i] || after[i] {
            continue;
        }
        let Some(severity) = config.severity(code, Severity::Error) else { continue };
        let directions = Directions { ingress: i == 0, egress: i == 1 };
        let replacement = default_deny_policy(ns, &format!("default-deny-{}", dir.to_lowercase()), directions);
        problems.push(Problem {
            code,
            rule,
            severity,
            message: format!(
                "deleting NetworkPolicy {ns}/{name} leaves namespace {ns} without a default-deny {dir} policy; {consequence}"
            ),
            fix: Some(format!(
                "keep it, or create another default-deny {dir} policy first:\n{}",
                to_yaml(&replacement)
            )),
        });
    }
    problems
}

/// The namespaces listed by name in a layer-deletion problem; the rest are counted.
const LISTED_NAMESPACES: usize = 10;

/// DELETE of a layer object (a ClusterNetworkPolicy, a Cilium or Calico policy, a Tier):
/// removing what makes namespaces default-deny. A namespaced object is judged on its namespace's
/// snapshot; a cluster-scoped one on every namespace of the cache ([`Snapshot::cluster`]).
fn review_layer_delete(subject: &Subject<'_>, snapshot: &Snapshot, config: &Config) -> Vec<Problem> {
    let Some(old) = subject.old_object else { return Vec::new() };
    let old = completed(subject, old);
    let what = match Kind::classify(subject.api_version, subject.kind).0.cluster_scoped() {
        true => format!("{} {}", subject.kind, subject.name),
        false => format!("{} {}/{}", subject.kind, subject.namespace, subject.name),
    };
    let cluster_scoped = Kind::classify(subject.api_version, subject.kind).0.cluster_scoped();
    // Which namespaces have a default deny per direction, with and without the object.
    let judge = |with_deleted: bool| -> Vec<(String, [bool; 2])> {
        let mut b = Build::new(subject, snapshot, config);
        let namespaces: Vec<String> = match &snapshot.cluster {
            Some(view) if cluster_scoped => {
                for ns in &view.namespaces {
                    b.add(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns.name, "labels": ns.labels}}));
                    for p in &ns.policies {
                        b.add_stored(p);
                    }
                    for o in &ns.layers {
                        b.add(o.value());
                    }
                }
                view.namespaces.iter().map(|n| n.name.clone()).collect()
            }
            None if cluster_scoped => Vec::new(),
            _ => {
                b.add_policies(snapshot, None, Some(&Labels::new()));
                vec![subject.namespace.to_owned()]
            }
        };
        if with_deleted {
            b.add(old.clone());
        }
        let cx = Context::new(&b.inv, config, &[]);
        namespaces
            .into_iter()
            .filter(|ns| !config.exclude_namespaces.contains(ns))
            .map(|ns| {
                let state = [Direction::Ingress, Direction::Egress].map(|d| cx.eval.has_default_deny(&ns, d));
                (ns, state)
            })
            .collect()
    };
    let before = judge(true);
    let after = judge(false);
    let mut problems = Vec::new();
    for (i, (code, rule, dir, consequence)) in [
        ("PC001", "missing-default-deny-ingress", "Ingress", "any pod in the cluster may connect to their pods"),
        ("PC002", "missing-default-deny-egress", "Egress", "their pods may connect to any destination"),
    ]
    .into_iter()
    .enumerate()
    {
        let lost: Vec<&str> = before
            .iter()
            .zip(&after)
            .filter(|((_, b), (_, a))| b[i] && !a[i])
            .map(|((ns, _), _)| ns.as_str())
            .collect();
        if lost.is_empty() {
            continue;
        }
        let Some(severity) = config.severity(code, Severity::Error) else { continue };
        let mut names = lost.iter().take(LISTED_NAMESPACES).copied().collect::<Vec<_>>().join(", ");
        if lost.len() > LISTED_NAMESPACES {
            names.push_str(&format!(" and {} more", lost.len() - LISTED_NAMESPACES));
        }
        problems.push(Problem {
            code,
            rule,
            severity,
            message: format!(
                "deleting {what} leaves {} namespace(s) without a default-deny {dir} policy ({names}); {consequence}",
                lost.len()
            ),
            fix: Some(format!(
                "keep it, or give those namespaces another default-deny {dir} first (a NetworkPolicy with an empty podSelector, or a policy of the same layer)"
            )),
        });
    }
    problems
}

/// Labels of a pod the selector matches, using as few labels as possible: `matchLabels`, one
/// value for each `In`, an empty value for each `Exists`. `None` when no pod can match.
fn representative_labels(selector: &LabelSelector) -> Option<Labels> {
    let mut labels: Labels = selector.match_labels.clone().unwrap_or_default();
    for e in selector.match_expressions.iter().flatten() {
        match e.operator.as_str() {
            "In" => {
                let values = e.values.as_deref().unwrap_or_default();
                let keep = labels.get(&e.key).is_some_and(|v| values.contains(v));
                if !keep {
                    labels.insert(e.key.clone(), values.first()?.clone());
                }
            }
            "Exists" => {
                labels.entry(e.key.clone()).or_default();
            }
            _ => {}
        }
    }
    selector_matches(selector, &labels).then_some(labels)
}

fn probe_pod(namespace: &str, labels: Labels) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "portcullis-probe", "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "probe", "image": "probe"}]},
    })
}

/// A finding as a problem, its fix rendered as YAML (new objects, patched objects).
fn problem(b: &Build, f: &Finding) -> Problem {
    let fix = f.fix.as_ref().map(|fix| {
        let documents: Vec<String> = fix
            .edits
            .iter()
            .filter_map(|edit| match edit {
                Edit::Create(value) => Some(to_yaml(value)),
                Edit::Patch { object, patch } => patched_yaml(&b.value_of(*object), patch),
            })
            .collect();
        if documents.is_empty() {
            fix.description.clone()
        } else {
            format!("{}:\n{}", fix.description, documents.join("---\n"))
        }
    });
    Problem { code: f.code, rule: f.rule, severity: f.severity, message: f.message.clone(), fix }
}

/// `what:` followed by the patched object as YAML.
fn render_patched(what: &str, original: &Value, patch: &Patch) -> Option<String> {
    Some(format!("{what}:\n{}", patched_yaml(original, patch)?))
}

/// The object with the patch applied, as a person would apply it.
fn patched_yaml(original: &Value, patch: &Patch) -> Option<String> {
    fix::apply(original, patch).ok().map(|v| to_yaml(&for_display(v)))
}

/// An object as a person would apply it: without the fields the API server manages.
fn for_display(mut value: Value) -> Value {
    crate::state::slim_metadata(&mut value);
    if let Value::Object(map) = &mut value {
        map.remove("status");
    }
    value
}

/// Rule codes of a set of problems, for logs.
pub fn codes(problems: &[Problem]) -> String {
    let codes: BTreeSet<&str> = problems.iter().map(|p| p.code).collect();
    codes.into_iter().collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    use super::*;

    fn req(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_owned(),
            operator: operator.to_owned(),
            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn representative_pod_has_the_fewest_labels_the_selector_allows() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![
                req("tier", "In", &["front", "back"]),
                req("canary", "Exists", &[]),
                req("legacy", "DoesNotExist", &[]),
                req("zone", "NotIn", &["a"]),
            ]),
        };
        assert_eq!(
            representative_labels(&selector),
            Some(labels(&[("app", "web"), ("canary", ""), ("tier", "front")]))
        );
        assert_eq!(representative_labels(&LabelSelector::default()), Some(Labels::new()));
    }

    #[test]
    fn contradictory_selectors_select_no_pod() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![req("app", "NotIn", &["web"])]),
        };
        assert_eq!(representative_labels(&selector), None);
        let empty_in = LabelSelector { match_labels: None, match_expressions: Some(vec![req("app", "In", &[])]) };
        assert_eq!(representative_labels(&empty_in), None);
    }

    #[test]
    fn in_keeps_a_match_labels_value_it_allows() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("tier", "back")])),
            match_expressions: Some(vec![req("tier", "In", &["front", "back"])]),
        };
        assert_eq!(representative_labels(&selector), Some(labels(&[("tier", "back")])));
    }

    /// A namespace of 300 policies: a default deny (empty selector, every pod) and one policy
    /// per app. A review reads the policies that may select the pods it judges.
    #[test]
    fn a_review_reads_the_policies_that_may_select_its_pods() {
        use crate::state::StoredPolicy;
        let policy = |name: &str, selector: Value| {
            StoredPolicy::new(json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": name, "namespace": "ns"}, "spec": {"podSelector": selector}}))
        };
        let mut policies = vec![policy("default-deny", json!({}))];
        policies
            .extend((0..299).map(|i| policy(&format!("app-{i}"), json!({"matchLabels": {"app": format!("app-{i}")}}))));
        let snapshot = Snapshot { policies: policies.into(), ..Snapshot::default() };
        // How many policies reviewing `object` (`None`: a DELETE) of this kind reads.
        let read = |api_version: &str, kind: &str, object: Option<Value>| {
            let operation = if object.is_some() { Operation::Create } else { Operation::Delete };
            let subject = Subject {
                api_version,
                kind,
                operation: &operation,
                namespace: "ns",
                name: "x",
                sub_resource: None,
                object: object.as_ref(),
                old_object: None,
            };
            policies_read(&subject, &snapshot)
        };
        let deployment = |labels: Value| {
            read(
                "apps/v1",
                "Deployment",
                Some(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "x"},
                "spec": {"template": {"metadata": {"labels": labels}, "spec": {"containers": []}}}})),
            )
        };
        // Its own app's policy and the default deny.
        assert_eq!(deployment(json!({"app": "app-7"})), 2);
        assert_eq!(deployment(json!({"team": "a"})), 1);
        // Labels that are not a string map: the engine reports them, and every policy is read.
        assert_eq!(deployment(json!({"app": 7})), 300);
        // A NetworkPolicy is probed with the fewest labels its selector allows.
        let network_policy = |selector: Value| {
            read(
                "networking.k8s.io/v1",
                "NetworkPolicy",
                Some(json!({"apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy", "metadata": {"name": "x"}, "spec": {"podSelector": selector}})),
            )
        };
        assert_eq!(network_policy(json!({"matchLabels": {"app": "app-3"}})), 2);
        assert_eq!(network_policy(json!({})), 1);
        // Deleting one: the policies that select a pod without labels.
        assert_eq!(read("networking.k8s.io/v1", "NetworkPolicy", None), 1);
        // Not known without deciding (a layer object deleted): every policy.
        assert_eq!(read("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy", None), 300);
    }

    #[test]
    fn scope_follows_kind_operation_and_subresource() {
        let op = Operation::Create;
        let subject = |api_version, kind, operation, sub_resource| Subject {
            api_version,
            kind,
            operation,
            namespace: "ns",
            name: "x",
            sub_resource,
            object: None,
            old_object: None,
        };
        assert_eq!(Scope::of(&subject("apps/v1", "Deployment", &op, None)), Ok(Scope::Workload));
        assert_eq!(Scope::of(&subject("batch/v1", "CronJob", &op, None)), Ok(Scope::Workload));
        assert_eq!(Scope::of(&subject("networking.k8s.io/v1", "NetworkPolicy", &op, None)), Ok(Scope::Policy));
        assert_eq!(
            Scope::of(&subject("networking.k8s.io/v1", "NetworkPolicy", &Operation::Delete, None)),
            Ok(Scope::PolicyDelete)
        );
        assert_eq!(Scope::of(&subject("portcullis.dev/v1alpha1", "EgressIntent", &op, None)), Ok(Scope::Intent));
        assert_eq!(Scope::of(&subject("portcullis.dev/v1alpha1", "StagedPolicy", &op, None)), Ok(Scope::Staged));
        let update = Operation::Update;
        assert!(Scope::of(&subject("portcullis.dev/v1alpha1", "StagedPolicy", &update, Some("status"))).is_err());
        assert!(Scope::of(&subject("portcullis.dev/v1alpha1", "StagedPolicy", &Operation::Delete, None)).is_err());
        assert!(Scope::of(&subject("apps/v1", "Deployment", &Operation::Delete, None)).is_err());
        assert!(Scope::of(&subject("apps/v1", "Deployment", &Operation::Update, Some("status"))).is_err());
        assert!(Scope::of(&subject("v1", "Service", &op, None)).is_err());
        assert!(Scope::of(&subject("v1", "Namespace", &op, None)).is_err());
    }
}
