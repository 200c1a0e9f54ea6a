//! Arbitrary bytes as the reply `portcullis resolve`'s stub resolver reads (the first two bytes
//! choose the query type). Properties: the parser never panics or loops; a reply it accepts
//! answers the query (its ID and question); the chain from the name stays within the limits and
//! only ever holds addresses the reply carried.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_linter::egress::resolve::Resolution;
use portcullis_linter::egress::wire::{MAX_CHAIN, RecordData, TYPE_A, TYPE_AAAA, parse_reply};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, reply)) = data.split_first() else { return };
    let qtype = if selector & 1 == 0 { TYPE_A } else { TYPE_AAAA };
    let id = reply.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    for name in ["a.example", "www.example.com"] {
        let Ok(parsed) = parse_reply(reply, id, name, qtype) else { continue };
        let mut out = Resolution::default();
        parsed.resolve_into(name, &mut out);
        assert!(out.cnames.len() <= MAX_CHAIN);
        for answer in &out.answers {
            assert!(parsed.answers.iter().any(|r| r.data == RecordData::Address(answer.ip) && r.ttl == answer.ttl));
        }
    }
});
