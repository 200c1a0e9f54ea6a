//! A reader for classic pcap files (the recorded packets in `testcases/dns/` and the conformance
//! captures), for tests, the benchmark and `portcullis-sensor`'s offline checks. Not pcapng.

use crate::packet::{self, FrameError, Segment};

/// Link types this reader can take apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// BSD loopback: a 4-byte address family, then IP.
    Null,
    Ethernet,
    /// Raw IP (LINKTYPE_RAW, 101, and the old DLT_RAW, 12 or 14).
    Raw,
    /// Linux "cooked" capture v1: a 16-byte header.
    LinuxSll,
}

/// One captured packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub ts_sec: u32,
    pub ts_usec: u32,
    /// Length on the wire; more than `data.len()` when the capture was cut.
    pub orig_len: u32,
    pub data: &'a [u8],
}

/// A parsed capture file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcap<'a> {
    pub link: LinkType,
    pub records: Vec<Record<'a>>,
}

/// Why a file is not a capture this reader takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcapError {
    #[error("not a pcap file (magic {0:#010x}); pcapng is not supported")]
    Magic(u32),
    #[error("unsupported link type {0}")]
    LinkType(u32),
    #[error("record {index} at byte {offset} runs past the end of the file")]
    Truncated { index: usize, offset: usize },
}

/// Parses a whole pcap file held in memory.
pub fn parse(bytes: &[u8]) -> Result<Pcap<'_>, PcapError> {
    let header = bytes.get(..24).ok_or(PcapError::Magic(0))?;
    let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let little = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        other => return Err(PcapError::Magic(other)),
    };
    let word = |at: &[u8]| -> u32 {
        let raw = [at[0], at[1], at[2], at[3]];
        if little { u32::from_le_bytes(raw) } else { u32::from_be_bytes(raw) }
    };
    let link = match word(&header[20..24]) & 0x0fff_ffff {
        0 => LinkType::Null,
        1 => LinkType::Ethernet,
        12 | 14 | 101 => LinkType::Raw,
        113 => LinkType::LinuxSll,
        other => return Err(PcapError::LinkType(other)),
    };
    let mut records = Vec::new();
    let mut offset = 24;
    while offset < bytes.len() {
        let index = records.len();
        let head = bytes.get(offset..offset + 16).ok_or(PcapError::Truncated { index, offset })?;
        let incl = usize::try_from(word(&head[8..12])).map_err(|_| PcapError::Truncated { index, offset })?;
        let data = bytes.get(offset + 16..offset + 16 + incl).ok_or(PcapError::Truncated { index, offset })?;
        records.push(Record {
            ts_sec: word(&head[0..4]),
            ts_usec: word(&head[4..8]),
            orig_len: word(&head[12..16]),
            data,
        });
        offset += 16 + incl;
    }
    Ok(Pcap { link, records })
}

/// Takes one captured packet of link type `link` apart, down to UDP/TCP.
pub fn segment(link: LinkType, data: &[u8]) -> Result<Segment<'_>, FrameError> {
    match link {
        LinkType::Ethernet => packet::parse_ethernet(data),
        LinkType::Null => packet::parse_ip(data.get(4..).ok_or(FrameError::Truncated)?),
        LinkType::Raw => packet::parse_ip(data),
        LinkType::LinuxSll => packet::parse_ip(data.get(16..).ok_or(FrameError::Truncated)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_cut_files_are_errors() {
        assert_eq!(parse(b"short"), Err(PcapError::Magic(0)));
        assert!(matches!(parse(&[0u8; 24]), Err(PcapError::Magic(0))));
        let mut file = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        file.extend_from_slice(&[0; 12]);
        file.extend_from_slice(&1u32.to_le_bytes());
        assert_eq!(parse(&file).unwrap().records.len(), 0);
        file.extend_from_slice(&[0; 8]);
        file.extend_from_slice(&100u32.to_le_bytes());
        file.extend_from_slice(&100u32.to_le_bytes());
        file.extend_from_slice(&[1, 2, 3]);
        assert_eq!(parse(&file), Err(PcapError::Truncated { index: 0, offset: 24 }));
    }
}
