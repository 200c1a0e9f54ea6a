//! DNS messages for `portcullis resolve`'s stub resolver (RFC 1035 §4): the query it sends and
//! the reply it reads, reduced to the addresses a name resolves to through its CNAME chain.
//!
//! Pure: bytes in, values out. A reply is attacker-controlled input (anyone who can reach the
//! socket can answer), so every length and offset is checked, a name is at most 255 bytes, a
//! compression pointer must point strictly backwards (no loops), at most [`MAX_ANSWERS`]
//! records are read, and a CNAME chain is followed for at most [`MAX_CHAIN`] links. A reply
//! whose ID or question is not the query's is [`WireError::NotOurs`]: the resolver drops it
//! and keeps waiting for the real one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::intents::Answer;
use super::observation::MAX_ANSWERS;
use super::resolve::Resolution;

/// Record type A.
pub const TYPE_A: u16 = 1;
/// Record type AAAA.
pub const TYPE_AAAA: u16 = 28;
/// Record type CNAME.
pub const TYPE_CNAME: u16 = 5;
const CLASS_IN: u16 = 1;
/// CNAME links followed from the asked name, at most.
pub const MAX_CHAIN: usize = 16;
/// Longest name on the wire (RFC 1035 §2.3.4).
const MAX_NAME: usize = 255;

/// Why bytes are not a usable reply to a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Another query's reply, or not a reply at all: ignore it and keep waiting.
    #[error("not a reply to this query")]
    NotOurs,
    #[error("malformed DNS message: {0}")]
    Malformed(&'static str),
    #[error("cannot ask for {0:?}: not a DNS name")]
    BadName(String),
}

/// The query for `name` (absolute; a final dot is optional) of type `qtype`, recursion desired.
pub fn query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(18 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00]); // RD
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() || trimmed.len() > 253 {
        return Err(WireError::BadName(name.to_owned()));
    }
    for label in trimmed.split('.') {
        let ok = !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
        if !ok {
            return Err(WireError::BadName(name.to_owned()));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(out)
}

/// What one record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    Address(IpAddr),
    /// The canonical name (lowercase, no final dot).
    Cname(String),
    /// Any other type, or a class other than IN.
    Other,
}

/// One answer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The owner name (lowercase, no final dot).
    pub owner: String,
    pub ttl: u32,
    pub data: RecordData,
}

/// A reply to a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// TC: the answer did not fit; ask again over TCP.
    pub truncated: bool,
    /// The response code: 0 no error, 3 NXDOMAIN, 2 SERVFAIL, 5 REFUSED, ...
    pub rcode: u8,
    /// The answer section (at most [`MAX_ANSWERS`] records).
    pub answers: Vec<Record>,
}

/// Reads `bytes` as the reply to the query `id` for `name` of type `qtype`.
pub fn parse_reply(bytes: &[u8], id: u16, name: &str, qtype: u16) -> Result<Reply, WireError> {
    let header = bytes.get(..12).ok_or(WireError::NotOurs)?;
    let flags = u16::from_be_bytes([header[2], header[3]]);
    let is_response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    if u16::from_be_bytes([header[0], header[1]]) != id || !is_response || opcode != 0 {
        return Err(WireError::NotOurs);
    }
    let count = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    if count(4) != 1 {
        return Err(WireError::NotOurs);
    }
    let mut at = 12;
    let asked = read_name(bytes, &mut at)?;
    let (asked_type, asked_class) = (read_u16(bytes, &mut at)?, read_u16(bytes, &mut at)?);
    if asked != normalize(name) || asked_type != qtype || asked_class != CLASS_IN {
        return Err(WireError::NotOurs);
    }
    let mut answers = Vec::new();
    for _ in 0..usize::from(count(6)).min(MAX_ANSWERS) {
        let owner = read_name(bytes, &mut at)?;
        let (rtype, class) = (read_u16(bytes, &mut at)?, read_u16(bytes, &mut at)?);
        let ttl = u32::from(read_u16(bytes, &mut at)?) << 16 | u32::from(read_u16(bytes, &mut at)?);
        // RFC 2181 §8: a TTL with the top bit set is read as zero.
        let ttl = if ttl > i32::MAX as u32 { 0 } else { ttl };
        let length = usize::from(read_u16(bytes, &mut at)?);
        let end = at.checked_add(length).filter(|&e| e <= bytes.len()).ok_or(WireError::Malformed("record data"))?;
        let rdata = &bytes[at..end];
        let data = match (rtype, class) {
            (TYPE_A, CLASS_IN) => {
                let octets: [u8; 4] = rdata.try_into().map_err(|_| WireError::Malformed("A record length"))?;
                RecordData::Address(IpAddr::V4(Ipv4Addr::from(octets)))
            }
            (TYPE_AAAA, CLASS_IN) => {
                let octets: [u8; 16] = rdata.try_into().map_err(|_| WireError::Malformed("AAAA record length"))?;
                RecordData::Address(IpAddr::V6(Ipv6Addr::from(octets)))
            }
            (TYPE_CNAME, CLASS_IN) => {
                let mut inner = at;
                let target = read_name(bytes, &mut inner)?;
                if inner != end {
                    return Err(WireError::Malformed("CNAME record length"));
                }
                RecordData::Cname(target)
            }
            _ => RecordData::Other,
        };
        at = end;
        answers.push(Record { owner, ttl, data });
    }
    Ok(Reply { truncated: flags & 0x0200 != 0, rcode: (flags & 0xf) as u8, answers })
}

