//! The ledger's vocabulary: ids, accounts, transfers, and the reasons a transfer fails.

use crate::currency::Currency;
use rkyv::{Archive, Deserialize, Serialize};

/// An account id chosen by the client. Zero is reserved for "none".
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub u128);

/// A transfer id chosen by the client: the idempotency key. Zero is reserved for "none".
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransferId(pub u128);

impl TransferId {
    /// The id folded into 63 bits (both halves xored, the top bit clear): a stable short
    /// reference. A `Command`'s own reference has the top bit set, so the two never meet.
    pub fn folded(self) -> u64 {
        (self.0 ^ (self.0 >> 64)) as u64 & !COMMAND_REFERENCE_BIT
    }

    /// Marker of a charge transfer's id in its low bits (see `charge`).
    const CHARGE_MARKER: u128 = 0xC4A6;

    /// The id of the `n`-th charge transfer of journal entry `seq` (see `Charge`): a timed
    /// id (fresh by construction) whose low bits say entry and place.
    pub fn charge(unix_s: u64, seq: u64, n: u32) -> TransferId {
        let low = (Self::CHARGE_MARKER << 72) | (u128::from(seq & ((1 << 48) - 1)) << 24) | u128::from(n & 0xFF_FFFF);
        TransferId::timed(unix_s, low)
    }

    /// Top byte of a timed id (see `timed`).
    pub const TIMED_TAG: u8 = 0x5A;
    /// The time origin of timed ids: 2020-01-01T00:00:00Z, in Unix seconds.
    pub const TIME_ORIGIN_UNIX_S: u64 = 1_577_836_800;

    /// An id that carries the time it was first used: its top byte `TIMED_TAG`, then that
    /// time in seconds since `TIME_ORIGIN_UNIX_S` (32 bits), then the low 88 bits of
    /// `low`. The ledger keeps recent ids in memory and older ones in its cold index; an
    /// id's time tells it whether the id can be older than memory, so a fresh timed id
    /// costs no lookup in the cold index. Ids without it are looked up there whenever
    /// memory does not have them.
    pub fn timed(unix_s: u64, low: u128) -> TransferId {
        let seconds = unix_s.saturating_sub(Self::TIME_ORIGIN_UNIX_S).min(u64::from(u32::MAX)) as u128;
        TransferId((u128::from(Self::TIMED_TAG) << 120) | (seconds << 88) | (low & ((1u128 << 88) - 1)))
    }

    /// When a timed id was first used, in Unix seconds.
    pub fn time_unix_s(self) -> Option<u64> {
        ((self.0 >> 120) as u8 == Self::TIMED_TAG).then(|| ((self.0 >> 88) as u32) as u64 + Self::TIME_ORIGIN_UNIX_S)
    }
}

/// A participant of the switch (bank, wallet, acquirer, FX provider). In JSON and TOML,
/// its number.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    serde::Serialize,
    serde::Deserialize,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
#[serde(transparent)]
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

/// Limits on an account's new debits over a rolling day (velocity): how many, and how much
/// in minor units. Zero means no limit. Posting or voiding a hold is not a new debit; a
/// hold and a single-phase transfer each count when they are made.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DebitLimits {
    pub count_per_day_max: u32,
    pub amount_per_day_max: u64,
}

impl DebitLimits {
    pub const NONE: DebitLimits = DebitLimits { count_per_day_max: 0, amount_per_day_max: 0 };

    pub fn is_none(&self) -> bool {
        self.count_per_day_max == 0 && self.amount_per_day_max == 0
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
    /// Velocity limits on new debits (see `DebitLimits`).
    pub debit_limits: DebitLimits,
    pub user_data: u64,
}

/// A change to an account's attributes (journaled): its flags (e.g. closed), credit limit,
/// debit limits and the caller's data.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountUpdate {
    pub id: AccountId,
    pub flags: AccountFlags,
    pub credit_limit: u64,
    pub debit_limits: DebitLimits,
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
    /// When this transfer is the first of a `Command` keyed by its own id: the command's
    /// digest (the transfer record then answers the command). 0 otherwise.
    pub digest: u64,
}

/// Most bytes a `Memo` holds.
pub const MEMO_BYTES: usize = 224;

/// What the caller says about a command, opaque to the ledger: the engine's record of the
/// message behind it (message type, references, terminal, masked card: `engine::detail`).
/// Journaled with the command's first answer, never with a repeat's, so each request's
/// memo is in the journal exactly once and in the same entry as its transfers. Up to
/// `MEMO_BYTES` of any length: the journal keeps only the bytes a memo has, so a caller
/// that encodes compactly pays for no padding.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Memo {
    len: u8,
    bytes: [u8; MEMO_BYTES],
}

