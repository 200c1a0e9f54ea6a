//! Times the pure decision (parse + decide + encode) without HTTP or TLS, one core.
//! `cargo run --release -p portcullis-webhook --example decide-timing -- STATE_DIR REVIEW.json...`
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
    for file in &args[1..] {
        let body = std::fs::read(file).unwrap();
        let endpoint = if file.contains("mutate") { Endpoint::Mutate } else { Endpoint::Validate };
        let n = 5_000;
        let t = Instant::now();
        for _ in 0..n {
            let req = admission::parse(&body).unwrap();
            let snapshot = state.snapshot(&req.namespace(), &config.dns.namespace);
            let outcome = admission::decide(endpoint, &req, &snapshot, &config);
            std::hint::black_box(admission::response_body(outcome.response).unwrap());
        }
        println!("{file}: {:.1} µs per review", t.elapsed().as_secs_f64() * 1e6 / f64::from(n));
    }
}
