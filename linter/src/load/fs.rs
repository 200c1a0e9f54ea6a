//! Reading inputs from the filesystem and stdin, with size limits.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{Limits, Position, decode_text};

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
/// their extension.
pub fn read_inputs(inputs: &[Input], limits: Limits, stdin: &mut dyn Read) -> Result<Vec<ReadFile>, ReadError> {
    let mut out = Vec::new();
    for input in inputs {
        match input {
            Input::Stdin => out.push(ReadFile {
                name: "<stdin>".to_owned(),
                content: read_limited(&mut *stdin, limits, 0)
                    .map_err(|e| ReadError::Io { path: "<stdin>".to_owned(), source: e })?,
                identity: None,
            }),
            Input::Path(path) => {
                let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => ReadError::NotFound { path: path.display().to_string() },
                    _ => ReadError::Io { path: path.display().to_string(), source: e },
                })?;
                if meta.is_dir() {
                    let mut files = Vec::new();
                    let mut visited = std::collections::HashSet::new();
                    visited.insert(FileIdentity::of(path, Some(&meta)));
                    walk(path, &mut files, &mut visited)?;
                    files.sort();
                    for file in files {
                        out.push(read_file(&file, limits)?);
                    }
                } else {
                    out.push(read_file(path, limits)?);
                }
            }
        }
    }
    Ok(out)
}

/// Walks a directory. Symbolic links to directories are followed (a chart's `templates/` is
/// often one), each directory at most once, so a link cycle ends the descent instead of looping.
fn walk(
    dir: &Path,
    files: &mut Vec<PathBuf>,
    visited: &mut std::collections::HashSet<FileIdentity>,
) -> Result<(), ReadError> {
    let io = |e| ReadError::Io { path: dir.display().to_string(), source: e };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let name = entry.file_name();
        let file_type = entry.file_type().map_err(io)?;
        let target = if file_type.is_symlink() { std::fs::metadata(&path).ok() } else { None };
        let is_dir = file_type.is_dir() || target.as_ref().is_some_and(std::fs::Metadata::is_dir);
        if is_dir {
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let meta = match &target {
                Some(m) => Some(m.clone()),
                None => std::fs::metadata(&path).ok(),
            };
            if visited.insert(FileIdentity::of(&path, meta.as_ref())) {
                walk(&path, files, visited)?;
            }
        } else if is_manifest_name(&path) && (file_type.is_file() || path.is_file()) {
            files.push(path);
        }
    }
    Ok(())
}

/// Whether a directory walk picks this file up.
pub fn is_manifest_name(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))
}

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
