//! `portcullis replay`: the fixtures of `testcases/replay/<case>/` (manifests, `traffic.json`,
//! the expected verdicts in README.md, the output snapshotted beside them per format), that
//! every fix replay writes allows what it is written for, and a property test that replay's
//! verdict for every edge is `trace`'s (the evaluator judging the same two endpoints), over
//! every semantics truth table and diff fixture, with recorded workloads standing in for the
//! manifests' ones.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/rng.rs"]
mod rng;

use std::net::IpAddr;
use std::path::Path;

use portcullis_linter::diff::{self, Destination};
use portcullis_linter::model::WorkloadId;
use portcullis_linter::project::Project;
use portcullis_linter::replay::{self, Fix, TrafficLog, traffic};
use portcullis_linter::semantics::{Endpoint, Evaluator, Traffic};
use rng::Rng;
use serde_json::{Value, json};

/// The manifests (YAML) of a directory, as the CLI loads them: with the policies EgressIntents
/// render to.
fn load_dir(dir: &Path, extra: &[String]) -> Project {
    let mut project = Project::new("default");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for path in files {
        let name = path.strip_prefix(common::repo()).unwrap().to_string_lossy().into_owned();
        project.add_text(&name, std::fs::read_to_string(&path).unwrap(), true);
    }
    for (i, text) in extra.iter().enumerate() {
        project.add_text(&format!("fix-{i}.json"), text.clone(), true);
    }
    project.expand_intents(&portcullis_linter::config::DnsConfig::default());
    project
}

fn read_log(path: &Path) -> TrafficLog {
    traffic::parse(&std::fs::read(path).unwrap(), traffic::Bounds::default()).unwrap()
}

/// Every fix applied: patched policies and the new objects, as JSON documents.
fn apply_fixes(project: &Project, r: &replay::Replay) -> Vec<String> {
    let mut patched: std::collections::BTreeMap<String, Value> = std::collections::BTreeMap::new();
    let mut docs = Vec::new();
    for g in &r.groups {
        let Fix::Change { policy, objects } = &g.fix else { continue };
        if let Some(p) = policy {
            let object = project.inventory.object(project.inventory.policy(p.id).object);
            let current = patched.remove(&p.policy).unwrap_or_else(|| object.value.clone());
            patched.insert(p.policy.clone(), portcullis_linter::fix::apply(&current, &p.patch.to_patch()).unwrap());
        }
        docs.extend(objects.iter().map(replay::FixObject::to_json));
    }
    docs.extend(patched.into_values().map(|v| v.to_string()));
    docs
}

#[test]
fn replay_fixtures() {
    let root = common::repo().join("testcases/replay");
    let mut cases: Vec<_> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    cases.sort();
    assert!(!cases.is_empty(), "expected the replay cases in {}", root.display());
    for dir in cases {
        assert!(dir.join("README.md").is_file(), "{}: README.md states the expected verdicts", dir.display());
        let project = load_dir(&dir, &[]);
        let log = read_log(&dir.join("traffic.json"));
        let r = replay::replay(&project, &log);
        insta::with_settings!({
            snapshot_path => dir.clone(),
            prepend_module_to_snapshot => false,
            input_file => dir.join("README.md"),
            omit_expression => true,
        }, {
            insta::assert_snapshot!("human", replay::render_human(&r));
            insta::assert_snapshot!("markdown", replay::render_markdown(&r));
            insta::assert_snapshot!("json", replay::render_json(&r));
            insta::assert_snapshot!("sarif", replay::render_sarif(&r));
        });
        // Every edge a group lists is denied, and every denied edge is in a group.
        let allowed = replay::allowed(&project, &log);
        assert_eq!(allowed.iter().filter(|a| !**a).count(), r.denied_edges, "{}", dir.display());
        // The fixes allow everything they are written for: replayed again, nothing is denied
        // but what no NetworkPolicy change can allow.
        let fixed = load_dir(&dir, &apply_fixes(&project, &r));
        let again = replay::replay(&fixed, &log);
        let unfixable: usize =
            r.groups.iter().filter(|g| matches!(g.fix, Fix::None { .. })).map(|g| g.edges.len()).sum();
        assert!(
            again.denied_edges <= unfixable,
            "{}: after the fixes {} edges are still denied:\n{}",
            dir.display(),
            again.denied_edges,
            replay::render_human(&again)
        );
    }
}

