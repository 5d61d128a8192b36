//! The ledger's public handle: the sequencer, commits, windows, queries and checkpoints.
//! The durable writer thread is `writer.rs`, opening and replaying `recovery.rs`, and
//! every RocksDB call `store.rs`.
//!
//! Commit path: `submit` takes the sequencer lock, applies a batch to the in-memory state
//! (HOT PATH, `state.rs`), encodes the committed transfers as journal entry `n`, hands the
//! bytes to the writer thread and returns a `Ticket`. The writer groups whatever entries
//! are queued into one RocksDB write with the WAL synced, then raises the durable watermark.
//! `Ticket::wait` returns the per-transfer results only once the watermark reaches `n`, so
//! nothing is acknowledged before it is on disk, and while entry `n` syncs the caller can
//! already apply `n + 1` (pipelining).

use crate::checkpoint;
use crate::currency::Currency;
use crate::error::LedgerError;
use crate::index::ColdIndex;
use crate::indexer::{self, IndexBounds, IndexUpkeep, Indexer};
use crate::journal::{self, JournalEntry, MetadataChange};
use crate::limits::{
    ACCOUNTS_PER_CALL_MAX, ACCOUNTS_PER_ENTRY_MAX, BATCH_TRANSFERS_MAX, HISTORY_PAGE_MAX, METADATA_ENTRY_BYTES_MAX,
    WRITE_QUEUE_DEPTH_MAX,
};
use crate::recovery::{self, RecoveryReport};
use crate::state::TransferIndexEntry;
use crate::state::{EntryRecords, HoldStatus, State};
use crate::types::{
    Account, AccountError, AccountId, AccountUpdate, Balances, CommandOutcome, CommandPart, CommandResult,
    DetailRecord, ParticipantId, Position, PositionKey, Transfer, TransferError, TransferId, TransferOk,
    TransferRecord, WindowId, WindowState,
};
use crate::writer::{JournalSink, Shared, WriteJob, WriterReport, DURABLE_WAIT_MS_MAX};
use crossbeam::channel::{bounded, SendTimeoutError, Sender};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Holds reserved at open per this many index entries reserved (`transfers_reserved`).
pub const HOLDS_PER_INDEX_ENTRIES: usize = 8;

/// Default of `LedgerOptions::index_memory_entries_max`: about 3.2 GiB of index in memory.
pub const INDEX_MEMORY_ENTRIES_MAX_DEFAULT: usize = 50_000_000;

/// Default of `LedgerOptions::duplicate_window_s`: 48 hours.
pub const DUPLICATE_WINDOW_S_DEFAULT: u64 = 48 * 3600;

#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// Sync the WAL on every group commit. Only benchmarks comparing sync costs turn it off.
    pub sync: bool,
    /// Most bytes of write-ahead log before RocksDB flushes its memtables (0: RocksDB's
    /// default, about 4x the memtables). Smaller means less log to replay at open (a faster
    /// restart) and less space preallocated, at some cost in ingest speed.
    pub wal_size_bytes_max: u64,
    /// Room reserved at open in the index of committed transfers (0: grow as needed).
    /// The index holds every transfer ever committed; growing it copies
    /// the whole table once per doubling, under the sequencer lock, which stalls commits
    /// for up to a second at tens of millions of transfers. Reserving the day's expected
    /// volume up front spends memory (50 to 100 bytes per transfer: the table grows in powers of two) instead.
    pub transfers_reserved: usize,
    /// Most index entries (transfer ids and command keys) kept in memory; older ones live
    /// in the cold index on disk (see `index.rs`). About 64 bytes each.
    pub index_memory_entries_max: usize,
    /// How long an id is remembered at all (memory or cold index): a resend within it gets
    /// its original answer. Past it, the cold index forgets the id when it compacts.
    pub duplicate_window_s: u64,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            sync: true,
            wal_size_bytes_max: 0,
            transfers_reserved: 0,
            index_memory_entries_max: INDEX_MEMORY_ENTRIES_MAX_DEFAULT,
            duplicate_window_s: DUPLICATE_WINDOW_S_DEFAULT,
        }
    }
}

/// Junction's double-entry ledger. Cheap to share: wrap it in an `Arc`.
pub struct Ledger {
    shared: Arc<Shared>,
    state: Arc<Mutex<State>>,
    writer_queue: Option<Sender<WriteJob>>,
    writer: Option<JoinHandle<()>>,
    recovery: RecoveryReport,
    /// One checkpoint or index flush at a time.
    maintenance: Arc<Mutex<()>>,
    indexer: Option<Indexer>,
    bounds: IndexBounds,
    /// Where entries are replicated, once `start_replication` was called.
    sink: OnceLock<Arc<dyn JournalSink>>,
}

/// The results of a submitted batch (per transfer, or per command), released once the
/// batch is durable.
#[must_use = "results may only be acted on after wait() confirms durability"]
pub struct Ticket<R = Result<TransferOk, TransferError>> {
    seq: u64,
    results: Vec<R>,
}

impl<R> Ticket<R> {
    /// The journal entry this batch waits for.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// A window's positions per participant and currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowPositions {
    pub window: WindowId,
    pub state: WindowState,
    pub transfer_count: u64,
    /// Journal entries of the window: `first_seq..=last_seq` (last is the close entry).
    pub first_seq: u64,
    pub last_seq: Option<u64>,
    pub positions: BTreeMap<PositionKey, Position>,
}

