//! The address guard: addresses that open the node or the cluster are never rendered into an
//! allow, whatever DNS or a sensor says. Whoever controls DNS for an intent's name (or a
//! rebinding name) could otherwise point its pods at the cloud metadata service, the node's
//! loopback or the API server's Service address.
//!
//! One guard for every way an address enters a policy: `portcullis resolve`, the controller's
//! lookups, observations from the sensor, addresses restored from intent status, and the lint
//! rule on rendered and hand-written ipBlocks (PC017).
//!
//! Addresses are judged after unwrapping every form that reaches an IPv4 address from IPv6:
//! IPv4-mapped (`::ffff:169.254.169.254`), IPv4-compatible (`::169.254.169.254`), NAT64
//! (`64:ff9b::/96`) and 6to4 (`2002::/16`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Cloud metadata and platform endpoints (their link-local ones are refused as link-local too;
/// these are listed so the reason says what they are).
pub const METADATA_ADDRESSES: [(&str, &str); 6] = [
    ("169.254.169.254", "the metadata service of AWS, GCP, Azure, OpenStack and others"),
    ("169.254.170.2", "the AWS ECS task metadata endpoint"),
    ("fd00:ec2::254", "the AWS IPv6 metadata service"),
    ("100.100.100.200", "the Alibaba Cloud metadata service"),
    ("168.63.129.16", "the Azure platform endpoint (WireServer)"),
    ("169.254.169.123", "the AWS time service"),
];

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// A cloud metadata or platform endpoint.
    Metadata(&'static str),
    Loopback,
    Unspecified,
    LinkLocal,
    Multicast,
    Broadcast,
    /// `0.0.0.0/8`, `240.0.0.0/4` and other addresses that are not unicast destinations.
    Reserved,
    /// One of the configured cluster ranges (Service, pod or node CIDRs).
    ClusterRange(IpNet),
    /// A private range (RFC 1918, shared address space, unique local) not allowed by the config.
    Private(IpNet),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Metadata(what) => write!(f, "{what}"),
            Refusal::Loopback => f.write_str("a loopback address (the node itself)"),
            Refusal::Unspecified => f.write_str("the unspecified address"),
            Refusal::LinkLocal => f.write_str("a link-local address (node-local services such as cloud metadata)"),
            Refusal::Multicast => f.write_str("a multicast address"),
            Refusal::Broadcast => f.write_str("the broadcast address"),
            Refusal::Reserved => f.write_str("a reserved address, not a unicast destination"),
            Refusal::ClusterRange(net) => write!(f, "inside the cluster range {net} (addressGuard.clusterRanges)"),
            Refusal::Private(net) => write!(
                f,
                "inside the private range {net}, not allowed by portcullis.yaml (addressGuard.allowPrivate or allowRanges)"
            ),
        }
    }
}

impl Refusal {
    /// A short, fixed label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Metadata(_) => "metadata",
            Refusal::Loopback => "loopback",
            Refusal::Unspecified => "unspecified",
            Refusal::LinkLocal => "link_local",
            Refusal::Multicast => "multicast",
            Refusal::Broadcast => "broadcast",
            Refusal::Reserved => "reserved",
            Refusal::ClusterRange(_) => "cluster_range",
            Refusal::Private(_) => "private",
        }
    }
}

/// Which addresses may be allowed by FQDN intents (`addressGuard` in `portcullis.yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddressGuard {
    /// The cluster's own ranges (Service CIDR, pod CIDRs, node CIDRs): always refused.
    pub cluster_ranges: Vec<IpNet>,
    /// Allow every private range (on-premises SaaS reached over private links).
    pub allow_private: bool,
    /// Private ranges that are allowed (narrower than `allow_private`).
    pub allow_ranges: Vec<IpNet>,
}

const PRIVATE_RANGES: [&str; 6] =
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "198.18.0.0/15", "fc00::/7"];

fn nets<'a>(list: &'a [&'a str]) -> impl Iterator<Item = IpNet> + 'a {
    list.iter().filter_map(|s| s.parse().ok())
}

/// The IPv4 address an IPv6 address reaches, where it embeds one.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let last32 = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if s[..5] == [0, 0, 0, 0, 0] && (s[5] == 0xffff || (s[5] == 0 && u32::from(last32) > 1)) {
        // IPv4-mapped, and IPv4-compatible (deprecated, but some stacks still route it).
        return Some(last32);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(last32); // NAT64 well-known prefix
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])); // 6to4
    }
    None
}

