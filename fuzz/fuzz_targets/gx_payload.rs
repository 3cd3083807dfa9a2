//! Any bytes as a GX payload: parsing never panics. A parsed number is finite, because
//! larger ones are kept as JSON for the model to reject.

#![no_main]

use libfuzzer_sys::fuzz_target;
use roamcore_victron::gx::payload::{self, GxValue, Payload};

fuzz_target!(|data: &[u8]| {
    match payload::parse(data) {
        Payload::Gone => assert!(data.is_empty()),
        Payload::Value(GxValue::Number(number)) => assert!(number.is_finite()),
        Payload::Value(value) => {
            let _ = value.to_string();
            let _ = value.kind();
        }
        Payload::NotJson | Payload::NoValue => assert!(!data.is_empty()),
    }
    let _ = payload::completion_echo(data);
});
