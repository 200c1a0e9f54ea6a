//! Writing a command's output to files without losing anything: never over one of the
//! command's own inputs, never outside the output directory (namespace names come from the
//! input), never half-written (a temporary file renamed into place), and never over a file
//! portcullis did not write unless `--force` says so.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::load::fs::FileIdentity;
use crate::project::Project;

/// Why an output file was not written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{0} is one of this command's inputs; portcullis never overwrites its input (choose another --out)")]
    Input(PathBuf),
    #[error("{0} exists and was not written by portcullis; pass --force to replace it")]
    Foreign(PathBuf),
    #[error("{0} is a symbolic link; write to its target directly")]
    Symlink(PathBuf),
    #[error("{0} is a directory; name a file, or an existing directory for one file per namespace")]
    Directory(PathBuf),
    #[error("{path}: the directory {dir} does not exist")]
    NoDirectory { path: PathBuf, dir: PathBuf },
    #[error("namespace {0:?} is not a valid namespace name (RFC 1123 label); not writing a file for it")]
    BadNamespace(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Where a command may write: which files it read, and whether it may replace foreign files.
#[derive(Debug)]
pub struct Output<'a> {
    inputs: &'a HashSet<FileIdentity>,
    force: bool,
    /// The first line of every file portcullis writes: a file starting with it may be replaced.
    marker: &'static str,
}

impl<'a> Output<'a> {
    pub fn new(project: &'a Project, force: bool, marker: &'static str) -> Output<'a> {
        Output { inputs: &project.files_read, force, marker }
    }

    /// The file for one namespace's output in `dir`: `<namespace>-<suffix>`.
    pub fn in_directory(&self, dir: &Path, namespace: &str, suffix: &str) -> Result<PathBuf, OutputError> {
        if !is_dns_label(namespace) {
            return Err(OutputError::BadNamespace(namespace.to_owned()));
        }
        Ok(dir.join(format!("{namespace}-{suffix}")))
    }

    /// Writes `text` to `path` after the checks above, atomically.
    pub fn write(&self, path: &Path, text: &str) -> Result<(), OutputError> {
        let io = |source| OutputError::Io { path: path.to_owned(), source };
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => return Err(OutputError::Symlink(path.to_owned())),
            Ok(meta) if meta.is_dir() => return Err(OutputError::Directory(path.to_owned())),
            Ok(meta) => {
                if self.inputs.contains(&FileIdentity::of(path, Some(&meta))) {
                    return Err(OutputError::Input(path.to_owned()));
                }
                if !self.force && !self.written_by_us(path) {
                    return Err(OutputError::Foreign(path.to_owned()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let dir = match path.parent() {
            Some(p) if p.as_os_str().is_empty() => Path::new("."),
            Some(p) => p,
            None => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(OutputError::NoDirectory { path: path.to_owned(), dir: dir.to_owned() });
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.portcullis-{}.tmp", std::process::id()));
        let result = (|| {
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io)
    }

    fn written_by_us(&self, path: &Path) -> bool {
        let mut head = [0u8; 256];
        let read = std::fs::File::open(path).and_then(|mut f| std::io::Read::read(&mut f, &mut head)).unwrap_or(0);
        head[..read].starts_with(self.marker.as_bytes()) || read == 0
    }
}

/// An RFC 1123 label, as namespace names are: lowercase letters, digits and `-`, at most 63.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Writes policies as one YAML stream, `header` first: to `out` (never over an input; an
/// existing file only when portcullis wrote it or with `force`, said on stderr) or to stdout.
pub fn write_policies(
    project: &Project,
    policies: &[serde_json::Value],
    (out, force, header): (Option<&Path>, bool, &'static str),
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut text = String::from(header);
    for p in policies {
        text.push_str("---\n");
        text.push_str(&crate::emit::to_yaml(p));
    }
    match out {
        Some(path) => {
            Output::new(project, force, header).write(path, &text)?;
            let noun = if policies.len() == 1 { "policy" } else { "policies" };
            writeln!(stderr, "wrote {} {noun} to {}", policies.len(), path.display())?;
        }
        None => stdout.write_all(text.as_bytes())?,
    }
    Ok(())
}

/// Problems that make the input unusable for commands that write from it (`fix`, `resolve`) or
/// answer for all of it (`replay`): files that do not parse or could not be read. Printed with
/// their location; the command then exits 2 and writes nothing (`outcome` says so), so a
/// pipeline never commits an empty or partial policy file, nor trusts an answer about policies
/// that were left out.
pub fn refuse_invalid_input(project: &Project, stderr: &mut dyn Write, outcome: &str) -> std::io::Result<bool> {
    let mut invalid = false;
    for p in &project.load_problems {
        let file = project.sources.get(p.source).map(|f| f.name.as_str()).unwrap_or("<input>");
        writeln!(stderr, "{file}:{}:{}: {}", p.position.line, p.position.column, p.message)?;
        invalid = true;
    }
    if invalid {
        writeln!(stderr, "portcullis: error: the input is invalid (above); {outcome}")?;
    } else if project.inventory.objects.is_empty() {
        writeln!(stderr, "portcullis: error: the input holds no Kubernetes objects; {outcome}")?;
        invalid = true;
    }
    Ok(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_names_cannot_leave_the_directory() {
        for bad in ["../x", "/abs", "a/b", "..", "", "UPPER", "-a", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert!(is_dns_label("shop-1"));
    }
}
