//! The `portcullis-webhook` command line.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum_server::tls_rustls::RustlsConfig;
use clap::{Parser, Subcommand};
use portcullis_linter::config::Config;
use portcullis_linter::service::{LogFormat, init_logging, shutdown_signal};

use crate::metrics::Metrics;
use crate::observations::{Ingest, LocalIntents, StaticToken, TokenReviewer};
use crate::server::{self, App, Limits};
use crate::state::{ClusterState, StaticState};
use crate::tls;

/// Admission webhook: the portcullis rules on every `kubectl apply`.
#[derive(Debug, Parser)]
#[command(name = "portcullis-webhook", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the EgressIntent CustomResourceDefinition (YAML), generated from the Rust types
    Crd,
    /// Serve /validate and /mutate over HTTPS, and /healthz, /readyz, /metrics over HTTP
    Serve(Box<ServeArgs>),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address for the HTTPS admission endpoints (default 0.0.0.0:8443; with --dev 127.0.0.1:8443)
    #[arg(long, env = "PORTCULLIS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address for /healthz, /readyz and /metrics, plain HTTP (default 0.0.0.0:9090; with --dev
    /// 127.0.0.1 on a free port, printed: 9090 is Prometheus' own port on a workstation)
    #[arg(long, env = "PORTCULLIS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serving certificate chain (PEM); reloaded when it changes on disk
    #[arg(
        long,
        env = "PORTCULLIS_TLS_CERT",
        required_unless_present_any = ["dev", "self_managed_tls"],
        requires = "tls_key",
        conflicts_with = "self_managed_tls"
    )]
    pub tls_cert: Option<PathBuf>,
    /// Serving private key (PEM)
    #[arg(long, env = "PORTCULLIS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Self-managed TLS: keep a CA and serving certificate in this Secret (of --pod-namespace),
    /// and write the CA into the caBundle of --webhook-configuration (no cert-manager needed)
    #[arg(long, env = "PORTCULLIS_SELF_MANAGED_TLS", value_name = "SECRET", requires = "webhook_configuration")]
    pub self_managed_tls: Option<String>,
    /// Name of the Validating and Mutating webhook configurations whose caBundle --self-managed-tls keeps
    #[arg(long, env = "PORTCULLIS_WEBHOOK_CONFIGURATION")]
    pub webhook_configuration: Option<String>,
    /// DNS name of the serving certificate with --self-managed-tls (repeat, or separate with commas)
    #[arg(long = "tls-dns-name", env = "PORTCULLIS_TLS_DNS_NAMES", value_delimiter = ',')]
    pub tls_dns_names: Vec<String>,
    /// Configuration file (the same portcullis.yaml the CLI reads)
    #[arg(long, env = "PORTCULLIS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Development mode: cluster state from --state DIR, a generated CA and certificate
    #[arg(long, env = "PORTCULLIS_DEV", requires = "state", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub dev: bool,
    /// Manifest directory used as cluster state in --dev mode
    #[arg(long, env = "PORTCULLIS_STATE", requires = "dev")]
    pub state: Option<PathBuf>,
    /// Where --dev writes the generated CA certificate
    #[arg(long, env = "PORTCULLIS_DEV_CA_OUT", default_value = "portcullis-dev-ca.pem")]
    pub dev_ca_out: PathBuf,
    /// Run the FQDN controller (EgressIntents → NetworkPolicies, namespace guard); off in --dev
    #[arg(long, env = "PORTCULLIS_CONTROLLER", default_value_t = true, action = clap::ArgAction::Set)]
    pub controller: bool,
    /// This replica's name, the controller Lease's holder identity (the chart sets the pod name)
    #[arg(long, env = "PORTCULLIS_POD_NAME")]
    pub pod_name: Option<String>,
    /// Namespace of the controller Lease (the chart sets the release namespace)
    #[arg(long, env = "PORTCULLIS_POD_NAMESPACE", default_value = "portcullis-system")]
    pub pod_namespace: String,
    /// The sensor's ServiceAccount, NAMESPACE/NAME: the only identity allowed to
    /// POST /v1/observations (default: portcullis-sensor in --pod-namespace)
    #[arg(long, env = "PORTCULLIS_SENSOR_SERVICE_ACCOUNT")]
    pub sensor_service_account: Option<String>,
    /// A user allowed to GET /v1/map, the egress map (repeat, or separate with commas; none by
    /// default), e.g. system:serviceaccount:portcullis-system:portcullis-map
    #[arg(long = "map-reader", env = "PORTCULLIS_MAP_READERS", value_delimiter = ',')]
    pub map_readers: Vec<String>,
    /// Keep the history of the sensors' connection starts (POST /v1/flows, GET /v1/traffic for
    /// --map-reader users): counted by the controller Lease's holder, one ConfigMap per node in
    /// --pod-namespace; in --dev, in memory only
    #[arg(long, env = "PORTCULLIS_TRAFFIC_HISTORY")]
    pub traffic_history: bool,
    /// Days of traffic history kept
    #[arg(long, env = "PORTCULLIS_TRAFFIC_WINDOW_DAYS", default_value_t = 14, value_parser = clap::value_parser!(u16).range(1..=92))]
    pub traffic_window_days: u16,
    /// Edges the traffic history keeps at most (over all nodes); connections that would add more are dropped and counted
    #[arg(long, env = "PORTCULLIS_TRAFFIC_MAX_EDGES", default_value_t = 200_000)]
    pub traffic_max_edges: usize,
    /// How often changed traffic history is written, in milliseconds (a sensor's batch is acknowledged once written)
    #[arg(long, env = "PORTCULLIS_TRAFFIC_FLUSH_MS", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub traffic_flush_ms: u64,
    /// --dev: accept observations bearing the token in this file (feeds the --state intents)
    #[arg(long, env = "PORTCULLIS_OBSERVATIONS_TOKEN_FILE", requires = "dev")]
    pub observations_token_file: Option<PathBuf>,
    /// Log format
    #[arg(long, env = "PORTCULLIS_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Largest AdmissionReview body accepted, in bytes
    #[arg(long, env = "PORTCULLIS_MAX_BODY_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Longest time one review may take, in milliseconds; past it the answer is 503, on time
    #[arg(long, env = "PORTCULLIS_REVIEW_TIMEOUT_MS", default_value_t = 10_000)]
    pub review_timeout_ms: u64,
    /// Reviews parsed and decided at once (on the blocking pool)
    #[arg(long, env = "PORTCULLIS_MAX_CONCURRENT_REVIEWS", default_value_t = 8)]
    pub max_concurrent_reviews: usize,
    /// Memory for remembered review answers, in bytes: the same question about the same object
    /// in the same cached cluster state is answered again without being decided again
    /// (dry-runs, `kubectl diff` then `apply`, GitOps syncs). 0 remembers nothing
    #[arg(long, env = "PORTCULLIS_DECISION_MEMO_BYTES", default_value_t = crate::memo::DEFAULT_BUDGET_BYTES)]
    pub decision_memo_bytes: usize,
    /// Request bodies under review at once, in bytes (what bounds memory); beyond it, 503 at once
    #[arg(long, env = "PORTCULLIS_REVIEW_MEMORY_BYTES", default_value_t = 6 * 1024 * 1024)]
    pub review_memory_bytes: usize,
    /// Connections open at once on --listen; more are closed as they arrive
    #[arg(long, env = "PORTCULLIS_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Connections open at once on --metrics-listen
    #[arg(long, env = "PORTCULLIS_MAX_OPS_CONNECTIONS", default_value_t = 64)]
    pub max_ops_connections: usize,
    /// Time to finish the TLS handshake and to send a request's headers, in milliseconds
    #[arg(long, env = "PORTCULLIS_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// How long shutdown waits for in-flight reviews, in seconds
    #[arg(long, env = "PORTCULLIS_SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,
    /// How often the certificate files are checked for changes, in seconds
    #[arg(long, env = "PORTCULLIS_CERT_RELOAD_SECONDS", default_value_t = 10)]
    pub cert_reload_seconds: u64,
}

