//! Checking a clearing folder on its own (a copy on another machine, without the daemon or
//! the database). One module per thing checked: `files` (the manifest, the set of files,
//! sizes and digests), `positions`, `transfers`, `statements` (camt.053) and
//! `instructions` (pacs.009).
//!
//! `verify_folder` stops at the first problem and names it in plain words: the file, the
//! line or participant and currency, what was expected and what was found. Order of
//! checks: the manifest; the set of files; every file's size and SHA-256; positions.csv
//! against the manifest's control totals (and nets summing to zero); transfers.csv,
//! aggregated the way the ledger nets, against positions.csv; transactions.csv, and each
//! participant's transactions file against its rows of it; the camt.053 statements and
//! the pacs.009 instructions against positions.csv. A partitioned switch's merged set is
//! also checked for a part of every partition, adding up to the whole (`cluster`).

mod cluster;
mod files;
mod instructions;
mod positions;
mod statements;
mod transactions;
mod transfers;

pub(crate) use files::read_manifest;
pub(crate) use positions::read_positions;

use crate::iso20022::{self, ParsedAmount};
use crate::manifest::Manifest;
use crate::text::parse_amount;
use junction_ledger::Currency;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Most bytes of `manifest.json` read into memory.
pub(crate) const MANIFEST_BYTES_MAX: u64 = 64 << 20;

/// Most bytes of `positions.csv` read (it has one row per participant and currency).
pub(crate) const POSITIONS_BYTES_MAX: u64 = 256 << 20;

/// Why a clearing folder does not verify: the first problem found.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{file}: cannot read it: {source}")]
    Io { file: String, source: std::io::Error },
    #[error("manifest.json: {0}")]
    Manifest(String),
    #[error("{file} is listed in manifest.json but missing from the folder")]
    MissingFile { file: String },
    #[error("{file} is in the folder but not listed in manifest.json")]
    ExtraFile { file: String },
    #[error("{file}: size is {found} bytes but manifest.json says {expected}: the file was changed or damaged")]
    SizeMismatch { file: String, expected: u64, found: u64 },
    #[error("{file}: SHA-256 is {found} but manifest.json says {expected}: the file was changed or damaged")]
    HashMismatch { file: String, expected: String, found: String },
    #[error("{file}, {location}: {problem}")]
    Malformed { file: String, location: String, problem: String },
    #[error("{file}, {location}: {what} should be {expected} but is {found}")]
    Mismatch { file: String, location: String, what: String, expected: String, found: String },
}

pub(crate) fn malformed(file: &str, location: impl Into<String>, problem: impl Into<String>) -> VerifyError {
    VerifyError::Malformed { file: file.to_string(), location: location.into(), problem: problem.into() }
}

pub(crate) fn mismatch(
    file: &str,
    location: impl Into<String>,
    what: &str,
    expected: impl fmt::Display,
    found: impl fmt::Display,
) -> VerifyError {
    VerifyError::Mismatch {
        file: file.to_string(),
        location: location.into(),
        what: what.to_string(),
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub manifest: Manifest,
    /// Files whose digest was checked (the manifest not counted).
    pub files_checked: u64,
    pub bytes_checked: u64,
}

/// Checks a clearing folder completely; see the module documentation for what.
pub fn verify_folder(path: &Path) -> Result<VerifyReport, VerifyError> {
    let manifest = files::read_manifest(path)?;
    let bytes_checked = files::check_files(path, &manifest)?;
    let positions = positions::read_positions(path, &manifest)?;
    positions::check_positions_against_manifest(&manifest, &positions)?;
    if let Some(cluster) = &manifest.cluster {
        cluster::check_cluster(&manifest, cluster)?;
    }
    transfers::check_transfers(path, &manifest, &positions)?;
    transactions::check_transactions(path, &manifest, &positions)?;
    statements::check_statements(path, &manifest, &positions)?;
    instructions::check_instructions(path, &manifest, &positions)?;
    Ok(VerifyReport { files_checked: manifest.files.len() as u64, bytes_checked, manifest })
}

pub(crate) fn read_limited(path: &Path, file: &str, limit: u64) -> Result<String, VerifyError> {
    let io = |source| VerifyError::Io { file: file.to_string(), source };
    let handle = File::open(path.join(file)).map_err(io)?;
    let mut text = String::new();
    let read = handle.take(limit + 1).read_to_string(&mut text);
    match read {
        Ok(length) if length as u64 > limit => Err(malformed(file, "whole file", format!("larger than {limit} bytes"))),
        Ok(_) => Ok(text),
        Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
            Err(malformed(file, "whole file", "not UTF-8 text"))
        }
        Err(error) => Err(io(error)),
    }
}

pub(crate) fn csv_location(position: Option<&csv::Position>) -> String {
    position.map_or_else(|| "unknown line".to_string(), |p| format!("line {}", p.line()))
}

pub(crate) fn header_of(text: &str) -> Vec<&str> {
    text.trim_end().split(',').collect()
}

pub(crate) fn check_header(file: &str, record: &csv::StringRecord, header: &str) -> Result<(), VerifyError> {
    let expected = header_of(header);
    if record.iter().collect::<Vec<_>>() != expected {
        return Err(mismatch(
            file,
            "line 1",
            "the header",
            expected.join(","),
            record.iter().collect::<Vec<_>>().join(","),
        ));
    }
    Ok(())
}

/// An amount element: the right currency, an amount with the currency's exponent.
pub(crate) fn xml_amount(
    file: &str,
    location: &str,
    what: &str,
    amount: &ParsedAmount,
    currency: Currency,
) -> Result<i128, VerifyError> {
    if amount.currency.as_deref() != Some(currency.code()) {
        return Err(mismatch(
            file,
            location,
            &format!("the Ccy of {what}"),
            currency,
            amount.currency.as_deref().unwrap_or("none"),
        ));
    }
    parse_amount(&amount.text, currency.exponent()).filter(|value| *value >= 0).ok_or_else(|| {
        malformed(
            file,
            location,
            format!("{what} {:?} is not an amount with {} decimals", amount.text, currency.exponent()),
        )
    })
}

pub(crate) fn signed_by(indicator: &str, amount: i128, file: &str, location: &str) -> Result<i128, VerifyError> {
    match indicator {
        iso20022::CREDIT => Ok(amount),
        iso20022::DEBIT => Ok(-amount),
        other => Err(malformed(file, location, format!("CdtDbtInd {other:?} is neither CRDT nor DBIT"))),
    }
}
