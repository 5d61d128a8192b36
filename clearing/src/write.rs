//! Writing a closed window's clearing folder, atomically and reproducibly.

use super::format::{
    add_component, add_movement, Components, TransferKind, POSITIONS_HEADER, TRANSACTIONS_HEADER, TRANSFERS_HEADER,
};
use super::iso20022::{self, Hub, NetSettlement, PartyRef, StatementInput};
use super::manifest::{
    currency_totals, instruction_file_name, statement_file_name, window_folder_name, window_temp_folder_name,
    CurrencyTotals, FileEntry, Manifest, RecordCounts, MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_FORMAT_VERSION,
    POSITIONS_FILE, TRANSACTIONS_FILE, TRANSFERS_FILE,
};
use super::sink::{build_atomically, write_small_file, PipelinedSink};
use super::text::{
    push_amount, push_amount_u64, push_csv_field, push_hex_short, push_hex_u128, push_hex_u64, push_timestamp,
    push_u128, push_u64, timestamp_string,
};
use super::transactions::{push_transaction, ParticipantFiles, TRANSACTION_ROW_BYTES_MAX};
use super::{verify, ClearingConfig, ClearingError, ParticipantInfo};
use junction_ledger::{
    AccountId, Currency, DetailRecord, Ledger, ParticipantId, Position, PositionKey, TransferFlags, TransferRecord,
    WindowId, WindowPositions, WindowState,
};
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Longest `transfers.csv` row: five 32-hex fields (transfer, pending, two accounts,
/// reference), a 16-hex one, a timestamp of 30, two participants and the minor units (at
/// most 20 digits each), the decimal amount (at most 22), code, kind, linked, currency, 14
/// commas and a newline. Each row reserves this much room in the write buffer first, so
/// the buffer never reallocates.
const TRANSFER_ROW_BYTES_MAX: usize = 5 * 32 + 16 + 30 + 3 * 20 + 22 + 5 + 6 + 5 + 3 + 15;
const _: () = assert!(TRANSFER_ROW_BYTES_MAX * 1000 < super::sink::TRANSFERS_WRITE_BUFFER_BYTES);

/// Slots of the account-to-participant cache used while streaming transfers. Direct
/// mapped: costs 32 bytes per slot (8 MiB) and never grows, whatever the window's size.
/// The accounts of each journal entry that it does not hold are looked up together
/// (`ParticipantCache::participants`): the sequencer lock once per thousand accounts, not once
/// per account (at nice 10, while traffic commits, a lock holder preempted is a stall).
const ACCOUNT_CACHE_SLOTS: usize = 1 << 18;
const _: () = assert!(ACCOUNT_CACHE_SLOTS.is_power_of_two());

/// Writes the clearing folder of a closed window under `out_root` and returns its manifest.
///
/// Idempotent: when `out_root/window-<id>` already exists and verifies, its manifest is
/// returned and nothing is written (files already handed out are never replaced, even if
/// the configuration changed since). When it exists and does not verify, that is an error
/// for an operator to look at. A temporary folder left by a crash is removed and redone.
/// Callers must not write the same window from two threads at once.
pub fn write_window_files(
    ledger: &Ledger,
    window: WindowId,
    out_root: &Path,
    config: &ClearingConfig,
) -> Result<Manifest, ClearingError> {
    config.validate()?;
    let view = ledger.window_positions(window).ok_or(ClearingError::WindowNotFound(window.0))?;
    let WindowState::Closed { closed_at } = view.state else {
        return Err(ClearingError::WindowOpen(window.0));
    };
    let last_seq = view.last_seq.ok_or_else(|| ClearingError::Inconsistent {
        window: window.0,
        detail: "closed without a last entry".into(),
    })?;
    let target = out_root.join(window_folder_name(window.0));
    if target.exists() {
        return match verify::verify_folder(&target) {
            Ok(report) => Ok(report.manifest),
            Err(source) => Err(ClearingError::ExistingFolderInvalid { path: target, source: Box::new(source) }),
        };
    }
    check_zero_sum(&view)?;
    let openings = opening_balances(ledger, window);

    let temp = out_root.join(window_temp_folder_name(window.0));
    build_atomically(out_root, &temp, &target, |dir| {
        build_folder(ledger, &view, closed_at, last_seq, &openings, dir, config)
    })
}

/// DESIGN.md invariant 1, checked again before anything is written.
fn check_zero_sum(view: &WindowPositions) -> Result<(), ClearingError> {
    let mut sums: BTreeMap<Currency, i128> = BTreeMap::new();
    for ((_, currency), position) in &view.positions {
        *sums.entry(*currency).or_default() += position.net();
    }
    match sums.into_iter().find(|(_, sum)| *sum != 0) {
        Some((currency, sum_minor)) => {
            Err(ClearingError::NetsDoNotSumToZero { window: view.window.0, currency: currency.to_string(), sum_minor })
        }
        None => Ok(()),
    }
}

/// Each participant's cumulative net per currency over all closed windows before `window`.
fn opening_balances(ledger: &Ledger, window: WindowId) -> BTreeMap<PositionKey, i128> {
    let mut openings = BTreeMap::new();
    for earlier in ledger.windows() {
        if earlier.window < window && matches!(earlier.state, WindowState::Closed { .. }) {
            for (key, position) in &earlier.positions {
                *openings.entry(*key).or_insert(0i128) += position.net();
            }
        }
    }
    openings
}

fn build_folder(
    ledger: &Ledger,
    view: &WindowPositions,
    closed_at: u64,
    last_seq: u64,
    openings: &BTreeMap<PositionKey, i128>,
    dir: &Path,
    config: &ClearingConfig,
) -> Result<Manifest, ClearingError> {
    let window = view.window.0;
    let mut files = Vec::new();

    let (journal_files, streamed) = write_journal_files(ledger, view, last_seq, dir)?;
    files.extend(journal_files);
    check_streamed(view, &streamed)?;

    let components: BTreeMap<PositionKey, Components> = streamed.components.iter().map(|(k, v)| (*k, *v)).collect();
    let settlement = Settlement { window, closed_at, positions: &view.positions, components: &components, openings };
    let settlement = write_settlement_files(&settlement, config, dir)?;
    files.extend(settlement.files);

    files.sort_by(|a, b| a.name.cmp(&b.name));
    let manifest = Manifest {
        format: MANIFEST_FORMAT.to_string(),
        format_version: MANIFEST_FORMAT_VERSION,
        window,
        cut_off: timestamp_string(closed_at),
        cut_off_ns: closed_at,
        journal_first_seq: view.first_seq,
        journal_last_seq: last_seq,
        switch_name: config.switch_name.clone(),
        switch_bic: config.switch_bic.clone(),
        settlement_bank_bic: config.settlement_bank_bic.clone(),
        fee_participant: config.fee_participant.map(|p| p.0),
        records: RecordCounts {
            transfers: streamed.transfers,
            transactions: streamed.transactions,
            participant_transactions: streamed.participant_transactions,
            positions: view.positions.len() as u64,
            statements: settlement.statements,
            settlement_instructions: settlement.instructions,
        },
        currencies: settlement.totals.into_values().collect(),
        files,
        cluster: None,
    };
    let mut json = serde_json::to_vec_pretty(&manifest)?;
    json.push(b'\n');
    write_small_file(dir, MANIFEST_FILE, &json).map_err(ClearingError::io(dir.join(MANIFEST_FILE)))?;
    Ok(manifest)
}

/// What the settlement files of a window (or of a cluster's merged cut) are made from.
pub(crate) struct Settlement<'a> {
    /// The window's id, or the cut's for a merged set: in the statements' and
    /// instructions' ids.
    pub window: u64,
    pub closed_at: u64,
    pub positions: &'a BTreeMap<PositionKey, Position>,
    /// Each position's net by component (payments, interchange, fees).
    pub components: &'a BTreeMap<PositionKey, Components>,
    /// Each participant's cumulative net per currency before this window.
    pub openings: &'a BTreeMap<PositionKey, i128>,
}

