//! The sensor's user-space counters: lock-free, written by the capture thread, read by metrics.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! reasons {
    ($($variant:ident => $label:literal, $help:literal;)*) => {
        /// Everything the capture path counts. Labels are the `reason` values of the metrics.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason { $($variant),* }

        impl Reason {
            pub const ALL: &'static [Reason] = &[$(Reason::$variant),*];

            pub fn label(self) -> &'static str {
                match self { $(Reason::$variant => $label),* }
            }

            pub fn help(self) -> &'static str {
                match self { $(Reason::$variant => $help),* }
            }
        }
    };
}

reasons! {
    Frames => "frames", "frames user space received";
    Queries => "queries", "address queries recorded as pending";
    Observations => "observations", "answered queries emitted as observations";
    FrameTruncated => "frame_truncated", "a header runs past the captured bytes";
    NotIp => "not_ip", "not IPv4 or IPv6";
    NotUdpTcp => "not_udp_tcp", "neither UDP nor TCP";
    Fragment => "fragment", "a non-first IP fragment";
    MalformedHeader => "malformed_header", "an IP, UDP or TCP header with impossible fields";
    Ipv6Extensions => "ipv6_extensions", "too many IPv6 extension headers, or ESP";
    NotDnsPort => "not_dns_port", "neither port is the DNS port";
    TcpIncomplete => "tcp_incomplete", "TCP stream bytes given up (a sequence gap, or a message over 64 KiB)";
    DnsMalformed => "dns_malformed", "the payload is not a DNS message";
    OtherQuestion => "other_question", "a query or response not about A or AAAA records of one IN name";
    PendingFull => "pending_full", "the pending-query table was full; the query was not recorded";
    SourceFull => "source_full", "the query's source (the interface it entered by) held its whole share of the pending-query table; the query was not recorded";
    WrongDirection => "wrong_direction", "a query sent from the DNS port, or a response sent to it";
    UntrustedSource => "untrusted_source", "a response from an address that is not a trusted resolver";
    Unsolicited => "unsolicited", "a response no recorded query asked for (client, ports, id)";
    Duplicate => "duplicate", "a second copy of an already answered response (another interface)";
    OffPath => "off_path", "a response that did not take the path a real answer takes: it entered the node by an interface its query did not leave by (an answer forged from a pod), or left toward the client without being seen entering";
    ServerMismatch => "server_mismatch", "a response from a resolver the query was not sent to";
    QuestionMismatch => "question_mismatch", "a response whose question differs from the query's";
    Late => "late", "a response after the match window";
    Nxdomain => "nxdomain", "a matched response saying the name does not exist";
    Servfail => "servfail", "a matched response saying the resolver failed";
    RcodeOther => "rcode_other", "a matched response with another error code";
    Truncated => "truncated", "a matched UDP response with TC set (the client retries over TCP)";
    EmptyAnswer => "empty_answer", "a matched response without addresses for the question";
    ChainBroken => "chain_broken", "a matched response whose CNAME chain loops or is too long";
    AnswersCapped => "answers_capped", "an observation whose answer held more than 256 addresses: the first 256 are kept (what the webhook accepts)";
    QueueFull => "queue_full", "an observation dropped because the output queue was full (in observations or in bytes)";
    Flows => "flows", "connection starts written (--flows)";
    MalformedFlow => "malformed_flow", "a connection-start record from the kernel that does not decode";
    FlowOutputFailed => "flow_output_failed", "connection starts that could not be written (the output failed)";
    FlowQueueFull => "flow_queue_full", "a connection start dropped because the queue to the flow reporter was full";
}

/// One counter per [`Reason`].
#[derive(Debug)]
pub struct Stats {
    counts: Vec<AtomicU64>,
}

impl Default for Stats {
    fn default() -> Self {
        Self { counts: Reason::ALL.iter().map(|_| AtomicU64::new(0)).collect() }
    }
}

impl Stats {
    pub fn bump(&self, reason: Reason) {
        self.add(reason, 1);
    }

    pub fn add(&self, reason: Reason, n: u64) {
        if let Some(count) = self.counts.get(reason as usize) {
            count.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(&self, reason: Reason) -> u64 {
        self.counts.get(reason as usize).map_or(0, |count| count.load(Ordering::Relaxed))
    }

    /// Every counter with its label, zeros included.
    pub fn snapshot(&self) -> Vec<(Reason, u64)> {
        Reason::ALL.iter().map(|&reason| (reason, self.get(reason))).collect()
    }
}
