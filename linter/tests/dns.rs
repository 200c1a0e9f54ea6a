//! Resolution by the CLI's stub resolver against a real DNS server (dnsmasq on 127.0.0.1): A
//! and AAAA with TTLs, CNAME chains, NXDOMAIN, TCP after truncation, a dead first server,
//! changed answers, re-resolution at expiry, and a dead server keeping the last-known
//! addresses. (The controller's hickory resolver answers the same cases in the webhook's
//! `tests/controller.rs`.) Time in the intent cache is a parameter: the tests move it forward
//! instead of sleeping; only the server's reloads are waited for.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;
#[path = "common/dnsmasq.rs"]
mod dnsmasq;

use std::process::Command;
use std::time::Duration;

use dnsmasq::Dnsmasq;
use jiff::Timestamp;
use portcullis_linter::cli::dns::{Stub, lookup_many};
use portcullis_linter::egress::resolve::{LookupError, apply_results};
use portcullis_linter::egress::schedule::{Backoff, Jitter, Schedule};
use portcullis_linter::egress::{
    CacheConfig, EgressIntentSpec, EgressTarget, IntentKey, IntentMeta, IntentSet, RenderConfig,
};

fn lookup(server: &Dnsmasq) -> Stub {
    Stub::new(&[server.addr], Duration::from_millis(300)).unwrap()
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
    let r = dns.lookup("www.example.test").unwrap();
    assert_eq!(ips(&r), [("192.0.2.10".to_owned(), 42), ("2001:db8::10".to_owned(), 42)]);
    assert_eq!(r.cnames, ["edge.example.test", "host.example.test"]);
    let r = dns.lookup("API.example.test.").unwrap();
    assert_eq!(ips(&r), [("192.0.2.20".to_owned(), 42)]);
    assert!(r.cnames.is_empty());
    assert_eq!(dns.lookup("nope.example.test"), Err(LookupError::NoAddress("nope.example.test".into())));
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
fn refresh(set: &mut IntentSet, schedule: &mut Schedule, dns: &Stub, now: Timestamp) -> (Vec<String>, Vec<IntentKey>) {
    schedule.sync(set.exact_names(), now);
    let due = schedule.due(now);
    let results = lookup_many(dns, due.clone(), 8);
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

#[test]
fn a_truncated_reply_is_asked_again_over_tcp() {
    // 60 addresses do not fit in 512 bytes: dnsmasq sets TC over UDP and answers over TCP.
    let hosts: String = (1..=60).map(|i| format!("192.0.2.{i} big.example.test\n")).collect();
    let server = Dnsmasq::start("tcp", &hosts, 60, &[]);
    let r = lookup(&server).lookup("big.example.test").unwrap();
    assert_eq!(r.answers.len(), 60);
}

#[test]
fn a_dead_server_passes_the_question_to_the_next() {
    let server = Dnsmasq::start("next", HOSTS, 60, &[]);
    // Nothing listens here: the first server refuses (ICMP port unreachable).
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    // Bound but silent: the second one never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let stub = Stub::new(&[dead, silent.local_addr().unwrap(), server.addr], Duration::from_millis(200)).unwrap();
    let r = stub.lookup("api.example.test").unwrap();
    assert_eq!(ips(&r), [("192.0.2.20".to_owned(), 60)]);

    let only_dead = Stub::new(&[dead, silent.local_addr().unwrap()], Duration::from_millis(100)).unwrap();
    match only_dead.lookup("api.example.test") {
        Err(LookupError::Failed(name, why)) => {
            assert_eq!(name, "api.example.test");
            assert!(why.contains(&format!("{}: no reply in 100 ms", silent.local_addr().unwrap())), "{why}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// A server answering every query first with a reply to another ID, then with one to another
/// name, then with one to another type (each saying 203.0.113.66), and only then correctly.
#[test]
fn replies_that_do_not_echo_the_query_are_not_believed() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut buffer = [0u8; 512];
        for _ in 0..2 {
            let (size, from) = socket.recv_from(&mut buffer).unwrap();
            let query = &buffer[..size];
            let qtype = u16::from_be_bytes([query[size - 4], query[size - 3]]);
            let reply = |id: [u8; 2], question: &[u8], qtype: u16, ip: &[u8]| {
                let mut out = Vec::new();
                out.extend_from_slice(&id);
                out.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
                out.extend_from_slice(question);
                out.extend_from_slice(&qtype.to_be_bytes());
                out.extend_from_slice(&[0, 1, 0xc0, 12]);
                out.extend_from_slice(&qtype.to_be_bytes());
                out.extend_from_slice(&[0, 1, 0, 0, 0, 60, 0, ip.len() as u8]);
                out.extend_from_slice(ip);
                out
            };
            let (id, name) = ([query[0], query[1]], &query[12..size - 4]);
            let forged = |t: u16| -> &[u8] {
                if t == 1 { &[203, 0, 113, 66] } else { &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x66] }
            };
            let real: &[u8] =
                if qtype == 1 { &[192, 0, 2, 7] } else { &[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7] };
            socket.send_to(&reply([id[0] ^ 1, id[1]], name, qtype, forged(qtype)), from).unwrap();
            socket.send_to(&reply(id, b"\x05other\x07example\x04test\x00", qtype, forged(qtype)), from).unwrap();
            let other_type = if qtype == 1 { 28 } else { 1 };
            socket.send_to(&reply(id, name, other_type, forged(other_type)), from).unwrap();
            socket.send_to(&reply(id, name, qtype, real), from).unwrap();
        }
    });
    let stub = Stub::new(&[addr], Duration::from_secs(2)).unwrap();
    let r = stub.lookup("api.example.test").unwrap();
    server.join().unwrap();
    assert_eq!(ips(&r), [("192.0.2.7".to_owned(), 60), ("2001:db8::7".to_owned(), 60)]);
}
