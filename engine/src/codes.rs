//! Why a request is declined, and the ISO 8583 response code each reason maps to.
//!
//! This is the one table the whole switch uses (the ISO 8583 gateway writes the code into
//! field 39; the QR gateway returns the reason's name):
//!
//! | order | reason | code | meaning |
//! |---|---|---|---|
//! | 1 | `DuplicateConflict` | 94 | same request key, different content |
//! | 2 | `UnknownCard` | 14 | card, token or account not provisioned |
//! | 3 | `TokenDomainViolation` | 57 | token used outside its entry modes / channels |
//! | 3 | `TokenExpired` | 57 | device token past its expiry |
//! | 4 | `AccountBlocked` | 05 | account blocked by the issuer |
//! | 4 | `AccountClosed` | 05 | account closed |
//! | 5 | `CardExpired` | 54 | card past its expiry date, or the request's expiry differs |
//! | 6 | `InvalidAmount` | 13 | zero, above `AMOUNT_PER_REQUEST_MAX`, or more than the hold |
//! | 6 | `CurrencyMismatch` | 12 | request currency is not the account's |
//! | 7 | `NetDebitCapExceeded` | 05 | the paying participant (issuer, wallet, acquirer for refunds, FX provider for its leg) would owe more than its cap |
//! | 8 | `InsufficientFunds` | 51 | balance minus holds (checked by the ledger) |
//! | 9 | `VelocityCountExceeded` | 65 | too many new debits in the rolling day (checked by the ledger) |
//! | 9 | `VelocityAmountExceeded` | 61 | too much debited in the rolling day (checked by the ledger) |
//! | - | `OriginalNotFound` | 25 | completion/reversal names an unknown original |
//! | - | `OriginalAlreadyFinal` | 12 | completion of a hold already completed, voided or expired |
//! | - | `Overloaded` | 91 | a shard queue is full, or the daemon is at its in-flight bound: declined at once |
//! | - | `LedgerUnavailable` | 91 | the ledger cannot write; nothing is approved |
//! | - | `SystemError` | 96 | anything unexpected |
//!
//! The net debit cap is reserved in the shard before the ledger checks funds and velocity,
//! so when both would fail the cap decline is the one reported.
//!
//! Every answer but 91 and 96 ("try again") is final and remembered: the ledger journals
//! it under the request key (a shard's decline as a refusal with the reason's `id`), and a
//! resend of the same request gets the same code and authorization code, whatever changed
//! since. Balance inquiries move nothing and are answered afresh.

use junction_ledger::TransferError;

/// ISO 8583:1987 response codes the switch sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseCode {
    Approved,
    DoNotHonor,
    InvalidTransaction,
    InvalidAmount,
    InvalidCard,
    OriginalNotFound,
    FormatError,
    InsufficientFunds,
    ExpiredCard,
    NotPermitted,
    AmountLimitExceeded,
    SecurityViolation,
    FrequencyLimitExceeded,
    SystemUnavailable,
    DuplicateTransmission,
    SystemMalfunction,
}

impl ResponseCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ResponseCode::Approved => "00",
            ResponseCode::DoNotHonor => "05",
            ResponseCode::InvalidTransaction => "12",
            ResponseCode::InvalidAmount => "13",
            ResponseCode::InvalidCard => "14",
            ResponseCode::OriginalNotFound => "25",
            ResponseCode::FormatError => "30",
            ResponseCode::InsufficientFunds => "51",
            ResponseCode::ExpiredCard => "54",
            ResponseCode::NotPermitted => "57",
            ResponseCode::AmountLimitExceeded => "61",
            ResponseCode::SecurityViolation => "63",
            ResponseCode::FrequencyLimitExceeded => "65",
            ResponseCode::SystemUnavailable => "91",
            ResponseCode::DuplicateTransmission => "94",
            ResponseCode::SystemMalfunction => "96",
        }
    }

    pub fn is_approved(self) -> bool {
        self == ResponseCode::Approved
    }
}

/// Why a request was declined. Each reason is distinct; several may share a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DeclineReason {
    #[error("same request key with different content")]
    DuplicateConflict,
    #[error("unknown card, token or account")]
    UnknownCard,
    #[error("token used outside its domain")]
    TokenDomainViolation,
    #[error("token expired")]
    TokenExpired,
    #[error("account blocked")]
    AccountBlocked,
    #[error("account closed")]
    AccountClosed,
    #[error("card expired")]
    CardExpired,
    #[error("invalid amount")]
    InvalidAmount,
    #[error("currency differs from the account's")]
    CurrencyMismatch,
    #[error("daily count limit exceeded")]
    VelocityCountExceeded,
    #[error("daily amount limit exceeded")]
    VelocityAmountExceeded,
    #[error("the paying participant's net debit cap exceeded")]
    NetDebitCapExceeded,
    #[error("insufficient funds")]
    InsufficientFunds,
    #[error("original transaction not found")]
    OriginalNotFound,
    #[error("original transaction already completed, voided or expired")]
    OriginalAlreadyFinal,
    #[error("switch overloaded")]
    Overloaded,
    #[error("ledger unavailable")]
    LedgerUnavailable,
    #[error("system error")]
    SystemError,
}

