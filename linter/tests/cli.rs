//! The `portcullis` binary end to end: formats, exit codes, stdin, `--context`, `fix`, and
//! hostile input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn portcullis(args: &[&str], cwd: &Path, stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        pipe.write_all(bytes).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn demo_output_in_every_format() {
    let repo = common::repo();
    for format in ["human", "json", "sarif", "github", "junit"] {
        let out = portcullis(&["lint", "testcases/demo", "--format", format], &repo, None);
        assert_eq!(out.status.code(), Some(1), "{format}: the demo has findings");
        insta::assert_snapshot!(format!("demo_{format}"), stdout(&out));
    }
}

#[test]
fn demo_reports_every_planted_mistake() {
    let out = portcullis(&["lint", "testcases/demo", "--format", "json"], &common::repo(), None);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: Vec<(String, String, u64)> = doc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_owned(),
                f["file"].as_str().unwrap().to_owned(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect();
    let expect = [
        ("PC001", "testcases/demo/namespace.yaml", 4),
        ("PC003", "testcases/demo/apps/api.yaml", 4),
        ("PC003", "testcases/demo/apps/frontend.yaml", 4),
        ("PC003", "testcases/demo/apps/nightly-report.yaml", 4),
        ("PC003", "testcases/demo/apps/postgres.yaml", 4),
        ("PC004", "testcases/demo/apps/payments.yaml", 5),
        ("PC008", "testcases/demo/policies/api.yaml", 20),
        ("PC009", "testcases/demo/policies/payments-egress.yaml", 27),
        ("PC011", "testcases/demo/policies/postgres.yaml", 19),
    ];
    for (code, file, line) in expect {
        assert!(
            found.contains(&(code.to_owned(), file.to_owned(), line)),
            "missing {code} at {file}:{line}; found {found:?}"
        );
    }
    assert_eq!(found.len(), expect.len(), "unexpected extra findings: {found:?}");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["summary"]["errors"], 7);
}

#[test]
fn exit_codes_follow_fail_on() {
    let repo = common::repo();
    let never = portcullis(&["lint", "testcases/demo", "--fail-on", "never"], &repo, None);
    assert_eq!(never.status.code(), Some(0));
    let warnings_only = "testcases/rules/PC011/or-peers/input.yaml";
    assert_eq!(portcullis(&["lint", warnings_only], &repo, None).status.code(), Some(1));
    assert_eq!(portcullis(&["lint", warnings_only, "--fail-on", "error"], &repo, None).status.code(), Some(0));
    let clean = "testcases/rules/PC003/ok-correct-dns/input.yaml";
    assert_eq!(portcullis(&["lint", clean], &repo, None).status.code(), Some(0));
    let missing = portcullis(&["lint", "no/such/path"], &repo, None);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no/such/path: not a file or directory"));
    assert_eq!(portcullis(&["lint", "--format", "xml", clean], &repo, None).status.code(), Some(2));
}

#[test]
fn bad_config_is_a_usage_error_naming_file_and_line() {
    let dir = tempdir("config");
    std::fs::write(dir.join(".portcullis.yaml"), "rules:\n  PC042: off\n").unwrap();
    std::fs::write(dir.join("a.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n").unwrap();
    let out = portcullis(&["lint", "a.yaml"], &dir, None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(".portcullis.yaml:2:3: unknown rule \"PC042\""), "{err}");
}

#[test]
fn config_turns_rules_off_and_changes_levels() {
    let dir = tempdir("levels");
    let input = common::repo().join("testcases/rules/PC011/or-peers/input.yaml");
    std::fs::copy(&input, dir.join("p.yaml")).unwrap();
    std::fs::write(dir.join("portcullis.yaml"), "rules: {peer-and-or-confusion: error}\n").unwrap();
    let out = portcullis(&["lint", "p.yaml", "--format", "json"], &dir, None);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["findings"][0]["severity"], "error");
    std::fs::write(dir.join("portcullis.yaml"), "rules: {PC011: off}\n").unwrap();
    assert_eq!(portcullis(&["lint", "p.yaml"], &dir, None).status.code(), Some(0));
}

