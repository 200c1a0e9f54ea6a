//! Issue 17's end-to-end test: `testcases/first-hour`, a repository as application teams have
//! them (app configs, CI files, a Helm chart, a Kustomize base and overlay, plain manifests, an
//! excluded legacy directory), linted by `portcullis lint .`, by the real pre-commit hook and by
//! the GitHub Action's own lint script, with the real helm and kustomize (`kubectl kustomize`)
//! that `.ci/setup-tools` installs. The expected findings are written in that directory's
//! README from the NetworkPolicy spec; each output is a reviewed snapshot.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tool(env: &str, fallback: &str) -> PathBuf {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| common::repo().join(fallback));
    assert!(
        path.is_file(),
        "{} is missing at {}: run .ci/setup-tools (the README's test command does)",
        env,
        path.display()
    );
    path
}

/// `portcullis` with the test's helm and kubectl, no colour, in `dir`.
fn portcullis(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("PORTCULLIS_HELM", tool("PORTCULLIS_HELM", "target/tools/helm/helm"))
        .env("PORTCULLIS_KUBECTL", tool("PORTCULLIS_KUBECTL", "target/tools/kubectl/kubectl"))
        .env_remove("PORTCULLIS_KUSTOMIZE")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn testcase() -> PathBuf {
    common::repo().join("testcases/first-hour")
}

/// A copy of the test repository in a fresh git repository (with a git-ignored generated file
/// holding a broken policy, which nothing may report), for the hook and the action.
fn copy(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-first-hour-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let status = Command::new("cp").arg("-r").arg(testcase()).arg(&dir).status().unwrap();
    assert!(status.success());
    std::fs::create_dir_all(dir.join("generated")).unwrap();
    std::fs::write(
        dir.join("generated/render.yaml"),
        std::fs::read_to_string(dir.join("legacy/old-policy.yaml")).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join(".gitignore"), "generated/\n.cache-pre-commit/\n").unwrap();
    for args in [&["init", "-q"][..], &["config", "user.email", "ci@example.test"], &["config", "user.name", "CI"]] {
        assert!(Command::new("git").args(args).current_dir(&dir).status().unwrap().success());
    }
    dir
}

#[test]
fn lint_dot_finds_exactly_the_planted_mistakes() {
    let out = portcullis(&["lint", ".", "--namespace", "shop"], &testcase());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    insta::assert_snapshot!("first_hour_lint", String::from_utf8_lossy(&out.stdout));
    // Without rendering, each chart and overlay says how to render it; the base is not named.
    let out = portcullis(&["lint", ".", "--namespace", "shop", "--no-render", "--format", "json"], &testcase());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let messages: Vec<String> =
        doc["findings"].as_array().unwrap().iter().map(|f| format!("{} {}", f["file"], f["message"])).collect();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(messages[0].contains("charts/api/Chart.yaml") || messages[1].contains("charts/api/Chart.yaml"));
    let all = messages.join("\n");
    assert!(
        all.contains("render it first: `helm template api ./charts/api --namespace shop | portcullis lint -`"),
        "{all}"
    );
    assert!(all.contains("render it first: `kubectl kustomize ./deploy/overlays/prod | portcullis lint -`"), "{all}");
}

#[test]
fn the_pre_commit_hook_reports_the_same() {
    let repo = common::repo();
    let rev = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(&repo).output().unwrap();
    let rev = String::from_utf8(rev.stdout).unwrap().trim().to_owned();
    let dir = copy("hook");
    // The repository's own config, pointed at this checkout (pre-commit clones it at `rev`).
    std::fs::write(
        dir.join(".pre-commit-config.yaml"),
        format!(
            "repos:\n  - repo: {}\n    rev: {rev}\n    hooks:\n      - id: portcullis-lint\n        args: [--namespace, shop]\n",
            repo.display()
        ),
    )
    .unwrap();
    assert!(Command::new("git").args(["add", "-A"]).current_dir(&dir).status().unwrap().success());
    let bin = Path::new(env!("CARGO_BIN_EXE_portcullis")).parent().unwrap().to_owned();
    let out = Command::new("pre-commit")
        .args(["run", "--all-files"])
        .current_dir(&dir)
        .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()))
        .env("PRE_COMMIT_HOME", dir.join(".cache-pre-commit"))
        .env("NO_COLOR", "1")
        .env("PORTCULLIS_HELM", tool("PORTCULLIS_HELM", "target/tools/helm/helm"))
        .env("PORTCULLIS_KUBECTL", tool("PORTCULLIS_KUBECTL", "target/tools/kubectl/kubectl"))
        .output()
        .expect("pre-commit is missing: run .ci/setup-tools (pip install pre-commit)");
    assert!(!out.status.success(), "the planted mistakes must block: {}", text(&out));
    // pre-commit pads the hook name with dots to the terminal width: keep what follows.
    let output =
        text(&out).replace(&dir.display().to_string(), "REPO").replace(&repo.display().to_string(), "PORTCULLIS");
    let output: String = output
        .lines()
        .map(|line| if line.starts_with("portcullis lint.") { "portcullis lint...Failed" } else { line })
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!("first_hour_pre_commit", output);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_github_action_lint_step_reports_the_same() {
    // The `Lint` step's script, exactly as action.yml has it, with the environment GitHub sets.
    let action = std::fs::read_to_string(common::repo().join("action.yml")).unwrap();
    let (docs, _) = portcullis_linter::load::parse_source(portcullis_linter::load::SourceId(0), &action);
    let steps = docs[0].value["runs"]["steps"].as_array().unwrap().clone();
    let lint = steps.iter().find(|s| s["id"] == "lint").unwrap();
    let script = lint["run"].as_str().unwrap().to_owned();
    let dir = copy("action");
    let temp = dir.join(".runner-temp");
    std::fs::create_dir_all(&temp).unwrap();
    let output_file = temp.join("github-output");
    let bin = Path::new(env!("CARGO_BIN_EXE_portcullis")).parent().unwrap().to_owned();
    let out = Command::new("bash")
        .args(["-e", "-c", &script])
        .current_dir(&dir)
        .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()))
        .env("LINT_PATH", ".")
        .env("LINT_ARGS", "--namespace shop")
        .env("FAIL_ON", "error")
        .env("RUNNER_TEMP", &temp)
        .env("GITHUB_OUTPUT", &output_file)
        .env("PORTCULLIS_HELM", tool("PORTCULLIS_HELM", "target/tools/helm/helm"))
        .env("PORTCULLIS_KUBECTL", tool("PORTCULLIS_KUBECTL", "target/tools/kubectl/kubectl"))
        .output()
        .unwrap();
    assert!(out.status.success(), "the step itself succeeds; a later step fails the job: {}", text(&out));
    let outputs = std::fs::read_to_string(&output_file).unwrap();
    assert!(outputs.contains("status=1"), "{outputs}");
    let sarif: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(temp.join("portcullis.sarif")).unwrap()).unwrap();
    assert_eq!(sarif["runs"][0]["results"].as_array().unwrap().len(), 3);
    insta::assert_snapshot!("first_hour_action", String::from_utf8_lossy(&out.stdout));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A chart helm cannot render, and a helm that is not there: each is one PC000 on `Chart.yaml`
