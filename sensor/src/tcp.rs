//! Just enough TCP reassembly for DNS: clients and servers often write the 2-byte length prefix
//! and the message in separate segments, and large answers span several. Each direction of a
//! connection keeps a small buffer of in-order bytes; complete messages are cut off its front.
//!
//! Bounded in every way: flows (oldest evicted), bytes per flow (one maximum-size message), and
//! age (the match window). A gap in sequence numbers drops the flow's buffer, since the rest of
//! the stream can no longer be framed; that is counted, not guessed at. Segments before the
//! expected sequence number (retransmissions, or the copy seen on a second interface) are ignored.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::packet::tcp_messages;

/// Largest buffered stream prefix: one maximum-size DNS message and its length.
const MAX_BUFFER: usize = 2 + 65_535;

#[derive(Debug)]
struct Flow {
    next_seq: u32,
    buf: Vec<u8>,
    at: Instant,
}

/// What one segment produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Complete DNS messages (without length prefixes), in stream order.
    pub messages: Vec<Vec<u8>>,
    /// Bytes were given up: a sequence gap or an oversize message.
    pub lost: bool,
}

/// Per-direction stream buffers.
#[derive(Debug)]
pub struct Streams {
    flows: HashMap<(SocketAddr, SocketAddr), Flow>,
    order: VecDeque<(Instant, (SocketAddr, SocketAddr))>,
    max_flows: usize,
    window: Duration,
}

impl Streams {
    pub fn new(max_flows: usize, window: Duration) -> Self {
        Self { flows: HashMap::new(), order: VecDeque::new(), max_flows: max_flows.max(1), window }
    }

    /// Adds one segment's data.
    pub fn push(&mut self, src: SocketAddr, dst: SocketAddr, seq: u32, data: &[u8], now: Instant) -> Pushed {
        self.expire(now);
        let key = (src, dst);
        let mut pushed = Pushed::default();
        // SYN, FIN and bare ACKs carry no stream bytes (and SYN and FIN take a sequence number
        // each): the flow starts, and continues, at the first byte of data.
        if data.is_empty() {
            return pushed;
        }
        let flow = match self.flows.get_mut(&key) {
            Some(flow) => {
                // Serial-number arithmetic: negative distance means already seen.
                let distance = seq.wrapping_sub(flow.next_seq) as i32;
                if distance < 0 {
                    return pushed;
                }
                if distance > 0 {
                    flow.buf.clear();
                    pushed.lost = true;
                    flow.next_seq = seq.wrapping_add(data.len() as u32);
                    return pushed;
                }
                flow
            }
            None => {
                if self.flows.len() >= self.max_flows {
                    self.evict_oldest();
                }
                self.order.push_back((now, key));
                self.flows.entry(key).or_insert(Flow { next_seq: seq, buf: Vec::new(), at: now })
            }
        };
        flow.next_seq = seq.wrapping_add(data.len() as u32);
        flow.at = now;
        let rest = if flow.buf.is_empty() {
            // The common case: whole messages in one segment, nothing buffered, no copy.
            let (messages, consumed) = tcp_messages(data);
            pushed.messages.extend(messages.into_iter().map(<[u8]>::to_vec));
            &data[consumed..]
        } else {
            flow.buf.extend_from_slice(data);
            let (messages, consumed) = tcp_messages(&flow.buf);
            pushed.messages.extend(messages.into_iter().map(<[u8]>::to_vec));
            flow.buf.drain(..consumed);
            &[][..]
        };
        flow.buf.extend_from_slice(rest);
        if flow.buf.len() > MAX_BUFFER {
            flow.buf.clear();
            pushed.lost = true;
        }
        pushed
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
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
                    self.flows.remove(&key);
                }
                Some(flow) => self.order.push_back((flow.at, key)),
                None => {}
            }
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((_, key)) = self.order.pop_front() {
            if self.flows.remove(&key).is_some() {
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

    #[test]
    fn a_length_prefix_and_message_in_separate_segments() {
        let mut streams = Streams::new(8, Duration::from_secs(5));
        let now = Instant::now();
        assert_eq!(streams.push(addr(1), addr(53), 100, &[0, 3], now), Pushed::default());
        let pushed = streams.push(addr(1), addr(53), 102, &[7, 8, 9, 0, 1], now);
        assert_eq!(pushed.messages, vec![vec![7, 8, 9]]);
        let pushed = streams.push(addr(1), addr(53), 107, &[6], now);
        assert_eq!(pushed.messages, vec![vec![6]]);
    }

    #[test]
    fn retransmissions_are_ignored_and_gaps_counted() {
        let mut streams = Streams::new(8, Duration::from_secs(5));
        let now = Instant::now();
        assert_eq!(streams.push(addr(1), addr(53), 0, &[0, 1, 5], now).messages, vec![vec![5]]);
        assert_eq!(streams.push(addr(1), addr(53), 0, &[0, 1, 5], now), Pushed::default());
        let gap = streams.push(addr(1), addr(53), 10, &[0, 1, 5], now);
        assert!(gap.lost && gap.messages.is_empty());
        // Sequence numbers wrap.
        let mut streams = Streams::new(8, Duration::from_secs(5));
        streams.push(addr(2), addr(53), u32::MAX - 1, &[0, 2], now);
        assert_eq!(streams.push(addr(2), addr(53), 0, &[4, 4], now).messages, vec![vec![4, 4]]);
    }

    #[test]
    fn flows_are_bounded_in_number_and_age() {
        let mut streams = Streams::new(2, Duration::from_secs(5));
        let now = Instant::now();
        for port in 1..=3 {
            streams.push(addr(port), addr(53), 0, &[0, 9], now);
        }
        assert_eq!(streams.len(), 2);
        streams.push(addr(9), addr(53), 0, &[0, 9], now + Duration::from_secs(6));
        assert_eq!(streams.len(), 1);
    }
}
