//! Least-privilege policies from observed traffic (`portcullis map --from TRAFFIC
//! --export-policies`): per namespace a default deny (both directions) and DNS, and per workload
//! exactly the edges it was seen to use, so that replaying the same traffic against them denies
//! nothing (`tests/replay.rs` checks it, and that they lint clean).
//!
//! What is written, per namespace that holds a workload of the traffic (system namespaces
//! excepted, see [`SYSTEM_NAMESPACES`]):
//! - `portcullis-default-deny`: every pod isolated for ingress and egress;
//! - `portcullis-allow-dns`: every pod may reach cluster DNS (as `fix` writes it);
//! - per workload with edges, `portcullis-egress-NAME` and `portcullis-ingress-NAME`: one rule
//!   per peer (a workload by its stable labels and namespace, an address as a /32 or /128) with
//!   the ports seen;
//! - per workload that reached names, one EgressIntent for them, with their ports (addresses
//!   behind names rotate; the controller keeps them fresh).
//!
//! A namespace with a workload whose pods have no stable labels gets nothing (a default deny
//! would cut that workload off, and no rule can select it back); it is reported as skipped.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::PeerOut;
use super::traffic::{AddressPeer, Peer, TrafficLog, WorkloadPeer};
use crate::config::DnsConfig;
use crate::diff::Port;
use crate::egress::map::{VOLATILE_LABELS, sanitize};
use crate::fix::GENERATED_ANNOTATION;
use crate::model::Labels;
use crate::semantics::Direction;

/// Namespaces never locked down from observed traffic: the cluster's own, whose traffic (the
/// API server, nodes, controllers) the sensor does not see whole.
pub const SYSTEM_NAMESPACES: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];

/// What an export writes, and what it left out and why.
#[derive(Debug, Default)]
pub struct PolicyExport {
    pub objects: Vec<Value>,
    pub skipped: Vec<String>,
}

/// A workload's stable labels (without per-revision ones).
fn stable(labels: &Labels) -> Labels {
    labels.iter().filter(|(k, _)| !VOLATILE_LABELS.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Per workload (by key): its namespace, stable labels, and per direction the peers (by their
/// JSON) with ports; the names it reached, with ports.
#[derive(Default)]
struct Subject {
    namespace: String,
    workload: String,
    labels: Labels,
    egress: BTreeMap<String, (PeerOut, BTreeSet<Port>)>,
    ingress: BTreeMap<String, (PeerOut, BTreeSet<Port>)>,
    names: BTreeMap<String, BTreeSet<Port>>,
}

/// The rule peer for the edge's other end, from a policy of `from_namespace`, keyed by its JSON.
fn peer_out(peer: &Peer, from_namespace: &str) -> (String, PeerOut) {
    let out = match peer {
        Peer::Address(AddressPeer { address, .. }) => PeerOut::address(*address),
        Peer::Workload(w) => PeerOut::workload(&w.namespace, &std::sync::Arc::new(stable(&w.labels)), from_namespace),
    };
    (serde_json::to_string(&out).unwrap_or_default(), out)
}

/// Whether the policies' DNS allowance already covers the edge.
fn is_dns(peer: &Peer, port: Port, dns: &DnsConfig) -> bool {
    let Peer::Workload(w) = peer else { return false };
    port.port == crate::semantics::dns::DNS_PORT
        && w.namespace == dns.namespace
        && crate::semantics::selector::labels_match(&dns.pod_labels, &w.labels)
}

fn ports_json(ports: &BTreeSet<Port>) -> Value {
    Value::Array(ports.iter().map(|p| json!({"port": p.port, "protocol": p.protocol.as_str()})).collect())
}

fn policy(namespace: &str, name: &str, what: &str, spec: Value) -> Value {
    let mut policy = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {GENERATED_ANNOTATION: format!("{what}, written by portcullis map --export-policies from observed traffic")},
        },
    });
    // Moved in: `json!` would copy it through serialization.
    policy["spec"] = spec;
    policy
}