/// Buckets of the accounts table a checkpoint copies per hold of the sequencer lock
/// (about 250 bytes each: a few milliseconds of waiting commits at most).
pub const CHECKPOINT_COPY_BUCKETS: usize = 1 << 13;

/// What a checkpoint covered and cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointReport {
    /// Journal entries covered: `1..=seq`.
    pub seq: u64,
    /// How long commits waited, in all, while the state was copied (in short pieces).
    pub pause_us: u64,
    /// The longest single wait.
    pub pause_us_max: u64,
    /// The whole checkpoint: flushing the cold index, copying, writing, installing.
    pub duration_us: u64,
}

/// Where the transfer index stands (see `index.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexReport {
    /// Ids (transfers and command keys) in memory.
    pub entries_in_memory: u64,
    /// Holds in memory: the pending ones, and resolved ones whose id is still in memory.
    pub holds_in_memory: u64,
    /// Memory has every id answered after this journal entry.
    pub memory_floor_seq: u64,
    /// The cold index has every id answered up to this journal entry.
    pub cold_through_seq: u64,
    /// Lookups that went to the cold index since open (ids memory did not have and that
    /// could be older than memory).
    pub cold_lookups: u64,
}

/// A hold still pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingHold {
    pub debit_account: AccountId,
    pub credit_account: AccountId,
    pub amount: u64,
    pub currency: Currency,
    /// When it expires by itself, nanoseconds since the epoch; 0: never.
    pub expires_at: u64,
}

/// A view of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    pub account: Account,
    pub balances: Balances,
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

impl Ledger {
    /// Opens (or creates) the ledger at `path` and rebuilds its state from the journal.
    pub fn open(path: &Path, options: LedgerOptions) -> Result<Ledger, LedgerError> {
        let window_ns = options.duplicate_window_s.saturating_mul(1_000_000_000);
        let (store, mut state, recovery) = recovery::recover(path, options.wal_size_bytes_max, window_ns)?;
        state.transfers.reserve(options.transfers_reserved.saturating_sub(state.transfers.len()));
        // Holds grow with the index (a resolved hold leaves memory with its id): room for
        // the share of them that holds usually are, so that the table does not double
        // (a rehash of hundreds of thousands of holds under the sequencer lock: 192 ms at
        // 460k holds, 2026-12-06) while the switch runs. More than that still fits: the
        // table then grows.
        let holds_reserved = options.transfers_reserved / HOLDS_PER_INDEX_ENTRIES;
        state.holds.reserve(holds_reserved.saturating_sub(state.holds.len()));
        let durable_seq = state.next_seq - 1;
        let shared = Arc::new(Shared::new(store, durable_seq, options.sync));
        let (sender, receiver) = bounded(WRITE_QUEUE_DEPTH_MAX);
        let writer = shared.spawn_writer(receiver)?;
        let state = Arc::new(Mutex::new(state));
        let maintenance = Arc::new(Mutex::new(()));
        let bounds = IndexBounds { memory_entries_max: options.index_memory_entries_max, window_ns };
        let indexer = Indexer::start(Arc::clone(&state), Arc::clone(&shared), Arc::clone(&maintenance), bounds)?;
        Ok(Ledger {
            shared,
            state,
            writer_queue: Some(sender),
            writer: Some(writer),
            recovery,
            maintenance,
            indexer: Some(indexer),
            bounds,
            sink: OnceLock::new(),
        })
    }

    pub fn recovery(&self) -> RecoveryReport {
        self.recovery
    }

    /// Ok while the ledger accepts commits; the storage error once a write has failed.
    pub fn health(&self) -> Result<(), LedgerError> {
        self.check_available()
    }

    fn check_available(&self) -> Result<(), LedgerError> {
        self.shared.check_available()
    }

    /// Hands an encoded entry to the writer. Called with the sequencer lock held, so
    /// entries reach the writer in sequence order.
    fn enqueue(&self, state: &mut State, entry: &JournalEntry) -> Result<u64, LedgerError> {
        self.enqueue_asked(state, entry, None)
    }

    /// `enqueue` of a batch of transfers whose caller asked for the sequencer lock at
    /// `asked`: the writer's pause metric counts its wait for the lock as a wait for disk.
    fn enqueue_asked(
        &self,
        state: &mut State,
        entry: &JournalEntry,
        asked: Option<std::time::Instant>,
    ) -> Result<u64, LedgerError> {
        let metadata = match entry {
            JournalEntry::Metadata(change) => Some(Box::new(change.clone())),
            _ => None,
        };
        let seq = state.next_seq;
        let sink = self.sink.get();
        if sink.is_some() {
            self.shared.wait_replication_room(seq)?;
        }
        let bytes = journal::encode(entry);
        if let Some(sink) = sink {
            sink.publish(seq, &bytes);
        }
        state.next_seq += 1;
        self.send_to_writer(WriteJob { seq, queued: std::time::Instant::now(), asked, bytes, metadata })
    }

    /// Hands a job to the writer thread (in sequence order: under the sequencer lock).
    fn send_to_writer(&self, job: WriteJob) -> Result<u64, LedgerError> {
        let seq = job.seq;
        let queue = self.writer_queue.as_ref().ok_or_else(|| LedgerError::Unavailable("ledger is closing".into()))?;
        // The queue is full only while the disk is behind; a writer stuck for longer than a
        // durability wait may last is a failing disk.
        match queue.send_timeout(job, Duration::from_millis(DURABLE_WAIT_MS_MAX)) {
            Ok(()) => Ok(seq),
            Err(SendTimeoutError::Timeout(_)) => {
                let error = format!("the writer took no journal entry for {DURABLE_WAIT_MS_MAX} ms");
                self.shared.fail(error.clone());
                Err(LedgerError::Unavailable(error))
            }
            Err(SendTimeoutError::Disconnected(_)) => Err(LedgerError::Unavailable("writer thread has stopped".into())),
        }
    }

