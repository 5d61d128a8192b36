//! The pacs.009 settlement instructions against positions.csv.

use super::positions::{PositionRow, RowKey};
use super::{malformed, mismatch, read_limited, xml_amount, VerifyError};
use crate::iso20022::{self, XML_FILE_BYTES_MAX};
use crate::manifest::{instruction_file_name, Manifest, MANIFEST_FILE};
use crate::text::{amount_string, parse_amount, parse_u64};
use junction_ledger::{Currency, ParticipantId};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn instruction_name_currency(name: &str) -> Option<Currency> {
    let code = name.strip_prefix("pacs009-")?.strip_suffix(".xml")?;
    let currency = Currency::from_code(code).ok()?;
    (instruction_file_name(currency.code()) == name).then_some(currency)
}

pub(super) fn check_instructions(
    path: &Path,
    manifest: &Manifest,
    rows: &BTreeMap<RowKey, PositionRow>,
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
