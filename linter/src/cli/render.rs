//! Helm charts and Kustomize directories, rendered with the user's own tools before linting:
//! their files are templates and patches, not manifests (a chart's templates are not even YAML).
//!
//! `helm template NAME DIR --namespace NS [--values F]...` for a directory with `Chart.yaml`;
//! `kustomize build DIR` or `kubectl kustomize DIR` for one with a kustomization. Helm's
//! output is split by its `# Source: CHART/templates/x.yaml` comments, so each finding names the
//! template it came from (its line is a line of that template's rendered output, which the
//! snippet shows). Without the tool, or with `--no-render`, the directory gets one PC000 finding
//! saying the exact command to render it first. Bounded: a time limit, and the output is read
//! up to `--max-file-size`. This is the CLI's I/O; the engine only ever sees the rendered text.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::load::fs::Render;

/// How to render.
#[derive(Debug, Clone)]
pub struct Renderers {
    /// Run renderers at all (`--no-render` turns it off).
    pub enabled: bool,
    /// Values files for every chart (`--values`).
    pub values: Vec<PathBuf>,
    /// The release namespace (`--namespace`).
    pub namespace: String,
    pub timeout: Duration,
    pub max_bytes: u64,
}

/// What rendering one directory gave.
#[derive(Debug)]
pub enum Rendered {
    /// (source name, text), in output order.
    Sources(Vec<(String, String)>),
    /// Why it could not be rendered: reported as PC000 on `file`.
    Problem { file: String, message: String },
}

/// A program on `PATH` (or the path itself, when it has a slash).
fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// A release name helm accepts, from the chart directory's name.
fn release_name(dir: &Path) -> String {
    let raw = std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
        .to_ascii_lowercase();
    let name: String = raw.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let name = name.trim_matches('-');
    let name = if name.is_empty() { "release" } else { name };
    name.chars().take(53).collect::<String>().trim_end_matches('-').to_owned()
}

fn quote(path: &Path) -> String {
    let text = path.display().to_string();
    if text.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b)) {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Renders one directory.
pub fn render(job: &Render, how: &Renderers) -> Rendered {
    match job {
        Render::Helm(dir) => helm(dir, how),
        Render::Kustomize(dir) => kustomize(dir, how),
    }
}

fn helm(dir: &Path, how: &Renderers) -> Rendered {
    let release = release_name(dir);
    let mut args: Vec<String> = vec![
        "template".into(),
        release.clone(),
        dir.display().to_string(),
        "--namespace".into(),
        how.namespace.clone(),
    ];
    for values in &how.values {
        args.extend(["--values".into(), values.display().to_string()]);
    }
    let file = dir.join("Chart.yaml").display().to_string();
    let values: String = how.values.iter().map(|v| format!(" --values {}", quote(v))).collect();
    let by_hand =
        format!("helm template {release} {} --namespace {}{values} | portcullis lint -", quote(dir), how.namespace);
    let program = std::env::var("PORTCULLIS_HELM").unwrap_or_else(|_| "helm".to_owned());
    let Some(program) = how.enabled.then(|| find_program(&program)).flatten() else {
        let why = if how.enabled { "helm is not on PATH (or set PORTCULLIS_HELM)" } else { "--no-render" };
        return Rendered::Problem {
            file,
            message: format!("a Helm chart, not manifests; render it first: `{by_hand}` ({why})"),
        };
    };
    match run(&program, &args, how) {
        Ok(text) => Rendered::Sources(split_helm(&text, dir)),
        Err(why) => Rendered::Problem { file, message: format!("`helm template` failed: {why}; by hand: `{by_hand}`") },
    }
}

fn kustomize(dir: &Path, how: &Renderers) -> Rendered {
    let file = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| dir.join("kustomization.yaml"))
        .display()
        .to_string();
    let by_hand = format!("kubectl kustomize {} | portcullis lint -", quote(dir));
    // PORTCULLIS_KUSTOMIZE names a command (`kustomize build`); else kustomize, else kubectl.
    let command: Option<(PathBuf, Vec<String>)> = if let Ok(custom) = std::env::var("PORTCULLIS_KUSTOMIZE") {
        let mut words = custom.split_whitespace();
        words.next().and_then(find_program).map(|p| (p, words.map(str::to_owned).collect()))
    } else if let Some(p) = find_program("kustomize") {
        Some((p, vec!["build".to_owned()]))
    } else {
        let kubectl = std::env::var("PORTCULLIS_KUBECTL").unwrap_or_else(|_| "kubectl".to_owned());
        find_program(&kubectl).map(|p| (p, vec!["kustomize".to_owned()]))
    };
    let Some((program, mut args)) = how.enabled.then_some(command).flatten() else {
        let why = if how.enabled { "neither kustomize nor kubectl is on PATH" } else { "--no-render" };
        return Rendered::Problem {
            file,
            message: format!("a Kustomize directory, not manifests; render it first: `{by_hand}` ({why})"),
        };
    };
    args.push(dir.display().to_string());
    match run(&program, &args, how) {
        Ok(text) => Rendered::Sources(vec![(file, text)]),
        Err(why) => Rendered::Problem {
            file,
            message: format!("rendering the kustomization failed: {why}; by hand: `{by_hand}`"),
        },
    }
}

