//! The `portcullis` command line. `main.rs` calls [`run`]; tests call it in-process with their
//! own stdin and output buffers.

mod diff;
pub mod dns;
mod fix;
mod lint;
mod map;
mod matrix;
mod output;
mod promote;
mod render;
pub(crate) mod replay;
mod resolve;
mod rules;
mod trace;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::load::Limits;
use crate::load::fs::{FileIdentity, Input, Left, read_filtered};
use crate::project::{Project, TextFile};

/// Exit code: nothing at or above `--fail-on`.
pub const EXIT_OK: u8 = 0;
/// Exit code: findings at or above `--fail-on`.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit code: usage or I/O error.
pub const EXIT_ERROR: u8 = 2;

/// Safe-by-default Kubernetes egress: lint NetworkPolicies and workloads.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about, long_about = None)]
pub struct Cli {
    /// Colour in human output: auto (a terminal, unless NO_COLOR is set; CLICOLOR_FORCE=1
    /// forces it), always, never
    #[arg(long, global = true, value_enum, default_value = "auto", env = "PORTCULLIS_COLOR")]
    pub color: Color,
    #[command(subcommand)]
    pub command: Command,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

impl Color {
    /// Whether to colour, given whether stdout is a terminal and the environment.
    pub fn enabled(self, terminal: bool, env: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
        let set = |name: &str| env(name).is_some_and(|v| !v.is_empty());
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto if set("NO_COLOR") => false,
            Color::Auto if env("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty() && v != "0") => true,
            Color::Auto => terminal,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Lint manifests (files, directories, or - for stdin)
    Lint(lint::LintArgs),
    /// List the rules
    Rules(rules::RulesArgs),
    /// Show one rule's documentation
    Rule(rules::RuleArgs),
    /// Write the policies and patches that make the input pass
    Fix(fix::FixArgs),
    /// Explain whether traffic between two endpoints is allowed, and by which rules (exit 0 allowed, 1 denied, 2 usage error)
    Trace(trace::TraceArgs),
    /// Render EgressIntents to NetworkPolicies (resolving their names now), for GitOps
    Resolve(resolve::ResolveArgs),
    /// Show which workloads resolved which external names (from the sensor's observations)
    Map(map::MapArgs),
    /// Show the connections a change opens and closes (exit 1 with --fail-on when it does)
    Diff(diff::DiffArgs),
    /// Show which workload may reach which workload and outside destination, on which ports
    Matrix(matrix::MatrixArgs),
    /// Show which observed connections the policies would deny, and the change that allows them
    Replay(replay::ReplayArgs),
    /// Turn StagedPolicies that are ready (their status says so) into NetworkPolicies
    Promote(promote::PromoteArgs),
}

/// Options shared by commands that load manifests.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Namespace for objects without metadata.namespace
    #[arg(long, short = 'n', default_value = "default", env = "PORTCULLIS_NAMESPACE")]
    pub namespace: String,
    /// Configuration file (default: .portcullis.yaml or portcullis.yaml here or in a parent)
    #[arg(long, env = "PORTCULLIS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Largest input file, in MiB
    #[arg(long, default_value_t = 32, value_name = "MIB")]
    pub max_file_size: u64,
    /// Leave out paths matching this gitignore-style glob (repeatable; relative to the working
    /// directory; added to the config's `exclude`)
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Walk directories without reading .gitignore files
    #[arg(long)]
    pub no_ignore: bool,
    /// Values file for every Helm chart met (repeatable; as `helm template --values`)
    #[arg(long, value_name = "FILE")]
    pub values: Vec<PathBuf>,
    /// Do not run helm or kustomize on charts and kustomizations (each then gets a finding with
    /// the command to render it by hand)
    #[arg(long)]
    pub no_render: bool,
}

impl LoadArgs {
    /// The walk filter from these flags and `config`.
    fn filter(&self, config: &Config) -> crate::load::fs::Filter {
        use crate::load::glob::Patterns;
        let cwd = std::env::current_dir().unwrap_or_default();
        let config_dir = config
            .path
            .as_deref()
            .and_then(std::path::Path::parent)
            .and_then(|dir| std::path::absolute(dir).ok())
            .unwrap_or_else(|| cwd.clone());
        let mut exclude = Vec::new();
        if !config.exclude.is_empty() {
            exclude.push((config_dir.clone(), Patterns::from_globs(&config.exclude)));
        }
        if !self.exclude.is_empty() {
            exclude.push((cwd, Patterns::from_globs(&self.exclude)));
        }
        let include = if config.include.is_empty() {
            Vec::new()
        } else {
            vec![(config_dir, Patterns::from_globs(&config.include))]
        };
        crate::load::fs::Filter { exclude, include, gitignore: !self.no_ignore }
    }
}

/// Streams a command writes to.
pub struct Io<'a> {
    pub stdin: &'a mut dyn Read,
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
    /// Whether stdout is a terminal (colour in human output, with `--color` and the environment).
    pub tty: bool,
    /// What `--version` prints: the release, and the commit the binary was built from (set by
    /// the binary, so that a new commit rebuilds the binary, not the library under everything).
    pub version: &'static str,
    /// The terminal's width when stdout is one: human output wraps its messages to it.
    pub width: Option<usize>,
    /// Whether stdin is a terminal (then there is nothing piped to read).
    pub stdin_tty: bool,
    /// Whether the process exits as soon as the command returns (the `portcullis` binary). Then a
    /// run's objects are left to the operating system instead of being freed one by one, which
    /// costs a large run more than its rules do.
    pub exiting: bool,
}

impl std::fmt::Debug for Io<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io").field("tty", &self.tty).field("stdin_tty", &self.stdin_tty).finish_non_exhaustive()
    }
}

