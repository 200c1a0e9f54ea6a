//! Edges from what the sensors wrote (`portcullis map --from CAPTURE --format traffic`): the
//! connection starts of `portcullis-sensor --flows` and its DNS observations, from one node or
//! many (their outputs concatenated), folded into a traffic file.
//!
//! - **Who.** An end is the pod some sensor reported at its address (each sensor knows only its
//!   node's pods; the aggregate knows them all), else the bare address.
//! - **Which connection.** A TCP SYN or a datagram that is no reply is one; when both ends'
//!   nodes report it, the source's node counts it (the rules of [`super::history`]).
//! - **Which name.** An outside address is labelled with the name the same source pod was last
//!   given it for in a DNS answer before the connection, when the sensor saw one.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::history::{History, HistoryConfig};
use super::traffic::TrafficLog;
use crate::egress::map::InputProblem;
use crate::egress::observation::{FlowBatch, PodAddress, SensorFlow, SensorObservation, SensorPod};

/// Most edges a fold keeps; connections that would add more are counted as problems.
pub const MAX_EDGES: usize = 2_000_000;
/// Most distinct addresses with a pod, and (pod, address) → name pairs, kept.
pub const MAX_ATTRIBUTIONS: usize = 1_000_000;
/// Most problems reported one by one; the rest are counted in one last problem.
pub const MAX_PROBLEMS: usize = 100;

