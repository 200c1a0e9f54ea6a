//! Recorded frames (`testcases/dns/*.hex`, written by `generate.py` there) through the matcher,
//! one verdict per frame: what the sensor observed, or which counter says why not. Covers
//! spoofing (wrong source, id, port, question; duplicates), errors, truncation, malformed
//! packets (compression loops, bad label lengths, cut headers, fragments) and split TCP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_sensor::matcher::{LOOPBACK_IFINDEX, MatchConfig, Matcher, Share, Via};
use portcullis_sensor::stats::{Reason, Stats};

fn unhex(line: &str) -> Vec<u8> {
    (0..line.len() / 2).map(|i| u8::from_str_radix(&line[2 * i..2 * i + 2], 16).unwrap()).collect()
}

#[test]
fn recorded_frames() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testcases/dns");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hex"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 7, "{cases:?}");
    for path in cases {
        let text = std::fs::read_to_string(&path).unwrap();
        let stats = Arc::new(Stats::default());
        let trusted = ["10.0.0.53".parse().unwrap(), "fd00::53".parse().unwrap()];
        let mut matcher = Matcher::new(MatchConfig::default(), trusted, stats.clone());
        let base = Instant::now();
        let mut report = String::new();
        let mut lines = text.lines().skip(1);
        let mut step = 0;
        while let Some(comment) = lines.next() {
            let comment =
                comment.strip_prefix("# ").unwrap_or_else(|| panic!("{}: expected a comment", path.display()));
            let frame = unhex(lines.next().unwrap_or(""));
            let before = stats.snapshot();
            let answered = matcher.frame(&frame, Via::Recorded, base + Duration::from_millis(10 * step));
            step += 1;
            let moved: Vec<&str> = stats
                .snapshot()
                .iter()
                .zip(&before)
                .filter(|((reason, after), (_, before))| after > before && reason.label() != "frames")
                .map(|((reason, _), _)| reason.label())
                .collect();
            let _ = writeln!(report, "{comment}\n  counted: {}", moved.join(", "));
            for a in answered {
                let answers: Vec<String> = a.answers.iter().map(|x| format!("{} ttl={}", x.ip, x.ttl)).collect();
                let _ = writeln!(
                    report,
                    "  observed: {} asked {} ({}) from {}: {} cnames={:?}",
                    a.client,
                    a.qname,
                    a.transport.as_str(),
                    a.server,
                    answers.join(", "),
                    a.cnames
                );
            }
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        insta::assert_snapshot!(name, report);
    }
}

#[test]
fn the_window_and_the_table_are_bounded() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../testcases/dns/a-record.hex")).unwrap();
    let frames: Vec<Vec<u8>> = text.lines().filter(|l| !l.starts_with('#')).map(unhex).collect();
    let stats = Arc::new(Stats::default());
    let config = MatchConfig { max_pending: 1, ..MatchConfig::default() };
    let mut matcher = Matcher::new(config, ["10.0.0.53".parse().unwrap()], stats.clone());
    let now = Instant::now();
    // Answered after the window: late, not observed.
    assert!(matcher.frame(&frames[0], Via::Recorded, now).is_empty());
    assert!(matcher.frame(&frames[1], Via::Recorded, now + Duration::from_secs(6)).is_empty());
    assert_eq!(stats.get(Reason::Late), 1);
    // A full table refuses new queries (counted) rather than growing.
    let mut second = frames[0].clone();
    let id_at = 14 + 20 + 8; // Ethernet + IPv4 + UDP headers: the DNS id
    second[id_at + 1] ^= 0xff;
    let later = now + Duration::from_secs(20);
    matcher.frame(&frames[0], Via::Recorded, later);
    matcher.frame(&second, Via::Recorded, later);
    assert_eq!(matcher.pending_len(), 1);
    assert_eq!(stats.get(Reason::PendingFull), 1);
    // The answer to the recorded one still goes through.
    assert_eq!(matcher.frame(&frames[1], Via::Recorded, later).len(), 1);
}

#[test]
fn answered_queries_do_not_grow_memory_at_any_rate() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../testcases/dns/a-record.hex")).unwrap();
    let frames: Vec<Vec<u8>> = text.lines().filter(|l| !l.starts_with('#')).map(unhex).collect();
    let stats = Arc::new(Stats::default());
    let config = MatchConfig { max_pending: 8, ..MatchConfig::default() };
    let mut matcher = Matcher::new(config, ["10.0.0.53".parse().unwrap()], stats.clone());
    let now = Instant::now();
    let id_at = 14 + 20 + 8;
    // 10,000 query/answer pairs within one window, each with its own id.
    for i in 0..10_000u16 {
        let (mut query, mut answer) = (frames[0].clone(), frames[1].clone());
        query[id_at..id_at + 2].copy_from_slice(&i.to_be_bytes());
        answer[id_at..id_at + 2].copy_from_slice(&i.to_be_bytes());
        matcher.frame(&query, Via::Recorded, now);
        assert_eq!(matcher.frame(&answer, Via::Recorded, now).len(), 1);
    }
    assert_eq!(stats.get(Reason::Observations), 10_000);
    assert!(matcher.bookkeeping() <= 4 * 8, "{}", matcher.bookkeeping());
}

