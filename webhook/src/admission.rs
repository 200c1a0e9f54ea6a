//! AdmissionReview in, AdmissionReview out: parsing with clear errors, modes, and the response
//! a person can act on. Pure: the server calls [`decide`] with a snapshot of cluster state.

use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::response::StatusSummary;
use portcullis_linter::config::{Config, WebhookMode};
use portcullis_linter::finding::Severity;
use serde_json::Value;

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
            o.as_ref().and_then(|v| v.pointer("/metadata/namespace")).and_then(Value::as_str).map(str::to_owned)
        };
        self.inner
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| from_object(&self.object))
            .or_else(|| from_object(&self.old_object))
            .unwrap_or_else(|| "default".to_owned())
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

/// Parses a request body.
pub fn parse(body: &[u8]) -> Result<Request, BadReview> {
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
    /// Whether a fresh read of the namespace's policies could change the answer: the request
    /// is denied for a problem that depends on which policies exist.
    pub fn denied_for_policy_state(&self) -> bool {
        self.decision == Decision::Deny
            && self
                .problems
                .iter()
                .any(|p| p.severity == Severity::Error && matches!(p.code, "PC001" | "PC002" | "PC003" | "PC004"))
    }
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
pub fn decide(endpoint: Endpoint, req: &Request, snapshot: &Snapshot, config: &Config) -> Outcome {
    decide_in_mode(endpoint, req, snapshot, config, mode_for(snapshot, config))
}

/// Decides a review in a given mode (the server uses `warn` when it could not confirm a denial).
pub fn decide_in_mode(
    endpoint: Endpoint,
    req: &Request,
    snapshot: &Snapshot,
    config: &Config,
    mode: WebhookMode,
) -> Outcome {
    let mut response = AdmissionResponse::from(&req.inner);
    let namespace = req.namespace();
    let api_version = req.api_version();
    let subject = Subject {
        api_version: &api_version,
        kind: &req.inner.kind.kind,
        operation: &req.inner.operation,
        namespace: &namespace,
        name: &req.inner.name,
        sub_resource: req.inner.sub_resource.as_deref(),
        object: req.object.as_ref(),
        old_object: req.old_object.as_ref(),
    };
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
    if config.is_excluded(&namespace) {
        return skip(response, "namespace excluded by configuration");
    }
    if mode == WebhookMode::Off {
        return skip(response, "mode off");
    }
    match endpoint {
        Endpoint::Mutate => {
            let mutation = if matches!(mode, WebhookMode::Enforce | WebhookMode::Warn) {
                review::mutate(&subject, snapshot, config)
            } else {
                None
            };
            let Some(mutation) = mutation else {
                return Outcome { response, decision: Decision::Allow, mode, problems: Vec::new(), skipped: None };
            };
            response.warnings = Some(vec![format!(
                "portcullis {}/{}: {} (annotation portcullis.dev/generated)",
                namespace, req.inner.name, mutation.description
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
            let problems = review::validate(&subject, snapshot, config);
            // Objects a controller creates (a ReplicaSet's pods, a CronJob's Jobs) are warned
            // about, never denied: their owner was reviewed when it was applied, and denying
            // them would stop a running app from rescheduling.
            let mode =
                if mode == WebhookMode::Enforce && controlled(req.object.as_ref()) { WebhookMode::Warn } else { mode };
            let decision = respond(&mut response, &subject, &problems, mode);
            Outcome { response, decision, mode, problems, skipped: None }
        }
    }
}

/// Whether an object has a controller owner reference.
fn controlled(object: Option<&Value>) -> bool {
    object
        .and_then(|o| o.pointer("/metadata/ownerReferences"))
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r.get("controller").and_then(Value::as_bool) == Some(true)))
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
    if !warn_about.is_empty() {
        response.warnings = Some(warn_about.iter().map(|p| format!("portcullis: {}", p.headline())).collect());
    }
    if mode == WebhookMode::Enforce && !errors.is_empty() {
        let mut message = format!(
            "portcullis denied {} {}/{} ({} {}):",
            subject.kind,
            subject.namespace,
            subject.name,
            errors.len(),
            if errors.len() == 1 { "problem" } else { "problems" }
        );
        for p in &errors {
            message.push_str("\n- ");
            message.push_str(&p.headline());
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
