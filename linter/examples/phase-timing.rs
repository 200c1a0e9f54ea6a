//! Times each phase of a lint run over a directory the way `portcullis lint` runs it (read;
//! load = parse and model, on every core this process may use; rules; locate and render), with
//! the resident memory after each, to find where a run spends its time.
//! `cargo run --release -p portcullis-linter --example phase-timing -- DIR`

use std::io::Write;
use std::time::Instant;

use portcullis_linter::config::Config;
use portcullis_linter::load::Limits;
use portcullis_linter::load::fs::{Input, read_inputs};
use portcullis_linter::project::{Project, TextFile};
use portcullis_linter::report::{OutputFormat, Report, render};

/// The same allocator as the `portcullis` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Resident memory of this process now, in MB.
fn rss_mb() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096 / 1_000_000
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "target/bench/corpus-1000".to_owned());
    let mut out = std::io::stderr().lock();
    let mut phase = |name: &str, t: Instant, what: String| {
        writeln!(out, "{name:<7} {:>8.1} ms {:>4} MB  {what}", t.elapsed().as_secs_f64() * 1e3, rss_mb())
    };
    let t = Instant::now();
    let files = read_inputs(&[Input::parse(&dir)], Limits::default(), &mut std::io::empty())?;
    phase("read", t, format!("{} files", files.len()))?;
    let t = Instant::now();
    let mut project = Project::new("default");
    // As `portcullis lint` does: policies keep no whole value.
    project.inventory.keep_values(false);
    project.set_threads(portcullis_linter::parallel::threads(8));
    let mut texts = Vec::new();
    for f in files {
        texts.push(TextFile { name: f.name, text: f.content.map_err(|(_, m)| m)?, superseding: false });
    }
    project.add_texts(texts, true);
    phase("load", t, format!("{} objects", project.inventory.objects.len()))?;
    let config = Config::default();
    let t = Instant::now();
    let findings = project.lint(&config);
    phase("rules", t, format!("{} findings", findings.len()))?;
    let t = Instant::now();
    let diagnostics = project.diagnostics(&findings);
    let summary = project.summary(&diagnostics);
    let report = Report { diagnostics: &diagnostics, summary, sources: &project.sources, color: false, width: None };
    let text = render(OutputFormat::Json, &report);
    phase("report", t, format!("{} bytes", text.len()))?;
    // Like the binary, leave the run's memory to the operating system.
    std::mem::forget((project, findings, diagnostics));
    Ok(())
}
