//! Decimal amounts as EMV QRCPS writes them (IDs 54, 56, 57): digits with at most one '.',
//! no sign, no exponent. Converted to integer minor units without floats.

use super::error::{FieldPath, QrError};

/// Checks the format of a decimal amount; the reason is for [`QrError::BadValue`].
pub(crate) fn check_decimal(value: &str) -> Result<(), &'static str> {
    let mut points: u32 = 0;
    let mut digits: u32 = 0;
    for byte in value.bytes() {
        match byte {
            b'0'..=b'9' => digits += 1,
            b'.' => points += 1,
            _ => return Err("is not a decimal amount: only digits and one '.' are allowed"),
        }
    }
    if points > 1 {
        return Err("is not a decimal amount: more than one '.'");
    }
    if digits == 0 {
        return Err("is not a decimal amount: no digits");
    }
    Ok(())
}

/// `decimal` (already checked by [`check_decimal`]) in minor units of a currency whose ISO 4217
/// exponent is `exponent`: "23.72" with exponent 2 is 2372, "100" with exponent 0 is 100.
/// Decimal places beyond the exponent must be zeros ("10.500" is 1050 at exponent 2, "10.505"
/// is an error): we never round money.
pub(crate) fn to_minor_units(at: FieldPath, decimal: &str, exponent: u8) -> Result<u64, QrError> {
    let bad = |reason| QrError::BadValue { at, value: decimal.to_owned(), reason };
    check_decimal(decimal).map_err(bad)?;
    let (whole, fraction) = decimal.split_once('.').unwrap_or((decimal, ""));
    let exponent = usize::from(exponent);
    let (kept, dropped) = fraction.split_at(fraction.len().min(exponent));
    if dropped.bytes().any(|digit| digit != b'0') {
        return Err(bad("has more decimal places than the currency's exponent"));
    }
    let overflow = || bad("does not fit in 64-bit minor units");
    let mut units: u64 = 0;
    for digit in whole.bytes().chain(kept.bytes()) {
        units =
            units.checked_mul(10).and_then(|units| units.checked_add(u64::from(digit - b'0'))).ok_or_else(overflow)?;
    }
    for _ in kept.len()..exponent {
        units = units.checked_mul(10).ok_or_else(overflow)?;
    }
    Ok(units)
}
