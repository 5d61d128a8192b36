//! Text formatting and parsing for clearing files, without floats and without allocating
//! per row: numbers, amounts, hex ids and timestamps.
//!
//! The writer (`push_*`) and the checker (`parse_*`) live side by side so that a change to
//! one is seen next to the other.

const NANOS_PER_SECOND: u64 = 1_000_000_000;
const SECONDS_PER_DAY: u64 = 86_400;
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends `value` in decimal (`itoa`: two digits per step, from a table).
pub(crate) fn push_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Appends `value` in decimal.
pub(crate) fn push_u128(out: &mut Vec<u8>, value: u128) {
    if let Ok(small) = u64::try_from(value) {
        return push_u64(out, small);
    }
    // u128::MAX has 39 digits.
    let mut digits = [0u8; 39];
    let mut start = digits.len();
    let mut rest = value;
    while rest > 0 {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits[start..]);
}

/// Appends exactly `width` digits of `value` (at most 20), zero-padded on the left.
fn push_fixed(out: &mut Vec<u8>, mut value: u64, width: usize) {
    debug_assert!(width <= 20 && (width == 20 || value < 10u64.pow(width as u32)));
    let mut digits = [b'0'; 20];
    for slot in digits[..width].iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
    out.extend_from_slice(&digits[..width]);
}

/// Appends minor units as a decimal in major units with exactly `exponent` fraction
/// digits: 1234 with exponent 2 is `12.34`, -5 is `-0.05`, JPY 1234 is `1234`.
pub(crate) fn push_amount(out: &mut Vec<u8>, minor: i128, exponent: u8) {
    if minor < 0 {
        out.push(b'-');
    }
    let magnitude = minor.unsigned_abs();
    let exponent = u32::from(exponent);
    let scale = 10u128.pow(exponent);
    push_u128(out, magnitude / scale);
    if exponent > 0 {
        out.push(b'.');
        // The fraction is below 10^exponent (an ISO 4217 exponent is at most 4).
        let fraction = (magnitude % scale) as u64;
        push_fixed(out, fraction, exponent as usize);
    }
}

/// `push_amount` for a single transfer's amount, in u64 arithmetic (the hot path).
pub(crate) fn push_amount_u64(out: &mut Vec<u8>, minor: u64, exponent: u8) {
    let exponent = u32::from(exponent);
    let scale = 10u64.pow(exponent);
    push_u64(out, minor / scale);
    if exponent > 0 {
        out.push(b'.');
        push_fixed(out, minor % scale, exponent as usize);
    }
}

pub(crate) fn amount_string(minor: i128, exponent: u8) -> String {
    let mut out = Vec::with_capacity(24);
    push_amount(&mut out, minor, exponent);
    // Only ASCII digits, '-' and '.' were written.
    String::from_utf8_lossy(&out).into_owned()
}

/// Number of decimal digits of a minor-unit magnitude as written with `exponent` fraction
/// digits (at least `exponent + 1`: `0.05` counts 3). For ISO 20022's `totalDigits`.
pub(crate) fn amount_digits(minor: i128, exponent: u8) -> usize {
    let mut magnitude = minor.unsigned_abs();
    let mut digits = 0usize;
    while magnitude > 0 {
        digits += 1;
        magnitude /= 10;
    }
    digits.max(usize::from(exponent) + 1)
}

/// Parses an amount written by `push_amount` with the same exponent, strictly: a missing
/// or extra fraction digit is an error, so a file edited by hand or by a spreadsheet
/// (which drops trailing zeros) is noticed instead of silently rescaled.
pub(crate) fn parse_amount(text: &str, exponent: u8) -> Option<i128> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let exponent_digits = usize::from(exponent);
    match fraction {
        None if exponent_digits != 0 => return None,
        Some(fraction) if fraction.len() != exponent_digits || exponent_digits == 0 => return None,
        _ => {}
    }
    let whole = parse_digits(whole)?;
    let fraction = match fraction {
        Some(fraction) => parse_digits(fraction)?,
        None => 0,
    };
    let magnitude = whole.checked_mul(10u128.pow(u32::from(exponent)))?.checked_add(fraction)?;
    let magnitude = i128::try_from(magnitude).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// Parses a non-empty run of ASCII digits (no sign, no spaces).
pub(crate) fn parse_digits(text: &str) -> Option<u128> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

