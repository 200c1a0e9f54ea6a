//! The capture loop: frames from the eBPF filter → matcher → observations on a bounded queue.
//!
//! Runs on its own OS thread: reading the socket is blocking work, and one thread keeps the
//! matcher's table free of locks.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use portcullis_linter::egress::observation::{SensorAnswer, SensorClient, SensorFlow, SensorObservation};
use tokio::sync::{mpsc, watch};

use crate::bpf::Filter;
use crate::matcher::{Answered, Matcher, Via};
use crate::output::{QueueBudget, weight};
use crate::pods::PodDirectory;
use crate::stats::{Reason, Stats};
use crate::sys::{PACKET_OUTGOING, SocketStats};

/// Kernel-side figures, refreshed by the capture thread about once a second.
#[derive(Debug, Clone, Default)]
pub struct KernelFigures {
    /// In [`crate::bpf::KERNEL_COUNTERS`] order.
    pub counters: Vec<u64>,
    pub socket: SocketStats,
}

/// Everything the capture thread owns or shares.
#[derive(Debug)]
pub struct Capture {
    pub filter: Filter,
    pub matcher: Matcher,
    pub node: String,
    pub pods: Arc<PodDirectory>,
    pub queue: mpsc::Sender<SensorObservation>,
    /// Bytes the queue may hold (given back by the output task).
    pub budget: Arc<QueueBudget>,
    pub stats: Arc<Stats>,
    /// Trusted resolvers learned from the cluster, merged with the static ones.
    pub cluster_resolvers: Option<watch::Receiver<Vec<IpAddr>>>,
    pub static_resolvers: Vec<IpAddr>,
    pub kernel: Arc<Mutex<KernelFigures>>,
    pub stop: Arc<AtomicBool>,
    /// Where connection starts go (`--flows`).
    pub flows: Option<FlowSink>,
}

/// Where connection starts go: JSON lines on stdout, and/or the reporter's queue (bounded: a
/// start that does not fit is dropped and counted).
#[derive(Debug)]
pub struct FlowSink {
    pub stdout: Option<std::io::Stdout>,
    pub report: Option<mpsc::Sender<SensorFlow>>,
}

/// Builds the wire record for a matched response.
pub fn observation(answered: Answered, node: &str, pods: &PodDirectory, ts: Timestamp) -> SensorObservation {
    SensorObservation {
        ts,
        node: node.to_owned(),
        client: SensorClient { ip: answered.client, pod: pods.lookup(answered.client) },
        server: answered.server,
        qname: answered.qname,
        answers: answered.answers.iter().map(|a| SensorAnswer { ip: a.ip, ttl: a.ttl }).collect(),
        cnames: answered.cnames,
    }
}

impl Capture {
    /// Runs until `stop` is set or the socket fails.
    pub fn run(mut self) -> std::io::Result<()> {
        let mut buf = vec![0u8; 65_536];
        // `None`: refresh on the first round (Instant arithmetic near boot could underflow).
        let mut last_figures: Option<Instant> = None;
        while !self.stop.load(Ordering::Relaxed) {
            if let Some(rx) = &mut self.cluster_resolvers
                && rx.has_changed().unwrap_or(false)
            {
                let cluster = rx.borrow_and_update().clone();
                self.matcher.set_trusted(self.static_resolvers.iter().copied().chain(cluster));
            }
            let Self { filter, matcher, node, pods, queue, budget, stats, .. } = &mut self;
            filter.poll(&mut buf, |frame| {
                let now = Instant::now();
                let via = Via::Link { ifindex: frame.meta.ifindex, outgoing: frame.meta.pkt_type == PACKET_OUTGOING };
                for answered in matcher.frame(frame.data, via, now) {
                    let record = observation(answered, node, pods, Timestamp::now());
                    let cost = weight(&record);
                    if !budget.try_take(cost) {
                        stats.bump(Reason::QueueFull);
                    } else if queue.try_send(record).is_err() {
                        budget.give_back(cost);
                        stats.bump(Reason::QueueFull);
                    }
                }
            })?;
            self.drain_flows();
            if let Some(server) = self.matcher.untrusted_resolver() {
                tracing::warn!(
                    %server,
                    "answers from {server} to queries clients sent it are dropped: it is not a trusted resolver \
                     (pass --trusted-resolver {server} if it is one; said once, counted in untrusted_source)"
                );
            }
            if last_figures.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                last_figures = Some(Instant::now());
                self.refresh_figures();
            }
        }
        self.refresh_figures();
        Ok(())
    }

    /// Writes the connection starts waiting in the kernel, at most 65,536 a round.
    fn drain_flows(&mut self) {
        let Self { filter, node, pods, flows, stats, .. } = self;
        let Some(sink) = flows else { return };
        let mut lines = Vec::new();
        let ts = Timestamp::now();
        filter.drain_flows(65_536, |record| match crate::flows::FlowRecord::decode(record) {
            Some(flow) => {
                stats.bump(Reason::Flows);
                let line = flow.line(node, pods, ts);
                if sink.stdout.is_some() && serde_json::to_writer(&mut lines, &line).is_ok() {
                    lines.push(b'\n');
                }
                if let Some(report) = &sink.report
                    && report.try_send(line).is_err()
                {
                    stats.bump(Reason::FlowQueueFull);
                }
            }
            None => stats.bump(Reason::MalformedFlow),
        });
        if let Some(out) = &sink.stdout {
            let mut out = out.lock();
            if !lines.is_empty()
                && (std::io::Write::write_all(&mut out, &lines).is_err() || std::io::Write::flush(&mut out).is_err())
            {
                stats.bump(Reason::FlowOutputFailed);
            }
        }
    }

    fn refresh_figures(&mut self) {
        let counters = self.filter.kernel_counters().unwrap_or_default();
        let socket = self.filter.socket_stats().unwrap_or_default();
        if let Ok(mut figures) = self.kernel.lock() {
            *figures = KernelFigures { counters, socket };
        }
    }
}
