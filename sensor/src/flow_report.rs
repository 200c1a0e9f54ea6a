//! Connection starts to the webhook's traffic history (`POST /v1/flows`).
//!
//! Batches go out one at a time and in order, each with this process's `boot` and a `seq` one
//! higher than the last, and with this node's pod addresses. A batch is sent to every webhook
//! replica and sent again (with backoff) until one answers that it is durable, written to the
//! API server: the aggregator does not count a batch it has seen twice, so a resend after a
//! lost answer costs nothing, and nothing acknowledged can be lost. While a batch waits, new
//! connection starts queue up to `--flow-queue`; beyond it they are dropped and counted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::body::Bytes;
use portcullis_linter::egress::observation::{FlowBatch, MAX_FLOW_BATCH, PodAddress, SensorFlow};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::output::{MAX_REQUEST_BYTES, Reporter};
use crate::pods::PodDirectory;

/// How long one exchange may take: the aggregator answers once the batch is written (it waits
/// up to 30 s for that).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(40);

/// Figures for metrics.
#[derive(Debug, Default)]
pub struct FlowReportStats {
    /// Connection starts in batches an aggregator said were durable.
    pub durable: AtomicU64,
    /// Connection starts dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Sends of a batch that no replica acknowledged as durable (each retried).
    pub retries: AtomicU64,
    /// Connection starts waiting (queued and in the batch in flight).
    pub waiting: AtomicU64,
}

#[derive(Deserialize)]
struct Ack {
    durable: bool,
}

/// The reporter's state.
pub struct FlowReporter {
    reporter: Reporter,
    node: String,
    boot: String,
    seq: u64,
    pods: Arc<PodDirectory>,
    queue: VecDeque<SensorFlow>,
    /// Connection starts queued at most.
    capacity: usize,
    interval: Duration,
    pub stats: Arc<FlowReportStats>,
}

impl std::fmt::Debug for FlowReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowReporter")
            .field("node", &self.node)
            .field("seq", &self.seq)
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

/// This process's boot: its start time and process id (two starts never share one).
pub fn boot_id() -> String {
    format!("{}-{}", jiff::Timestamp::now().as_nanosecond(), std::process::id())
}

impl FlowReporter {
    /// `reporter` posts to `…/v1/flows`; at most `capacity` connection starts wait.
    pub fn new(
        reporter: Reporter,
        node: String,
        pods: Arc<PodDirectory>,
        capacity: usize,
        interval: Duration,
        stats: Arc<FlowReportStats>,
    ) -> FlowReporter {
        FlowReporter {
            reporter,
            node,
            boot: boot_id(),
            seq: 0,
            pods,
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            interval,
            stats,
        }
    }

    fn take(&mut self, flow: SensorFlow) {
        if self.queue.len() >= self.capacity {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            self.queue.push_back(flow);
        }
    }

    /// The next batch: this node's pods and the oldest connection starts, at most
    /// [`MAX_FLOW_BATCH`] and about [`MAX_REQUEST_BYTES`]. `None` when nothing waits.
    fn next_batch(&mut self) -> Option<(Bytes, usize)> {
        if self.queue.is_empty() {
            return None;
        }
        let pods: Vec<PodAddress> = self.pods.all().into_iter().map(|(ip, pod)| PodAddress { ip, pod }).collect();
        let mut bytes = serde_json::to_vec(&pods).map_or(0, |v| v.len()) + 256;
        let mut count = 0;
        for flow in &self.queue {
            let size = serde_json::to_vec(flow).map_or(0, |v| v.len()) + 1;
            if count > 0 && (count == MAX_FLOW_BATCH || bytes + size > MAX_REQUEST_BYTES) {
                break;
            }
            bytes += size;
            count += 1;
        }
        self.seq += 1;
        let batch = FlowBatch {
            node: self.node.clone(),
            boot: self.boot.clone(),
            seq: self.seq,
            pods,
            flows: self.queue.iter().take(count).cloned().collect(),
        };
        match serde_json::to_vec(&batch) {
            Ok(body) => Some((Bytes::from(body), count)),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a flow batch; its connection starts are dropped");
                self.queue.drain(..count);
                self.stats.dropped.fetch_add(count as u64, Ordering::Relaxed);
                None
            }
        }
    }

    /// Sends `body` until a replica says it is durable, taking new connection starts from
    /// `rx` meanwhile. Returns false when `rx` closed (the sensor is stopping) first.
    async fn deliver(&mut self, body: Bytes, rx: &mut mpsc::Receiver<SensorFlow>) -> bool {
        let mut delay = Duration::from_millis(500);
        loop {
            let answers = self.reporter.send_to_all(body.clone(), EXCHANGE_TIMEOUT).await;
            let durable = match &answers {
                Ok(answers) => answers.iter().any(|(_, a)| {
                    a.as_ref().ok().and_then(|b| serde_json::from_slice::<Ack>(b).ok()).is_some_and(|a| a.durable)
                }),
                Err(_) => false,
            };
            if durable {
                return true;
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            match &answers {
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), seq = self.seq, "sending connection starts failed; retrying")
                }
                Ok(answers) => {
                    for (replica, answer) in answers {
                        if let Err(e) = answer {
                            tracing::warn!(%replica, error = %format!("{e:#}"), seq = self.seq, "sending connection starts failed; retrying");
                        }
                    }
                }
            }
            let wait = tokio::time::sleep(delay);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    next = rx.recv() => match next {
                        Some(flow) => self.take(flow),
                        None => return false,
                    },
                }
            }
            self.set_waiting();
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    fn set_waiting(&self) {
        self.stats.waiting.store(self.queue.len() as u64, Ordering::Relaxed);
    }

    /// Runs until every sender of `rx` is gone; what is queued then is sent once more.
    pub async fn run(mut self, mut rx: mpsc::Receiver<SensorFlow>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut open = true;
        while open {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(flow) => {
                        self.take(flow);
                        self.set_waiting();
                        if self.queue.len() < MAX_FLOW_BATCH {
                            continue;
                        }
                    }
                    None => open = false,
                },
                _ = tick.tick() => {}
            }
            while let Some((body, count)) = self.next_batch() {
                let delivered = self.deliver(body, &mut rx).await;
                if !delivered {
                    // Stopping: one last try was made; what is left is lost with the process.
                    tracing::warn!(waiting = self.queue.len(), "stopping with connection starts not acknowledged");
                    return;
                }
                self.queue.drain(..count);
                self.stats.durable.fetch_add(count as u64, Ordering::Relaxed);
                self.set_waiting();
                if self.queue.len() < MAX_FLOW_BATCH / 2 {
                    break;
                }
            }
        }
    }
}
