//! Writes a traffic file (`docs/traffic.md`) for the replay benchmark: EDGES edges over the
//! workloads of a corpus (`gen-corpus`), deterministic. Three in five stay in the source's
//! namespace (a workload to another on one of its container ports), one in five goes to cluster
//! DNS, one in five leaves the cluster (half by name, as the sensor records an address a pod
//! resolved, half a bare address). Counts and times vary; every edge is unique.
//!
//! `cargo run --release -p portcullis-linter --example gen-traffic -- CORPUS_DIR EDGES > traffic.json`

use std::collections::BTreeSet;
use std::io::Write as _;

use portcullis_linter::model::WorkloadId;
use portcullis_linter::project::Project;
use serde_json::{Value, json};

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1) as u64) as usize
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or_else(|| anyhow::anyhow!("usage: gen-traffic CORPUS_DIR EDGES"))?;
    let want: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let mut project = Project::new("default");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "yaml")) {
        project.add_text(&f.to_string_lossy(), std::fs::read_to_string(f)?, true);
    }
    let inv = &project.inventory;
    let ids: Vec<WorkloadId> = (0..inv.workloads.len()).map(WorkloadId).collect();
    anyhow::ensure!(!ids.is_empty(), "no workloads in {dir}");
    let peer = |id: WorkloadId| -> Value {
        let w = inv.workload(id);
        let mut labels = serde_json::to_value(&w.labels).unwrap_or_default();
        labels["pod-template-hash"] = json!("5f6b8c9d7");
        json!({"namespace": w.namespace, "workload": format!("{}/{}", inv.object(w.object).id.kind, w.name), "labels": labels})
    };
    let dns = json!({"namespace": "kube-system", "workload": "Deployment/coredns", "labels": {"k8s-app": "kube-dns"}});
    let mut rng = Rng(0x7ea_ff1c_5eed);
    let mut seen = BTreeSet::new();
    let mut edges = Vec::with_capacity(want);
    let mut tries = 0usize;
    while edges.len() < want && tries < want * 20 {
        tries += 1;
        let from = ids[rng.below(ids.len())];
        let ns = &inv.workload(from).namespace;
        let kind = rng.below(5);
        let (destination, port, protocol) = match kind {
            0..=2 => {
                let local: Vec<WorkloadId> = inv.workloads_in(ns).map(|(id, _)| id).filter(|id| *id != from).collect();
                if local.is_empty() {
                    continue;
                }
                let to = local[rng.below(local.len())];
                let ports = &inv.workload(to).ports;
                let port = ports.get(rng.below(ports.len().max(1))).map_or(8080, |p| p.port);
                (peer(to), port, "TCP")
            }
            3 => (dns.clone(), 53, if rng.below(4) == 0 { "TCP" } else { "UDP" }),
            _ => {
                let n = rng.below(4096);
                let address = format!("203.0.{}.{}", n / 256, n % 256);
                if rng.below(2) == 0 {
                    (json!({"address": address, "name": format!("api{}.example.com", n % 512)}), 443, "TCP")
                } else {
                    (json!({"address": address}), [443, 5432, 6379][rng.below(3)], "TCP")
                }
            }
        };
        let key = format!("{from:?}{destination}{port}{protocol}");
        if !seen.insert(key) {
            continue;
        }
        let day = 12 + rng.below(14);
        edges.push(json!({
            "source": peer(from), "destination": destination, "port": port, "protocol": protocol,
            "firstSeen": format!("2026-11-{day:02}T{:02}:00:00Z", rng.below(24)),
            "lastSeen": "2026-11-25T23:59:00Z",
            "count": 1 + rng.below(50_000),
        }));
    }
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &json!({"version": 1, "edges": edges}))?;
    writeln!(out)?;
    Ok(())
}
