//! The two HTTP servers: admission over TLS (`/validate`, `/mutate`) and operations over plain
//! HTTP (`/healthz`, `/readyz`, `/metrics`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use portcullis_linter::config::{Config, WebhookMode};
use portcullis_linter::report::escape_control;

use crate::admission::{self, Decision, Endpoint, Outcome, Request};
use crate::connections::Limit;
use crate::memo::DecisionMemo;
use crate::metrics::{EndpointLabels, Metrics, ResultLabels, ReviewLabels};
use crate::observations::{self, Accepted, Ingest, Refusal};
use crate::state::{ClusterState, Snapshot};

/// What every request handler shares.
#[derive(Debug, Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub state: Arc<dyn ClusterState>,
    pub metrics: Arc<Metrics>,
    /// Longest time one review may take.
    pub timeout: Duration,
    /// `POST /v1/observations` (the sensor's reports); `None` answers 404.
    pub ingest: Option<Arc<Ingest>>,
    /// Answers of reviews decided on the cached state, for the same question asked again
    /// (`crate::memo`).
    pub memo: Arc<DecisionMemo>,
}

/// Server limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body; larger bodies get HTTP 413.
    pub max_body_bytes: usize,
    /// How long shutdown waits for in-flight reviews.
    pub shutdown_grace: Duration,
    /// Reviews parsed and decided at once, on the blocking pool (never on the async workers,
    /// so one large review cannot stall the others' I/O).
    pub max_concurrent_reviews: usize,
    /// Request bodies under review at once, in bytes: what bounds the webhook's memory. A
    /// review holds `max(body, 64 KiB)` of it; a review that cannot get its share (and a slot)
    /// within a fifth of the review timeout is answered 503 (the API server then applies
    /// `failurePolicy`).
    pub review_memory_bytes: usize,
    /// Connections open at once on the HTTPS port; more are closed as they arrive.
    pub max_connections: usize,
    /// Connections open at once on the operations port (probes and scrapes need few).
    pub max_ops_connections: usize,
    /// Time a client has to complete the TLS handshake, and to send a request's headers (on a
    /// new connection or a kept-alive one); then the connection is closed.
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 8 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(20),
            max_concurrent_reviews: 8,
            review_memory_bytes: 6 * 1024 * 1024,
            max_connections: 1024,
            max_ops_connections: 64,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// HTTP/1.1 and HTTP/2 settings shared by both ports: header-read timeout (slowloris), HTTP/2
/// keep-alive pings (a peer that stops answering is dropped) and a stream limit.
fn configure(builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>, limits: &Limits) {
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout)
        .max_concurrent_streams(64);
}

/// The smallest share of the memory budget one review takes.
const MIN_REVIEW_SHARE: usize = 64 * 1024;

/// The admission routes' state: the app and the review budget.
#[derive(Debug, Clone)]
struct Served {
    app: App,
    /// Permits are KiB of request body under review.
    memory: Arc<tokio::sync::Semaphore>,
    /// Permits are reviews under way.
    slots: Arc<tokio::sync::Semaphore>,
    memory_kib: u32,
}

/// The HTTPS routes: admission, and the sensor's observations and the egress map.
pub fn admission_router(app: App, limits: Limits) -> Router {
    let memory_kib = u32::try_from(limits.review_memory_bytes.max(MIN_REVIEW_SHARE) / 1024).unwrap_or(u32::MAX);
    let served = Served {
        app: app.clone(),
        memory: Arc::new(tokio::sync::Semaphore::new(memory_kib as usize)),
        slots: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent_reviews.max(1))),
        memory_kib,
    };
    let reviews = Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .with_state(served);
    Router::new()
        .route("/v1/observations", post(ingest_observations).layer(DefaultBodyLimit::max(observations::MAX_BODY_BYTES)))
        .route("/v1/map", get(egress_map))
        .route("/v1/flows", post(ingest_flows).layer(DefaultBodyLimit::max(crate::traffic::MAX_BODY_BYTES)))
        .route("/v1/traffic", get(traffic_history))
        .with_state(app)
        .merge(reviews)
}

/// The operations routes.
pub fn ops_router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(app)
}

async fn validate(State(served): State<Served>, body: Bytes) -> Response {
    handle(&served, Endpoint::Validate, body).await
}

async fn mutate(State(served): State<Served>, body: Bytes) -> Response {
    handle(&served, Endpoint::Mutate, body).await
}

