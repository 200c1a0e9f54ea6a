//! The egress map: which workload resolved which external names, to which addresses, and when
//! it last did, built from sensor observations ([`super::observation`]).
//!
//! Bounded in every dimension (workloads, names per workload, addresses per name); the least
//! recently seen entry goes first. Ordering is deterministic (by namespace, workload, name,
//! address), so every rendering of the same observations is byte-identical.

use std::collections::BTreeMap;
use std::net::IpAddr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::observation::SensorObservation;

/// Bounds of an [`EgressMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapLimits {
    pub workloads: usize,
    pub names_per_workload: usize,
    pub addresses_per_name: usize,
}

impl Default for MapLimits {
    fn default() -> Self {
        Self { workloads: 10_000, names_per_workload: 1_000, addresses_per_name: 64 }
    }
}

/// Who asked: a workload of a namespace, or (unattributed) a bare client address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkloadKey {
    /// Empty for an address no pod was known for.
    pub namespace: String,
    /// `Deployment/pay`, `Pod/x`, or the client address when unattributed.
    pub workload: String,
}

impl WorkloadKey {
    pub fn is_attributed(&self) -> bool {
        !self.namespace.is_empty()
    }
}

impl std::fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_attributed() {
            write!(f, "{}/{}", self.namespace, self.workload)
        } else {
            write!(f, "{}", self.workload)
        }
    }
}

/// One name a workload resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NameEntry {
    pub name: String,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// Answers seen.
    pub count: u64,
    /// The CNAME chain of the latest answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cnames: Vec<String>,
    pub addresses: Vec<AddressEntry>,
}

/// One address a name resolved to, and when it last did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddressEntry {
    pub ip: IpAddr,
    pub last_seen: Timestamp,
}

/// One workload's egress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEntry {
    #[serde(flatten)]
    pub key: WorkloadKey,
    /// The pod labels of the latest observation (the selector an exported intent uses).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub last_seen: Timestamp,
    pub names: Vec<NameEntry>,
}

/// The map as `GET /v1/map` serves it and `portcullis map --format json` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapSnapshot {
    pub workloads: Vec<WorkloadEntry>,
}

#[derive(Debug, Clone)]
struct Workload {
    labels: BTreeMap<String, String>,
    last_seen: Timestamp,
    names: BTreeMap<String, Name>,
}

#[derive(Debug, Clone)]
struct Name {
    first_seen: Timestamp,
    last_seen: Timestamp,
    count: u64,
    cnames: Vec<String>,
    addresses: BTreeMap<IpAddr, Timestamp>,
}

/// The aggregated map.
#[derive(Debug, Clone, Default)]
pub struct EgressMap {
    limits: MapLimits,
    workloads: BTreeMap<WorkloadKey, Workload>,
}

/// Removes the least recently seen entry of `map` (by `seen`) when it holds more than `limit`.
fn evict<K: Ord + Clone, V>(map: &mut BTreeMap<K, V>, limit: usize, seen: impl Fn(&V) -> Timestamp) {
    while map.len() > limit {
        let Some(oldest) = map.iter().min_by_key(|(_, v)| seen(v)).map(|(k, _)| k.clone()) else { return };
        map.remove(&oldest);
    }
}

impl EgressMap {
    pub fn new(limits: MapLimits) -> Self {
        Self { limits, workloads: BTreeMap::new() }
    }

    pub fn len(&self) -> usize {
        self.workloads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workloads.is_empty()
    }

