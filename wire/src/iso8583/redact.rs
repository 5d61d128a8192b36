//! What of a message may reach a log: invariant 6 says a full card number, track data, PIN
//! block or CVV is never logged.

use std::fmt::{self, Write as _};

use super::message::Iso8583Message;

/// Leading PAN digits that may be shown (the issuer identification number).
pub const PAN_VISIBLE_HEAD_DIGITS_MAX: usize = 6;

/// Trailing PAN digits that may be shown.
pub const PAN_VISIBLE_TAIL_DIGITS_MAX: usize = 4;

/// Digits always hidden, so a short PAN is not shown almost whole; the head gives way first.
pub const PAN_MASKED_DIGITS_MIN: usize = 6;

/// Displays a PAN with at most its first 6 and last 4 digits: `476173******0119`.
pub struct MaskedPan<'a>(pub &'a str);

impl fmt::Display for MaskedPan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = self.0.chars().count();
        let head =
            PAN_VISIBLE_HEAD_DIGITS_MAX.min(size.saturating_sub(PAN_MASKED_DIGITS_MIN + PAN_VISIBLE_TAIL_DIGITS_MAX));
        let tail = PAN_VISIBLE_TAIL_DIGITS_MAX.min(size.saturating_sub(PAN_MASKED_DIGITS_MIN + head));
        for (index, character) in self.0.chars().enumerate() {
            let visible = index < head || index >= size - tail;
            f.write_char(if visible { character } else { '*' })?;
        }
        Ok(())
    }
}

impl fmt::Debug for MaskedPan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// `476173******0119` from `4761739001010119`.
pub fn mask_pan(pan: &str) -> String {
    MaskedPan(pan).to_string()
}

/// How a field's value may appear in logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposure {
    Clear,
    /// A card number: first 6 and last 4 digits at most.
    MaskedPan,
    /// Never shown: track data, PIN block, ICC data (which carries cryptograms).
    Redacted,
}

/// Fields 2 (PAN) and 34 (extended PAN) are masked; 35, 36 and 45 (tracks 2, 3 and 1),
/// 52 (PIN block) and 55 (ICC data) are redacted.
pub fn exposure(field: u8) -> Exposure {
    match field {
        2 | 34 => Exposure::MaskedPan,
        35 | 36 | 45 | 52 | 55 => Exposure::Redacted,
        _ => Exposure::Clear,
    }
}

struct FieldValue<'a> {
    field: u8,
    value: &'a str,
}

impl fmt::Debug for FieldValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match exposure(self.field) {
            Exposure::Clear => fmt::Debug::fmt(self.value, f),
            Exposure::MaskedPan => fmt::Debug::fmt(&MaskedPan(self.value), f),
            Exposure::Redacted => f.write_str("<redacted>"),
        }
    }
}

struct Fields<'a>(&'a Iso8583Message);

impl fmt::Debug for Fields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.fields().map(|(field, value)| (field, FieldValue { field, value }))).finish()
    }
}

impl fmt::Debug for Iso8583Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iso8583Message").field("mti", &self.mti()).field("fields", &Fields(self)).finish()
    }
}
