//! Recovery: opening the store, loading the latest checkpoint, and replaying the journal
//! after it. Replay re-runs every rule and panics on any disagreement: a wrong journal
//! stops the process rather than running on wrong books.

use crate::checkpoint;
use crate::error::LedgerError;
use crate::index::Horizon;
use crate::indexer::COLD_THROUGH_RECORD;
use crate::journal::{self, JournalEntry};
use crate::state::State;
use crate::store::Store;
use std::path::Path;
use std::time::Instant;

/// What `open` found and how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The journal entry the loaded checkpoint covers up to (0: none, full replay).
    pub checkpoint_seq: u64,
    /// Journal entries replayed after the checkpoint.
    pub entries_replayed: u64,
    pub transfers_replayed: u64,
    /// The whole open, and its three phases: opening RocksDB (which replays its own
    /// write-ahead log), loading the checkpoint, replaying the journal after it.
    pub duration_us: u64,
    pub storage_open_us: u64,
    pub checkpoint_load_us: u64,
    pub replay_us: u64,
}

/// Opens the store at `path` and rebuilds the state as of its last durable entry.
pub(crate) fn recover(
    path: &Path,
    wal_size_bytes_max: u64,
    index_retention_ns: u64,
) -> Result<(Store, State, RecoveryReport), LedgerError> {
    let started = Instant::now();
    let store = Store::open(path, wal_size_bytes_max, index_retention_ns)?;
    let storage_open_us = started.elapsed().as_micros() as u64;
    let cold_through_seq = match store.ledger_record(COLD_THROUGH_RECORD)? {
        Some(bytes) => u64::from_be_bytes(
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| LedgerError::Corrupt("the cold index's mark is not 8 bytes".into()))?,
        ),
        None => 0,
    };
    let (mut state, mut checkpoint_seq) = load_checkpoint(&store);
    if checkpoint_seq > cold_through_seq {
        // A checkpoint holds no index: it is usable only if the cold index reaches it.
        tracing::warn!(
            checkpoint_seq,
            cold_through_seq,
            "checkpoint ahead of the cold index; replaying the whole journal"
        );
        (state, checkpoint_seq) = (State::new(), 0);
    }
    state.cold_through_seq = cold_through_seq;
    if checkpoint_seq > 0 {
        // Memory starts with the journal after the checkpoint; what came before is cold.
        state.horizon = Horizon { floor_seq: checkpoint_seq, floor_time_ns: state.last_timestamp };
    }
    let checkpoint_load_us = started.elapsed().as_micros() as u64 - storage_open_us;
    let mut transfers_replayed = 0u64;
    let mut entries_replayed = 0u64;
    store.scan_journal(state.next_seq, |seq, bytes| {
        let entry = journal::decode(bytes).map_err(|e| LedgerError::Corrupt(format!("entry {seq}: {e}")))?;
        transfers_replayed += replay_entry(&mut state, seq, entry);
        entries_replayed += 1;
        Ok(true)
    })?;
    let replay_us = started.elapsed().as_micros() as u64 - storage_open_us - checkpoint_load_us;
    let recovery = RecoveryReport {
        checkpoint_seq,
        entries_replayed,
        transfers_replayed,
        duration_us: started.elapsed().as_micros() as u64,
        storage_open_us,
        checkpoint_load_us,
        replay_us,
    };
    tracing::info!(
        checkpoint_seq = recovery.checkpoint_seq,
        entries = recovery.entries_replayed,
        transfers = recovery.transfers_replayed,
        duration_us = recovery.duration_us,
        storage_open_us,
        checkpoint_load_us,
        replay_us,
        "ledger recovered"
    );
    Ok((store, state, recovery))
}

/// The state of the latest checkpoint and the entry it covers, or an empty state and 0
/// when there is none or it cannot be read (then the whole journal is replayed).
fn load_checkpoint(store: &Store) -> (State, u64) {
    match checkpoint::load(store) {
        Ok(Some(loaded)) => loaded,
        Ok(None) => (State::new(), 0),
        Err(error) => {
            tracing::warn!(%error, "checkpoint unusable; replaying the whole journal");
            (State::new(), 0)
        }
    }
}

/// Applies one journal entry to the state (recovery, and a replica following a primary).
/// Metadata entries change no state: their records are in the metadata column family,
/// written with the entry. Returns the number of transfers replayed.
pub(crate) fn replay_entry(state: &mut State, seq: u64, entry: JournalEntry) -> u64 {
    match entry {
        JournalEntry::Transfers { expired, records, answers, .. } => {
            state.replay(seq, &expired, &records, &answers);
            records.len() as u64
        }
        JournalEntry::Accounts { accounts } => {
            for account in accounts {
                assert_eq!(
                    state.check_account(&account),
                    Ok(true),
                    "journal entry {seq}: account {:?} replays badly",
                    account.id
                );
                state.insert_account(account);
            }
            state.next_seq += 1;
            0
        }
        JournalEntry::AccountUpdate(update) => {
            assert_eq!(state.update_account(&update), Ok(()), "journal entry {seq}: update replays badly");
            state.next_seq += 1;
            0
        }
        JournalEntry::CloseWindow { window, closed_at } => {
            assert_eq!(window, state.window, "journal entry {seq}: closes the wrong window");
            state.close_window(closed_at, seq);
            state.next_seq += 1;
            0
        }
        JournalEntry::Metadata(_) => {
            state.next_seq += 1;
            0
        }
    }
}
