//! Load bench: the real `portcullis-webhook` binary in dev mode against a no-op server, side
//! by side in one run, each loaded over TLS with keep-alive by the same concurrent HTTP/1.1
//! connections sending the same mix of Deployment and NetworkPolicy reviews. The webhook runs
//! twice: 1,000 namespaces with 10 NetworkPolicies each, then with 100 each (100,000 policies).
//! The no-op server is this bench binary run again as a server (axum, axum-server, rustls,
//! mimalloc, as the webhook): it parses each body and answers a fixed review. For each state,
//! the no-op server and the webhooks run at once and take the load in turn, 2 s each, until
//! each has had its seconds: this VM's speed drifts within a run (the same build measured
//! 0.44 and 0.60 of a no-op server measured once at the start), and turns move every server
//! alike.
//!
//! `cargo bench -p portcullis-webhook --bench admission-load [-- SECONDS CONNECTIONS]`
//! (`PORTCULLIS_BENCH_BASELINE_WEBHOOK=BINARY` runs another build beside this one's, in the
//! same turns, for before/after;
//! `PORTCULLIS_BENCH_FLOOR=1` adds a run where every namespace is in mode `off`: the webhook's
//! cost of reading and answering a review without deciding it; `PORTCULLIS_BENCH_POLICIES=N`
//! runs the state with N policies per namespace instead of 10 and 100)
//!
//! Prints, per server: reviews/s and its ratio to the no-op server's, client-side latency
//! percentiles, the server-side p99 bound from the webhook's own histogram, server CPU per
//! review (from `/proc`), peak RSS, the webhook's startup time with its state, and what its
//! decision memo answered.
//!
//! The mix repeats its 2,000 reviews, so the webhook answers most of them from its decision memo
//! (docs/webhook.md, "Remembered answers"), as it does for a GitOps controller's repeated dry
//! runs. `PORTCULLIS_DECISION_MEMO_BYTES=0` in the bench's environment turns the memo off in every
//! webhook of the run; a baseline that is a script setting it before running this build's
//! binary measures both in the same turns (docs/benchmarks.md, "Ninth round").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NAMESPACES: usize = 1_000;
/// Set in the environment of the copy of this binary that serves as the no-op server:
/// `PORT:CA_FILE`.
const NOOP_ENV: &str = "PORTCULLIS_BENCH_NOOP";
/// The allocator settings the chart and the image deploy (docs/operations.md, "Memory"), given
/// to every server of the run, the no-op one included.
const DEPLOYED_ENV: [(&str, &str); 2] = [("MIMALLOC_PURGE_DELAY", "1"), ("MIMALLOC_ALLOW_THP", "0")];

