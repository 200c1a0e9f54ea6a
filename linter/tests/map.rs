//! `portcullis map` end to end on `testcases/map/observations.jsonl` (sensor output): every
//! format as a snapshot, bad lines reported by number with the rest used, hostile names
//! escaped, and `--export-intents` output that lints clean.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use std::process::{Command, Output};

fn map(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("map")
        .args(args)
        .current_dir(common::repo().join("testcases/map"))
        .output()
        .unwrap()
}

fn snapshot(name: &str, out: &Output) {
    let text = format!(
        "exit: {}\n--- stderr\n{}--- stdout\n{}",
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    insta::with_settings!({
        snapshot_path => common::repo().join("testcases/map/snapshots"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, text);
    });
}

#[test]
fn every_format() {
    for format in ["table", "json", "dot", "mermaid", "html"] {
        let out = map(&["--from", "observations.jsonl", "--format", format]);
        assert_eq!(out.status.code(), Some(1), "two bad lines: exit 1 with the rest rendered");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("observations.jsonl:12: name \"\" is not a DNS name"), "{stderr}");
        assert!(stderr.contains("observations.jsonl:13: not a sensor observation"), "{stderr}");
        snapshot(format, &out);
    }
}

#[test]
fn html_is_self_contained_and_escaped() {
    let out = map(&["--from", "observations.jsonl", "--format", "html"]);
    common::assert_self_contained_and_escaped(&String::from_utf8(out.stdout).unwrap());
}

#[test]
fn a_saved_map_reads_back_the_same() {
    let json = map(&["--from", "observations.jsonl", "--format", "json"]);
    let dir = std::env::temp_dir().join(format!("portcullis-map-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let saved = dir.join("map.json");
    std::fs::write(&saved, &json.stdout).unwrap();
    let again = map(&["--from", saved.to_str().unwrap(), "--format", "json"]);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(String::from_utf8(again.stdout).unwrap(), String::from_utf8(json.stdout).unwrap());
    let missing = map(&["--from", "no-such-file.jsonl"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn exported_intents_lint_clean() {
    let out = map(&["--from", "observations.jsonl", "--export-intents"]);
    snapshot("export-intents", &out);
    let dir = std::env::temp_dir().join(format!("portcullis-map-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("intents.yaml"), &out.stdout).unwrap();
    let lint = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["lint", "intents.yaml", "--format", "json"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&lint.stdout).unwrap();
    let codes: Vec<&str> = report["findings"].as_array().unwrap().iter().map(|f| f["code"].as_str().unwrap()).collect();
    assert!(codes.is_empty(), "{codes:?}\n{}", String::from_utf8_lossy(&lint.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not exported: 10.0.9.9: no pod is known"), "{stderr}");
    assert!(stderr.contains("is not an FQDN"), "{stderr}");
}
