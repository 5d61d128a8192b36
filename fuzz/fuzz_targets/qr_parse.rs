//! A scanned QR payload: parsing must never panic, every rejection has a code, and what
//! parses re-encodes to the same text.
#![no_main]

use junction_wire::qr::QrPayload;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match QrPayload::parse(&text) {
        Ok(payload) => {
            assert_eq!(payload.as_str(), text);
            let _ = serde_json::to_string(&payload);
            let _ = payload.amount_minor_units(2);
        }
        Err(error) => assert!(!error.code().is_empty()),
    }
});