impl Reply {
    /// Adds what this reply says `name` resolves to: the CNAME chain from `name` (at most
    /// [`MAX_CHAIN`] links, a loop ends it) and the addresses owned by a name on that chain.
    /// Records about other names are ignored: a server may add them, but they answer nothing
    /// that was asked.
    pub fn resolve_into(&self, name: &str, out: &mut Resolution) {
        let mut chain = vec![normalize(name)];
        while chain.len() <= MAX_CHAIN {
            let Some(last) = chain.last() else { break };
            let next = self.answers.iter().find_map(|r| match &r.data {
                RecordData::Cname(target) if &r.owner == last => Some(target.clone()),
                _ => None,
            });
            match next {
                Some(target) if !chain.contains(&target) => chain.push(target),
                _ => break,
            }
        }
        for record in &self.answers {
            if let RecordData::Address(ip) = record.data
                && chain.contains(&record.owner)
            {
                out.answers.push(Answer { ip, ttl: record.ttl });
            }
        }
        for target in &chain[1..] {
            if !out.cnames.contains(target) {
                out.cnames.push(target.clone());
            }
        }
    }
}

/// A name as replies are compared: lowercase, no final dot.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

fn read_u16(bytes: &[u8], at: &mut usize) -> Result<u16, WireError> {
    let pair = bytes.get(*at..*at + 2).ok_or(WireError::Malformed("message ends early"))?;
    *at += 2;
    Ok(u16::from_be_bytes([pair[0], pair[1]]))
}

