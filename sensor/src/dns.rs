//! DNS messages, decoded with hickory-proto and reduced to what the sensor needs: the header, the
//! one question, and for responses the addresses the question resolves to through its CNAME chain.

use std::collections::HashSet;
use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

/// CNAME hops followed before a chain is considered a loop.
const MAX_CHAIN: usize = 16;

/// Addresses one observation carries at most: what the webhook accepts per observation (a
/// batch with more is refused whole, so one pod's huge answer must not reach it).
pub use portcullis_linter::egress::observation::MAX_ANSWERS;

/// The question of a query or response: lower-case name without the trailing dot, and type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Question {
    pub name: String,
    pub qtype: RecordType,
}

/// An address answer with its TTL: the smallest TTL along the CNAME chain that leads to it,
/// since the name-to-address binding lasts only as long as every link of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    pub ip: IpAddr,
    pub ttl: u32,
}

/// The parts of a DNS message the sensor looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub id: u16,
    pub response: bool,
    pub truncated: bool,
    pub rcode: ResponseCode,
    /// The question, when the message has exactly one of class IN (every resolver sends one).
    pub question: Option<Question>,
    /// Responses: the CNAME chain from the question, in order.
    pub cnames: Vec<String>,
    /// Responses: A and AAAA records of the name at the end of the chain.
    pub addresses: Vec<Address>,
    /// Responses: the chain loops or is longer than the sensor follows.
    pub chain_broken: bool,
    /// Responses: more distinct addresses than [`MAX_ANSWERS`]; the first ones are kept.
    pub capped: bool,
}

/// A message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("malformed DNS message: {0}")]
    Malformed(String),
    #[error("not a standard query or response (opcode {0:?})")]
    NotQuery(OpCode),
}

fn lower(name: &Name) -> String {
    let mut text = name.to_ascii();
    if text.len() > 1 && text.ends_with('.') {
        text.pop();
    }
    text.make_ascii_lowercase();
    text
}

/// Decodes `bytes` (one DNS message, without a TCP length prefix).
pub fn summarize(bytes: &[u8]) -> Result<Summary, DnsError> {
    let message = Message::from_vec(bytes).map_err(|err| DnsError::Malformed(err.to_string()))?;
    let meta = &message.metadata;
    if meta.op_code != OpCode::Query {
        return Err(DnsError::NotQuery(meta.op_code));
    }
    let question = match message.queries.as_slice() {
        [only] if only.query_class() == DNSClass::IN => {
            Some(Question { name: lower(only.name()), qtype: only.query_type() })
        }
        _ => None,
    };
    let mut summary = Summary {
        id: meta.id,
        response: meta.message_type == MessageType::Response,
        truncated: meta.truncation,
        rcode: meta.response_code,
        question,
        cnames: Vec::new(),
        addresses: Vec::new(),
        chain_broken: false,
        capped: false,
    };
    if summary.response
        && let Some(question) = summary.question.clone()
    {
        follow_chain(&message, &question, &mut summary);
    }
    Ok(summary)
}