/// The policies (and EgressIntents) allowing exactly the log's edges.
pub fn export_policies(log: &TrafficLog, dns: &DnsConfig) -> PolicyExport {
    let mut subjects: BTreeMap<String, Subject> = BTreeMap::new();
    let mut unselectable: BTreeMap<String, Vec<String>> = BTreeMap::new();
    fn subject<'s>(
        subjects: &'s mut BTreeMap<String, Subject>,
        unselectable: &mut BTreeMap<String, Vec<String>>,
        w: &WorkloadPeer,
    ) -> Option<&'s mut Subject> {
        let labels = stable(&w.labels);
        if labels.is_empty() {
            unselectable.entry(w.namespace.clone()).or_default().push(w.key());
            return None;
        }
        Some(subjects.entry(w.key()).or_insert_with(|| Subject {
            namespace: w.namespace.clone(),
            workload: w.workload.clone(),
            labels,
            ..Subject::default()
        }))
    }
    for e in &log.edges {
        let port = Port { port: e.port, protocol: e.protocol };
        if let Peer::Workload(source) = &e.source
            && let Some(s) = subject(&mut subjects, &mut unselectable, source)
            && !is_dns(&e.destination, port, dns)
        {
            match &e.destination {
                Peer::Address(AddressPeer { name: Some(name), .. }) => {
                    s.names.entry(name.clone()).or_default().insert(port);
                }
                other => {
                    let (key, peer) = peer_out(other, &s.namespace);
                    s.egress.entry(key).or_insert_with(|| (peer, BTreeSet::new())).1.insert(port);
                }
            }
        }
        if let Peer::Workload(destination) = &e.destination
            && let Some(s) = subject(&mut subjects, &mut unselectable, destination)
        {
            let (key, peer) = peer_out(&e.source, &s.namespace);
            s.ingress.entry(key).or_insert_with(|| (peer, BTreeSet::new())).1.insert(port);
        }
    }
    let mut export = PolicyExport::default();
    let namespaces: BTreeSet<&str> = subjects.values().map(|s| s.namespace.as_str()).collect();
    for ns in namespaces {
        if SYSTEM_NAMESPACES.contains(&ns) {
            export.skipped.push(format!("{ns}: a system namespace is not locked down from observed traffic"));
            continue;
        }
        if let Some(workloads) = unselectable.get(ns) {
            export.skipped.push(format!(
                "{ns}: {} has no stable labels to select its pods by, and a default deny would cut it off",
                workloads.join(", ")
            ));
            continue;
        }
        export.objects.push(policy(
            ns,
            "portcullis-default-deny",
            "default deny",
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        ));
        export.objects.push(policy(
            ns,
            "portcullis-allow-dns",
            "DNS allowance",
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [crate::fix::dns_egress_rule(dns)]}),
        ));
        for s in subjects.values().filter(|s| s.namespace == ns) {
            let (_, short) = s.workload.split_once('/').unwrap_or(("", &s.workload));
            let short = sanitize(short);
            for (direction, rules) in [(Direction::Egress, &s.egress), (Direction::Ingress, &s.ingress)] {
                if rules.is_empty() {
                    continue;
                }
                let (key, kind) = match direction {
                    Direction::Egress => ("egress", "Egress"),
                    Direction::Ingress => ("ingress", "Ingress"),
                };
                let rules = super::rule_values(
                    direction,
                    rules.values().map(|(peer, ports)| (peer.clone(), ports.iter().copied().collect())),
                );
                let mut spec = json!({"podSelector": {"matchLabels": s.labels}, "policyTypes": [kind]});
                spec[key] = serde_json::to_value(rules).unwrap_or_default();
                export.objects.push(policy(
                    ns,
                    &format!("portcullis-{key}-{short}"),
                    &format!("{key} observed for {}", s.workload),
                    spec,
                ));
            }
            if !s.names.is_empty() {
                let egress: Vec<Value> =
                    s.names.iter().map(|(name, ports)| json!({"fqdn": name, "ports": ports_json(ports)})).collect();
                export.objects.push(json!({
                    "apiVersion": crate::egress::API_VERSION,
                    "kind": "EgressIntent",
                    "metadata": {
                        "name": format!("{short}-egress"),
                        "namespace": ns,
                        "annotations": {GENERATED_ANNOTATION: format!("names observed for {}, written by portcullis map --export-policies", s.workload)},
                    },
                    "spec": {"podSelector": {"matchLabels": s.labels}, "egress": egress},
                }));
            }
        }
    }
    export
}
