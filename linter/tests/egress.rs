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
