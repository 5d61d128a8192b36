//! FX for the QR gateway: the rate table of the FX provider participants, and the one
//! place where money changes currency.
//!
//! # Rates
//! A rate is quoted as the market quotes it: `base`/`quote` = `mid` means one unit of `base`
//! buys `mid` units of `quote` (USD/THB = 36.50). One entry serves both directions. The
//! FX provider adds `spread_bps` (basis points, 1/100 of a percent) in its own favour.
//! Rates come from the configuration (`[[fx_rates]]`) and are replaced at runtime through
//! `POST /v1/admin/fx/rates`; a quote copies the rate it used, so it keeps its rate until it
//! expires whatever happens to the table.
//!
//! # Rounding rule (README-ready)
//! Amounts are integers in minor units of their currency (ISO 4217 exponent: JPY 0, USD 2,
//! KWD 3); rates are `rust_decimal` decimals; nothing is ever a float.
//!
//! - **Payment**: the payer is charged the payee amount converted at the all-in rate
//!   `rate × (1 + spread_bps / 10 000)` (payer units per payee unit), **rounded up** to
//!   the payer currency's minor unit, so the FX provider never loses a fraction:
//!   `payer_minor = ceil(payee_minor × 10^e_payer × all_in / 10^e_payee)`.
//! - **Refund**: the payer is credited at the payment's effective rate
//!   (`payer_minor / payee_minor` of the payment), cumulatively and **rounded down**:
//!   after refunds totalling `R` of the payee amount `Q`, the payer has received
//!   `floor(P × R / Q)` of the `P` it paid. A full refund returns exactly `P`; partial
//!   refunds never return more than their share.
//! - The percentage convenience fee of a QR (ID 57) is `amount × percentage / 100` in the
//!   payee currency, rounded half up to its minor unit (the fee is the merchant's, not the
//!   FX provider's, so neither side is favoured).
//!
//! The arithmetic is exact: a `Decimal` is `mantissa / 10^scale`, so every formula above is
//! a ratio of integers, evaluated in `u128` with one final division that rounds as stated.
//! (Dividing `Decimal`s would round silently at 28 digits, and a rounded-down quotient
//! rounded up could charge one minor unit too little.) Validation bounds the mantissa and
//! scale of rates so that no product can overflow for any amount the engine accepts.

use junction_ledger::{Currency, ParticipantId};
use parking_lot::RwLock;
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::str::FromStr;

/// Most significant digits of a rate (its mantissa is below 10^this). With
/// `RATE_SCALE_MAX`, keeps every product of the conversion within `u128`.
pub const RATE_DIGITS_MAX: u32 = 15;
/// Most decimal places of a rate.
pub const RATE_SCALE_MAX: u32 = 15;
/// Largest spread, in basis points (100%).
pub const SPREAD_BPS_MAX: u32 = 10_000;
/// Currency pairs the table holds (about 100 bytes each). Bounds the admin endpoint.
pub const RATE_PAIRS_MAX: usize = 4096;
/// Largest ISO 4217 exponent in the currency table (KWD, BHD: 3).
const EXPONENT_MAX: u32 = 3;
/// Largest amount converted: the engine's per-request maximum.
const AMOUNT_MAX: u64 = junction_engine::AMOUNT_PER_REQUEST_MAX;

// Worst products: amount (< 2^40) × mantissa (< 10^15 < 2^50) × (10^4 + spread) (< 2^15)
// × 10^3 (< 2^10) in one direction, amount × (10^4 + spread) × 10^scale × 10^3 in the other.
const _: () = assert!(AMOUNT_MAX < 1 << 40);
const _: () = assert!(RATE_DIGITS_MAX <= 15 && RATE_SCALE_MAX <= 15 && SPREAD_BPS_MAX <= 20_000);
const _: () = assert!(EXPONENT_MAX <= 3);

const BPS_ONE: u128 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FxError {
    #[error("no FX rate between {0} and {1}")]
    NoRate(Currency, Currency),
    #[error("the amount is too large to convert")]
    Overflow,
}

