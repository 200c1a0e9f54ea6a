//! Times each phase of a lint run over a directory (read, parse, model, rules, render), to find
//! where a run spends its time. `cargo run --release -p portcullis-linter --example phase-timing -- DIR`

use std::io::Write;
use std::time::Instant;

use portcullis_linter::config::Config;
use portcullis_linter::load::fs::{Input, read_inputs};
use portcullis_linter::load::{Limits, SourceFile, Sources, parse_source};
use portcullis_linter::model::Inventory;
use portcullis_linter::report::{OutputFormat, Report, Summary, render};
use portcullis_linter::rules::{self, Context};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "target/bench-corpus".to_owned());
    let mut out = std::io::stderr().lock();
    let t = Instant::now();
    let files = read_inputs(&[Input::parse(&dir)], Limits::default(), &mut std::io::empty())?;
    writeln!(out, "read    {:>8.1} ms", t.elapsed().as_secs_f64() * 1e3)?;
    let t = Instant::now();
    let mut sources = Sources::default();
    let mut docs = Vec::new();
    for f in files {
        let text = f.content.map_err(|(_, m)| m)?;
        let id = sources.add(SourceFile { name: f.name, text, reported: true });
        let file = sources.get(id).ok_or("source")?;
        docs.extend(parse_source(id, &file.text).0);
    }
    writeln!(out, "parse   {:>8.1} ms ({} documents)", t.elapsed().as_secs_f64() * 1e3, docs.len())?;
    let t = Instant::now();
    let inventory = Inventory::from_documents(docs, "default");
    writeln!(out, "model   {:>8.1} ms ({} objects)", t.elapsed().as_secs_f64() * 1e3, inventory.objects.len())?;
    let config = Config::default();
    let t = Instant::now();
    let cx = Context::new(&inventory, &config, &[]);
    let findings = rules::run(&cx);
    writeln!(out, "rules   {:>8.1} ms ({} findings)", t.elapsed().as_secs_f64() * 1e3, findings.len())?;
    let t = Instant::now();
    let diagnostics: Vec<_> = findings.iter().map(|f| f.resolve(&sources)).collect();
    let summary = Summary::new(sources.len(), inventory.objects.len(), &diagnostics);
    let text =
        render(OutputFormat::Json, &Report { diagnostics: &diagnostics, summary, sources: &sources, color: false });
    writeln!(out, "report  {:>8.1} ms ({} bytes)", t.elapsed().as_secs_f64() * 1e3, text.len())?;
    Ok(())
}
