//! Remembered decisions: the same question about the same object in the same cluster state gets
//! the answer it got before, without building and judging the review's inventory again
//! (issue 22).
//!
//! A review's problems and its DNS mutation are a pure function of the reviewed object, the
//! namespace's [`Snapshot`] and the [`Config`] ([`review`]). Clusters ask the same question
//! again and again: a GitOps controller dry-runs every object of every sync, `kubectl diff`
//! then `kubectl apply` send the same object twice, the API server retries a review it timed
//! out. Between two such requests only the metadata the cluster maintains changes
//! (`resourceVersion`, `uid`, `managedFields`, …).
//!
//! So an answer is kept under a key made of:
//! - the question (validate, the DNS mutation),
//! - the request's kind, operation, namespace and name,
//! - the object and the old object **without the metadata the cluster maintains**,
//! - the snapshot's identity: its compiled NetworkPolicies by their id (unique in the process,
//!   never reused, so an answer does not keep a replaced set of policies alive), and the
//!   namespace's labels, the DNS namespace's labels, its intents and the other layers' objects,
//!   each one shared value of the cluster-state index, compared by address. An entry holds a
//!   reference to each of those, so an address cannot be reused while the entry lives; any
//!   change to the namespace's state gives a new value or id, and the next review misses.
//!
//! What makes a remembered answer right by construction: on a miss the review is decided on
//! the object *with that metadata removed*, so nothing the key leaves out can reach the answer.
//! The key is a 128-bit hash keyed at random per process (two SipHash keys), so no client can
//! aim two different questions at one key; the snapshot's identity is also compared in full on
//! every hit.
//!
//! Memory is bounded in bytes: entries go into a current generation; when it holds half the
//! budget it becomes the previous one and the one before is dropped. A hit in the previous
//! generation moves the entry to the current one, so what is asked often stays.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use kube::core::admission::Operation;
use portcullis_linter::config::Config;
use portcullis_linter::model::Labels;
use prometheus_client::metrics::counter::Counter;
use serde_json::Value;

use crate::review::{self, Mutation, Problem, Subject};
use crate::state::{Snapshot, StoredObject};

/// The default budget: thousands of answers (one with a single finding takes about 300 bytes,
/// one with a fix's YAML about a kilobyte).
pub const DEFAULT_BUDGET_BYTES: usize = 2 * 1024 * 1024;

/// Metadata only the cluster maintains, never read by a review when remembering: left out of
/// the key and removed from the object before a review that will be remembered.
/// ([`crate::admission::housekeeping`] treats an UPDATE that changes only these as
/// housekeeping.)
pub const CLUSTER_METADATA: [&str; 9] = [
    "finalizers",
    "managedFields",
    "ownerReferences",
    "resourceVersion",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "uid",
    "creationTimestamp",
];

/// Removes [`CLUSTER_METADATA`] from an object's `metadata`.
pub fn strip_cluster_metadata(value: &mut Value) {
    if let Some(Value::Object(meta)) = value.get_mut("metadata") {
        for key in CLUSTER_METADATA {
            meta.shift_remove(key);
        }
    }
}

/// Remembered answers, bounded in bytes ([`DecisionMemo::new`]).
#[derive(Debug)]
pub struct DecisionMemo {
    /// Bytes one generation may hold; 0 remembers nothing.
    generation_bytes: usize,
    keys: (std::hash::RandomState, std::hash::RandomState),
    entries: Mutex<Generations>,
    hits: Counter,
    misses: Counter,
}

#[derive(Debug, Default)]
struct Generations {
    current: HashMap<u128, Arc<Entry>>,
    current_bytes: usize,
    previous: HashMap<u128, Arc<Entry>>,
}

#[derive(Debug)]
struct Entry {
    pins: Pins,
    answer: Answer,
    bytes: usize,
}

#[derive(Debug, Clone)]
enum Answer {
    Problems(Vec<Problem>),
    Mutation(Option<Mutation>),
}

/// What of a snapshot an answer was given for: its shared values, held so their addresses stay
/// theirs while the entry lives, and its policy set's id (a set is large and replaced on every
/// change to the namespace's policies: holding it would keep replaced sets alive).
#[derive(Debug)]
struct Pins {
    namespace_labels: Option<Arc<Labels>>,
    namespace_terminating: bool,
    dns_namespace_labels: Option<Arc<Labels>>,
    /// [`PolicySet::id`].
    policies: u64,
    intents: Vec<StoredObject>,
    layers: Vec<StoredObject>,
}

