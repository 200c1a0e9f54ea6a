//! `/metrics` (Prometheus text format) and `/healthz` on a plain-HTTP port.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use portcullis_linter::egress::observation::SensorObservation;
use tokio::sync::mpsc;

use crate::bpf::KERNEL_COUNTERS;
use crate::capture::KernelFigures;
use crate::flow_report::FlowReportStats;
use crate::output::ReportStats;
use crate::pods::PodDirectory;
use crate::stats::Stats;

/// What the metrics page reads.
#[derive(Debug, Clone)]
pub struct Sources {
    pub stats: Arc<Stats>,
    pub kernel: Arc<Mutex<KernelFigures>>,
    pub report: Arc<ReportStats>,
    pub pods: Arc<PodDirectory>,
    /// Weak, so the output task still ends when the capture thread's sender is gone.
    pub queue: mpsc::WeakSender<SensorObservation>,
    pub queue_capacity: usize,
    /// The flow reporter's figures (`--flows` with `--report-url`).
    pub flow_report: Option<Arc<FlowReportStats>>,
}

/// Serves until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, sources: Sources) {
    let app =
        Router::new().route("/metrics", get(metrics)).route("/healthz", get(|| async { "ok\n" })).with_state(sources);
    if let Err(err) = axum::serve(listener, app).await {
        tracing::error!(%err, "metrics server stopped");
    }
}

async fn metrics(State(sources): State<Sources>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], render(&sources))
}

/// The exposition text.
pub fn render(sources: &Sources) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP portcullis_sensor_packets_total What user space did with DNS frames, by reason.");
    let _ = writeln!(out, "# TYPE portcullis_sensor_packets_total counter");
    for (reason, value) in sources.stats.snapshot() {
        let _ = writeln!(out, "portcullis_sensor_packets_total{{reason=\"{}\"}} {value}", reason.label());
    }
    let figures = sources.kernel.lock().map(|f| f.clone()).unwrap_or_default();
    let _ = writeln!(
        out,
        "# HELP portcullis_sensor_kernel_packets_total What the eBPF filter did with packets, by reason."
    );
    let _ = writeln!(out, "# TYPE portcullis_sensor_kernel_packets_total counter");
    for (label, value) in KERNEL_COUNTERS.iter().zip(&figures.counters) {
        let _ = writeln!(out, "portcullis_sensor_kernel_packets_total{{reason=\"{label}\"}} {value}");
    }
    let _ =
        writeln!(out, "# HELP portcullis_sensor_socket_drops_total Frames the socket's receive queue had no room for.");
    let _ = writeln!(out, "# TYPE portcullis_sensor_socket_drops_total counter");
    let _ = writeln!(out, "portcullis_sensor_socket_drops_total {}", figures.socket.drops);
    let depth = sources.queue.upgrade().map_or(0, |tx| sources.queue_capacity.saturating_sub(tx.capacity()));
    let _ = writeln!(out, "# HELP portcullis_sensor_queue_depth Observations waiting for output.");
    let _ = writeln!(out, "# TYPE portcullis_sensor_queue_depth gauge");
    let _ = writeln!(out, "portcullis_sensor_queue_depth {depth}");
    let _ = writeln!(out, "# HELP portcullis_sensor_reported_total Observations sent to the webhook, by result.");
    let _ = writeln!(out, "# TYPE portcullis_sensor_reported_total counter");
    let report = &sources.report;
    let _ =
        writeln!(out, "portcullis_sensor_reported_total{{result=\"sent\"}} {}", report.sent.load(Ordering::Relaxed));
    let _ = writeln!(
        out,
        "portcullis_sensor_reported_total{{result=\"dropped\"}} {}",
        report.dropped.load(Ordering::Relaxed)
    );
    let _ =
        writeln!(out, "# HELP portcullis_sensor_report_failures_total Failed requests to the webhook (each retried).");
    let _ = writeln!(out, "# TYPE portcullis_sensor_report_failures_total counter");
    let _ = writeln!(out, "portcullis_sensor_report_failures_total {}", report.failed_requests.load(Ordering::Relaxed));
    if let Some(flows) = &sources.flow_report {
        let _ = writeln!(
            out,
            "# HELP portcullis_sensor_flows_reported_total Connection starts sent to the traffic history, by result: durable (written by the aggregator) or dropped (the queue was full)."
        );
        let _ = writeln!(out, "# TYPE portcullis_sensor_flows_reported_total counter");
        for (result, n) in [("durable", &flows.durable), ("dropped", &flows.dropped)] {
            let _ = writeln!(
                out,
                "portcullis_sensor_flows_reported_total{{result=\"{result}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP portcullis_sensor_flow_report_retries_total Sends of a flow batch no webhook replica acknowledged as durable (each retried)."
        );
        let _ = writeln!(out, "# TYPE portcullis_sensor_flow_report_retries_total counter");
        let _ = writeln!(out, "portcullis_sensor_flow_report_retries_total {}", flows.retries.load(Ordering::Relaxed));
        let _ =
            writeln!(out, "# HELP portcullis_sensor_flows_waiting Connection starts not yet acknowledged as durable.");
        let _ = writeln!(out, "# TYPE portcullis_sensor_flows_waiting gauge");
        let _ = writeln!(out, "portcullis_sensor_flows_waiting {}", flows.waiting.load(Ordering::Relaxed));
    }
    let _ = writeln!(out, "# HELP portcullis_sensor_pods Pod addresses of this node known for attribution.");
    let _ = writeln!(out, "# TYPE portcullis_sensor_pods gauge");
    let _ = writeln!(out, "portcullis_sensor_pods {}", sources.pods.len());
    out
}
