//! AdmissionReview in, AdmissionReview out: parsing with clear errors, modes, and the response
//! a person can act on. Pure: the server calls [`decide`] with a snapshot of cluster state.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::response::StatusSummary;
use portcullis_linter::config::{Config, WebhookMode};
use portcullis_linter::finding::Severity;
use portcullis_linter::model::lookup;
use portcullis_linter::report::escape_control;
use serde_json::Value;

use crate::memo::{DecisionMemo, strip_cluster_metadata};
use crate::review::{self, Problem, Scope, Subject};
use crate::state::Snapshot;

/// The namespace label that overrides the configured mode.
pub const MODE_LABEL: &str = "portcullis.dev/mode";

/// The only AdmissionReview version served.
pub const API_VERSION: &str = "admission.k8s.io/v1";

/// Which endpoint a review came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Validate,
    Mutate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
        }
    }
}

/// A body that is not an admission.k8s.io/v1 AdmissionReview request (HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum BadReview {
    #[error("body is not a valid AdmissionReview: {0}")]
    Json(String),
    #[error(
        "AdmissionReview apiVersion is {0:?}; portcullis-webhook serves admission.k8s.io/v1 only (set admissionReviewVersions: [v1])"
    )]
    Version(String),
    #[error("kind is {0:?}, expected AdmissionReview")]
    Kind(String),
    #[error("AdmissionReview has no request")]
    NoRequest,
}

/// A parsed request with its objects as plain JSON for the engine.
#[derive(Debug)]
pub struct Request {
    pub inner: AdmissionRequest<DynamicObject>,
    pub object: Option<Value>,
    pub old_object: Option<Value>,
}

