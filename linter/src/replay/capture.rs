//! Edges from what the sensors wrote (`portcullis map --from CAPTURE --format traffic`): the
//! connection starts of `portcullis-sensor --flows` and its DNS observations, from one node or
//! many (their outputs concatenated), folded into a traffic file.
//!
//! - **Who.** An end is the pod some sensor reported at its address (each sensor knows only its
//!   node's pods; the aggregate knows them all), else the bare address.
//! - **Which connection.** A TCP SYN is a connection; a SYN-ACK alone (the client's node has no
//!   sensor) stands for its connection, reversed; a datagram record is one. The same 5-tuple
//!   seen by two nodes (the client's and the server's) within [`SAME_CONNECTION`] is counted
//!   once.
//! - **Which name.** An outside address is labelled with the name the same source pod was last
//!   given it for in a DNS answer before the connection, when the sensor saw one.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use jiff::{SignedDuration, Timestamp};

use super::traffic::{AddressPeer, Edge, HourCount, Peer, TrafficLog, WorkloadPeer};
use crate::egress::map::InputProblem;
use crate::egress::observation::{FlowKind, SensorFlow, SensorObservation, SensorPod};
use crate::model::Protocol;

/// Two reports of one 5-tuple this close together are one connection (two nodes saw it).
pub const SAME_CONNECTION: SignedDuration = SignedDuration::from_secs(5);

/// Most edges an aggregate keeps; records that would add more are counted as problems.
pub const MAX_EDGES: usize = 2_000_000;
/// Most distinct addresses with a pod, and (pod, address) → name pairs, kept.
pub const MAX_ATTRIBUTIONS: usize = 1_000_000;
/// Most problems reported one by one; the rest are counted in one last problem.
pub const MAX_PROBLEMS: usize = 100;

/// A reported connection before attribution.
struct Start {
    ts: Timestamp,
    protocol: Protocol,
    client: SocketAddr,
    server: SocketAddr,
}

fn workload_of(pod: &SensorPod) -> WorkloadPeer {
    WorkloadPeer {
        namespace: pod.namespace.clone(),
        workload: pod.workload.clone().unwrap_or_else(|| format!("Pod/{}", pod.name)),
        labels: pod.labels.clone(),
        namespace_labels: None,
        ports: Vec::new(),
    }
}

/// Folds sensor JSON lines into edges. Lines that are neither records are problems (with their
/// line number); the rest is used.
pub fn traffic_from_records(text: &str) -> (TrafficLog, Vec<InputProblem>) {
    let mut problems = Vec::new();
    let mut pods: HashMap<IpAddr, SensorPod> = HashMap::new();
    // (client address, answer address) → (time, name)
    let mut names: HashMap<(IpAddr, IpAddr), (Timestamp, String)> = HashMap::new();
    let mut starts: Vec<Start> = Vec::new();
    let mut unreadable = 0usize;
    let attribute = |pods: &mut HashMap<IpAddr, SensorPod>, ip: IpAddr, pod: &Option<SensorPod>| {
        if let Some(pod) = pod
            && (pods.len() < MAX_ATTRIBUTIONS || pods.contains_key(&ip))
        {
            pods.insert(ip, pod.clone());
        }
    };
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Ok(f) = serde_json::from_str::<SensorFlow>(line) {
            attribute(&mut pods, f.flow.source.ip, &f.flow.source.pod);
            attribute(&mut pods, f.flow.destination.ip, &f.flow.destination.pod);
            let source = SocketAddr::new(f.flow.source.ip, f.flow.source.port);
            let destination = SocketAddr::new(f.flow.destination.ip, f.flow.destination.port);
            let (client, server) = match f.flow.kind {
                FlowKind::Syn | FlowKind::Datagram => (source, destination),
                FlowKind::SynAck => (destination, source),
            };
            starts.push(Start { ts: f.ts, protocol: f.flow.protocol, client, server });
            continue;
        }
        match serde_json::from_str::<SensorObservation>(line) {
            Ok(o) => {
                attribute(&mut pods, o.client.ip, &o.client.pod);
                let Ok(qname) = crate::egress::parse_fqdn(&o.qname) else { continue };
                for a in &o.answers {
                    let key = (o.client.ip, a.ip);
                    if names.len() < MAX_ATTRIBUTIONS || names.contains_key(&key) {
                        let newer = names.get(&key).is_none_or(|(t, _)| *t <= o.ts);
                        if newer {
                            names.insert(key, (o.ts, qname.clone()));
                        }
                    }
                }
            }
            Err(_) if problems.len() < MAX_PROBLEMS => problems.push(InputProblem {
                line: index + 1,
                message: "neither a sensor observation nor a connection start".to_owned(),
            }),
            Err(_) => unreadable += 1,
        }
    }
    // SYNs before their SYN-ACKs, the earliest first: one connection per 5-tuple and moment.
    starts.sort_by_key(|s| (s.client, s.server, s.protocol, s.ts));
    let mut edges: BTreeMap<(String, String, u16, Protocol), Edge> = BTreeMap::new();
    let mut last: Option<(&Start, Timestamp)> = None;
    let mut dropped = 0usize;
    for s in &starts {
        if let Some((prev, at)) = last
            && (prev.client, prev.server, prev.protocol) == (s.client, s.server, s.protocol)
            && s.ts.duration_since(at) < SAME_CONNECTION
        {
            continue;
        }
        last = Some((s, s.ts));
        let end = |ip: IpAddr, name: Option<String>| match pods.get(&ip) {
            Some(pod) => Peer::Workload(workload_of(pod)),
            None => Peer::Address(AddressPeer { address: ip, name }),
        };
        let name = names.get(&(s.client.ip(), s.server.ip())).filter(|(t, _)| *t <= s.ts).map(|(_, n)| n.clone());
        let source = end(s.client.ip(), None);
        let destination = end(s.server.ip(), name);
        let key = (source.label(), destination.label(), s.server.port(), s.protocol);
        if !edges.contains_key(&key) && edges.len() >= MAX_EDGES {
            dropped += 1;
            continue;
        }
        let hour = s.ts.as_second().div_euclid(3600) * 3600;
        let hour = Timestamp::from_second(hour).unwrap_or(s.ts);
        let edge = edges.entry(key).or_insert_with(|| Edge {
            source,
            destination,
            port: i32::from(s.server.port()),
            protocol: s.protocol,
            first_seen: s.ts,
            last_seen: s.ts,
            count: 0,
            hours: Vec::new(),
        });
        edge.count = edge.count.saturating_add(1);
        edge.first_seen = edge.first_seen.min(s.ts);
        edge.last_seen = edge.last_seen.max(s.ts);
        match edge.hours.iter_mut().find(|h| h.hour == hour) {
            Some(h) => h.count = h.count.saturating_add(1),
            None => edge.hours.push(HourCount { hour, count: 1 }),
        }
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
    let mut edges: Vec<Edge> = edges.into_values().filter(|e| e.port > 0).collect();
    for e in &mut edges {
        e.hours.sort_by_key(|h| h.hour);
    }
    (TrafficLog { edges }, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

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