/// What `write_settlement_files` wrote: the files, how many statements and settlement
/// instructions, and the control totals per currency.
pub(crate) struct SettlementFiles {
    pub files: Vec<FileEntry>,
    pub statements: u64,
    pub instructions: u64,
    pub totals: BTreeMap<Currency, CurrencyTotals>,
}

/// Writes positions.csv, a camt.053 statement per participant and currency, and a pacs.009
/// per currency with a net to settle.
pub(crate) fn write_settlement_files(
    settlement: &Settlement<'_>,
    config: &ClearingConfig,
    dir: &Path,
) -> Result<SettlementFiles, ClearingError> {
    let Settlement { window, closed_at, positions, components, openings } = *settlement;
    let mut files = Vec::new();
    // Everyone the files name, resolved once.
    let mut parties: BTreeMap<ParticipantId, ParticipantInfo> = BTreeMap::new();
    let statement_keys: BTreeSet<PositionKey> = positions
        .keys()
        .copied()
        .chain(openings.iter().filter(|(_, opening)| **opening != 0).map(|(key, _)| *key))
        .collect();
    for (participant, _) in &statement_keys {
        parties.entry(*participant).or_insert_with(|| config.participant(*participant));
    }
    let party = |participant: ParticipantId| party_ref(&parties, participant);
    let hub = Hub {
        switch_name: &config.switch_name,
        switch_bic: &config.switch_bic,
        settlement_bank_bic: &config.settlement_bank_bic,
    };

    files.push(write_positions(positions, components, &parties, dir)?);

    for key in &statement_keys {
        let (participant, currency) = *key;
        let file = statement_file_name(participant.0, currency.code());
        let input = StatementInput {
            file: &file,
            window,
            cut_off_ns: closed_at,
            party: party(participant),
            currency,
            opening_minor: openings.get(key).copied().unwrap_or(0),
            position: positions.get(key).copied().unwrap_or_default(),
            charges: components.get(key).map_or([0, 0], |parts| [parts[1], parts[2]]),
        };
        let xml = iso20022::statement_xml(&input, &hub)?;
        files.push(write_small_file(dir, &file, xml.as_bytes()).map_err(ClearingError::io(dir.join(&file)))?);
    }

    let totals = currency_totals(positions.iter().map(|((_, currency), position)| (*currency, position)));
    let mut instructions = 0u64;
    for currency in totals.keys() {
        let settlements: Vec<NetSettlement<'_>> = positions
            .iter()
            .filter(|((_, c), position)| c == currency && position.net() != 0)
            .map(|((participant, _), position)| NetSettlement { party: party(*participant), net_minor: position.net() })
            .collect();
        if settlements.is_empty() {
            continue; // everyone is flat in this currency: nothing to settle
        }
        instructions += settlements.len() as u64;
        let file = instruction_file_name(currency.code());
        let xml = iso20022::instructions_xml(&file, window, closed_at, *currency, &settlements, &hub)?;
        files.push(write_small_file(dir, &file, xml.as_bytes()).map_err(ClearingError::io(dir.join(&file)))?);
    }

    Ok(SettlementFiles { files, statements: statement_keys.len() as u64, instructions, totals })
}

