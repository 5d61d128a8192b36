//! The parsed message, its decoder and its encoder.

use std::fmt::Write as _;

use smallvec::SmallVec;
use thiserror::Error;

use super::spec::{field_spec, DataKind, FieldLength, FieldSpec, Violation, FIELD_NUMBER_MAX};
use super::{FRAME_PREFIX_SIZE_BYTES, MESSAGE_SIZE_MAX, RESPONSE_CODE_FORMAT_ERROR};

/// The message type indicator is four ASCII digits, e.g. `0200`.
pub const MTI_SIZE_BYTES: usize = 4;

/// A bitmap is 64 bits written as 16 hex characters.
pub const BITMAP_SIZE_HEX: usize = 16;

/// Spans kept inside the message before its span table moves to the heap: a purchase or
/// its answer has fewer fields than this, so decoding one allocates only its buffer.
const INLINE_SPANS: usize = 24;

/// The spans of the fields present, in field order (dense: the n-th present field's span
/// is the n-th entry; see `rank`). A table indexed by field number would be 129 slots,
/// about 1 KiB to zero and copy with every message.
pub(crate) type Spans = SmallVec<[Span; INLINE_SPANS]>;

/// Dead bytes that `set` may leave in a message's buffer before it is compacted. Costs that
/// much memory per message at worst; compaction is a copy of the live fields.
const BUFFER_SLACK_BYTES_MAX: usize = 4096;

/// A new message's buffer: an answer's fields fit without growing it.
const NEW_BUFFER_SIZE_BYTES: usize = 256;

/// Where one field's value sits in the message's buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) size: u16,
}

impl Span {
    pub(crate) fn range(self) -> std::ops::Range<usize> {
        let start = self.start as usize;
        start..start + usize::from(self.size)
    }
}

/// Bit of `field` (1..=128) in a two-word bitmap, most significant bit first as on the wire.
const fn bit(field: u8) -> (usize, u64) {
    let index = (field as usize).wrapping_sub(1) % 128;
    (index / 64, 1u64 << (63 - index % 64))
}

/// How many fields of `present` come before `field`: its span's index in a dense table.
fn rank(present: &[u64; 2], field: u8) -> usize {
    let (word, mask) = bit(field);
    // The bits above `mask` are the lower-numbered fields of the same word.
    let before = present[word] & !(mask | (mask - 1));
    let earlier_words = if word == 1 { present[0].count_ones() } else { 0 };
    (earlier_words + before.count_ones()) as usize
}

/// The data fields of a two-word bitmap, in ascending order (bits 1 and 65 are never set).
fn present_fields(present: [u64; 2]) -> impl Iterator<Item = u8> {
    let [mut first, mut second] = present;
    std::iter::from_fn(move || {
        let (word, offset) = if first != 0 {
            (&mut first, 1)
        } else if second != 0 {
            (&mut second, 65)
        } else {
            return None;
        };
        let zeros = word.leading_zeros();
        *word &= !(1u64 << (63 - zeros));
        // At most 63 + 65 = 128.
        Some(zeros as u8 + offset)
    })
}

/// Why bytes are not a well-formed ISO 8583:1987 ASCII message. Every variant is a format
/// error: the reply is response code 30 and the connection lives on.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message is {size_bytes} bytes, above the maximum of {max_bytes}")]
    TooLarge { size_bytes: usize, max_bytes: u16 },
    #[error("message truncated in the message type indicator")]
    MtiTruncated,
    #[error("message type indicator is not 4 digits")]
    BadMti,
    #[error("message truncated in the primary bitmap")]
    PrimaryBitmapTruncated,
    #[error("primary bitmap is not 16 hex digits")]
    PrimaryBitmapNotHex,
    #[error("bit 1 is set but the secondary bitmap (field 1) is absent or truncated")]
    SecondaryBitmapAbsent,
    #[error("secondary bitmap (field 1) is not 16 hex digits")]
    SecondaryBitmapNotHex,
    #[error("bit 65 is set: tertiary bitmaps (fields 129 to 192) are not supported")]
    TertiaryBitmapUnsupported,
    #[error("message truncated in field {field}")]
    Truncated { field: u8 },
    #[error("field {field} length prefix is not digits")]
    LengthPrefixNotNumeric { field: u8 },
    #[error("field {field} is {size_bytes} bytes, above its maximum of {max_bytes}")]
    FieldTooLong { field: u8, size_bytes: usize, max_bytes: u16 },
    #[error("field {field} is not numeric")]
    NotNumeric { field: u8 },
    #[error("field {field} holds a character outside its data kind {kind}")]
    InvalidCharacter { field: u8, kind: DataKind },
    #[error("{count} trailing bytes after the last field")]
    TrailingBytes { count: usize },
}

