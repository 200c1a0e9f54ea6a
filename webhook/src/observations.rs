//! `POST /v1/observations`: the sensor's DNS answers, into the FQDN controller.
//!
//! Only the sensor's ServiceAccount may post: the bearer token is verified by a TokenReview in a
//! cluster (results cached briefly, bounded) or against a static token file in dev mode, and the
//! authenticated user must be exactly `system:serviceaccount:NAMESPACE:NAME` of the sensor. The
//! body is bounded (size, observations per batch, answers and CNAMEs per observation) and
//! validated as a whole before any of it is used.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use portcullis_linter::egress::CacheConfig;
use portcullis_linter::egress::intents::{IntentKey, IntentSet, Observation, compile_inventory};
use portcullis_linter::egress::map::{EgressMap, MapSnapshot};
use portcullis_linter::egress::observation::{FlowBatch, MAX_BATCH, ObservationBatch};
use portcullis_linter::replay::traffic::TrafficLog;

/// Largest body `POST /v1/observations` reads.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// How long a TokenReview verdict is reused.
const REVIEW_TTL: Duration = Duration::from_secs(60);
/// Tokens whose verdicts are cached at most.
const REVIEW_CACHE: usize = 1024;

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the token is not valid")]
    Invalid,
    #[error("cannot verify the token: {0}")]
    Unavailable(String),
}

/// Turns a bearer token into a user name.
pub trait Authenticator: Send + Sync + Debug {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<String, AuthError>>;
}

/// Where accepted observations go: the controller (in a cluster) or an in-memory intent set.
pub trait ObservationSink: Send + Sync + Debug {
    /// Returns the intents whose addresses changed.
    fn observe(&self, observation: &Observation) -> Vec<IntentKey>;
}

impl ObservationSink for crate::controller::run::Handle {
    fn observe(&self, observation: &Observation) -> Vec<IntentKey> {
        crate::controller::run::Handle::observe(self, observation)
    }
}

/// Dev mode: one static token, read from a file at start.
#[derive(Debug)]
pub struct StaticToken {
    token: String,
    user: String,
}

impl StaticToken {
    /// `user` is who the token stands for (the sensor's ServiceAccount user name).
    pub fn from_file(path: &std::path::Path, user: String) -> anyhow::Result<Self> {
        let token = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading the observations token {}: {e}", path.display()))?
            .trim()
            .to_owned();
        if token.len() < 16 {
            anyhow::bail!("the observations token in {} is shorter than 16 characters", path.display());
        }
        Ok(Self { token, user })
    }
}

/// Compares without an early exit, so response time does not leak how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator for StaticToken {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<String, AuthError>> {
        let verdict = if constant_time_eq(token.as_bytes(), self.token.as_bytes()) {
            Ok(self.user.clone())
        } else {
            Err(AuthError::Invalid)
        };
        Box::pin(std::future::ready(verdict))
    }
}

/// In a cluster: a TokenReview per new token, verdicts cached for a minute.
pub struct TokenReviewer {
    client: kube::Client,
    cache: Mutex<HashMap<String, (Instant, Option<String>)>>,
}

impl Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer").finish_non_exhaustive()
    }
}

impl TokenReviewer {
    pub fn new(client: kube::Client) -> Self {
        Self { client, cache: Mutex::new(HashMap::new()) }
    }

    fn cached(&self, token: &str) -> Option<Option<String>> {
        let cache = self.cache.lock().ok()?;
        let (at, user) = cache.get(token)?;
        (at.elapsed() < REVIEW_TTL).then(|| user.clone())
    }

    fn remember(&self, token: &str, user: Option<String>) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= REVIEW_CACHE {
                cache.retain(|_, (at, _)| at.elapsed() < REVIEW_TTL);
                if cache.len() >= REVIEW_CACHE {
                    cache.clear();
                }
            }
            cache.insert(token.to_owned(), (Instant::now(), user));
        }
    }
}

impl Authenticator for TokenReviewer {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<String, AuthError>> {
        Box::pin(async move {
            if let Some(verdict) = self.cached(token) {
                return verdict.ok_or(AuthError::Invalid);
            }
            let review = TokenReview {
                spec: TokenReviewSpec { token: Some(token.to_owned()), ..Default::default() },
                ..Default::default()
            };
            let api: kube::Api<TokenReview> = kube::Api::all(self.client.clone());
            let reviewed =
                api.create(&PostParams::default(), &review).await.map_err(|e| AuthError::Unavailable(e.to_string()))?;
            let status = reviewed.status.unwrap_or_default();
            let user = match (status.authenticated, status.user) {
                (Some(true), Some(user)) => user.username,
                _ => None,
            };
            self.remember(token, user.clone());
            user.ok_or(AuthError::Invalid)
        })
    }
}

