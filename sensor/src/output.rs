//! Where observations go: JSON lines on stdout, and/or batches to the webhook's
//! `POST /v1/observations` over HTTPS with the ServiceAccount token.
//!
//! The queue between the capture thread and this task is bounded in observations and in bytes
//! ([`QueueBudget`]); when the webhook is slow or down, the capture thread drops (and counts) what
//! does not fit, never blocking on the network. Requests stay under [`MAX_REQUEST_BYTES`], half
//! the webhook's body limit, whatever the observations hold.
//!
//! Every batch goes to **every address** the report host resolves to (the chart points it at a
//! headless Service): each webhook replica then sees every observation, so the one holding the
//! controller Lease never misses one, and every replica's `/v1/map` is whole. Each address gets
//! its own connection pool and its own retries; TLS still verifies the host name.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use portcullis_linter::egress::observation::{MAX_BATCH, SensorObservation};
use tokio::sync::mpsc;

/// Largest request body sent: half the webhook's 2 MiB limit.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// Bytes of observations the queue holds at most, shared by the capture thread (which takes)
/// and the output task (which gives back).
#[derive(Debug)]
pub struct QueueBudget {
    used: AtomicUsize,
    limit: usize,
}

impl QueueBudget {
    pub fn new(limit: usize) -> Self {
        Self { used: AtomicUsize::new(0), limit }
    }