impl DecodeError {
    /// The ISO 8583 response code to answer with: always 30, format error.
    pub fn response_code(&self) -> &'static str {
        RESPONSE_CODE_FORMAT_ERROR
    }

    /// The data field at fault, where there is one.
    pub fn field(&self) -> Option<u8> {
        match *self {
            DecodeError::Truncated { field }
            | DecodeError::LengthPrefixNotNumeric { field }
            | DecodeError::FieldTooLong { field, .. }
            | DecodeError::NotNumeric { field }
            | DecodeError::InvalidCharacter { field, .. } => Some(field),
            DecodeError::SecondaryBitmapAbsent | DecodeError::SecondaryBitmapNotHex => Some(1),
            DecodeError::TertiaryBitmapUnsupported => Some(65),
            _ => None,
        }
    }
}

/// Why a value cannot be put in a message.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum FieldError {
    #[error("message type indicator must be 4 digits")]
    BadMti,
    #[error("field {field} is not a data field of ISO 8583:1987 (2 to 128, not 65)")]
    NoSuchField { field: u8 },
    #[error("field {field} must be exactly {expected_bytes} bytes, got {size_bytes}")]
    WrongLength { field: u8, size_bytes: usize, expected_bytes: u16 },
    #[error("field {field} is {size_bytes} bytes, above its maximum of {max_bytes}")]
    TooLong { field: u8, size_bytes: usize, max_bytes: u16 },
    #[error("field {field} is not numeric")]
    NotNumeric { field: u8 },
    #[error("field {field} holds a character outside its data kind {kind}")]
    InvalidCharacter { field: u8, kind: DataKind },
}

impl FieldError {
    fn from_violation(field: u8, violation: Violation) -> Self {
        match violation {
            Violation::WrongLength { size_bytes, expected_bytes } => {
                FieldError::WrongLength { field, size_bytes, expected_bytes }
            }
            Violation::TooLong { size_bytes, max_bytes } => FieldError::TooLong { field, size_bytes, max_bytes },
            Violation::NotNumeric => FieldError::NotNumeric { field },
            Violation::InvalidCharacter { kind } => FieldError::InvalidCharacter { field, kind },
        }
    }
}

/// Why a message cannot be encoded.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("encoded message would be {size_bytes} bytes, above the maximum of {max_bytes}")]
    TooLarge { size_bytes: usize, max_bytes: u16 },
}

/// Where encoded bytes go: a `Vec`, or a MAC computed on the fly without a copy.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A parsed ISO 8583:1987 message: MTI and data fields 2..=128, each already checked against
/// its spec (length and data kind). Field values live in one owned buffer; a fixed table of
/// offsets points into it, so a decode costs one allocation (a copy of the input).
///
/// `Debug` masks the PAN (fields 2 and 34) and redacts track data, PIN block and ICC data.
#[derive(Clone)]
pub struct Iso8583Message {
    mti: [u8; MTI_SIZE_BYTES],
    /// Presence of data fields; the bits of fields 1 and 65 (bitmaps) are never set here.
    present: [u64; 2],
    spans: Spans,
    buffer: Vec<u8>,
    /// Bytes of `buffer` that belong to present fields; the rest is dead after `set`.
    live_bytes: usize,
    /// For a message as decoded and not changed since: whether a secondary bitmap was on
    /// the wire. `buffer` is then the received bytes, which a MAC check covers as they are.
    pub(crate) received: Option<bool>,
}