impl AddressGuard {
    /// `Ok` when the address may be allowed, else why not.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        if let IpAddr::V6(v6) = ip
            && let Some(v4) = embedded_v4(v6)
        {
            self.check(IpAddr::V4(v4))?;
        }
        for (addr, what) in METADATA_ADDRESSES {
            if addr.parse::<IpAddr>().is_ok_and(|m| m == ip) {
                return Err(Refusal::Metadata(what));
            }
        }
        match ip {
            IpAddr::V4(v4) => {
                if v4.is_loopback() {
                    return Err(Refusal::Loopback);
                }
                if v4.is_unspecified() {
                    return Err(Refusal::Unspecified);
                }
                if v4.is_broadcast() {
                    return Err(Refusal::Broadcast);
                }
                if v4.is_link_local() {
                    return Err(Refusal::LinkLocal);
                }
                if v4.is_multicast() {
                    return Err(Refusal::Multicast);
                }
                if v4.octets()[0] == 0 || v4.octets()[0] >= 240 {
                    return Err(Refusal::Reserved);
                }
            }
            IpAddr::V6(v6) => {
                if v6.is_loopback() {
                    return Err(Refusal::Loopback);
                }
                if v6.is_unspecified() {
                    return Err(Refusal::Unspecified);
                }
                if v6.is_multicast() {
                    return Err(Refusal::Multicast);
                }
                if (v6.segments()[0] & 0xffc0) == 0xfe80 {
                    return Err(Refusal::LinkLocal);
                }
            }
        }
        if let Some(net) = self.cluster_ranges.iter().find(|n| n.contains(&ip)) {
            return Err(Refusal::ClusterRange(*net));
        }
        if let Some(net) = nets(&PRIVATE_RANGES).find(|n| n.contains(&ip))
            && !self.allow_private
            && !self.allow_ranges.iter().any(|a| a.contains(&ip))
        {
            return Err(Refusal::Private(net));
        }
        Ok(())
    }

    /// The first cloud metadata endpoint a block allows (contains and does not except), with
    /// why it is refused: `0.0.0.0/0` allows `169.254.169.254`. Only the listed endpoints are
    /// tried, so this stays a handful of checks for any block.
    pub fn refused_in(&self, block: &IpNet, except: &[IpNet]) -> Option<(IpAddr, Refusal)> {
        let excepted = |ip: &IpAddr| except.iter().any(|e| e.contains(ip));
        METADATA_ADDRESSES
            .iter()
            .filter_map(|(a, _)| a.parse::<IpAddr>().ok())
            .filter(|ip| block.contains(ip) && !excepted(ip))
            .find_map(|ip| self.check(ip).err().map(|r| (ip, r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(guard: &AddressGuard, ip: &str) -> Option<&'static str> {
        guard.check(ip.parse().unwrap()).err().map(|r| r.label())
    }

    #[test]
    fn node_and_metadata_addresses_are_refused_in_every_form() {
        let g = AddressGuard::default();
        for (ip, why) in [
            ("169.254.169.254", "metadata"),
            ("fd00:ec2::254", "metadata"),
            ("::ffff:169.254.169.254", "metadata"),
            ("::169.254.169.254", "metadata"),
            ("64:ff9b::a9fe:a9fe", "metadata"),
            ("2002:a9fe:a9fe::1", "metadata"),
            ("100.100.100.200", "metadata"),
            ("168.63.129.16", "metadata"),
            ("127.0.0.1", "loopback"),
            ("127.1.2.3", "loopback"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("255.255.255.255", "broadcast"),
            ("169.254.20.10", "link_local"),
            ("fe80::1", "link_local"),
            ("224.0.0.251", "multicast"),
            ("ff02::fb", "multicast"),
            ("0.1.2.3", "reserved"),
            ("240.0.0.1", "reserved"),
            ("10.96.0.1", "private"),
            ("192.168.1.1", "private"),
            ("172.16.0.1", "private"),
            ("100.64.0.1", "private"),
            ("fd12:3456::1", "private"),
        ] {
            assert_eq!(refused(&g, ip), Some(why), "{ip}");
        }
        for ok in ["93.184.216.34", "192.0.2.10", "2001:db8::1", "2606:4700::1111", "::ffff:93.184.216.34"] {
            assert_eq!(refused(&g, ok), None, "{ok}");
        }
    }

    #[test]
    fn private_ranges_only_when_allowed_and_cluster_ranges_never() {
        let cluster: IpNet = "10.96.0.0/12".parse().unwrap();
        let g = AddressGuard {
            cluster_ranges: vec![cluster],
            allow_private: false,
            allow_ranges: vec!["10.20.0.0/16".parse().unwrap()],
        };
        assert_eq!(refused(&g, "10.20.3.4"), None, "an allowed range");
        assert_eq!(refused(&g, "10.21.3.4"), Some("private"));
        assert_eq!(refused(&g, "10.96.0.1"), Some("cluster_range"));
        let open = AddressGuard { allow_private: true, ..g.clone() };
        assert_eq!(refused(&open, "10.21.3.4"), None);
        assert_eq!(refused(&open, "10.96.0.10"), Some("cluster_range"), "cluster ranges win over allowPrivate");
        assert_eq!(refused(&open, "169.254.169.254"), Some("metadata"), "nothing allows metadata");
        assert!(g.check("10.96.0.1".parse().unwrap()).unwrap_err().to_string().contains("10.96.0.0/12"));
    }

    #[test]
    fn blocks_containing_metadata_are_found_unless_excepted() {
        let g = AddressGuard::default();
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert_eq!(g.refused_in(&all, &[]).map(|(ip, _)| ip.to_string()).as_deref(), Some("169.254.169.254"));
        let except: Vec<IpNet> = vec![
            "169.254.0.0/16".parse().unwrap(),
            "100.64.0.0/10".parse().unwrap(),
            "168.63.129.16/32".parse().unwrap(),
        ];
        assert_eq!(g.refused_in(&all, &except), None);
        assert_eq!(g.refused_in(&"203.0.113.0/24".parse().unwrap(), &[]), None);
        let v6: IpNet = "::/0".parse().unwrap();
        assert_eq!(g.refused_in(&v6, &[]).map(|(ip, _)| ip.to_string()).as_deref(), Some("fd00:ec2::254"));
    }
}
