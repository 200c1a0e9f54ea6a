//! Anti-spoofing: pairs each DNS response with the query it answers.
//!
//! A response yields an answer only if (a) it is a response, (b) it comes from a trusted resolver
//! on the DNS port, (c) it matches a query recorded from that client: same client address and
//! port, same transport, same transaction id, same question, sent to that resolver, within the
//! window, and (d) it took the path a real answer takes ([`Via`]): it entered the node by an
//! interface its query was seen leaving by toward a trusted resolver (or by `lo`), or, for a query
//! answered on the node itself (NodeLocal DNSCache), it left by the interface the query came in
//! by. An answer a pod forges from its own interface enters by that pod's interface, which no
//! query to a resolver leaves by: it is counted `off_path` and the query is closed (fail closed:
//! the pod gives up its own observation, nobody else's). Then the response must say NOERROR, not
//! be truncated, and carry addresses for the question. Every other packet is counted by reason
//! ([`Reason`]) and forgotten.
//!
//! Each source of queries (the interface a query entered by: one pod's veth; for recordings,
//! the client address) holds at most a bounded share of the pending-query table, so one pod's
//! flood of unanswered queries cannot keep the others' from being recorded.
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
use crate::tcp::{StreamLimits, Streams};

/// `lo` has this index in every network namespace (`LOOPBACK_IFINDEX` in the kernel).
pub const LOOPBACK_IFINDEX: u32 = 1;

/// Where the capture saw a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// On a node interface: its index, and whether the node was sending the frame
    /// (`PACKET_OUTGOING`) or receiving it (every other packet type).
    Link { ifindex: u32, outgoing: bool },
    /// From a recording that does not say which interface or direction (pcap, hex test frames):
    /// the path check (d) does not apply. Live capture never uses it.
    Recorded,
}

/// Who a pending query or a TCP stream is charged to: the interface it entered the node by (for
/// a pod, its veth: the pod cannot choose it), or, for recordings, the client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Share {
    Interface(u32),
    Client(IpAddr),
}

impl Share {
    /// The share of a frame seen `via`, whose client (the side that is not the DNS port) is
    /// `client`.
    pub fn of(via: Via, client: IpAddr) -> Share {
        match via {
            Via::Link { ifindex, .. } => Share::Interface(ifindex),
            Via::Recorded => Share::Client(client),
        }
    }
}

/// What the matcher needs to know.
#[derive(Debug, Clone)]
pub struct MatchConfig {
    pub dns_port: u16,
    /// How long a query waits for its response.
    pub window: Duration,
    /// Pending queries kept at most (and as many recently answered ones, for de-duplication).
    pub max_pending: usize,
    /// Pending queries one source ([`Share`]) holds at most; `0` means `max_pending / 64`
    /// (at least 16).
    pub max_pending_per_source: usize,
    /// TCP reassembly limits.
    pub streams: StreamLimits,
}

impl Default for MatchConfig {
    fn default() -> Self {
        Self {
            dns_port: 53,
            window: Duration::from_secs(5),
            max_pending: 65_536,
            max_pending_per_source: 0,
            streams: StreamLimits::default(),
        }
    }
}

impl MatchConfig {
    /// The per-source share of the pending-query table.
    pub fn per_source(&self) -> usize {
        match self.max_pending_per_source {
            0 => (self.max_pending / 64).max(16),
            n => n,
        }
        .min(self.max_pending.max(1))
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
    share: Share,
    /// The interface the query entered the node by, if it was seen arriving.
    entered_by: Option<u32>,
    /// Interfaces the query was seen leaving by toward a trusted resolver (at most 4).
    left_by: Vec<u32>,
}

impl Pending {
    /// Records one sighting of the query.
    fn sighted(&mut self, via: Via, toward_trusted: bool) {
        if let Via::Link { ifindex, outgoing } = via {
            if !outgoing {
                self.entered_by.get_or_insert(ifindex);
            } else if toward_trusted && !self.left_by.contains(&ifindex) && self.left_by.len() < 4 {
                self.left_by.push(ifindex);
            }
        }
    }

