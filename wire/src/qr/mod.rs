//! EMV merchant-presented QR payloads (EMVCo QRCPS, merchant-presented mode): parse, check,
//! recognise the scheme, and encode.
//!
//! [`QrPayload::parse`] is the edge: it turns a scanned string into a checked [`QrPayload`] or a
//! [`QrError`] that names the failing ID and carries a stable [`QrError::code`]. Everything
//! after it trusts the payload. The QR gateway calls it once per request over HTTP, so it is
//! not on the authorization hot path; it allocates the parsed tree (at most
//! [`PAYLOAD_CHARS_MAX`] characters of input).
//!
//! Format: data objects of a 2-digit ID, a 2-digit length counted in characters (Unicode scalar
//! values: merchant names in Chinese or Thai are common), and the value. ID 00 comes first,
//! ID 63 (CRC-16/CCITT-FALSE over the UTF-8 bytes up to and including "6304") last, the rest in
//! any order (the EMVCo specification's own example has 54 after 64). No ID appears twice at
//! the top level or within a template.
//!
//! Where real generators depart from the specification we accept what they produce, and say so
//! here; everywhere else we are as strict as the specification:
//! - ID 01 (point of initiation) may be absent: optional in EMV QRCPS, and pypix (Pix) omits it.
//! - IDs 52 (MCC), 59 (merchant name) and 60 (merchant city) may be absent when the payload
//!   carries a PromptPay template (29 with AID A000000677010111, 30 with A000000677010112): the
//!   `promptpay` package, like Thai banking apps, emits none of them. Other payloads need them.
//! - The CRC's hex digits may be lowercase on read (generators that print it with Java's
//!   `Integer.toHexString` and the like do); we always emit uppercase.
//! - GUIs are compared without regard to ASCII case: pypix and Bradesco write
//!   "BR.GOV.BCB.PIX" where the BR Code manual writes "br.gov.bcb.pix".
//! - Sub-fields of template 62 have no length limit beyond the TLV's 99: pypix writes the Pix
//!   txid as "Identificador" + txid (Bradesco's layout), past the 25 characters of 62/05.
//! - 59 and 60 may hold any Unicode, not only the specification's common character set: the
//!   length is counted in characters precisely because such names occur, and routing does not
//!   depend on them. Their length limits (25, 15) hold.
//! - RFU IDs (65-79 at the top level, 10-49 in 62, 03-99 in 64) are accepted as primitive
//!   values, so that a payload from a newer generator still pays.
//!
//! Not accepted, on purpose: pypix 0.2.0 writes the CRC without zero padding, so about one
//! payload in 16 ends "6304" plus 3 hex digits; its declared length 04 is then a lie and the
//! payload is rejected as truncated. We never trim whitespace: the caller passes the payload
//! exactly as scanned.

mod amount;
mod builder;
mod crc;
mod error;
mod scheme;
mod tlv;

#[cfg(test)]
mod tests;

use std::str::FromStr;

use serde::{Serialize, Serializer};

pub use builder::QrPayloadBuilder;
pub use crc::{append_crc, crc16_ccitt_false};
pub use error::{FieldPath, QrError, TEMPLATE_DEPTH_MAX};
pub use scheme::{
    MerchantKey, PixAccount, PromptPayAccount, PromptPayTarget, QrisAccount, QrisProvider, Scheme, SchemeAccount,
    SchemeMatch, UnionPayAccount,
};
pub use tlv::{encode, DataObject, Value, ID_MAX, VALUE_CHARS_MAX};

use tlv::{find_primitive, RawObject};

