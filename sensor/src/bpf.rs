//! Loads the eBPF socket filter (`bpf/dns_snoop.bpf.c`, compiled by `build.rs`), attaches it to
//! an AF_PACKET socket and hands user space the DNS frames it passes.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya::programs::SocketFilter;
use aya::{Ebpf, EbpfLoader, include_bytes_aligned};

use crate::sys::{self, FrameMeta, PacketSocket, SocketStats};

/// The compiled eBPF object.
pub static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/dns_snoop.bpf.o"));

const PROGRAM: &str = "dns_snoop";
/// Bytes the ring-buffer record header takes before the frame (`struct event` in the C source).
const EVENT_HEADER: usize = 16;

/// The kernel-side counters, in the order of `enum counter` in `dns_snoop.bpf.c`.
pub const KERNEL_COUNTERS: [&str; 15] = [
    "seen",
    "passed",
    "not_ip",
    "not_udp_tcp",
    "not_dns_port",
    "fragment",
    "loopback_outgoing",
    "header_truncated",
    "tcp_no_payload",
    "ipv6_extensions",
    "ringbuf_full",
    "oversize",
    "flow_reported",
    "flow_repeated",
    "flow_ringbuf_full",
];

/// How frames reach user space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Delivery {
    /// The filter keeps the packet on the socket; user space `recvfrom`s it (the default: see
    /// docs/decisions.md for the measurement).
    Socket,
    /// The filter copies the frame (up to 4 KiB) into a BPF ring buffer.
    Ringbuf,
}

/// What [`Filter::open`] needs.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    pub dns_port: u16,
    pub delivery: Delivery,
    /// Interface to capture on; `None` for all of them.
    pub interface: Option<String>,
    pub receive_buffer: usize,
    /// Report connection starts (`None`: DNS only).
    pub flows: Option<FlowConfig>,
}

/// How connection starts are deduplicated in the kernel.
#[derive(Debug, Clone, Copy)]
pub struct FlowConfig {
    /// A 5-tuple is reported again at most once per interval.
    pub interval: Duration,
    /// 5-tuples remembered (an LRU: the least recently seen go first).
    pub entries: u32,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self { dns_port: 53, delivery: Delivery::Socket, interface: None, receive_buffer: 8 << 20, flows: None }
    }
}

/// Why the filter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("cannot load the eBPF object (needs root or CAP_BPF + CAP_NET_RAW): {0}")]
    Load(#[from] aya::EbpfError),
    #[error("cannot load or attach the socket filter: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("eBPF map: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("the eBPF object has no {0}")]
    Missing(&'static str),
    #[error("packet socket: {0}")]
    Socket(#[from] io::Error),
}

/// The attached filter and its socket.
pub struct Filter {
    // Keeps the program and maps loaded for as long as the socket lives.
    _ebpf: Ebpf,
    socket: PacketSocket,
    counters: PerCpuArray<MapData, u64>,
    ring: Option<RingBuf<MapData>>,
    flows: Option<RingBuf<MapData>>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("socket", &self.socket)
            .field("ring", &self.ring.is_some())
            .finish_non_exhaustive()
    }
}

/// One frame handed to user space.
#[derive(Debug)]
pub struct Frame<'a> {
    pub data: &'a [u8],
    pub meta: FrameMeta,
}

impl Filter {
    /// Loads the program with `config`'s port and delivery, attaches it to a new packet socket,
    /// then binds the socket (so no unfiltered packet is ever queued).
    pub fn open(config: &FilterConfig) -> Result<Self, FilterError> {
        if let Err(err) = sys::raise_memlock_limit() {
            tracing::debug!(%err, "cannot raise RLIMIT_MEMLOCK; fine on kernels with memcg BPF accounting");
        }
        let delivery: u8 = match config.delivery {
            Delivery::Socket => 0,
            Delivery::Ringbuf => 1,
        };
        let flows: u8 = u8::from(config.flows.is_some());
        let interval = config.flows.map_or(0, |f| u64::try_from(f.interval.as_nanos()).unwrap_or(u64::MAX));
        let entries = config.flows.map_or(1, |f| f.entries.max(1));
        let mut ebpf = EbpfLoader::new()
            .override_global("dns_port", &config.dns_port, true)
            .override_global("delivery", &delivery, true)
            .override_global("flows", &flows, true)
            .override_global("flow_interval_ns", &interval, true)
            .map_max_entries("FLOW_SEEN", entries)
            .load(OBJECT)?;
        let program: &mut SocketFilter =
            ebpf.program_mut(PROGRAM).ok_or(FilterError::Missing("dns_snoop program"))?.try_into()?;
        program.load()?;
        let socket = PacketSocket::new()?;
        program.attach(&socket)?;
        socket.set_receive_buffer(config.receive_buffer)?;
        socket.set_receive_timeout(Duration::from_millis(200))?;
        let ifindex = match &config.interface {
            Some(name) => sys::interface_index(name)?,
            None => 0,
        };
        socket.bind(ifindex)?;
        let counters = PerCpuArray::try_from(ebpf.take_map("COUNTERS").ok_or(FilterError::Missing("COUNTERS map"))?)?;
        let ring = match config.delivery {
            Delivery::Socket => None,
            Delivery::Ringbuf => {
                Some(RingBuf::try_from(ebpf.take_map("EVENTS").ok_or(FilterError::Missing("EVENTS map"))?)?)
            }
        };
        let flows = match config.flows {
            None => None,
            Some(_) => Some(RingBuf::try_from(ebpf.take_map("FLOWS").ok_or(FilterError::Missing("FLOWS map"))?)?),
        };
        Ok(Self { _ebpf: ebpf, socket, counters, ring, flows })
    }

