//! The traffic aggregator: `POST /v1/flows` (the sensors' connection starts) into a durable,
//! bounded history, and `GET /v1/traffic` (the history as a traffic file, for `portcullis
//! replay --traffic URL`).
//!
//! - **One counter.** Every sensor sends every batch to every replica (as observations); only
//!   the replica holding the controller Lease counts it ([`History`]), so nothing is counted
//!   twice. The others answer `durable: false` and keep nothing.
//! - **Durable before acknowledged.** The holder answers `durable: true` only once the batch's
//!   node part, with the batch's position (`boot`, `seq`), is written to the API server. A
//!   sensor sends a batch again until a replica says so, and a batch whose position the part
//!   already holds is not counted again: killing every replica loses nothing acknowledged, and
//!   counts nothing twice.
//! - **One object per node.** A node's part is a ConfigMap in the release namespace (label
//!   [`TRAFFIC_LABEL`]), its pods and edges gzipped JSON (the edges as a traffic file, read back
//!   by the same strict reader as any other). A batch comes from one node, so its counts and
//!   its position are written in one write, with a `resourceVersion` precondition; a write that
//!   loses (another replica wrote) reloads the part, and the sensor's resend counts again what
//!   was lost. Writes pass the Lease fence.
//! - **Bounded.** The history's edge limit bounds memory; a part over [`MAX_OBJECT_BYTES`]
//!   compressed loses its least recently seen edges (counted as evicted).

use std::collections::{BTreeSet, HashMap};
use std::io::{Read as _, Write as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, PostParams};
use portcullis_linter::egress::observation::{FlowBatch, PodAddress, SensorObservation};
use portcullis_linter::egress::render::{MANAGED_BY, MANAGED_BY_LABEL};
use portcullis_linter::replay::history::{History, HistoryConfig, NodeHistory, merge};
use portcullis_linter::replay::traffic::{Bounds, TrafficLog, parse};
use serde::Serialize;
use tokio::sync::{Notify, watch};

use crate::controller::api::{ApiError, FIELD_MANAGER};
use crate::controller::lease::Fence;
use crate::metrics::{Metrics, ResultLabels};

/// Label on every history object; its value is the format's version.
pub const TRAFFIC_LABEL: &str = "portcullis.dev/traffic";
/// Annotation naming the node a history object holds.
pub const NODE_ANNOTATION: &str = "portcullis.dev/node";
/// Node parts encoded and written at once.
const WRITES_AT_ONCE: usize = 2;
/// Largest body `POST /v1/flows` reads (the sensor sends at most 1 MiB).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Largest compressed part written: the API server refuses ConfigMaps over 1 MiB.
pub const MAX_OBJECT_BYTES: usize = 900 * 1024;
/// Largest decompressed part read back (a bound against a hostile object).
const MAX_INFLATED_BYTES: usize = 256 << 20;
/// How long `POST /v1/flows` waits for its batch to be written before answering
/// `durable: false` (the sensor then sends it again).
pub const DURABLE_WAIT: Duration = Duration::from_secs(30);

/// Where parts are kept: ConfigMaps ([`ConfigMapStore`]) or memory ([`MemoryStore`], tests).
pub trait TrafficStore: Send + Sync + std::fmt::Debug {
    /// Every part (their encoded objects).
    fn list(&self) -> BoxFuture<'_, Result<Vec<StoredObject>, ApiError>>;
    /// Creates (no version) or replaces (at `resource_version`, else 409) a part; returns the
    /// new version.
    fn put<'a>(&'a self, object: &'a StoredObject) -> BoxFuture<'a, Result<String, ApiError>>;
}

/// A part as an object: the ConfigMap the API server holds.
pub type StoredObject = ConfigMap;