/// Longest payload accepted, in characters: the EMV QRCPS limit. Bounds the work one request
/// can cause (the parse is linear in it) before anything is allocated.
pub const PAYLOAD_CHARS_MAX: usize = 512;
/// ID 54 (amount) and 56 (fixed convenience fee): up to 13 characters.
const AMOUNT_CHARS_MAX: usize = 13;
/// ID 57 (percentage convenience fee): up to 5 characters, "00.01" to "99.99".
const PERCENTAGE_CHARS_MAX: usize = 5;
/// Sub-ID 00 of a merchant account or unreserved template (an AID, a reverse domain or a UUID).
const GUI_CHARS_MAX: usize = 32;
/// ID 59 and 64/01.
const MERCHANT_NAME_CHARS_MAX: usize = 25;
/// ID 60 and 64/02.
const MERCHANT_CITY_CHARS_MAX: usize = 15;
/// ID 61.
const POSTAL_CODE_CHARS_MAX: usize = 10;
const _: () = assert!(AMOUNT_CHARS_MAX <= VALUE_CHARS_MAX && GUI_CHARS_MAX <= VALUE_CHARS_MAX);

/// ID 01: whether the QR is shown again for every payment (static) or made for one (dynamic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Initiation {
    /// "11"
    Static,
    /// "12"
    Dynamic,
}

/// IDs 55, 56, 57: whether the payer is asked for a tip or charged a convenience fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Tip<'a> {
    /// 55 = "01": the wallet prompts the payer for a tip.
    Prompt,
    /// 55 = "02": a fixed fee (ID 56, a decimal amount in the transaction currency).
    FixedFee { amount: &'a str },
    /// 55 = "03": a percentage fee (ID 57, e.g. "3.00").
    PercentageFee { percentage: &'a str },
}

/// Template 62. Each field is as written; "***" means the wallet should ask the payer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AdditionalData<'a> {
    pub bill_number: Option<&'a str>,
    pub mobile_number: Option<&'a str>,
    pub store_label: Option<&'a str>,
    pub loyalty_number: Option<&'a str>,
    pub reference_label: Option<&'a str>,
    pub customer_label: Option<&'a str>,
    pub terminal_label: Option<&'a str>,
    pub purpose: Option<&'a str>,
    /// Letters of what the wallet must collect: "A" address, "M" mobile, "E" e-mail.
    pub consumer_data_request: Option<&'a str>,
    /// All data objects of the template, including RFU and payment system templates (50-99).
    #[serde(skip)]
    pub objects: &'a [DataObject],
}

/// Template 64: the merchant's name and city in another language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MerchantLanguage<'a> {
    /// 64/00, ISO 639-1, e.g. "ZH".
    pub preference: &'a str,
    /// 64/01.
    pub name: &'a str,
    /// 64/02.
    pub city: Option<&'a str>,
}

/// A checked merchant-presented QR payload. Obtained only from [`QrPayload::parse`] (or
/// [`QrPayloadBuilder::build`], which parses what it encoded), so every accessor can trust it.
///
/// Serializes to JSON with the typed fields, the recognised schemes and the raw data objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrPayload {
    payload: String,
    objects: Vec<DataObject>,
    currency_numeric: u16,
    /// Never empty: `Other` when no scheme is recognised.
    schemes: Vec<SchemeMatch>,
}

impl QrPayload {
    /// Parses and checks a payload exactly as scanned.
    pub fn parse(input: &str) -> Result<QrPayload, QrError> {
        if input.is_empty() {
            return Err(QrError::Empty);
        }
        if input.chars().nth(PAYLOAD_CHARS_MAX).is_some() {
            return Err(QrError::TooLong { max: PAYLOAD_CHARS_MAX });
        }
        // The CRC first: a payload corrupted in transit or in the scan most likely fails here,
        // which says what happened better than whatever structural error the corruption causes.
        // A payload whose tail is not "6304" and 4 hex digits fails the structural checks below.
        let crc_verified = match crc::crc_tail(input) {
            Some((covered, found)) => {
                let expected = crc16_ccitt_false(covered.as_bytes());
                if expected != found {
                    return Err(QrError::CrcMismatch { expected, found });
                }
                true
            }
            None => false,
        };
        let raw = tlv::split(input, FieldPath::ROOT)?;
        check_position(&raw, 0, raw.first(), "the payload format indicator must come first")?;
        check_position(&raw, 63, raw.last(), "the CRC must be the last data object")?;
        let objects = raw.iter().map(|object| check_top(*object)).collect::<Result<Vec<_>, _>>()?;
        if !crc_verified {
            // Unreachable in practice: 63 is last and 4 hex digits (checked above), so the tail
            // was a CRC. Kept as an error, not an assertion, because the input is untrusted.
            return Err(QrError::BadValue {
                at: FieldPath::top(63),
                value: String::new(),
                reason: "could not be located for verification",
            });
        }
        check_rules(&objects)?;
        let additional_data = objects.iter().find(|object| object.id == 62).and_then(DataObject::as_template);
        let schemes = scheme::recognise(&objects, additional_data)?;
        let currency_numeric = find_primitive(&objects, 53)
            .and_then(|value| value.parse().ok())
            .ok_or(QrError::MissingId { at: FieldPath::top(53), reason: "the transaction currency is required" })?;
        Ok(QrPayload { payload: input.to_owned(), objects, currency_numeric, schemes })
    }

