//! The traffic history at the size issue 20 names: 1,000 workloads × 100 edges each, every edge
//! seen every hour for 14 days, on 50 nodes. Prints the process's memory with the history
//! held, the per-node objects' compressed sizes against the API server's 1 MiB limit, and
//! the time to count an hour of connections, to age the counts, and to encode and decode every
//! node's object. `cargo bench -p portcullis-webhook --bench traffic-history`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)] // a benchmark binary

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use portcullis_linter::egress::observation::{
    FlowBatch, FlowEnd, FlowKind, FlowStart, PodAddress, SensorFlow, SensorPod,
};
use portcullis_linter::model::Protocol;
use portcullis_linter::replay::history::{History, HistoryConfig, NodeHistory};
use portcullis_linter::replay::traffic::{Edge, HourCount, Peer, TrafficLog, WorkloadPeer};
use portcullis_webhook::traffic::{MAX_OBJECT_BYTES, decode, encode};

/// The webhook's allocator, so memory is what the webhook would hold.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WORKLOADS: usize = 1_000;
const EDGES: usize = 100;
const NODES: usize = 50;
const DAYS: i64 = 14;

fn kib(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    (kib(&status, "VmRSS:") / 1024, kib(&status, "VmHWM:") / 1024)
}

fn pod(w: usize) -> SensorPod {
    SensorPod {
        namespace: format!("team-{:03}", w / 10),
        name: format!("svc-{w:04}-7f9c4d-x2k8q"),
        workload: Some(format!("Deployment/svc-{w:04}")),
        labels: [
            ("app".to_owned(), format!("svc-{w:04}")),
            ("team".to_owned(), format!("team-{:03}", w / 10)),
            ("tier".to_owned(), ["web", "api", "worker", "db"][w % 4].to_owned()),
        ]
        .into_iter()
        .collect(),
    }
}

fn ip(w: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 244, (w / 250) as u8, (w % 250) as u8 + 1))
}

/// Workload `w`'s edges: 60 to other workloads, 40 to named outside addresses.
fn peers(w: usize) -> Vec<(Peer, u16)> {
    (0..EDGES)
        .map(|k| {
            if k < 60 {
                let other = (w + 1 + k * 7) % WORKLOADS;
                let p = pod(other);
                let peer = WorkloadPeer {
                    namespace: p.namespace.clone(),
                    workload: p.workload.clone().unwrap(),
                    labels: p.labels,
                    namespace_labels: None,
                    ports: Vec::new(),
                };
                (Peer::Workload(peer), 8080 + (k % 4) as u16)
            } else {
                let address = IpAddr::V4(Ipv4Addr::new(203, 0, (k % 200) as u8, (w % 250) as u8 + 1));
                let name = Some(format!("api-{k}.saas-{}.example.com", w % 37));
                (Peer::Address(portcullis_linter::replay::traffic::AddressPeer { address, name }), 443)
            }
        })
        .collect()
}

