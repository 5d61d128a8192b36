//! The camt.053 statements against positions.csv.

use super::positions::{PositionRow, RowKey};
use super::{malformed, mismatch, read_limited, signed_by, xml_amount, VerifyError};
use crate::iso20022::{self, XML_FILE_BYTES_MAX};
use crate::manifest::{statement_file_name, Manifest, MANIFEST_FILE};
use crate::text::{amount_string, parse_u64};
use junction_ledger::{Currency, ParticipantId};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Splits `camt053-<participant>-<CCY>.xml`.
fn statement_name_parts(name: &str) -> Option<(u64, Currency)> {
    let middle = name.strip_prefix("camt053-")?.strip_suffix(".xml")?;
    let (participant, currency) = middle.rsplit_once('-')?;
    let participant = parse_u64(participant)?;
    let currency = Currency::from_code(currency).ok()?;
    (statement_file_name(participant, currency.code()) == name).then_some((participant, currency))
}

pub(super) fn check_statements(
    path: &Path,
    manifest: &Manifest,
    rows: &BTreeMap<RowKey, PositionRow>,
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
        // Interchange and fees, as charges records, are positions.csv's columns.
        let mut charged = [0i128; 2];
        for charge in &parsed.charges {
            let slot = iso20022::CHARGE_TYPES
                .iter()
                .position(|kind| *kind == charge.kind)
                .ok_or_else(|| malformed(file, location, format!("a charge of unknown type {:?}", charge.kind)))?;
            let amount = xml_amount(file, location, "a charge's amount", &charge.amount, currency)?;
            charged[slot] += signed_by(&charge.indicator, amount, file, location)?;
        }
        let components =
            rows.get(&(participant, currency)).map_or([0, 0], |row| [row.components[1], row.components[2]]);
        for (slot, kind) in iso20022::CHARGE_TYPES.iter().enumerate() {
            if components[slot] != charged[slot] {
                return Err(mismatch(
                    file,
                    location,
                    &format!("the {kind} charges (from positions.csv)"),
                    amount_string(components[slot], exponent),
                    amount_string(charged[slot], exponent),
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
