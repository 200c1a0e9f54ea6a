//! portcullis-sensor: a per-node eBPF DNS-snooping agent.
//!
//! An eBPF socket filter ([`bpf`]) passes DNS packets from an AF_PACKET socket; user space parses
//! them ([`packet`], [`dns`]), pairs every response with the query it answers and drops spoofed
//! or unsolicited ones ([`matcher`]), attributes the client to a pod ([`pods`]), and emits
//! observations (DESIGN §8) to stdout or the webhook ([`output`]). With `--flows` the filter also
//! reports connection starts, deduplicated in the kernel ([`flows`]).

pub mod bpf;
pub mod capture;
pub mod cli;
pub mod cluster;
pub mod dns;
pub mod flow_report;
pub mod flows;
pub mod matcher;
pub mod metrics;
pub mod output;
pub mod packet;
pub mod pcap;
pub mod pods;
pub mod resolvconf;
pub mod stats;
pub mod sys;
pub mod tcp;
