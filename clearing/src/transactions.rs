//! `transactions.csv` and each participant's `transactions-<id>.csv`: one row per request
//! the switch answered in the window (approved or declined), in commit order, as clearing
//! staff match it against their own records. Streamed from the journal's memos (the
//! engine's `Detail` of each request) with the request's own transfers.
//!
//! No column but `card_masked` could hold a card number: the engine masks it before it is
//! journaled, and every other column is an id, a code, an amount or a reference the
//! switch made or read from fields that are not the card's.

use super::format::TRANSACTIONS_HEADER;
use super::manifest::{participant_transactions_file_name, FileEntry};
use super::sink::SharedSink;
use super::text::{push_amount, push_amount_u64, push_hex_u128, push_timestamp, push_u64};
use super::ClearingError;
use junction_engine::detail::Detail;
use junction_engine::hosted::answer_codes;
use junction_ledger::{CommandOutcome, Currency, DetailRecord, ParticipantId, TransferRecord};
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use std::path::{Path, PathBuf};

/// Longest row: 29 fields, the widest of which are the timestamp (30), two 32-hex ids, the
/// amounts (at most 22 each) and the rate (at most 30); far below this.
pub(crate) const TRANSACTION_ROW_BYTES_MAX: usize = 640;
const _: () = assert!(TRANSACTION_ROW_BYTES_MAX < super::sink::SHARED_BUFFER_BYTES);

/// Digits of a rate after the decimal point (rounded half away from zero, for display:
/// the amounts are what settle).
pub(crate) const RATE_DECIMALS: u32 = 8;

/// Who a row concerns: each gets it in its own file.
pub(crate) struct Named {
    /// The acquirer, the issuer, the wallet and the aggregator.
    pub participants: [Option<ParticipantId>; 4],
}

/// Formats one transaction's row into `row` and says who it names. `records` are the
/// journal entry's transfer records (the detail names its own among them).
pub(crate) fn push_transaction(
    row: &mut Vec<u8>,
    detail: &DetailRecord,
    records: &[TransferRecord],
    window: u64,
) -> Result<Named, ClearingError> {
    let inconsistent = |what: String| ClearingError::Inconsistent { window, detail: what };
    let memo = Detail::from_memo(&detail.memo)
        .map_err(|e| inconsistent(format!("request {:032x}: its memo: {e}", detail.key.0)))?;
    let outcome = detail
        .outcome()
        .ok_or_else(|| inconsistent(format!("request {:032x}: unknown outcome {}", detail.key.0, detail.outcome)))?;
    let first = detail.first_record as usize;
    let own = records
        .get(first..first + detail.records as usize)
        .ok_or_else(|| inconsistent(format!("request {:032x}: names records past its entry's", detail.key.0)))?;
    let (response, auth_code) = answer_codes(outcome);
    let currency = Currency::from_numeric(memo.currency_numeric).ok();
    let settled = own.last().map(|record| (record.transfer.currency, record.transfer.amount));
    // A completion of the whole hold asks for 0: what it asked is what it posted.
    let asked = match (memo.amount, settled) {
        (0, Some((settled_currency, amount))) if currency == Some(settled_currency) => amount,
        (amount, _) => amount,
    };

    push_hex_u128(row, detail.key.0);
    row.push(b',');
    push_timestamp(row, own.first().map_or(detail.timestamp, |record| record.timestamp));
    row.push(b',');
    for text in
        [memo.channel.name().as_bytes(), memo.mti.as_bytes(), memo.processing_code.as_bytes(), memo.rrn.as_bytes()]
    {
        row.extend_from_slice(text);
        row.push(b',');
    }
    row.extend_from_slice(memo.stan.as_bytes());
    row.push(b',');
    if let Some(code) = auth_code {
        row.extend_from_slice(&code);
    }
    row.push(b',');
    row.extend_from_slice(response.as_str().as_bytes());
    row.push(b',');
    row.extend_from_slice(memo.acquirer_institution.as_bytes());
    for participant in [memo.acquirer, memo.issuer, memo.wallet] {
        row.push(b',');
        if participant != 0 {
            push_u64(row, participant);
        }
    }
    for text in [memo.terminal.as_bytes(), memo.merchant.as_bytes(), memo.mcc.as_bytes()] {
        row.push(b',');
        row.extend_from_slice(text);
    }
    row.push(b',');
    memo.card.push_display(row);
    row.push(b',');
    if let Some(currency) = currency {
        row.extend_from_slice(currency.code().as_bytes());
        row.push(b',');
        push_amount_u64(row, asked, currency.exponent());
    } else {
        row.push(b',');
    }
    row.push(b',');
    match settled {
        Some((settled_currency, amount)) => {
            row.extend_from_slice(settled_currency.code().as_bytes());
            row.push(b',');
            push_amount_u64(row, amount, settled_currency.exponent());
            row.push(b',');
            if currency == Some(settled_currency) {
                row.push(b'1'); // `rate`'s answer in one currency, without a Decimal
            } else if let Some(rate) = currency.and_then(|c| rate(asked, c, amount, settled_currency)) {
                // Into the row as it is: no String per row.
                let _ = std::io::Write::write_fmt(row, format_args!("{rate}"));
            }
        }
        None => row.extend_from_slice(b",,"),
    }
    // Fees, for what committed: in the settlement currency (interchange, the acquirer's)
    // and in the request's (the payer's).
    let committed = matches!(outcome, CommandOutcome::Committed { .. });
    let settlement_exponent = settled.map(|(c, _)| c.exponent()).or(currency.map(|c| c.exponent()));
    let fees = [
        (memo.interchange, settlement_exponent),
        (memo.acquirer_fee, settlement_exponent),
        (memo.payer_fee, currency.map(|c| c.exponent())),
    ];
    for (fee, exponent) in fees {
        row.push(b',');
        if let (true, Some(exponent)) = (committed, exponent) {
            push_amount(row, i128::from(fee), exponent);
        }
    }
    row.push(b',');
    row.extend_from_slice(memo.original_rrn.as_bytes());
    row.push(b',');
    row.extend_from_slice(if memo.stood_in { b"true" } else { b"false" });
    row.push(b',');
    row.extend_from_slice(memo.qr_scheme.as_bytes());
    row.push(b',');
    if let Some(record) = own.first() {
        push_hex_u128(row, record.transfer.id.0);
    }
    row.push(b',');
    if memo.aggregator != 0 {
        push_u64(row, u64::from(memo.aggregator));
    }
    row.push(b',');
    row.extend_from_slice(memo.sub_merchant.as_bytes());
    row.push(b'\n');
    let named = |id: u64| (id != 0).then_some(ParticipantId(id));
    let aggregator = named(u64::from(memo.aggregator));
    Ok(Named { participants: [named(memo.acquirer), named(memo.issuer), named(memo.wallet), aggregator] })
}

