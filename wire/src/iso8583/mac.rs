//! Message authentication: field 64, or 128 when a secondary bitmap is present, holds the
//! first 8 bytes of HMAC-SHA256 under the participant's key, as 16 uppercase hex characters.
//! The MAC covers the encoded message from the MTI up to, not including, the MAC field's
//! data; the bitmap already has the MAC bit set.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use super::message::{parse, write_hex_upper, DecodeError, EncodeError, Iso8583Message, Layout, Sink};
use super::RESPONSE_CODE_FORMAT_ERROR;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the HMAC-SHA256 output carried in the message.
pub const MAC_SIZE_BYTES: usize = 8;

/// The MAC field's length on the wire: two hex digits per byte.
pub const MAC_SIZE_HEX: usize = 2 * MAC_SIZE_BYTES;

/// The MAC field of a message with a primary bitmap only.
pub const MAC_FIELD_PRIMARY: u8 = 64;

/// The MAC field of a message with a secondary bitmap.
pub const MAC_FIELD_SECONDARY: u8 = 128;

/// Shortest key accepted: 128 bits, so a key cannot be guessed faster than a MAC is forged.
pub const MAC_KEY_SIZE_MIN_BYTES: usize = 16;

/// ISO 8583:1987 response code 63, security violation: the answer to a wrong MAC.
pub const RESPONSE_CODE_SECURITY_VIOLATION: &str = "63";

const _: () = assert!(MAC_SIZE_BYTES <= 32, "a truncation of SHA-256");

/// A participant's MAC key, with the HMAC key schedule done once: each message then costs
/// a copy of the keyed state instead of two extra SHA-256 blocks. `Debug` hides the key.
#[derive(Clone)]
pub struct MacKey {
    keyed: HmacSha256,
}

#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum MacKeyError {
    #[error("MAC key is {size_bytes} bytes, below the minimum of {min_bytes}")]
    TooShort { size_bytes: usize, min_bytes: usize },
}

impl MacKey {
    pub fn new(key: &[u8]) -> Result<Self, MacKeyError> {
        let too_short = MacKeyError::TooShort { size_bytes: key.len(), min_bytes: MAC_KEY_SIZE_MIN_BYTES };
        if key.len() < MAC_KEY_SIZE_MIN_BYTES {
            return Err(too_short);
        }
        // HMAC takes keys of any length; the error branch is unreachable.
        let keyed = HmacSha256::new_from_slice(key).map_err(|_| too_short)?;
        Ok(MacKey { keyed })
    }
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKey(<redacted>)")
    }
}

/// Why a received message's MAC is not accepted.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum MacError {
    #[error("MAC field {field} is absent")]
    Missing { field: u8 },
    #[error("MAC in field {field} does not match")]
    Mismatch { field: u8 },
    #[error("cannot check the MAC of a malformed message: {0}")]
    Malformed(#[from] DecodeError),
}

impl MacError {
    /// 63 (security violation) for a wrong MAC; 30 (format error) for a missing MAC or a
    /// malformed message.
    pub fn response_code(&self) -> &'static str {
        match self {
            MacError::Mismatch { .. } => RESPONSE_CODE_SECURITY_VIOLATION,
            MacError::Missing { .. } | MacError::Malformed(_) => RESPONSE_CODE_FORMAT_ERROR,
        }
    }
}

struct HmacSink<'a>(&'a mut HmacSha256);

impl Sink for HmacSink<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Signs `message` in place and returns the MAC field used: 128 when a field 65..=127 is
/// present (the encoding has a secondary bitmap), otherwise 64. The other MAC field is
/// removed, so the message carries exactly one MAC. Allocates nothing.
pub fn sign(message: &mut Iso8583Message, key: &MacKey) -> u8 {
    let mac_field = prepare(message);
    let mut hmac = key.keyed.clone();
    message.write_to(&mut HmacSink(&mut hmac), Some(mac_field));
    let tag = hmac.finalize().into_bytes();
    let mut mac_hex = [0u8; MAC_SIZE_HEX];
    write_hex_upper(&tag[..MAC_SIZE_BYTES], &mut mac_hex);
    message.put(mac_field, &mac_hex);
    mac_field
}

