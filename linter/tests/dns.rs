//! Resolution against a real DNS server (dnsmasq on 127.0.0.1): A and AAAA with TTLs, CNAME
//! chains, NXDOMAIN, changed answers, re-resolution at expiry, and a dead server keeping the
//! last-known addresses. Time in the intent cache is a parameter: the tests move it forward
//! instead of sleeping; only the server's reloads are waited for.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;
#[path = "common/dnsmasq.rs"]
mod dnsmasq;

use std::process::Command;
use std::time::Duration;

use dnsmasq::Dnsmasq;
use jiff::Timestamp;
use portcullis_linter::egress::resolve::{DnsLookup, LookupError, apply_results, lookup_many};
use portcullis_linter::egress::schedule::{Backoff, Jitter, Schedule};
use portcullis_linter::egress::{
    CacheConfig, EgressIntentSpec, EgressTarget, IntentKey, IntentMeta, IntentSet, RenderConfig,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn lookup(server: &Dnsmasq) -> DnsLookup {
    DnsLookup::new(&[server.addr], Duration::from_millis(300)).unwrap()
}

fn ips(r: &portcullis_linter::egress::resolve::Resolution) -> Vec<(String, u32)> {
    r.answers.iter().map(|a| (a.ip.to_string(), a.ttl)).collect()
}

const HOSTS: &str = "192.0.2.10 host.example.test\n2001:db8::10 host.example.test\n192.0.2.20 api.example.test\n";

#[test]
fn a_and_aaaa_with_ttls_and_the_cname_chain() {
    let server = Dnsmasq::start(
        "chain",
        HOSTS,
        42,
        &["www.example.test,edge.example.test", "edge.example.test,host.example.test"],
    );
    let dns = lookup(&server);
    let rt = runtime();
    let r = rt.block_on(dns.lookup("www.example.test")).unwrap();
    assert_eq!(ips(&r), [("192.0.2.10".to_owned(), 42), ("2001:db8::10".to_owned(), 42)]);
    assert_eq!(r.cnames, ["edge.example.test", "host.example.test"]);
    let r = rt.block_on(dns.lookup("API.example.test.")).unwrap();
    assert_eq!(ips(&r), [("192.0.2.20".to_owned(), 42)]);
    assert!(r.cnames.is_empty());
    assert_eq!(rt.block_on(dns.lookup("nope.example.test")), Err(LookupError::NoAddress("nope.example.test".into())));
}

fn intent_set() -> (IntentSet, IntentKey) {
    let mut set = IntentSet::new(CacheConfig {
        ttl_floor: Duration::from_secs(5),
        grace: Duration::from_secs(60),
        ..CacheConfig::default()
    });
    let spec = EgressIntentSpec {
        pod_selector: Some(Default::default()),
        egress: vec![EgressTarget { fqdn: Some("api.example.test".into()), fqdn_pattern: None, ports: vec![] }],
    };
    set.upsert(IntentMeta::new("shop", "api"), &spec, None).unwrap();
    (set, IntentKey { namespace: "shop".into(), name: "api".into() })
}

fn rendered_cidrs(set: &IntentSet, key: &IntentKey, now: Timestamp) -> Vec<String> {
    let r = set.render(key, &RenderConfig::default(), now).unwrap();
    let rules = r.policy["spec"]["egress"].as_array().unwrap();
    rules[1..]
        .iter()
        .flat_map(|rule| rule["to"].as_array().unwrap().clone())
        .map(|p| p["ipBlock"]["cidr"].as_str().unwrap().to_owned())
        .collect()
}

/// Runs one refresh round at `now`: looks up the due names and applies the results.
fn refresh(
    set: &mut IntentSet,
    schedule: &mut Schedule,
    dns: &DnsLookup,
    now: Timestamp,
) -> (Vec<String>, Vec<IntentKey>) {
    schedule.sync(set.exact_names(), now);
    let due = schedule.due(now);
    let results = runtime().block_on(lookup_many(dns, due.clone(), 8));
    let changed = apply_results(set, schedule, &results, &mut Jitter::default(), now);
    (due, changed)
}

#[test]
fn names_are_re_resolved_at_expiry_and_follow_changed_answers() {
    let mut server = Dnsmasq::start("expiry", HOSTS, 30, &[]);
    let dns = lookup(&server);
    let (mut set, key) = intent_set();
    let mut schedule = Schedule::new(Backoff::default());
    let t0 = Timestamp::from_second(1_800_000_000).unwrap();
    let at = |s: i64| Timestamp::from_second(t0.as_second() + s).unwrap();

    let (due, changed) = refresh(&mut set, &mut schedule, &dns, t0);
    assert_eq!((due.as_slice(), changed.as_slice()), (&["api.example.test".to_owned()][..], &[key.clone()][..]));
    assert_eq!(rendered_cidrs(&set, &key, t0), ["192.0.2.20/32"]);
    assert_eq!(schedule.next_due(), Some(at(30)), "due again at the TTL");
    assert!(refresh(&mut set, &mut schedule, &dns, at(29)).0.is_empty(), "nothing due before expiry");

    // The answer changes (new address, shorter TTL); at expiry the name is asked again.
    server.set_hosts("192.0.2.21 api.example.test\n");
    server.restart(7);
    let (due, changed) = refresh(&mut set, &mut schedule, &dns, at(30));
    assert_eq!(due, ["api.example.test"]);
    assert_eq!(changed, std::slice::from_ref(&key));
    assert_eq!(schedule.next_due(), Some(at(37)));
    // The old address stays through expiry (30) + grace (60); the new one is there.
    assert_eq!(rendered_cidrs(&set, &key, at(89)), ["192.0.2.20/32", "192.0.2.21/32"]);
    assert_eq!(rendered_cidrs(&set, &key, at(90)), ["192.0.2.21/32"]);

    // The server dies: the name keeps its last-known addresses long after they expire, and is
    // retried with backoff.
    server.stop();
    let (due, changed) = refresh(&mut set, &mut schedule, &dns, at(37));
    assert_eq!(due, ["api.example.test"]);
    assert!(changed.is_empty());
    let retry = schedule.next_due().unwrap().as_second() - at(37).as_second();
    assert!((1..=2).contains(&retry), "first retry after 1-2 s, got {retry}");
    assert!(!set.prune(&key, at(100_000)));
    assert_eq!(rendered_cidrs(&set, &key, at(100_000)), ["192.0.2.20/32", "192.0.2.21/32"]);
}

#[test]
fn portcullis_resolve_asks_the_given_nameserver() {
    let server = Dnsmasq::start("cli", HOSTS, 60, &["www.example.test,host.example.test"]);
    let dir = std::env::temp_dir().join(format!("portcullis-resolve-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("intent.yaml"),
        "apiVersion: portcullis.dev/v1alpha1\nkind: EgressIntent\nmetadata: {name: web, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: web}}\n  egress:\n  - fqdn: www.example.test\n    ports: [{port: 443}]\n  - fqdn: gone.example.test\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["resolve", "intent.yaml", "--nameserver", &server.addr.to_string()])
        .current_dir(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "a name without address exits 1: {stderr}");
    assert!(stdout.contains("cidr: \"192.0.2.10/32\"") && stdout.contains("cidr: \"2001:db8::10/128\""), "{stdout}");
    assert!(stderr.contains("gone.example.test: no address"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