fn main() {
    if let Ok(spec) = std::env::var(NOOP_ENV) {
        return noop::serve(&spec);
    }
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let seconds: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(10);
    let connections: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(16);
    let work = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-webhook");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!(
        "admission-load: {connections} keep-alive TLS connections, {seconds} s per server, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    std::fs::create_dir_all(&work).unwrap();
    let ca = work.join("noop-ca.pem");
    let https = free_port();
    let _ = std::fs::remove_file(&ca);
    let mut noop = Command::new(std::env::current_exe().unwrap())
        .envs(DEPLOYED_ENV)
        .env(NOOP_ENV, format!("{https}:{}", ca.display()))
        .stdout(Stdio::null())
        .spawn()
        .expect("start the no-op server");
    assert!(wait_for(&mut noop, https), "the no-op server did not start on port {https}");
    wait_for_file(&ca);
    let noop_server = Server { https, ops: None, ca: ca.clone(), pid: noop.id() };

    // Another build of the webhook to compare with in the same run (a commit before a change).
    let other = std::env::var_os(BASELINE_ENV).map(std::path::PathBuf::from);
    let this = Path::new(env!("CARGO_BIN_EXE_portcullis-webhook")).to_path_buf();
    // With `PORTCULLIS_BENCH_FLOOR` set, first the webhook on the 10-policy state with every
    // namespace in mode `off`: each review is read and answered, nothing decided. What it costs
    // over the no-op server is the webhook's serving; the rest is the decision.
    let floor = std::env::var_os(FLOOR_ENV).is_some();
    // `PORTCULLIS_BENCH_POLICIES=N`: the state with N policies per namespace instead of 10 and 100.
    let sizes: Vec<usize> = match std::env::var(POLICIES_ENV).ok().and_then(|n| n.parse().ok()) {
        Some(n) => vec![n],
        None => vec![10, 100],
    };
    let phases = floor.then_some((10, Some("off"))).into_iter().chain(sizes.into_iter().map(|n| (n, None)));
    for (policies, mode) in phases {
        let state = work.join(format!("state-{policies}{}", mode.unwrap_or_default()));
        write_state(&state, policies, mode);
        // Every server of the phase runs at once and takes the load in turn, a slice each, so
        // that the VM's speed drifting over the run moves them all alike: the ratio is to the
        // no-op server measured in the same slices, not minutes before.
        let mut running = Vec::new();
        for (n, binary) in other.iter().chain([&this]).enumerate() {
            let ca = work.join(format!("ca-{n}.pem"));
            let started = Instant::now();
            let (child, https, ops) = start_server(binary, &state, &ca);
            let startup = started.elapsed();
            let which = if binary == &this { "webhook".to_owned() } else { format!("webhook {}", binary.display()) };
            let server = Server { https, ops: Some(ops), ca, pid: child.id() };
            running.push((which, startup, server, child));
        }
        let mut results: Vec<Option<Results>> = (0..=running.len()).map(|_| None).collect();
        // At least one turn each, so every server started here is also stopped below.
        let slices = seconds.div_ceil(SLICE_SECONDS).max(1);
        for _ in 0..slices {
            let servers = std::iter::once(&noop_server).chain(running.iter().map(|(_, _, server, _)| server));
            for (result, server) in results.iter_mut().zip(servers) {
                let slice = runtime.block_on(run(server, SLICE_SECONDS, connections));
                match result {
                    Some(sum) => sum.add(slice),
                    None => *result = Some(slice),
                }
            }
        }
        let mut results = results.into_iter().flatten();
        let Some(mut noop_result) = results.next() else { continue };
        noop_result.print(
            &format!(
                "no-op server, in turn with the webhooks on {policies} policies per namespace{}",
                mode.map(|mode| format!(" in mode {mode}")).unwrap_or_default()
            ),
            None,
        );
        for (mut result, (which, startup, server, mut child)) in results.zip(running) {
            result.finish(&runtime, &server);
            let _ = child.kill();
            let _ = child.wait();
            result.print(
                &format!(
                    "{which}, {NAMESPACES} namespaces x {policies} NetworkPolicies{} (ready in {:.1} s)",
                    mode.map(|mode| format!(", mode {mode} (nothing decided)")).unwrap_or_default(),
                    startup.as_secs_f64()
                ),
                Some(&noop_result),
            );
        }
    }
    let _ = noop.kill();
    let _ = noop.wait();
}

/// Seconds each server takes the load at a time before the next one does.
const SLICE_SECONDS: u64 = 2;

/// A server under test: its ports, the CA its certificate is signed with, its process.
struct Server {
    https: u16,
    /// The operations port (`/metrics`); the no-op server has none.
    ops: Option<u16>,
    ca: std::path::PathBuf,
    pid: u32,
}

/// A `portcullis-webhook` binary to run before this build's, on the same states in the same run.
const BASELINE_ENV: &str = "PORTCULLIS_BENCH_BASELINE_WEBHOOK";
/// Set: also run the webhooks with every namespace in mode `off` (their floor).
const FLOOR_ENV: &str = "PORTCULLIS_BENCH_FLOOR";
/// A number: run only the state with that many policies per namespace (at least 2).
const POLICIES_ENV: &str = "PORTCULLIS_BENCH_POLICIES";

/// The no-op server: what any admission webhook on this stack costs before it decides anything.
mod noop {
    use axum::Router;
    use axum::body::Bytes;
    use axum::routing::post;
    use serde_json::{Value, json};

