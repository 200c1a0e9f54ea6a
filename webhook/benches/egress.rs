//! FQDN intents at scale: render 1,000 intents × 10 names × 8 addresses; apply 10,000
//! observations per second to the caches; and the latency from an observation to the policy
//! write being issued (through the controller's reconcile, against an in-memory API that
//! timestamps each apply). `cargo bench -p portcullis-webhook --bench egress`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)] // a benchmark binary

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use portcullis_linter::egress::{
    Answer, CacheConfig, ClientPod, EgressIntent, EgressIntentStatus, IntentKey, IntentSet, Observation, RenderConfig,
};
use portcullis_webhook::controller::api::{ApiError, ControllerApi};
use portcullis_webhook::controller::{Reconciler, Settings};
use serde_json::{Value, json};

const INTENTS: usize = 1_000;
const NAMES: usize = 10;
const ADDRESSES: usize = 8;
const NAMESPACES: usize = 50;

#[derive(Default)]
struct TimedApi {
    applied: Mutex<Vec<Instant>>,
}

impl ControllerApi for TimedApi {
    fn apply_policy<'a>(&'a self, _: &'a str, _: &'a Value) -> BoxFuture<'a, Result<Option<String>, ApiError>> {
        self.applied.lock().unwrap().push(Instant::now());
        Box::pin(async { Ok(None) })
    }
    fn patch_status<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a EgressIntentStatus,
        _: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async { Ok(()) })
    }
    fn get_lease<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<Option<Lease>, ApiError>> {
        Box::pin(async { Ok(None) })
    }
    fn create_lease<'a>(&'a self, _: &'a str, l: &'a Lease) -> BoxFuture<'a, Result<Lease, ApiError>> {
        Box::pin(async move { Ok(l.clone()) })
    }
    fn replace_lease<'a>(&'a self, _: &'a str, l: &'a Lease) -> BoxFuture<'a, Result<Lease, ApiError>> {
        Box::pin(async move { Ok(l.clone()) })
    }
}

fn intent(i: usize) -> EgressIntent {
    let egress: Vec<Value> = (0..NAMES)
        .map(|n| json!({"fqdn": format!("svc{n}.vendor{i}.example.com"), "ports": [{"port": 443}]}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "EgressIntent",
        "metadata": {"name": format!("intent-{i}"), "namespace": format!("ns-{}", i % NAMESPACES), "uid": format!("uid-{i}"), "generation": 1},
        "spec": {"podSelector": {"matchLabels": {"app": format!("app-{i}")}}, "egress": egress},
    }))
    .unwrap()
}

fn pod(i: usize) -> ClientPod {
    ClientPod {
        namespace: format!("ns-{}", i % NAMESPACES),
        labels: BTreeMap::from([("app".into(), format!("app-{i}"))]),
    }
}

fn address(i: usize, n: usize, a: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + ((i * NAMES + n) * ADDRESSES + a) as u32))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1).min(sorted.len() - 1)]
}

fn main() {
    let now = Timestamp::now();
    let intents: Vec<EgressIntent> = (0..INTENTS).map(intent).collect();

    // 1. Render: fill every cache through the resolver path, then render all intents.
    let mut set = IntentSet::new(CacheConfig::default());
    for obj in &intents {
        let meta = portcullis_linter::egress::IntentMeta::new(
            obj.metadata.namespace.as_deref().unwrap(),
            obj.metadata.name.as_deref().unwrap(),
        );
        set.upsert(meta, &obj.spec, None).unwrap();
    }
    for i in 0..INTENTS {
        for n in 0..NAMES {
            let answers: Vec<Answer> = (0..ADDRESSES).map(|a| Answer { ip: address(i, n, a), ttl: 300 }).collect();
            set.apply_lookup(&format!("svc{n}.vendor{i}.example.com"), Some(&answers), now);
        }
    }
    let keys: Vec<IntentKey> = set.keys().cloned().collect();
    let config = RenderConfig::default();
    let mut best = Duration::MAX;
    let mut bytes = 0;
    for _ in 0..5 {
        let start = Instant::now();
        for key in &keys {
            let r = set.render(key, &config, now).unwrap();
            bytes += r.addresses;
        }
        best = best.min(start.elapsed());
    }
    assert!(bytes > 0);
    println!(
        "render: {INTENTS} intents x {NAMES} names x {ADDRESSES} addresses: best of 5 {:.1} ms total, {:.1} µs per intent",
        best.as_secs_f64() * 1e3,
        best.as_secs_f64() * 1e6 / INTENTS as f64
    );

    // 2. Observations into the caches: 100,000 answers for random selected pods (most refresh
    //    known addresses, 1 in 8 brings a new one).
    let observations: Vec<Observation> = (0..100_000usize)
        .map(|k| {
            let i = (k * 7919) % INTENTS;
            let n = k % NAMES;
            let fresh = k % 8 == 0;
            let ip =
                if fresh { IpAddr::V4(Ipv4Addr::from(0xc000_0000 + k as u32)) } else { address(i, n, k % ADDRESSES) };
            Observation {
                client: pod(i),
                qname: format!("svc{n}.vendor{i}.example.com"),
                answers: vec![Answer { ip, ttl: 60 }],
                cnames: vec![],
                at: now,
            }
        })
        .collect();
    let start = Instant::now();
    let mut changed = 0;
    for o in &observations {
        changed += set.observe(o).len();
    }
    let took = start.elapsed();
    println!(
        "observe: {} observations in {:.1} ms: {:.2} µs per observation ({:.0}/s on one core), {changed} changed an intent",
        observations.len(),
        took.as_secs_f64() * 1e3,
        took.as_secs_f64() * 1e6 / observations.len() as f64,
        observations.len() as f64 / took.as_secs_f64()
    );

    // 3. Observation → policy write issued, through the controller, paced at 10,000/s.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let latencies = runtime.block_on(async {
        let rec = Reconciler::new(TimedApi::default(), Settings::from_config(&Default::default()));
        let by_key: BTreeMap<IntentKey, &EgressIntent> = intents
            .iter()
            .map(|o| {
                let key = IntentKey {
                    namespace: o.metadata.namespace.clone().unwrap(),
                    name: o.metadata.name.clone().unwrap(),
                };
                (key, o)
            })
            .collect();
        for obj in &intents {
            rec.reconcile(obj, now).await.unwrap();
        }
        let mut latencies = Vec::new();
        let interval = Duration::from_micros(100);
        let start = Instant::now();
        for (k, o) in observations.iter().take(20_000).enumerate() {
            let due = start + interval * k as u32;
            let wait = due.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let arrived = due.max(start);
            let before = rec.api().applied.lock().unwrap().len();
            for key in rec.observe(o) {
                rec.reconcile(by_key[&key], now).await.unwrap();
            }
            let applied = rec.api().applied.lock().unwrap();
            for t in &applied[before..] {
                latencies.push(t.duration_since(arrived));
            }
        }
        latencies
    });
    let mut sorted = latencies;
    sorted.sort();
    println!(
        "observation -> policy write issued (10,000 observations/s offered, {} writes): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (target p99 < 100 ms)",
        sorted.len(),
        percentile(&sorted, 0.50).as_secs_f64() * 1e3,
        percentile(&sorted, 0.99).as_secs_f64() * 1e3,
        sorted.last().unwrap().as_secs_f64() * 1e3
    );
}