impl Request {
    /// The namespace the object lives in: the request's, else the object's, else `default`.
    pub fn namespace(&self) -> String {
        let from_object = |o: &Option<Value>| {
            o.as_ref().and_then(|v| lookup(v, "/metadata/namespace")).and_then(Value::as_str).map(str::to_owned)
        };
        self.inner
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| from_object(&self.object))
            .or_else(|| from_object(&self.old_object))
            .unwrap_or_else(|| "default".to_owned())
    }

    /// Whether the object is of a cluster-scoped kind the engine knows (a ClusterNetworkPolicy,
    /// a Cilium clusterwide or Calico global policy, …): it has no namespace, so no namespace's
    /// mode or exclusion applies to it.
    pub fn cluster_scoped(&self) -> bool {
        portcullis_linter::model::Kind::classify(&self.api_version(), &self.inner.kind.kind).0.cluster_scoped()
    }

    pub fn api_version(&self) -> String {
        let gvk = &self.inner.kind;
        if gvk.group.is_empty() { gvk.version.clone() } else { format!("{}/{}", gvk.group, gvk.version) }
    }

    pub fn operation(&self) -> &'static str {
        match self.inner.operation {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// Parses a request body: the usual review read once ([`parse_direct`]), anything else the
/// typed way ([`parse_typed`]), whose errors name the path, line and column.
pub fn parse(body: &[u8]) -> Result<Request, BadReview> {
    match parse_direct(body) {
        Some(request) => Ok(request),
        None => parse_typed(body),
    }
}

/// The review read once into JSON, its objects taken out as the engine reads them and the rest
/// typed. The objects come out exactly as [`parse_typed`] writes them back from kube's
/// `DynamicObject` (whose flattened fields serde buffers, then serialized again): `apiVersion`,
/// `kind`, the metadata as `ObjectMeta` writes it, then every other field in order. `None` for
/// anything this does not settle the same way (an error, an object without both `apiVersion`
/// and `kind` as strings, metadata `ObjectMeta` does not read): [`parse_typed`] then answers.
/// `tests/admission.rs` holds the two to equal results over every review it has.
pub fn parse_direct(body: &[u8]) -> Option<Request> {
    // One pass over the body (issue 22: reading it into a `Value` and typing that again took
    // a sixth of a review's CPU). A field given twice is refused here as by the typed reader;
    // a key given twice inside an object is refused too (`StrictValue`; found by the
    // `admission_review` fuzz target), and such a body is left to the typed reader; inside the
    // object's metadata, typed by the typed reader's own `ObjectMeta` reader, both keep the last.
    // The body's UTF-8 checked once, not string by string (most strings are short: 9,000 of a
    // Deployment review's 60,000 instructions of reading went to checking them one by one); a
    // body that is not UTF-8 is not JSON, and the typed reader says where.
    let review: DirectReview = serde_json::from_str(std::str::from_utf8(body).ok()?).ok()?;
    if review.api_version != API_VERSION || review.kind != "AdmissionReview" {
        return None;
    }
    let r = review.request?;
    let inner = AdmissionRequest {
        types: kube::core::TypeMeta { api_version: review.api_version, kind: review.kind },
        uid: r.uid,
        kind: r.kind,
        resource: r.resource,
        sub_resource: r.sub_resource,
        request_kind: r.request_kind,
        request_resource: r.request_resource,
        request_sub_resource: r.request_sub_resource,
        name: r.name,
        namespace: r.namespace,
        operation: r.operation,
        user_info: r.user_info,
        object: None,
        old_object: None,
        dry_run: r.dry_run,
        options: r.options,
    };
    Some(Request { inner, object: r.object.map(|o| o.0), old_object: r.old_object.map(|o| o.0) })
}

/// kube's `AdmissionReview` as [`parse_direct`] reads it: the type fields written out (kube's
/// flattened `TypeMeta` makes serde buffer the whole review first) and the objects read as
/// [`Captured`]. Its fields and defaults are kube's `AdmissionRequest`'s; `tests/admission.rs`
/// and the `admission_review` fuzz target hold the two readers to equal results.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DirectReview {
    api_version: String,
    kind: String,
    request: Option<DirectRequest>,
    /// Read, not kept, so that a review the typed reader refuses for it is refused here too.
    #[serde(default, rename = "response")]
    _response: Option<AdmissionResponse>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DirectRequest {
    uid: String,
    kind: kube::core::GroupVersionKind,
    resource: kube::core::GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    request_kind: Option<kube::core::GroupVersionKind>,
    #[serde(default)]
    request_resource: Option<kube::core::GroupVersionResource>,
    #[serde(default)]
    request_sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    user_info: k8s_openapi::api::authentication::v1::UserInfo,
    object: Option<Captured>,
    old_object: Option<Captured>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    options: Option<k8s_openapi::apimachinery::pkg::runtime::RawExtension>,
}

/// A review's object, read as JSON (a key given twice refused) and written as the typed reader
/// writes a `DynamicObject` back: `apiVersion`, `kind`, the metadata as `ObjectMeta` writes it,
/// then every other field in order. The metadata is typed straight from the body, as the typed
/// reader types it (from its buffered copy of the same text, by the same `ObjectMeta` reader),
/// not built as JSON first and typed from that (a twentieth of a Deployment review). An object
/// that reader would read otherwise (`apiVersion` or `kind` missing or not a string, metadata
/// `ObjectMeta` does not read) is an error here, so the typed reader answers.
struct Captured(Value);

impl<'de> serde::Deserialize<'de> for Captured {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Captured, D::Error> {
        deserializer.deserialize_map(CapturedVisitor)
    }
}

struct CapturedVisitor;

impl<'de> serde::de::Visitor<'de> for CapturedVisitor {
    type Value = Captured;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Captured, A::Error> {
        use serde::de::Error as _;
        let (mut api_version, mut kind, mut metadata) = (None, None, None);
        let mut rest = serde_json::Map::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "apiVersion" | "kind" => {
                    let slot = if key == "kind" { &mut kind } else { &mut api_version };
                    if slot.is_some() {
                        return Err(given_twice(&key));
                    }
                    *slot = Some(map.next_value_seed(StrictValue)?);
                }
                "metadata" => {
                    if metadata.is_some() {
                        return Err(given_twice(&key));
                    }
                    metadata = Some(map.next_value::<ObjectMeta>()?);
                }
                _ => insert_once(&mut rest, key.into_owned(), map.next_value_seed(StrictValue)?)?,
            }
        }
        let (Some(Value::String(api_version)), Some(Value::String(kind))) = (api_version, kind) else {
            return Err(A::Error::custom("an object without apiVersion and kind as strings"));
        };
        let metadata = serde_json::to_value(metadata.unwrap_or_default()).map_err(A::Error::custom)?;
        let mut out = serde_json::Map::with_capacity(rest.len() + 3);
        out.insert("apiVersion".to_owned(), Value::String(api_version));
        out.insert("kind".to_owned(), Value::String(kind));
        out.insert("metadata".to_owned(), metadata);
        out.extend(rest);
        Ok(Captured(Value::Object(out)))
    }
}

