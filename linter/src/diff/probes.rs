//! What `diff` and `matrix` probe: the ports and the external destinations (addresses, names)
//! that stand for every port and destination the two sides' policies can tell apart.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::{Destination, Port, list, workloads};
use crate::model::{Inventory, Protocol};
use crate::project::Project;

/// The ports probed: every port either side mentions, plus one nothing mentions, per protocol.
fn ports(sides: [&Inventory; 2]) -> Vec<Port> {
    let mut ports: BTreeSet<Port> = BTreeSet::new();
    let mut ranges: Vec<(i32, i32)> = Vec::new();
    let add = |port: i32, protocol: Protocol, ports: &mut BTreeSet<Port>| {
        if (1..=65535).contains(&port) {
            ports.insert(Port { port, protocol });
        }
    };
    for inv in sides {
        for w in &inv.workloads {
            for c in &w.ports {
                add(c.port, c.protocol, &mut ports);
            }
        }
        for p in &inv.policies {
            // The names a generated policy allows (EgressIntents), on their ports.
            for (port, protocol) in p.names.iter().flat_map(|n| &n.ports) {
                add(i32::from(*port), *protocol, &mut ports);
            }
            for list in crate::semantics::evaluator::port_lists(p) {
                for entry in list.items {
                    let protocol = entry.protocol.as_deref().and_then(Protocol::parse).unwrap_or(Protocol::Tcp);
                    if let Some(range) = crate::semantics::evaluator::numeric_range(entry) {
                        add(*range.start(), protocol, &mut ports);
                        add(*range.end(), protocol, &mut ports);
                        ranges.push((*range.start(), *range.end()));
                    }
                }
            }
        }
        // The other layers' ports: ClusterNetworkPolicy protocols, Cilium toPorts, Calico ports.
        let mut range = |a: i32, b: i32, protocol: Protocol, ports: &mut BTreeSet<Port>| {
            add(a, protocol, ports);
            add(b, protocol, ports);
            ranges.push((a, b));
        };
        for c in &inv.cluster_policies {
            let protocols =
                c.spec.ingress.iter().flat_map(|r| &r.protocols).chain(c.spec.egress.iter().flat_map(|r| &r.protocols));
            for m in protocols {
                for (p, protocol) in [(&m.tcp, Protocol::Tcp), (&m.udp, Protocol::Udp), (&m.sctp, Protocol::Sctp)] {
                    let Some(port) = p.as_ref().and_then(|p| p.destination_port.as_ref()) else { continue };
                    if let Some(n) = port.number {
                        range(n, n, protocol, &mut ports);
                    }
                    if let Some(r) = port.range {
                        range(r.start, r.end, protocol, &mut ports);
                    }
                }
            }
        }
        for rule in &inv.cilium_rules {
            for pp in cilium_peers(rule).flat_map(|p| p.to_ports.iter().flatten()).flat_map(|r| &r.ports) {
                let Ok(n) = pp.port.parse::<i32>() else { continue };
                let protocols = match pp.protocol.as_deref().map(str::to_ascii_uppercase).as_deref() {
                    Some("UDP") => vec![Protocol::Udp],
                    Some("SCTP") => vec![Protocol::Sctp],
                    Some("TCP") => vec![Protocol::Tcp],
                    _ => vec![Protocol::Tcp, Protocol::Udp],
                };
                for protocol in protocols {
                    range(n, pp.end_port.unwrap_or(n), protocol, &mut ports);
                }
            }
        }
        for p in &inv.calico_policies {
            for rule in p.ingress_rules.iter().chain(&p.egress_rules) {
                let protocol = match &rule.protocol {
                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s)) => Protocol::parse(s),
                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(17)) => Some(Protocol::Udp),
                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(132)) => Some(Protocol::Sctp),
                    _ => Some(Protocol::Tcp),
                };
                let Some(protocol) = protocol else { continue };
                let specs =
                    [&rule.source, &rule.destination].into_iter().flat_map(|e| e.ports.iter().chain(&e.not_ports));
                for spec in specs {
                    if let crate::model::calico_policy::PortSpec::Range(a, b) = spec {
                        range(i32::from(*a), i32::from(*b), protocol, &mut ports);
                    }
                }
            }
        }
    }
    // DNS is the port every lockdown is judged by.
    for protocol in [Protocol::Udp, Protocol::Tcp] {
        add(crate::semantics::dns::DNS_PORT, protocol, &mut ports);
    }
    // A port no policy names and no range covers: "every other port".
    let mentioned = |p: i32| ports.iter().any(|x| x.port == p) || ranges.iter().any(|(a, b)| (*a..=*b).contains(&p));
    if let Some(other) = (40000..=65535).find(|p| !mentioned(*p)) {
        ports.insert(Port { port: other, protocol: Protocol::Tcp });
    }
    ports.into_iter().collect()
}

