//! The real server on 127.0.0.1 with generated certificates, spoken to by a real HTTPS client
//! (rustls verifying the CA, hyper): decisions, patches, warnings, 400s, the body limit,
//! certificate rotation while serving, graceful shutdown, and the operations port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use base64::Engine as _;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use portcullis_linter::config::Config;
use portcullis_webhook::metrics::Metrics;
use portcullis_webhook::server::{self, App, Limits, Running};
use portcullis_webhook::state::{ClusterState, Fresh, Sizes, Snapshot, StateError, StaticState};
use portcullis_webhook::tls::{self, DevCertificates};
use rustls::pki_types::CertificateDer;
use serde_json::Value;

mod common;

use common::{ca_der, https, repo};

fn case(path: &str) -> Vec<u8> {
    std::fs::read(repo().join("testcases/admission").join(path)).unwrap()
}

fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "portcullis-webhook-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The admission test state, optionally slow to confirm denials and optionally not ready.
#[derive(Debug)]
struct TestState {
    inner: StaticState,
    confirm_delay: Duration,
    ready: bool,
    confirm_fails: bool,
}

impl ClusterState for TestState {
    fn snapshot(&self, namespace: &str, dns_namespace: &str) -> Snapshot {
        self.inner.snapshot(namespace, dns_namespace)
    }

    fn fresh<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Fresh, StateError>> {
        Box::pin(async move {
            tokio::time::sleep(self.confirm_delay).await;
            if self.confirm_fails {
                return Err(StateError { namespace: namespace.to_owned(), message: "connection refused".to_owned() });
            }
            self.inner.fresh(namespace).await
        })
    }

    fn ready(&self) -> bool {
        self.ready
    }

    fn sizes(&self) -> Sizes {
        self.inner.sizes()
    }

    fn cluster_view(&self) -> portcullis_webhook::state::ClusterView {
        self.inner.cluster_view()
    }

    fn objects(&self) -> Vec<serde_json::Value> {
        self.inner.objects()
    }
}

fn test_state(confirm_delay: Duration, ready: bool) -> Arc<TestState> {
    let (inner, _) = StaticState::load(&repo().join("testcases/admission/state")).unwrap();
    Arc::new(TestState { inner, confirm_delay, ready, confirm_fails: false })
}

struct Harness {
    running: Running,
    ca: CertificateDer<'static>,
    metrics: Arc<Metrics>,
}

async fn start_with(state: Arc<dyn ClusterState>, certs: &DevCertificates, limits: Limits) -> (Harness, RustlsConfig) {
    start_timed(state, certs, limits, Duration::from_secs(10)).await
}

async fn start_timed(
    state: Arc<dyn ClusterState>,
    certs: &DevCertificates,
    limits: Limits,
    timeout: Duration,
) -> (Harness, RustlsConfig) {
    tls::install_crypto_provider();
    let loaded = tls::server_config(certs.cert_pem.as_bytes(), certs.key_pem.as_bytes()).unwrap();
    let tls_config = RustlsConfig::from_config(loaded.config);
    let metrics = Arc::new(Metrics::new());
    let memo = Arc::new(metrics.decision_memo(portcullis_webhook::memo::DEFAULT_BUDGET_BYTES));
    let app = App { config: Arc::new(Config::default()), state, metrics: metrics.clone(), timeout, ingest: None, memo };
    let https = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ops = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let running = server::start(https, ops, app, tls_config.clone(), limits).await.unwrap();
    (Harness { running, ca: ca_der(&certs.ca_pem), metrics }, tls_config)
}

async fn start() -> Harness {
    let certs = tls::dev_certificates(&["localhost", "127.0.0.1"]).unwrap();
    start_with(test_state(Duration::ZERO, true), &certs, Limits::default()).await.0
}