    /// Adds one observation.
    pub fn record(&mut self, observation: &SensorObservation) {
        let (key, labels) = match &observation.client.pod {
            Some(pod) => (
                WorkloadKey {
                    namespace: pod.namespace.clone(),
                    workload: pod.workload.clone().unwrap_or_else(|| format!("Pod/{}", pod.name)),
                },
                pod.labels.clone(),
            ),
            None => {
                (WorkloadKey { namespace: String::new(), workload: observation.client.ip.to_string() }, BTreeMap::new())
            }
        };
        let at = observation.ts;
        let workload = self.workloads.entry(key).or_insert_with(|| Workload {
            labels: BTreeMap::new(),
            last_seen: at,
            names: BTreeMap::new(),
        });
        if at >= workload.last_seen || workload.labels.is_empty() {
            workload.labels = labels;
        }
        workload.last_seen = workload.last_seen.max(at);
        let name = workload.names.entry(observation.qname.clone()).or_insert_with(|| Name {
            first_seen: at,
            last_seen: at,
            count: 0,
            cnames: Vec::new(),
            addresses: BTreeMap::new(),
        });
        name.count += 1;
        name.first_seen = name.first_seen.min(at);
        if at >= name.last_seen {
            name.cnames = observation.cnames.clone();
        }
        name.last_seen = name.last_seen.max(at);
        for answer in &observation.answers {
            let seen = name.addresses.entry(answer.ip).or_insert(at);
            *seen = (*seen).max(at);
        }
        evict(&mut name.addresses, self.limits.addresses_per_name, |t| *t);
        evict(&mut workload.names, self.limits.names_per_workload, |n| n.last_seen);
        evict(&mut self.workloads, self.limits.workloads, |w| w.last_seen);
    }

    /// Adds everything of a snapshot (another map, or an earlier `/v1/map`).
    pub fn merge(&mut self, snapshot: &MapSnapshot) {
        for entry in &snapshot.workloads {
            let workload = self.workloads.entry(entry.key.clone()).or_insert_with(|| Workload {
                labels: BTreeMap::new(),
                last_seen: entry.last_seen,
                names: BTreeMap::new(),
            });
            if entry.last_seen >= workload.last_seen || workload.labels.is_empty() {
                workload.labels = entry.labels.clone();
            }
            workload.last_seen = workload.last_seen.max(entry.last_seen);
            for incoming in &entry.names {
                let name = workload.names.entry(incoming.name.clone()).or_insert_with(|| Name {
                    first_seen: incoming.first_seen,
                    last_seen: incoming.last_seen,
                    count: 0,
                    cnames: Vec::new(),
                    addresses: BTreeMap::new(),
                });
                name.count = name.count.saturating_add(incoming.count);
                name.first_seen = name.first_seen.min(incoming.first_seen);
                if incoming.last_seen >= name.last_seen {
                    name.cnames = incoming.cnames.clone();
                }
                name.last_seen = name.last_seen.max(incoming.last_seen);
                for address in &incoming.addresses {
                    let seen = name.addresses.entry(address.ip).or_insert(address.last_seen);
                    *seen = (*seen).max(address.last_seen);
                }
                evict(&mut name.addresses, self.limits.addresses_per_name, |t| *t);
            }
            evict(&mut workload.names, self.limits.names_per_workload, |n| n.last_seen);
        }
        evict(&mut self.workloads, self.limits.workloads, |w| w.last_seen);
    }

    /// The map, sorted.
    pub fn snapshot(&self) -> MapSnapshot {
        let workloads = self
            .workloads
            .iter()
            .map(|(key, w)| WorkloadEntry {
                key: key.clone(),
                labels: w.labels.clone(),
                last_seen: w.last_seen,
                names: w
                    .names
                    .iter()
                    .map(|(name, n)| NameEntry {
                        name: name.clone(),
                        first_seen: n.first_seen,
                        last_seen: n.last_seen,
                        count: n.count,
                        cnames: n.cnames.clone(),
                        addresses: n.addresses.iter().map(|(ip, t)| AddressEntry { ip: *ip, last_seen: *t }).collect(),
                    })
                    .collect(),
            })
            .collect();
        MapSnapshot { workloads }
    }
}

/// A line of input that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputProblem {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

/// Reads what `portcullis map --from FILE` accepts: the sensor's JSON lines, or a map snapshot
/// (a `/v1/map` response). Bad lines are reported and skipped; the rest is used.
pub fn read_map(text: &str, limits: MapLimits) -> (EgressMap, Vec<InputProblem>) {
    let mut map = EgressMap::new(limits);
    let mut problems = Vec::new();
    let trimmed = text.trim_start();
    if trimmed.starts_with('{')
        && let Ok(snapshot) = serde_json::from_str::<MapSnapshot>(trimmed)
    {
        map.merge(&snapshot);
        return (map, problems);
    }
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        // The sensor's connection starts (`--flows`) share its output; the DNS map skips them.
        if line.starts_with("{\"ts\"") && line.contains(",\"flow\":{") {
            continue;
        }
        match serde_json::from_str::<SensorObservation>(line) {
            Ok(observation) => match observation.validate() {
                Ok(()) => map.record(&observation),
                Err(message) => problems.push(InputProblem { line: index + 1, message }),
            },
            Err(e) => {
                problems.push(InputProblem { line: index + 1, message: format!("not a sensor observation: {e}") })
            }
        }
    }
    (map, problems)
}

