//! The EgressIntent CRD: the chart's copy is exactly what the Rust types generate; the schema
//! is structural and every `default` in it validates against its own subschema, as
//! kube-apiserver checks when the CRD is created (a real API server once rejected
//! `egress: {default: [], minItems: 1}`); and the schema (checked with Python's `jsonschema`,
//! installed by `.ci/setup-tools`) accepts the valid intents of the testcases and rejects the
//! invalid ones. CEL rules only compile in an API server: the real-API-server suite
//! (`webhook/tests/e2e_apiserver.rs`) creates the CRD and drives them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use portcullis_linter::load::{SourceId, parse_source};
use portcullis_webhook::crd;
use serde_json::{Value, json};

#[test]
fn the_chart_holds_the_generated_crds() {
    for (relative, generated) in crd::files().unwrap() {
        let path = common::repo().join(relative);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "{} differs from the CRD the Rust types generate; run `cargo run -p portcullis-webhook -- crd` and split its output into the chart's crds/",
            path.display(),
        );
    }
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

fn openapi_schema() -> Value {
    let crd = serde_json::to_value(crd::definition()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Validates each object against the CRD's openAPIV3Schema; returns which ones pass.
fn schema_accepts(objects: &[Value]) -> Vec<bool> {
    validate_against(&openapi_schema(), objects)
}

/// Validates each object against an OpenAPI v3 schema with Python's `jsonschema`.
fn validate_against(schema: &Value, objects: &[Value]) -> Vec<bool> {
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

/// Walks a schema node, collecting structural-schema violations and every `default` with the
/// subschema it must satisfy (the node itself, without its `default`).
fn walk(
    node: &Value,
    path: &str,
    under_metadata: bool,
    problems: &mut Vec<String>,
    defaults: &mut Vec<(String, Value, Value)>,
) {
    let Some(map) = node.as_object() else {
        problems.push(format!("{path}: a schema node must be a mapping"));
        return;
    };
    let escapes = map.get("x-kubernetes-int-or-string") == Some(&json!(true))
        || map.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    if !escapes && map.get("type").and_then(Value::as_str).is_none_or(str::is_empty) {
        problems.push(format!("{path}: structural schemas need a non-empty type"));
    }
    for junctor in ["allOf", "anyOf", "oneOf", "not"] {
        if map.contains_key(junctor) {
            problems.push(format!("{path}: {junctor} is not used by portcullis' schema; check it by hand"));
        }
    }
    if map.contains_key("properties") && map.contains_key("additionalProperties") {
        problems.push(format!("{path}: properties and additionalProperties are mutually exclusive"));
    }
    if let Some(default) = map.get("default") {
        if under_metadata {
            problems.push(format!("{path}: defaults are not allowed under metadata"));
        }
        if default.is_null() && map.get("nullable") != Some(&json!(true)) {
            problems.push(format!("{path}: default null on a field that is not nullable"));
        }
        let mut subschema = node.clone();
        subschema.as_object_mut().unwrap().remove("default");
        defaults.push((path.to_owned(), subschema, default.clone()));
    }
    if let Some(list_type) = map.get("x-kubernetes-list-type").and_then(Value::as_str) {
        let items_type = map.get("items").and_then(|i| i.get("type")).and_then(Value::as_str);
        match list_type {
            "set" if items_type == Some("object") || items_type == Some("array") => {
                problems.push(format!("{path}: x-kubernetes-list-type set needs scalar items"))
            }
            "map" if !map.contains_key("x-kubernetes-list-map-keys") || items_type != Some("object") => problems
                .push(format!("{path}: x-kubernetes-list-type map needs object items and x-kubernetes-list-map-keys")),
            "atomic" | "set" | "map" => {}
            other => problems.push(format!("{path}: unknown x-kubernetes-list-type {other}")),
        }
    }
    if let Some(validations) = map.get("x-kubernetes-validations") {
        for v in validations.as_array().into_iter().flatten() {
            if v.get("rule").and_then(Value::as_str).is_none_or(str::is_empty) {
                problems.push(format!("{path}: a validation rule without a rule"));
            }
            if v.get("message").and_then(Value::as_str).is_none_or(str::is_empty) {
                problems.push(format!(
                    "{path}: a validation rule without a message (the API server would show the CEL text)"
                ));
            }
        }
    }
    for (name, child) in map.get("properties").and_then(Value::as_object).into_iter().flatten() {
        let metadata = under_metadata || (path.is_empty() && name == "metadata");
        walk(child, &format!("{path}.{name}"), metadata, problems, defaults);
    }
    if let Some(items) = map.get("items") {
        walk(items, &format!("{path}[]"), under_metadata, problems, defaults);
    }
    if let Some(extra) = map.get("additionalProperties").filter(|v| v.is_object()) {
        walk(extra, &format!("{path}{{}}"), under_metadata, problems, defaults);
    }
}

/// kube-apiserver refuses a CRD whose schema is not structural or whose defaults do not
/// validate against their own subschema; `helm install` then installs nothing.
#[test]
fn the_schema_is_structural_and_every_default_validates_as_the_api_server_checks() {
    let schema = openapi_schema();
    let (mut problems, mut defaults) = (Vec::new(), Vec::new());
    walk(&schema, "", false, &mut problems, &mut defaults);
    assert!(!defaults.is_empty(), "the walk found no defaults: the status lists have some");
    for (path, subschema, default) in &defaults {
        if !validate_against(subschema, std::slice::from_ref(default))[0] {
            problems.push(format!("{path}: default {default} does not validate against its own schema"));
        }
    }
    assert!(problems.is_empty(), "the API server would reject this CRD:\n{}", problems.join("\n"));
}

/// The checker above must itself catch what the real API server caught.
#[test]
fn the_structural_check_catches_a_default_its_schema_refuses() {
    let bad = json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {"egress": {"type": "array", "default": [], "minItems": 1, "items": {"type": "string"}}}},
        "metadata": {"type": "object", "properties": {"labels": {"type": "object", "default": {}}}},
        "loose": {"description": "no type"},
    }});
    let (mut problems, mut defaults) = (Vec::new(), Vec::new());
    walk(&bad, "", false, &mut problems, &mut defaults);
    assert_eq!(defaults.len(), 2);
    let verdicts: Vec<bool> =
        defaults.iter().map(|(_, s, d)| validate_against(s, std::slice::from_ref(d))[0]).collect();
    assert_eq!(verdicts, [false, true], "{defaults:?}");
    assert!(problems.iter().any(|p| p.starts_with(".metadata.labels: defaults are not allowed")), "{problems:?}");
    assert!(problems.iter().any(|p| p.starts_with(".loose: structural schemas need a non-empty type")), "{problems:?}");
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

