//! The `portcullis-sensor` command line and process wiring.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use portcullis_linter::service::{LogFormat, init_logging, shutdown_signal};
use tokio::sync::{mpsc, watch};

use crate::bpf::{Delivery, Filter, FilterConfig};
use crate::capture::{Capture, KernelFigures};
use crate::matcher::{MatchConfig, Matcher};
use crate::metrics::{self, Sources};
use crate::output::{self, Outputs, QueueBudget, ReportConfig, ReportStats, Reporter};
use crate::pods::PodDirectory;
use crate::stats::Stats;
use crate::tcp::StreamLimits;

const TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Per-node DNS-snooping sensor: sees the DNS answers pods really receive.
#[derive(Debug, Parser)]
#[command(name = "portcullis-sensor", version, about, long_about = None)]
pub struct Args {
    /// Capture on this interface only (default: every interface)
    #[arg(long, env = "PORTCULLIS_SENSOR_INTERFACE")]
    pub interface: Option<String>,
    /// The DNS port, in the eBPF filter and the matcher
    #[arg(long, env = "PORTCULLIS_SENSOR_DNS_PORT", default_value_t = 53)]
    pub dns_port: u16,
    /// A resolver whose answers are trusted (repeat; add the NodeLocal DNSCache address,
    /// 169.254.20.10, when it is deployed). In a cluster, kube-dns is added automatically;
    /// outside one, the default is the system's resolvers (/etc/resolv.conf, and behind
    /// systemd-resolved's stub the servers it forwards to)
    #[arg(long = "trusted-resolver", env = "PORTCULLIS_SENSOR_TRUSTED_RESOLVERS", value_delimiter = ',')]
    pub trusted_resolvers: Vec<IpAddr>,
    /// Read pods and kube-dns from the Kubernetes API (auto: when running in a pod)
    #[arg(long, env = "PORTCULLIS_SENSOR_KUBERNETES", value_enum, default_value = "auto")]
    pub kubernetes: Kubernetes,
    /// The cluster DNS Service whose addresses are trusted, NAMESPACE/NAME
    #[arg(long, env = "PORTCULLIS_SENSOR_DNS_SERVICE", default_value = "kube-system/kube-dns")]
    pub dns_service: String,
    /// Attribute clients from a pod list (`kubectl get pods -o json`) instead of a pod watch:
    /// for trying the sensor outside a cluster
    #[arg(long, env = "PORTCULLIS_SENSOR_PODS")]
    pub pods: Option<PathBuf>,
    /// This node's name (the chart sets it from spec.nodeName)
    #[arg(long, env = "NODE_NAME")]
    pub node: Option<String>,
    /// How long a query waits for its response, in milliseconds
    #[arg(long, env = "PORTCULLIS_SENSOR_WINDOW_MS", default_value_t = 5_000)]
    pub window_ms: u64,
    /// Pending queries kept at most
    #[arg(long, env = "PORTCULLIS_SENSOR_MAX_PENDING", default_value_t = 65_536)]
    pub max_pending: usize,
    /// Pending queries one source (the interface a query enters the node by: one pod) holds at
    /// most (default: max-pending / 64)
    #[arg(long, env = "PORTCULLIS_SENSOR_MAX_PENDING_PER_SOURCE")]
    pub max_pending_per_source: Option<usize>,
    /// Bytes TCP reassembly holds at most, all flows together; one source holds a sixteenth
    #[arg(long, env = "PORTCULLIS_SENSOR_TCP_BUFFER_BYTES", default_value_t = 16 << 20)]
    pub tcp_buffer_bytes: usize,
    /// Write observations as JSON lines to stdout
    #[arg(long, value_enum, default_value = "none")]
    pub output: Output,
    /// Send observations to the webhook (https://…/v1/observations)
    #[arg(long, env = "PORTCULLIS_SENSOR_REPORT_URL", requires = "report_ca")]
    pub report_url: Option<hyper::Uri>,
    /// CA certificate (PEM) of the webhook's serving certificate
    #[arg(long, env = "PORTCULLIS_SENSOR_REPORT_CA")]
    pub report_ca: Option<PathBuf>,
    /// Bearer token file (the pod's ServiceAccount token)
    #[arg(long, env = "PORTCULLIS_SENSOR_REPORT_TOKEN_FILE", default_value = TOKEN_FILE)]
    pub report_token_file: PathBuf,
    /// Observations per request
    #[arg(long, env = "PORTCULLIS_SENSOR_REPORT_BATCH", default_value_t = 256)]
    pub report_batch: usize,
    /// Longest wait before a partial batch is sent, in milliseconds
    #[arg(long, env = "PORTCULLIS_SENSOR_REPORT_INTERVAL_MS", default_value_t = 1_000)]
    pub report_interval_ms: u64,
    /// Observations queued at most between capture and output (beyond: dropped, counted)
    #[arg(long, env = "PORTCULLIS_SENSOR_QUEUE", default_value_t = 10_000)]
    pub queue: usize,
    /// Bytes of observations queued at most (beyond: dropped, counted)
    #[arg(long, env = "PORTCULLIS_SENSOR_QUEUE_BYTES", default_value_t = 16 << 20)]
    pub queue_bytes: usize,
    /// Plain-HTTP address for /metrics and /healthz (default: 0.0.0.0:9091 in a cluster,
    /// 127.0.0.1:9091 outside one)
    #[arg(long, env = "PORTCULLIS_SENSOR_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// How frames reach user space (see docs/decisions.md)
    #[arg(long, value_enum, default_value = "socket")]
    pub delivery: Delivery,
    /// Socket receive buffer, in bytes
    #[arg(long, default_value_t = 8 << 20)]
    pub receive_buffer: usize,
    /// Also report connection starts (TCP SYN and SYN-ACK, first UDP/SCTP datagrams),
    /// deduplicated in the kernel: to the webhook's traffic history (/v1/flows beside
    /// --report-url) when given, and as JSON lines on stdout with --output stdout or without
    /// --report-url
    #[arg(long, env = "PORTCULLIS_SENSOR_FLOWS")]
    pub flows: bool,
    /// With --flows and --report-url: connection starts waiting for the webhook at most (beyond: dropped, counted)
    #[arg(long, env = "PORTCULLIS_SENSOR_FLOW_QUEUE", default_value_t = 200_000)]
    pub flow_queue: usize,
    /// With --flows and --report-url: how often a batch of connection starts is sent, in
    /// milliseconds (each batch is a write of this node's history object in the API server)
    #[arg(long, env = "PORTCULLIS_SENSOR_FLOW_REPORT_INTERVAL_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub flow_report_interval_ms: u64,
    /// With --flows: a 5-tuple is reported again at most once per this many seconds
    #[arg(long, env = "PORTCULLIS_SENSOR_FLOW_INTERVAL_S", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub flow_interval_s: u64,
    /// With --flows: 5-tuples the kernel remembers (LRU)
    #[arg(long, env = "PORTCULLIS_SENSOR_FLOW_ENTRIES", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1024..=4_194_304))]
    pub flow_entries: u32,
    /// Log format (logs go to stderr)
    #[arg(long, env = "PORTCULLIS_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kubernetes {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Stdout,
    None,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    init_logging(args.log_format);
    portcullis_linter::service::run("portcullis-sensor", Some(2), run(args))
}

