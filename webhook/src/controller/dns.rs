//! The controller's DNS lookups: hickory-resolver against the configured nameservers, or the
//! system's (A and AAAA concurrently, CNAME chains followed, TTLs kept, UDP then TCP on
//! truncation). What the answers mean for the intents is the engine's
//! ([`portcullis_linter::egress::resolve`]); this module is only the I/O.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use portcullis_linter::egress::Answer;
use portcullis_linter::egress::resolve::{LookupError, Resolution, conclude};

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
        conclude(name, out, errors)
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

fn collect(records: &[Record], out: &mut Resolution) {
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