fn staged_schema() -> Value {
    let crd = serde_json::to_value(crd::staged_definition()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn the_staged_policy_schema_is_structural_and_its_defaults_validate() {
    let (mut problems, mut defaults) = (Vec::new(), Vec::new());
    walk(&staged_schema(), "", false, &mut problems, &mut defaults);
    for (path, subschema, default) in &defaults {
        if !validate_against(subschema, std::slice::from_ref(default))[0] {
            problems.push(format!("{path}: default {default} does not validate against its own schema"));
        }
    }
    assert!(problems.is_empty(), "the API server would reject this CRD:\n{}", problems.join("\n"));
    let crd = serde_json::to_value(crd::staged_definition()).unwrap();
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["sp"]));
    assert_eq!(crd["spec"]["versions"][0]["subresources"], json!({"status": {}}));
}

#[test]
fn the_staged_policy_schema_holds_a_network_policy_spec() {
    let staged = |spec: Value| json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "StagedPolicy", "metadata": {"name": "a"}, "spec": spec});
    let np = json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
                    "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": "dns", "protocol": "UDP"}, {"port": 443}]}]});
    let verdicts = validate_against(
        &staged_schema(),
        &[
            staged(json!({"networkPolicy": np})),
            staged(json!({"networkPolicy": np, "readyAfter": "7d"})),
            // What the schema refuses: no policy, a readyAfter that is not hours or days, a
            // field NetworkPolicy does not have the type of, a podSelector that is not a selector.
            staged(json!({"readyAfter": "7d"})),
            staged(json!({"networkPolicy": np, "readyAfter": "1w"})),
            staged(json!({"networkPolicy": {"podSelector": {}, "policyTypes": "Egress"}})),
            staged(json!({"networkPolicy": {"podSelector": "app=web"}})),
        ],
    );
    assert_eq!(verdicts, [true, true, false, false, false, false]);
}
