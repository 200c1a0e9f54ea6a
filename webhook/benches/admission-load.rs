//! Load bench: the real `portcullis-webhook` binary in dev mode, its state 1,000 namespaces
//! with 10 NetworkPolicies each, loaded over TLS with keep-alive by concurrent HTTP/1.1
//! connections sending a mix of Deployment and NetworkPolicy reviews.
//!
//! `cargo bench -p portcullis-webhook --bench admission-load [-- SECONDS CONNECTIONS]`
//!
//! Prints reviews/s, client-side latency percentiles, the server-side p99 bound from the
//! server's own histogram, and the server's peak RSS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

const NAMESPACES: usize = 1_000;
const POLICIES_PER_NAMESPACE: usize = 10;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let seconds: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(10);
    let connections: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(16);
    let work = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-webhook");
    let state = work.join("state");
    write_state(&state);
    let ca = work.join("ca.pem");
    let (https, ops) = (free_port(), free_port());
    let mut server = start_server(&state, &ca, https, ops);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let result = runtime.block_on(run(https, ops, &ca, seconds, connections, server.id()));
    let _ = server.kill();
    let _ = server.wait();
    result.print(seconds, connections);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Namespaces with a default-deny, a DNS allowance and 8 application policies each.
fn write_state(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for n in 0..NAMESPACES {
        let ns = format!("team-{n:04}");
        let mut docs = vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns,
            "labels": {"team": ns, "portcullis.dev/mode": if n % 2 == 0 { "enforce" } else { "warn" }}}})];
        docs.push(policy(&ns, "default-deny", json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})));
        docs.push(policy(
            &ns,
            "allow-dns",
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [dns_rule()]}),
        ));
        for a in 0..POLICIES_PER_NAMESPACE - 2 {
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

fn start_server(state: &Path, ca: &Path, https: u16, ops: u16) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis-webhook"))
        .args(["serve", "--dev", "--state"])
        .arg(state)
        .arg("--dev-ca-out")
        .arg(ca)
        .args(["--listen", &format!("127.0.0.1:{https}"), "--metrics-listen", &format!("127.0.0.1:{ops}")])
        .env("PORTCULLIS_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start portcullis-webhook");
    for _ in 0..600 {
        if std::net::TcpStream::connect(("127.0.0.1", ops)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("portcullis-webhook did not start");
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
    rss_kib: u64,
}

impl Results {
    fn print(mut self, seconds: u64, connections: usize) {
        self.latencies.sort();
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 * p) as usize).min(self.latencies.len().saturating_sub(1));
            self.latencies.get(i).map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
        };
        println!(
            "admission-load: {NAMESPACES} namespaces x {POLICIES_PER_NAMESPACE} NetworkPolicies, {connections} keep-alive TLS connections, {seconds} s"
        );
        println!("  reviews          {} ({} errors)", self.reviews, self.errors);
        println!("  reviews/s        {:.0}", self.reviews as f64 / self.elapsed.as_secs_f64());
        println!("  client latency   p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms", pct(0.50), pct(0.99), pct(1.0));
        println!("  server p99       {}", self.server_p99_bound);
        println!("  server peak RSS  {:.1} MB", self.rss_kib as f64 / 1024.0);
    }
}

async fn run(https: u16, ops: u16, ca: &Path, seconds: u64, connections: usize, pid: u32) -> Results {
    let pem = std::fs::read(ca).unwrap();
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
    let metrics = http_get(ops, "/metrics").await;
    Results { reviews, errors, elapsed, latencies, server_p99_bound: server_p99(&metrics), rss_kib: peak_rss(pid) }
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

fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