/// Reads a JSON value as `Value` does, refusing a mapping that names a key twice.
struct StrictValue;

impl<'de> serde::de::DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value without a key given twice")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            insert_once(&mut out, key, map.next_value_seed(StrictValue)?)?;
        }
        Ok(Value::Object(out))
    }
}

/// Inserts `key`, refusing it when the mapping already has it. One hash per key: the entry both
/// finds a key given twice and inserts.
fn insert_once<E: serde::de::Error>(
    map: &mut serde_json::Map<String, Value>,
    key: String,
    value: Value,
) -> Result<(), E> {
    match map.entry(key) {
        serde_json::map::Entry::Occupied(given) => Err(given_twice(given.key())),
        serde_json::map::Entry::Vacant(slot) => {
            slot.insert(value);
            Ok(())
        }
    }
}

fn given_twice<E: serde::de::Error>(key: &str) -> E {
    E::custom(format_args!("the key {key:?} is given twice"))
}

/// Parses a request body the typed way: kube's `AdmissionReview` with `DynamicObject`s, each
/// written back as JSON for the engine.
pub fn parse_typed(body: &[u8]) -> Result<Request, BadReview> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let review: AdmissionReview<DynamicObject> = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            BadReview::Json(inner.to_string())
        } else {
            BadReview::Json(format!("{path}: {inner}"))
        }
    })?;
    if review.types.api_version != API_VERSION {
        return Err(BadReview::Version(review.types.api_version));
    }
    if review.types.kind != "AdmissionReview" {
        return Err(BadReview::Kind(review.types.kind));
    }
    let inner: AdmissionRequest<DynamicObject> = review.try_into().map_err(|_| BadReview::NoRequest)?;
    let to_value = |o: &Option<DynamicObject>| o.as_ref().and_then(|o| serde_json::to_value(o).ok());
    let object = to_value(&inner.object);
    let old_object = to_value(&inner.old_object);
    Ok(Request { inner, object, old_object })
}

/// The response body. The patch is written as base64, as Go encodes `[]byte` (kube-core
/// would write an array of numbers, which the API server also reads, but no one else does).
pub fn response_body(response: AdmissionResponse) -> Result<Vec<u8>, serde_json::Error> {
    use base64::Engine as _;
    if response.patch.is_none() {
        // Most reviews: written straight, the same text as through a `Value` (fields in order).
        return serde_json::to_vec(&response.into_review());
    }
    let mut review = serde_json::to_value(response.into_review())?;
    if let Some(patch) = review.pointer_mut("/response/patch") {
        let bytes: Vec<u8> = serde_json::from_value(patch.take())?;
        *patch = Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    serde_json::to_vec(&review)
}

/// What happened to a review, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Reviewed, nothing to say.
    Allow,
    /// Allowed with warnings.
    Warn,
    /// Denied (enforce mode, an error-level problem).
    Deny,
    /// Problems recorded in logs, metrics and audit annotations only.
    Audit,
    /// `/mutate` returned a patch.
    Patch,
    /// Not reviewed: kind, operation, excluded namespace or mode `off`.
    Skip,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Warn => "warn",
            Decision::Deny => "deny",
            Decision::Audit => "audit",
            Decision::Patch => "patch",
            Decision::Skip => "skip",
        }
    }
}

/// The response and what led to it.
#[derive(Debug)]
pub struct Outcome {
    pub response: AdmissionResponse,
    pub decision: Decision,
    pub mode: WebhookMode,
    pub problems: Vec<Problem>,
    /// Why the request was not reviewed.
    pub skipped: Option<&'static str>,
}

impl Outcome {
    /// Whether the answer must be confirmed on fresh state before it is sent: every denial.
    /// A fresh read can change it twice over: a policy the cache has not seen yet, and a
    /// namespace whose deletion it has not seen yet (nothing in a terminating namespace is
    /// ever denied).
    pub fn needs_confirmation(&self) -> bool {
        self.decision == Decision::Deny
    }

