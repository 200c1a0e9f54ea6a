//! `portcullis diff BASE HEAD` and `portcullis diff --git REV [PATH...]`: the connections a change
//! opens and closes.

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::process::{Command, Stdio};

use super::{EXIT_FINDINGS, EXIT_OK, Io, LoadArgs, load_config, load_project};
use crate::config::Config;
use crate::diff::{self, Diff};
use crate::project::Project;
use crate::project::TextFile;

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// BASE HEAD (files or directories); with --git, the paths to compare (default: .)
    pub paths: Vec<String>,
    /// Compare with this git revision: the old side is read from git's objects (no checkout);
    /// the new side is the work tree, or --head
    #[arg(long, value_name = "REV")]
    pub git: Option<String>,
    /// With --git: read the new side from this revision too
    #[arg(long, value_name = "REV", requires = "git")]
    pub head: Option<String>,
    /// Output format
    #[arg(long, short = 'f', default_value = "human", value_parser = ["human", "json", "markdown", "sarif"])]
    pub format: String,
    /// Exit 1 when connections are opened (widen), closed (narrow), either (any), or never
    #[arg(long, default_value = "never", value_parser = ["widen", "narrow", "any", "never"])]
    pub fail_on: String,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Most manifest files read from git for one side (each is bounded by `--max-file-size`).
const MAX_GIT_FILES: usize = 100_000;

fn side(paths: &[String], args: &DiffArgs, io: &mut Io<'_>, config: &Config) -> anyhow::Result<Project> {
    if paths.iter().any(|p| p == "-") {
        anyhow::bail!("diff reads both sides from paths or git; stdin is not supported");
    }
    let project = Project::new(&args.load.namespace);
    let project = load_project(project, paths, &[], &args.load, config, io.stdin, io.stdin_tty)?;
    nonempty(project, &paths.join(" "))
}

fn nonempty(project: Project, what: &str) -> anyhow::Result<Project> {
    if project.inventory.objects.is_empty() && project.load_problems.is_empty() {
        anyhow::bail!("{what}: no Kubernetes objects found");
    }
    Ok(project)
}

/// Runs git; its stdout, or an error naming the command and git's message.
fn git(args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let out = Command::new("git")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| anyhow::anyhow!("running git: {e} (is git installed?)"))?;
    if !out.status.success() {
        anyhow::bail!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out.stdout)
}

/// The manifests under `paths` at revision `rev`, read from git's objects (names as in the tree,
/// relative to the repository's top). Charts and kustomizations are read as files, not rendered.
fn read_revision(rev: &str, paths: &[String], max_file_bytes: u64) -> anyhow::Result<Vec<TextFile>> {
    // `rev` and the paths are arguments, never options: `--end-of-options` and `--`.
    let mut list = vec!["ls-tree", "-r", "-z", "--full-name", "--name-only", "--end-of-options", rev, "--"];
    list.extend(paths.iter().map(String::as_str));
    let names: Vec<String> = git(&list)?
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .filter(|n| crate::load::fs::is_manifest_name(std::path::Path::new(n)))
        .collect();
    if names.len() > MAX_GIT_FILES {
        anyhow::bail!("{rev}: more than {MAX_GIT_FILES} manifest files under the given paths");
    }
    let mut child = Command::new("git")
        .args(["cat-file", "--batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("running git cat-file: {e}"))?;
    let mut stdin = child.stdin.take().ok_or_else(|| anyhow::anyhow!("git cat-file: no stdin"))?;
    let requests: String = names.iter().map(|n| format!("{rev}:{n}\n")).collect();
    let writer = std::thread::spawn(move || stdin.write_all(requests.as_bytes()));
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("git cat-file: no stdout"))?;
    let mut reader = BufReader::new(stdout);
    let mut files = Vec::new();
    for name in &names {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        // `<object> blob <size>`, or `<request> missing`.
        let size: u64 = match header.split_whitespace().collect::<Vec<_>>().as_slice() {
            [_, "blob", size] => size.parse()?,
            _ => anyhow::bail!("git cat-file {rev}:{name}: {}", header.trim()),
        };
        // Refused before it is read: a blob's size is the repository author's to choose.
        if size > max_file_bytes {
            let _ = child.kill();
            anyhow::bail!("{rev}:{name}: {size} bytes, larger than --max-file-size");
        }
        let mut content = Vec::new();
        (&mut reader).take(size).read_to_end(&mut content)?;
        let mut newline = [0u8; 1];
        reader.read_exact(&mut newline)?;
        let text = String::from_utf8(content).map_err(|_| anyhow::anyhow!("{rev}:{name}: not UTF-8"))?;
        files.push(TextFile { name: format!("{rev}:{name}"), text, superseding: false });
    }
    let _ = writer.join();
    let _ = child.wait();
    Ok(files)
}

/// A side read from git. The base may hold no manifest (a directory the change adds): then every
/// workload is new; the head must hold some.
fn git_side(rev: &str, paths: &[String], args: &DiffArgs, config: &Config, base: bool) -> anyhow::Result<Project> {
    let mut project = Project::new(&args.load.namespace);
    project.set_threads(crate::parallel::threads(8));
    let max = args.load.max_file_size.saturating_mul(1024 * 1024);
    project.add_texts(read_revision(rev, paths, max)?, true);
    // As a side read from files: with the policies EgressIntents render to.
    project.expand_intents(&config.dns);
    if base {
        return Ok(project);
    }
    nonempty(project, &format!("{rev}: {}", paths.join(" ")))
}

pub fn run(args: &DiffArgs, io: &mut Io<'_>) -> anyhow::Result<u8> {
    let config = load_config(&args.load)?;
    let (base, head) = match (&args.git, args.paths.as_slice()) {
        (None, [base, head]) => {
            (side(std::slice::from_ref(base), args, io, &config)?, side(std::slice::from_ref(head), args, io, &config)?)
        }
        (None, _) => anyhow::bail!("expected BASE and HEAD paths, or --git REV [PATH...]"),
        (Some(rev), paths) => {
            let paths: Vec<String> = if paths.is_empty() { vec![".".to_owned()] } else { paths.to_vec() };
            let base = git_side(rev, &paths, args, &config, true)?;
            let head = match &args.head {
                Some(head_rev) => git_side(head_rev, &paths, args, &config, false)?,
                None => side(&paths, args, io, &config)?,
            };
            (base, head)
        }
    };
    let d: Diff = diff::diff(&base, &head);
    match args.format.as_str() {
        "json" => writeln!(io.stdout, "{}", serde_json::to_string_pretty(&d)?)?,
        "markdown" => write!(io.stdout, "{}", diff::render_markdown(&d))?,
        "sarif" => write!(io.stdout, "{}", diff::render_sarif(&d))?,
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
