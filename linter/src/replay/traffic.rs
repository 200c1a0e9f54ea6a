//! The observed-traffic file (`portcullis replay --traffic`, `portcullis lint --traffic`):
//! edges between workloads and outside destinations, as the sensor's aggregator records them
//! (`docs/traffic.md` is the format's reference).
//!
//! Every field is attacker-controlled (a pod chooses what it connects to, and the file may come
//! from a URL): the reader is bounded ([`Bounds`]), strict (unknown fields, versions and
//! protocols are errors, with the edge's index and field), and never panics (`fuzz/`'s
//! `traffic` target).

use std::net::IpAddr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::model::{Labels, Protocol};
use crate::semantics::selector::{label_key_problem, label_value_problem};

/// The format's version; a file of another version is refused.
pub const SCHEMA_VERSION: u32 = 1;

/// What a file may hold.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Largest file, in bytes.
    pub max_bytes: usize,
    /// Most edges.
    pub max_edges: usize,
    /// Most labels on one peer (pod or namespace labels).
    pub max_labels: usize,
    /// Most hourly counts on one edge (14 days are 336).
    pub max_hours: usize,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds { max_bytes: 512 << 20, max_edges: 2_000_000, max_labels: 128, max_hours: 24 * 92 }
    }
}

/// A traffic file: the edges seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrafficLog {
    pub edges: Vec<Edge>,
}

/// One edge: a source reached a destination on a port, `count` times between `first_seen` and
/// `last_seen` (connection starts, deduplicated by the sensor within its interval).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Edge {
    pub source: Peer,
    pub destination: Peer,
    pub port: i32,
    pub protocol: Protocol,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub count: u64,
    /// Counts per hour (the hour's start), when the recorder kept them; `--since` then counts
    /// only the hours in the window.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hours: Vec<HourCount>,
}

/// Connections in one hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HourCount {
    pub hour: Timestamp,
    pub count: u64,
}

/// One end of an edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Peer {
    Workload(WorkloadPeer),
    Address(AddressPeer),
}

/// A workload's pod, as the sensor saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadPeer {
    pub namespace: String,
    /// `Kind/name` of the pod's owner (`Deployment/payments`), or `Pod/NAME` for a bare pod.
    pub workload: String,
    /// The pod's labels.
    pub labels: Labels,
    /// The namespace's labels, when the recorder knew them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_labels: Option<Labels>,
    /// The pod's container ports (what named ports resolve against).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PeerPort>,
}

impl WorkloadPeer {
    /// `namespace/Kind/name`, as `diff` and `matrix` name workloads.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.workload)
    }

    /// The workload's kind and name.
    pub fn kind_and_name(&self) -> (&str, &str) {
        self.workload.split_once('/').unwrap_or(("", &self.workload))
    }
}

/// A container port of a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: i32,
    #[serde(default = "tcp")]
    pub protocol: Protocol,
}

fn tcp() -> Protocol {
    Protocol::Tcp
}

/// An address outside the cluster's known pods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddressPeer {
    pub address: IpAddr,
    /// The DNS name the source pod was given this address for, when the sensor saw the answer
    /// (destinations only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Peer {
    /// How output names it: `namespace/Kind/name`, `name (address)` or the address.
    pub fn label(&self) -> String {
        match self {
            Peer::Workload(w) => w.key(),
            Peer::Address(AddressPeer { address, name: Some(name) }) => format!("{name} ({address})"),
            Peer::Address(AddressPeer { address, name: None }) => address.to_string(),
        }
    }
}

/// Why a traffic file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error("the traffic file is {size} bytes, over the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("the traffic file is empty")]
    Empty,
    #[error("the traffic file is not valid JSON at {path}: {message}")]
    Json { path: String, message: String },
    #[error("the traffic file has version {0}; this portcullis reads version {SCHEMA_VERSION}")]
    Version(u32),
    #[error("the traffic file has more than {max} edges")]
    TooManyEdges { max: usize },
    #[error("edges[{index}].{field}: {message}")]
    Edge { index: usize, field: String, message: String },
}