/// The structure of a raw message as found by [`parse`]: what is where, nothing copied.
pub(crate) struct Layout {
    pub(crate) mti: [u8; MTI_SIZE_BYTES],
    pub(crate) present: [u64; 2],
    pub(crate) spans: Spans,
    /// Bit 1 set: a secondary bitmap was on the wire, even if it is all zeros.
    pub(crate) secondary_bitmap: bool,
}

impl Layout {
    pub(crate) fn contains(&self, field: u8) -> bool {
        let (word, mask) = bit(field);
        self.present[word] & mask != 0
    }

    /// The span of a present field.
    pub(crate) fn span(&self, field: u8) -> Option<Span> {
        self.contains(field).then(|| self.spans.get(rank(&self.present, field)).copied()).flatten()
    }
}

fn parse_bitmap(hex_digits: &[u8]) -> Option<u64> {
    let mut bytes = [0u8; 8];
    hex::decode_to_slice(hex_digits, &mut bytes).ok()?;
    Some(u64::from_be_bytes(bytes))
}

fn parse_length_prefix(digits: &[u8]) -> Option<usize> {
    digits.iter().try_fold(0usize, |size, digit| digit.is_ascii_digit().then(|| size * 10 + usize::from(digit - b'0')))
}

/// Checks a raw message (without its frame prefix) and locates every field in it.
pub(crate) fn parse(raw: &[u8]) -> Result<Layout, DecodeError> {
    if raw.len() > usize::from(MESSAGE_SIZE_MAX) {
        return Err(DecodeError::TooLarge { size_bytes: raw.len(), max_bytes: MESSAGE_SIZE_MAX });
    }
    let mut mti = [0u8; MTI_SIZE_BYTES];
    mti.copy_from_slice(raw.get(..MTI_SIZE_BYTES).ok_or(DecodeError::MtiTruncated)?);
    if !mti.iter().all(u8::is_ascii_digit) {
        return Err(DecodeError::BadMti);
    }
    let mut position = MTI_SIZE_BYTES;

    let primary_hex = raw.get(position..position + BITMAP_SIZE_HEX).ok_or(DecodeError::PrimaryBitmapTruncated)?;
    let primary = parse_bitmap(primary_hex).ok_or(DecodeError::PrimaryBitmapNotHex)?;
    position += BITMAP_SIZE_HEX;

    let (secondary_word, secondary_mask) = bit(1);
    debug_assert_eq!(secondary_word, 0);
    let secondary_bitmap = primary & secondary_mask != 0;
    let secondary = if secondary_bitmap {
        let secondary_hex = raw.get(position..position + BITMAP_SIZE_HEX).ok_or(DecodeError::SecondaryBitmapAbsent)?;
        position += BITMAP_SIZE_HEX;
        parse_bitmap(secondary_hex).ok_or(DecodeError::SecondaryBitmapNotHex)?
    } else {
        0
    };
    let (_, tertiary_mask) = bit(65);
    if secondary & tertiary_mask != 0 {
        return Err(DecodeError::TertiaryBitmapUnsupported);
    }

    let mut layout =
        Layout { mti, present: [primary & !secondary_mask, secondary], spans: Spans::new(), secondary_bitmap };
    for field in present_fields(layout.present) {
        // Every bit left is a data field: 1 and 65 were taken out above.
        let Some(spec) = field_spec(field) else {
            return Err(DecodeError::TertiaryBitmapUnsupported);
        };
        let prefix_size = spec.length.prefix_size_bytes();
        let size = match spec.length {
            FieldLength::Fixed(size) => usize::from(size),
            FieldLength::LlVar(max_bytes) | FieldLength::LllVar(max_bytes) => {
                let digits = raw.get(position..position + prefix_size).ok_or(DecodeError::Truncated { field })?;
                let size = parse_length_prefix(digits).ok_or(DecodeError::LengthPrefixNotNumeric { field })?;
                if size > usize::from(max_bytes) {
                    return Err(DecodeError::FieldTooLong { field, size_bytes: size, max_bytes });
                }
                size
            }
        };
        let start = position + prefix_size;
        let value = raw.get(start..start + size).ok_or(DecodeError::Truncated { field })?;
        spec.check_characters(value).map_err(|violation| match violation {
            Violation::NotNumeric => DecodeError::NotNumeric { field },
            _ => DecodeError::InvalidCharacter { field, kind: spec.kind },
        })?;
        // Both fit: the message is at most MESSAGE_SIZE_MAX (u16) and a field at most 999.
        layout.spans.push(Span { start: start as u32, size: size as u16 });
        position = start + size;
    }
    if position != raw.len() {
        return Err(DecodeError::TrailingBytes { count: raw.len() - position });
    }
    Ok(layout)
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Writes `value` as uppercase hex digits into `out` (two per byte).
pub(crate) fn write_hex_upper(value: &[u8], out: &mut [u8]) {
    for (byte, pair) in value.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = HEX_UPPER[usize::from(byte >> 4)];
        pair[1] = HEX_UPPER[usize::from(byte & 0x0F)];
    }
}