/// The object name of `node`'s part: `portcullis-traffic-NODE` (a node name is a DNS
/// subdomain, as a ConfigMap name), shortened with a hash when too long.
pub fn object_name(node: &str) -> String {
    let name = format!("portcullis-traffic-{node}");
    if name.len() <= 253 {
        return name;
    }
    // FNV-1a: stable across releases, and node names are chosen by the cluster's admins.
    let hash = node.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let keep: String = node.chars().take(200).collect();
    format!("portcullis-traffic-{}-{hash:016x}", keep.trim_end_matches(['.', '-']))
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    // The default level: in `benches/traffic-history.rs` it makes a node's part of 2,000 edges
    // and 14 days 489 KiB (level 1: 870 KiB, near the object limit) for 220 ms of CPU, off the
    // async workers; the sensors' 60 s batches bound how often each part is written.
    let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    out.write_all(bytes)?;
    out.finish()
}

fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_INFLATED_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("not gzip: {e}"))?;
    if out.len() > MAX_INFLATED_BYTES {
        return Err(format!("over {MAX_INFLATED_BYTES} bytes decompressed"));
    }
    Ok(out)
}

/// `part` as the ConfigMap that stores it, and its compressed size.
pub fn encode(part: &NodeHistory, namespace: &str) -> Result<(StoredObject, usize), String> {
    let pods = gzip(&serde_json::to_vec(&part.pods).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let traffic = gzip(&part.log.to_json().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let size = pods.len() + traffic.len();
    let object = ConfigMap {
        metadata: ObjectMeta {
            name: Some(object_name(&part.node)),
            namespace: Some(namespace.to_owned()),
            labels: Some(
                [(TRAFFIC_LABEL.to_owned(), "v1".to_owned()), (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned())]
                    .into_iter()
                    .collect(),
            ),
            annotations: Some([(NODE_ANNOTATION.to_owned(), part.node.clone())].into_iter().collect()),
            ..ObjectMeta::default()
        },
        data: Some(
            [("boot".to_owned(), part.boot.clone()), ("seq".to_owned(), part.seq.to_string())].into_iter().collect(),
        ),
        binary_data: Some(
            [("pods.json.gz".to_owned(), ByteString(pods)), ("traffic.json.gz".to_owned(), ByteString(traffic))]
                .into_iter()
                .collect(),
        ),
        ..ConfigMap::default()
    };
    Ok((object, size))
}

/// A stored ConfigMap back as a part; every field is checked (the reader of the traffic file
/// is the strict one `replay` uses).
pub fn decode(object: &StoredObject) -> Result<NodeHistory, String> {
    let node = object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NODE_ANNOTATION))
        .ok_or_else(|| format!("no {NODE_ANNOTATION} annotation"))?
        .clone();
    let data = object.data.clone().unwrap_or_default();
    let boot = data.get("boot").cloned().ok_or("no boot")?;
    let seq = data.get("seq").and_then(|s| s.parse::<u64>().ok()).ok_or("no seq")?;
    let binary = object.binary_data.clone().unwrap_or_default();
    let pods = binary.get("pods.json.gz").ok_or("no pods.json.gz")?;
    let pods: Vec<PodAddress> = serde_json::from_slice(&gunzip(&pods.0)?).map_err(|e| format!("pods.json.gz: {e}"))?;
    for p in &pods {
        portcullis_linter::replay::traffic::check_sensor_pod(&p.pod).map_err(|e| format!("pods.json.gz: {e}"))?;
    }
    let traffic = binary.get("traffic.json.gz").ok_or("no traffic.json.gz")?;
    let log = parse(&gunzip(&traffic.0)?, Bounds::default()).map_err(|e| format!("traffic.json.gz: {e}"))?;
    Ok(NodeHistory { node, boot, seq, pods, log })
}

/// Parts as ConfigMaps in the release namespace.
#[derive(Clone)]
pub struct ConfigMapStore {
    api: Api<ConfigMap>,
    fence: Option<Fence>,
}

impl std::fmt::Debug for ConfigMapStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigMapStore").finish_non_exhaustive()
    }
}

impl ConfigMapStore {
    /// Writes pass `fence` (the controller Lease's) when given.
    pub fn new(client: kube::Client, namespace: &str, fence: Option<Fence>) -> ConfigMapStore {
        ConfigMapStore { api: Api::namespaced(client, namespace), fence }
    }
}