/// One currency pair from one FX provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FxRate {
    #[serde(serialize_with = "serialize_participant")]
    pub provider: ParticipantId,
    #[serde(serialize_with = "serialize_currency")]
    pub base: Currency,
    #[serde(serialize_with = "serialize_currency")]
    pub quote: Currency,
    /// Units of `quote` per unit of `base`, before the spread.
    #[serde(serialize_with = "serialize_decimal")]
    pub mid: Decimal,
    pub spread_bps: u32,
}

fn serialize_participant<S: serde::Serializer>(id: &ParticipantId, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(id.0)
}

fn serialize_decimal<S: serde::Serializer>(decimal: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(decimal)
}

fn serialize_currency<S: serde::Serializer>(currency: &Currency, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(currency.code())
}

/// Parses and bounds a rate written as a decimal string ("36.50").
pub fn parse_rate(text: &str) -> Result<Decimal, String> {
    let rate = Decimal::from_str(text).map_err(|_| format!("rate {text:?} is not a decimal number"))?;
    let rate = rate.normalize();
    if rate <= Decimal::ZERO {
        return Err(format!("rate {text:?} must be positive"));
    }
    if rate.scale() > RATE_SCALE_MAX || rate.mantissa() >= 10i128.pow(RATE_DIGITS_MAX) {
        return Err(format!(
            "rate {text:?} has more than {RATE_DIGITS_MAX} significant digits or {RATE_SCALE_MAX} decimal places"
        ));
    }
    Ok(rate)
}

impl FxRate {
    /// Checks a rate's bounds (what `parse_rate` and the config validation enforce).
    pub fn check(&self) -> Result<(), String> {
        if self.base == self.quote {
            return Err(format!("{}/{}: a rate needs two different currencies", self.base, self.quote));
        }
        if self.spread_bps > SPREAD_BPS_MAX {
            return Err(format!("{}/{}: spread_bps must be at most {SPREAD_BPS_MAX}", self.base, self.quote));
        }
        parse_rate(&self.mid.to_string()).map(|_| ())
    }

    /// The rate's mantissa and scale: `mid = mantissa / 10^scale`.
    fn parts(&self) -> (u128, u32) {
        let mid = self.mid.normalize();
        (mid.mantissa().unsigned_abs(), mid.scale())
    }

    /// What the payer is charged, in minor units of `payer`, for `payee_minor` of `payee`:
    /// converted at `mid × (1 + spread)` (payer per payee) and rounded up.
    pub fn payer_amount(&self, payee_minor: u64, payee: Currency, payer: Currency) -> Result<u64, FxError> {
        if payee_minor > AMOUNT_MAX {
            return Err(FxError::Overflow);
        }
        let (mantissa, scale) = self.parts();
        let with_spread = BPS_ONE + u128::from(self.spread_bps);
        let payee_exp = pow10(u32::from(payee.exponent()));
        let payer_exp = pow10(u32::from(payer.exponent()));
        let amount = u128::from(payee_minor);
        let (numerator, denominator) = if self.base == payee && self.quote == payer {
            // mid is payer per payee: payer = amount × mid × (1 + s).
            (
                checked_product(&[amount, mantissa, with_spread, payer_exp])?,
                checked_product(&[pow10(scale), BPS_ONE, payee_exp])?,
            )
        } else if self.base == payer && self.quote == payee {
            // mid is payee per payer: payer = amount / mid × (1 + s).
            (
                checked_product(&[amount, pow10(scale), with_spread, payer_exp])?,
                checked_product(&[mantissa, BPS_ONE, payee_exp])?,
            )
        } else {
            return Err(FxError::NoRate(payer, payee));
        };
        let charged = numerator.div_ceil(denominator);
        u64::try_from(charged).ok().filter(|amount| *amount <= AMOUNT_MAX).ok_or(FxError::Overflow)
    }

