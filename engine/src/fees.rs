//! Interchange and fees: the schedule, what each approved payment owes under it, and the
//! one rounding rule.
//!
//! - **Interchange** is paid by the acquirer to the card's issuer on purchases and
//!   completions (a percentage of the amount plus a fixed amount), by merchant category
//!   and by whether the payment is domestic (acquirer and issuer in one country, as their
//!   BICs say) or cross-border; the first matching rule applies, none: no interchange.
//!   A refund pays it back (issuer to acquirer), as card schemes do.
//! - **The switch's fees**, paid to the switch's own participant: on card payments by the
//!   acquirer and by the issuer; on QR payments by the merchant's acquirer and by the
//!   wallet. Refunds pay them again (they are processing fees); reversals give back what
//!   the reversed payment paid.
//! - The FX markup stays in the FX provider's rate (`junctiond/src/fx.rs`).
//!
//! A payment's fees are booked as ledger charges of its command (`junction_ledger::Charge`):
//! only if it commits, in the same journal entry, netted per entry into one transfer per
//! payer, payee and kind.
//!
//! **Rounding, in one place:** `Rate::of`: the percentage of the amount in minor units,
//! rounded half up to a whole minor unit (x.5 goes up), then the fixed amount added. Every
//! fee in the switch is computed by it, and the clearing files show its results, so the
//! fees of a window add up exactly.

use crate::books::{participant_account, TRANSFER_CODE_INTERCHANGE, TRANSFER_CODE_SWITCH_FEE};
use junction_ledger::{Charge, Currency, ParticipantId};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::str::FromStr;

/// Most decimals of a percentage (`0.0001` % is a hundredth of a basis point).
pub const PERCENT_DECIMALS_MAX: u32 = 4;

/// Most interchange rules in a schedule.
pub const INTERCHANGE_RULES_MAX: usize = 1024;

/// Most charges one payment books (interchange and a fee on each side).
pub const CHARGES_PER_PAYMENT_MAX: usize = 3;

/// A percentage of the amount plus a fixed amount (minor units of the payment's currency).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rate {
    pub percent: Decimal,
    pub fixed_minor: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fee rate {0:?}: {1}")]
pub struct RateError(pub String, pub &'static str);

impl Rate {
    pub const ZERO: Rate = Rate { percent: Decimal::ZERO, fixed_minor: 0 };

    /// `percent` as written ("0.80" for 0.8 %): at most `PERCENT_DECIMALS_MAX` decimals,
    /// 0 to 100.
    pub fn parse(percent: &str, fixed_minor: u64) -> Result<Rate, RateError> {
        let bad = |why| RateError(percent.to_string(), why);
        let value = Decimal::from_str(percent.trim()).map_err(|_| bad("not a decimal number"))?.normalize();
        if value.is_sign_negative() || value > Decimal::ONE_HUNDRED {
            return Err(bad("a percentage must be 0 to 100"));
        }
        if value.scale() > PERCENT_DECIMALS_MAX {
            return Err(bad("at most 4 decimals"));
        }
        Ok(Rate { percent: value, fixed_minor })
    }

    /// The fee on `amount_minor`: `percent` % of it, rounded half up to a whole minor
    /// unit, plus `fixed_minor`. Exact integer arithmetic (the percentage's mantissa and
    /// scale); saturates at `u64::MAX`, far beyond any amount the engine accepts.
    pub fn of(&self, amount_minor: u64) -> u64 {
        let mantissa = self.percent.mantissa().unsigned_abs();
        let denominator = 100u128 * 10u128.pow(self.percent.scale());
        // amount < 2^64 and mantissa <= 100 * 10^4: the product fits in u128.
        let numerator = u128::from(amount_minor) * mantissa;
        let share = (numerator + denominator / 2) / denominator;
        u64::try_from(share).unwrap_or(u64::MAX).saturating_add(self.fixed_minor)
    }

    pub fn is_zero(&self) -> bool {
        self.percent.is_zero() && self.fixed_minor == 0
    }
}

/// Where an interchange rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    #[default]
    Any,
    Domestic,
    CrossBorder,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterchangeRule {
    /// The merchant category code (ISO 18245, four digits); `None`: any.
    pub mcc: Option<String>,
    pub scope: Scope,
    pub rate: Rate,
}

/// The whole schedule, swapped at once when changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FeeSchedule {
    /// The participant that receives the switch's fees; `None`: the switch charges none.
    pub switch_participant: Option<ParticipantId>,
    /// First match wins.
    pub interchange: Vec<InterchangeRule>,
    /// Card payments: what the acquirer and the issuer each pay the switch.
    pub acquirer_fee: Rate,
    pub issuer_fee: Rate,
    /// QR payments: what the merchant's acquirer and the wallet each pay the switch.
    pub qr_acquirer_fee: Rate,
    pub wallet_fee: Rate,
    /// Each participant's country (ISO 3166 alpha-2, from its BIC): domestic or not.
    pub countries: BTreeMap<ParticipantId, [u8; 2]>,
}

