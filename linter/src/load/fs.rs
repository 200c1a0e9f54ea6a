//! Reading inputs from the filesystem and stdin, with size limits.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::glob::{Patterns, Verdict, relative_segments};
use super::{Limits, Position, decode_text};

/// Which files a directory walk takes, beyond the manifest extensions: `exclude` globs (each
/// list relative to its own base directory: the config file's, or the working directory for
/// `--exclude`), `include` globs (when any, a walked file must match one), and the `.gitignore`
/// files of the git repository being walked. Excludes apply to files named explicitly too (a
/// pre-commit hook names them), `.gitignore` and `include` only to walks.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub exclude: Vec<(PathBuf, Patterns)>,
    pub include: Vec<(PathBuf, Patterns)>,
    pub gitignore: bool,
}

/// What the walk left out (for the summary), and the directories it left to a renderer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Left {
    /// Files and directories left out by `exclude` (or not matched by `include`).
    pub excluded: usize,
    /// Files and directories left out by `.gitignore`.
    pub ignored: usize,
    /// Helm charts and Kustomize directories met: their files are templates or patches, not
    /// manifests, so they are rendered (by the caller) instead of read.
    pub renders: Vec<Render>,
}

/// A directory that must be rendered before it can be linted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Render {
    /// Holds `Chart.yaml`.
    Helm(PathBuf),
    /// Holds `kustomization.yaml`, `kustomization.yml` or `Kustomization`.
    Kustomize(PathBuf),
}

/// The file that makes a directory a Helm chart.
const CHART_FILE: &str = "Chart.yaml";
/// The files that make a directory a kustomization.
const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

impl Render {
    /// What `dir` is, when it is a chart or a kustomization.
    pub fn of(dir: &Path) -> Option<Render> {
        Render::from_files(dir, |name| dir.join(name).is_file())
    }

    /// [`Render::of`], given which names in `dir` are files (a walk knows them from the
    /// directory's entries, without a lookup for each name).
    fn from_files(dir: &Path, is_file: impl Fn(&str) -> bool) -> Option<Render> {
        if is_file(CHART_FILE) {
            return Some(Render::Helm(dir.to_path_buf()));
        }
        KUSTOMIZATION_FILES.iter().any(|name| is_file(name)).then(|| Render::Kustomize(dir.to_path_buf()))
    }

    pub fn dir(&self) -> &Path {
        match self {
            Render::Helm(dir) | Render::Kustomize(dir) => dir,
        }
    }

    /// The chart or kustomization a file belongs to: its nearest ancestor directory that is
    /// one, looking no higher than the working directory (or the file's own directory, for a
    /// file outside it). A file pre-commit names inside a chart or an overlay is part of what
    /// renders there, not a manifest of its own.
    pub fn owning(file: &Path) -> Option<Render> {
        let absolute = std::path::absolute(file).ok()?;
        let cwd = std::env::current_dir().ok().and_then(|d| std::path::absolute(d).ok());
        let parent = absolute.parent()?;
        let top = cwd.filter(|cwd| parent.starts_with(cwd)).unwrap_or_else(|| parent.to_path_buf());
        for dir in parent.ancestors().take(32) {
            if let Some(render) = Render::of(dir) {
                // Named as the user would: relative to the working directory when under it.
                let shown = std::env::current_dir()
                    .ok()
                    .and_then(|cwd| dir.strip_prefix(std::path::absolute(cwd).ok()?).ok().map(Path::to_path_buf))
                    .map(|rel| if rel.as_os_str().is_empty() { PathBuf::from(".") } else { rel })
                    .unwrap_or_else(|| dir.to_path_buf());
                return Some(match render {
                    Render::Helm(_) => Render::Helm(shown),
                    Render::Kustomize(_) => Render::Kustomize(shown),
                });
            }
            if dir == top {
                break;
            }
        }
        None
    }
}

impl Filter {
    /// Whether an exclude glob names `absolute` (the path made absolute once, by the caller: a
    /// walk joins names to its directory's absolute path instead of asking for the working
    /// directory for every file).
    fn excluded(&self, absolute: &Path, is_dir: bool) -> bool {
        self.exclude.iter().any(|(base, patterns)| {
            let segments = relative_segments(absolute, base)
                .unwrap_or_else(|| absolute.file_name().and_then(|n| n.to_str()).into_iter().collect());
            patterns.excludes(&segments, is_dir)
        })
    }