/// How many sibling names under one parent make `export_intents` suggest a `*.parent` pattern.
pub const PATTERN_SIBLINGS: usize = 5;

/// Labels the controllers set per rollout, per run or per pod: selecting on them would stop
/// matching the workload's next pods.
pub const VOLATILE_LABELS: &[&str] = &[
    "pod-template-hash",
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "job-name",
    "controller-uid",
    "batch.kubernetes.io/job-name",
    "batch.kubernetes.io/controller-uid",
    "batch.kubernetes.io/job-completion-index",
    "pod-template-generation",
];

/// What [`export_intents`] wrote, and what it left out and why.
#[derive(Debug, Default, PartialEq)]
pub struct Export {
    pub intents: Vec<Value>,
    pub skipped: Vec<String>,
}

/// The EgressIntents that allow exactly what was observed: one per attributed workload, named
/// after it, selecting its pods by their labels (minus [`VOLATILE_LABELS`]). Names are exact
/// `fqdn` targets, except that [`PATTERN_SIBLINGS`] or more names one label under the same
/// parent become one `*.parent` pattern; names that are not valid FQDNs are left out. The sensor
/// sees DNS, not connections, so no ports are known: the targets carry none (every port), and an
/// annotation says so.
pub fn export_intents(snapshot: &MapSnapshot) -> Export {
    let mut export = Export::default();
    for workload in &snapshot.workloads {
        if !workload.key.is_attributed() {
            export
                .skipped
                .push(format!("{}: no pod is known for this address, so nothing can select it", workload.key));
            continue;
        }
        let labels: BTreeMap<&String, &String> =
            workload.labels.iter().filter(|(k, _)| !VOLATILE_LABELS.contains(&k.as_str())).collect();
        if labels.is_empty() {
            export.skipped.push(format!("{}: its pods have no stable labels to select them by", workload.key));
            continue;
        }
        let mut names: Vec<&str> = Vec::new();
        for name in &workload.names {
            match super::parse_fqdn(&name.name) {
                Ok(_) => names.push(name.name.as_str()),
                Err(e) => export.skipped.push(format!("{}: {:?} is not an FQDN ({e})", workload.key, name.name)),
            }
        }
        if names.is_empty() {
            continue;
        }
        let targets: Vec<Value> = group_names(&names)
            .into_iter()
            .map(|target| match target {
                Target::Exact(name) => json!({ "fqdn": name }),
                Target::Pattern(parent) => json!({ "fqdnPattern": format!("*.{parent}") }),
            })
            .collect();
        let short = workload.key.workload.rsplit('/').next().unwrap_or(&workload.key.workload);
        export.intents.push(json!({
            "apiVersion": super::API_VERSION,
            "kind": super::KIND,
            "metadata": {
                "name": format!("{}-egress", sanitize(short)),
                "namespace": workload.key.namespace,
                "annotations": {
                    "portcullis.dev/generated": format!("portcullis map --export-intents: observed from {}", workload.key.workload),
                    "portcullis.dev/ports": "unknown (the sensor sees DNS, not connections): add ports before applying",
                },
            },
            "spec": {
                "podSelector": {"matchLabels": labels},
                "egress": targets,
            },
        }));
    }
    export
}

#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    Exact(&'a str),
    Pattern(&'a str),
}

fn group_names<'a>(names: &[&'a str]) -> Vec<Target<'a>> {
    let mut by_parent: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for name in names {
        if let Some((_, parent)) = name.split_once('.')
            && parent.contains('.')
        {
            by_parent.entry(parent).or_default().push(name);
        }
    }
    let mut out = Vec::new();
    let mut covered = std::collections::BTreeSet::new();
    for (parent, children) in &by_parent {
        if children.len() >= PATTERN_SIBLINGS {
            out.push(Target::Pattern(parent));
            covered.extend(children.iter().copied());
        }
    }
    out.extend(names.iter().filter(|n| !covered.contains(*n)).map(|n| Target::Exact(n)));
    out.sort_by_key(|t| match t {
        Target::Exact(n) | Target::Pattern(n) => *n,
    });
    out
}