    /// The payload as scanned.
    pub fn as_str(&self) -> &str {
        &self.payload
    }

    /// Top-level data objects in payload order, 00 first and 63 last.
    pub fn objects(&self) -> &[DataObject] {
        &self.objects
    }

    /// The top-level data object `id`.
    pub fn get(&self, id: u8) -> Option<&DataObject> {
        self.objects.iter().find(|object| object.id == id)
    }

    /// The value of the top-level primitive data object `id`.
    pub fn primitive(&self, id: u8) -> Option<&str> {
        find_primitive(&self.objects, id)
    }

    /// The data objects of the top-level template `id`.
    pub fn template(&self, id: u8) -> Option<&[DataObject]> {
        self.get(id).and_then(DataObject::as_template)
    }

    /// ID 01; `None` when the generator left it out.
    pub fn initiation(&self) -> Option<Initiation> {
        match self.primitive(1)? {
            "11" => Some(Initiation::Static),
            _ => Some(Initiation::Dynamic),
        }
    }

    /// ID 52, 4 digits; absent only in PromptPay payloads.
    pub fn mcc(&self) -> Option<&str> {
        self.primitive(52)
    }

    /// ID 53, ISO 4217 numeric code, e.g. 156 for CNY.
    pub fn currency_numeric(&self) -> u16 {
        self.currency_numeric
    }

    /// ID 54, the decimal as written, e.g. "23.72". Absent in most static QRs: the payer types
    /// the amount.
    pub fn amount(&self) -> Option<&str> {
        self.primitive(54)
    }

    /// ID 54 in minor units of a currency with ISO 4217 exponent `exponent` ("23.72" at 2 is
    /// 2372). Errors if the amount has more (non-zero) decimal places than the exponent or does
    /// not fit in a `u64`.
    pub fn amount_minor_units(&self, exponent: u8) -> Result<Option<u64>, QrError> {
        self.amount().map(|amount| amount::to_minor_units(FieldPath::top(54), amount, exponent)).transpose()
    }

    /// IDs 55-57.
    pub fn tip(&self) -> Option<Tip<'_>> {
        match self.primitive(55)? {
            "01" => Some(Tip::Prompt),
            "02" => Some(Tip::FixedFee { amount: self.primitive(56).unwrap_or_default() }),
            _ => Some(Tip::PercentageFee { percentage: self.primitive(57).unwrap_or_default() }),
        }
    }

    /// ID 56 (fixed convenience fee) in minor units; see [`QrPayload::amount_minor_units`].
    pub fn fixed_fee_minor_units(&self, exponent: u8) -> Result<Option<u64>, QrError> {
        self.primitive(56).map(|fee| amount::to_minor_units(FieldPath::top(56), fee, exponent)).transpose()
    }

    /// ID 58, ISO 3166-1 alpha-2, e.g. "CN".
    pub fn country(&self) -> &str {
        self.primitive(58).unwrap_or_default()
    }

    /// ID 59; absent only in PromptPay payloads.
    pub fn merchant_name(&self) -> Option<&str> {
        self.primitive(59)
    }

    /// ID 60; absent only in PromptPay payloads.
    pub fn merchant_city(&self) -> Option<&str> {
        self.primitive(60)
    }

    /// ID 61.
    pub fn postal_code(&self) -> Option<&str> {
        self.primitive(61)
    }

    /// Template 62.
    pub fn additional_data(&self) -> Option<AdditionalData<'_>> {
        let objects = self.template(62)?;
        let field = |id| find_primitive(objects, id);
        Some(AdditionalData {
            bill_number: field(1),
            mobile_number: field(2),
            store_label: field(3),
            loyalty_number: field(4),
            reference_label: field(5),
            customer_label: field(6),
            terminal_label: field(7),
            purpose: field(8),
            consumer_data_request: field(9),
            objects,
        })
    }

    /// Template 64.
    pub fn language(&self) -> Option<MerchantLanguage<'_>> {
        let objects = self.template(64)?;
        Some(MerchantLanguage {
            preference: find_primitive(objects, 0).unwrap_or_default(),
            name: find_primitive(objects, 1).unwrap_or_default(),
            city: find_primitive(objects, 2),
        })
    }

    /// The scheme to route by: the first of [`QrPayload::schemes`].
    pub fn scheme(&self) -> &SchemeMatch {
        self.schemes.first().unwrap_or(&scheme::OTHER_UNKNOWN)
    }

    /// Every scheme the payload names, in routing precedence (UnionPay, Pix, PromptPay, QRIS);
    /// a single `Other` when none.
    pub fn schemes(&self) -> &[SchemeMatch] {
        &self.schemes
    }
}