/// What one card payment owes, in minor units of its currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CardFees {
    /// Acquirer to issuer.
    pub interchange: u64,
    /// Acquirer to the switch.
    pub acquirer: u64,
    /// Issuer to the switch.
    pub issuer: u64,
}

/// Which way a payment's fees flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A purchase or completion: interchange to the issuer, fees to the switch.
    Pay,
    /// A refund: interchange back to the acquirer, fees to the switch.
    Refund,
    /// The reversal of a purchase or refund: every charge of it goes back.
    Reverse { of_refund: bool },
}

impl FeeSchedule {
    /// The fees of a card payment of `amount_minor` between these participants, at a
    /// merchant of category `mcc`.
    pub fn card(&self, acquirer: ParticipantId, issuer: ParticipantId, mcc: &str, amount_minor: u64) -> CardFees {
        let domestic = match (self.countries.get(&acquirer), self.countries.get(&issuer)) {
            (Some(a), Some(i)) => Some(a == i),
            _ => None,
        };
        let applies = |rule: &&InterchangeRule| {
            rule.mcc.as_deref().is_none_or(|m| m == mcc)
                && match rule.scope {
                    Scope::Any => true,
                    Scope::Domestic => domestic == Some(true),
                    Scope::CrossBorder => domestic == Some(false),
                }
        };
        let interchange = if acquirer == issuer {
            0 // on-us: nobody to pay
        } else {
            self.interchange.iter().find(applies).map_or(0, |rule| rule.rate.of(amount_minor))
        };
        let switch = self.switch_participant.is_some();
        CardFees {
            interchange,
            acquirer: if switch { self.acquirer_fee.of(amount_minor) } else { 0 },
            issuer: if switch { self.issuer_fee.of(amount_minor) } else { 0 },
        }
    }

    /// The charges of a card payment: what `card` computed, flowing as `direction` says,
    /// in `currency`. Zero fees book nothing.
    pub fn card_charges(
        &self,
        fees: CardFees,
        acquirer: ParticipantId,
        issuer: ParticipantId,
        currency: Currency,
        direction: Direction,
    ) -> Charges {
        let mut charges = Charges::default();
        let account = |participant| participant_account(participant, currency);
        // Participant 0 is nobody: without a switch participant its fees are not booked.
        let switch = self.switch_participant.unwrap_or(ParticipantId(0));
        let (interchange_back, fees_back) = match direction {
            Direction::Pay => (false, false),
            Direction::Refund => (true, false),
            Direction::Reverse { of_refund } => (!of_refund, true),
        };
        let mut push = |from: ParticipantId, to: ParticipantId, amount: u64, code: u16, back: bool| {
            if amount == 0 || from == to || from.0 == 0 || to.0 == 0 {
                return;
            }
            let (debit, credit) = if back { (account(to), account(from)) } else { (account(from), account(to)) };
            charges.push(Charge { debit, credit, currency, amount, code });
        };
        push(acquirer, issuer, fees.interchange, TRANSFER_CODE_INTERCHANGE, interchange_back);
        push(acquirer, switch, fees.acquirer, TRANSFER_CODE_SWITCH_FEE, fees_back);
        push(issuer, switch, fees.issuer, TRANSFER_CODE_SWITCH_FEE, fees_back);
        charges
    }

    /// The charges of a QR payment: the wallet's fee on what it pays (its currency), the
    /// acquirer's on what the merchant receives (the merchant's).
    pub fn qr_charges(
        &self,
        wallet: (ParticipantId, Currency, u64),
        acquirer: (ParticipantId, Currency, u64),
    ) -> Charges {
        let mut charges = Charges::default();
        let Some(switch) = self.switch_participant else { return charges };
        for ((participant, currency, amount), rate) in [(wallet, self.wallet_fee), (acquirer, self.qr_acquirer_fee)] {
            let fee = rate.of(amount);
            if fee > 0 && participant != switch {
                charges.push(Charge {
                    debit: participant_account(participant, currency),
                    credit: participant_account(switch, currency),
                    currency,
                    amount: fee,
                    code: TRANSFER_CODE_SWITCH_FEE,
                });
            }
        }
        charges
    }
}

