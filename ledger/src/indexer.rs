//! The index's upkeep, on its own thread: flushes the journal's index entries to the cold
//! index and drops the oldest from memory once memory holds more than its bound or they
//! are older than the duplicate window (see `index.rs`). Checkpoints flush through their
//! own entry first, under the same lock, so that the checkpoint need not hold the index.

use crate::error::LedgerError;
use crate::index::{self, ColdIndex, Horizon};
use crate::state::{HoldStatus, State, TransferIndexEntry};
use crate::types::TransferId;
use crate::writer::Shared;
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the index's upkeep looks at memory.
pub const INDEX_UPKEEP_INTERVAL_MS: u64 = 1_000;

/// Most ids dropped from memory in one round (each round reads their journal entries back).
pub const EVICTED_PER_ROUND_MAX: usize = 1 << 20;

/// Ids dropped from memory per hold of the sequencer lock: a few milliseconds of pause.
pub const EVICTED_PER_LOCK_MAX: usize = 1 << 16;

/// Name of the ledger record that says through which journal entry the cold index is
/// complete.
pub(crate) const COLD_THROUGH_RECORD: &str = "index.cold_through_seq";

/// The index's bounds, from `LedgerOptions`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexBounds {
    pub memory_entries_max: usize,
    pub window_ns: u64,
}

impl IndexBounds {
    /// Memory past this many entries starts a round of eviction. Well below the bound: the
    /// table is reserved for the bound at open, and a round (reading the journal back,
    /// writing SST files) takes seconds at full load; ids that outran it would make the
    /// table grow, a rehash of millions of entries under the sequencer lock (1.26 s at
    /// 3.6M entries, 2026-12-06).
    fn high_water(&self) -> usize {
        self.memory_entries_max / 4 * 3
    }

    /// A round evicts down to this many entries.
    fn low_water(&self) -> usize {
        self.memory_entries_max / 8 * 5
    }
}

/// What one round of upkeep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexUpkeep {
    /// Index entries written to the cold index.
    pub flushed: u64,
    /// Ids dropped from memory.
    pub evicted: u64,
    /// Index entries left in memory.
    pub in_memory: u64,
}

/// The upkeep thread; stopped and joined when dropped.
pub(crate) struct Indexer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Indexer {
    pub fn start(
        state: Arc<Mutex<State>>,
        shared: Arc<Shared>,
        maintenance: Arc<Mutex<()>>,
        bounds: IndexBounds,
    ) -> Result<Indexer, LedgerError> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ledger-indexer".into())
            .spawn(move || {
                let body = || loop {
                    {
                        let mut stopped = signal.0.lock();
                        if !*stopped {
                            signal.1.wait_for(&mut stopped, Duration::from_millis(INDEX_UPKEEP_INTERVAL_MS));
                        }
                        if *stopped {
                            return;
                        }
                    }
                    if shared.check_available().is_err() {
                        continue;
                    }
                    let _one_at_a_time = maintenance.lock();
                    if let Err(error) = upkeep(&state, &shared, bounds) {
                        tracing::error!(%error, "the index's upkeep failed; it will try again");
                    }
                };
                // A panic here is a broken invariant, as on every thread of the ledger.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_err() {
                    std::process::abort();
                }
            })
            .map_err(|e| LedgerError::Storage(format!("spawning the indexer thread: {e}")))?;
        Ok(Indexer { stop, thread: Some(thread) })
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Writes the index entries of durable journal entries through `through_seq` to the cold
/// index, and records how far it is complete. Callers hold the maintenance lock.
pub(crate) fn flush_through(state: &Mutex<State>, shared: &Shared, through_seq: u64) -> Result<u64, LedgerError> {
    let from = state.lock().cold_through_seq + 1;
    if from > through_seq {
        return Ok(0);
    }
    shared.wait_durable(through_seq)?;
    let flushed = index::flush(&shared.store, from, through_seq)?;
    shared.store.put_ledger_record(COLD_THROUGH_RECORD, &through_seq.to_be_bytes())?;
    state.lock().cold_through_seq = through_seq;
    Ok(flushed.entries)
}

