//! The traffic history: sensors' connection starts folded into edges, one part per reporting
//! node, bounded, with hourly counts that age into daily ones and out of the window. The
//! webhook's aggregator keeps one ([`History::apply`] for each `POST /v1/flows`, persisted one
//! object per node); `portcullis map --format traffic` folds a capture with the same rules
//! (`capture.rs`), so offline and in-cluster histories count alike.
//!
//! Pure: no clock (`now` is an argument), no I/O.
//!
//! **Which report counts a connection.** Both ends' nodes see a connection between two pods.
//! A TCP SYN or a first datagram counts on the node of its source pod; the destination's node
//! leaves it to that node when the source address is a pod some sensor reported (every batch
//! lists its node's pods), and counts it when the client is no such pod (outside the cluster,
//! or on a node without a sensor). A SYN-ACK never counts (its SYN did). A datagram whose
//! reverse 5-tuple was seen within [`REPLY_WINDOW`] is a reply and does not count.
//!
//! **Which name.** An outside destination is labelled with the name the same source pod was
//! last given the address for in a DNS answer before the connection ([`History::observe_dns`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use jiff::{SignedDuration, Timestamp};

use super::traffic::{AddressPeer, Edge, HourCount, Peer, TrafficLog, WorkloadPeer};
use crate::egress::observation::{FlowBatch, FlowKind, PodAddress, SensorObservation, SensorPod};
use crate::model::Protocol;

/// A datagram whose reverse 5-tuple was seen this close is a reply.
pub const REPLY_WINDOW: SignedDuration = SignedDuration::from_secs(120);
/// 5-tuples remembered for [`REPLY_WINDOW`] at most.
const MAX_RECENT: usize = 262_144;

/// How much history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Counts older than this are forgotten (default 14 days).
    pub window: SignedDuration,
    /// Counts older than this are kept per day instead of per hour (default 48 hours).
    pub hourly: SignedDuration,
    /// Most edges, over all nodes; connections that would add more are dropped and counted.
    pub max_edges: usize,
    /// Most pod addresses remembered.
    pub max_addresses: usize,
    /// Most (pod, address) → name pairs remembered; when full, those older than an hour before
    /// the newest go (a pod that resolves millions of names cannot fill it for good).
    pub max_names: usize,
    /// Most reporting nodes (a holder of the sensor's token could name any number of them);
    /// a batch of a node beyond it is refused.
    pub max_nodes: usize,
}

impl Default for HistoryConfig {
    fn default() -> HistoryConfig {
        HistoryConfig {
            window: SignedDuration::from_hours(14 * 24),
            hourly: SignedDuration::from_hours(48),
            max_edges: 200_000,
            max_addresses: 1_000_000,
            max_names: 100_000,
            max_nodes: 10_000,
        }
    }
}

/// One node's part, as it is persisted: the last batch counted and the edges it reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeHistory {
    pub node: String,
    pub boot: String,
    pub seq: u64,
    pub pods: Vec<PodAddress>,
    pub log: TrafficLog,
}

/// What [`History::apply`] did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// The batch was counted before (same boot, `seq` not newer): nothing changed.
    pub duplicate: bool,
    /// Connections counted.
    pub counted: usize,
    /// Reports left to another node's count, SYN-ACKs and replies.
    pub skipped: usize,
    /// Connections not kept: the edge limit was reached.
    pub dropped: usize,
    /// The batch's node is new and the node limit is reached: nothing was counted.
    pub refused: bool,
}

/// What [`History::compact`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Compacted {
    /// Edges whose every count left the window.
    pub expired: usize,
}

type EdgeKey = (u32, u32, u16, Protocol);

/// An edge in memory: its ends are indices into the peer table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    first_seen: Timestamp,
    last_seen: Timestamp,
    count: u64,
    /// (hour since the epoch, count), ascending; daily buckets sit at their day's last hour.
    hours: Buckets,
}

#[derive(Debug, Clone, Default)]
struct Part {
    boot: String,
    seq: u64,
    pods: Vec<PodAddress>,
    edges: HashMap<EdgeKey, Entry>,
}

