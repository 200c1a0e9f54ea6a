//! `portcullis promote`, run as a user runs it: on StagedPolicies read from the cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn portcullis(args: &[&str], cwd: &Path, stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-promote-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A StagedPolicy as `kubectl get stagedpolicy -o yaml` prints it, with the given readiness.
fn staged(name: &str, ready: &str, generation: u32, observed: u32) -> String {
    format!(
        "apiVersion: portcullis.dev/v1alpha1
kind: StagedPolicy
metadata:
  name: {name}
  namespace: shop
  generation: {generation}
  labels: {{team: shop}}
spec:
  networkPolicy:
    podSelector: {{matchLabels: {{app: web}}}}
    policyTypes: [Egress]
    egress:
    - ports: [{{port: 53, protocol: UDP}}]
status:
  observedGeneration: {observed}
  deniedEdges: 0
  conditions:
  - type: ReadyToPromote
    status: \"{ready}\"
    reason: X
    message: would deny 12 connection(s) on 1 edge(s)
    lastTransitionTime: \"2026-11-20T00:00:00Z\"
"
    )
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

#[test]
fn a_ready_staged_policy_becomes_its_network_policy() {
    let dir = tempdir("ready");
    let out = portcullis(&["promote", "-"], &dir, Some(&staged("web-egress", "True", 4, 4)));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "# Promoted by `portcullis promote` from StagedPolicies.
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-egress
  namespace: shop
  labels:
    team: shop
  annotations:
    portcullis.dev/promoted-from: StagedPolicy/web-egress
spec:
  podSelector:
    matchLabels:
      app: web
  policyTypes:
  - Egress
  egress:
  - ports:
    - port: 53
      protocol: UDP
"
    );
    // What it writes lints as a NetworkPolicy (here: DNS to any server, PC005).
    std::fs::write(dir.join("np.yaml"), out.stdout).unwrap();
    let lint = portcullis(&["lint", "np.yaml"], &dir, None);
    assert!(text(&lint.stdout).contains("PC005"), "{}", text(&lint.stdout));
}

#[test]
fn nothing_is_written_when_one_is_not_ready() {
    let dir = tempdir("not-ready");
    let input = format!("{}---\n{}", staged("a", "True", 2, 2), staged("b", "False", 2, 2));
    std::fs::write(dir.join("staged.yaml"), &input).unwrap();
    let out = portcullis(&["promote", "staged.yaml", "-o", "promoted.yaml"], &dir, None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("staged.yaml:") && err.contains("StagedPolicy shop/b is not ready to promote: would deny 12"),
        "{err}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    assert!(!dir.join("promoted.yaml").exists());
    // A verdict about an earlier spec does not count.
    let out = portcullis(&["promote", "-"], &dir, Some(&staged("a", "True", 3, 2)));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("earlier spec"));
    // Without a status (a file from Git), only --ignore-verdict promotes.
    let from_git = staged("a", "True", 1, 1);
    let from_git = &from_git[..from_git.find("status:").unwrap()];
    let out = portcullis(&["promote", "-"], &dir, Some(from_git));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("kubectl get stagedpolicy"), "{}", text(&out.stderr));
    let out = portcullis(&["promote", "--ignore-verdict", "staged.yaml", "-o", "promoted.yaml"], &dir, None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.join("promoted.yaml")).unwrap().matches("kind: NetworkPolicy").count(), 2);
    // Never over an input.
    let out = portcullis(&["promote", "--ignore-verdict", "staged.yaml", "-o", "staged.yaml", "--force"], &dir, None);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(dir.join("staged.yaml")).unwrap(), input);
}

#[test]
fn input_without_staged_policies_is_an_error() {
    let dir = tempdir("empty");
    for input in ["", "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n", "a: [\n"] {
        let out = portcullis(&["promote", "-"], &dir, Some(input));
        assert_eq!(out.status.code(), Some(2), "{input}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty());
    }
    let bad = "apiVersion: portcullis.dev/v1alpha1\nkind: StagedPolicy\nmetadata: {name: x}\nspec: {}\n";
    let out = portcullis(&["promote", "--ignore-verdict", "-"], &dir, Some(bad));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("has no spec.networkPolicy"), "{}", text(&out.stderr));
}