impl TrafficStore for ConfigMapStore {
    fn list(&self) -> BoxFuture<'_, Result<Vec<StoredObject>, ApiError>> {
        Box::pin(async move {
            let listed = self.api.list(&ListParams::default().labels(&format!("{TRAFFIC_LABEL}=v1"))).await?;
            Ok(listed.items)
        })
    }

    fn put<'a>(&'a self, object: &'a StoredObject) -> BoxFuture<'a, Result<String, ApiError>> {
        Box::pin(async move {
            if self.fence.as_ref().is_some_and(|f| !f.is_open()) {
                return Err(ApiError::Fenced);
            }
            let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PostParams::default() };
            let name = object.metadata.name.clone().unwrap_or_default();
            let stored = if object.metadata.resource_version.is_some() {
                self.api.replace(&name, &params, object).await?
            } else {
                self.api.create(&params, object).await?
            };
            Ok(stored.metadata.resource_version.unwrap_or_default())
        })
    }
}

/// Parts in memory, with the API server's optimistic concurrency (tests, and `--dev`).
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<HashMap<String, (u64, StoredObject)>>,
    version: std::sync::atomic::AtomicU64,
}

impl MemoryStore {
    fn objects(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, StoredObject)>> {
        self.objects.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes behind the aggregator's back (another replica's write, in tests).
    pub fn overwrite(&self, object: StoredObject) {
        let name = object.metadata.name.clone().unwrap_or_default();
        let v = self.version.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        self.objects().insert(name, (v, object));
    }
}

impl TrafficStore for MemoryStore {
    fn list(&self) -> BoxFuture<'_, Result<Vec<StoredObject>, ApiError>> {
        let items = self
            .objects()
            .values()
            .map(|(v, o)| {
                let mut o = o.clone();
                o.metadata.resource_version = Some(v.to_string());
                o
            })
            .collect();
        Box::pin(std::future::ready(Ok(items)))
    }

    fn put<'a>(&'a self, object: &'a StoredObject) -> BoxFuture<'a, Result<String, ApiError>> {
        let name = object.metadata.name.clone().unwrap_or_default();
        let mut objects = self.objects();
        let current = objects.get(&name).map(|(v, _)| v.to_string());
        let verdict = match (&object.metadata.resource_version, current) {
            (None, Some(_)) => Err(ApiError::Conflict(format!("{name} exists"))),
            (Some(want), Some(have)) if *want != have => Err(ApiError::Conflict(format!("{name} changed"))),
            (Some(_), None) => Err(ApiError::Other(format!("{name} not found"))),
            _ => {
                let v = self.version.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                objects.insert(name, (v, object.clone()));
                Ok(v.to_string())
            }
        };
        Box::pin(std::future::ready(verdict))
    }
}

/// What `POST /v1/flows` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowAck {
    /// The batch is written: the sensor may forget it.
    pub durable: bool,
    /// The batch had been counted before (a resend).
    pub duplicate: bool,
    pub counted: usize,
    pub skipped: usize,
    pub dropped: usize,
}

#[derive(Debug, Default)]
struct Inner {
    history: History,
    /// Loaded from the store while leading (else the history is empty and unused).
    loaded: bool,
    dirty: BTreeSet<String>,
    /// Each part's stored version (the next write's precondition).
    versions: HashMap<String, String>,
    /// Each node's last written position.
    written: HashMap<String, (String, u64)>,
}

/// The aggregator: a history while this replica leads, persisted to a store.
#[derive(Debug)]
pub struct Aggregator {
    store: Arc<dyn TrafficStore>,
    namespace: String,
    leader: watch::Receiver<bool>,
    inner: tokio::sync::Mutex<Inner>,
    config: HistoryConfig,
    /// Woken after every flush.
    flushed: Notify,
    metrics: Arc<Metrics>,
}