/// Signs `message` and appends it to `out` framed (2-byte length prefix), encoding it
/// once: the MAC is computed over the bytes just written and put in their last field.
/// The message gets the same MAC. Returns the MAC field used (see `sign`).
pub fn sign_framed(message: &mut Iso8583Message, key: &MacKey, out: &mut Vec<u8>) -> Result<u8, EncodeError> {
    let mac_field = prepare(message);
    let start = out.len();
    let encoded = match message.encode_framed(out) {
        Ok(encoded) => encoded,
        Err(error) => {
            out.truncate(start);
            return Err(error);
        }
    };
    // The MAC field is the highest field present and fixed length: the last bytes.
    let mac_start = out.len() - MAC_SIZE_HEX;
    let mut hmac = key.keyed.clone();
    hmac.update(&out[encoded..mac_start]);
    let tag = hmac.finalize().into_bytes();
    let mut mac_hex = [0u8; MAC_SIZE_HEX];
    write_hex_upper(&tag[..MAC_SIZE_BYTES], &mut mac_hex);
    out[mac_start..].copy_from_slice(&mac_hex);
    message.put(mac_field, &mac_hex);
    Ok(mac_field)
}

/// Picks the MAC field of `message` (removing the other one) and puts a placeholder in it.
fn prepare(message: &mut Iso8583Message) -> u8 {
    // Whether a secondary bitmap is needed, before field 128 itself counts.
    message.remove(MAC_FIELD_SECONDARY);
    let mac_field = if message.has_secondary_bitmap() {
        message.remove(MAC_FIELD_PRIMARY);
        MAC_FIELD_SECONDARY
    } else {
        MAC_FIELD_PRIMARY
    };
    // A placeholder sets the MAC bit in the bitmap; its value is not covered.
    message.put(mac_field, &[b'0'; MAC_SIZE_HEX]);
    mac_field
}

/// Checks the MAC of a raw received message (frame prefix stripped) against the bytes as
/// received, so no re-encoding can change what is checked. Compares in constant time.
pub fn verify(raw: &[u8], key: &MacKey) -> Result<(), MacError> {
    let layout = parse(raw)?;
    verify_layout(raw, &layout, key)
}

/// Decodes a raw message and checks its MAC, parsing it once.
pub fn decode_verified(raw: &[u8], key: &MacKey) -> Result<Iso8583Message, MacError> {
    let layout = parse(raw)?;
    verify_layout(raw, &layout, key)?;
    Ok(Iso8583Message::from_layout(raw, layout))
}

fn verify_layout(raw: &[u8], layout: &Layout, key: &MacKey) -> Result<(), MacError> {
    let field = if layout.secondary_bitmap { MAC_FIELD_SECONDARY } else { MAC_FIELD_PRIMARY };
    if !layout.contains(field) {
        return Err(MacError::Missing { field });
    }
    let span = layout.span(field).ok_or(MacError::Missing { field })?.range();
    verify_bytes(raw, span, field, key)
}

/// Checks the MAC of a message as `Iso8583Message::decode` returned it, over the bytes as
/// received and without parsing them again. A message changed since (or built, not
/// decoded) is checked over its encoding.
pub fn verify_decoded(message: &Iso8583Message, key: &MacKey) -> Result<(), MacError> {
    let secondary_bitmap = message.received.unwrap_or_else(|| message.has_secondary_bitmap());
    let field = if secondary_bitmap { MAC_FIELD_SECONDARY } else { MAC_FIELD_PRIMARY };
    let span = message.span(field).ok_or(MacError::Missing { field })?.range();
    if message.received.is_some() {
        return verify_bytes(message.raw_buffer(), span, field, key);
    }
    let mut encoded = Vec::with_capacity(message.encoded_len());
    message.write_to(&mut encoded, None);
    let mac_start = encoded.len() - MAC_SIZE_HEX;
    verify_bytes(&encoded, mac_start..encoded.len(), field, key)
}

/// Checks the MAC in `raw[mac]` against the HMAC of the bytes before it.
fn verify_bytes(raw: &[u8], mac: std::ops::Range<usize>, field: u8, key: &MacKey) -> Result<(), MacError> {
    // The MAC field is the highest field present and fixed length, so it ends the message.
    debug_assert_eq!(mac.end, raw.len());
    let (Some(covered), Some(mac_hex)) = (raw.get(..mac.start), raw.get(mac)) else {
        return Err(MacError::Mismatch { field });
    };
    let mut received = [0u8; MAC_SIZE_BYTES];
    hex::decode_to_slice(mac_hex, &mut received).map_err(|_| MacError::Mismatch { field })?;
    let mut hmac = key.keyed.clone();
    hmac.update(covered);
    hmac.verify_truncated_left(&received).map_err(|_| MacError::Mismatch { field })
}
