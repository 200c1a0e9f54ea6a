//! The Helm chart (`charts/portcullis`), rendered for real: `helm lint` and `helm template`
//! (helm 4 from npm, installed by `.ci/setup-tools`) with the default values and each
//! `testcases/chart/values-*.yaml`; every object validated by `kubernetes-validate --strict`;
//! the output linted by `portcullis lint` (the defaults must lint clean: portcullis under its own
//! rules); and the promises of the chart checked object by object.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn helm() -> PathBuf {
    let path = std::env::var_os("PORTCULLIS_HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo().join("target/tools/helm/helm"));
    assert!(
        path.is_file(),
        "helm is missing at {}: run .ci/setup-tools (the README's test command does)",
        path.display()
    );
    path
}

fn run(command: &mut Command) -> Output {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn chart() -> PathBuf {
    common::repo().join("charts/portcullis")
}

/// `helm lint` and `helm template` with `values` (none: the defaults); the rendered YAML.
fn render(values: Option<&Path>) -> String {
    let mut lint = Command::new(helm());
    lint.arg("lint").arg(chart()).arg("--strict");
    let mut template = Command::new(helm());
    template.args(["template", "pc"]).arg(chart()).args(["--namespace", "portcullis-system"]);
    if let Some(values) = values {
        lint.arg("-f").arg(values);
        template.arg("-f").arg(values);
    }
    run(&mut lint);
    String::from_utf8(run(&mut template).stdout).unwrap()
}

fn documents(yaml: &str) -> Vec<Value> {
    // The engine's own loader reads the rendered stream, as `portcullis lint -` would.
    let (documents, problems) = portcullis_linter::load::parse_source(portcullis_linter::load::SourceId(0), yaml);
    assert!(problems.is_empty(), "{problems:?}");
    documents.into_iter().map(|d| d.value).collect()
}

fn validate(yaml: &str) {
    let dir = std::env::temp_dir().join(format!("portcullis-chart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rendered.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new("kubernetes-validate")
        .args(["-k", "1.33", "--strict", "--quiet"])
        .arg(&file)
        .output()
        .expect("kubernetes-validate is missing: run .ci/setup-tools (pip install kubernetes-validate)");
    assert!(
        out.status.success(),
        "kubernetes-validate --strict:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn lint_codes(yaml: &str) -> Vec<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["lint", "-", "--format", "json", "--fail-on", "never"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["findings"].as_array().unwrap().iter().map(|f| f["code"].as_str().unwrap().to_owned()).collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// What every rendering must hold, whatever the values.
fn check_invariants(objects: &[Value]) {
    for config in of_kind(objects, "ValidatingWebhookConfiguration")
        .into_iter()
        .chain(of_kind(objects, "MutatingWebhookConfiguration"))
    {
        for hook in config["webhooks"].as_array().unwrap() {
            assert_eq!(hook["admissionReviewVersions"], serde_json::json!(["v1"]));
            assert_eq!(hook["sideEffects"], "None");
            assert_eq!(hook["matchPolicy"], "Equivalent");
            assert!(hook["timeoutSeconds"].as_u64().unwrap() <= 30);
            let excluded = &hook["namespaceSelector"]["matchExpressions"][0];
            assert_eq!(excluded["operator"], "NotIn");
            for ns in ["kube-system", "kube-node-lease", "kube-public", "portcullis-system"] {
                assert!(excluded["values"].as_array().unwrap().iter().any(|v| v == ns), "{ns} must be excluded");
            }
        }
    }
    let validating = &of_kind(objects, "ValidatingWebhookConfiguration")[0]["webhooks"][0]["rules"];
    // The policy layers' rules come with `config.webhook.layers` (checked on their own).
    const LAYER_GROUPS: [&str; 5] =
        ["policy.networking.k8s.io", "cilium.io", "projectcalico.org", "crd.projectcalico.org", "networking.istio.io"];
    let mut covered: Vec<String> = validating
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !r["apiGroups"].as_array().unwrap().iter().any(|g| LAYER_GROUPS.iter().any(|l| g == l)))
        .flat_map(|r| r["resources"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_owned()))
        .collect();
    covered.sort();
    assert_eq!(
        covered,
        [
            "cronjobs",
            "daemonsets",
            "deployments",
            "egressintents",
            "jobs",
            "networkpolicies",
            "pods",
            "replicasets",
            "replicationcontrollers",
            "stagedpolicies",
            "statefulsets"
        ],
        "exactly the kinds of DESIGN §6"
    );
    for workload in of_kind(objects, "Deployment").into_iter().chain(of_kind(objects, "DaemonSet")) {
        let pod = &workload["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
        for container in pod["containers"].as_array().unwrap() {
            let sc = &container["securityContext"];
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{}", container["name"]);
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{}", container["name"]);
            assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]), "{}", container["name"]);
            assert_ne!(sc["privileged"], true, "{}", container["name"]);
            assert!(container["resources"]["requests"].is_object(), "{}", container["name"]);
        }
    }
    for deployment in of_kind(objects, "Deployment") {
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["securityContext"]["runAsNonRoot"], true);
        assert!(container["readinessProbe"]["httpGet"]["path"] == "/readyz");
    }
    for daemonset in of_kind(objects, "DaemonSet") {
        let container = &daemonset["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            container["securityContext"]["capabilities"]["add"],
            serde_json::json!(["BPF", "NET_RAW", "NET_ADMIN"])
        );
        assert_eq!(daemonset["spec"]["template"]["spec"]["tolerations"][0]["operator"], "Exists");
    }
    // No wildcard in any RBAC rule.
    for role in of_kind(objects, "ClusterRole").into_iter().chain(of_kind(objects, "Role")) {
        for rule in role["rules"].as_array().unwrap() {
            for field in ["apiGroups", "resources", "verbs"] {
                assert!(
                    !rule[field].as_array().unwrap().iter().any(|v| v == "*"),
                    "{}: {rule}",
                    role["metadata"]["name"]
                );
            }
        }
    }
}

#[test]
fn default_values_render_validate_and_lint_clean() {
    let yaml = render(None);
    validate(&yaml);
    let objects = documents(&yaml);
    check_invariants(&objects);
    assert_eq!(lint_codes(&yaml), Vec::<String>::new(), "portcullis under its own rules");
    // Self-managed TLS by default: no cert-manager objects; the webhook is told its Secret,
    // configurations and names, and may touch only those.
    assert!(of_kind(&objects, "Certificate").is_empty());
    let env = &of_kind(&objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"];
    let var = |name: &str| env.as_array().unwrap().iter().find(|e| e["name"] == name).map(|e| e["value"].clone());
    assert_eq!(var("PORTCULLIS_SELF_MANAGED_TLS"), Some("pc-portcullis-webhook-tls".into()));
    assert_eq!(var("PORTCULLIS_WEBHOOK_CONFIGURATION"), Some("pc-portcullis-webhook".into()));
    let names = var("PORTCULLIS_TLS_DNS_NAMES").unwrap();
    assert!(names.as_str().unwrap().contains("pc-portcullis-webhook-headless.portcullis-system.svc"), "{names}");
    let tls_role =
        of_kind(&objects, "Role").into_iter().find(|r| r["metadata"]["name"] == "pc-portcullis-webhook-tls").unwrap();
    assert_eq!(tls_role["rules"][1]["resourceNames"], serde_json::json!(["pc-portcullis-webhook-tls"]));
    let webhook_role = of_kind(&objects, "ClusterRole")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "pc-portcullis-webhook")
        .unwrap();
    assert!(
        webhook_role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["resourceNames"] == serde_json::json!(["pc-portcullis-webhook"])
                && r["resources"].as_array().unwrap().iter().any(|x| x == "validatingwebhookconfigurations"))
    );
    assert_eq!(of_kind(&objects, "ValidatingWebhookConfiguration")[0]["webhooks"][0]["failurePolicy"], "Ignore");
    assert_eq!(of_kind(&objects, "PodDisruptionBudget").len(), 1);
}