/// Every peer rule of a Cilium rule, allowing and denying, both directions.
fn cilium_peers(
    rule: &crate::model::cilium_policy::CiliumRule,
) -> impl Iterator<Item = &crate::model::cilium_policy::PeerRule> {
    let spec = &rule.spec;
    spec.ingress.iter().chain(&spec.ingress_deny).chain(&spec.egress).chain(&spec.egress_deny)
}

/// A CIDR as a range of numbers in its family (`bits`: 32 or 128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Span {
    bits: u32,
    lo: u128,
    hi: u128,
}

impl Span {
    fn of(net: &IpNet) -> Span {
        match net {
            IpNet::V4(n) => Span { bits: 32, lo: u32::from(n.network()).into(), hi: u32::from(n.broadcast()).into() },
            IpNet::V6(n) => Span { bits: 128, lo: u128::from(n.network()), hi: u128::from(n.broadcast()) },
        }
    }

    fn contains(&self, other: &Span) -> bool {
        self.bits == other.bits && self.lo <= other.lo && other.hi <= self.hi
    }

    fn address(bits: u32, n: u128) -> IpAddr {
        match u32::try_from(n) {
            Ok(v4) if bits == 32 => IpAddr::V4(std::net::Ipv4Addr::from(v4)),
            _ => IpAddr::V6(std::net::Ipv6Addr::from(n)),
        }
    }
}

/// The CIDRs covering `lo..=hi` exactly, largest first in address order.
fn cidrs(bits: u32, mut lo: u128, hi: u128) -> Vec<IpNet> {
    let mut out = Vec::new();
    while lo <= hi {
        // The largest aligned block starting at `lo` that ends within `hi` (2^128 has no u128:
        // `None` is the whole IPv6 space).
        let last = |log: u32| match 1u128.checked_shl(log) {
            Some(size) => lo.checked_add(size - 1),
            None => Some(u128::MAX),
        };
        let mut size_log = lo.trailing_zeros().min(bits);
        while size_log > 0 && last(size_log).is_none_or(|end| end > hi) {
            size_log -= 1;
        }
        let prefix = u8::try_from(bits - size_log).unwrap_or(0);
        if let Ok(net) = IpNet::new(Span::address(bits, lo), prefix) {
            out.push(net);
        }
        let Some(next) = last(size_log).and_then(|end| end.checked_add(1)) else { break };
        lo = next;
    }
    out
}