const _: () = assert!(MEMO_BYTES <= u8::MAX as usize);

impl Memo {
    pub const EMPTY: Memo = Memo { len: 0, bytes: [0; MEMO_BYTES] };

    /// A memo of these bytes; None when there are more than `MEMO_BYTES`.
    pub fn new(bytes: &[u8]) -> Option<Memo> {
        let mut memo = Memo::EMPTY;
        memo.bytes.get_mut(..bytes.len())?.copy_from_slice(bytes);
        memo.len = bytes.len() as u8;
        Some(memo)
    }

    /// A memo of `bytes[..len]` (`len` at most `MEMO_BYTES`, else all of them).
    pub fn from_parts(bytes: [u8; MEMO_BYTES], len: usize) -> Memo {
        Memo { len: len.min(MEMO_BYTES) as u8, bytes }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for Memo {
    fn default() -> Self {
        Memo::EMPTY
    }
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Memo({} bytes)", self.len)
    }
}

/// A command's memo as read back from the journal, with how the command was answered and
/// which of the entry's transfer records are its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetailRecord {
    pub key: TransferId,
    /// `AnswerRecord::outcome`'s encoding: 0 committed, else the failure or refusal.
    pub outcome: u16,
    /// For a commit: the reference it is answered with (`CommandOutcome::Committed`).
    pub reference: u64,
    /// When it was answered: its first transfer's timestamp, or the batch's time.
    pub timestamp: u64,
    /// Its transfer records in the entry: `records[first_record..first_record + records]`.
    pub first_record: u32,
    pub records: u32,
    pub memo: Memo,
}

impl DetailRecord {
    pub fn outcome(&self) -> Option<CommandOutcome> {
        AnswerRecord::decode_outcome(self.outcome, self.timestamp, self.reference)
    }
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
    #[error("the debit account's count of new debits in the rolling day is at its limit")]
    DebitCountLimitExceeded,
    #[error("the debit account's amount of new debits in the rolling day would exceed its limit")]
    DebitAmountLimitExceeded,
    #[error("a charge names an account that is missing, closed, limited or in another currency")]
    ChargeAccountInvalid,
}

impl TransferError {
    /// Every error with its stable number (journaled in `AnswerRecord`s: never renumber).
    const CODES: [(TransferError, u16); 29] = [
        (TransferError::IdMustNotBeZero, 1),
        (TransferError::IdConflict, 2),
        (TransferError::FlagsInvalid, 3),
        (TransferError::FlagsConflict, 4),
        (TransferError::AmountMustNotBeZero, 5),
        (TransferError::AccountsMustBeDifferent, 6),
        (TransferError::DebitAccountNotFound, 7),
        (TransferError::CreditAccountNotFound, 8),
        (TransferError::CurrencyMismatch, 9),
        (TransferError::DebitAccountClosed, 10),
        (TransferError::CreditAccountClosed, 11),
        (TransferError::InsufficientFunds, 12),
        (TransferError::CreditLimitExceeded, 13),
        (TransferError::CreditsExceedDebits, 14),
        (TransferError::Overflow, 15),
        (TransferError::TimeoutRequiresPending, 16),
        (TransferError::PendingIdInvalid, 17),
        (TransferError::PendingTransferNotFound, 18),
        (TransferError::PendingTransferNotPending, 19),
        (TransferError::PendingTransferMismatch, 20),
        (TransferError::PendingAmountExceeded, 21),
        (TransferError::PendingAlreadyPosted, 22),
        (TransferError::PendingAlreadyVoided, 23),
        (TransferError::PendingExpired, 24),
        (TransferError::LinkedEventFailed, 25),
        (TransferError::LinkedChainOpen, 26),
        (TransferError::DebitCountLimitExceeded, 27),
        (TransferError::DebitAmountLimitExceeded, 28),
        (TransferError::ChargeAccountInvalid, 29),
    ];

    /// The error's stable number, 1 to 255.
    pub fn code(self) -> u16 {
        Self::CODES.iter().find(|(error, _)| *error == self).map_or(0, |(_, code)| *code)
    }

    pub fn from_code(code: u16) -> Option<TransferError> {
        Self::CODES.iter().find(|(_, c)| *c == code).map(|(error, _)| *error)
    }
}

/// The top bit of a `Command`'s own `reference` (see `TransferId::folded`).
pub const COMMAND_REFERENCE_BIT: u64 = 1 << 63;

