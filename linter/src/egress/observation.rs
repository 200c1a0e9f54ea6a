//! The sensor's observation record (DESIGN §8) on the wire: one JSON object per answered DNS
//! query, written as JSON lines by `portcullis-sensor --output stdout` and sent in batches to the
//! webhook's `POST /v1/observations`.
//!
//! ```json
//! {"ts":"2026-11-21T10:00:00Z","node":"n1",
//!  "client":{"ip":"10.0.1.5","pod":{"namespace":"shop","name":"pay-7f9c","workload":"Deployment/pay","labels":{"app":"pay"}}},
//!  "server":"10.96.0.10","qname":"api.stripe.com","answers":[{"ip":"1.2.3.4","ttl":60}],"cnames":[]}
//! ```
//!
//! `client.pod.labels` extends the DESIGN record: the controller needs the pod's labels to know
//! which intents select it, and the sensor already has them from its pod watch.

use std::collections::BTreeMap;
use std::net::IpAddr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::intents::{Answer, ClientPod, Observation};

/// Most observations one `POST /v1/observations` may carry.
pub const MAX_BATCH: usize = 1_000;
/// Most addresses one observation may carry (a DNS response over UDP holds far fewer).
pub const MAX_ANSWERS: usize = 256;
/// Most CNAME hops one observation may carry.
pub const MAX_CNAMES: usize = 16;

/// One answered query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorObservation {
    pub ts: Timestamp,
    pub node: String,
    pub client: SensorClient,
    /// The resolver that answered.
    pub server: IpAddr,
    pub qname: String,
    pub answers: Vec<SensorAnswer>,
    #[serde(default)]
    pub cnames: Vec<String>,
}

/// Who asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorClient {
    pub ip: IpAddr,
    /// Absent when the address belongs to no pod the sensor knows (offline, or a host process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<SensorPod>,
}

/// The pod behind the client address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorPod {
    pub namespace: String,
    pub name: String,
    /// `Kind/name` of the owning workload (a ReplicaSet's Deployment, a Job's CronJob).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A connection start (`portcullis-sensor --flows`), as JSON lines beside the observations:
///
/// ```json
/// {"ts":"2026-11-26T18:30:00Z","node":"n1","flow":{"kind":"syn","protocol":"TCP",
///  "source":{"ip":"10.0.1.5","port":40312,"pod":{"namespace":"shop","name":"pay-7f9c","workload":"Deployment/pay"}},
///  "destination":{"ip":"203.0.113.7","port":443}}}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorFlow {
    pub ts: Timestamp,
    pub node: String,
    pub flow: FlowStart,
}

/// What the kernel saw start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FlowKind {
    /// A TCP SYN: a connection tried.
    Syn,
    /// A TCP SYN-ACK: the connection answered (its source is the server).
    SynAck,
    /// A UDP or SCTP datagram of a 5-tuple not reported within the sensor's interval.
    Datagram,
}

/// The connection: its kind, protocol and ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowStart {
    pub kind: FlowKind,
    pub protocol: crate::model::Protocol,
    pub source: FlowEnd,
    pub destination: FlowEnd,
}

/// One end of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowEnd {
    pub ip: IpAddr,
    pub port: u16,
    /// The pod of the reporting node with that address, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<SensorPod>,
}

/// One address and its TTL in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorAnswer {
    pub ip: IpAddr,
    pub ttl: u32,
}

/// The body of `POST /v1/observations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservationBatch {
    pub observations: Vec<SensorObservation>,
}

/// Most connection starts one `POST /v1/flows` may carry.
pub const MAX_FLOW_BATCH: usize = 10_000;
/// Most pods one `POST /v1/flows` may list (a node runs at most a few hundred).
pub const MAX_BATCH_PODS: usize = 2_048;

/// The body of `POST /v1/flows`: a node's connection starts since its last batch, and the pods
/// the node runs (so the aggregator knows every node's pod addresses, even right after it
/// restarted, and can attribute the far end of a connection).
///
/// `boot` and `seq` make a batch recognisable: a sensor sends its batches one at a time, in
/// order, and sends a batch again until an aggregator says it is durable, so a batch seen
/// before is acknowledged without being counted twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowBatch {
    pub node: String,
    /// Chosen at each sensor start (its process start time and id).
    pub boot: String,
    /// 1 for the first batch of a boot, then one more per batch.
    pub seq: u64,
    #[serde(default)]
    pub pods: Vec<PodAddress>,
    #[serde(default)]
    pub flows: Vec<SensorFlow>,
}

/// A pod of the reporting node and one of its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodAddress {
    pub ip: IpAddr,
    pub pod: SensorPod,
}

