//! The durable writer: one thread that takes encoded journal entries in sequence order,
//! writes whatever is queued as one synced RocksDB write (a group commit), and then
//! raises the durable watermark that `Ledger::wait` waits for.
//!
//! After a failed write the ledger refuses every further commit until it is reopened,
//! and the writer writes nothing past the failed entry: the journal on disk stays a
//! gapless prefix of what was applied in memory.

use crate::error::LedgerError;
use crate::journal::MetadataChange;
use crate::limits::{REPLICATION_IN_FLIGHT_MAX, WRITE_GROUP_BYTES_MAX};
use crate::store::Store;
use crossbeam::channel::Receiver;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a caller waits for an entry to become durable. A disk that cannot sync
/// for this long is failing: the wait gives up, the ledger refuses further commits (as
/// after a write error) and callers answer "unavailable" instead of hanging. Anything
/// that became durable meanwhile is found again by recovery when the ledger is reopened.
pub const DURABLE_WAIT_MS_MAX: u64 = 30_000;

/// One journal entry on its way to disk.
pub(crate) struct WriteJob {
    pub seq: u64,
    /// When the sequencer queued it: the writer reports the longest wait to durable.
    pub queued: Instant,
    /// For a batch of transfers (requests wait for it): when its caller asked for the
    /// sequencer lock. The writer's pause metric counts from here.
    pub asked: Option<Instant>,
    pub bytes: rkyv::util::AlignedVec,
    /// The metadata records a `Metadata` entry puts and deletes, written with it.
    pub metadata: Option<Box<MetadataChange>>,
}

/// Where a replicated ledger's entries go besides the local disk: called under the
/// sequencer lock, in sequence order, with each new entry's bytes. The replicator
/// acknowledges with `Ledger::replicated_through`; until then nobody waiting for the
/// entry is released.
pub trait JournalSink: Send + Sync {
    fn publish(&self, seq: u64, bytes: &[u8]);
}

#[derive(Default)]
struct Durable {
    seq: u64,
    /// With replication on: the last entry the replicated log has acknowledged.
    replicated: Option<u64>,
    error: Option<String>,
}

impl Durable {
    /// Entries up to this one are durable locally and, if replicated, acknowledged.
    fn through(&self) -> u64 {
        self.replicated.map_or(self.seq, |replicated| replicated.min(self.seq))
    }
}

/// What the ledger's handle and its writer thread share.
pub(crate) struct Shared {
    pub store: Store,
    durable: Mutex<Durable>,
    durable_changed: Condvar,
    failed: AtomicBool,
    pub sync: bool,
    stats: WriterStats,
    /// Crash tests: panic on the next group commit (see `Ledger::inject_writer_panic`).
    panic_next_write: AtomicBool,
}

/// Counters of the durable writer, for metrics.
#[derive(Default)]
struct WriterStats {
    group_commits: AtomicU64,
    entries: AtomicU64,
    bytes: AtomicU64,
    commit_us_total: AtomicU64,
    commit_us_max: AtomicU64,
    wait_us_max: AtomicU64,
    pause_us_max: AtomicU64,
}

/// What the durable writer has done since the ledger opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterReport {
    /// Synced RocksDB writes (each holds one or more journal entries).
    pub group_commits: u64,
    pub entries: u64,
    pub bytes: u64,
    /// Time spent in synced writes, in total and the longest one.
    pub commit_us_total: u64,
    pub commit_us_max: u64,
    /// The longest an entry waited from being queued to being on disk: a stall of the
    /// writer (or the disk) shows here even when each write looks quick.
    pub wait_us_max: u64,
    /// The longest gap between two group commits while requests were waiting: from the
    /// later of the previous group commit and the moment a batch of transfers asked for
    /// the sequencer lock, to the group commit that made it durable. A stall anywhere
    /// between the commit stage and the disk (the sequencer held, the writer or fsync
    /// slow) shows here; entries without requests (provisioning, metadata) do not count.
    pub pause_us_max: u64,
}

impl Shared {
    pub(crate) fn new(store: Store, durable_seq: u64, sync: bool) -> Shared {
        Shared {
            store,
            durable: Mutex::new(Durable { seq: durable_seq, replicated: None, error: None }),
            durable_changed: Condvar::new(),
            failed: AtomicBool::new(false),
            sync,
            stats: WriterStats::default(),
            panic_next_write: AtomicBool::new(false),
        }
    }