    /// What the payee receives, in minor units of `payee`, for `payer_minor` of `payer`
    /// (the payer fixed what it sends): the inverse of `payer_amount`, **rounded down**,
    /// so the FX provider never loses a fraction here either.
    pub fn payee_amount(&self, payer_minor: u64, payer: Currency, payee: Currency) -> Result<u64, FxError> {
        if payer_minor > AMOUNT_MAX {
            return Err(FxError::Overflow);
        }
        let (mantissa, scale) = self.parts();
        let with_spread = BPS_ONE + u128::from(self.spread_bps);
        let payee_exp = pow10(u32::from(payee.exponent()));
        let payer_exp = pow10(u32::from(payer.exponent()));
        let amount = u128::from(payer_minor);
        let (numerator, denominator) = if self.base == payee && self.quote == payer {
            // payee = amount / (mid × (1 + s)).
            (
                checked_product(&[amount, pow10(scale), BPS_ONE, payee_exp])?,
                checked_product(&[mantissa, with_spread, payer_exp])?,
            )
        } else if self.base == payer && self.quote == payee {
            // payee = amount × mid / (1 + s).
            (
                checked_product(&[amount, mantissa, BPS_ONE, payee_exp])?,
                checked_product(&[pow10(scale), with_spread, payer_exp])?,
            )
        } else {
            return Err(FxError::NoRate(payer, payee));
        };
        u64::try_from(numerator / denominator).ok().filter(|amount| *amount <= AMOUNT_MAX).ok_or(FxError::Overflow)
    }

    /// The all-in rate as ISO 20022's `XchgRate` states it: units of the payee's currency
    /// per unit of the payer's (what the payee gets = what the payer sends × this), for
    /// display only (rounded to 10 decimal places; the amounts are computed exactly).
    pub fn payee_per_payer(&self, payer: Currency) -> Decimal {
        let spread = Decimal::from(BPS_ONE as u64 + u64::from(self.spread_bps)) / Decimal::from(BPS_ONE as u64);
        let per_payer = if self.base == payer { self.mid / spread } else { Decimal::ONE / (self.mid * spread) };
        per_payer.round_dp(10).normalize()
    }

    /// The all-in rate the payer gets, payer units per payee unit, for display only
    /// (rounded to 10 decimal places; the amounts are computed exactly).
    pub fn customer_rate(&self, payer: Currency) -> Decimal {
        let spread = Decimal::from(BPS_ONE as u64 + u64::from(self.spread_bps)) / Decimal::from(BPS_ONE as u64);
        let per_payee = if self.quote == payer { self.mid * spread } else { spread / self.mid };
        per_payee.round_dp(10).normalize()
    }
}

fn pow10(exponent: u32) -> u128 {
    10u128.pow(exponent)
}

fn checked_product(factors: &[u128]) -> Result<u128, FxError> {
    factors.iter().try_fold(1u128, |product, factor| product.checked_mul(*factor)).ok_or(FxError::Overflow)
}

/// What a refund credits the payer, in minor units of the payer currency: the payment's
/// effective rate applied cumulatively, rounded down (see the module docs).
///
/// `payer_paid` and `payee_total` are the payment's amounts; `refunded_before` (payee
/// currency) and `credited_before` (payer currency) what earlier refunds moved; `refund`
/// this refund in the payee currency. The caller guarantees `refunded_before + refund <=
/// payee_total`.
pub fn refund_credit(
    payer_paid: u64,
    payee_total: u64,
    refunded_before: u64,
    credited_before: u64,
    refund: u64,
) -> u64 {
    if payee_total == 0 {
        return 0;
    }
    let refunded_after = u128::from(refunded_before.saturating_add(refund).min(payee_total));
    // payer_paid and refunded_after are below 2^64: the product fits in u128.
    let owed_after = u128::from(payer_paid) * refunded_after / u128::from(payee_total);
    u64::try_from(owed_after).unwrap_or(payer_paid).saturating_sub(credited_before)
}