fn same_arc<T>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

fn same_objects(a: &[StoredObject], b: &[StoredObject]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.same(b))
}

impl Pins {
    fn of(snapshot: &Snapshot) -> Pins {
        Pins {
            namespace_labels: snapshot.namespace_labels.clone(),
            namespace_terminating: snapshot.namespace_terminating,
            dns_namespace_labels: snapshot.dns_namespace_labels.clone(),
            policies: snapshot.policies.id(),
            intents: snapshot.intents.clone(),
            layers: snapshot.layers.clone(),
        }
    }

    fn same(&self, snapshot: &Snapshot) -> bool {
        same_arc(&self.namespace_labels, &snapshot.namespace_labels)
            && self.namespace_terminating == snapshot.namespace_terminating
            && same_arc(&self.dns_namespace_labels, &snapshot.dns_namespace_labels)
            && self.policies == snapshot.policies.id()
            && same_objects(&self.intents, &snapshot.intents)
            && same_objects(&self.layers, &snapshot.layers)
    }
}

/// The two questions a review asks.
#[derive(Debug, Clone, Copy)]
enum Question {
    Validate = 1,
    Mutation = 2,
}

/// Two keyed SipHash states written together: a 128-bit keyed hash.
struct KeyHasher(std::hash::DefaultHasher, std::hash::DefaultHasher);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
        self.1.write(bytes);
    }

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

impl KeyHasher {
    fn str(&mut self, s: &str) {
        self.write_usize(s.len());
        self.write(s.as_bytes());
    }

    fn finish128(&self) -> u128 {
        (u128::from(self.0.finish()) << 64) | u128::from(self.1.finish())
    }

    /// A JSON value, each variant tagged and each string and container length-prefixed, so two
    /// different values never write the same bytes. Recursive: as deep as the value, which the
    /// review's parser (serde_json, 128 levels at most) bounds. `object` leaves [`CLUSTER_METADATA`] out of
    /// a top-level `metadata`.
    fn value(&mut self, value: &Value, object: bool) {
        match value {
            Value::Null => self.write_u8(0),
            Value::Bool(b) => {
                self.write_u8(1);
                self.write_u8(u8::from(*b));
            }
            Value::Number(n) => {
                self.write_u8(2);
                if let Some(u) = n.as_u64() {
                    self.write_u8(0);
                    self.write_u64(u);
                } else if let Some(i) = n.as_i64() {
                    self.write_u8(1);
                    self.write_i64(i);
                } else {
                    self.write_u8(2);
                    self.write_u64(n.as_f64().unwrap_or(f64::NAN).to_bits());
                }
            }
            Value::String(s) => {
                self.write_u8(3);
                self.str(s);
            }
            Value::Array(items) => {
                self.write_u8(4);
                self.write_usize(items.len());
                for item in items {
                    self.value(item, false);
                }
            }
            Value::Object(map) => {
                self.write_u8(5);
                for (key, item) in map {
                    if object && key == "metadata" && item.is_object() {
                        self.write_u8(6);
                        self.str(key);
                        self.metadata(item);
                    } else {
                        self.write_u8(7);
                        self.str(key);
                        self.value(item, false);
                    }
                }
                self.write_u8(8);
            }
        }
    }

    fn metadata(&mut self, meta: &Value) {
        let Value::Object(map) = meta else { return self.value(meta, false) };
        self.write_u8(5);
        for (key, item) in map.iter().filter(|(key, _)| !CLUSTER_METADATA.contains(&key.as_str())) {
            self.write_u8(7);
            self.str(key);
            self.value(item, false);
        }
        self.write_u8(8);
    }
}

impl DecisionMemo {
    /// A memo holding at most about `budget_bytes` of answers (0: remembers nothing).
    /// `hits` and `misses` count its lookups (the server's metrics).
    pub fn new(budget_bytes: usize, hits: Counter, misses: Counter) -> DecisionMemo {
        DecisionMemo {
            generation_bytes: budget_bytes / 2,
            keys: (std::hash::RandomState::new(), std::hash::RandomState::new()),
            entries: Mutex::new(Generations::default()),
            hits,
            misses,
        }
    }

