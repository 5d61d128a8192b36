//! Clearing files: what clearing staff and the settlement bank act on at each cut-off.
//!
//! Built on the ledger's public API only (windows, positions, the journal's transfers):
//! the ledger keeps windows and positions and knows nothing about these formats.
//!
//! `write_window_files` turns one closed settlement window into a folder
//! `window-<id:08>/` holding:
//!
//! | file | for | what |
//! |---|---|---|
//! | `positions.csv` | people, spreadsheets | one row per participant and currency: counts, debits, credits, net |
//! | `transfers.csv` | the ledger's view | every transfer of the window, in commit order, streamed from the journal |
//! | `transactions.csv` | reconciliation | every request answered in the window (approved or declined): message type, RRN, STAN, codes, terminal, merchant, masked card, amounts, rate |
//! | `transactions-<participant>.csv` | that participant | the rows of `transactions.csv` that name it (as acquirer, issuer or wallet) |
//! | `camt053-<participant>-<CCY>.xml` | the participant's bank | ISO 20022 camt.053.001.08 statement of its position account |
//! | `pacs009-<CCY>.xml` | the settlement bank | ISO 20022 pacs.009.001.09 net settlement instructions |
//! | `manifest.json` | anyone checking | SHA-256 and size of every file, control totals, record counts |
//!
//! Rules the files keep (and `verify_folder` checks on a copy, without the database):
//! - The folder appears whole or not at all: it is built in a hidden temporary folder
//!   next to it, every file and the folder fsynced, then renamed into place.
//! - Everything derives from the journal and the configuration, never the wall clock:
//!   writing a window again gives byte-identical files (dates come from the cut-off).
//! - A window whose nets do not sum to zero in some currency is an error, not a file.
//! - Statements' opening balance (`OPBD`) is the participant's cumulative net in that
//!   currency over all earlier windows, and the closing balance (`CLBD`) adds this
//!   window's net. The ledger does not see settlement happen at the bank; if settlement is
//!   booked back into the ledger (transfers against the settlement bank's participant),
//!   those transfers move the balance back like any other. A statement is written for
//!   every participant and currency with a position in the window or a non-zero opening
//!   balance, so openings and closings of all statements of a currency sum to zero.
//! - A pacs.009 file is written for each currency in which some net is not zero; it has
//!   one instruction per participant with a non-zero net.
//! - A card number never reaches a file in clear: the engine masks it (first six, last
//!   four) before it is journaled, and only `card_masked` holds it. References
//!   (`user_data_128`, `user_data_64`) are the switch's own (RRN and STAN, ids) and are
//!   written as plain hex.

mod format;
mod iso20022;
mod manifest;
mod merge;
mod reconcile;
mod sink;
mod summary;
mod text;
mod transactions;
mod verify;
mod write;

pub use format::{POSITIONS_HEADER, TRANSACTIONS_HEADER, TRANSFERS_HEADER};
pub use manifest::{
    cut_folder_name, participant_transactions_file_name, window_folder_name, ClusterCut, CurrencyTotals, FileEntry,
    Manifest, PartEntry, RecordCounts, MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_FORMAT_VERSION, POSITIONS_FILE,
    TRANSACTIONS_FILE, TRANSFERS_FILE,
};
pub use merge::{merge_parts, MergeError, Part};
pub use reconcile::{
    reconcile, Entry as ReconcileEntry, ReconcileError, ReconcileReport, Totals as ReconcileTotals,
    RECONCILE_LISTED_MAX,
};
pub use summary::{summarize, CurrencySummary, ParticipantNet, Summary};
pub use verify::{verify_folder, VerifyError, VerifyReport};
pub use write::write_window_files;