    /// Calls `each` for the frames available now (at most 256 from the socket, 4,096 from the
    /// ring buffer), waiting up to ~200 ms for the first one. Returns how many were handed over.
    pub fn poll(&mut self, buf: &mut [u8], mut each: impl FnMut(Frame<'_>)) -> io::Result<usize> {
        match &mut self.ring {
            None => {
                // Wait (up to the receive timeout) for the first frame, then take only what is
                // already queued, so the caller gets control back regularly.
                let mut handed = 0;
                while handed < 256 {
                    match self.socket.recv(buf, handed == 0) {
                        Ok((len, meta)) => {
                            each(Frame { data: &buf[..len], meta });
                            handed += 1;
                        }
                        Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                            break;
                        }
                        Err(err) => return Err(err),
                    }
                }
                Ok(handed)
            }
            Some(ring) => {
                if !sys::wait_readable(ring.as_raw_fd(), Duration::from_millis(200))? {
                    return Ok(0);
                }
                // Bounded like the socket path, so a flood cannot keep the caller from its
                // periodic work (counters, trust updates, stop).
                let mut handed = 0;
                while handed < 4096 {
                    let Some(item) = ring.next() else { break };
                    if let Some(frame) = ring_frame(&item) {
                        each(frame);
                    }
                    handed += 1;
                }
                Ok(handed)
            }
        }
    }

    /// Calls `each` for the connection-start records waiting in the FLOWS ring buffer (at most
    /// `max`, so a flood cannot keep the caller from its other work); returns how many.
    pub fn drain_flows(&mut self, max: usize, mut each: impl FnMut(&[u8])) -> usize {
        let Some(ring) = &mut self.flows else { return 0 };
        let mut handed = 0;
        while handed < max {
            let Some(item) = ring.next() else { break };
            each(&item);
            handed += 1;
        }
        handed
    }

    /// The kernel-side counters, summed over CPUs, in [`KERNEL_COUNTERS`] order.
    pub fn kernel_counters(&self) -> Result<Vec<u64>, FilterError> {
        let mut totals = Vec::with_capacity(KERNEL_COUNTERS.len());
        for index in 0..KERNEL_COUNTERS.len() as u32 {
            let per_cpu = self.counters.get(&index, 0)?;
            totals.push(per_cpu.iter().sum());
        }
        Ok(totals)
    }

    /// The socket's packet and drop statistics (drops: frames the receive queue had no room for).
    pub fn socket_stats(&mut self) -> io::Result<SocketStats> {
        self.socket.statistics()
    }
}

/// Decodes a ring-buffer record (`struct event`): len, caplen, ifindex, pkt_type, then the bytes.
fn ring_frame(record: &[u8]) -> Option<Frame<'_>> {
    let word = |at: usize| -> Option<u32> { Some(u32::from_ne_bytes(record.get(at..at + 4)?.try_into().ok()?)) };
    let len = usize::try_from(word(0)?).ok()?;
    let caplen = usize::try_from(word(4)?).ok()?;
    let ifindex = word(8)?;
    let pkt_type = u8::try_from(word(12)?).ok()?;
    let data = record.get(EVENT_HEADER..EVENT_HEADER + caplen)?;
    Some(Frame { data, meta: FrameMeta { len, ifindex, pkt_type } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_records_decode_and_short_ones_are_skipped() {
        let mut record = Vec::new();
        for word in [70u32, 3, 2, 0] {
            record.extend_from_slice(&word.to_ne_bytes());
        }
        record.extend_from_slice(b"abcdef");
        let frame = ring_frame(&record).unwrap();
        assert_eq!(frame.data, b"abc");
        assert_eq!(frame.meta, FrameMeta { len: 70, ifindex: 2, pkt_type: 0 });
        assert!(ring_frame(&record[..10]).is_none());
        record[4] = 200; // caplen past the record
        assert!(ring_frame(&record).is_none());
    }
}