/// The verdicts `testcases/replay/shop-lockdown/README.md` states, edge by edge, written from
/// the NetworkPolicy reference before the code.
#[test]
fn shop_lockdown_verdicts_are_the_readme_s() {
    let dir = common::repo().join("testcases/replay/shop-lockdown");
    let project = load_dir(&dir, &[]);
    let log = read_log(&dir.join("traffic.json"));
    assert_eq!(replay::allowed(&project, &log), [true, true, true, false, false, false, false, false]);
    let r = replay::replay(&project, &log);
    // Edge 7 is denied both ways: two groups; five edges in all.
    assert_eq!((r.denied_edges, r.groups.len()), (5, 5));
    // No rule lands in a namespace-wide policy: that would open the edge for every pod.
    for g in &r.groups {
        if let Fix::Change { policy: Some(p), .. } = &g.fix {
            assert!(!["shop/default-deny", "shop/allow-dns"].contains(&p.policy.as_str()), "{}", p.policy);
        }
    }
    let text = replay::render_json(&r);
    for per_revision in ["pod-template-hash", "statefulset.kubernetes.io/pod-name", "batch.kubernetes.io/job-name"] {
        assert!(!text.contains(per_revision), "a fix selects by {per_revision}");
    }
}

/// A recorded workload the manifests do not hold gets a policy of its own, not a rule in the
/// namespace-wide default deny.
#[test]
fn a_workload_only_default_deny_isolates_gets_its_own_policy() {
    let manifests = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: ops}
spec: {podSelector: {}, policyTypes: [Egress]}
"#;
    let mut project = Project::new("default");
    project.add_text("p.yaml", manifests.to_owned(), true);
    let log = traffic::parse(
        br#"{"version":1,"edges":[{"source":{"namespace":"ops","workload":"Deployment/backup","labels":{"app":"backup","pod-template-hash":"x1"}},
            "destination":{"address":"2001:db8::5"},"port":873,"firstSeen":"2026-11-20T00:00:00Z","lastSeen":"2026-11-21T00:00:00Z","count":4}]}"#,
        traffic::Bounds::default(),
    )
    .unwrap();
    let r = replay::replay(&project, &log);
    let Fix::Change { policy: None, objects } = &r.groups[0].fix else { panic!("{:?}", r.groups[0].fix) };
    assert_eq!(
        serde_json::to_value(&objects[0]).unwrap()["spec"],
        json!({"podSelector": {"matchLabels": {"app": "backup"}}, "policyTypes": ["Egress"],
               "egress": [{"to": [{"ipBlock": {"cidr": "2001:db8::5/128"}}], "ports": [{"port": 873, "protocol": "TCP"}]}]})
    );
    let mut fixed = Project::new("default");
    fixed.add_text("p.yaml", manifests.to_owned(), true);
    fixed.add_text("fix.json", objects[0].to_json(), true);
    assert_eq!(replay::replay(&fixed, &log).denied_edges, 0);
}

/// A workload as the recorder writes it: the manifests' workload, or a recorded stand-in with
/// the same labels under another name (so the manifests do not hold it).
fn workload_peer(project: &Project, id: WorkloadId, stand_in: bool) -> Value {
    let inv = &project.inventory;
    let w = inv.workload(id);
    // A recorded workload carries no addresses: stand in only for one whose addresses the
    // manifests do not give either.
    let stand_in = stand_in && w.pod_ips.is_empty();
    let kind = &inv.object(w.object).id.kind;
    let name = if stand_in { format!("{}-recorded", w.name) } else { w.name.clone() };
    let mut labels = serde_json::to_value(&w.labels).unwrap();
    labels["pod-template-hash"] = json!("5f6b8c");
    let mut peer = json!({"namespace": w.namespace, "workload": format!("{kind}/{name}"), "labels": labels});
    if stand_in {
        let ports: Vec<Value> = w
            .ports
            .iter()
            .map(|p| json!({"name": p.name, "port": p.port, "protocol": p.protocol.as_str()}))
            .map(|mut p| {
                if p["name"].is_null() {
                    p.as_object_mut().unwrap().remove("name");
                }
                p
            })
            .collect();
        peer["ports"] = Value::Array(ports);
        let ns = inv.namespace(&w.namespace).unwrap();
        if ns.object.is_none() {
            // Only the name label: what the evaluator reads for a namespace the manifests lack.
            peer["namespaceLabels"] = json!({});
        }
    }
    peer
}

