//! Checking a clearing folder on its own (a copy on another machine, without the daemon or
//! the database), and summarising it for `junction clearing show`.
//!
//! `verify_folder` stops at the first problem and names it in plain words: the file, the
//! line or participant and currency, what was expected and what was found. Order of
//! checks: the manifest; the set of files; every file's size and SHA-256; positions.csv
//! against the manifest's control totals (and nets summing to zero); transfers.csv,
//! aggregated the way the ledger nets, against positions.csv; the camt.053 statements and
//! the pacs.009 instructions against positions.csv.

use super::iso20022::{self, ParsedAmount, XML_FILE_BYTES_MAX};
use super::manifest::{
    currency_totals, instruction_file_name, statement_file_name, CurrencyTotals, Manifest, MANIFEST_FILE,
    MANIFEST_FORMAT, MANIFEST_FORMAT_VERSION, POSITIONS_FILE, TRANSFERS_FILE,
};
use super::sink::{hash_file, READ_BUFFER_BYTES};
use super::text::{amount_string, parse_amount, parse_digits, parse_u64};
use super::write::{add_movement, TransferKind, POSITIONS_HEADER, TRANSFERS_HEADER};
use crate::currency::Currency;
use crate::types::{ParticipantId, Position};
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// Most bytes of `manifest.json` read into memory.
const MANIFEST_BYTES_MAX: u64 = 64 << 20;

/// Most bytes of `positions.csv` read (it has one row per participant and currency).
const POSITIONS_BYTES_MAX: u64 = 256 << 20;

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

fn malformed(file: &str, location: impl Into<String>, problem: impl Into<String>) -> VerifyError {
    VerifyError::Malformed { file: file.to_string(), location: location.into(), problem: problem.into() }
}

fn mismatch(
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
    let manifest = read_manifest(path)?;
    let bytes_checked = check_files(path, &manifest)?;
    let positions = read_positions(path, &manifest)?;
    check_positions_against_manifest(&manifest, &positions)?;
    check_transfers(path, &manifest, &positions)?;
    check_statements(path, &manifest, &positions)?;
    check_instructions(path, &manifest, &positions)?;
    Ok(VerifyReport { files_checked: manifest.files.len() as u64, bytes_checked, manifest })
}

fn read_limited(path: &Path, file: &str, limit: u64) -> Result<String, VerifyError> {
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

fn read_manifest(path: &Path) -> Result<Manifest, VerifyError> {
    let text = read_limited(path, MANIFEST_FILE, MANIFEST_BYTES_MAX)?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|error| VerifyError::Manifest(format!("not a valid manifest: {error}")))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(VerifyError::Manifest(format!("format is {:?}, expected {MANIFEST_FORMAT:?}", manifest.format)));
    }
    if manifest.format_version != MANIFEST_FORMAT_VERSION {
        return Err(VerifyError::Manifest(format!(
            "format version is {}, this build reads version {MANIFEST_FORMAT_VERSION}",
            manifest.format_version
        )));
    }
    Ok(manifest)
}

/// The folder holds exactly the manifest's files, each with its recorded size and digest.
fn check_files(path: &Path, manifest: &Manifest) -> Result<u64, VerifyError> {
    let mut listed = BTreeSet::new();
    for entry in &manifest.files {
        let plain = !entry.name.is_empty()
            && !entry.name.starts_with('.')
            && !entry.name.contains(['/', '\\'])
            && entry.name != MANIFEST_FILE;
        if !plain {
            return Err(VerifyError::Manifest(format!("lists a file named {:?}, which is not allowed", entry.name)));
        }
        if !listed.insert(entry.name.as_str()) {
            return Err(VerifyError::Manifest(format!("lists {} twice", entry.name)));
        }
    }
    for required in [POSITIONS_FILE, TRANSFERS_FILE] {
        if !listed.contains(required) {
            return Err(VerifyError::Manifest(format!("does not list {required}")));
        }
    }
    let io = |source| VerifyError::Io { file: path.display().to_string(), source };
    let mut present = BTreeSet::new();
    for item in std::fs::read_dir(path).map_err(io)? {
        let item = item.map_err(io)?;
        present.insert(item.file_name().to_string_lossy().into_owned());
    }
    for entry in &manifest.files {
        if !present.contains(&entry.name) {
            return Err(VerifyError::MissingFile { file: entry.name.clone() });
        }
    }
    if let Some(extra) = present.iter().find(|name| *name != MANIFEST_FILE && !listed.contains(name.as_str())) {
        return Err(VerifyError::ExtraFile { file: extra.clone() });
    }
    let mut bytes_checked = 0u64;
    for entry in &manifest.files {
        let file_path = path.join(&entry.name);
        if !file_path.is_file() {
            return Err(malformed(&entry.name, "whole file", "not a regular file"));
        }
        let (bytes, sha256) =
            hash_file(&file_path).map_err(|source| VerifyError::Io { file: entry.name.clone(), source })?;
        if bytes != entry.bytes {
            return Err(VerifyError::SizeMismatch { file: entry.name.clone(), expected: entry.bytes, found: bytes });
        }
        if sha256 != entry.sha256 {
            return Err(VerifyError::HashMismatch {
                file: entry.name.clone(),
                expected: entry.sha256.clone(),
                found: sha256,
            });
        }
        bytes_checked += bytes;
    }
    Ok(bytes_checked)
}

