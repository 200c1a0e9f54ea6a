//! `portcullis diff`: the fixtures of `testcases/diff/<case>/` (base/ and head/, the expected
//! change in README.md, the output snapshotted beside them per format), and a property test
//! against a brute-force oracle: for random small inventories and random edits, the diff's
//! groups expand to exactly the connections whose verdict differs when every workload pair is
//! judged on both sides.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/rng.rs"]
mod rng;

use std::collections::BTreeSet;
use std::path::Path;

use portcullis_linter::diff::{self, Change, Destination, Port};
use portcullis_linter::model::WorkloadId;
use portcullis_linter::project::Project;
use portcullis_linter::semantics::{Endpoint, Evaluator, Traffic};
use rng::Rng;

fn load(dir: &Path, side: &str) -> Project {
    let mut project = Project::new("default");
    for entry in std::fs::read_dir(dir.join(side)).unwrap() {
        let path = entry.unwrap().path();
        let name = format!("{side}/{}", path.file_name().unwrap().to_string_lossy());
        project.add_text(&name, std::fs::read_to_string(&path).unwrap(), true);
    }
    // As the CLI loads a side: with the policies EgressIntents render to.
    project.expand_intents(&portcullis_linter::config::DnsConfig::default());
    project
}

#[test]
fn diff_fixtures() {
    let root = common::repo().join("testcases/diff");
    let mut cases: Vec<_> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    cases.sort();
    assert!(cases.len() >= 6, "expected the diff cases in {}", root.display());
    for dir in cases {
        assert!(dir.join("README.md").is_file(), "{}: README.md states the expected change", dir.display());
        let (base, head) = (load(&dir, "base"), load(&dir, "head"));
        let d = diff::diff(&base, &head);
        insta::with_settings!({
            snapshot_path => dir.clone(),
            prepend_module_to_snapshot => false,
            input_file => dir.join("README.md"),
            omit_expression => true,
        }, {
            insta::assert_snapshot!("human", diff::render_human(&d));
            insta::assert_snapshot!("markdown", diff::render_markdown(&d));
            insta::assert_snapshot!("json", serde_json::to_string_pretty(&d).unwrap());
            insta::assert_snapshot!("sarif", diff::render_sarif(&d));
        });
        // Either direction of the same change is the same connections, opened and closed swapped.
        let back = diff::diff(&head, &base);
        let flip = |c: Change| if c == Change::Opened { Change::Closed } else { Change::Opened };
        assert_eq!(
            expand(&back).into_iter().map(|(c, s, d, p)| (flip(c), s, d, p)).collect::<BTreeSet<_>>(),
            expand(&d),
            "{}",
            dir.display()
        );
    }
}

type Row = (Change, String, Destination, Port);

/// Every (change, source, destination, port) a diff's groups stand for.
fn expand(d: &diff::Diff) -> BTreeSet<Row> {
    let mut out = BTreeSet::new();
    for g in &d.groups {
        for (s, dst) in &g.pairs {
            for p in &g.ports {
                out.insert((g.change, s.clone(), dst.clone(), *p));
            }
        }
    }
    out
}

const APPS: [&str; 3] = ["a", "b", "c"];
const NAMESPACES: [&str; 3] = ["n1", "n2", "n3"];

fn workload(ns: &str, name: &str, app: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}}}}}\nspec: {{containers: [{{name: c, image: x, ports: [{{name: web, containerPort: {port}}}]}}]}}\n"
    )
}

fn peer(rng: &mut Rng) -> String {
    match rng.below(5) {
        0 => format!("podSelector: {{matchLabels: {{app: {}}}}}", *rng.pick(&APPS)),
        1 => format!("namespaceSelector: {{matchLabels: {{team: {}}}}}", *rng.pick(&["x", "y"])),
        2 => format!(
            "namespaceSelector: {{matchLabels: {{team: {}}}}}\n      podSelector: {{matchLabels: {{app: {}}}}}",
            *rng.pick(&["x", "y"]),
            *rng.pick(&APPS)
        ),
        3 => "ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}".to_owned(),
        _ => format!("ipBlock: {{cidr: {}}}", *rng.pick(&["10.0.0.0/8", "192.0.2.0/24"])),
    }
}