/// `amount_minor × percentage / 100`, rounded half up, where `percentage` is ID 57 as
/// written ("3.00"; at most 99.99).
pub fn percentage_fee(amount_minor: u64, percentage: &str) -> Option<u64> {
    let percentage = Decimal::from_str(percentage).ok()?.normalize();
    if percentage.is_sign_negative() || percentage.scale() > 4 {
        return None;
    }
    let numerator = u128::from(amount_minor).checked_mul(percentage.mantissa().unsigned_abs())?;
    let denominator = 100 * pow10(percentage.scale());
    let fee = (numerator + denominator / 2) / denominator;
    u64::try_from(fee).ok()
}

/// Parses a decimal amount as a wallet writes it ("12.50"; digits and at most one '.') into
/// minor units of a currency. Decimals beyond the currency's exponent must be zeros: money
/// is never rounded on the way in.
pub fn parse_minor_units(text: &str, currency: Currency) -> Result<u64, &'static str> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits_only = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) || (text.contains('.') && fraction.is_empty())
    {
        return Err("is not a decimal amount (digits with at most one '.', e.g. \"12.50\")");
    }
    let exponent = usize::from(currency.exponent());
    let (kept, dropped) = fraction.split_at(fraction.len().min(exponent));
    if dropped.bytes().any(|b| b != b'0') {
        return Err("has more decimal places than the currency has");
    }
    let mut units: u64 = 0;
    for digit in whole.bytes().chain(kept.bytes()).chain(std::iter::repeat_n(b'0', exponent - kept.len())) {
        units =
            units.checked_mul(10).and_then(|units| units.checked_add(u64::from(digit - b'0'))).ok_or("is too large")?;
    }
    Ok(units)
}

/// The rate table, read by every quote and replaced by the admin API.
#[derive(Debug, Default)]
pub struct FxTable {
    /// Keyed by (base, quote); a pair is held in one direction only.
    rates: RwLock<FxHashMap<(Currency, Currency), FxRate>>,
}

impl FxTable {
    pub fn new(rates: &[FxRate]) -> Result<FxTable, String> {
        let table = FxTable::default();
        table.upsert(rates)?;
        Ok(table)
    }

    /// The rate for paying `payee` currency with `payer` currency, in either direction.
    pub fn lookup(&self, payer: Currency, payee: Currency) -> Result<FxRate, FxError> {
        let rates = self.rates.read();
        rates.get(&(payer, payee)).or_else(|| rates.get(&(payee, payer))).copied().ok_or(FxError::NoRate(payer, payee))
    }

    /// Adds or replaces rates, all or none. A rate for B/A replaces one held as A/B.
    pub fn upsert(&self, new_rates: &[FxRate]) -> Result<(), String> {
        for rate in new_rates {
            rate.check()?;
        }
        let mut rates = self.rates.write();
        let added = new_rates
            .iter()
            .filter(|r| !rates.contains_key(&(r.base, r.quote)) && !rates.contains_key(&(r.quote, r.base)))
            .count();
        if rates.len() + added > RATE_PAIRS_MAX {
            return Err(format!("the rate table holds at most {RATE_PAIRS_MAX} pairs"));
        }
        for rate in new_rates {
            rates.remove(&(rate.quote, rate.base));
            rates.insert((rate.base, rate.quote), *rate);
        }
        Ok(())
    }

