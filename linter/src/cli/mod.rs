//! The `portcullis` command line. `main.rs` calls [`run`]; tests call it in-process with their
//! own stdin and output buffers.

mod cache;
pub mod dns;
mod fix;
mod lint;
mod map;
mod output;
mod render;
mod resolve;
mod rules;
mod trace;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::load::Limits;
use crate::load::fs::{FileIdentity, Input, Left, Listed, list_filtered, read_file, read_filtered};
use crate::project::{ParsedFile, Project, TextFile};

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
/// not to keep object values: [`crate::model::Inventory::keep_values`]). With `cache`, the
/// context's parses are kept between runs ([`cache`]) and context files whose text was not
/// read are listed in [`Project::unread`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn load_project(
    mut project: Project,
    paths: &[String],
    context: &[String],
    args: &LoadArgs,
    config: &Config,
    stdin: &mut dyn Read,
    stdin_tty: bool,
    cache: Option<&Path>,
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
    let cwd = std::env::current_dir().ok().and_then(|d| std::path::absolute(d).ok());
    let cache = match (cache, &cwd) {
        (Some(dir), Some(cwd)) if !context.is_empty() => {
            Some(cache::ContextCache::open(dir, cwd, context, project.inventory.keeps_values()))
        }
        _ => None,
    };
    let mut add = |project: &mut Project,
                   inputs: &[Input],
                   reported: bool,
                   stdin: &mut dyn Read|
     -> anyhow::Result<Vec<crate::load::fs::Render>> {
        let mut left = Left::default();
        if let (false, Some(cache), Some(cwd)) = (reported, &cache, &cwd) {
            let listed = list_filtered(inputs, &filter, &mut left)?;
            add_cached(project, listed, cache, cwd, limits, &mut seen, stdin)?;
            return Ok(std::mem::take(&mut left.renders));
        }
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

/// A context file on its way into the project (see [`add_cached`]).
enum Pending {
    /// Unchanged since the pack was written: not read.
    Unread { name: String, hit: cache::Hit, absolute: PathBuf, stat: Option<cache::Stat> },
    /// Changed, new, or not trusted by metadata: to read.
    ToRead { path: PathBuf, absolute: PathBuf, stat: Option<cache::Stat> },
    /// Read (`absolute` is `None` for stdin).
    Read { file: crate::load::fs::ReadFile, absolute: Option<PathBuf>, stat: Option<cache::Stat> },
}

/// Adds the context files `listed` as [`load_project`] would, parsing only those the cache
/// does not hold: unchanged files (same metadata) are not even read, files whose bytes the
/// pack holds are read and hashed, the rest are read and parsed on every core. Then the pack
/// is replaced by this run's context. The result is the same as without the cache.
fn add_cached(
    project: &mut Project,
    listed: Vec<Listed>,
    cache: &cache::ContextCache,
    cwd: &Path,
    limits: Limits,
    seen: &mut HashSet<FileIdentity>,
    stdin: &mut dyn Read,
) -> anyhow::Result<()> {
    let threads = project.threads();
    let keep_values = project.inventory.keeps_values();
    // Every file's metadata, looked up side by side (a system call each).
    let metadata = crate::parallel::map(&listed, threads, |listed| match listed {
        Listed::File(path) => std::fs::metadata(path).ok(),
        Listed::Stdin => None,
    });
    let mut pending = Vec::with_capacity(listed.len());
    for (listed, meta) in listed.into_iter().zip(metadata) {
        let path = match listed {
            Listed::Stdin => {
                let mut files =
                    read_filtered(&[Input::Stdin], limits, &Default::default(), &mut Left::default(), stdin, 1)?;
                pending.extend(files.pop().map(|file| Pending::Read { file, absolute: None, stat: None }));
                continue;
            }
            Listed::File(path) => path,
        };
        if let Some(meta) = &meta
            && !seen.insert(FileIdentity::of(&path, Some(meta)))
        {
            continue;
        }
        let absolute = cwd.join(&path);
        let stat = meta.as_ref().and_then(cache::Stat::of);
        match cache.by_stat(&absolute, stat).filter(|_| meta.as_ref().is_some_and(|m| m.len() <= limits.max_file_bytes))
        {
            Some(hit) => pending.push(Pending::Unread { name: path.display().to_string(), hit, absolute, stat }),
            None => pending.push(Pending::ToRead { path, absolute, stat }),
        }
    }
    // Changed files, read side by side (in order, so the first error is the one reported).
    let pending = crate::parallel::map_owned(pending, threads, |pending| match pending {
        Pending::ToRead { path, absolute, stat } => {
            read_file(&path, limits).map(|file| Pending::Read { file, absolute: Some(absolute), stat })
        }
        other => Ok(other),
    })
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    // Added in the order `load_project` adds read files (`fix` output first, then as listed),
    // a chunk at a time: the chunk's parses are taken from the pack or made (and serialized for
    // the next pack) side by side, then added, so only one chunk of parses waits at a time.
    const CHUNK: usize = 512;
    let superseding = |p: &Pending| match p {
        Pending::Unread { hit, .. } => hit.superseding,
        Pending::Read { file, .. } => file.content.as_ref().is_ok_and(|text| text.starts_with(fix::HEADER)),
        Pending::ToRead { .. } => false,
    };
    let mut order: Vec<usize> = (0..pending.len()).collect();
    order.sort_by_key(|&i| pending.get(i).is_none_or(|p| !superseding(p)));
    let mut slots: Vec<Option<Pending>> = pending.into_iter().map(Some).collect();
    let mut remembered = Vec::with_capacity(slots.len());
    for chunk in order.chunks(CHUNK) {
        let taken: Vec<Pending> = chunk.iter().filter_map(|&i| slots.get_mut(i).and_then(Option::take)).collect();
        for done in crate::parallel::map_owned(taken, threads, |p| parse_pending(p, cache, keep_values, limits)) {
            match done {
                Done::Rejected { name, position, message } => {
                    project.add_rejected(&name, position, message, false);
                }
                Done::Parsed { name, text, parsed, superseding, remembered: entry } => {
                    let unread = text.is_none();
                    let id = project.add_parsed(name, text, parsed, false, superseding);
                    if let Some(entry) = entry {
                        if unread {
                            project.unread.push((id, entry.sha256.clone()));
                        }
                        remembered.push(entry);
                    }
                }
            }
        }
    }
    cache.store(remembered, std::time::SystemTime::now());
    Ok(())
}

/// A context file ready to add (see [`add_cached`]).
enum Done {
    Parsed {
        name: String,
        /// `None` when the file was not read.
        text: Option<String>,
        parsed: ParsedFile,
        superseding: bool,
        /// What the next pack keeps of it (not stdin).
        remembered: Option<cache::Remembered>,
    },
    Rejected {
        name: String,
        position: crate::load::Position,
        message: String,
    },
}

/// The parse of a context file: from the pack when it holds one for the file's bytes, made
/// otherwise. A damaged entry is a miss: the file is read and parsed as it is now.
fn parse_pending(pending: Pending, cache: &cache::ContextCache, keep_values: bool, limits: Limits) -> Done {
    let (file, absolute, stat) = match pending {
        Pending::Unread { name, hit, absolute, stat } => {
            if let Some(parsed) = cache.parsed(&hit, keep_values) {
                let remembered = cache::Remembered {
                    path: absolute,
                    stat,
                    sha256: hit.sha256.clone(),
                    superseding: hit.superseding,
                    entry: hit.entry(),
                };
                return Done::Parsed {
                    name,
                    text: None,
                    parsed,
                    superseding: hit.superseding,
                    remembered: Some(remembered),
                };
            }
            match read_file(Path::new(&name), limits) {
                Ok(file) => (file, Some(absolute), stat),
                Err(e) => {
                    return Done::Rejected { name, position: crate::load::Position::START, message: e.to_string() };
                }
            }
        }
        Pending::ToRead { path, absolute, stat } => match read_file(&path, limits) {
            Ok(file) => (file, Some(absolute), stat),
            Err(e) => {
                let name = path.display().to_string();
                return Done::Rejected { name, position: crate::load::Position::START, message: e.to_string() };
            }
        },
        Pending::Read { file, absolute, stat } => (file, absolute, stat),
    };
    let text = match file.content {
        Ok(text) => text,
        Err((position, message)) => return Done::Rejected { name: file.name, position, message },
    };
    let superseding = text.starts_with(fix::HEADER);
    let sha256 = cache::content_hash(text.as_bytes());
    let known = cache.by_content(&sha256, superseding).and_then(|hit| Some((cache.parsed(&hit, keep_values)?, hit)));
    let (parsed, entry) = match known {
        Some((parsed, hit)) => (parsed, hit.entry()),
        None => {
            let parsed = ParsedFile::parse(&text, keep_values);
            let bytes = serde_json::to_vec(&parsed).unwrap_or_default();
            (parsed, cache::Entry::New(bytes))
        }
    };
    let remembered = absolute.map(|path| cache::Remembered { path, stat, sha256, superseding, entry });
    Done::Parsed { name: file.name, text: Some(text), parsed, superseding, remembered }
}

/// Reads the text of context files the cache did not read, where findings must be located
/// (only if the file still has the bytes that were parsed; otherwise the finding points at the
/// start of its document).
pub(crate) fn read_cited_texts(project: &mut Project, findings: &[crate::finding::Finding]) {
    let cited = Project::cited_sources(findings);
    let unread = std::mem::take(&mut project.unread);
    for (id, sha256) in unread {
        if !cited.contains(&id) {
            continue;
        }
        let Some(name) = project.sources.get(id).map(|f| f.name.clone()) else { continue };
        if let Ok(text) = std::fs::read_to_string(&name)
            && cache::content_hash(text.as_bytes()) == sha256
        {
            project.sources.set_text(id, text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary directory of this test process.
    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("portcullis-unit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `lint REPORTED --context CONTEXT` as the CLI loads it, with the cache in `cache`
    /// (or none): the diagnostics, and how many context files were not read.
    fn lint(reported: &Path, context: &Path, cache: Option<&Path>) -> (String, usize) {
        let (reported, context) = (reported.to_str().unwrap(), context.to_str().unwrap());
        let Ok(Cli { command: Command::Lint(args), .. }) =
            Cli::try_parse_from(["portcullis", "lint", reported, "--context", context])
        else {
            panic!("arguments")
        };
        let config = load_config(&args.load).unwrap();
        let mut project = Project::new("default");
        project.inventory.keep_values(false);
        let mut project =
            load_project(project, &args.paths, &args.context, &args.load, &config, &mut std::io::empty(), false, cache)
                .unwrap();
        let unread = project.unread.len();
        let findings = project.lint(&config);
        read_cited_texts(&mut project, &findings);
        (format!("{:#?}", project.diagnostics(&findings)), unread)
    }

    #[test]
    fn unchanged_context_files_are_not_read_and_nothing_changes() {
        // The repository's demo: checked out well before the tests run, so its files'
        // metadata is trusted. A finding in the Deployment points into a policy file (a
        // related location), which the warm run reads only for that.
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testcases/demo");
        let reported = demo.join("apps/api.yaml");
        let cache = tempdir("context-cache-settled");
        let (uncached, _) = lint(&reported, &demo, None);
        assert!(uncached.contains("policies/allow-dns.yaml"), "{uncached}");
        let (cold, unread) = lint(&reported, &demo, Some(&cache));
        assert_eq!(unread, 0, "a cold cache reads every file");
        let (warm, unread) = lint(&reported, &demo, Some(&cache));
        assert!(unread >= 9, "a warm cache reads no unchanged file (only {unread} not read)");
        assert_eq!(cold, uncached);
        assert_eq!(warm, uncached);
        std::fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn changed_added_and_removed_context_files_are_seen() {
        let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testcases/demo");
        let dir = tempdir("context-cache-changes");
        let (repo, cache) = (dir.join("repo"), dir.join("cache"));
        for entry in std::fs::read_dir(demo.join("policies")).unwrap().flatten() {
            std::fs::create_dir_all(repo.join("policies")).unwrap();
            std::fs::copy(entry.path(), repo.join("policies").join(entry.file_name())).unwrap();
        }
        std::fs::create_dir_all(repo.join("apps")).unwrap();
        std::fs::copy(demo.join("apps/api.yaml"), repo.join("apps/api.yaml")).unwrap();
        let reported = repo.join("apps/api.yaml");
        let check = |what: &str| {
            let (uncached, _) = lint(&reported, &repo, None);
            let (cached, unread) = lint(&reported, &repo, Some(&cache));
            assert_eq!(cached, uncached, "{what}");
            (uncached, unread)
        };
        // Files modified in the last two seconds are not trusted by their metadata; these must
        // be, so that a change after them is seen through their metadata.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let (before, _) = check("cold");
        let (_, unread) = check("warm");
        assert!(unread >= 5, "only {unread} files not read");
        let check = |what: &str| check(what).0;
        // A policy that allows DNS to every pod of the namespace: PC003 goes away.
        let allow_dns = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-all-dns, namespace: shop}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]\n";
        std::fs::write(repo.join("policies/zz-dns.yaml"), allow_dns).unwrap();
        let added = check("a file added");
        assert_ne!(added, before, "the added policy changes the findings");
        // The same bytes under another name: a content hit.
        std::fs::rename(repo.join("policies/zz-dns.yaml"), repo.join("policies/aa-dns.yaml")).unwrap();
        assert_eq!(check("a file renamed"), added);
        // Changed in place, and removed.
        std::fs::write(
            repo.join("policies/aa-dns.yaml"),
            allow_dns.replace("port: 53, protocol: UDP", "port: 54, protocol: UDP"),
        )
        .unwrap();
        check("a file changed");
        std::fs::remove_file(repo.join("policies/aa-dns.yaml")).unwrap();
        assert_eq!(check("a file removed"), before);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