    /// Applies a batch and queues it for durable commit. The results in the ticket must
    /// not be acted on before `wait` returns them.
    pub fn submit(&self, transfers: &[Transfer]) -> Result<Ticket, LedgerError> {
        self.submit_at(now_ns(), transfers)
    }

    /// `submit` with the caller's clock (nanoseconds since the epoch). The ledger still
    /// makes timestamps strictly increasing. Lets tests drive hold expiry deterministically.
    pub fn submit_at(&self, now: u64, transfers: &[Transfer]) -> Result<Ticket, LedgerError> {
        self.submit_parts_at(now, &[transfers])
    }

    /// Applies several batches as one journal entry (one commit), without copying them
    /// into one: the results are in order, part after part. Each part is a batch of its
    /// own for linked chains (a chain cannot run from one part into the next); together
    /// they may hold at most `BATCH_TRANSFERS_MAX` transfers.
    pub fn submit_parts(&self, parts: &[&[Transfer]]) -> Result<Ticket, LedgerError> {
        self.submit_parts_at(now_ns(), parts)
    }

    fn submit_parts_at(&self, now: u64, parts: &[&[Transfer]]) -> Result<Ticket, LedgerError> {
        let count: usize = parts.iter().map(|part| part.len()).sum();
        if count > BATCH_TRANSFERS_MAX {
            return Err(LedgerError::BatchTooLarge(count));
        }
        self.check_available()?;
        let mut results = Vec::with_capacity(count);
        let ids = parts.iter().flat_map(|part| part.iter()).flat_map(|t| [&t.id, &t.pending_id]);
        let seq = self.apply_and_enqueue(now, ids, |state, out| {
            for part in parts {
                state.apply_batch(now, part, &mut results, &mut out.records);
            }
        })?;
        Ok(Ticket { seq, results })
    }

