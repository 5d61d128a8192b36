//! positions.csv: every row consistent in itself, and against the manifest's control totals.

use super::{check_header, csv_location, malformed, mismatch, read_limited, VerifyError, POSITIONS_BYTES_MAX};
use crate::format::{Components, POSITIONS_HEADER};
use crate::manifest::{currency_totals, CurrencyTotals, Manifest, MANIFEST_FILE, POSITIONS_FILE};
use crate::text::{amount_string, parse_amount, parse_digits, parse_u64};
use junction_ledger::{Currency, Position};
use std::collections::BTreeMap;
use std::path::Path;

/// One row of positions.csv, checked for internal consistency.
#[derive(Debug, Clone)]
pub(crate) struct PositionRow {
    pub line: u64,
    pub participant: u64,
    pub name: String,
    pub currency: Currency,
    pub position: Position,
    /// The net by component: payments, interchange, the switch's fees.
    pub components: Components,
}

impl PositionRow {
    pub(super) fn location(&self) -> String {
        format!("line {} (participant {}, {})", self.line, self.participant, self.currency)
    }
}

/// A positions.csv row's key as read: participant id and currency.
pub(crate) type RowKey = (u64, Currency);

pub(crate) fn read_positions(path: &Path, manifest: &Manifest) -> Result<BTreeMap<RowKey, PositionRow>, VerifyError> {
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
    let mut components: Components = [0; 3];
    for (slot, (index, name)) in components.iter_mut().zip([(11, "gross"), (12, "interchange"), (13, "fees")]) {
        *slot = parse_amount(field(index), exponent).ok_or_else(|| {
            malformed(file, &location, format!("{name} {:?} is not an amount with {exponent} decimals", field(index)))
        })?;
    }
    let summed: i128 = components.iter().sum();
    if summed != net {
        return Err(mismatch(
            file,
            &location,
            "gross + interchange + fees",
            amount_string(net, exponent),
            amount_string(summed, exponent),
        ));
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
        components,
    })
}

pub(super) fn check_positions_against_manifest(
    manifest: &Manifest,
    rows: &BTreeMap<RowKey, PositionRow>,
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