/// The a-record query and its answer (client 10.0.0.x to the trusted 10.0.0.53), with the
/// client port and transaction id set.
fn exchange(port: u16, id: u16) -> (Vec<u8>, Vec<u8>) {
    static FRAMES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    let frames = FRAMES.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testcases/dns/a-record.hex");
        std::fs::read_to_string(path).unwrap().lines().filter(|l| !l.starts_with('#')).map(unhex).collect()
    });
    let (mut query, mut answer) = (frames[0].clone(), frames[1].clone());
    let (udp, id_at) = (14 + 20, 14 + 20 + 8); // Ethernet + IPv4 headers; then UDP's
    query[udp..udp + 2].copy_from_slice(&port.to_be_bytes());
    answer[udp + 2..udp + 4].copy_from_slice(&port.to_be_bytes());
    query[id_at..id_at + 2].copy_from_slice(&id.to_be_bytes());
    answer[id_at..id_at + 2].copy_from_slice(&id.to_be_bytes());
    (query, answer)
}

const fn arriving(ifindex: u32) -> Via {
    Via::Link { ifindex, outgoing: false }
}

const fn leaving(ifindex: u32) -> Via {
    Via::Link { ifindex, outgoing: true }
}

/// The node of these cases: pods behind veths 10 (the attacker) and 11 (a neighbour), the
/// resolver behind the uplink 2. A pod's query is seen arriving on its veth and leaving by the
/// uplink; the real answer arrives by the uplink, then leaves by the pod's veth. Expected verdicts
/// follow from where each frame can come from, not from the matcher's output.
#[test]
fn answers_count_only_on_the_path_real_answers_take() {
    let (pod, neighbour, uplink) = (10, 11, 2);
    let new = || {
        let stats = Arc::new(Stats::default());
        (Matcher::new(MatchConfig::default(), ["10.0.0.53".parse().unwrap()], stats.clone()), stats)
    };
    let now = Instant::now();

    // The real answer is taken where it enters the node; its copy toward the pod is a duplicate.
    let (mut matcher, stats) = new();
    let (query, answer) = exchange(40_000, 1);
    matcher.frame(&query, arriving(pod), now);
    matcher.frame(&query, leaving(uplink), now);
    assert_eq!(matcher.frame(&answer, arriving(uplink), now).len(), 1);
    assert!(matcher.frame(&answer, leaving(pod), now).is_empty());
    assert_eq!((stats.get(Reason::Observations), stats.get(Reason::Duplicate)), (1, 1));

    // A pod forges the answer to its own query from its own interface (L2, rp_filter on: the
    // kernel drops it after the sensor saw it): refused, and the query is closed, so the real
    // answer after it is not trusted either.
    let (mut matcher, stats) = new();
    matcher.frame(&query, arriving(pod), now);
    matcher.frame(&query, leaving(uplink), now);
    assert!(matcher.frame(&answer, arriving(pod), now).is_empty());
    assert!(matcher.frame(&answer, arriving(uplink), now).is_empty());
    assert_eq!(
        (stats.get(Reason::OffPath), stats.get(Reason::Unsolicited), stats.get(Reason::Observations)),
        (1, 1, 0)
    );

    // rp_filter off: the kernel routes the forged frame back out to the pod (hairpin).
    let (mut matcher, stats) = new();
    matcher.frame(&query, arriving(pod), now);
    matcher.frame(&query, leaving(uplink), now);
    assert!(matcher.frame(&answer, arriving(pod), now).is_empty());
    assert!(matcher.frame(&answer, leaving(pod), now).is_empty());
    assert_eq!((stats.get(Reason::OffPath), stats.get(Reason::Observations)), (1, 0));

    // A pod forges an answer to its neighbour's query (L3: routed through the node).
    let (mut matcher, stats) = new();
    matcher.frame(&query, arriving(neighbour), now);
    matcher.frame(&query, leaving(uplink), now);
    assert!(matcher.frame(&answer, arriving(pod), now).is_empty());
    assert!(matcher.frame(&answer, leaving(neighbour), now).is_empty());
    assert_eq!((stats.get(Reason::OffPath), stats.get(Reason::Observations)), (1, 0));

    // A resolver on the node (NodeLocal DNSCache): the query never leaves, the answer only
    // leaves toward the pod, by the interface the query came in by; and a forgery still does not.
    let (mut matcher, stats) = new();
    matcher.frame(&query, arriving(pod), now);
    assert_eq!(matcher.frame(&answer, leaving(pod), now).len(), 1);
    let (query2, answer2) = exchange(40_001, 2);
    matcher.frame(&query2, arriving(pod), now);
    assert!(matcher.frame(&answer2, arriving(pod), now).is_empty());
    assert!(matcher.frame(&answer2, leaving(pod), now).is_empty());
    // The node-local answer must leave by the pod's own interface, not another.
    let (query3, answer3) = exchange(40_002, 3);
    matcher.frame(&query3, arriving(pod), now);
    assert!(matcher.frame(&answer3, leaving(neighbour), now).is_empty());
    assert_eq!((stats.get(Reason::Observations), stats.get(Reason::OffPath)), (1, 2));

    // The node's own processes over `lo` (the kernel filter drops lo's outgoing copies).
    let (mut matcher, _) = new();
    matcher.frame(&query, arriving(LOOPBACK_IFINDEX), now);
    assert_eq!(matcher.frame(&answer, arriving(LOOPBACK_IFINDEX), now).len(), 1);

    // A copy leaving toward the pod whose way in was not seen proves nothing, but closes
    // nothing either: the real answer entering by the uplink is still taken.
    let (mut matcher, stats) = new();
    matcher.frame(&query, arriving(pod), now);
    matcher.frame(&query, leaving(uplink), now);
    assert!(matcher.frame(&answer, leaving(pod), now).is_empty());
    assert_eq!(matcher.frame(&answer, arriving(uplink), now).len(), 1);
    assert_eq!(stats.get(Reason::OffPath), 1);

    // A query copy leaving toward an address that is not a trusted resolver (the pod sent its
    // own query back to itself through the node) does not make that interface a way in.
    let (mut matcher, stats) = new();
    let mut bounced = query.clone();
    bounced[14 + 16..14 + 20].copy_from_slice(&[10, 0, 0, 66]); // IPv4 destination
    matcher.frame(&query, arriving(pod), now);
    matcher.frame(&query, leaving(uplink), now);
    matcher.frame(&bounced, leaving(pod), now);
    assert!(matcher.frame(&answer, arriving(pod), now).is_empty());
    assert_eq!((stats.get(Reason::OffPath), stats.get(Reason::Observations)), (1, 0));
}

