//! Arbitrary bytes as an AdmissionReview body: parsing (the direct reading agreeing with the
//! typed one wherever it answers), both endpoints' decisions against the admission test state,
//! and encoding the response; the decision memo answering as decided. Never a panic; a 400 or
//! a review.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis_linter::config::Config;
use portcullis_webhook::admission::{self, Endpoint};
use portcullis_webhook::memo::DecisionMemo;
use portcullis_webhook::state::{ClusterState, StaticState};

fn state() -> &'static StaticState {
    static STATE: OnceLock<StaticState> = OnceLock::new();
    STATE.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testcases/admission/state");
        StaticState::load(&dir).map(|(s, _)| s).unwrap_or_default()
    })
}

fuzz_target!(|data: &[u8]| {
    // The direct reading settles only what the typed one settles the same way.
    if let Some(direct) = admission::parse_direct(data) {
        let typed = admission::parse_typed(data);
        assert!(typed.is_ok(), "read directly, refused typed");
        if let Ok(typed) = typed {
            let text = ToString::to_string;
            assert_eq!(direct.object.as_ref().map(text), typed.object.as_ref().map(text));
            assert_eq!(direct.old_object.as_ref().map(text), typed.old_object.as_ref().map(text));
        }
    }
    let Ok(req) = admission::parse(data) else { return };
    let config = Config::default();
    let snapshot = state().snapshot(&req.namespace(), &config.dns.namespace);
    for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
        let outcome = admission::decide(endpoint, &req, &snapshot, &config);
        // Remembered answers are the decided ones, asked the first time and again.
        for _ in 0..2 {
            let remembered = admission::decide_with(endpoint, &req, &snapshot, &config, None, Some(memo()));
            assert_eq!(remembered.decision, outcome.decision);
            assert_eq!(remembered.problems, outcome.problems);
        }
        let _ = admission::response_body(outcome.response);
    }
});

fn memo() -> &'static DecisionMemo {
    static MEMO: OnceLock<DecisionMemo> = OnceLock::new();
    MEMO.get_or_init(|| {
        portcullis_webhook::metrics::Metrics::new().decision_memo(portcullis_webhook::memo::DEFAULT_BUDGET_BYTES)
    })
}
