//! The sensor's `/metrics` read back, for the eBPF tests and the flows benchmark.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// `GET /metrics` from `addr` (in the calling thread's network namespace).
pub fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: sensor\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

/// `reason` → value of `portcullis_sensor_packets_total` and (prefixed `kernel:`) of
/// `portcullis_sensor_kernel_packets_total`.
pub fn counters(text: &str) -> BTreeMap<String, u64> {
    let mut counters = BTreeMap::new();
    for line in text.lines() {
        for (metric, prefix) in
            [("portcullis_sensor_packets_total", ""), ("portcullis_sensor_kernel_packets_total", "kernel:")]
        {
            if let Some(rest) = line.strip_prefix(&format!("{metric}{{reason=\""))
                && let Some((reason, value)) = rest.split_once("\"} ")
            {
                counters.insert(format!("{prefix}{reason}"), value.parse().unwrap());
            }
        }
    }
    counters
}