/// One row of positions.csv, checked for internal consistency.
#[derive(Debug, Clone)]
struct PositionRow {
    line: u64,
    participant: u64,
    name: String,
    currency: Currency,
    position: Position,
}

impl PositionRow {
    fn location(&self) -> String {
        format!("line {} (participant {}, {})", self.line, self.participant, self.currency)
    }
}

type PositionKey = (u64, Currency);

fn csv_location(position: Option<&csv::Position>) -> String {
    position.map_or_else(|| "unknown line".to_string(), |p| format!("line {}", p.line()))
}

fn header_of(text: &str) -> Vec<&str> {
    text.trim_end().split(',').collect()
}

fn check_header(file: &str, record: &csv::StringRecord, header: &str) -> Result<(), VerifyError> {
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

fn read_positions(path: &Path, manifest: &Manifest) -> Result<BTreeMap<PositionKey, PositionRow>, VerifyError> {
    let file = POSITIONS_FILE;
    let text = read_limited(path, file, POSITIONS_BYTES_MAX)?;
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(text.as_bytes());
    let mut rows = BTreeMap::new();
    let mut previous: Option<(u64, String)> = None;
    let mut record = csv::StringRecord::new();
    let mut first = true;
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => return Err(malformed(file, csv_location(error.position()), error.to_string())),
        }
        if first {
            check_header(file, &record, POSITIONS_HEADER)?;
            first = false;
            continue;
        }
        let line = record.position().map_or(0, |p| p.line());
        let row = parse_position_row(file, line, &record)?;
        let sort_key = (row.participant, row.currency.code().to_string());
        if previous.as_ref().is_some_and(|previous| *previous >= sort_key) {
            return Err(malformed(file, row.location(), "rows are not sorted by participant and currency, or repeat"));
        }
        previous = Some(sort_key);
        rows.insert((row.participant, row.currency), row);
    }
    if first {
        return Err(malformed(file, "line 1", "the header is missing"));
    }
    if rows.len() as u64 != manifest.records.positions {
        return Err(mismatch(file, "whole file", "the number of rows", manifest.records.positions, rows.len()));
    }
    Ok(rows)
}

