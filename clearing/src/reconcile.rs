//! `junction clearing reconcile`: a participant's own records of a window against the
//! switch's files, row by row on the RRN.
//!
//! The participant's records are a CSV file with a header naming at least `rrn`,
//! `currency` (ISO 4217 alphabetic), `amount` (decimal, in major units: `12.34`) or
//! `amount_minor` (whole minor units: `1234`) and `response_code`; an `auth_code` column
//! is compared too when present, other columns are ignored. Each record
//! is matched with the row of the same RRN in the participant's own transactions file
//! (`transactions-<id>.csv`, every row naming the participant), or in `transactions.csv`
//! when no participant is given. A record without a row, a row without a record, and a
//! pair that differs in amount, currency, response code or authorization code are each
//! reported; the totals per currency are compared for approved rows.

use crate::format::TRANSACTIONS_HEADER;
use crate::manifest::{participant_transactions_file_name, TRANSACTIONS_FILE};
use crate::text::{amount_string, parse_amount};
use crate::verify::{verify_folder, VerifyError};
use junction_ledger::Currency;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Differences listed in full in a report; beyond it they are only counted.
pub const RECONCILE_LISTED_MAX: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("the window folder does not verify, so it cannot be reconciled against: {0}")]
    Folder(#[from] VerifyError),
    #[error("the folder has no transactions file for participant {0}: no row of the window names it")]
    NoParticipantFile(u64),
    #[error("{}: {problem}", path.display())]
    Records { path: PathBuf, problem: String },
}

/// One side's view of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub rrn: String,
    pub currency: String,
    /// Minor units.
    pub amount_minor: i128,
    pub response_code: String,
    pub auth_code: Option<String>,
    /// Where it is: the line in its file.
    pub line: u64,
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let exponent = Currency::from_code(&self.currency).map_or(0, |c| c.exponent());
        write!(
            f,
            "rrn {} {} {} code {}",
            self.rrn,
            amount_string(self.amount_minor, exponent),
            self.currency,
            self.response_code
        )?;
        if let Some(auth) = &self.auth_code {
            write!(f, " auth {auth}")?;
        }
        Ok(())
    }
}

/// Totals of approved rows of one currency on each side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub records_count: u64,
    pub records_minor: i128,
    pub files_count: u64,
    pub files_minor: i128,
}

#[derive(Debug, Clone, Default)]
pub struct ReconcileReport {
    pub window: u64,
    pub compared_file: String,
    pub records: u64,
    pub rows: u64,
    pub matched: u64,
    /// In the participant's records, not in the switch's files.
    pub missing_from_files: Vec<Entry>,
    /// In the switch's files, not in the participant's records.
    pub missing_from_records: Vec<Entry>,
    /// (the participant's record, the switch's row) that differ.
    pub differing: Vec<(Entry, Entry)>,
    /// RRNs that appear more than once on one side (each extra one).
    pub duplicated: Vec<Entry>,
    pub totals: BTreeMap<String, Totals>,
}

impl ReconcileReport {
    pub fn differences(&self) -> usize {
        self.missing_from_files.len() + self.missing_from_records.len() + self.differing.len() + self.duplicated.len()
    }

    pub fn is_clean(&self) -> bool {
        self.differences() == 0 && self.totals.values().all(|t| t.records_minor == t.files_minor)
    }
}

impl std::fmt::Display for ReconcileReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "window {} ({}): {} records, {} rows", self.window, self.compared_file, self.records, self.rows)?;
        writeln!(f, "matched: {}", self.matched)?;
        let lists: [(&str, Vec<String>); 4] = [
            (
                "in your records, not in the switch's files",
                self.missing_from_files.iter().map(|e| format!("{e} (records line {})", e.line)).collect(),
            ),
            (
                "in the switch's files, not in your records",
                self.missing_from_records
                    .iter()
                    .map(|e| format!("{e} ({} line {})", self.compared_file, e.line))
                    .collect(),
            ),
            (
                "different",
                self.differing
                    .iter()
                    .map(|(mine, theirs)| {
                        format!("yours: {mine} (line {}); switch: {theirs} (line {})", mine.line, theirs.line)
                    })
                    .collect(),
            ),
            ("RRN more than once", self.duplicated.iter().map(|e| format!("{e} (line {})", e.line)).collect()),
        ];
        for (title, items) in lists {
            writeln!(f, "{title}: {}", items.len())?;
            for item in items.iter().take(RECONCILE_LISTED_MAX) {
                writeln!(f, "  {item}")?;
            }
            if items.len() > RECONCILE_LISTED_MAX {
                writeln!(f, "  ... and {} more", items.len() - RECONCILE_LISTED_MAX)?;
            }
        }
        writeln!(f, "approved totals:")?;
        for (currency, totals) in &self.totals {
            let exponent = Currency::from_code(currency).map_or(0, |c| c.exponent());
            let verdict = if totals.records_minor == totals.files_minor { "equal" } else { "DIFFERENT" };
            writeln!(
                f,
                "  {currency}: yours {} in {} rows, switch {} in {} rows: {verdict}",
                amount_string(totals.records_minor, exponent),
                totals.records_count,
                amount_string(totals.files_minor, exponent),
                totals.files_count,
            )?;
        }
        write!(f, "{}", if self.is_clean() { "RECONCILED" } else { "DIFFERENCES FOUND" })
    }
}