impl Aggregator {
    /// Counts while `leader` is true; parts are written to `store` (objects in `namespace`).
    pub fn new(
        store: Arc<dyn TrafficStore>,
        namespace: &str,
        leader: watch::Receiver<bool>,
        config: HistoryConfig,
        metrics: Arc<Metrics>,
    ) -> Aggregator {
        Aggregator {
            store,
            namespace: namespace.to_owned(),
            leader,
            inner: tokio::sync::Mutex::new(Inner { history: History::new(config), ..Inner::default() }),
            config,
            flushed: Notify::new(),
            metrics,
        }
    }

    /// How long counts are kept.
    pub fn window(&self) -> jiff::SignedDuration {
        self.config.window
    }

    fn leading(&self) -> bool {
        *self.leader.borrow()
    }

    /// Takes in the names pods were given addresses for (from `POST /v1/observations`).
    pub async fn observe_dns(&self, observations: &[SensorObservation]) {
        if !self.leading() {
            return;
        }
        let mut inner = self.inner.lock().await;
        for o in observations {
            inner.history.observe_dns(o);
        }
    }

    /// Reads every part from the store into a fresh history (on becoming the leader).
    async fn load(&self, inner: &mut Inner) -> Result<(), ApiError> {
        let objects = self.store.list().await?;
        let config = self.config;
        // Decoding and restoring is seconds of CPU at the issue's size: off the async workers,
        // which also serve admission reviews.
        *inner = tokio::task::spawn_blocking(move || restored(objects, config))
            .await
            .map_err(|e| ApiError::Other(e.to_string()))?;
        self.set_edges(inner);
        tracing::info!(parts = inner.written.len(), edges = inner.history.edge_count(), "traffic history loaded");
        Ok(())
    }

