//! Link, network and transport headers: Ethernet (with VLAN tags) / IPv4 / IPv6 (with extension
//! headers) / UDP / TCP, down to the DNS payload.
//!
//! Pure and allocation-free: a frame is borrowed, never copied. Every way a frame can fail is a
//! [`FrameError`], which the matcher counts as a drop reason.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const MAX_VLAN_TAGS: usize = 2;
const MAX_IPV6_EXT: usize = 6;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const EXT_HOPOPTS: u8 = 0;
const EXT_ROUTING: u8 = 43;
const EXT_FRAGMENT: u8 = 44;
const EXT_AH: u8 = 51;
const EXT_DSTOPTS: u8 = 60;
const EXT_MOBILITY: u8 = 135;

/// The transport a DNS message travelled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// A UDP datagram or TCP segment with its addresses, borrowing the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment<'a> {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: Transport,
    /// TCP: the sequence number of the segment's first data byte (0 for UDP).
    pub seq: u32,
    /// The UDP payload, or the TCP segment's data (possibly several length-prefixed DNS
    /// messages, or part of one).
    pub payload: &'a [u8],
}

/// Why a frame yields no segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a header runs past the end of the captured frame")]
    Truncated,
    #[error("not IPv4 or IPv6 (EtherType {0:#06x})")]
    NotIp(u16),
    #[error("IP protocol {0} is neither UDP nor TCP")]
    NotUdpTcp(u8),
    #[error("an IP fragment (the sensor does not reassemble datagrams)")]
    Fragment,
    #[error("malformed {0} header")]
    Malformed(&'static str),
    #[error("more IPv6 extension headers than the sensor walks, or an encrypted payload")]
    Ipv6Extensions,
}

fn be16(bytes: &[u8], at: usize) -> Result<u16, FrameError> {
    match bytes.get(at..at + 2) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(FrameError::Truncated),
    }
}

fn byte(bytes: &[u8], at: usize) -> Result<u8, FrameError> {
    bytes.get(at).copied().ok_or(FrameError::Truncated)
}

fn slice(bytes: &[u8], from: usize, to: usize) -> Result<&[u8], FrameError> {
    bytes.get(from..to).ok_or(FrameError::Truncated)
}

/// Parses an Ethernet frame (as an AF_PACKET raw socket delivers it) down to its UDP or TCP
/// payload.
pub fn parse_ethernet(frame: &[u8]) -> Result<Segment<'_>, FrameError> {
    let mut ethertype = be16(frame, 12)?;
    let mut offset = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        ethertype = be16(frame, offset + 2)?;
        offset += 4;
    }
    let ip = frame.get(offset..).ok_or(FrameError::Truncated)?;
    match ethertype {
        ETH_P_IP => parse_ipv4(ip),
        ETH_P_IPV6 => parse_ipv6(ip),
        other => Err(FrameError::NotIp(other)),
    }
}

/// Parses a raw IP packet (either version, from its first nibble).
pub fn parse_ip(packet: &[u8]) -> Result<Segment<'_>, FrameError> {
    match byte(packet, 0)? >> 4 {
        4 => parse_ipv4(packet),
        6 => parse_ipv6(packet),
        _ => Err(FrameError::Malformed("IP")),
    }
}

fn parse_ipv4(packet: &[u8]) -> Result<Segment<'_>, FrameError> {
    let first = byte(packet, 0)?;
    let header_len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header_len < 20 {
        return Err(FrameError::Malformed("IPv4"));
    }
    let total = usize::from(be16(packet, 2)?);
    // A non-first fragment has no transport header; the first one (more-fragments set) holds
    // only part of the datagram, which the sensor does not reassemble. Both are counted.
    if be16(packet, 6)? & 0x3fff != 0 {
        return Err(FrameError::Fragment);
    }
    let protocol = byte(packet, 9)?;
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(slice(packet, 12, 16)?).map_err(|_| FrameError::Truncated)?);
    let dst = Ipv4Addr::from(<[u8; 4]>::try_from(slice(packet, 16, 20)?).map_err(|_| FrameError::Truncated)?);
    // The IP length trims link-layer padding; 0 means segmentation offload, so trust the frame.
    let end = if total == 0 { packet.len() } else { total };
    if end < header_len {
        return Err(FrameError::Malformed("IPv4"));
    }
    let body = slice(packet, header_len, end)?;
    transport(IpAddr::V4(src), IpAddr::V4(dst), protocol, body)
}

fn parse_ipv6(packet: &[u8]) -> Result<Segment<'_>, FrameError> {
    if byte(packet, 0)? >> 4 != 6 {
        return Err(FrameError::Malformed("IPv6"));
    }
    let payload_len = usize::from(be16(packet, 4)?);
    let mut next = byte(packet, 6)?;
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(slice(packet, 8, 24)?).map_err(|_| FrameError::Truncated)?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(slice(packet, 24, 40)?).map_err(|_| FrameError::Truncated)?);
    let end = if payload_len == 0 { packet.len() } else { 40 + payload_len };
    let body = slice(packet, 40, end)?;
    let mut offset = 0;
    for _ in 0..MAX_IPV6_EXT {
        let length = match next {
            EXT_HOPOPTS | EXT_ROUTING | EXT_DSTOPTS | EXT_MOBILITY => (usize::from(byte(body, offset + 1)?) + 1) * 8,
            EXT_AH => (usize::from(byte(body, offset + 1)?) + 2) * 4,
            EXT_FRAGMENT => {
                // Offset or more-fragments set: part of a datagram (as for IPv4).
                if be16(body, offset + 2)? & 0xfff9 != 0 {
                    return Err(FrameError::Fragment);
                }
                8
            }
            _ => break,
        };
        next = byte(body, offset)?;
        offset += length;
    }
    if matches!(next, EXT_HOPOPTS | EXT_ROUTING | EXT_DSTOPTS | EXT_MOBILITY | EXT_AH | EXT_FRAGMENT | 50) {
        return Err(FrameError::Ipv6Extensions);
    }
    let body = body.get(offset..).ok_or(FrameError::Truncated)?;
    transport(IpAddr::V6(src), IpAddr::V6(dst), next, body)
}

