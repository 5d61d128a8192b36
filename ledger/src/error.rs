//! The ledger's own failures, as opposed to a transfer's (`TransferError`).

use crate::limits::{ACCOUNTS_PER_CALL_MAX, BATCH_TRANSFERS_MAX};

/// Failures of the ledger itself, as opposed to a transfer's own failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    #[error("batch of {0} transfers exceeds the maximum of {BATCH_TRANSFERS_MAX}")]
    BatchTooLarge(usize),
    #[error("{0} accounts in one call exceed the maximum of {ACCOUNTS_PER_CALL_MAX}")]
    TooManyAccounts(usize),
    #[error("the commands of a part name {commands} transfers, but the part has {transfers}")]
    CommandsDoNotCoverTransfers { commands: usize, transfers: usize },
    #[error("the commands of a part name {commands} charges, but the part has {charges}")]
    CommandsDoNotCoverCharges { commands: usize, charges: usize },
    #[error("a part has {memos} memos for {commands} commands (one each, or none)")]
    MemosDoNotMatchCommands { memos: usize, commands: usize },
    #[error("ledger storage failed, no further commits until it is reopened: {0}")]
    Unavailable(String),
    #[error("ledger storage error: {0}")]
    Storage(String),
    #[error("journal is corrupt: {0}")]
    Corrupt(String),
}
