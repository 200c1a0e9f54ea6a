//! When to resolve each exact name again: at the expiry of its last answer (TTL after the cache's
//! floor and cap), or after a jittered exponential backoff when the lookup failed.
//!
//! Pure: time and randomness are parameters.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;

use super::cache::add;

/// Backoff bounds for failed lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_secs(2), max: Duration::from_secs(300) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    due: Timestamp,
    failures: u32,
}

/// The next lookup time of every name.
#[derive(Debug, Clone, Default)]
pub struct Schedule {
    backoff: Backoff,
    names: BTreeMap<String, Entry>,
    /// (due, name), for finding the next due names without a scan.
    queue: BTreeSet<(Timestamp, String)>,
}

impl Schedule {
    pub fn new(backoff: Backoff) -> Schedule {
        Schedule { backoff, names: BTreeMap::new(), queue: BTreeSet::new() }
    }

    /// Makes the set of scheduled names exactly `names`: new names are due at `now`, names no
    /// longer wanted are forgotten. Returns whether a new name was added.
    pub fn sync<'a>(&mut self, names: impl IntoIterator<Item = &'a str>, now: Timestamp) -> bool {
        let wanted: BTreeSet<&str> = names.into_iter().collect();
        self.retain(|n| wanted.contains(n));
        let mut added = false;
        for name in wanted {
            if !self.names.contains_key(name) {
                self.set(name, Entry { due: now, failures: 0 });
                added = true;
            }
        }
        added
    }

    /// Forgets the names `keep` rejects.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<(String, Entry)> =
            self.names.iter().filter(|(n, _)| !keep(n)).map(|(n, e)| (n.clone(), *e)).collect();
        for (name, entry) in gone {
            self.names.remove(&name);
            self.queue.remove(&(entry.due, name));
        }
    }

    /// Schedules `name` at `now` unless it is already scheduled (cheap: no scan of the others).
    pub fn ensure(&mut self, name: &str, now: Timestamp) -> bool {
        if self.names.contains_key(name) {
            return false;
        }
        self.set(name, Entry { due: now, failures: 0 });
        true
    }

    fn set(&mut self, name: &str, entry: Entry) {
        if let Some(old) = self.names.insert(name.to_owned(), entry) {
            self.queue.remove(&(old.due, name.to_owned()));
        }
        self.queue.insert((entry.due, name.to_owned()));
    }

    /// Names due at `now`, earliest first.
    pub fn due(&self, now: Timestamp) -> Vec<String> {
        self.queue.iter().take_while(|(due, _)| *due <= now).map(|(_, n)| n.clone()).collect()
    }

    /// The earliest due time, if any name is scheduled.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.queue.first().map(|(due, _)| *due)
    }

    /// A lookup succeeded; the name is due again after `ttl` (already floored and capped).
    pub fn succeeded(&mut self, name: &str, ttl: Duration, now: Timestamp) {
        if self.names.contains_key(name) {
            self.set(name, Entry { due: add(now, ttl), failures: 0 });
        }
    }

    /// A lookup failed; the name is due again after `initial × 2^failures` (capped), scaled by
    /// `jitter` in [0.5, 1.0] so that many names failing together do not retry together.
    pub fn failed(&mut self, name: &str, now: Timestamp, jitter: f64) {
        let Some(entry) = self.names.get(name).copied() else { return };
        let failures = entry.failures.saturating_add(1);
        let exp = self.backoff.initial.saturating_mul(1u32 << (failures - 1).min(20));
        let delay = exp.min(self.backoff.max).mul_f64(jitter.clamp(0.5, 1.0)).max(Duration::from_secs(1));
        self.set(name, Entry { due: add(now, delay), failures });
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// A jitter source: xorshift seeded once from the process's random hasher keys.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Default for Jitter {
    fn default() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        Jitter(h.finish() | 1)
    }
}

impl Jitter {
    /// A factor in [0.5, 1.0).
    pub fn factor(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        0.5 + (self.0 >> 11) as f64 / (1u64 << 53) as f64 / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn names_are_due_at_once_then_at_their_ttl() {
        let mut s = Schedule::new(Backoff::default());
        assert!(s.sync(["a.example.com", "b.example.com"], t(0)));
        assert_eq!(s.due(t(0)), ["a.example.com", "b.example.com"]);
        s.succeeded("a.example.com", Duration::from_secs(60), t(0));
        s.succeeded("b.example.com", Duration::from_secs(30), t(0));
        assert!(s.due(t(29)).is_empty());
        assert_eq!(s.next_due(), Some(t(30)));
        assert_eq!(s.due(t(60)), ["b.example.com", "a.example.com"]);
        assert!(!s.sync(["a.example.com"], t(61)));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn failures_back_off_exponentially_with_jitter_and_a_cap() {
        let mut s = Schedule::new(Backoff { initial: Duration::from_secs(2), max: Duration::from_secs(20) });
        s.sync(["a.example.com"], t(0));
        let mut delays = Vec::new();
        let mut now = t(0);
        for _ in 0..6 {
            s.failed("a.example.com", now, 1.0);
            let due = s.next_due().unwrap();
            delays.push(due.as_second() - now.as_second());
            now = due;
        }
        assert_eq!(delays, [2, 4, 8, 16, 20, 20]);
        s.failed("a.example.com", now, 0.5);
        assert_eq!(s.next_due().unwrap().as_second() - now.as_second(), 10);
        s.succeeded("a.example.com", Duration::from_secs(300), now);
        s.failed("a.example.com", now, 1.0);
        assert_eq!(s.next_due().unwrap().as_second() - now.as_second(), 2, "success resets the backoff");
    }

    #[test]
    fn jitter_stays_in_range() {
        let mut j = Jitter::default();
        for _ in 0..10_000 {
            let x = j.factor();
            assert!((0.5..1.0).contains(&x), "{x}");
        }
    }
}