pub(crate) fn parse_u64(text: &str) -> Option<u64> {
    parse_digits(text).and_then(|v| u64::try_from(v).ok())
}

/// Appends `value` as exactly 32 lowercase hex digits.
pub(crate) fn push_hex_u128(out: &mut Vec<u8>, value: u128) {
    push_hex_u64(out, (value >> 64) as u64);
    push_hex_u64(out, value as u64);
}

/// Appends `value` in lowercase hex without leading zeros (`0` for zero).
pub(crate) fn push_hex_short(out: &mut Vec<u8>, value: u128) {
    let digits = (128 - value.leading_zeros()).div_ceil(4).max(1);
    for shift in (0..digits).rev() {
        out.push(HEX_DIGITS[((value >> (shift * 4)) & 0xf) as usize]);
    }
}

/// Appends `value` as exactly 16 lowercase hex digits (a byte at a time, from a table).
pub(crate) fn push_hex_u64(out: &mut Vec<u8>, value: u64) {
    let mut digits = [0u8; 16];
    for (pair, byte) in digits.chunks_exact_mut(2).zip(value.to_be_bytes()) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
    out.extend_from_slice(&digits);
}

/// Each byte's two lowercase hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let mut pairs = [[0u8; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        pairs[byte] = [HEX_DIGITS[byte >> 4], HEX_DIGITS[byte & 0xf]];
        byte += 1;
    }
    pairs
};

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), after Howard
/// Hinnant's `civil_from_days`. Unsigned: ledger timestamps are never before 1970.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Appends `YYYY-MM-DD` (UTC) of a nanosecond timestamp.
pub(crate) fn push_date(out: &mut Vec<u8>, timestamp_ns: u64) {
    let (year, month, day) = civil_from_days(timestamp_ns / NANOS_PER_SECOND / SECONDS_PER_DAY);
    push_fixed(out, year, 4);
    out.push(b'-');
    push_fixed(out, month, 2);
    out.push(b'-');
    push_fixed(out, day, 2);
}

fn push_time_of_day(out: &mut Vec<u8>, timestamp_ns: u64) {
    let second_of_day = timestamp_ns / NANOS_PER_SECOND % SECONDS_PER_DAY;
    push_fixed(out, second_of_day / 3600, 2);
    out.push(b':');
    push_fixed(out, second_of_day / 60 % 60, 2);
    out.push(b':');
    push_fixed(out, second_of_day % 60, 2);
}

/// Appends ISO 8601 UTC with nanoseconds: `2026-11-25T22:53:27.123456789Z`.
pub(crate) fn push_timestamp(out: &mut Vec<u8>, timestamp_ns: u64) {
    push_date(out, timestamp_ns);
    out.push(b'T');
    push_time_of_day(out, timestamp_ns);
    out.push(b'.');
    push_fixed(out, timestamp_ns % NANOS_PER_SECOND, 9);
    out.push(b'Z');
}