async fn post(h: &Harness, path: &str, body: Vec<u8>) -> (u16, Value) {
    let (status, body, _) = https(h.running.https, &h.ca, path, body, &rustls::version::TLS13).await.unwrap();
    let value = serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()));
    (status, value)
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::get(path).header("host", "localhost").body(Full::new(Bytes::new())).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn denies_warns_and_patches_over_https() {
    let h = start().await;
    let body = case("validate/deployment-create-dns-blocked.json");
    let uid = serde_json::from_slice::<Value>(&body).unwrap()["request"]["uid"].clone();
    let (status, review) = post(&h, "/validate", body).await;
    assert_eq!(status, 200);
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    let response = &review["response"];
    assert_eq!(response["uid"], uid);
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 403);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(message.contains("PC003 egress-blocks-dns") && message.contains("name=kube-system"), "{message}");
    assert!(message.contains("kubernetes.io/metadata.name: kube-system"), "the fix YAML is in the message: {message}");

    let (status, review) = post(&h, "/validate", case("validate/deployment-update-warn-mode.json")).await;
    assert_eq!(status, 200);
    assert_eq!(review["response"]["allowed"], true);
    let warnings = review["response"]["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2, "{warnings:?}");

    let body = case("mutate/networkpolicy-create-egress-lockdown-without-dns.json");
    let request: Value = serde_json::from_slice(&body).unwrap();
    let (status, review) = post(&h, "/mutate", body).await;
    assert_eq!(status, 200);
    assert_eq!(review["response"]["patchType"], "JSONPatch");
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(review["response"]["patch"].as_str().unwrap()).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut object = request["request"]["object"].clone();
    json_patch::patch(&mut object, &patch).unwrap();
    let policy: k8s_openapi::api::networking::v1::NetworkPolicy = serde_json::from_value(object.clone()).unwrap();
    assert_eq!(policy.spec.unwrap().egress.unwrap().len(), 1);

    // The patched policy, sent back to /validate as the API server would, is admitted.
    let mut again = request.clone();
    again["request"]["object"] = object;
    let (status, review) = post(&h, "/validate", serde_json::to_vec(&again).unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(review["response"]["allowed"], true, "{review}");
    h.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn tls_1_2_and_1_3_are_served() {
    let h = start().await;
    let body = case("validate/pod-create-shop-allowed.json");
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let (status, _, _) = https(h.running.https, &h.ca, "/validate", body.clone(), version).await.unwrap();
        assert_eq!(status, 200);
    }
    // A client that does not trust our CA fails the handshake.
    let other = tls::dev_certificates(&["localhost"]).unwrap();
    let err = https(h.running.https, &ca_der(&other.ca_pem), "/validate", body, &rustls::version::TLS13).await;
    assert!(err.is_err_and(|e| e.contains("TLS handshake")));
    h.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn garbage_gets_400_with_a_reason() {
    let h = start().await;
    let cases: [(&[u8], &str); 5] = [
        (b"not json at all", "not a valid AdmissionReview"),
        (b"{}", "missing field"),
        (
            br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":null}"#,
            "admission.k8s.io/v1 only",
        ),
        (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#, "has no request"),
        (&[0xff, 0xfe, 0x00, 0x01], "not a valid AdmissionReview"),
    ];
    for (body, expected) in cases {
        let (status, reply) = post(&h, "/validate", body.to_vec()).await;
        assert_eq!(status, 400, "{reply}");
        assert!(reply.as_str().unwrap().contains(expected), "{reply} should mention {expected}");
    }
    let metrics = get(h.running.ops, "/metrics").await.1;
    assert!(metrics.contains("portcullis_webhook_bad_requests_total{endpoint=\"validate\"} 5"), "{metrics}");
    h.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let certs = tls::dev_certificates(&["localhost"]).unwrap();
    let limits = Limits { max_body_bytes: 64 * 1024, ..Limits::default() };
    let (h, _) = start_with(test_state(Duration::ZERO, true), &certs, limits).await;
    let mut review: Value = serde_json::from_slice(&case("validate/pod-create-shop-allowed.json")).unwrap();
    review["request"]["object"]["metadata"]["annotations"] = serde_json::json!({"big": "x".repeat(100 * 1024)});
    let (status, _) = post(&h, "/validate", serde_json::to_vec(&review).unwrap()).await;
    assert_eq!(status, 413);
    h.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn certificate_rotation_while_serving() {
    tls::install_crypto_provider();
    let dir = temp_dir();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let first = tls::dev_certificates(&["localhost"]).unwrap();
    std::fs::write(&cert, &first.cert_pem).unwrap();
    std::fs::write(&key, &first.key_pem).unwrap();
    let (h, tls_config) = start_with(test_state(Duration::ZERO, true), &first, Limits::default()).await;
    let (_, cert_pem, key_pem) = tls::load_files(&cert, &key).unwrap();
    let reloader = tls::Reloader { cert: cert.clone(), key: key.clone(), interval: Duration::from_millis(20) };
    let task = tokio::spawn(reloader.run(tls_config, (cert_pem, key_pem), h.metrics.clone()));
    let body = case("validate/pod-create-shop-allowed.json");
    let served = |ca: CertificateDer<'static>| {
        let body = body.clone();
        let addr = h.running.https;
        async move { https(addr, &ca, "/validate", body, &rustls::version::TLS13).await }
    };
    let leaf = |pem: &str| ca_der(pem).to_vec();
    assert_eq!(served(h.ca.clone()).await.unwrap().2, leaf(&first.cert_pem));

    // A new pair (signed by a new CA) is picked up without a restart.
    let second = tls::dev_certificates(&["localhost"]).unwrap();
    std::fs::write(&key, &second.key_pem).unwrap();
    std::fs::write(&cert, &second.cert_pem).unwrap();
    let mut rotated = false;
    for _ in 0..250 {
        if let Ok((200, _, l)) = served(ca_der(&second.ca_pem)).await
            && l == leaf(&second.cert_pem)
        {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rotated, "the new certificate was not served");

    // A bad pair (certificate of a third key) is rejected; the second pair stays in service.
    let third = tls::dev_certificates(&["localhost"]).unwrap();
    std::fs::write(&cert, &third.cert_pem).unwrap();
    for _ in 0..250 {
        let metrics = h.metrics.render(Sizes::default());
        if metrics.contains("certificate_reloads_total{result=\"failure\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = h.metrics.render(Sizes::default());
    assert!(metrics.contains("certificate_reloads_total{result=\"failure\"} 1"), "{metrics}");
    let (status, _, l) = served(ca_der(&second.ca_pem)).await.unwrap();
    assert_eq!((status, l), (200, leaf(&second.cert_pem)));
    task.abort();
    h.running.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_reviews() {
    let certs = tls::dev_certificates(&["localhost"]).unwrap();
    // Denials are confirmed with a fresh read that takes 400 ms: a review in flight.
    let (h, _) = start_with(test_state(Duration::from_millis(400), true), &certs, Limits::default()).await;
    let addr = h.running.https;
    let ca = h.ca.clone();
    let in_flight = tokio::spawn(async move {
        https(addr, &ca, "/validate", case("validate/deployment-create-dns-blocked.json"), &rustls::version::TLS13)
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.running.shutdown().await.unwrap();
    let (status, body, _) = in_flight.await.unwrap().unwrap();
    assert_eq!(status, 200);
    let review: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(review["response"]["allowed"], false);
    // After shutdown nothing listens.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn an_unconfirmed_denial_admits_with_warnings() {
    let certs = tls::dev_certificates(&["localhost"]).unwrap();
    let (inner, _) = StaticState::load(&repo().join("testcases/admission/state")).unwrap();
    let state = Arc::new(TestState { inner, confirm_delay: Duration::ZERO, ready: true, confirm_fails: true });
    let (h, _) = start_with(state, &certs, Limits::default()).await;
    let (status, review) = post(&h, "/validate", case("validate/deployment-create-dns-blocked.json")).await;
    assert_eq!(status, 200);
    assert_eq!(review["response"]["allowed"], true, "{review}");
    let warnings = review["response"]["warnings"].as_array().unwrap();
    assert!(warnings[0].as_str().unwrap().contains("PC003 egress-blocks-dns"), "{warnings:?}");
    // A denial for the object's own content needs no confirmation and stays a denial.
    let (_, review) = post(&h, "/validate", case("validate/networkpolicy-update-ignored-and-invalid.json")).await;
    assert_eq!(review["response"]["allowed"], false);
    let metrics = get(h.running.ops, "/metrics").await.1;
    assert!(metrics.contains("portcullis_webhook_fresh_reads_total{result=\"failure\"} 2"), "{metrics}");
    h.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn operations_port() {
    let certs = tls::dev_certificates(&["localhost"]).unwrap();
    let (h, _) = start_with(test_state(Duration::ZERO, false), &certs, Limits::default()).await;
    assert_eq!(get(h.running.ops, "/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(get(h.running.ops, "/readyz").await.0, 503, "not ready until the state is synced");
    post(&h, "/validate", case("validate/deployment-create-no-default-deny.json")).await;
    let (status, metrics) = get(h.running.ops, "/metrics").await;
    assert_eq!(status, 200);
    for expected in [
        "portcullis_webhook_reviews_total{endpoint=\"validate\",kind=\"Deployment\",operation=\"CREATE\",decision=\"deny\"} 1",
        "portcullis_webhook_review_duration_seconds_count{endpoint=\"validate\"} 1",
        "portcullis_webhook_cache_objects{kind=\"NetworkPolicy\"} 4",
        "portcullis_webhook_fresh_reads_total{result=\"success\"} 1",
        // Decided on the cached state once (and again on the fresh read, never remembered).
        "portcullis_webhook_decision_memo_hits_total 0",
        "portcullis_webhook_decision_memo_misses_total 1",
    ] {
        assert!(metrics.contains(expected), "missing {expected} in\n{metrics}");
    }
    // The same review again: the cached state's answer is remembered; the denial is still
    // confirmed on a fresh read.
    let (status, review) = post(&h, "/validate", case("validate/deployment-create-no-default-deny.json")).await;
    assert_eq!((status, &review["response"]["allowed"]), (200, &Value::Bool(false)), "{review}");
    let metrics = get(h.running.ops, "/metrics").await.1;
    for expected in [
        "portcullis_webhook_decision_memo_hits_total 1",
        "portcullis_webhook_decision_memo_misses_total 1",
        "portcullis_webhook_fresh_reads_total{result=\"success\"} 2",
    ] {
        assert!(metrics.contains(expected), "missing {expected} in\n{metrics}");
    }
    h.running.shutdown().await.unwrap();
}

/// A large UPDATE review (about 4 MB, both objects set), as the API server sends for big objects.
fn large_review() -> Vec<u8> {
    let mut review: Value = serde_json::from_slice(&case("validate/deployment-create-no-default-deny.json")).unwrap();
    let annotations: serde_json::Map<String, Value> =
        (0..2_000).map(|i| (format!("example.com/note-{i}"), Value::String("x".repeat(1_000)))).collect();
    review["request"]["object"]["metadata"]["annotations"] = Value::Object(annotations);
    review["request"]["operation"] = Value::String("UPDATE".into());
    review["request"]["oldObject"] = review["request"]["object"].clone();
    serde_json::to_vec(&review).unwrap()
}

/// Regression (issue 16, class 3): `--review-timeout-ms 50` still answered 200 after 2.9 s,
/// because parsing and deciding ran on the async workers where no timer could interrupt them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_review_timeout_answers_503_on_time_even_for_cpu_bound_reviews() {
    let certs = tls::dev_certificates(&["localhost"]).unwrap();
    let body = large_review();
    let (h, _) =
        start_timed(test_state(Duration::ZERO, true), &certs, Limits::default(), Duration::from_secs(60)).await;
    let started = std::time::Instant::now();
    let (status, _) = post(&h, "/validate", body.clone()).await;
    let untimed = started.elapsed();
    assert_eq!(status, 200);
    h.running.shutdown().await.unwrap();

    let timeout = (untimed / 10).max(Duration::from_millis(5));
    let (h, _) = start_timed(test_state(Duration::ZERO, true), &certs, Limits::default(), timeout).await;
    let started = std::time::Instant::now();
    let (status, _) = post(&h, "/validate", body).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 503, "a review of {untimed:?} with a timeout of {timeout:?}");
    assert!(
        elapsed < untimed / 2 + Duration::from_millis(50),
        "answered after {elapsed:?}; the review alone takes {untimed:?}"
    );
    let metrics = get(h.running.ops, "/metrics").await.1;
    assert!(metrics.contains("portcullis_webhook_review_timeouts_total 1"), "{metrics}");
    h.running.shutdown().await.unwrap();
}

/// A review over the inline size is never remembered: copying its object without the cluster's
/// metadata would add a copy to the memory a large review already holds (docs/operations.md,
/// "Resource envelope"), and its hash to its time. A small one is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_small_reviews_are_remembered() {
    let certs = tls::dev_certificates(&["localhost"]).unwrap();
    let (h, _) =
        start_timed(test_state(Duration::ZERO, true), &certs, Limits::default(), Duration::from_secs(60)).await;
    let mut large: Value = serde_json::from_slice(&large_review()).unwrap();
    large["request"]["operation"] = Value::String("CREATE".into());
    large["request"]["oldObject"] = Value::Null;
    let large = serde_json::to_vec(&large).unwrap();
    for _ in 0..2 {
        assert_eq!(post(&h, "/validate", large.clone()).await.0, 200);
    }
    let metrics = get(h.running.ops, "/metrics").await.1;
    assert!(metrics.contains("portcullis_webhook_decision_memo_misses_total 0"), "{metrics}");
    assert!(metrics.contains("portcullis_webhook_decision_memo_hits_total 0"), "{metrics}");
    for _ in 0..2 {
        assert_eq!(post(&h, "/validate", case("validate/deployment-create-no-default-deny.json")).await.0, 200);
    }
    let metrics = get(h.running.ops, "/metrics").await.1;
    assert!(metrics.contains("portcullis_webhook_decision_memo_misses_total 1"), "{metrics}");
    assert!(metrics.contains("portcullis_webhook_decision_memo_hits_total 1"), "{metrics}");
    h.running.shutdown().await.unwrap();
}

/// Regression (issue 16, class 3): a normal review waited 7.4 s behind large ones decided on
/// the async workers. Reviews run on the blocking pool: a small one is answered while a large
/// one is still being decided, even with a single async worker (which a review decided on the
/// workers would hold for its whole duration).
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_small_review_is_not_queued_behind_a_large_one() {
    let certs = tls::dev_certificates(&["localhost"]).unwrap();
    let (h, _) =
        start_timed(test_state(Duration::ZERO, true), &certs, Limits::default(), Duration::from_secs(60)).await;
    let h = Arc::new(h);
    let large = {
        let h = h.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let (status, _) = post(&h, "/validate", large_review()).await;
            (status, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = std::time::Instant::now();
    let (status, _) = post(&h, "/validate", case("validate/pod-create-shop-allowed.json")).await;
    let small = started.elapsed();
    let (large_status, large_elapsed) = large.await.unwrap();
    assert_eq!((status, large_status), (200, 200));
    assert!(small < large_elapsed / 2, "the small review took {small:?}, the large one {large_elapsed:?}");
}

/// A review that cannot get its share of the review budget before its deadline is answered 503
/// at once instead of queueing behind the others (load shedding).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_beyond_the_budget_are_shed() {
    let certs = tls::dev_certificates(&["localhost"]).unwrap();
    // One review at a time; the first one holds its slot while it waits 2 s to confirm a denial.
    let limits = Limits { max_concurrent_reviews: 1, ..Limits::default() };
    let state = test_state(Duration::from_secs(2), true);
    let (h, _) = start_timed(state, &certs, limits, Duration::from_millis(500)).await;
    let h = Arc::new(h);
    let denial = case("validate/deployment-create-dns-blocked.json");
    let (a, b) = tokio::join!(post(&h, "/validate", denial.clone()), post(&h, "/validate", denial));
    assert_eq!((a.0, b.0), (503, 503));
    let metrics = get(h.running.ops, "/metrics").await.1;
    assert!(metrics.contains("portcullis_webhook_reviews_shed_total 1"), "{metrics}");
    assert!(metrics.contains("portcullis_webhook_review_timeouts_total 1"), "{metrics}");
}

/// Whether the server closed `stream` within `within` (EOF or reset on read).
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // a response; keep reading until the close
            Err(_) => return false,
        }
    }
}

/// Regression (issue 16, class 3): 10,000 connections sending partial headers stayed open
/// forever (349 MB), and idle connections on the metrics port exhausted the descriptors the
/// review port needed. Each port has its own connection limit; a connection that does not
/// finish its TLS handshake or its headers in time is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_slow_and_excess_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let certs = tls::dev_certificates(&["localhost"]).unwrap();
    let limits = Limits {
        max_connections: 3,
        max_ops_connections: 2,
        header_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (h, _) = start_with(test_state(Duration::ZERO, true), &certs, limits).await;
    let connect = |addr| async move { tokio::net::TcpStream::connect(addr).await.unwrap() };

    // The ops port: two slow clients hold its permits, a third is closed at once.
    let mut slow = vec![connect(h.running.ops).await, connect(h.running.ops).await];
    for s in &mut slow {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap(); // never finished
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut third = connect(h.running.ops).await;
    assert!(closed_within(&mut third, Duration::from_millis(200)).await, "over the ops limit: closed at once");
    // The review port is not affected by the ops port's clients.
    let (status, _) = post(&h, "/validate", case("validate/pod-create-shop-allowed.json")).await;
    assert_eq!(status, 200);
    // Partial headers are cut off at the header timeout.
    for s in &mut slow {
        assert!(closed_within(s, Duration::from_secs(2)).await, "partial headers: closed after the timeout");
    }
    // A kept-alive connection that goes idle is closed too.
    let mut idle = connect(h.running.ops).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(2)).await, "an idle kept-alive connection is closed");

    // The HTTPS port: clients that never start TLS hold permits only until the handshake timeout.
    let mut silent =
        vec![connect(h.running.https).await, connect(h.running.https).await, connect(h.running.https).await];
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut extra = connect(h.running.https).await;
    assert!(closed_within(&mut extra, Duration::from_millis(200)).await, "over the HTTPS limit: closed at once");
    for s in &mut silent {
        assert!(closed_within(s, Duration::from_secs(2)).await, "no TLS handshake: closed after the timeout");
    }
    let (status, _) = post(&h, "/validate", case("validate/pod-create-shop-allowed.json")).await;
    assert_eq!(status, 200, "served again once the idle connections are gone");
    h.running.shutdown().await.unwrap();
}

/// Regression (issue 17): with the metrics port taken (Prometheus' 9090), dev mode wrote its CA
/// and only then failed to bind. Both ports are bound before anything is written.
#[test]
fn a_port_in_use_fails_the_start_before_anything_is_written() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = temp_dir();
    let ca = dir.join("dev-ca.pem");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis-webhook"))
        .args(["serve", "--dev", "--state"])
        .arg(repo().join("testcases/admission/state"))
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", &taken.local_addr().unwrap().to_string(), "--dev-ca-out"])
        .arg(&ca)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Address already in use"));
    assert!(!ca.exists(), "the CA was written although the server could not start");
}

/// `--traffic-history` where nothing could post to it, or no replica would count, is refused
/// at the start with the reason, not accepted as a history that stays empty.
#[test]
fn a_traffic_history_that_could_not_work_is_refused_at_start() {
    for (args, reason) in [
        (vec!["--dev", "--state", "STATE"], "needs --observations-token-file"),
        (
            vec!["--controller", "false", "--tls-cert", "/nonexistent", "--tls-key", "/nonexistent"],
            "needs the controller",
        ),
    ] {
        let state = repo().join("testcases/admission/state");
        let args: Vec<String> =
            args.iter().map(|a| if *a == "STATE" { state.display().to_string() } else { (*a).to_owned() }).collect();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis-webhook"))
            .args(["serve", "--traffic-history", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }
}