    /// Whether a response seen `via` took the path a real answer takes.
    fn path(&self, via: Via) -> Path {
        match via {
            Via::Recorded => Path::Taken,
            // Entering the node: only where the query left toward the resolver, or on `lo`
            // (answers from a resolver on the node; no pod can send on the node's `lo`).
            Via::Link { ifindex, outgoing: false } => {
                if ifindex == LOOPBACK_IFINDEX || self.left_by.contains(&ifindex) { Path::Taken } else { Path::Forged }
            }
            // Leaving the node toward the client: the first sighting of an answer the node
            // itself gave (the query never left); otherwise a copy whose way in was not seen.
            Via::Link { ifindex, outgoing: true } => {
                if self.left_by.is_empty() && self.entered_by == Some(ifindex) {
                    Path::Taken
                } else {
                    Path::Unseen
                }
            }
        }
    }
}

/// The verdict of the path check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Taken,
    /// Entered by an interface the query did not leave by: forged beside the path.
    Forged,
    /// Leaving toward the client, but not seen entering the way the query left.
    Unseen,
}

/// The pending-query table and the trust list.
#[derive(Debug)]
pub struct Matcher {
    config: MatchConfig,
    trusted: HashSet<IpAddr>,
    pending: HashMap<Key, Pending>,
    /// Pending queries per source.
    shares: HashMap<Share, usize>,
    per_source: usize,
    /// Insertion order of `pending`, for expiry.
    order: VecDeque<(Instant, Key)>,
    /// Queries answered within the window: a second copy of their response is a duplicate.
    answered: HashMap<Key, Instant>,
    answered_order: VecDeque<(Instant, Key)>,
    streams: Streams,
    stats: Arc<Stats>,
    /// The first untrusted server seen answering a recorded query (said once, then `Some(None)`).
    untrusted_answering: Option<Option<IpAddr>>,
}