/// The file as written: every peer field optional, so a missing one is named in the error. Read
/// whole only to explain a refused file ([`explain`]); [`parse`] reads edges one by one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // its fields are read for their errors only
struct RawLog {
    version: u32,
    #[serde(default)]
    edges: Vec<RawEdge>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawEdge {
    source: RawPeer,
    destination: RawPeer,
    port: i64,
    #[serde(default)]
    protocol: Option<String>,
    first_seen: Timestamp,
    last_seen: Timestamp,
    count: u64,
    #[serde(default)]
    hours: Vec<HourCount>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPeer {
    namespace: Option<String>,
    workload: Option<String>,
    labels: Option<Labels>,
    namespace_labels: Option<Labels>,
    #[serde(default)]
    ports: Vec<PeerPort>,
    address: Option<String>,
    name: Option<String>,
}

/// Reads a traffic file.
pub fn parse(bytes: &[u8], bounds: Bounds) -> Result<TrafficLog, TrafficError> {
    if bytes.len() > bounds.max_bytes {
        return Err(TrafficError::TooLarge { size: bytes.len(), max: bounds.max_bytes });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(TrafficError::Empty);
    }
    // The fast reading first; only a file it refuses is read again to say where and why (a file
    // of another version gets that error, not a field's).
    // The fast reading: each edge typed and checked as it is read (the raw list is never held
    // whole). Only a file it refuses is read again to say where and why; a file of another
    // version gets that error, not a field's.
    let failed = std::cell::RefCell::new(None);
    let fast = serde::de::DeserializeSeed::deserialize(
        Fast { bounds, failed: &failed },
        &mut serde_json::Deserializer::from_slice(bytes),
    );
    match fast {
        Ok((SCHEMA_VERSION, edges)) => Ok(TrafficLog { edges }),
        Ok((other, _)) => Err(TrafficError::Version(other)),
        Err(_) => match explain(bytes) {
            version @ TrafficError::Version(_) => Err(version),
            other => Err(failed.into_inner().unwrap_or(other)),
        },
    }
}

/// [`parse`]'s fast reading: a traffic file's version and its edges, checked one by one; the
/// first edge that fails its checks is kept in `failed`.
struct Fast<'f> {
    bounds: Bounds,
    failed: &'f std::cell::RefCell<Option<TrafficError>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Fast<'_> {
    type Value = (u32, Vec<Edge>);

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Fast<'_> {
    type Value = (u32, Vec<Edge>);

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a traffic file")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut version, mut edges) = (None, Vec::new());
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "version" => version = Some(map.next_value::<u32>()?),
                "edges" => edges = map.next_value_seed(Edges { bounds: self.bounds, failed: self.failed })?,
                other => return Err(serde::de::Error::unknown_field(other, &["version", "edges"])),
            }
        }
        let version = version.ok_or_else(|| serde::de::Error::missing_field("version"))?;
        Ok((version, edges))
    }
}

/// The edge list of [`Fast`].
struct Edges<'f> {
    bounds: Bounds,
    failed: &'f std::cell::RefCell<Option<TrafficError>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Edges<'_> {
    type Value = Vec<Edge>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Edges<'_> {
    type Value = Vec<Edge>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of edges")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(raw) = seq.next_element::<RawEdge>()? {
            let index = out.len();
            let checked = if index >= self.bounds.max_edges {
                Err(TrafficError::TooManyEdges { max: self.bounds.max_edges })
            } else {
                edge(index, raw, self.bounds)
            };
            match checked {
                Ok(e) => out.push(e),
                Err(e) => {
                    let message = e.to_string();
                    *self.failed.borrow_mut() = Some(e);
                    return Err(serde::de::Error::custom(message));
                }
            }
        }
        Ok(out)
    }
}

/// Why `bytes` is not a traffic file: its version, or the path and message of the first error.
fn explain(bytes: &[u8]) -> TrafficError {
    #[derive(Deserialize)]
    struct Version {
        version: Option<u32>,
    }
    let json_error = |e: serde_path_to_error::Error<serde_json::Error>| TrafficError::Json {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    };
    let version: Version = match serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(bytes)) {
        Ok(v) => v,
        Err(e) => return json_error(e),
    };
    match version.version {
        Some(SCHEMA_VERSION) => {}
        Some(other) => return TrafficError::Version(other),
        None => return TrafficError::Json { path: ".".to_owned(), message: "missing field `version`".to_owned() },
    }
    match serde_path_to_error::deserialize::<_, RawLog>(&mut serde_json::Deserializer::from_slice(bytes)) {
        Err(e) => json_error(e),
        // Both readings accept it: not reached, but say something true.
        Ok(_) => TrafficError::Json { path: ".".to_owned(), message: "the file could not be read".to_owned() },
    }
}

