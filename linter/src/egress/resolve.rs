//! Resolving exact names: hickory-resolver against configured or system nameservers (A and
//! AAAA, CNAME chains followed, TTLs kept), and a hosts-file table for offline rendering.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};

use jiff::Timestamp;

use super::intents::{Answer, IntentKey, IntentSet};
use super::parse_fqdn;
use super::schedule::{Jitter, Schedule};

/// The addresses of a name, and the CNAME chain that led to them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// A and AAAA answers, sorted by address.
    pub answers: Vec<Answer>,
    /// The CNAME chain from the name to the owner of the addresses.
    pub cnames: Vec<String>,
}

/// Why a lookup gave no address. Either way the name keeps its last-known addresses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("{0}: no address (NXDOMAIN or an empty answer)")]
    NoAddress(String),
    #[error("{0}: lookup failed: {1}")]
    Failed(String, String),
    #[error("{0}: not in the hosts file")]
    NotInHosts(String),
}

/// Looks names up with hickory-resolver.
#[derive(Clone)]
pub struct DnsLookup {
    resolver: TokioResolver,
}

impl std::fmt::Debug for DnsLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsLookup").finish_non_exhaustive()
    }
}

impl DnsLookup {
    /// A resolver using `nameservers` (UDP, then TCP on truncation), or the system's
    /// (`/etc/resolv.conf`) when the list is empty. The hosts file is never consulted: the
    /// controller must see what DNS says, not what its own pod's `/etc/hosts` says.
    pub fn new(nameservers: &[SocketAddr], timeout: Duration) -> Result<DnsLookup, String> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if nameservers.is_empty() {
            TokioResolver::builder(provider).map_err(|e| format!("cannot read the system DNS configuration: {e}"))?
        } else {
            let servers = nameservers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
        };
        let opts = builder.options_mut();
        opts.timeout = timeout;
        opts.attempts = 2;
        opts.preserve_intermediates = true;
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ndots = 0;
        // portcullis keeps its own cache with the TTLs; a second one would answer re-resolutions
        // from memory instead of asking the server.
        opts.cache_size = 0;
        let resolver = builder.build().map_err(|e| format!("cannot build the DNS resolver: {e}"))?;
        Ok(DnsLookup { resolver })
    }

    /// Resolves `name` (A and AAAA, concurrently).
    pub async fn lookup(&self, name: &str) -> Result<Resolution, LookupError> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let (v4, v6) = tokio::join!(
            self.resolver.lookup(fqdn.as_str(), RecordType::A),
            self.resolver.lookup(fqdn.as_str(), RecordType::AAAA)
        );
        let mut out = Resolution::default();
        let mut errors = Vec::new();
        for result in [v4, v6] {
            match result {
                Ok(lookup) => collect(lookup.answers(), &mut out),
                Err(e) if e.is_no_records_found() => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        finish(name, out, errors)
    }
}

