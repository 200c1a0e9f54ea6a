//! Recorded frames (`testcases/dns/*.hex`, written by `generate.py` there) through the matcher,
//! one verdict per frame: what the sensor observed, or which counter says why not. Covers
//! spoofing (wrong source, id, port, question; duplicates), errors, truncation, malformed
//! packets (compression loops, bad label lengths, cut headers, fragments) and split TCP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_sensor::matcher::{MatchConfig, Matcher};
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
            let answered = matcher.frame(&frame, base + Duration::from_millis(10 * step));
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
    let config = MatchConfig { dns_port: 53, window: Duration::from_secs(5), max_pending: 1 };
    let mut matcher = Matcher::new(config, ["10.0.0.53".parse().unwrap()], stats.clone());
    let now = Instant::now();
    // Answered after the window: late, not observed.
    assert!(matcher.frame(&frames[0], now).is_empty());
    assert!(matcher.frame(&frames[1], now + Duration::from_secs(6)).is_empty());
    assert_eq!(stats.get(Reason::Late), 1);
    // A full table refuses new queries (counted) rather than growing.
    let mut second = frames[0].clone();
    let id_at = 14 + 20 + 8; // Ethernet + IPv4 + UDP headers: the DNS id
    second[id_at + 1] ^= 0xff;
    let later = now + Duration::from_secs(20);
    matcher.frame(&frames[0], later);
    matcher.frame(&second, later);
    assert_eq!(matcher.pending_len(), 1);
    assert_eq!(stats.get(Reason::PendingFull), 1);
    // The answer to the recorded one still goes through.
    assert_eq!(matcher.frame(&frames[1], later).len(), 1);
}

#[test]
fn answered_queries_do_not_grow_memory_at_any_rate() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../testcases/dns/a-record.hex")).unwrap();
    let frames: Vec<Vec<u8>> = text.lines().filter(|l| !l.starts_with('#')).map(unhex).collect();
    let stats = Arc::new(Stats::default());
    let config = MatchConfig { dns_port: 53, window: Duration::from_secs(5), max_pending: 8 };
    let mut matcher = Matcher::new(config, ["10.0.0.53".parse().unwrap()], stats.clone());
    let now = Instant::now();
    let id_at = 14 + 20 + 8;
    // 10,000 query/answer pairs within one window, each with its own id.
    for i in 0..10_000u16 {
        let (mut query, mut answer) = (frames[0].clone(), frames[1].clone());
        query[id_at..id_at + 2].copy_from_slice(&i.to_be_bytes());
        answer[id_at..id_at + 2].copy_from_slice(&i.to_be_bytes());
        matcher.frame(&query, now);
        assert_eq!(matcher.frame(&answer, now).len(), 1);
    }
    assert_eq!(stats.get(Reason::Observations), 10_000);
    assert!(matcher.bookkeeping() <= 4 * 8, "{}", matcher.bookkeeping());
}
