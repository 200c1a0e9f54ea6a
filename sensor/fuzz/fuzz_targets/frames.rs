//! Arbitrary bytes as captured traffic: as one Ethernet frame, as a sequence of frames (a
//! one-byte length before each), and as a pcap file, all through the matcher with a query
//! recorded first so responses get as far as answer extraction; plus the DNS decoder alone and
//! TCP reassembly. Each frame's path (interface, direction) comes from the input too, so the path
//! check and the per-source shares are exercised.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use portcullis_sensor::matcher::{MatchConfig, Matcher, Share, Via};
use portcullis_sensor::stats::Stats;
use portcullis_sensor::tcp::{StreamLimits, Streams};

/// A path chosen by one input byte: recorded, or one of four interfaces in either direction.
fn via(byte: u8) -> Via {
    match byte % 9 {
        8 => Via::Recorded,
        n => Via::Link { ifindex: u32::from(n / 2) + 1, outgoing: n % 2 == 1 },
    }
}
use portcullis_sensor::{dns, packet, pcap};

fuzz_target!(|data: &[u8]| {
    let _ = dns::summarize(data);
    let (_, consumed) = packet::tcp_messages(data);
    assert!(consumed <= data.len());
    let trusted = ["10.0.0.53".parse().unwrap(), "fd00::53".parse().unwrap()];
    let config = MatchConfig { max_pending: 64, max_pending_per_source: 16, ..MatchConfig::default() };
    let mut matcher = Matcher::new(config, trusted, Arc::new(Stats::default()));
    let now = Instant::now();
    let _ = matcher.frame(data, Via::Recorded, now);
    let mut rest = data;
    let mut step = 0;
    while let Some((&len, tail)) = rest.split_first() {
        let take = usize::from(len).min(tail.len());
        let _ = matcher.frame(&tail[..take], via(len), now + Duration::from_millis(step));
        rest = &tail[take..];
        step += 100;
    }
    if let Ok(capture) = pcap::parse(data) {
        let limits = StreamLimits { flows: 8, flows_per_source: 4, bytes: 1 << 18, bytes_per_source: 1 << 17 };
        let mut streams = Streams::new(limits, Duration::from_secs(5));
        for (i, record) in capture.records.iter().enumerate() {
            if let Ok(segment) = pcap::segment(capture.link, record.data) {
                let via = via(i as u8);
                let _ = matcher.segment(&segment, via, now);
                let share = Share::of(via, segment.src.ip());
                let _ = streams.push((segment.src, segment.dst, via), share, segment.seq, segment.payload, now);
            }
        }
    }
});