#[test]
fn stdin_is_linted_like_a_file() {
    let text = std::fs::read(common::repo().join("testcases/rules/PC003/no-dns-rule/input.yaml")).unwrap();
    let out = portcullis(&["lint", "-", "--format", "json"], &common::repo(), Some(&text));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<&str> = doc["findings"].as_array().unwrap().iter().map(|f| f["code"].as_str().unwrap()).collect();
    assert!(codes.contains(&"PC003"), "{codes:?}");
    assert_eq!(doc["findings"][0]["file"], "<stdin>");
}

#[test]
fn context_policies_count_but_are_not_reported() {
    // Lint only the Deployment; the policies that break its DNS live in the context.
    let repo = common::repo();
    let out = portcullis(
        &["lint", "testcases/demo/apps/api.yaml", "--context", "testcases/demo", "--format", "json"],
        &repo,
        None,
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = doc["findings"].as_array().unwrap();
    assert!(findings.iter().all(|f| f["file"] == "testcases/demo/apps/api.yaml"), "{findings:?}");
    assert!(findings.iter().any(|f| f["code"] == "PC003"));
    assert_eq!(doc["summary"]["files"], 1);
}

/// `portcullis trace TABLE --from FROM --to TO --port PORT [--format json]` in the repository:
/// exit code and stdout.
fn trace(table: &str, from: &str, to: &str, port: &str, json: bool) -> (Option<i32>, String) {
    let mut args = vec!["trace", table, "--from", from, "--to", to, "--port", port];
    if json {
        args.extend(["--format", "json"]);
    }
    let out = portcullis(&args, &common::repo(), None);
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn trace_names_the_cilium_rule_that_decided_and_what_it_cannot_decide() {
    // The verdicts are the truth tables' (testcases/semantics/27-... and 29-...).
    let deny_table = "testcases/semantics/27-cilium-deny-table-and-default-deny.yaml";
    let (code, text) = trace(deny_table, "default/other", "default/legacy", "22", false);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("denied by a Cilium deny rule (deny wins over every allow): CiliumNetworkPolicy default/legacy-deny-other-on-22 ingressDeny[0]"),
        "{text}"
    );
    let (_, text) = trace(deny_table, "default/other", "default/legacy", "22", true);
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["ingress"]["decidedBy"], "ciliumDeny");
    assert_eq!(doc["ingress"]["cilium"]["deniedBy"]["list"], "ingressDeny");
    let fqdn_table = "testcases/semantics/29-cilium-fqdn-and-undecidable.yaml";
    let (code, text) = trace(fqdn_table, "shop/operator", "shop/db", "5432", false);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("the verdict may be the opposite: CiliumNetworkPolicy shop/operator-egress egress[1]"),
        "{text}"
    );
    assert!(text.contains("toServices needs the Service"), "{text}");
    let (code, text) = trace(fqdn_table, "shop/payments", "api.stripe.com", "443", true);
    assert_eq!(code, Some(0), "{text}");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["egress"]["decidedBy"], "isolation");
    assert_eq!(doc["egress"]["cilium"]["allowedBy"][0]["rule"], 1);
    assert!(doc["undecided"].is_null());
}

#[test]
fn diff_exit_codes_follow_fail_on() {
    // testcases/diff/policy-deleted closes 8080/TCP and opens nothing.
    let case = "testcases/diff/policy-deleted";
    let run = |fail_on: &str| {
        let out = portcullis(
            &["diff", &format!("{case}/base"), &format!("{case}/head"), "--fail-on", fail_on, "--format", "json"],
            &common::repo(),
            None,
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), doc)
    };
    let (code, doc) = run("narrow");
    assert_eq!(code, Some(1));
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["groups"][0]["change"], "closed");
    assert_eq!(run("widen").0, Some(0));
    assert_eq!(run("any").0, Some(1));
    assert_eq!(run("never").0, Some(0));
    // Nothing to compare is an error, not an empty diff.
    let empty = tempdir("diff-empty");
    let out = portcullis(&["diff", &format!("{case}/base"), &empty.display().to_string()], &common::repo(), None);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&empty).unwrap();
}

