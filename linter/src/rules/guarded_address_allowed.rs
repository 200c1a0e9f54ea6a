use super::{Context, Rule, RuleMeta, declare_rule};
use crate::egress::Refusal;
use crate::finding::Finding;
use crate::semantics::evaluator::{applies, numeric_range};
use crate::semantics::{Direction, ParsedIpBlock};

/// The port cloud metadata services answer on (AWS, GCP, Azure, Alibaba: HTTP).
const METADATA_PORT: i32 = 80;

declare_rule! {
    /// ## What it does
    /// Finds egress `ipBlock`s that allow an address the address guard protects, such as the
    /// cloud metadata service.
    ///
    /// - any block containing a cloud metadata endpoint (`169.254.169.254`, `fd00:ec2::254`,
    ///   `100.100.100.200`, `168.63.129.16`, …) that it does not `except`, on TCP 80 or every
    ///   port, such as `0.0.0.0/0` without `except: [169.254.169.254/32]`;
    /// - a single address (`/32`, `/128`) that is loopback, unspecified, multicast, broadcast or
    ///   reserved;
    /// - in policies rendered by portcullis (`app.kubernetes.io/managed-by: portcullis`), any
    ///   address the guard refuses, including `addressGuard.clusterRanges` and private ranges
    ///   not allowed by `portcullis.yaml`: the controller and `portcullis resolve` never write
    ///   those, so a rendered policy holding one was edited or made by something else.
    ///
    /// ## Why is this bad?
    /// The metadata service hands out the node's cloud credentials to anyone who can reach it;
    /// a pod that can is one SSRF away from the cloud account. An "internet" rule of
    /// `0.0.0.0/0` that excepts only the private ranges still contains it.
    ///
    /// ## Example
    /// ```yaml
    ///   egress:
    ///   - to:
    ///     - ipBlock:
    ///         cidr: 0.0.0.0/0
    ///         except: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16]
    /// ```
    ///
    /// Use instead:
    /// ```yaml
    ///   egress:
    ///   - to:
    ///     - ipBlock:
    ///         cidr: 0.0.0.0/0
    ///         except: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16, 100.100.100.200/32, 168.63.129.16/32]
    /// ```
    ///
    /// ## Fix safety
    /// No automatic fix: whether the pods need the metadata service (some node agents do) is a
    /// decision; prefer IRSA, Workload Identity or Pod Identity over node credentials.
    pub struct GuardedAddressAllowed {
        code: "PC017",
        name: "guarded-address-allowed",
        severity: Error,
        fix: None,
    }
}

impl Rule for GuardedAddressAllowed {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        let guard = &cx.config.address_guard;
        for policy in cx.written_policies() {
            if !applies(policy, Direction::Egress) {
                continue;
            }
            let rendered = policy.managed_by_portcullis;
            for (i, rule) in policy.spec.egress.iter().flatten().enumerate() {
                let ports = rule.ports.as_deref().unwrap_or_default();
                let reaches_metadata_port = ports.is_empty()
                    || ports.iter().any(|p| {
                        p.protocol.as_deref().unwrap_or("TCP") == "TCP"
                            && (p.port.is_none() || numeric_range(p).is_some_and(|r| r.contains(&METADATA_PORT)))
                    });
                for (j, peer) in rule.to.iter().flatten().enumerate() {
                    let Some(block) = peer.ip_block.as_ref().and_then(|b| ParsedIpBlock::parse(b).ok()) else {
                        continue;
                    };
                    let host = block.cidr.prefix_len() == block.cidr.max_prefix_len();
                    let found = if host {
                        let ip = block.cidr.addr();
                        guard
                            .check(ip)
                            .err()
                            .filter(|r| rendered || flagged_host(r, reaches_metadata_port))
                            .map(|r| (ip, r))
                    } else if reaches_metadata_port {
                        guard.refused_in(&block.cidr, &block.except)
                    } else {
                        None
                    };
                    let Some((ip, refusal)) = found else { continue };
                    let what = if host { format!("{ip}") } else { format!("{} (which contains {ip})", block.cidr) };
                    let mut message = format!("egress rule {i} of policy {} allows {what}: {refusal}", policy.name);
                    if matches!(refusal, Refusal::Metadata(_)) {
                        message.push_str("; pods that reach it can take the node's cloud credentials");
                        if !host {
                            message.push_str(&format!(", add {ip}/{} to except", if ip.is_ipv4() { 32 } else { 128 }));
                        }
                    } else if rendered {
                        message.push_str("; the address guard never renders it, so this policy was changed by hand");
                    }
                    out.push(cx.finding(
                        &Self::META,
                        policy.object,
                        &format!("/spec/egress/{i}/to/{j}/ipBlock/cidr"),
                        message,
                    ));
                }
            }
        }
    }
}

/// Which refusals of a single hand-written address are findings: metadata (on its port) and
/// addresses that are never a remote destination. Link-local (NodeLocal DNSCache's
/// 169.254.20.10) and private or cluster addresses are ordinary in hand-written policies.
fn flagged_host(refusal: &Refusal, reaches_metadata_port: bool) -> bool {
    match refusal {
        Refusal::Metadata(_) => reaches_metadata_port,
        Refusal::Loopback | Refusal::Unspecified | Refusal::Multicast | Refusal::Broadcast | Refusal::Reserved => true,
        Refusal::LinkLocal | Refusal::ClusterRange(_) | Refusal::Private(_) => false,
    }
}
