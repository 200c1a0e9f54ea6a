//! The address cache of one intent: per name, the addresses DNS gave for it, where each came
//! from, when it was last seen and when its answer expires.
//!
//! Rules (DESIGN §7):
//! - a TTL is clamped to `[ttl_floor, ttl_cap]` before it sets the expiry;
//! - an address stays for `grace` after its expiry (clients and open connections outlive TTLs),
//!   so it is never dropped before `expires_at + grace`;
//! - a name whose latest lookup failed keeps its last-known addresses, however old;
//! - at most `max_per_name` addresses per name and `max_names` learned names per cache, the
//!   least recently seen evicted first.
//!
//! Time is a parameter of every call; nothing here reads a clock.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use jiff::Timestamp;

/// Where an address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
pub enum AddressSource {
    /// The controller's own lookup.
    Resolver,
    /// A DNS answer a selected pod received, seen by the sensor.
    Sensor,
}

/// Cache bounds and timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// TTLs below this are raised to it (churn guard for names with tiny TTLs).
    pub ttl_floor: Duration,
    /// TTLs above this are lowered to it (so a name is re-resolved at least this often).
    pub ttl_cap: Duration,
    /// How long an address outlives its expiry.
    pub grace: Duration,
    /// Addresses kept per name.
    pub max_per_name: usize,
    /// Names kept per intent (patterns can match without bound).
    pub max_names: usize,
}

impl CacheConfig {
    /// The TTL actually used for an answer: clamped to the floor and cap.
    pub fn effective_ttl(&self, ttl: u32) -> Duration {
        Duration::from_secs(u64::from(ttl)).clamp(self.ttl_floor, self.ttl_cap)
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl_floor: Duration::from_secs(60),
            ttl_cap: Duration::from_secs(24 * 3600),
            grace: Duration::from_secs(600),
            max_per_name: 256,
            max_names: 1024,
        }
    }
}

/// One address of a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    pub source: AddressSource,
    pub last_seen: Timestamp,
    pub expires_at: Timestamp,
}

/// Refused addresses remembered per name (for status): the first few are enough to explain.
pub const MAX_REFUSED_PER_NAME: usize = 8;

/// The addresses of one name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameEntry {
    pub addresses: BTreeMap<IpAddr, Address>,
    /// Set when the latest lookup of this name failed: its addresses are kept regardless of age.
    pub failing: bool,
    /// Addresses DNS or a sensor gave for this name that the address guard refused, with why
    /// (at most [`MAX_REFUSED_PER_NAME`]).
    pub refused: BTreeMap<IpAddr, String>,
}

impl NameEntry {
    fn last_seen(&self) -> Option<Timestamp> {
        self.addresses.values().map(|a| a.last_seen).max()
    }
}

/// The address cache of one intent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressCache {
    config: CacheConfig,
    names: BTreeMap<String, NameEntry>,
}

/// Adds whole seconds to a timestamp, saturating at the representable range.
pub fn add(t: Timestamp, d: Duration) -> Timestamp {
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    Timestamp::from_second(t.as_second().saturating_add(secs)).unwrap_or(Timestamp::MAX)
}