    fn included(&self, absolute: &Path) -> bool {
        if self.include.is_empty() {
            return true;
        }
        self.include.iter().any(|(base, patterns)| {
            relative_segments(absolute, base).is_some_and(|segments| patterns.matches(&segments, false))
        })
    }
}

/// The `.gitignore` lists in force in one directory of a walk, outermost first.
type Ignores = Vec<(PathBuf, Patterns)>;

/// The `.gitignore` files from the repository root (the nearest ancestor with `.git`) down to
/// `dir`'s parent; `None` outside a git repository, where `.gitignore` means nothing.
fn ancestor_ignores(dir: &Path) -> Option<Ignores> {
    let absolute = std::path::absolute(dir).ok()?;
    let root = absolute.ancestors().find(|a| a.join(".git").exists())?;
    let mut ignores = Vec::new();
    let mut here = root.to_path_buf();
    let rest = absolute.strip_prefix(root).ok()?;
    let mut parts: Vec<_> = rest.components().collect();
    parts.pop();
    add_gitignore(&here, &mut ignores);
    for part in parts {
        here.push(part);
        add_gitignore(&here, &mut ignores);
    }
    Some(ignores)
}

fn add_gitignore(dir: &Path, ignores: &mut Ignores) {
    // Bounded like any input: a huge .gitignore is read up to 1 MiB.
    let Ok(file) = std::fs::File::open(dir.join(".gitignore")) else { return };
    let mut text = String::new();
    if file.take(1 << 20).read_to_string(&mut text).is_ok() {
        ignores.push((dir.to_path_buf(), Patterns::parse(&text)));
    }
}

fn gitignored(ignores: &Ignores, absolute: &Path, is_dir: bool) -> bool {
    let mut verdict = Verdict::None;
    for (base, patterns) in ignores {
        if let Some(segments) = relative_segments(absolute, base) {
            match patterns.verdict(&segments, is_dir) {
                Verdict::None => {}
                other => verdict = other,
            }
        }
    }
    verdict == Verdict::Excluded
}

/// An input the user named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Path(PathBuf),
    Stdin,
}

impl Input {
    pub fn parse(arg: &str) -> Input {
        if arg == "-" { Input::Stdin } else { Input::Path(PathBuf::from(arg)) }
    }
}

/// One file's content as read, or why it could not be used.
#[derive(Debug)]
pub struct ReadFile {
    pub name: String,
    pub content: Result<String, (Position, String)>,
    /// What makes two names the same file (device and inode on Unix); `None` for stdin.
    pub identity: Option<FileIdentity>,
}

/// Identifies a file whatever path reached it, from the metadata the read already fetched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FileIdentity {
    #[cfg(unix)]
    Inode { dev: u64, ino: u64 },
    /// Elsewhere (or without metadata): the canonical path.
    Path(PathBuf),
}

impl FileIdentity {
    /// The identity of the file at `path`, from metadata already fetched when there is some.
    pub fn of(path: &Path, metadata: Option<&std::fs::Metadata>) -> FileIdentity {
        #[cfg(unix)]
        if let Some(m) = metadata {
            use std::os::unix::fs::MetadataExt;
            return FileIdentity::Inode { dev: m.dev(), ino: m.ino() };
        }
        let _ = metadata;
        FileIdentity::Path(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()))
    }
}

/// A usage or I/O error that stops the run (exit code 2), unlike problems inside a file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a file or directory")]
    NotFound { path: String },
}

/// Expands inputs into files: directories are walked recursively for `*.yaml`, `*.yml` and
/// `*.json` (sorted, hidden directories skipped); files named explicitly are read whatever
/// their extension. No filter: see [`read_filtered`].
pub fn read_inputs(inputs: &[Input], limits: Limits, stdin: &mut dyn Read) -> Result<Vec<ReadFile>, ReadError> {
    read_filtered(inputs, limits, &Filter::default(), &mut Left::default(), stdin, 1)
}

/// The files `inputs` name, each handed to `f` as soon as it is read, on up to `threads`
/// threads; `f`'s results in walk order. A caller that keeps only what it derives from a file
/// holds one file's text per thread, never all of them at once (the webhook's state load:
/// 100,000 policies are 48 MB of text). Stdin is not read.
pub fn read_each<T: Send>(
    inputs: &[Input],
    limits: Limits,
    threads: usize,
    f: impl Fn(ReadFile) -> T + Sync,
) -> Result<Vec<T>, ReadError> {
    let listed = list_filtered(inputs, &Filter::default(), &mut Left::default())?;
    let results = crate::parallel::map(&listed, threads, |listed| match listed {
        Listed::File(path) => Some(read_file(path, limits).map(&f)),
        Listed::Stdin => None,
    });
    results.into_iter().flatten().collect()
}