fn transport(src: IpAddr, dst: IpAddr, protocol: u8, body: &[u8]) -> Result<Segment<'_>, FrameError> {
    let src_port = be16(body, 0)?;
    let dst_port = be16(body, 2)?;
    let (transport, seq, payload) = match protocol {
        PROTO_UDP => {
            let length = usize::from(be16(body, 4)?);
            if length < 8 {
                return Err(FrameError::Malformed("UDP"));
            }
            (Transport::Udp, 0, slice(body, 8, length)?)
        }
        PROTO_TCP => {
            let header_len = usize::from(byte(body, 12)? >> 4) * 4;
            if header_len < 20 {
                return Err(FrameError::Malformed("TCP"));
            }
            let seq = u32::from(be16(body, 4)?) << 16 | u32::from(be16(body, 6)?);
            (Transport::Tcp, seq, body.get(header_len..).ok_or(FrameError::Truncated)?)
        }
        other => return Err(FrameError::NotUdpTcp(other)),
    };
    Ok(Segment { src: SocketAddr::new(src, src_port), dst: SocketAddr::new(dst, dst_port), transport, seq, payload })
}

/// Splits TCP stream data into the complete length-prefixed DNS messages at its start. The
/// second value is how many bytes those took; the rest is the start of a message continued in a
/// later segment.
pub fn tcp_messages(data: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut messages = Vec::new();
    let mut consumed = 0;
    while let Some((&[hi, lo], tail)) = data[consumed..].split_first_chunk::<2>() {
        let length = usize::from(u16::from_be_bytes([hi, lo]));
        let Some(message) = tail.get(..length) else { break };
        messages.push(message);
        consumed += 2 + length;
    }
    (messages, consumed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp4(payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&ETH_P_IP.to_be_bytes());
        let total = (20 + 8 + payload.len()) as u16;
        frame.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, PROTO_UDP, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        frame[16..18].copy_from_slice(&total.to_be_bytes());
        frame.extend_from_slice(&53u16.to_be_bytes());
        frame.extend_from_slice(&40000u16.to_be_bytes());
        frame.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn udp_over_ipv4_with_ethernet_padding() {
        let mut frame = udp4(b"abc");
        frame.resize(60, 0); // minimum Ethernet frame: padding must not reach the payload
        let segment = parse_ethernet(&frame).unwrap();
        assert_eq!(segment.src, "10.0.0.1:53".parse().unwrap());
        assert_eq!(segment.dst, "10.0.0.2:40000".parse().unwrap());
        assert_eq!(segment.payload, b"abc");
        assert_eq!(segment.transport, Transport::Udp);
    }

    #[test]
    fn vlan_tags_are_skipped() {
        let plain = udp4(b"xyz");
        let mut tagged = plain[..12].to_vec();
        tagged.extend_from_slice(&[0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 20]);
        tagged.extend_from_slice(&plain[12..]);
        assert_eq!(parse_ethernet(&tagged).unwrap().payload, b"xyz");
    }

    #[test]
    fn fragments_and_truncation_are_reasons_not_panics() {
        let mut frame = udp4(b"abc");
        frame[20] = 0x00;
        frame[21] = 0x10; // fragment offset 16
        assert_eq!(parse_ethernet(&frame), Err(FrameError::Fragment));
        frame[20] = 0x20; // more fragments, offset 0: the first fragment
        frame[21] = 0x00;
        assert_eq!(parse_ethernet(&frame), Err(FrameError::Fragment));
        let frame = udp4(b"abcdef");
        for cut in 0..frame.len() {
            let result = parse_ethernet(&frame[..cut]);
            assert!(result.is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn ipv6_extension_headers_are_walked() {
        let mut packet = vec![0x60, 0, 0, 0, 0, 0, EXT_HOPOPTS, 64];
        packet.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        packet.extend_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        packet.extend_from_slice(&[EXT_FRAGMENT, 0, 0, 0, 0, 0, 0, 0]); // hop-by-hop, 8 bytes
        packet.extend_from_slice(&[PROTO_UDP, 0, 0, 0, 0, 0, 0, 7]); // an atomic fragment (RFC 6946)
        packet.extend_from_slice(&[0, 53, 0x9c, 0x40, 0, 10, 0, 0, b'h', b'i']);
        let payload = (packet.len() - 40) as u16;
        packet[4..6].copy_from_slice(&payload.to_be_bytes());
        let segment = parse_ip(&packet).unwrap();
        assert_eq!(segment.src, "[::1]:53".parse().unwrap());
        assert_eq!(segment.payload, b"hi");
        packet[48 + 3] = 0x01; // more fragments: the first of several
        assert_eq!(parse_ip(&packet), Err(FrameError::Fragment));
        packet[48 + 3] = 0x08; // offset 1: a non-first fragment
        assert_eq!(parse_ip(&packet), Err(FrameError::Fragment));
    }

    #[test]
    fn tcp_messages_split_on_length_prefixes() {
        assert_eq!(tcp_messages(&[0, 2, 1, 2, 0, 1, 9]), (vec![&[1u8, 2][..], &[9][..]], 7));
        assert_eq!(tcp_messages(&[0, 1, 7, 0, 5, 1, 2]), (vec![&[7u8][..]], 3));
        assert_eq!(tcp_messages(&[0]), (vec![], 0));
        assert_eq!(tcp_messages(&[]), (vec![], 0));
    }
}