/// The address destinations probed. Whether an address matches a rule depends only on which of
/// the CIDRs named anywhere contain it, and CIDRs are nested or disjoint, so that set is fixed
/// by the innermost CIDR containing the address (or none). So one address per CIDR that its
/// nested CIDRs do not cover, plus one address in none of them, stand for every address. Each
/// is labelled with the part of its CIDR it stands for (`203.0.113.128/25` for a /24 whose
/// first half a /25 names) or, outside every CIDR narrower than a whole family, "any other
/// address".
fn address_probes(nets: &BTreeSet<IpNet>) -> Vec<Destination> {
    // An address in no CIDR (TEST-NET-2, never routed): "the rest of the internet".
    let outside = Span::of(&IpNet::from(IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 77))));
    let mut spans: Vec<Span> = nets.iter().map(Span::of).collect();
    // Parents before their children: by family, start, then widest first.
    spans.sort_by_key(|s| (s.bits, s.lo, std::cmp::Reverse(s.hi)));
    spans.dedup();
    // The nesting tree, built with a stack of the open ancestors: each CIDR's children.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut roots: Vec<usize> = Vec::new();
    let mut open: Vec<usize> = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        while open.last().is_some_and(|&p| !spans[p].contains(span)) {
            open.pop();
        }
        match open.last() {
            Some(&p) => children[p].push(i),
            None => roots.push(i),
        }
        open.push(i);
    }
    // The gaps of `lo..=hi` its (disjoint, sorted) children leave.
    let gaps = |lo: u128, hi: u128, kids: &[usize]| -> Vec<(u128, u128)> {
        let mut out = Vec::new();
        let mut at = Some(lo);
        for &k in kids {
            let Some(from) = at else { break };
            if spans[k].lo > from {
                out.push((from, spans[k].lo - 1));
            }
            at = spans[k].hi.checked_add(1);
        }
        if let Some(from) = at.filter(|f| *f <= hi) {
            out.push((from, hi));
        }
        out
    };
    let pick = |bits: u32, gaps: &[(u128, u128)]| -> Option<u128> {
        // The outside address where it is in a gap; else the first usable address of the first
        // gap (the network address itself only for the smallest blocks).
        if bits == outside.bits && gaps.iter().any(|(lo, hi)| *lo <= outside.lo && outside.lo <= *hi) {
            return Some(outside.lo);
        }
        let (lo, hi) = *gaps.first()?;
        Some(if hi.saturating_sub(lo) >= 2 { lo + 1 } else { lo })
    };
    let mut out = Vec::new();
    for (i, span) in spans.iter().enumerate() {
        let left = gaps(span.lo, span.hi, &children[i]);
        let Some(address) = pick(span.bits, &left) else { continue };
        let whole_family = span.lo == 0 && span.hi == u128::MAX >> (128 - span.bits);
        let stands_for = if whole_family {
            if span.bits == 32 { "any other address" } else { "any other IPv6 address" }.to_owned()
        } else {
            let parts: Vec<IpNet> = left.iter().flat_map(|(lo, hi)| cidrs(span.bits, *lo, *hi)).collect();
            let net = |s: &Span| cidrs(s.bits, s.lo, s.hi).first().map(ToString::to_string).unwrap_or_default();
            if parts.len() <= 3 {
                parts.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            } else {
                let inner: Vec<String> = children[i].iter().map(|&k| net(&spans[k])).collect();
                format!("{} except {}", net(span), list(&inner, 3))
            }
        };
        out.push(Destination::Address { address: Span::address(span.bits, address), stands_for });
    }
    // Outside every CIDR of IPv4 (IPv6 addresses outside every CIDR read the same sets).
    let v4_max = u128::from(u32::MAX);
    let v4_roots: Vec<usize> = roots.iter().copied().filter(|r| spans[*r].bits == 32).collect();
    if let Some(address) = pick(32, &gaps(0, v4_max, &v4_roots)) {
        out.push(Destination::Address {
            address: Span::address(32, address),
            stands_for: "any other address".to_owned(),
        });
    }
    out
}

/// Adds the names probed for a name or pattern as policies write it. A name is itself. A
/// pattern (`*.suffix`, one label; `**.suffix`, one or more; Cilium's `*` in a leading label)
/// gets the names that tell the pattern forms apart: its suffix itself (no pattern matches it),
/// `any.SUFFIX` (one label) and `any.any.SUFFIX` (two). A pattern with a wildcard elsewhere
/// (Cilium's `*`, `sub.*.example.com`) adds nothing: no finite set of names stands for it.
fn add_name(names: &mut BTreeSet<String>, written: &str) {
    let written = written.trim_end_matches('.').to_ascii_lowercase();
    let suffix = written.strip_prefix("**.").or_else(|| written.strip_prefix("*."));
    match suffix {
        None if !written.contains('*') && !written.is_empty() => {
            names.insert(written);
        }
        Some(suffix) if !suffix.contains('*') && !suffix.is_empty() => {
            names.insert(suffix.to_owned());
            names.insert(format!("any.{suffix}"));
            names.insert(format!("any.any.{suffix}"));
        }
        _ => {}
    }
}