    /// Whether the denial depends on which policies exist (PC001–PC004), so that an unconfirmed
    /// one must not stand: a denial for the object's own content (a bad CIDR) stands even when
    /// the fresh read fails.
    pub fn depends_on_policy_state(&self) -> bool {
        self.decision == Decision::Deny
            && self
                .problems
                .iter()
                .any(|p| p.severity == Severity::Error && matches!(p.code, "PC001" | "PC002" | "PC003" | "PC004"))
    }
}

/// Owner kinds whose controllers create workload objects (a ReplicaSet's Pods, a Deployment's
/// ReplicaSets, a CronJob's Jobs).
const WORKLOAD_OWNERS: [&str; 7] =
    ["ReplicaSet", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicationController"];

/// Why a request is part of the cluster's own housekeeping, which portcullis never reviews
/// (and so never blocks): anything in a terminating namespace, anything whose stored object is
/// being deleted, and
/// updates that change only metadata the cluster maintains. `None` for everything else.
pub fn housekeeping(req: &Request, snapshot: &Snapshot) -> Option<&'static str> {
    if snapshot.namespace_terminating {
        return Some("namespace is terminating");
    }
    // Only the stored object says so: a client can write `deletionTimestamp` into what it sends
    // (and `/mutate` sees it before the API server clears it).
    let deleting =
        req.old_object.as_ref().and_then(|v| lookup(v, "/metadata/deletionTimestamp")).is_some_and(|t| !t.is_null());
    if deleting {
        return Some("object is being deleted");
    }
    if req.inner.operation == Operation::Update
        && let (Some(new), Some(old)) = (&req.object, &req.old_object)
        && without_cluster_metadata(new) == without_cluster_metadata(old)
    {
        return Some("update changes only metadata the cluster maintains");
    }
    None
}

fn without_cluster_metadata(object: &Value) -> Value {
    // Metadata only the cluster maintains: an UPDATE that changes nothing else (the garbage
    // collector removing `foregroundDeletion`, a finalizer added or removed, managed fields, a
    // status write through the main resource) is housekeeping, never reviewed.
    let mut value = object.clone();
    strip_cluster_metadata(&mut value);
    if let Value::Object(map) = &mut value {
        map.remove("status");
    }
    value
}

/// Whether the request comes from a workload controller creating or updating an object it
/// owns: the requesting user is a configured trusted controller *and* the object's controller
/// owner is a workload kind. An `ownerReferences` entry alone proves nothing (anyone can write
/// one); the API server sets `userInfo` and no client can forge it.
pub fn from_workload_controller(req: &Request, config: &Config) -> bool {
    let user = req.inner.user_info.username.as_deref().unwrap_or_default();
    if !config.webhook.trusted_controllers.iter().any(|u| u == user) {
        return false;
    }
    req.object.as_ref().and_then(|o| lookup(o, "/metadata/ownerReferences")).and_then(Value::as_array).is_some_and(
        |refs| {
            refs.iter().any(|r| {
                r.get("controller").and_then(Value::as_bool) == Some(true)
                    && r.get("kind").and_then(Value::as_str).is_some_and(|k| WORKLOAD_OWNERS.contains(&k))
            })
        },
    )
}

/// The effective mode for a namespace: its `portcullis.dev/mode` label, else the config.
pub fn mode_for(snapshot: &Snapshot, config: &Config) -> WebhookMode {
    snapshot
        .namespace_labels
        .as_ref()
        .and_then(|l| l.get(MODE_LABEL))
        .and_then(|m| WebhookMode::parse(m))
        .unwrap_or(config.webhook.mode)
}

/// Decides a review in the namespace's mode. Dry-run requests are decided exactly like real ones.
/// A cluster-scoped object has no namespace label: the config's mode applies.
pub fn decide(endpoint: Endpoint, req: &Request, snapshot: &Snapshot, config: &Config) -> Outcome {
    decide_in_mode(endpoint, req, snapshot, config, mode_of(req, snapshot, config))
}

fn mode_of(req: &Request, snapshot: &Snapshot, config: &Config) -> WebhookMode {
    if req.cluster_scoped() { config.webhook.mode } else { mode_for(snapshot, config) }
}

