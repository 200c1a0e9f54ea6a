//! Istio's routes and registry (`semantics::mesh`), each expectation written from the Istio
//! page named beside it before the code was run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use portcullis_linter::model::WorkloadId;
use portcullis_linter::project::Project;
use portcullis_linter::semantics::mesh::{Mesh, Outbound, Proxy, Route};

fn project(yaml: &str) -> Project {
    let mut project = Project::new("default");
    project.add_text("input.yaml", yaml.to_owned(), true);
    assert!(project.inventory.problems.is_empty(), "{:?}", project.inventory.problems);
    project
}

fn workload(project: &Project, namespace: &str, name: &str) -> WorkloadId {
    let i = project.inventory.workloads.iter().position(|w| w.namespace == namespace && w.name == name).unwrap();
    WorkloadId(i)
}

fn deployment(namespace: &str, name: &str, labels: &str) -> String {
    format!(
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata:\n      labels: {{app: {name}{labels}}}\n    spec:\n      containers: [{{name: c, image: x}}]\n"
    )
}

const INJECTED: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {istio-injection: enabled}}\n";

/// "Egress Gateways", HTTP section: port 80 goes to the gateway, 443 (not routed) directly.
#[test]
fn the_http_task_routes_port_80_through_the_gateway_and_443_directly() {
    let yaml = format!(
        "{INJECTED}{}{}---
apiVersion: v1
kind: Service
metadata: {{name: istio-egressgateway, namespace: istio-system}}
spec:
  selector: {{istio: egressgateway}}
  ports: [{{name: http2, port: 80, targetPort: 8080}}, {{name: https, port: 443, targetPort: 8443}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {{name: istio-egressgateway, namespace: shop}}
spec:
  selector: {{istio: egressgateway}}
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: [edition.cnn.com]}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {{name: direct-cnn-through-egress-gateway, namespace: shop}}
spec:
  hosts: [edition.cnn.com]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{{gateways: [mesh], port: 80}}]
    route: [{{destination: {{host: istio-egressgateway.istio-system.svc.cluster.local, subset: cnn, port: {{number: 80}}}}}}]
  - match: [{{gateways: [istio-egressgateway], port: 80}}]
    route: [{{destination: {{host: edition.cnn.com, port: {{number: 80}}}}, weight: 100}}]
",
        deployment("shop", "sleep", ""),
        deployment("istio-system", "istio-egressgateway", ", istio: egressgateway"),
    );
    let project = project(&yaml);
    let mesh = Mesh::new(&project.inventory).unwrap();
    let sleep = workload(&project, "shop", "sleep");
    let gateway = workload(&project, "istio-system", "istio-egressgateway");
    assert_eq!(mesh.proxy(sleep), Proxy::Sidecar);
    assert!(matches!(mesh.proxy(gateway), Proxy::Gateway(g) if g.len() == 1));
    let Route::ViaGateway(hop) = mesh.route(sleep, "edition.cnn.com", 80) else { panic!("port 80 is routed") };
    assert_eq!(hop.service_port, 80);
    assert_eq!(hop.pods, vec![gateway]);
    assert_eq!(hop.pod_port(&project.inventory, Some(gateway)), Some(8080));
    assert_eq!(hop.upstream_port, 80);
    assert!(matches!(mesh.route(sleep, "edition.cnn.com", 443), Route::Direct { port: 443, via: None }));
    // The gateway's own pods are not routed as sidecars.
    assert_eq!(mesh.route(gateway, "edition.cnn.com", 80), Route::NotMeshed);
}