fn parse_position_row(file: &str, line: u64, record: &csv::StringRecord) -> Result<PositionRow, VerifyError> {
    let location = format!("line {line}");
    let field = |index: usize| record.get(index).unwrap_or("");
    let participant =
        parse_u64(field(0)).ok_or_else(|| malformed(file, &location, "participant_id is not a number"))?;
    let currency = Currency::from_code(field(2))
        .map_err(|_| malformed(file, &location, format!("currency {:?} is not a known ISO 4217 code", field(2))))?;
    let location = format!("line {line} (participant {participant}, {currency})");
    let count = |index: usize, name: &str| {
        parse_u64(field(index)).ok_or_else(|| malformed(file, &location, format!("{name} is not a count")))
    };
    let debit_count = count(3, "debit_count")?;
    let credit_count = count(4, "credit_count")?;
    let exponent = currency.exponent();
    let minor = |index: usize, name: &str| {
        let text = field(index);
        let negative = text.starts_with('-');
        let digits = text.strip_prefix('-').unwrap_or(text);
        parse_digits(digits)
            .and_then(|value| i128::try_from(value).ok())
            .map(|value| if negative { -value } else { value })
            .ok_or_else(|| malformed(file, &location, format!("{name} is not a whole number of minor units")))
    };
    let debits = minor(8, "debits_minor")?;
    let credits = minor(9, "credits_minor")?;
    let net = minor(10, "net_minor")?;
    if debits < 0 || credits < 0 {
        return Err(malformed(file, &location, "debits and credits must not be negative"));
    }
    for (index, name, minor_name, value) in
        [(5, "debits", "debits_minor", debits), (6, "credits", "credits_minor", credits), (7, "net", "net_minor", net)]
    {
        let decimal = parse_amount(field(index), exponent).ok_or_else(|| {
            malformed(file, &location, format!("{name} {:?} is not an amount with {exponent} decimals", field(index)))
        })?;
        if decimal != value {
            return Err(mismatch(
                file,
                &location,
                &format!("{name} (from {minor_name} {value})"),
                amount_string(value, exponent),
                field(index),
            ));
        }
    }
    if net != credits - debits {
        return Err(mismatch(file, &location, "net (credits - debits)", credits - debits, net));
    }
    if (debit_count == 0) != (debits == 0) || (credit_count == 0) != (credits == 0) || debit_count + credit_count == 0 {
        return Err(malformed(
            file,
            &location,
            "counts and amounts disagree (a count of zero needs an amount of zero)",
        ));
    }
    Ok(PositionRow {
        line,
        participant,
        name: field(1).to_string(),
        currency,
        position: Position {
            debits: debits.unsigned_abs(),
            credits: credits.unsigned_abs(),
            debit_count,
            credit_count,
        },
    })
}

fn check_positions_against_manifest(
    manifest: &Manifest,
    rows: &BTreeMap<PositionKey, PositionRow>,
) -> Result<(), VerifyError> {
    let computed: BTreeMap<String, CurrencyTotals> =
        currency_totals(rows.values().map(|row| (row.currency, &row.position)))
            .into_iter()
            .map(|(currency, totals)| (currency.to_string(), totals))
            .collect();
    // Zero-sum first: it is the invariant that matters most, whatever the manifest says.
    for totals in computed.values() {
        if totals.net_sum_minor != "0" {
            return Err(mismatch(
                POSITIONS_FILE,
                format!("currency {}", totals.currency),
                "the sum of all nets",
                "0",
                &totals.net_sum,
            ));
        }
    }
    let mut listed = BTreeMap::new();
    for totals in &manifest.currencies {
        if listed.insert(totals.currency.clone(), totals).is_some() {
            return Err(VerifyError::Manifest(format!("lists currency {} twice", totals.currency)));
        }
        if totals.net_sum_minor != "0" || parse_amount(&totals.net_sum, totals.exponent) != Some(0) {
            return Err(mismatch(
                MANIFEST_FILE,
                format!("currency {}", totals.currency),
                "the sum of all nets",
                "0",
                &totals.net_sum,
            ));
        }
    }
    for (currency, expected) in &computed {
        let Some(found) = listed.get(currency) else {
            return Err(malformed(
                MANIFEST_FILE,
                format!("currency {currency}"),
                "positions.csv has this currency but the manifest has no control totals for it",
            ));
        };
        let fields: [(&str, String, String); 12] = [
            ("exponent", expected.exponent.to_string(), found.exponent.to_string()),
            ("participants", expected.participants.to_string(), found.participants.to_string()),
            ("debit_count", expected.debit_count.to_string(), found.debit_count.to_string()),
            ("credit_count", expected.credit_count.to_string(), found.credit_count.to_string()),
            ("debits", expected.debits.clone(), found.debits.clone()),
            ("credits", expected.credits.clone(), found.credits.clone()),
            ("net_sum", expected.net_sum.clone(), found.net_sum.clone()),
            ("settlement_amount", expected.settlement_amount.clone(), found.settlement_amount.clone()),
            ("debits_minor", expected.debits_minor.clone(), found.debits_minor.clone()),
            ("credits_minor", expected.credits_minor.clone(), found.credits_minor.clone()),
            ("net_sum_minor", expected.net_sum_minor.clone(), found.net_sum_minor.clone()),
            (
                "settlement_amount_minor",
                expected.settlement_amount_minor.clone(),
                found.settlement_amount_minor.clone(),
            ),
        ];
        for (name, from_positions, in_manifest) in fields {
            if from_positions != in_manifest {
                return Err(mismatch(
                    MANIFEST_FILE,
                    format!("currency {currency}"),
                    &format!("control total {name} (positions.csv sums to {from_positions})"),
                    from_positions,
                    in_manifest,
                ));
            }
        }
    }
    if let Some(extra) = listed.keys().find(|currency| !computed.contains_key(*currency)) {
        return Err(malformed(
            MANIFEST_FILE,
            format!("currency {extra}"),
            "the manifest has control totals for a currency positions.csv does not have",
        ));
    }
    Ok(())
}