impl FlowBatch {
    /// Checks the bounds and shape a receiver relies on; the message names the first problem.
    pub fn validate(&self) -> Result<(), String> {
        if self.node.is_empty() || self.node.len() > 253 {
            return Err("node must be a node name (1-253 characters)".to_owned());
        }
        if self.boot.is_empty() || self.boot.len() > 64 {
            return Err("boot must be 1-64 characters".to_owned());
        }
        if self.seq == 0 {
            return Err("seq starts at 1".to_owned());
        }
        if self.flows.len() > MAX_FLOW_BATCH {
            return Err(format!("{} flows (at most {MAX_FLOW_BATCH} per batch)", self.flows.len()));
        }
        if self.pods.len() > MAX_BATCH_PODS {
            return Err(format!("{} pods (at most {MAX_BATCH_PODS} per batch)", self.pods.len()));
        }
        for (index, p) in self.pods.iter().enumerate() {
            crate::replay::traffic::check_sensor_pod(&p.pod).map_err(|m| format!("pods[{index}].pod: {m}"))?;
        }
        for (index, f) in self.flows.iter().enumerate() {
            if f.node != self.node {
                return Err(format!(
                    "flows[{index}].node: {:?} is not the batch's node",
                    f.node.chars().take(64).collect::<String>()
                ));
            }
            for (end, e) in [("source", &f.flow.source), ("destination", &f.flow.destination)] {
                if let Some(pod) = &e.pod {
                    crate::replay::traffic::check_sensor_pod(pod)
                        .map_err(|m| format!("flows[{index}].flow.{end}.pod: {m}"))?;
                }
            }
        }
        Ok(())
    }
}

impl SensorObservation {
    /// Checks the bounds and shape a receiver relies on; the message names the first problem.
    pub fn validate(&self) -> Result<(), String> {
        if self.answers.len() > MAX_ANSWERS {
            return Err(format!("{} answers (at most {MAX_ANSWERS})", self.answers.len()));
        }
        if self.cnames.len() > MAX_CNAMES {
            return Err(format!("{} CNAMEs (at most {MAX_CNAMES})", self.cnames.len()));
        }
        for name in std::iter::once(&self.qname).chain(&self.cnames) {
            if name.is_empty() || name.len() > 253 {
                return Err(format!("name {name:?} is not a DNS name"));
            }
        }
        if let Some(pod) = &self.client.pod
            && (pod.namespace.is_empty() || pod.name.is_empty())
        {
            return Err("client.pod needs a namespace and a name".to_owned());
        }
        Ok(())
    }

    /// The controller's view: `None` when no pod is known (nothing could select the client).
    pub fn to_observation(&self) -> Option<Observation> {
        let pod = self.client.pod.as_ref()?;
        Some(Observation {
            client: ClientPod { namespace: pod.namespace.clone(), labels: pod.labels.clone() },
            qname: self.qname.clone(),
            answers: self.answers.iter().map(|answer| Answer { ip: answer.ip, ttl: answer.ttl }).collect(),
            cnames: self.cnames.clone(),
            at: self.ts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"ts":"2026-11-21T10:00:00Z","node":"n1","client":{"ip":"10.0.1.5","pod":{"namespace":"shop","name":"pay-7f9c","workload":"Deployment/pay","labels":{"app":"pay"}}},"server":"10.96.0.10","qname":"api.stripe.com","answers":[{"ip":"1.2.3.4","ttl":60}],"cnames":[]}"#;

    #[test]
    fn round_trips_the_design_record() {
        let parsed: SensorObservation = serde_json::from_str(LINE).unwrap();
        assert_eq!(serde_json::to_string(&parsed).unwrap(), LINE);
        let observation = parsed.to_observation().unwrap();
        assert_eq!(observation.client.namespace, "shop");
        assert_eq!(observation.answers, [Answer { ip: "1.2.3.4".parse().unwrap(), ttl: 60 }]);
        parsed.validate().unwrap();
    }

    #[test]
    fn without_a_pod_there_is_nothing_to_select() {
        let line = r#"{"ts":"2026-11-21T10:00:00Z","node":"n1","client":{"ip":"10.0.1.5"},"server":"10.96.0.10","qname":"a.test","answers":[]}"#;
        let parsed: SensorObservation = serde_json::from_str(line).unwrap();
        assert!(parsed.to_observation().is_none());
        assert!(serde_json::from_str::<SensorObservation>(&line.replace("\"node\"", "\"nod\"")).is_err());
    }

    #[test]
    fn validation_bounds_the_record() {
        let mut parsed: SensorObservation = serde_json::from_str(LINE).unwrap();
        parsed.cnames = vec!["c.test".to_owned(); MAX_CNAMES + 1];
        assert!(parsed.validate().unwrap_err().contains("CNAMEs"));
        parsed.cnames.clear();
        parsed.qname = String::new();
        assert!(parsed.validate().is_err());
    }
}