/// The traffic aggregator and its flush loop.
fn start_traffic(
    args: &ServeArgs,
    store: Arc<dyn crate::traffic::TrafficStore>,
    leader: tokio::sync::watch::Receiver<bool>,
    metrics: &Arc<Metrics>,
) -> Arc<crate::traffic::Aggregator> {
    let config = portcullis_linter::replay::history::HistoryConfig {
        window: jiff::SignedDuration::from_hours(i64::from(args.traffic_window_days) * 24),
        max_edges: args.traffic_max_edges,
        ..Default::default()
    };
    let aggregator =
        Arc::new(crate::traffic::Aggregator::new(store, &args.pod_namespace, leader, config, metrics.clone()));
    tokio::spawn(aggregator.clone().run(Duration::from_millis(args.traffic_flush_ms)));
    tracing::info!(
        window_days = args.traffic_window_days,
        max_edges = args.traffic_max_edges,
        "traffic history enabled (POST /v1/flows, GET /v1/traffic)"
    );
    aggregator
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    let args = match cli.command {
        Command::Serve(args) => *args,
        Command::Crd => return print_crd(),
    };
    init_logging(args.log_format);
    portcullis_linter::service::run("portcullis-webhook", None, serve(args))
}

fn print_crd() -> ExitCode {
    let written = crate::crd::yaml().and_then(|text| Ok(std::io::stdout().write_all(text.as_bytes())?));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "portcullis-webhook: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the servers until SIGTERM or Ctrl-C, then shuts down gracefully.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    tls::install_crypto_provider();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let config = Config::discover(args.config.as_deref(), &cwd)?;
    let metrics = Arc::new(Metrics::new());
    let sensor_user = sensor_user(&args)?;
    if args.traffic_history && args.dev && args.observations_token_file.is_none() {
        anyhow::bail!("--traffic-history in --dev needs --observations-token-file (the token the sensor posts with)");
    }
    if args.traffic_history && !args.dev && !args.controller {
        anyhow::bail!(
            "--traffic-history needs the controller (--controller true): the replica holding its Lease counts"
        );
    }
    // Bound first: a port in use fails the start before anything is written (the dev CA) or
    // changed in the cluster (self-managed TLS).
    let (listen, metrics_listen) = args.addresses();
    let https = std::net::TcpListener::bind(listen).with_context(|| format!("listening on {listen}"))?;
    let ops = std::net::TcpListener::bind(metrics_listen).with_context(|| format!("listening on {metrics_listen}"))?;
    let mut ingest = None;
    let (state, tls_config): (Arc<dyn ClusterState>, RustlsConfig) = if args.dev {
        let dir = args.state.clone().unwrap_or_default();
        let (state, problems) =
            StaticState::load(&dir).with_context(|| format!("loading state from {}", dir.display()))?;
        if problems > 0 {
            tracing::warn!(problems, "some state manifests could not be used; run `portcullis lint {}`", dir.display());
        }
        let certs = tls::dev_certificates(&["localhost", "127.0.0.1"]).context("generating dev certificates")?;
        std::fs::write(&args.dev_ca_out, &certs.ca_pem)
            .with_context(|| format!("writing the dev CA to {}", args.dev_ca_out.display()))?;
        let loaded = tls::server_config(certs.cert_pem.as_bytes(), certs.key_pem.as_bytes())?;
        if let Some(t) = loaded.not_after {
            metrics.cert_expiry.set(t);
        }
        if let Some(token_file) = &args.observations_token_file {
            let intents = LocalIntents::load(&dir, config.address_guard.clone())
                .with_context(|| format!("loading intents from {}", dir.display()))?;
            tracing::info!(intents = intents.len(), user = %sensor_user, "POST /v1/observations enabled (dev token)");
            let auth = Arc::new(StaticToken::from_file(token_file, sensor_user.clone())?);
            let mut dev_ingest =
                Ingest::new(auth, sensor_user.clone(), Arc::new(intents)).with_map_readers(args.map_readers.clone());
            if args.traffic_history {
                // No API server: the history lives in memory, and this process always leads.
                let (_, leader) = tokio::sync::watch::channel(true);
                let store = Arc::new(crate::traffic::MemoryStore::default());
                dev_ingest = dev_ingest.with_traffic(start_traffic(&args, store, leader, &metrics));
            }
            ingest = Some(Arc::new(dev_ingest));
        }
        print_dev_banner(&args, ops.local_addr()?)?;
        (Arc::new(state), RustlsConfig::from_config(loaded.config))
    } else {
        let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
        let tls_config = match &args.self_managed_tls {
            Some(secret) => self_managed_tls(&args, secret, client.clone(), &metrics).await?,
            None => {
                let (cert, key) = match (&args.tls_cert, &args.tls_key) {
                    (Some(c), Some(k)) => (c.clone(), k.clone()),
                    _ => anyhow::bail!("--tls-cert and --tls-key (or --self-managed-tls) are required without --dev"),
                };
                let (loaded, cert_pem, key_pem) = tls::load_files(&cert, &key)?;
                if let Some(t) = loaded.not_after {
                    metrics.cert_expiry.set(t);
                }
                let tls_config = RustlsConfig::from_config(loaded.config);
                let interval = Duration::from_secs(args.cert_reload_seconds.max(1));
                let reloader = tls::Reloader { cert, key, interval };
                tokio::spawn(reloader.run(tls_config.clone(), (cert_pem, key_pem), metrics.clone()));
                tls_config
            }
        };
        let state = crate::kube_state::KubeState::new(client.clone()).with_layers(&config.webhook.layers);
        tokio::spawn(state.clone().run());
        let state = Arc::new(state);
        if args.controller {
            let identity = args.pod_name.clone().unwrap_or_else(|| format!("portcullis-{}", std::process::id()));
            let lease = crate::controller::lease::LeaseConfig::new(&args.pod_namespace, &identity);
            let handle =
                crate::controller::run::start(client.clone(), Arc::new(config.clone()), lease, metrics.clone())?;
            tracing::info!(identity, "FQDN controller started (active while holding the Lease)");
            let traffic = args.traffic_history.then(|| {
                let store = Arc::new(crate::traffic::ConfigMapStore::new(
                    client.clone(),
                    &args.pod_namespace,
                    Some(handle.fence()),
                ));
                start_traffic(&args, store, handle.leader(), &metrics)
            });
            if let Some(traffic) = &traffic {
                // Staged policies are judged against the history this replica counts.
                crate::controller::run::start_staged(client.clone(), &handle, state.clone(), traffic.clone());
            }
            let auth = Arc::new(TokenReviewer::new(client));
            let mut cluster_ingest =
                Ingest::new(auth, sensor_user.clone(), Arc::new(handle)).with_map_readers(args.map_readers.clone());
            if let Some(traffic) = traffic {
                cluster_ingest = cluster_ingest.with_traffic(traffic);
            }
            ingest = Some(Arc::new(cluster_ingest));
        }
        (state, tls_config)
    };
    let memo = Arc::new(metrics.decision_memo(args.decision_memo_bytes));
    let app = App {
        config: Arc::new(config),
        state,
        metrics,
        timeout: Duration::from_millis(args.review_timeout_ms),
        ingest,
        memo,
    };
    let limits = Limits {
        max_body_bytes: args.max_body_bytes,
        shutdown_grace: Duration::from_secs(args.shutdown_grace_seconds),
        max_concurrent_reviews: args.max_concurrent_reviews,
        review_memory_bytes: args.review_memory_bytes,
        max_connections: args.max_connections,
        max_ops_connections: args.max_ops_connections,
        header_timeout: Duration::from_millis(args.header_timeout_ms),
    };
    let running = server::start(https, ops, app, tls_config, limits).await?;
    tracing::info!(https = %running.https, ops = %running.ops, "portcullis-webhook serving");
    shutdown_signal().await;
    tracing::info!("shutting down; finishing in-flight reviews");
    running.shutdown().await?;
    Ok(())
}