/// [`decide`], or [`decide_in_mode`] when `mode` is given; with a `memo`, the review's answers
/// are remembered in it: the same question about the same object in the same cluster state is
/// answered as before without being decided again ([`DecisionMemo`]).
pub fn decide_with(
    endpoint: Endpoint,
    req: &Request,
    snapshot: &Snapshot,
    config: &Config,
    mode: Option<WebhookMode>,
    memo: Option<&DecisionMemo>,
) -> Outcome {
    let mode = mode.unwrap_or_else(|| mode_of(req, snapshot, config));
    decide_in_mode_with(endpoint, req, snapshot, config, mode, memo)
}

/// Whether deciding the request needs every namespace's default-deny state
/// ([`crate::state::Snapshot::cluster`]): the DELETE of a cluster-scoped layer object.
pub fn needs_cluster_view(req: &Request) -> bool {
    matches!(req.inner.operation, Operation::Delete)
        && req.cluster_scoped()
        && crate::state::is_layer_kind(
            portcullis_linter::model::Kind::classify(&req.api_version(), &req.inner.kind.kind).0,
        )
}

/// The request as the review reads it, with its namespace and `group/version` spelled out.
fn subject<'a>(req: &'a Request, namespace: &'a str, api_version: &'a str) -> Subject<'a> {
    Subject {
        api_version,
        kind: &req.inner.kind.kind,
        operation: &req.inner.operation,
        namespace,
        name: &req.inner.name,
        sub_resource: req.inner.sub_resource.as_deref(),
        object: req.object.as_ref(),
        old_object: req.old_object.as_ref(),
    }
}

/// How many stored policies deciding the request reads ([`review::policies_read`]).
pub fn policies_read(req: &Request, snapshot: &Snapshot) -> usize {
    let (namespace, api_version) = (req.namespace(), req.api_version());
    review::policies_read(&subject(req, &namespace, &api_version), snapshot)
}

/// Decides a review in a given mode (the server uses `warn` when it could not confirm a denial).
pub fn decide_in_mode(
    endpoint: Endpoint,
    req: &Request,
    snapshot: &Snapshot,
    config: &Config,
    mode: WebhookMode,
) -> Outcome {
    decide_in_mode_with(endpoint, req, snapshot, config, mode, None)
}

/// The review's own questions, remembered when there is a memo.
fn validate(memo: Option<&DecisionMemo>, subject: &Subject<'_>, snapshot: &Snapshot, config: &Config) -> Vec<Problem> {
    match memo {
        Some(memo) => memo.validate(subject, snapshot, config),
        None => review::validate(subject, snapshot, config),
    }
}

fn decide_in_mode_with(
    endpoint: Endpoint,
    req: &Request,
    snapshot: &Snapshot,
    config: &Config,
    mode: WebhookMode,
    memo: Option<&DecisionMemo>,
) -> Outcome {
    let mut response = AdmissionResponse::from(&req.inner);
    let namespace = req.namespace();
    let api_version = req.api_version();
    let subject = subject(req, &namespace, &api_version);
    let skip = |response: AdmissionResponse, why: &'static str| Outcome {
        response,
        decision: Decision::Skip,
        mode,
        problems: Vec::new(),
        skipped: Some(why),
    };
    if let Err(why) = Scope::of(&subject) {
        return skip(response, why);
    }
    if !req.cluster_scoped() && config.is_excluded(&namespace) {
        return skip(response, "namespace excluded by configuration");
    }
    if mode == WebhookMode::Off {
        return skip(response, "mode off");
    }
    if let Some(why) = housekeeping(req, snapshot) {
        return skip(response, why);
    }
    match endpoint {
        Endpoint::Mutate => {
            let mutation = if matches!(mode, WebhookMode::Enforce | WebhookMode::Warn) {
                match memo {
                    Some(memo) => memo.mutate(&subject, snapshot, config),
                    None => review::mutate(&subject, snapshot, config),
                }
            } else {
                None
            };
            let Some(mutation) = mutation else {
                return Outcome { response, decision: Decision::Allow, mode, problems: Vec::new(), skipped: None };
            };
            response.warnings = Some(vec![format!(
                "portcullis {}/{}: {} (annotation portcullis.dev/generated)",
                escape_control(&namespace),
                escape_control(&req.inner.name),
                mutation.description
            )]);
            match response.clone().with_patch(mutation.patch) {
                Ok(patched) => {
                    Outcome { response: patched, decision: Decision::Patch, mode, problems: Vec::new(), skipped: None }
                }
                // A patch of plain JSON values always serializes; if not, admit unchanged.
                Err(_) => Outcome { response, decision: Decision::Allow, mode, problems: Vec::new(), skipped: None },
            }
        }
        Endpoint::Validate => {
            let mut problems = validate(memo, &subject, snapshot, config);
            // Objects a workload controller creates (a ReplicaSet's pods, a CronJob's Jobs) are
            // warned about, never denied: their owner was reviewed when it was applied, and
            // denying them would stop a running app from rescheduling.
            let mode = if mode == WebhookMode::Enforce && from_workload_controller(req, config) {
                WebhookMode::Warn
            } else {
                mode
            };
            if mode == WebhookMode::Enforce {
                ratchet(&subject, snapshot, config, memo, &mut problems);
            }
            let decision = respond(&mut response, &subject, &problems, mode);
            Outcome { response, decision, mode, problems, skipped: None }
        }
    }
}