#[test]
fn replay_agrees_with_trace_edge_by_edge() {
    let root = common::repo().join("testcases");
    let mut projects: Vec<Project> = Vec::new();
    let semantics = root.join("semantics");
    let mut files: Vec<_> = std::fs::read_dir(&semantics).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in files {
        let mut p = Project::new("default");
        p.add_text(&f.to_string_lossy(), std::fs::read_to_string(&f).unwrap(), true);
        p.expand_intents(&portcullis_linter::config::DnsConfig::default());
        projects.push(p);
    }
    for case in std::fs::read_dir(root.join("diff")).unwrap() {
        projects.push(load_dir(&case.unwrap().path().join("head"), &[]));
    }
    projects.push(load_dir(&root.join("replay/shop-lockdown"), &[]));
    let mut rng = Rng(0x5eed_7e91_a7c0_ffee);
    let mut judged = 0;
    for project in &projects {
        let inv = &project.inventory;
        let ids: Vec<WorkloadId> =
            (0..inv.workloads.len()).map(WorkloadId).filter(|id| !inv.workload(*id).host_network).collect();
        if ids.is_empty() {
            continue;
        }
        let (destinations, mut ports) = diff::probes(project, project);
        ports.push(diff::Port { port: 443, protocol: portcullis_linter::model::Protocol::Tcp });
        let names: Vec<&str> = destinations
            .iter()
            .filter_map(|d| match d {
                Destination::Name { name } => Some(name.as_str()),
                _ => None,
            })
            .chain(["api.example.com"])
            .collect();
        let addresses: Vec<IpAddr> = destinations
            .iter()
            .filter_map(|d| match d {
                Destination::Address { address, .. } => Some(*address),
                _ => None,
            })
            .chain(["203.0.113.9".parse().unwrap()])
            .collect();
        // Edges, and for each the endpoints trace would judge.
        #[derive(Clone, Copy)]
        enum To<'a> {
            Pod(WorkloadId),
            Address(IpAddr),
            Resolved(IpAddr, &'a str),
        }
        let mut edges = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..60 {
            let from = *rng.pick(&ids);
            let port = *rng.pick(&ports);
            let to = match rng.below(3) {
                0 => To::Pod(*rng.pick(&ids)),
                1 => To::Address(*rng.pick(&addresses)),
                _ => To::Resolved(*rng.pick(&addresses), names[rng.below(names.len())]),
            };
            let destination = match to {
                To::Pod(id) => workload_peer(project, id, rng.chance(50)),
                To::Address(ip) => json!({"address": ip.to_string()}),
                To::Resolved(ip, name) => json!({"address": ip.to_string(), "name": name}),
            };
            edges.push(json!({
                "source": workload_peer(project, from, rng.chance(50)),
                "destination": destination,
                "port": port.port, "protocol": port.protocol.as_str(),
                "firstSeen": "2026-11-20T00:00:00Z", "lastSeen": "2026-11-21T00:00:00Z", "count": 1,
            }));
            let eval = Evaluator::new(inv);
            let to = match to {
                To::Pod(id) => Endpoint::Pod(eval.pod(id)),
                To::Address(ip) => Endpoint::Address(ip),
                To::Resolved(ip, name) => Endpoint::Resolved(ip, name),
            };
            let traffic = Traffic { port: port.port, protocol: port.protocol };
            expected.push(eval.evaluate(&Endpoint::Pod(eval.pod(from)), &to, traffic).allowed);
        }
        let text = json!({"version": 1, "edges": edges}).to_string();
        let log = traffic::parse(text.as_bytes(), traffic::Bounds::default()).unwrap();
        let got = replay::allowed(project, &log);
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g, e, "edge {i} of {}: {}", project.sources.len(), serde_json::to_string(&edges[i]).unwrap());
        }
        let r = replay::replay(project, &log);
        assert_eq!(r.denied_edges, expected.iter().filter(|a| !**a).count());
        judged += edges.len();
    }
    assert!(judged > 1500, "{judged}");
}