    /// `POST /v1/flows` after authentication: counts a valid batch while leading, and answers
    /// once it is written (or after [`DURABLE_WAIT`], not durable).
    pub async fn accept(&self, batch: &FlowBatch) -> FlowAck {
        let mut ack = FlowAck { durable: false, duplicate: false, counted: 0, skipped: 0, dropped: 0 };
        if !self.leading() {
            return ack;
        }
        {
            let mut inner = self.inner.lock().await;
            if !inner.loaded {
                return ack;
            }
            let applied = inner.history.apply(batch);
            if applied.refused {
                tracing::warn!(node = %batch.node.chars().take(64).collect::<String>(), "flow batch of a node beyond the node limit refused");
                return ack;
            }
            ack.duplicate = applied.duplicate;
            (ack.counted, ack.skipped, ack.dropped) = (applied.counted, applied.skipped, applied.dropped);
            if !applied.duplicate {
                inner.dirty.insert(batch.node.clone());
                for (result, n) in
                    [("counted", applied.counted), ("skipped", applied.skipped), ("dropped", applied.dropped)]
                {
                    self.metrics.traffic_flows.get_or_create(&ResultLabels { result }).inc_by(n as u64);
                }
                self.set_edges(&inner);
            }
        }
        let deadline = tokio::time::Instant::now() + DURABLE_WAIT;
        loop {
            let notified = self.flushed.notified();
            {
                let inner = self.inner.lock().await;
                if inner.written.get(&batch.node).is_some_and(|(boot, seq)| *boot == batch.boot && *seq >= batch.seq) {
                    ack.durable = true;
                    return ack;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return ack;
            }
        }
    }

    /// One round: (re)load on becoming the leader, forget on losing it, age counts, and write
    /// every changed part. Returns the parts written.
    pub async fn flush(&self, now: Timestamp) -> usize {
        let mut inner = self.inner.lock().await;
        if !self.leading() {
            if inner.loaded {
                *inner = Inner { history: History::new(self.config), ..Inner::default() };
            }
            drop(inner);
            self.flushed.notify_waiters();
            return 0;
        }
        if !inner.loaded
            && let Err(e) = self.load(&mut inner).await
        {
            tracing::warn!(error = %e, "loading the traffic history failed; retrying");
            return 0;
        }
        let compacted = inner.history.compact(now);
        if compacted.expired > 0 {
            self.metrics.traffic_edges_expired.inc_by(compacted.expired as u64);
            let nodes: Vec<String> = inner.history.nodes().map(str::to_owned).collect();
            inner.dirty.extend(nodes);
        }
        let dirty: Vec<(String, Option<String>)> = std::mem::take(&mut inner.dirty)
            .into_iter()
            .map(|n| (n.clone(), inner.versions.get(&n).cloned()))
            .collect();
        self.set_edges(&inner);
        drop(inner);
        // Encoding and writing happen outside the lock: batches keep being counted meanwhile
        // (a node they change is written again at the next flush).
        let mut written = 0;
        // Two parts at a time are encoded (on the blocking pool) and written: each holds a copy
        // of its part and its JSON (megabytes), so memory stays bounded however many changed.
        let writes = dirty.into_iter().map(|(node, version)| async move {
            let result = self.write_part(&node, version).await;
            (node, result)
        });
        let results: Vec<_> = futures::stream::StreamExt::collect(futures::stream::StreamExt::buffer_unordered(
            futures::stream::iter(writes),
            WRITES_AT_ONCE,
        ))
        .await;
        for (node, result) in results {
            match result {
                Ok(()) => {
                    written += 1;
                    self.write_result("ok");
                }
                Err(ApiError::Conflict(e)) => {
                    // Another replica wrote: take its part; the sensor resends what we lose.
                    self.write_result("conflict");
                    tracing::warn!(node, error = %e, "traffic history write lost a race; reloading");
                    self.inner.lock().await.loaded = false;
                }
                Err(e) => {
                    self.write_result("failed");
                    tracing::warn!(node, error = %e, "writing the traffic history failed; retrying");
                    self.inner.lock().await.dirty.insert(node);
                }
            }
        }
        self.flushed.notify_waiters();
        written
    }

    fn set_edges(&self, inner: &Inner) {
        self.metrics.traffic_edges.set(i64::try_from(inner.history.edge_count()).unwrap_or(i64::MAX));
    }

    fn write_result(&self, result: &'static str) {
        self.metrics.traffic_writes.get_or_create(&ResultLabels { result }).inc();
    }

    /// Writes `node`'s part at `version` (its last known resourceVersion): a copy is taken under
    /// the lock, encoded off the async workers, and shrunk (under the lock again) while over
    /// [`MAX_OBJECT_BYTES`].
    async fn write_part(&self, node: &str, version: Option<String>) -> Result<(), ApiError> {
        let encode_off = |part: NodeHistory, namespace: String| async move {
            tokio::task::spawn_blocking(move || encode(&part, &namespace).map(|(o, size)| (part, o, size)))
                .await
                .map_err(|e| ApiError::Other(e.to_string()))?
                .map_err(ApiError::Other)
        };
        let Some(part) = self.inner.lock().await.history.node(node) else { return Ok(()) };
        let (mut part, mut object, mut size) = encode_off(part, self.namespace.clone()).await?;
        while size > MAX_OBJECT_BYTES && !part.log.edges.is_empty() {
            // Shrink by the share that is over, and a tenth more.
            let over = part.log.edges.len() * (size - MAX_OBJECT_BYTES) / size + part.log.edges.len() / 10 + 1;
            let smaller = {
                let mut inner = self.inner.lock().await;
                let gone = inner.history.evict_oldest(node, over);
                self.metrics.traffic_edges_evicted.inc_by(gone as u64);
                tracing::warn!(
                    node,
                    evicted = gone,
                    size,
                    "traffic history part over the object size limit; least recently seen edges evicted"
                );
                inner.history.node(node)
            };
            let Some(smaller) = smaller else { return Ok(()) };
            (part, object, size) = encode_off(smaller, self.namespace.clone()).await?;
        }
        object.metadata.resource_version = version;
        let stored = self.store.put(&object).await?;
        let mut inner = self.inner.lock().await;
        if inner.loaded {
            inner.versions.insert(node.to_owned(), stored);
            inner.written.insert(node.to_owned(), (part.boot, part.seq));
        }
        Ok(())
    }

    /// Flushes every `interval` until the process ends.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        let mut leader = self.leader.clone();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A fixed leadership (`--dev`) has no sender left: then only the tick wakes the loop.
        let mut watching = true;
        loop {
            if watching {
                tokio::select! {
                    _ = tick.tick() => {}
                    changed = leader.changed() => watching = changed.is_ok(),
                }
            } else {
                tick.tick().await;
            }
            self.flush(Timestamp::now()).await;
        }
    }

