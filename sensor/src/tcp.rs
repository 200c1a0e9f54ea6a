//! Just enough TCP reassembly for DNS: clients and servers often write the 2-byte length prefix
//! and the message in separate segments, and large answers span several. Each direction of a
//! connection, as seen on one interface in one direction, keeps a small buffer of in-order
//! bytes; complete messages are cut off its front.
//!
//! Bounded in every way ([`StreamLimits`]): flows (oldest evicted) and buffered bytes in total,
//! flows and bytes per source ([`Share`]: one pod cannot take the others' room), bytes per flow
//! (one maximum-size message), and age (the match window). Memory is charged by allocated
//! capacity, not length. A gap in sequence numbers drops the flow's buffer, since the rest of the
//! stream can no longer be framed; that is counted, not guessed at. Segments before the expected
//! sequence number (retransmissions) are ignored.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::matcher::{Share, Via};
use crate::packet::tcp_messages;

/// Largest buffered stream prefix: one maximum-size DNS message and its length.
const MAX_BUFFER: usize = 2 + 65_535;

/// How much TCP reassembly may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Flows tracked at most (the oldest is evicted for a new one).
    pub flows: usize,
    /// Flows one source tracks at most (beyond: its new flows are not reassembled, counted).
    pub flows_per_source: usize,
    /// Buffered bytes at most, all flows together.
    pub bytes: usize,
    /// Buffered bytes one source holds at most.
    pub bytes_per_source: usize,
}

impl Default for StreamLimits {
    /// 16 MiB in all, 1 MiB per source: well under the chart's 256 Mi memory limit, and room
    /// for 15 maximum-size messages in flight per pod.
    fn default() -> Self {
        Self { flows: 4096, flows_per_source: 256, bytes: 16 << 20, bytes_per_source: 1 << 20 }
    }
}

/// One direction of a connection, as seen on one interface in one direction: the same segment
/// seen entering and then leaving the node is reassembled on each path.
pub type FlowKey = (SocketAddr, SocketAddr, Via);

#[derive(Debug)]
struct Flow {
    next_seq: u32,
    buf: Vec<u8>,
    at: Instant,
    share: Share,
    /// Bytes charged for `buf` (its capacity when last measured).
    charged: usize,
}

/// What one segment produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Complete DNS messages (without length prefixes), in stream order.
    pub messages: Vec<Vec<u8>>,
    /// Bytes were given up: a sequence gap, an oversize message, or a limit.
    pub lost: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    flows: usize,
    bytes: usize,
}

/// Per-direction stream buffers.
#[derive(Debug)]
pub struct Streams {
    flows: HashMap<FlowKey, Flow>,
    order: VecDeque<(Instant, FlowKey)>,
    usage: HashMap<Share, Usage>,
    bytes: usize,
    limits: StreamLimits,
    window: Duration,
}

impl Streams {
    pub fn new(limits: StreamLimits, window: Duration) -> Self {
        let limits = StreamLimits {
            flows: limits.flows.max(1),
            flows_per_source: limits.flows_per_source.max(1),
            bytes: limits.bytes.max(MAX_BUFFER),
            bytes_per_source: limits.bytes_per_source.max(MAX_BUFFER),
        };
        Self { flows: HashMap::new(), order: VecDeque::new(), usage: HashMap::new(), bytes: 0, limits, window }
    }