const TRANSFER_FIELDS: usize = 15;

fn is_hex(text: &[u8], length: usize) -> bool {
    text.len() == length && text.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// Hex without leading zeros, as account ids are written (never zero).
fn is_short_hex(text: &[u8]) -> bool {
    text.first().is_some_and(|b| *b != b'0') && text.len() <= 32 && is_hex(text, text.len())
}

fn is_reference(text: &[u8], length: usize) -> bool {
    text.len() == length && text.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b) || *b == b'*')
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`: fixed width, so such timestamps compare as bytes.
fn is_timestamp(text: &[u8]) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd.dddddddddZ";
    text.len() == SHAPE.len()
        && text.iter().zip(SHAPE).all(|(b, s)| if *s == b'd' { b.is_ascii_digit() } else { b == s })
}

/// Streams transfers.csv (constant memory), checks every row, and compares its netting
/// (money-moving transfers between different participants) with positions.csv.
fn check_transfers(
    path: &Path,
    manifest: &Manifest,
    rows: &BTreeMap<PositionKey, PositionRow>,
) -> Result<(), VerifyError> {
    let file = TRANSFERS_FILE;
    let handle = File::open(path.join(file)).map_err(|source| VerifyError::Io { file: file.to_string(), source })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .buffer_capacity(READ_BUFFER_BYTES)
        .from_reader(BufReader::with_capacity(READ_BUFFER_BYTES, handle));
    let mut record = csv::ByteRecord::new();
    let mut computed: FxHashMap<(ParticipantId, Currency), Position> = FxHashMap::default();
    let mut currencies: Vec<Currency> = Vec::new();
    let mut previous_timestamp = Vec::new();
    let mut count = 0u64;
    let mut first = true;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => return Err(malformed(file, csv_location(error.position()), error.to_string())),
        }
        if first {
            let header = csv::StringRecord::from_byte_record(record.clone())
                .map_err(|_| malformed(file, "line 1", "the header is not UTF-8"))?;
            check_header(file, &header, TRANSFERS_HEADER)?;
            first = false;
            continue;
        }
        count += 1;
        let line = record.position().map_or(0, |p| p.line());
        let location = || format!("line {line}");
        if record.len() != TRANSFER_FIELDS {
            return Err(malformed(file, location(), format!("{} fields, expected {TRANSFER_FIELDS}", record.len())));
        }
        let field = |index: usize| record.get(index).unwrap_or(b"");
        let text = |index: usize| std::str::from_utf8(field(index)).unwrap_or("");
        let bad = |name: &str| malformed(file, location(), format!("{name} {:?} is not valid", text_of(&record, name)));
        if !is_hex(field(0), 32) {
            return Err(bad("transfer_id"));
        }
        for (index, name) in [(6, "debit_account"), (8, "credit_account")] {
            if !is_short_hex(field(index)) {
                return Err(bad(name));
            }
        }
        if !is_timestamp(field(1)) {
            return Err(bad("timestamp"));
        }
        if field(1) <= previous_timestamp.as_slice() {
            return Err(malformed(file, location(), "timestamps must increase strictly in commit order"));
        }
        previous_timestamp.clear();
        previous_timestamp.extend_from_slice(field(1));
        if parse_u64(text(2)).is_none_or(|code| code > u64::from(u16::MAX)) {
            return Err(bad("code"));
        }
        let kind = TransferKind::parse(text(3)).ok_or_else(|| bad("kind"))?;
        if !matches!(field(4), b"true" | b"false") {
            return Err(bad("linked"));
        }
        // A post or void names the hold it resolves; nothing else names one.
        let resolves = matches!(kind, TransferKind::Post | TransferKind::Void);
        let pending_ok = if resolves { is_hex(field(5), 32) } else { field(5).is_empty() };
        if !pending_ok {
            return Err(bad("pending_id"));
        }
        let debtor = parse_u64(text(7)).ok_or_else(|| bad("debit_participant"))?;
        let creditor = parse_u64(text(9)).ok_or_else(|| bad("credit_participant"))?;
        let currency = match currencies.iter().find(|c| c.code().as_bytes() == field(10)) {
            Some(currency) => *currency,
            None => {
                let currency = Currency::from_code(text(10)).map_err(|_| bad("currency"))?;
                currencies.push(currency);
                currency
            }
        };
        let amount = parse_u64(text(12)).filter(|amount| *amount > 0).ok_or_else(|| bad("amount_minor"))?;
        if parse_amount(text(11), currency.exponent()) != Some(i128::from(amount)) {
            return Err(mismatch(
                file,
                location(),
                &format!("amount (from amount_minor {amount})"),
                amount_string(i128::from(amount), currency.exponent()),
                text(11),
            ));
        }
        if !is_reference(field(13), 32) {
            return Err(bad("reference"));
        }
        if !is_reference(field(14), 16) {
            return Err(bad("user_data_64"));
        }
        if kind.moves_money() {
            add_movement(&mut computed, ParticipantId(debtor), ParticipantId(creditor), currency, amount);
        }
    }
    if first {
        return Err(malformed(file, "line 1", "the header is missing"));
    }
    if count != manifest.records.transfers {
        return Err(mismatch(file, "whole file", "the number of transfers", manifest.records.transfers, count));
    }
    for (key, row) in rows {
        let found = computed.remove(&(ParticipantId(key.0), key.1)).unwrap_or_default();
        let expected = row.position;
        let fields = [
            ("debit_count", u128::from(expected.debit_count), u128::from(found.debit_count)),
            ("credit_count", u128::from(expected.credit_count), u128::from(found.credit_count)),
            ("debits_minor", expected.debits, found.debits),
            ("credits_minor", expected.credits, found.credits),
        ];
        for (name, in_positions, from_transfers) in fields {
            if in_positions != from_transfers {
                return Err(mismatch(
                    file,
                    format!("participant {}, {}", key.0, key.1),
                    &format!("{name} summed over the transfers (positions.csv line {})", row.line),
                    in_positions,
                    from_transfers,
                ));
            }
        }
    }
    if let Some(((participant, currency), _)) =
        computed.into_iter().min_by_key(|((p, c), _)| (p.0, c.code().to_string()))
    {
        return Err(malformed(
            file,
            format!("participant {}, {currency}", participant.0),
            "the transfers move a position that positions.csv does not have",
        ));
    }
    Ok(())
}

/// The text of a named field of a transfers.csv row, for error messages.
fn text_of(record: &csv::ByteRecord, name: &str) -> String {
    let index = header_of(TRANSFERS_HEADER).iter().position(|field| *field == name).unwrap_or(0);
    String::from_utf8_lossy(record.get(index).unwrap_or(b"")).into_owned()
}

/// An amount element: the right currency, an amount with the currency's exponent.
fn xml_amount(
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

fn signed_by(indicator: &str, amount: i128, file: &str, location: &str) -> Result<i128, VerifyError> {
    match indicator {
        iso20022::CREDIT => Ok(amount),
        iso20022::DEBIT => Ok(-amount),
        other => Err(malformed(file, location, format!("CdtDbtInd {other:?} is neither CRDT nor DBIT"))),
    }
}

/// Splits `camt053-<participant>-<CCY>.xml`.
fn statement_name_parts(name: &str) -> Option<(u64, Currency)> {
    let middle = name.strip_prefix("camt053-")?.strip_suffix(".xml")?;
    let (participant, currency) = middle.rsplit_once('-')?;
    let participant = parse_u64(participant)?;
    let currency = Currency::from_code(currency).ok()?;
    (statement_file_name(participant, currency.code()) == name).then_some((participant, currency))
}

fn instruction_name_currency(name: &str) -> Option<Currency> {
    let code = name.strip_prefix("pacs009-")?.strip_suffix(".xml")?;
    let currency = Currency::from_code(code).ok()?;
    (instruction_file_name(currency.code()) == name).then_some(currency)
}

fn check_statements(
    path: &Path,
    manifest: &Manifest,
    rows: &BTreeMap<PositionKey, PositionRow>,
) -> Result<(), VerifyError> {
    let mut seen = BTreeSet::new();
    // Per currency: sums of opening and closing balances over all statements.
    let mut sums: BTreeMap<Currency, (i128, i128)> = BTreeMap::new();
    for entry in &manifest.files {
        let file = entry.name.as_str();
        if !file.starts_with("camt053-") {
            continue;
        }
        let (participant, currency) = statement_name_parts(file)
            .ok_or_else(|| malformed(file, "file name", "not camt053-<participant>-<CCY>.xml"))?;
        let xml = read_limited(path, file, XML_FILE_BYTES_MAX)?;
        let parsed = iso20022::parse_statement(&xml).map_err(|problem| malformed(file, "XML", problem))?;
        let location = format!("participant {participant}, {currency}");
        let location = location.as_str();
        if parsed.statements != 1 {
            return Err(mismatch(file, location, "the number of statements", 1, parsed.statements));
        }
        if parsed.participant_ids != [participant.to_string()] {
            return Err(mismatch(
                file,
                location,
                "the account owner's participant id",
                participant,
                parsed.participant_ids.join(" and "),
            ));
        }
        if parsed.account_currency != currency.code() {
            return Err(mismatch(file, location, "the account currency", currency, &parsed.account_currency));
        }
        let id = iso20022::statement_id(manifest.window, ParticipantId(participant), currency);
        if parsed.message_id != id || parsed.statement_id != id {
            return Err(mismatch(file, location, "the message and statement id", &id, &parsed.statement_id));
        }
        if parsed.sequence_number != manifest.window.to_string() {
            return Err(mismatch(
                file,
                location,
                "the sequence number (the window)",
                manifest.window,
                &parsed.sequence_number,
            ));
        }
        let codes: Vec<&str> = parsed.balances.iter().map(|b| b.code.as_str()).collect();
        if codes != [iso20022::BALANCE_OPENING, iso20022::BALANCE_CLOSING] {
            return Err(mismatch(file, location, "the balances", "OPBD, CLBD", codes.join(", ")));
        }
        let mut balances = [0i128; 2];
        for (slot, balance) in balances.iter_mut().zip(&parsed.balances) {
            let what = format!("the {} balance", balance.code);
            let amount = xml_amount(file, location, &what, &balance.amount, currency)?;
            *slot = signed_by(&balance.indicator, amount, file, location)?;
        }
        let [opening, closing] = balances;
        let (mut credits, mut credit_count, mut debits, mut debit_count) = (0i128, 0u64, 0i128, 0u64);
        let mut indicators = BTreeSet::new();
        for entry in &parsed.entries {
            if !indicators.insert(entry.indicator.as_str()) {
                return Err(malformed(file, location, format!("more than one {} entry", entry.indicator)));
            }
            let amount = xml_amount(file, location, "an entry's amount", &entry.amount, currency)?;
            let batch = xml_amount(file, location, "an entry's batch total", &entry.batch_amount, currency)?;
            if batch != amount || entry.batch_indicator != entry.indicator {
                return Err(mismatch(
                    file,
                    location,
                    &format!("the batch total of the {} entry", entry.indicator),
                    format!("{} {}", entry.amount.text, entry.indicator),
                    format!("{} {}", entry.batch_amount.text, entry.batch_indicator),
                ));
            }
            let count = parse_u64(&entry.batch_count)
                .ok_or_else(|| malformed(file, location, format!("NbOfTxs {:?} is not a count", entry.batch_count)))?;
            match entry.indicator.as_str() {
                iso20022::CREDIT => (credits, credit_count) = (amount, count),
                iso20022::DEBIT => (debits, debit_count) = (amount, count),
                other => {
                    return Err(malformed(file, location, format!("CdtDbtInd {other:?} is neither CRDT nor DBIT")))
                }
            }
        }
        let expected = rows.get(&(participant, currency)).map(|row| row.position).unwrap_or_default();
        let exponent = currency.exponent();
        let amounts = [
            ("the credit entry's total", i128::try_from(expected.credits).unwrap_or(i128::MAX), credits),
            ("the debit entry's total", i128::try_from(expected.debits).unwrap_or(i128::MAX), debits),
            ("closing balance - opening balance", expected.net(), closing - opening),
        ];
        for (what, from_positions, in_statement) in amounts {
            if from_positions != in_statement {
                return Err(mismatch(
                    file,
                    location,
                    &format!("{what} (from positions.csv)"),
                    amount_string(from_positions, exponent),
                    amount_string(in_statement, exponent),
                ));
            }
        }
        for (what, from_positions, in_statement) in [
            ("the credit entry's NbOfTxs", expected.credit_count, credit_count),
            ("the debit entry's NbOfTxs", expected.debit_count, debit_count),
        ] {
            if from_positions != in_statement {
                return Err(mismatch(
                    file,
                    location,
                    &format!("{what} (from positions.csv)"),
                    from_positions,
                    in_statement,
                ));
            }
        }
        if !rows.contains_key(&(participant, currency)) && opening == 0 {
            return Err(malformed(
                file,
                location,
                "a statement without a position in this window and without a balance",
            ));
        }
        let sum = sums.entry(currency).or_default();
        sum.0 += opening;
        sum.1 += closing;
        seen.insert((participant, currency));
    }
    if let Some((participant, currency)) = rows.keys().find(|key| !seen.contains(*key)) {
        return Err(VerifyError::MissingFile { file: statement_file_name(*participant, currency.code()) });
    }
    if seen.len() as u64 != manifest.records.statements {
        return Err(mismatch(
            MANIFEST_FILE,
            "records",
            "the number of statements",
            seen.len(),
            manifest.records.statements,
        ));
    }
    for (currency, (opening, closing)) in sums {
        for (what, sum) in [("opening", opening), ("closing", closing)] {
            if sum != 0 {
                return Err(mismatch(
                    "camt053 statements",
                    format!("currency {currency}"),
                    &format!("the sum of all {what} balances"),
                    amount_string(0, currency.exponent()),
                    amount_string(sum, currency.exponent()),
                ));
            }
        }
    }
    Ok(())
}

fn check_instructions(
    path: &Path,
    manifest: &Manifest,
    rows: &BTreeMap<PositionKey, PositionRow>,
) -> Result<(), VerifyError> {
    let mut files_seen = BTreeSet::new();
    let mut instructions = 0u64;
    for entry in &manifest.files {
        let file = entry.name.as_str();
        if !file.starts_with("pacs009-") {
            continue;
        }
        let currency =
            instruction_name_currency(file).ok_or_else(|| malformed(file, "file name", "not pacs009-<CCY>.xml"))?;
        files_seen.insert(currency);
        let xml = read_limited(path, file, XML_FILE_BYTES_MAX)?;
        let parsed = iso20022::parse_instructions(&xml).map_err(|problem| malformed(file, "XML", problem))?;
        let exponent = currency.exponent();
        let header = "group header";
        if parsed.count != parsed.transactions.len().to_string() {
            return Err(mismatch(
                file,
                header,
                "NbOfTxs (the number of transactions)",
                parsed.transactions.len(),
                &parsed.count,
            ));
        }
        let mut expected_nets: BTreeMap<u64, i128> = rows
            .iter()
            .filter(|((_, c), row)| *c == currency && row.position.net() != 0)
            .map(|((participant, _), row)| (*participant, row.position.net()))
            .collect();
        let mut sum = 0i128;
        let (mut paid, mut received) = (0i128, 0i128);
        for (index, transaction) in parsed.transactions.iter().enumerate() {
            let position = format!("transaction {}", index + 1);
            let amount = xml_amount(file, &position, "IntrBkSttlmAmt", &transaction.amount, currency)?;
            sum += amount;
            let bank = Some(manifest.settlement_bank_bic.as_str());
            let (member, net) = match (&transaction.debtor.member_id, &transaction.creditor.member_id) {
                (Some(member), None) if transaction.creditor.bic.as_deref() == bank => {
                    paid += amount;
                    (member, -amount)
                }
                (None, Some(member)) if transaction.debtor.bic.as_deref() == bank => {
                    received += amount;
                    (member, amount)
                }
                _ => {
                    return Err(malformed(
                        file,
                        position,
                        format!(
                            "must move money between one participant and the settlement bank {}",
                            manifest.settlement_bank_bic
                        ),
                    ))
                }
            };
            let participant = parse_u64(member)
                .ok_or_else(|| malformed(file, &position, format!("participant id {member:?} is not a number")))?;
            let location = format!("{position} (participant {participant})");
            let Some(expected) = expected_nets.remove(&participant) else {
                return Err(malformed(
                    file,
                    location,
                    "instructs a participant with no net to settle in this currency, or instructs it twice",
                ));
            };
            if expected != net {
                return Err(mismatch(
                    file,
                    location,
                    "the settled net (negative: pays the settlement bank) from positions.csv",
                    amount_string(expected, exponent),
                    amount_string(net, exponent),
                ));
            }
            let id = iso20022::instruction_id(manifest.window, ParticipantId(participant), currency);
            if transaction.id != id {
                return Err(mismatch(file, location, "EndToEndId", id, &transaction.id));
            }
        }
        if let Some((participant, net)) = expected_nets.into_iter().next() {
            return Err(malformed(
                file,
                format!("participant {participant}"),
                format!("has a net of {} in positions.csv but no instruction", amount_string(net, exponent)),
            ));
        }
        let control_sum = parse_amount(&parsed.control_sum, exponent)
            .ok_or_else(|| malformed(file, header, format!("CtrlSum {:?} is not an amount", parsed.control_sum)))?;
        let total = xml_amount(file, header, "TtlIntrBkSttlmAmt", &parsed.total, currency)?;
        for (what, found) in [("CtrlSum", control_sum), ("TtlIntrBkSttlmAmt", total)] {
            if found != sum {
                return Err(mismatch(
                    file,
                    header,
                    &format!("{what} (the sum of the transactions)"),
                    amount_string(sum, exponent),
                    amount_string(found, exponent),
                ));
            }
        }
        if paid != received {
            return Err(mismatch(
                file,
                header,
                "what net creditors receive (what net debtors pay)",
                amount_string(paid, exponent),
                amount_string(received, exponent),
            ));
        }
        instructions += parsed.transactions.len() as u64;
    }
    let needing: BTreeSet<Currency> =
        rows.iter().filter(|(_, row)| row.position.net() != 0).map(|((_, currency), _)| *currency).collect();
    if let Some(currency) = needing.iter().find(|currency| !files_seen.contains(*currency)) {
        return Err(VerifyError::MissingFile { file: instruction_file_name(currency.code()) });
    }
    if let Some(currency) = files_seen.iter().find(|currency| !needing.contains(*currency)) {
        return Err(malformed(
            &instruction_file_name(currency.code()),
            "whole file",
            "no participant has a net to settle in this currency",
        ));
    }
    if instructions != manifest.records.settlement_instructions {
        return Err(mismatch(
            MANIFEST_FILE,
            "records",
            "the number of settlement instructions",
            instructions,
            manifest.records.settlement_instructions,
        ));
    }
    Ok(())
}

/// A folder at a glance, for `junction clearing show`. Reads the manifest and
/// positions.csv only (it does not hash: run `verify_folder` for that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub window: u64,
    pub cut_off: String,
    pub journal_first_seq: u64,
    pub journal_last_seq: u64,
    pub transfers: u64,
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
        currencies,
        participants,
    })
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "window {} cut off at {} (journal entries {}..={}), {} transfers",
            self.window, self.cut_off, self.journal_first_seq, self.journal_last_seq, self.transfers
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
        writeln!(f, "net positions (+ owed to the participant, - owed by it):")?;
        for p in &self.participants {
            writeln!(f, "{:>10}  {:<32} {:<3} {:>22}", p.participant, p.name, p.currency, p.net)?;
        }
        Ok(())
    }
}
