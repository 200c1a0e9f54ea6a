//! Attribution: which pod on this node owns a client address.
//!
//! Fed by a pod watch limited to this node (`spec.nodeName`); pods on the host network are left
//! out, since their address is the node's and names no single workload.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::RwLock;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use portcullis_linter::egress::observation::SensorPod;

/// Labels one attributed pod may carry, in number and in bytes (keys and values). Every
/// observation carries its pod's labels: a pod with more would make each of its observations
/// large (memory, and the webhook's 2 MiB request limit). Such a pod is left unattributed rather
/// than attributed with some labels dropped: a dropped label could make a `DoesNotExist` or
/// `NotIn` selector match, feeding its answers to an intent for other pods.
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_BYTES: usize = 8 * 1024;

/// Client address → pod, for the pods of this node.
#[derive(Debug, Default)]
pub struct PodDirectory {
    by_ip: RwLock<HashMap<IpAddr, SensorPod>>,
    /// Pod (namespace, name) → its addresses, to forget them on delete or change.
    by_pod: RwLock<HashMap<(String, String), Vec<IpAddr>>>,
}

impl PodDirectory {
    pub fn lookup(&self, ip: IpAddr) -> Option<SensorPod> {
        self.by_ip.read().ok()?.get(&ip).cloned()
    }

    /// Every address and its pod, by address.
    pub fn all(&self) -> Vec<(IpAddr, SensorPod)> {
        let mut all: Vec<(IpAddr, SensorPod)> =
            self.by_ip.read().map(|map| map.iter().map(|(ip, pod)| (*ip, pod.clone())).collect()).unwrap_or_default();
        all.sort_by_key(|(ip, _)| *ip);
        all
    }

    pub fn len(&self) -> usize {
        self.by_ip.read().map_or(0, |map| map.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records or updates `pod` (a watch Apply event).
    pub fn apply(&self, pod: &Pod, node: &str) {
        let key = pod_key(pod);
        self.forget(&key);
        let Some((ips, entry)) = entry(pod, node) else { return };
        if let (Ok(mut by_ip), Ok(mut by_pod)) = (self.by_ip.write(), self.by_pod.write()) {
            for ip in &ips {
                by_ip.insert(*ip, entry.clone());
            }
            by_pod.insert(key, ips);
        }
    }

    /// Forgets `pod` (a watch Delete event).
    pub fn delete(&self, pod: &Pod) {
        self.forget(&pod_key(pod));
    }

    /// Replaces everything (a watch relist).
    pub fn replace(&self, pods: &[Pod], node: &str) {
        if let (Ok(mut by_ip), Ok(mut by_pod)) = (self.by_ip.write(), self.by_pod.write()) {
            by_ip.clear();
            by_pod.clear();
            for pod in pods {
                if let Some((ips, entry)) = entry(pod, node) {
                    for ip in &ips {
                        by_ip.insert(*ip, entry.clone());
                    }
                    by_pod.insert(pod_key(pod), ips);
                }
            }
        }
    }

    fn forget(&self, key: &(String, String)) {
        if let (Ok(mut by_ip), Ok(mut by_pod)) = (self.by_ip.write(), self.by_pod.write())
            && let Some(ips) = by_pod.remove(key)
        {
            for ip in ips {
                // Only if the address still points at this pod: it may have been reused already.
                if by_ip.get(&ip).is_some_and(|pod| pod.namespace == key.0 && pod.name == key.1) {
                    by_ip.remove(&ip);
                }
            }
        }
    }
}

/// Reads a pod list as `kubectl get pods -o json` writes it (a `List`, or one Pod).
pub fn read_list(path: &std::path::Path) -> anyhow::Result<Vec<Pod>> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", path.display()))?;
    let items = match value.get("items") {
        Some(items) => items.clone(),
        None => serde_json::Value::Array(vec![value]),
    };
    serde_json::from_value(items).map_err(|e| anyhow::anyhow!("{}: not a list of Pods: {e}", path.display()))
}

fn pod_key(pod: &Pod) -> (String, String) {
    (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default())
}

/// The directory entry of `pod`, if it runs on `node`, is not on the host network, is not
/// finished, and has addresses.
pub fn entry(pod: &Pod, node: &str) -> Option<(Vec<IpAddr>, SensorPod)> {
    let spec = pod.spec.as_ref()?;
    if spec.node_name.as_deref() != Some(node) || spec.host_network == Some(true) {
        return None;
    }
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.ip.parse().ok())
        .chain(status.pod_ip.as_deref().and_then(|ip| ip.parse().ok()))
        .collect();
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        return None;
    }
    let meta = &pod.metadata;
    let labels = meta.labels.clone().unwrap_or_default();
    let name = meta.name.clone()?;
    let label_bytes: usize = labels.iter().map(|(k, v)| k.len() + v.len()).sum();
    if labels.len() > MAX_LABELS || label_bytes > MAX_LABEL_BYTES {
        tracing::warn!(
            namespace = meta.namespace.as_deref().unwrap_or_default(),
            pod = %name,
            labels = labels.len(),
            bytes = label_bytes,
            "pod not attributed: more than {MAX_LABELS} labels or {MAX_LABEL_BYTES} bytes of them"
        );
        return None;
    }
    let workload = workload(meta.owner_references.as_deref().unwrap_or_default(), &labels, &name);
    Some((
        ips,
        SensorPod { namespace: meta.namespace.clone().unwrap_or_default(), name, workload: Some(workload), labels },
    ))
}

