//! Times the pure decision (parse + decide + encode) without HTTP or TLS, one core.
//! `cargo run --release -p portcullis-webhook --example decide-timing -- STATE_DIR REVIEW.json...`
//! (`PORTCULLIS_TIMING_N`: reviews per file, 5,000 unless set; a file named `*mutate*` goes to
//! `/mutate`; `PORTCULLIS_TIMING_PARSE_ONLY` set: only parse; `PORTCULLIS_TIMING_VALUE_ONLY`
//! set: only `serde_json::from_slice::<Value>` of the body, what the bench's no-op server does;
//! `PORTCULLIS_TIMING_CYCLE` set: take the files in turn, one review each, N rounds, as the load
//! bench spreads its reviews over namespaces, and print the mean over all of them)
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Instant;

use portcullis_linter::config::Config;
use portcullis_webhook::admission::{self, Endpoint};
use portcullis_webhook::state::{ClusterState, StaticState};

/// As in the binary: mimalloc: reviews build and drop many small objects next to a large long-lived cache, a
/// pattern where glibc malloc spent a third of each review (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (state, _) = StaticState::load(std::path::Path::new(&args[0])).unwrap();
    let config = Config::default();
    let n: u32 = std::env::var("PORTCULLIS_TIMING_N").ok().and_then(|n| n.parse().ok()).unwrap_or(5_000);
    // One review as the server makes it: parse, decide, encode.
    let review = |endpoint: Endpoint, body: &[u8]| {
        let req = admission::parse(body).unwrap();
        let snapshot = state.snapshot(&req.namespace(), &config.dns.namespace);
        let outcome = admission::decide(endpoint, &req, &snapshot, &config);
        std::hint::black_box(admission::response_body(outcome.response).unwrap());
    };
    if std::env::var_os("PORTCULLIS_TIMING_CYCLE").is_some() {
        let bodies: Vec<(Endpoint, Vec<u8>)> = args[1..]
            .iter()
            .map(|file| {
                let endpoint = if file.contains("mutate") { Endpoint::Mutate } else { Endpoint::Validate };
                (endpoint, std::fs::read(file).unwrap())
            })
            .collect();
        let t = Instant::now();
        for _ in 0..n {
            for (endpoint, body) in &bodies {
                review(*endpoint, body);
            }
        }
        let reviews = f64::from(n) * bodies.len() as f64;
        println!("{} files in turn: {:.1} µs per review", bodies.len(), t.elapsed().as_secs_f64() * 1e6 / reviews);
        return;
    }
    for file in &args[1..] {
        let body = std::fs::read(file).unwrap();
        let endpoint = if file.contains("mutate") { Endpoint::Mutate } else { Endpoint::Validate };
        let req = admission::parse(&body).unwrap();
        let outcome =
            admission::decide(endpoint, &req, &state.snapshot(&req.namespace(), &config.dns.namespace), &config);
        let codes: Vec<&str> = outcome.problems.iter().map(|p| p.code).collect();
        println!("{file}: {} {codes:?}", outcome.decision.as_str());
        let parse_only = std::env::var_os("PORTCULLIS_TIMING_PARSE_ONLY").is_some();
        let t = Instant::now();
        let value_only = std::env::var_os("PORTCULLIS_TIMING_VALUE_ONLY").is_some();
        for _ in 0..n {
            if value_only {
                std::hint::black_box(serde_json::from_slice::<serde_json::Value>(&body).unwrap());
                continue;
            }
            if parse_only {
                std::hint::black_box(admission::parse(&body).unwrap());
                continue;
            }
            review(endpoint, &body);
        }
        println!("{file}: {:.1} µs per review", t.elapsed().as_secs_f64() * 1e6 / f64::from(n));
    }
}