/// The external destinations probed: one address per CIDR and per `except` either side's
/// NetworkPolicies name, one public address outside all of them, and names.
fn externals(sides: [&Inventory; 2]) -> Vec<Destination> {
    let mut nets: BTreeSet<IpNet> = BTreeSet::new();
    let mut names: BTreeSet<String> = BTreeSet::new();
    for inv in sides {
        for p in &inv.policies {
            for list in crate::semantics::evaluator::peer_lists(p) {
                for peer in list.items {
                    if let Some(block) = &peer.ip_block {
                        for raw in std::iter::once(&block.cidr).chain(block.except.iter().flatten()) {
                            if let Ok(net) = raw.parse::<IpNet>() {
                                nets.insert(net.trunc());
                            }
                        }
                    }
                }
            }
        }
        for c in &inv.cluster_policies {
            for rule in c.spec.egress.iter() {
                for peer in &rule.to {
                    for raw in peer.networks.iter().flatten() {
                        if let Ok(net) = raw.parse::<IpNet>() {
                            nets.insert(net.trunc());
                        }
                    }
                    for name in peer.domain_names.iter().flatten() {
                        add_name(&mut names, name);
                    }
                }
            }
        }
        for rule in &inv.cilium_rules {
            for peer in rule.spec.egress.iter().chain(&rule.spec.egress_deny) {
                for f in peer.to_fqdns.iter().flatten() {
                    for name in f.match_name.iter().chain(&f.match_pattern) {
                        add_name(&mut names, name);
                    }
                }
            }
            for peer in cilium_peers(rule) {
                let sets = peer.cidr_set.iter().flatten().flat_map(|c| c.cidr.iter().chain(&c.except));
                for raw in peer.cidr.iter().flatten().chain(sets) {
                    if let Ok(net) = raw.parse::<IpNet>() {
                        nets.insert(net.trunc());
                    }
                }
            }
        }
        for p in &inv.calico_policies {
            for rule in p.ingress_rules.iter().chain(&p.egress_rules) {
                for e in [&rule.source, &rule.destination] {
                    nets.extend(e.nets.iter().chain(&e.not_nets).map(IpNet::trunc));
                }
            }
        }
        for set in &inv.calico_network_sets {
            nets.extend(set.nets.iter().map(IpNet::trunc));
        }
        for intent in &inv.intents {
            for rule in intent.spec.iter().flat_map(|s| &s.egress) {
                for name in rule.fqdn.iter().chain(&rule.fqdn_pattern) {
                    add_name(&mut names, name);
                }
            }
        }
    }
    let mut out = address_probes(&nets);
    out.extend(names.into_iter().map(|name| Destination::Name { name }));
    out.sort();
    out.dedup();
    out
}