    /// The history this replica counts, merged over nodes: `None` unless it leads and has
    /// loaded the stored history. Parts are copied one at a time under the lock (as a write
    /// copies its part) and merged off the async workers.
    pub async fn live_log(&self) -> Option<TrafficLog> {
        if !self.leading() {
            return None;
        }
        let nodes: Vec<String> = {
            let inner = self.inner.lock().await;
            if !inner.loaded {
                return None;
            }
            inner.history.nodes().map(str::to_owned).collect()
        };
        let mut logs = Vec::with_capacity(nodes.len());
        for node in nodes {
            if let Some(part) = self.inner.lock().await.history.node(&node) {
                logs.push(part.log);
            }
        }
        tokio::task::spawn_blocking(move || merge(logs)).await.ok()
    }

    /// `GET /v1/traffic`: every stored part, merged (any replica can answer).
    pub async fn stored_log(&self) -> Result<TrafficLog, ApiError> {
        let objects = self.store.list().await?;
        let merged = move || {
            let mut logs = Vec::with_capacity(objects.len());
            for object in &objects {
                match decode(object) {
                    Ok(part) => logs.push(part.log),
                    Err(e) => {
                        tracing::warn!(object = ?object.metadata.name, error = %e, "unreadable traffic history object left out")
                    }
                }
            }
            merge(logs)
        };
        // Seconds of CPU at the issue's size: off the async workers.
        tokio::task::spawn_blocking(merged).await.map_err(|e| ApiError::Other(e.to_string()))
    }
}

