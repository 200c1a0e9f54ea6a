use super::{Context, Rule, RuleMeta, declare_rule};
use crate::finding::Finding;
use crate::semantics::ParsedIpBlock;
use crate::semantics::evaluator::peer_lists;
use crate::semantics::ip_block::{host_bits_set, parse_cidr};

declare_rule! {
    /// ## What it does
    /// Finds `ipBlock` peers the API server rejects or that do not mean what they say: a `cidr`
    /// or `except` that is not a CIDR, an `except` not strictly inside its `cidr`, mixed IPv4 and
    /// IPv6, an ipBlock combined with a selector in the same peer, and a CIDR with host bits set
    /// (`10.0.0.1/8` means all of `10.0.0.0/8`).
    ///
    /// ## Why is this bad?
    /// A rejected policy does not exist; a CIDR with host bits set allows a whole network when
    /// one address was meant.
    ///
    /// ## Example
    /// ```yaml
    ///   - ipBlock:
    ///       cidr: 10.0.0.0/16
    ///       except: [10.0.0.0/8]
    /// ```
    ///
    /// Use instead:
    /// ```yaml
    ///   - ipBlock:
    ///       cidr: 10.0.0.0/8
    ///       except: [10.0.0.0/16]
    /// ```
    ///
    /// ## Fix safety
    /// No automatic fix.
    pub struct InvalidIpBlock {
        code: "PC009",
        name: "invalid-ip-block",
        severity: Error,
        fix: None,
    }
}

impl Rule for InvalidIpBlock {
    fn meta(&self) -> &'static RuleMeta {
        &Self::META
    }

    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        for policy in cx.written_policies() {
            for list in peer_lists(policy) {
                for (pi, peer) in list.items.iter().enumerate() {
                    let Some(block) = &peer.ip_block else { continue };
                    let at = format!("{}/ipBlock", list.peer_pointer(pi));
                    let name = &policy.name;
                    if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
                        out.push(cx.finding(&Self::META, policy.object, &at, format!(
                            "policy {name}: a peer may not set ipBlock together with podSelector or namespaceSelector; the API server rejects it (make them separate peers)"
                        )));
                        continue;
                    }
                    match ParsedIpBlock::parse(block) {
                        Err(msg) => {
                            let pointer = if parse_cidr(&block.cidr).is_err() {
                                format!("{at}/cidr")
                            } else {
                                let bad = block.except.iter().flatten().position(|e| {
                                    ParsedIpBlock::parse(&k8s_openapi::api::networking::v1::IPBlock {
                                        cidr: block.cidr.clone(),
                                        except: Some(vec![e.clone()]),
                                    })
                                    .is_err()
                                });
                                bad.map_or(format!("{at}/except"), |i| format!("{at}/except/{i}"))
                            };
                            out.push(cx.finding(&Self::META, policy.object, &pointer, format!("policy {name}: {msg}")));
                        }
                        Ok(parsed) => {
                            let nets = std::iter::once((format!("{at}/cidr"), parsed.cidr))
                                .chain(parsed.except.iter().enumerate().map(|(i, e)| (format!("{at}/except/{i}"), *e)));
                            for (pointer, net) in nets {
                                if host_bits_set(&net) {
                                    out.push(cx.finding(&Self::META, policy.object, &pointer, format!(
                                        "policy {name}: {net} has host bits set and means all of {}; write {} (the whole network) or {}/{} (one address)",
                                        net.trunc(), net.trunc(), net.addr(), if net.addr().is_ipv4() { 32 } else { 128 }
                                    )));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