fn edge(index: usize, raw: RawEdge, bounds: Bounds) -> Result<Edge, TrafficError> {
    let fail = |field: &str, message: String| TrafficError::Edge { index, field: field.to_owned(), message };
    let port = i32::try_from(raw.port)
        .ok()
        .filter(|p| (1..=65535).contains(p))
        .ok_or_else(|| fail("port", format!("{} is outside 1-65535", raw.port)))?;
    let protocol = match raw.protocol.as_deref() {
        None => Protocol::Tcp,
        Some(p) => Protocol::parse(p).ok_or_else(|| fail("protocol", format!("{p:?} is not TCP, UDP or SCTP")))?,
    };
    if raw.last_seen < raw.first_seen {
        return Err(fail("lastSeen", format!("{} is before firstSeen {}", raw.last_seen, raw.first_seen)));
    }
    if raw.count == 0 {
        return Err(fail("count", "an edge was seen at least once".to_owned()));
    }
    if raw.hours.len() > bounds.max_hours {
        return Err(fail(
            "hours",
            format!("{} hourly counts, over the limit of {}", raw.hours.len(), bounds.max_hours),
        ));
    }
    for (k, h) in raw.hours.iter().enumerate() {
        if h.count == 0 {
            return Err(fail(&format!("hours[{k}].count"), "an hour in the list was seen at least once".to_owned()));
        }
    }
    let source = peer(raw.source, false, bounds).map_err(|(f, m)| fail(&format!("source.{f}"), m))?;
    let destination = peer(raw.destination, true, bounds).map_err(|(f, m)| fail(&format!("destination.{f}"), m))?;
    Ok(Edge {
        source,
        destination,
        port,
        protocol,
        first_seen: raw.first_seen,
        last_seen: raw.last_seen,
        count: raw.count,
        hours: raw.hours,
    })
}