/// Dev mode's sink: the intents of the `--state` directory, in memory.
#[derive(Debug)]
pub struct LocalIntents {
    set: Mutex<IntentSet>,
}

impl LocalIntents {
    /// Compiles every valid intent under `dir` (invalid ones are `portcullis lint`'s business).
    pub fn load(dir: &std::path::Path, guard: portcullis_linter::egress::AddressGuard) -> anyhow::Result<Self> {
        use portcullis_linter::load::Limits;
        use portcullis_linter::load::fs::{Input, read_inputs};
        let files = read_inputs(&[Input::Path(dir.to_path_buf())], Limits::default(), &mut std::io::empty())?;
        let mut project = portcullis_linter::project::Project::new("default");
        for file in files {
            if let Ok(text) = file.content {
                project.add_text(&file.name, text, true);
            }
        }
        let mut set = IntentSet::new(CacheConfig::default()).with_guard(guard);
        for (_, compiled) in compile_inventory(&project.inventory) {
            if let Ok(compiled) = compiled {
                set.upsert_compiled(compiled, None);
            }
        }
        Ok(Self { set: Mutex::new(set) })
    }

    pub fn len(&self) -> usize {
        self.set.lock().map_or(0, |set| set.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ObservationSink for LocalIntents {
    fn observe(&self, observation: &Observation) -> Vec<IntentKey> {
        let (changed, refused) =
            self.set.lock().map(|mut set| (set.observe(observation), set.take_refusals())).unwrap_or_default();
        for r in refused {
            tracing::warn!(intent = %r.intent, name = %r.name, ip = %r.ip, reason = %r.refusal, "address refused by the address guard");
        }
        for key in &changed {
            tracing::info!(intent = %key, qname = %observation.qname, "intent addresses changed from an observation");
        }
        changed
    }
}

/// The endpoints' collaborators.
#[derive(Debug, Clone)]
pub struct Ingest {
    pub auth: Arc<dyn Authenticator>,
    /// The one user allowed to post: `system:serviceaccount:NAMESPACE:NAME`.
    pub allowed_user: String,
    pub sink: Arc<dyn ObservationSink>,
    /// Users allowed to `GET /v1/map` (none by default).
    pub map_readers: Vec<String>,
    /// Every valid observation received, aggregated (bounded).
    pub map: Arc<Mutex<EgressMap>>,
    /// The traffic aggregator (`POST /v1/flows`, `GET /v1/traffic`), when enabled.
    pub traffic: Option<Arc<crate::traffic::Aggregator>>,
}

/// What an accepted batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Observations with a pod, fed to the controller.
    pub accepted: usize,
    /// Observations without a pod (kept in the map only).
    pub unattributed: usize,
    /// Intents whose addresses changed.
    pub intents_changed: usize,
}

/// Why a request to `/v1/observations` or `/v1/map` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no or bad token.
    Unauthenticated(String),
    /// 403: a valid token of someone not allowed.
    Forbidden(String),
    /// 400: the body is not a valid batch.
    BadRequest(String),
    /// 503: the token could not be checked.
    Unavailable(String),
    /// 404: the endpoint is not enabled.
    NotFound(String),
}

impl Refusal {
    /// HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Unauthenticated(_) => 401,
            Refusal::Forbidden(_) => 403,
            Refusal::BadRequest(_) => 400,
            Refusal::Unavailable(_) => 503,
            Refusal::NotFound(_) => 404,
        }
    }

    /// The `result` label of the refused-requests metric.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Unauthenticated(_) => "unauthenticated",
            Refusal::Forbidden(_) => "forbidden",
            Refusal::BadRequest(_) => "rejected",
            Refusal::Unavailable(_) => "unavailable",
            Refusal::NotFound(_) => "not_found",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Refusal::Unauthenticated(m)
            | Refusal::Forbidden(m)
            | Refusal::BadRequest(m)
            | Refusal::Unavailable(m)
            | Refusal::NotFound(m) => m,
        }
    }
}

impl Ingest {
    /// Observations from `allowed_user`, authenticated by `auth`, go to `sink`; no map readers.
    pub fn new(auth: Arc<dyn Authenticator>, allowed_user: String, sink: Arc<dyn ObservationSink>) -> Self {
        Self {
            auth,
            allowed_user,
            sink,
            map_readers: Vec::new(),
            map: Arc::new(Mutex::new(EgressMap::default())),
            traffic: None,
        }
    }

    /// Counts connection starts into `aggregator`.
    pub fn with_traffic(mut self, aggregator: Arc<crate::traffic::Aggregator>) -> Self {
        self.traffic = Some(aggregator);
        self
    }

    /// Lets these users read the egress map.
    pub fn with_map_readers(mut self, readers: Vec<String>) -> Self {
        self.map_readers = readers;
        self
    }

