//! No command loses or misplaces a file (issue 16, class 4): `fix` and `resolve` never write
//! over one of their inputs, never outside the output directory, never over a file portcullis
//! did not write without `--force`, never empty an existing file when there is nothing to write,
//! and never succeed on invalid input (a GitOps pipeline would commit an empty policy file that
//! Argo CD or Flux then prunes).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn portcullis(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis")).args(args).current_dir(cwd).env("NO_COLOR", "1").output().unwrap()
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-files-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A namespace with a workload and no default-deny: `fix` has something to write.
const NEEDS_FIX: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
";

#[test]
fn fix_never_writes_over_its_input() {
    let dir = tempdir("input");
    std::fs::write(dir.join("app.yaml"), NEEDS_FIX).unwrap();
    let out = portcullis(&["fix", "app.yaml", "--out", "app.yaml"], &dir);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is one of this command's inputs"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(dir.join("app.yaml")).unwrap(), NEEDS_FIX);
    // Reached through the directory and another path: still the same file.
    let out = portcullis(&["fix", ".", "--out", "./app.yaml", "--force"], &dir);
    assert_eq!(out.status.code(), Some(2), "--force never allows overwriting an input");
    assert_eq!(std::fs::read_to_string(dir.join("app.yaml")).unwrap(), NEEDS_FIX);
}