impl FromStr for QrPayload {
    type Err = QrError;

    fn from_str(input: &str) -> Result<QrPayload, QrError> {
        QrPayload::parse(input)
    }
}

impl Serialize for QrPayload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            payload: &'a str,
            initiation: Option<Initiation>,
            mcc: Option<&'a str>,
            currency_numeric: u16,
            amount: Option<&'a str>,
            tip: Option<Tip<'a>>,
            country: &'a str,
            merchant_name: Option<&'a str>,
            merchant_city: Option<&'a str>,
            postal_code: Option<&'a str>,
            additional_data: Option<AdditionalData<'a>>,
            language: Option<MerchantLanguage<'a>>,
            scheme: &'a SchemeMatch,
            schemes: &'a [SchemeMatch],
            objects: &'a [DataObject],
        }
        View {
            payload: &self.payload,
            initiation: self.initiation(),
            mcc: self.mcc(),
            currency_numeric: self.currency_numeric,
            amount: self.amount(),
            tip: self.tip(),
            country: self.country(),
            merchant_name: self.merchant_name(),
            merchant_city: self.merchant_city(),
            postal_code: self.postal_code(),
            additional_data: self.additional_data(),
            language: self.language(),
            scheme: self.scheme(),
            schemes: &self.schemes,
            objects: &self.objects,
        }
        .serialize(serializer)
    }
}

/// ID `id` must be the object `at` (first or last): out of order if it is elsewhere, missing if
/// it is nowhere.
fn check_position(
    raw: &[RawObject<'_>],
    id: u8,
    at: Option<&RawObject<'_>>,
    reason: &'static str,
) -> Result<(), QrError> {
    if at.is_some_and(|object| object.id == id) {
        return Ok(());
    }
    let path = FieldPath::top(id);
    if raw.iter().any(|object| object.id == id) {
        Err(QrError::OutOfOrder { at: path, reason })
    } else {
        Err(QrError::MissingId { at: path, reason })
    }
}

/// Which rules a template's data objects follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TemplateKind {
    /// 26-51 merchant account information, 80-99 unreserved, and 62/50-99 payment system
    /// templates: a GUI in 00, then primitive values the payment system defines.
    PaymentSystem,
    /// 62.
    AdditionalData,
    /// 64.
    Language,
}