/// saying why and the command to run by hand, and nothing of the chart is linted.
#[test]
fn a_chart_that_does_not_render_is_one_clear_finding() {
    let dir = std::env::temp_dir().join(format!("portcullis-broken-chart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("chart/templates")).unwrap();
    std::fs::write(dir.join("chart/Chart.yaml"), "apiVersion: v2\nname: broken\nversion: 0.1.0\n").unwrap();
    std::fs::write(
        dir.join("chart/templates/cm.yaml"),
        "kind: ConfigMap\nmetadata: {name: {{ .Values.missing.key }}}\n",
    )
    .unwrap();
    let out = portcullis(&["lint", ".", "--format", "json", "--fail-on", "error"], &dir);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = doc["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0]["file"], "./chart/Chart.yaml");
    let message = findings[0]["message"].as_str().unwrap();
    assert!(message.starts_with("`helm template` failed: ") && message.contains("nil pointer"), "{message}");
    assert!(
        message.ends_with("by hand: `helm template chart ./chart --namespace default | portcullis lint -`"),
        "{message}"
    );
    // No helm at all.
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["lint", ".", "--format", "json", "--fail-on", "error"])
        .current_dir(&dir)
        .env("PORTCULLIS_HELM", dir.join("no-such-helm"))
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let message = doc["findings"][0]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("render it first") && message.contains("helm is not on PATH"), "{message}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A stand-in for the GitHub REST API on loopback: answers the comment list with `existing`
/// and records every request (method, path, body).
/// A request the stand-in API saw: method, path, body.
type Seen = (String, String, String);

fn github_api(existing: serde_json::Value) -> (String, std::thread::JoinHandle<Vec<Seen>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        // The step makes two requests: the list, then one write.
        for _ in 0..2 {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned());
            let (mut length, mut expect) = (0usize, false);
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                let lower = header.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                expect |= lower.starts_with("expect: 100-continue");
                if header == "\r\n" {
                    break;
                }
            }
            let mut out = stream;
            if expect {
                out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let reply = if method == "GET" { existing.to_string() } else { "{\"id\": 42}".to_owned() };
            let status = if method == "POST" { "201 Created" } else { "200 OK" };
            write!(
                out,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            )
            .unwrap();
            seen.push((method, path, String::from_utf8_lossy(&body).into_owned()));
        }
        seen
    });
    (url, handle)
}