/// A payment's charges, inline (no allocation per request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Charges {
    items: [Option<Charge>; CHARGES_PER_PAYMENT_MAX],
}

impl Charges {
    /// Adds a charge; past `CHARGES_PER_PAYMENT_MAX` it is dropped (callers push at most
    /// that many).
    pub fn push(&mut self, charge: Charge) {
        if let Some(slot) = self.items.iter_mut().find(|slot| slot.is_none()) {
            *slot = Some(charge);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Charge> {
        self.items.iter().flatten()
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.items[0].is_none()
    }
}

/// A rate as written in the configuration and the admin API. Absent: no fee.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    /// A percentage of the amount, as a decimal string ("0.80" is 0.8 %).
    #[serde(default = "zero_percent")]
    pub percent: String,
    /// Minor units of the payment's currency.
    #[serde(default)]
    pub fixed_minor: u64,
}

fn zero_percent() -> String {
    "0".into()
}

impl Default for RateSpec {
    fn default() -> RateSpec {
        RateSpec { percent: zero_percent(), fixed_minor: 0 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterchangeRuleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcc: Option<String>,
    #[serde(default)]
    pub scope: Scope,
    #[serde(flatten)]
    pub rate: RateSpec,
}

/// The fee schedule as written (`[fees]` in the configuration, `PUT /v1/admin/fees`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeScheduleSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_participant: Option<u64>,
    #[serde(default)]
    pub interchange: Vec<InterchangeRuleSpec>,
    #[serde(default)]
    pub acquirer_fee: RateSpec,
    #[serde(default)]
    pub issuer_fee: RateSpec,
    #[serde(default)]
    pub qr_acquirer_fee: RateSpec,
    #[serde(default)]
    pub wallet_fee: RateSpec,
}

impl FeeScheduleSpec {
    /// The schedule it describes, with the participants' countries; refused whole if any
    /// part is invalid.
    pub fn to_schedule(&self, countries: BTreeMap<ParticipantId, [u8; 2]>) -> Result<FeeSchedule, RateError> {
        let rate = |spec: &RateSpec| Rate::parse(&spec.percent, spec.fixed_minor);
        if self.interchange.len() > INTERCHANGE_RULES_MAX {
            return Err(RateError(format!("{} interchange rules", self.interchange.len()), "too many rules"));
        }
        let mut interchange = Vec::with_capacity(self.interchange.len());
        for rule in &self.interchange {
            if let Some(mcc) = &rule.mcc {
                if mcc.len() != 4 || !mcc.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(RateError(mcc.clone(), "a merchant category code is four digits"));
                }
            }
            interchange.push(InterchangeRule { mcc: rule.mcc.clone(), scope: rule.scope, rate: rate(&rule.rate)? });
        }
        Ok(FeeSchedule {
            switch_participant: self.switch_participant.map(ParticipantId),
            interchange,
            acquirer_fee: rate(&self.acquirer_fee)?,
            issuer_fee: rate(&self.issuer_fee)?,
            qr_acquirer_fee: rate(&self.qr_acquirer_fee)?,
            wallet_fee: rate(&self.wallet_fee)?,
            countries,
        })
    }
}

impl FeeSchedule {
    /// The schedule as written (without the countries, which come from the participants).
    pub fn to_spec(&self) -> FeeScheduleSpec {
        let rate = |rate: &Rate| RateSpec { percent: rate.percent.to_string(), fixed_minor: rate.fixed_minor };
        FeeScheduleSpec {
            switch_participant: self.switch_participant.map(|p| p.0),
            interchange: self
                .interchange
                .iter()
                .map(|rule| InterchangeRuleSpec { mcc: rule.mcc.clone(), scope: rule.scope, rate: rate(&rule.rate) })
                .collect(),
            acquirer_fee: rate(&self.acquirer_fee),
            issuer_fee: rate(&self.issuer_fee),
            qr_acquirer_fee: rate(&self.qr_acquirer_fee),
            wallet_fee: rate(&self.wallet_fee),
        }
    }
}

/// The country of a BIC (its fifth and sixth letters), if it has one.
pub fn country_of_bic(bic: &str) -> Option<[u8; 2]> {
    let bytes = bic.as_bytes();
    match bytes.get(4..6) {
        Some([a, b]) if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Some([*a, *b]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::from_code("USD").expect("USD")
    }

    #[test]
    fn rounding_is_half_up_to_a_whole_minor_unit_then_the_fixed_part() {
        let rate = Rate::parse("1.5", 10).expect("rate");
        assert_eq!(rate.of(1_000), 15 + 10); // 15.00
        assert_eq!(rate.of(1_030), 15 + 10); // 15.45 -> 15
        assert_eq!(rate.of(1_033), 15 + 10); // 15.495 -> 15
        assert_eq!(rate.of(1_034), 16 + 10); // 15.51 -> 16
        assert_eq!(Rate::parse("0.5", 0).expect("rate").of(1), 0); // 0.005 -> 0
        assert_eq!(Rate::parse("50", 0).expect("rate").of(1), 1); // 0.5 -> 1 (half up)
        assert_eq!(Rate::parse("50", 0).expect("rate").of(3), 2); // 1.5 -> 2
        assert_eq!(Rate::parse("0.0001", 0).expect("rate").of(u64::MAX), 18_446_744_073_710); // exact
        assert_eq!(Rate::parse("100", u64::MAX).expect("rate").of(5), u64::MAX); // saturates
        for bad in ["-1", "100.01", "0.00001", "abc", ""] {
            assert!(Rate::parse(bad, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn interchange_follows_the_first_rule_by_category_and_border() {
        let schedule = FeeSchedule {
            switch_participant: Some(ParticipantId(9)),
            interchange: vec![
                InterchangeRule {
                    mcc: Some("5411".into()),
                    scope: Scope::Domestic,
                    rate: Rate::parse("0.5", 0).expect("rate"),
                },
                InterchangeRule { mcc: None, scope: Scope::CrossBorder, rate: Rate::parse("1.8", 0).expect("rate") },
                InterchangeRule { mcc: None, scope: Scope::Any, rate: Rate::parse("1", 5).expect("rate") },
            ],
            acquirer_fee: Rate::parse("0.02", 1).expect("rate"),
            issuer_fee: Rate::parse("0.01", 0).expect("rate"),
            countries: [(ParticipantId(1), *b"US"), (ParticipantId(2), *b"JP"), (ParticipantId(3), *b"US")]
                .into_iter()
                .collect(),
            ..FeeSchedule::default()
        };
        let (acquirer, us_issuer, jp_issuer) = (ParticipantId(3), ParticipantId(1), ParticipantId(2));
        // Domestic grocery: 0.5 % of 100.00 = 0.50; fees 0.02 % + 0.01 = 0.03, 0.01 % = 0.01.
        assert_eq!(
            schedule.card(acquirer, us_issuer, "5411", 10_000),
            CardFees { interchange: 50, acquirer: 3, issuer: 1 }
        );
        // Cross-border: 1.8 %.
        assert_eq!(schedule.card(acquirer, jp_issuer, "5411", 10_000).interchange, 180);
        // Domestic restaurant: the catch-all, 1 % + 0.05.
        assert_eq!(schedule.card(acquirer, us_issuer, "5812", 10_000).interchange, 105);
        // On-us: no interchange.
        assert_eq!(schedule.card(acquirer, acquirer, "5411", 10_000).interchange, 0);
        let fees = schedule.card(acquirer, us_issuer, "5411", 10_000);
        let pay = schedule.card_charges(fees, acquirer, us_issuer, usd(), Direction::Pay);
        let reverse = schedule.card_charges(fees, acquirer, us_issuer, usd(), Direction::Reverse { of_refund: false });
        assert_eq!(pay.len(), 3);
        for (paid, returned) in pay.iter().zip(reverse.iter()) {
            assert_eq!((paid.debit, paid.credit, paid.amount), (returned.credit, returned.debit, returned.amount));
        }
        let refund = schedule.card_charges(fees, acquirer, us_issuer, usd(), Direction::Refund);
        let items: Vec<&Charge> = refund.iter().collect();
        assert_eq!(items[0].debit, participant_account(us_issuer, usd()), "interchange comes back");
        assert_eq!(items[1].debit, participant_account(acquirer, usd()), "fees are paid again");
    }

    #[test]
    fn a_schedule_may_leave_rates_out() {
        let spec: FeeScheduleSpec = serde_json::from_str(r#"{"acquirer_fee": {"fixed_minor": 10}}"#).expect("json");
        let schedule = spec.to_schedule(BTreeMap::new()).expect("valid");
        assert_eq!(schedule.acquirer_fee, Rate { percent: Decimal::ZERO, fixed_minor: 10 });
        assert!(schedule.issuer_fee.is_zero() && schedule.wallet_fee.is_zero());
    }

    #[test]
    fn countries_come_from_bics() {
        assert_eq!(country_of_bic("ACQRUS33XXX"), Some(*b"US"));
        assert_eq!(country_of_bic("SECOJPJT"), Some(*b"JP"));
        assert_eq!(country_of_bic("abc"), None);
    }
}
