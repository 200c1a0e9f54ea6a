//! Scaling harness (issue 16): `lint`, `fix`, `resolve` and `map` on inputs of size n, 10n and
//! 100n, including the shapes that were once quadratic (thousands of tiny documents in human
//! format; a `kind: List` with a finding per item, as YAML and as one-line JSON). Fails (exit 1)
//! when a command's time, or its output, grows faster than n log n between two sizes.
//!
//!     cargo bench -p portcullis-linter --bench scaling            (results: docs/benchmarks.md)
//!
//! Times are the best of 3 runs of the release binary, less its start-up (the best of 5 runs of
//! `portcullis --version`). A step whose smaller size takes under 5 ms of work is too fast to
//! judge and is shown, not checked; the 10n → 100n step is always large enough. The allowed
//! ratio for n → 10n is 10 · log(10n)/log(n), times 2 for noise: a quadratic step is 100.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)] // a benchmark binary

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
const NOISE: f64 = 2.0;
const JUDGE_FROM: Duration = Duration::from_millis(5);

/// One input shape: how to write it at size `n`, and the command to run on it.
struct Case {
    name: &'static str,
    sizes: [usize; 3],
    unit: &'static str,
    write: fn(&Path, usize),
    args: fn(&Path) -> Vec<String>,
}

fn run(args: &[String]) -> (Duration, usize) {
    let started = Instant::now();
    let out = Command::new(BIN).args(args).stdin(Stdio::null()).stderr(Stdio::null()).output().unwrap();
    let elapsed = started.elapsed();
    let code = out.status.code().unwrap_or(-1);
    assert!(code <= 1, "portcullis {} exited {code}", args.join(" "));
    (elapsed, out.stdout.len())
}

fn best(args: &[String], runs: usize) -> (Duration, usize) {
    (0..runs).map(|_| run(args)).min_by_key(|(t, _)| *t).unwrap()
}

fn s(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| (*p).to_owned()).collect()
}

fn path(dir: &Path, file: &str) -> String {
    dir.join(file).display().to_string()
}

/// A namespace as teams write them: a Deployment, a default-deny egress policy that forgets DNS,
/// a Service. Every namespace has findings and something to fix.
fn namespace(out: &mut String, i: usize) {
    let _ = write!(
        out,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app, namespace: ns-{i}}}\nspec:\n  selector: {{matchLabels: {{app: app}}}}\n  template:\n    metadata: {{labels: {{app: app}}}}\n    spec: {{containers: [{{name: app, image: app}}]}}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: deny, namespace: ns-{i}}}\nspec: {{podSelector: {{}}, policyTypes: [Egress]}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: app, namespace: ns-{i}}}\nspec: {{selector: {{app: app}}, ports: [{{port: 80}}]}}\n---\n"
    );
}

fn write_namespaces(dir: &Path, n: usize) {
    let mut out = String::new();
    for i in 0..n {
        namespace(&mut out, i);
    }
    std::fs::write(dir.join("input.yaml"), out).unwrap();
}

fn write_tiny_docs(dir: &Path, n: usize) {
    let mut out = String::new();
    for i in 0..n {
        let _ = writeln!(out, "---\n{i}");
    }
    std::fs::write(dir.join("input.yaml"), out).unwrap();
}

/// A `kind: List` of policies, each allowing all egress (a finding per item).
fn list_items(n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| {
            serde_json::json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": format!("p{i}"), "namespace": "shop"},
                "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]},
            })
        })
        .collect()
}

fn write_list_yaml(dir: &Path, n: usize) {
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": list_items(n)});
    // JSON is YAML; one item per line keeps it a normal multi-line file.
    let mut out = String::from("apiVersion: v1\nkind: List\nitems:\n");
    for item in list["items"].as_array().unwrap() {
        let _ = writeln!(out, "- {item}");
    }
    std::fs::write(dir.join("input.yaml"), out).unwrap();
}

fn write_list_json_line(dir: &Path, n: usize) {
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": list_items(n)});
    std::fs::write(dir.join("input.json"), list.to_string()).unwrap();
}

fn write_intents(dir: &Path, n: usize) {
    let (mut intents, mut hosts) = (String::new(), String::new());
    for i in 0..n {
        let _ = write!(
            intents,
            "apiVersion: portcullis.dev/v1alpha1\nkind: EgressIntent\nmetadata: {{name: saas-{i}, namespace: ns-{i}}}\nspec:\n  podSelector: {{matchLabels: {{app: app}}}}\n  egress:\n    - fqdn: api-{i}.example.com\n      ports: [{{port: 443}}]\n    - fqdn: hooks-{i}.example.com\n---\n"
        );
        let (a, b) = (i / 250, i % 250);
        let _ = writeln!(hosts, "203.0.{}.{} api-{i}.example.com", 113 - a % 2, b + 1);
        let _ = writeln!(hosts, "198.51.100.{} hooks-{i}.example.com", b + 1);
    }
    std::fs::write(dir.join("input.yaml"), intents).unwrap();
    std::fs::write(dir.join("hosts"), hosts).unwrap();
}

