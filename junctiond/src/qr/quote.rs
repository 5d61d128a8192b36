//! A priced payment (a quote) and how a QR charges the payer beyond the amount.

use crate::fx::FxRate;
use junction_ledger::{Currency, ParticipantId};
use junction_wire::qr::Scheme;
use serde::Serialize;

/// How the QR's IDs 55-57 charge the payer on top of the amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeeRule {
    None,
    /// 55 = 01: the payer may add a tip.
    TipPrompt,
    /// 55 = 02: the fixed convenience fee of 56.
    FixedFee,
    /// 55 = 03: the percentage convenience fee of 57.
    PercentageFee,
}

/// A priced payment: what the payer is charged and what the merchant's acquirer receives.
/// Quotes live in the quote store until they expire; a direct payment prices one too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub id: u128,
    pub wallet: ParticipantId,
    pub expires_at_ms: u64,
    pub scheme: Scheme,
    pub merchant_identifier: String,
    pub merchant_name: Option<String>,
    /// The merchant category code (ID 52).
    pub mcc: String,
    /// The aggregator and its sub-merchant's id, when the code is an aggregator's.
    pub aggregator: Option<(ParticipantId, String)>,
    /// Its direction, when the switch has a home market (`flows.rs`).
    pub flow: Option<super::Flow>,
    pub acquirer: ParticipantId,
    pub payee_currency: Currency,
    pub payer_currency: Currency,
    /// The merchant's amount (ID 54 or the wallet's), payee currency.
    pub amount_minor: u64,
    pub tip_minor: u64,
    pub fee_minor: u64,
    pub fee_rule: FeeRule,
    /// amount + tip + fee: what the acquirer receives.
    pub payee_minor: u64,
    /// What the wallet is charged.
    pub payer_minor: u64,
    /// `None` when both currencies are the same.
    pub fx: Option<FxRate>,
}
