//! Bytes from a TCP peer: framing, decoding, MAC verification and re-encoding must never
//! panic, and whatever decodes must re-encode to a message that decodes to the same thing
//! (not always the same bytes: like pyiso8583, an all-zero secondary bitmap is accepted
//! on input and not written on output).
#![no_main]

use junction_wire::iso8583::{mac, next_frame, Iso8583Message, MacKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = MacKey::new(&[0x33; 16]).expect("a 16-byte key is accepted");
    let _ = next_frame(data);
    let _ = mac::verify(data, &key);
    if let Ok(message) = Iso8583Message::decode(data) {
        let mut encoded = Vec::new();
        message.encode(&mut encoded).expect("a decoded message encodes");
        let again = Iso8583Message::decode(&encoded).expect("what we encode decodes");
        assert_eq!(again, message, "decode, encode, decode gives the same message");
        let _ = format!("{message:?}");
    }
});