/// Reconciles `records` (the participant's CSV) against the window folder `folder`, after
/// verifying the folder. `participant`: compare with its own file (every row naming it).
pub fn reconcile(folder: &Path, participant: Option<u64>, records: &Path) -> Result<ReconcileReport, ReconcileError> {
    let manifest = verify_folder(folder)?.manifest;
    let file_name = match participant {
        Some(id) => {
            let name = participant_transactions_file_name(id);
            if !manifest.files.iter().any(|entry| entry.name == name) {
                return Err(ReconcileError::NoParticipantFile(id));
            }
            name
        }
        None => TRANSACTIONS_FILE.to_string(),
    };
    let rows = read_entries(&folder.join(&file_name), Columns::of_header(TRANSACTIONS_HEADER)?)?;
    let mine = read_entries(records, Columns::Named)?;
    let mut report = ReconcileReport {
        window: manifest.window,
        compared_file: file_name,
        records: mine.len() as u64,
        rows: rows.len() as u64,
        ..ReconcileReport::default()
    };
    let mut by_rrn: HashMap<String, Entry> = HashMap::with_capacity(rows.len());
    for row in rows {
        add_total(&mut report.totals, &row, false);
        if by_rrn.contains_key(&row.rrn) {
            report.duplicated.push(row);
        } else {
            by_rrn.insert(row.rrn.clone(), row);
        }
    }
    let mut seen: HashMap<String, u64> = HashMap::with_capacity(mine.len());
    for record in mine {
        add_total(&mut report.totals, &record, true);
        if seen.insert(record.rrn.clone(), record.line).is_some() {
            report.duplicated.push(record);
            continue;
        }
        match by_rrn.remove(&record.rrn) {
            None => report.missing_from_files.push(record),
            Some(row) => {
                let auth_differs = matches!((&record.auth_code, &row.auth_code), (Some(a), Some(b)) if a != b);
                if record.amount_minor != row.amount_minor
                    || record.currency != row.currency
                    || record.response_code != row.response_code
                    || auth_differs
                {
                    report.differing.push((record, row));
                } else {
                    report.matched += 1;
                }
            }
        }
    }
    let mut left: Vec<Entry> = by_rrn.into_values().collect();
    left.sort_by_key(|entry| entry.line);
    report.missing_from_records = left;
    Ok(report)
}

fn add_total(totals: &mut BTreeMap<String, Totals>, entry: &Entry, records: bool) {
    if entry.response_code != "00" {
        return;
    }
    let total = totals.entry(entry.currency.clone()).or_default();
    if records {
        total.records_count += 1;
        total.records_minor += entry.amount_minor;
    } else {
        total.files_count += 1;
        total.files_minor += entry.amount_minor;
    }
}

/// Where the compared columns are: fixed (the switch's own header) or found by name.
enum Columns {
    Fixed { rrn: usize, currency: usize, amount: Amount, response: usize, auth: Option<usize> },
    Named,
}

/// An amount column: decimal in major units, or an integer of minor units.
#[derive(Clone, Copy)]
enum Amount {
    Major(usize),
    Minor(usize),
}

impl Columns {
    fn of_header(header: &str) -> Result<Columns, ReconcileError> {
        let names: Vec<&str> = header.trim_end().split(',').collect();
        Self::find(&names).ok_or_else(|| ReconcileError::Records {
            path: PathBuf::from(TRANSACTIONS_FILE),
            problem: "the switch's header lacks a compared column".into(),
        })
    }

    fn find(names: &[&str]) -> Option<Columns> {
        let at = |name: &str| names.iter().position(|n| n.trim() == name);
        Some(Columns::Fixed {
            rrn: at("rrn")?,
            currency: at("currency")?,
            amount: at("amount").map(Amount::Major).or_else(|| at("amount_minor").map(Amount::Minor))?,
            response: at("response_code")?,
            auth: at("auth_code"),
        })
    }
}

fn read_entries(path: &Path, columns: Columns) -> Result<Vec<Entry>, ReconcileError> {
    let problem = |problem: String| ReconcileError::Records { path: path.to_path_buf(), problem };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| problem(e.to_string()))?;
    let columns = match columns {
        Columns::Named => {
            let header = reader.headers().map_err(|e| problem(e.to_string()))?.clone();
            let names: Vec<&str> = header.iter().collect();
            Columns::find(&names).ok_or_else(|| {
                problem(
                    "the header must name rrn, currency, amount (or amount_minor) and response_code \
                     (auth_code optional)"
                        .into(),
                )
            })?
        }
        fixed => fixed,
    };
    let Columns::Fixed { rrn, currency, amount, response, auth } = columns else {
        return Err(problem("no columns".into()));
    };
    let mut entries = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| problem(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |index: usize| record.get(index).unwrap_or("");
        let code = field(currency);
        let parsed_currency = Currency::from_code(code)
            .map_err(|_| problem(format!("line {line}: currency {code:?} is not an ISO 4217 code")))?;
        let amount_minor = match amount {
            Amount::Major(index) => parse_amount(field(index), parsed_currency.exponent()),
            Amount::Minor(index) => field(index).parse::<u64>().ok().map(i128::from),
        }
        .ok_or_else(|| {
            problem(format!(
                "line {line}: the amount is not a {code} amount (`amount`: major units with {} decimals; \
                 `amount_minor`: whole minor units)",
                parsed_currency.exponent()
            ))
        })?;
        if field(rrn).is_empty() {
            return Err(problem(format!("line {line}: the rrn is empty")));
        }
        entries.push(Entry {
            rrn: field(rrn).to_string(),
            currency: code.to_string(),
            amount_minor,
            response_code: field(response).to_string(),
            auth_code: auth.map(|index| field(index).to_string()).filter(|a| !a.is_empty()),
            line,
        });
    }
    Ok(entries)
}