/// Checks one top-level data object and interprets templates.
fn check_top(raw: RawObject<'_>) -> Result<DataObject, QrError> {
    let at = FieldPath::top(raw.id);
    let value = raw.value;
    match raw.id {
        0 => one_of(at, value, &["01"], "must be \"01\""),
        1 => one_of(at, value, &["11", "12"], "must be \"11\" (static) or \"12\" (dynamic)"),
        26..=51 | 80..=99 => template(at, value, TemplateKind::PaymentSystem),
        52 => digits(at, value, 4, "must be a 4-digit merchant category code"),
        53 => digits(at, value, 3, "must be a 3-digit ISO 4217 numeric currency code"),
        54 | 56 => decimal(at, value, AMOUNT_CHARS_MAX, "exceeds 13 characters"),
        55 => one_of(
            at,
            value,
            &["01", "02", "03"],
            "must be \"01\" (prompt for tip), \"02\" (fixed fee) or \"03\" (percentage fee)",
        ),
        57 => decimal(at, value, PERCENTAGE_CHARS_MAX, "exceeds 5 characters"),
        58 => {
            if value.len() == 2 && value.bytes().all(|byte| byte.is_ascii_uppercase()) {
                Ok(DataObject::primitive(raw.id, value))
            } else {
                Err(bad_value(at, value, "must be an ISO 3166-1 alpha-2 code in capitals"))
            }
        }
        59 => limited(at, value, MERCHANT_NAME_CHARS_MAX, "exceeds 25 characters"),
        60 => limited(at, value, MERCHANT_CITY_CHARS_MAX, "exceeds 15 characters"),
        61 => limited(at, value, POSTAL_CODE_CHARS_MAX, "exceeds 10 characters"),
        62 => template(at, value, TemplateKind::AdditionalData),
        63 => {
            if value.chars().count() != 4 {
                return Err(QrError::BadLength {
                    at,
                    found: format!("{:02}", value.chars().count()),
                    reason: "must be 04 for the CRC",
                });
            }
            if !value.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                return Err(bad_value(at, value, "must be 4 hex digits"));
            }
            Ok(DataObject::primitive(raw.id, value.to_ascii_uppercase()))
        }
        64 => template(at, value, TemplateKind::Language),
        // 02-25 (primitive merchant account information, e.g. UnionPay's 15) and RFU 65-79.
        _ => Ok(DataObject::primitive(raw.id, value)),
    }
}