/// One pod sends 100,000 queries nobody answers: it fills its own share of the table, not the
/// table, and a neighbour's query is still recorded and answered.
#[test]
fn one_source_cannot_blind_the_sensor_for_the_others() {
    let stats = Arc::new(Stats::default());
    let config = MatchConfig::default();
    let share = config.per_source();
    assert_eq!(share, 1024, "65,536 / 64");
    let mut matcher = Matcher::new(config, ["10.0.0.53".parse().unwrap()], stats.clone());
    let now = Instant::now();
    for i in 0..100_000u32 {
        let (query, _) = exchange(1024 + (i >> 16) as u16, i as u16);
        matcher.frame(&query, arriving(10), now);
    }
    assert_eq!(matcher.pending_of(Share::Interface(10)), 1024);
    assert_eq!(stats.get(Reason::SourceFull), 100_000 - 1024);
    assert_eq!(stats.get(Reason::PendingFull), 0);
    let (query, answer) = exchange(50_000, 7);
    matcher.frame(&query, arriving(11), now);
    matcher.frame(&query, leaving(2), now);
    assert_eq!(matcher.frame(&answer, arriving(2), now).len(), 1);
    // The flood's entries age out with the window, giving the share back.
    let later = now + Duration::from_secs(11);
    let (query, _) = exchange(50_001, 8);
    matcher.frame(&query, arriving(10), later);
    assert_eq!(matcher.pending_of(Share::Interface(10)), 1);
}

/// Issue 17: answers from a resolver the operator forgot to trust are dropped, and the matcher
/// names that resolver once, for the capture loop to say.
#[test]
fn an_untrusted_resolver_answering_real_queries_is_named_once() {
    let stats = Arc::new(Stats::default());
    let mut matcher = Matcher::new(MatchConfig::default(), ["192.0.2.1".parse().unwrap()], stats.clone());
    let now = Instant::now();
    assert_eq!(matcher.untrusted_resolver(), None);
    for id in 1..=3 {
        let (query, answer) = exchange(40_000 + id, id);
        matcher.frame(&query, Via::Recorded, now);
        assert!(matcher.frame(&answer, Via::Recorded, now).is_empty());
    }
    assert_eq!(stats.get(Reason::UntrustedSource), 3);
    assert_eq!(matcher.untrusted_resolver(), Some("10.0.0.53".parse().unwrap()));
    assert_eq!(matcher.untrusted_resolver(), None, "said once");
    // An unsolicited packet from an untrusted address names nobody.
    let stats = Arc::new(Stats::default());
    let mut matcher = Matcher::new(MatchConfig::default(), ["192.0.2.1".parse().unwrap()], stats);
    let (_, answer) = exchange(40_100, 9);
    matcher.frame(&answer, Via::Recorded, now);
    assert_eq!(matcher.untrusted_resolver(), None);
}
