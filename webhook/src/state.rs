//! Cluster state the admission decisions need: namespace labels, NetworkPolicies and
//! EgressIntents, indexed by namespace.
//!
//! [`ClusterState`] is the seam between the pure decision code and the cluster. Two
//! implementations: [`StaticState`] (a manifest directory, for `serve --dev` and tests) and
//! [`crate::kube_state::KubeState`] (watches on the API server). Both keep their objects in an
//! [`Index`], filled by the same watcher-event logic.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use futures::future::BoxFuture;
use k8s_openapi::api::networking::v1::NetworkPolicySpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use portcullis_linter::load::DocumentRef;
use portcullis_linter::load::Limits;
use portcullis_linter::load::fs::{Input, read_each};
use portcullis_linter::model::inventory::ScannedObject;
use portcullis_linter::model::{Kind, Labels, lookup};
use portcullis_linter::project::Project;
use portcullis_linter::semantics::selector_matches;
use serde::Deserialize as _;
use serde_json::Value;

/// A stored object: compact JSON text, shared between the cache and the reviews that read
/// it. A parsed `serde_json::Value` of a NetworkPolicy takes several times the memory of its
/// text (10,000 policies: ~110 MB as values, ~20 MB as text); a review parses the few it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject(Arc<str>);

impl StoredObject {
    pub fn new(value: Value) -> StoredObject {
        // Serializing a Value cannot fail (string keys, no non-finite numbers).
        StoredObject(Arc::from(serde_json::to_string(&value).unwrap_or_default()))
    }

    /// Whether both are the one shared text (not merely equal texts).
    pub fn same(&self, other: &StoredObject) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The shared text's address: an identity while a clone of this value is held.
    pub fn address(&self) -> usize {
        Arc::as_ptr(&self.0).cast::<u8>() as usize
    }