/// Folds sensor JSON lines into edges, with the aggregator's rules ([`History`]). Lines that
/// are neither records are problems (with their line number); the rest is used.
pub fn traffic_from_records(text: &str) -> (TrafficLog, Vec<InputProblem>) {
    let mut problems = Vec::new();
    let mut unreadable = 0usize;
    let mut batches: BTreeMap<String, FlowBatch> = BTreeMap::new();
    // Per node, address → pod, from every record that named one.
    let mut pods: BTreeMap<String, HashMap<IpAddr, SensorPod>> = BTreeMap::new();
    let mut dns = Vec::new();
    let mut attributions = 0usize;
    let mut attribute = |node: &str, ip: IpAddr, pod: &Option<SensorPod>| {
        if let Some(pod) = pod {
            let known = pods.entry(node.to_owned()).or_default();
            if attributions < MAX_ATTRIBUTIONS || known.contains_key(&ip) {
                attributions += usize::from(known.insert(ip, pod.clone()).is_none());
            }
        }
    };
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Ok(f) = serde_json::from_str::<SensorFlow>(line) {
            attribute(&f.node, f.flow.source.ip, &f.flow.source.pod);
            attribute(&f.node, f.flow.destination.ip, &f.flow.destination.pod);
            batches
                .entry(f.node.clone())
                .or_insert_with(|| FlowBatch {
                    node: f.node.clone(),
                    boot: "capture".to_owned(),
                    seq: 1,
                    pods: Vec::new(),
                    flows: Vec::new(),
                })
                .flows
                .push(f);
            continue;
        }
        match serde_json::from_str::<SensorObservation>(line) {
            Ok(o) => {
                attribute(&o.node, o.client.ip, &o.client.pod);
                dns.push(o);
            }
            Err(_) if problems.len() < MAX_PROBLEMS => problems.push(InputProblem {
                line: index + 1,
                message: "neither a sensor observation nor a connection start".to_owned(),
            }),
            Err(_) => unreadable += 1,
        }
    }
    // A capture is the user's own file: its nodes and names are bounded by the file, not here.
    let config = HistoryConfig {
        max_edges: MAX_EDGES,
        max_addresses: MAX_ATTRIBUTIONS,
        max_names: MAX_ATTRIBUTIONS,
        max_nodes: usize::MAX,
        ..HistoryConfig::default()
    };
    let mut history = History::new(config);
    for o in &dns {
        history.observe_dns(o);
    }
    // Every node's pods before any count: which node counts a connection must not depend on
    // the order the captures were concatenated in.
    for batch in batches.values_mut() {
        let known = pods.remove(&batch.node).unwrap_or_default();
        batch.pods = known.into_iter().map(|(ip, pod)| PodAddress { ip, pod }).collect();
        batch.pods.sort_by_key(|p| p.ip);
        history.set_pods(&batch.node, &batch.pods);
    }
    let mut dropped = 0usize;
    for batch in batches.values() {
        dropped += history.apply(batch).dropped;
    }
    if unreadable > 0 {
        problems.push(InputProblem {
            line: 0,
            message: format!("{unreadable} more line(s) were neither a sensor observation nor a connection start"),
        });
    }
    if dropped > 0 {
        problems.push(InputProblem {
            line: 0,
            message: format!("{dropped} connection(s) over the limit of {MAX_EDGES} edges were left out"),
        });
    }
    (history.log(), problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::Edge;

    fn flow(
        ts: &str,
        node: &str,
        kind: &str,
        src: (&str, u16, Option<&str>),
        dst: (&str, u16, Option<&str>),
    ) -> String {
        let end = |(ip, port, pod): (&str, u16, Option<&str>)| {
            let mut v = serde_json::json!({"ip": ip, "port": port});
            if let Some(w) = pod {
                let (ns, rest) = w.split_once('/').unwrap();
                v["pod"] = serde_json::json!({"namespace": ns, "name": format!("{}-x1", rest.rsplit('/').next().unwrap()), "workload": rest, "labels": {"app": rest.rsplit('/').next().unwrap(), "pod-template-hash": "x1"}});
            }
            v
        };
        serde_json::json!({"ts": ts, "node": node, "flow": {"kind": kind, "protocol": "TCP", "source": end(src), "destination": end(dst)}}).to_string()
    }

    #[test]
    fn starts_fold_into_attributed_named_edges() {
        let dns = r#"{"ts":"2026-11-26T10:00:00Z","node":"n1","client":{"ip":"10.0.1.5","pod":{"namespace":"shop","name":"pay-x1","workload":"Deployment/pay"}},"server":"10.96.0.10","qname":"API.stripe.com.","answers":[{"ip":"203.0.113.7","ttl":60}],"cnames":[]}"#;
        let lines = [
            dns.to_owned(),
            // pay → stripe: a SYN and its SYN-ACK (one connection), then another connection.
            flow(
                "2026-11-26T10:00:01Z",
                "n1",
                "syn",
                ("10.0.1.5", 40000, Some("shop/Deployment/pay")),
                ("203.0.113.7", 443, None),
            ),
            flow(
                "2026-11-26T10:00:01Z",
                "n1",
                "synAck",
                ("203.0.113.7", 443, None),
                ("10.0.1.5", 40000, Some("shop/Deployment/pay")),
            ),
            flow(
                "2026-11-26T11:30:00Z",
                "n1",
                "syn",
                ("10.0.1.5", 40002, Some("shop/Deployment/pay")),
                ("203.0.113.7", 443, None),
            ),
            // pay (node n1) → db (node n2): both nodes saw the SYN, each knows its own pod.
            flow(
                "2026-11-26T10:00:02Z",
                "n1",
                "syn",
                ("10.0.1.5", 40001, Some("shop/Deployment/pay")),
                ("10.0.2.9", 5432, None),
            ),
            flow(
                "2026-11-26T10:00:02Z",
                "n2",
                "syn",
                ("10.0.1.5", 40001, None),
                ("10.0.2.9", 5432, Some("shop/StatefulSet/db")),
            ),
            "garbage".to_owned(),
        ];
        let (log, problems) = traffic_from_records(&lines.join("\n"));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, 7);
        let by: BTreeMap<String, &Edge> = log
            .edges
            .iter()
            .map(|e| (format!("{} -> {}:{}", e.source.label(), e.destination.label(), e.port), e))
            .collect();
        let stripe = by["shop/Deployment/pay -> api.stripe.com (203.0.113.7):443"];
        assert_eq!(stripe.count, 2);
        assert_eq!(stripe.hours.len(), 2);
        let db = by["shop/Deployment/pay -> shop/StatefulSet/db:5432"];
        assert_eq!(db.count, 1, "two nodes' reports of one connection count once");
        assert_eq!(log.edges.len(), 2);
        // It reads back as a traffic file.
        let text = serde_json::json!({"version": 1, "edges": log.edges}).to_string();
        assert_eq!(super::super::traffic::parse(text.as_bytes(), Default::default()).unwrap(), log);
    }

    #[test]
    fn garbage_is_reported_a_bounded_number_of_times() {
        let text = "x\n".repeat(10_000);
        let (log, problems) = traffic_from_records(&text);
        assert!(log.edges.is_empty());
        assert_eq!(problems.len(), MAX_PROBLEMS + 1);
        assert_eq!(
            problems[MAX_PROBLEMS].message,
            "9900 more line(s) were neither a sensor observation nor a connection start"
        );
    }
}
