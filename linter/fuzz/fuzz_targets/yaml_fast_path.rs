//! Differential: wherever the block-style fast path takes a document, its events and node
//! positions equal the full YAML parser's (`load::block::check_against_full_parser`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = portcullis_linter::load::block::check_against_full_parser(text) {
            panic!("{e}\n{text:?}");
        }
    }
});
