//! ISO 4217 currencies: alpha code, numeric code and minor-unit exponent.
//!
//! Money in Junction is always an integer count of minor units; the exponent says how
//! many of those make one major unit (JPY 0, USD 2, KWD 3). `rust_decimal` is used only
//! to display amounts, never to hold them.

use rkyv::{Archive, Deserialize, Serialize};
use rust_decimal::Decimal;
use std::fmt;

/// A currency known to the switch. Constructed only from the ISO 4217 table below, so an
/// exponent can never disagree with its code.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct Currency {
    code: [u8; 3],
    numeric: u16,
    exponent: u8,
}

/// The numeric code alone names a currency (the table pairs each with one alpha code and
/// exponent), and one word hashes faster than the five a derived hash would feed: currency
/// is part of the key of every position and cap looked up on the hot path.
impl std::hash::Hash for Currency {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u16(self.numeric);
    }
}

/// (alpha, numeric, exponent) for the currencies the switch accepts.
const ISO_4217: &[(&str, u16, u8)] = &[
    ("AED", 784, 2),
    ("AUD", 36, 2),
    ("BHD", 48, 3),
    ("BRL", 986, 2),
    ("CAD", 124, 2),
    ("CHF", 756, 2),
    ("CLP", 152, 0),
    ("CNY", 156, 2),
    ("CZK", 203, 2),
    ("DKK", 208, 2),
    ("EUR", 978, 2),
    ("GBP", 826, 2),
    ("HKD", 344, 2),
    ("HUF", 348, 2),
    ("IDR", 360, 2),
    ("ILS", 376, 2),
    ("INR", 356, 2),
    ("IQD", 368, 3),
    ("ISK", 352, 0),
    ("JOD", 400, 3),
    ("JPY", 392, 0),
    ("KHR", 116, 2),
    ("KRW", 410, 0),
    ("KWD", 414, 3),
    ("LAK", 418, 2),
    ("LKR", 144, 2),
    ("LYD", 434, 3),
    ("MMK", 104, 2),
    ("MNT", 496, 2),
    ("MOP", 446, 2),
    ("MXN", 484, 2),
    ("MYR", 458, 2),
    ("NOK", 578, 2),
    ("NPR", 524, 2),
    ("NZD", 554, 2),
    ("OMR", 512, 3),
    ("PHP", 608, 2),
    ("PKR", 586, 2),
    ("PLN", 985, 2),
    ("QAR", 634, 2),
    ("RUB", 643, 2),
    ("SAR", 682, 2),
    ("SEK", 752, 2),
    ("SGD", 702, 2),
    ("THB", 764, 2),
    ("TND", 788, 3),
    ("TRY", 949, 2),
    ("TWD", 901, 2),
    ("UAH", 980, 2),
    ("USD", 840, 2),
    ("UZS", 860, 2),
    ("VND", 704, 0),
    ("ZAR", 710, 2),
];

/// A currency code that is not in the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown ISO 4217 currency {0:?}")]
pub struct UnknownCurrency(pub String);

impl Currency {
    /// Looks up an alpha code such as `"USD"` (case-sensitive, as ISO 4217 writes them).
    pub fn from_code(code: &str) -> Result<Currency, UnknownCurrency> {
        ISO_4217
            .iter()
            .find(|(alpha, _, _)| *alpha == code)
            .map(|&(alpha, numeric, exponent)| Currency::from_row(alpha, numeric, exponent))
            .ok_or_else(|| UnknownCurrency(code.to_string()))
    }

    /// Looks up a numeric code such as `840` (ISO 8583 field 49, EMV QR ID 53).
    pub fn from_numeric(numeric: u16) -> Result<Currency, UnknownCurrency> {
        ISO_4217
            .iter()
            .find(|(_, n, _)| *n == numeric)
            .map(|&(alpha, numeric, exponent)| Currency::from_row(alpha, numeric, exponent))
            .ok_or_else(|| UnknownCurrency(format!("{numeric:03}")))
    }

    fn from_row(alpha: &str, numeric: u16, exponent: u8) -> Currency {
        let bytes = alpha.as_bytes();
        Currency { code: [bytes[0], bytes[1], bytes[2]], numeric, exponent }
    }

    pub fn code(&self) -> &str {
        // The table holds ASCII only, so this cannot fail; fall back rather than panic.
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    pub fn numeric(&self) -> u16 {
        self.numeric
    }

    /// Minor units per major unit, as a power of ten.
    pub fn exponent(&self) -> u8 {
        self.exponent
    }

    /// An amount in minor units as a decimal in major units (display and files only).
    pub fn to_decimal(&self, minor_units: i128) -> Decimal {
        // i128 minor units of real money fit Decimal's 96-bit mantissa by a wide margin;
        // saturate instead of panicking if a corrupt figure ever reaches display.
        let mantissa = minor_units.clamp(-(1i128 << 95), 1i128 << 95);
        Decimal::from_i128_with_scale(mantissa, u32::from(self.exponent))
    }

    /// Formats minor units with the currency's exponent, e.g. `1234` USD -> `"12.34"`.
    pub fn format_minor(&self, minor_units: i128) -> String {
        let decimal = self.to_decimal(minor_units);
        format!("{:.*}", usize::from(self.exponent), decimal)
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::str::FromStr for Currency {
    type Err = UnknownCurrency;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::from_code(s)
    }
}

impl ArchivedCurrency {
    pub fn to_currency(&self) -> Currency {
        Currency { code: self.code, numeric: self.numeric.to_native(), exponent: self.exponent }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponents_follow_iso_4217() {
        assert_eq!(Currency::from_code("JPY").map(|c| c.exponent()), Ok(0));
        assert_eq!(Currency::from_code("USD").map(|c| c.exponent()), Ok(2));
        assert_eq!(Currency::from_code("KWD").map(|c| c.exponent()), Ok(3));
        assert_eq!(Currency::from_numeric(764).map(|c| c.code().to_string()), Ok("THB".into()));
        assert!(Currency::from_code("XXX").is_err());
        assert!(Currency::from_code("usd").is_err());
    }

    #[test]
    fn formats_minor_units_without_floats() {
        let usd = Currency::from_code("USD").expect("USD");
        let jpy = Currency::from_code("JPY").expect("JPY");
        let kwd = Currency::from_code("KWD").expect("KWD");
        assert_eq!(usd.format_minor(1234), "12.34");
        assert_eq!(usd.format_minor(-5), "-0.05");
        assert_eq!(jpy.format_minor(1234), "1234");
        assert_eq!(kwd.format_minor(1), "0.001");
    }

    #[test]
    fn table_has_no_duplicates() {
        for (i, a) in ISO_4217.iter().enumerate() {
            for b in &ISO_4217[i + 1..] {
                assert_ne!(a.0, b.0);
                assert_ne!(a.1, b.1);
            }
        }
    }
}