fn policy(rng: &mut Rng, ns: &str, name: &str) -> String {
    let selector = match rng.below(2) {
        0 => "{}".to_owned(),
        _ => format!("{{matchLabels: {{app: {}}}}}", *rng.pick(&APPS)),
    };
    let types = *rng.pick(&["[Ingress]", "[Egress]", "[Ingress, Egress]"]);
    let mut text = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  podSelector: {selector}\n  policyTypes: {types}\n"
    );
    for (key, field) in [("ingress", "from"), ("egress", "to")] {
        if rng.below(3) == 0 {
            continue;
        }
        text.push_str(&format!("  {key}:\n"));
        for _ in 0..1 + rng.below(2) {
            text.push_str(&format!("  - {field}:\n    - {}\n", peer(rng)));
            if rng.below(2) == 0 {
                let port = *rng.pick(&["80", "5432", "web"]);
                text.push_str(&format!("    ports: [{{port: {port}}}]\n"));
            }
        }
    }
    text
}

/// A random inventory as documents (namespaces, pods, policies), and an edit of it.
fn scenario(rng: &mut Rng) -> (Vec<String>, Vec<String>) {
    let mut docs = Vec::new();
    for ns in NAMESPACES {
        docs.push(format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{team: {}}}}}\n",
            *rng.pick(&["x", "y"])
        ));
    }
    for i in 0..2 + rng.below(3) {
        let ns = *rng.pick(&NAMESPACES);
        let app: &str = APPS[rng.below(APPS.len())];
        docs.push(workload(ns, &format!("w{i}"), app, if rng.below(2) == 0 { 80 } else { 5432 }));
    }
    for i in 0..1 + rng.below(3) {
        let ns = *rng.pick(&NAMESPACES);
        docs.push(policy(rng, ns, &format!("p{i}")));
    }
    let mut head = docs.clone();
    // One or two edits: two reach a source's egress and a destination's ingress in different
    // namespaces at once.
    for _ in 0..1 + rng.below(2) {
        edit(rng, &mut head);
    }
    (docs, head)
}

/// One random edit of an inventory's documents.
fn edit(rng: &mut Rng, head: &mut Vec<String>) {
    match rng.below(4) {
        // Relabel a workload.
        0 => {
            let pods: Vec<usize> = (0..head.len()).filter(|i| head[*i].contains("kind: Pod")).collect();
            let i = pods[rng.below(pods.len())];
            let to = *rng.pick(&APPS);
            head[i] = APPS
                .iter()
                .fold(head[i].clone(), |t, a| t.replace(&format!("app: {a}}}}}"), &format!("app: {to}}}}}")));
        }
        // Delete a policy.
        1 => {
            if let Some(i) = head.iter().position(|d| d.contains("kind: NetworkPolicy")) {
                head.remove(i);
            }
        }
        // Add a policy.
        2 => {
            let ns = *rng.pick(&NAMESPACES);
            head.push(policy(rng, ns, "added"));
        }
        // Relabel a namespace.
        _ => {
            let i = rng.below(NAMESPACES.len());
            head[i] = if head[i].contains("team: x") {
                head[i].replace("team: x", "team: y")
            } else {
                head[i].replace("team: y", "team: x")
            };
        }
    }
}

fn project(docs: &[String]) -> Project {
    let mut p = Project::new("default");
    p.add_text("input.yaml", docs.join("---\n"), true);
    p
}