use junction_ledger::LedgerError;
use junction_ledger::ParticipantId;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Who the files name: the switch, the settlement bank, and the participants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClearingConfig {
    pub switch_name: String,
    /// BICFI of the switch (the hub): servicer of the statements' accounts, instructing
    /// agent of the settlement instructions.
    pub switch_bic: String,
    /// BICFI of the bank on whose books net settlement happens.
    pub settlement_bank_bic: String,
    /// Participants missing here still get valid files, with a placeholder name and
    /// account id (`ParticipantInfo::placeholder`).
    pub participants: BTreeMap<ParticipantId, ParticipantInfo>,
    /// The participant that receives the switch's fees (the fee schedule's), if any.
    pub fee_participant: Option<ParticipantId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantInfo {
    pub name: String,
    /// BICFI, when the participant has one (a foreign wallet may not).
    pub bic: Option<String>,
    /// The participant's settlement account at the settlement bank: an IBAN, or any other
    /// identifier of at most 34 characters.
    pub settlement_account_iban_or_id: String,
}

impl ParticipantInfo {
    /// What the files say about a participant the configuration does not know.
    pub fn placeholder(participant: ParticipantId) -> ParticipantInfo {
        ParticipantInfo {
            name: format!("Participant {}", participant.0),
            bic: None,
            settlement_account_iban_or_id: format!("JUNCTION-P{}", participant.0),
        }
    }
}

impl ClearingConfig {
    /// Checks what the ISO 20022 schemas would refuse, before any file is written.
    pub fn validate(&self) -> Result<(), ClearingError> {
        if !text::is_bic(&self.switch_bic) {
            return Err(ClearingError::Config(format!("switch BIC {:?} is not a valid BICFI", self.switch_bic)));
        }
        if !text::is_bic(&self.settlement_bank_bic) {
            return Err(ClearingError::Config(format!(
                "settlement bank BIC {:?} is not a valid BICFI",
                self.settlement_bank_bic
            )));
        }
        for (participant, info) in &self.participants {
            if let Some(bic) = &info.bic {
                if !text::is_bic(bic) {
                    return Err(ClearingError::Config(format!(
                        "participant {}: BIC {bic:?} is not a valid BICFI",
                        participant.0
                    )));
                }
            }
            let account = &info.settlement_account_iban_or_id;
            let chars = account.chars().count();
            if account.trim() != account || chars == 0 || chars > iso20022::ACCOUNT_ID_CHARS_MAX {
                return Err(ClearingError::Config(format!(
                    "participant {}: settlement account {account:?} must be 1 to {} characters without surrounding spaces",
                    participant.0,
                    iso20022::ACCOUNT_ID_CHARS_MAX
                )));
            }
        }
        Ok(())
    }

    /// The configured participant, or a placeholder.
    pub fn participant(&self, participant: ParticipantId) -> ParticipantInfo {
        self.participants.get(&participant).cloned().unwrap_or_else(|| ParticipantInfo::placeholder(participant))
    }
}

/// Why a window's clearing files were not written. Nothing is left behind in that case
/// (the temporary folder is removed, the final folder never appears).
#[derive(Debug, thiserror::Error)]
pub enum ClearingError {
    #[error("window {0} does not exist")]
    WindowNotFound(u64),
    #[error("window {0} is still open; close it before writing its clearing files")]
    WindowOpen(u64),
    #[error("invalid clearing configuration: {0}")]
    Config(String),
    #[error("reading the ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("window {window}: nets in {currency} sum to {sum_minor} minor units, not zero")]
    NetsDoNotSumToZero { window: u64, currency: String, sum_minor: i128 },
    #[error("window {window}: transfer {transfer:032x} names account {account:032x}, which the ledger does not know")]
    UnknownAccount { window: u64, transfer: u128, account: u128 },
    #[error("window {window}: the journal disagrees with the ledger's positions: {detail}")]
    Inconsistent { window: u64, detail: String },
    #[error("{file}: an amount or count exceeds the digits ISO 20022 allows")]
    AmountTooLarge { file: String },
    #[error("{} already exists but does not verify ({source}); check it and move it aside, then write again", path.display())]
    ExistingFolderInvalid { path: PathBuf, source: Box<VerifyError> },
    #[error("encoding the manifest: {0}")]
    Manifest(#[from] serde_json::Error),
}

impl ClearingError {
    fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ClearingError {
        let path = path.into();
        move |source| ClearingError::Io { path, source }
    }
}
