//! The ledger's vocabulary: ids, accounts, transfers, and the reasons a transfer fails.

use crate::currency::Currency;
use rkyv::{Archive, Deserialize, Serialize};

/// An account id chosen by the client. Zero is reserved for "none".
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub u128);

/// A transfer id chosen by the client: the idempotency key. Zero is reserved for "none".
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferId(pub u128);

/// A participant of the switch (bank, wallet, acquirer, FX provider).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(pub u64);

/// A participant's position in one currency: the key of net positions, caps and
/// statements everywhere in Junction.
pub type PositionKey = (ParticipantId, Currency);

/// A settlement window: the journal between two cut-offs. Windows are numbered from 1.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct WindowId(pub u64);

impl TransferId {
    pub const NONE: TransferId = TransferId(0);
}

/// What an account is for. Positions are kept per participant, whatever the kind.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug))]
#[repr(u8)]
pub enum AccountKind {
    /// A cardholder's or wallet user's funds, held at an issuer.
    Cardholder = 1,
    /// A merchant's account at an acquirer.
    Merchant = 2,
    /// A participant's position (settlement) account at the switch.
    Position = 3,
    /// An FX provider's liquidity in one currency.
    FxLiquidity = 4,
    /// Fees earned.
    Fee = 5,
    /// The settlement bank's account, counterpart of net settlement.
    Settlement = 6,
}

/// Account flags, as a bit set.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AccountFlags(pub u16);

impl AccountFlags {
    pub const NONE: AccountFlags = AccountFlags(0);
    /// No new transfer may touch the account (pending ones may still be posted or voided).
    pub const CLOSED: AccountFlags = AccountFlags(1 << 0);
    /// Debits (posted + pending) may not exceed credits posted plus the credit limit.
    pub const DEBITS_MUST_NOT_EXCEED_CREDITS: AccountFlags = AccountFlags(1 << 1);
    /// Credits (posted + pending) may not exceed debits posted.
    pub const CREDITS_MUST_NOT_EXCEED_DEBITS: AccountFlags = AccountFlags(1 << 2);
    const ALL: u16 = 0b111;

    pub fn contains(self, other: AccountFlags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_valid(self) -> bool {
        self.0 & !Self::ALL == 0
    }
}

impl std::ops::BitOr for AccountFlags {
    type Output = AccountFlags;
    fn bitor(self, rhs: Self) -> Self {
        AccountFlags(self.0 | rhs.0)
    }
}

/// An account's static attributes, as created.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    /// The participant whose position this account's cross-participant transfers move.
    pub participant: ParticipantId,
    pub currency: Currency,
    pub kind: AccountKind,
    pub flags: AccountFlags,
    /// With `DEBITS_MUST_NOT_EXCEED_CREDITS`: how far debits may exceed credits, in minor units.
    pub credit_limit: u64,
    pub user_data: u64,
}

/// An account's balances in minor units. Pending amounts are holds: they reduce what is
/// available but have not moved yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Balances {
    pub debits_pending: u64,
    pub debits_posted: u64,
    pub credits_pending: u64,
    pub credits_posted: u64,
}

impl Balances {
    /// Credits posted minus debits posted and pending: what the holder may still spend
    /// (before any credit limit). Negative when overdrawn against a credit limit.
    pub fn available(&self) -> i128 {
        i128::from(self.credits_posted) - i128::from(self.debits_posted) - i128::from(self.debits_pending)
    }
}

/// Transfer flags, as a bit set.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TransferFlags(pub u16);

impl TransferFlags {
    pub const NONE: TransferFlags = TransferFlags(0);
    /// Linked to the next transfer of the batch: the chain commits all or nothing.
    pub const LINKED: TransferFlags = TransferFlags(1 << 0);
    /// A hold: reserves the amount until posted, voided or expired.
    pub const PENDING: TransferFlags = TransferFlags(1 << 1);
    /// Posts (fully or partly) the pending transfer named by `pending_id`.
    pub const POST_PENDING: TransferFlags = TransferFlags(1 << 2);
    /// Voids the pending transfer named by `pending_id`.
    pub const VOID_PENDING: TransferFlags = TransferFlags(1 << 3);
    const ALL: u16 = 0b1111;

    pub fn contains(self, other: TransferFlags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_valid(self) -> bool {
        self.0 & !Self::ALL == 0
    }
}

impl std::ops::BitOr for TransferFlags {
    type Output = TransferFlags;
    fn bitor(self, rhs: Self) -> Self {
        TransferFlags(self.0 | rhs.0)
    }
}

/// A transfer as a client submits it.
///
/// For `POST_PENDING` and `VOID_PENDING`, `debit_account` and `credit_account` may be left
/// zero (they are taken from the pending transfer) and `amount` zero means "the whole hold".
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    pub id: TransferId,
    pub debit_account: AccountId,
    pub credit_account: AccountId,
    /// Minor units of `currency`.
    pub amount: u64,
    pub pending_id: TransferId,
    pub currency: Currency,
    /// What kind of movement this is, for people and files (purchase, refund, fx leg, ...).
    pub code: u16,
    pub flags: TransferFlags,
    /// For `PENDING`: seconds until the hold expires by itself; 0 = never.
    pub timeout_s: u32,
    /// References such as RRN/STAN or a QR payment id, packed by the caller.
    pub user_data_128: u128,
    /// A second reference, e.g. an FX quote id.
    pub user_data_64: u64,
}

