//! The traffic aggregator: `POST /v1/flows` and `GET /v1/traffic` over real HTTPS (who may post
//! and read, what a bad batch does), and the durability promise against the in-memory API
//! store: every replica killed again and again while sensors send, and the history holds every
//! acknowledged connection exactly once. `e2e_apiserver.rs` checks the same against a real API
//! server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::repo;
use jiff::Timestamp;
use portcullis_linter::config::Config;
use portcullis_linter::egress::observation::{
    FlowBatch, FlowEnd, FlowKind, FlowStart, PodAddress, SensorFlow, SensorPod,
};
use portcullis_linter::model::Protocol;
use portcullis_linter::replay::history::HistoryConfig;
use portcullis_webhook::metrics::Metrics;
use portcullis_webhook::observations::{Ingest, LocalIntents, StaticToken};
use portcullis_webhook::server::{App, Running};
use portcullis_webhook::state::StaticState;
use portcullis_webhook::traffic::{Aggregator, MemoryStore, TrafficStore, decode};
use rustls::pki_types::CertificateDer;
use serde_json::{Value, json};

const SENSOR: &str = "system:serviceaccount:portcullis-system:portcullis-sensor";
const TOKEN: &str = "sensor-token-0123456789abcdef";

fn pod(ns: &str, workload: &str) -> SensorPod {
    let app = workload.rsplit('/').next().unwrap();
    SensorPod {
        namespace: ns.to_owned(),
        name: format!("{app}-7f9c4d-x2k8q"),
        workload: Some(workload.to_owned()),
        labels: [("app".to_owned(), app.to_owned())].into_iter().collect(),
    }
}

/// `count` SYNs from `node`'s pod at 10.0.N.5 to 203.0.113.7 on ports 1.., spread over ports.
fn batch(node: usize, seq: u64, count: usize, ports: u16) -> FlowBatch {
    let name = format!("n{node}");
    let p = pod("shop", &format!("Deployment/app{node}"));
    let ip: std::net::IpAddr = format!("10.0.{node}.5").parse().unwrap();
    let ts = Timestamp::now().checked_sub(jiff::SignedDuration::from_mins(5)).unwrap();
    let flows = (0..count)
        .map(|i| SensorFlow {
            ts,
            node: name.clone(),
            flow: FlowStart {
                kind: FlowKind::Syn,
                protocol: Protocol::Tcp,
                source: FlowEnd { ip, port: 30_000 + (i as u16), pod: Some(p.clone()) },
                destination: FlowEnd { ip: "203.0.113.7".parse().unwrap(), port: 1 + (i as u16 % ports), pod: None },
            },
        })
        .collect();
    FlowBatch { node: name, boot: "boot-1".to_owned(), seq, pods: vec![PodAddress { ip, pod: p }], flows }
}

fn aggregator(
    store: Arc<MemoryStore>,
    leader: bool,
    metrics: Arc<Metrics>,
) -> (Arc<Aggregator>, tokio::sync::watch::Sender<bool>) {
    let (tx, rx) = tokio::sync::watch::channel(leader);
    (Arc::new(Aggregator::new(store, "portcullis-system", rx, HistoryConfig::default(), metrics)), tx)
}

struct Harness {
    running: Running,
    ca: CertificateDer<'static>,
    ca_pem: String,
    metrics: Arc<Metrics>,
    store: Arc<MemoryStore>,
    _leader: tokio::sync::watch::Sender<bool>,
}

