//! `POST /v1/observations` over real HTTPS: who may post (bearer token, exactly the sensor's
//! ServiceAccount), what may be posted (bounded, validated batches), and what it does (a wildcard
//! intent gains the addresses its pods were told). The TokenReview client is tested against a
//! mocked API server, the edge we cannot run here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::repo;
use hyper::{Request, Response};
use kube::client::Body;
use portcullis_linter::config::Config;
use portcullis_webhook::metrics::Metrics;
use portcullis_webhook::observations::{AuthError, Authenticator, Ingest, LocalIntents, StaticToken, TokenReviewer};
use portcullis_webhook::server::{App, Running};
use portcullis_webhook::state::StaticState;
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};

const SENSOR: &str = "system:serviceaccount:portcullis-system:portcullis-sensor";
const TOKEN: &str = "sensor-token-0123456789abcdef";

struct Harness {
    running: Running,
    ca: CertificateDer<'static>,
    ca_pem: String,
    metrics: Arc<Metrics>,
}

async fn start(user: &str) -> Harness {
    start_with_readers(user, vec![SENSOR.to_owned()]).await
}

async fn start_with_readers(user: &str, readers: Vec<String>) -> Harness {
    // One directory per harness: tests run side by side, and two that shared a token file raced
    // (one truncating it while the other read it).
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("portcullis-observations-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let intents = LocalIntents::load(&repo().join("testcases/sensor"), Default::default()).unwrap();
    assert_eq!(intents.len(), 1);
    let ingest = Ingest::new(
        Arc::new(StaticToken::from_file(&dir.join("token"), user.to_owned()).unwrap()),
        SENSOR.to_owned(),
        Arc::new(intents),
    )
    .with_map_readers(readers);
    let metrics = Arc::new(Metrics::new());
    let app = App {
        config: Arc::new(Config::default()),
        state: Arc::new(StaticState::default()),
        metrics: metrics.clone(),
        timeout: Duration::from_secs(10),
        ingest: Some(Arc::new(ingest)),
        memo: Arc::new(metrics.decision_memo(portcullis_webhook::memo::DEFAULT_BUDGET_BYTES)),
    };
    let (running, ca, ca_pem) = common::serve(app).await;
    Harness { running, ca, ca_pem, metrics }
}

async fn post(h: &Harness, token: Option<&str>, body: Vec<u8>) -> (u16, String) {
    common::bearer(h.running.https, &h.ca, "POST", "/v1/observations", token, body).await
}

fn observation(qname: &str, pod: bool) -> Value {
    let mut client = json!({"ip": "10.231.3.2"});
    if pod {
        client["pod"] = json!({"namespace": "shop", "name": "pay-7f9c4d-x2k8q", "workload": "Deployment/pay",
            "labels": {"app": "pay"}});
    }
    json!({"ts": "2026-11-21T10:00:00Z", "node": "n1", "client": client, "server": "10.96.0.10",
        "qname": qname, "answers": [{"ip": "192.0.2.10", "ttl": 120}], "cnames": []})
}

fn batch(observations: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({ "observations": observations })).unwrap()
}

#[tokio::test]
async fn the_sensor_feeds_a_wildcard_intent() {
    let h = start(SENSOR).await;
    let body = batch(vec![
        observation("api.example.test", true),
        observation("deep.api.example.test", true), // two labels: the one-label pattern ignores it
        observation("api.example.test", false),     // no pod: nothing can select it
    ]);
    let (status, text) = post(&h, Some(TOKEN), body).await;
    assert_eq!(status, 200, "{text}");
    let counts: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(counts, json!({"accepted": 2, "unattributed": 1, "intentsChanged": 1}));
    // The same answer again changes nothing.
    let (status, text) = post(&h, Some(TOKEN), batch(vec![observation("api.example.test", true)])).await;
    assert_eq!((status, serde_json::from_str::<Value>(&text).unwrap()["intentsChanged"].clone()), (200, json!(0)));
    let metrics = h.metrics.render(Default::default());
    assert!(metrics.contains("portcullis_webhook_observations_total{result=\"accepted\"} 3"), "{metrics}");
    assert!(metrics.contains("portcullis_webhook_observation_intent_updates_total 1"), "{metrics}");
}

#[tokio::test]
async fn only_the_sensor_with_a_valid_token_may_post() {
    let h = start(SENSOR).await;
    let body = batch(vec![observation("api.example.test", true)]);
    assert_eq!(post(&h, None, body.clone()).await.0, 401);
    assert_eq!(post(&h, Some("wrong-token-0123456789"), body.clone()).await.0, 401);
    let other = start("system:serviceaccount:default:default").await;
    let (status, text) = post(&other, Some(TOKEN), body).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("system:serviceaccount:default:default may not post"), "{text}");
}