#[test]
fn cert_manager_issues_for_both_service_names() {
    let yaml = render(Some(&common::repo().join("testcases/chart/values-cert-manager.yaml")));
    let objects = documents(&yaml);
    let certificate = of_kind(&objects, "Certificate")
        .into_iter()
        .find(|c| c["spec"]["secretName"] == "pc-portcullis-webhook-tls")
        .unwrap();
    let names = certificate["spec"]["dnsNames"].as_array().unwrap();
    assert!(names.iter().any(|n| n == "pc-portcullis-webhook.portcullis-system.svc"));
    assert!(names.iter().any(|n| n == "pc-portcullis-webhook-headless.portcullis-system.svc"));
    assert_eq!(
        of_kind(&objects, "ValidatingWebhookConfiguration")[0]["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "portcullis-system/pc-portcullis-webhook"
    );
}

#[test]
fn non_default_values_render_and_validate() {
    let dir = common::repo().join("testcases/chart");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("values-"))
        .collect();
    files.sort();
    assert!(files.len() >= 2);
    for file in files {
        let yaml = render(Some(&file));
        validate(&yaml);
        let objects = documents(&yaml);
        check_invariants(&objects);
        let codes = lint_codes(&yaml);
        let policies = !of_kind(&objects, "NetworkPolicy").is_empty();
        if policies {
            assert_eq!(codes, Vec::<String>::new(), "{}", file.display());
        } else {
            // Without its own policies the release namespace lacks default-deny: said, and only that.
            assert!(
                codes.iter().all(|c| c == "PC001" || c == "PC002") && !codes.is_empty(),
                "{}: {codes:?}",
                file.display()
            );
        }
    }
}