    /// The user behind the `Authorization: Bearer` header.
    async fn authenticate(&self, authorization: Option<&str>) -> Result<String, Refusal> {
        let Some(token) =
            authorization.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim).filter(|t| !t.is_empty())
        else {
            return Err(Refusal::Unauthenticated("a bearer token is required".into()));
        };
        match self.auth.authenticate(token).await {
            Ok(user) => Ok(user),
            Err(AuthError::Invalid) => Err(Refusal::Unauthenticated("the token is not valid".into())),
            Err(AuthError::Unavailable(e)) => Err(Refusal::Unavailable(e)),
        }
    }

    /// `GET /v1/map`: the egress map, for the users in `map_readers`.
    pub async fn read_map(&self, authorization: Option<&str>) -> Result<MapSnapshot, Refusal> {
        let user = self.authenticate(authorization).await?;
        if !self.map_readers.contains(&user) {
            return Err(Refusal::Forbidden(format!("{user} may not read the egress map")));
        }
        Ok(self.map.lock().map(|map| map.snapshot()).unwrap_or_default())
    }

    /// The sensor's user, or why not.
    async fn authenticate_sensor(&self, authorization: Option<&str>, what: &str) -> Result<(), Refusal> {
        let user = self.authenticate(authorization).await?;
        if user != self.allowed_user {
            return Err(Refusal::Forbidden(format!("{user} may not post {what}")));
        }
        Ok(())
    }

    /// `POST /v1/flows`: a node's connection starts, counted while this replica aggregates.
    /// The batch is checked whole first: a bad one changes nothing.
    pub async fn handle_flows(
        &self,
        authorization: Option<&str>,
        body: &[u8],
    ) -> Result<crate::traffic::FlowAck, Refusal> {
        self.authenticate_sensor(authorization, "flows").await?;
        let Some(traffic) = &self.traffic else {
            return Err(Refusal::NotFound("the traffic aggregator is not enabled on this webhook".into()));
        };
        let batch: FlowBatch =
            serde_json::from_slice(body).map_err(|e| Refusal::BadRequest(format!("not a flow batch: {e}")))?;
        batch.validate().map_err(Refusal::BadRequest)?;
        // A start from the future would never leave the history's window.
        let latest =
            jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_mins(10)).unwrap_or(jiff::Timestamp::MAX);
        if let Some((index, f)) = batch.flows.iter().enumerate().find(|(_, f)| f.ts > latest) {
            return Err(Refusal::BadRequest(format!("flows[{index}].ts: {} is in the future", f.ts)));
        }
        Ok(traffic.accept(&batch).await)
    }

    /// `GET /v1/traffic`: the stored history as a traffic file, for the users in `map_readers`.
    pub async fn read_traffic(&self, authorization: Option<&str>) -> Result<TrafficLog, Refusal> {
        let user = self.authenticate(authorization).await?;
        if !self.map_readers.contains(&user) {
            return Err(Refusal::Forbidden(format!("{user} may not read the traffic history")));
        }
        let Some(traffic) = &self.traffic else {
            return Err(Refusal::NotFound("the traffic aggregator is not enabled on this webhook".into()));
        };
        traffic.stored_log().await.map_err(|e| Refusal::Unavailable(format!("reading the traffic history: {e}")))
    }

    /// `POST /v1/observations`: authorization header value and body.
    pub async fn handle(&self, authorization: Option<&str>, body: &[u8]) -> Result<Accepted, Refusal> {
        self.authenticate_sensor(authorization, "observations").await?;
        let batch: ObservationBatch =
            serde_json::from_slice(body).map_err(|e| Refusal::BadRequest(format!("not an observation batch: {e}")))?;
        if batch.observations.len() > MAX_BATCH {
            return Err(Refusal::BadRequest(format!(
                "{} observations (at most {MAX_BATCH} per batch)",
                batch.observations.len()
            )));
        }
        for (index, observation) in batch.observations.iter().enumerate() {
            observation
                .validate()
                .map_err(|problem| Refusal::BadRequest(format!("observations[{index}]: {problem}")))?;
        }
        if let Ok(mut map) = self.map.lock() {
            for observation in &batch.observations {
                map.record(observation);
            }
        }
        if let Some(traffic) = &self.traffic {
            traffic.observe_dns(&batch.observations).await;
        }
        let (mut accepted, mut unattributed, mut changed) = (0, 0, 0);
        for observation in &batch.observations {
            match observation.to_observation() {
                Some(observation) => {
                    accepted += 1;
                    changed += self.sink.observe(&observation).len();
                }
                None => unattributed += 1,
            }
        }
        Ok(Accepted { accepted, unattributed, intents_changed: changed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
