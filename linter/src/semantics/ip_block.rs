//! `ipBlock` parsing and matching, with the API server's validation.

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::IPBlock;

/// A validated ipBlock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedIpBlock {
    pub cidr: IpNet,
    pub except: Vec<IpNet>,
}

impl ParsedIpBlock {
    /// Parses an ipBlock; `Err` carries the first problem the API server would reject.
    pub fn parse(block: &IPBlock) -> Result<ParsedIpBlock, String> {
        let cidr = parse_cidr(&block.cidr)?;
        let mut except = Vec::new();
        for raw in block.except.iter().flatten() {
            let e = parse_cidr(raw).map_err(|m| format!("except: {m}"))?;
            if e.addr().is_ipv4() != cidr.addr().is_ipv4() {
                return Err(format!("except {raw:?} is not in the same IP family as cidr {:?}", block.cidr));
            }
            if !(cidr.contains(&e) && e.prefix_len() > cidr.prefix_len()) {
                if e.contains(&cidr) {
                    return Err(format!("cidr {:?} is completely negated by exception {raw:?}", block.cidr));
                }
                return Err(format!("except {raw:?} is not strictly inside cidr {:?}", block.cidr));
            }
            except.push(e);
        }
        Ok(ParsedIpBlock { cidr, except })
    }

    /// Whether the block matches an address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidr.contains(&ip) && !self.except.iter().any(|e| e.contains(&ip))
    }

    /// Whether the block matches every address of its family (`0.0.0.0/0` or `::/0`, no except).
    pub fn is_whole_family(&self) -> bool {
        self.cidr.prefix_len() == 0 && self.except.is_empty()
    }
}

/// Parses a CIDR as the API server does: address/prefix required.
pub fn parse_cidr(raw: &str) -> Result<IpNet, String> {
    if !raw.contains('/') {
        return Err(format!("{raw:?} is not a CIDR (expected address/prefix, e.g. 10.0.0.0/8 or {raw}/32)"));
    }
    raw.parse::<IpNet>().map_err(|_| format!("{raw:?} is not a valid CIDR"))
}

/// Whether the CIDR has host bits set (`10.0.0.1/8`): accepted by older API servers but it means
/// the whole network, which is rarely what the author meant.
pub fn host_bits_set(net: &IpNet) -> bool {
    net.addr() != net.network()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(cidr: &str, except: &[&str]) -> IPBlock {
        IPBlock {
            cidr: cidr.to_owned(),
            except: if except.is_empty() { None } else { Some(except.iter().map(|s| s.to_string()).collect()) },
        }
    }

    #[test]
    fn except_carves_out_addresses() {
        let b = ParsedIpBlock::parse(&block("10.0.0.0/8", &["10.1.0.0/16"])).unwrap();
        assert!(b.contains("10.2.3.4".parse().unwrap()));
        assert!(!b.contains("10.1.3.4".parse().unwrap()));
        assert!(!b.contains("11.0.0.1".parse().unwrap()));
    }

    #[test]
    fn api_server_rejections_are_explained() {
        let err = |c: &str, e: &[&str]| ParsedIpBlock::parse(&block(c, e)).unwrap_err();
        assert!(err("10.0.0.0", &[]).contains("not a CIDR"));
        assert!(err("10.0.0.0/33", &[]).contains("not a valid CIDR"));
        assert!(err("10.0.0.0/8", &["10.0.0.0/8"]).contains("completely negated"));
        assert!(err("10.0.0.0/16", &["10.0.0.0/8"]).contains("completely negated"));
        assert!(err("10.0.0.0/8", &["192.168.0.0/16"]).contains("not strictly inside"));
        assert!(err("10.0.0.0/8", &["fd00::/8"]).contains("same IP family"));
    }
}
