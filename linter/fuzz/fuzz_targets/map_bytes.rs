//! Arbitrary bytes as `portcullis map --from FILE` input (sensor JSON lines or a saved map):
//! reading, every format, and the intents export, which must always be valid intents.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_linter::egress::map::{MapLimits, export_intents, read_map};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let limits = MapLimits { workloads: 16, names_per_workload: 16, addresses_per_name: 4 };
    let (map, _) = read_map(text, limits);
    let snapshot = map.snapshot();
    assert!(snapshot.workloads.len() <= 16);
    let json = serde_json::to_string(&snapshot).unwrap();
    let (again, problems) = read_map(&json, limits);
    assert!(problems.is_empty());
    assert_eq!(again.snapshot(), snapshot);
    for intent in export_intents(&snapshot).intents {
        let spec: portcullis_linter::egress::EgressIntentSpec = serde_json::from_value(intent["spec"].clone()).unwrap();
        let meta = portcullis_linter::egress::IntentMeta::new("ns", "name");
        assert!(portcullis_linter::egress::intents::compile(meta, &spec).is_ok(), "{intent}");
    }
});