    /// Adds one segment's data, charged to `share`.
    pub fn push(&mut self, key: FlowKey, share: Share, seq: u32, data: &[u8], now: Instant) -> Pushed {
        self.expire(now);
        let mut pushed = Pushed::default();
        // SYN, FIN and bare ACKs carry no stream bytes (and SYN and FIN take a sequence number
        // each): the flow starts, and continues, at the first byte of data.
        if data.is_empty() {
            return pushed;
        }
        match self.flows.get_mut(&key) {
            Some(flow) => {
                // Serial-number arithmetic: negative distance means already seen.
                let distance = seq.wrapping_sub(flow.next_seq) as i32;
                if distance < 0 {
                    return pushed;
                }
                if distance > 0 {
                    flow.buf = Vec::new();
                    pushed.lost = true;
                    flow.next_seq = seq.wrapping_add(data.len() as u32);
                    self.recharge(&key);
                    return pushed;
                }
            }
            None => {
                let usage = self.usage.get(&share).copied().unwrap_or_default();
                if usage.flows >= self.limits.flows_per_source {
                    pushed.lost = true;
                    return pushed;
                }
                if self.flows.len() >= self.limits.flows {
                    self.evict_oldest();
                }
                self.order.push_back((now, key));
                self.usage.entry(share).or_default().flows += 1;
                self.flows.insert(key, Flow { next_seq: seq, buf: Vec::new(), at: now, share, charged: 0 });
            }
        }
        let Some(flow) = self.flows.get_mut(&key) else { return pushed };
        flow.next_seq = seq.wrapping_add(data.len() as u32);
        flow.at = now;
        let rest = if flow.buf.is_empty() {
            // The common case: whole messages in one segment, nothing buffered, no copy.
            let (messages, consumed) = tcp_messages(data);
            pushed.messages.extend(messages.into_iter().map(<[u8]>::to_vec));
            &data[consumed..]
        } else {
            flow.buf.reserve_exact(data.len());
            flow.buf.extend_from_slice(data);
            let (messages, consumed) = tcp_messages(&flow.buf);
            pushed.messages.extend(messages.into_iter().map(<[u8]>::to_vec));
            flow.buf.drain(..consumed);
            &[][..]
        };
        flow.buf.reserve_exact(rest.len());
        flow.buf.extend_from_slice(rest);
        if flow.buf.is_empty() {
            flow.buf = Vec::new();
        }
        let over_flow = flow.buf.len() > MAX_BUFFER;
        let growth = flow.buf.capacity().saturating_sub(flow.charged);
        let usage = self.usage.get(&share).copied().unwrap_or_default();
        let over_share = usage.bytes + growth > self.limits.bytes_per_source;
        let over_total = self.bytes + growth > self.limits.bytes;
        if over_flow || over_share || over_total {
            flow.buf = Vec::new();
            pushed.lost = true;
        }
        self.recharge(&key);
        pushed
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Bytes the buffers hold (allocated capacity).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Brings the charge of `key`'s buffer, its source's and the total up to date.
    fn recharge(&mut self, key: &FlowKey) {
        let Some(flow) = self.flows.get_mut(key) else { return };
        let now_charged = flow.buf.capacity();
        let before = std::mem::replace(&mut flow.charged, now_charged);
        let usage = self.usage.entry(flow.share).or_default();
        usage.bytes = usage.bytes.saturating_sub(before) + now_charged;
        self.bytes = self.bytes.saturating_sub(before) + now_charged;
    }

    fn remove(&mut self, key: &FlowKey) -> bool {
        let Some(flow) = self.flows.remove(key) else { return false };
        self.bytes = self.bytes.saturating_sub(flow.charged);
        if let Some(usage) = self.usage.get_mut(&flow.share) {
            usage.bytes = usage.bytes.saturating_sub(flow.charged);
            usage.flows = usage.flows.saturating_sub(1);
            if usage.flows == 0 {
                self.usage.remove(&flow.share);
            }
        }
        true
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, key)) = self.order.front() {
            if now.saturating_duration_since(at) <= self.window {
                break;
            }
            self.order.pop_front();
            // Only if the flow was not used since: then it is re-queued below.
            match self.flows.get(&key) {
                Some(flow) if now.saturating_duration_since(flow.at) > self.window => {
                    self.remove(&key);
                }
                Some(flow) => self.order.push_back((flow.at, key)),
                None => {}
            }
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((_, key)) = self.order.pop_front() {
            if self.remove(&key) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    fn limits(flows: usize) -> StreamLimits {
        StreamLimits { flows, ..StreamLimits::default() }
    }

    const VIA: Via = Via::Link { ifindex: 7, outgoing: false };
    const SHARE: Share = Share::Interface(7);

    fn key(port: u16) -> FlowKey {
        (addr(port), addr(53), VIA)
    }

    #[test]
    fn a_length_prefix_and_message_in_separate_segments() {
        let mut streams = Streams::new(limits(8), Duration::from_secs(5));
        let now = Instant::now();
        assert_eq!(streams.push(key(1), SHARE, 100, &[0, 3], now), Pushed::default());
        let pushed = streams.push(key(1), SHARE, 102, &[7, 8, 9, 0, 1], now);
        assert_eq!(pushed.messages, vec![vec![7, 8, 9]]);
        let pushed = streams.push(key(1), SHARE, 107, &[6], now);
        assert_eq!(pushed.messages, vec![vec![6]]);
    }

    #[test]
    fn retransmissions_are_ignored_and_gaps_counted() {
        let mut streams = Streams::new(limits(8), Duration::from_secs(5));
        let now = Instant::now();
        assert_eq!(streams.push(key(1), SHARE, 0, &[0, 1, 5], now).messages, vec![vec![5]]);
        assert_eq!(streams.push(key(1), SHARE, 0, &[0, 1, 5], now), Pushed::default());
        let gap = streams.push(key(1), SHARE, 10, &[0, 1, 5], now);
        assert!(gap.lost && gap.messages.is_empty());
        // Sequence numbers wrap.
        let mut streams = Streams::new(limits(8), Duration::from_secs(5));
        streams.push(key(2), SHARE, u32::MAX - 1, &[0, 2], now);
        assert_eq!(streams.push(key(2), SHARE, 0, &[4, 4], now).messages, vec![vec![4, 4]]);
    }

    #[test]
    fn flows_are_bounded_in_number_and_age() {
        let mut streams = Streams::new(limits(2), Duration::from_secs(5));
        let now = Instant::now();
        for port in 1..=3 {
            streams.push(key(port), SHARE, 0, &[0, 9], now);
        }
        assert_eq!(streams.len(), 2);
        streams.push(key(9), SHARE, 0, &[0, 9], now + Duration::from_secs(6));
        assert_eq!(streams.len(), 1);
    }

    #[test]
    fn one_source_is_bounded_in_flows_and_bytes() {
        let limits = StreamLimits { flows: 4096, flows_per_source: 256, bytes: 16 << 20, bytes_per_source: 1 << 20 };
        let mut streams = Streams::new(limits, Duration::from_secs(5));
        let now = Instant::now();
        // 4,096 flows from one pod, each announcing a maximum-size message and sending most of it.
        let mut lost = 0;
        let chunk = vec![0u8; 60_000];
        for port in 1..=4096u16 {
            let first = streams.push(key(port), SHARE, 0, &[0xff, 0xff], now);
            let second = streams.push(key(port), SHARE, 2, &chunk, now);
            lost += usize::from(first.lost || second.lost);
            assert!(streams.bytes() <= limits.bytes_per_source, "{} after {port}", streams.bytes());
        }
        // 17 flows of 60,002 bytes fit in 1 MiB; the other 239 of the share's 256 flows lose their
        // bytes, and the 3,840 flows beyond the share are not reassembled at all.
        assert_eq!(lost, 239 + 3840);
        // Another pod still has its own room.
        let other = Share::Interface(8);
        let k = (addr(1), addr(53), Via::Link { ifindex: 8, outgoing: false });
        streams.push(k, other, 0, &[0x01, 0x00], now);
        assert_eq!(streams.push(k, other, 2, &[9; 256], now).messages, vec![vec![9; 256]]);
        // And everything is given back as flows age out.
        streams.push(key(1), SHARE, 0, &[0, 1, 5], now + Duration::from_secs(6));
        assert_eq!((streams.len(), streams.bytes()), (1, 0));
    }

    #[test]
    fn the_total_is_bounded_across_sources() {
        let limits = StreamLimits { flows: 4096, flows_per_source: 256, bytes: 4 << 20, bytes_per_source: 1 << 20 };
        let mut streams = Streams::new(limits, Duration::from_secs(5));
        let now = Instant::now();
        let chunk = vec![0u8; 60_000];
        for pod in 0..64u32 {
            let via = Via::Link { ifindex: 100 + pod, outgoing: false };
            for port in 1..=32u16 {
                let k = (addr(port), addr(53), via);
                streams.push(k, Share::Interface(100 + pod), 0, &[0xff, 0xff], now);
                streams.push(k, Share::Interface(100 + pod), 2, &chunk, now);
                assert!(streams.bytes() <= limits.bytes, "{}", streams.bytes());
            }
        }
    }
}