impl AddressCache {
    pub fn new(config: CacheConfig) -> AddressCache {
        AddressCache { config, names: BTreeMap::new() }
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// The names and their entries, in name order.
    pub fn names(&self) -> impl Iterator<Item = (&str, &NameEntry)> {
        self.names.iter().map(|(n, e)| (n.as_str(), e))
    }

    pub fn get(&self, name: &str) -> Option<&NameEntry> {
        self.names.get(name)
    }

    /// Records a successful answer for `name`: each address is added or refreshed. Returns
    /// whether the set of addresses changed.
    ///
    /// An answer only ever extends an expiry: a shorter TTL seen later (a cache further down
    /// the chain counting down) does not pull an address's expiry in.
    pub fn record(
        &mut self,
        name: &str,
        answers: impl IntoIterator<Item = (IpAddr, u32)>,
        source: AddressSource,
        now: Timestamp,
    ) -> bool {
        let config = self.config;
        let is_new_name = !self.names.contains_key(name);
        let entry = self.names.entry(name.to_owned()).or_default();
        entry.failing = false;
        let mut changed = false;
        for (ip, ttl) in answers {
            let expires_at = add(now, config.effective_ttl(ttl));
            match entry.addresses.get_mut(&ip) {
                Some(a) => {
                    a.last_seen = a.last_seen.max(now);
                    a.expires_at = a.expires_at.max(expires_at);
                    // A resolver answer outranks a sensor one for the same address: it is the
                    // controller's own view and is not scoped to a pod.
                    if source == AddressSource::Resolver {
                        a.source = AddressSource::Resolver;
                    }
                }
                None => {
                    entry.addresses.insert(ip, Address { source, last_seen: now, expires_at });
                    changed = true;
                }
            }
        }
        if entry.addresses.len() > config.max_per_name {
            evict_least_recently_seen(entry, config.max_per_name);
        }
        if is_new_name && self.names.len() > config.max_names {
            self.evict_names(name);
        }
        changed
    }

    /// Records that a lookup of `name` failed (timeout, SERVFAIL, NXDOMAIN or no address): the
    /// name keeps its last-known addresses until a lookup succeeds again.
    pub fn record_failure(&mut self, name: &str) {
        if let Some(entry) = self.names.get_mut(name) {
            entry.failing = true;
        }
    }

    /// Records that the address guard refused `ip` for `name` (status explains it). Bounded.
    pub fn refuse(&mut self, name: &str, ip: IpAddr, why: String) {
        let is_new_name = !self.names.contains_key(name);
        let entry = self.names.entry(name.to_owned()).or_default();
        if entry.refused.len() < MAX_REFUSED_PER_NAME || entry.refused.contains_key(&ip) {
            entry.refused.insert(ip, why);
        }
        if is_new_name && self.names.len() > self.config.max_names {
            self.evict_names(name);
        }
    }

    /// Makes sure `name` has an entry (so status can show it as pending).
    pub fn ensure(&mut self, name: &str) {
        self.names.entry(name.to_owned()).or_default();
    }

    /// Restores an address from persisted status (restart recovery). Never shortens what is known.
    pub fn restore(&mut self, name: &str, ip: IpAddr, address: Address) {
        let entry = self.names.entry(name.to_owned()).or_default();
        let slot = entry.addresses.entry(ip).or_insert(address);
        slot.last_seen = slot.last_seen.max(address.last_seen);
        slot.expires_at = slot.expires_at.max(address.expires_at);
    }

    /// Drops the names `keep` rejects (a target removed from the intent).
    pub fn retain_names(&mut self, keep: impl Fn(&str) -> bool) {
        self.names.retain(|name, _| keep(name));
    }

    /// Removes addresses past `expires_at + grace` (except on failing names), and names that
    /// `keep` rejects. Returns whether anything was removed.
    pub fn prune(&mut self, now: Timestamp, keep: impl Fn(&str) -> bool) -> bool {
        let grace = self.config.grace;
        let mut changed = false;
        self.names.retain(|name, entry| {
            if !keep(name) {
                changed |= !entry.addresses.is_empty();
                return false;
            }
            if !entry.failing {
                let before = entry.addresses.len();
                entry.addresses.retain(|_, a| add(a.expires_at, grace) > now);
                changed |= entry.addresses.len() != before;
            }
            true
        });
        changed
    }

    /// The next time [`prune`](Self::prune) would remove an address, if ever.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.names
            .values()
            .filter(|e| !e.failing)
            .flat_map(|e| e.addresses.values())
            .map(|a| add(a.expires_at, self.config.grace))
            .min()
    }