/// A request the ledger answers once, under the caller's idempotency key: its transfers
/// (a linked group, consecutive in the batch) or the caller's own refusal, which moves
/// nothing. The answer is remembered with the key, so the same command sent again gets
/// the same answer and moves nothing, whatever has changed since; the same key with
/// another digest is a conflict. Failed commands are remembered like committed ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    pub key: TransferId,
    /// What the command asks, as the caller hashes it (never 0 for a real request).
    pub digest: u64,
    /// How many of the batch's transfers belong to this command (0 for a refusal).
    pub transfers: u32,
    /// Non-zero: the caller refuses the command itself, with this code of its own.
    pub refusal: u16,
    /// How many of the part's charges belong to this command (consecutive, in command
    /// order; see `Charge`).
    pub charges: u32,
    /// Non-zero (with `COMMAND_REFERENCE_BIT` set): the reference the committed command is
    /// answered with, now and on every repeat, instead of its first transfer's folded id
    /// (an issuer's authorization code, say). Its key must then not be one of its
    /// transfers' ids.
    pub reference: u64,
}

/// One part of a batch of commands: the commands and, consecutive and in order, their
/// transfers.
#[derive(Debug, Clone, Copy)]
pub struct CommandPart<'a> {
    pub transfers: &'a [Transfer],
    pub commands: &'a [Command],
    /// Empty, or one per command: journaled with each command answered now (not with a
    /// repeat), as a `DetailRecord`.
    pub memos: &'a [Memo],
    /// The commands' charges, consecutive and in command order (`Command::charges`).
    pub charges: &'a [Charge],
}

/// A fee a command books when it commits (interchange, the switch's fees): `amount` of
/// `currency` from `debit` to `credit`, both accounts without limits (no balance flag, no
/// debit limits, open, in that currency; a command whose charges name another fails with
/// `ChargeAccountInvalid` and moves nothing). The charges of every command committed in
/// one journal entry with the same accounts, currency and code are booked as one transfer
/// at the end of the entry (`TransferId::charge`), in the same atomic write as the
/// payments: a payment's fees cost the sequencer an addition, not transfers of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Charge {
    pub debit: AccountId,
    pub credit: AccountId,
    pub currency: Currency,
    pub amount: u64,
    /// The code its transfer carries (`Transfer::code`).
    pub code: u16,
}

/// How a command was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandOutcome {
    /// Its transfers committed. `reference` folds the first transfer's id into 64 bits
    /// (`TransferId::folded`), for references derived from it (authorization codes).
    Committed { timestamp: u64, reference: u64 },
    /// A transfer failed: the first real reason (not "another link failed").
    Failed(TransferError),
    /// The caller refused it with this code.
    Refused(u16),
    /// The key is known with another digest: nothing was done.
    Conflict,
}

/// A command's answer, and whether it is the answer of an earlier command with the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandResult {
    pub outcome: CommandOutcome,
    /// True when the key was answered before: nothing moved this time.
    pub repeat: bool,
}

/// A command's answer as journaled, when its transfer record does not already say it: a
/// failure, a refusal, or a commit under a key that is not its first transfer's id.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerRecord {
    pub key: TransferId,
    pub digest: u64,
    /// For a commit: `TransferId::folded` of its first transfer; 0 otherwise.
    pub reference: u64,
    /// When it was answered (the batch's time, nanoseconds since the epoch).
    pub timestamp: u64,
    /// 0: committed; 1 to 255: `TransferError::code`; 0x8000 | code: refused with code.
    pub outcome: u16,
}

/// `AnswerRecord::outcome` of a refusal: this bit and the caller's code.
pub const ANSWER_REFUSED: u16 = 0x8000;

impl AnswerRecord {
    pub fn encode_outcome(outcome: CommandOutcome) -> u16 {
        match outcome {
            CommandOutcome::Committed { .. } => 0,
            CommandOutcome::Failed(error) => error.code(),
            CommandOutcome::Refused(code) => ANSWER_REFUSED | code,
            CommandOutcome::Conflict => TransferError::IdConflict.code(),
        }
    }

    pub fn decode_outcome(code: u16, timestamp: u64, reference: u64) -> Option<CommandOutcome> {
        if code == 0 {
            Some(CommandOutcome::Committed { timestamp, reference })
        } else if code & ANSWER_REFUSED != 0 {
            Some(CommandOutcome::Refused(code & !ANSWER_REFUSED))
        } else {
            TransferError::from_code(code).map(CommandOutcome::Failed)
        }
    }
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