#[test]
fn the_github_action_diff_step_writes_the_summary_and_one_comment() {
    // The `Diff` step's script as action.yml has it, on a repository whose pull request relabels a
    // workload into a policy (testcases/diff/relabel-into-policy), with a pull_request event as
    // GitHub delivers it (the fields the step reads) and the REST API on loopback.
    let action = std::fs::read_to_string(common::repo().join("action.yml")).unwrap();
    let (docs, _) = portcullis_linter::load::parse_source(portcullis_linter::load::SourceId(0), &action);
    let steps = docs[0].value["runs"]["steps"].as_array().unwrap().clone();
    let script = steps.iter().find(|s| s["id"] == "diff").unwrap()["run"].as_str().unwrap().to_owned();
    let dir = std::env::temp_dir().join(format!("portcullis-action-diff-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("k8s")).unwrap();
    let case = common::repo().join("testcases/diff/relabel-into-policy");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.test", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    git(&["init", "-q"]);
    std::fs::copy(case.join("base/manifests.yaml"), dir.join("k8s/manifests.yaml")).unwrap();
    git(&["add", "k8s"]);
    git(&["commit", "-q", "-m", "base"]);
    let base = git(&["rev-parse", "HEAD"]);
    std::fs::copy(case.join("head/manifests.yaml"), dir.join("k8s/manifests.yaml")).unwrap();
    let temp = dir.join(".runner-temp");
    std::fs::create_dir_all(&temp).unwrap();
    let event = temp.join("event.json");
    std::fs::write(
        &event,
        serde_json::json!({
            "action": "synchronize",
            "number": 7,
            "pull_request": {"number": 7, "state": "open", "base": {"ref": "main", "sha": base}, "head": {"ref": "relabel"}},
            "repository": {"full_name": "acme/shop"},
        })
        .to_string(),
    )
    .unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_portcullis")).parent().unwrap().to_owned();
    let run = |api: &str| {
        let output = temp.join("github-output");
        let summary = temp.join("summary.md");
        let _ = std::fs::remove_file(&output);
        let _ = std::fs::remove_file(&summary);
        let out = Command::new("bash")
            .args(["-e", "-c", &script])
            .current_dir(&dir)
            .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()))
            .env("DIFF_PATH", "k8s")
            .env("DIFF_ARGS", "")
            .env("DIFF_BASE", "")
            .env("FAIL_ON", "widen")
            .env("COMMENT", "true")
            .env("GITHUB_TOKEN", "test-token")
            .env("GITHUB_EVENT_PATH", &event)
            .env("GITHUB_API_URL", api)
            .env("GITHUB_REPOSITORY", "acme/shop")
            .env("RUNNER_TEMP", &temp)
            .env("GITHUB_OUTPUT", &output)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .output()
            .unwrap();
        assert!(out.status.success(), "the step itself succeeds; a later step fails the job: {}", text(&out));
        (std::fs::read_to_string(output).unwrap(), std::fs::read_to_string(summary).unwrap())
    };
    // First push: no comment yet, one is created.
    let (api, server) = github_api(serde_json::json!([{"id": 5, "body": "LGTM"}]));
    let (outputs, summary) = run(&api);
    let requests = server.join().unwrap();
    assert!(outputs.contains("status=1"), "widening fails the job later: {outputs}");
    assert!(summary.contains("### portcullis diff") && summary.contains("➕ opened | 5432/TCP"), "{summary}");
    assert_eq!(requests[0].0, "GET");
    assert_eq!(requests[0].1, "/repos/acme/shop/issues/7/comments?per_page=100");
    assert_eq!((requests[1].0.as_str(), requests[1].1.as_str()), ("POST", "/repos/acme/shop/issues/7/comments"));
    let posted: serde_json::Value = serde_json::from_str(&requests[1].2).unwrap();
    let body = posted["body"].as_str().unwrap();
    assert!(body.starts_with("<!-- portcullis-diff -->\n### portcullis diff"), "{body}");
    // The next push finds it by its marker and updates it in place.
    let (api, server) = github_api(serde_json::json!([{"id": 42, "body": body}]));
    run(&api);
    let requests = server.join().unwrap();
    assert_eq!((requests[1].0.as_str(), requests[1].1.as_str()), ("PATCH", "/repos/acme/shop/issues/comments/42"));
    let _ = std::fs::remove_dir_all(&dir);
}