fn party_ref(parties: &BTreeMap<ParticipantId, ParticipantInfo>, participant: ParticipantId) -> PartyRef<'_> {
    // `parties` holds everyone the files name; the fallbacks only keep this total.
    let info = parties.get(&participant);
    PartyRef {
        id: participant,
        name: info.map_or("", |i| i.name.as_str()),
        bic: info.and_then(|i| i.bic.as_deref()),
        account: info.map_or("", |i| i.settlement_account_iban_or_id.as_str()),
    }
}

/// What streaming the journal saw, to compare with the ledger's own figures.
struct Streamed {
    transfers: u64,
    transactions: u64,
    participant_transactions: u64,
    /// Each position's net by component (payments, interchange, fees).
    components: FxHashMap<PositionKey, Components>,
    positions: FxHashMap<PositionKey, Position>,
}

/// Account id to participant, for the accounts the stream meets. See `ACCOUNT_CACHE_SLOTS`.
struct ParticipantCache {
    slots: Vec<Option<(AccountId, ParticipantId)>>,
}

impl ParticipantCache {
    fn new() -> ParticipantCache {
        ParticipantCache { slots: vec![None; ACCOUNT_CACHE_SLOTS] }
    }

    fn slot(account: AccountId) -> usize {
        let folded = (account.0 as u64) ^ ((account.0 >> 64) as u64);
        // Fibonacci hashing: the top bits of the product spread sequential ids.
        (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - ACCOUNT_CACHE_SLOTS.trailing_zeros())) as usize
    }

    fn cached(&self, account: AccountId) -> Option<ParticipantId> {
        match self.slots[Self::slot(account)] {
            Some((cached, participant)) if cached == account => Some(participant),
            _ => None,
        }
    }

    /// The debtor's and creditor's participants of each of `records` (None for an
    /// account the ledger does not know), into `out`: from the cache, and the accounts
    /// it does not hold looked up together.
    fn participants(
        &mut self,
        ledger: &Ledger,
        records: &[TransferRecord],
        missing: &mut Vec<AccountId>,
        out: &mut Vec<[Option<ParticipantId>; 2]>,
    ) {
        missing.clear();
        out.clear();
        for record in records {
            let sides = [record.transfer.debit_account, record.transfer.credit_account].map(|account| {
                let participant = self.cached(account);
                if participant.is_none() {
                    missing.push(account);
                }
                participant
            });
            out.push(sides);
        }
        if missing.is_empty() {
            return;
        }
        missing.sort_unstable();
        missing.dedup();
        for (account, participant) in missing.iter().zip(ledger.participants_of(missing)) {
            if let Some(participant) = participant {
                self.slots[Self::slot(*account)] = Some((*account, participant));
            }
        }
        for (record, sides) in records.iter().zip(out.iter_mut()) {
            let accounts = [record.transfer.debit_account, record.transfer.credit_account];
            for (account, side) in accounts.into_iter().zip(sides.iter_mut()) {
                if side.is_none() {
                    // When two accounts of this entry share a slot, the ledger answers.
                    *side = self.cached(account).or_else(|| ledger.account(account).map(|v| v.account.participant));
                }
            }
        }
    }
}

