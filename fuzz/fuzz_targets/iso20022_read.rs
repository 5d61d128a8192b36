//! An ISO 20022 message as the credit transfers' gateway reads it (`credit::xml::read`:
//! bounded, scanned for DTDs and depth, validated by libxml2 against the official schema,
//! then interpreted). Nothing may panic or hang; a refusal always has a status reason code,
//! and nothing with a DOCTYPE (entities, external references) is ever accepted.
//!
//! The first byte picks the message kind; the rest is the message.
#![no_main]

use junctiond::credit::{read_message, xml::Kind};
use libfuzzer_sys::fuzz_target;

const KINDS: [Kind; 4] = [Kind::Pacs008, Kind::Pacs002, Kind::Pacs004, Kind::Camt056];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, message)) = data.split_first() else { return };
    let kind = KINDS[usize::from(pick) % KINDS.len()];
    match read_message(kind, message) {
        Ok(()) => assert!(
            !String::from_utf8_lossy(message).to_ascii_uppercase().contains("<!DOCTYPE"),
            "a message with a DOCTYPE was accepted"
        ),
        Err(code) => assert!(!code.is_empty() && code.len() <= 4),
    }
});