/// The aggregator's state from stored objects: each readable part restored with its position
/// and version; an unreadable one only gives its version (its node's next write replaces it).
fn restored(objects: Vec<StoredObject>, config: HistoryConfig) -> Inner {
    let mut inner = Inner { history: History::new(config), loaded: true, ..Inner::default() };
    for object in objects {
        let name = object.metadata.name.clone().unwrap_or_default();
        match decode(&object) {
            Ok(part) if object_name(&part.node) == name => {
                inner.written.insert(part.node.clone(), (part.boot.clone(), part.seq));
                if let Some(v) = &object.metadata.resource_version {
                    inner.versions.insert(part.node.clone(), v.clone());
                }
                inner.history.restore(part);
            }
            Ok(part) => {
                tracing::warn!(object = %name, node = %part.node, "traffic history object names another node; ignored")
            }
            Err(e) => {
                tracing::warn!(object = %name, error = %e, "unreadable traffic history object; its node starts over");
                if let Some(v) = &object.metadata.resource_version
                    && let Some(node) = object.metadata.annotations.as_ref().and_then(|a| a.get(NODE_ANNOTATION))
                {
                    inner.versions.insert(node.clone(), v.clone());
                }
            }
        }
    }
    inner
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_linter::egress::observation::{FlowEnd, FlowKind, FlowStart, SensorFlow, SensorPod};
    use portcullis_linter::model::Protocol;

    fn batch(node: &str, seq: u64, ports: std::ops::Range<u16>, label: &str) -> FlowBatch {
        let pod = SensorPod {
            namespace: "shop".to_owned(),
            name: "pay-1".to_owned(),
            workload: Some("Deployment/pay".to_owned()),
            labels: [("app".to_owned(), "pay".to_owned())].into_iter().collect(),
        };
        let ts = Timestamp::now();
        let flows = ports
            .map(|port| SensorFlow {
                ts,
                node: node.to_owned(),
                flow: FlowStart {
                    kind: FlowKind::Syn,
                    protocol: Protocol::Tcp,
                    source: FlowEnd { ip: "10.0.1.5".parse().unwrap(), port: 40000, pod: Some(pod.clone()) },
                    destination: FlowEnd {
                        ip: "10.0.9.9".parse().unwrap(),
                        port,
                        pod: Some(SensorPod {
                            namespace: "db".to_owned(),
                            name: format!("db-{port}"),
                            workload: Some(format!("StatefulSet/db-{}", noise(&format!("{label}w"), port))),
                            labels: [("app".to_owned(), format!("db-{}", noise(label, port)))].into_iter().collect(),
                        }),
                    },
                },
            })
            .collect();
        FlowBatch { node: node.to_owned(), boot: "b".to_owned(), seq, pods: Vec::new(), flows }
    }

    /// 48 hex digits no compressor can shrink much (a label value per workload).
    fn noise(label: &str, port: u16) -> String {
        let mut x =
            label.bytes().fold(u64::from(port) | 1 << 40, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        (0..3)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                format!("{x:016x}")
            })
            .collect()
    }

    fn leading(store: Arc<dyn TrafficStore>) -> Aggregator {
        let (_, rx) = watch::channel(true);
        Aggregator::new(store, "ns", rx, HistoryConfig::default(), Arc::new(Metrics::new()))
    }

    #[test]
    fn a_part_round_trips_and_a_hostile_object_is_refused() {
        let mut h = History::default();
        h.apply(&batch("n1", 3, 1..4, "x"));
        let part = h.node("n1").unwrap();
        let (object, size) = encode(&part, "ns").unwrap();
        assert!(size > 0);
        assert_eq!(decode(&object).unwrap(), part);

        let mut no_node = object.clone();
        no_node.metadata.annotations = None;
        assert!(decode(&no_node).unwrap_err().contains(NODE_ANNOTATION));
        let mut not_gzip = object.clone();
        not_gzip.binary_data.as_mut().unwrap().insert("traffic.json.gz".to_owned(), ByteString(b"{}".to_vec()));
        assert!(decode(&not_gzip).unwrap_err().contains("not gzip"));
        let mut bad_edge = object.clone();
        let text = br#"{"version":1,"edges":[{"source":{"address":"10.0.0.1"},"destination":{"address":"10.0.0.2"},"port":0,"firstSeen":"2026-11-26T10:00:00Z","lastSeen":"2026-11-26T10:00:00Z","count":1}]}"#;
        bad_edge.binary_data.as_mut().unwrap().insert("traffic.json.gz".to_owned(), ByteString(gzip(text).unwrap()));
        assert!(decode(&bad_edge).unwrap_err().contains("edges[0].port"), "{}", decode(&bad_edge).unwrap_err());
        let mut bad_seq = object;
        bad_seq.data.as_mut().unwrap().insert("seq".to_owned(), "-1".to_owned());
        assert!(decode(&bad_seq).is_err());
    }

    #[test]
    fn object_names_fit_the_api_server() {
        assert_eq!(object_name("ip-10-0-1-5.ec2.internal"), "portcullis-traffic-ip-10-0-1-5.ec2.internal");
        let long = format!("{}.example", "a".repeat(240));
        let name = object_name(&long);
        assert!(name.len() <= 253, "{}", name.len());
        assert_ne!(name, object_name(&format!("{}.examplf", "a".repeat(240))), "distinct nodes, distinct names");
    }

    #[tokio::test]
    async fn a_part_over_the_size_limit_keeps_its_most_recent_edges() {
        let store = Arc::new(MemoryStore::default());
        let a = leading(store.clone());
        a.flush(Timestamp::now()).await;
        // Distinct workloads with random names and labels: 15,000 edges do not compress under
        // the limit.
        for (seq, chunk) in (0..15u64).enumerate() {
            let start = (chunk * 1000) as u16 + 1;
            let b = batch("n1", seq as u64 + 1, start..start + 1000, &format!("{:x}", chunk * 7919));
            a.inner.lock().await.history.apply(&b);
            a.inner.lock().await.dirty.insert("n1".to_owned());
        }
        a.flush(Timestamp::now()).await;
        let objects = store.list().await.unwrap();
        let stored = decode(&objects[0]).unwrap();
        let (_, size) = encode(&stored, "ns").unwrap();
        assert!(size <= MAX_OBJECT_BYTES, "{size}");
        assert!(
            stored.log.edges.len() < 15_000 && !stored.log.edges.is_empty(),
            "{} edges, {size} bytes",
            stored.log.edges.len()
        );
        assert_eq!(stored.seq, 15, "the part still records the last batch");
        let metrics = a.metrics.render(Default::default());
        assert!(metrics.contains("portcullis_webhook_traffic_edges_evicted_total"), "{metrics}");
        assert!(!metrics.contains("portcullis_webhook_traffic_edges_evicted_total 0"), "{metrics}");
    }

    #[test]
    fn loading_skips_unreadable_and_misnamed_objects() {
        let mut h = History::default();
        h.apply(&batch("n1", 4, 1..3, "x"));
        let (good, _) = encode(&h.node("n1").unwrap(), "ns").unwrap();
        let mut misnamed = good.clone();
        misnamed.metadata.name = Some(object_name("n2"));
        let mut garbage = good.clone();
        garbage.metadata.name = Some(object_name("n3"));
        garbage.metadata.annotations = Some([(NODE_ANNOTATION.to_owned(), "n3".to_owned())].into_iter().collect());
        garbage.binary_data.as_mut().unwrap().insert("pods.json.gz".to_owned(), ByteString(b"not gzip".to_vec()));
        for (o, v) in [(&mut misnamed, "7"), (&mut garbage, "8")] {
            o.metadata.resource_version = Some(v.to_owned());
        }
        let mut good = good;
        good.metadata.resource_version = Some("6".to_owned());
        let inner = restored(vec![good, misnamed, garbage], HistoryConfig::default());
        assert_eq!(inner.history.nodes().collect::<Vec<_>>(), ["n1"]);
        assert_eq!(inner.written.get("n1"), Some(&("b".to_owned(), 4)));
        // The unreadable part's version is kept: its node's next write replaces it.
        assert_eq!(inner.versions.get("n3").map(String::as_str), Some("8"));
        assert!(!inner.versions.contains_key("n2"));
    }

    #[tokio::test]
    async fn a_lost_write_race_reloads_and_the_resend_counts() {
        let store = Arc::new(MemoryStore::default());
        let a = leading(store.clone());
        a.flush(Timestamp::now()).await;
        // `accept` answers once a flush wrote its batch.
        let accept = async |a: &Aggregator, b: FlowBatch| {
            let flush = async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                a.flush(Timestamp::now()).await
            };
            tokio::join!(a.accept(&b), flush).0
        };
        assert!(accept(&a, batch("n1", 1, 1..2, "x")).await.durable);
        // Another writer (a replica that believed it led) replaces the part.
        let mut other = History::default();
        other.apply(&batch("n1", 5, 7..8, "x"));
        store.overwrite(encode(&other.node("n1").unwrap(), "ns").unwrap().0);
        // Our next write loses the race and reloads what is stored.
        a.inner.lock().await.history.apply(&batch("n1", 2, 2..3, "x"));
        a.inner.lock().await.dirty.insert("n1".to_owned());
        assert_eq!(a.flush(Timestamp::now()).await, 0);
        a.flush(Timestamp::now()).await;
        let ports: Vec<i32> = a.inner.lock().await.history.log().edges.iter().map(|e| e.port).collect();
        assert_eq!(ports, [7], "the stored part, not our lost write");
        // Seq 6 follows the stored seq 5 and is counted.
        let ack = accept(&a, batch("n1", 6, 3..4, "x")).await;
        assert!(ack.durable && ack.counted == 1, "{ack:?}");
    }
}