/// Streams the window's journal into `transfers.csv` (every transfer), `transactions.csv`
/// (every request answered, from its memo) and each participant's transactions file:
/// rows formatted straight into recycled buffers that other threads hash and write.
/// Memory does not grow with the window.
///
/// Two threads format: this one reads the journal and writes `transfers.csv`; a second
/// (`clearing-rows`) writes the transactions rows and copies them into the participants'
/// files, from the same entries handed over (`ENTRIES_IN_FLIGHT` at most). Each file is
/// written by one thread in journal order, so nothing needs reordering.
fn write_journal_files(
    ledger: &Ledger,
    view: &WindowPositions,
    last_seq: u64,
    dir: &Path,
) -> Result<(Vec<FileEntry>, Streamed), ClearingError> {
    let transfers_path = dir.join(TRANSFERS_FILE);
    let mut transfers =
        PipelinedSink::create(dir, TRANSFERS_FILE, TRANSFERS_HEADER).map_err(ClearingError::io(&transfers_path))?;
    let window = view.window;
    let mut cache = ParticipantCache::new();
    let mut missing = Vec::new();
    let mut sides = Vec::new();
    let mut streamed = Streamed {
        transfers: 0,
        transactions: 0,
        participant_transactions: 0,
        components: FxHashMap::default(),
        positions: FxHashMap::default(),
    };
    std::thread::scope(|scope| {
        let (sender, entries) = crossbeam::channel::bounded::<Entry>(ENTRIES_IN_FLIGHT);
        let rows = std::thread::Builder::new()
            .name("clearing-rows".into())
            .spawn_scoped(scope, move || write_transactions(dir, window, entries))
            .map_err(ClearingError::io(dir))?;
        // The visitor cannot return an error: remember the first and skip the rest.
        let mut failure: Option<ClearingError> = None;
        let scanned = ledger.for_each_batch(view.first_seq, last_seq, |records, details| {
            if failure.is_some() {
                return;
            }
            cache.participants(ledger, &records, &mut missing, &mut sides);
            let written = records.iter().zip(&sides).try_for_each(|(record, sides)| {
                write_transfer(window, record, *sides, &mut transfers, &transfers_path, &mut streamed)
            });
            if let Err(error) = written {
                failure = Some(error);
            } else if !details.is_empty() && sender.send(Entry { records, details }).is_err() {
                // The rows' thread stopped on an error: `join` below returns it.
                failure = Some(ClearingError::io(dir)(std::io::Error::other("the rows' thread stopped")));
            }
        });
        drop(sender); // ends the rows' thread's loop
        let rows = rows.join().unwrap_or_else(|_| {
            Err(ClearingError::io(dir)(std::io::Error::other("the clearing rows' thread panicked")))
        });
        // The rows' own error first: this thread's may only say that the rows' stopped.
        let (transaction_entries, transactions, participant_transactions) = rows?;
        scanned?;
        if let Some(error) = failure {
            return Err(error);
        }
        streamed.transactions = transactions;
        streamed.participant_transactions = participant_transactions;
        let mut entries = vec![transfers.finish().map_err(ClearingError::io(&transfers_path))?];
        entries.extend(transaction_entries);
        Ok((entries, streamed))
    })
}