/// The history of every node.
#[derive(Debug, Default)]
pub struct History {
    config: HistoryConfig,
    parts: BTreeMap<String, Part>,
    /// Peers by label (the newest labels win: a rollout changes `pod-template-hash`, not the edge).
    peers: Vec<Peer>,
    peer_ids: HashMap<String, u32>,
    edges: usize,
    /// Pod address → (node, pod), from every node's batches.
    addresses: HashMap<IpAddr, (String, SensorPod)>,
    /// (client address, answer address) → (time, name).
    names: HashMap<(IpAddr, IpAddr), (Timestamp, String)>,
    /// Recent 5-tuples and when they were reported, for replies.
    recent: HashMap<(Protocol, SocketAddr, SocketAddr), Timestamp>,
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

/// Hours since the epoch (0 before it).
fn hour_of(ts: Timestamp) -> u32 {
    u32::try_from(ts.as_second().div_euclid(3600)).unwrap_or(0)
}

fn hour_start(hour: u32) -> Timestamp {
    Timestamp::from_second(i64::from(hour) * 3600).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn narrow(count: u64) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// Counts per hour, ascending, packed: each bucket is its hour's distance from the previous
/// bucket and its count, as LEB128 varints (two to four bytes a bucket where pairs of `u32`
/// took eight: 60 buckets of 100,000 edges in 17 MB, not 48). Counts arrive in time order, so
/// adding touches only the last bucket; an older hour rebuilds the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Buckets {
    bytes: Vec<u8>,
    /// The last bucket's hour and where it starts in `bytes`.
    last_hour: u32,
    last_at: u32,
}

fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], at: &mut usize) -> u32 {
    let mut v = 0u32;
    let mut shift = 0;
    while let Some(&b) = bytes.get(*at) {
        *at += 1;
        v |= u32::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    v
}

impl Buckets {
    fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let mut at = 0;
        let mut hour = 0u32;
        std::iter::from_fn(move || {
            if at >= self.bytes.len() {
                return None;
            }
            hour = hour.saturating_add(get_varint(&self.bytes, &mut at));
            Some((hour, get_varint(&self.bytes, &mut at)))
        })
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// From buckets in ascending hour order.
    fn from_sorted(buckets: impl IntoIterator<Item = (u32, u32)>) -> Buckets {
        let mut out = Buckets::default();
        for (hour, count) in buckets {
            out.push(hour, count);
        }
        out.bytes.shrink_to_fit();
        out
    }

    /// Appends a bucket after the last one (`hour` later than it).
    fn push(&mut self, hour: u32, count: u32) {
        let previous = if self.bytes.is_empty() { 0 } else { self.last_hour };
        self.last_at = u32::try_from(self.bytes.len()).unwrap_or(u32::MAX);
        self.last_hour = hour;
        put_varint(&mut self.bytes, hour - previous);
        put_varint(&mut self.bytes, count);
    }

    fn add(&mut self, hour: u32, count: u64) {
        let count = narrow(count);
        if self.bytes.is_empty() || hour > self.last_hour {
            self.push(hour, count);
        } else if hour == self.last_hour {
            let mut at = self.last_at as usize;
            let delta = get_varint(&self.bytes, &mut at);
            let sum = get_varint(&self.bytes, &mut at).saturating_add(count);
            self.bytes.truncate(self.last_at as usize);
            put_varint(&mut self.bytes, delta);
            put_varint(&mut self.bytes, sum);
        } else {
            let mut all: Vec<(u32, u32)> = self.iter().collect();
            match all.binary_search_by_key(&hour, |(h, _)| *h) {
                Ok(i) => all[i].1 = all[i].1.saturating_add(count),
                Err(i) => all.insert(i, (hour, count)),
            }
            *self = Buckets::from_sorted(all);
        }
    }
}

fn add_count(hours: &mut Buckets, hour: u32, count: u64) {
    hours.add(hour, count);
}

impl History {
    pub fn new(config: HistoryConfig) -> History {
        History { config, ..History::default() }
    }

    pub fn config(&self) -> HistoryConfig {
        self.config
    }

    /// Edges kept, over all nodes.
    pub fn edge_count(&self) -> usize {
        self.edges
    }

    /// Nodes with a part.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.parts.keys().map(String::as_str)
    }

    /// The last batch counted for `node`: (boot, seq).
    pub fn position(&self, node: &str) -> Option<(&str, u64)> {
        self.parts.get(node).map(|p| (p.boot.as_str(), p.seq))
    }

    /// Whether `batch` was counted already.
    pub fn is_duplicate(&self, batch: &FlowBatch) -> bool {
        self.parts.get(&batch.node).is_some_and(|p| p.boot == batch.boot && batch.seq <= p.seq)
    }

    fn peer_id(&mut self, peer: Peer) -> u32 {
        let label = peer.label();
        if let Some(id) = self.peer_ids.get(&label) {
            // The newest description wins (labels change with rollouts).
            self.peers[*id as usize] = peer;
            return *id;
        }
        let id = u32::try_from(self.peers.len()).unwrap_or(u32::MAX);
        self.peers.push(peer);
        self.peer_ids.insert(label, id);
        id
    }

    fn remember_address(&mut self, ip: IpAddr, node: &str, pod: &SensorPod) {
        if self.addresses.len() < self.config.max_addresses || self.addresses.contains_key(&ip) {
            self.addresses.insert(ip, (node.to_owned(), pod.clone()));
        }
    }

    /// Replaces `node`'s pod addresses with `pods` (a batch does this too; a fold of a capture
    /// tells every node's pods first, so the order of the nodes' reports does not matter).
    pub fn set_pods(&mut self, node: &str, pods: &[PodAddress]) {
        self.addresses.retain(|_, (n, _)| n != node);
        for p in pods {
            self.remember_address(p.ip, node, &p.pod);
        }
    }

    /// Remembers the names a pod was given addresses for (DNS observations).
    pub fn observe_dns(&mut self, observation: &SensorObservation) {
        let Ok(qname) = crate::egress::parse_fqdn(&observation.qname) else { return };
        for a in &observation.answers {
            let key = (observation.client.ip, a.ip);
            if self.names.len() >= self.config.max_names && !self.names.contains_key(&key) {
                let newest = self.names.values().map(|(t, _)| *t).max().unwrap_or(observation.ts);
                let horizon = newest.checked_sub(SignedDuration::from_hours(1)).unwrap_or(newest);
                self.names.retain(|_, (t, _)| *t >= horizon);
                if self.names.len() >= self.config.max_names {
                    continue;
                }
            }
            if self.names.get(&key).is_none_or(|(t, _)| *t <= observation.ts) {
                self.names.insert(key, (observation.ts, qname.clone()));
            }
        }
    }

    /// Whether the reverse of this 5-tuple was reported within [`REPLY_WINDOW`]; remembers it.
    fn is_reply(&mut self, protocol: Protocol, client: SocketAddr, server: SocketAddr, ts: Timestamp) -> bool {
        let near = |t: &Timestamp| ts.duration_since(*t).abs() <= REPLY_WINDOW;
        let reply = self.recent.get(&(protocol, server, client)).is_some_and(near);
        if self.recent.len() >= MAX_RECENT {
            self.recent.retain(|_, t| near(t));
            if self.recent.len() >= MAX_RECENT {
                self.recent.clear();
            }
        }
        self.recent.insert((protocol, client, server), ts);
        reply
    }

    /// Counts a validated batch (`FlowBatch::validate`) into its node's part.
    pub fn apply(&mut self, batch: &FlowBatch) -> Applied {
        if self.is_duplicate(batch) {
            return Applied { duplicate: true, ..Applied::default() };
        }
        if !self.parts.contains_key(&batch.node) && self.parts.len() >= self.config.max_nodes {
            return Applied { refused: true, ..Applied::default() };
        }
        let mut applied = Applied::default();
        self.set_pods(&batch.node, &batch.pods);
        for f in &batch.flows {
            for end in [&f.flow.source, &f.flow.destination] {
                if let Some(pod) = &end.pod {
                    self.remember_address(end.ip, &batch.node, pod);
                }
            }
        }
        let mut flows: Vec<_> = batch.flows.iter().collect();
        flows.sort_by_key(|f| f.ts);
        let part = self.parts.entry(batch.node.clone()).or_default();
        part.boot.clone_from(&batch.boot);
        part.seq = batch.seq;
        part.pods.clone_from(&batch.pods);
        for f in flows {
            let (source, destination) = (&f.flow.source, &f.flow.destination);
            let client = SocketAddr::new(source.ip, source.port);
            let server = SocketAddr::new(destination.ip, destination.port);
            if f.flow.kind == FlowKind::SynAck
                || (f.flow.kind == FlowKind::Datagram && self.is_reply(f.flow.protocol, client, server, f.ts))
                || destination.port == 0
            {
                applied.skipped += 1;
                continue;
            }
            if f.flow.kind == FlowKind::Syn {
                self.is_reply(f.flow.protocol, client, server, f.ts);
            }
            // The source's node counts a connection between two sensor nodes' pods.
            if source.pod.is_none() && self.addresses.get(&source.ip).is_some_and(|(node, _)| *node != batch.node) {
                applied.skipped += 1;
                continue;
            }
            let source_peer = match source.pod.as_ref().or_else(|| self.addresses.get(&source.ip).map(|(_, p)| p)) {
                Some(pod) => Peer::Workload(workload_of(pod)),
                None => Peer::Address(AddressPeer { address: source.ip, name: None }),
            };
            let destination_peer =
                match destination.pod.as_ref().or_else(|| self.addresses.get(&destination.ip).map(|(_, p)| p)) {
                    Some(pod) => Peer::Workload(workload_of(pod)),
                    None => {
                        let name = self
                            .names
                            .get(&(source.ip, destination.ip))
                            .filter(|(t, _)| *t <= f.ts)
                            .map(|(_, n)| n.clone());
                        Peer::Address(AddressPeer { address: destination.ip, name })
                    }
                };
            if self.record(&batch.node, source_peer, destination_peer, destination.port, f.flow.protocol, f.ts, 1) {
                applied.counted += 1;
            } else {
                applied.dropped += 1;
            }
        }
        applied
    }

    /// Adds `count` connections at `ts` to an edge of `node`; false when the edge limit refused
    /// a new edge.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        node: &str,
        source: Peer,
        destination: Peer,
        port: u16,
        protocol: Protocol,
        ts: Timestamp,
        count: u64,
    ) -> bool {
        let key = (self.peer_id(source), self.peer_id(destination), port, protocol);
        let full = self.edges >= self.config.max_edges;
        let part = self.parts.entry(node.to_owned()).or_default();
        let entry = match part.edges.get_mut(&key) {
            Some(entry) => entry,
            None if full => return false,
            None => {
                self.edges += 1;
                part.edges.entry(key).or_insert(Entry {
                    first_seen: ts,
                    last_seen: ts,
                    count: 0,
                    hours: Buckets::default(),
                })
            }
        };
        entry.first_seen = entry.first_seen.min(ts);
        entry.last_seen = entry.last_seen.max(ts);
        entry.count = entry.count.saturating_add(count);
        add_count(&mut entry.hours, hour_of(ts), count);
        true
    }

    /// Ages counts at `now`: hours of UTC days that ended more than `hourly` ago merge into one
    /// bucket per day (at the day's last hour, so `--since` counts a day whole when any of it
    /// is in the window); buckets older than `window` are forgotten, and edges left with none.
    pub fn compact(&mut self, now: Timestamp) -> Compacted {
        // Whole days only, so a day's bucket never lands among hourly ones.
        let hourly_from = hour_of(now.checked_sub(self.config.hourly).unwrap_or(now)).div_euclid(24) * 24;
        let keep_from = hour_of(now.checked_sub(self.config.window).unwrap_or(now));
        let mut expired = 0;
        for part in self.parts.values_mut() {
            part.edges.retain(|_, e| {
                let before: Vec<(u32, u32)> = e.hours.iter().collect();
                let mut aged: Vec<(u32, u32)> = Vec::with_capacity(before.len());
                for &(hour, count) in &before {
                    let bucket = if hour < hourly_from { hour.div_euclid(24) * 24 + 23 } else { hour };
                    if bucket < keep_from {
                        continue;
                    }
                    match aged.last_mut() {
                        Some((h, c)) if *h == bucket => *c = c.saturating_add(count),
                        _ => aged.push((bucket, count)),
                    }
                }
                if aged != before {
                    e.count = aged.iter().map(|(_, c)| u64::from(*c)).fold(0, u64::saturating_add);
                    if let Some(&(first, _)) = aged.first() {
                        let start = if first < hourly_from { first.saturating_sub(23) } else { first };
                        e.first_seen = e.first_seen.max(hour_start(start.max(keep_from)));
                    }
                    e.hours = Buckets::from_sorted(aged);
                }
                let keep = !e.hours.is_empty();
                expired += usize::from(!keep);
                keep
            });
        }
        self.edges -= expired;
        self.parts.retain(|_, p| !p.edges.is_empty() || !p.pods.is_empty() || p.seq > 0);
        self.collect_peers();
        Compacted { expired }
    }

    /// Forgets peers no edge names any more, renumbering the rest.
    fn collect_peers(&mut self) {
        let used: HashSet<u32> = self.parts.values().flat_map(|p| p.edges.keys().flat_map(|k| [k.0, k.1])).collect();
        if used.len() == self.peers.len() {
            return;
        }
        let mut renumber = HashMap::with_capacity(used.len());
        let mut peers = Vec::with_capacity(used.len());
        for (old, peer) in std::mem::take(&mut self.peers).into_iter().enumerate() {
            let old = u32::try_from(old).unwrap_or(u32::MAX);
            if used.contains(&old) {
                renumber.insert(old, u32::try_from(peers.len()).unwrap_or(u32::MAX));
                peers.push(peer);
            }
        }
        self.peer_ids = peers.iter().enumerate().map(|(i, p)| (p.label(), u32::try_from(i).unwrap_or(0))).collect();
        self.peers = peers;
        for part in self.parts.values_mut() {
            part.edges = std::mem::take(&mut part.edges)
                .into_iter()
                .map(|((s, d, port, proto), e)| ((renumber[&s], renumber[&d], port, proto), e))
                .collect();
        }
    }

    /// Forgets the `n` edges of `node` seen least recently (to fit a size limit); returns how
    /// many went.
    pub fn evict_oldest(&mut self, node: &str, n: usize) -> usize {
        let Some(part) = self.parts.get_mut(node) else { return 0 };
        let mut by_age: Vec<(Timestamp, EdgeKey)> = part.edges.iter().map(|(k, e)| (e.last_seen, *k)).collect();
        by_age.sort();
        let gone = n.min(by_age.len());
        for (_, key) in by_age.into_iter().take(gone) {
            part.edges.remove(&key);
        }
        self.edges -= gone;
        gone
    }

    fn to_edge(&self, key: &EdgeKey, e: &Entry) -> Edge {
        Edge {
            source: self.peers[key.0 as usize].clone(),
            destination: self.peers[key.1 as usize].clone(),
            port: i32::from(key.2),
            protocol: key.3,
            first_seen: e.first_seen,
            last_seen: e.last_seen,
            count: e.count,
            hours: e.hours.iter().map(|(h, c)| HourCount { hour: hour_start(h), count: u64::from(c) }).collect(),
        }
    }

    /// `node`'s part, to persist.
    pub fn node(&self, node: &str) -> Option<NodeHistory> {
        let part = self.parts.get(node)?;
        let mut edges: Vec<Edge> = part.edges.iter().map(|(k, e)| self.to_edge(k, e)).collect();
        sort_edges(&mut edges);
        Some(NodeHistory {
            node: node.to_owned(),
            boot: part.boot.clone(),
            seq: part.seq,
            pods: part.pods.clone(),
            log: TrafficLog { edges },
        })
    }

    /// Takes back a persisted part (at start, or after a write conflict), replacing what this
    /// history held for that node.
    pub fn restore(&mut self, stored: NodeHistory) {
        if let Some(old) = self.parts.remove(&stored.node) {
            self.edges -= old.edges.len();
        }
        self.set_pods(&stored.node, &stored.pods);
        self.parts.insert(
            stored.node.clone(),
            Part { boot: stored.boot, seq: stored.seq, pods: stored.pods, edges: HashMap::new() },
        );
        for e in stored.log.edges {
            let Ok(port) = u16::try_from(e.port) else { continue };
            let key = (self.peer_id(e.source), self.peer_id(e.destination), port, e.protocol);
            let mut hours = Buckets::default();
            if e.hours.is_empty() {
                add_count(&mut hours, hour_of(e.last_seen), e.count);
            }
            for h in &e.hours {
                add_count(&mut hours, hour_of(h.hour), h.count);
            }
            hours.bytes.shrink_to_fit();
            let entry = Entry { first_seen: e.first_seen, last_seen: e.last_seen, count: e.count, hours };
            if let Some(part) = self.parts.get_mut(&stored.node)
                && part.edges.insert(key, entry).is_none()
            {
                self.edges += 1;
            }
        }
    }

    /// Every node's edges merged into one traffic log (the same edge reported by several
    /// nodes adds up), sorted.
    pub fn log(&self) -> TrafficLog {
        merge(self.parts.keys().filter_map(|n| self.node(n)).map(|n| n.log))
    }
}