/// Splits and checks the data objects of a template.
fn template(at: FieldPath, value: &str, kind: TemplateKind) -> Result<DataObject, QrError> {
    let raw = tlv::split(value, at)?;
    let mut objects = Vec::with_capacity(raw.len());
    for child in raw {
        let child_at = at.child(child.id);
        let object = match (kind, child.id) {
            (TemplateKind::PaymentSystem, 0) => {
                limited(child_at, child.value, GUI_CHARS_MAX, "exceeds 32 characters for a GUI")?
            }
            (TemplateKind::AdditionalData, 9) => consumer_data_request(child_at, child.value)?,
            (TemplateKind::AdditionalData, 50..=99) => template(child_at, child.value, TemplateKind::PaymentSystem)?,
            (TemplateKind::Language, 0) => {
                if child.value.len() == 2 && child.value.bytes().all(|b| b.is_ascii_alphabetic()) {
                    DataObject::primitive(child.id, child.value)
                } else {
                    return Err(bad_value(child_at, child.value, "must be an ISO 639-1 code"));
                }
            }
            (TemplateKind::Language, 1) => {
                limited(child_at, child.value, MERCHANT_NAME_CHARS_MAX, "exceeds 25 characters")?
            }
            (TemplateKind::Language, 2) => {
                limited(child_at, child.value, MERCHANT_CITY_CHARS_MAX, "exceeds 15 characters")?
            }
            _ => DataObject::primitive(child.id, child.value),
        };
        objects.push(object);
    }
    let required: &[(u8, &'static str)] = match kind {
        TemplateKind::PaymentSystem => &[(0, "a payment system template needs its GUI")],
        TemplateKind::AdditionalData => &[],
        TemplateKind::Language => &[
            (0, "the language template needs the language preference"),
            (1, "the language template needs the alternate merchant name"),
        ],
    };
    for &(id, reason) in required {
        if !objects.iter().any(|object| object.id == id) {
            return Err(QrError::MissingId { at: at.child(id), reason });
        }
    }
    Ok(DataObject::template(at.id().unwrap_or_default(), objects))
}

/// Cross-field rules: required IDs, and the tip or convenience fee indicator.
fn check_rules(objects: &[DataObject]) -> Result<(), QrError> {
    let has = |id: u8| objects.iter().any(|object| object.id == id);
    let missing = |id: u8, reason| QrError::MissingId { at: FieldPath::top(id), reason };
    let promptpay = objects
        .iter()
        .any(|object| object.as_template().is_some_and(|template| scheme::is_promptpay(object.id, template)));
    if !objects.iter().any(|object| (2..=51).contains(&object.id)) {
        return Err(missing(2, "at least one merchant account information ID (02-51) is required"));
    }
    // Leniency: PromptPay generators omit 52, 59 and 60 (see the module documentation).
    let required: [(u8, bool, &'static str); 5] = [
        (52, !promptpay, "the merchant category code is required"),
        (53, true, "the transaction currency is required"),
        (58, true, "the country code is required"),
        (59, !promptpay, "the merchant name is required"),
        (60, !promptpay, "the merchant city is required"),
    ];
    for (id, is_required, reason) in required {
        if is_required && !has(id) {
            return Err(missing(id, reason));
        }
    }
    let indicator = find_primitive(objects, 55);
    let unexpected = |id: u8, reason| QrError::UnexpectedId { at: FieldPath::top(id), reason };
    match indicator {
        Some("02") if !has(56) => Err(missing(56, "55 = \"02\" (fixed fee) needs the fee in 56")),
        Some("03") if !has(57) => Err(missing(57, "55 = \"03\" (percentage fee) needs the percentage in 57")),
        Some("02") | Some("03") | Some("01") | None => {
            if has(56) && indicator != Some("02") {
                Err(unexpected(56, "a fixed fee is allowed only with 55 = \"02\""))
            } else if has(57) && indicator != Some("03") {
                Err(unexpected(57, "a percentage fee is allowed only with 55 = \"03\""))
            } else {
                Ok(())
            }
        }
        Some(_) => Ok(()), // Rejected by check_top already.
    }
}

fn bad_value(at: FieldPath, value: &str, reason: &'static str) -> QrError {
    QrError::BadValue { at, value: value.to_owned(), reason }
}

fn one_of(at: FieldPath, value: &str, allowed: &[&str], reason: &'static str) -> Result<DataObject, QrError> {
    if allowed.contains(&value) {
        Ok(DataObject::primitive(id_of(at), value))
    } else {
        Err(bad_value(at, value, reason))
    }
}

fn digits(at: FieldPath, value: &str, count: usize, reason: &'static str) -> Result<DataObject, QrError> {
    if value.len() == count && value.bytes().all(|byte| byte.is_ascii_digit()) {
        Ok(DataObject::primitive(id_of(at), value))
    } else {
        Err(bad_value(at, value, reason))
    }
}

fn decimal(at: FieldPath, value: &str, chars_max: usize, reason: &'static str) -> Result<DataObject, QrError> {
    let object = limited(at, value, chars_max, reason)?;
    amount::check_decimal(value).map_err(|reason| bad_value(at, value, reason))?;
    Ok(object)
}

/// A primitive value of at most `chars_max` characters; `reason` says which limit.
fn limited(at: FieldPath, value: &str, chars_max: usize, reason: &'static str) -> Result<DataObject, QrError> {
    let chars = value.chars().count();
    if chars > chars_max {
        return Err(QrError::BadLength { at, found: format!("{chars:02}"), reason });
    }
    Ok(DataObject::primitive(id_of(at), value))
}

/// 62/09: each of "A" (address), "M" (mobile), "E" (e-mail) at most once.
fn consumer_data_request(at: FieldPath, value: &str) -> Result<DataObject, QrError> {
    let mut seen = [false; 3];
    for byte in value.bytes() {
        let slot = match byte {
            b'A' => 0,
            b'M' => 1,
            b'E' => 2,
            _ => return Err(bad_value(at, value, "may hold only the letters A, M and E")),
        };
        if std::mem::replace(&mut seen[slot], true) {
            return Err(bad_value(at, value, "names a letter twice"));
        }
    }
    Ok(DataObject::primitive(id_of(at), value))
}

fn id_of(at: FieldPath) -> u8 {
    at.id().unwrap_or_default()
}
