//! Connection starts seen by the eBPF filter (`--flows`): TCP SYN and SYN-ACK, the first UDP or
//! SCTP datagram of a 5-tuple, deduplicated in the kernel (`dns_snoop.bpf.c`, `report_flow`),
//! decoded here and written as JSON lines with the pods of this node at either end.
//!
//! A SYN says a connection was tried; the SYN-ACK (the reverse 5-tuple) says it was answered.
//! The sensor reports both and leaves the pairing to whoever aggregates (a refused or dropped
//! connection has a SYN and no SYN-ACK).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use jiff::Timestamp;
pub use portcullis_linter::egress::observation::{FlowEnd, FlowKind as Kind, FlowStart, SensorFlow};
use portcullis_linter::model::Protocol;

use crate::pods::PodDirectory;

/// Bytes of a `struct flow_event`: the 40-byte key, then ifindex and pkt_type.
pub const EVENT_SIZE: usize = 48;

/// One connection start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowRecord {
    pub kind: Kind,
    pub protocol: Protocol,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub ifindex: u32,
    pub pkt_type: u32,
}

impl FlowRecord {
    /// Decodes a ring-buffer record; `None` for one that is short or holds values the filter
    /// never writes.
    pub fn decode(record: &[u8]) -> Option<FlowRecord> {
        let bytes = record.get(..EVENT_SIZE)?;
        let port = |at: usize| Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
        let word = |at: usize| Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
        let address = |at: usize| -> Option<IpAddr> {
            let raw: [u8; 16] = bytes.get(at..at + 16)?.try_into().ok()?;
            match bytes.first()? {
                4 => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
                6 => Some(IpAddr::V6(Ipv6Addr::from(raw))),
                _ => None,
            }
        };
        let protocol = match bytes.get(1)? {
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            132 => Protocol::Sctp,
            _ => return None,
        };
        let kind = match (bytes.get(2)?, protocol) {
            (1, Protocol::Tcp) => Kind::Syn,
            (2, Protocol::Tcp) => Kind::SynAck,
            (3, Protocol::Udp | Protocol::Sctp) => Kind::Datagram,
            _ => return None,
        };
        Some(FlowRecord {
            kind,
            protocol,
            source: SocketAddr::new(address(8)?, port(4)?),
            destination: SocketAddr::new(address(24)?, port(6)?),
            ifindex: word(40)?,
            pkt_type: word(44)?,
        })
    }
}

impl FlowRecord {
    /// The JSON line of this connection start, with this node's pods at either end.
    pub fn line(&self, node: &str, pods: &PodDirectory, ts: Timestamp) -> SensorFlow {
        let end = |a: SocketAddr| FlowEnd { ip: a.ip(), port: a.port(), pod: pods.lookup(a.ip()) };
        SensorFlow {
            ts,
            node: node.to_owned(),
            flow: FlowStart {
                kind: self.kind,
                protocol: self.protocol,
                source: end(self.source),
                destination: end(self.destination),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(family: u8, proto: u8, kind: u8, s: &[u8], d: &[u8]) -> Vec<u8> {
        let mut e = vec![family, proto, kind, 0];
        e.extend_from_slice(&443u16.to_be_bytes()[..]);
        e.extend_from_slice(&8080u16.to_be_bytes()[..]);
        let mut addr = [0u8; 16];
        addr[..s.len()].copy_from_slice(s);
        e.extend_from_slice(&addr);
        let mut addr = [0u8; 16];
        addr[..d.len()].copy_from_slice(d);
        e.extend_from_slice(&addr);
        e.extend_from_slice(&7u32.to_ne_bytes());
        e.extend_from_slice(&0u32.to_ne_bytes());
        e
    }

    #[test]
    fn records_decode_and_odd_ones_are_refused() {
        let r = FlowRecord::decode(&event(4, 6, 1, &[10, 0, 0, 1], &[10, 0, 0, 2])).unwrap();
        assert_eq!((r.kind, r.protocol), (Kind::Syn, Protocol::Tcp));
        assert_eq!(r.source, "10.0.0.1:443".parse().unwrap());
        assert_eq!(r.destination, "10.0.0.2:8080".parse().unwrap());
        assert_eq!(r.ifindex, 7);
        let v6 = FlowRecord::decode(&event(6, 17, 3, &[0xfd; 16], &[0xfe; 16])).unwrap();
        assert_eq!(v6.kind, Kind::Datagram);
        assert!(v6.source.is_ipv6());
        for bad in [
            event(5, 6, 1, &[1], &[2]),  // family
            event(4, 1, 1, &[1], &[2]),  // ICMP
            event(4, 6, 3, &[1], &[2]),  // a TCP "datagram"
            event(4, 17, 1, &[1], &[2]), // a UDP "SYN"
        ] {
            assert!(FlowRecord::decode(&bad).is_none());
        }
        assert!(FlowRecord::decode(&event(4, 6, 1, &[1], &[2])[..47]).is_none());
    }
}