pub(crate) fn timestamp_string(timestamp_ns: u64) -> String {
    let mut out = Vec::with_capacity(32);
    push_timestamp(&mut out, timestamp_ns);
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn date_string(timestamp_ns: u64) -> String {
    let mut out = Vec::with_capacity(10);
    push_date(&mut out, timestamp_ns);
    String::from_utf8_lossy(&out).into_owned()
}

/// ISO 20022 `ISODateTime` in whole seconds with an explicit UTC offset
/// (`2026-11-25T22:53:27+00:00`), the form market practice (CBPR+) asks for.
pub(crate) fn xml_datetime(timestamp_ns: u64) -> String {
    let mut out = Vec::with_capacity(25);
    push_date(&mut out, timestamp_ns);
    out.push(b'T');
    push_time_of_day(&mut out, timestamp_ns);
    out.extend_from_slice(b"+00:00");
    String::from_utf8_lossy(&out).into_owned()
}

/// Text made safe for XML element content: escaped, characters that XML 1.0 forbids
/// replaced by spaces, cut to `max_chars` characters (ISO 20022 `MaxNText` counts
/// characters), and never empty (`fallback` is used then).
pub(crate) fn xml_text(text: &str, max_chars: usize, fallback: &str) -> String {
    let trimmed = text.trim();
    let source = if trimmed.is_empty() { fallback } else { trimmed };
    let mut out = String::with_capacity(source.len());
    for c in source.chars().take(max_chars) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Appends a CSV field, quoted when it holds a separator, a quote or a line break.
pub(crate) fn push_csv_field(out: &mut Vec<u8>, field: &str) {
    if field.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
        out.push(b'"');
        for b in field.bytes() {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(field.as_bytes());
    }
}

/// BICFI / AnyBIC (ISO 9362): `[A-Z0-9]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?`.
pub(crate) fn is_bic(text: &str) -> bool {
    let bytes = text.as_bytes();
    let alphanumeric = |b: &u8| b.is_ascii_uppercase() || b.is_ascii_digit();
    (bytes.len() == 8 || bytes.len() == 11)
        && bytes[..4].iter().all(alphanumeric)
        && bytes[4..6].iter().all(u8::is_ascii_uppercase)
        && bytes[6..].iter().all(alphanumeric)
}

/// IBAN as ISO 20022 writes it: `[A-Z]{2}[0-9]{2}[a-zA-Z0-9]{1,30}`.
pub(crate) fn is_iban(text: &str) -> bool {
    let bytes = text.as_bytes();
    (5..=34).contains(&bytes.len())
        && bytes[..2].iter().all(u8::is_ascii_uppercase)
        && bytes[2..4].iter().all(u8::is_ascii_digit)
        && bytes[4..].iter().all(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn amounts_round_trip_with_every_exponent() {
        for exponent in [0u8, 2, 3] {
            for minor in [0i128, 1, -1, 5, -5, 10, 999, 1000, 123_456_789, -98_765, i128::from(u64::MAX) * 3] {
                let written = amount_string(minor, exponent);
                let currency_form = match exponent {
                    0 => junction_ledger::Currency::from_code("JPY"),
                    2 => junction_ledger::Currency::from_code("USD"),
                    _ => junction_ledger::Currency::from_code("KWD"),
                }
                .expect("known currency")
                .format_minor(minor);
                assert_eq!(written, currency_form, "{minor} e{exponent}");
                assert_eq!(parse_amount(&written, exponent), Some(minor), "{written}");
                if let Ok(small) = u64::try_from(minor) {
                    assert_eq!(text(|o| push_amount_u64(o, small, exponent)), written);
                }
            }
        }
        assert_eq!(parse_amount("12.3", 2), None);
        assert_eq!(parse_amount("12", 2), None);
        assert_eq!(parse_amount("12.", 0), None);
        assert_eq!(parse_amount("1 2.00", 2), None);
        assert_eq!(parse_amount("+12.00", 2), None);
        assert_eq!(parse_amount("-", 0), None);
        assert_eq!(amount_digits(5, 2), 3);
        assert_eq!(amount_digits(123_456, 2), 6);
    }

    #[test]
    fn timestamps_are_utc_with_nanoseconds() {
        assert_eq!(timestamp_string(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(timestamp_string(1_700_000_000_123_456_789), "2023-11-14T22:13:20.123456789Z");
        // A leap day and the last nanosecond of a year.
        assert_eq!(timestamp_string(951_782_400_000_000_001), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(timestamp_string(1_735_689_599_999_999_999), "2024-12-31T23:59:59.999999999Z");
        assert_eq!(xml_datetime(1_700_000_000_999_999_999), "2023-11-14T22:13:20+00:00");
        assert_eq!(date_string(1_700_000_000_000_000_000), "2023-11-14");
    }

    #[test]
    fn identifiers_follow_the_iso_patterns() {
        assert!(is_bic("JUNCCNSH") && is_bic("JUNCCNSHXXX") && is_bic("B1NKTHBK"));
        assert!(!is_bic("juncCNSH") && !is_bic("JUNC1NSH") && !is_bic("JUNCCNSHXX") && !is_bic(""));
        assert!(is_iban("GB82WEST12345698765432") && !is_iban("GB8") && !is_iban("gb82WEST1234"));
        assert_eq!(xml_text(" A&B <x> ", 140, "fallback"), "A&amp;B &lt;x&gt;");
        assert_eq!(xml_text("   ", 140, "fallback"), "fallback");
        assert_eq!(xml_text("héllo", 2, "f"), "hé");
        assert_eq!(text(|o| push_csv_field(o, "a,\"b\"")), "\"a,\"\"b\"\"\"");
    }
}
