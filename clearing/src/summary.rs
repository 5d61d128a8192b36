//! A clearing folder at a glance, for `junction clearing show`.

use crate::text::amount_string;
use crate::verify::{read_manifest, read_positions, VerifyError};
use std::fmt;
use std::path::Path;

/// A folder at a glance, for `junction clearing show`. Reads the manifest and
/// positions.csv only (it does not hash: run `verify_folder` for that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub window: u64,
    pub cut_off: String,
    pub journal_first_seq: u64,
    pub journal_last_seq: u64,
    pub transfers: u64,
    /// Requests answered in the window (rows of transactions.csv).
    pub transactions: u64,
    pub currencies: Vec<CurrencySummary>,
    /// By participant, then currency.
    pub participants: Vec<ParticipantNet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencySummary {
    pub currency: String,
    pub participants: u64,
    pub debits: String,
    pub credits: String,
    pub net_sum: String,
    /// What net debtors pay to (and net creditors receive from) the settlement bank.
    pub settlement_amount: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantNet {
    pub participant: u64,
    pub name: String,
    pub currency: String,
    /// Positive: owed to the participant; negative: it owes.
    pub net: String,
    pub net_minor: i128,
    /// The net's parts: the payments, interchange and the switch's fees.
    pub gross: String,
    pub interchange: String,
    pub fees: String,
}

pub fn summarize(path: &Path) -> Result<Summary, VerifyError> {
    let manifest = read_manifest(path)?;
    let rows = read_positions(path, &manifest)?;
    let participants = rows
        .values()
        .map(|row| ParticipantNet {
            participant: row.participant,
            name: row.name.clone(),
            currency: row.currency.to_string(),
            net: amount_string(row.position.net(), row.currency.exponent()),
            net_minor: row.position.net(),
            gross: amount_string(row.components[0], row.currency.exponent()),
            interchange: amount_string(row.components[1], row.currency.exponent()),
            fees: amount_string(row.components[2], row.currency.exponent()),
        })
        .collect();
    let currencies = manifest
        .currencies
        .iter()
        .map(|totals| CurrencySummary {
            currency: totals.currency.clone(),
            participants: totals.participants,
            debits: totals.debits.clone(),
            credits: totals.credits.clone(),
            net_sum: totals.net_sum.clone(),
            settlement_amount: totals.settlement_amount.clone(),
        })
        .collect();
    Ok(Summary {
        window: manifest.window,
        cut_off: manifest.cut_off,
        journal_first_seq: manifest.journal_first_seq,
        journal_last_seq: manifest.journal_last_seq,
        transfers: manifest.records.transfers,
        transactions: manifest.records.transactions,
        currencies,
        participants,
    })
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "window {} cut off at {} (journal entries {}..={}), {} transactions, {} transfers",
            self.window, self.cut_off, self.journal_first_seq, self.journal_last_seq, self.transactions, self.transfers
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<8} {:>12} {:>22} {:>22} {:>22} {:>8}",
            "currency", "participants", "debits", "credits", "to settle", "net sum"
        )?;
        for c in &self.currencies {
            writeln!(
                f,
                "{:<8} {:>12} {:>22} {:>22} {:>22} {:>8}",
                c.currency, c.participants, c.debits, c.credits, c.settlement_amount, c.net_sum
            )?;
        }
        writeln!(f)?;
        writeln!(f, "net positions (+ owed to the participant, - owed by it) = payments + interchange + fees:")?;
        writeln!(
            f,
            "{:>10}  {:<32} {:<3} {:>18} {:>18} {:>14} {:>14}",
            "id", "participant", "ccy", "net", "payments", "interchange", "fees"
        )?;
        for p in &self.participants {
            writeln!(
                f,
                "{:>10}  {:<32} {:<3} {:>18} {:>18} {:>14} {:>14}",
                p.participant, p.name, p.currency, p.net, p.gross, p.interchange, p.fees
            )?;
        }
        Ok(())
    }
}