    /// The object, parsed for a review to own (`Null` in the impossible unparseable case).
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

/// A stored NetworkPolicy: its name, its compact JSON text split in two, and its `podSelector`
/// typed once when the policy arrives, so a review reads only the policies that can select its
/// pods (issue 22: a review's cost follows the object, not the size of its namespace).
///
/// The text is kept as the object without its spec (apiVersion, kind, metadata without what no
/// review reads) and the spec, which is shared: policies generated from one template (the same
/// spec in every namespace, the usual case in large clusters) hold one copy of it and of its
/// typed selector (`SharedSpec::intern`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPolicy(Arc<PolicyEntry>);

#[derive(Debug)]
struct PolicyEntry {
    /// The object without `spec`, compact JSON.
    head: Box<str>,
    name: Box<str>,
    /// `None` for an object without a spec.
    spec: Option<Arc<SharedSpec>>,
    /// Read the way reviews read every policy before the index (every review, through a
    /// `Value`): the reference `tests/index.rs` compares the index with.
    reference: bool,
    /// The head in the engine's types, read by the first review that adds the policy while
    /// fewer than [`MAX_TYPED_HEADS`] are held (a review used to read it from the text, a
    /// tenth of a Deployment review's instructions for its three policies).
    typed_head: Held<TypedHead>,
}

impl PartialEq for PolicyEntry {
    fn eq(&self, other: &PolicyEntry) -> bool {
        // The typed head is the head, read.
        self.head == other.head
            && self.name == other.name
            && self.spec == other.spec
            && self.reference == other.reference
    }
}

/// A stored policy's `apiVersion`, `kind` and `metadata` in the engine's types.
#[derive(Debug)]
struct TypedHead {
    api_version: String,
    kind: String,
    meta: ObjectMeta,
}

/// How many heads may be held typed at once: one per policy reviews read (metadata as the
/// cache keeps it, ~0.5-1 KB typed), so at most ~8 MB whatever the cluster holds. Beyond it,
/// a review reads the head from its text.
pub const MAX_TYPED_HEADS: usize = 8192;

/// Heads held typed now ([`StoredPolicy::typed`]).
static TYPED_HEADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A policy's spec as compact JSON, with its `podSelector` typed, and the whole spec typed once
/// a review has read it (within [`MAX_TYPED_SPECS`]).
#[derive(Debug)]
struct SharedSpec {
    text: Box<str>,
    /// `None` when the selector is not a valid LabelSelector: the engine reports such a policy,
    /// so it is read for every review.
    selector: Option<CompactSelector>,
    /// The spec in the engine's types, lent to every review that reads it (issue 22: typing
    /// the namespace's policies again for each review was a third of its time). Set by the
    /// first review that reads the spec while fewer than [`MAX_TYPED_SPECS`] are held.
    /// With the counter it was counted on.
    typed: Held<NetworkPolicySpec>,
}

/// A value read once and lent to every review after, while fewer than a process-wide bound
/// are held; beyond the bound, read again by each review that needs it. The place is freed
/// when the cell is dropped.
#[derive(Debug)]
struct Held<T>(std::sync::OnceLock<(Arc<T>, &'static std::sync::atomic::AtomicUsize)>);

impl<T> Default for Held<T> {
    fn default() -> Self {
        Held(std::sync::OnceLock::new())
    }
}

impl<T> Held<T> {
    /// The value held, or `read` (`None`: nothing to hold), held if `count` is below `max`.
    fn get_or_read(
        &self,
        count: &'static std::sync::atomic::AtomicUsize,
        max: usize,
        read: impl FnOnce() -> Option<T>,
    ) -> Option<Arc<T>> {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some((value, _)) = self.0.get() {
            return Some(Arc::clone(value));
        }
        let value = Arc::new(read()?);
        if count.fetch_add(1, Relaxed) < max {
            if self.0.set((Arc::clone(&value), count)).is_err() {
                // Another review held it first.
                count.fetch_sub(1, Relaxed);
            }
        } else {
            count.fetch_sub(1, Relaxed);
        }
        Some(value)
    }
}

impl<T> Drop for Held<T> {
    fn drop(&mut self) {
        if let Some((_, count)) = self.0.get() {
            count.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl PartialEq for SharedSpec {
    fn eq(&self, other: &SharedSpec) -> bool {
        // The typed spec is the text, read.
        self.text == other.text && self.selector == other.selector
    }
}

/// How many specs may be held typed at once. A typed spec takes several times its text (a
/// policy of three selectors: ~2 KB against ~400 bytes), so the bound keeps a cluster of
/// distinct specs within ~8 MB more; templated clusters (one spec in every namespace) hold
/// few. Beyond it, a review types the spec from its text as before.
pub const MAX_TYPED_SPECS: usize = 4096;

/// Specs held typed now ([`SharedSpec::typed`]).
static TYPED_SPECS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The specs stored policies share, by a hash of their text (the text itself is kept once, in
/// the spec). Entries die with their last policy; the dead are swept when the table has grown
/// to twice the live entries, so it stays within twice the live specs. The hash keys are random
/// per process, so a client cannot aim many specs at one bucket.
static SPECS: std::sync::LazyLock<std::sync::Mutex<SpecTable>> = std::sync::LazyLock::new(Default::default);

#[derive(Default)]
struct SpecTable {
    hasher: std::hash::RandomState,
    specs: HashMap<u64, std::sync::Weak<SharedSpec>>,
    /// Live entries after the last sweep.
    live: usize,
}

impl SharedSpec {
    /// The shared spec for `text`, made (and its selector typed) when no live policy holds it.
    /// Two texts with one hash (random keys: by chance only) are both kept, the second unshared.
    fn intern(text: String) -> Arc<SharedSpec> {
        use std::hash::BuildHasher as _;
        let mut table = SPECS.lock().unwrap_or_else(PoisonError::into_inner);
        let hash = table.hasher.hash_one(text.as_str());
        let held = table.specs.get(&hash).and_then(std::sync::Weak::upgrade);
        if let Some(spec) = &held
            && *spec.text == *text
        {
            return Arc::clone(spec);
        }
        let spec = Arc::new(SharedSpec::new(text.into_boxed_str()));
        if held.is_none() {
            if table.specs.len() >= 2 * table.live.max(512) {
                table.specs.retain(|_, spec| spec.strong_count() > 0);
                table.live = table.specs.len();
            }
            table.specs.insert(hash, Arc::downgrade(&spec));
        }
        spec
    }

    fn new(text: Box<str>) -> SharedSpec {
        // An absent podSelector selects every pod, as in the engine.
        #[derive(serde::Deserialize)]
        struct Selector {
            #[serde(rename = "podSelector")]
            pod_selector: Option<Value>,
        }
        let selector = match serde_json::from_str::<Selector>(&text).map(|s| s.pod_selector) {
            Ok(None | Some(Value::Null)) => Some(LabelSelector::default()),
            Ok(Some(selector)) => LabelSelector::deserialize(selector).ok(),
            Err(_) => None,
        };
        SharedSpec { text, selector: selector.map(CompactSelector::new), typed: Held::default() }
    }

    /// The spec typed: held when it was read before, else read from the text and held while
    /// fewer than [`MAX_TYPED_SPECS`] are. `None` when the text is not a spec (`null`, or
    /// what the engine must report: the review then reads the value).
    fn typed(&self) -> Option<Arc<NetworkPolicySpec>> {
        self.typed_within(&TYPED_SPECS, MAX_TYPED_SPECS)
    }

    /// [`SharedSpec::typed`], `held` counting the specs held typed, at most `max`.
    fn typed_within(
        &self,
        held: &'static std::sync::atomic::AtomicUsize,
        max: usize,
    ) -> Option<Arc<NetworkPolicySpec>> {
        self.typed.get_or_read(held, max, || serde_json::from_str::<Option<NetworkPolicySpec>>(&self.text).ok()?)
    }
}

const API_VERSION: &str = "networking.k8s.io/v1";
const KIND: &str = "NetworkPolicy";

/// Leaves out the usual `apiVersion` and `kind` (55 bytes per policy); [`restore_type`] puts
/// them back. Any other pair is kept as written.
fn elide_type(value: &mut Value) {
    if let Some(object) = value.as_object_mut()
        && object.get("apiVersion").and_then(Value::as_str) == Some(API_VERSION)
        && object.get("kind").and_then(Value::as_str) == Some(KIND)
    {
        object.shift_remove("apiVersion");
        object.shift_remove("kind");
    }
}

/// The annotation `kubectl apply` keeps the whole last applied object in.
pub(crate) const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Metadata no review reads, which in a real cluster can be larger than the spec: the managed
/// fields, the last applied configuration (the whole object again), and the server's
/// bookkeeping. Also what a fix shows a person leaves out.
pub(crate) fn slim_metadata(value: &mut Value) {
    if let Some(Value::Object(meta)) = value.get_mut("metadata") {
        // `shift_remove` keeps the other keys in the order the client wrote them (`remove`
        // moves the last key into the hole), so what a fix shows does not depend on which of
        // these the cluster had set (the decision memo leaves them out of its key).
        for key in ["managedFields", "uid", "resourceVersion", "creationTimestamp", "generation", "selfLink"] {
            meta.shift_remove(key);
        }
        if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
            annotations.shift_remove(LAST_APPLIED);
            if annotations.is_empty() {
                meta.shift_remove("annotations");
            }
        }
    }
}

impl StoredPolicy {
    pub fn new(mut value: Value) -> StoredPolicy {
        let spec = value.as_object_mut().and_then(|o| o.shift_remove("spec"));
        let name = lookup(&value, "/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
        slim_metadata(&mut value);
        elide_type(&mut value);
        // An object without a spec has the selector of an empty one (every pod), like the
        // engine's reading; `Null` is written as such.
        StoredPolicy::from_text(
            serde_json::to_string(&value).unwrap_or_default(),
            name,
            spec.map(|spec| serde_json::to_string(&spec).unwrap_or_default()),
        )
    }

    /// A policy from the compact JSON texts [`StoredPolicy::new`] writes: its object without
    /// `spec`, slimmed, and its spec (`None`: the object has no `spec`); and its name. The watch
    /// reads policies straight into these texts, without building a `Value`.
    pub(crate) fn from_text(head: String, name: String, spec: Option<String>) -> StoredPolicy {
        StoredPolicy(Arc::new(PolicyEntry {
            head: head.into(),
            name: name.into(),
            spec: spec.map(SharedSpec::intern),
            reference: false,
            typed_head: Held::default(),
        }))
    }

    /// A policy every review reads, whatever pods it selects, through a `Value`: how reviews
    /// read every policy before the index, kept to compare against (`tests/index.rs`).
    pub fn read_always(mut value: Value) -> StoredPolicy {
        let name = lookup(&value, "/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let spec = value.as_object_mut().and_then(|o| o.shift_remove("spec"));
        let spec = spec.map(|spec| {
            let text: Box<str> = serde_json::to_string(&spec).unwrap_or_default().into();
            Arc::new(SharedSpec { text, selector: None, typed: Held::default() })
        });
        StoredPolicy(Arc::new(PolicyEntry {
            head: serde_json::to_string(&value).unwrap_or_default().into(),
            name: name.into(),
            spec,
            reference: true,
            typed_head: Held::default(),
        }))
    }

    /// The policy, parsed for a review to own (`Null` in the impossible unparseable case).
    pub fn value(&self) -> Value {
        let head: Value = serde_json::from_str(&self.0.head).unwrap_or(Value::Null);
        let Value::Object(head) = head else { return head };
        let mut value = serde_json::Map::new();
        if !head.contains_key("apiVersion") && !head.contains_key("kind") {
            value.insert("apiVersion".to_owned(), Value::from(API_VERSION));
            value.insert("kind".to_owned(), Value::from(KIND));
        }
        value.extend(head);
        if let Some(spec) = &self.0.spec {
            value.insert("spec".to_owned(), serde_json::from_str(&spec.text).unwrap_or(Value::Null));
        }
        Value::Object(value)
    }

    /// The policy read from its text straight into the engine's types (no `Value` between), as
    /// a review's inventory takes it; `None` when the text does not type (then the review adds
    /// [`StoredPolicy::value`], and the engine reports what is wrong exactly as before).
    pub fn typed(&self, at: DocumentRef) -> Option<ScannedObject> {
        if self.0.reference {
            return None;
        }
        let head = self.0.typed_head.get_or_read(&TYPED_HEADS, MAX_TYPED_HEADS, || self.read_head())?;
        let spec = match &self.0.spec {
            // `null`: no spec, as an absent one.
            Some(spec) if &*spec.text == "null" => None,
            Some(spec) => Some(spec.typed()?),
            None => None,
        };
        ScannedObject::network_policy(at, head.api_version.clone(), head.kind.clone(), head.meta.clone(), spec)
    }

    /// The head read from its text; `None` when the value path must read the policy.
    fn read_head(&self) -> Option<TypedHead> {
        #[derive(serde::Deserialize)]
        struct Head {
            #[serde(rename = "apiVersion")]
            api_version: Option<String>,
            kind: Option<String>,
            metadata: Option<ObjectMeta>,
        }
        let head: Head = serde_json::from_str(&self.0.head).ok()?;
        let (api_version, kind) = match (head.api_version, head.kind) {
            (None, None) => (API_VERSION.to_owned(), KIND.to_owned()),
            (Some(api_version), Some(kind)) => (api_version, kind),
            // One without the other: the value path reports it.
            _ => return None,
        };
        Some(TypedHead { api_version, kind, meta: head.metadata.unwrap_or_default() })
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Whether the policy may select a pod with `labels` (exactly the engine's selection, and
    /// always for a selector the engine cannot read).
    pub fn may_select(&self, labels: &Labels) -> bool {
        // No spec: an empty podSelector, every pod.
        self.0.spec.as_ref().and_then(|spec| spec.selector.as_ref()).is_none_or(|s| s.matches(labels))
    }

    /// A label pair every pod the policy may select carries: the first `matchLabels` pair of a
    /// selector of pairs only. `None` when there is none to rely on (an empty selector, one
    /// with expressions, one the engine cannot read, or no spec).
    fn required_pair(&self) -> Option<(&str, &str)> {
        match self.0.spec.as_ref()?.selector.as_ref()? {
            CompactSelector::Labels(pairs) => pairs.first().map(|(k, v)| (&**k, &**v)),
            CompactSelector::Full(_) => None,
        }
    }
}

/// A namespace's NetworkPolicies in name order, compiled once per change for the reviews that
/// read them: the policies that may select a pod are found through a label pair each one
/// requires, not by matching every policy of the namespace (issue 22: a review touches only
/// the policies that can select its pods). Cloning is one reference count.
#[derive(Debug, Clone, Default)]
pub struct PolicySet(Option<Arc<CompiledPolicies>>);

#[derive(Debug)]
struct CompiledPolicies {
    policies: Box<[StoredPolicy]>,
    /// Positions of the policies no pair narrows ([`StoredPolicy::required_pair`] is `None`):
    /// read for every pod.
    unindexed: Box<[usize]>,
    /// The others' positions by a hash of their required pair, sorted by hash. Two pairs may
    /// share a hash (by chance only: the keys are random per process); candidates are read
    /// once each and matched in full, so a shared hash costs a match, never a wrong answer.
    by_pair: Box<[(u64, usize)]>,
    /// Unique in the process ([`PolicySet::id`]).
    id: u64,
}

/// The next [`CompiledPolicies::id`]; 0 is the empty set's.
static NEXT_SET_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The hash keys of [`CompiledPolicies::by_pair`], random per process so no client can aim
/// many pairs at one hash.
static PAIR_HASHER: std::sync::LazyLock<std::hash::RandomState> = std::sync::LazyLock::new(Default::default);

fn pair_hash(key: &str, value: &str) -> u64 {
    use std::hash::BuildHasher as _;
    PAIR_HASHER.hash_one((key, value))
}

impl PolicySet {
    /// The compiled set's identity: unique in the process, never reused (0 for the empty set).
    /// Two sets with one id are the one compiled set, and hold the same policies. Remembering
    /// an id keeps nothing alive (the decision memo keys on it).
    pub fn id(&self) -> u64 {
        self.0.as_ref().map_or(0, |c| c.id)
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |c| c.policies.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every policy, in name order.
    pub fn iter(&self) -> std::slice::Iter<'_, StoredPolicy> {
        self.0.as_ref().map_or(&[][..], |c| &c.policies[..]).iter()
    }

    /// The policies that may select a pod with `labels` ([`StoredPolicy::may_select`]), in
    /// name order.
    pub fn selecting<'a>(&'a self, labels: &'a Labels) -> impl Iterator<Item = &'a StoredPolicy> + 'a {
        let mut at: Vec<usize> = Vec::new();
        if let Some(c) = &self.0 {
            at.extend_from_slice(&c.unindexed);
            for (key, value) in labels {
                let hash = pair_hash(key, value);
                let start = c.by_pair.partition_point(|(h, _)| *h < hash);
                at.extend(
                    c.by_pair.get(start..).unwrap_or(&[]).iter().take_while(|(h, _)| *h == hash).map(|(_, i)| *i),
                );
            }
            at.sort_unstable();
            // Two of the pod's pairs sharing a hash find the same candidates twice.
            at.dedup();
        }
        let policies = self.0.as_ref().map_or(&[][..], |c| &c.policies[..]);
        at.into_iter().filter_map(|i| policies.get(i)).filter(move |p| p.may_select(labels))
    }
}

impl FromIterator<StoredPolicy> for PolicySet {
    fn from_iter<I: IntoIterator<Item = StoredPolicy>>(iter: I) -> PolicySet {
        let policies: Box<[StoredPolicy]> = iter.into_iter().collect();
        if policies.is_empty() {
            return PolicySet(None);
        }
        let mut unindexed = Vec::new();
        let mut by_pair = Vec::new();
        for (position, policy) in policies.iter().enumerate() {
            match policy.required_pair() {
                Some((key, value)) => by_pair.push((pair_hash(key, value), position)),
                None => unindexed.push(position),
            }
        }
        by_pair.sort_unstable();
        let id = NEXT_SET_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        PolicySet(Some(Arc::new(CompiledPolicies {
            policies,
            unindexed: unindexed.into(),
            by_pair: by_pair.into(),
            id,
        })))
    }
}

impl From<Vec<StoredPolicy>> for PolicySet {
    fn from(policies: Vec<StoredPolicy>) -> PolicySet {
        policies.into_iter().collect()
    }
}

/// A `podSelector` as a stored policy keeps it: the usual `matchLabels`-only selector as a
/// boxed slice of pairs (a `BTreeMap`'s node is ~540 bytes, ~100 MB over 100,000 policies);
/// anything with `matchExpressions` whole, matched by the engine's `selector_matches`.
#[derive(Debug, PartialEq)]
enum CompactSelector {
    /// Every pair must be among the pod's labels.
    Labels(Box<[(Box<str>, Box<str>)]>),
    Full(Box<LabelSelector>),
}

impl CompactSelector {
    fn new(selector: LabelSelector) -> CompactSelector {
        if selector.match_expressions.as_ref().is_some_and(|e| !e.is_empty()) {
            return CompactSelector::Full(Box::new(selector));
        }
        let pairs = selector.match_labels.unwrap_or_default().into_iter().map(|(k, v)| (k.into(), v.into()));
        CompactSelector::Labels(pairs.collect())
    }

    /// Exactly `selector_matches` of the selector this was made from.
    fn matches(&self, labels: &Labels) -> bool {
        match self {
            CompactSelector::Labels(pairs) => {
                pairs.iter().all(|(k, v)| labels.get(&**k).is_some_and(|have| **have == **v))
            }
            CompactSelector::Full(selector) => selector_matches(selector, labels),
        }
    }
}

/// What a review needs of a Namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// Its labels, `kubernetes.io/metadata.name` included: shared with the reviews'
    /// snapshots.
    pub labels: Arc<Labels>,
    /// Being deleted (`deletionTimestamp` set or phase `Terminating`): the namespace controller
    /// is removing its objects, and nothing in it is ever denied.
    pub terminating: bool,
}

impl NamespaceInfo {
    /// From a Namespace object as JSON (the API server's, or a manifest).
    pub fn from_value(value: &Value, labels: Labels) -> NamespaceInfo {
        let terminating = lookup(value, "/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
            || lookup(value, "/status/phase").and_then(Value::as_str) == Some("Terminating");
        NamespaceInfo { labels: Arc::new(labels), terminating }
    }
}

/// What one admission decision sees of the cluster.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Labels of the reviewed namespace (`None` when the namespace is unknown).
    pub namespace_labels: Option<Arc<Labels>>,
    /// Whether the reviewed namespace is being deleted.
    pub namespace_terminating: bool,
    /// Labels of the namespace cluster DNS runs in.
    pub dns_namespace_labels: Option<Arc<Labels>>,
    /// The namespace's NetworkPolicies, as the API server returns them.
    pub policies: PolicySet,
    /// The namespace's EgressIntents.
    pub intents: Vec<StoredObject>,
    /// Objects of the other policy layers that can apply here: every cluster-scoped one
    /// (ClusterNetworkPolicies, Cilium clusterwide and Calico global policies, Tiers, global
    /// network sets) and the namespace's own (Cilium and Calico namespaced kinds).
    pub layers: Vec<StoredObject>,
    /// Every namespace's default-deny state, for the review of deleting a cluster-scoped layer
    /// object (filled only for such a request).
    pub cluster: Option<Arc<ClusterView>>,
}

/// What deciding every namespace's default deny needs: each namespace's labels, the
/// NetworkPolicies that may select a pod without labels (a default-deny has an empty
/// `podSelector`), and its namespaced layer objects.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub namespaces: Vec<NamespaceView>,
}

/// One namespace of a [`ClusterView`].
#[derive(Debug, Clone, Default)]
pub struct NamespaceView {
    pub name: String,
    pub labels: Labels,
    pub policies: Vec<StoredPolicy>,
    pub layers: Vec<StoredObject>,
}

/// Object counts, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sizes {
    pub namespaces: usize,
    pub policies: usize,
    pub intents: usize,
    /// Objects of the other policy layers.
    pub layer_objects: usize,
}

/// Why fresh state could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading NetworkPolicies of namespace {namespace}: {message}")]
pub struct StateError {
    pub namespace: String,
    pub message: String,
}

/// A namespace read fresh from the source of truth.
#[derive(Debug, Clone, Default)]
pub struct Fresh {
    pub policies: Vec<StoredPolicy>,
    /// The other layers' objects ([`Snapshot::layers`]) read fresh; `None` when no layer is
    /// watched (the snapshot's, empty, stand).
    pub layers: Option<Vec<StoredObject>>,
    /// Whether the namespace is being deleted (its deletion may not have reached the cache).
    pub terminating: bool,
}

/// The cluster as the webhook sees it.
pub trait ClusterState: Send + Sync + std::fmt::Debug {
    /// The state of `namespace` (and the DNS namespace's labels) from the cache.
    fn snapshot(&self, namespace: &str, dns_namespace: &str) -> Snapshot;

    /// The namespace and its NetworkPolicies read fresh from the source of truth, bypassing the
    /// cache. Called before every denial that depends on cluster state, so a stale cache never
    /// rejects a correct apply nor a terminating namespace's cleanup.
    fn fresh<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Fresh, StateError>>;

    /// Every namespace's default-deny state from the cache ([`ClusterView`]).
    fn cluster_view(&self) -> ClusterView;

    /// Whether the cache is complete (every watch listed once).
    fn ready(&self) -> bool;

    /// Every object the cache holds, as values: each Namespace (name and labels), each
    /// NetworkPolicy and each other layer's object. What replaying traffic against a staged
    /// policy needs to judge it as the cluster would.
    fn objects(&self) -> Vec<Value>;

    fn sizes(&self) -> Sizes;
}

/// One kind of object, by namespace then name, with reflector semantics: during a relist the
/// new objects are buffered and swapped in when the list is complete.
#[derive(Debug)]
pub struct KindIndex<T> {
    live: HashMap<String, BTreeMap<String, T>>,
    relist: Option<HashMap<String, BTreeMap<String, T>>>,
    synced: bool,
    len: usize,
}

impl<T> Default for KindIndex<T> {
    fn default() -> Self {
        KindIndex { live: HashMap::new(), relist: None, synced: false, len: 0 }
    }
}

/// A watcher event reduced to what the index needs (mirrors `kube::runtime::watcher::Event`).
#[derive(Debug, Clone, PartialEq)]
pub enum IndexEvent<T> {
    Apply { namespace: String, name: String, value: T },
    Delete { namespace: String, name: String },
    Init,
    InitApply { namespace: String, name: String, value: T },
    InitDone,
}

impl<T: Clone> KindIndex<T> {
    /// Applies one event. The object count is kept incrementally: an event costs one map
    /// operation, not a walk over every namespace.
    pub fn apply(&mut self, event: IndexEvent<T>) {
        match event {
            IndexEvent::Apply { namespace, name, value } => {
                if self.live.entry(namespace).or_default().insert(name, value).is_none() {
                    self.len += 1;
                }
            }
            IndexEvent::Delete { namespace, name } => {
                if let Some(ns) = self.live.get_mut(&namespace) {
                    if ns.remove(&name).is_some() {
                        self.len -= 1;
                    }
                    if ns.is_empty() {
                        self.live.remove(&namespace);
                    }
                }
            }
            IndexEvent::Init => self.relist = Some(HashMap::new()),
            IndexEvent::InitApply { namespace, name, value } => {
                self.relist.get_or_insert_with(HashMap::new).entry(namespace).or_default().insert(name, value);
            }
            IndexEvent::InitDone => {
                self.live = self.relist.take().unwrap_or_default();
                self.len = self.live.values().map(BTreeMap::len).sum();
                self.synced = true;
            }
        }
    }

    /// Every object, namespace by namespace.
    pub fn all(&self) -> impl Iterator<Item = (&str, &str, &T)> {
        self.live.iter().flat_map(|(ns, m)| m.iter().map(move |(name, v)| (ns.as_str(), name.as_str(), v)))
    }

    pub fn in_namespace(&self, namespace: &str) -> Vec<T> {
        self.live.get(namespace).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<&T> {
        self.live.get(namespace).and_then(|m| m.get(name))
    }

    pub fn synced(&self) -> bool {
        self.synced
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The NetworkPolicies by namespace ([`KindIndex`]), and each namespace's [`PolicySet`]
/// compiled by the first review after a change to it and shared by the reviews until the next.
#[derive(Debug, Default)]
pub struct PolicyIndex {
    objects: KindIndex<StoredPolicy>,
    /// One cell per namespace holding policies, emptied by every change to the namespace.
    sets: HashMap<String, std::sync::OnceLock<PolicySet>>,
}

impl PolicyIndex {
    /// Applies one event ([`KindIndex::apply`]) and forgets the compiled sets it changes.
    pub fn apply(&mut self, event: IndexEvent<StoredPolicy>) {
        let changed = match &event {
            IndexEvent::Apply { namespace, .. } | IndexEvent::Delete { namespace, .. } => Some(namespace.clone()),
            // A relist is buffered until it is complete.
            IndexEvent::Init | IndexEvent::InitApply { .. } => return self.objects.apply(event),
            IndexEvent::InitDone => None,
        };
        self.objects.apply(event);
        match changed {
            Some(namespace) if self.objects.live.contains_key(&namespace) => {
                self.sets.insert(namespace, std::sync::OnceLock::new());
            }
            Some(namespace) => {
                self.sets.remove(&namespace);
            }
            // The relist replaced every namespace.
            None => {
                self.sets = self.objects.live.keys().map(|ns| (ns.clone(), std::sync::OnceLock::new())).collect();
            }
        }
    }

    /// The namespace's policies, compiled.
    pub fn set(&self, namespace: &str) -> PolicySet {
        let compile = || self.objects.live.get(namespace).map(|m| m.values().cloned().collect()).unwrap_or_default();
        match self.sets.get(namespace) {
            Some(cell) => cell.get_or_init(compile).clone(),
            None => compile(),
        }
    }
}

impl std::ops::Deref for PolicyIndex {
    type Target = KindIndex<StoredPolicy>;

    fn deref(&self) -> &KindIndex<StoredPolicy> {
        &self.objects
    }
}

/// Reads a lock; a writer that panicked left a consistent index (every event is applied whole),
/// so a poisoned lock is read as is.
pub fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Writes a lock (see [`read`] on poisoning).
pub fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// Namespaces, policies and intents. Namespaces are cluster-scoped: they live under `""`.
#[derive(Debug, Default)]
pub struct Index {
    pub namespaces: RwLock<KindIndex<Arc<NamespaceInfo>>>,
    pub policies: RwLock<PolicyIndex>,
    pub intents: RwLock<KindIndex<StoredObject>>,
    /// The other policy layers' objects, one index per kind (`group/Kind`) so each watch
    /// relists its own; cluster-scoped objects live under `""`.
    pub layers: RwLock<BTreeMap<String, KindIndex<StoredObject>>>,
}

impl Index {
    pub fn snapshot(&self, namespace: &str, dns_namespace: &str) -> Snapshot {
        let namespaces = read(&self.namespaces);
        let info = namespaces.get("", namespace);
        Snapshot {
            namespace_labels: info.map(|i| Arc::clone(&i.labels)),
            namespace_terminating: info.is_some_and(|i| i.terminating),
            dns_namespace_labels: namespaces.get("", dns_namespace).map(|i| Arc::clone(&i.labels)),
            policies: read(&self.policies).set(namespace),
            intents: read(&self.intents).in_namespace(namespace),
            layers: self.layers_for(namespace),
            cluster: None,
        }
    }

    /// [`ClusterView`] from the index.
    pub fn cluster_view(&self) -> ClusterView {
        let namespaces = read(&self.namespaces);
        let policies = read(&self.policies);
        let layers = read(&self.layers);
        let no_labels = Labels::new();
        let mut names: Vec<&String> = namespaces.live.get("").map(|m| m.keys().collect()).unwrap_or_default();
        names.sort();
        let namespaces = names
            .into_iter()
            .map(|name| {
                let labels = namespaces.get("", name).map(|i| Labels::clone(&i.labels)).unwrap_or_default();
                let policies = policies.in_namespace(name).into_iter().filter(|p| p.may_select(&no_labels)).collect();
                let layers = layers.values().flat_map(|index| index.in_namespace(name)).collect();
                NamespaceView { name: name.clone(), labels, policies, layers }
            })
            .collect();
        ClusterView { namespaces }
    }

    /// See [`ClusterState::objects`].
    pub fn objects(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for (_, name, info) in read(&self.namespaces).all() {
            out.push(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": *info.labels}}));
        }
        out.extend(read(&self.policies).all().map(|(_, _, p)| p.value()));
        for index in read(&self.layers).values() {
            out.extend(index.all().map(|(_, _, o)| o.value()));
        }
        out
    }

    /// [`Snapshot::layers`] for a namespace.
    pub fn layers_for(&self, namespace: &str) -> Vec<StoredObject> {
        let layers = read(&self.layers);
        let mut out = Vec::new();
        for index in layers.values() {
            out.extend(index.in_namespace(""));
            if !namespace.is_empty() {
                out.extend(index.in_namespace(namespace));
            }
        }
        out
    }

    pub fn synced(&self) -> bool {
        read(&self.namespaces).synced()
            && read(&self.policies).synced()
            && read(&self.intents).synced()
            && read(&self.layers).values().all(KindIndex::synced)
    }

    pub fn sizes(&self) -> Sizes {
        Sizes {
            namespaces: read(&self.namespaces).len(),
            policies: read(&self.policies).len(),
            intents: read(&self.intents).len(),
            layer_objects: read(&self.layers).values().map(KindIndex::len).sum(),
        }
    }
}

/// State loaded once from a manifest directory: `serve --dev --state DIR`, tests and benchmarks.
#[derive(Debug, Default)]
pub struct StaticState {
    index: Index,
}

impl StaticState {
    /// Loads every manifest under `dir` (as `portcullis lint` would), one file at a time so
    /// only the compact state stays in memory. Objects without a namespace go to `default`.
    /// Returns the state and the number of documents that could not be used (reported by
    /// `portcullis lint DIR`).
    pub fn load(dir: &Path) -> anyhow::Result<(StaticState, usize)> {
        // Files are read and parsed on every core, each in a project of its own that is dropped
        // (with the file's text) once its objects are collected, and merged in the order read:
        // the same state as one by one, holding one file's text per thread.
        let threads = portcullis_linter::parallel::threads(8);
        let read = read_each(&[Input::Path(dir.to_path_buf())], Limits::default(), threads, |file| {
            let mut project = Project::new("default");
            match file.content {
                Ok(text) => {
                    project.add_text(&file.name, text, true);
                }
                Err((position, message)) => {
                    project.add_rejected(&file.name, position, message, true);
                }
            }
            let problems = project.load_problems.len() + project.inventory.problems.len();
            let mut events = Events::default();
            events.collect(&project);
            (events, problems)
        })?;
        let mut events = Events::default();
        let mut problems = 0;
        for (file_events, file_problems) in read {
            events.merge(file_events);
            problems += file_problems;
        }
        Ok((events.into_state(), problems))
    }

    /// Builds the state from already loaded manifests.
    pub fn from_project(project: &Project) -> StaticState {
        let mut events = Events::default();
        events.collect(project);
        events.into_state()
    }

    pub fn index(&self) -> &Index {
        &self.index
    }
}

/// Objects gathered from manifests, then applied as one list (Init … InitDone) per kind.
#[derive(Default)]
struct Events {
    /// Each namespace, with whether a Namespace object defined it.
    namespaces: BTreeMap<String, (Arc<NamespaceInfo>, bool)>,
    policies: Vec<IndexEvent<StoredPolicy>>,
    intents: Vec<IndexEvent<StoredObject>>,
    /// The other layers' objects, by `group/Kind`.
    layers: BTreeMap<String, Vec<IndexEvent<StoredObject>>>,
}

/// Whether a kind belongs to one of the other policy layers.
pub fn is_layer_kind(kind: Kind) -> bool {
    kind.is_cluster_policy()
        || matches!(
            kind,
            Kind::CiliumNetworkPolicy | Kind::CiliumClusterwideNetworkPolicy | Kind::Calico(_) | Kind::Istio(_)
        )
}

/// The index key of a layer object: `group/Kind` from its `apiVersion` and `kind`.
pub fn layer_key(api_version: &str, kind: &str) -> String {
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    format!("{group}/{kind}")
}

impl Events {
    fn collect(&mut self, project: &Project) {
        let inv = &project.inventory;
        for ns in inv.namespaces.values() {
            let info = match ns.object {
                Some(o) => NamespaceInfo::from_value(&inv.object(o).value, ns.labels.clone()),
                None => NamespaceInfo { labels: Arc::new(ns.labels.clone()), terminating: false },
            };
            self.add_namespace(ns.name.clone(), Arc::new(info), ns.object.is_some());
        }
        for o in &inv.objects {
            if is_layer_kind(o.kind) {
                let key = layer_key(&o.id.api_version, &o.id.kind);
                let (namespace, name) = (o.namespace().unwrap_or_default().to_owned(), o.id.name.clone());
                let value = StoredObject::new(o.value.clone());
                self.layers.entry(key).or_default().push(IndexEvent::InitApply { namespace, name, value });
                continue;
            }
            let Some(namespace) = o.namespace() else { continue };
            let (namespace, name) = (namespace.to_owned(), o.id.name.clone());
            match o.kind {
                Kind::NetworkPolicy => {
                    let value = StoredPolicy::new(o.value.clone());
                    self.policies.push(IndexEvent::InitApply { namespace, name, value });
                }
                Kind::EgressIntent => {
                    let value = StoredObject::new(o.value.clone());
                    self.intents.push(IndexEvent::InitApply { namespace, name, value });
                }
                _ => {}
            }
        }
    }

    /// A Namespace object's labels win over a namespace only referenced by objects; otherwise
    /// the first met stays.
    fn add_namespace(&mut self, name: String, info: Arc<NamespaceInfo>, from_object: bool) {
        if from_object || !self.namespaces.contains_key(&name) {
            self.namespaces.insert(name, (info, from_object));
        }
    }

    /// Adds what a later file held, as if it had been collected after this one.
    fn merge(&mut self, later: Events) {
        for (name, (info, from_object)) in later.namespaces {
            self.add_namespace(name, info, from_object);
        }
        self.policies.extend(later.policies);
        self.intents.extend(later.intents);
        for (key, events) in later.layers {
            self.layers.entry(key).or_default().extend(events);
        }
    }

    fn into_state(self) -> StaticState {
        let state = StaticState::default();
        let namespaces = self
            .namespaces
            .into_iter()
            .map(|(name, (value, _))| IndexEvent::InitApply { namespace: String::new(), name, value })
            .collect();
        apply_all(&state.index.namespaces, namespaces);
        apply_all(&state.index.policies, self.policies);
        apply_all(&state.index.intents, self.intents);
        {
            let mut layers = write(&state.index.layers);
            for (key, events) in self.layers {
                let index = layers.entry(key).or_default();
                index.apply(IndexEvent::Init);
                for e in events {
                    index.apply(e);
                }
                index.apply(IndexEvent::InitDone);
            }
        }
        state
    }
}

/// An index that watcher events update: [`KindIndex`] and [`PolicyIndex`].
trait Indexes<T> {
    fn apply_event(&mut self, event: IndexEvent<T>);
}

impl<T: Clone> Indexes<T> for KindIndex<T> {
    fn apply_event(&mut self, event: IndexEvent<T>) {
        self.apply(event);
    }
}

impl Indexes<StoredPolicy> for PolicyIndex {
    fn apply_event(&mut self, event: IndexEvent<StoredPolicy>) {
        self.apply(event);
    }
}

fn apply_all<T, I: Indexes<T>>(index: &RwLock<I>, events: Vec<IndexEvent<T>>) {
    let mut guard = write(index);
    guard.apply_event(IndexEvent::Init);
    for e in events {
        guard.apply_event(e);
    }
    guard.apply_event(IndexEvent::InitDone);
}

impl ClusterState for StaticState {
    fn snapshot(&self, namespace: &str, dns_namespace: &str) -> Snapshot {
        self.index.snapshot(namespace, dns_namespace)
    }

    fn objects(&self) -> Vec<Value> {
        self.index.objects()
    }

    fn cluster_view(&self) -> ClusterView {
        self.index.cluster_view()
    }

    fn fresh<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Fresh, StateError>> {
        // The directory is the source of truth and never changes under us.
        let policies = read(&self.index.policies).in_namespace(namespace);
        let terminating = read(&self.index.namespaces).get("", namespace).is_some_and(|i| i.terminating);
        let layers = Some(self.index.layers_for(namespace));
        Box::pin(async move { Ok(Fresh { policies, layers, terminating }) })
    }

    fn ready(&self) -> bool {
        self.index.synced()
    }

    fn sizes(&self) -> Sizes {
        self.index.sizes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_is_typed_once_and_lent_within_the_bound() {
        use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
        static HELD: AtomicUsize = AtomicUsize::new(0);
        let spec = |port: u16| {
            SharedSpec::new(
                serde_json::json!({"podSelector": {}, "egress": [{"ports": [{"port": port}]}]}).to_string().into(),
            )
        };
        let (a, b, c) = (spec(1), spec(2), spec(3));
        let first = a.typed_within(&HELD, 2).unwrap();
        assert_eq!(first.egress.as_ref().unwrap()[0].ports.as_ref().unwrap().len(), 1);
        assert!(Arc::ptr_eq(&first, &a.typed_within(&HELD, 2).unwrap()), "read once, then lent");
        assert_eq!(HELD.load(Relaxed), 1);
        let second = b.typed_within(&HELD, 2).unwrap();
        assert!(Arc::ptr_eq(&second, &b.typed_within(&HELD, 2).unwrap()));
        // At the bound: typed for the review, not held.
        let third = c.typed_within(&HELD, 2).unwrap();
        assert!(!Arc::ptr_eq(&third, &c.typed_within(&HELD, 2).unwrap()), "beyond the bound, read every time");
        assert_eq!(HELD.load(Relaxed), 2);
        drop(a);
        assert_eq!(HELD.load(Relaxed), 1, "a dropped spec frees its place");
        let now_held = c.typed_within(&HELD, 2).unwrap();
        assert!(Arc::ptr_eq(&now_held, &c.typed_within(&HELD, 2).unwrap()), "the freed place is taken");
        assert_eq!(HELD.load(Relaxed), 2);
        drop((b, c));
        assert_eq!(HELD.load(Relaxed), 0);
    }

    #[test]
    fn a_held_head_reads_as_its_text() {
        let policy = serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "web", "namespace": "a", "labels": {"team": "a"}, "annotations": {"keep": "me"}},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}}});
        let at = DocumentRef::detached(portcullis_linter::load::SourceId(0), 0);
        let stored = StoredPolicy::new(policy.clone());
        let first = format!("{:?}", stored.typed(at).unwrap());
        assert!(stored.0.typed_head.0.get().is_some(), "held once read");
        assert_eq!(format!("{:?}", stored.typed(at).unwrap()), first, "lent as read");
        assert!(first.contains("\"keep\"") && first.contains("\"team\""), "{first}");
        // A type the engine does not read typed goes the value path, read or held.
        let mut beta = policy;
        beta["apiVersion"] = serde_json::json!("networking.k8s.io/v1beta1");
        let beta = StoredPolicy::new(beta);
        assert!(beta.typed(at).is_none() && beta.typed(at).is_none());
        // One of apiVersion and kind without the other: the value path, nothing held.
        let half = StoredPolicy::new(serde_json::json!({"kind": "NetworkPolicy", "metadata": {"name": "x"}}));
        assert!(half.typed(at).is_none() && half.0.typed_head.0.get().is_none());
    }

    #[test]
    fn a_null_or_untyped_spec_is_not_lent() {
        use std::sync::atomic::AtomicUsize;
        static HELD: AtomicUsize = AtomicUsize::new(0);
        assert!(SharedSpec::new("null".into()).typed_within(&HELD, 8).is_none());
        assert!(SharedSpec::new(r#"{"podSelector": 7}"#.into()).typed_within(&HELD, 8).is_none());
        assert_eq!(HELD.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[test]
    fn the_usual_type_is_left_out_and_put_back_and_any_other_kept() {
        let policy = |api_version: &str| {
            serde_json::json!({"apiVersion": api_version, "kind": "NetworkPolicy",
                "metadata": {"name": "x", "namespace": "a"}, "spec": {"podSelector": {}}})
        };
        for api_version in ["networking.k8s.io/v1", "networking.k8s.io/v1beta1"] {
            let stored = StoredPolicy::new(policy(api_version));
            assert_eq!(stored.0.head.contains("apiVersion"), api_version != API_VERSION, "{}", stored.0.head);
            assert_eq!(stored.value(), policy(api_version));
        }
    }

    #[test]
    fn policies_of_one_template_share_their_spec_and_keep_what_reviews_read() {
        let policy = |ns: &str| {
            serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "app", "namespace": ns, "uid": "u", "resourceVersion": "7",
                    "labels": {"team": ns},
                    "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"big\": 1}", "keep": "me"}},
                "spec": {"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"]}})
        };
        let (a, b) = (StoredPolicy::new(policy("a")), StoredPolicy::new(policy("b")));
        let (sa, sb) = (a.0.spec.as_ref().unwrap(), b.0.spec.as_ref().unwrap());
        assert!(Arc::ptr_eq(sa, sb), "one template, one spec");
        // What no review reads is gone; the rest reads back whole.
        let value = a.value();
        assert_eq!(value["metadata"]["annotations"], serde_json::json!({"keep": "me"}));
        assert_eq!(value["metadata"]["labels"], serde_json::json!({"team": "a"}));
        assert!(value["metadata"].get("uid").is_none() && value["metadata"].get("resourceVersion").is_none());
        assert_eq!(value["spec"], policy("a")["spec"]);
        assert_eq!(a.name(), "app");
        let labels = |app: &str| Labels::from([("app".to_owned(), app.to_owned())]);
        assert!(a.may_select(&labels("a")) && !a.may_select(&labels("b")));
        // A spec no live policy holds is made again, not found dead.
        drop((a, b));
        let c = StoredPolicy::new(policy("c"));
        assert!(c.may_select(&labels("a")));
        // No spec: every pod, as the engine reads it.
        let mut bare = policy("d");
        bare.as_object_mut().unwrap().remove("spec");
        assert!(StoredPolicy::new(bare).may_select(&labels("z")));
    }

    fn stored(name: &str, spec: Option<Value>) -> StoredPolicy {
        let mut policy = serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "a"}});
        if let Some(spec) = spec {
            policy["spec"] = spec;
        }
        StoredPolicy::new(policy)
    }

    fn names<'a>(policies: impl Iterator<Item = &'a StoredPolicy>) -> Vec<&'a str> {
        policies.map(StoredPolicy::name).collect()
    }