/// One round: when memory holds more than its bound, or ids older than the duplicate
/// window, the oldest go (at most `EVICTED_PER_ROUND_MAX`): flushed first if they are
/// not in the cold index yet. Callers hold the maintenance lock.
pub(crate) fn upkeep(state: &Mutex<State>, shared: &Shared, bounds: IndexBounds) -> Result<IndexUpkeep, LedgerError> {
    let (in_memory, floor) = {
        let state = state.lock();
        (state.transfers.len(), state.horizon)
    };
    let expire_before_ns = now_ns().saturating_sub(bounds.window_ns);
    let over = in_memory.saturating_sub(bounds.low_water());
    let mut report = IndexUpkeep { in_memory: in_memory as u64, ..IndexUpkeep::default() };
    drop_resolved_holds(state, shared)?;
    if in_memory <= bounds.high_water() && !oldest_expired(shared, floor, expire_before_ns)? {
        return Ok(report);
    }
    // The oldest journal entries whose ids go: enough for the bound, and every one older
    // than the window, a round's worth at most.
    let durable = shared.durable_seq();
    let mut ids: Vec<TransferId> = Vec::new();
    let mut through = floor;
    shared.store.scan_journal(floor.floor_seq + 1, |seq, bytes| {
        if seq > durable || ids.len() >= EVICTED_PER_ROUND_MAX {
            return Ok(false);
        }
        let mut newest = 0;
        let mut entry_ids = Vec::new();
        index::entries_of(seq, bytes, |id, entry| {
            newest = newest.max(entry.timestamp);
            entry_ids.push(id);
        })?;
        if ids.len() >= over && newest >= expire_before_ns && through.floor_seq > floor.floor_seq {
            return Ok(false);
        }
        ids.extend(entry_ids);
        through = Horizon { floor_seq: seq, floor_time_ns: through.floor_time_ns.max(newest) };
        Ok(true)
    })?;
    if through.floor_seq == floor.floor_seq {
        return Ok(report);
    }
    report.flushed = flush_through(state, shared, through.floor_seq)?;
    // Memory says it may miss these ids before it drops them: a lookup meanwhile goes to
    // the cold index, which has them. How their resolved holds ended goes there first.
    state.lock().horizon = through;
    for chunk in ids.chunks(EVICTED_PER_LOCK_MAX) {
        let endings = state.lock().hold_endings(chunk);
        write_cold(shared, endings)?;
        state.lock().evict(chunk);
    }
    report.evicted = ids.len() as u64;
    report.in_memory = state.lock().transfers.len() as u64;
    tracing::debug!(
        evicted = report.evicted,
        flushed = report.flushed,
        in_memory = report.in_memory,
        floor_seq = through.floor_seq,
        "index upkeep"
    );
    Ok(report)
}

/// Whether the oldest journal entry memory may still hold is older than the window.
fn oldest_expired(shared: &Shared, floor: Horizon, expire_before_ns: u64) -> Result<bool, LedgerError> {
    let mut expired = false;
    if floor.floor_seq + 1 > shared.durable_seq() {
        return Ok(false);
    }
    shared.store.scan_journal(floor.floor_seq + 1, |seq, bytes| {
        let mut newest = None;
        index::entries_of(seq, bytes, |_, entry| newest = Some(newest.unwrap_or(0).max(entry.timestamp)))?;
        expired = newest.is_some_and(|timestamp| timestamp < expire_before_ns);
        Ok(false)
    })?;
    Ok(expired)
}

/// Writes index entries to the cold index (in id order), replacing what it held for them.
fn write_cold(shared: &Shared, mut entries: Vec<(TransferId, TransferIndexEntry)>) -> Result<(), LedgerError> {
    if entries.is_empty() {
        return Ok(());
    }
    entries.sort_unstable_by_key(|(id, _)| id.0);
    shared.store.install_cold_index(entries.iter().map(|(id, entry)| (*id, index::encode_entry(entry))))
}

/// Writes how these holds ended into the cold index (their index entries are there
/// already): a checkpoint keeps only pending holds.
pub(crate) fn write_hold_endings(shared: &Shared, holds: &[(TransferId, HoldStatus)]) -> Result<(), LedgerError> {
    let mut endings = Vec::with_capacity(holds.len());
    for (id, status) in holds {
        if let Some(entry) = shared.store.get(*id)? {
            endings.push((*id, entry.with_hold_status(*status)));
        }
    }
    write_cold(shared, endings)
}

/// Holds resolved after their id had left memory: the cold index learns how they ended,
/// then memory drops them.
fn drop_resolved_holds(state: &Mutex<State>, shared: &Shared) -> Result<(), LedgerError> {
    let resolved = state.lock().take_resolved_cold();
    if resolved.is_empty() {
        return Ok(());
    }
    let mut endings = Vec::with_capacity(resolved.len());
    for (id, status) in &resolved {
        if let Some(entry) = shared.store.get(*id)? {
            endings.push((*id, entry.with_hold_status(*status)));
        }
    }
    let ids: Vec<TransferId> = endings.iter().map(|(id, _)| *id).collect();
    write_cold(shared, endings)?;
    state.lock().drop_holds(&ids);
    Ok(())
}