/// The oracle: every pair of workloads present on both sides and every probed destination and
/// port, judged independently on each side with the evaluator `trace` uses.
fn oracle(base: &Project, head: &Project) -> BTreeSet<Row> {
    let key = |p: &Project, id: WorkloadId| {
        let w = p.inventory.workload(id);
        format!("{}/{}/{}", w.namespace, p.inventory.object(w.object).id.kind, w.name)
    };
    let ids = |p: &Project| -> Vec<(String, WorkloadId)> {
        (0..p.inventory.workloads.len()).map(|i| (key(p, WorkloadId(i)), WorkloadId(i))).collect()
    };
    let (bw, hw) = (ids(base), ids(head));
    let find = |list: &[(String, WorkloadId)], k: &str| list.iter().find(|(x, _)| x == k).map(|(_, id)| *id);
    // The destinations and ports probed are the diff's documented choice; the oracle judges all
    // of them for every pair of workloads, with no shortcut.
    let (destinations, ports) = diff::probes(base, head);
    let (be, he) = (Evaluator::new(&base.inventory), Evaluator::new(&head.inventory));
    let mut out = BTreeSet::new();
    for (source, b_src) in &bw {
        let Some(h_src) = find(&hw, source) else { continue };
        for dst in &destinations {
            for port in &ports {
                let traffic = Traffic { port: port.port, protocol: port.protocol };
                let judge = |e: &Evaluator<'_>, list: &[(String, WorkloadId)], src: WorkloadId| {
                    let to = match dst {
                        Destination::Workload { workload } => Endpoint::Pod(e.pod(find(list, workload).unwrap())),
                        Destination::Address { address, .. } => Endpoint::Address(*address),
                        Destination::Name { name } => Endpoint::Name(name),
                    };
                    e.evaluate(&Endpoint::Pod(e.pod(src)), &to, traffic).allowed
                };
                let (vb, vh) = (judge(&be, &bw, *b_src), judge(&he, &hw, h_src));
                if vb != vh {
                    let change = if vh { Change::Opened } else { Change::Closed };
                    out.insert((change, source.clone(), dst.clone(), *port));
                }
            }
        }
    }
    out
}

#[test]
fn diff_agrees_with_judging_every_pair() {
    // PORTCULLIS_DIFF_SEED and PORTCULLIS_DIFF_CASES run other and more cases locally.
    let var = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let mut rng = Rng(var("PORTCULLIS_DIFF_SEED", 0x5EED_D1FF));
    let mut changed = 0;
    let cases = var("PORTCULLIS_DIFF_CASES", 300) as usize;
    for case in 0..cases {
        let (base_docs, head_docs) = scenario(&mut rng);
        let (base, head) = (project(&base_docs), project(&head_docs));
        let d = diff::diff(&base, &head);
        let got = expand(&d);
        let want = oracle(&base, &head);
        changed += usize::from(!want.is_empty());
        assert_eq!(got, want, "case {case}\nbase:\n{}\nhead:\n{}", base_docs.join("---\n"), head_docs.join("---\n"));
        // The shortcut judges no fewer changes than judging every pair.
        let (all, _) = diff::changes(&base, &head, true);
        let (some, _) = diff::changes(&base, &head, false);
        assert_eq!(all.len(), some.len(), "case {case}");
    }
    // The generator produces real changes, not only no-ops.
    assert!(changed > cases / 4, "only {changed} of {cases} cases changed anything");
}

/// A source's egress and a destination's ingress change at once, in namespaces neither names:
/// the pair is settled from the source's class answer and the destination's representative
/// answer, and must still agree with judging it. Base: nothing isolates. Head: `s`'s egress
/// allows every address (and so every pod without one), so its answers do not move; `d`'s
/// ingress allows nothing (first case: every port closes, by the ingress) or 80 from everywhere
/// (second case: every other port closes, 80 stays open).
#[test]
fn both_ends_changed_in_namespaces_neither_names() {
    let namespaces = "apiVersion: v1\nkind: Namespace\nmetadata: {name: n1}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: n2}\n";
    let pods = format!("{}---\n{}", workload("n1", "s", "a", 80), workload("n2", "d", "b", 80));
    let egress = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: out, namespace: n1}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - to: [{ipBlock: {cidr: 0.0.0.0/0}}]\n";
    let deny = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: in, namespace: n2}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n";
    let open80 = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: in, namespace: n2}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n  ingress:\n  - ports: [{port: 80}]\n";
    let base = vec![namespaces.to_owned(), pods.clone()];
    for (ingress, closed_80) in [(deny, true), (open80, false)] {
        let head = vec![namespaces.to_owned(), pods.clone(), egress.to_owned(), ingress.to_owned()];
        let (b, h) = (project(&base), project(&head));
        let want = oracle(&b, &h);
        let d_to_80 =
            (Change::Closed, "n1/Pod/s".to_owned(), Destination::Workload { workload: "n2/Pod/d".to_owned() });
        let got_80 = want.iter().any(|(c, s, dst, p)| (*c, s.clone(), dst.clone()) == d_to_80 && p.port == 80);
        assert_eq!(got_80, closed_80, "the oracle's own verdict on 80: {want:?}");
        assert_eq!(expand(&diff::diff(&b, &h)), want, "head:\n{}", head.join("---\n"));
    }
}