    /// Starts the writer thread on `queue`. It stops when the queue's senders are gone,
    /// after writing what was queued. A panic on it ends the process (see the engine's
    /// pipeline threads): a writer that died silently would leave every commit waiting.
    pub(crate) fn spawn_writer(self: &Arc<Shared>, queue: Receiver<WriteJob>) -> Result<JoinHandle<()>, LedgerError> {
        let shared = Arc::clone(self);
        std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.write_loop(&queue))).is_err() {
                    std::process::abort();
                }
            })
            .map_err(|e| LedgerError::Storage(format!("spawning the writer thread: {e}")))
    }

    /// Ok while the ledger accepts commits; the storage error once a write has failed.
    pub(crate) fn check_available(&self) -> Result<(), LedgerError> {
        if self.failed.load(Ordering::Acquire) {
            let error = self.durable.lock().error.clone().unwrap_or_default();
            return Err(LedgerError::Unavailable(error));
        }
        Ok(())
    }

    /// Waits until entry `seq` is durable (and acknowledged by the replicated log, when
    /// there is one), at most `DURABLE_WAIT_MS_MAX`.
    pub(crate) fn wait_durable(&self, seq: u64) -> Result<(), LedgerError> {
        let deadline = Instant::now() + Duration::from_millis(DURABLE_WAIT_MS_MAX);
        let mut durable = self.durable.lock();
        loop {
            if durable.through() >= seq {
                return Ok(());
            }
            if let Some(error) = &durable.error {
                return Err(LedgerError::Unavailable(error.clone()));
            }
            if self.durable_changed.wait_until(&mut durable, deadline).timed_out() && durable.seq < seq {
                drop(durable);
                self.fail(format!("journal entry {seq} was not durable after {DURABLE_WAIT_MS_MAX} ms"));
                durable = self.durable.lock();
            }
        }
    }

    pub(crate) fn durable_seq(&self) -> u64 {
        self.durable.lock().through()
    }

    /// Turns replication on: entries after `through` wait for `replicated_through`.
    pub(crate) fn start_replication(&self, through: u64) {
        self.durable.lock().replicated = Some(through);
    }

    /// The replicated log has acknowledged every entry up to `seq`.
    pub(crate) fn replicated_through(&self, seq: u64) {
        let mut durable = self.durable.lock();
        if let Some(replicated) = durable.replicated.as_mut() {
            *replicated = (*replicated).max(seq);
            self.durable_changed.notify_all();
        }
    }

    /// Before entry `seq` is published: waits while `REPLICATION_IN_FLIGHT_MAX` entries are
    /// out unacknowledged, at most `DURABLE_WAIT_MS_MAX` (then the ledger fails).
    pub(crate) fn wait_replication_room(&self, seq: u64) -> Result<(), LedgerError> {
        let deadline = Instant::now() + Duration::from_millis(DURABLE_WAIT_MS_MAX);
        let mut durable = self.durable.lock();
        loop {
            match durable.replicated {
                Some(replicated) if seq > replicated + REPLICATION_IN_FLIGHT_MAX => {}
                _ => return Ok(()),
            }
            if let Some(error) = &durable.error {
                return Err(LedgerError::Unavailable(error.clone()));
            }
            if self.durable_changed.wait_until(&mut durable, deadline).timed_out() {
                drop(durable);
                let error = format!("the replicated log acknowledged nothing for {DURABLE_WAIT_MS_MAX} ms");
                self.fail(error.clone());
                return Err(LedgerError::Unavailable(error));
            }
        }
    }

    pub(crate) fn report(&self) -> WriterReport {
        let stats = &self.stats;
        WriterReport {
            group_commits: stats.group_commits.load(Ordering::Relaxed),
            entries: stats.entries.load(Ordering::Relaxed),
            bytes: stats.bytes.load(Ordering::Relaxed),
            commit_us_total: stats.commit_us_total.load(Ordering::Relaxed),
            commit_us_max: stats.commit_us_max.load(Ordering::Relaxed),
            wait_us_max: stats.wait_us_max.load(Ordering::Relaxed),
            pause_us_max: stats.pause_us_max.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn inject_panic(&self) {
        self.panic_next_write.store(true, Ordering::Release);
    }

    fn write_loop(&self, queue: &Receiver<WriteJob>) {
        let mut group: Vec<WriteJob> = Vec::new();
        let mut previous_commit = Instant::now();
        while let Ok(first) = queue.recv() {
            group.clear();
            let mut bytes = first.bytes.len();
            group.push(first);
            while bytes < WRITE_GROUP_BYTES_MAX {
                let Ok(job) = queue.try_recv() else { break };
                assert_eq!(job.seq, group[group.len() - 1].seq + 1, "journal entries reach the writer out of order");
                bytes += job.bytes.len();
                group.push(job);
            }
            if self.failed.load(Ordering::Acquire) {
                continue; // never write past a failed entry: the journal must stay a prefix
            }
            if self.panic_next_write.swap(false, Ordering::AcqRel) {
                panic!("fault injected into the ledger writer");
            }
            let started = Instant::now();
            let last_seq = group[group.len() - 1].seq;
            let entries = group.iter().map(|job| (job.seq, job.bytes.as_slice(), job.metadata.as_deref()));
            match self.store.write_journal(entries, self.sync) {
                Ok(()) => {
                    let us = started.elapsed().as_micros() as u64;
                    if us >= 20_000 {
                        tracing::warn!(ms = us / 1000, entries = group.len(), bytes, "a group commit took long");
                    }
                    let stats = &self.stats;
                    stats.group_commits.fetch_add(1, Ordering::Relaxed);
                    stats.entries.fetch_add(group.len() as u64, Ordering::Relaxed);
                    stats.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                    stats.commit_us_total.fetch_add(us, Ordering::Relaxed);
                    stats.commit_us_max.fetch_max(us, Ordering::Relaxed);
                    let now = Instant::now();
                    let waited = now.saturating_duration_since(group[0].queued).as_micros() as u64;
                    stats.wait_us_max.fetch_max(waited, Ordering::Relaxed);
                    if let Some(asked) = group.iter().filter_map(|job| job.asked).min() {
                        let paused = now.saturating_duration_since(asked.max(previous_commit)).as_micros() as u64;
                        stats.pause_us_max.fetch_max(paused, Ordering::Relaxed);
                    }
                    previous_commit = now;
                    let mut durable = self.durable.lock();
                    durable.seq = durable.seq.max(last_seq);
                    self.durable_changed.notify_all();
                }
                Err(error) => self.fail(error.to_string()),
            }
        }
    }

    /// Marks the ledger failed: no further commits until it is reopened.
    pub(crate) fn fail(&self, error: String) {
        if self.failed.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::error!(%error, "ledger write failed; refusing further commits until reopened");
        let mut durable = self.durable.lock();
        durable.error = Some(error);
        self.durable_changed.notify_all();
    }
}
