//! The cluster side of the sensor, kept thin: a pod watch limited to this node (attribution), and
//! the kube-dns Service and EndpointSlice addresses (trusted resolvers).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::pods::PodDirectory;

/// Keeps `pods` in step with the pods scheduled on `node`, forever.
pub async fn watch_pods(client: Client, node: String, pods: Arc<PodDirectory>) {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher::watcher(api, config).boxed();
    let mut relist: Vec<Pod> = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Apply(pod)) => pods.apply(&pod, &node),
            Ok(Event::Delete(pod)) => pods.delete(&pod),
            Ok(Event::Init) => relist.clear(),
            Ok(Event::InitApply(pod)) => relist.push(pod),
            Ok(Event::InitDone) => {
                pods.replace(&relist, &node);
                relist.clear();
                tracing::info!(pods = pods.len(), node, "pod addresses of this node loaded");
            }
            Err(err) => {
                tracing::warn!(%err, "pod watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

/// Publishes the cluster DNS addresses (the Service's cluster IPs and its endpoints) every 30 s.
pub async fn watch_resolvers(client: Client, namespace: String, service: String, out: watch::Sender<Vec<IpAddr>>) {
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let slices: Api<EndpointSlice> = Api::namespaced(client, &namespace);
    let selector = format!("kubernetes.io/service-name={service}");
    loop {
        let mut addresses = BTreeSet::new();
        match services.get(&service).await {
            Ok(svc) => {
                let spec = svc.spec.unwrap_or_default();
                for ip in spec.cluster_ips.unwrap_or_default().iter().chain(spec.cluster_ip.as_ref()) {
                    if let Ok(ip) = ip.parse::<IpAddr>() {
                        addresses.insert(ip);
                    }
                }
            }
            Err(err) => tracing::warn!(%err, namespace, service, "cannot read the cluster DNS Service"),
        }
        match slices.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => {
                for slice in list.items {
                    for endpoint in slice.endpoints {
                        addresses.extend(endpoint.addresses.iter().filter_map(|ip| ip.parse::<IpAddr>().ok()));
                    }
                }
            }
            Err(err) => tracing::warn!(%err, namespace, service, "cannot list the cluster DNS EndpointSlices"),
        }
        if !addresses.is_empty() {
            out.send_if_modified(|current| {
                let next: Vec<IpAddr> = addresses.iter().copied().collect();
                let changed = *current != next;
                if changed {
                    tracing::info!(resolvers = ?next, "trusted cluster resolvers");
                    *current = next;
                }
                changed
            });
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
}