#[test]
fn fix_never_replaces_a_foreign_file_without_force_and_never_empties_one() {
    let dir = tempdir("foreign");
    let input = dir.join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("app.yaml"), NEEDS_FIX).unwrap();
    std::fs::write(dir.join("notes.yaml"), "my: notes\n").unwrap();
    let out = portcullis(&["fix", "in", "--out", "notes.yaml"], &dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("was not written by portcullis; pass --force"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(dir.join("notes.yaml")).unwrap(), "my: notes\n");

    // Its own earlier output is replaced; with --force, a foreign file too.
    assert_eq!(portcullis(&["fix", "in", "--out", "fix.yaml"], &dir).status.code(), Some(0));
    assert_eq!(portcullis(&["fix", "in", "--out", "fix.yaml"], &dir).status.code(), Some(0));
    assert_eq!(portcullis(&["fix", "in", "--out", "notes.yaml", "--force"], &dir).status.code(), Some(0));
    assert!(std::fs::read_to_string(dir.join("notes.yaml")).unwrap().contains("default-deny"));

    // Nothing to fix: an existing --out file is left exactly as it was.
    let clean = dir.join("clean");
    std::fs::create_dir(&clean).unwrap();
    std::fs::write(clean.join("cm.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: shop}\n")
        .unwrap();
    let before = std::fs::read_to_string(dir.join("fix.yaml")).unwrap();
    let out = portcullis(&["fix", "clean", "--out", "fix.yaml"], &dir);
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("nothing to fix"));
    assert_eq!(std::fs::read_to_string(dir.join("fix.yaml")).unwrap(), before);
    // No temporary file is left behind.
    let stray: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn namespace_names_never_escape_the_output_directory() {
    let dir = tempdir("escape");
    let out_dir = dir.join("out");
    std::fs::create_dir(&out_dir).unwrap();
    for ns in ["../escaped", "/tmp/abs"] {
        std::fs::write(dir.join("app.yaml"), NEEDS_FIX.replace("namespace: shop", &format!("namespace: \"{ns}\"")))
            .unwrap();
        let out = portcullis(&["fix", "app.yaml", "--out", "out"], &dir);
        assert_eq!(out.status.code(), Some(2), "{ns}: {}", stderr(&out));
        assert!(stderr(&out).contains("is not a valid namespace name"), "{}", stderr(&out));
    }
    assert!(!dir.join("escaped-portcullis-fix.yaml").exists());
    assert!(!Path::new("/tmp/abs-portcullis-fix.yaml").exists());
    assert_eq!(std::fs::read_dir(&out_dir).unwrap().count(), 0);
}

#[test]
fn an_output_in_a_missing_directory_names_the_path() {
    let dir = tempdir("missing");
    std::fs::write(dir.join("app.yaml"), NEEDS_FIX).unwrap();
    let out = portcullis(&["fix", "app.yaml", "--out", "missing/fix.yaml"], &dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing/fix.yaml: the directory missing does not exist"), "{}", stderr(&out));
}

#[test]
fn fix_and_resolve_fail_on_invalid_input_and_write_nothing() {
    let dir = tempdir("invalid");
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    for (name, text) in [("syntax.yaml", "kind: [unclosed\n"), ("bomb.yaml", bomb), ("empty.yaml", "")] {
        std::fs::write(dir.join(name), text).unwrap();
        for command in ["fix", "resolve"] {
            let out = portcullis(&[command, name, "--out", "written.yaml"], &dir);
            assert_eq!(out.status.code(), Some(2), "{command} {name}: {}", stderr(&out));
            assert!(stderr(&out).contains("nothing was written"), "{command} {name}: {}", stderr(&out));
            assert!(!dir.join("written.yaml").exists(), "{command} {name} wrote a file");
            assert!(out.stdout.is_empty(), "{command} {name} printed output");
        }
    }
}

#[test]
fn resolve_exits_1_when_the_size_guard_drops_addresses() {
    let dir = tempdir("size");
    let mut intent = String::from(
        "apiVersion: portcullis.dev/v1alpha1\nkind: EgressIntent\nmetadata: {name: many, namespace: shop}\nspec:\n  podSelector: {}\n  egress:\n",
    );
    let mut hosts = String::new();
    for n in 0..60 {
        intent.push_str(&format!("  - {{fqdn: host{n}.example.com, ports: [{{port: 443}}]}}\n"));
        for a in 0..200 {
            hosts.push_str(&format!("2001:db8:{n:x}::{a:x} host{n}.example.com\n"));
        }
    }
    std::fs::write(dir.join("intent.yaml"), intent).unwrap();
    std::fs::write(dir.join("hosts"), hosts).unwrap();
    let out = portcullis(&["resolve", "intent.yaml", "--hosts", "hosts"], &dir);
    assert!(stderr(&out).contains("left out by the size limit"), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(1), "addresses were left out: not a clean render");
}

/// Regression (issue 16 class 5, issue 17 item 2): empty input was "No findings in 0 files",
/// exit 0, so a broken render step turned CI green.
#[test]
fn lint_fails_on_input_without_manifests_unless_allowed() {
    let dir = tempdir("empty");
    let run = |args: &[&str], stdin: &[u8]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .current_dir(&dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(&["lint", "-"], b"");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no Kubernetes objects in the input (1 file read)"), "{}", stderr(&out));
    std::fs::create_dir(dir.join("nothing")).unwrap();
    assert_eq!(run(&["lint", "nothing"], b"").status.code(), Some(2));
    assert_eq!(run(&["lint", "-", "--allow-empty"], b"# only a comment\n").status.code(), Some(0));
    // Documents that are plainly not objects are skipped, so they are an empty input, said so.
    let out = run(&["lint", "-"], b"foo: 1\n");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("1 document skipped: not Kubernetes"), "{}", stderr(&out));
    // One that is nearly an object is a finding (PC000), not an empty input.
    let out = run(&["lint", "-"], b"kind: Deployment\nmetadata: {name: x}\n");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

/// Regression (issue 16, class 5): a symlinked directory inside a walked tree was skipped
/// silently. It is followed, and a link cycle ends the descent.
#[test]
fn symlinked_directories_are_walked_once() {
    let dir = tempdir("symlink");
    let real = dir.join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("app.yaml"), NEEDS_FIX).unwrap();
    let tree = dir.join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::os::unix::fs::symlink(&real, tree.join("linked")).unwrap();
    std::os::unix::fs::symlink(&tree, tree.join("loop")).unwrap();
    let out = portcullis(&["lint", "tree", "--format", "json", "--fail-on", "never"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"]["objects"], 1, "{report}");
}

/// Regression (issue 16, class 5): `map --from /dev/zero` grew to 4 GB in 20 s.
#[test]
fn map_input_is_bounded() {
    let dir = tempdir("map-zero");
    let started = std::time::Instant::now();
    let out = portcullis(&["map", "--from", "/dev/zero"], &dir);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("limit"), "{}", stderr(&out));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

/// Issue 17: a repository's other files, its `exclude` globs and its `.gitignore`. Expected
/// verdicts follow gitignore(5) and the documented config keys.
#[test]
fn walks_skip_other_files_and_honour_excludes_and_gitignore() {
    let dir = tempdir("walk-filters");
    let policy = |name: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{podSelector: {{}}, policyTypes: [Ingress, Egress], egress: [{{}}]}}\n"
        )
    };
    for (path, text) in [
        ("k8s/a.yaml", policy("a")),
        ("legacy/b.yaml", policy("b")),
        ("generated/c.yaml", policy("c")),
        ("k8s/nested/tmp-d.yaml", policy("d")),
        ("package.json", r#"{"name": "x"}"#.to_owned()),
        ("docker-compose.yml", "services: {web: {image: nginx}}\n".to_owned()),
        (".gitignore", "generated/\n".to_owned()),
        ("k8s/.gitignore", "tmp-*.yaml\n".to_owned()),
        ("portcullis.yaml", "exclude: [legacy/]\n".to_owned()),
    ] {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    // Outside a git repository, .gitignore means nothing (as for git): c and d are linted.
    let out = portcullis(&["lint", ".", "--format", "json", "--fail-on", "never"], &dir);
    let names = |out: &Output| -> Vec<String> {
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut names: Vec<String> = doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["object"]["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        names.sort();
        names.dedup();
        names
    };
    assert_eq!(names(&out), ["a", "c", "d"], "{}", stderr(&out));
    assert!(Command::new("git").args(["init", "-q"]).current_dir(&dir).status().unwrap().success());
    let out = portcullis(&["lint", ".", "--format", "json", "--fail-on", "never"], &dir);
    assert_eq!(names(&out), ["a"], "{}", stderr(&out));
    let human = portcullis(&["lint", ".", "--fail-on", "never"], &dir);
    let text = String::from_utf8_lossy(&human.stdout).into_owned();
    assert!(
        text.contains(
            "in 4 files (1 object; 3 documents skipped: not Kubernetes; 1 path excluded; 2 paths in .gitignore)"
        ),
        "{text}"
    );
    // --no-ignore reads them again; --exclude adds to the config's globs.
    let out = portcullis(&["lint", ".", "--format", "json", "--fail-on", "never", "--no-ignore"], &dir);
    assert_eq!(names(&out), ["a", "c", "d"]);
    let out = portcullis(&["lint", ".", "--format", "json", "--fail-on", "never", "--exclude", "*.yaml"], &dir);
    assert_eq!(out.status.code(), Some(2), "everything excluded is an empty input: {}", stderr(&out));
    // Files named explicitly (as pre-commit names them) still honour exclude, not .gitignore.
    let out = portcullis(&["lint", "legacy/b.yaml", "--allow-empty"], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = portcullis(&["lint", "generated/c.yaml", "--fail-on", "never", "--format", "json"], &dir);
    assert_eq!(names(&out), ["c"]);
    // include: only matching files are walked.
    std::fs::write(dir.join("portcullis.yaml"), "include: ['k8s/**']\n").unwrap();
    let out = portcullis(&["lint", ".", "--format", "json", "--fail-on", "never"], &dir);
    assert_eq!(names(&out), ["a"]);
    let _ = std::fs::remove_dir_all(dir);
}