impl DeclineReason {
    pub fn code(self) -> ResponseCode {
        use DeclineReason::*;
        match self {
            DuplicateConflict => ResponseCode::DuplicateTransmission,
            UnknownCard => ResponseCode::InvalidCard,
            TokenDomainViolation | TokenExpired => ResponseCode::NotPermitted,
            AccountBlocked | AccountClosed | NetDebitCapExceeded => ResponseCode::DoNotHonor,
            CardExpired => ResponseCode::ExpiredCard,
            InvalidAmount => ResponseCode::InvalidAmount,
            CurrencyMismatch | OriginalAlreadyFinal => ResponseCode::InvalidTransaction,
            VelocityCountExceeded => ResponseCode::FrequencyLimitExceeded,
            VelocityAmountExceeded => ResponseCode::AmountLimitExceeded,
            InsufficientFunds => ResponseCode::InsufficientFunds,
            OriginalNotFound => ResponseCode::OriginalNotFound,
            Overloaded | LedgerUnavailable => ResponseCode::SystemUnavailable,
            SystemError => ResponseCode::SystemMalfunction,
        }
    }

    /// A stable machine-readable name (metrics labels, JSON errors).
    pub fn name(self) -> &'static str {
        use DeclineReason::*;
        match self {
            DuplicateConflict => "duplicate_conflict",
            UnknownCard => "unknown_card",
            TokenDomainViolation => "token_domain_violation",
            TokenExpired => "token_expired",
            AccountBlocked => "account_blocked",
            AccountClosed => "account_closed",
            CardExpired => "card_expired",
            InvalidAmount => "invalid_amount",
            CurrencyMismatch => "currency_mismatch",
            VelocityCountExceeded => "velocity_count_exceeded",
            VelocityAmountExceeded => "velocity_amount_exceeded",
            NetDebitCapExceeded => "net_debit_cap_exceeded",
            InsufficientFunds => "insufficient_funds",
            OriginalNotFound => "original_not_found",
            OriginalAlreadyFinal => "original_already_final",
            Overloaded => "overloaded",
            LedgerUnavailable => "ledger_unavailable",
            SystemError => "system_error",
        }
    }

    /// Every reason with its stable number: refusals are journaled by number, so a number
    /// is never reused or changed.
    const IDS: [(DeclineReason, u16); 18] = [
        (DeclineReason::DuplicateConflict, 1),
        (DeclineReason::UnknownCard, 2),
        (DeclineReason::TokenDomainViolation, 3),
        (DeclineReason::TokenExpired, 4),
        (DeclineReason::AccountBlocked, 5),
        (DeclineReason::AccountClosed, 6),
        (DeclineReason::CardExpired, 7),
        (DeclineReason::InvalidAmount, 8),
        (DeclineReason::CurrencyMismatch, 9),
        (DeclineReason::VelocityCountExceeded, 10),
        (DeclineReason::VelocityAmountExceeded, 11),
        (DeclineReason::NetDebitCapExceeded, 12),
        (DeclineReason::InsufficientFunds, 13),
        (DeclineReason::OriginalNotFound, 14),
        (DeclineReason::OriginalAlreadyFinal, 15),
        (DeclineReason::Overloaded, 16),
        (DeclineReason::LedgerUnavailable, 17),
        (DeclineReason::SystemError, 18),
    ];

    /// The reason's stable number (never 0).
    pub fn id(self) -> u16 {
        Self::IDS.iter().find(|(reason, _)| *reason == self).map_or(18, |(_, id)| *id)
    }

    pub fn from_id(id: u16) -> Option<DeclineReason> {
        Self::IDS.iter().find(|(_, i)| *i == id).map(|(reason, _)| *reason)
    }

    /// The decline for a transfer the ledger refused.
    pub fn from_ledger(error: TransferError) -> DeclineReason {
        use TransferError::*;
        match error {
            InsufficientFunds | CreditLimitExceeded => DeclineReason::InsufficientFunds,
            IdConflict => DeclineReason::DuplicateConflict,
            DebitAccountClosed | CreditAccountClosed => DeclineReason::AccountClosed,
            DebitAccountNotFound | CreditAccountNotFound => DeclineReason::UnknownCard,
            CurrencyMismatch => DeclineReason::CurrencyMismatch,
            AmountMustNotBeZero | PendingAmountExceeded | Overflow => DeclineReason::InvalidAmount,
            PendingTransferNotFound | PendingTransferNotPending => DeclineReason::OriginalNotFound,
            PendingAlreadyPosted | PendingAlreadyVoided | PendingExpired => DeclineReason::OriginalAlreadyFinal,
            DebitCountLimitExceeded => DeclineReason::VelocityCountExceeded,
            DebitAmountLimitExceeded => DeclineReason::VelocityAmountExceeded,
            _ => DeclineReason::SystemError,
        }
    }
}