/// Traffic logs merged: the same (source, destination, port, protocol) adds up.
pub fn merge(logs: impl IntoIterator<Item = TrafficLog>) -> TrafficLog {
    let mut by_key: BTreeMap<(String, String, i32, Protocol), Edge> = BTreeMap::new();
    for log in logs {
        for e in log.edges {
            let key = (e.source.label(), e.destination.label(), e.port, e.protocol);
            match by_key.get_mut(&key) {
                None => {
                    by_key.insert(key, e);
                }
                Some(m) => {
                    m.count = m.count.saturating_add(e.count);
                    m.first_seen = m.first_seen.min(e.first_seen);
                    if e.last_seen > m.last_seen {
                        m.last_seen = e.last_seen;
                        m.source = e.source;
                        m.destination = e.destination;
                    }
                    for h in e.hours {
                        match m.hours.binary_search_by_key(&h.hour, |x| x.hour) {
                            Ok(i) => m.hours[i].count = m.hours[i].count.saturating_add(h.count),
                            Err(i) => m.hours.insert(i, h),
                        }
                    }
                }
            }
        }
    }
    TrafficLog { edges: by_key.into_values().collect() }
}

fn sort_edges(edges: &mut [Edge]) {
    edges.sort_by_cached_key(|e| (e.source.label(), e.destination.label(), e.port, e.protocol));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::observation::{FlowEnd, FlowStart, SensorFlow};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn pod(ns: &str, workload: &str, hash: &str) -> SensorPod {
        let app = workload.rsplit('/').next().unwrap();
        SensorPod {
            namespace: ns.to_owned(),
            name: format!("{app}-{hash}"),
            workload: Some(workload.to_owned()),
            labels: [("app".to_owned(), app.to_owned()), ("pod-template-hash".to_owned(), hash.to_owned())]
                .into_iter()
                .collect(),
        }
    }

    fn end(ip: &str, port: u16, pod: Option<&SensorPod>) -> FlowEnd {
        FlowEnd { ip: ip.parse().unwrap(), port, pod: pod.cloned() }
    }

    fn flow(
        at: &str,
        node: &str,
        kind: FlowKind,
        protocol: Protocol,
        source: FlowEnd,
        destination: FlowEnd,
    ) -> SensorFlow {
        SensorFlow { ts: ts(at), node: node.to_owned(), flow: FlowStart { kind, protocol, source, destination } }
    }

    fn syn(at: &str, node: &str, source: FlowEnd, destination: FlowEnd) -> SensorFlow {
        flow(at, node, FlowKind::Syn, Protocol::Tcp, source, destination)
    }

    fn syn_ack(at: &str, node: &str, source: FlowEnd, destination: FlowEnd) -> SensorFlow {
        flow(at, node, FlowKind::SynAck, Protocol::Tcp, source, destination)
    }

    fn datagram(at: &str, node: &str, source: FlowEnd, destination: FlowEnd) -> SensorFlow {
        flow(at, node, FlowKind::Datagram, Protocol::Udp, source, destination)
    }

    fn batch(node: &str, seq: u64, pods: &[(&str, &SensorPod)], flows: Vec<SensorFlow>) -> FlowBatch {
        FlowBatch {
            node: node.to_owned(),
            boot: "b1".to_owned(),
            seq,
            pods: pods.iter().map(|(ip, p)| PodAddress { ip: ip.parse().unwrap(), pod: (*p).clone() }).collect(),
            flows,
        }
    }

    fn edges(h: &History) -> Vec<(String, u64)> {
        h.log()
            .edges
            .iter()
            .map(|e| {
                (
                    format!("{} -> {}:{}/{}", e.source.label(), e.destination.label(), e.port, e.protocol.as_str()),
                    e.count,
                )
            })
            .collect()
    }

    #[test]
    fn packed_buckets_hold_what_a_map_holds() {
        // A little xorshift: hours in and out of order, counts small and at the varint edges.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..200 {
            let mut packed = Buckets::default();
            let mut model: BTreeMap<u32, u32> = BTreeMap::new();
            for _ in 0..(x % 90) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let hour = 490_000 + (x % 400) as u32;
                let count = [1, 127, 128, 16_383, 16_384, u32::MAX][(x >> 20) as usize % 6];
                packed.add(hour, u64::from(count));
                let slot = model.entry(hour).or_default();
                *slot = slot.saturating_add(count);
            }
            assert_eq!(packed.iter().collect::<Vec<_>>(), model.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_connection_both_nodes_saw_counts_once_on_the_source_node() {
        let (pay, db) = (pod("shop", "Deployment/pay", "a1"), pod("shop", "StatefulSet/db", "b2"));
        let mut h = History::default();
        h.apply(&batch("n1", 1, &[("10.0.1.5", &pay)], vec![]));
        // n2 saw the SYN arrive at its db pod: the client is n1's pod, so n1 counts it.
        let a = h.apply(&batch(
            "n2",
            1,
            &[("10.0.2.9", &db)],
            vec![syn("2026-11-26T10:00:00Z", "n2", end("10.0.1.5", 40000, None), end("10.0.2.9", 5432, Some(&db)))],
        ));
        assert_eq!((a.counted, a.skipped), (0, 1));
        // n1 saw it leave; the destination is attributed from n2's pods.
        let a = h.apply(&batch(
            "n1",
            2,
            &[("10.0.1.5", &pay)],
            vec![flow(
                "2026-11-26T10:00:00Z",
                "n1",
                FlowKind::Syn,
                Protocol::Tcp,
                end("10.0.1.5", 40000, Some(&pay)),
                end("10.0.2.9", 5432, None),
            )],
        ));
        assert_eq!((a.counted, a.skipped), (1, 0));
        assert_eq!(edges(&h), [("shop/Deployment/pay -> shop/StatefulSet/db:5432/TCP".to_owned(), 1)]);
    }

    #[test]
    fn a_client_no_sensor_knows_counts_on_the_server_node() {
        let db = pod("shop", "StatefulSet/db", "b2");
        let mut h = History::default();
        h.apply(&batch(
            "n2",
            1,
            &[("10.0.2.9", &db)],
            vec![syn("2026-11-26T10:00:00Z", "n2", end("198.51.100.7", 40000, None), end("10.0.2.9", 5432, Some(&db)))],
        ));
        assert_eq!(edges(&h), [("198.51.100.7 -> shop/StatefulSet/db:5432/TCP".to_owned(), 1)]);
    }

    #[test]
    fn syn_acks_and_replies_do_not_count() {
        let pay = pod("shop", "Deployment/pay", "a1");
        let mut h = History::default();
        let a = h.apply(&batch(
            "n1",
            1,
            &[("10.0.1.5", &pay)],
            vec![
                flow(
                    "2026-11-26T10:00:00Z",
                    "n1",
                    FlowKind::Datagram,
                    Protocol::Udp,
                    end("10.0.1.5", 40000, Some(&pay)),
                    end("10.96.0.10", 53, None),
                ),
                datagram("2026-11-26T10:00:00Z", "n1", end("10.96.0.10", 53, None), end("10.0.1.5", 40000, Some(&pay))),
                flow(
                    "2026-11-26T10:00:01Z",
                    "n1",
                    FlowKind::Syn,
                    Protocol::Tcp,
                    end("10.0.1.5", 40001, Some(&pay)),
                    end("203.0.113.7", 443, None),
                ),
                syn_ack(
                    "2026-11-26T10:00:01Z",
                    "n1",
                    end("203.0.113.7", 443, None),
                    end("10.0.1.5", 40001, Some(&pay)),
                ),
            ],
        ));
        assert_eq!((a.counted, a.skipped), (2, 2));
        assert_eq!(
            edges(&h),
            [
                ("shop/Deployment/pay -> 10.96.0.10:53/UDP".to_owned(), 1),
                ("shop/Deployment/pay -> 203.0.113.7:443/TCP".to_owned(), 1),
            ]
        );
    }

    #[test]
    fn a_batch_sent_again_counts_once_and_a_new_boot_starts_over() {
        let pay = pod("shop", "Deployment/pay", "a1");
        let syn = |at| {
            flow(
                at,
                "n1",
                FlowKind::Syn,
                Protocol::Tcp,
                end("10.0.1.5", 40000, Some(&pay)),
                end("203.0.113.7", 443, None),
            )
        };
        let mut h = History::default();
        let first = batch("n1", 1, &[], vec![syn("2026-11-26T10:00:00Z")]);
        assert_eq!(h.apply(&first).counted, 1);
        assert!(h.apply(&first).duplicate);
        assert_eq!(edges(&h)[0].1, 1);
        let mut rebooted = batch("n1", 1, &[], vec![syn("2026-11-26T10:05:00Z")]);
        rebooted.boot = "b2".to_owned();
        assert!(!h.is_duplicate(&rebooted));
        assert_eq!(h.apply(&rebooted).counted, 1);
        assert_eq!(edges(&h)[0].1, 2);
        assert_eq!(h.position("n1"), Some(("b2", 1)));
    }

    #[test]
    fn outside_destinations_carry_the_name_the_pod_resolved() {
        let pay = pod("shop", "Deployment/pay", "a1");
        let mut h = History::default();
        let dns: SensorObservation = serde_json::from_str(r#"{"ts":"2026-11-26T09:59:59Z","node":"n1","client":{"ip":"10.0.1.5"},"server":"10.96.0.10","qname":"API.stripe.com.","answers":[{"ip":"203.0.113.7","ttl":60}]}"#).unwrap();
        h.observe_dns(&dns);
        h.apply(&batch(
            "n1",
            1,
            &[],
            vec![
                flow(
                    "2026-11-26T10:00:00Z",
                    "n1",
                    FlowKind::Syn,
                    Protocol::Tcp,
                    end("10.0.1.5", 40000, Some(&pay)),
                    end("203.0.113.7", 443, None),
                ),
                // Resolved after this connection: no name.
                flow(
                    "2026-11-26T09:00:00Z",
                    "n1",
                    FlowKind::Syn,
                    Protocol::Tcp,
                    end("10.0.1.5", 40001, Some(&pay)),
                    end("203.0.113.7", 8443, None),
                ),
            ],
        ));
        assert_eq!(
            edges(&h),
            [
                ("shop/Deployment/pay -> 203.0.113.7:8443/TCP".to_owned(), 1),
                ("shop/Deployment/pay -> api.stripe.com (203.0.113.7):443/TCP".to_owned(), 1),
            ]
        );
    }

    #[test]
    fn a_rollout_keeps_the_edge_and_takes_the_new_labels() {
        let (old, new) = (pod("shop", "Deployment/pay", "a1"), pod("shop", "Deployment/pay", "c3"));
        let mut h = History::default();
        for (seq, (ip, p)) in [("10.0.1.5", &old), ("10.0.1.6", &new)].into_iter().enumerate() {
            h.apply(&batch(
                "n1",
                seq as u64 + 1,
                &[],
                vec![flow(
                    &format!("2026-11-26T1{seq}:00:00Z"),
                    "n1",
                    FlowKind::Syn,
                    Protocol::Tcp,
                    end(ip, 40000, Some(p)),
                    end("203.0.113.7", 443, None),
                )],
            ));
        }
        let log = h.log();
        assert_eq!(log.edges.len(), 1);
        assert_eq!(log.edges[0].count, 2);
        let Peer::Workload(w) = &log.edges[0].source else { panic!() };
        assert_eq!(w.labels["pod-template-hash"], "c3");
    }

    #[test]
    fn compaction_ages_hours_into_days_and_forgets_the_window() {
        let pay = pod("shop", "Deployment/pay", "a1");
        let mut h = History::default();
        let at = |t: &str, port| {
            flow(
                t,
                "n1",
                FlowKind::Syn,
                Protocol::Tcp,
                end("10.0.1.5", 40000, Some(&pay)),
                end("203.0.113.7", port, None),
            )
        };
        h.apply(&batch(
            "n1",
            1,
            &[],
            vec![
                at("2026-11-26T09:10:00Z", 443),
                at("2026-11-26T09:20:00Z", 443),
                at("2026-11-23T05:00:00Z", 443),
                at("2026-11-23T17:00:00Z", 443),
                at("2026-11-05T12:00:00Z", 443),
                at("2026-11-05T12:00:00Z", 8443),
            ],
        ));
        assert_eq!(h.edge_count(), 2);
        let c = h.compact(ts("2026-11-26T10:00:00Z"));
        assert_eq!(c.expired, 1, "the edge seen only 21 days ago is forgotten");
        assert_eq!(h.edge_count(), 1);
        let log = h.log();
        let e = &log.edges[0];
        assert_eq!(e.port, 443);
        assert_eq!(e.count, 4, "the count is what is left in the window");
        assert_eq!(e.first_seen, ts("2026-11-23T00:00:00Z"), "a day's bucket starts at the day");
        assert_eq!(
            e.hours,
            [
                HourCount { hour: ts("2026-11-23T23:00:00Z"), count: 2 },
                HourCount { hour: ts("2026-11-26T09:00:00Z"), count: 2 },
            ]
        );
        // Compacting again changes nothing.
        h.compact(ts("2026-11-26T10:00:00Z"));
        assert_eq!(h.log(), log);
        // `--since` a time in the aged day counts that day whole.
        assert_eq!(log.since(ts("2026-11-23T20:00:00Z")).edges[0].count, 4);
        assert_eq!(log.since(ts("2026-11-24T00:00:00Z")).edges[0].count, 2);
    }

    #[test]
    fn a_persisted_part_restores_to_the_same_history() {
        let (pay, db) = (pod("shop", "Deployment/pay", "a1"), pod("shop", "StatefulSet/db", "b2"));
        let mut h = History::default();
        h.apply(&batch(
            "n1",
            7,
            &[("10.0.1.5", &pay)],
            vec![flow(
                "2026-11-26T10:00:00Z",
                "n1",
                FlowKind::Syn,
                Protocol::Tcp,
                end("10.0.1.5", 40000, Some(&pay)),
                end("10.0.2.9", 5432, Some(&db)),
            )],
        ));
        let stored = h.node("n1").unwrap();
        let mut back = History::default();
        back.restore(stored.clone());
        assert_eq!(back.node("n1").unwrap(), stored);
        assert_eq!(back.position("n1"), Some(("b1", 7)));
        assert_eq!(back.edge_count(), 1);
        // Restoring again replaces; it does not add.
        back.restore(stored);
        assert_eq!(back.edge_count(), 1);
        assert_eq!(back.log(), h.log());
        // The restored pods attribute far ends again.
        assert!(
            back.apply(&batch(
                "n2",
                1,
                &[],
                vec![
                    syn("2026-11-26T10:00:00Z", "n2", end("10.0.1.5", 40001, None), end("10.0.2.9", 5432, Some(&db)),)
                ]
            ))
            .skipped
                == 1
        );
    }

    #[test]
    fn limits_drop_new_edges_and_eviction_takes_the_stalest() {
        let pay = pod("shop", "Deployment/pay", "a1");
        let mut h = History::new(HistoryConfig { max_edges: 2, ..HistoryConfig::default() });
        let at = |t: &str, port| {
            flow(
                t,
                "n1",
                FlowKind::Syn,
                Protocol::Tcp,
                end("10.0.1.5", 40000, Some(&pay)),
                end("203.0.113.7", port, None),
            )
        };
        let a = h.apply(&batch(
            "n1",
            1,
            &[],
            vec![
                at("2026-11-26T09:00:00Z", 1),
                at("2026-11-26T08:00:00Z", 2),
                at("2026-11-26T10:00:00Z", 3),
                at("2026-11-26T10:00:00Z", 1),
            ],
        ));
        assert_eq!((a.counted, a.dropped), (3, 1));
        assert_eq!(h.edge_count(), 2);
        assert_eq!(h.evict_oldest("n1", 1), 1);
        let ports: Vec<i32> = h.log().edges.iter().map(|e| e.port).collect();
        assert_eq!(ports, [1], "port 2 was seen least recently");
    }

    #[test]
    fn a_node_beyond_the_limit_is_refused_and_names_make_room() {
        let pay = pod("shop", "Deployment/pay", "a1");
        let mut h = History::new(HistoryConfig { max_nodes: 2, max_names: 2, ..HistoryConfig::default() });
        let one = |node: &str| {
            batch(
                node,
                1,
                &[],
                vec![syn("2026-11-26T10:00:00Z", node, end("10.0.1.5", 1, Some(&pay)), end("203.0.113.7", 443, None))],
            )
        };
        assert!(!h.apply(&one("n1")).refused);
        assert!(!h.apply(&one("n2")).refused);
        let third = h.apply(&one("n3"));
        assert!(third.refused && third.counted == 0, "{third:?}");
        assert_eq!(h.nodes().count(), 2);
        // Names: two slots; an old pair makes room for a new one, a recent one does not.
        let dns = |ts: &str, ip: &str, name: &str| -> SensorObservation {
            serde_json::from_value(serde_json::json!({"ts": ts, "node": "n1", "client": {"ip": "10.0.1.5"},
                "server": "10.96.0.10", "qname": name, "answers": [{"ip": ip, "ttl": 60}]}))
            .unwrap()
        };
        h.observe_dns(&dns("2026-11-26T07:00:00Z", "192.0.2.1", "old.test"));
        h.observe_dns(&dns("2026-11-26T09:30:00Z", "192.0.2.2", "recent.test"));
        h.observe_dns(&dns("2026-11-26T09:40:00Z", "192.0.2.3", "new.test"));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(!h.names.contains_key(&(ip("10.0.1.5"), ip("192.0.2.1"))), "the old pair made room");
        assert!(h.names.contains_key(&(ip("10.0.1.5"), ip("192.0.2.3"))));
        h.observe_dns(&dns("2026-11-26T09:41:00Z", "192.0.2.4", "full.test"));
        assert!(!h.names.contains_key(&(ip("10.0.1.5"), ip("192.0.2.4"))), "recent pairs are kept; the new one waits");
    }

    #[test]
    fn merging_logs_adds_up_the_same_edge() {
        let pay = pod("shop", "Deployment/pay", "a1");
        let mut a = History::default();
        let mut b = History::default();
        for (h, t) in [(&mut a, "2026-11-26T09:00:00Z"), (&mut b, "2026-11-26T10:30:00Z")] {
            h.apply(&batch(
                "n1",
                1,
                &[],
                vec![flow(
                    t,
                    "n1",
                    FlowKind::Syn,
                    Protocol::Tcp,
                    end("10.0.1.5", 1, Some(&pay)),
                    end("203.0.113.7", 443, None),
                )],
            ));
        }
        let m = merge([a.log(), b.log()]);
        assert_eq!(m.edges.len(), 1);
        assert_eq!((m.edges[0].count, m.edges[0].hours.len()), (2, 2));
        assert_eq!(
            (m.edges[0].first_seen, m.edges[0].last_seen),
            (ts("2026-11-26T09:00:00Z"), ts("2026-11-26T10:30:00Z"))
        );
    }
}