/// One templated policy changed the same way in three namespaces reads as one line with the
/// three places, in human and markdown output; JSON keeps the three groups and their locations.
#[test]
fn the_same_change_in_many_namespaces_reads_as_one_line() {
    let side = |except: bool| {
        let mut docs = Vec::new();
        for ns in ["a", "b", "c"] {
            docs.push(format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"));
            docs.push(workload(ns, "web", "web", 80));
            let except = if except { ", except: [10.0.0.0/8]" } else { "" };
            docs.push(format!(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: out, namespace: {ns}}}\nspec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{{ipBlock: {{cidr: 0.0.0.0/0{except}}}}}]\n    ports: [{{port: 443}}]\n"
            ));
        }
        project(&docs)
    };
    let d = diff::diff(&side(true), &side(false));
    assert_eq!(d.groups.len(), 3, "one group per namespace's policy: {:#?}", d.groups);
    let human = diff::render_human(&d);
    assert_eq!(human.matches("  + ").count(), 1, "{human}");
    // The pods too: a whole address family matches pods whose addresses the input does not give
    // (docs/decisions.md), and nothing isolates their ingress.
    assert!(
        human.contains(
            "+ 443/TCP from a/Pod/web, b/Pod/web, c/Pod/web to a/Pod/web, b/Pod/web, c/Pod/web, 10.0.0.1 (10.0.0.0/8)"
        ),
        "{human}"
    );
    assert!(human.contains("allowed by out egress[0], in 3 places: input.yaml:"), "{human}");
    assert!(human.ends_with("1 group(s) opened, 0 closed.\n"), "{human}");
    let markdown = diff::render_markdown(&d);
    assert_eq!(markdown.matches("| ➕ opened |").count(), 1, "{markdown}");
}

/// `portcullis matrix`: every row agrees with the evaluator `trace` uses, port by port, and the
/// table of the and-to-or fixture's HEAD is what NetworkPolicy says (snapshot, reviewed: ops may
/// reach db on 5432 only, shop's pods reach only shop pods and 443 outside 10.0.0.0/8).
#[test]
fn matrix_agrees_with_the_evaluator() {
    let dir = common::repo().join("testcases/diff/and-to-or");
    let head = load(&dir, "head");
    let rows = diff::matrix(&head);
    let eval = Evaluator::new(&head.inventory);
    let id = |k: &str| {
        (0..head.inventory.workloads.len())
            .map(WorkloadId)
            .find(|w| {
                let wl = head.inventory.workload(*w);
                format!("{}/{}/{}", wl.namespace, head.inventory.object(wl.object).id.kind, wl.name) == k
            })
            .unwrap()
    };
    assert!(rows.len() > 20, "{}", rows.len());
    for r in &rows {
        let from = Endpoint::Pod(eval.pod(id(&r.source)));
        let to = match &r.destination {
            Destination::Workload { workload } => Endpoint::Pod(eval.pod(id(workload))),
            Destination::Address { address, .. } => Endpoint::Address(*address),
            Destination::Name { name } => Endpoint::Name(name),
        };
        for (ports, want) in [(&r.allowed, true), (&r.denied, false)] {
            for p in ports {
                let got = eval.evaluate(&from, &to, Traffic { port: p.port, protocol: p.protocol }).allowed;
                assert_eq!(got, want, "{} -> {} on {p}", r.source, r.destination.label());
            }
        }
    }
    insta::with_settings!({
        snapshot_path => dir.clone(),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!("matrix", diff::render_matrix_table(&rows));
    });
}
