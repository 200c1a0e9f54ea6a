//! A run focused on some objects (what the webhook does: it reviews one object among the
//! stored ones it reads for context) finds exactly what an unfocused run finds about them.
//! Rules that judge each policy on their own skip the others; if one of them reported on an
//! object other than the one it skipped, this test would catch the finding it lost.

mod common;

use portcullis_linter::config::Config;
use portcullis_linter::finding::Finding;
use portcullis_linter::model::ObjectId;
use portcullis_linter::project::{Project, TextFile};
use portcullis_linter::rules::{self, Context};

fn about(findings: &[Finding], object: ObjectId) -> Vec<String> {
    findings.iter().filter(|f| f.object_id == Some(object)).map(|f| format!("{f:?}")).collect()
}

#[test]
fn a_focused_run_finds_what_an_unfocused_one_finds_about_its_objects() {
    let root = common::repo().join("testcases");
    let paths: Vec<_> = ["rules", "semantics", "egress"]
        .iter()
        .flat_map(|dir| common::manifest_files(&root.join(dir)))
        .filter(|p| p.extension().is_some_and(|e| e != "json"))
        .collect();
    assert!(paths.len() > 50, "only {} fixtures found", paths.len());
    let config = Config::default();
    let (mut objects, mut compared) = (0, 0);
    for path in &paths {
        let text = std::fs::read_to_string(path).unwrap();
        let mut project = Project::new("default");
        project.add_texts(vec![TextFile { name: path.display().to_string(), text, superseding: false }], true);
        let cx = Context::new(&project.inventory, &config, &project.load_problems);
        let all = rules::run(&cx);
        for i in 0..project.inventory.objects.len() {
            let id = ObjectId(i);
            let focused = Context::new(&project.inventory, &config, &project.load_problems).focused([id]);
            let found = rules::run(&focused);
            assert_eq!(about(&found, id), about(&all, id), "{}: object {i}", path.display());
            objects += 1;
            compared += about(&all, id).len();
        }
    }
    // The comparison means something only if the fixtures have findings about objects.
    assert!(objects > 200 && compared > 100, "{objects} objects, {compared} findings compared");
}
