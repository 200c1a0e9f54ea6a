//! `portcullis resolve` end to end on `testcases/egress/<case>/`: `input.yaml` rendered with
//! the answers in `hosts` (no DNS query leaves the machine), snapshotted with stderr and the
//! exit code in `rendered.snap` beside the input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use std::process::Command;

#[test]
fn every_egress_case_renders_as_its_snapshot() {
    let root = common::repo().join("testcases/egress");
    let mut dirs: Vec<_> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    assert!(dirs.len() >= 3, "expected egress cases in {}", root.display());
    for dir in dirs {
        let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["resolve", "input.yaml", "--hosts", "hosts"])
            .current_dir(&dir)
            .output()
            .unwrap();
        let text = format!(
            "exit: {}\n--- stderr\n{}--- stdout\n{}",
            out.status.code().unwrap(),
            String::from_utf8(out.stderr).unwrap(),
            String::from_utf8(out.stdout).unwrap()
        );
        insta::with_settings!({
            snapshot_path => dir.clone(),
            prepend_module_to_snapshot => false,
            input_file => dir.join("input.yaml"),
            omit_expression => true,
        }, {
            insta::assert_snapshot!("rendered", text);
        });
    }
}

/// Otterize's own egress tutorial (read from ../shared/conformance): its ClientIntents with an
/// internet domain, and with an internet IP, become policies for the backend's pods.
#[test]
fn otterize_tutorial_intents_render() {
    let Some(corpus) = common::conformance() else { return };
    let dir = corpus.join("manifests/otterize-docs/code-examples/egress-access-control");
    let tmp = std::env::temp_dir().join(format!("portcullis-otterize-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let hosts = tmp.join("hosts");
    std::fs::write(&hosts, "192.0.2.80 api.adviceslip.com\n").unwrap();
    let run = |intents: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["resolve", "all.yaml", intents, "--hosts"])
            .arg(&hosts)
            .current_dir(&dir)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let (code, stdout, stderr) = run("domain-intents.yaml");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.matches("kind: NetworkPolicy").count(), 1, "only the backend has internet targets: {stdout}");
    assert!(
        stdout.contains("name: egress-intent-backend") && stdout.contains("namespace: otterize-tutorial-egress-access")
    );
    assert!(stdout.contains("app: backend") && stdout.contains("cidr: \"192.0.2.80/32\""), "{stdout}");
    assert!(stdout.contains("rendered from ClientIntents backend"), "{stdout}");
    let (code, stdout, stderr) = run("intents.yaml");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("cidr: \"185.53.57.80/32\""), "{stdout}");
    let _ = std::fs::remove_dir_all(&tmp);
}