fn bitmap_hex(word: u64) -> [u8; BITMAP_SIZE_HEX] {
    let mut hex = [0u8; BITMAP_SIZE_HEX];
    write_hex_upper(&word.to_be_bytes(), &mut hex);
    hex
}

/// The ASCII length prefix of a variable field; empty for a fixed one.
fn length_prefix(length: FieldLength, size: u16) -> ([u8; 3], usize) {
    let digits = [b'0' + (size / 100 % 10) as u8, b'0' + (size / 10 % 10) as u8, b'0' + (size % 10) as u8];
    let prefix_size = length.prefix_size_bytes();
    let mut prefix = [0u8; 3];
    prefix[..prefix_size].copy_from_slice(&digits[3 - prefix_size..]);
    (prefix, prefix_size)
}

/// The spec of a field callers may set, or why not.
fn data_field_spec(field: u8) -> Result<&'static FieldSpec, FieldError> {
    field_spec(field).ok_or(FieldError::NoSuchField { field })
}

impl Iso8583Message {
    /// An empty message of the given type, e.g. `"0200"`.
    pub fn new(mti: &str) -> Result<Self, FieldError> {
        let mut message = Iso8583Message {
            mti: *b"0000",
            present: [0; 2],
            spans: Spans::new(),
            buffer: Vec::with_capacity(NEW_BUFFER_SIZE_BYTES),
            live_bytes: 0,
            received: None,
        };
        message.set_mti(mti)?;
        Ok(message)
    }

    /// Parses one message (without its 2-byte frame prefix), checking every field.
    pub fn decode(raw: &[u8]) -> Result<Self, DecodeError> {
        let layout = parse(raw)?;
        Ok(Self::from_layout(raw, layout))
    }

    pub(crate) fn from_layout(raw: &[u8], layout: Layout) -> Self {
        let live_bytes = layout.spans.iter().map(|span| usize::from(span.size)).sum();
        Iso8583Message {
            mti: layout.mti,
            present: layout.present,
            spans: layout.spans,
            buffer: raw.to_vec(),
            live_bytes,
            received: Some(layout.secondary_bitmap),
        }
    }

    /// The message type indicator, four digits.
    pub fn mti(&self) -> &str {
        std::str::from_utf8(&self.mti).unwrap_or_default()
    }