    /// Applies batches of commands as one journal entry (see `Command`): each part's
    /// commands own its transfers, consecutive and in order. One result per command, part
    /// after part. At most `BATCH_TRANSFERS_MAX` transfers and as many commands in all.
    pub fn submit_commands(&self, parts: &[CommandPart<'_>]) -> Result<Ticket<CommandResult>, LedgerError> {
        self.submit_commands_at(now_ns(), parts)
    }

    /// `submit_commands` with the caller's clock (tests).
    pub fn submit_commands_at(
        &self,
        now: u64,
        parts: &[CommandPart<'_>],
    ) -> Result<Ticket<CommandResult>, LedgerError> {
        let transfers: usize = parts.iter().map(|part| part.transfers.len()).sum();
        let commands: usize = parts.iter().map(|part| part.commands.len()).sum();
        if transfers > BATCH_TRANSFERS_MAX || commands > BATCH_TRANSFERS_MAX {
            return Err(LedgerError::BatchTooLarge(transfers.max(commands)));
        }
        for part in parts {
            if !part.memos.is_empty() && part.memos.len() != part.commands.len() {
                return Err(LedgerError::MemosDoNotMatchCommands {
                    memos: part.memos.len(),
                    commands: part.commands.len(),
                });
            }
            let charged: usize = part.commands.iter().map(|c| c.charges as usize).sum();
            if charged != part.charges.len() {
                return Err(LedgerError::CommandsDoNotCoverCharges { commands: charged, charges: part.charges.len() });
            }
            let covered: usize = part.commands.iter().map(|c| c.transfers as usize).sum();
            if covered != part.transfers.len() {
                return Err(LedgerError::CommandsDoNotCoverTransfers {
                    commands: covered,
                    transfers: part.transfers.len(),
                });
            }
        }
        self.check_available()?;
        let mut results = Vec::with_capacity(commands);
        let keys = parts.iter().flat_map(|part| part.commands.iter()).map(|c| &c.key);
        let ids = parts.iter().flat_map(|part| part.transfers.iter()).flat_map(|t| [&t.id, &t.pending_id]);
        let seq = self.apply_and_enqueue(now, keys.chain(ids), |state, out| {
            for part in parts {
                state.apply_commands(now, part, &mut results, out);
            }
            state.book_charges(now, &mut out.records);
        })?;
        Ok(Ticket { seq, results })
    }

    /// Under the sequencer lock: expires due holds, applies, and queues what changed as
    /// the next journal entry. Returns the entry to wait for (the last one when nothing
    /// changed: a duplicate's original may not be durable yet).
    fn apply_and_enqueue<'a>(
        &self,
        now: u64,
        ids: impl Iterator<Item = &'a TransferId>,
        apply: impl FnOnce(&mut State, &mut EntryRecords),
    ) -> Result<u64, LedgerError> {
        let mut expired = Vec::new();
        let asked = std::time::Instant::now();
        let mut state = self.state.lock();
        let mut slow = SlowHold::new("applying a batch");
        // What only the cold index knows is fetched first: applying does no I/O, and a
        // cold index that cannot be read refuses the batch before anything changed.
        state.prefetch_cold(ids, &self.shared.store)?;
        slow.mark("prefetched");
        let mut out = EntryRecords {
            records: std::mem::take(&mut state.records_scratch),
            answers: Vec::new(),
            details: Vec::new(),
            memos: Vec::new(),
        };
        out.records.clear();
        state.expire_due(now, &mut expired);
        slow.mark("expired");
        apply(&mut state, &mut out);
        state.end_batch();
        slow.mark("applied");
        let EntryRecords { records, answers, details, memos } = out;
        if records.is_empty() && expired.is_empty() && answers.is_empty() && details.is_empty() {
            state.records_scratch = records;
            return Ok(state.next_seq - 1);
        }
        let entry = JournalEntry::Transfers { expired, records, answers, details, memos };
        let seq = self.enqueue_asked(&mut state, &entry, Some(asked));
        if let JournalEntry::Transfers { records, .. } = entry {
            state.records_scratch = records;
        }
        seq
    }

    /// Waits until the ticket's batch is durable and returns its results.
    pub fn wait<R>(&self, ticket: Ticket<R>) -> Result<Vec<R>, LedgerError> {
        self.wait_durable(ticket.seq)?;
        Ok(ticket.results)
    }

    fn wait_durable(&self, seq: u64) -> Result<(), LedgerError> {
        self.shared.wait_durable(seq)
    }

    /// Submits a batch and waits for it: the results of a durable commit.
    pub fn commit(&self, transfers: &[Transfer]) -> Result<Vec<Result<TransferOk, TransferError>>, LedgerError> {
        let ticket = self.submit(transfers)?;
        self.wait(ticket)
    }

    /// Creates accounts durably. Per account: Ok(true) created, Ok(false) already there
    /// with the same attributes, or why not.
    pub fn create_accounts(&self, accounts: &[Account]) -> Result<Vec<Result<bool, AccountError>>, LedgerError> {
        if accounts.len() > ACCOUNTS_PER_CALL_MAX {
            return Err(LedgerError::TooManyAccounts(accounts.len()));
        }
        // Not while a checkpoint copies the accounts table (its buckets must stay put).
        let _no_copy = self.maintenance.lock();
        self.check_available()?;
        let mut state = self.state.lock();
        let mut results = Vec::with_capacity(accounts.len());
        let mut created = Vec::new();
        for account in accounts {
            // Inserting at once makes a repeat within the same call a duplicate of the first.
            let result = state.check_account(account);
            if result == Ok(true) {
                state.insert_account(*account);
                created.push(*account);
            }
            results.push(result);
        }
        let seq = if created.is_empty() {
            state.next_seq - 1
        } else {
            let mut seq = 0;
            for piece in created.chunks(ACCOUNTS_PER_ENTRY_MAX) {
                seq = self.enqueue(&mut state, &JournalEntry::Accounts { accounts: piece.to_vec() })?;
            }
            seq
        };
        drop(state);
        self.wait_durable(seq)?;
        Ok(results)
    }

    /// Changes an account's flags (e.g. closes it), credit limit and debit limits, durably.
    pub fn update_account(&self, update: AccountUpdate) -> Result<Result<(), AccountError>, LedgerError> {
        self.check_available()?;
        let mut state = self.state.lock();
        if let Err(error) = state.update_account(&update) {
            return Ok(Err(error));
        }
        let seq = self.enqueue(&mut state, &JournalEntry::AccountUpdate(update))?;
        drop(state);
        self.wait_durable(seq)?;
        Ok(Ok(()))
    }

    /// Closes the open settlement window: a consistent cut in the journal. Every transfer
    /// committed before it is in the closed window, every later one in the next. Traffic
    /// is held only for the moment it takes to move the window's positions aside.
    pub fn close_window(&self) -> Result<WindowPositions, LedgerError> {
        self.check_available()?;
        let mut state = self.state.lock();
        // The cut-off is never before the last transfer it includes (ledger timestamps are
        // forced to increase and may run ahead of the wall clock).
        let closed_at = now_ns().max(state.last_timestamp + 1);
        let window = state.window;
        let seq = self.enqueue(&mut state, &JournalEntry::CloseWindow { window, closed_at })?;
        state.close_window(closed_at, seq);
        let positions =
            window_view(&state, window).ok_or_else(|| LedgerError::Corrupt("closed window vanished".into()))?;
        drop(state);
        self.wait_durable(seq)?;
        Ok(positions)
    }

    /// The open window's id.
    pub fn current_window(&self) -> WindowId {
        self.state.lock().window
    }

    /// Positions of a window (open or closed), or None if it does not exist yet.
    pub fn window_positions(&self, window: WindowId) -> Option<WindowPositions> {
        window_view(&self.state.lock(), window)
    }

    /// Every window, oldest first.
    pub fn windows(&self) -> Vec<WindowPositions> {
        let state = self.state.lock();
        let mut windows: Vec<WindowPositions> =
            state.closed_windows.keys().filter_map(|w| window_view(&state, *w)).collect();
        windows.extend(window_view(&state, state.window));
        windows
    }

    pub fn account(&self, id: AccountId) -> Option<AccountView> {
        self.state.lock().accounts.get(&id).map(|a| AccountView { account: a.account, balances: a.balances })
    }

    /// The participant of each account of `ids` (None for an unknown one), in order:
    /// for readers of many accounts at a time (the clearing files), so that they take the
    /// sequencer lock once per `ACCOUNTS_PER_LOCK` accounts, briefly, not once each.
    pub fn participants_of(&self, ids: &[AccountId]) -> Vec<Option<ParticipantId>> {
        const ACCOUNTS_PER_LOCK: usize = 1024;
        let mut participants = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(ACCOUNTS_PER_LOCK) {
            let state = self.state.lock();
            participants.extend(chunk.iter().map(|id| state.accounts.get(id).map(|a| a.account.participant)));
        }
        participants
    }

    /// Visits every account, in no particular order (the sequencer lock is held meanwhile:
    /// for start-up, not for traffic).
    pub fn for_each_account(&self, mut visit: impl FnMut(&Account)) {
        let state = self.state.lock();
        for account in state.accounts.values() {
            visit(&account.account);
        }
    }

    pub fn account_count(&self) -> usize {
        self.state.lock().accounts.len()
    }

    /// Whether this id is known: a transfer committed (or being committed), or a
    /// command answered. Looks in the cold index when memory does not have it.
    pub fn contains_transfer(&self, id: TransferId) -> bool {
        self.index_entry(id).ok().flatten().is_some()
    }

    /// The answer of the command keyed `key`, with that command's digest, if it was
    /// answered (in memory or in the cold index).
    pub fn command_answer(&self, key: TransferId) -> Result<Option<(u64, CommandOutcome)>, LedgerError> {
        Ok(self.index_entry(key)?.and_then(|entry| Some((entry.digest, entry.command_outcome(key)?))))
    }

    /// What the index knows of an id, in memory or in the cold index.
    fn index_entry(&self, id: TransferId) -> Result<Option<TransferIndexEntry>, LedgerError> {
        let (entry, floor_seq) = {
            let state = self.state.lock();
            (state.transfers.get(&id).copied(), state.horizon.floor_seq)
        };
        match entry {
            Some(entry) => Ok(Some(entry)),
            None if floor_seq > 0 => self.shared.store.get(id),
            None => Ok(None),
        }
    }

    /// Where the index stands: what memory holds and how far the cold index reaches.
    pub fn index_report(&self) -> IndexReport {
        let state = self.state.lock();
        IndexReport {
            entries_in_memory: state.transfers.len() as u64,
            holds_in_memory: state.holds.len() as u64,
            memory_floor_seq: state.horizon.floor_seq,
            cold_through_seq: state.cold_through_seq,
            cold_lookups: state.cold_lookups,
        }
    }

    /// One round of the index's upkeep now (it also runs on its own every
    /// `INDEX_UPKEEP_INTERVAL_MS`): flush to the cold index and drop from memory what is
    /// over the bound or older than the duplicate window.
    pub fn index_upkeep(&self) -> Result<IndexUpkeep, LedgerError> {
        let _one_at_a_time = self.maintenance.lock();
        indexer::upkeep(&self.state, &self.shared, self.bounds)
    }

    /// Every hold still pending (neither posted, voided nor expired), for a caller that
    /// rebuilds what it reserved against them after a restart.
    pub fn pending_holds(&self) -> Vec<(TransferId, PendingHold)> {
        let state = self.state.lock();
        state
            .holds
            .iter()
            .filter(|(_, hold)| hold.status == HoldStatus::Pending)
            .map(|(id, hold)| {
                let view = PendingHold {
                    debit_account: hold.debit,
                    credit_account: hold.credit,
                    amount: hold.amount,
                    currency: hold.currency,
                    expires_at: hold.expires_at,
                };
                (*id, view)
            })
            .collect()
    }

    /// Whether a hold is still pending (neither posted, voided nor expired).
    pub fn is_pending(&self, id: TransferId) -> bool {
        self.state.lock().holds.get(&id).is_some_and(|h| h.status == HoldStatus::Pending)
    }

    /// A committed transfer by id, read back from the journal.
    pub fn transfer(&self, id: TransferId) -> Result<Option<TransferRecord>, LedgerError> {
        let Some(entry) = self.index_entry(id)? else {
            return Ok(None);
        };
        self.wait_durable(entry.seq)?;
        let records = self.read_records(entry.seq)?;
        Ok(records.into_iter().find(|r| r.transfer.id == id))
    }

    /// A committed transfer by id, with the memo of the command it was answered under
    /// (`command`: that command's key), both read back from the one journal entry.
    pub fn transfer_with_detail(
        &self,
        id: TransferId,
        command: TransferId,
    ) -> Result<Option<(TransferRecord, Option<DetailRecord>)>, LedgerError> {
        let Some(entry) = self.index_entry(id)? else {
            return Ok(None);
        };
        self.wait_durable(entry.seq)?;
        let bytes = self.shared.store.journal_entry(entry.seq)?;
        let seq = entry.seq;
        match journal::decode(&bytes).map_err(|e| LedgerError::Corrupt(format!("entry {seq}: {e}")))? {
            JournalEntry::Transfers { records, answers, details, memos, .. } => {
                let Some(record) = records.iter().find(|r| r.transfer.id == id).copied() else { return Ok(None) };
                let detail = journal::detail_records(&records, &answers, &details, &memos)
                    .find(|detail| detail.as_ref().map_or(true, |d| d.key == command))
                    .transpose()
                    .map_err(|e| LedgerError::Corrupt(format!("entry {seq}: {e}")))?;
                Ok(Some((record, detail)))
            }
            _ => Ok(None),
        }
    }

    /// An account's transfers, newest first: at most `limit` (capped at
    /// `HISTORY_PAGE_MAX`) committed before `before_timestamp` (None for the newest page).
    /// Pass the last timestamp of a page to get the next one. Walks the account's chain
    /// through the journal (each record links to the previous entry that moved each of
    /// its accounts), so a page costs one journal read per entry it spans.
    pub fn account_transfers(
        &self,
        id: AccountId,
        before_timestamp: Option<u64>,
        limit: usize,
    ) -> Result<Vec<TransferRecord>, LedgerError> {
        let limit = limit.min(HISTORY_PAGE_MAX);
        let Some(mut seq) = self.state.lock().accounts.get(&id).map(|a| a.links.last_seq) else {
            return Ok(Vec::new());
        };
        self.wait_durable(seq)?;
        let before = before_timestamp.unwrap_or(u64::MAX);
        let mut page = Vec::new();
        while seq != 0 && page.len() < limit {
            let mut records: Vec<TransferRecord> = self
                .read_records(seq)?
                .into_iter()
                .filter(|r| r.transfer.debit_account == id || r.transfer.credit_account == id)
                .collect();
            let Some(first) = records.first() else {
                return Err(LedgerError::Corrupt(format!(
                    "entry {seq} is in account {id:?}'s chain but does not move it"
                )));
            };
            let previous =
                if first.transfer.debit_account == id { first.debit_previous_seq } else { first.credit_previous_seq };
            records.retain(|r| r.timestamp < before);
            records.reverse();
            page.extend(records.into_iter().take(limit - page.len()));
            seq = previous;
        }
        Ok(page)
    }

    fn read_records(&self, seq: u64) -> Result<Vec<TransferRecord>, LedgerError> {
        let bytes = self.shared.store.journal_entry(seq)?;
        match journal::decode(&bytes).map_err(|e| LedgerError::Corrupt(format!("entry {seq}: {e}")))? {
            JournalEntry::Transfers { records, .. } => Ok(records),
            _ => Ok(Vec::new()),
        }
    }

    /// Streams every committed transfer of journal entries `first_seq..=last_seq` in order
    /// (e.g. one window), without holding them all in memory.
    pub fn for_each_transfer(
        &self,
        first_seq: u64,
        last_seq: u64,
        mut visit: impl FnMut(&TransferRecord),
    ) -> Result<(), LedgerError> {
        self.for_each_batch(first_seq, last_seq, |records, _| records.iter().for_each(&mut visit))
    }

    /// Streams the transfer records of journal entries `first_seq..=last_seq` with the
    /// memos of the commands each entry answered, one entry at a time (a `DetailRecord`
    /// names its records by their place in the entry's).
    pub fn for_each_batch(
        &self,
        first_seq: u64,
        last_seq: u64,
        mut visit: impl FnMut(Vec<TransferRecord>, Vec<DetailRecord>),
    ) -> Result<(), LedgerError> {
        self.wait_durable(last_seq)?;
        self.shared.store.scan_journal(first_seq, |seq, bytes| {
            if seq > last_seq {
                return Ok(false);
            }
            if let JournalEntry::Transfers { records, answers, details, memos, .. } =
                journal::decode(bytes).map_err(|e| LedgerError::Corrupt(format!("entry {seq}: {e}")))?
            {
                let details = journal::detail_records(&records, &answers, &details, &memos)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| LedgerError::Corrupt(format!("entry {seq}: {e}")))?;
                visit(records, details);
            }
            Ok(true)
        })
    }