    /// The expected selections are the NetworkPolicy reference's: a podSelector selects a pod
    /// when every `matchLabels` pair is among its labels and every expression holds; an empty
    /// one (or no spec) selects every pod. A selector the engine cannot read is read for
    /// every pod, so the engine reports it.
    #[test]
    fn a_compiled_set_finds_the_policies_that_may_select_a_pod_in_name_order() {
        let selector = |s: Value| Some(serde_json::json!({"podSelector": s}));
        let set: PolicySet = [
            stored("all", selector(serde_json::json!({}))),
            stored("bad", selector(serde_json::json!({"matchLabels": "app=web"}))),
            stored("empty-value", selector(serde_json::json!({"matchLabels": {"tier": ""}}))),
            stored("expr", selector(serde_json::json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "db"]}]}))),
            stored("no-spec", None),
            stored("prod", selector(serde_json::json!({"matchLabels": {"env": "prod"}}))),
            stored("web", selector(serde_json::json!({"matchLabels": {"app": "web"}}))),
            stored("web-prod", selector(serde_json::json!({"matchLabels": {"app": "web", "env": "prod"}}))),
            stored("web-staging", selector(serde_json::json!({"matchLabels": {"env": "staging", "app": "web"}}))),
        ]
        .into_iter()
        .collect();
        let pod =
            |pairs: &[(&str, &str)]| -> Labels { pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() };
        let cases: [(Labels, &[&str]); 7] = [
            (pod(&[("app", "web")]), &["all", "bad", "expr", "no-spec", "web"]),
            (pod(&[("app", "web"), ("env", "prod")]), &["all", "bad", "expr", "no-spec", "prod", "web", "web-prod"]),
            (pod(&[("env", "prod")]), &["all", "bad", "no-spec", "prod"]),
            (pod(&[("app", "web"), ("env", "staging")]), &["all", "bad", "expr", "no-spec", "web", "web-staging"]),
            (pod(&[("tier", "")]), &["all", "bad", "empty-value", "no-spec"]),
            (pod(&[("app", "db"), ("tier", "x")]), &["all", "bad", "expr", "no-spec"]),
            (pod(&[]), &["all", "bad", "no-spec"]),
        ];
        for (labels, want) in &cases {
            assert_eq!(names(set.selecting(labels)), *want, "pod {labels:?}");
            // The same as matching every policy.
            assert_eq!(names(set.selecting(labels)), names(set.iter().filter(|p| p.may_select(labels))));
        }
        assert_eq!(set.len(), 9);
        assert_eq!(PolicySet::default().selecting(&pod(&[("app", "web")])).count(), 0);
    }

    /// Two of a pod's pairs that share a hash (by chance only: the keys are random) find the
    /// same candidates twice; each policy is still read once.
    #[test]
    fn a_shared_hash_costs_a_match_never_a_policy_read_twice() {
        let selector = |s: Value| Some(serde_json::json!({"podSelector": s}));
        let mut set: PolicySet = [
            stored("prod", selector(serde_json::json!({"matchLabels": {"env": "prod"}}))),
            stored("web", selector(serde_json::json!({"matchLabels": {"app": "web"}}))),
        ]
        .into_iter()
        .collect();
        // Forged as a collision would leave it: both policies under the hash of each pod pair.
        let (app, env) = (pair_hash("app", "web"), pair_hash("env", "prod"));
        let compiled = Arc::get_mut(set.0.as_mut().unwrap()).unwrap();
        let mut by_pair = vec![(app, 0), (app, 1), (env, 0), (env, 1)];
        by_pair.sort_unstable();
        compiled.by_pair = by_pair.into();
        let pod = Labels::from([("app".to_owned(), "web".to_owned()), ("env".to_owned(), "prod".to_owned())]);
        assert_eq!(names(set.selecting(&pod)), ["prod", "web"]);
        let only_web = Labels::from([("app".to_owned(), "web".to_owned())]);
        assert_eq!(names(set.selecting(&only_web)), ["web"], "a shared hash costs a match");
    }

    #[test]
    fn a_change_to_a_namespace_compiles_its_set_again() {
        let web = || Some(serde_json::json!({"podSelector": {"matchLabels": {"app": "web"}}}));
        let apply = |name: &str, namespace: &str| IndexEvent::Apply {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            value: stored(name, web()),
        };
        let pod = Labels::from([("app".to_owned(), "web".to_owned())]);
        let mut index = PolicyIndex::default();
        let selected = |index: &PolicyIndex, ns: &str| -> Vec<String> {
            index.set(ns).selecting(&pod).map(|p| p.name().to_owned()).collect()
        };
        index.apply(apply("b", "a"));
        assert_eq!(selected(&index, "a"), ["b"]);
        assert!(selected(&index, "other").is_empty());
        index.apply(apply("a", "a"));
        assert_eq!(selected(&index, "a"), ["a", "b"], "an apply is seen");
        // A policy that no longer selects the pod.
        index.apply(IndexEvent::Apply { namespace: "a".to_owned(), name: "a".to_owned(), value: stored("a", None) });
        index.apply(IndexEvent::Apply {
            namespace: "a".to_owned(),
            name: "b".to_owned(),
            value: stored("b", Some(serde_json::json!({"podSelector": {"matchLabels": {"app": "db"}}}))),
        });
        assert_eq!(selected(&index, "a"), ["a"], "an update is seen");
        index.apply(IndexEvent::Delete { namespace: "a".to_owned(), name: "a".to_owned() });
        assert!(selected(&index, "a").is_empty(), "a delete is seen");
        index.apply(IndexEvent::Delete { namespace: "a".to_owned(), name: "b".to_owned() });
        assert!(index.set("a").is_empty() && index.sets.is_empty(), "an empty namespace keeps no cell");
        // A relist replaces every namespace once it is complete.
        index.apply(apply("c", "a"));
        assert_eq!(selected(&index, "a"), ["c"]);
        index.apply(IndexEvent::Init);
        index.apply(IndexEvent::InitApply {
            namespace: "z".to_owned(),
            name: "d".to_owned(),
            value: stored("d", web()),
        });
        assert_eq!(selected(&index, "a"), ["c"], "a relist under way changes nothing");
        index.apply(IndexEvent::InitDone);
        assert!(selected(&index, "a").is_empty());
        assert_eq!(selected(&index, "z"), ["d"]);
    }

    #[test]
    fn compact_selectors_match_exactly_as_the_engine_does() {
        let selectors = [
            serde_json::json!({}),
            serde_json::json!({"matchLabels": {}}),
            serde_json::json!({"matchLabels": {"app": "a"}}),
            serde_json::json!({"matchLabels": {"app": "a", "tier": "b"}}),
            serde_json::json!({"matchLabels": {"app": ""}}),
            serde_json::json!({"matchExpressions": []}),
            serde_json::json!({"matchLabels": {"app": "a"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b"]}]}),
            serde_json::json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}),
            serde_json::json!({"matchExpressions": [{"key": "tier", "operator": "Bogus"}]}),
        ];
        let label_sets: Vec<Labels> = [
            serde_json::json!({}),
            serde_json::json!({"app": "a"}),
            serde_json::json!({"app": "b"}),
            serde_json::json!({"app": ""}),
            serde_json::json!({"app": "a", "tier": "b"}),
            serde_json::json!({"tier": "b"}),
        ]
        .into_iter()
        .map(|l| serde_json::from_value(l).unwrap())
        .collect();
        let mut selected = 0;
        for selector in selectors {
            let selector: LabelSelector = serde_json::from_value(selector).unwrap();
            let compact = CompactSelector::new(selector.clone());
            for labels in &label_sets {
                let expected = selector_matches(&selector, labels);
                assert_eq!(compact.matches(labels), expected, "{selector:?} on {labels:?}");
                selected += usize::from(expected);
            }
        }
        // Both answers occur.
        assert!(selected > 5 && selected < 50, "{selected}");
    }

    fn apply(namespace: &str, name: &str, v: u32) -> IndexEvent<u32> {
        IndexEvent::Apply { namespace: namespace.into(), name: name.into(), value: v }
    }

    #[test]
    fn relist_replaces_everything_only_when_done() {
        let mut idx = KindIndex::default();
        assert!(!idx.synced());
        idx.apply(apply("a", "x", 1));
        idx.apply(IndexEvent::Init);
        idx.apply(IndexEvent::InitApply { namespace: "b".into(), name: "y".into(), value: 2 });
        // Until the relist completes, readers see the old state.
        assert_eq!(idx.in_namespace("a"), vec![1]);
        assert!(idx.in_namespace("b").is_empty());
        idx.apply(IndexEvent::InitDone);
        assert!(idx.synced());
        assert!(idx.in_namespace("a").is_empty(), "objects gone during the relist are dropped");
        assert_eq!(idx.in_namespace("b"), vec![2]);
        assert_eq!(idx.len(), 1);
    }

    #[test]
    fn apply_and_delete_keep_counts() {
        let mut idx = KindIndex::default();
        idx.apply(apply("a", "x", 1));
        idx.apply(apply("a", "x", 2));
        idx.apply(apply("a", "y", 3));
        assert_eq!(idx.in_namespace("a"), vec![2, 3]);
        assert_eq!(idx.len(), 2);
        idx.apply(IndexEvent::Delete { namespace: "a".into(), name: "x".into() });
        idx.apply(IndexEvent::Delete { namespace: "zzz".into(), name: "x".into() });
        idx.apply(IndexEvent::Delete { namespace: "a".into(), name: "x".into() });
        assert_eq!(idx.in_namespace("a"), vec![3]);
        assert_eq!(idx.len(), 1);
        // A relist recounts; later events count on from there.
        idx.apply(IndexEvent::Init);
        for (ns, name) in [("a", "p"), ("b", "q"), ("b", "r")] {
            idx.apply(IndexEvent::InitApply { namespace: ns.into(), name: name.into(), value: 9 });
        }
        idx.apply(IndexEvent::InitDone);
        assert_eq!(idx.len(), 3);
        idx.apply(apply("c", "s", 1));
        idx.apply(IndexEvent::Delete { namespace: "b".into(), name: "q".into() });
        assert_eq!(idx.len(), 3);
    }

    #[test]
    fn static_state_from_the_demo() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testcases/demo");
        let (state, problems) = StaticState::load(&dir).unwrap();
        assert_eq!(problems, 0);
        assert!(state.ready());
        let snap = state.snapshot("shop", "kube-system");
        assert_eq!(snap.policies.len(), 5);
        assert_eq!(snap.namespace_labels.unwrap().get("kubernetes.io/metadata.name").map(String::as_str), Some("shop"));
        assert!(snap.dns_namespace_labels.is_none(), "kube-system is not in the demo");
    }
}