    pub fn serve(spec: &str) {
        let (port, ca) = spec.split_once(':').expect("PORT:CA_FILE");
        portcullis_webhook::tls::install_crypto_provider();
        let certs = portcullis_webhook::tls::dev_certificates(&["localhost", "127.0.0.1"]).unwrap();
        let loaded =
            portcullis_webhook::tls::server_config(certs.cert_pem.as_bytes(), certs.key_pem.as_bytes()).unwrap();
        std::fs::write(ca, &certs.ca_pem).unwrap();
        let app = Router::new().route("/validate", post(review)).route("/mutate", post(review));
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let config = axum_server::tls_rustls::RustlsConfig::from_config(loaded.config);
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port.parse::<u16>().unwrap()));
            axum_server::bind_rustls(addr, config).serve(app.into_make_service()).await.unwrap();
        });
    }

    async fn review(body: Bytes) -> impl axum::response::IntoResponse {
        let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let uid = review.pointer("/request/uid").cloned().unwrap_or(Value::Null);
        let answer = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": uid, "allowed": true}});
        ([(axum::http::header::CONTENT_TYPE, "application/json")], serde_json::to_vec(&answer).unwrap_or_default())
    }
}

/// Whether `child` listens on `port` (false, and stopped, if it exits or does not within 2 min).
fn wait_for(child: &mut Child, port: u16) -> bool {
    for _ in 0..2_400 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Namespaces with a default-deny, a DNS allowance and application policies, `policies` in all;
/// half enforce, half warn, unless `mode` names the mode of all.
fn write_state(dir: &Path, policies: usize, mode: Option<&str>) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for n in 0..NAMESPACES {
        let ns = format!("team-{n:04}");
        let mut docs = vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns,
        "labels": {"team": ns, "portcullis.dev/mode": match mode {
            Some(mode) => mode,
            None if n % 2 == 0 => "enforce",
            None => "warn",
        }}}})];
        docs.push(policy(&ns, "default-deny", json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})));
        docs.push(policy(
            &ns,
            "allow-dns",
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [dns_rule()]}),
        ));
        for a in 0..policies.saturating_sub(2) {
            docs.push(policy(&ns, &format!("app-{a}"), app_policy(a)));
        }
        let text: Vec<String> = docs.iter().map(|d| serde_json::to_string(d).unwrap()).collect();
        std::fs::write(dir.join(format!("{ns}.yaml")), text.join("\n---\n")).unwrap();
    }
}

