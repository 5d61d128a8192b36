//! transactions.csv: every row well formed, the card column masked, the fees of its
//! approved rows adding up to the interchange and fees columns of positions.csv (which
//! `transfers` checks against the fee transfers), and each participant's transactions
//! file exactly the rows that name it, in order (its digest, already checked against the
//! file by `files`, is recomputed from transactions.csv).

use super::positions::{PositionRow, RowKey};
use super::transfers::{is_hex, is_timestamp};
use super::{check_header, csv_location, malformed, mismatch, VerifyError};
use crate::format::TRANSACTIONS_HEADER;
use crate::manifest::{participant_transactions_file_name, Manifest, POSITIONS_FILE, TRANSACTIONS_FILE};
use crate::sink::READ_BUFFER_BYTES;
use crate::text::{amount_string, parse_amount, parse_u64};
use junction_engine::detail::Channel;
use junction_ledger::Currency;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

const TRANSACTION_FIELDS: usize = 31;

/// Column numbers, as in `TRANSACTIONS_HEADER`.
mod column {
    pub const KEY: usize = 0;
    pub const TIMESTAMP: usize = 1;
    pub const CHANNEL: usize = 2;
    pub const AUTH_CODE: usize = 7;
    pub const RESPONSE_CODE: usize = 8;
    pub const ACQUIRER: usize = 10;
    pub const ISSUER: usize = 11;
    pub const WALLET: usize = 12;
    pub const CARD: usize = 16;
    pub const CURRENCY: usize = 17;
    pub const AMOUNT: usize = 18;
    pub const SETTLEMENT_CURRENCY: usize = 19;
    pub const SETTLEMENT_AMOUNT: usize = 20;
    pub const INTERCHANGE: usize = 22;
    pub const ACQUIRER_FEE: usize = 23;
    pub const PAYER_FEE: usize = 24;
    pub const STOOD_IN: usize = 26;
    pub const TRANSFER_ID: usize = 28;
    pub const AGGREGATOR: usize = 29;
    pub const SUB_MERCHANT: usize = 30;
}

/// Empty; all `*` (a number too short to show); or six digits, `*`s and four digits, 13
/// to 19 long. Never more digits than that.
pub(crate) fn is_masked_card(text: &[u8]) -> bool {
    match text.len() {
        0 => true,
        13..=19 if text[0] != b'*' => {
            let (first, rest) = text.split_at(6);
            let (middle, last) = rest.split_at(rest.len() - 4);
            first.iter().chain(last).all(u8::is_ascii_digit) && middle.iter().all(|b| *b == b'*')
        }
        _ => text.iter().all(|b| *b == b'*'),
    }
}

struct ParticipantDigest {
    hasher: Sha256,
    rows: u64,
}

