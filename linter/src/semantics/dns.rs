//! Can a workload resolve names? Cluster DNS as a destination, shared by the DNS rules, `fix`
//! and the webhook's mutation.

use std::net::IpAddr;

use ipnet::IpNet;

use super::evaluator::{Direction, Endpoint, Evaluator, PodView, RuleRef, Traffic};
use crate::config::DnsConfig;
use crate::model::{ContainerPort, Labels, NAMESPACE_NAME_LABEL, PolicyId, Protocol, WorkloadId};

/// DNS port.
pub const DNS_PORT: i32 = 53;

/// Cluster DNS as the evaluator sees it: the kube-dns pods (with the container ports CoreDNS
/// declares: `dns` UDP 53, `dns-tcp` TCP 53) and any extra addresses such as NodeLocal DNSCache.
#[derive(Debug, Clone)]
pub struct DnsTarget {
    pub namespace: String,
    pub pod_labels: Labels,
    pub namespace_labels: Labels,
    pub ports: Vec<ContainerPort>,
    pub extra: Vec<IpNet>,
    extra_addresses: Vec<IpAddr>,
}

impl DnsTarget {
    /// Builds the target from config, taking the namespace's labels from the inventory when the
    /// Namespace object is in the input.
    pub fn new(config: &DnsConfig, eval: &Evaluator<'_>) -> DnsTarget {
        let mut namespace_labels = eval.namespace_labels(&config.namespace).clone();
        namespace_labels.insert(NAMESPACE_NAME_LABEL.to_owned(), config.namespace.clone());
        DnsTarget {
            namespace: config.namespace.clone(),
            pod_labels: config.pod_labels.clone(),
            namespace_labels,
            ports: vec![
                ContainerPort { name: Some("dns".to_owned()), port: DNS_PORT, protocol: Protocol::Udp },
                ContainerPort { name: Some("dns-tcp".to_owned()), port: DNS_PORT, protocol: Protocol::Tcp },
            ],
            extra: config.extra_ip_blocks.clone(),
            extra_addresses: config.extra_ip_blocks.iter().map(|n| n.addr()).collect(),
        }
    }

    /// The kube-dns pods as a peer.
    pub fn pod(&self) -> PodView<'_> {
        PodView {
            namespace: &self.namespace,
            labels: &self.pod_labels,
            namespace_labels: &self.namespace_labels,
            ports: &self.ports,
            ips: &[],
            host_network: false,
            workload: None,
        }
    }

    /// Every DNS destination: the pods, then each extra address.
    pub fn endpoints(&self) -> impl Iterator<Item = Endpoint<'_>> {
        std::iter::once(Endpoint::Pod(self.pod())).chain(self.extra_addresses.iter().map(|ip| Endpoint::Address(*ip)))
    }
}

/// How a workload's egress treats DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsReach {
    /// Policies isolating the workload's egress.
    pub isolated_by: Vec<PolicyId>,
    /// Rules that let UDP 53 through to some DNS destination.
    pub udp: Vec<RuleRef>,
    /// Rules that let TCP 53 through to some DNS destination.
    pub tcp: Vec<RuleRef>,
}

/// DNS reachability of a workload's pods; `None` when their egress is not isolated (or they use
/// the host network, where NetworkPolicy does not apply).
pub fn dns_reach(eval: &Evaluator<'_>, workload: WorkloadId, target: &DnsTarget) -> Option<DnsReach> {
    let pod = eval.pod(workload);
    let isolated_by = eval.isolating_policies(&pod, Direction::Egress);
    if isolated_by.is_empty() {
        return None;
    }
    let mut reach = DnsReach { isolated_by, udp: Vec::new(), tcp: Vec::new() };
    for endpoint in target.endpoints() {
        for (protocol, out) in [(Protocol::Udp, &mut reach.udp), (Protocol::Tcp, &mut reach.tcp)] {
            let traffic = Traffic { port: DNS_PORT, protocol };
            for rule in eval.allowing_rules(&pod, Direction::Egress, &reach.isolated_by, &endpoint, traffic) {
                if !out.contains(&rule) {
                    out.push(rule);
                }
            }
        }
    }
    Some(reach)
}