fn policy(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

fn dns_rule() -> Value {
    json!({"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]})
}

fn app_policy(a: usize) -> Value {
    json!({"podSelector": {"matchLabels": {"app": format!("app-{a}")}}, "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": format!("app-{}", (a + 1) % 8)}}}],
            "ports": [{"port": "http", "protocol": "TCP"}]}],
        "egress": [{"to": [{"podSelector": {"matchLabels": {"app": format!("app-{}", (a + 2) % 8)}}}],
            "ports": [{"port": 8080, "protocol": "TCP"}]},
            {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.96.0.0/12"]}}], "ports": [{"port": 5432}]}]})
}

/// Starts a webhook on free ports: `(child, https, ops)`. A port found free can be taken by
/// another socket before the server binds it (the client's connections pick ports too): the
/// server then exits, and it is started again on other ports.
fn start_server(binary: &Path, state: &Path, ca: &Path) -> (Child, u16, u16) {
    for _ in 0..5 {
        let (https, ops) = (free_port(), free_port());
        if let Some(child) = start_server_on(binary, state, ca, https, ops) {
            return (child, https, ops);
        }
    }
    panic!("{} did not start", binary.display());
}

fn start_server_on(binary: &Path, state: &Path, ca: &Path, https: u16, ops: u16) -> Option<Child> {
    // The server writes its CA once it is listening: never read the last run's.
    let _ = std::fs::remove_file(ca);
    let mut child = Command::new(binary)
        .envs(DEPLOYED_ENV)
        .args(["serve", "--dev", "--state"])
        .arg(state)
        .arg("--dev-ca-out")
        .arg(ca)
        .args(["--listen", &format!("127.0.0.1:{https}"), "--metrics-listen", &format!("127.0.0.1:{ops}")])
        .env("PORTCULLIS_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start portcullis-webhook");
    if !wait_for(&mut child, ops) {
        return None;
    }
    wait_for_file(ca);
    Some(child)
}

fn wait_for_file(path: &Path) {
    for _ in 0..200 {
        if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
            // Written whole: the PEM ends with its END line.
            if std::fs::read_to_string(path).is_ok_and(|t| t.trim_end().ends_with("-----")) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{} was not written", path.display());
}

/// Review bodies: Deployments (validate) and NetworkPolicies (validate and mutate), spread
/// over all namespaces.
fn bodies() -> Vec<(&'static str, Bytes)> {
    let mut out = Vec::new();
    for i in 0..2_000usize {
        let ns = format!("team-{:04}", (i * 7919) % NAMESPACES);
        let app = format!("app-{}", i % 8);
        let (path, kind, group, resource, object) = match i % 4 {
            0 | 1 => (
                "/validate",
                "Deployment",
                "apps",
                "deployments",
                json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": format!("{app}-{i}"), "namespace": ns, "uid": format!("d-{i}")},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": app}},
                    "template": {"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "app",
                        "image": "registry.example.com/app:1", "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]}}}}),
            ),
            2 => (
                "/validate",
                "NetworkPolicy",
                "networking.k8s.io",
                "networkpolicies",
                policy(&ns, &format!("new-{i}"), app_policy(i % 8)),
            ),
            _ => (
                "/mutate",
                "NetworkPolicy",
                "networking.k8s.io",
                "networkpolicies",
                policy(
                    &ns,
                    &format!("lockdown-{i}"),
                    json!({"podSelector": {"matchLabels": {"app": app}}, "policyTypes": ["Egress"]}),
                ),
            ),
        };
        let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": format!("00000000-0000-4000-8000-{i:012}"),
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "requestKind": {"group": group, "version": "v1", "kind": kind},
            "requestResource": {"group": group, "version": "v1", "resource": resource},
            "name": object["metadata"]["name"], "namespace": ns, "operation": "CREATE",
            "userInfo": {"username": "bench", "groups": ["system:authenticated"]},
            "object": object, "oldObject": null, "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}});
        out.push((path, Bytes::from(serde_json::to_vec(&review).unwrap())));
    }
    out
}

struct Results {
    reviews: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    server_p99_bound: String,
    /// What the server's decision memo answered (`/metrics`).
    memo: String,
    rss_kib: u64,
    /// Server CPU time (user + system) over the run.
    cpu: Duration,
}

impl Results {
    /// Adds a later slice of the same server.
    fn add(&mut self, slice: Results) {
        self.reviews += slice.reviews;
        self.errors += slice.errors;
        self.elapsed += slice.elapsed;
        self.latencies.extend(slice.latencies);
        self.cpu += slice.cpu;
        self.rss_kib = self.rss_kib.max(slice.rss_kib);
    }

    /// Reads what a server says of its whole run: the p99 bound of its own histogram.
    fn finish(&mut self, runtime: &tokio::runtime::Runtime, server: &Server) {
        if let Some(ops) = server.ops {
            let metrics = runtime.block_on(http_get(ops, "/metrics"));
            self.server_p99_bound = server_p99(&metrics);
            self.memo = memo_answers(&metrics);
        }
        self.rss_kib = self.rss_kib.max(peak_rss(server.pid));
    }

    fn rate(&self) -> f64 {
        self.reviews as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&mut self, what: &str, baseline: Option<&Results>) {
        self.latencies.sort();
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 * p) as usize).min(self.latencies.len().saturating_sub(1));
            self.latencies.get(i).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
        };
        println!("{what}");
        println!("  reviews          {} ({} errors)", self.reviews, self.errors);
        match baseline {
            Some(b) => {
                println!("  reviews/s        {:.0} ({:.2} of the no-op server's)", self.rate(), self.rate() / b.rate())
            }
            None => println!("  reviews/s        {:.0}", self.rate()),
        }
        println!("  client latency   p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms", pct(0.50), pct(0.99), pct(1.0));
        println!("  server p99       {}", self.server_p99_bound);
        if !self.memo.is_empty() {
            println!("  decision memo    {}", self.memo);
        }
        println!("  server CPU       {:.0} µs per review", self.cpu.as_secs_f64() * 1e6 / self.reviews.max(1) as f64);
        println!("  server peak RSS  {:.1} MB", self.rss_kib as f64 / 1024.0);
    }
}

