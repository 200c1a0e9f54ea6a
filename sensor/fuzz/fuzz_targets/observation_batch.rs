//! Arbitrary bytes as a `POST /v1/observations` body: decoding, validation and the conversion the
//! controller gets, as the webhook does them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_linter::egress::observation::ObservationBatch;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = serde_json::from_slice::<ObservationBatch>(data) else { return };
    for observation in &batch.observations {
        if observation.validate().is_ok() {
            let _ = observation.to_observation();
        }
    }
});