/// `Kind/name` of the workload that owns a pod: a ReplicaSet named `<deployment>-<pod-template-hash>`
/// stands for its Deployment, a Job named `<cronjob>-<scheduled minute>` for its CronJob.
pub fn workload(owners: &[OwnerReference], labels: &std::collections::BTreeMap<String, String>, pod: &str) -> String {
    let Some(owner) = owners.iter().find(|owner| owner.controller == Some(true)).or(owners.first()) else {
        return format!("Pod/{pod}");
    };
    match owner.kind.as_str() {
        "ReplicaSet" => {
            if let Some(hash) = labels.get("pod-template-hash")
                && let Some(deployment) = owner.name.strip_suffix(&format!("-{hash}"))
            {
                return format!("Deployment/{deployment}");
            }
        }
        "Job" => {
            if let Some((cronjob, minute)) = owner.name.rsplit_once('-')
                && !minute.is_empty()
                && minute.bytes().all(|b| b.is_ascii_digit())
            {
                return format!("CronJob/{cronjob}");
            }
        }
        _ => {}
    }
    format!("{}/{}", owner.kind, owner.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: &str, ip: &str, owner: Option<(&str, &str)>, host_network: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name, "namespace": "shop",
                "labels": {"app": "pay", "pod-template-hash": "7f9c"},
                "ownerReferences": owner.map(|(kind, name)| vec![serde_json::json!({
                    "apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u", "controller": true
                })]).unwrap_or_default(),
            },
            "spec": {"nodeName": node, "hostNetwork": host_network, "containers": []},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}, {"ip": "fd00::5"}]},
        }))
        .unwrap()
    }

    #[test]
    fn pods_of_this_node_are_found_by_every_address() {
        let directory = PodDirectory::default();
        directory.apply(&pod("pay-7f9c-x", "n1", "10.0.1.5", Some(("ReplicaSet", "pay-7f9c")), false), "n1");
        let found = directory.lookup("10.0.1.5".parse().unwrap()).unwrap();
        assert_eq!(found.workload.as_deref(), Some("Deployment/pay"));
        assert_eq!(found.labels.get("app").map(String::as_str), Some("pay"));
        assert!(directory.lookup("fd00::5".parse().unwrap()).is_some());
        directory.delete(&pod("pay-7f9c-x", "n1", "10.0.1.5", None, false));
        assert!(directory.is_empty());
    }

    #[test]
    fn a_pod_with_oversized_labels_is_not_attributed() {
        let directory = PodDirectory::default();
        let mut many = pod("many", "n1", "10.0.1.6", None, false);
        many.metadata.labels = Some((0..=MAX_LABELS).map(|i| (format!("k{i}"), "v".to_owned())).collect());
        directory.apply(&many, "n1");
        let mut big = pod("big", "n1", "10.0.1.7", None, false);
        // 40 labels (within the count), 283 bytes each: over the byte bound.
        let prefix = "a".repeat(200);
        big.metadata.labels =
            Some((0..40).map(|i| (format!("{prefix}.example.com/key-{i:03}"), "v".repeat(63))).collect());
        directory.apply(&big, "n1");
        assert!(directory.is_empty());
        let mut fits = pod("fits", "n1", "10.0.1.8", None, false);
        fits.metadata.labels = Some((0..MAX_LABELS).map(|i| (format!("k{i}"), "v".repeat(63))).collect());
        directory.apply(&fits, "n1");
        assert_eq!(directory.lookup("10.0.1.8".parse().unwrap()).unwrap().labels.len(), MAX_LABELS);
    }

    #[test]
    fn other_nodes_and_host_network_pods_are_left_out() {
        let directory = PodDirectory::default();
        directory.apply(&pod("a", "n2", "10.0.2.5", None, false), "n1");
        directory.apply(&pod("b", "n1", "192.168.0.10", None, true), "n1");
        assert!(directory.is_empty());
    }

    #[test]
    fn a_reused_address_is_not_forgotten_with_its_old_pod() {
        let directory = PodDirectory::default();
        directory.apply(&pod("old", "n1", "10.0.1.9", None, false), "n1");
        directory.replace(&[pod("new", "n1", "10.0.1.9", None, false)], "n1");
        directory.delete(&pod("old", "n1", "10.0.1.9", None, false));
        assert_eq!(directory.lookup("10.0.1.9".parse().unwrap()).unwrap().name, "new");
    }

    #[test]
    fn workloads_from_owner_references() {
        let labels = [("pod-template-hash".to_owned(), "abc".to_owned())].into();
        let owner = |kind: &str, name: &str| OwnerReference {
            kind: kind.into(),
            name: name.into(),
            controller: Some(true),
            ..Default::default()
        };
        assert_eq!(workload(&[owner("ReplicaSet", "api-abc")], &labels, "p"), "Deployment/api");
        assert_eq!(workload(&[owner("ReplicaSet", "api-zzz")], &labels, "p"), "ReplicaSet/api-zzz");
        assert_eq!(workload(&[owner("Job", "nightly-29012345")], &labels, "p"), "CronJob/nightly");
        assert_eq!(workload(&[owner("StatefulSet", "db")], &labels, "p"), "StatefulSet/db");
        assert_eq!(workload(&[], &labels, "p"), "Pod/p");
    }
}