/// Streams transactions.csv (memory: one digest per participant) and checks it.
pub(super) fn check_transactions(
    path: &Path,
    manifest: &Manifest,
    positions: &BTreeMap<RowKey, PositionRow>,
) -> Result<(), VerifyError> {
    let file = TRANSACTIONS_FILE;
    let handle = File::open(path.join(file)).map_err(|source| VerifyError::Io { file: file.to_string(), source })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .buffer_capacity(READ_BUFFER_BYTES)
        .from_reader(BufReader::with_capacity(READ_BUFFER_BYTES, handle));
    let mut record = csv::ByteRecord::new();
    let mut digests: BTreeMap<u64, ParticipantDigest> = BTreeMap::new();
    let mut currencies: Vec<Currency> = Vec::new();
    let mut line_bytes = Vec::with_capacity(1024);
    // What the approved rows' fees make of each position: interchange, the switch's fees.
    let mut expected: BTreeMap<RowKey, [i128; 2]> = BTreeMap::new();
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
            check_header(file, &header, TRANSACTIONS_HEADER)?;
            first = false;
            continue;
        }
        count += 1;
        let line = record.position().map_or(0, |p| p.line());
        let location = || format!("line {line}");
        if record.len() != TRANSACTION_FIELDS {
            return Err(malformed(file, location(), format!("{} fields, expected {TRANSACTION_FIELDS}", record.len())));
        }
        let field = |index: usize| record.get(index).unwrap_or(b"");
        let text = |index: usize| std::str::from_utf8(field(index)).unwrap_or("");
        let header: Vec<&str> = TRANSACTIONS_HEADER.trim_end().split(',').collect();
        let bad = |index: usize| {
            malformed(
                file,
                location(),
                format!("{} {:?} is not valid", header[index], String::from_utf8_lossy(field(index))),
            )
        };
        if !is_hex(field(column::KEY), 32) {
            return Err(bad(column::KEY));
        }
        if !is_timestamp(field(column::TIMESTAMP)) {
            return Err(bad(column::TIMESTAMP));
        }
        if !Channel::ALL.iter().any(|channel| channel.name().as_bytes() == field(column::CHANNEL)) {
            return Err(bad(column::CHANNEL));
        }
        let response = field(column::RESPONSE_CODE);
        if response.len() != 2 || !response.iter().all(u8::is_ascii_alphanumeric) {
            return Err(bad(column::RESPONSE_CODE));
        }
        // An approval has its authorization code; a decline has none and moved nothing.
        let approved = response == b"00";
        let auth = field(column::AUTH_CODE);
        let auth_ok =
            if approved { auth.len() == 6 && auth.iter().all(u8::is_ascii_alphanumeric) } else { auth.is_empty() };
        if !auth_ok {
            return Err(bad(column::AUTH_CODE));
        }
        let moved = !field(column::SETTLEMENT_AMOUNT).is_empty() || !field(column::TRANSFER_ID).is_empty();
        if !approved && moved {
            return Err(malformed(file, location(), "a declined request shows a settlement or a transfer"));
        }
        if !is_masked_card(field(column::CARD)) {
            return Err(malformed(file, location(), "card_masked is not a masked card number (first six, last four)"));
        }
        for (currency_column, amount_column) in
            [(column::CURRENCY, column::AMOUNT), (column::SETTLEMENT_CURRENCY, column::SETTLEMENT_AMOUNT)]
        {
            if field(currency_column).is_empty() {
                if !field(amount_column).is_empty() {
                    return Err(bad(amount_column));
                }
                continue;
            }
            let currency = match currencies.iter().find(|c| c.code().as_bytes() == field(currency_column)) {
                Some(currency) => *currency,
                None => {
                    let currency = Currency::from_code(text(currency_column)).map_err(|_| bad(currency_column))?;
                    currencies.push(currency);
                    currency
                }
            };
            if parse_amount(text(amount_column), currency.exponent()).is_none_or(|amount| amount < 0) {
                return Err(bad(amount_column));
            }
        }
        let row_currency = |index: usize| currencies.iter().find(|c| c.code().as_bytes() == field(index)).copied();
        let request_currency = row_currency(column::CURRENCY);
        let settlement_currency = row_currency(column::SETTLEMENT_CURRENCY).or(request_currency);
        let mut fees = [0i128; 3];
        for (slot, (index, currency)) in fees.iter_mut().zip([
            (column::INTERCHANGE, settlement_currency),
            (column::ACQUIRER_FEE, settlement_currency),
            (column::PAYER_FEE, request_currency),
        ]) {
            if field(index).is_empty() {
                continue;
            }
            if !approved {
                return Err(malformed(file, location(), "a declined request shows a fee"));
            }
            let currency = currency.ok_or_else(|| bad(index))?;
            *slot = parse_amount(text(index), currency.exponent()).ok_or_else(|| bad(index))?;
        }
        if fees != [0; 3] {
            let participant = |index: usize| parse_u64(text(index)).filter(|id| *id > 0);
            let acquirer = participant(column::ACQUIRER);
            let payer =
                if field(column::CHANNEL) == b"qr" { participant(column::WALLET) } else { participant(column::ISSUER) };
            let switch = manifest.fee_participant;
            let mut book =
                |who: Option<u64>, currency: Option<Currency>, part: usize, amount: i128| -> Result<(), VerifyError> {
                    if amount == 0 {
                        return Ok(());
                    }
                    let (Some(who), Some(currency)) = (who, currency) else {
                        return Err(malformed(file, location(), "a fee names no participant to pay or receive it"));
                    };
                    expected.entry((who, currency)).or_default()[part] += amount;
                    Ok(())
                };
            // Interchange: the acquirer pays the issuer; fees: to the switch's participant.
            book(acquirer, settlement_currency, 0, -fees[0])?;
            book(participant(column::ISSUER), settlement_currency, 0, fees[0])?;
            book(acquirer, settlement_currency, 1, -fees[1])?;
            book(switch, settlement_currency, 1, fees[1])?;
            book(payer, request_currency, 1, -fees[2])?;
            book(switch, request_currency, 1, fees[2])?;
        }
        if !matches!(field(column::STOOD_IN), b"true" | b"false") {
            return Err(bad(column::STOOD_IN));
        }
        if !(field(column::TRANSFER_ID).is_empty() || is_hex(field(column::TRANSFER_ID), 32)) {
            return Err(bad(column::TRANSFER_ID));
        }
        // A sub-merchant is named with its aggregator, or not at all: 1-15 letters,
        // digits or dashes.
        let sub_merchant = field(column::SUB_MERCHANT);
        let sub_merchant_ok = sub_merchant.len() <= 15
            && sub_merchant.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && sub_merchant.is_empty() == field(column::AGGREGATOR).is_empty();
        if !sub_merchant_ok {
            return Err(bad(column::SUB_MERCHANT));
        }
        // The row as written (fields never hold commas or quotes), for the digest of each
        // participant it names.
        line_bytes.clear();
        for (index, value) in record.iter().enumerate() {
            if index > 0 {
                line_bytes.push(b',');
            }
            line_bytes.extend_from_slice(value);
        }
        line_bytes.push(b'\n');
        let mut named: [Option<u64>; 4] = [None; 4];
        let named_columns = [column::ACQUIRER, column::ISSUER, column::WALLET, column::AGGREGATOR];
        for (slot, index) in named.iter_mut().zip(named_columns) {
            if !field(index).is_empty() {
                *slot = Some(parse_u64(text(index)).filter(|id| *id > 0).ok_or_else(|| bad(index))?);
            }
        }
        for (index, participant) in named.iter().enumerate() {
            let Some(participant) = *participant else { continue };
            if named[..index].contains(&Some(participant)) {
                continue;
            }
            let digest = digests.entry(participant).or_insert_with(|| {
                let mut hasher = Sha256::new();
                hasher.update(TRANSACTIONS_HEADER.as_bytes());
                ParticipantDigest { hasher, rows: 0 }
            });
            digest.hasher.update(&line_bytes);
            digest.rows += 1;
        }
    }
    if first {
        return Err(malformed(file, "line 1", "the header is missing"));
    }
    if count != manifest.records.transactions {
        return Err(mismatch(file, "whole file", "the number of transactions", manifest.records.transactions, count));
    }
    check_fees(&expected, positions)?;
    check_participant_files(manifest, digests)
}

