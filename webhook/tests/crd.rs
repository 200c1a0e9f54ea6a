//! The EgressIntent CRD: the chart's copy is exactly what the Rust types generate, and its
//! schema (checked with Python's `jsonschema`, installed by `.ci/setup-tools`) accepts the valid
//! intents of the testcases and rejects the invalid ones. CEL rules are the API server's job and
//! are checked for presence only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use portcullis_linter::load::{SourceId, parse_source};
use portcullis_webhook::crd;
use serde_json::{Value, json};

#[test]
fn the_chart_holds_the_generated_crd() {
    let path = common::repo().join(crd::CHART_PATH);
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = crd::yaml().unwrap();
    assert!(
        on_disk == generated,
        "{} differs from the CRD the Rust types generate; run `cargo run -p portcullis-webhook -- crd > {}`",
        path.display(),
        crd::CHART_PATH
    );
}

#[test]
fn the_binary_prints_the_crd() {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis-webhook")).arg("crd").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), crd::yaml().unwrap());
}

fn intents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(common::repo().join(file)).unwrap();
    let (docs, problems) = parse_source(SourceId(0), &text);
    assert!(problems.is_empty(), "{file}: {problems:?}");
    docs.into_iter().map(|d| d.value).filter(|v| v["kind"] == "EgressIntent").collect()
}

/// Validates each object against the CRD's openAPIV3Schema; returns which ones pass.
fn schema_accepts(objects: &[Value]) -> Vec<bool> {
    let crd = serde_json::to_value(crd::definition()).unwrap();
    let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    let script = r#"
import json, sys, jsonschema
data = json.load(sys.stdin)
def strip(node):
    # OpenAPI's `nullable` and Kubernetes' x- extensions are not JSON Schema keywords.
    if isinstance(node, dict):
        if node.pop("nullable", False) and "type" in node:
            node["type"] = [node["type"], "null"]
        return {k: strip(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node
validator = jsonschema.Draft4Validator(strip(data["schema"]))
print(json.dumps([validator.is_valid(o) for o in data["objects"]]))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is required (.ci/setup-tools installs it with jsonschema)");
    let input = json!({"schema": schema, "objects": objects});
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 -c jsonschema failed (run .ci/setup-tools)");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_schema_accepts_valid_intents_and_rejects_invalid_ones() {
    let valid: Vec<Value> = ["testcases/egress/basic/input.yaml", "testcases/rules/PC015/ok-valid/input.yaml"]
        .iter()
        .flat_map(|f| intents(f))
        .collect();
    assert!(valid.len() >= 3);
    assert!(schema_accepts(&valid).iter().all(|ok| *ok), "a valid intent was rejected");
    for case in ["bad-fqdn", "bad-pattern", "bad-port", "missing-selector"] {
        let objects = intents(&format!("testcases/rules/PC015/{case}/input.yaml"));
        assert!(!objects.is_empty());
        assert!(schema_accepts(&objects).iter().all(|ok| !ok), "PC015/{case} passed the schema");
    }
}

#[test]
fn exactly_one_name_per_target_is_a_cel_rule() {
    let crd = serde_json::to_value(crd::definition()).unwrap();
    let target =
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["egress"]["items"];
    assert_eq!(target["x-kubernetes-validations"][0]["rule"], "has(self.fqdn) != has(self.fqdnPattern)");
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["ei"]));
    assert_eq!(crd["spec"]["versions"][0]["subresources"], json!({"status": {}}));
}
