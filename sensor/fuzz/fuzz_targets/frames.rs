//! Arbitrary bytes as captured traffic: as one Ethernet frame, as a sequence of frames (a
//! one-byte length before each), and as a pcap file, all through the matcher with a query
//! recorded first so responses get as far as answer extraction; plus the DNS decoder alone and
//! TCP reassembly.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use portcullis_sensor::matcher::{MatchConfig, Matcher};
use portcullis_sensor::stats::Stats;
use portcullis_sensor::tcp::Streams;
use portcullis_sensor::{dns, packet, pcap};

fuzz_target!(|data: &[u8]| {
    let _ = dns::summarize(data);
    let (_, consumed) = packet::tcp_messages(data);
    assert!(consumed <= data.len());
    let trusted = ["10.0.0.53".parse().unwrap(), "fd00::53".parse().unwrap()];
    let config = MatchConfig { dns_port: 53, window: Duration::from_secs(5), max_pending: 64 };
    let mut matcher = Matcher::new(config, trusted, Arc::new(Stats::default()));
    let now = Instant::now();
    let _ = matcher.frame(data, now);
    let mut rest = data;
    let mut step = 0;
    while let Some((&len, tail)) = rest.split_first() {
        let take = usize::from(len).min(tail.len());
        let _ = matcher.frame(&tail[..take], now + Duration::from_millis(step));
        rest = &tail[take..];
        step += 100;
    }
    if let Ok(capture) = pcap::parse(data) {
        let mut streams = Streams::new(8, Duration::from_secs(5));
        for record in &capture.records {
            if let Ok(segment) = pcap::segment(capture.link, record.data) {
                let _ = matcher.segment(&segment, now);
                let _ = streams.push(segment.src, segment.dst, segment.seq, segment.payload, now);
            }
        }
    }
});
