//! Anti-spoofing: pairs each DNS response with the query it answers.
//!
//! A response yields an answer only if (a) it is a response, (b) it comes from a trusted resolver
//! on the DNS port, and (c) it matches a query recorded from that client: same client address and
//! port, same transport, same transaction id, same question, sent to that resolver, within the
//! window. Then it must say NOERROR, not be truncated, and carry addresses for the question.
//! Every other packet is counted by reason ([`Reason`]) and forgotten.
//!
//! Time is a parameter (`now`), so the window is tested without sleeping.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::dns::{self, Address, Question, Summary};
use crate::packet::{self, FrameError, Segment, Transport};
use crate::stats::{Reason, Stats};
use crate::tcp::Streams;

/// What the matcher needs to know.
#[derive(Debug, Clone)]
pub struct MatchConfig {
    pub dns_port: u16,
    /// How long a query waits for its response.
    pub window: Duration,
    /// Pending queries kept at most (and as many recently answered ones, for de-duplication).
    pub max_pending: usize,
}

impl Default for MatchConfig {
    fn default() -> Self {
        Self { dns_port: 53, window: Duration::from_secs(5), max_pending: 65_536 }
    }
}

/// A response that passed every check: what the client was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    pub client: IpAddr,
    pub server: IpAddr,
    pub qname: String,
    pub cnames: Vec<String>,
    pub answers: Vec<Address>,
    pub transport: Transport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    client: SocketAddr,
    id: u16,
    transport: Transport,
}

#[derive(Debug)]
struct Pending {
    question: Question,
    /// Where the query went; more than one when the sensor sees it before and after a Service
    /// DNAT (kube-dns ClusterIP, then the CoreDNS pod), on two interfaces.
    servers: Vec<IpAddr>,
    at: Instant,
}

/// The pending-query table and the trust list.
#[derive(Debug)]
pub struct Matcher {
    config: MatchConfig,
    trusted: HashSet<IpAddr>,
    pending: HashMap<Key, Pending>,
    /// Insertion order of `pending`, for expiry.
    order: VecDeque<(Instant, Key)>,
    /// Queries answered within the window: a second copy of their response is a duplicate.
    answered: HashMap<Key, Instant>,
    answered_order: VecDeque<(Instant, Key)>,
    streams: Streams,
    stats: Arc<Stats>,
}

impl Matcher {
    pub fn new(config: MatchConfig, trusted: impl IntoIterator<Item = IpAddr>, stats: Arc<Stats>) -> Self {
        Self {
            config: config.clone(),
            trusted: trusted.into_iter().collect(),
            pending: HashMap::new(),
            order: VecDeque::new(),
            answered: HashMap::new(),
            answered_order: VecDeque::new(),
            streams: Streams::new(config.max_pending / 16, config.window),
            stats,
        }
    }

