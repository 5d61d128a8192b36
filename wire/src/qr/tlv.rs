//! The TLV layer: 2-digit ID, 2-digit length counted in characters (Unicode scalar values),
//! value. Knows nothing about what the IDs mean.

use serde::{Serialize, Serializer};

use super::crc;
use super::error::{FieldPath, QrError};

/// Largest value one data object can carry: its length is two decimal digits.
pub const VALUE_CHARS_MAX: usize = 99;

/// Characters in a data object header: 2-digit ID and 2-digit length.
const HEADER_CHARS: usize = 4;

/// Highest data object ID (two decimal digits). IDs index a 128-bit set when the parser looks
/// for duplicates.
pub const ID_MAX: u8 = 99;
const _: () = assert!((ID_MAX as u32) < u128::BITS);

/// One data object: an ID and either a primitive value or, for template IDs, the nested data
/// objects. Serializes as `{"id": "62", "value": [{"id": "05", "value": "***"}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataObject {
    #[serde(serialize_with = "serialize_id")]
    pub id: u8,
    pub value: Value,
}

/// The value of a [`DataObject`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Primitive(String),
    Template(Vec<DataObject>),
}

impl DataObject {
    pub fn primitive(id: u8, value: impl Into<String>) -> DataObject {
        DataObject { id, value: Value::Primitive(value.into()) }
    }

    pub fn template(id: u8, objects: Vec<DataObject>) -> DataObject {
        DataObject { id, value: Value::Template(objects) }
    }

    /// The value if this is a primitive data object.
    pub fn as_primitive(&self) -> Option<&str> {
        match &self.value {
            Value::Primitive(value) => Some(value),
            Value::Template(_) => None,
        }
    }

    /// The nested data objects if this is a template.
    pub fn as_template(&self) -> Option<&[DataObject]> {
        match &self.value {
            Value::Primitive(_) => None,
            Value::Template(objects) => Some(objects),
        }
    }
}

/// The primitive value of data object `id` among `objects`.
pub(crate) fn find_primitive(objects: &[DataObject], id: u8) -> Option<&str> {
    objects.iter().find(|object| object.id == id).and_then(DataObject::as_primitive)
}

fn serialize_id<S: Serializer>(id: &u8, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format!("{id:02}"))
}

/// A data object as read from the wire, before its value is interpreted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawObject<'a> {
    pub id: u8,
    pub value: &'a str,
}

/// Splits `input`, the value of the template at `within` (or the whole payload at
/// [`FieldPath::ROOT`]), into data objects. Rejects unreadable headers, values that run past the
/// end, zero lengths and IDs that appear twice.
pub(crate) fn split(input: &str, within: FieldPath) -> Result<Vec<RawObject<'_>>, QrError> {
    let mut objects = Vec::new();
    let mut seen: u128 = 0;
    let mut rest = input;
    while !rest.is_empty() {
        let Some((header, after_header)) = split_chars(rest, HEADER_CHARS) else {
            return Err(QrError::TruncatedHeader { within, found: rest.to_owned() });
        };
        // The header is 4 characters; `get` fails only if they are not all ASCII.
        let (id_digits, length_digits) = (header.get(..2), header.get(2..));
        let Some(id) = id_digits.and_then(two_digits) else {
            return Err(QrError::BadId { within, found: header.chars().take(2).collect() });
        };
        let at = within.child(id);
        let Some(length) = length_digits.and_then(two_digits) else {
            return Err(QrError::BadLength {
                at,
                found: header.chars().skip(2).collect(),
                reason: "is not two digits",
            });
        };
        if length == 0 {
            return Err(QrError::BadLength {
                at,
                found: "00".to_owned(),
                reason: "is zero; a data object carries 1 to 99 characters",
            });
        }
        let declared = usize::from(length);
        let Some((value, after_value)) = split_chars(after_header, declared) else {
            return Err(QrError::Truncated { at, declared, available: after_header.chars().count() });
        };
        let bit = 1u128 << id;
        if seen & bit != 0 {
            return Err(QrError::DuplicateId { at });
        }
        seen |= bit;
        objects.push(RawObject { id, value });
        rest = after_value;
    }
    Ok(objects)
}

/// Splits after the first `count` characters; `None` if `input` has fewer.
fn split_chars(input: &str, count: usize) -> Option<(&str, &str)> {
    if count == 0 {
        return Some(("", input));
    }
    let (index, last) = input.char_indices().nth(count - 1)?;
    Some(input.split_at(index + last.len_utf8()))
}

/// "00" to "99" as a number; `None` for anything else.
fn two_digits(text: &str) -> Option<u8> {
    match text.as_bytes() {
        [tens @ b'0'..=b'9', units @ b'0'..=b'9'] => Some((tens - b'0') * 10 + (units - b'0')),
        _ => None,
    }
}

/// Encodes data objects in the order given and appends ID 63 with the CRC.
///
/// A data object with ID 63 may be given as the last one (as [`super::QrPayload::objects`]
/// returns them); its value is replaced by the computed CRC. Checks only what the TLV layer
/// needs (IDs 00-99, values of 1 to 99 characters); to get a payload checked against the EMV
/// rules, parse the result or use [`super::QrPayloadBuilder::build`].
pub fn encode(objects: &[DataObject]) -> Result<String, QrError> {
    let body = match objects.split_last() {
        Some((last, body)) if last.id == 63 => body,
        _ => objects,
    };
    let mut payload = String::new();
    encode_into(&mut payload, body, FieldPath::ROOT)?;
    Ok(crc::append_crc(&payload))
}

fn encode_into(out: &mut String, objects: &[DataObject], within: FieldPath) -> Result<(), QrError> {
    for object in objects {
        if object.id > ID_MAX {
            return Err(QrError::BadId { within, found: object.id.to_string() });
        }
        let at = within.child(object.id);
        if within == FieldPath::ROOT && object.id == 63 {
            return Err(QrError::OutOfOrder { at, reason: "the CRC must be the last data object" });
        }
        let value = match &object.value {
            Value::Primitive(value) => value.clone(),
            Value::Template(nested) => {
                let mut value = String::new();
                encode_into(&mut value, nested, at)?;
                value
            }
        };
        let length = value.chars().count();
        if length == 0 || length > VALUE_CHARS_MAX {
            return Err(QrError::BadLength { at, found: length.to_string(), reason: "is outside 1 to 99 characters" });
        }
        out.push_str(&format!("{:02}{length:02}", object.id));
        out.push_str(&value);
    }
    Ok(())
}