#[test]
fn diff_git_reads_the_old_side_from_git_objects() {
    // A repository whose committed manifests are testcases/diff/policy-deleted/base and whose
    // work tree holds its head: `diff --git HEAD` finds the closed connection without a checkout.
    let repo = tempdir("diff-git");
    let case = common::repo().join("testcases/diff/policy-deleted");
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.test", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(&repo)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "-q"]);
    std::fs::create_dir_all(repo.join("k8s")).unwrap();
    std::fs::copy(case.join("base/manifests.yaml"), repo.join("k8s/manifests.yaml")).unwrap();
    git(&["add", "k8s"]);
    git(&["commit", "-q", "-m", "base"]);
    std::fs::copy(case.join("head/manifests.yaml"), repo.join("k8s/manifests.yaml")).unwrap();
    let out = portcullis(&["diff", "--git", "HEAD", "k8s", "--fail-on", "narrow"], &repo, None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("- 8080/TCP from shop/Deployment/frontend to shop/Deployment/api"), "{text}");
    // Both sides from git: the same change between two commits.
    git(&["commit", "-q", "-am", "head"]);
    let out = portcullis(&["diff", "--git", "HEAD~1", "--head", "HEAD", "k8s"], &repo, None);
    assert!(String::from_utf8_lossy(&out.stdout).contains("- 8080/TCP"), "{}", String::from_utf8_lossy(&out.stderr));
    // A blob over --max-file-size is refused before it is read.
    let out = portcullis(&["diff", "--git", "HEAD~1", "k8s", "--max-file-size", "0"], &repo, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("larger than --max-file-size"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A path outside the repository is refused by git, and named.
    let out = portcullis(&["diff", "--git", "HEAD", "../.."], &repo, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("outside repository"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A revision that does not exist is an error naming it.
    let out = portcullis(&["diff", "--git", "no-such-rev", "k8s"], &repo, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-rev"));
    // A side read from git gets the policies its EgressIntents render to, as the work tree's
    // side does: an unchanged intent is no change (it was read without them: every connection
    // of the intent's pods looked opened on one side).
    let intent = common::repo().join("testcases/diff/egress-intent-name-added/head/manifests.yaml");
    std::fs::copy(&intent, repo.join("k8s/manifests.yaml")).unwrap();
    git(&["commit", "-q", "-am", "intent"]);
    let out = portcullis(&["diff", "--git", "HEAD", "k8s", "--fail-on", "any"], &repo, None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("No connection opened or closed"), "{text}");
    std::fs::remove_dir_all(&repo).unwrap();
}

#[test]
fn trace_names_the_calico_tier_and_rule_that_decided() {
    // The verdicts are the truth tables' (testcases/semantics/30-... and 31-...).
    let tiers = "testcases/semantics/30-calico-tiers-order-pass.yaml";
    let (code, text) = trace(tiers, "apps/web", "apps/db", "5432", false);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("denied by Calico tier security: no rule matched; the tier's default action Deny applies"),
        "{text}"
    );
    assert!(text.contains("Calico NetworkPolicy apps/db-from-api (tier security, order 10)"), "{text}");
    let (code, text) = trace(tiers, "apps/web", "apps/ssh", "22", true);
    assert_eq!(code, Some(1), "{text}");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["ingress"]["decidedBy"], "calico");
    let tier = &doc["ingress"]["calico"]["tiers"][0];
    assert_eq!(tier["tier"], "default");
    assert_eq!(tier["action"], "Deny");
    assert_eq!(tier["by"]["name"], "ssh-deny-22-from-web");
    assert_eq!(tier["by"]["rule"], 0);
    let (code, text) = trace(tiers, "apps/web", "apps/ssh", "9000", false);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("allowed by Calico tier default: allowed by apps/ssh-from-web ingress[0]"), "{text}");
    let (code, text) = trace(tiers, "apps/api", "apps/cache", "6379", false);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("Calico tier platform passes it on"), "{text}");
    let entities = "testcases/semantics/31-calico-entities-selectors-nets.yaml";
    let (code, text) = trace(entities, "red/operator", "red/api", "5432", false);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("the verdict may be the opposite: Allow Calico NetworkPolicy red/operator-egress"), "{text}");
    assert!(text.contains("serviceAccounts: the pod's service account is not read"), "{text}");
}