fn write_observations(dir: &Path, n: usize) {
    let mut out = String::new();
    for i in 0..n {
        let (pod, name) = (i % 500, i % 2000);
        let _ = writeln!(
            out,
            r#"{{"ts":"2026-11-21T10:00:00Z","node":"n1","client":{{"ip":"10.0.{}.{}","pod":{{"namespace":"ns-{}","name":"app-{pod}","workload":"Deployment/app-{pod}","labels":{{"app":"app-{pod}"}}}}}},"server":"10.96.0.10","qname":"svc-{name}.example.com","answers":[{{"ip":"203.0.113.{}","ttl":60}}],"cnames":[]}}"#,
            pod / 250,
            pod % 250 + 1,
            pod % 50,
            name % 250 + 1
        );
    }
    std::fs::write(dir.join("observations.jsonl"), out).unwrap();
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "lint, human: tiny non-object documents",
            sizes: [300, 3_000, 30_000],
            unit: "documents",
            write: write_tiny_docs,
            args: |d| s(&["lint", &path(d, "input.yaml"), "--fail-on", "never", "--allow-empty"]),
        },
        Case {
            name: "lint, human: kind: List, a finding per item",
            sizes: [20, 200, 2_000],
            unit: "items",
            write: write_list_yaml,
            args: |d| s(&["lint", &path(d, "input.yaml"), "--fail-on", "never"]),
        },
        Case {
            name: "lint, human: kind: List as one-line JSON",
            sizes: [20, 200, 2_000],
            unit: "items",
            write: write_list_json_line,
            args: |d| s(&["lint", &path(d, "input.json"), "--fail-on", "never"]),
        },
        Case {
            name: "lint, json: namespaces (3 objects each)",
            sizes: [30, 300, 3_000],
            unit: "namespaces",
            write: write_namespaces,
            args: |d| s(&["lint", &path(d, "input.yaml"), "--format", "json", "--fail-on", "never"]),
        },
        Case {
            name: "fix: namespaces (3 objects each)",
            sizes: [30, 300, 3_000],
            unit: "namespaces",
            write: write_namespaces,
            args: |d| s(&["fix", &path(d, "input.yaml")]),
        },
        Case {
            name: "resolve: intents (2 names each, --hosts)",
            sizes: [10, 100, 1_000],
            unit: "intents",
            write: write_intents,
            args: |d| s(&["resolve", &path(d, "input.yaml"), "--hosts", &path(d, "hosts")]),
        },
        Case {
            name: "map: observation lines",
            sizes: [1_000, 10_000, 100_000],
            unit: "lines",
            write: write_observations,
            args: |d| s(&["map", "--from", &path(d, "observations.jsonl"), "--format", "json"]),
        },
    ]
}

/// Largest ratio allowed from `n` to `10 n`.
fn allowed(n: usize) -> f64 {
    let n = n.max(2) as f64;
    10.0 * (10.0 * n).ln() / n.ln() * NOISE
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("scaling");
    let startup = best(&s(&["--version"]), 5).0;
    println!("## scaling: best of 3, less start-up ({:.1} ms)", startup.as_secs_f64() * 1e3);
    println!("| case | sizes | work (ms) | output (KB) | growth n→10n, 10n→100n (allowed) | verdict |");
    println!("|---|---|---|---|---|---|");
    let mut failures = Vec::new();
    for case in cases() {
        let mut results = Vec::new();
        for n in case.sizes {
            let dir = root.join(format!("{}-{n}", case.name.split(':').next().unwrap().replace([' ', ','], "-")));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            (case.write)(&dir, n);
            let (time, output) = best(&(case.args)(&dir), 3);
            results.push((n, time.saturating_sub(startup), output));
        }
        let mut growth = Vec::new();
        let mut verdict = "ok";
        for pair in results.windows(2) {
            let ((n, t1, o1), (_, t2, o2)) = (pair[0], pair[1]);
            let limit = allowed(n);
            let time_ratio = t2.as_secs_f64() / t1.as_secs_f64().max(1e-6);
            let output_ratio = o2 as f64 / (o1.max(1)) as f64;
            let judged = t1 >= JUDGE_FROM;
            growth.push(format!(
                "time ×{time_ratio:.1}{}, output ×{output_ratio:.1} ({limit:.0})",
                if judged { "" } else { " (too fast to judge)" }
            ));
            if (judged && time_ratio > limit) || output_ratio > limit {
                verdict = "**FAIL**";
                failures.push(format!(
                    "{}: {n} → {} {}: time ×{time_ratio:.1}, output ×{output_ratio:.1}, allowed ×{limit:.0}",
                    case.name,
                    10 * n,
                    case.unit
                ));
            }
        }
        let sizes: Vec<String> = results.iter().map(|(n, _, _)| n.to_string()).collect();
        let times: Vec<String> = results.iter().map(|(_, t, _)| format!("{:.0}", t.as_secs_f64() * 1e3)).collect();
        let outputs: Vec<String> = results.iter().map(|(_, _, o)| format!("{}", o / 1024)).collect();
        println!(
            "| {} | {} {} | {} | {} | {} | {verdict} |",
            case.name,
            sizes.join(" / "),
            case.unit,
            times.join(" / "),
            outputs.join(" / "),
            growth.join("; ")
        );
    }
    if !failures.is_empty() {
        println!("\ngrew faster than n log n:");
        for failure in &failures {
            println!("- {failure}");
        }
        std::process::exit(1);
    }
}
