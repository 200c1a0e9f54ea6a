//! Arbitrary text as a NetworkPolicy from the API server, read the way the watch reads it (a list
//! body is checked as UTF-8 first, `listwatch::Utf8Check`, and kube reads every watch line and
//! fresh list as UTF-8 text): never a panic, and wherever the same text reads as a `Value`, the
//! spec read is that value's spec.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_webhook::watched::WatchedPolicy;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // Bytes that are not UTF-8 never reach the reader. Fields the reader skips are checked for
    // JSON's syntax only (as k8s-openapi skips unknown fields), not for what a `Value` refuses:
    // bytes that are not UTF-8, a number out of `f64`'s range (both found by this target).
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(read) = serde_json::from_str::<WatchedPolicy>(text) else { return };
    let Ok(value) = serde_json::from_str::<Value>(text) else { return };
    match (read.spec, value.get("spec")) {
        (Some(text), Some(spec)) => {
            let again: Value = serde_json::from_str(&text.0).expect("the spec's text is JSON");
            assert_eq!(&again, spec);
        }
        (None, None | Some(Value::Null)) => {}
        (spec, expected) => panic!("spec {spec:?}, expected {expected:?}"),
    }
});