    /// Replaces the trusted resolver addresses (flags plus, in a cluster, kube-dns).
    pub fn set_trusted(&mut self, trusted: impl IntoIterator<Item = IpAddr>) {
        self.trusted = trusted.into_iter().collect();
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Entries held for expiry and de-duplication (bounded by a small multiple of `max_pending`).
    pub fn bookkeeping(&self) -> usize {
        self.order.len() + self.answered_order.len()
    }

    /// Handles one Ethernet frame; returns what it answered, if anything.
    pub fn frame(&mut self, frame: &[u8], now: Instant) -> Vec<Answered> {
        self.stats.bump(Reason::Frames);
        match packet::parse_ethernet(frame) {
            Ok(segment) => self.segment(&segment, now),
            Err(err) => {
                self.stats.bump(frame_reason(err));
                Vec::new()
            }
        }
    }

    /// Handles one UDP datagram or TCP segment.
    pub fn segment(&mut self, segment: &Segment<'_>, now: Instant) -> Vec<Answered> {
        self.expire(now);
        let port = self.config.dns_port;
        if segment.src.port() != port && segment.dst.port() != port {
            self.stats.bump(Reason::NotDnsPort);
            return Vec::new();
        }
        let mut out = Vec::new();
        match segment.transport {
            Transport::Udp => out.extend(self.message(segment, segment.payload, now)),
            Transport::Tcp => {
                let pushed = self.streams.push(segment.src, segment.dst, segment.seq, segment.payload, now);
                if pushed.lost {
                    self.stats.bump(Reason::TcpIncomplete);
                }
                for message in pushed.messages {
                    out.extend(self.message(segment, &message, now));
                }
            }
        }
        out
    }

    fn message(&mut self, segment: &Segment<'_>, bytes: &[u8], now: Instant) -> Option<Answered> {
        let summary = match dns::summarize(bytes) {
            Ok(summary) => summary,
            Err(_) => {
                self.stats.bump(Reason::DnsMalformed);
                return None;
            }
        };
        if summary.response {
            self.response(segment, summary, now)
        } else {
            self.query(segment, summary, now);
            None
        }
    }

    fn query(&mut self, segment: &Segment<'_>, summary: Summary, now: Instant) {
        if segment.dst.port() != self.config.dns_port {
            self.stats.bump(Reason::WrongDirection);
            return;
        }
        let question = match summary.question {
            Some(question) if matches!(question.qtype, RecordType::A | RecordType::AAAA) => question,
            _ => {
                self.stats.bump(Reason::OtherQuestion);
                return;
            }
        };
        let key = Key { client: segment.src, id: summary.id, transport: segment.transport };
        let server = segment.dst.ip();
        if let Some(pending) = self.pending.get_mut(&key)
            && pending.question == question
        {
            // The same query seen again: on a second interface, or after DNAT.
            if !pending.servers.contains(&server) && pending.servers.len() < 4 {
                pending.servers.push(server);
            }
            return;
        }
        if self.pending.len() >= self.config.max_pending && !self.pending.contains_key(&key) {
            self.stats.bump(Reason::PendingFull);
            return;
        }
        self.stats.bump(Reason::Queries);
        self.answered.remove(&key);
        self.pending.insert(key, Pending { question, servers: vec![server], at: now });
        // Answered queries leave their entry in `order` until it ages out; at high query rates
        // compact it, so its size stays bounded by the table's, not by rate × window.
        if self.order.len() >= 2 * self.config.max_pending.max(1) {
            let pending = &self.pending;
            self.order.retain(|(at, key)| pending.get(key).is_some_and(|p| p.at == *at));
        }
        self.order.push_back((now, key));
    }

    fn response(&mut self, segment: &Segment<'_>, summary: Summary, now: Instant) -> Option<Answered> {
        if segment.src.port() != self.config.dns_port {
            self.stats.bump(Reason::WrongDirection);
            return None;
        }
        let server = segment.src.ip();
        if !self.trusted.contains(&server) {
            self.stats.bump(Reason::UntrustedSource);
            return None;
        }
        if !summary.question.as_ref().is_some_and(|q| matches!(q.qtype, RecordType::A | RecordType::AAAA)) {
            self.stats.bump(Reason::OtherQuestion);
            return None;
        }
        let key = Key { client: segment.dst, id: summary.id, transport: segment.transport };
        let Some(pending) = self.pending.get(&key) else {
            let reason = if self.answered.contains_key(&key) { Reason::Duplicate } else { Reason::Unsolicited };
            self.stats.bump(reason);
            return None;
        };
        if !pending.servers.contains(&server) {
            self.stats.bump(Reason::ServerMismatch);
            return None;
        }
        if summary.question.as_ref() != Some(&pending.question) {
            self.stats.bump(Reason::QuestionMismatch);
            return None;
        }
        if now.saturating_duration_since(pending.at) > self.config.window {
            self.stats.bump(Reason::Late);
            self.pending.remove(&key);
            return None;
        }
        // A truncated UDP answer leaves the query open: the client retries over TCP, with a new
        // id, so nothing will claim it, and it expires with the window.
        if summary.truncated {
            self.stats.bump(Reason::Truncated);
            return None;
        }
        let pending = self.pending.remove(&key)?;
        self.answered.insert(key, now);
        self.answered_order.push_back((now, key));
        let reason = match summary.rcode {
            ResponseCode::NoError if summary.chain_broken => Some(Reason::ChainBroken),
            ResponseCode::NoError if summary.addresses.is_empty() => Some(Reason::EmptyAnswer),
            ResponseCode::NoError => None,
            ResponseCode::NXDomain => Some(Reason::Nxdomain),
            ResponseCode::ServFail => Some(Reason::Servfail),
            _ => Some(Reason::RcodeOther),
        };
        if let Some(reason) = reason {
            self.stats.bump(reason);
            return None;
        }
        self.stats.bump(Reason::Observations);
        Some(Answered {
            client: key.client.ip(),
            server,
            qname: pending.question.name,
            cnames: summary.cnames,
            answers: summary.addresses,
            transport: key.transport,
        })
    }

    /// Forgets queries older than twice the window (between one and two windows old, their
    /// answers count as late rather than unsolicited), and answers older than the window.
    fn expire(&mut self, now: Instant) {
        let window = self.config.window;
        while let Some(&(at, key)) = self.order.front() {
            if now.saturating_duration_since(at) <= window * 2 {
                break;
            }
            self.order.pop_front();
            if self.pending.get(&key).is_some_and(|pending| pending.at == at) {
                self.pending.remove(&key);
            }
        }
        while let Some(&(at, key)) = self.answered_order.front() {
            if now.saturating_duration_since(at) <= window && self.answered_order.len() <= self.config.max_pending {
                break;
            }
            self.answered_order.pop_front();
            if self.answered.get(&key) == Some(&at) {
                self.answered.remove(&key);
            }
        }
    }
}

fn frame_reason(err: FrameError) -> Reason {
    match err {
        FrameError::Truncated => Reason::FrameTruncated,
        FrameError::NotIp(_) => Reason::NotIp,
        FrameError::NotUdpTcp(_) => Reason::NotUdpTcp,
        FrameError::Fragment => Reason::Fragment,
        FrameError::Malformed(_) => Reason::MalformedHeader,
        FrameError::Ipv6Extensions => Reason::Ipv6Extensions,
    }
}
