//! `portcullis matrix PATH...`: which workload may reach which workload and outside destination,
//! on which ports.

use super::{EXIT_OK, Io, LoadArgs, load_config, load_project};
use crate::diff;
use crate::project::Project;

#[derive(Debug, clap::Args)]
pub struct MatrixArgs {
    /// Manifests (files or directories)
    #[arg(required = true)]
    pub paths: Vec<String>,
    /// Output format
    #[arg(long, short = 'f', default_value = "table", value_parser = ["table", "json", "csv"])]
    pub format: String,
    #[command(flatten)]
    pub load: LoadArgs,
}

pub fn run(args: &MatrixArgs, io: &mut Io<'_>) -> anyhow::Result<u8> {
    let config = load_config(&args.load)?;
    let project = Project::new(&args.load.namespace);
    let project = load_project(project, &args.paths, &[], &args.load, &config, io.stdin, io.stdin_tty)?;
    if project.inventory.workloads.is_empty() {
        anyhow::bail!("{}: no workloads found", args.paths.join(" "));
    }
    let rows = diff::matrix(&project);
    match args.format.as_str() {
        "json" => writeln!(
            io.stdout,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"version": diff::SCHEMA_VERSION, "rows": rows}))?
        )?,
        "csv" => write!(io.stdout, "{}", diff::render_matrix_csv(&rows))?,
        _ => write!(io.stdout, "{}", diff::render_matrix_table(&rows))?,
    }
    Ok(EXIT_OK)
}