    /// Takes `bytes` if they fit.
    pub fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    pub fn give_back(&self, bytes: usize) {
        let _ = self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| Some(used.saturating_sub(bytes)));
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// What an observation costs in memory, roughly (heap and inline parts).
pub fn weight(observation: &SensorObservation) -> usize {
    let pod = observation.client.pod.as_ref().map_or(0, |pod| {
        let labels: usize = pod.labels.iter().map(|(k, v)| k.len() + v.len() + 64).sum();
        pod.namespace.len() + pod.name.len() + pod.workload.as_ref().map_or(0, String::len) + labels
    });
    let cnames: usize = observation.cnames.iter().map(|c| c.len() + 24).sum();
    256 + observation.node.len() + observation.qname.len() + pod + cnames + 32 * observation.answers.len()
}

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
pub async fn run(mut queue: mpsc::Receiver<SensorObservation>, budget: Arc<QueueBudget>, mut outputs: Outputs) {
    let interval = outputs.report.as_ref().map_or(Duration::from_secs(3600), |r| r.config.interval);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            next = queue.recv() => match next {
                Some(observation) => {
                    budget.give_back(weight(&observation));
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

/// Takes observations from the front of `pending` into one `ObservationBatch` body: at most
/// `batch` of them and [`MAX_REQUEST_BYTES`] (at least one). Returns the body (empty when none
/// could be encoded), how many it holds and how many could not be encoded (taken all the same).
fn next_body(pending: &mut Vec<SensorObservation>, batch: usize) -> (Vec<u8>, u64, u64) {
    let mut body = b"{\"observations\":[".to_vec();
    let mut taken = 0;
    let mut encoded = 0;
    for observation in pending.iter() {
        if taken == batch {
            break;
        }
        let Ok(item) = serde_json::to_vec(observation) else {
            tracing::error!("cannot encode an observation");
            taken += 1;
            continue;
        };
        if encoded > 0 && body.len() + item.len() + 3 > MAX_REQUEST_BYTES {
            break;
        }
        if encoded > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&item);
        taken += 1;
        encoded += 1;
    }
    pending.drain(..taken);
    body.extend_from_slice(b"]}");
    let failed = (taken - encoded) as u64;
    if encoded == 0 { (Vec::new(), 0, failed) } else { (body, encoded as u64, failed) }
}

/// Resolves every name to one fixed address: a connection pool pinned to one replica, while
/// the URI (and so TLS server-name verification) keeps the host name.
#[derive(Debug, Clone, Copy)]
struct Pinned(SocketAddr);

impl tower_service::Service<Name> for Pinned {
    type Response = std::iter::Once<SocketAddr>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Name) -> Self::Future {
        std::future::ready(Ok(std::iter::once(self.0)))
    }
}

type PinnedClient = Client<HttpsConnector<HttpConnector<Pinned>>, Full<Bytes>>;

/// Batches observations to the webhook.
pub struct Reporter {
    config: ReportConfig,
    tls: rustls::ClientConfig,
    /// One pool per replica address, rebuilt as the host's addresses change.
    clients: HashMap<SocketAddr, PinnedClient>,
    pending: Vec<SensorObservation>,
    pub stats: Arc<ReportStats>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("url", &self.config.url)
            .field("replicas", &self.clients.keys().collect::<Vec<_>>())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Reporter {
    pub fn new(mut config: ReportConfig, stats: Arc<ReportStats>) -> anyhow::Result<Self> {
        if config.url.scheme_str() != Some("https") {
            anyhow::bail!("--report-url must be https:// (observations carry a bearer token)");
        }
        config.batch = config.batch.clamp(1, MAX_BATCH);
        let tls = portcullis_linter::https::client_config_trusting(&config.ca, "--report-ca")?;
        if config.url.host().is_none() {
            anyhow::bail!("--report-url has no host");
        }
        Ok(Self { config, tls, clients: HashMap::new(), pending: Vec::new(), stats })
    }

    fn client(&mut self, addr: SocketAddr) -> PinnedClient {
        let tls = self.tls.clone();
        self.clients
            .entry(addr)
            .or_insert_with(|| {
                let mut http = HttpConnector::new_with_resolver(Pinned(addr));
                http.enforce_http(false);
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_only()
                    .enable_http1()
                    .wrap_connector(http);
                Client::builder(TokioExecutor::new()).build(connector)
            })
            .clone()
    }

    /// The report host's current addresses (every webhook replica behind a headless Service).
    async fn replicas(&mut self) -> anyhow::Result<Vec<SocketAddr>> {
        let host = self.config.url.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = self.config.url.port_u16().unwrap_or(443);
        let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .collect();
        addrs.sort();
        addrs.dedup();
        if addrs.is_empty() {
            anyhow::bail!("{host} has no address");
        }
        self.clients.retain(|addr, _| addrs.contains(addr));
        Ok(addrs)
    }

    /// Sends what is pending, retrying with backoff (1 s doubling to 30 s, five attempts). A batch
    /// that still fails is dropped and counted: the queue in front keeps bounding memory.
    async fn flush(&mut self) {
        while !self.pending.is_empty() {
            let (body, count, failed) = next_body(&mut self.pending, self.config.batch);
            self.stats.dropped.fetch_add(failed, Ordering::Relaxed);
            if body.is_empty() {
                continue;
            }
            let body = Bytes::from(body);
            // Every replica gets the batch; only the ones that failed are retried.
            let mut waiting: Option<Vec<SocketAddr>> = None;
            let mut delay = Duration::from_secs(1);
            for attempt in 1..=5 {
                let targets = match waiting.take() {
                    Some(targets) => targets,
                    None => match self.replicas().await {
                        Ok(all) => all,
                        Err(err) => {
                            self.stats.failed_requests.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(attempt, error = %format!("{err:#}"), "reporting observations failed");
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(30));
                            continue;
                        }
                    },
                };
                let sends: Vec<_> = targets
                    .iter()
                    .map(|addr| {
                        let client = self.client(*addr);
                        let request = self.request(body.clone());
                        async move { (*addr, post(&client, request, Duration::from_secs(10)).await.map(drop)) }
                    })
                    .collect();
                let mut failed = Vec::new();
                for (addr, result) in futures::future::join_all(sends).await {
                    if let Err(err) = result {
                        self.stats.failed_requests.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(attempt, replica = %addr, error = %format!("{err:#}"), "reporting observations failed");
                        failed.push(addr);
                    }
                }
                if failed.is_empty() {
                    break;
                }
                waiting = Some(failed);
                if attempt < 5 {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
            let counter = if waiting.is_none() { &self.stats.sent } else { &self.stats.dropped };
            counter.fetch_add(count, Ordering::Relaxed);
        }
    }

    /// Sends `body` once to every replica the host resolves to; each one's answer body, or why
    /// not. `timeout` bounds each exchange.
    pub async fn send_to_all(
        &mut self,
        body: Bytes,
        timeout: Duration,
    ) -> anyhow::Result<Vec<(SocketAddr, anyhow::Result<Bytes>)>> {
        let targets = self.replicas().await?;
        let sends: Vec<_> = targets
            .iter()
            .map(|addr| {
                let client = self.client(*addr);
                let request = self.request(body.clone());
                async move { (*addr, post(&client, request, timeout).await) }
            })
            .collect();
        Ok(futures::future::join_all(sends).await)
    }

    /// The request for one replica (the token is re-read: kubelet rotates projected tokens).
    fn request(&self, body: Bytes) -> anyhow::Result<Request<Full<Bytes>>> {
        let token = std::fs::read_to_string(&self.config.token_file)
            .with_context(|| format!("reading the token {}", self.config.token_file.display()))?;
        Ok(Request::post(self.config.url.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::AUTHORIZATION, format!("Bearer {}", token.trim()))
            .body(Full::new(body))?)
    }
}

/// Largest answer body read (the webhook's answers are a few hundred bytes).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Posts and reads the answer: its body on 200, 202 or 204, else the status and the start of
/// the body as the error. Bounded in time (`timeout`) and in the bytes read.
async fn post(
    client: &PinnedClient,
    request: anyhow::Result<Request<Full<Bytes>>>,
    timeout: Duration,
) -> anyhow::Result<Bytes> {
    let exchange = async {
        let response = client.request(request?).await?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status == StatusCode::OK || status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
            return Ok(body);
        }
        anyhow::bail!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(512)]))
    };
    tokio::time::timeout(timeout, exchange).await.context("timed out")?
}