/// Makes sure the self-managed Secret and caBundles are right, serves their certificate, and
/// keeps checking every minute (rotation, another replica's writes, a caBundle reset by an upgrade).
async fn self_managed_tls(
    args: &ServeArgs,
    secret: &str,
    client: kube::Client,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<RustlsConfig> {
    let settings = crate::selftls::SelfTls {
        namespace: args.pod_namespace.clone(),
        secret: secret.to_owned(),
        configuration: args.webhook_configuration.clone().unwrap_or_default(),
        names: if args.tls_dns_names.is_empty() {
            vec!["portcullis-webhook".to_owned()]
        } else {
            args.tls_dns_names.clone()
        },
    };
    let api: Arc<dyn crate::selftls::TlsApi> = Arc::new(crate::selftls::KubeTlsApi::new(client));
    let material = settings
        .ensure(api.as_ref(), jiff::Timestamp::now().as_second())
        .await
        .context("self-managed TLS (the Secret and the webhook configurations' caBundle)")?;
    let loaded = tls::server_config(material.cert.as_bytes(), material.key.as_bytes())?;
    if let Some(t) = loaded.not_after {
        metrics.cert_expiry.set(t);
    }
    let served = RustlsConfig::from_config(loaded.config);
    tokio::spawn(crate::selftls::run(
        settings,
        api,
        served.clone(),
        material,
        Duration::from_secs(60),
        metrics.clone(),
    ));
    Ok(served)
}

/// The Kubernetes user name of the sensor's ServiceAccount.
fn sensor_user(args: &ServeArgs) -> anyhow::Result<String> {
    let account =
        args.sensor_service_account.clone().unwrap_or_else(|| format!("{}/portcullis-sensor", args.pod_namespace));
    match account.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(format!("system:serviceaccount:{namespace}:{name}"))
        }
        _ => anyhow::bail!("--sensor-service-account must be NAMESPACE/NAME, not {account:?}"),
    }
}

