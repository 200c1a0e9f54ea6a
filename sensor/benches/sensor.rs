//! Sensor throughput. `cargo bench -p portcullis-sensor --bench sensor` (the flood needs root).
//!
//! 1. **User space**: parse + match on recorded frames, one core: 100,000 query/response pairs
//!    (A answers with two addresses; one in four through a CNAME), and the conformance captures
//!    replayed. Target: 200,000 responses/s.
//! 2. **The real eBPF path**: DNS over loopback at a paced 20,000 responses/s (plus their
//!    queries) for 5 s, through the filter, the socket and the matcher, for both deliveries
//!    (socket, ring buffer): responses lost (socket drops, ring-buffer drops, unobserved) and
//!    the capture thread's CPU. Then unpaced, to find each delivery's ceiling.
//! 3. **Hostile pods** (issue 16), through the matcher as the capture feeds it (one pod's veth,
//!    the node's uplink): one pod opens 4,096 TCP flows to the DNS port, each announcing a
//!    maximum-size message and sending 60 KB of it, then 64 pods do the same: peak memory of the
//!    reassembly (charged bytes, and the process's peak RSS growth). Then one pod sends 100,000
//!    queries nobody answers: is a neighbour's answer still observed?

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)] // a benchmark binary

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, OpCode, Query};
use hickory_proto::rr::rdata::{A, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use portcullis_sensor::bpf::{Delivery, Filter, FilterConfig, KERNEL_COUNTERS};
use portcullis_sensor::matcher::{MatchConfig, Matcher, Via};
use portcullis_sensor::stats::{Reason, Stats};
use portcullis_sensor::sys::PACKET_OUTGOING;

const PAIRS: usize = 100_000;
const FLOOD_PORT: u16 = 5300;

fn query(id: u16, qname: &str) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_str(qname).unwrap(), RecordType::A));
    message.to_vec().unwrap()
}

fn response(id: u16, qname: &str, chain: bool) -> Vec<u8> {
    let mut message = Message::response(id, OpCode::Query);
    message.metadata.recursion_available = true;
    let name = Name::from_str(qname).unwrap();
    message.add_query(Query::query(name.clone(), RecordType::A));
    let owner = if chain {
        let edge = Name::from_str("edge.cdn.example.net.").unwrap();
        message.add_answer(Record::from_rdata(name, 300, RData::CNAME(CNAME(edge.clone()))));
        edge
    } else {
        name
    };
    for last in [10, 11] {
        message.add_answer(Record::from_rdata(owner.clone(), 60, RData::A(A(Ipv4Addr::new(192, 0, 2, last)))));
    }
    message.to_vec().unwrap()
}