    pub fn set_mti(&mut self, mti: &str) -> Result<(), FieldError> {
        let digits: [u8; MTI_SIZE_BYTES] = mti.as_bytes().try_into().map_err(|_| FieldError::BadMti)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(FieldError::BadMti);
        }
        self.mti = digits;
        self.received = None;
        Ok(())
    }

    /// Whether data field `field` is present. Bitmaps (1, 65) never are.
    pub fn contains(&self, field: u8) -> bool {
        if !(2..=FIELD_NUMBER_MAX).contains(&field) {
            return false;
        }
        let (word, mask) = bit(field);
        self.present[word] & mask != 0
    }

    /// The value of a data field, as it is on the wire (no padding removed).
    pub fn get(&self, field: u8) -> Option<&str> {
        // Values are checked to be ASCII before they are stored, so this never fails.
        std::str::from_utf8(self.get_bytes(field)?).ok()
    }

    pub fn get_bytes(&self, field: u8) -> Option<&[u8]> {
        self.buffer.get(self.span(field)?.range())
    }

    /// The bytes as received, for a message decoded and unchanged since (see `received`).
    pub(crate) fn raw_buffer(&self) -> &[u8] {
        &self.buffer
    }

    /// The span of a present data field.
    pub(crate) fn span(&self, field: u8) -> Option<Span> {
        if !self.contains(field) {
            return None;
        }
        self.spans.get(rank(&self.present, field)).copied()
    }

    /// Present data fields in ascending order.
    pub fn fields(&self) -> impl Iterator<Item = (u8, &str)> + '_ {
        present_fields(self.present).filter_map(move |field| Some((field, self.get(field)?)))
    }

    /// Sets a data field after checking it against the field's spec: numeric fields hold
    /// digits only, fixed fields have exactly their length, variable ones at most their max.
    pub fn set(&mut self, field: u8, value: &str) -> Result<(), FieldError> {
        let spec = data_field_spec(field)?;
        spec.check(value.as_bytes()).map_err(|violation| FieldError::from_violation(field, violation))?;
        self.put(field, value.as_bytes());
        Ok(())
    }

    /// Copies the fields of `source` named in `fields` (those it has) into this message, as
    /// they are: they were checked against their specs when `source` got them.
    pub fn copy_fields(&mut self, source: &Iso8583Message, fields: &[u8]) {
        for &field in fields {
            if let Some(value) = source.get_bytes(field) {
                self.put(field, value);
            }
        }
    }

    /// Removes a data field; returns whether it was present.
    pub fn remove(&mut self, field: u8) -> bool {
        if !self.contains(field) {
            return false;
        }
        let span = self.spans.remove(rank(&self.present, field));
        let (word, mask) = bit(field);
        self.present[word] &= !mask;
        self.live_bytes -= usize::from(span.size);
        self.received = None;
        true
    }

    /// Stores a value already known to fit the field's spec.
    pub(crate) fn put(&mut self, field: u8, value: &[u8]) {
        debug_assert!(field_spec(field).is_some_and(|spec| spec.check(value).is_ok()));
        // At most FIELD_SIZE_MAX_BYTES (999) once checked against the spec.
        let size = value.len() as u16;
        self.received = None;
        if let Some(span) = self.span(field).filter(|span| span.size == size) {
            self.buffer[span.range()].copy_from_slice(value);
            return;
        }
        self.remove(field);
        if self.buffer.len() + value.len() > 2 * self.live_bytes + BUFFER_SLACK_BYTES_MAX {
            self.compact();
        }
        let start = self.buffer.len();
        self.buffer.extend_from_slice(value);
        let span = Span { start: u32::try_from(start).expect("buffer is bounded by compaction"), size };
        self.spans.insert(rank(&self.present, field), span);
        let (word, mask) = bit(field);
        self.present[word] |= mask;
        self.live_bytes += value.len();
    }

    /// Drops the dead bytes that replaced and removed values left in the buffer.
    fn compact(&mut self) {
        let mut buffer = Vec::with_capacity(self.live_bytes + BUFFER_SLACK_BYTES_MAX);
        for span in &mut self.spans {
            let start = buffer.len();
            buffer.extend_from_slice(&self.buffer[span.range()]);
            span.start = u32::try_from(start).expect("live bytes fit in u32");
        }
        debug_assert_eq!(buffer.len(), self.live_bytes);
        self.buffer = buffer;
    }

    /// Whether the encoding carries a secondary bitmap: some field 66..=128 is present.
    pub fn has_secondary_bitmap(&self) -> bool {
        self.present[1] != 0
    }

    /// Size of the encoding, without the frame prefix.
    pub fn encoded_len(&self) -> usize {
        let bitmaps = if self.has_secondary_bitmap() { 2 } else { 1 };
        let mut size = MTI_SIZE_BYTES + bitmaps * BITMAP_SIZE_HEX + self.live_bytes;
        for field in present_fields(self.present) {
            size += field_spec(field).map_or(0, |spec| spec.length.prefix_size_bytes());
        }
        size
    }

    fn check_size(&self) -> Result<usize, EncodeError> {
        let size_bytes = self.encoded_len();
        if size_bytes > usize::from(MESSAGE_SIZE_MAX) {
            return Err(EncodeError::TooLarge { size_bytes, max_bytes: MESSAGE_SIZE_MAX });
        }
        Ok(size_bytes)
    }

    /// Appends the encoding (MTI, bitmaps, fields) to `out`. The bitmaps are computed from the
    /// fields present: bit 1 and a secondary bitmap when any field above 64 is set.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let size_bytes = self.check_size()?;
        self.encode_sized(out, size_bytes);
        Ok(())
    }

    fn encode_sized(&self, out: &mut Vec<u8>, size_bytes: usize) {
        out.reserve(size_bytes);
        let before = out.len();
        self.write_to(out, None);
        assert_eq!(out.len() - before, size_bytes, "encoded_len disagrees with encode");
    }

    /// Appends the 2-byte big-endian length prefix, then the encoding. Returns where the
    /// encoding (after the prefix) starts in `out`.
    pub fn encode_framed(&self, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
        let size_bytes = self.check_size()?;
        // MESSAGE_SIZE_MAX is a u16, so the size fits the prefix.
        let prefix = (size_bytes as u16).to_be_bytes();
        debug_assert_eq!(prefix.len(), FRAME_PREFIX_SIZE_BYTES);
        out.reserve(FRAME_PREFIX_SIZE_BYTES + size_bytes);
        out.extend_from_slice(&prefix);
        let start = out.len();
        self.encode_sized(out, size_bytes);
        Ok(start)
    }

    /// Writes the encoding to `sink`. With `stop_before_data_of`, stops after that field's
    /// length prefix, just before its data: what a MAC in that field covers.
    pub(crate) fn write_to(&self, sink: &mut impl Sink, stop_before_data_of: Option<u8>) {
        sink.put(&self.mti);
        let (_, secondary_mask) = bit(1);
        let primary = if self.has_secondary_bitmap() { self.present[0] | secondary_mask } else { self.present[0] };
        sink.put(&bitmap_hex(primary));
        if self.has_secondary_bitmap() {
            sink.put(&bitmap_hex(self.present[1]));
        }
        for (field, &span) in present_fields(self.present).zip(&self.spans) {
            let Some(spec) = field_spec(field) else {
                continue;
            };
            let (prefix, prefix_size) = length_prefix(spec.length, span.size);
            sink.put(&prefix[..prefix_size]);
            if stop_before_data_of == Some(field) {
                return;
            }
            sink.put(&self.buffer[span.range()]);
        }
    }

    /// A short description for logs: MTI and the list of fields present, no values.
    pub fn summary(&self) -> String {
        let mut summary = format!("mti={} fields=", self.mti());
        for (index, (field, _)) in self.fields().enumerate() {
            let separator = if index == 0 { "" } else { "," };
            let _ = write!(summary, "{separator}{field}");
        }
        summary
    }
}