/// Runs the CLI with `args` (including the program name); returns the exit code.
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>, io: &mut Io<'_>) -> u8 {
    let matches = match <Cli as clap::CommandFactory>::command().version(io.version).try_get_matches_from(args) {
        Ok(matches) => <Cli as clap::FromArgMatches>::from_arg_matches(&matches),
        Err(e) => Err(e),
    };
    let cli = match matches {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ERROR } else { EXIT_OK };
            let rendered = e.render().to_string();
            let out: &mut dyn Write = if e.use_stderr() { io.stderr } else { io.stdout };
            let _ = out.write_all(rendered.as_bytes());
            return code;
        }
    };
    io.tty = cli.color.enabled(io.tty, |name| std::env::var_os(name));
    let result = match cli.command {
        Command::Lint(args) => lint::run(&args, io),
        Command::Rules(args) => rules::list(&args, io),
        Command::Rule(args) => rules::show(&args, io),
        Command::Fix(args) => fix::run(&args, io),
        Command::Trace(args) => trace::run(&args, io),
        Command::Resolve(args) => resolve::run(&args, io),
        Command::Map(args) => map::run(&args, io),
        Command::Diff(args) => diff::run(&args, io),
        Command::Matrix(args) => matrix::run(&args, io),
        Command::Replay(args) => replay::run(&args, io),
        Command::Promote(args) => promote::run(&args, io),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(io.stderr, "portcullis: error: {e:#}");
            EXIT_ERROR
        }
    }
}

/// Loads the configuration for a run.
pub(crate) fn load_config(args: &LoadArgs) -> anyhow::Result<Config> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    Ok(Config::discover(args.config.as_deref(), &cwd)?)
}