#[test]
fn trace_names_the_cluster_network_policy_tier_that_decided() {
    // The verdicts are the truth table's (testcases/semantics/22-...): trace must say which
    // layer gave them.
    let table = "testcases/semantics/22-cnp-pass-and-baseline.yaml";
    let trace = |from: &str, to: &str, port: &str, json: bool| trace(table, from, to, port, json);
    let (code, text) = trace("dev/tool", "prod/api", "8080", false);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(
            "denied by the Admin tier: Deny ClusterNetworkPolicy dev-never-reaches-prod (priority 1) ingress[0]"
        ),
        "{text}"
    );
    let (code, text) = trace("prod/batch", "prod/api", "8080", false);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("the Admin tier passes it on: Pass ClusterNetworkPolicy prod-decides-prod"), "{text}");
    assert!(text.contains("allowed by prod/api-ingress ingress[0]"), "{text}");
    let (code, text) = trace("prod/api", "prod/batch", "80", true);
    assert_eq!(code, Some(1), "{text}");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["ingress"]["decidedBy"], "baseline");
    assert_eq!(doc["ingress"]["baseline"]["kind"], "ClusterNetworkPolicy");
    assert_eq!(doc["ingress"]["baseline"]["name"], "baseline-deny-pod-ingress");
    assert_eq!(doc["ingress"]["admin"]["action"], "Pass");
    assert_eq!(doc["egress"]["decidedBy"], "default");
}

