//! Arbitrary bytes through everything `portcullis lint` does: decode, parse, model, every rule,
//! locate every finding, render every format, and apply every fix's patch. A run that keeps no
//! object values (as `portcullis lint` runs) must find exactly what the full run finds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_linter::config::Config;
use portcullis_linter::finding::Edit;
use portcullis_linter::load::decode_text;
use portcullis_linter::project::Project;
use portcullis_linter::report::{render, OutputFormat, Report, Summary};

fn load(data: &[u8], keep_values: bool) -> Project {
    let mut project = Project::new("default");
    project.inventory.keep_values(keep_values);
    match decode_text(data.to_vec()) {
        Ok(text) => {
            project.add_text("fuzz.yaml", text, true);
        }
        Err((position, message)) => {
            project.add_rejected("fuzz.yaml", position, message, true);
        }
    }
    project
}

fuzz_target!(|data: &[u8]| {
    let project = load(data, true);
    let config = Config::default();
    let findings = project.lint(&config);
    assert_eq!(findings, load(data, false).lint(&config), "lint-only run differs");
    let diagnostics = project.diagnostics(&findings);
    let summary = Summary::new(1, project.inventory.objects.len(), &diagnostics);
    for format in [OutputFormat::Human, OutputFormat::Json, OutputFormat::Sarif, OutputFormat::Github, OutputFormat::Junit] {
        let _ = render(format, &Report { diagnostics: &diagnostics, summary, sources: &project.sources, color: false, width: None });
    }
    for f in &findings {
        for edit in f.fix.iter().flat_map(|fx| &fx.edits) {
            if let Edit::Patch { object, patch } = edit {
                let _ = portcullis_linter::fix::apply(&project.inventory.object(*object).value, patch);
            }
        }
    }
});