/// Units of the settlement currency per unit of the transaction's: 1 in one currency,
/// `RATE_DECIMALS` places otherwise. None when nothing was asked (a void moves nothing).
pub(crate) fn rate(asked: u64, currency: Currency, settled: u64, settled_currency: Currency) -> Option<Decimal> {
    if currency == settled_currency {
        return Some(Decimal::ONE);
    }
    if asked == 0 {
        return None;
    }
    let asked = Decimal::from_i128_with_scale(i128::from(asked), u32::from(currency.exponent()));
    let settled = Decimal::from_i128_with_scale(i128::from(settled), u32::from(settled_currency.exponent()));
    settled.checked_div(asked).map(|rate| rate.round_dp(RATE_DECIMALS).normalize())
}

/// Each participant's own transactions file, written as rows come (rows are copied from
/// the switch-wide file's, so they are byte for byte the same), hashed and written by
/// the sink's writer threads (`SharedSink`).
pub(crate) struct ParticipantFiles {
    dir: PathBuf,
    sink: SharedSink,
    files: FxHashMap<ParticipantId, usize>,
}

impl ParticipantFiles {
    pub(crate) fn new(dir: &Path) -> Result<ParticipantFiles, ClearingError> {
        let sink = SharedSink::new().map_err(ClearingError::io(dir))?;
        Ok(ParticipantFiles { dir: dir.to_path_buf(), sink, files: FxHashMap::default() })
    }

    /// Appends `row` to the file of each participant it names (once each); how many.
    pub(crate) fn append(&mut self, row: &[u8], named: &Named) -> Result<u64, ClearingError> {
        let mut appended = 0;
        for (index, participant) in named.participants.iter().enumerate() {
            let Some(participant) = *participant else { continue };
            if named.participants[..index].contains(&Some(participant)) {
                continue;
            }
            let file = match self.files.get(&participant) {
                Some(file) => *file,
                None => {
                    let name = participant_transactions_file_name(participant.0);
                    let path = self.dir.join(&name);
                    let file = self.sink.create(&self.dir, &name).map_err(ClearingError::io(&path))?;
                    self.sink
                        .buffer_with_room(file, TRANSACTIONS_HEADER.len())
                        .map_err(ClearingError::io(&path))?
                        .extend_from_slice(TRANSACTIONS_HEADER.as_bytes());
                    self.files.insert(participant, file);
                    file
                }
            };
            let dir = &self.dir;
            self.sink
                .buffer_with_room(file, row.len())
                .map_err(|e| ClearingError::io(dir.join(participant_transactions_file_name(participant.0)))(e))?
                .extend_from_slice(row);
            appended += 1;
        }
        Ok(appended)
    }

    /// Writes the rest and fsyncs every file; their manifest entries.
    pub(crate) fn finish(self) -> Result<Vec<FileEntry>, ClearingError> {
        self.sink.finish().map_err(ClearingError::io(&self.dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_the_settled_amount_per_unit_asked() {
        let usd = Currency::from_code("USD").expect("USD");
        let jpy = Currency::from_code("JPY").expect("JPY");
        // 10.00 USD settled as 1,495 JPY: 149.5 yen per dollar.
        assert_eq!(rate(1_000, usd, 1_495, jpy).map(|r| r.to_string()), Some("149.5".into()));
        assert_eq!(rate(1_000, usd, 1_000, usd), Some(Decimal::ONE));
        assert_eq!(rate(0, usd, 0, jpy), None);
        // 3 JPY as 0.02 USD: 0.00666666666... rounded to 8 places.
        assert_eq!(rate(3, jpy, 2, usd).map(|r| r.to_string()), Some("0.00666667".into()));
    }
}