/// On UPDATE, only errors the update introduces deny: an error the old object already had
/// becomes a warning. Scaling, a rollout restart or a label change of an app that predates
/// enforce mode goes through (with the warning), while an update that breaks DNS is refused.
fn ratchet(
    subject: &Subject<'_>,
    snapshot: &Snapshot,
    config: &Config,
    memo: Option<&DecisionMemo>,
    problems: &mut [Problem],
) {
    if !matches!(subject.operation, Operation::Update)
        || subject.old_object.is_none()
        || !problems.iter().any(|p| p.severity == Severity::Error)
    {
        return;
    }
    let before = Subject { object: subject.old_object, ..*subject };
    let existing: Vec<&'static str> = validate(memo, &before, snapshot, config)
        .into_iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| p.code)
        .collect();
    for p in problems.iter_mut().filter(|p| p.severity == Severity::Error && existing.contains(&p.code)) {
        p.severity = Severity::Warning;
        p.message.push_str(" (already so before this update: only problems an update introduces are denied)");
    }
}

/// Fills the response for the problems found under `mode`.
fn respond(
    response: &mut AdmissionResponse,
    subject: &Subject<'_>,
    problems: &[Problem],
    mode: WebhookMode,
) -> Decision {
    if problems.is_empty() {
        return Decision::Allow;
    }
    response.audit_annotations.insert("findings".to_owned(), review::codes(problems));
    response.audit_annotations.insert("mode".to_owned(), mode.as_str().to_owned());
    let errors: Vec<&Problem> = problems.iter().filter(|p| p.severity == Severity::Error).collect();
    let warn_about: Vec<&Problem> = match mode {
        WebhookMode::Enforce => problems.iter().filter(|p| p.severity == Severity::Warning).collect(),
        WebhookMode::Warn => problems.iter().filter(|p| p.severity >= Severity::Warning).collect(),
        WebhookMode::Audit | WebhookMode::Off => return Decision::Audit,
    };
    // Names, labels and kinds come from the client: escaped, so a newline cannot forge a line
    // and an ANSI sequence cannot repaint the user's terminal.
    if !warn_about.is_empty() {
        response.warnings =
            Some(warn_about.iter().map(|p| format!("portcullis: {}", escape_control(&p.headline()))).collect());
    }
    if mode == WebhookMode::Enforce && !errors.is_empty() {
        let mut message = format!(
            "portcullis denied {} {}/{} ({} {}):",
            escape_control(subject.kind),
            escape_control(subject.namespace),
            escape_control(subject.name),
            errors.len(),
            if errors.len() == 1 { "problem" } else { "problems" }
        );
        for p in &errors {
            message.push_str("\n- ");
            message.push_str(&escape_control(&p.headline()));
            if let Some(fix) = &p.fix {
                message.push_str("\nfix: ");
                message.push_str(fix.trim_end());
            }
        }
        message.push_str("\n(set namespace label portcullis.dev/mode=warn to admit with warnings while you fix this)");
        response.allowed = false;
        response.result.code = 403;
        response.result.reason = "Forbidden".to_owned();
        response.result.status = Some(StatusSummary::Failure);
        response.result.message = message;
        return Decision::Deny;
    }
    if response.warnings.is_some() { Decision::Warn } else { Decision::Allow }
}
