//! Arbitrary bytes as `portcullis.yaml`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = portcullis_linter::config::Config::parse(text, "portcullis.yaml");
    }
});