impl Matcher {
    pub fn new(config: MatchConfig, trusted: impl IntoIterator<Item = IpAddr>, stats: Arc<Stats>) -> Self {
        Self {
            per_source: config.per_source(),
            trusted: trusted.into_iter().collect(),
            pending: HashMap::new(),
            shares: HashMap::new(),
            order: VecDeque::new(),
            answered: HashMap::new(),
            answered_order: VecDeque::new(),
            streams: Streams::new(config.streams, config.window),
            config,
            stats,
            untrusted_answering: None,
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

    /// The first server, not trusted, seen answering a query a client sent it: returned once.
    pub fn untrusted_resolver(&mut self) -> Option<IpAddr> {
        self.untrusted_answering.as_mut().and_then(Option::take)
    }

    /// Pending queries charged to `share`.
    pub fn pending_of(&self, share: Share) -> usize {
        self.shares.get(&share).copied().unwrap_or(0)
    }

    /// Bytes the TCP reassembly buffers hold.
    pub fn stream_bytes(&self) -> usize {
        self.streams.bytes()
    }

    /// Handles one Ethernet frame seen `via`; returns what it answered, if anything.
    pub fn frame(&mut self, frame: &[u8], via: Via, now: Instant) -> Vec<Answered> {
        self.stats.bump(Reason::Frames);
        match packet::parse_ethernet(frame) {
            Ok(segment) => self.segment(&segment, via, now),
            Err(err) => {
                self.stats.bump(frame_reason(err));
                Vec::new()
            }
        }
    }

    /// Handles one UDP datagram or TCP segment seen `via`.
    pub fn segment(&mut self, segment: &Segment<'_>, via: Via, now: Instant) -> Vec<Answered> {
        self.expire(now);
        let port = self.config.dns_port;
        if segment.src.port() != port && segment.dst.port() != port {
            self.stats.bump(Reason::NotDnsPort);
            return Vec::new();
        }
        let mut out = Vec::new();
        match segment.transport {
            Transport::Udp => out.extend(self.message(segment, segment.payload, via, now)),
            Transport::Tcp => {
                let client = if segment.dst.port() == port { segment.src.ip() } else { segment.dst.ip() };
                let share = Share::of(via, client);
                let pushed =
                    self.streams.push((segment.src, segment.dst, via), share, segment.seq, segment.payload, now);
                if pushed.lost {
                    self.stats.bump(Reason::TcpIncomplete);
                }
                for message in pushed.messages {
                    out.extend(self.message(segment, &message, via, now));
                }
            }
        }
        out
    }

    fn message(&mut self, segment: &Segment<'_>, bytes: &[u8], via: Via, now: Instant) -> Option<Answered> {
        let summary = match dns::summarize(bytes) {
            Ok(summary) => summary,
            Err(_) => {
                self.stats.bump(Reason::DnsMalformed);
                return None;
            }
        };
        if summary.response {
            self.response(segment, summary, via, now)
        } else {
            self.query(segment, summary, via, now);
            None
        }
    }

    fn query(&mut self, segment: &Segment<'_>, summary: Summary, via: Via, now: Instant) {
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
        let toward_trusted = self.trusted.contains(&server);
        if let Some(pending) = self.pending.get_mut(&key)
            && pending.question == question
        {
            // The same query seen again: on a second interface, or after DNAT.
            if !pending.servers.contains(&server) && pending.servers.len() < 4 {
                pending.servers.push(server);
            }
            pending.sighted(via, toward_trusted);
            return;
        }
        if self.pending.len() >= self.config.max_pending && !self.pending.contains_key(&key) {
            self.stats.bump(Reason::PendingFull);
            return;
        }
        let share = Share::of(via, segment.src.ip());
        if self.pending_of(share) >= self.per_source {
            self.stats.bump(Reason::SourceFull);
            return;
        }
        self.stats.bump(Reason::Queries);
        self.answered.remove(&key);
        let mut pending =
            Pending { question, servers: vec![server], at: now, share, entered_by: None, left_by: Vec::new() };
        pending.sighted(via, toward_trusted);
        self.remove_pending(&key);
        *self.shares.entry(share).or_default() += 1;
        self.pending.insert(key, pending);
        // Answered queries leave their entry in `order` until it ages out; at high query rates
        // compact it, so its size stays bounded by the table's, not by rate × window.
        if self.order.len() >= 2 * self.config.max_pending.max(1) {
            let pending = &self.pending;
            self.order.retain(|(at, key)| pending.get(key).is_some_and(|p| p.at == *at));
        }
        self.order.push_back((now, key));
    }

    /// Removes a pending query and gives its source its share back.
    fn remove_pending(&mut self, key: &Key) -> Option<Pending> {
        let pending = self.pending.remove(key)?;
        if let Some(count) = self.shares.get_mut(&pending.share) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.shares.remove(&pending.share);
            }
        }
        Some(pending)
    }

    fn response(&mut self, segment: &Segment<'_>, summary: Summary, via: Via, now: Instant) -> Option<Answered> {
        if segment.src.port() != self.config.dns_port {
            self.stats.bump(Reason::WrongDirection);
            return None;
        }
        let server = segment.src.ip();
        if !self.trusted.contains(&server) {
            self.stats.bump(Reason::UntrustedSource);
            // A client really asked this server: most likely a resolver the operator forgot to
            // trust. Remembered once, for the capture loop to say.
            let key = Key { client: segment.dst, id: summary.id, transport: segment.transport };
            if self.untrusted_answering.is_none()
                && self.pending.get(&key).is_some_and(|pending| pending.servers.contains(&server))
            {
                self.untrusted_answering = Some(Some(server));
            }
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
            self.remove_pending(&key);
            return None;
        }
        match pending.path(via) {
            Path::Taken => {}
            Path::Forged => {
                // Fail closed: the real answer, if any, is not trusted either.
                self.stats.bump(Reason::OffPath);
                self.remove_pending(&key);
                return None;
            }
            Path::Unseen => {
                self.stats.bump(Reason::OffPath);
                return None;
            }
        }
        // A truncated UDP answer leaves the query open: the client retries over TCP, with a new
        // id, so nothing will claim it, and it expires with the window.
        if summary.truncated {
            self.stats.bump(Reason::Truncated);
            return None;
        }
        let pending = self.remove_pending(&key)?;
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
        if summary.capped {
            self.stats.bump(Reason::AnswersCapped);
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
                self.remove_pending(&key);
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