#[cfg(test)]
mod tests {
    use portcullis_linter::egress::observation::{ObservationBatch, SensorAnswer, SensorClient, SensorPod};

    use super::*;

    fn observation(labels: usize, answers: usize) -> SensorObservation {
        SensorObservation {
            ts: jiff::Timestamp::UNIX_EPOCH,
            node: "n1".into(),
            client: SensorClient {
                ip: "10.0.0.5".parse().unwrap(),
                pod: Some(SensorPod {
                    namespace: "shop".into(),
                    name: "pay".into(),
                    workload: None,
                    labels: (0..labels).map(|i| (format!("{}/k{i}", "a".repeat(200)), "v".repeat(63))).collect(),
                }),
            },
            server: "10.96.0.10".parse().unwrap(),
            qname: "api.example.test".into(),
            answers: (0..answers as u32)
                .map(|i| SensorAnswer { ip: std::net::Ipv4Addr::from(0x0a00_0000 + i).into(), ttl: 60 })
                .collect(),
            cnames: vec!["c".repeat(253); 16],
        }
    }

    #[test]
    fn request_bodies_stay_under_the_limit_and_parse_as_batches() {
        // The largest observations a pod can cause: labels at the attribution bound, 256
        // addresses, 16 long CNAMEs (about 20 KB of JSON each).
        let mut pending: Vec<_> = (0..200).map(|_| observation(28, 256)).collect();
        let mut bodies = 0;
        let mut total = 0;
        while !pending.is_empty() {
            let (body, count, failed) = next_body(&mut pending, 256);
            assert!(body.len() <= MAX_REQUEST_BYTES, "{}", body.len());
            assert_eq!(failed, 0);
            let batch: ObservationBatch = serde_json::from_slice(&body).unwrap();
            assert_eq!(batch.observations.len() as u64, count);
            total += count;
            bodies += 1;
        }
        assert_eq!(total, 200);
        assert!(bodies > 1, "200 large observations do not fit one request");
        // Small ones go by the count.
        let mut pending: Vec<_> = (0..10).map(|_| observation(1, 1)).collect();
        assert_eq!(next_body(&mut pending, 4).1, 4);
    }

    #[test]
    fn the_queue_budget_refuses_what_does_not_fit() {
        let budget = QueueBudget::new(100);
        assert!(budget.try_take(60));
        assert!(!budget.try_take(60));
        assert!(budget.try_take(40));
        budget.give_back(60);
        assert_eq!(budget.used(), 40);
        assert!(weight(&observation(28, 256)) > 16_000);
    }
}
