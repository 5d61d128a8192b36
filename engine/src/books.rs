//! The engine's conventions in the ledger: which account ids are participants' position
//! accounts, and the transfer codes it writes. The ledger stores both without reading
//! them; the engine, the daemon and the clearing files' readers agree on them here.

use junction_ledger::{AccountId, Currency, ParticipantId};

/// High byte of the ledger ids of participants' position accounts. Cardholder account ids
/// must not use it.
const POSITION_ACCOUNT_TAG: u128 = 0x4A;

/// The ledger account holding a participant's position in a currency.
pub fn participant_account(participant: ParticipantId, currency: Currency) -> AccountId {
    AccountId((POSITION_ACCOUNT_TAG << 120) | (u128::from(participant.0) << 16) | u128::from(currency.numeric()))
}

/// The participant of a position account, if `id` is one.
pub fn participant_of_account(id: AccountId) -> Option<ParticipantId> {
    (id.0 >> 120 == POSITION_ACCOUNT_TAG).then_some(ParticipantId((id.0 >> 16) as u64))
}

/// Transfer codes the engine writes (the ledger's `code` field).
pub const TRANSFER_CODE_PURCHASE: u16 = 1;
pub const TRANSFER_CODE_AUTHORIZATION: u16 = 2;
pub const TRANSFER_CODE_COMPLETION: u16 = 3;
pub const TRANSFER_CODE_REVERSAL: u16 = 4;
pub const TRANSFER_CODE_REFUND: u16 = 5;
pub const TRANSFER_CODE_OPENING_BALANCE: u16 = 6;
pub const TRANSFER_CODE_QR_PAYMENT: u16 = 7;
pub const TRANSFER_CODE_FX_LEG: u16 = 8;
/// The acquirer-issuer obligation of a request the issuer's host approved.
pub const TRANSFER_CODE_HOSTED_PURCHASE: u16 = 9;
pub const TRANSFER_CODE_HOSTED_REFUND: u16 = 10;
pub const TRANSFER_CODE_HOSTED_AUTHORIZATION: u16 = 11;
pub const TRANSFER_CODE_HOSTED_COMPLETION: u16 = 12;
/// The same, approved by the switch standing in for an unreachable host.
pub const TRANSFER_CODE_STAND_IN_PURCHASE: u16 = 13;
pub const TRANSFER_CODE_STAND_IN_REFUND: u16 = 14;
pub const TRANSFER_CODE_STAND_IN_AUTHORIZATION: u16 = 15;
/// Interchange between acquirers and issuers, netted per journal entry (`fees.rs`).
pub const TRANSFER_CODE_INTERCHANGE: u16 = 16;
/// The switch's fees, netted per journal entry (`fees.rs`).
pub const TRANSFER_CODE_SWITCH_FEE: u16 = 17;
/// A credit transfer between two payment systems (ISO 20022 pacs.008), or its return
/// (pacs.004, or the switch returning what the receiving system refused or never took).
pub const TRANSFER_CODE_CREDIT_TRANSFER: u16 = 18;
/// A tax refund paid to a tourist's card or wallet by a refund agent (and its clawback
/// from a wallet).
pub const TRANSFER_CODE_TAX_REFUND: u16 = 19;
/// The guarantee hold a tax refund places on the card: released when the tourist's
/// departure is confirmed, captured (the refund clawed back) when it is not.
pub const TRANSFER_CODE_GUARANTEE: u16 = 20;
/// What a cardholder account had available, moved between its issuer's position account
/// and the account when the issuer moves to another partition of the switch (on-us:
/// moves no position): out in the partition it leaves, in at the one it joins.
pub const TRANSFER_CODE_HANDOVER: u16 = 21;

/// Whether a transfer code is a fee's (interchange or the switch's).
pub fn is_fee(code: u16) -> bool {
    matches!(code, TRANSFER_CODE_INTERCHANGE | TRANSFER_CODE_SWITCH_FEE)
}

/// Whether a transfer code is one the switch booked standing in for an issuer.
pub fn is_stand_in(code: u16) -> bool {
    matches!(
        code,
        TRANSFER_CODE_STAND_IN_PURCHASE | TRANSFER_CODE_STAND_IN_REFUND | TRANSFER_CODE_STAND_IN_AUTHORIZATION
    )
}