async fn start(leader: bool) -> Harness {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("portcullis-traffic-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(MemoryStore::default());
    let (traffic, tx) = aggregator(store.clone(), leader, metrics.clone());
    tokio::spawn(traffic.clone().run(Duration::from_millis(20)));
    let intents = LocalIntents::load(&repo().join("testcases/sensor"), Default::default()).unwrap();
    let auth = Arc::new(StaticToken::from_file(&dir.join("token"), SENSOR.to_owned()).unwrap());
    let ingest = Ingest::new(auth, SENSOR.to_owned(), Arc::new(intents))
        .with_map_readers(vec![SENSOR.to_owned()])
        .with_traffic(traffic);
    let app = App {
        config: Arc::new(Config::default()),
        state: Arc::new(StaticState::default()),
        metrics: metrics.clone(),
        timeout: Duration::from_secs(10),
        ingest: Some(Arc::new(ingest)),
        memo: Arc::new(metrics.decision_memo(portcullis_webhook::memo::DEFAULT_BUDGET_BYTES)),
    };
    let (running, ca, ca_pem) = common::serve(app).await;
    Harness { running, ca, ca_pem, metrics, store, _leader: tx }
}

async fn post(h: &Harness, token: Option<&str>, body: Vec<u8>) -> (u16, String) {
    common::bearer(h.running.https, &h.ca, "POST", "/v1/flows", token, body).await
}

async fn get_traffic(h: &Harness, token: Option<&str>) -> (u16, String) {
    common::bearer(h.running.https, &h.ca, "GET", "/v1/traffic", token, Vec::new()).await
}

#[tokio::test]
async fn a_batch_is_acknowledged_once_written_and_served_to_replay() {
    let h = start(true).await;
    let body = serde_json::to_vec(&batch(1, 1, 3, 2)).unwrap();
    let (status, text) = post(&h, Some(TOKEN), body.clone()).await;
    assert_eq!(status, 200, "{text}");
    let ack: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(ack, json!({"durable": true, "duplicate": false, "counted": 3, "skipped": 0, "dropped": 0}));
    // Written before it was acknowledged.
    let stored = h.store.list().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].metadata.name.as_deref(), Some("portcullis-traffic-n1"));
    assert_eq!(decode(&stored[0]).unwrap().seq, 1);
    // A resend (the acknowledgement was lost) is acknowledged and not counted again.
    let (_, text) = post(&h, Some(TOKEN), body).await;
    let ack: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (ack["durable"].clone(), ack["duplicate"].clone(), ack["counted"].clone()),
        (json!(true), json!(true), json!(0))
    );

    assert_eq!(get_traffic(&h, None).await.0, 401);
    let (status, text) = get_traffic(&h, Some(TOKEN)).await;
    assert_eq!(status, 200, "{text}");
    let log: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(log["version"], 1);
    let edges: Vec<(String, u64)> = log["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (format!("{}:{}", e["destination"]["address"].as_str().unwrap(), e["port"]), e["count"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(edges, [("203.0.113.7:1".to_owned(), 2), ("203.0.113.7:2".to_owned(), 1)]);

    // `portcullis replay --traffic https://…/v1/traffic`, the CLI's real client: a default
    // deny for the namespace would deny both edges.
    let dir = std::env::temp_dir().join(format!("portcullis-traffic-replay-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("ca.pem"), &h.ca_pem).unwrap();
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    std::fs::write(
        dir.join("policies/deny.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: default-deny\n  namespace: shop\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n",
    )
    .unwrap();
    let url = format!("https://localhost:{}/v1/traffic", h.running.https.port());
    let args: Vec<std::ffi::OsString> = [
        "portcullis",
        "replay",
        dir.join("policies").to_str().unwrap(),
        "--traffic",
        &url,
        "--ca",
        dir.join("ca.pem").to_str().unwrap(),
        "--token-file",
        dir.join("token").to_str().unwrap(),
        "--format",
        "json",
        "--fail-on",
        "denied-traffic",
    ]
    .iter()
    .map(Into::into)
    .collect();
    let (code, stdout, stderr) = common::run_cli(args).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    let out: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(out["deniedEdges"], 2, "{stdout}");
    assert_eq!(out["deniedConnections"], 3, "{stdout}");
    let metrics = h.metrics.render(Default::default());
    assert!(metrics.contains("portcullis_webhook_traffic_flows_total{result=\"counted\"} 3"), "{metrics}");
    assert!(metrics.contains("portcullis_webhook_traffic_batches_total{result=\"duplicate\"} 1"), "{metrics}");
}

#[tokio::test]
async fn only_the_sensor_may_post_and_a_bad_batch_changes_nothing() {
    let h = start(true).await;
    let good = batch(1, 1, 1, 1);
    let body = serde_json::to_vec(&good).unwrap();
    assert_eq!(post(&h, None, body.clone()).await.0, 401);
    assert_eq!(post(&h, Some("wrong-token-0123456789"), body).await.0, 401);

    let mut hostile_labels = good.clone();
    hostile_labels.pods[0].pod.labels.insert("app".to_owned(), "x".repeat(64));
    let mut zero_seq = good.clone();
    zero_seq.seq = 0;
    let mut other_node = good.clone();
    other_node.flows[0].node = "n2".to_owned();
    let mut bad_flow_pod = good.clone();
    bad_flow_pod.flows[0].flow.source.pod.as_mut().unwrap().namespace = "Shop!".to_owned();
    let huge = batch(1, 1, portcullis_linter::egress::observation::MAX_FLOW_BATCH + 1, 1);
    let mut future = good.clone();
    future.flows[0].ts = "2100-01-01T00:00:00Z".parse().unwrap();
    let json = |b: &FlowBatch| serde_json::to_vec(b).unwrap();
    let mut unknown_field: Value = serde_json::to_value(&good).unwrap();
    unknown_field["extra"] = json!(1);
    for (body, needle) in [
        (b"{not json".to_vec(), "not a flow batch"),
        (serde_json::to_vec(&unknown_field).unwrap(), "unknown field `extra`"),
        (json(&hostile_labels), "pods[0].pod: labels: value"),
        (json(&zero_seq), "seq starts at 1"),
        (json(&other_node), "flows[0].node"),
        (json(&bad_flow_pod), "flows[0].flow.source.pod: namespace"),
        (json(&huge), "at most 10000"),
        (json(&future), "flows[0].ts: 2100-01-01T00:00:00Z is in the future"),
    ] {
        let (status, text) = post(&h, Some(TOKEN), body).await;
        assert_eq!(status, 400, "{needle}: {text}");
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let (status, _) = post(&h, Some(TOKEN), vec![b' '; 5 * 1024 * 1024]).await;
    assert_eq!(status, 413);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(h.store.list().await.unwrap().is_empty(), "nothing was written");
    let metrics = h.metrics.render(Default::default());
    assert!(!metrics.contains("traffic_flows_total{result=\"counted\"}"), "{metrics}");
    assert!(metrics.contains("portcullis_webhook_traffic_batches_total{result=\"rejected\"} 8"), "{metrics}");
}

#[tokio::test]
async fn a_standby_counts_nothing_and_says_so() {
    let h = start(false).await;
    let (status, text) = post(&h, Some(TOKEN), serde_json::to_vec(&batch(1, 1, 2, 1)).unwrap()).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["durable"], false);
    assert!(h.store.list().await.unwrap().is_empty());
}

/// One sensor's protocol: each batch in order, sent to every live replica until one says it is
/// durable. Returns how many sends were answered "duplicate" (resends of a counted batch).
async fn sensor(
    node: usize,
    batches: u64,
    replicas: Arc<tokio::sync::RwLock<(u64, Vec<Arc<Aggregator>>)>>,
    killed: tokio::sync::watch::Receiver<u64>,
) -> usize {
    let mut duplicates = 0;
    for seq in 1..=batches {
        let b = batch(node, seq, 7, 5);
        loop {
            let (generation, live) = replicas.read().await.clone();
            let mut killed = killed.clone();
            let sends = futures::future::join_all(live.iter().map(|r| r.accept(&b)));
            // A kill drops in-flight requests, as a dead replica's connection does.
            let acks = tokio::select! {
                acks = sends => acks,
                _ = killed.wait_for(|g| *g > generation) => Vec::new(),
            };
            duplicates += acks.iter().filter(|a| a.duplicate).count();
            if acks.iter().any(|a| a.durable) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    duplicates
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_every_replica_again_and_again_loses_nothing_acknowledged() {
    let store = Arc::new(MemoryStore::default());
    let metrics = Arc::new(Metrics::new());
    let (nodes, batches) = (3usize, 40u64);
    // Two replicas per generation; the first leads.
    let spawn_generation = |generation: u64| {
        let mut live = Vec::new();
        let mut tasks = Vec::new();
        let mut leaders = Vec::new();
        for i in 0..2 {
            let (a, tx) = aggregator(store.clone(), i == 0, metrics.clone());
            tasks.push(tokio::spawn(a.clone().run(Duration::from_millis(5))));
            live.push(a);
            leaders.push(tx);
        }
        ((generation, live), tasks, leaders)
    };
    let (first, mut tasks, mut leaders) = spawn_generation(0);
    let replicas = Arc::new(tokio::sync::RwLock::new(first));
    let (kill, killed) = tokio::sync::watch::channel(0u64);
    let sensors: Vec<_> =
        (1..=nodes).map(|n| tokio::spawn(sensor(n, batches, replicas.clone(), killed.clone()))).collect();
    let mut kills = 0u64;
    while !sensors.iter().all(|s| s.is_finished()) {
        tokio::time::sleep(Duration::from_millis(4 + kills % 9)).await;
        // Every replica dies at once: their tasks stop mid-work, their memory is gone.
        kills += 1;
        for t in tasks.drain(..) {
            t.abort();
        }
        let (next, t, l) = spawn_generation(kills);
        (tasks, leaders) = (t, l);
        *replicas.write().await = next;
        kill.send_replace(kills);
    }
    let mut duplicates = 0;
    for s in sensors {
        duplicates += s.await.unwrap();
    }
    drop(leaders);
    assert!(kills >= 10, "{kills} kills");
    // What the store holds is exactly what the sensors sent: every SYN once.
    let mut got = BTreeMap::new();
    for object in store.list().await.unwrap() {
        let part = decode(&object).unwrap();
        assert_eq!(part.seq, batches, "{}: every batch was acknowledged", part.node);
        for e in part.log.edges {
            got.insert((part.node.clone(), e.port), e.count);
        }
    }
    let mut want = BTreeMap::new();
    for n in 1..=nodes {
        for seq in 1..=batches {
            for f in batch(n, seq, 7, 5).flows {
                *want.entry((format!("n{n}"), i32::from(f.flow.destination.port))).or_insert(0u64) += 1;
            }
        }
    }
    assert_eq!(got, want, "after {kills} kills and {duplicates} duplicate answers");
}
