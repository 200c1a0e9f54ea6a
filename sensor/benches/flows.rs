//! Connection starts under load (issue 20). `cargo bench -p portcullis-sensor --bench flows`
//! (needs root and BPF, as the sensor does).
//!
//! The release sensor runs with `--flows` on `lo` (only loopback traffic is sent):
//! 1. **New 5-tuples**: UDP datagrams from 4 sockets to 62,000 ports each, paced at 50,000 new
//!    5-tuples/s for 5 s: records lost (sent − reported, and the ring buffer's drops), the
//!    sensor's CPU (user + system, from /proc) over the phase, its peak RSS.
//! 2. **Established traffic**: one TCP connection sending as fast as it can for 3 s: its rate,
//!    the records it caused (its SYN and SYN-ACK only), the sensor's CPU over the phase.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)] // a benchmark binary

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[path = "../tests/common/metrics.rs"]
mod metrics;

const RATE: u64 = 50_000;
const SECONDS: u64 = 5;

struct Sensor {
    child: Child,
    metrics: SocketAddr,
    /// Lines written: UDP datagram records, and TCP records with port `watched` at either end.
    udp: Arc<AtomicU64>,
    tcp: Arc<AtomicU64>,
    watched: Arc<AtomicU64>,
}

impl Sensor {
    fn start() -> Sensor {
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis-sensor"))
            .args(["--interface", "lo", "--flows", "--flow-interval-s", "3600", "--flow-entries", "524288"])
            .args(["--output", "none", "--metrics-listen", "127.0.0.1:0", "--kubernetes", "never"])
            .args(["--trusted-resolver", "127.0.0.53"])
            .env("PORTCULLIS_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (udp, tcp, watched) =
            (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (u, t, w) = (udp.clone(), tcp.clone(), watched.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("\"protocol\":\"UDP\"") {
                    u.fetch_add(1, Ordering::Relaxed);
                } else if line.contains(&format!("\"port\":{}}}", w.load(Ordering::Relaxed))) {
                    t.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let metrics = loop {
            let mut line = String::new();
            assert!(stderr.read_line(&mut line).unwrap() > 0, "the sensor exited (root and BPF are needed)");
            if let Some(rest) = line.split("metrics=").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Sensor { child, metrics, udp, tcp, watched }
    }

    fn counters(&self) -> BTreeMap<String, u64> {
        metrics::counters(&metrics::scrape(self.metrics))
    }

    /// CPU seconds (user + system) the sensor has used.
    fn cpu(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
        // After the command: state is field 3; utime and stime are fields 14 and 15.
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0
    }

    fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        kb / 1024.0
    }

    fn settle(&self, reported: impl Fn(&BTreeMap<String, u64>) -> bool) -> BTreeMap<String, u64> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let c = self.counters();
            if reported(&c) || Instant::now() > deadline {
                return c;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sensor = Sensor::start();
    std::thread::sleep(Duration::from_millis(500));

    // 1. New 5-tuples, paced.
    // Five sockets × 62,000 ports: every datagram a new 5-tuple.
    let sockets: Vec<UdpSocket> = (0..5).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let before = sensor.counters();
    let cpu0 = sensor.cpu();
    let start = Instant::now();
    let total = RATE * SECONDS;
    let mut sent = 0u64;
    while sent < total {
        let due = (start.elapsed().as_secs_f64() * RATE as f64) as u64;
        while sent < due.min(total) {
            let socket = &sockets[(sent / 62_000) as usize % sockets.len()];
            let port = 1024 + (sent % 62_000) as u16;
            let _ = socket.send_to(b"x", ("127.0.0.1", port));
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sensor.udp.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let cpu = sensor.cpu() - cpu0;
    let written = sensor.udp.load(Ordering::Relaxed);
    let after = sensor.settle(|_| true);
    let full = after["kernel:flow_ringbuf_full"] - before["kernel:flow_ringbuf_full"];
    println!("new 5-tuples: {sent} sent in {elapsed:.2} s ({:.0}/s)", sent as f64 / elapsed);
    println!("  written by the sensor {written}: lost {} (ring buffer full {full})", sent.saturating_sub(written));
    println!("  sensor CPU {:.2} s over {elapsed:.2} s = {:.1} % of one core", cpu, cpu / elapsed * 100.0);
    println!("  sensor peak RSS {:.1} MB", sensor.peak_rss_mb());

    // 2. Established traffic.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    sensor.watched.store(u64::from(addr.port()), Ordering::Relaxed);
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        while s.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
    });
    let cpu0 = sensor.cpu();
    let mut stream = TcpStream::connect(addr).unwrap();
    let chunk = vec![1u8; 1 << 20];
    let start = Instant::now();
    let mut bytes = 0u64;
    while start.elapsed() < Duration::from_secs(3) {
        stream.write_all(&chunk).unwrap();
        bytes += chunk.len() as u64;
    }
    drop(stream);
    let elapsed = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let cpu = sensor.cpu() - cpu0;
    println!("established: {:.1} Gbit/s for {elapsed:.1} s", bytes as f64 * 8.0 / elapsed / 1e9);
    println!(
        "  records written for it {} (its SYN and SYN-ACK), sensor CPU {:.2} s = {:.1} % of one core (the 200 ms poll included)",
        sensor.tcp.load(Ordering::Relaxed),
        cpu,
        cpu / (elapsed + 0.5) * 100.0
    );
    let mut child = sensor.child;
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}
