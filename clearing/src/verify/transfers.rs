//! transfers.csv: every row well formed, and its netting equal to positions.csv.

use super::positions::{PositionRow, RowKey};
use super::{check_header, csv_location, header_of, malformed, mismatch, VerifyError};
use crate::format::{add_component, add_movement, Component, Components, TransferKind, TRANSFERS_HEADER};
use crate::manifest::{Manifest, TRANSFERS_FILE};
use crate::sink::READ_BUFFER_BYTES;
use crate::text::{amount_string, parse_amount, parse_u64};
use junction_ledger::{Currency, ParticipantId, Position, PositionKey};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

const TRANSFER_FIELDS: usize = 15;

pub(super) fn is_hex(text: &[u8], length: usize) -> bool {
    text.len() == length && text.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// Hex without leading zeros, as account ids are written (never zero).
fn is_short_hex(text: &[u8]) -> bool {
    text.first().is_some_and(|b| *b != b'0') && text.len() <= 32 && is_hex(text, text.len())
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`: fixed width, so such timestamps compare as bytes.
pub(super) fn is_timestamp(text: &[u8]) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd.dddddddddZ";
    text.len() == SHAPE.len()
        && text.iter().zip(SHAPE).all(|(b, s)| if *s == b'd' { b.is_ascii_digit() } else { b == s })
}

/// Streams transfers.csv (constant memory), checks every row, and compares its netting
/// (money-moving transfers between different participants) with positions.csv.
pub(super) fn check_transfers(
    path: &Path,
    manifest: &Manifest,
    rows: &BTreeMap<RowKey, PositionRow>,
) -> Result<(), VerifyError> {
    let file = TRANSFERS_FILE;
    let handle = File::open(path.join(file)).map_err(|source| VerifyError::Io { file: file.to_string(), source })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .buffer_capacity(READ_BUFFER_BYTES)
        .from_reader(BufReader::with_capacity(READ_BUFFER_BYTES, handle));
    let mut record = csv::ByteRecord::new();
    let mut computed: FxHashMap<PositionKey, Position> = FxHashMap::default();
    let mut components: FxHashMap<PositionKey, Components> = FxHashMap::default();
    let mut currencies: Vec<Currency> = Vec::new();
    let mut previous_timestamp = Vec::new();
    // A merged set is its parts' rows part after part, each part in its own commit order:
    // the order starts again at each part's first row.
    let mut part_starts: Vec<u64> = manifest
        .cluster
        .iter()
        .flat_map(|cluster| cluster.parts.iter())
        .scan(0u64, |start, part| {
            let this = *start;
            *start += part.records.transfers;
            Some(this)
        })
        .collect();
    part_starts.reverse();
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
        // `count` is this row's number from 1.
        while part_starts.last() == Some(&(count - 1)) {
            part_starts.pop();
            previous_timestamp.clear();
        }
        if field(1) <= previous_timestamp.as_slice() {
            return Err(malformed(file, location(), "timestamps must increase strictly in commit order"));
        }
        previous_timestamp.clear();
        previous_timestamp.extend_from_slice(field(1));
        let code = parse_u64(text(2)).and_then(|code| u16::try_from(code).ok()).ok_or_else(|| bad("code"))?;
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
        if !is_hex(field(13), 32) {
            return Err(bad("reference"));
        }
        if !is_hex(field(14), 16) {
            return Err(bad("user_data_64"));
        }
        if kind.moves_money() {
            add_movement(&mut computed, ParticipantId(debtor), ParticipantId(creditor), currency, amount);
            add_component(&mut components, ParticipantId(debtor), ParticipantId(creditor), currency, code, amount);
        }
    }
    if first {
        return Err(malformed(file, "line 1", "the header is missing"));
    }
    if count != manifest.records.transfers {
        return Err(mismatch(file, "whole file", "the number of transfers", manifest.records.transfers, count));
    }
    for (key, row) in rows {
        let parts = components.remove(&(ParticipantId(key.0), key.1)).unwrap_or_default();
        for (part, name) in
            [(Component::Gross, "gross"), (Component::Interchange, "interchange"), (Component::Fees, "fees")]
        {
            let (in_positions, from_transfers) = (row.components[part as usize], parts[part as usize]);
            if in_positions != from_transfers {
                return Err(mismatch(
                    file,
                    format!("participant {}, {}", key.0, key.1),
                    &format!("{name} summed over the transfers by code (positions.csv line {})", row.line),
                    amount_string(in_positions, key.1.exponent()),
                    amount_string(from_transfers, key.1.exponent()),
                ));
            }
        }
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