/// What is probed: every workload present on both sides and the external destinations, and the
/// ports (`ports`, `externals`).
pub fn probes(base: &Project, head: &Project) -> (Vec<Destination>, Vec<Port>) {
    let (bi, hi) = (&base.inventory, &head.inventory);
    let (bw, hw) = (workloads(bi), workloads(hi));
    let mut destinations: Vec<Destination> =
        bw.keys().filter(|k| hw.contains_key(*k)).map(|k| Destination::Workload { workload: k.clone() }).collect();
    destinations.extend(externals([bi, hi]));
    (destinations, ports([bi, hi]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn probes(nets: &[&str]) -> Vec<String> {
        let nets: BTreeSet<IpNet> = nets.iter().map(|n| n.parse().unwrap()).collect();
        address_probes(&nets).iter().map(Destination::label).collect()
    }

    /// The claim the probes rest on: every address has the CIDR membership of one probe, and no
    /// two probes have the same. Random nested and overlapping blocks in a small space, and
    /// every address of it checked.
    #[test]
    fn every_address_reads_like_exactly_one_probe() {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for _ in 0..300 {
            // Blocks inside 10.0.0.0/24 and a few around it.
            let mut nets: BTreeSet<IpNet> = BTreeSet::new();
            for _ in 0..1 + next(6) {
                let prefix = 22 + next(11) as u8;
                let address = std::net::Ipv4Addr::from(0x0A00_0000 + next(1024) as u32);
                nets.insert(IpNet::new(IpAddr::V4(address), prefix).unwrap().trunc());
            }
            let members = |a: IpAddr| nets.iter().filter(|n| n.contains(&a)).copied().collect::<Vec<_>>();
            let probes: Vec<IpAddr> = address_probes(&nets)
                .into_iter()
                .filter_map(|d| match d {
                    Destination::Address { address, .. } => Some(address),
                    _ => None,
                })
                .collect();
            let sets: BTreeSet<Vec<IpNet>> = probes.iter().map(|a| members(*a)).collect();
            assert_eq!(sets.len(), probes.len(), "two probes read alike: {nets:?} {probes:?}");
            for n in 0x09FF_FC00_u32..0x0A00_0800 {
                let set = members(IpAddr::V4(std::net::Ipv4Addr::from(n)));
                assert!(
                    sets.contains(&set),
                    "{} reads like no probe: {nets:?} {probes:?}",
                    std::net::Ipv4Addr::from(n)
                );
            }
        }
    }

    #[test]
    fn cidrs_cover_a_range_exactly() {
        let v4 = |lo: &str, hi: &str| {
            let (lo, hi): (std::net::Ipv4Addr, std::net::Ipv4Addr) = (lo.parse().unwrap(), hi.parse().unwrap());
            cidrs(32, u32::from(lo).into(), u32::from(hi).into()).iter().map(ToString::to_string).collect::<Vec<_>>()
        };
        assert_eq!(v4("0.0.0.0", "255.255.255.255"), ["0.0.0.0/0"]);
        assert_eq!(v4("10.0.0.1", "10.0.0.6"), ["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"]);
        assert_eq!(
            v4("11.0.0.0", "255.255.255.255"),
            ["11.0.0.0/8", "12.0.0.0/6", "16.0.0.0/4", "32.0.0.0/3", "64.0.0.0/2", "128.0.0.0/1"]
        );
        assert_eq!(cidrs(128, 0, u128::MAX).iter().map(ToString::to_string).collect::<Vec<_>>(), ["::/0"]);
    }

    #[test]
    fn one_probe_per_cidr_part_its_nested_cidrs_leave() {
        // The whole family is "any other address", at the outside address; the hole is probed.
        assert_eq!(
            probes(&["0.0.0.0/0", "10.0.0.0/8"]),
            ["198.51.100.77 (any other address)", "10.0.0.1 (10.0.0.0/8)"]
        );
        // A widened block: the part the narrower one does not name.
        assert_eq!(
            probes(&["203.0.113.0/24", "203.0.113.0/25"]),
            ["203.0.113.129 (203.0.113.128/25)", "203.0.113.1 (203.0.113.0/25)", "198.51.100.77 (any other address)"]
        );
        // A block its nested blocks cover wholly has no address of its own.
        assert_eq!(probes(&["10.0.0.0/24", "10.0.0.0/25", "10.0.0.128/25"]).len(), 3);
        // Smallest blocks: the network address itself.
        assert_eq!(probes(&["10.0.0.0/31", "10.0.0.0/32"])[..2], ["10.0.0.1 (10.0.0.1/32)", "10.0.0.0 (10.0.0.0/32)"]);
        // A block holding the outside address: probed there, and "any other address" elsewhere.
        assert_eq!(probes(&["198.51.100.0/24"]), ["198.51.100.77 (198.51.100.0/24)", "0.0.0.1 (any other address)"]);
        // IPv6 keeps its own whole family.
        assert_eq!(
            probes(&["::/0", "2001:db8::/32"])[..2],
            ["::1 (any other IPv6 address)", "2001:db8::1 (2001:db8::/32)"]
        );
    }
}