    /// Writes a checkpoint of the state as of now, so the next open replays only what
    /// comes after it. Traffic pauses while the state is copied (a straight copy: about
    /// 50 ms per million transfers in the index), not while it is encoded and written.
    /// Returns the journal entry it covers up to.
    pub fn checkpoint(&self) -> Result<u64, LedgerError> {
        Ok(self.checkpoint_report()?.seq)
    }

    /// `checkpoint`, with what it cost.
    pub fn checkpoint_report(&self) -> Result<CheckpointReport, LedgerError> {
        let started = std::time::Instant::now();
        let _one_at_a_time = self.maintenance.lock();
        self.check_available()?;
        // The state as of entry `seq`: scalars and pending holds copied at once, accounts
        // a chunk at a time with copy-on-write (`accounts.rs`), so that commits wait only
        // for short moments (`pause_us_max`), never for the whole table.
        let (seq, mut snapshot, resolved, mut pause_us) = {
            let mut state = self.state.lock();
            let copying = std::time::Instant::now();
            let (snapshot, resolved) = checkpoint::begin_snapshot(&mut state);
            (state.next_seq - 1, snapshot, resolved, copying.elapsed().as_micros() as u64)
        };
        let mut pause_us_max = pause_us;
        let copied = self.copy_accounts(&mut snapshot, &mut pause_us, &mut pause_us_max);
        if let Err(error) = copied {
            self.state.lock().accounts.abandon_copy();
            return Err(error);
        }
        // Never let a checkpoint get ahead of what the journal holds on disk.
        self.wait_durable(seq)?;
        // The checkpoint holds no index, nor the holds that ended: the cold index has the
        // index through `seq` first, with how those holds ended.
        indexer::flush_through(&self.state, &self.shared, seq)?;
        indexer::write_hold_endings(&self.shared, &resolved)?;
        let store = &self.shared.store;
        // Written as one SST file and ingested whole: the new checkpoint replaces the old
        // atomically, a crash before the ingest leaves the old one (and a stray file that
        // the next checkpoint removes).
        checkpoint::remove_stray_files(store.path());
        let file = store.path().join(format!("{}{seq}.sst", checkpoint::FILE_PREFIX));
        let meta = checkpoint::write_sst(&file, seq, &snapshot).map_err(LedgerError::Storage)?;
        drop(snapshot);
        // Also flushes the memtables, so the write-ahead log before this point is no
        // longer needed: the next open replays neither the journal nor RocksDB's log up
        // to here.
        store.install_checkpoint(&file, &checkpoint::stale_ranges(&meta))?;
        let report =
            CheckpointReport { seq, pause_us, pause_us_max, duration_us: started.elapsed().as_micros() as u64 };
        tracing::info!(
            seq,
            chunks = ?meta.chunks,
            pause_us,
            pause_us_max,
            duration_us = report.duration_us,
            "ledger checkpoint written"
        );
        Ok(report)
    }