/// `map --export-policies`: the policies written from the shop's traffic deny none of it when
/// replayed, lint clean, and deny what was not seen.
#[test]
fn exported_policies_allow_exactly_what_was_seen() {
    let dir = common::repo().join("testcases/replay/shop-lockdown");
    let log = read_log(&dir.join("traffic.json"));
    let dns = portcullis_linter::config::DnsConfig::default();
    let export = replay::export_policies(&log, &dns);
    // kube-system (coredns as a destination) is a system namespace: not locked down.
    assert_eq!(export.skipped.len(), 1, "{:?}", export.skipped);
    assert!(export.skipped[0].starts_with("kube-system:"));
    let texts: Vec<String> = export.objects.iter().map(Value::to_string).collect();
    let mut project = Project::new("default");
    for (i, t) in texts.iter().enumerate() {
        project.add_text(&format!("export-{i}.json"), t.clone(), true);
    }
    project.add_text("workloads.yaml", std::fs::read_to_string(dir.join("workloads.yaml")).unwrap(), false);
    // The recorded workloads the manifests lack, as the cluster runs them (so no selector
    // matches nothing).
    let mut pods = std::collections::BTreeMap::new();
    for e in &log.edges {
        for p in [&e.source, &e.destination] {
            if let traffic::Peer::Workload(w) = p
                && !["frontend", "payments", "db"].contains(&w.kind_and_name().1)
            {
                let pod = json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": w.kind_and_name().1, "namespace": w.namespace, "labels": w.labels},
                    "spec": {"containers": [{"name": "c", "image": "registry.example/c:1"}]}});
                pods.insert(w.key(), pod.to_string());
            }
        }
    }
    for (key, pod) in pods {
        project.add_text(&format!("{key}.json"), pod, false);
    }
    project.expand_intents(&dns);
    assert!(project.load_problems.is_empty() && project.inventory.problems.is_empty());
    let r = replay::replay(&project, &log);
    assert_eq!(r.denied_edges, 0, "{}", replay::render_human(&r));
    let findings = common::lint(&project, &portcullis_linter::config::Config::default());
    assert!(findings.is_empty(), "{:#?}", findings.iter().map(|d| (&d.code, &d.message)).collect::<Vec<_>>());
    // What was not seen is denied: payments to the frontend, and the frontend to Stripe.
    let unseen = br#"{"version":1,"edges":[
        {"source":{"namespace":"shop","workload":"Deployment/payments","labels":{"app":"payments"}},
         "destination":{"namespace":"shop","workload":"Deployment/frontend","labels":{"app":"frontend"}},
         "port":8080,"firstSeen":"2026-11-20T00:00:00Z","lastSeen":"2026-11-20T00:00:00Z","count":1},
        {"source":{"namespace":"shop","workload":"Deployment/frontend","labels":{"app":"frontend"}},
         "destination":{"address":"203.0.113.7","name":"api.stripe.com"},
         "port":443,"firstSeen":"2026-11-20T00:00:00Z","lastSeen":"2026-11-20T00:00:00Z","count":1}]}"#;
    let unseen = traffic::parse(unseen, traffic::Bounds::default()).unwrap();
    assert_eq!(replay::allowed(&project, &unseen), [false, false]);
}

/// A replay large enough to run on two threads gives, byte for byte, the answer of one: the
/// runs' groups, counts, edges and fixes merge as one run would have built them.
#[test]
fn replay_on_two_threads_answers_as_on_one() {
    let policies = "apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: data}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: shop-egress, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - ports: [{port: 53, protocol: UDP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: w1-egress, namespace: shop}
spec:
  podSelector: {matchLabels: {app: w1}}
  policyTypes: [Egress]
  egress:
  - ports: [{port: 443}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-ingress, namespace: data}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: shop}}, podSelector: {matchLabels: {app: w0}}}]
";
    let mut rng = Rng(0x5eed_2026);
    let workload = |ns: &str, app: String| json!({"namespace": ns, "workload": format!("Deployment/{app}"), "labels": {"app": app}});
    let edges: Vec<Value> = (0..12_000u32)
        .map(|i| {
            let source = workload("shop", format!("w{}", rng.below(60)));
            let destination = match rng.below(3) {
                0 => workload("data", if rng.below(2) == 0 { "db".to_owned() } else { format!("d{}", rng.below(40)) }),
                1 => json!({"address": format!("203.0.113.{}", rng.below(200)), "name": format!("api{}.example.com", rng.below(30))}),
                _ => json!({"address": format!("198.51.100.{}", rng.below(200))}),
            };
            json!({"source": source, "destination": destination, "port": 1000 + i, "protocol": if i % 7 == 0 { "UDP" } else { "TCP" },
                   "firstSeen": "2026-11-20T00:00:00Z", "lastSeen": format!("2026-11-2{}T10:00:00Z", rng.below(6)), "count": 1 + rng.below(50)})
        })
        .collect();
    let log = traffic::parse(json!({"version": 1, "edges": edges}).to_string().as_bytes(), traffic::Bounds::default())
        .unwrap();
    let answer = |threads: usize| {
        let mut project = Project::new("default");
        project.add_text("policies.yaml", policies.to_owned(), true);
        project.set_threads(threads);
        serde_json::to_string(&replay::replay(&project, &log)).unwrap()
    };
    let one = answer(1);
    assert!(one.contains("\"deniedEdges\":") && one.len() > 1_000_000, "a large answer: {} bytes", one.len());
    assert_eq!(one, answer(2));
    assert_eq!(one, answer(3));
}