/// Two messages are equal when MTI and every field value are; buffer layout does not matter.
impl PartialEq for Iso8583Message {
    fn eq(&self, other: &Self) -> bool {
        self.mti == other.mti
            && self.present == other.present
            && present_fields(self.present).all(|field| self.get_bytes(field) == other.get_bytes(field))
    }
}

impl Eq for Iso8583Message {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_values_keeps_the_buffer_bounded() {
        let mut message = Iso8583Message::new("0200").expect("valid MTI");
        message.set(2, "4761739001010119").expect("fits");
        for round in 0..10_000u32 {
            let value = format!("{round:0>width$}", width = 200 + (round as usize % 300));
            message.set(48, &value).expect("fits");
            assert!(message.buffer.len() <= 2 * message.live_bytes + BUFFER_SLACK_BYTES_MAX);
        }
        assert_eq!(message.get(2), Some("4761739001010119"));
        assert_eq!(message.live_bytes, 16 + message.get_bytes(48).map_or(0, <[u8]>::len));
    }

    #[test]
    fn length_prefixes() {
        assert_eq!(length_prefix(FieldLength::Fixed(12), 12).1, 0);
        let (prefix, size) = length_prefix(FieldLength::LlVar(19), 7);
        assert_eq!(&prefix[..size], b"07");
        let (prefix, size) = length_prefix(FieldLength::LllVar(999), 999);
        assert_eq!(&prefix[..size], b"999");
        assert_eq!(parse_length_prefix(b"042"), Some(42));
        assert_eq!(parse_length_prefix(b"4-"), None);
    }
}
