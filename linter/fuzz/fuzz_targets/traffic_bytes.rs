//! Arbitrary bytes as a traffic file (`portcullis replay --traffic`, `lint --traffic`): reading
//! is bounded and never panics; what it accepts writes back to the same log; replaying it
//! against the shop-lockdown fixture renders in every format and every new object it proposes
//! is a valid EgressIntent or NetworkPolicy.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_linter::project::Project;
use portcullis_linter::replay::{self, Fix, traffic};

const POLICIES: &str = include_str!("../../../testcases/replay/shop-lockdown/policies.yaml");
const WORKLOADS: &str = include_str!("../../../testcases/replay/shop-lockdown/workloads.yaml");

fuzz_target!(|data: &[u8]| {
    let bounds = traffic::Bounds { max_bytes: 1 << 20, max_edges: 64, max_labels: 16, max_hours: 48 };
    let Ok(log) = traffic::parse(data, bounds) else { return };
    let again = serde_json::json!({"version": traffic::SCHEMA_VERSION, "edges": log.edges}).to_string();
    assert_eq!(traffic::parse(again.as_bytes(), bounds).unwrap(), log);
    let mut project = Project::new("default");
    project.add_text("policies.yaml", POLICIES.to_owned(), true);
    project.add_text("workloads.yaml", WORKLOADS.to_owned(), true);
    let r = replay::replay(&project, &log);
    assert!(r.denied_edges <= log.edges.len());
    for text in [replay::render_human(&r), replay::render_json(&r), replay::render_markdown(&r), replay::render_sarif(&r)] {
        assert!(!text.is_empty());
    }
    for g in &r.groups {
        let Fix::Change { objects, .. } = &g.fix else { continue };
        for o in objects {
            let mut check = Project::new("default");
            check.add_text("fix.json", o.to_json(), true);
            assert!(check.load_problems.is_empty() && check.inventory.problems.is_empty(), "{}", o.to_json());
        }
    }
});
