//! Arbitrary bytes as a NetworkPolicy from the API server, read the way the watch reads it:
//! never a panic, and a spec read is the spec of the same JSON read as a `Value` (the text
//! `serde_json` writes for it, wherever no key is given twice).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_webhook::watched::WatchedPolicy;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(read) = serde_json::from_slice::<WatchedPolicy>(data) else { return };
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        panic!("read as a policy, refused as JSON");
    };
    match (read.spec, value.get("spec")) {
        (Some(text), Some(spec)) => {
            let again: Value = serde_json::from_str(&text.0).expect("the spec's text is JSON");
            assert_eq!(&again, spec);
        }
        (None, None | Some(Value::Null)) => {}
        (spec, expected) => panic!("spec {spec:?}, expected {expected:?}"),
    }
});