    /// Copies the accounts into a checkpoint's snapshot, `CHECKPOINT_COPY_BUCKETS` at a
    /// time under the sequencer lock.
    fn copy_accounts(
        &self,
        snapshot: &mut checkpoint::Snapshot,
        pause_us: &mut u64,
        pause_us_max: &mut u64,
    ) -> Result<(), LedgerError> {
        loop {
            self.check_available()?;
            let mut state = self.state.lock();
            let copying = std::time::Instant::now();
            let done = checkpoint::copy_accounts(&mut state, snapshot, CHECKPOINT_COPY_BUCKETS);
            drop(state);
            let us = copying.elapsed().as_micros() as u64;
            *pause_us += us;
            *pause_us_max = (*pause_us_max).max(us);
            if done {
                return Ok(());
            }
        }
    }

    /// Stores opaque metadata records durably (one journal entry for all of them). The
    /// engine keeps its provisioning here; the ledger never interprets it.
    pub fn put_metadata(&self, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), LedgerError> {
        let seq = self.change_metadata(MetadataChange { puts: records.to_vec(), deletes: Vec::new() })?;
        self.wait_durable(seq)
    }

    /// Stores opaque metadata records without waiting for the disk: their journal entry
    /// goes before any commit submitted after this call, so it is durable no later than
    /// that commit. For a record that must be on disk before a commit that follows it, at
    /// no fsync of its own. Visible to `scan_metadata` once written (milliseconds).
    pub fn put_metadata_before_next_commit(&self, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), LedgerError> {
        self.change_metadata(MetadataChange { puts: records.to_vec(), deletes: Vec::new() }).map(|_| ())
    }