/// Reads the (possibly compressed) name at `*at`, leaving `*at` after it. Lowercase, dot
/// separated, no final dot; a byte that is not printable ASCII, a dot or a backslash inside a
/// label is written `\DDD` (master-file syntax), so no two names read alike.
fn read_name(bytes: &[u8], at: &mut usize) -> Result<String, WireError> {
    let mut out = String::new();
    let mut wire_length = 0;
    let mut pos = *at;
    // Where the labels being read began: a pointer must jump strictly before it, so every jump
    // lands lower than the last and reading ends.
    let mut segment = *at;
    let mut resume = None;
    loop {
        let &length = bytes.get(pos).ok_or(WireError::Malformed("name ends early"))?;
        match length {
            0 => {
                *at = resume.unwrap_or(pos + 1);
                return Ok(out);
            }
            1..=63 => {
                let label = bytes.get(pos + 1..pos + 1 + usize::from(length)).ok_or(WireError::Malformed("label"))?;
                wire_length += label.len() + 1;
                if wire_length + 1 > MAX_NAME {
                    return Err(WireError::Malformed("name longer than 255 bytes"));
                }
                if !out.is_empty() {
                    out.push('.');
                }
                for &b in label {
                    match b {
                        b'.' | b'\\' => out.push_str(&format!("\\{b:03}")),
                        b if b.is_ascii_graphic() => out.push(char::from(b.to_ascii_lowercase())),
                        b => out.push_str(&format!("\\{b:03}")),
                    }
                }
                pos += 1 + label.len();
            }
            0xc0..=0xff => {
                let &low = bytes.get(pos + 1).ok_or(WireError::Malformed("compression pointer"))?;
                let target = usize::from(length & 0x3f) << 8 | usize::from(low);
                if target >= segment {
                    return Err(WireError::Malformed("compression pointer does not point back"));
                }
                resume.get_or_insert(pos + 2);
                (pos, segment) = (target, target);
            }
            _ => return Err(WireError::Malformed("label type")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply to `query(id, name, qtype)` with the given answer records (owner, type, rdata),
    /// written out by hand from RFC 1035's layout.
    fn reply(id: u16, name: &str, qtype: u16, flags: u16, answers: &[(&[u8], u16, u32, &[u8])]) -> Vec<u8> {
        let mut out = query(id, name, qtype).unwrap();
        out[2..4].copy_from_slice(&(flags | 0x8000).to_be_bytes());
        out[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
        for (owner, rtype, ttl, rdata) in answers {
            out.extend_from_slice(owner);
            out.extend_from_slice(&rtype.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            out.extend_from_slice(rdata);
        }
        out
    }

    /// The question's name starts at offset 12: a pointer to it.
    const QNAME: &[u8] = &[0xc0, 12];

    #[test]
    fn a_query_is_rfc_1035_bytes() {
        let q = query(0xabcd, "Api.Example.com.", TYPE_AAAA).unwrap();
        let mut expected = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(b"\x03Api\x07Example\x03com\x00\x00\x1c\x00\x01");
        assert_eq!(q, expected);
        for bad in ["", ".", "a..b", "has space.com", &format!("{}.com", "x".repeat(64)), "back\\slash.com"] {
            assert_eq!(query(1, bad, TYPE_A), Err(WireError::BadName(bad.to_owned())), "{bad:?}");
        }
    }

    #[test]
    fn the_chain_from_the_name_gives_its_addresses() {
        // www → edge → host, host has A 192.0.2.10; other.example has an address nobody asked.
        let edge = b"\x04edge\x07example\x00";
        let host = b"\x04host\x07example\x00";
        let bytes = reply(
            7,
            "WWW.example",
            TYPE_A,
            0,
            &[
                (QNAME, TYPE_CNAME, 300, edge),
                (edge, TYPE_CNAME, 300, host),
                (host, TYPE_A, 42, &[192, 0, 2, 10]),
                (b"\x05other\x07example\x00", TYPE_A, 42, &[198, 51, 100, 1]),
            ],
        );
        let r = parse_reply(&bytes, 7, "www.EXAMPLE.", TYPE_A).unwrap();
        assert_eq!((r.truncated, r.rcode, r.answers.len()), (false, 0, 4));
        let mut out = Resolution::default();
        r.resolve_into("www.example", &mut out);
        assert_eq!(out.cnames, ["edge.example", "host.example"]);
        assert_eq!(out.answers, [Answer { ip: "192.0.2.10".parse().unwrap(), ttl: 42 }]);
    }

    #[test]
    fn replies_to_another_query_are_not_ours() {
        let bytes = reply(7, "a.example", TYPE_A, 0, &[(QNAME, TYPE_A, 1, &[192, 0, 2, 1])]);
        assert_eq!(parse_reply(&bytes, 8, "a.example", TYPE_A), Err(WireError::NotOurs), "other ID");
        assert_eq!(parse_reply(&bytes, 7, "b.example", TYPE_A), Err(WireError::NotOurs), "other name");
        assert_eq!(parse_reply(&bytes, 7, "a.example", TYPE_AAAA), Err(WireError::NotOurs), "other type");
        let question = query(7, "a.example", TYPE_A).unwrap();
        assert_eq!(parse_reply(&question, 7, "a.example", TYPE_A), Err(WireError::NotOurs), "a query");
        assert_eq!(parse_reply(&bytes[..11], 7, "a.example", TYPE_A), Err(WireError::NotOurs), "short");
    }

    #[test]
    fn flags_and_codes_are_read() {
        let bytes = reply(1, "a.example", TYPE_A, 0x0200 | 3, &[]);
        let r = parse_reply(&bytes, 1, "a.example", TYPE_A).unwrap();
        assert_eq!((r.truncated, r.rcode, r.answers.len()), (true, 3, 0));
    }

    #[test]
    fn hostile_replies_are_refused_not_followed() {
        let malformed =
            |bytes: &[u8]| matches!(parse_reply(bytes, 1, "a.example", TYPE_A), Err(WireError::Malformed(_)));
        // A pointer to itself, one pointing forwards, and a label followed by a pointer back to
        // that label (backwards from the pointer, but a loop).
        assert!(malformed(&reply(1, "a.example", TYPE_A, 0, &[(&[0xc0, 27], TYPE_A, 1, &[1, 2, 3, 4])])));
        assert!(malformed(&reply(1, "a.example", TYPE_A, 0, &[(&[1, b'x', 0xc0, 27], TYPE_A, 1, &[1, 2, 3, 4])])));
        assert!(malformed(&reply(1, "a.example", TYPE_A, 0, &[(&[0xc0, 200], TYPE_A, 1, &[1, 2, 3, 4])])));
        // Record data running past the end, an A record of 5 bytes, a CNAME with trailing bytes.
        let mut cut = reply(1, "a.example", TYPE_A, 0, &[(QNAME, TYPE_A, 1, &[1, 2, 3, 4])]);
        cut.truncate(cut.len() - 1);
        assert!(malformed(&cut));
        assert!(malformed(&reply(1, "a.example", TYPE_A, 0, &[(QNAME, TYPE_A, 1, &[1, 2, 3, 4, 5])])));
        assert!(malformed(&reply(1, "a.example", TYPE_A, 0, &[(QNAME, TYPE_CNAME, 1, b"\x01b\x00\x00")])));
        // A name of 300 bytes made of pointers to labels is still too long.
        let mut long = query(1, "a.example", TYPE_A).unwrap();
        long[2] |= 0x80;
        long[7] = 1;
        let start = long.len();
        for _ in 0..5 {
            long.extend_from_slice(&[63]);
            long.extend_from_slice(&[b'x'; 63]);
        }
        long.push(0);
        long.extend_from_slice(&[0xc0, start as u8]);
        long.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4]);
        assert!(malformed(&long));
        // Labels with dots and control bytes cannot pass for other names.
        let odd = b"\x03a.b\x01\x07\x00";
        let bytes = reply(1, "a.example", TYPE_A, 0, &[(QNAME, TYPE_CNAME, 1, odd), (odd, TYPE_A, 1, &[1, 2, 3, 4])]);
        let r = parse_reply(&bytes, 1, "a.example", TYPE_A).unwrap();
        let mut out = Resolution::default();
        r.resolve_into("a.example", &mut out);
        assert_eq!(out.cnames, ["a\\046b.\\007"]);
        assert_eq!(out.answers.len(), 1);
    }

    #[test]
    fn chains_end_at_a_loop_and_at_their_limit() {
        let b = b"\x01b\x00";
        let bytes = reply(1, "a", TYPE_A, 0, &[(QNAME, TYPE_CNAME, 1, b), (b, TYPE_CNAME, 1, QNAME)]);
        let mut out = Resolution::default();
        parse_reply(&bytes, 1, "a", TYPE_A).unwrap().resolve_into("a", &mut out);
        assert_eq!(out.cnames, ["b"]);

        let names: Vec<Vec<u8>> = (0..40u8).map(|i| vec![1, b'a' + i % 26, 1, b'0' + i / 26, 0]).collect();
        let mut records: Vec<(&[u8], u16, u32, &[u8])> = vec![(QNAME, TYPE_CNAME, 1, &names[0])];
        for pair in names.windows(2) {
            records.push((&pair[0], TYPE_CNAME, 1, &pair[1]));
        }
        let bytes = reply(1, "start", TYPE_A, 0, &records);
        let mut out = Resolution::default();
        parse_reply(&bytes, 1, "start", TYPE_A).unwrap().resolve_into("start", &mut out);
        assert_eq!(out.cnames.len(), MAX_CHAIN);
    }

    #[test]
    fn at_most_max_answers_records_are_read() {
        let records: Vec<(&[u8], u16, u32, &[u8])> =
            (0..MAX_ANSWERS + 10).map(|_| (QNAME, TYPE_A, 1, &[192, 0, 2, 1][..])).collect();
        let r = parse_reply(&reply(1, "a", TYPE_A, 0, &records), 1, "a", TYPE_A).unwrap();
        assert_eq!(r.answers.len(), MAX_ANSWERS);
    }
}
