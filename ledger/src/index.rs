//! The transfer index in two tiers: recent ids in memory (`State::transfers`), and every
//! id of the duplicate window in RocksDB (the `index` column family, the cold index).
//!
//! The ledger remembers each id it answered (a committed transfer, a command's answer) for
//! at least `LedgerOptions::duplicate_window_s`. Memory holds at most
//! `LedgerOptions::index_memory_entries_max` of them: the oldest are dropped from memory
//! once they are in the cold index, and the cold index drops what is older than the
//! window when it compacts. The checkpoint holds no index at all: the cold index is
//! flushed up to the checkpoint's entry first, and a restart rebuilds memory from the
//! journal after it.
//!
//! Memory is complete for every id answered after `Horizon::floor_seq`. An id that memory
//! does not have is looked up in the cold index unless it cannot be older than that: a
//! timed id (`TransferId::timed`) whose time is later than the floor's by more than
//! `TIMED_ID_SKEW_S`. So fresh requests cost no disk lookup, and a late resend costs one.
//!
//! The cold index is written the way checkpoints are: the journal entries since the last
//! flush are read back, their index entries sorted by id and written as SST files that
//! RocksDB takes in whole (no write-ahead log, no memtable). A value is the entry's fixed
//! encoding, `INDEX_VALUE_BYTES` long.

use crate::error::LedgerError;
use crate::journal::{self, JournalEntry};
use crate::state::{fingerprint, TransferIndexEntry, INDEX_TRANSFER};
use crate::store::Store;
use crate::types::{TransferId, WindowId};

/// How far a sender's clock may run ahead of the ledger's for a timed id to be trusted as
/// fresh: an id whose time is later than the memory floor by more than this cannot have
/// been answered before the floor.
pub const TIMED_ID_SKEW_S: u64 = 300;

/// Index entries per SST file written to the cold index (about 60 bytes each with key).
pub const COLD_FILE_ENTRIES_MAX: usize = 1 << 20;

/// Bytes of one encoded index entry.
pub(crate) const INDEX_VALUE_BYTES: usize = 8 * 5 + 2;

/// What memory is complete for: every id answered in a journal entry after `floor_seq`.
/// Ids answered at or before it (up to `floor_time_ns`) may be in the cold index only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Horizon {
    pub floor_seq: u64,
    pub floor_time_ns: u64,
}

impl Horizon {
    /// Whether memory's miss of `id` may hide an answer in the cold index.
    pub fn may_be_cold(&self, id: TransferId) -> bool {
        if self.floor_seq == 0 {
            return false;
        }
        match id.time_unix_s() {
            Some(unix_s) => {
                unix_s.saturating_mul(1_000_000_000) <= self.floor_time_ns + TIMED_ID_SKEW_S * 1_000_000_000
            }
            None => true,
        }
    }
}

/// Where the state looks for ids that memory does not have.
pub(crate) trait ColdIndex {
    fn get(&self, id: TransferId) -> Result<Option<TransferIndexEntry>, LedgerError>;
}

impl ColdIndex for Store {
    fn get(&self, id: TransferId) -> Result<Option<TransferIndexEntry>, LedgerError> {
        match self.cold_index_value(id)? {
            Some(bytes) => decode_entry(&bytes)
                .map(Some)
                .ok_or_else(|| LedgerError::Corrupt(format!("the cold index entry of {id:?} does not decode"))),
            None => Ok(None),
        }
    }
}

pub(crate) fn encode_entry(entry: &TransferIndexEntry) -> [u8; INDEX_VALUE_BYTES] {
    let mut bytes = [0u8; INDEX_VALUE_BYTES];
    bytes[0..8].copy_from_slice(&entry.seq.to_be_bytes());
    bytes[8..16].copy_from_slice(&entry.timestamp.to_be_bytes());
    bytes[16..24].copy_from_slice(&entry.window.0.to_be_bytes());
    bytes[24..32].copy_from_slice(&entry.fingerprint.to_be_bytes());
    bytes[32..40].copy_from_slice(&entry.digest.to_be_bytes());
    bytes[40..42].copy_from_slice(&entry.answer.to_be_bytes());
    bytes
}

