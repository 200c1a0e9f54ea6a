//! The pre-commit hook (`.pre-commit-hooks.yaml`) with the real `pre-commit` (PyPI, installed by
//! `.ci/setup-tools`): a temporary git repository uses this repository's hook at its current
//! commit; a commit with a broken policy is blocked, the fixed one goes through, and files that
//! are not manifests (a workflow, a Helm template, package.json, docker-compose, an OpenAPI
//! spec) neither break nor block it, nor do files the config excludes or git ignores.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn git(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new("git").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

const NAMESPACE: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-dns, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
    - to:
        - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
          podSelector: {matchLabels: {k8s-app: kube-dns}}
      ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]
";

const APP: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: shop/api:1.0, ports: [{containerPort: 8080, name: http}]}]
";

/// Egress rules that `policyTypes: [Ingress]` silently ignores: PC008, an error.
const BROKEN: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-egress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  policyTypes: [Ingress]
  egress:
    - to: [{podSelector: {matchLabels: {app: db}}}]
      ports: [{port: 5432}]
";

#[test]
fn the_hook_blocks_a_broken_policy_and_passes_the_fix() {
    let repo = common::repo();
    assert!(repo.join(".pre-commit-hooks.yaml").is_file());
    let rev = String::from_utf8(git(&repo, &["rev-parse", "HEAD"]).stdout).unwrap().trim().to_owned();
    // The hook as committed: pre-commit clones this repository at `rev`.
    let dirty = git(&repo, &["status", "--porcelain", "--", ".pre-commit-hooks.yaml"]).stdout;
    assert!(dirty.is_empty(), "commit .pre-commit-hooks.yaml before running this test");

    let dir = std::env::temp_dir().join(format!("portcullis-precommit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("k8s")).unwrap();
    std::fs::create_dir_all(dir.join(".github/workflows")).unwrap();
    std::fs::create_dir_all(dir.join("chart/templates")).unwrap();
    git(&dir, &["init", "-q"]);
    git(&dir, &["config", "user.email", "ci@example.test"]);
    git(&dir, &["config", "user.name", "CI"]);
    std::fs::write(
        dir.join(".pre-commit-config.yaml"),
        format!("repos:\n  - repo: {}\n    rev: {rev}\n    hooks:\n      - id: portcullis-lint\n", repo.display()),
    )
    .unwrap();
    std::fs::write(dir.join("k8s/namespace.yaml"), NAMESPACE).unwrap();
    std::fs::write(dir.join("k8s/api.yaml"), APP).unwrap();
    // Not manifests: excluded from linting, and harmless as context.
    std::fs::write(dir.join(".github/workflows/ci.yml"), "on: push\njobs: {}\n").unwrap();
    std::fs::write(dir.join("chart/templates/cm.yaml"), "kind: ConfigMap\nmetadata: {name: {{ .Release.Name }}}\n")
        .unwrap();
    std::fs::write(dir.join("package.json"), r#"{"name": "shop", "version": "1.0.0", "scripts": {"test": "jest"}}"#)
        .unwrap();
    std::fs::write(dir.join("docker-compose.yml"), "services:\n  api: {image: shop/api, ports: ['8080:8080']}\n")
        .unwrap();
    std::fs::write(dir.join("openapi.yaml"), "openapi: 3.0.0\ninfo: {title: shop, version: '1'}\npaths: {}\n").unwrap();
    // A broken policy the config excludes (committed, so pre-commit names it), and one git
    // ignores (generated, never committed, but on disk for the context walk).
    std::fs::create_dir_all(dir.join("legacy")).unwrap();
    std::fs::write(dir.join("legacy/old.yaml"), BROKEN.replace("api-egress", "old")).unwrap();
    std::fs::write(dir.join("portcullis.yaml"), "exclude: [legacy/]\n").unwrap();
    std::fs::create_dir_all(dir.join("generated")).unwrap();
    std::fs::write(dir.join("generated/render.yaml"), BROKEN.replace("api-egress", "generated")).unwrap();
    std::fs::write(dir.join(".gitignore"), "generated/\n.cache-pre-commit/\n").unwrap();

    // `portcullis` on PATH, as the hook's `language: system` expects.
    let bin = Path::new(env!("CARGO_BIN_EXE_portcullis")).parent().unwrap().to_owned();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let home = dir.join(".cache-pre-commit");
    let pre_commit = |args: &[&str]| {
        Command::new("pre-commit")
            .args(args)
            .current_dir(&dir)
            .env("PATH", &path)
            .env("PRE_COMMIT_HOME", &home)
            .output()
            .expect("pre-commit is missing: run .ci/setup-tools (pip install pre-commit)")
    };
    let commit = |message: &str| {
        git(&dir, &["add", "-A"]);
        let out = pre_commit(&["run"]);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if out.status.success() {
            git(&dir, &["commit", "-q", "--no-verify", "-m", message]);
        }
        (out.status.success(), text)
    };

    let (ok, text) = commit("shop: namespace and api");
    assert!(ok, "a clean namespace must pass:\n{text}");
    assert!(!text.contains("PC000") && !text.contains("old.yaml"), "{text}");

    // A commit touching only files that are not manifests: the hook runs and passes.
    std::fs::write(dir.join("package.json"), r#"{"name": "shop", "version": "1.0.1"}"#).unwrap();
    let (ok, text) = commit("bump");
    assert!(ok, "other JSON must not trip the hook:\n{text}");

    std::fs::write(dir.join("k8s/api-egress.yaml"), BROKEN).unwrap();
    let (ok, text) = commit("api: egress to the database");
    assert!(!ok, "the broken policy must block the commit:\n{text}");
    assert!(text.contains("PC008") && text.contains("k8s/api-egress.yaml"), "{text}");

    std::fs::write(dir.join("k8s/api-egress.yaml"), BROKEN.replace("policyTypes: [Ingress]", "policyTypes: [Egress]"))
        .unwrap();
    let (ok, text) = commit("api: egress to the database, fixed");
    assert!(ok, "the fixed policy must pass:\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The GitHub Action and the hook definition are well-formed and say what docs/ci.md says.
#[test]
fn the_action_and_hook_definitions_hold_together() {
    let repo = common::repo();
    let parse = |name: &str| {
        let text = std::fs::read_to_string(repo.join(name)).unwrap();
        let (mut docs, problems) = portcullis_linter::load::parse_source(portcullis_linter::load::SourceId(0), &text);
        assert!(problems.is_empty(), "{name}: {problems:?}");
        docs.remove(0).value
    };
    let action = parse("action.yml");
    assert_eq!(action["runs"]["using"], "composite");
    for input in ["path", "fail-on", "args", "sarif", "mode", "base", "comment", "token"] {
        assert!(action["inputs"][input]["default"].is_string(), "input {input}");
    }
    let uses: Vec<&str> =
        action["runs"]["steps"].as_array().unwrap().iter().filter_map(|s| s["uses"].as_str()).collect();
    assert!(uses.iter().any(|u| u.starts_with("github/codeql-action/upload-sarif@")), "{uses:?}");
    let hooks = parse(".pre-commit-hooks.yaml");
    let hook = &hooks[0];
    assert_eq!(hook["id"], "portcullis-lint");
    assert_eq!(hook["entry"], "portcullis lint --context . --allow-empty");
    assert_eq!(hook["pass_filenames"], true);
    let diff = &hooks[1];
    assert_eq!(diff["id"], "portcullis-diff");
    assert_eq!(diff["entry"], "portcullis diff --git HEAD --fail-on widen");
    assert_eq!(diff["pass_filenames"], false);
    let docs = std::fs::read_to_string(repo.join("docs/ci.md")).unwrap();
    assert!(docs.contains("id: portcullis-lint") && docs.contains("uses: portcullis-dev/portcullis@"));
    assert!(docs.contains("id: portcullis-diff") && docs.contains("mode: diff"));
}

/// The opt-in `portcullis-diff` hook, run by the real pre-commit: a commit that opens a
/// connection (an allow-all egress rule) is refused with the connections it opens; one that
/// only closes connections passes.
#[test]
fn the_diff_hook_refuses_a_commit_that_opens_connections() {
    let repo = common::repo();
    let rev = String::from_utf8(git(&repo, &["rev-parse", "HEAD"]).stdout).unwrap().trim().to_owned();
    let dirty = git(&repo, &["status", "--porcelain", "--", ".pre-commit-hooks.yaml"]).stdout;
    assert!(dirty.is_empty(), "commit .pre-commit-hooks.yaml before running this test");
    let dir = std::env::temp_dir().join(format!("portcullis-precommit-diff-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("k8s")).unwrap();
    git(&dir, &["init", "-q"]);
    git(&dir, &["config", "user.email", "ci@example.test"]);
    git(&dir, &["config", "user.name", "CI"]);
    std::fs::write(
        dir.join(".pre-commit-config.yaml"),
        format!("repos:\n  - repo: {}\n    rev: {rev}\n    hooks:\n      - id: portcullis-diff\n", repo.display()),
    )
    .unwrap();
    std::fs::write(dir.join("k8s/namespace.yaml"), NAMESPACE).unwrap();
    std::fs::write(dir.join("k8s/api.yaml"), APP).unwrap();
    std::fs::write(dir.join(".gitignore"), ".cache-pre-commit/\n").unwrap();
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "--no-verify", "-m", "shop"]);
    let bin = Path::new(env!("CARGO_BIN_EXE_portcullis")).parent().unwrap().to_owned();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let commit = |message: &str| {
        git(&dir, &["add", "-A"]);
        let out = Command::new("pre-commit")
            .args(["run"])
            .current_dir(&dir)
            .env("PATH", &path)
            .env("PRE_COMMIT_HOME", dir.join(".cache-pre-commit"))
            .output()
            .expect("pre-commit is missing: run .ci/setup-tools (pip install pre-commit)");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if out.status.success() {
            git(&dir, &["commit", "-q", "--no-verify", "-m", message]);
        }
        (out.status.success(), text)
    };
    // An egress rule that allows everything opens the api to every destination: refused, and
    // the diff says what opens.
    let open_egress = NAMESPACE.replace("  egress:\n", "  egress:\n    - {}\n");
    assert_ne!(open_egress, NAMESPACE);
    std::fs::write(dir.join("k8s/namespace.yaml"), &open_egress).unwrap();
    let (ok, text) = commit("allow all egress");
    assert!(!ok, "opening connections must be refused:\n{text}");
    assert!(text.contains("Opened:") && text.contains("from shop/Deployment/api"), "{text}");
    std::fs::write(dir.join("k8s/namespace.yaml"), NAMESPACE).unwrap();
    // Keeping it and narrowing DNS to UDP only closes a connection: allowed.
    std::fs::write(dir.join("k8s/namespace.yaml"), NAMESPACE.replace(", {port: 53, protocol: TCP}", "")).unwrap();
    let (ok, text) = commit("dns over udp only");
    assert!(ok, "a commit that only closes connections passes:\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