/// An Ethernet + IPv4 + UDP frame (checksums zero: the matcher does not check them).
fn frame(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (SocketAddr::V4(src), SocketAddr::V4(dst)) = (src, dst) else { unreachable!() };
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((20 + 8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src.ip().octets());
    f.extend_from_slice(&dst.ip().octets());
    f.extend_from_slice(&src.port().to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// An Ethernet + IPv4 + TCP segment (PSH|ACK; checksums zero).
fn tcp_frame(src: SocketAddr, dst: SocketAddr, seq: u32, payload: &[u8]) -> Vec<u8> {
    let (SocketAddr::V4(src), SocketAddr::V4(dst)) = (src, dst) else { unreachable!() };
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&((20 + 20 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src.ip().octets());
    f.extend_from_slice(&dst.ip().octets());
    f.extend_from_slice(&src.port().to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// This process's peak resident set (`VmHWM`), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

fn hostile() {
    println!("## hostile pods: one matcher as the capture feeds it (default limits)");
    let resolver: SocketAddr = "10.96.0.10:53".parse().unwrap();
    let stats = Arc::new(Stats::default());
    let mut matcher = Matcher::new(MatchConfig::default(), [resolver.ip()], stats.clone());
    let now = Instant::now();
    let before = peak_rss();
    let chunk = vec![0u8; 60_000];
    let mut most = 0;
    println!("| attack | flows | bytes charged (most) | peak RSS growth | tcp_incomplete |");
    println!("|---|---:|---:|---:|---:|");
    for pods in [1u32, 64] {
        for pod in 0..pods {
            let via = Via::Link { ifindex: 100 + pod, outgoing: false };
            for port in 0..4096u32 / pods {
                let client = SocketAddr::from(([10, 1, pod as u8, 2], 10_000 + port as u16));
                matcher.frame(&tcp_frame(client, resolver, 1, &[0xff, 0xff]), via, now);
                matcher.frame(&tcp_frame(client, resolver, 3, &chunk), via, now);
                most = most.max(matcher.stream_bytes());
            }
        }
        println!(
            "| {pods} pod(s), 4,096 flows of 60 KB in all | 4,096 | {:.1} MiB | {:.1} MiB | {} |",
            most as f64 / 1048576.0,
            peak_rss().saturating_sub(before) as f64 / 1048576.0,
            stats.get(Reason::TcpIncomplete)
        );
    }
    let flood_via = Via::Link { ifindex: 200, outgoing: false };
    let started = Instant::now();
    for i in 0..100_000u32 {
        let client = SocketAddr::from(([10, 2, 0, 2], 1024 + (i >> 16) as u16));
        matcher.frame(&frame(client, resolver, &query(i as u16, "flood.example.com.")), flood_via, now);
    }
    let flood_time = started.elapsed();
    let neighbour = SocketAddr::from(([10, 3, 0, 2], 40_000));
    let neighbour_via = Via::Link { ifindex: 201, outgoing: false };
    let uplink = |outgoing| Via::Link { ifindex: 2, outgoing };
    matcher.frame(&frame(neighbour, resolver, &query(7, "api.example.com.")), neighbour_via, now);
    matcher.frame(&frame(neighbour, resolver, &query(7, "api.example.com.")), uplink(true), now);
    let observed =
        matcher.frame(&frame(resolver, neighbour, &response(7, "api.example.com.", false)), uplink(false), now);
    println!(
        "\none pod's 100,000 unanswered queries ({:.0} ms): source_full {}, pending_full {}; the neighbour's answer observed: {}",
        flood_time.as_secs_f64() * 1e3,
        stats.get(Reason::SourceFull),
        stats.get(Reason::PendingFull),
        observed.len() == 1
    );
    assert_eq!(observed.len(), 1);
}

fn user_space() {
    let resolver: SocketAddr = "10.96.0.10:53".parse().unwrap();
    let mut frames = Vec::with_capacity(PAIRS * 2);
    for i in 0..PAIRS {
        let client =
            SocketAddr::from(([10, 0, (i / 60_000) as u8 + 1, (i % 250) as u8 + 1], 30_000 + (i % 30_000) as u16));
        let qname = format!("api-{i}.example.com.");
        let id = (i % 65_536) as u16;
        frames.push(frame(client, resolver, &query(id, &qname)));
        frames.push(frame(resolver, client, &response(id, &qname, i % 4 == 0)));
    }
    let bytes: usize = frames.iter().map(Vec::len).sum();
    println!("## user space: parse + match, one core");
    println!("{PAIRS} query/response pairs, {:.1} MB of frames", bytes as f64 / 1e6);
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let stats = Arc::new(Stats::default());
        let mut matcher = Matcher::new(MatchConfig::default(), [resolver.ip()], stats.clone());
        let started = Instant::now();
        let now = Instant::now();
        let mut observed = 0;
        for frame in &frames {
            observed += matcher.frame(frame, Via::Recorded, now).len();
        }
        let elapsed = started.elapsed();
        assert_eq!(observed, PAIRS, "{:?}", stats.snapshot());
        best = best.min(elapsed);
    }
    println!(
        "best of 5: {:.1} ms → {:.0} responses/s ({:.0} frames/s, {:.2} µs per pair)",
        best.as_secs_f64() * 1e3,
        PAIRS as f64 / best.as_secs_f64(),
        (2 * PAIRS) as f64 / best.as_secs_f64(),
        best.as_secs_f64() * 1e6 / PAIRS as f64
    );
    let started = Instant::now();
    for frame in frames.iter().skip(1).step_by(2) {
        let segment = portcullis_sensor::packet::parse_ethernet(frame).unwrap();
        std::hint::black_box(portcullis_sensor::dns::summarize(segment.payload).unwrap());
    }
    let elapsed = started.elapsed();
    println!("of which DNS decoding alone (hickory-proto): {:.0} responses/s", PAIRS as f64 / elapsed.as_secs_f64());
}

/// CPU time (user + system) of the calling thread, from /proc.
fn thread_cpu() -> Duration {
    cpu_of("/proc/thread-self/stat")
}

/// CPU time of the whole process: includes the in-kernel cost of the filter and of the copy to
/// the socket or ring buffer, which runs in the sending thread's softirq on loopback.
fn process_cpu() -> Duration {
    cpu_of("/proc/self/stat")
}

fn cpu_of(path: &str) -> Duration {
    let stat = std::fs::read_to_string(path).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

struct Flood {
    sent: usize,
    observed: usize,
    user_frames: u64,
    kernel: Vec<u64>,
    socket_drops: u64,
    cpu: Duration,
    process_cpu: Duration,
    elapsed: Duration,
}

/// Sends `pairs` query/response pairs over loopback at `rate` responses/s (0: as fast as
/// possible) while the real filter captures on `lo`.
fn flood(delivery: Delivery, rate: usize, pairs: usize) -> Flood {
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Stats::default());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let capture = {
        let (stop, stats) = (stop.clone(), stats.clone());
        std::thread::spawn(move || {
            let config = FilterConfig {
                dns_port: FLOOD_PORT,
                delivery,
                interface: Some("lo".into()),
                receive_buffer: 8 << 20,
                flows: None,
            };
            let mut filter = Filter::open(&config).expect("attaching the filter needs root and BPF");
            let match_config = MatchConfig { dns_port: FLOOD_PORT, ..MatchConfig::default() };
            let mut matcher = Matcher::new(match_config, ["127.0.0.1".parse().unwrap()], stats.clone());
            let mut buf = vec![0u8; 65_536];
            let mut observed = 0;
            let cpu = thread_cpu();
            ready_tx.send(()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                filter
                    .poll(&mut buf, |f| {
                        let via = Via::Link { ifindex: f.meta.ifindex, outgoing: f.meta.pkt_type == PACKET_OUTGOING };
                        observed += matcher.frame(f.data, via, Instant::now()).len();
                    })
                    .unwrap();
            }
            let cpu = thread_cpu() - cpu;
            (observed, filter.kernel_counters().unwrap(), filter.socket_stats().unwrap().drops, cpu)
        })
    };
    ready_rx.recv().unwrap();
    let process_started = process_cpu();
    let server = UdpSocket::bind(("127.0.0.1", FLOOD_PORT)).unwrap();
    let clients: Vec<UdpSocket> = (0..8).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let template_q = query(0, "api.example.com.");
    let template_r = response(0, "api.example.com.", false);
    let started = Instant::now();
    let per_ms = rate / 1000;
    for i in 0..pairs {
        let id = ((i / clients.len()) % 65_536) as u16;
        let client = &clients[i % clients.len()];
        let (mut q, mut r) = (template_q.clone(), template_r.clone());
        q[..2].copy_from_slice(&id.to_be_bytes());
        r[..2].copy_from_slice(&id.to_be_bytes());
        client.send_to(&q, ("127.0.0.1", FLOOD_PORT)).unwrap();
        server.send_to(&r, client.local_addr().unwrap()).unwrap();
        if per_ms > 0 && (i + 1) % per_ms == 0 {
            let due = started + Duration::from_millis(((i + 1) / per_ms) as u64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    let elapsed = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (observed, kernel, socket_drops, cpu) = capture.join().unwrap();
    let process_cpu = process_cpu() - process_started;
    Flood {
        sent: pairs,
        observed,
        user_frames: stats.get(Reason::Frames),
        kernel,
        socket_drops,
        cpu,
        process_cpu,
        elapsed,
    }
}

fn report(label: &str, delivery: Delivery, f: &Flood) {
    let counter = |name: &str| f.kernel[KERNEL_COUNTERS.iter().position(|c| *c == name).unwrap()];
    println!(
        "| {label} | {delivery:?} | {:.0} | {} | {} | {} | {} | {} | {:.1}% | {:.2} µs | {:.2} µs |",
        f.sent as f64 / f.elapsed.as_secs_f64(),
        f.sent,
        f.observed,
        f.sent - f.observed.min(f.sent),
        f.socket_drops,
        counter("ringbuf_full"),
        100.0 * f.cpu.as_secs_f64() / f.elapsed.as_secs_f64(),
        f.cpu.as_secs_f64() * 1e6 / f.sent as f64,
        f.process_cpu.as_secs_f64() * 1e6 / f.sent as f64,
    );
    assert_eq!(f.user_frames, counter("passed") - f.socket_drops, "every frame the filter passed reached the matcher");
}

fn ebpf() {
    println!("\n## the real eBPF path: DNS over loopback through the filter, socket and matcher");
    println!(
        "| run | delivery | responses/s sent | sent | observed | lost | socket drops | ring drops | capture thread CPU | capture CPU per pair | process CPU per pair (incl. sender and in-kernel filter) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // Alternate the deliveries, twice each, so drift on a shared machine hits both alike.
    for round in 0..2 {
        for delivery in [Delivery::Socket, Delivery::Ringbuf] {
            let paced = flood(delivery, 20_000, 100_000);
            report(&format!("20,000/s for 5 s (#{})", round + 1), delivery, &paced);
        }
    }
    for round in 0..2 {
        for delivery in [Delivery::Socket, Delivery::Ringbuf] {
            let unpaced = flood(delivery, 0, 200_000);
            report(&format!("unpaced (#{})", round + 1), delivery, &unpaced);
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    hostile();
    user_space();
    ebpf();
}