async fn ingest_observations(State(app): State<App>, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    let Some(ingest) = &app.ingest else {
        return (StatusCode::NOT_FOUND, "observations are not enabled on this webhook\n").into_response();
    };
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match ingest.handle(authorization, &body).await {
        Ok(Accepted { accepted, unattributed, intents_changed }) => {
            let count = |result| app.metrics.observations.get_or_create(&ResultLabels { result }).clone();
            count("accepted").inc_by(accepted as u64);
            count("unattributed").inc_by(unattributed as u64);
            app.metrics.observation_intent_updates.inc_by(intents_changed as u64);
            let body = serde_json::json!({
                "accepted": accepted, "unattributed": unattributed, "intentsChanged": intents_changed,
            });
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
        }
        Err(refusal) => {
            app.metrics.observation_requests.get_or_create(&ResultLabels { result: refusal.label() }).inc();
            refused(&refusal, "observation batch refused")
        }
    }
}

async fn ingest_flows(State(app): State<App>, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    let Some(ingest) = &app.ingest else {
        return (StatusCode::NOT_FOUND, "flows are not enabled on this webhook\n").into_response();
    };
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let batches = |result| app.metrics.traffic_requests.get_or_create(&ResultLabels { result }).clone();
    match ingest.handle_flows(authorization, &body).await {
        Ok(ack) => {
            batches(match (ack.durable, ack.duplicate) {
                (true, false) => "durable",
                (_, true) => "duplicate",
                (false, false) => "pending",
            })
            .inc();
            match serde_json::to_string(&ack) {
                Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the answer: {e}\n")).into_response(),
            }
        }
        Err(refusal) => {
            batches(refusal.label()).inc();
            refused(&refusal, "flow batch refused")
        }
    }
}

async fn traffic_history(State(app): State<App>, headers: axum::http::HeaderMap) -> Response {
    let Some(ingest) = &app.ingest else {
        return (StatusCode::NOT_FOUND, "the traffic history is not enabled on this webhook\n").into_response();
    };
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match ingest.read_traffic(authorization).await {
        Ok(log) => match log.to_json() {
            Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(e) => {
                (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the traffic history: {e}\n")).into_response()
            }
        },
        Err(refusal) => refused(&refusal, "traffic history request refused"),
    }
}

async fn egress_map(State(app): State<App>, headers: axum::http::HeaderMap) -> Response {
    let Some(ingest) = &app.ingest else {
        return (StatusCode::NOT_FOUND, "the egress map is not enabled on this webhook\n").into_response();
    };
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match ingest.read_map(authorization).await {
        Ok(snapshot) => match serde_json::to_string(&snapshot) {
            Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the map: {e}\n")).into_response(),
        },
        Err(refusal) => refused(&refusal, "egress map request refused"),
    }
}

/// The response (and log line) for a refused `/v1/*` request.
fn refused(refusal: &Refusal, what: &'static str) -> Response {
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
    tracing::warn!(status = status.as_u16(), reason = %refusal.message(), "{what}");
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{}\n", refusal.message())).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): State<App>) -> Response {
    if app.state.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "cluster state not synced yet\n").into_response()
    }
}

async fn metrics(State(app): State<App>) -> Response {
    let body = app.metrics.render(app.state.sizes());
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}

async fn handle(served: &Served, endpoint: Endpoint, body: Bytes) -> Response {
    let app = &served.app;
    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + app.timeout);
    // Load shedding: a review waits for its share of the budget for a fifth of its time at
    // most, then gets a fast 503 instead of queueing behind the others; the API server applies
    // the webhook's failurePolicy and the client retries.
    let share =
        u32::try_from(body.len().max(MIN_REVIEW_SHARE).div_ceil(1024)).unwrap_or(u32::MAX).min(served.memory_kib);
    let budget = async {
        let memory = served.memory.clone().acquire_many_owned(share).await.ok()?;
        let slot = served.slots.clone().acquire_owned().await.ok()?;
        Some(Arc::new((memory, slot)))
    };
    let queue_deadline = tokio::time::Instant::from_std(started + app.timeout / 5);
    let Ok(Some(permit)) = tokio::time::timeout_at(queue_deadline, budget).await else {
        app.metrics.shed.inc();
        tracing::warn!(
            endpoint = endpoint.as_str(),
            bytes = body.len(),
            "review shed: the webhook is at its review budget"
        );
        return (StatusCode::SERVICE_UNAVAILABLE, "portcullis is overloaded; try again\n").into_response();
    };
    let small = body.len() <= INLINE_BODY_BYTES;
    let work = async {
        let parsed = if small {
            Ok(admission::parse(&body))
        } else {
            let parse_permit = permit.clone();
            tokio::task::spawn_blocking(move || {
                let _held = parse_permit;
                admission::parse(&body)
            })
            .await
        };
        let req = match parsed {
            Ok(Ok(req)) => Arc::new(req),
            Ok(Err(e)) => return Err(bad_request(app, endpoint, &e)),
            Err(e) => return Err(internal(&e)),
        };
        let outcome = decide(app, endpoint, &req, small, &permit).await.map_err(|e| internal(&e))?;
        Ok((req, outcome))
    };
    let (req, outcome) = match tokio::time::timeout_at(deadline, work).await {
        Ok(Ok(done)) => done,
        Ok(Err(response)) => return response,
        Err(_) => {
            // The blocking work finishes on its own and frees its share then; the answer is
            // sent now, on time.
            app.metrics.timeouts.inc();
            tracing::error!(endpoint = endpoint.as_str(), "review timed out after {:?}", app.timeout);
            return (StatusCode::SERVICE_UNAVAILABLE, "review timed out\n").into_response();
        }
    };
    let elapsed = started.elapsed();
    record(app, endpoint, &req, &outcome, elapsed);
    match admission::response_body(outcome.response) {
        Ok(json) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("encoding the response: {e}\n")).into_response(),
    }
}