    /// Every rate, ordered by pair.
    pub fn all(&self) -> Vec<FxRate> {
        let mut all: Vec<FxRate> = self.rates.read().values().copied().collect();
        all.sort_by(|a, b| (a.base.code(), a.quote.code()).cmp(&(b.base.code(), b.quote.code())));
        all
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn currency(code: &str) -> Currency {
        Currency::from_code(code).unwrap()
    }

    fn rate(base: &str, quote: &str, mid: &str, spread_bps: u32) -> FxRate {
        FxRate {
            provider: ParticipantId(6),
            base: currency(base),
            quote: currency(quote),
            mid: parse_rate(mid).unwrap(),
            spread_bps,
        }
    }

    #[test]
    fn received_amounts_round_down_for_the_provider() {
        let (cny, hkd, usd, jpy) = (currency("CNY"), currency("HKD"), currency("USD"), currency("JPY"));
        // CNY/HKD = 1.0850: 100.00 CNY sent buys 108.50 HKD exactly.
        let cny_hkd = rate("CNY", "HKD", "1.0850", 0);
        assert_eq!(cny_hkd.payee_amount(10_000, cny, hkd).unwrap(), 10_850);
        // The other direction: 108.50 HKD sent buys 100.00 CNY; 1.00 HKD buys 0.9216... CNY,
        // rounded down to 0.92.
        assert_eq!(cny_hkd.payee_amount(10_850, hkd, cny).unwrap(), 10_000);
        assert_eq!(cny_hkd.payee_amount(100, hkd, cny).unwrap(), 92);
        // With a 1% spread: 101.00 CNY buys 108.50 HKD.
        let spread = rate("CNY", "HKD", "1.0850", 100);
        assert_eq!(spread.payee_amount(10_100, cny, hkd).unwrap(), 10_850);
        // Never more than what payer_amount would charge for it.
        let usd_jpy = rate("USD", "JPY", "150.25", 50);
        for sent in [1, 99, 12_345, 1_000_000] {
            let received = usd_jpy.payee_amount(sent, usd, jpy).unwrap();
            assert!(usd_jpy.payer_amount(received, jpy, usd).unwrap() <= sent);
            assert!(usd_jpy.payer_amount(received + 1, jpy, usd).unwrap() > sent);
        }
        assert!(matches!(cny_hkd.payee_amount(1, usd, hkd), Err(FxError::NoRate(..))));
    }

    #[test]
    fn payment_amounts_round_up_for_the_provider() {
        let (usd, thb, jpy, kwd) = (currency("USD"), currency("THB"), currency("JPY"), currency("KWD"));
        let usd_thb = rate("USD", "THB", "36.50", 0);
        // 365.00 THB at 36.50 THB/USD = 10.00 USD exactly.
        assert_eq!(usd_thb.payer_amount(36_500, thb, usd).unwrap(), 1_000);
        // 100.00 THB = 2.7397... USD: rounded up to 2.74.
        assert_eq!(usd_thb.payer_amount(10_000, thb, usd).unwrap(), 274);
        // With a 1% spread: 365.00 THB = 10.10 USD exactly.
        let spread = rate("USD", "THB", "36.50", 100);
        assert_eq!(spread.payer_amount(36_500, thb, usd).unwrap(), 1_010);
        // The other direction of the same pair: a THB payer for a USD merchant.
        assert_eq!(spread.payer_amount(1_000, usd, thb).unwrap(), 36_865);
        // JPY has no minor unit: 1000 JPY at 150 JPY/USD = 6.666.. USD -> 6.67.
        let usd_jpy = rate("USD", "JPY", "150", 0);
        assert_eq!(usd_jpy.payer_amount(1_000, jpy, usd).unwrap(), 667);
        // And a USD merchant paid in JPY: 0.01 USD = 1.5 JPY -> 2 JPY.
        assert_eq!(usd_jpy.payer_amount(1, usd, jpy).unwrap(), 2);
        // KWD has 3 decimals: 1.000 KWD at 3.25 USD/KWD = 3.25 USD.
        let kwd_usd = rate("KWD", "USD", "3.25", 0);
        assert_eq!(kwd_usd.payer_amount(1_000, kwd, usd).unwrap(), 325);
        // 1.00 USD = 0.307692.. KWD -> 0.308.
        assert_eq!(kwd_usd.payer_amount(100, usd, kwd).unwrap(), 308);
        assert_eq!(usd_thb.payer_amount(1, jpy, usd), Err(FxError::NoRate(usd, jpy)));
    }

    #[test]
    fn exact_where_decimal_division_would_round() {
        // 1/3 has no finite decimal: the charge must still be the exact ceiling.
        let (usd, sgd) = (currency("USD"), currency("SGD"));
        let third = rate("USD", "SGD", "3", 0);
        assert_eq!(third.payer_amount(300, sgd, usd).unwrap(), 100);
        assert_eq!(third.payer_amount(301, sgd, usd).unwrap(), 101);
        assert_eq!(third.payer_amount(1, sgd, usd).unwrap(), 1);
    }

    #[test]
    fn largest_amounts_and_rates_do_not_overflow() {
        let (usd, kwd) = (currency("USD"), currency("KWD"));
        let huge = rate("KWD", "USD", "99999999.9999999", 10_000);
        let tiny = rate("KWD", "USD", "0.000000000000001", 10_000);
        for r in [huge, tiny] {
            for (payee, payer) in [(usd, kwd), (kwd, usd)] {
                match r.payer_amount(AMOUNT_MAX, payee, payer) {
                    Ok(amount) => assert!(amount > 0),
                    Err(e) => assert_eq!(e, FxError::Overflow),
                }
            }
        }
        assert_eq!(huge.payer_amount(AMOUNT_MAX + 1, usd, kwd), Err(FxError::Overflow));
    }

    #[test]
    fn refunds_are_cumulative_and_never_exceed_the_payment() {
        // Paid 2.74 USD for 100.00 THB; refund in three parts.
        let mut credited = 0;
        let mut refunded = 0;
        for part in [3_333u64, 3_333, 3_334] {
            let credit = refund_credit(274, 10_000, refunded, credited, part);
            refunded += part;
            credited += credit;
            assert!(u128::from(credited) * 10_000 <= 274 * u128::from(refunded));
        }
        assert_eq!(credited, 274);
        assert_eq!(refund_credit(274, 10_000, 0, 0, 10_000), 274);
        assert_eq!(refund_credit(274, 10_000, 0, 0, 1), 0);
    }

    #[test]
    fn fees_and_amounts() {
        assert_eq!(percentage_fee(10_000, "3.00"), Some(300));
        assert_eq!(percentage_fee(1_050, "3"), Some(32)); // 31.5 -> 32
        assert_eq!(percentage_fee(1_049, "3"), Some(31)); // 31.47 -> 31
        assert_eq!(percentage_fee(1_000, "99.99"), Some(1_000)); // 999.9 -> 1000
        let (usd, jpy, kwd) = (currency("USD"), currency("JPY"), currency("KWD"));
        assert_eq!(parse_minor_units("12.50", usd), Ok(1_250));
        assert_eq!(parse_minor_units("12", usd), Ok(1_200));
        assert_eq!(parse_minor_units("12.500", usd), Ok(1_250));
        assert_eq!(parse_minor_units("1000", jpy), Ok(1_000));
        assert_eq!(parse_minor_units("1.5", kwd), Ok(1_500));
        assert!(parse_minor_units("12.505", usd).is_err());
        assert!(parse_minor_units("1.5", jpy).is_err());
        for bad in ["", ".5", "5.", "-1", "1e3", "1.2.3", " 1", "99999999999999999999"] {
            assert!(parse_minor_units(bad, usd).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn table_replaces_either_direction() {
        let table = FxTable::new(&[rate("USD", "THB", "36.50", 50)]).unwrap();
        let (usd, thb) = (currency("USD"), currency("THB"));
        assert_eq!(table.lookup(usd, thb).unwrap().mid, parse_rate("36.5").unwrap());
        assert_eq!(table.lookup(thb, usd).unwrap().mid, parse_rate("36.5").unwrap());
        table.upsert(&[rate("THB", "USD", "0.0275", 10)]).unwrap();
        assert_eq!(table.all().len(), 1);
        assert_eq!(table.lookup(usd, thb).unwrap().base, thb);
        assert!(table.upsert(&[rate("USD", "USD", "1", 0)]).is_err());
        assert!(table.upsert(&[rate("USD", "THB", "1", SPREAD_BPS_MAX + 1)]).is_err());
        assert!(parse_rate("0").is_err() && parse_rate("-1").is_err() && parse_rate("abc").is_err());
        assert!(parse_rate("1.0000000000000001").is_err());
        assert_eq!(rate("USD", "THB", "36.50", 100).customer_rate(usd).to_string(), "0.0276712329");
        assert_eq!(rate("THB", "USD", "0.0274", 100).customer_rate(usd).to_string(), "0.027674");
    }
}
