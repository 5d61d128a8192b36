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
//! | 3 | `TokenSuspended` | 57 | device token suspended by its requestor or issuer (`junctiond/src/tokens.rs`) |
//! | 3 | `TokenDeleted` | 14 | device token deleted by its requestor or issuer |
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
//! | - | `IssuerDeclined` | the issuer's | the card's issuer host declined (its code is relayed as it came) |
//! | - | `IssuerUnavailable` | 91 | the issuer host did not answer in time, and its BIN allows no stand-in |
//! | - | `StandInLimitExceeded` | 61 | stood in for the issuer, past the BIN's stand-in limits |
//! | 2 | `ParticipantSuspended` | 57 | the acquirer, the card's issuer, the wallet, the payee's acquirer or the FX provider is suspended (reversals and completions still go through) |
//!
//! The net debit cap is reserved in the shard before the ledger checks funds and velocity,
//! so when both would fail the cap decline is the one reported.
//!
//! Every answer but 91 and 96 ("try again") is final and remembered: the ledger journals
//! it under the request key (a shard's decline as a refusal with the reason's `id`), and a
//! resend of the same request gets the same code and authorization code, whatever changed
//! since. Balance inquiries move nothing and are answered afresh.

use junction_ledger::TransferError;

/// An ISO 8583:1987 response code (field 39): two characters. The switch's own codes are
/// the constants below; an issuer's host may answer with any other, which the switch
/// relays as it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResponseCode([u8; 2]);

// The constants keep the names the switch has always used for its codes.
#[allow(non_upper_case_globals)]
impl ResponseCode {
    pub const Approved: ResponseCode = ResponseCode(*b"00");
    pub const DoNotHonor: ResponseCode = ResponseCode(*b"05");
    pub const InvalidTransaction: ResponseCode = ResponseCode(*b"12");
    pub const InvalidAmount: ResponseCode = ResponseCode(*b"13");
    pub const InvalidCard: ResponseCode = ResponseCode(*b"14");
    pub const OriginalNotFound: ResponseCode = ResponseCode(*b"25");
    pub const FormatError: ResponseCode = ResponseCode(*b"30");
    pub const InsufficientFunds: ResponseCode = ResponseCode(*b"51");
    pub const ExpiredCard: ResponseCode = ResponseCode(*b"54");
    pub const NotPermitted: ResponseCode = ResponseCode(*b"57");
    pub const AmountLimitExceeded: ResponseCode = ResponseCode(*b"61");
    pub const SecurityViolation: ResponseCode = ResponseCode(*b"63");
    pub const FrequencyLimitExceeded: ResponseCode = ResponseCode(*b"65");
    pub const IssuerUnavailable: ResponseCode = ResponseCode(*b"91");
    pub const SystemUnavailable: ResponseCode = ResponseCode(*b"91");
    pub const DuplicateTransmission: ResponseCode = ResponseCode(*b"94");
    pub const SystemMalfunction: ResponseCode = ResponseCode(*b"96");

    /// A code as it came on the wire: two letters or digits.
    pub fn from_wire(code: &str) -> Option<ResponseCode> {
        let bytes: [u8; 2] = code.as_bytes().try_into().ok()?;
        bytes.iter().all(u8::is_ascii_alphanumeric).then_some(ResponseCode(bytes))
    }

    pub fn as_str(&self) -> &str {
        // Only alphanumeric ASCII is ever stored.
        std::str::from_utf8(&self.0).unwrap_or("96")
    }

    pub fn bytes(self) -> [u8; 2] {
        self.0
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
    #[error("token suspended")]
    TokenSuspended,
    #[error("token deleted")]
    TokenDeleted,
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
    /// The card's issuer (its host) declined; the response code is the issuer's own.
    #[error("declined by the issuer")]
    IssuerDeclined,
    /// The issuer's host did not answer in time and the card's BIN allows no stand-in.
    #[error("the issuer is unavailable")]
    IssuerUnavailable,
    /// Stood in for an unreachable issuer, and the stand-in limits of the card's BIN were
    /// exceeded.
    #[error("stand-in limit exceeded")]
    StandInLimitExceeded,
    /// A participant the request needs is suspended by the operator.
    #[error("a participant of the request is suspended")]
    ParticipantSuspended,
    /// A partitioned switch: the partition that owns the card's issuer did not answer the
    /// door in time (no primary, or too slow). Answered by the door; nothing is booked
    /// there (the owner may have booked it: a resend gets its answer).
    #[error("the card's partition did not answer")]
    PartitionUnavailable,
}

impl DeclineReason {
    pub fn code(self) -> ResponseCode {
        use DeclineReason::*;
        match self {
            DuplicateConflict => ResponseCode::DuplicateTransmission,
            UnknownCard | TokenDeleted => ResponseCode::InvalidCard,
            TokenDomainViolation | TokenExpired | TokenSuspended | ParticipantSuspended => ResponseCode::NotPermitted,
            AccountBlocked | AccountClosed | NetDebitCapExceeded => ResponseCode::DoNotHonor,
            CardExpired => ResponseCode::ExpiredCard,
            InvalidAmount => ResponseCode::InvalidAmount,
            CurrencyMismatch | OriginalAlreadyFinal => ResponseCode::InvalidTransaction,
            VelocityCountExceeded => ResponseCode::FrequencyLimitExceeded,
            VelocityAmountExceeded => ResponseCode::AmountLimitExceeded,
            InsufficientFunds => ResponseCode::InsufficientFunds,
            OriginalNotFound => ResponseCode::OriginalNotFound,
            Overloaded | LedgerUnavailable | PartitionUnavailable => ResponseCode::SystemUnavailable,
            SystemError => ResponseCode::SystemMalfunction,
            // The issuer's own code is in the response; 05 when it is not known.
            IssuerDeclined => ResponseCode::DoNotHonor,
            IssuerUnavailable => ResponseCode::IssuerUnavailable,
            StandInLimitExceeded => ResponseCode::AmountLimitExceeded,
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
            TokenSuspended => "token_suspended",
            TokenDeleted => "token_deleted",
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
            IssuerDeclined => "issuer_declined",
            IssuerUnavailable => "issuer_unavailable",
            StandInLimitExceeded => "stand_in_limit_exceeded",
            ParticipantSuspended => "participant_suspended",
            PartitionUnavailable => "partition_unavailable",
        }
    }

    /// Every reason with its stable number: refusals are journaled by number, so a number
    /// is never reused or changed.
    const IDS: [(DeclineReason, u16); DeclineReason::COUNT] = [
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
        (DeclineReason::IssuerDeclined, 19),
        (DeclineReason::IssuerUnavailable, 20),
        (DeclineReason::StandInLimitExceeded, 21),
        (DeclineReason::ParticipantSuspended, 22),
        (DeclineReason::TokenSuspended, 23),
        (DeclineReason::TokenDeleted, 24),
        (DeclineReason::PartitionUnavailable, 25),
    ];

    /// How many reasons there are; their ids are 1 to `COUNT`.
    pub const COUNT: usize = 25;

    /// Every reason, by id.
    pub fn all() -> impl Iterator<Item = DeclineReason> {
        Self::IDS.iter().map(|(reason, _)| *reason)
    }

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
