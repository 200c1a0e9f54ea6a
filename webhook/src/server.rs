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

use crate::admission::{self, Decision, Endpoint, Outcome, Request};
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
}

/// Server limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body; larger bodies get HTTP 413.
    pub max_body_bytes: usize,
    /// How long shutdown waits for in-flight reviews.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_body_bytes: 8 * 1024 * 1024, shutdown_grace: Duration::from_secs(20) }
    }
}

/// The HTTPS routes: admission, and the sensor's observations and the egress map.
pub fn admission_router(app: App, limits: Limits) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .route("/v1/observations", post(ingest_observations).layer(DefaultBodyLimit::max(observations::MAX_BODY_BYTES)))
        .route("/v1/map", get(egress_map))
        .with_state(app)
}

/// The operations routes.
pub fn ops_router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(app)
}

async fn validate(State(app): State<App>, body: Bytes) -> Response {
    handle(&app, Endpoint::Validate, &body).await
}

async fn mutate(State(app): State<App>, body: Bytes) -> Response {
    handle(&app, Endpoint::Mutate, &body).await
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

async fn handle(app: &App, endpoint: Endpoint, body: &[u8]) -> Response {
    let started = Instant::now();
    let req = match admission::parse(body) {
        Ok(req) => req,
        Err(e) => {
            app.metrics.bad_requests.get_or_create(&EndpointLabels { endpoint: endpoint.as_str() }).inc();
            tracing::warn!(endpoint = endpoint.as_str(), error = %e, "bad admission request");
            return (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{e}\n"))
                .into_response();
        }
    };
    let outcome = match tokio::time::timeout(app.timeout, decide(app, endpoint, &req)).await {
        Ok(outcome) => outcome,
        Err(_) => {
            tracing::error!(uid = %req.inner.uid, "review timed out after {:?}", app.timeout);
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

/// Decides with the cached state; before denying for a problem that depends on which policies
/// exist, re-reads the namespace and its policies so a stale cache never rejects a correct
/// apply, nor the cleanup of a namespace whose deletion the cache has not seen yet.
async fn decide(app: &App, endpoint: Endpoint, req: &Request) -> Outcome {
    let namespace = req.namespace();
    let snapshot = app.state.snapshot(&namespace, &app.config.dns.namespace);
    let outcome = admission::decide(endpoint, req, &snapshot, &app.config);
    if !outcome.needs_confirmation() {
        return outcome;
    }
    match app.state.fresh(&namespace).await {
        Ok(fresh) => {
            app.metrics.fresh_reads.get_or_create(&ResultLabels { result: "success" }).inc();
            let fresh = Snapshot {
                policies: fresh.policies,
                namespace_terminating: snapshot.namespace_terminating || fresh.terminating,
                ..snapshot
            };
            admission::decide(endpoint, req, &fresh, &app.config)
        }
        Err(e) if !outcome.depends_on_policy_state() => {
            // The object's own content is wrong whatever the cluster holds.
            app.metrics.fresh_reads.get_or_create(&ResultLabels { result: "failure" }).inc();
            tracing::warn!(uid = %req.inner.uid, error = %e, "could not read fresh state; the content denial stands");
            outcome
        }
        Err(e) => {
            // Unconfirmed: admit with the problems as warnings rather than reject on a cache
            // we could not check.
            app.metrics.fresh_reads.get_or_create(&ResultLabels { result: "failure" }).inc();
            tracing::warn!(uid = %req.inner.uid, error = %e, "could not confirm a denial; admitting with warnings");
            admission::decide_in_mode(endpoint, req, &snapshot, &app.config, WebhookMode::Warn)
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
                kind = %req.inner.kind.kind,
                namespace = %namespace,
                name = %req.inner.name,
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
    ops_shutdown: tokio::sync::watch::Sender<bool>,
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
    let ops_listener = tokio::net::TcpListener::from_std(ops)?;
    let ops_addr = ops_listener.local_addr()?;
    let handle = Handle::new();
    let admission = admission_router(app.clone(), limits);
    let server = axum_server::from_tcp_rustls(https, tls)?.handle(handle.clone());
    let mut tasks = vec![tokio::spawn(server.serve(admission.into_make_service()))];
    let (ops_shutdown, mut rx) = tokio::sync::watch::channel(false);
    let ops_app = ops_router(app);
    tasks.push(tokio::spawn(async move {
        axum::serve(ops_listener, ops_app)
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|stop| *stop).await;
            })
            .await
    }));
    Ok(Running { https: https_addr, ops: ops_addr, handle, ops_shutdown, tasks, grace: limits.shutdown_grace })
}

impl Running {
    /// Stops accepting connections, lets in-flight reviews finish (up to the grace period),
    /// then returns.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.handle.graceful_shutdown(Some(self.grace));
        let _ = self.ops_shutdown.send(true);
        for task in self.tasks {
            match task.await {
                Ok(result) => result?,
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        Ok(())
    }
}