type FieldError = (&'static str, String);

fn peer(raw: RawPeer, destination: bool, bounds: Bounds) -> Result<Peer, FieldError> {
    match (raw.address, raw.workload) {
        (Some(_), Some(_)) => Err(("address", "a peer is a workload or an address, not both".to_owned())),
        (None, None) => Err(("workload", "a peer needs `workload` (with `namespace`) or `address`".to_owned())),
        (Some(address), None) => {
            if let Some(f) = [
                ("namespace", raw.namespace.is_some()),
                ("labels", raw.labels.is_some()),
                ("namespaceLabels", raw.namespace_labels.is_some()),
                ("ports", !raw.ports.is_empty()),
            ]
            .iter()
            .find(|(_, set)| *set)
            {
                return Err((f.0, "an address peer has only `address` (and, as a destination, `name`)".to_owned()));
            }
            let address: IpAddr =
                address.parse().map_err(|_| ("address", format!("{:?} is not an IP address", clip(&address))))?;
            let name = match raw.name {
                None => None,
                Some(_) if !destination => {
                    return Err(("name", "only a destination has the name its address was resolved from".to_owned()));
                }
                Some(n) => Some(crate::egress::parse_fqdn(&n).map_err(|e| ("name", format!("{:?}: {e}", clip(&n))))?),
            };
            Ok(Peer::Address(AddressPeer { address, name }))
        }
        (None, Some(workload)) => {
            if raw.name.is_some() {
                return Err(("name", "a workload peer has no DNS name".to_owned()));
            }
            let namespace = raw.namespace.ok_or(("namespace", "a workload peer needs its namespace".to_owned()))?;
            let labels = raw.labels.unwrap_or_default();
            check_workload(&namespace, &workload, &labels, bounds)?;
            if let Some(ns) = &raw.namespace_labels {
                check_labels(ns, bounds).map_err(|m| ("namespaceLabels", m))?;
            }
            if raw.ports.len() > bounds.max_labels {
                return Err(("ports", format!("{} ports, over the limit of {}", raw.ports.len(), bounds.max_labels)));
            }
            for p in &raw.ports {
                if !(1..=65535).contains(&p.port) {
                    return Err(("ports", format!("port {} is outside 1-65535", p.port)));
                }
                if p.name.as_ref().is_some_and(|n| n.is_empty() || n.len() > 15 || !is_dns_label(n)) {
                    return Err(("ports", "a port name is 1-15 lowercase letters, digits and '-'".to_owned()));
                }
            }
            Ok(Peer::Workload(WorkloadPeer {
                workload,
                namespace,
                labels,
                namespace_labels: raw.namespace_labels,
                ports: raw.ports,
            }))
        }
    }
}

/// A workload peer's namespace, `Kind/name` and labels, as the reader checks them.
fn check_workload(namespace: &str, workload: &str, labels: &Labels, bounds: Bounds) -> Result<(), FieldError> {
    if namespace.is_empty() || namespace.len() > 63 || !is_dns_label(namespace) {
        return Err(("namespace", format!("{:?} is not a namespace name", clip(namespace))));
    }
    workload
        .split_once('/')
        .filter(|(k, n)| is_kind(k) && !n.is_empty() && n.len() <= 253 && is_dns_subdomain(n))
        .ok_or_else(|| ("workload", format!("{:?}: expected Kind/name, as Deployment/payments", clip(workload))))?;
    check_labels(labels, bounds).map_err(|m| ("labels", m))
}

/// Whether a sensor's pod can be a workload peer of a traffic file (what the aggregator checks
/// before it records one, so that what it stores always reads back).
pub fn check_sensor_pod(pod: &crate::egress::observation::SensorPod) -> Result<(), String> {
    let workload = pod.workload.clone().unwrap_or_else(|| format!("Pod/{}", pod.name));
    check_workload(&pod.namespace, &workload, &pod.labels, Bounds::default()).map_err(|(field, m)| {
        let field = if field == "workload" && pod.workload.is_none() { "name" } else { field };
        format!("{field}: {m}")
    })
}

fn check_labels(labels: &Labels, bounds: Bounds) -> Result<(), String> {
    if labels.len() > bounds.max_labels {
        return Err(format!("{} labels, over the limit of {}", labels.len(), bounds.max_labels));
    }
    for (k, v) in labels {
        if let Some(p) = label_key_problem(k) {
            return Err(format!("key {:?}: {p}", clip(k)));
        }
        if let Some(p) = label_value_problem(v) {
            return Err(format!("value {:?} of {:?}: {p}", clip(v), clip(k)));
        }
    }
    Ok(())
}

/// A DNS label as Kubernetes names namespaces and ports: lowercase letters, digits and `-`,
/// starting and ending with a letter or digit.
fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// An object name: DNS labels joined by dots.
fn is_dns_subdomain(s: &str) -> bool {
    s.split('.').all(is_dns_label)
}

/// A kind: a letter, then letters and digits, at most 63.
fn is_kind(s: &str) -> bool {
    s.len() <= 63
        && s.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
        && s.bytes().all(|c| c.is_ascii_alphanumeric())
}

/// At most 100 characters of a hostile string, for an error message.
fn clip(s: &str) -> String {
    match s.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

impl TrafficLog {
    /// The log as a traffic file (`{"version": 1, "edges": [...]}`), compact.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        #[derive(Serialize)]
        struct File<'a> {
            version: u32,
            edges: &'a [Edge],
        }
        serde_json::to_vec(&File { version: SCHEMA_VERSION, edges: &self.edges })
    }

    /// The edges seen at or after `since`: with hourly counts, only the hours in the window
    /// count (an hour counts when it ends after `since`); without, an edge last seen in the
    /// window counts whole.
    pub fn since(&self, since: Timestamp) -> TrafficLog {
        let hour = jiff::SignedDuration::from_hours(1);
        let edges = self
            .edges
            .iter()
            .filter(|e| e.last_seen >= since)
            .filter_map(|e| {
                if e.hours.is_empty() {
                    return Some(e.clone());
                }
                let hours: Vec<HourCount> =
                    e.hours.iter().copied().filter(|h| h.hour.checked_add(hour).is_ok_and(|end| end > since)).collect();
                let count = hours.iter().map(|h| h.count).fold(0u64, u64::saturating_add);
                (count > 0).then(|| Edge {
                    first_seen: e.first_seen.max(hours.iter().map(|h| h.hour).min().unwrap_or(e.first_seen)),
                    count,
                    hours,
                    ..e.clone()
                })
            })
            .collect();
        TrafficLog { edges }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(edge: &str) -> Result<TrafficLog, TrafficError> {
        parse(format!(r#"{{"version":1,"edges":[{edge}]}}"#).as_bytes(), Bounds::default())
    }

    const GOOD: &str = r#"{"source":{"namespace":"shop","workload":"Deployment/pay","labels":{"app":"pay"}},
        "destination":{"address":"203.0.113.7","name":"API.Stripe.com."},"port":443,
        "firstSeen":"2026-11-19T08:00:00Z","lastSeen":"2026-11-25T23:10:00Z","count":3}"#;

    #[test]
    fn reads_a_good_edge_with_defaults() {
        let log = one(GOOD).unwrap();
        let e = &log.edges[0];
        assert_eq!(e.protocol, Protocol::Tcp);
        assert_eq!(e.destination.label(), "api.stripe.com (203.0.113.7)");
        assert_eq!(e.source.label(), "shop/Deployment/pay");
    }

    #[test]
    fn refuses_what_is_wrong_with_the_field_named() {
        let cases = [
            (GOOD.replace("443", "0"), "edges[0].port: 0 is outside 1-65535"),
            (GOOD.replace("\"port\":443", "\"port\":443,\"protocol\":\"tcp\""), "edges[0].protocol"),
            (GOOD.replace("203.0.113.7", "1.2.3"), "edges[0].destination.address"),
            (GOOD.replace("Deployment/pay", "pay"), "edges[0].source.workload"),
            (GOOD.replace("\"shop\"", "\"../etc\""), "edges[0].source.namespace"),
            (GOOD.replace("\"count\":3", "\"count\":0"), "edges[0].count"),
            (GOOD.replace("2026-11-19", "2026-11-29"), "edges[0].lastSeen"),
            (GOOD.replace("{\"app\":\"pay\"}", "{\"app\":\"p a y\"}"), "edges[0].source.labels"),
            (GOOD.replace("\"count\":3", "\"count\":3,\"extra\":1"), "unknown field `extra`"),
            (GOOD.replace("\"namespace\":\"shop\",", ""), "edges[0].source.namespace"),
            (
                GOOD.replace("\"address\":\"203.0.113.7\"", "\"address\":\"203.0.113.7\",\"namespace\":\"x\""),
                "edges[0].destination.namespace",
            ),
        ];
        for (text, want) in cases {
            let err = one(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }

    #[test]
    fn refuses_other_versions_empty_files_and_oversize() {
        let b = Bounds::default();
        assert!(matches!(parse(b"  \n", b), Err(TrafficError::Empty)));
        assert!(matches!(parse(br#"{"version":2,"edges":[{"bogus":1}]}"#, b), Err(TrafficError::Version(2))));
        assert!(matches!(parse(br#"{"edges":[]}"#, b), Err(TrafficError::Json { .. })));
        let small = Bounds { max_bytes: 10, ..b };
        assert!(matches!(parse(br#"{"version":1,"edges":[]}"#, small), Err(TrafficError::TooLarge { .. })));
        let few = Bounds { max_edges: 0, ..b };
        let text = format!(r#"{{"version":1,"edges":[{GOOD}]}}"#);
        assert!(matches!(parse(text.as_bytes(), few), Err(TrafficError::TooManyEdges { .. })));
    }

    #[test]
    fn a_hostile_string_is_clipped_in_errors() {
        let long = "x".repeat(10_000);
        let err = one(&GOOD.replace("203.0.113.7", &long)).unwrap_err().to_string();
        assert!(err.len() < 400, "{}", err.len());
    }

    #[test]
    fn since_keeps_the_hours_in_the_window() {
        let with_hours = GOOD.replace(
            "\"count\":3",
            r#""count":3,"hours":[{"hour":"2026-11-19T08:00:00Z","count":2},{"hour":"2026-11-25T23:00:00Z","count":1}]"#,
        );
        let log = one(&with_hours).unwrap();
        let cut: Timestamp = "2026-11-20T00:00:00Z".parse().unwrap();
        let w = log.since(cut);
        assert_eq!(w.edges[0].count, 1);
        assert_eq!(w.edges[0].first_seen, "2026-11-25T23:00:00Z".parse::<Timestamp>().unwrap());
        // An edge last seen before the window is gone; without hours an edge counts whole.
        assert!(log.since("2026-11-26T00:00:00Z".parse().unwrap()).edges.is_empty());
        assert_eq!(one(GOOD).unwrap().since(cut).edges[0].count, 3);
    }
}