/// Journal entries in flight from the journal's reader to the rows' thread.
const ENTRIES_IN_FLIGHT: usize = 8;

/// One journal entry's transfer records and request details, for the rows' thread.
struct Entry {
    records: Vec<TransferRecord>,
    details: Vec<DetailRecord>,
}

/// The rows' thread of `write_journal_files`: `transactions.csv` and each participant's
/// file. Returns their manifest entries, the rows written, and the participants' rows.
fn write_transactions(
    dir: &Path,
    window: WindowId,
    entries: crossbeam::channel::Receiver<Entry>,
) -> Result<(Vec<FileEntry>, u64, u64), ClearingError> {
    let path = dir.join(TRANSACTIONS_FILE);
    let mut transactions =
        PipelinedSink::create(dir, TRANSACTIONS_FILE, TRANSACTIONS_HEADER).map_err(ClearingError::io(&path))?;
    let mut participants = ParticipantFiles::new(dir)?;
    let (mut rows, mut participant_rows) = (0u64, 0u64);
    for entry in entries {
        for detail in &entry.details {
            let row = transactions.buffer_with_room(TRANSACTION_ROW_BYTES_MAX).map_err(ClearingError::io(&path))?;
            let start = row.len();
            let named = push_transaction(row, detail, &entry.records, window.0)?;
            rows += 1;
            participant_rows += participants.append(&row[start..], &named)?;
        }
    }
    let mut files = vec![transactions.finish().map_err(ClearingError::io(&path))?];
    files.extend(participants.finish()?);
    Ok((files, rows, participant_rows))
}

