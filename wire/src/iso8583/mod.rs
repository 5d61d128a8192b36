//! ISO 8583:1987 wire codec: ASCII fields, hex bitmaps, a 2-byte big-endian length per frame.
//!
//! The layout is pyiso8583's `default_ascii` spec (and jPOS's `ISO87APackager`): MTI as 4
//! ASCII digits, primary bitmap as 16 uppercase hex characters, secondary bitmap (field 1) as
//! 16 more when any field 65..=128 is present, then fields 2..=128 in order, fixed length or
//! with a 2- or 3-digit ASCII length prefix. Binary fields (52 PIN block, 64 and 128 MAC, 96)
//! travel as 16 hex characters, 55 (ICC data) as up to 510 hex characters. Field 65 is the
//! tertiary bitmap indicator, as in pyiso8583 4; fields above 128 are not supported.
//!
//! - [`frame`]: split frames out of a read buffer, write a frame.
//! - [`Iso8583Message`]: parse at the edge ([`Iso8583Message::decode`]), then trust; every
//!   field is checked against [`spec`] on decode and on [`Iso8583Message::set`].
//! - [`mac`]: sign and verify field 64/128 with HMAC-SHA256 truncated to 8 bytes.
//! - [`redact`]: what of a message may be logged; `Debug` of a message obeys it.
//!
//! Nothing here panics on bytes from outside: a malformed message is a [`DecodeError`],
//! answered with response code 30.

pub mod frame;
pub mod mac;
pub mod message;
pub mod redact;
pub mod spec;

#[cfg(test)]
mod tests;

pub use frame::{next_frame, split_frames, write_frame, FrameError, SplitFrames};
pub use mac::{decode_verified, sign, sign_framed, verify, verify_decoded, MacError, MacKey, MacKeyError};
pub use message::{DecodeError, EncodeError, FieldError, Iso8583Message};
pub use redact::{mask_pan, MaskedPan};
pub use spec::{DataKind, FieldLength, FieldSpec};

/// Largest message accepted or sent, frame prefix excluded. Each connection's read buffer
/// holds up to one such message plus a partial one; authorization messages are under 1 KiB,
/// the rest is room for private-use fields. The 2-byte frame prefix could say 65,535.
pub const MESSAGE_SIZE_MAX: u16 = 8192;

/// The frame prefix: message length, big-endian.
pub const FRAME_PREFIX_SIZE_BYTES: usize = 2;

/// ISO 8583:1987 response code 30, format error: the answer to any malformed message.
pub const RESPONSE_CODE_FORMAT_ERROR: &str = "30";

const _: () = assert!(FRAME_PREFIX_SIZE_BYTES == std::mem::size_of::<u16>());
// The smallest message, an MTI and a primary bitmap, must fit.
const _: () = assert!(MESSAGE_SIZE_MAX as usize >= message::MTI_SIZE_BYTES + message::BITMAP_SIZE_HEX);