fn bad_request(app: &App, endpoint: Endpoint, e: &admission::BadReview) -> Response {
    app.metrics.bad_requests.get_or_create(&EndpointLabels { endpoint: endpoint.as_str() }).inc();
    tracing::warn!(endpoint = endpoint.as_str(), error = %escape_control(&e.to_string()), "bad admission request");
    (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{e}\n")).into_response()
}

fn internal(e: &tokio::task::JoinError) -> Response {
    tracing::error!(error = %e, "review task failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "review failed\n").into_response()
}

/// Reviews whose body is at most this many bytes are parsed on the async worker, and decided
/// there when they read at most [`INLINE_POLICIES`] of their namespace's NetworkPolicies (all of
/// them, or those that may select the pods judged: `review::policies_read`): bounded work,
/// typically 100–400 µs and a few milliseconds at worst (every policy of a full namespace
/// selecting the pods), cheaper than a hand-off to the blocking pool (wake-ups and context
/// switches both ways cost a tenth of a review's CPU and most of its tail latency). Anything
/// larger goes to the blocking pool, so no worker stalls long on one review and the timeout
/// answers on time; an inline review can answer late by at most its own bounded work.
const INLINE_BODY_BYTES: usize = 32 * 1024;
/// See [`INLINE_BODY_BYTES`].
const INLINE_POLICIES: usize = 256;

/// How one decision is made: in the namespace's mode or a given one, and whether its answers are
/// looked up in and kept in the decision memo: decisions on the cached state of reviews of at
/// most [`INLINE_BODY_BYTES`] (a fresh read's state is asked once; a larger review's object is
/// not copied again to be remembered, nor hashed).
#[derive(Debug, Clone, Copy)]
struct Asking {
    mode: Option<WebhookMode>,
    remember: bool,
}

/// Decides once, holding the review's share of the budget: on the async worker for a small review
/// that reads few policies ([`INLINE_BODY_BYTES`]), on the blocking pool otherwise.
async fn decide_with_budget(
    app: &App,
    endpoint: Endpoint,
    req: &Arc<Request>,
    snapshot: Snapshot,
    asking: Asking,
    small: bool,
    permit: &Arc<impl Send + Sync + 'static>,
) -> Result<Outcome, tokio::task::JoinError> {
    let decide = move |req: &Request, config: &Config, snapshot: &Snapshot, memo: &DecisionMemo| {
        admission::decide_with(endpoint, req, snapshot, config, asking.mode, asking.remember.then_some(memo))
    };
    if small
        && (snapshot.policies.len() <= INLINE_POLICIES || admission::policies_read(req, &snapshot) <= INLINE_POLICIES)
    {
        return Ok(decide(req, &app.config, &snapshot, &app.memo));
    }
    let (req, config, memo, held) = (req.clone(), app.config.clone(), app.memo.clone(), permit.clone());
    tokio::task::spawn_blocking(move || {
        let _held = held;
        decide(&req, &config, &snapshot, &memo)
    })
    .await
}

/// Decides with the cached state; before denying, re-reads the namespace and its policies so a
/// stale cache never rejects a correct apply, nor the cleanup of a namespace whose deletion it
/// has not seen yet.
async fn decide(
    app: &App,
    endpoint: Endpoint,
    req: &Arc<Request>,
    small: bool,
    permit: &Arc<impl Send + Sync + 'static>,
) -> Result<Outcome, tokio::task::JoinError> {
    let namespace = req.namespace();
    let mut snapshot = app.state.snapshot(&namespace, &app.config.dns.namespace);
    if crate::admission::needs_cluster_view(req) {
        snapshot.cluster = Some(Arc::new(app.state.cluster_view()));
    }
    let outcome =
        decide_with_budget(app, endpoint, req, snapshot.clone(), Asking { mode: None, remember: small }, small, permit)
            .await?;
    if !outcome.needs_confirmation() {
        return Ok(outcome);
    }
    match app.state.fresh(&namespace).await {
        Ok(fresh) => {
            app.metrics.fresh_reads.get_or_create(&ResultLabels { result: "success" }).inc();
            let layers = fresh.layers.unwrap_or_else(|| snapshot.layers.clone());
            let fresh = Snapshot {
                policies: fresh.policies.into(),
                layers,
                namespace_terminating: snapshot.namespace_terminating || fresh.terminating,
                ..snapshot
            };
            decide_with_budget(app, endpoint, req, fresh, Asking { mode: None, remember: false }, small, permit).await
        }
        Err(e) if !outcome.depends_on_policy_state() => {
            // The object's own content is wrong whatever the cluster holds.
            app.metrics.fresh_reads.get_or_create(&ResultLabels { result: "failure" }).inc();
            tracing::warn!(uid = %req.inner.uid, error = %e, "could not read fresh state; the content denial stands");
            Ok(outcome)
        }
        Err(e) => {
            // Unconfirmed: admit with the problems as warnings rather than reject on a cache
            // we could not check.
            app.metrics.fresh_reads.get_or_create(&ResultLabels { result: "failure" }).inc();
            tracing::warn!(uid = %req.inner.uid, error = %e, "could not confirm a denial; admitting with warnings");
            let asking = Asking { mode: Some(WebhookMode::Warn), remember: small };
            decide_with_budget(app, endpoint, req, snapshot, asking, small, permit).await
        }
    }
}

fn record(app: &App, endpoint: Endpoint, req: &Request, outcome: &Outcome, elapsed: Duration) {
    let decision = outcome.decision;
    app.metrics
        .reviews
        .get_or_create(&ReviewLabels {
            endpoint: endpoint.as_str(),
            kind: crate::metrics::kind_label(&req.inner.kind.kind),
            operation: req.operation(),
            decision: decision.as_str(),
        })
        .inc();
    app.metrics.latency.get_or_create(&EndpointLabels { endpoint: endpoint.as_str() }).observe(elapsed.as_secs_f64());
    let findings = crate::review::codes(&outcome.problems);
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    let namespace = req.namespace();
    macro_rules! log_review {
        ($level:expr) => {
            tracing::event!(
                $level,
                uid = %req.inner.uid,
                endpoint = endpoint.as_str(),
                kind = %escape_control(&req.inner.kind.kind),
                namespace = %escape_control(&namespace),
                name = %escape_control(&req.inner.name),
                operation = req.operation(),
                dry_run = req.inner.dry_run,
                mode = outcome.mode.as_str(),
                decision = decision.as_str(),
                findings = %findings,
                skipped = outcome.skipped.unwrap_or(""),
                duration_ms,
                "admission review"
            )
        };
    }
    // Skipped and clean reviews are the bulk of traffic: debug level.
    if matches!(decision, Decision::Skip | Decision::Allow) {
        log_review!(tracing::Level::DEBUG);
    } else {
        log_review!(tracing::Level::INFO);
    }
}

/// A running pair of servers.
#[derive(Debug)]
pub struct Running {
    pub https: SocketAddr,
    pub ops: SocketAddr,
    handle: Handle<SocketAddr>,
    ops_handle: Handle<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    grace: Duration,
}

/// Starts both servers on already bound listeners (port 0 works: tests read the addresses).
pub async fn start(
    https: std::net::TcpListener,
    ops: std::net::TcpListener,
    app: App,
    tls: RustlsConfig,
    limits: Limits,
) -> std::io::Result<Running> {
    https.set_nonblocking(true)?;
    ops.set_nonblocking(true)?;
    let https_addr = https.local_addr()?;
    let ops_addr = ops.local_addr()?;
    let handle = Handle::new();
    let admission = admission_router(app.clone(), limits);
    // The limit counts TCP connections before the TLS handshake, which must finish in time.
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls)
        .handshake_timeout(limits.header_timeout)
        .acceptor(Limit::new(limits.max_connections, "https"));
    let mut server = axum_server::from_tcp(https)?.acceptor(acceptor).handle(handle.clone());
    configure(server.http_builder(), &limits);
    let mut tasks = vec![tokio::spawn(server.serve(admission.into_make_service()))];
    let ops_handle = Handle::new();
    let mut ops_server =
        axum_server::from_tcp(ops)?.acceptor(Limit::new(limits.max_ops_connections, "ops")).handle(ops_handle.clone());
    configure(ops_server.http_builder(), &limits);
    tasks.push(tokio::spawn(ops_server.serve(ops_router(app).into_make_service())));
    Ok(Running { https: https_addr, ops: ops_addr, handle, ops_handle, tasks, grace: limits.shutdown_grace })
}

impl Running {
    /// Stops accepting connections, lets in-flight reviews finish (up to the grace period),
    /// then returns.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.handle.graceful_shutdown(Some(self.grace));
        self.ops_handle.graceful_shutdown(Some(self.grace));
        for task in self.tasks {
            match task.await {
                Ok(result) => result?,
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        Ok(())
    }
}