fn write_transfer(
    window: WindowId,
    record: &TransferRecord,
    [debtor, creditor]: [Option<ParticipantId>; 2],
    sink: &mut PipelinedSink,
    sink_path: &Path,
    streamed: &mut Streamed,
) -> Result<(), ClearingError> {
    let transfer = &record.transfer;
    if record.window != window {
        return Err(ClearingError::Inconsistent {
            window: window.0,
            detail: format!("transfer {:032x} is journaled for window {}", transfer.id.0, record.window.0),
        });
    }
    let unknown = |account: AccountId| ClearingError::UnknownAccount {
        window: window.0,
        transfer: transfer.id.0,
        account: account.0,
    };
    let debtor = debtor.ok_or_else(|| unknown(transfer.debit_account))?;
    let creditor = creditor.ok_or_else(|| unknown(transfer.credit_account))?;
    let kind = TransferKind::of(transfer.flags);
    let currency = transfer.currency;

    // Formatted straight into the write buffer: no allocation or copy per row.
    let row = sink
        .buffer_with_room(TRANSFER_ROW_BYTES_MAX)
        .map_err(|source| ClearingError::Io { path: sink_path.to_path_buf(), source })?;
    push_hex_u128(row, transfer.id.0);
    row.push(b',');
    push_timestamp(row, record.timestamp);
    row.push(b',');
    push_u64(row, u64::from(transfer.code));
    row.push(b',');
    row.extend_from_slice(kind.name().as_bytes());
    row.push(b',');
    row.extend_from_slice(if transfer.flags.contains(TransferFlags::LINKED) { b"true" } else { b"false" });
    row.push(b',');
    if transfer.pending_id.0 != 0 {
        push_hex_u128(row, transfer.pending_id.0);
    }
    row.push(b',');
    push_hex_short(row, transfer.debit_account.0);
    row.push(b',');
    push_u64(row, debtor.0);
    row.push(b',');
    push_hex_short(row, transfer.credit_account.0);
    row.push(b',');
    push_u64(row, creditor.0);
    row.push(b',');
    row.extend_from_slice(currency.code().as_bytes());
    row.push(b',');
    push_amount_u64(row, transfer.amount, currency.exponent());
    row.push(b',');
    push_u64(row, transfer.amount);
    row.push(b',');
    push_hex_u128(row, transfer.user_data_128);
    row.push(b',');
    push_hex_u64(row, transfer.user_data_64);
    row.push(b'\n');

    streamed.transfers += 1;
    if kind.moves_money() {
        add_movement(&mut streamed.positions, debtor, creditor, currency, transfer.amount);
        add_component(&mut streamed.components, debtor, creditor, currency, transfer.code, transfer.amount);
    }
    Ok(())
}

/// The journal and the ledger's in-memory positions must tell the same story before the
/// files go out (STYLE.md: check data before it is written).
fn check_streamed(view: &WindowPositions, streamed: &Streamed) -> Result<(), ClearingError> {
    let window = view.window.0;
    if streamed.transfers != view.transfer_count {
        return Err(ClearingError::Inconsistent {
            window,
            detail: format!(
                "the journal holds {} transfers, the ledger counted {}",
                streamed.transfers, view.transfer_count
            ),
        });
    }
    if streamed.positions.len() != view.positions.len() {
        return Err(ClearingError::Inconsistent {
            window,
            detail: format!(
                "the journal gives {} positions, the ledger has {}",
                streamed.positions.len(),
                view.positions.len()
            ),
        });
    }
    for (key, position) in &view.positions {
        if streamed.positions.get(key) != Some(position) {
            return Err(ClearingError::Inconsistent {
                window,
                detail: format!(
                    "participant {} {}: the journal gives {:?}, the ledger has {position:?}",
                    key.0 .0,
                    key.1,
                    streamed.positions.get(key)
                ),
            });
        }
    }
    Ok(())
}