#[tokio::test]
async fn bad_batches_are_refused_whole() {
    let h = start(SENSOR).await;
    for (body, needle) in [
        (b"{not json".to_vec(), "not an observation batch"),
        (br#"{"observations": [{"qname": 5}]}"#.to_vec(), "not an observation batch"),
        (batch(vec![observation("ok.example.test", true), observation("", true)]), "observations[1]"),
        (batch(vec![observation("a.example.test", true); 1001]), "at most 1000"),
        (vec![0xff, 0xfe, 0x00], "not an observation batch"),
    ] {
        let (status, text) = post(&h, Some(TOKEN), body).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let (status, _) = post(&h, Some(TOKEN), vec![b' '; 3 * 1024 * 1024]).await;
    assert_eq!(status, 413);
    let metrics = h.metrics.render(Default::default());
    assert!(!metrics.contains("portcullis_webhook_observations_total{result=\"accepted\"}"), "{metrics}");
}

type ApiHandle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

async fn review_once(server: &mut ApiHandle, authenticated: bool) -> Value {
    let (request, send) = server.next_request().await.unwrap();
    assert_eq!(request.method(), "POST");
    assert_eq!(request.uri().path(), "/apis/authentication.k8s.io/v1/tokenreviews");
    let bytes = http_body_util::BodyExt::collect(request.into_body()).await.unwrap().to_bytes();
    let sent: Value = serde_json::from_slice(&bytes).unwrap();
    let mut reply = sent.clone();
    reply["status"] = if authenticated {
        json!({"authenticated": true, "user": {"username": SENSOR, "groups": ["system:serviceaccounts"]}})
    } else {
        json!({"authenticated": false, "error": "token expired"})
    };
    send.send_response(Response::builder().status(201).body(Body::from(serde_json::to_vec(&reply).unwrap())).unwrap());
    sent
}

#[tokio::test]
async fn token_reviews_go_to_the_api_server_and_are_cached() {
    let (service, mut server) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let reviewer = TokenReviewer::new(kube::Client::new(service, "default"));
    let serving = tokio::spawn(async move {
        let sent = review_once(&mut server, true).await;
        assert_eq!(sent["kind"], "TokenReview");
        assert_eq!(sent["spec"]["token"], "good-token");
        review_once(&mut server, false).await;
        server
    });
    assert_eq!(reviewer.authenticate("good-token").await.unwrap(), SENSOR);
    // Cached: no second request for the same token.
    assert_eq!(reviewer.authenticate("good-token").await.unwrap(), SENSOR);
    assert!(matches!(reviewer.authenticate("bad-token").await, Err(AuthError::Invalid)));
    let server = serving.await.unwrap();
    // The failed verdict is cached too.
    assert!(matches!(reviewer.authenticate("bad-token").await, Err(AuthError::Invalid)));
    // An API server that cannot answer makes a new token "unavailable" (HTTP 503), not "invalid".
    drop(server);
    assert!(matches!(reviewer.authenticate("new-token").await, Err(AuthError::Unavailable(_))));
}

async fn get_map(h: &Harness, token: Option<&str>) -> (u16, String) {
    common::bearer(h.running.https, &h.ca, "GET", "/v1/map", token, Vec::new()).await
}

#[tokio::test]
async fn the_egress_map_is_served_to_its_readers_only() {
    let h = start(SENSOR).await;
    let body = batch(vec![observation("api.example.test", true), observation("other.example.test", false)]);
    assert_eq!(post(&h, Some(TOKEN), body).await.0, 200);
    assert_eq!(get_map(&h, None).await.0, 401);
    let (status, text) = get_map(&h, Some(TOKEN)).await;
    assert_eq!(status, 200, "{text}");
    let map: Value = serde_json::from_str(&text).unwrap();
    let who: Vec<String> = map["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| format!("{}/{}", w["namespace"].as_str().unwrap(), w["workload"].as_str().unwrap()))
        .collect();
    assert_eq!(who, ["/10.231.3.2", "shop/Deployment/pay"]);
    assert_eq!(map["workloads"][1]["names"][0]["name"], "api.example.test");
    assert_eq!(map["workloads"][1]["names"][0]["addresses"][0]["ip"], "192.0.2.10");
    // `portcullis map --from https://…/v1/map`, the CLI's real client, against this server.
    let dir = std::env::temp_dir().join(format!("portcullis-map-client-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), &h.ca_pem).unwrap();
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    let url = format!("https://localhost:{}/v1/map", h.running.https.port());
    let args: Vec<std::ffi::OsString> = [
        "portcullis",
        "map",
        "--from",
        &url,
        "--ca",
        dir.join("ca.pem").to_str().unwrap(),
        "--token-file",
        dir.join("token").to_str().unwrap(),
    ]
    .iter()
    .map(Into::into)
    .collect();
    let (code, stdout, stderr) = common::run_cli(args).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("shop/Deployment/pay  [app=pay]\n"), "{stdout}");
    assert!(stdout.contains("api.example.test  192.0.2.10"), "{stdout}");

    // A valid token of a user who is not a reader.
    let other = start_with_readers(SENSOR, vec!["someone-else".to_owned()]).await;
    let (status, text) = get_map(&other, Some(TOKEN)).await;
    assert_eq!(status, 403, "{text}");
}