    /// [`review::validate`], remembered.
    pub fn validate(&self, subject: &Subject<'_>, snapshot: &Snapshot, config: &Config) -> Vec<Problem> {
        let answer = self
            .answer(Question::Validate, subject, snapshot, |s| Answer::Problems(review::validate(s, snapshot, config)));
        match answer {
            Answer::Problems(problems) => problems,
            Answer::Mutation(_) => Vec::new(),
        }
    }

    /// [`review::mutate`], its DNS mutation remembered and checked against this request's own
    /// object every time.
    pub fn mutate(&self, subject: &Subject<'_>, snapshot: &Snapshot, config: &Config) -> Option<Mutation> {
        let answer = self.answer(Question::Mutation, subject, snapshot, |s| {
            Answer::Mutation(review::dns_mutation(s, snapshot, config))
        });
        match answer {
            Answer::Mutation(mutation) => review::verified(subject, mutation?),
            Answer::Problems(_) => None,
        }
    }

    /// Answers held now (for tests and sizing).
    pub fn len(&self) -> usize {
        let entries = self.lock();
        entries.current.len() + entries.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // Every change to the maps is a whole insert or remove: a panic elsewhere cannot leave
        // them half-written.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn answer(
        &self,
        question: Question,
        subject: &Subject<'_>,
        snapshot: &Snapshot,
        decide: impl FnOnce(&Subject<'_>) -> Answer,
    ) -> Answer {
        // The DELETE of a cluster-wide layer object reads every namespace: not remembered.
        if self.generation_bytes == 0 || snapshot.cluster.is_some() {
            return decide(subject);
        }
        let key = self.key(question, subject, snapshot);
        if let Some(answer) = self.get(key, snapshot) {
            self.hits.inc();
            return answer;
        }
        self.misses.inc();
        let stripped = |value: Option<&Value>| {
            value.map(|v| {
                let mut v = v.clone();
                strip_cluster_metadata(&mut v);
                v
            })
        };
        let (object, old_object) = (stripped(subject.object), stripped(subject.old_object));
        let answer = decide(&Subject { object: object.as_ref(), old_object: old_object.as_ref(), ..*subject });
        self.put(key, Pins::of(snapshot), answer.clone());
        answer
    }

    fn key(&self, question: Question, subject: &Subject<'_>, snapshot: &Snapshot) -> u128 {
        let mut h = KeyHasher(self.keys.0.build_hasher(), self.keys.1.build_hasher());
        h.write_u8(question as u8);
        h.str(subject.api_version);
        h.str(subject.kind);
        h.write_u8(match subject.operation {
            Operation::Create => 1,
            Operation::Update => 2,
            Operation::Delete => 3,
            Operation::Connect => 4,
        });
        h.str(subject.namespace);
        h.str(subject.name);
        match subject.sub_resource {
            Some(s) => {
                h.write_u8(1);
                h.str(s);
            }
            None => h.write_u8(0),
        }
        for value in [subject.object, subject.old_object] {
            match value {
                Some(v) => {
                    h.write_u8(1);
                    h.value(v, true);
                }
                None => h.write_u8(0),
            }
        }
        // The snapshot's identity, also compared in full on a hit ([`Pins::same`]).
        let address = |a: Option<&Arc<Labels>>| a.map_or(0, |a| Arc::as_ptr(a) as usize);
        h.write_usize(address(snapshot.namespace_labels.as_ref()));
        h.write_usize(address(snapshot.dns_namespace_labels.as_ref()));
        h.write_u64(snapshot.policies.id());
        h.write_u8(u8::from(snapshot.namespace_terminating));
        for objects in [&snapshot.intents, &snapshot.layers] {
            h.write_usize(objects.len());
            for o in objects.iter() {
                h.write_usize(o.address());
            }
        }
        h.finish128()
    }

    fn get(&self, key: u128, snapshot: &Snapshot) -> Option<Answer> {
        let mut entries = self.lock();
        if let Some(entry) = entries.current.get(&key) {
            return entry.pins.same(snapshot).then(|| entry.answer.clone());
        }
        let entry = entries.previous.remove(&key)?;
        let answer = entry.pins.same(snapshot).then(|| entry.answer.clone());
        if answer.is_some() {
            Self::insert(&mut entries, self.generation_bytes, key, entry);
        }
        answer
    }

    fn put(&self, key: u128, pins: Pins, answer: Answer) {
        let bytes = weight(&pins, &answer);
        if bytes > self.generation_bytes {
            return;
        }
        let mut entries = self.lock();
        Self::insert(&mut entries, self.generation_bytes, key, Arc::new(Entry { pins, answer, bytes }));
    }

    fn insert(entries: &mut Generations, generation_bytes: usize, key: u128, entry: Arc<Entry>) {
        if entries.current_bytes + entry.bytes > generation_bytes {
            entries.previous = std::mem::take(&mut entries.current);
            entries.current_bytes = 0;
        }
        entries.current_bytes += entry.bytes;
        if let Some(old) = entries.current.insert(key, entry) {
            entries.current_bytes = entries.current_bytes.saturating_sub(old.bytes);
        }
    }
}

/// About what an entry holds in memory: its own size, the map slot, the answer's text and the
/// references it keeps.
fn weight(pins: &Pins, answer: &Answer) -> usize {
    let references = (pins.intents.len() + pins.layers.len()) * std::mem::size_of::<StoredObject>();
    let answer_bytes = match answer {
        Answer::Problems(problems) => problems
            .iter()
            .map(|p| std::mem::size_of::<Problem>() + p.message.len() + p.fix.as_ref().map_or(0, String::len))
            .sum(),
        Answer::Mutation(Some(m)) => {
            std::mem::size_of::<Mutation>()
                + m.description.len()
                + serde_json::to_string(&m.patch).map_or(0, |s| s.len())
        }
        Answer::Mutation(None) => 0,
    };
    std::mem::size_of::<Entry>() + std::mem::size_of::<(u128, Arc<Entry>)>() * 2 + references + answer_bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key_of(memo: &DecisionMemo, object: &Value) -> u128 {
        let subject = Subject {
            api_version: "v1",
            kind: "Pod",
            operation: &Operation::Create,
            namespace: "shop",
            name: "web",
            sub_resource: None,
            object: Some(object),
            old_object: None,
        };
        memo.key(Question::Validate, &subject, &Snapshot::default())
    }

    fn memo() -> DecisionMemo {
        DecisionMemo::new(DEFAULT_BUDGET_BYTES, Counter::default(), Counter::default())
    }

    #[test]
    fn values_that_differ_get_different_keys() {
        let memo = memo();
        let pairs = [
            (json!({"a": "bc"}), json!({"ab": "c"})),
            (json!(["a", "b"]), json!(["ab"])),
            (json!([["a"], "b"]), json!([["a", "b"]])),
            (json!(1), json!(1.0)),
            (json!(1), json!("1")),
            (json!(-1), json!(18446744073709551615u64)),
            (json!(null), json!(false)),
            (json!({}), json!([])),
            (json!({"a": {}}), json!({"a": {}, "b": null})),
            // Cluster metadata is left out of the object's own `metadata` only.
            (json!({"spec": {"metadata": {"uid": "1"}}}), json!({"spec": {"metadata": {}}})),
            (json!({"metadata": {"labels": {"uid": "1"}}}), json!({"metadata": {"labels": {}}})),
            (json!({"metadata": {"name": "a"}}), json!({"metadata": {"name": "b"}})),
        ];
        for (a, b) in pairs {
            assert_ne!(key_of(&memo, &a), key_of(&memo, &b), "{a} and {b}");
        }
    }

    #[test]
    fn cluster_metadata_is_left_out_of_the_key_and_the_object() {
        let memo = memo();
        let mut with = json!({"metadata": {"name": "web", "uid": "1", "resourceVersion": "7",
            "managedFields": [{"manager": "kubectl"}], "labels": {"app": "web"}}, "spec": {}});
        let without = json!({"metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {}});
        assert_eq!(key_of(&memo, &with), key_of(&memo, &without));
        strip_cluster_metadata(&mut with);
        assert_eq!(with, without);
        // The client's order of the keys left is kept.
        let order: Vec<&String> = with["metadata"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
        assert_eq!(order, ["name", "labels"]);
    }

    #[test]
    fn each_process_keys_differently() {
        let object = json!({"metadata": {"name": "web"}});
        assert_ne!(key_of(&memo(), &object), key_of(&memo(), &object));
    }
}