fn main() {
    let now = Timestamp::now();
    let hour0 = now.as_second().div_euclid(3600) - DAYS * 24;
    let (rss0, _) = memory();
    // Every node's part as 14 days of hourly counts, restored into one history and aged, as an
    // aggregator holds it after loading.
    let started = Instant::now();
    let mut history = History::new(HistoryConfig::default());
    for node in 0..NODES {
        let workloads: Vec<usize> = (0..WORKLOADS).filter(|w| w % NODES == node).collect();
        let mut edges = Vec::new();
        for &w in &workloads {
            let p = pod(w);
            let source = Peer::Workload(WorkloadPeer {
                namespace: p.namespace.clone(),
                workload: p.workload.clone().unwrap(),
                labels: p.labels.clone(),
                namespace_labels: None,
                ports: Vec::new(),
            });
            for (k, (destination, port)) in peers(w).into_iter().enumerate() {
                let hours: Vec<HourCount> = (0..DAYS * 24)
                    .map(|h| HourCount {
                        hour: Timestamp::from_second((hour0 + h) * 3600).unwrap(),
                        count: 1 + ((w + k + h as usize) % 40) as u64,
                    })
                    .collect();
                let count = hours.iter().map(|h| h.count).sum();
                edges.push(Edge {
                    source: source.clone(),
                    destination,
                    port: i32::from(port),
                    protocol: Protocol::Tcp,
                    first_seen: hours[0].hour,
                    last_seen: hours[hours.len() - 1].hour,
                    count,
                    hours,
                });
            }
        }
        history.restore(NodeHistory {
            node: format!("node-{node:02}"),
            boot: "b".to_owned(),
            seq: 1,
            pods: workloads.iter().map(|&w| PodAddress { ip: ip(w), pod: pod(w) }).collect(),
            log: TrafficLog { edges },
        });
        // Aged as it loads, as the aggregator's flush does.
        history.compact(now);
    }
    let loaded = started.elapsed();
    let (rss1, hwm1) = memory();
    println!(
        "history: {} edges of {WORKLOADS} workloads on {NODES} nodes, {DAYS} days aged to 48 h hourly + daily: loaded in {:.2} s",
        history.edge_count(),
        loaded.as_secs_f64()
    );
    println!(
        "process memory: {rss1} MB resident with the history ({rss0} MB before), peak {hwm1} MB while building it"
    );

    // One hour of traffic: every edge once, as the 50 nodes' batches, the outside names known
    // from the pods' DNS answers.
    for w in 0..WORKLOADS {
        for (destination, _) in peers(w) {
            if let Peer::Address(a) = destination {
                let observation = serde_json::json!({"ts": now.checked_sub(SignedDuration::from_mins(1)).unwrap(),
                    "node": "n", "client": {"ip": ip(w)}, "server": "10.96.0.10", "qname": a.name.unwrap(),
                    "answers": [{"ip": a.address, "ttl": 60}]});
                history.observe_dns(&serde_json::from_value(observation).unwrap());
            }
        }
    }
    let started = Instant::now();
    let ts = now;
    let mut flows = 0;
    for node in 0..NODES {
        let mut batch = FlowBatch {
            node: format!("node-{node:02}"),
            boot: "b".to_owned(),
            seq: 2,
            pods: Vec::new(),
            flows: Vec::new(),
        };
        for w in (0..WORKLOADS).filter(|w| w % NODES == node) {
            for (k, (destination, port)) in peers(w).into_iter().enumerate() {
                let (dst_ip, dst_pod) = match destination {
                    Peer::Workload(_) => {
                        let other = (w + 1 + k * 7) % WORKLOADS;
                        (ip(other), None)
                    }
                    Peer::Address(a) => (a.address, None),
                };
                batch.flows.push(SensorFlow {
                    ts,
                    node: batch.node.clone(),
                    flow: FlowStart {
                        kind: FlowKind::Syn,
                        protocol: Protocol::Tcp,
                        source: FlowEnd { ip: ip(w), port: 40_000 + k as u16, pod: Some(pod(w)) },
                        destination: FlowEnd { ip: dst_ip, port, pod: dst_pod },
                    },
                });
            }
        }
        batch.pods =
            (0..WORKLOADS).filter(|w| w % NODES == node).map(|w| PodAddress { ip: ip(w), pod: pod(w) }).collect();
        flows += batch.flows.len();
        history.apply(&batch);
    }
    let counted = started.elapsed();
    println!(
        "count: {flows} connection starts in {:.2} s ({:.0} per second)",
        counted.as_secs_f64(),
        flows as f64 / counted.as_secs_f64()
    );
    let started = Instant::now();
    history.compact(now.checked_add(SignedDuration::from_hours(1)).unwrap());
    println!("age: {:.2} s", started.elapsed().as_secs_f64());

    // Every node's object, as written and read back.
    let started = Instant::now();
    let mut sizes = BTreeMap::new();
    let mut objects = Vec::new();
    let nodes: Vec<String> = history.nodes().map(str::to_owned).collect();
    for node in &nodes {
        let part = history.node(node).unwrap();
        let (object, size) = encode(&part, "portcullis-system").unwrap();
        sizes.insert(node.clone(), size);
        objects.push(object);
    }
    let encoded = started.elapsed();
    let started = Instant::now();
    let mut edges = 0;
    for object in &objects {
        edges += decode(object).unwrap().log.edges.len();
    }
    let decoded = started.elapsed();
    let largest = sizes.values().max().copied().unwrap_or(0);
    let total: usize = sizes.values().sum();
    println!(
        "objects: {} ConfigMaps, largest {} KiB compressed (limit {} KiB), {} KiB in all; encode {:.2} s, decode {:.2} s ({edges} edges)",
        sizes.len(),
        largest / 1024,
        MAX_OBJECT_BYTES / 1024,
        total / 1024,
        encoded.as_secs_f64(),
        decoded.as_secs_f64()
    );
    let (rss2, hwm2) = memory();
    println!("process memory at the end: {rss2} MB resident, peak {hwm2} MB");
}