#[test]
fn bad_values_are_refused_with_the_reason() {
    for (set, reason) in [
        ("webhook.failurePolicy=Sometimes", "value must be one of 'Ignore', 'Fail'"),
        ("tls.mode=secret", "tls.secret.name is required with tls.mode=secret"),
        ("webhook.timeoutSeconds=60", "maximum"),
        ("sensor.dnsService=kube-dns", "does not match pattern"),
        ("webhook.unknownKey=1", "additional properties"),
        ("traffic.windowDays=0", "minimum"),
        ("traffic.retention=1", "additional properties"),
    ] {
        let out = Command::new(helm()).args(["template", "pc"]).arg(chart()).args(["--set", set]).output().unwrap();
        assert!(!out.status.success(), "{set} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(stderr.contains(&reason.to_lowercase()), "{set}: {stderr}");
    }
}

/// Regression (issue 16, class 3): the chart's own NetworkPolicy admitted the webhook port from
/// everywhere. Once the API server's addresses are known, only they (and the nodes, for the
/// sensors' reports) may reach it.
#[test]
fn the_webhook_port_admits_the_api_server_and_the_nodes_once_they_are_known() {
    let dir = std::env::temp_dir().join(format!("portcullis-chart-np-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let values = dir.join("values.yaml");
    std::fs::write(&values, "networkPolicies:\n  apiServer: {cidrs: [10.0.0.1/32]}\n  nodeCidrs: [10.1.0.0/16]\n")
        .unwrap();
    let from_8443 = |yaml: &str| -> Option<Vec<String>> {
        let objects = documents(yaml);
        let policy = of_kind(&objects, "NetworkPolicy").into_iter().find(|p| {
            p["spec"]["ingress"].as_array().is_some_and(|rules| rules.iter().any(|r| r["ports"][0]["port"] == 8443))
        })?;
        let rule = policy["spec"]["ingress"].as_array()?.iter().find(|r| r["ports"][0]["port"] == 8443)?;
        Some(
            rule["from"]
                .as_array()
                .map(|f| f.iter().map(|p| p["ipBlock"]["cidr"].as_str().unwrap_or("").to_owned()).collect())
                .unwrap_or_default(),
        )
    };
    assert_eq!(from_8443(&render(Some(&values))).unwrap(), ["10.0.0.1/32", "10.1.0.0/16"]);
    assert_eq!(from_8443(&render(None)).unwrap(), Vec::<String>::new(), "nothing known: open, and NOTES.txt says so");
}

/// Staged policies are judged only where the traffic history is: only then may the webhook read
/// them and write their status, and never create what they stand for.
#[test]
fn staged_policy_rights_come_with_the_traffic_history_and_stop_at_status() {
    let rules_of = |values: Option<&Path>| -> Vec<Value> {
        let objects = documents(&render(values));
        let role = of_kind(&objects, "ClusterRole")
            .into_iter()
            .find(|r| r["metadata"]["name"] == "pc-portcullis-webhook")
            .unwrap()
            .clone();
        role["rules"].as_array().unwrap().clone()
    };
    let names = |rules: &[Value], resource: &str| -> Vec<String> {
        rules
            .iter()
            .filter(|r| r["resources"].as_array().unwrap().iter().any(|x| x == resource))
            .flat_map(|r| r["verbs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()))
            .collect()
    };
    let default = rules_of(None);
    assert!(names(&default, "stagedpolicies").is_empty() && names(&default, "stagedpolicies/status").is_empty());
    let traffic = rules_of(Some(&common::repo().join("testcases/chart/values-traffic.yaml")));
    assert_eq!(names(&traffic, "stagedpolicies"), ["get", "list", "watch"]);
    assert_eq!(names(&traffic, "stagedpolicies/status"), ["patch"]);
}

/// Each policy layer adds read-only rights and webhook rules for exactly its kinds; Istio's
/// rule covers every version it serves (v1, v1beta1, v1alpha3).
#[test]
fn layers_add_read_only_rights_and_rules_for_their_kinds() {
    let objects = documents(&render(Some(&common::repo().join("testcases/chart/values-layers.yaml"))));
    let role = of_kind(&objects, "ClusterRole")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "pc-portcullis-webhook")
        .unwrap()
        .clone();
    let istio: Vec<&Value> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["apiGroups"].as_array().unwrap().iter().any(|g| g == "networking.istio.io"))
        .collect();
    assert_eq!(istio.len(), 1, "{istio:?}");
    assert_eq!(istio[0]["verbs"], serde_json::json!(["get", "list", "watch"]));
    assert_eq!(
        istio[0]["resources"],
        serde_json::json!(["serviceentries", "sidecars", "gateways", "virtualservices", "destinationrules"])
    );
    let validating = of_kind(&objects, "ValidatingWebhookConfiguration");
    let rules = validating[0]["webhooks"][0]["rules"].as_array().unwrap();
    let rule = rules.iter().find(|r| r["apiGroups"] == serde_json::json!(["networking.istio.io"])).unwrap();
    assert_eq!(rule["apiVersions"], serde_json::json!(["*"]));
    assert_eq!(rule["scope"], "Namespaced");
    // Without the layer, nothing of Istio's.
    let plain = render(None);
    assert!(!plain.contains("networking.istio.io"));
}