/// One slice of load on a server: its reviews, latencies and CPU time.
async fn run(server: &Server, seconds: u64, connections: usize) -> Results {
    let (https, pid) = (server.https, server.pid);
    let pem = std::fs::read(&server.ca).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let bodies = Arc::new(bodies());
    let cpu_before = cpu_time(pid);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let config = config.clone();
        let bodies = bodies.clone();
        tasks.push(tokio::spawn(async move { connection(https, config, bodies, c, deadline).await }));
    }
    let (mut reviews, mut errors, mut latencies) = (0, 0, Vec::new());
    for t in tasks {
        let (n, e, l) = t.await.unwrap();
        reviews += n;
        errors += e;
        latencies.extend(l);
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    let server_p99_bound = "n/a (no histogram)".to_owned();
    Results { reviews, errors, elapsed, latencies, server_p99_bound, memo: String::new(), rss_kib: peak_rss(pid), cpu }
}

async fn connection(
    port: u16,
    config: Arc<rustls::ClientConfig>,
    bodies: Arc<Vec<(&'static str, Bytes)>>,
    offset: usize,
    deadline: Instant,
) -> (usize, usize, Vec<Duration>) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let (mut n, mut errors, mut latencies) = (0, 0, Vec::new());
    let mut i = offset * 131;
    while Instant::now() < deadline {
        let (path, body) = &bodies[i % bodies.len()];
        i += 1;
        let request = hyper::Request::post(*path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))
            .unwrap();
        let t = Instant::now();
        match sender.send_request(request).await {
            Ok(response) => {
                let ok = response.status() == 200;
                let _ = response.into_body().collect().await;
                latencies.push(t.elapsed());
                if ok { n += 1 } else { errors += 1 }
            }
            Err(_) => {
                errors += 1;
                break;
            }
        }
    }
    (n, errors, latencies)
}

async fn http_get(port: u16, path: &str) -> String {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::get(path).header("host", "localhost").body(Full::new(Bytes::new())).unwrap();
    let response = sender.send_request(request).await.unwrap();
    String::from_utf8_lossy(&response.into_body().collect().await.unwrap().to_bytes()).into_owned()
}

/// The smallest histogram bucket holding 99% of server-side review durations, over both endpoints.
fn server_p99(metrics: &str) -> String {
    let mut buckets: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
    let mut count = 0.0;
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("portcullis_webhook_review_duration_seconds_bucket{") {
            let le = rest.split("le=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("");
            let value: f64 = rest.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
            *buckets.entry(le.to_owned()).or_default() += value;
        }
        if line.starts_with("portcullis_webhook_review_duration_seconds_count") {
            count += line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        }
    }
    let mut sorted: Vec<(f64, f64)> =
        buckets.into_iter().map(|(le, n)| (le.parse().unwrap_or(f64::INFINITY), n)).collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    match sorted.iter().find(|(_, n)| *n >= count * 0.99) {
        Some((le, _)) => format!("<= {:.2} ms (histogram bucket; {count} reviews)", le * 1000.0),
        None => "unknown".to_owned(),
    }
}

/// The decision memo's hits and misses over the server's run, from its metrics.
fn memo_answers(metrics: &str) -> String {
    let counter =
        |name: &str| metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok());
    match (
        counter("portcullis_webhook_decision_memo_hits_total"),
        counter("portcullis_webhook_decision_memo_misses_total"),
    ) {
        (Some(hits), Some(misses)) => format!(
            "{hits} answered from it, {misses} decided ({:.1} % remembered)",
            100.0 * hits / (hits + misses).max(1.0)
        ),
        _ => "n/a (no decision memo)".to_owned(),
    }
}

/// User + system CPU time of a process so far (`/proc/PID/stat`, clock ticks of 1/100 s).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line; 12 and 13 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