pub(crate) fn decode_entry(bytes: &[u8]) -> Option<TransferIndexEntry> {
    if bytes.len() != INDEX_VALUE_BYTES {
        return None;
    }
    let word = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
    Some(TransferIndexEntry {
        seq: word(0),
        timestamp: word(8),
        window: WindowId(word(16)),
        fingerprint: word(24),
        digest: word(32),
        answer: u16::from_be_bytes([bytes[40], bytes[41]]),
    })
}

/// The timestamp of an entry's value, for the cold index's expiry (0 if it does not decode).
pub(crate) fn timestamp_of_value(bytes: &[u8]) -> u64 {
    bytes.get(8..16).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes)
}

/// What a flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Flushed {
    pub through_seq: u64,
    /// The latest timestamp among the entries flushed (0: none).
    pub through_time_ns: u64,
    pub entries: u64,
}

/// Visits the index entries of journal entry `seq` (its encoded bytes), with their ids.
pub(crate) fn entries_of(
    seq: u64,
    bytes: &[u8],
    mut visit: impl FnMut(TransferId, TransferIndexEntry),
) -> Result<(), LedgerError> {
    let entry = journal::decode(bytes).map_err(|e| LedgerError::Corrupt(format!("entry {seq}: {e}")))?;
    if let JournalEntry::Transfers { records, answers, .. } = entry {
        for record in &records {
            let entry = TransferIndexEntry {
                seq,
                timestamp: record.timestamp,
                window: record.window,
                fingerprint: fingerprint(&record.transfer),
                digest: record.digest,
                answer: INDEX_TRANSFER,
            };
            visit(record.transfer.id, entry);
        }
        // An answer's window is never read back (only a transfer's is): any will do.
        let window = records.first().map_or(WindowId(0), |r| r.window);
        for answer in &answers {
            let entry = TransferIndexEntry {
                seq,
                timestamp: answer.timestamp,
                window,
                fingerprint: answer.reference,
                digest: answer.digest,
                answer: answer.outcome,
            };
            visit(answer.key, entry);
        }
    }
    Ok(())
}

/// Visits the index entries of journal entries `from_seq..=through_seq`, in order.
pub(crate) fn visit_entries(
    store: &Store,
    from_seq: u64,
    through_seq: u64,
    mut visit: impl FnMut(TransferId, TransferIndexEntry),
) -> Result<(), LedgerError> {
    if from_seq > through_seq {
        return Ok(());
    }
    store.scan_journal(from_seq, |seq, bytes| {
        if seq > through_seq {
            return Ok(false);
        }
        entries_of(seq, bytes, &mut visit)?;
        Ok(true)
    })
}

/// Writes the index entries of journal entries `from_seq..=through_seq` to the cold
/// index, as sorted SST files of at most `COLD_FILE_ENTRIES_MAX` entries.
pub(crate) fn flush(store: &Store, from_seq: u64, through_seq: u64) -> Result<Flushed, LedgerError> {
    let mut flushed = Flushed { through_seq, ..Flushed::default() };
    let mut batch: Vec<(TransferId, TransferIndexEntry)> = Vec::new();
    let mut failure = None;
    let mut write = |batch: &mut Vec<(TransferId, TransferIndexEntry)>| {
        if batch.is_empty() || failure.is_some() {
            return;
        }
        batch.sort_unstable_by_key(|(id, _)| id.0);
        if let Err(error) = store.install_cold_index(batch.iter().map(|(id, entry)| (*id, encode_entry(entry)))) {
            failure = Some(error);
        }
        batch.clear();
    };
    visit_entries(store, from_seq, through_seq, |id, entry| {
        flushed.entries += 1;
        flushed.through_time_ns = flushed.through_time_ns.max(entry.timestamp);
        batch.push((id, entry));
        if batch.len() >= COLD_FILE_ENTRIES_MAX {
            write(&mut batch);
        }
    })?;
    write(&mut batch);
    match failure {
        Some(error) => Err(error),
        None => Ok(flushed),
    }
}
