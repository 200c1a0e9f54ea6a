//! `portcullis diff BASE HEAD`: the connections a change opens and closes.

use super::{EXIT_FINDINGS, EXIT_OK, Io, LoadArgs, load_config, load_project};
use crate::diff::{self, Diff};
use crate::project::Project;

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The manifests before the change (a file or directory)
    pub base: String,
    /// The manifests after the change (a file or directory)
    pub head: String,
    /// Output format
    #[arg(long, short = 'f', default_value = "human", value_parser = ["human", "json", "markdown"])]
    pub format: String,
    /// Exit 1 when connections are opened (widen), closed (narrow), either (any), or never
    #[arg(long, default_value = "never", value_parser = ["widen", "narrow", "any", "never"])]
    pub fail_on: String,
    #[command(flatten)]
    pub load: LoadArgs,
}

fn side(path: &str, args: &DiffArgs, io: &mut Io<'_>, config: &crate::config::Config) -> anyhow::Result<Project> {
    if path == "-" {
        anyhow::bail!("diff reads both sides from paths; stdin is not supported");
    }
    let project = Project::new(&args.load.namespace);
    let project = load_project(project, &[path.to_owned()], &[], &args.load, config, io.stdin, io.stdin_tty)?;
    if project.inventory.objects.is_empty() && project.load_problems.is_empty() {
        anyhow::bail!("{path}: no Kubernetes objects found");
    }
    Ok(project)
}

pub fn run(args: &DiffArgs, io: &mut Io<'_>) -> anyhow::Result<u8> {
    let config = load_config(&args.load)?;
    let base = side(&args.base, args, io, &config)?;
    let head = side(&args.head, args, io, &config)?;
    let d: Diff = diff::diff(&base, &head);
    match args.format.as_str() {
        "json" => writeln!(io.stdout, "{}", serde_json::to_string_pretty(&d)?)?,
        "markdown" => write!(io.stdout, "{}", diff::render_markdown(&d))?,
        _ => write!(io.stdout, "{}", diff::render_human(&d))?,
    }
    let (opened, closed) = (d.opened().next().is_some(), d.closed().next().is_some());
    let fail = match args.fail_on.as_str() {
        "widen" => opened,
        "narrow" => closed,
        "any" => opened || closed,
        _ => false,
    };
    Ok(if fail { EXIT_FINDINGS } else { EXIT_OK })
}