/// "Egress TLS Origination": the sidecar takes port 80 and connects to the host on 443.
#[test]
fn tls_origination_changes_the_port_the_sidecar_connects_to() {
    let yaml = format!(
        "{INJECTED}{}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: edition-cnn-com, namespace: shop}}
spec:
  hosts: [edition.cnn.com]
  http:
  - match: [{{port: 80}}]
    route: [{{destination: {{host: edition.cnn.com, port: {{number: 443}}}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: edition-cnn-com, namespace: shop}}
spec:
  host: edition.cnn.com
  trafficPolicy:
    portLevelSettings: [{{port: {{number: 443}}, tls: {{mode: SIMPLE}}}}]
",
        deployment("shop", "sleep", ""),
    );
    let project = project(&yaml);
    let mesh = Mesh::new(&project.inventory).unwrap();
    let sleep = workload(&project, "shop", "sleep");
    assert!(matches!(mesh.route(sleep, "edition.cnn.com", 80), Route::Direct { port: 443, via: Some(_) }));
}

/// Sidecar reference: a Sidecar with a workloadSelector wins over the namespace's, which wins
/// over the root namespace's; an unset outboundTrafficPolicy inherits; MeshConfig comes last.
#[test]
fn the_most_specific_sidecar_sets_the_outbound_mode() {
    let mesh_config = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    outboundTrafficPolicy: {mode: ALLOW_ANY}\n---\n";
    let yaml = format!(
        "{mesh_config}{INJECTED}{}{}{}---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: istio-system}}
spec:
  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: open, namespace: shop}}
spec:
  workloadSelector: {{labels: {{app: crawler}}}}
  outboundTrafficPolicy: {{mode: ALLOW_ANY}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: no-mode, namespace: shop}}
spec:
  workloadSelector: {{labels: {{app: pay}}}}
  egress: [{{hosts: [./*]}}]
",
        deployment("shop", "crawler", ""),
        deployment("shop", "pay", ""),
        deployment("shop", "other", ""),
    );
    let project = project(&yaml);
    let mesh = Mesh::new(&project.inventory).unwrap();
    let crawler = mesh.outbound(workload(&project, "shop", "crawler"));
    assert_eq!((crawler.mode, crawler.set_by.as_str()), (Outbound::AllowAny, "Sidecar shop/open"));
    // pay's Sidecar sets no mode: the root namespace's default Sidecar does.
    let pay = mesh.outbound(workload(&project, "shop", "pay"));
    assert_eq!((pay.mode, pay.set_by.as_str()), (Outbound::RegistryOnly, "Sidecar istio-system/default"));
    let other = mesh.outbound(workload(&project, "shop", "other"));
    assert_eq!(other.mode, Outbound::RegistryOnly);
}

/// ServiceEntry `exportTo` and Sidecar `egress.hosts` decide which entries a pod sees; in
/// REGISTRY_ONLY an unseen host is refused.
#[test]
fn registry_visibility_follows_export_to_and_sidecar_hosts() {
    let yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: 'outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}'\n---\n{INJECTED}---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: blog, labels: {{istio.io/rev: canary}}}}\n{}{}---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: stripe, namespace: shop}}
spec:
  hosts: [api.stripe.com]
  exportTo: [.]
  ports: [{{number: 443, name: tls, protocol: TLS}}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: wikipedia, namespace: istio-system}}
spec:
  hosts: ['*.wikipedia.org']
  ports: [{{number: 443, name: https, protocol: HTTPS}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: blog}}
spec:
  egress: [{{hosts: [./*, istio-system/en.wikipedia.org]}}]
",
        deployment("shop", "pay", ""),
        deployment("blog", "web", ""),
    );
    let project = project(&yaml);
    let mesh = Mesh::new(&project.inventory).unwrap();
    let pay = workload(&project, "shop", "pay");
    let web = workload(&project, "blog", "web");
    assert_eq!(mesh.proxy(web), Proxy::Sidecar, "istio.io/rev on the namespace injects");
    assert!(mesh.registry_entry(pay, "api.stripe.com", 443).is_some());
    assert!(mesh.registry_entry(pay, "api.stripe.com", 80).is_none(), "not on a port the entry lacks");
    assert!(mesh.registry_entry(pay, "de.wikipedia.org", 443).is_some());
    assert!(mesh.registry_entry(web, "api.stripe.com", 443).is_none(), "exported to shop only");
    assert!(mesh.registry_entry(web, "en.wikipedia.org", 443).is_some());
    assert!(mesh.registry_entry(web, "de.wikipedia.org", 443).is_none(), "not among the Sidecar's hosts");
    assert!(matches!(mesh.route(web, "de.wikipedia.org", 443), Route::Refused { .. }));
    assert!(matches!(mesh.route(pay, "api.stripe.com", 443), Route::Direct { port: 443, .. }));
}

/// An input without Istio objects builds no mesh: the mesh rules cost nothing there.
#[test]
fn no_istio_objects_no_mesh() {
    let project = project(&format!("{INJECTED}{}", deployment("shop", "pay", "")));
    assert!(Mesh::new(&project.inventory).is_none());
}

/// A mesh setting Istio would refuse is reported where it is written, not ignored.
#[test]
fn a_malformed_mesh_config_is_a_problem() {
    let mut project = Project::new("default");
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: 'outboundTrafficPolicy: {mode: [1]}'\n";
    project.add_text("input.yaml", yaml.to_owned(), true);
    let problems = &project.inventory.problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].pointer.starts_with("/data/mesh"), "{problems:?}");
}

/// An outbound mode Istio's API refuses is reported, in a Sidecar and in MeshConfig.
#[test]
fn an_unknown_outbound_mode_is_a_problem() {
    let mut project = Project::new("default");
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: 'outboundTrafficPolicy: {mode: REGISTRY}'\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: shop}\nspec:\n  outboundTrafficPolicy: {mode: allow_any}\n";
    project.add_text("input.yaml", yaml.to_owned(), true);
    let problems: Vec<&str> = project.inventory.problems.iter().map(|p| p.pointer.as_str()).collect();
    assert_eq!(problems, ["/data/mesh", "/spec/outboundTrafficPolicy/mode"]);
}

/// `portcullis fix` on the egress-gateway task before its NetworkPolicy: the bypass fix
/// isolates the client to DNS and the gateway, the namespace lockdowns it also writes break the
/// gateway's hops (PC026), and a second `fix` opens them again (the annotated Gateway renders the
/// gateway's egress, an ingress policy admits the client). After it neither rule finds anything.
#[test]
fn fixing_the_egress_gateway_task_converges() {
    let input = common_repo().join("testcases/rules/PC025/egress-gateway-task-before-network-policy/input.yaml");
    let dir = std::env::temp_dir().join(format!("portcullis-mesh-fix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&std::path::Path]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.args(args).current_dir(&dir);
        cmd.output().unwrap()
    };
    let (first, second) = (dir.join("first.yaml"), dir.join("second.yaml"));
    let out = run(&[std::path::Path::new("fix"), &input, std::path::Path::new("-o"), &first]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&first).unwrap();
    assert!(text.contains("name: egress-via-gateway-sleep"), "{text}");
    let out = run(&[std::path::Path::new("fix"), &first, &input, std::path::Path::new("-o"), &second]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&second).unwrap();
    assert!(text.contains("portcullis.dev/egress-from-routes: \"true\""), "{text}");
    let out = run(&[std::path::Path::new("lint"), &second, &first, &input]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!report.contains("PC025") && !report.contains("PC026"), "{report}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn common_repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn trace(fixture: &str, from: &str, to: &str, port: &str, format: &str) -> (Option<i32>, String) {
    let input = common_repo().join("testcases/rules").join(fixture).join("input.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["trace", "--from", from, "--to", to, "--port", port, "--format", format])
        .arg(&input)
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap())
}

/// The egress-gateway task's verdicts, through `trace`: with the task's NetworkPolicy the
/// request goes client -> gateway -> edition.cnn.com and succeeds, while skipping the sidecar
/// is denied ("the sleep pod cannot bypass istio-egressgateway"); before it, the route works
/// and the bypass too.
#[test]
fn trace_follows_the_gateway_hop() {
    let (code, text) =
        trace("PC026/ok-gateway-and-clients-allowed", "test-egress/sleep", "edition.cnn.com", "443", "human");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(
            "hop 1: Deployment test-egress/sleep -> Deployment istio-system/istio-egressgateway on 8443/TCP: allowed"
        ),
        "{text}"
    );
    assert!(text.contains("hop 2: Deployment istio-system/istio-egressgateway -> edition.cnn.com (external, address unknown) on 443/TCP: allowed"), "{text}");
    assert!(text.contains("directly: denied"), "{text}");
    let (code, text) =
        trace("PC025/egress-gateway-task-before-network-policy", "default/sleep", "edition.cnn.com", "443", "json");
    assert_eq!(code, Some(0), "{text}");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["mesh"]["route"], "gateway");
    assert_eq!(doc["hops"].as_array().unwrap().len(), 2);
    assert_eq!(doc["bypass"]["verdict"], "allowed");
    // A locked-down gateway fails the route at its second hop.
    let (code, text) =
        trace("PC026/gateway-locked-down-and-forgotten", "test-egress/sleep", "edition.cnn.com", "443", "human");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("on 443/TCP: denied"), "{text}");
}

/// "Accessing External Services" in REGISTRY_ONLY: a host without a ServiceEntry is refused by
/// the sidecar, whatever the L4 layers allow.
#[test]
fn trace_reports_a_registry_refusal() {
    let (code, text) = trace("PC027/intent-host-the-registry-refuses", "shop/pay", "api.stripe.com", "443", "human");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.starts_with("DENIED: Deployment shop/pay -> api.stripe.com"), "{text}");
    assert!(text.contains("REGISTRY_ONLY (set by ConfigMap istio-system/istio (data.mesh))"), "{text}");
    // With a ServiceEntry and the intent, the same connection goes straight out.
    let (code, text) = trace("PC027/ok-both-layers-allow", "shop/pay", "api.stripe.com", "443", "human");
    assert_eq!(code, Some(0), "{text}");
}

/// An ipBlock narrower than a whole family may or may not hold a name's addresses: offline that
/// cannot be decided, so PC026 stays quiet and `trace` says the verdict may be the opposite.
#[test]
fn a_pinned_address_range_is_undecided_for_a_name() {
    let (code, text) =
        trace("PC026/ok-gateway-egress-pinned-to-addresses", "test-egress/sleep", "edition.cnn.com", "443", "human");
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(
            "the verdict may be the opposite: an ipBlock of these policies may hold the addresses of edition.cnn.com"
        ),
        "{text}"
    );
}

/// "Egress TLS Origination": the ServiceEntry sends port 80 to `targetPort: 443`, so the
/// sidecar connects on 443, and that is the port the L4 layers must allow.
#[test]
fn tls_origination_by_target_port_is_judged_on_443() {
    let (code, text) = trace("PC027/tls-origination-leaves-on-443", "default/sleep", "edition.cnn.com", "80", "human");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("sends it to edition.cnn.com on port 443: ServiceEntry default/edition-cnn-com"), "{text}");
    assert!(
        text.contains(
            "hop 1: Deployment default/sleep -> edition.cnn.com (external, address unknown) on 443/TCP: denied"
        ),
        "{text}"
    );
    let (code, text) =
        trace("PC027/ok-tls-origination-allowed-on-443", "default/sleep", "edition.cnn.com", "80", "human");
    assert_eq!(code, Some(0), "{text}");
}

/// The mesh settings are a YAML document inside a string: read with the same bounds as any
/// document, so an alias bomb there is refused where it is written, not expanded.
#[test]
fn an_alias_bomb_in_the_mesh_settings_is_refused() {
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let p = i - 1;
        bomb.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
    }
    let indented: String = bomb.lines().map(|l| format!("    {l}\n")).collect();
    let yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: |\n{indented}"
    );
    let mut project = Project::new("default");
    project.add_text("input.yaml", yaml, true);
    let problems = &project.inventory.problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].pointer, "/data/mesh");
    assert!(problems[0].message.contains("alias bomb"), "{problems:?}");
    assert!(project.inventory.mesh_settings.is_empty());
}