/// A DNS-1123 name from a workload name.
pub(crate) fn sanitize(text: &str) -> String {
    let mut out: String =
        text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    out.truncate(63 - "-egress".len());
    out.trim_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ts: &str, workload: Option<&str>, qname: &str, ip: &str) -> String {
        let client = match workload {
            Some(w) => {
                json!({"ip": "10.0.1.5", "pod": {"namespace": "shop", "name": "p", "workload": w, "labels": {"app": "pay", "pod-template-hash": "abc"}}})
            }
            None => json!({"ip": "10.0.9.9"}),
        };
        json!({"ts": ts, "node": "n1", "client": client, "server": "10.96.0.10", "qname": qname,
            "answers": [{"ip": ip, "ttl": 60}], "cnames": []})
        .to_string()
    }

    #[test]
    fn observations_aggregate_per_workload_and_name() {
        let text = [
            line("2026-11-21T10:00:00Z", Some("Deployment/pay"), "api.stripe.com", "1.2.3.4"),
            line("2026-11-21T10:05:00Z", Some("Deployment/pay"), "api.stripe.com", "1.2.3.5"),
            line("2026-11-21T10:01:00Z", None, "example.org", "5.6.7.8"),
            "not json".to_owned(),
            // A connection start from `portcullis-sensor --flows`: not a DNS observation, skipped.
            r#"{"ts":"2026-11-21T10:02:00Z","node":"n1","flow":{"kind":"syn","protocol":"TCP","source":{"ip":"10.0.1.5","port":40000},"destination":{"ip":"1.2.3.4","port":443}}}"#.to_owned(),
        ]
        .join("\n");
        let (map, problems) = read_map(&text, MapLimits::default());
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, 4);
        let snapshot = map.snapshot();
        assert_eq!(snapshot.workloads.len(), 2);
        let pay = &snapshot.workloads[1];
        assert_eq!(pay.key.to_string(), "shop/Deployment/pay");
        assert_eq!(pay.names[0].count, 2);
        assert_eq!(pay.names[0].addresses.len(), 2);
        // The snapshot reads back to the same map.
        let (again, problems) = read_map(&serde_json::to_string(&snapshot).unwrap(), MapLimits::default());
        assert!(problems.is_empty());
        assert_eq!(again.snapshot(), snapshot);
    }

    #[test]
    fn the_map_is_bounded_least_recently_seen_first() {
        let limits = MapLimits { workloads: 1, names_per_workload: 2, addresses_per_name: 1 };
        let mut map = EgressMap::new(limits);
        for (i, name) in ["a.test", "b.test", "c.test"].iter().enumerate() {
            let text = line(&format!("2026-11-21T10:0{i}:00Z"), Some("Deployment/pay"), name, &format!("1.1.1.{i}"));
            map.record(&serde_json::from_str(&text).unwrap());
        }
        map.record(
            &serde_json::from_str(&line("2026-11-21T10:09:00Z", Some("Deployment/pay"), "c.test", "9.9.9.9")).unwrap(),
        );
        map.record(&serde_json::from_str(&line("2026-11-21T09:00:00Z", None, "old.test", "2.2.2.2")).unwrap());
        let snapshot = map.snapshot();
        assert_eq!(snapshot.workloads.len(), 1);
        let names: Vec<&str> = snapshot.workloads[0].names.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["b.test", "c.test"]);
        assert_eq!(snapshot.workloads[0].names[1].addresses[0].ip.to_string(), "9.9.9.9");
    }

    #[test]
    fn many_siblings_become_a_pattern() {
        let names =
            ["a.cdn.test", "b.cdn.test", "c.cdn.test", "d.cdn.test", "e.cdn.test", "api.stripe.com", "x.y.test"];
        assert_eq!(
            group_names(&names),
            [Target::Exact("api.stripe.com"), Target::Pattern("cdn.test"), Target::Exact("x.y.test")]
        );
        assert_eq!(group_names(&names[..4]).len(), 4);
    }
}