/// Walks the answer section from the question's name through CNAMEs, then collects the address
/// records of the final name. Records for names off the chain are ignored: a resolver has no
/// business sending them, and trusting them would let a response vouch for unrelated names.
/// At most [`MAX_ANSWERS`] distinct addresses are kept, found in linear time (a 64 KiB answer
/// holds ~4,000 records).
fn follow_chain(message: &Message, question: &Question, summary: &mut Summary) {
    let Summary { cnames, addresses, chain_broken: broken, capped, .. } = summary;
    let answers: Vec<(String, &hickory_proto::rr::Record)> = message
        .answers
        .iter()
        .filter(|record| record.dns_class == DNSClass::IN)
        .map(|record| (lower(&record.name), record))
        .collect();
    let mut current = question.name.clone();
    let mut chain_ttl = u32::MAX;
    loop {
        let next = answers.iter().find_map(|(owner, record)| match &record.data {
            RData::CNAME(target) if *owner == current => Some((lower(&target.0), record.ttl)),
            _ => None,
        });
        let Some((target, ttl)) = next else { break };
        if cnames.len() >= MAX_CHAIN || target == question.name || cnames.contains(&target) {
            *broken = true;
            cnames.clear();
            return;
        }
        chain_ttl = chain_ttl.min(ttl);
        cnames.push(target.clone());
        current = target;
    }
    let mut seen = HashSet::new();
    for (owner, record) in &answers {
        if *owner != current {
            continue;
        }
        let ip = match &record.data {
            RData::A(a) if question.qtype == RecordType::A => IpAddr::V4(a.0),
            RData::AAAA(aaaa) if question.qtype == RecordType::AAAA => IpAddr::V6(aaaa.0),
            _ => continue,
        };
        if !seen.insert(ip) {
            continue;
        }
        if addresses.len() == MAX_ANSWERS {
            *capped = true;
            break;
        }
        addresses.push(Address { ip, ttl: record.ttl.min(chain_ttl) });
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::str::FromStr;

    use hickory_proto::op::Query;
    use hickory_proto::rr::Record;
    use hickory_proto::rr::rdata::{A, AAAA, CNAME};

    use super::*;

    fn name(text: &str) -> Name {
        Name::from_str(text).unwrap()
    }

    fn response(qname: &str, qtype: RecordType, answers: Vec<Record>) -> Vec<u8> {
        let mut message = Message::response(0x1234, OpCode::Query);
        message.add_query(Query::query(name(qname), qtype));
        message.add_answers(answers);
        message.to_vec().unwrap()
    }

    #[test]
    fn cname_chain_to_addresses_with_the_smallest_ttl() {
        let bytes = response(
            "API.Example.test.",
            RecordType::A,
            vec![
                Record::from_rdata(name("api.example.test."), 300, RData::CNAME(CNAME(name("edge.cdn.test.")))),
                Record::from_rdata(name("edge.cdn.test."), 30, RData::CNAME(CNAME(name("pop1.cdn.test.")))),
                Record::from_rdata(name("pop1.cdn.test."), 60, RData::A(A(Ipv4Addr::new(192, 0, 2, 7)))),
                Record::from_rdata(name("unrelated.test."), 60, RData::A(A(Ipv4Addr::new(192, 0, 2, 99)))),
            ],
        );
        let summary = summarize(&bytes).unwrap();
        assert!(summary.response);
        assert_eq!(summary.id, 0x1234);
        assert_eq!(summary.question, Some(Question { name: "api.example.test".into(), qtype: RecordType::A }));
        assert_eq!(summary.cnames, ["edge.cdn.test", "pop1.cdn.test"]);
        assert_eq!(summary.addresses, [Address { ip: "192.0.2.7".parse().unwrap(), ttl: 30 }]);
    }

    #[test]
    fn aaaa_answers_only_for_aaaa_questions() {
        let bytes = response(
            "v6.example.test.",
            RecordType::AAAA,
            vec![
                Record::from_rdata(name("v6.example.test."), 60, RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))),
                Record::from_rdata(name("v6.example.test."), 60, RData::A(A(Ipv4Addr::LOCALHOST))),
            ],
        );
        let summary = summarize(&bytes).unwrap();
        assert_eq!(summary.addresses, [Address { ip: IpAddr::V6(Ipv6Addr::LOCALHOST), ttl: 60 }]);
    }

    #[test]
    fn cname_loops_are_broken_not_followed() {
        let bytes = response(
            "a.test.",
            RecordType::A,
            vec![
                Record::from_rdata(name("a.test."), 60, RData::CNAME(CNAME(name("b.test.")))),
                Record::from_rdata(name("b.test."), 60, RData::CNAME(CNAME(name("a.test.")))),
            ],
        );
        let summary = summarize(&bytes).unwrap();
        assert!(summary.chain_broken);
        assert!(summary.addresses.is_empty() && summary.cnames.is_empty());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(summarize(&[0xff; 5]), Err(DnsError::Malformed(_))));
        assert!(matches!(summarize(&[]), Err(DnsError::Malformed(_))));
    }

    #[test]
    fn a_huge_answer_keeps_the_first_addresses_the_webhook_takes() {
        let mut records = Vec::new();
        for i in 0..4000u32 {
            let ip = Ipv4Addr::from(0xc000_0200 + i % 3000); // 3,000 distinct, 1,000 repeated
            records.push(Record::from_rdata(name("big.example.test."), 60, RData::A(A(ip))));
        }
        let summary = summarize(&response("big.example.test.", RecordType::A, records)).unwrap();
        assert_eq!(summary.addresses.len(), MAX_ANSWERS);
        assert!(summary.capped);
        assert_eq!(summary.addresses[255].ip, IpAddr::V4(Ipv4Addr::from(0xc000_0200 + 255)));
        let small = summarize(&response(
            "a.example.test.",
            RecordType::A,
            vec![Record::from_rdata(name("a.example.test."), 60, RData::A(A(Ipv4Addr::LOCALHOST)))],
        ))
        .unwrap();
        assert!(!small.capped);
    }
}