/// `jobs` without the kustomizations that another kustomization in `all` builds on (a base
/// listed in its `resources`, `bases` or `components`): rendered alone they would put the
/// base's objects in the wrong namespace, beside the overlay's real ones.
pub fn without_bases(jobs: &[Render], all: &[Render]) -> Vec<Render> {
    let mut bases = std::collections::HashSet::new();
    for job in all {
        let Render::Kustomize(dir) = job else { continue };
        for base in kustomization_dirs(dir) {
            if let Ok(base) = std::fs::canonicalize(base) {
                bases.insert(base);
            }
        }
    }
    jobs.iter()
        .filter(|job| match job {
            Render::Kustomize(dir) => std::fs::canonicalize(dir).map_or(true, |d| !bases.contains(&d)),
            Render::Helm(_) => true,
        })
        .cloned()
        .collect()
}

/// The local directories a kustomization lists in `resources`, `bases` and `components`.
fn kustomization_dirs(dir: &Path) -> Vec<PathBuf> {
    let Some(file) = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
    else {
        return Vec::new();
    };
    let mut text = String::new();
    if std::fs::File::open(&file).and_then(|f| f.take(1 << 20).read_to_string(&mut text)).is_err() {
        return Vec::new();
    }
    let (docs, _) = crate::load::parse_source(crate::load::SourceId(0), &text);
    let Some(doc) = docs.first() else { return Vec::new() };
    ["resources", "bases", "components"]
        .iter()
        .filter_map(|key| doc.value.get(key).and_then(serde_json::Value::as_array))
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .filter(|entry| !entry.contains("://"))
        .map(|entry| dir.join(entry))
        .filter(|path| path.is_dir())
        .collect()
}

/// Runs a renderer: its stdout up to the limit, within the time limit.
fn run(program: &Path, args: &[String], how: &Renderers) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let limit = how.max_bytes;
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(out) = stdout {
            let _ = out.take(limit.saturating_add(1)).read_to_end(&mut bytes);
        }
        bytes
    });
    let stderr = child.stderr.take();
    let errors = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(err) = stderr {
            let _ = err.take(64 * 1024).read_to_end(&mut bytes);
        }
        bytes
    });
    let deadline = Instant::now() + how.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {} s", how.timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let bytes = reader.join().unwrap_or_default();
    let errors = errors.join().unwrap_or_default();
    if !status.success() {
        let text = String::from_utf8_lossy(&errors);
        let first: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).take(5).collect();
        return Err(crate::report::escape_control(&first.join(" / ")).into_owned());
    }
    if bytes.len() as u64 > limit {
        return Err(format!("its output is over {} MiB (--max-file-size)", limit / (1024 * 1024)));
    }
    String::from_utf8(bytes).map_err(|_| "its output is not UTF-8".to_owned())
}

/// Splits `helm template` output by its `# Source:` comments into one text per template,
/// named by the template's path under `dir` (the comment's first segment is the chart's name).
/// The comment line itself is dropped, so a template's first document keeps the template's
/// line numbers wherever the template does not expand to more or fewer lines.
pub fn split_helm(text: &str, dir: &Path) -> Vec<(String, String)> {
    let mut sources: Vec<(String, String)> = Vec::new();
    let fallback = format!("{} (helm template)", dir.display());
    for document in documents(text) {
        let body = match document.strip_prefix("# Source: ") {
            Some(rest) => rest.split_once('\n').map_or("", |(_, body)| body),
            None => document,
        };
        let source = document
            .lines()
            .find_map(|line| line.strip_prefix("# Source: "))
            .and_then(|path| path.trim().split_once('/'))
            .filter(|(_, rest)| !rest.split('/').any(|s| s == ".." || s.is_empty()))
            .map_or_else(|| fallback.clone(), |(_, rest)| dir.join(rest).display().to_string());
        match sources.iter_mut().find(|(name, _)| *name == source) {
            Some((_, text)) => {
                text.push_str("---\n");
                text.push_str(body);
            }
            None => sources.push((source, body.to_owned())),
        }
    }
    sources
}

/// The documents of a YAML stream, cut where the loader cuts them, without their `---` line.
fn documents(text: &str) -> Vec<&str> {
    crate::load::yaml::split_documents(text)
        .into_iter()
        .filter_map(|chunk| text.get(chunk.offset..chunk.offset + chunk.len))
        .map(|doc| match doc.split_once('\n') {
            Some((first, rest)) if first.trim_end() == "---" => rest,
            _ if doc.trim_end() == "---" => "",
            _ => doc,
        })
        .filter(|doc| !doc.trim().is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helm_output_is_split_by_template() {
        let text = "---\n# Source: shop/templates/deploy.yaml\nkind: Deployment\n---\n# Source: shop/templates/np.yaml\nkind: NetworkPolicy\n---\n# Source: shop/templates/deploy.yaml\nkind: Service\n---\n# Source: shop/../../etc/passwd\nkind: X\n";
        let sources = split_helm(text, Path::new("charts/shop"));
        let names: Vec<&str> = sources.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["charts/shop/templates/deploy.yaml", "charts/shop/templates/np.yaml", "charts/shop (helm template)"]
        );
        assert_eq!(sources[0].1, "kind: Deployment\n---\nkind: Service\n");
    }

    #[test]
    fn release_names_are_dns_labels() {
        let dir = std::env::temp_dir().join(format!("Portcullis_Chart.{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let name = release_name(&dir);
        assert!(name.starts_with("portcullis-chart-"), "{name}");
        assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        let _ = std::fs::remove_dir_all(dir);
    }
}