/// Looks `names` up with at most `concurrency` queries in flight; results in name order.
pub async fn lookup_many(
    dns: &DnsLookup,
    names: Vec<String>,
    concurrency: usize,
) -> Vec<(String, Result<Resolution, LookupError>)> {
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for name in names {
        let (dns, limit) = (dns.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let result = dns.lookup(&name).await;
            (name, result)
        });
    }
    let mut out = Vec::new();
    while let Some(done) = tasks.join_next().await {
        // A lookup task cannot panic (no unwrap inside); a cancelled one is simply not reported.
        if let Ok(pair) = done {
            out.push(pair);
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Applies lookup results to the intents and reschedules each name: at its answer's (floored,
/// capped) TTL on success, after a jittered backoff on failure. Returns the intents whose
/// address set changed.
pub fn apply_results(
    set: &mut IntentSet,
    schedule: &mut Schedule,
    results: &[(String, Result<Resolution, LookupError>)],
    jitter: &mut Jitter,
    now: Timestamp,
) -> Vec<IntentKey> {
    let mut changed = BTreeSet::new();
    for (name, result) in results {
        match result {
            Ok(r) => {
                changed.extend(set.apply_lookup(name, Some(&r.answers), now));
                let ttl = r.answers.iter().map(|a| a.ttl).min().unwrap_or(0);
                schedule.succeeded(name, set.cache_config().effective_ttl(ttl), now);
            }
            Err(_) => {
                changed.extend(set.apply_lookup(name, None, now));
                schedule.failed(name, now, jitter.factor());
            }
        }
    }
    changed.into_iter().collect()
}

fn collect(records: &[hickory_resolver::proto::rr::Record], out: &mut Resolution) {
    for record in records {
        match &record.data {
            RData::A(a) => out.answers.push(Answer { ip: IpAddr::V4(a.0), ttl: record.ttl }),
            RData::AAAA(a) => out.answers.push(Answer { ip: IpAddr::V6(a.0), ttl: record.ttl }),
            RData::CNAME(c) => {
                let target = c.0.to_ascii().trim_end_matches('.').to_ascii_lowercase();
                if !out.cnames.contains(&target) {
                    out.cnames.push(target);
                }
            }
            _ => {}
        }
    }
}

fn finish(name: &str, mut out: Resolution, errors: Vec<String>) -> Result<Resolution, LookupError> {
    out.answers.sort_by_key(|a| a.ip);
    out.answers.dedup_by_key(|a| a.ip);
    match (out.answers.is_empty(), errors.is_empty()) {
        (false, _) => Ok(out),
        (true, true) => Err(LookupError::NoAddress(name.to_owned())),
        (true, false) => Err(LookupError::Failed(name.to_owned(), errors.join("; "))),
    }
}

/// A hosts file (`IP NAME [ALIAS...]`, `#` comments): fixed answers for offline rendering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostsTable {
    names: BTreeMap<String, Vec<IpAddr>>,
}

/// TTL given to hosts-file answers (they never expire on their own).
pub const HOSTS_TTL: u32 = 3600;

impl HostsTable {
    /// Parses hosts-file text; a line that is not `IP NAME...` is an error naming its number.
    pub fn parse(text: &str) -> Result<HostsTable, String> {
        let mut names: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(ip), Some(first)) = (fields.next(), fields.next()) else {
                return Err(format!("line {}: expected \"IP NAME [ALIAS...]\"", i + 1));
            };
            let ip: IpAddr = ip.parse().map_err(|_| format!("line {}: {ip:?} is not an IP address", i + 1))?;
            for name in std::iter::once(first).chain(fields) {
                let name = parse_fqdn(name).map_err(|e| format!("line {}: {e}", i + 1))?;
                let ips = names.entry(name).or_default();
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        Ok(HostsTable { names })
    }

    pub fn lookup(&self, name: &str) -> Option<Resolution> {
        self.names.get(name).map(|ips| {
            let mut answers: Vec<Answer> = ips.iter().map(|ip| Answer { ip: *ip, ttl: HOSTS_TTL }).collect();
            answers.sort_by_key(|a| a.ip);
            Resolution { answers, cnames: Vec::new() }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_files_parse_with_aliases_and_comments() {
        let t = HostsTable::parse(
            "# fixed\n192.0.2.1 api.stripe.com API.example.com.\n\n2001:db8::1 api.stripe.com # v6\n",
        )
        .unwrap();
        let r = t.lookup("api.stripe.com").unwrap();
        let ips: Vec<String> = r.answers.iter().map(|a| a.ip.to_string()).collect();
        assert_eq!(ips, ["192.0.2.1", "2001:db8::1"]);
        assert!(t.lookup("api.example.com").is_some());
        assert!(t.lookup("other.example.com").is_none());
    }

    #[test]
    fn bad_hosts_lines_name_their_line() {
        assert_eq!(HostsTable::parse("192.0.2.1\n").unwrap_err(), "line 1: expected \"IP NAME [ALIAS...]\"");
        assert!(HostsTable::parse("\nnot-an-ip name.example.com\n").unwrap_err().starts_with("line 2:"));
        assert!(HostsTable::parse("192.0.2.1 localhost\n").unwrap_err().starts_with("line 1:"));
    }
}
