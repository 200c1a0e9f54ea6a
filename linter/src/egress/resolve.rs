//! What resolving exact names gives ([`Resolution`], [`LookupError`]), how results update the
//! intents ([`apply_results`]), the `nameserver` lines of `resolv.conf`, and a hosts-file table
//! for offline rendering. Pure: the lookups themselves are I/O and live with their callers
//! (the CLI's stub resolver in `cli::dns`, the controller's hickory resolver in the webhook),
//! both concluding through [`conclude`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

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

/// The outcome of looking `name` up, from what the A and AAAA queries gave (`out`) and how
/// the failed ones failed (`errors`): addresses sorted and deduplicated; no address is
/// [`LookupError::NoAddress`] when every query was answered, [`LookupError::Failed`] otherwise.
pub fn conclude(name: &str, mut out: Resolution, errors: Vec<String>) -> Result<Resolution, LookupError> {
    out.answers.sort_by_key(|a| a.ip);
    out.answers.dedup_by_key(|a| a.ip);
    match (out.answers.is_empty(), errors.is_empty()) {
        (false, _) => Ok(out),
        (true, true) => Err(LookupError::NoAddress(name.to_owned())),
        (true, false) => Err(LookupError::Failed(name.to_owned(), errors.join("; "))),
    }
}

/// The `nameserver ADDR` lines of `resolv.conf` text (an IPv6 zone suffix, `%eth0`, is
/// dropped), in order, without repeats, at most 16.
pub fn nameservers(text: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(address) = words.next() else { continue };
        let address = address.split('%').next().unwrap_or(address);
        if let Ok(ip) = address.parse::<IpAddr>()
            && !out.contains(&ip)
            && out.len() < 16
        {
            out.push(ip);
        }
    }
    out
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
