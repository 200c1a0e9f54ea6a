//! `portcullis lint`.

use super::{EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, Io, LoadArgs, load_config, load_project};
use crate::finding::Severity;
use crate::project::Project;
use crate::report::{OutputFormat, Report, render};

#[derive(Debug, clap::Args)]
pub struct LintArgs {
    /// Files or directories to lint (recursive *.yaml, *.yml, *.json); - or nothing reads stdin
    pub paths: Vec<String>,
    /// More manifests used as cluster context; findings in them are not reported
    #[arg(long, value_name = "DIR")]
    pub context: Vec<String>,
    /// Output format
    #[arg(long, short = 'f', default_value = "human", value_parser = ["human", "json", "sarif", "github", "junit"])]
    pub format: String,
    /// Exit 1 when a finding at or above this severity is reported
    #[arg(long, default_value = "warning", value_parser = ["error", "warning", "info", "never"])]
    pub fail_on: String,
    /// Succeed on input without any manifest (by default that is an error: a broken render
    /// step must not turn CI green)
    #[arg(long)]
    pub allow_empty: bool,
    /// Observed traffic replayed against the input: what it would deny is reported as PC024
    #[command(flatten)]
    pub traffic: super::replay::TrafficArgs,
    #[command(flatten)]
    pub load: LoadArgs,
}

pub fn run(args: &LintArgs, io: &mut Io<'_>) -> anyhow::Result<u8> {
    let config = load_config(&args.load)?;
    // Linting writes nothing back, so objects need not keep their values.
    let mut project = Project::new(&args.load.namespace);
    project.inventory.keep_values(false);
    let project = load_project(project, &args.paths, &args.context, &args.load, &config, io.stdin, io.stdin_tty)?;
    if !args.allow_empty
        && project.reported_objects() == 0
        && project.load_problems.is_empty()
        && project.inventory.problems.is_empty()
    {
        let read = project.reported_files();
        let skipped: String = project.summary(&[]).left_out().iter().map(|part| format!(", {part}")).collect();
        writeln!(
            io.stderr,
            "portcullis: error: no Kubernetes objects in the input ({read} {} read{skipped}); nothing was linted (pass --allow-empty if that is expected)",
            if read == 1 { "file" } else { "files" }
        )?;
        return Ok(EXIT_ERROR);
    }
    let traffic = super::replay::read_traffic(&args.traffic, io)?;
    let replayed = traffic.as_ref().map(|log| crate::replay::replay(&project, log));
    let findings = project.lint_with_traffic(&config, replayed.as_ref());
    let diagnostics = project.diagnostics(&findings);
    let summary = project.summary(&diagnostics);
    let format = OutputFormat::parse(&args.format).unwrap_or(OutputFormat::Human);
    let report = Report {
        diagnostics: &diagnostics,
        summary,
        sources: &project.sources,
        color: io.tty && format == OutputFormat::Human,
        width: io.width.filter(|_| format == OutputFormat::Human),
    };
    io.stdout.write_all(render(format, &report).as_bytes())?;
    let threshold = match args.fail_on.as_str() {
        "error" => Some(Severity::Error),
        "warning" => Some(Severity::Warning),
        "info" => Some(Severity::Info),
        _ => None,
    };
    let failed = threshold.is_some_and(|t| diagnostics.iter().any(|d| d.severity >= t));
    if io.exiting {
        std::mem::forget((project, findings, diagnostics));
    }
    Ok(if failed { EXIT_FINDINGS } else { EXIT_OK })
}