/// Loads `paths` (reported) and `context` (analysed, not reported) into a project, with the
/// policies its intents will generate. A file named in both is reported.
///
/// `project` is the empty project to fill (`Project::new(&args.namespace)`, which `lint` tells
/// not to keep object values: [`crate::model::Inventory::keep_values`]).
pub(crate) fn load_project(
    mut project: Project,
    paths: &[String],
    context: &[String],
    args: &LoadArgs,
    config: &Config,
    stdin: &mut dyn Read,
    stdin_tty: bool,
) -> anyhow::Result<Project> {
    // Parse files and run rules on the cores this process may use (the output does not depend
    // on how many).
    project.set_threads(crate::parallel::threads(8));
    let limits = Limits { max_file_bytes: args.max_file_size.saturating_mul(1024 * 1024) };
    let mut seen: HashSet<FileIdentity> = HashSet::new();
    let inputs: Vec<Input> =
        if paths.is_empty() { vec![Input::Stdin] } else { paths.iter().map(|p| Input::parse(p)).collect() };
    if stdin_tty && inputs.contains(&Input::Stdin) {
        anyhow::bail!("no input: name files or directories, or pipe manifests to stdin (`-`)");
    }
    let filter = args.filter(config);
    let mut add = |project: &mut Project,
                   inputs: &[Input],
                   reported: bool,
                   stdin: &mut dyn Read|
     -> anyhow::Result<Vec<crate::load::fs::Render>> {
        let mut left = Left::default();
        let mut files = read_filtered(inputs, limits, &filter, &mut left, stdin, project.threads())?;
        // `fix` output first: its patched copies replace the originals read after it.
        let is_fix =
            |file: &crate::load::fs::ReadFile| file.content.as_ref().is_ok_and(|text| text.starts_with(fix::HEADER));
        files.sort_by_key(|file| !is_fix(file));
        // Files are parsed in parallel, in batches between unreadable ones so every file keeps
        // its place (and source id) in the run.
        let mut batch = Vec::new();
        for file in files {
            let superseding = is_fix(&file);
            // A file named twice (`lint a.yaml .`, or as input and context) is read once.
            if let Some(identity) = file.identity
                && !seen.insert(identity)
            {
                continue;
            }
            match file.content {
                Ok(text) => batch.push(TextFile { name: file.name, text, superseding }),
                Err((position, message)) => {
                    project.add_texts(std::mem::take(&mut batch), reported);
                    project.add_rejected(&file.name, position, message, reported);
                }
            }
        }
        project.add_texts(batch, reported);
        let renders = std::mem::take(&mut left.renders);
        if reported {
            project.left_out = left;
        }
        Ok(renders)
    };
    let reported_renders = add(&mut project, &inputs, true, stdin)?;
    let context: Vec<Input> = context.iter().map(|p| Input::parse(p)).collect();
    let context_renders = add(&mut project, &context, false, stdin)?;
    // Charts and kustomizations, rendered once each (reported wins over context); a
    // kustomization that another one met in this run builds on is rendered as part of it only.
    let everything: Vec<_> = reported_renders.iter().chain(&context_renders).cloned().collect();
    let renderers = render::Renderers {
        enabled: !args.no_render,
        values: args.values.clone(),
        namespace: args.namespace.clone(),
        timeout: std::time::Duration::from_secs(120),
        max_bytes: limits.max_file_bytes,
    };
    let mut rendered: HashSet<PathBuf> = HashSet::new();
    for (jobs, reported) in [(&reported_renders, true), (&context_renders, false)] {
        for job in render::without_bases(jobs, &everything) {
            let key = std::fs::canonicalize(job.dir()).unwrap_or_else(|_| job.dir().to_path_buf());
            if !rendered.insert(key) {
                continue;
            }
            match render::render(&job, &renderers) {
                render::Rendered::Sources(sources) => {
                    let files = sources.into_iter().map(|(name, text)| TextFile { name, text, superseding: false });
                    project.add_texts(files.collect(), reported);
                }
                render::Rendered::Problem { file, message } => {
                    project.add_rejected(&file, crate::load::Position { line: 1, column: 1 }, message, reported);
                }
            }
        }
    }
    project.files_read = seen;
    project.expand_intents(&config.dns);
    Ok(project)
}