impl ServeArgs {
    /// The admission and ops addresses: as given, or the defaults (loopback in --dev mode).
    pub fn addresses(&self) -> (SocketAddr, SocketAddr) {
        let (listen, ops) = if self.dev {
            (SocketAddr::from(([127, 0, 0, 1], 8443)), SocketAddr::from(([127, 0, 0, 1], 0)))
        } else {
            (SocketAddr::from(([0, 0, 0, 0], 8443)), SocketAddr::from(([0, 0, 0, 0], 9090)))
        };
        (self.listen.unwrap_or(listen), self.metrics_listen.unwrap_or(ops))
    }
}

fn print_dev_banner(args: &ServeArgs, ops: SocketAddr) -> anyhow::Result<()> {
    let port = args.addresses().0.port();
    let ca = args.dev_ca_out.display();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "portcullis-webhook dev mode: state from {state}, CA written to {ca}\n\
         Try it (a Deployment whose pods would lose DNS, in a namespace labelled portcullis.dev/mode=enforce):\n\n  \
         curl --cacert {ca} -H 'Content-Type: application/json' \\\n    \
         --data @testcases/admission/validate/deployment-create-dns-blocked.json \\\n    \
         https://localhost:{port}/validate\n\n\
         Metrics and health: http://{ops}/metrics\n",
        state = args.state.as_deref().unwrap_or_else(|| std::path::Path::new(".")).display(),
    )?;
    Ok(())
}
