//! Arbitrary bytes as a list response from the API server, cut into chunks as the network
//! might cut them and read the way the watch's list reads them (src/listwatch.rs): never a
//! panic; the UTF-8 check passes exactly the UTF-8 texts, wherever the cuts fall; and wherever
//! the text reads as a `Value`, a list read whole has as many objects as the value's `items`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_webhook::listwatch::{Utf8Check, read_list};
use portcullis_webhook::watched::WatchedPolicy;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, body)) = data.split_first() else { return };
    let mut check = Utf8Check::default();
    let size = usize::from(cut.max(1));
    let utf8 = body.chunks(size).all(|c| check.check(c)) && check.end();
    assert_eq!(utf8, std::str::from_utf8(body).is_ok(), "chunks of {size}");
    if !utf8 {
        return;
    }
    let mut read = 0usize;
    let Ok(_meta) = read_list::<WatchedPolicy, _>(body, |_| read += 1) else { return };
    let Ok(value) = serde_json::from_slice::<Value>(body) else { return };
    let expected = match value.get("items") {
        Some(Value::Array(items)) => items.len(),
        _ => 0,
    };
    assert_eq!(read, expected);
});