impl Transfer {
    /// A plain single-phase transfer.
    pub fn new(id: u128, debit: u128, credit: u128, amount: u64, currency: Currency) -> Transfer {
        Transfer {
            id: TransferId(id),
            debit_account: AccountId(debit),
            credit_account: AccountId(credit),
            amount,
            pending_id: TransferId::NONE,
            currency,
            code: 0,
            flags: TransferFlags::NONE,
            timeout_s: 0,
            user_data_128: 0,
            user_data_64: 0,
        }
    }
}

/// A committed transfer, as journaled: the request with its accounts and amount resolved
/// (for post/void: taken from the hold), the ledger's timestamp and its settlement window.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferRecord {
    pub transfer: Transfer,
    /// Nanoseconds since the Unix epoch, strictly increasing across the journal.
    pub timestamp: u64,
    pub window: WindowId,
    /// The journal entry before this record's that moved the debit account (0: none).
    /// Together with `credit_previous_seq` this chains each account's history through
    /// the journal, so the ledger keeps no per-account list in memory.
    pub debit_previous_seq: u64,
    /// The journal entry before this record's that moved the credit account (0: none).
    pub credit_previous_seq: u64,
}

/// The result of a committed (or already committed) transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferOk {
    pub timestamp: u64,
    pub window: WindowId,
    /// False when the id was already committed with the same content (an idempotent retry).
    pub created: bool,
}

/// Why a transfer was not committed. Each reason is distinct so the engine can map it to a
/// response code. A failed transfer writes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TransferError {
    #[error("transfer id must not be zero")]
    IdMustNotBeZero,
    #[error("transfer id already exists with different content")]
    IdConflict,
    #[error("unknown transfer flags")]
    FlagsInvalid,
    #[error("a transfer may carry only one of pending, post_pending and void_pending")]
    FlagsConflict,
    #[error("amount must not be zero")]
    AmountMustNotBeZero,
    #[error("debit and credit account must differ")]
    AccountsMustBeDifferent,
    #[error("debit account not found")]
    DebitAccountNotFound,
    #[error("credit account not found")]
    CreditAccountNotFound,
    #[error("currency differs from an account's currency")]
    CurrencyMismatch,
    #[error("debit account is closed")]
    DebitAccountClosed,
    #[error("credit account is closed")]
    CreditAccountClosed,
    #[error("insufficient funds: debits would exceed credits")]
    InsufficientFunds,
    #[error("credit limit exceeded")]
    CreditLimitExceeded,
    #[error("credits would exceed debits")]
    CreditsExceedDebits,
    #[error("a balance would overflow")]
    Overflow,
    #[error("timeout is only allowed on a pending transfer")]
    TimeoutRequiresPending,
    #[error("pending_id must be set to post or void, and only then")]
    PendingIdInvalid,
    #[error("pending transfer not found")]
    PendingTransferNotFound,
    #[error("the transfer named by pending_id is not a hold")]
    PendingTransferNotPending,
    #[error("accounts or currency differ from the pending transfer's")]
    PendingTransferMismatch,
    #[error("amount exceeds the pending amount")]
    PendingAmountExceeded,
    #[error("pending transfer already posted")]
    PendingAlreadyPosted,
    #[error("pending transfer already voided")]
    PendingAlreadyVoided,
    #[error("pending transfer expired")]
    PendingExpired,
    #[error("another transfer of the linked chain failed")]
    LinkedEventFailed,
    #[error("the batch ends inside a linked chain")]
    LinkedChainOpen,
}

/// Why an account was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("account id must not be zero")]
    IdMustNotBeZero,
    #[error("account already exists with different attributes")]
    IdConflict,
    #[error("unknown account flags")]
    FlagsInvalid,
    #[error("account not found")]
    NotFound,
}

/// A participant's movement in one currency during one window, in minor units.
/// Only transfers between accounts of different participants move positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Position {
    pub debits: u128,
    pub credits: u128,
    pub debit_count: u64,
    pub credit_count: u64,
}

impl Position {
    /// Positive: the participant is owed this much; negative: it owes.
    pub fn net(&self) -> i128 {
        // Sums of u64 amounts stay far below 2^127.
        self.credits as i128 - self.debits as i128
    }
}

/// The state of a settlement window, as the ledger records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowState {
    Open,
    Closed { closed_at: u64 },
}