/// The fees of the approved rows, per participant and currency, are the interchange and
/// fees columns of positions.csv (a participant on one side of an on-us payment nets out).
fn check_fees(
    expected: &BTreeMap<RowKey, [i128; 2]>,
    positions: &BTreeMap<RowKey, PositionRow>,
) -> Result<(), VerifyError> {
    let keys: std::collections::BTreeSet<&RowKey> = expected.keys().chain(positions.keys()).collect();
    for key in keys {
        let want = expected.get(key).copied().unwrap_or_default();
        let have = positions.get(key).map_or([0, 0], |row| [row.components[1], row.components[2]]);
        for (part, name) in [(0, "interchange"), (1, "fees")] {
            if want[part] != have[part] {
                return Err(mismatch(
                    POSITIONS_FILE,
                    format!("participant {}, {}", key.0, key.1),
                    &format!("{name} (summed over the approved rows of {TRANSACTIONS_FILE})"),
                    amount_string(want[part], key.1.exponent()),
                    amount_string(have[part], key.1.exponent()),
                ));
            }
        }
    }
    Ok(())
}

/// Each participant named has its file, equal (by digest) to its rows; no other
/// participant file is listed.
fn check_participant_files(manifest: &Manifest, digests: BTreeMap<u64, ParticipantDigest>) -> Result<(), VerifyError> {
    let mut rows = 0u64;
    let mut expected_files = Vec::with_capacity(digests.len());
    for (participant, digest) in digests {
        let name = participant_transactions_file_name(participant);
        let entry = manifest.files.iter().find(|entry| entry.name == name).ok_or_else(|| {
            VerifyError::Manifest(format!(
                "does not list {name}, though transactions.csv names participant {participant}"
            ))
        })?;
        let expected = hex::encode(digest.hasher.finalize());
        if entry.sha256 != expected {
            return Err(mismatch(
                &name,
                "whole file",
                &format!("the SHA-256 of participant {participant}'s rows of transactions.csv"),
                expected,
                &entry.sha256,
            ));
        }
        rows += digest.rows;
        expected_files.push(name);
    }
    if let Some(extra) = manifest
        .files
        .iter()
        .find(|entry| entry.name.starts_with("transactions-") && !expected_files.contains(&entry.name))
    {
        return Err(malformed(&extra.name, "whole file", "transactions.csv has no row naming its participant"));
    }
    if rows != manifest.records.participant_transactions {
        return Err(mismatch(
            TRANSACTIONS_FILE,
            "whole file",
            "the rows of the participants' transactions files",
            manifest.records.participant_transactions,
            rows,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_masked_card_numbers_pass() {
        for good in ["", "400000******7899", "555544*********1111", "****", "400000***1234"] {
            assert!(is_masked_card(good.as_bytes()), "{good}");
        }
        for bad in ["4000001234567899", "400000*****67899", "40000*******7899", "4000001234", "40000a******7899"] {
            assert!(!is_masked_card(bad.as_bytes()), "{bad}");
        }
    }
}