fn write_positions(
    positions: &BTreeMap<PositionKey, Position>,
    components: &BTreeMap<PositionKey, Components>,
    parties: &BTreeMap<ParticipantId, ParticipantInfo>,
    dir: &Path,
) -> Result<FileEntry, ClearingError> {
    let mut out = Vec::with_capacity(POSITIONS_HEADER.len() + positions.len() * 160);
    out.extend_from_slice(POSITIONS_HEADER.as_bytes());
    for ((participant, currency), position) in positions {
        let exponent = currency.exponent();
        push_u64(&mut out, participant.0);
        out.push(b',');
        let name = parties.get(participant).map_or("", |info| info.name.as_str());
        push_csv_field(&mut out, name);
        out.push(b',');
        out.extend_from_slice(currency.code().as_bytes());
        out.push(b',');
        push_u64(&mut out, position.debit_count);
        out.push(b',');
        push_u64(&mut out, position.credit_count);
        for minor in [signed(position.debits), signed(position.credits), position.net()] {
            out.push(b',');
            push_amount(&mut out, minor, exponent);
        }
        out.push(b',');
        push_u128(&mut out, position.debits);
        out.push(b',');
        push_u128(&mut out, position.credits);
        out.push(b',');
        let net = position.net();
        if net < 0 {
            out.push(b'-');
        }
        push_u128(&mut out, net.unsigned_abs());
        let parts = components.get(&(*participant, *currency)).copied().unwrap_or_default();
        for part in parts {
            out.push(b',');
            push_amount(&mut out, part, exponent);
        }
        out.push(b'\n');
    }
    write_small_file(dir, POSITIONS_FILE, &out).map_err(ClearingError::io(dir.join(POSITIONS_FILE)))
}

/// Sums of u64 amounts within one window stay far below 2^127 (as `Position::net` assumes).
fn signed(minor: u128) -> i128 {
    i128::try_from(minor).unwrap_or(i128::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn position(debits: u128, credits: u128) -> Position {
        Position { debits, credits, debit_count: u64::from(debits > 0), credit_count: u64::from(credits > 0) }
    }

    #[test]
    fn a_window_whose_nets_do_not_sum_to_zero_is_an_error() {
        let usd = Currency::from_code("USD").expect("USD");
        let jpy = Currency::from_code("JPY").expect("JPY");
        let mut view = WindowPositions {
            window: WindowId(7),
            state: WindowState::Closed { closed_at: 1 },
            transfer_count: 3,
            first_seq: 1,
            last_seq: Some(4),
            positions: BTreeMap::new(),
        };
        view.positions.insert((ParticipantId(1), usd), position(500, 0));
        view.positions.insert((ParticipantId(2), usd), position(0, 500));
        view.positions.insert((ParticipantId(1), jpy), position(0, 70));
        view.positions.insert((ParticipantId(2), jpy), position(69, 0));
        match check_zero_sum(&view) {
            Err(ClearingError::NetsDoNotSumToZero { window: 7, currency, sum_minor: 1 }) => assert_eq!(currency, "JPY"),
            other => panic!("expected a zero-sum error, got {other:?}"),
        }
        view.positions.insert((ParticipantId(2), jpy), position(70, 0));
        assert!(check_zero_sum(&view).is_ok());
    }

    #[test]
    fn kinds_follow_the_flags_and_parse_back() {
        let cases = [
            (TransferFlags::NONE, TransferKind::Single),
            (TransferFlags::LINKED, TransferKind::Single),
            (TransferFlags::PENDING | TransferFlags::LINKED, TransferKind::Hold),
            (TransferFlags::POST_PENDING, TransferKind::Post),
            (TransferFlags::VOID_PENDING, TransferKind::Void),
        ];
        for (flags, kind) in cases {
            assert_eq!(TransferKind::of(flags), kind);
            assert_eq!(TransferKind::parse(kind.name()), Some(kind));
        }
        assert!(TransferKind::Single.moves_money() && TransferKind::Post.moves_money());
        assert!(!TransferKind::Hold.moves_money() && !TransferKind::Void.moves_money());
    }

    #[test]
    fn long_identifiers_are_hashed_to_fit_max35() {
        let usd = Currency::from_code("USD").expect("USD");
        assert_eq!(iso20022::statement_id(1, ParticipantId(2), usd), "JNC-1-2-USD");
        let long = iso20022::statement_id(u64::MAX, ParticipantId(u64::MAX), usd);
        assert_eq!(long.len(), 35);
        assert!(long.starts_with("JNC-"));
        assert_eq!(long, iso20022::statement_id(u64::MAX, ParticipantId(u64::MAX), usd), "deterministic");
    }
}
