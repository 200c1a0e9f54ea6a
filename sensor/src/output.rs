//! Where observations go: JSON lines on stdout, and/or batches to the webhook's
//! `POST /v1/observations` over HTTPS with the ServiceAccount token.
//!
//! The queue between the capture thread and this task is bounded; when the webhook is slow or
//! down, the capture thread drops (and counts) what does not fit, never blocking on the network.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis_linter::egress::observation::{MAX_BATCH, ObservationBatch, SensorObservation};
use tokio::sync::mpsc;

/// Where to report.
#[derive(Debug, Clone)]
pub struct ReportConfig {
    /// `https://…/v1/observations`.
    pub url: Uri,
    /// CA bundle (PEM) that signed the webhook's serving certificate.
    pub ca: PathBuf,
    /// Bearer token file, re-read for every request (kubelet rotates projected tokens).
    pub token_file: PathBuf,
    /// Observations per request, at most [`MAX_BATCH`].
    pub batch: usize,
    /// Longest wait before a partial batch is sent.
    pub interval: Duration,
}

/// Reporter figures for metrics.
#[derive(Debug, Default)]
pub struct ReportStats {
    pub sent: AtomicU64,
    pub failed_requests: AtomicU64,
    pub dropped: AtomicU64,
}

/// What the output task does with each observation.
#[derive(Debug)]
pub struct Outputs {
    pub stdout: bool,
    pub report: Option<Reporter>,
}

/// Drains the queue until every sender is gone, then flushes.
pub async fn run(mut queue: mpsc::Receiver<SensorObservation>, mut outputs: Outputs) {
    let interval = outputs.report.as_ref().map_or(Duration::from_secs(3600), |r| r.config.interval);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            next = queue.recv() => match next {
                Some(observation) => {
                    if outputs.stdout {
                        write_line(&observation);
                    }
                    if let Some(reporter) = &mut outputs.report {
                        reporter.pending.push(observation);
                        if reporter.pending.len() >= reporter.config.batch {
                            reporter.flush().await;
                        }
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                if let Some(reporter) = &mut outputs.report {
                    reporter.flush().await;
                }
            }
        }
    }
    if let Some(reporter) = &mut outputs.report {
        reporter.flush().await;
    }
}

fn write_line(observation: &SensorObservation) {
    let mut out = std::io::stdout().lock();
    if let Ok(mut line) = serde_json::to_vec(observation) {
        line.push(b'\n');
        if out.write_all(&line).and_then(|()| out.flush()).is_err() {
            tracing::warn!("stdout is closed; observation not written");
        }
    }
}

/// Batches observations to the webhook.
#[derive(Debug)]
pub struct Reporter {
    config: ReportConfig,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    pending: Vec<SensorObservation>,
    pub stats: Arc<ReportStats>,
}

impl Reporter {
    pub fn new(mut config: ReportConfig, stats: Arc<ReportStats>) -> anyhow::Result<Self> {
        if config.url.scheme_str() != Some("https") {
            anyhow::bail!("--report-url must be https:// (observations carry a bearer token)");
        }
        config.batch = config.batch.clamp(1, MAX_BATCH);
        let pem = std::fs::read(&config.ca).with_context(|| format!("reading --report-ca {}", config.ca.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert.context("parsing --report-ca")?).context("adding --report-ca")?;
        }
        if roots.is_empty() {
            anyhow::bail!("--report-ca {} holds no certificate", config.ca.display());
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("TLS versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { config, client, pending: Vec::new(), stats })
    }

    /// Sends what is pending, retrying with backoff (1 s doubling to 30 s, five attempts). A batch
    /// that still fails is dropped and counted: the queue in front keeps bounding memory.
    async fn flush(&mut self) {
        while !self.pending.is_empty() {
            let take = self.pending.len().min(self.config.batch);
            let batch: Vec<SensorObservation> = self.pending.drain(..take).collect();
            let count = batch.len() as u64;
            let body = match serde_json::to_vec(&ObservationBatch { observations: batch }) {
                Ok(body) => Bytes::from(body),
                Err(err) => {
                    tracing::error!(%err, "cannot encode observations");
                    self.stats.dropped.fetch_add(count, Ordering::Relaxed);
                    continue;
                }
            };
            let mut delay = Duration::from_secs(1);
            let mut delivered = false;
            for attempt in 1..=5 {
                match self.post(body.clone()).await {
                    Ok(()) => {
                        delivered = true;
                        break;
                    }
                    Err(err) => {
                        self.stats.failed_requests.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(attempt, error = %format!("{err:#}"), "reporting observations failed");
                        if attempt < 5 {
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(30));
                        }
                    }
                }
            }
            let counter = if delivered { &self.stats.sent } else { &self.stats.dropped };
            counter.fetch_add(count, Ordering::Relaxed);
        }
    }

    async fn post(&self, body: Bytes) -> anyhow::Result<()> {
        let token = std::fs::read_to_string(&self.config.token_file)
            .with_context(|| format!("reading the token {}", self.config.token_file.display()))?;
        let request = Request::post(self.config.url.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::AUTHORIZATION, format!("Bearer {}", token.trim()))
            .body(Full::new(body))?;
        let response = tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
            .await
            .context("timed out")??;
        let status = response.status();
        if status == StatusCode::OK || status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
            return Ok(());
        }
        let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        anyhow::bail!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(512)]))
    }
}
