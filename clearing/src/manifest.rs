//! `manifest.json`: what a clearing folder holds, with digests and control totals, so a copy
//! can be checked on another machine without the daemon or the database.
//!
//! Money is written as strings (decimal and minor units): JSON numbers above 2^53 lose
//! precision in common readers, and a manifest must not round.

use super::text::amount_string;
use junction_ledger::Currency;
use junction_ledger::Position;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Name of the format, in every manifest.
pub const MANIFEST_FORMAT: &str = "junction-clearing";

/// Bumped whenever a file's layout changes; `verify_folder` refuses other versions.
/// Version 2 (2026-12): `transactions.csv` and each participant's transactions file;
/// references in `transfers.csv` unmasked. Version 3 (2026-12): `transactions.csv` ends
/// with `aggregator_participant` and `sub_merchant_id`. Version 4 (2026-12): a partitioned
/// switch's merged set says so in `cluster`; nothing else changed, so version 3 is read too.
pub const MANIFEST_FORMAT_VERSION: u32 = 4;

/// The versions `verify_folder` reads.
pub const MANIFEST_FORMAT_VERSIONS_READ: std::ops::RangeInclusive<u32> = 3..=MANIFEST_FORMAT_VERSION;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const POSITIONS_FILE: &str = "positions.csv";
pub const TRANSFERS_FILE: &str = "transfers.csv";
pub const TRANSACTIONS_FILE: &str = "transactions.csv";

/// The manifest of one window's clearing folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `MANIFEST_FORMAT`.
    pub format: String,
    pub format_version: u32,
    pub window: u64,
    /// The window's cut-off (close) time, ISO 8601 UTC with nanoseconds.
    pub cut_off: String,
    pub cut_off_ns: u64,
    /// Journal entries of the window: `first_seq..=last_seq` (the last is the close).
    pub journal_first_seq: u64,
    pub journal_last_seq: u64,
    pub switch_name: String,
    pub switch_bic: String,
    /// The bank on whose books net settlement happens (counterparty in pacs.009).
    pub settlement_bank_bic: String,
    /// The participant that receives the switch's fees, when the switch charges any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_participant: Option<u64>,
    pub records: RecordCounts,
    /// One entry per currency with positions in the window, by currency code.
    pub currencies: Vec<CurrencyTotals>,
    /// Every file of the folder except the manifest itself, by name.
    pub files: Vec<FileEntry>,
    /// Set on the merged set of a partitioned switch's cut-off: the partitions it is made
    /// of. `window` is then the cut's number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterCut>,
}

/// What a merged set is made of: one part per partition of the switch at the cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterCut {
    /// The cluster-wide cut-off's number.
    pub cut: u64,
    /// Every partition of the switch at the cut, sorted: a set needs a part of each.
    pub partitions: Vec<String>,
    /// By partition.
    pub parts: Vec<PartEntry>,
}

/// One partition's own clearing set of a cut, as merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartEntry {
    pub partition: String,
    /// The partition's window that the cut closed, and its journal entries.
    pub window: u64,
    pub cut_off: String,
    pub journal_first_seq: u64,
    pub journal_last_seq: u64,
    /// SHA-256 of the part's own manifest.json.
    pub manifest_sha256: String,
    pub records: RecordCounts,
    pub currencies: Vec<CurrencyTotals>,
}

/// The folder name of a partitioned switch's merged cut: `cut-00000007`.
pub fn cut_folder_name(cut: u64) -> String {
    format!("cut-{cut:08}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordCounts {
    /// Rows of `transfers.csv` (every transfer committed in the window).
    pub transfers: u64,
    /// Rows of `transactions.csv` (every request answered in the window).
    pub transactions: u64,
    /// Rows over all participants' `transactions-<id>.csv` (a row is in the file of each
    /// participant it names).
    pub participant_transactions: u64,
    /// Rows of `positions.csv` (participant and currency pairs with a position).
    pub positions: u64,
    /// camt.053 statement files.
    pub statements: u64,
    /// Transactions over all pacs.009 files.
    pub settlement_instructions: u64,
}

/// Control totals of one currency over all participants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurrencyTotals {
    pub currency: String,
    pub exponent: u8,
    /// Participants with a position in this currency.
    pub participants: u64,
    pub debit_count: u64,
    pub credit_count: u64,
    pub debits: String,
    pub credits: String,
    /// Sum of all nets: always zero in a valid folder.
    pub net_sum: String,
    /// What net debtors pay (and net creditors receive) at settlement.
    pub settlement_amount: String,
    pub debits_minor: String,
    pub credits_minor: String,
    pub net_sum_minor: String,
    pub settlement_amount_minor: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// The folder name of a window: `window-00000042` (zero-padded so folders sort by window).
pub fn window_folder_name(window: u64) -> String {
    format!("window-{window:08}")
}

/// Name of the temporary folder a window's files are built in, next to the final one.
/// Hidden, so tools listing the clearing root do not pick up a half-built window.
pub(crate) fn window_temp_folder_name(window: u64) -> String {
    format!(".window-{window:08}.tmp")
}

pub(crate) fn statement_file_name(participant: u64, currency: &str) -> String {
    format!("camt053-{participant}-{currency}.xml")
}

/// A participant's own transactions: the rows of `transactions.csv` that name it.
pub fn participant_transactions_file_name(participant: u64) -> String {
    format!("transactions-{participant}.csv")
}

pub(crate) fn instruction_file_name(currency: &str) -> String {
    format!("pacs009-{currency}.xml")
}

/// Control totals per currency over `(currency, position)` pairs, one per participant.
/// The writer computes them from the ledger's positions, the verifier from positions.csv.
pub(crate) fn currency_totals<'a>(
    positions: impl IntoIterator<Item = (Currency, &'a Position)>,
) -> BTreeMap<Currency, CurrencyTotals> {
    #[derive(Default)]
    struct Sums {
        participants: u64,
        debit_count: u64,
        credit_count: u64,
        debits: u128,
        credits: u128,
        net: i128,
        settlement: u128,
    }
    let mut sums: BTreeMap<Currency, Sums> = BTreeMap::new();
    for (currency, position) in positions {
        let sum = sums.entry(currency).or_default();
        sum.participants += 1;
        sum.debit_count += position.debit_count;
        sum.credit_count += position.credit_count;
        sum.debits += position.debits;
        sum.credits += position.credits;
        sum.net += position.net();
        if position.net() > 0 {
            sum.settlement += position.net().unsigned_abs();
        }
    }
    // Sums of u64 amounts stay far below 2^127 (as `Position::net` assumes); saturate
    // rather than panic on a corrupt figure.
    let signed = |value: u128| i128::try_from(value).unwrap_or(i128::MAX);
    sums.into_iter()
        .map(|(currency, sum)| {
            let exponent = currency.exponent();
            let totals = CurrencyTotals {
                currency: currency.to_string(),
                exponent,
                participants: sum.participants,
                debit_count: sum.debit_count,
                credit_count: sum.credit_count,
                debits: amount_string(signed(sum.debits), exponent),
                credits: amount_string(signed(sum.credits), exponent),
                net_sum: amount_string(sum.net, exponent),
                settlement_amount: amount_string(signed(sum.settlement), exponent),
                debits_minor: sum.debits.to_string(),
                credits_minor: sum.credits.to_string(),
                net_sum_minor: sum.net.to_string(),
                settlement_amount_minor: sum.settlement.to_string(),
            };
            (currency, totals)
        })
        .collect()
}