/// [`read_inputs`] with `filter` applied: files named explicitly are left out only when an
/// exclude glob names them; what is left out is counted in `left`. The files a directory walk
/// finds are read on up to `threads` threads (opening and reading thousands of small files is
/// mostly kernel time, which every core can spend), in walk order.
pub fn read_filtered(
    inputs: &[Input],
    limits: Limits,
    filter: &Filter,
    left: &mut Left,
    stdin: &mut dyn Read,
    threads: usize,
) -> Result<Vec<ReadFile>, ReadError> {
    let listed = list_filtered(inputs, filter, left)?;
    // Files side by side; stdin (a stream) in its place, on this thread.
    let files = crate::parallel::map(&listed, threads, |listed| match listed {
        Listed::File(path) => Some(read_file(path, limits)),
        Listed::Stdin => None,
    });
    let mut out = Vec::with_capacity(listed.len());
    for read in files {
        out.push(match read {
            Some(file) => file?,
            None => read_stdin(stdin, limits)?,
        });
    }
    Ok(out)
}

/// An input file found by [`list_filtered`], not read yet.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Listed {
    Stdin,
    File(PathBuf),
}

/// The files [`read_filtered`] reads, in the order it reads them.
fn list_filtered(inputs: &[Input], filter: &Filter, left: &mut Left) -> Result<Vec<Listed>, ReadError> {
    let mut out = Vec::new();
    for input in inputs {
        match input {
            Input::Stdin => out.push(Listed::Stdin),
            Input::Path(path) => {
                let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => ReadError::NotFound { path: path.display().to_string() },
                    _ => ReadError::Io { path: path.display().to_string(), source: e },
                })?;
                let absolute = std::path::absolute(path)
                    .map_err(|e| ReadError::Io { path: path.display().to_string(), source: e })?;
                if filter.excluded(&absolute, meta.is_dir()) {
                    left.excluded += 1;
                    continue;
                }
                if meta.is_dir()
                    && let Some(render) = Render::of(path)
                {
                    left.renders.push(render);
                    continue;
                }
                if meta.is_dir() {
                    let mut files = Vec::new();
                    let mut visited = std::collections::HashSet::new();
                    visited.insert(FileIdentity::of(path, Some(&meta)));
                    let mut ignores = if filter.gitignore { ancestor_ignores(path) } else { None };
                    let mut walk = Walk { filter, files: &mut files, visited: &mut visited, left };
                    walk.dir(path, &absolute, &mut ignores, true)?;
                    out.extend(files.into_iter().map(Listed::File));
                } else if let Some(render) = Render::owning(path) {
                    if !left.renders.contains(&render) {
                        left.renders.push(render);
                    }
                } else {
                    out.push(Listed::File(path.clone()));
                }
            }
        }
    }
    Ok(out)
}

struct Walk<'a> {
    filter: &'a Filter,
    files: &'a mut Vec<PathBuf>,
    visited: &'a mut std::collections::HashSet<FileIdentity>,
    left: &'a mut Left,
}