/// Runs until SIGTERM or Ctrl-C.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let in_cluster = match args.kubernetes {
        Kubernetes::Auto => std::env::var_os("KUBERNETES_SERVICE_HOST").is_some(),
        Kubernetes::Always => true,
        Kubernetes::Never => false,
    };
    let mut args = args;
    if args.trusted_resolvers.is_empty() && !in_cluster {
        args.trusted_resolvers = crate::resolvconf::system_resolvers();
        if args.trusted_resolvers.is_empty() {
            anyhow::bail!(
                "no trusted resolver: /etc/resolv.conf names none; pass --trusted-resolver IP (the resolver whose answers to trust)"
            );
        }
        let list: Vec<String> = args.trusted_resolvers.iter().map(ToString::to_string).collect();
        tracing::info!(resolvers = %list.join(","), "trusting the system's resolvers (pass --trusted-resolver to choose)");
    }
    let metrics_listen = args.metrics_listen.unwrap_or_else(|| {
        if in_cluster { SocketAddr::from(([0, 0, 0, 0], 9091)) } else { SocketAddr::from(([127, 0, 0, 1], 9091)) }
    });
    if args.output == Output::None && args.report_url.is_none() && !args.flows {
        anyhow::bail!("nothing to do: pass --output stdout, --report-url and/or --flows");
    }
    let node = match &args.node {
        Some(node) => node.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default(),
    };

    let stats = Arc::new(Stats::default());
    let report_stats = Arc::new(ReportStats::default());
    let pods = Arc::new(PodDirectory::default());
    let kernel = Arc::new(Mutex::new(KernelFigures::default()));
    let (queue_tx, queue_rx) = mpsc::channel(args.queue.max(1));
    let budget = Arc::new(QueueBudget::new(args.queue_bytes));
    if let Some(path) = &args.pods {
        let list = crate::pods::read_list(path)?;
        pods.replace(&list, &node);
        tracing::info!(pods = pods.len(), node, file = %path.display(), "pod addresses loaded from a file");
    }

    let cluster_resolvers = if in_cluster {
        let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
        let (namespace, service) = args.dns_service.split_once('/').context("--dns-service must be NAMESPACE/NAME")?;
        let (tx, rx) = watch::channel(Vec::new());
        tokio::spawn(crate::cluster::watch_resolvers(client.clone(), namespace.to_owned(), service.to_owned(), tx));
        if args.pods.is_none() {
            tokio::spawn(crate::cluster::watch_pods(client, node.clone(), pods.clone()));
        }
        Some(rx)
    } else {
        None
    };

    let report = match &args.report_url {
        Some(url) => Some(Reporter::new(
            ReportConfig {
                url: url.clone(),
                ca: args.report_ca.clone().unwrap_or_default(),
                token_file: args.report_token_file.clone(),
                batch: args.report_batch,
                interval: Duration::from_millis(args.report_interval_ms.max(10)),
            },
            report_stats.clone(),
        )?),
        None => None,
    };

    // Connection starts to the traffic history: `/v1/flows` beside the observations' URL.
    let flow_report_stats = Arc::new(crate::flow_report::FlowReportStats::default());
    let mut flow_reporter = None;
    if args.flows
        && let Some(url) = &args.report_url
    {
        let reporter = Reporter::new(
            ReportConfig {
                url: flows_url(url)?,
                ca: args.report_ca.clone().unwrap_or_default(),
                token_file: args.report_token_file.clone(),
                batch: args.report_batch,
                interval: Duration::from_millis(args.flow_report_interval_ms),
            },
            Arc::new(ReportStats::default()),
        )?;
        let (tx, rx) = mpsc::channel(args.flow_queue.clamp(1, 1 << 20));
        let reporter = crate::flow_report::FlowReporter::new(
            reporter,
            node.clone(),
            pods.clone(),
            args.flow_queue,
            Duration::from_millis(args.flow_report_interval_ms),
            flow_report_stats.clone(),
        );
        flow_reporter = Some((reporter, rx, tx));
    }
    let flows_to_stdout = args.output == Output::Stdout || args.report_url.is_none();

    let filter = Filter::open(&FilterConfig {
        dns_port: args.dns_port,
        delivery: args.delivery,
        interface: args.interface.clone(),
        receive_buffer: args.receive_buffer,
        flows: args.flows.then_some(crate::bpf::FlowConfig {
            interval: Duration::from_secs(args.flow_interval_s),
            entries: args.flow_entries,
        }),
    })
    .context("attaching the eBPF DNS filter")?;
    let matcher = Matcher::new(
        MatchConfig {
            dns_port: args.dns_port,
            window: Duration::from_millis(args.window_ms),
            max_pending: args.max_pending,
            max_pending_per_source: args.max_pending_per_source.unwrap_or(0),
            streams: StreamLimits {
                bytes: args.tcp_buffer_bytes,
                bytes_per_source: args.tcp_buffer_bytes / 16,
                ..StreamLimits::default()
            },
        },
        args.trusted_resolvers.iter().copied(),
        stats.clone(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let capture = Capture {
        filter,
        matcher,
        node,
        pods: pods.clone(),
        queue: queue_tx.clone(),
        budget: budget.clone(),
        stats: stats.clone(),
        cluster_resolvers,
        static_resolvers: args.trusted_resolvers.clone(),
        kernel: kernel.clone(),
        stop: stop.clone(),
        flows: args.flows.then(|| crate::capture::FlowSink {
            stdout: flows_to_stdout.then(std::io::stdout),
            report: flow_reporter.as_ref().map(|(_, _, tx)| tx.clone()),
        }),
    };
    let capture = std::thread::Builder::new().name("capture".into()).spawn(move || capture.run())?;

    let sources = Sources {
        stats,
        kernel,
        report: report_stats,
        pods,
        queue: queue_tx.downgrade(),
        queue_capacity: args.queue.max(1),
        flow_report: flow_reporter.as_ref().map(|_| flow_report_stats),
    };
    let listener = tokio::net::TcpListener::bind(metrics_listen)
        .await
        .with_context(|| format!("listening on {metrics_listen}"))?;
    tracing::info!(metrics = %listener.local_addr()?, interface = args.interface.as_deref().unwrap_or("all"), port = args.dns_port, delivery = ?args.delivery, "portcullis-sensor capturing");
    tokio::spawn(metrics::serve(listener, sources));
    drop(queue_tx);
    let flows_task = flow_reporter.map(|(reporter, rx, tx)| {
        // The capture thread holds the only sender left: the reporter ends after it.
        drop(tx);
        tokio::spawn(reporter.run(rx))
    });
    let outputs =
        tokio::spawn(output::run(queue_rx, budget, Outputs { stdout: args.output == Output::Stdout, report }));

    shutdown_signal().await;
    tracing::info!("shutting down");
    stop.store(true, Ordering::Relaxed);
    let captured = tokio::task::spawn_blocking(move || capture.join()).await?;
    match captured {
        Ok(result) => result.context("capture")?,
        Err(_) => anyhow::bail!("the capture thread panicked"),
    }
    // The capture thread owned the last sender: the output task ends once what was queued is
    // written (and reported).
    let _ = tokio::time::timeout(Duration::from_secs(10), outputs).await;
    if let Some(task) = flows_task {
        let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
    }
    Ok(())
}

/// `/v1/flows` on the host of the observations' URL.
fn flows_url(report_url: &hyper::Uri) -> anyhow::Result<hyper::Uri> {
    let mut parts = report_url.clone().into_parts();
    parts.path_and_query = Some(hyper::http::uri::PathAndQuery::from_static("/v1/flows"));
    hyper::Uri::from_parts(parts).context("building the /v1/flows URL from --report-url")
}
