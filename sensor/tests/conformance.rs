//! The sensor's parsers on real captures written by others: the tcpdump and Zeek DNS test pcaps
//! in `../shared/conformance/dns/` (read from there, never copied), checked against the message
//! index that comes with them (`messages.jsonl`, decoded by an independent decoder).
//!
//! - Frame parsing must cut out exactly the DNS payload the index records, for every decodable
//!   UDP message; TCP messages must come out of the stream reassembly intact.
//! - For every decodable NOERROR answer to an A/AAAA question, the addresses the sensor reads
//!   (through the CNAME chain) must be the ones the index lists.
//! - Malformed messages (pointer loops, bad labels, overruns) must be errors, never panics.
//! - A per-capture summary of what the matcher makes of each file is an insta snapshot.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)] // test code: a failed unwrap is a failed test

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_sensor::dns::{self, Address};
use portcullis_sensor::matcher::{MatchConfig, Matcher, Share, Via};
use portcullis_sensor::packet::Transport;
use portcullis_sensor::pcap;
use portcullis_sensor::stats::{Reason, Stats};
use portcullis_sensor::tcp::{StreamLimits, Streams};
use serde_json::Value;

/// The DNS corpus beside the checkout: required in CI (`.ci/run` sets
/// `PORTCULLIS_REQUIRE_CONFORMANCE`); in a contributor's plain clone the tests are skipped.
fn corpus() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/dns");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("PORTCULLIS_REQUIRE_CONFORMANCE").is_none(),
        "the conformance corpus {} is missing: CI provides it beside the checkout",
        dir.display()
    );
    eprintln!("SKIPPED: no conformance corpus at {} (CI requires it)", dir.display());
    None
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn rows(corpus: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(corpus.join("messages.jsonl")).unwrap();
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// Addresses for the question, following CNAMEs, from the index's decoded answers.
fn expected_addresses(decoded: &Value) -> Option<Vec<(IpAddr, u32)>> {
    let question = decoded["questions"].get(0)?;
    let qtype = question["type"].as_str()?;
    if !matches!(qtype, "A" | "AAAA") || decoded["rcode"] != 0 || decoded["qr"] != true {
        return None;
    }
    let lower = |s: &str| s.trim_end_matches('.').to_ascii_lowercase();
    let answers = decoded["answers"].as_array()?;
    let mut name = lower(question["name"].as_str()?);
    let mut ttl = u32::MAX;
    for _ in 0..16 {
        let next = answers.iter().find(|a| a["type"] == "CNAME" && lower(a["name"].as_str().unwrap()) == name);
        let Some(next) = next else { break };
        ttl = ttl.min(next["ttl"].as_u64().unwrap() as u32);
        name = lower(next["data"].as_str().unwrap());
    }
    Some(
        answers
            .iter()
            .filter(|a| a["type"] == qtype && lower(a["name"].as_str().unwrap()) == name)
            .map(|a| (a["data"].as_str().unwrap().parse().unwrap(), (a["ttl"].as_u64().unwrap() as u32).min(ttl)))
            .collect(),
    )
}

#[test]
fn frames_and_answers_match_the_index() {
    let Some(dir) = corpus() else { return };
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    let (mut udp_checked, mut tcp_checked, mut answers_checked, mut malformed) = (0, 0, 0, 0);
    let mut tcp_messages: HashMap<String, Vec<String>> = HashMap::new();
    for row in rows(&dir) {
        let file = row["file"].as_str().unwrap().to_owned();
        let bytes = files.entry(file.clone()).or_insert_with(|| std::fs::read(dir.join(&file)).unwrap());
        let capture = pcap::parse(bytes).unwrap();
        let index = usize::try_from(row["frame"].as_u64().unwrap() - 1).unwrap();
        let record = capture.records[index];
        let decodable = row["error"].is_null();
        let expected_hex = row["hex"].as_str().unwrap();
        match row["transport"].as_str().unwrap() {
            "udp" => {
                let parsed = pcap::segment(capture.link, record.data);
                if decodable && !row["capture_truncated"].as_bool().unwrap() {
                    let segment = parsed.unwrap_or_else(|e| panic!("{file}#{}: {e}", index + 1));
                    assert_eq!(hex(segment.payload), expected_hex, "{file}#{}", index + 1);
                    udp_checked += 1;
                }
            }
            _ => {
                // Reassemble the whole capture once; every indexed TCP message must come out.
                let messages = tcp_messages.entry(file.clone()).or_insert_with(|| {
                    let limits = StreamLimits { flows: 64, ..StreamLimits::default() };
                    let mut streams = Streams::new(limits, Duration::from_secs(3600));
                    let now = Instant::now();
                    let mut out = Vec::new();
                    for record in &capture.records {
                        if let Ok(segment) = pcap::segment(capture.link, record.data)
                            && segment.transport == Transport::Tcp
                        {
                            let key = (segment.src, segment.dst, Via::Recorded);
                            let share = Share::of(Via::Recorded, segment.src.ip());
                            let pushed = streams.push(key, share, segment.seq, segment.payload, now);
                            out.extend(pushed.messages.iter().map(|m| hex(m)));
                        }
                    }
                    out
                });
                assert!(
                    messages.iter().any(|m| m == expected_hex),
                    "{file}#{}: TCP message not reassembled",
                    index + 1
                );
                tcp_checked += 1;
            }
        }
        let payload: Vec<u8> = (0..expected_hex.len() / 2)
            .map(|i| u8::from_str_radix(&expected_hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let summary = dns::summarize(&payload);
        if !decodable {
            assert!(
                summary.is_err(),
                "{file}#{}: the index says malformed ({}), the sensor accepted it",
                index + 1,
                row["error"]
            );
            malformed += 1;
            continue;
        }
        if let Some(expected) = expected_addresses(&row["decoded"]) {
            let summary = summary.unwrap_or_else(|e| panic!("{file}#{}: {e}", index + 1));
            let got: Vec<(IpAddr, u32)> = summary.addresses.iter().map(|Address { ip, ttl }| (*ip, *ttl)).collect();
            assert_eq!(got, expected, "{file}#{}", index + 1);
            answers_checked += 1;
        }
    }
    // Exact counts: a test that silently stopped checking (or a corpus that changed) fails here.
    assert_eq!((udp_checked, tcp_checked, answers_checked, malformed), (220, 15, 100, 13));
}

/// Every capture through the matcher, trusting each capture's responders (these are not
/// cluster captures), with the capture's own clock. The snapshot is the per-file verdict.
#[test]
fn captures_through_the_matcher() {
    let Some(dir) = corpus() else { return };
    let mut paths: Vec<PathBuf> = Vec::new();
    for sub in ["pcap/tcpdump", "pcap/zeek", "pcap/zeek/dns"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "pcap") {
                paths.push(path);
            }
        }
    }
    paths.sort();
    let mut report = String::new();
    for path in &paths {
        let bytes = std::fs::read(path).unwrap();
        let name = path.strip_prefix(&dir).unwrap().display().to_string();
        let capture = match pcap::parse(&bytes) {
            Ok(capture) => capture,
            Err(e) => {
                let _ = writeln!(report, "{name}: unreadable: {e}");
                continue;
            }
        };
        // Trust whoever answers from port 53 in this capture.
        let trusted: Vec<IpAddr> = capture
            .records
            .iter()
            .filter_map(|r| pcap::segment(capture.link, r.data).ok())
            .filter(|s| s.src.port() == 53)
            .map(|s| s.src.ip())
            .collect();
        let stats = Arc::new(Stats::default());
        let config = MatchConfig { max_pending: 1024, ..MatchConfig::default() };
        let mut matcher = Matcher::new(config, trusted, stats.clone());
        let base = Instant::now();
        let mut observed = Vec::new();
        for record in &capture.records {
            let at =
                base + Duration::from_secs(u64::from(record.ts_sec)) + Duration::from_micros(u64::from(record.ts_usec));
            stats.bump(Reason::Frames);
            match pcap::segment(capture.link, record.data) {
                // A pcap says nothing of interfaces or direction.
                Ok(segment) => observed.extend(matcher.segment(&segment, Via::Recorded, at)),
                Err(e) => {
                    let _ = writeln!(report, "{name}: frame error: {e}");
                }
            }
        }
        let counts: BTreeMap<&str, u64> =
            stats.snapshot().into_iter().filter(|(_, n)| *n > 0).map(|(r, n)| (r.label(), n)).collect();
        let _ = writeln!(report, "{name}: {counts:?}");
        for answered in observed {
            let addresses: Vec<String> = answered.answers.iter().map(|a| format!("{} ttl={}", a.ip, a.ttl)).collect();
            let _ = writeln!(
                report,
                "  {} asked {} ({}): {} via {:?}",
                answered.client,
                answered.qname,
                answered.transport.as_str(),
                addresses.join(", "),
                answered.cnames
            );
        }
    }
    insta::assert_snapshot!(report);
}