impl Walk<'_> {
    /// Walks a directory. Symbolic links to directories are followed (a chart's `templates/` is
    /// often one), each directory at most once, so a link cycle ends the descent instead of
    /// looping. `ignores` is `None` outside a git repository.
    /// `absolute` is `dir` made absolute. A chart or kustomization below the top is left to
    /// its renderer instead of walked (the top was checked by the caller).
    fn dir(&mut self, dir: &Path, absolute: &Path, ignores: &mut Option<Ignores>, top: bool) -> Result<(), ReadError> {
        let io = |e| ReadError::Io { path: dir.display().to_string(), source: e };
        let mut entries = std::fs::read_dir(dir).map_err(io)?.collect::<Result<Vec<_>, _>>().map_err(io)?;
        // Each directory in name order, so the walk yields paths sorted component by component
        // (what sorting the whole list would give, without comparing long paths).
        entries.sort_by_cached_key(std::fs::DirEntry::file_name);
        // Names are looked up in the entries already read, not with a system call each: a
        // repository of 1,000 directories would otherwise cost 5,000 failed lookups.
        let named = |name: &str| entries.iter().find(|e| e.file_name() == name);
        if !top {
            let is_file = |name: &str| {
                named(name)
                    .is_some_and(|e| e.file_type().is_ok_and(|t| t.is_file() || (t.is_symlink() && e.path().is_file())))
            };
            if let Some(render) = Render::from_files(dir, is_file) {
                self.left.renders.push(render);
                return Ok(());
            }
        }
        let pushed = match ignores {
            Some(list) if named(".gitignore").is_some() => {
                let before = list.len();
                add_gitignore(absolute, list);
                list.len() > before
            }
            _ => false,
        };
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name();
            let entry_absolute = absolute.join(&name);
            let file_type = entry.file_type().map_err(io)?;
            let target = if file_type.is_symlink() { std::fs::metadata(&path).ok() } else { None };
            let is_dir = file_type.is_dir() || target.as_ref().is_some_and(std::fs::Metadata::is_dir);
            if is_dir && name.to_string_lossy().starts_with('.') {
                continue;
            }
            if !is_dir && !(is_manifest_name(&path) && (file_type.is_file() || path.is_file())) {
                continue;
            }
            if self.filter.excluded(&entry_absolute, is_dir) || (!is_dir && !self.filter.included(&entry_absolute)) {
                self.left.excluded += 1;
                continue;
            }
            if ignores.as_ref().is_some_and(|list| gitignored(list, &entry_absolute, is_dir)) {
                self.left.ignored += 1;
                continue;
            }
            if is_dir {
                let meta = match &target {
                    Some(m) => Some(m.clone()),
                    None => std::fs::metadata(&path).ok(),
                };
                if self.visited.insert(FileIdentity::of(&path, meta.as_ref())) {
                    self.dir(&path, &entry_absolute, ignores, false)?;
                }
            } else {
                self.files.push(path);
            }
        }
        if pushed && let Some(list) = ignores {
            list.pop();
        }
        Ok(())
    }
}

/// Whether a directory walk picks this file up.
pub fn is_manifest_name(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

fn read_stdin(stdin: &mut dyn Read, limits: Limits) -> Result<ReadFile, ReadError> {
    let content =
        read_limited(stdin, limits, 0).map_err(|e| ReadError::Io { path: "<stdin>".to_owned(), source: e })?;
    Ok(ReadFile { name: "<stdin>".to_owned(), content, identity: None })
}

/// Reads one file (up to the limit), with its identity.
fn read_file(path: &Path, limits: Limits) -> Result<ReadFile, ReadError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| ReadError::Io { path: name.clone(), source: e })?;
    let metadata = file.metadata().ok();
    // The size is only a hint (files change while read): it saves growing the buffer read by read.
    let size_hint = metadata.as_ref().map_or(0, |m| m.len().min(limits.max_file_bytes));
    let identity = Some(FileIdentity::of(path, metadata.as_ref()));
    let content = read_limited(file, limits, size_hint).map_err(|e| ReadError::Io { path: name.clone(), source: e })?;
    Ok(ReadFile { name, content, identity })
}

/// Reads at most the limit plus one byte, so a huge input costs no more memory than the limit.
fn read_limited(
    reader: impl Read,
    limits: Limits,
    size_hint: u64,
) -> std::io::Result<Result<String, (Position, String)>> {
    let mut bytes = Vec::with_capacity(usize::try_from(size_hint).unwrap_or(0).saturating_add(1));
    reader.take(limits.max_file_bytes.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limits.max_file_bytes {
        return Ok(Err((
            Position::START,
            format!(
                "input is larger than the {} MiB limit; split it or raise --max-file-size",
                limits.max_file_bytes / (1024 * 1024)
            ),
        )));
    }
    Ok(decode_text(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_input_is_refused_without_reading_it_all() {
        let limits = Limits { max_file_bytes: 1024 };
        let mut endless = std::io::repeat(b'a');
        let files = read_inputs(&[Input::Stdin], limits, &mut endless).unwrap();
        let (_, msg) = files[0].content.as_ref().unwrap_err();
        assert!(msg.contains("larger than"), "{msg}");
    }

    #[test]
    fn missing_paths_are_usage_errors() {
        let err = read_inputs(&[Input::parse("/nonexistent/portcullis")], Limits::default(), &mut std::io::empty())
            .unwrap_err();
        assert!(err.to_string().contains("not a file or directory"));
    }
}