    /// Deletes opaque metadata records without waiting for the disk (durable with the next
    /// synced write): for records whose loss in a crash is harmless.
    pub fn delete_metadata_lazily(&self, keys: &[Vec<u8>]) -> Result<(), LedgerError> {
        self.change_metadata(MetadataChange { puts: Vec::new(), deletes: keys.to_vec() }).map(|_| ())
    }

    /// Deletes opaque metadata records durably.
    pub fn delete_metadata(&self, keys: &[Vec<u8>]) -> Result<(), LedgerError> {
        let seq = self.change_metadata(MetadataChange { puts: Vec::new(), deletes: keys.to_vec() })?;
        self.wait_durable(seq)
    }

    /// Queues a metadata change as the next journal entries (one per
    /// `METADATA_ENTRY_BYTES_MAX` of records); returns the last one's sequence number.
    fn change_metadata(&self, change: MetadataChange) -> Result<u64, LedgerError> {
        self.check_available()?;
        let mut state = self.state.lock();
        let mut piece = MetadataChange::default();
        let mut bytes = 0;
        let mut seq = state.next_seq - 1;
        for (key, value) in change.puts {
            bytes += key.len() + value.len();
            piece.puts.push((key, value));
            if bytes >= METADATA_ENTRY_BYTES_MAX {
                seq = self.enqueue(&mut state, &JournalEntry::Metadata(std::mem::take(&mut piece)))?;
                bytes = 0;
            }
        }
        for key in change.deletes {
            bytes += key.len();
            piece.deletes.push(key);
            if bytes >= METADATA_ENTRY_BYTES_MAX {
                seq = self.enqueue(&mut state, &JournalEntry::Metadata(std::mem::take(&mut piece)))?;
                bytes = 0;
            }
        }
        if !piece.puts.is_empty() || !piece.deletes.is_empty() {
            seq = self.enqueue(&mut state, &JournalEntry::Metadata(piece))?;
        }
        Ok(seq)
    }

