//! Arbitrary bytes as a `POST /v1/flows` body, as the aggregator takes it: decoding, validation,
//! counting into a history, ageing, and the node's part written as its ConfigMap and read back,
//! which must give the same part. Inputs starting with `#` are instead the gzipped traffic of a
//! stored object (a ConfigMap in the release namespace is input too): it must be refused or read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_linter::egress::observation::FlowBatch;
use portcullis_linter::replay::history::History;
use portcullis_webhook::traffic::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Some(rest) = data.strip_prefix(b"#") {
        let mut h = History::default();
        let batch = FlowBatch { node: "n".into(), boot: "b".into(), seq: 1, pods: Vec::new(), flows: Vec::new() };
        h.apply(&batch);
        let (mut object, _) = encode(&h.node("n").unwrap(), "ns").unwrap();
        object.binary_data.as_mut().unwrap().insert("traffic.json.gz".into(), k8s_openapi::ByteString(rest.to_vec()));
        if let Ok(part) = decode(&object) {
            h.restore(part);
            let _ = h.log();
        }
        return;
    }
    let Ok(batch) = serde_json::from_slice::<FlowBatch>(data) else { return };
    if batch.validate().is_err() {
        return;
    }
    let mut h = History::default();
    h.apply(&batch);
    assert!(h.apply(&batch).duplicate, "a batch counted twice");
    if let Some(last) = batch.flows.iter().map(|f| f.ts).max() {
        h.compact(last);
    }
    if let Some(part) = h.node(&batch.node) {
        let (object, _) = encode(&part, "ns").unwrap();
        let back = decode(&object).unwrap_or_else(|e| panic!("a written part does not read back: {e}"));
        assert_eq!(back, part, "a part changed through its ConfigMap");
    }
});