    /// The addresses of `name` that count at `now` (those [`prune`](Self::prune) would keep).
    pub fn live<'a>(&'a self, name: &str, now: Timestamp) -> impl Iterator<Item = (IpAddr, &'a Address)> + 'a {
        let grace = self.config.grace;
        self.names.get(name).into_iter().flat_map(move |e| {
            let failing = e.failing;
            e.addresses.iter().filter(move |(_, a)| failing || add(a.expires_at, grace) > now).map(|(ip, a)| (*ip, a))
        })
    }

    /// Total number of addresses held.
    pub fn len(&self) -> usize {
        self.names.values().map(|e| e.addresses.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.names.values().all(|e| e.addresses.is_empty())
    }

    /// Drops the least recently seen names other than `keep` until the bound holds.
    fn evict_names(&mut self, keep: &str) {
        while self.names.len() > self.config.max_names {
            let victim = self
                .names
                .iter()
                .filter(|(n, _)| n.as_str() != keep)
                .min_by_key(|(n, e)| (e.last_seen(), n.as_str()))
                .map(|(n, _)| n.clone());
            match victim {
                Some(v) => {
                    self.names.remove(&v);
                }
                None => break,
            }
        }
    }
}

fn evict_least_recently_seen(entry: &mut NameEntry, bound: usize) {
    let mut by_age: Vec<(Timestamp, IpAddr)> = entry.addresses.iter().map(|(ip, a)| (a.last_seen, *ip)).collect();
    by_age.sort();
    let excess = entry.addresses.len().saturating_sub(bound);
    for (_, ip) in by_age.into_iter().take(excess) {
        entry.addresses.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn config() -> CacheConfig {
        CacheConfig {
            ttl_floor: Duration::from_secs(30),
            ttl_cap: Duration::from_secs(3600),
            grace: Duration::from_secs(60),
            max_per_name: 3,
            max_names: 4,
        }
    }

    fn live(c: &AddressCache, name: &str, now: Timestamp) -> Vec<String> {
        c.live(name, now).map(|(ip, _)| ip.to_string()).collect()
    }

    #[test]
    fn ttls_are_clamped_to_floor_and_cap() {
        let c = config();
        assert_eq!(c.effective_ttl(1), Duration::from_secs(30));
        assert_eq!(c.effective_ttl(300), Duration::from_secs(300));
        assert_eq!(c.effective_ttl(u32::MAX), Duration::from_secs(3600));
    }

    #[test]
    fn an_address_lives_until_expiry_plus_grace() {
        let mut c = AddressCache::new(config());
        assert!(c.record("a.example.com", [(ip("192.0.2.1"), 100)], AddressSource::Resolver, t(0)));
        // expiry at 100, grace 60: present at 159, gone at 160.
        assert!(!c.prune(t(159), |_| true));
        assert_eq!(live(&c, "a.example.com", t(159)), ["192.0.2.1"]);
        assert_eq!(c.next_expiry(), Some(t(160)));
        assert!(live(&c, "a.example.com", t(160)).is_empty());
        assert!(c.prune(t(160), |_| true));
        assert!(c.is_empty());
    }

    #[test]
    fn re_seeing_an_address_extends_but_never_shortens_its_expiry() {
        let mut c = AddressCache::new(config());
        c.record("a.example.com", [(ip("192.0.2.1"), 300)], AddressSource::Sensor, t(0));
        // A downstream cache answering with the remaining 40 s must not pull the expiry in.
        assert!(!c.record("a.example.com", [(ip("192.0.2.1"), 40)], AddressSource::Sensor, t(10)));
        let a = c.get("a.example.com").unwrap().addresses[&ip("192.0.2.1")];
        assert_eq!((a.last_seen, a.expires_at), (t(10), t(300)));
        c.record("a.example.com", [(ip("192.0.2.1"), 300)], AddressSource::Resolver, t(200));
        let a = c.get("a.example.com").unwrap().addresses[&ip("192.0.2.1")];
        assert_eq!((a.source, a.expires_at), (AddressSource::Resolver, t(500)));
    }

    #[test]
    fn a_changed_answer_keeps_the_old_address_through_its_grace() {
        let mut c = AddressCache::new(config());
        c.record("a.example.com", [(ip("192.0.2.1"), 60)], AddressSource::Resolver, t(0));
        assert!(c.record("a.example.com", [(ip("192.0.2.2"), 60)], AddressSource::Resolver, t(60)));
        assert_eq!(live(&c, "a.example.com", t(100)), ["192.0.2.1", "192.0.2.2"]);
        assert_eq!(live(&c, "a.example.com", t(120)), ["192.0.2.2"]);
    }

    #[test]
    fn a_failing_name_keeps_its_last_known_addresses() {
        let mut c = AddressCache::new(config());
        c.record("a.example.com", [(ip("192.0.2.1"), 60)], AddressSource::Resolver, t(0));
        c.record_failure("a.example.com");
        assert!(!c.prune(t(100_000), |_| true));
        assert_eq!(live(&c, "a.example.com", t(100_000)), ["192.0.2.1"]);
        assert_eq!(c.next_expiry(), None);
        // Success again: the old address ages out normally.
        c.record("a.example.com", [(ip("192.0.2.9"), 60)], AddressSource::Resolver, t(100_000));
        assert!(c.prune(t(100_001), |_| true));
        assert_eq!(live(&c, "a.example.com", t(100_001)), ["192.0.2.9"]);
    }

    #[test]
    fn the_per_name_bound_evicts_the_least_recently_seen() {
        let mut c = AddressCache::new(config());
        for (i, last) in [(1, 5), (2, 1), (3, 9)] {
            c.record("a.example.com", [(ip(&format!("192.0.2.{i}")), 300)], AddressSource::Sensor, t(last));
        }
        c.record("a.example.com", [(ip("192.0.2.4"), 300)], AddressSource::Sensor, t(10));
        assert_eq!(live(&c, "a.example.com", t(10)), ["192.0.2.1", "192.0.2.3", "192.0.2.4"]);
    }

    #[test]
    fn the_name_bound_evicts_the_least_recently_seen_name() {
        let mut c = AddressCache::new(config());
        for i in 0..4 {
            c.record(&format!("n{i}.example.com"), [(ip("192.0.2.1"), 300)], AddressSource::Sensor, t(10 - i));
        }
        c.record("new.example.com", [(ip("192.0.2.1"), 300)], AddressSource::Sensor, t(20));
        let names: Vec<&str> = c.names().map(|(n, _)| n).collect();
        assert_eq!(names, ["n0.example.com", "n1.example.com", "n2.example.com", "new.example.com"]);
    }

    #[test]
    fn restore_never_shortens() {
        let mut c = AddressCache::new(config());
        c.record("a.example.com", [(ip("192.0.2.1"), 300)], AddressSource::Resolver, t(0));
        c.restore(
            "a.example.com",
            ip("192.0.2.1"),
            Address { source: AddressSource::Sensor, last_seen: t(-100), expires_at: t(10) },
        );
        let a = c.get("a.example.com").unwrap().addresses[&ip("192.0.2.1")];
        assert_eq!((a.last_seen, a.expires_at), (t(0), t(300)));
    }
}