    /// One metadata record by its key (visible once written, like `scan_metadata`).
    pub fn metadata(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError> {
        self.shared.store.metadata(key)
    }

    /// Visits every metadata record whose key starts with `prefix`, in key order.
    pub fn scan_metadata(&self, prefix: &[u8], visit: impl FnMut(&[u8], &[u8])) -> Result<(), LedgerError> {
        self.shared.store.scan_metadata(prefix, visit)
    }

    /// The last journal entry applied (durable or not yet).
    pub fn last_seq(&self) -> u64 {
        self.state.lock().next_seq - 1
    }

    /// One journal entry's bytes, as written (replication: comparing a node's journal with
    /// the replicated log's).
    pub fn journal_entry(&self, seq: u64) -> Result<Vec<u8>, LedgerError> {
        Ok(self.shared.store.journal_entry(seq)?.to_vec())
    }

    /// The bytes of a journal entry that puts these metadata records, as `put_metadata`
    /// would journal them. Replication: a new primary's first entry, published to the log
    /// before any node applies it (it fences the old primary out).
    pub fn metadata_entry(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let change = MetadataChange { puts: records.to_vec(), deletes: Vec::new() };
        journal::encode(&JournalEntry::Metadata(change)).to_vec()
    }

    /// Replication, on the primary: from now on every new journal entry is also handed to
    /// `sink`, and waits for `replicated_through` before anyone waiting for it is released.
    /// Entries up to now count as replicated (the caller has made sure they are).
    pub fn start_replication(&self, sink: Arc<dyn JournalSink>) -> Result<(), LedgerError> {
        let state = self.state.lock();
        if self.sink.set(sink).is_err() {
            return Err(LedgerError::Unavailable("replication was started twice".into()));
        }
        self.shared.start_replication(state.next_seq - 1);
        Ok(())
    }

    /// Replication, on the primary: the replicated log holds every entry up to `seq`.
    pub fn replicated_through(&self, seq: u64) {
        self.shared.replicated_through(seq);
    }

    /// Replication, on the primary: the replicated log refused an entry (another primary
    /// has taken over) or cannot be reached for too long. No further commits; nothing not
    /// yet acknowledged is ever released as committed.
    pub fn fail_replication(&self, why: String) {
        self.shared.fail(why);
    }

    /// Replication, on a standby: applies entry `seq` of the primary's journal (its exact
    /// bytes) to the state, and queues it for the local disk. Replay re-checks every rule:
    /// an entry that does not apply is a corrupt log, and the process stops (panic).
    pub fn apply_replicated(&self, seq: u64, bytes: &[u8]) -> Result<(), LedgerError> {
        self.check_available()?;
        if self.sink.get().is_some() {
            return Err(LedgerError::Unavailable("a primary does not follow another's journal".into()));
        }
        let entry = journal::decode(bytes).map_err(|e| LedgerError::Corrupt(format!("replicated entry {seq}: {e}")))?;
        // New accounts not while a checkpoint copies the accounts table (as create_accounts).
        let _no_copy = matches!(entry, JournalEntry::Accounts { .. }).then(|| self.maintenance.lock());
        let mut state = self.state.lock();
        if seq != state.next_seq {
            return Err(LedgerError::Corrupt(format!(
                "replicated entry {seq} arrived when entry {} was expected",
                state.next_seq
            )));
        }
        let metadata = match &entry {
            JournalEntry::Metadata(change) => Some(Box::new(change.clone())),
            _ => None,
        };
        recovery::replay_entry(&mut state, seq, entry);
        let mut aligned = rkyv::util::AlignedVec::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        self.send_to_writer(WriteJob {
            seq,
            queued: std::time::Instant::now(),
            asked: None,
            bytes: aligned,
            metadata,
        })?;
        Ok(())
    }

    /// What the durable writer has done since open (group commits, bytes, sync times).
    pub fn writer_report(&self) -> WriterReport {
        self.shared.report()
    }

    /// The durable watermark: entries up to this one are on disk.
    pub fn durable_seq(&self) -> u64 {
        self.shared.durable_seq()
    }

    /// Makes the durable writer panic on its next group commit (crash tests: the process
    /// must end, not leave commits waiting).
    pub fn inject_writer_panic(&self) {
        self.shared.inject_panic();
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        drop(self.indexer.take());
        // Closing the queue lets the writer finish what is queued and stop.
        self.writer_queue = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Logs a hold of the sequencer lock longer than `SLOW_HOLD_MS` when dropped (stall
/// hunting), with the milliseconds at each `mark` since the start.
struct SlowHold(std::time::Instant, &'static str, [(&'static str, u32); 4], usize);

impl SlowHold {
    fn new(what: &'static str) -> SlowHold {
        SlowHold(std::time::Instant::now(), what, [("", 0); 4], 0)
    }

    /// Notes that the hold reached `step` (at most four are kept).
    fn mark(&mut self, step: &'static str) {
        if let Some(slot) = self.2.get_mut(self.3) {
            *slot = (step, self.0.elapsed().as_micros() as u32);
            self.3 += 1;
        }
    }
}

/// A sequencer-lock hold this long is logged: every commit waits behind it.
const SLOW_HOLD_MS: u128 = 20;

impl Drop for SlowHold {
    fn drop(&mut self) {
        let ms = self.0.elapsed().as_millis();
        if ms >= SLOW_HOLD_MS {
            let steps: Vec<String> =
                self.2[..self.3].iter().map(|(step, us)| format!("{step}@{}ms", us / 1000)).collect();
            tracing::warn!(ms, what = self.1, steps = %steps.join(","), "the ledger's sequencer lock was held long");
        }
    }
}

fn window_view(state: &State, window: WindowId) -> Option<WindowPositions> {
    if window == state.window {
        return Some(WindowPositions {
            window,
            state: WindowState::Open,
            transfer_count: state.window_transfer_count,
            first_seq: state.window_first_seq,
            last_seq: None,
            positions: state.positions.iter().map(|(k, v)| (*k, *v)).collect(),
        });
    }
    state.closed_windows.get(&window).map(|closed| WindowPositions {
        window,
        state: WindowState::Closed { closed_at: closed.closed_at },
        transfer_count: closed.transfer_count,
        first_seq: closed.first_seq,
        last_seq: Some(closed.last_seq),
        positions: closed.positions.clone(),
    })
}