#[test]
fn a_file_reached_twice_is_linted_once() {
    // By two spellings of its path, through its directory, and through a symlink.
    let dir = tempdir("twice");
    std::fs::copy(common::repo().join("testcases/rules/PC003/no-dns-rule/input.yaml"), dir.join("a.yaml")).unwrap();
    std::os::unix::fs::symlink(dir.join("a.yaml"), dir.join("b.yaml")).unwrap();
    let once = portcullis(&["lint", "a.yaml", "--format", "json"], &dir, None);
    let twice = portcullis(&["lint", "a.yaml", "./a.yaml", ".", "--context", ".", "--format", "json"], &dir, None);
    let once: serde_json::Value = serde_json::from_slice(&once.stdout).unwrap();
    let twice: serde_json::Value = serde_json::from_slice(&twice.stdout).unwrap();
    assert_eq!(twice["summary"]["files"], 1, "{twice}");
    assert_eq!(once["findings"].as_array().unwrap().len(), twice["findings"].as_array().unwrap().len());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fix_output_makes_the_demo_pass_the_dns_and_default_deny_rules() {
    let repo = common::repo();
    let dir = tempdir("fix");
    let fixed = dir.join("fix.yaml");
    let out = portcullis(&["fix", "testcases/demo", "--out", fixed.to_str().unwrap()], &repo, None);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = portcullis(&["lint", "testcases/demo", fixed.to_str().unwrap(), "--format", "json"], &repo, None);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<&str> = doc["findings"].as_array().unwrap().iter().map(|f| f["code"].as_str().unwrap()).collect();
    for code in ["PC001", "PC002", "PC003", "PC004"] {
        assert!(!codes.contains(&code), "{code} remains after fix: {codes:?}");
    }
    // Issue 17: the patched copies replace their originals, as `kubectl apply` of both would:
    // nothing is reported twice, and the objects are counted once.
    let before = portcullis(&["lint", "testcases/demo", "--format", "json"], &repo, None);
    let before: serde_json::Value = serde_json::from_slice(&before.stdout).unwrap();
    let mut remaining: Vec<&str> = before["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .filter(|c| !["PC001", "PC002", "PC003", "PC004"].contains(c))
        .collect();
    let mut codes = codes;
    codes.sort_unstable();
    remaining.sort_unstable();
    assert_eq!(codes, remaining, "the findings fix does not address, each once");
    let new_objects = 1; // default-deny-ingress; allow-dns and payments-egress are patched copies
    assert_eq!(doc["summary"]["objects"], before["summary"]["objects"].as_u64().unwrap() + new_objects);
    let human = portcullis(&["lint", "testcases/demo", fixed.to_str().unwrap()], &repo, None);
    assert!(stdout(&human).contains("2 objects replaced by `portcullis fix` output"), "{}", stdout(&human));
    // A namespace with no policies at all gets default-deny for both directions and DNS.
    let bare = portcullis(&["fix", "testcases/rules/PC001/no-policies/input.yaml"], &repo, None);
    let text = stdout(&bare);
    assert!(
        text.contains("name: default-deny-ingress")
            && text.contains("name: default-deny-egress")
            && text.contains("name: allow-dns"),
        "{text}"
    );
}

#[test]
fn hostile_inputs_are_findings_not_crashes() {
    let dir = tempdir("hostile");
    std::fs::write(dir.join("binary.yaml"), b"\x7fELF\x02\x01\x01\x00\x00garbage").unwrap();
    std::fs::write(dir.join("latin1.yaml"), b"name: caf\xe9\n").unwrap();
    std::fs::write(dir.join("empty.yaml"), b"").unwrap();
    std::fs::write(dir.join("deep.yaml"), "[".repeat(50_000)).unwrap();
    // 100 MB, sparse: costs no disk, and must not be read whole.
    let huge = std::fs::File::create(dir.join("huge.yaml")).unwrap();
    huge.set_len(100 * 1024 * 1024).unwrap();
    let out = portcullis(&["lint", ".", "--format", "json"], &dir, None);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_file = |name: &str| -> Vec<String> {
        doc["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["file"].as_str().unwrap().ends_with(name))
            .map(|f| f["message"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(by_file("binary.yaml")[0].contains("binary data"));
    assert!(by_file("latin1.yaml")[0].contains("not UTF-8"));
    assert!(by_file("empty.yaml").is_empty());
    assert!(by_file("deep.yaml")[0].contains("invalid YAML"));
    assert!(by_file("huge.yaml")[0].contains("larger than the 32 MiB limit"));
}

#[test]
fn rules_and_rule_commands() {
    let repo = common::repo();
    let out = portcullis(&["rules"], &repo, None);
    assert!(stdout(&out).contains("| PC003 | egress-blocks-dns | error | safe |"));
    let out = portcullis(&["rules", "--format", "json"], &repo, None);
    let rules: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rules.as_array().unwrap().len(), 30);
    let by_name = stdout(&portcullis(&["rule", "egress-blocks-dns"], &repo, None));
    assert_eq!(by_name, stdout(&portcullis(&["rule", "pc003"], &repo, None)));
    assert!(by_name.contains("## Why is this bad?"));
    assert_eq!(portcullis(&["rule", "PC999"], &repo, None).status.code(), Some(2));
}

#[test]
fn trace_explains_verdicts() {
    let repo = common::repo();
    let out = portcullis(
        &[
            "trace",
            "testcases/demo",
            "--from",
            "shop/frontend",
            "--to",
            "shop/api",
            "--port",
            "8080",
            "--format",
            "json",
        ],
        &repo,
        None,
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["verdict"], "denied", "{doc}");
    assert_eq!(doc["egress"]["isolated"], true);
    assert_eq!(doc["ingress"]["allowedBy"][0]["policy"], "api");
    assert_eq!(out.status.code(), Some(1));
    let human = portcullis(
        &["trace", "testcases/demo", "--from", "shop/payments", "--to", "203.0.113.99", "--port", "443"],
        &repo,
        None,
    );
    insta::assert_snapshot!("trace_payments_to_processor", stdout(&human));
    let unknown = portcullis(
        &["trace", "testcases/demo", "--from", "shop/nope", "--to", "1.1.1.1", "--port", "443"],
        &repo,
        None,
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no workload \"nope\" in namespace \"shop\""));
}

#[test]
fn trace_asks_for_the_kind_when_a_name_is_ambiguous() {
    let dir = tempdir("ambiguous");
    std::fs::write(
        dir.join("a.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: a}\nspec: {containers: [{name: c, image: x}]}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: a}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: x}]}\n",
    )
    .unwrap();
    let out = portcullis(&["trace", "a.yaml", "--from", "a/web", "--to", "1.1.1.1", "--port", "443"], &dir, None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is ambiguous: Pod a/web, Deployment a/web"), "{err}");
    let out =
        portcullis(&["trace", "a.yaml", "--from", "a/deployment/web", "--to", "1.1.1.1", "--port", "443"], &dir, None);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).starts_with("ALLOWED: Deployment a/web -> 1.1.1.1 on 443/TCP"));
}

#[test]
fn sarif_output_validates_against_the_official_schema() {
    let schema = std::env::var("PORTCULLIS_SARIF_SCHEMA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| common::repo().join("target/tools/sarif-2.1.0.json"));
    assert!(
        schema.is_file(),
        "the SARIF 2.1.0 schema is missing at {}; run .ci/setup-tools (the README's test command does)",
        schema.display()
    );
    let dir = tempdir("sarif");
    for (name, args) in [
        ("demo", vec!["lint", "testcases/demo", "--format", "sarif"]),
        (
            "diff",
            vec![
                "diff",
                "testcases/diff/removed-except/base",
                "testcases/diff/removed-except/head",
                "--format",
                "sarif",
            ],
        ),
    ] {
        let out = portcullis(&args, &common::repo(), None);
        let sarif = dir.join(format!("{name}.sarif"));
        std::fs::write(&sarif, &out.stdout).unwrap();
        let check = Command::new("python3")
        .args([
            "-c",
            "import json,sys,jsonschema; s=json.load(open(sys.argv[1])); d=json.load(open(sys.argv[2])); jsonschema.validators.validator_for(s)(s, format_checker=jsonschema.FormatChecker()).validate(d); print('valid')",
        ])
        .arg(&schema)
        .arg(&sarif)
        .output()
        .expect("python3 with jsonschema (installed by .ci/setup-tools)");
        assert!(check.status.success(), "{name}: SARIF invalid: {}", String::from_utf8_lossy(&check.stderr));
    }
}

#[test]
fn readme_rule_table_is_generated_from_the_registry() {
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let table = portcullis_linter::rules::registry::markdown_table();
    assert!(readme.contains(&table), "README.md's rule table is stale; paste `portcullis rules` output:\n{table}");
}

#[test]
fn rules_doc_is_generated_from_the_registry() {
    let doc = std::fs::read_to_string(common::repo().join("docs/rules.md")).unwrap();
    assert_eq!(
        doc,
        portcullis_linter::rules::registry::rules_document(),
        "docs/rules.md is stale; regenerate with `cargo run -p portcullis-linter --example rules-doc > docs/rules.md`"
    );
}

/// Issue 17: `--color` and the conventions (no-color.org, bixense.com/clicolors).
#[test]
fn colour_follows_the_flag_and_the_environment() {
    let repo = common::repo();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        command.args(["lint", "testcases/demo", "--fail-on", "never"]).args(args).current_dir(&repo);
        command.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE").env_remove("PORTCULLIS_COLOR");
        for (k, v) in env {
            command.env(k, v);
        }
        String::from_utf8(command.output().unwrap().stdout).unwrap().contains("\u{1b}[")
    };
    // Not a terminal: no colour unless asked for.
    assert!(!run(&[], &[]));
    assert!(run(&["--color", "always"], &[]));
    assert!(run(&[], &[("CLICOLOR_FORCE", "1")]));
    assert!(!run(&[], &[("CLICOLOR_FORCE", "0")]));
    assert!(!run(&[], &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]));
    assert!(run(&["--color", "always"], &[("NO_COLOR", "1")]), "the flag wins over the environment");
    assert!(!run(&["--color", "never"], &[("CLICOLOR_FORCE", "1")]));
    let version = Command::new(env!("CARGO_BIN_EXE_portcullis")).arg("--version").output().unwrap();
    let version = String::from_utf8(version.stdout).unwrap();
    assert!(version.starts_with("portcullis 0.") && version.contains(" ("), "the commit is shown: {version}");
}

#[test]
fn matrix_html_and_csv_are_safe_with_hostile_names() {
    // Names come from manifests anyone may write: an EgressIntent's fqdn (invalid, but probed
    // as written) with markup and a spreadsheet formula.
    let dir = tempdir("matrix-hostile");
    let intent = "apiVersion: portcullis.dev/v1alpha1\nkind: EgressIntent\nmetadata: {name: x, namespace: shop}\nspec:\n  podSelector: {}\n  egress:\n  - fqdn: \"<b>evil</b>.example\"\n  - fqdn: \"=cmd|' /C calc'!A0\"\n";
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec: {containers: [{name: c, image: x}]}\n";
    std::fs::write(dir.join("m.yaml"), format!("{intent}---\n{pod}")).unwrap();
    let out = portcullis(&["matrix", "m.yaml", "--format", "html"], &dir, None);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    common::assert_self_contained_and_escaped(&String::from_utf8(out.stdout).unwrap());
    let out = portcullis(&["matrix", "m.yaml", "--format", "csv"], &dir, None);
    let csv = String::from_utf8(out.stdout).unwrap();
    // A cell a spreadsheet would run as a formula is quoted as text.
    assert!(!csv.lines().any(|l| l.contains(",=cmd")), "{csv}");
    // (Names are compared in lower case, as DNS compares them.)
    assert!(csv.contains(",\"'=cmd|' /c calc'!a0\","), "{csv}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Replay against manifests that did not all load is refused: a policy left out would make
/// "nothing would be denied" a lie (found with a 34 MB export over the 32 MiB file limit).
#[test]
fn replay_refuses_manifests_that_did_not_load() {
    let repo = common::repo();
    let dir = tempdir("replay-load");
    std::fs::copy(repo.join("testcases/replay/shop-lockdown/policies.yaml"), dir.join("policies.yaml")).unwrap();
    std::fs::write(dir.join("broken.yaml"), "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nspec: [\n")
        .unwrap();
    let traffic = repo.join("testcases/replay/shop-lockdown/traffic.json");
    let out = portcullis(&["replay", ".", "--traffic", traffic.to_str().unwrap()], &dir, None);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.yaml"), "{err}");
    assert!(stdout(&out).is_empty());
    // Over the file size limit: the same.
    std::fs::remove_file(dir.join("broken.yaml")).unwrap();
    let out = portcullis(&["replay", ".", "--traffic", traffic.to_str().unwrap(), "--max-file-size", "0"], &dir, None);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    // All loaded: the answer.
    let out = portcullis(&["replay", ".", "--traffic", traffic.to_str().unwrap()], &dir, None);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("would be denied"));
}

/// The observed-traffic commands as a user runs them: exit codes, formats, `--since`, and the
/// capture → traffic → replay → export workflow.
#[test]
fn traffic_workflow_through_the_cli() {
    let repo = common::repo();
    let case = repo.join("testcases/replay/shop-lockdown");
    let traffic = case.join("traffic.json");
    let t = traffic.to_str().unwrap();
    let c = case.to_str().unwrap();
    // Denials: exit 1 only when asked.
    assert_eq!(portcullis(&["replay", c, "--traffic", t], &repo, None).status.code(), Some(0));
    let out =
        portcullis(&["replay", c, "--traffic", t, "--fail-on", "denied-traffic", "--format", "json"], &repo, None);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["deniedEdges"], 5);
    // A window after the last edge: nothing to deny.
    let out = portcullis(
        &["replay", c, "--traffic", t, "--since", "2026-11-26T00:00:00Z", "--fail-on", "denied-traffic"],
        &repo,
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("Replayed 0 edge(s): none would be denied."));
    assert_eq!(portcullis(&["replay", c, "--traffic", t, "--since", "7y"], &repo, None).status.code(), Some(2));
    // The traffic from stdin; the manifests cannot come from there too.
    let bytes = std::fs::read(&traffic).unwrap();
    let out = portcullis(&["replay", c, "--traffic", "-", "--format", "sarif"], &repo, Some(&bytes));
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("\"ruleId\": \"denied-traffic\""));
    assert_eq!(portcullis(&["replay", "-", "--traffic", "-"], &repo, Some(&bytes)).status.code(), Some(2));
    // lint --traffic: PC024.
    let out = portcullis(&["lint", c, "--traffic", t], &repo, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("PC024"));
    // A bad traffic file is exit 2 with the field named.
    let dir = tempdir("traffic-cli");
    std::fs::write(dir.join("bad.json"), r#"{"version":1,"edges":[{"port":1}]}"#).unwrap();
    let out = portcullis(&["replay", c, "--traffic", dir.join("bad.json").to_str().unwrap()], &repo, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("edges[0]"), "{}", String::from_utf8_lossy(&out.stderr));
    // Sensor lines → traffic file → replay.
    let capture = [
        r#"{"ts":"2026-11-26T10:00:00Z","node":"n1","client":{"ip":"10.0.1.5","pod":{"namespace":"shop","name":"payments-x1","workload":"Deployment/payments","labels":{"app":"payments"}}},"server":"10.96.0.10","qname":"api.stripe.com","answers":[{"ip":"203.0.113.7","ttl":60}],"cnames":[]}"#,
        r#"{"ts":"2026-11-26T10:00:01Z","node":"n1","flow":{"kind":"syn","protocol":"TCP","source":{"ip":"10.0.1.5","port":40000,"pod":{"namespace":"shop","name":"payments-x1","workload":"Deployment/payments","labels":{"app":"payments"}}},"destination":{"ip":"203.0.113.7","port":443}}}"#,
    ]
    .join("\n");
    std::fs::write(dir.join("capture.jsonl"), &capture).unwrap();
    let out =
        portcullis(&["map", "--from", "capture.jsonl", "--format", "traffic", "--out", "traffic.json"], &dir, None);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = portcullis(&["replay", c, "--traffic", dir.join("traffic.json").to_str().unwrap()], &repo, None);
    assert!(
        stdout(&out).contains("shop/Deployment/payments -> api.stripe.com (203.0.113.7) on 443/TCP"),
        "{}",
        stdout(&out)
    );
    // The map of a traffic file, and the policies from it (kube-system left out: exit 1).
    let out = portcullis(&["map", "--from", t], &repo, None);
    assert!(stdout(&out).contains("-> shop/Deployment/payments  8080/TCP, 9090/TCP"), "{}", stdout(&out));
    let out = portcullis(&["map", "--from", t, "--export-policies"], &repo, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("name: portcullis-default-deny"));
    assert_eq!(portcullis(&["map", "--from", t, "--export-intents"], &repo, None).status.code(), Some(2));
}
