//! The one place in Junction that opens and calls RocksDB. Everything else in the ledger
//! (the handle, the writer thread, recovery, checkpoints) goes through `Store`'s calls,
//! which speak in journal sequence numbers, metadata records and checkpoint files.

use crate::error::LedgerError;
use rocksdb::{ColumnFamilyDescriptor, IngestExternalFileOptions, Options, WriteBatch, WriteOptions, DB};
use std::path::Path;

/// Column family holding journal entries, keyed by big-endian sequence number.
const JOURNAL_CF: &str = "journal";
/// Column family of opaque metadata the engine persists through the ledger (participants,
/// card directory entries, authorization settings). The ledger does not interpret it.
const META_CF: &str = "meta";
/// Column family of the latest checkpoint (see `checkpoint.rs`).
const CHECKPOINT_CF: &str = "checkpoint";

/// Memtable size for the journal. Larger means fewer flushes while ingesting at full rate;
/// costs that much memory per memtable (up to `WRITE_BUFFER_COUNT_MAX` of them).
const WRITE_BUFFER_SIZE_BYTES: usize = 128 << 20;
const WRITE_BUFFER_COUNT_MAX: i32 = 4;

impl From<rocksdb::Error> for LedgerError {
    fn from(error: rocksdb::Error) -> Self {
        LedgerError::Storage(error.into_string())
    }
}

/// Bytes read from RocksDB without a copy (valid while the borrow of the store lasts).
pub(crate) type StoredBytes<'a> = rocksdb::DBPinnableSlice<'a>;

/// The ledger's database: journal, metadata and checkpoint.
pub(crate) struct Store {
    db: DB,
}

pub(crate) fn journal_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn seq_of_key(key: &[u8]) -> Result<u64, LedgerError> {
    Ok(u64::from_be_bytes(key.try_into().map_err(|_| LedgerError::Corrupt("bad journal key".into()))?))
}

impl Store {
    pub(crate) fn open(path: &Path, wal_size_bytes_max: u64) -> Result<Store, LedgerError> {
        let mut options = Options::default();
        if wal_size_bytes_max > 0 {
            // Memtables are flushed once the WAL holds this much; it also caps how much WAL
            // space RocksDB preallocates.
            options.set_max_total_wal_size(wal_size_bytes_max);
        }
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_max_background_jobs(2);
        // A crash keeps a consistent prefix of the write-ahead log: the journal never has a hole.
        options.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        options.set_keep_log_file_num(4);

        let mut journal = Options::default();
        journal.set_write_buffer_size(WRITE_BUFFER_SIZE_BYTES);
        journal.set_max_write_buffer_number(WRITE_BUFFER_COUNT_MAX);
        journal.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Keys only ever grow, so levels never overlap and compaction is mostly trivial moves.
        journal.set_level_compaction_dynamic_level_bytes(true);

        let db = DB::open_cf_descriptors(
            &options,
            path,
            vec![
                ColumnFamilyDescriptor::new(JOURNAL_CF, journal),
                ColumnFamilyDescriptor::new(META_CF, Options::default()),
                ColumnFamilyDescriptor::new(CHECKPOINT_CF, Options::default()),
            ],
        )?;
        Ok(Store { db })
    }

    pub(crate) fn path(&self) -> &Path {
        self.db.path()
    }

    fn family(&self, name: &str) -> Result<&rocksdb::ColumnFamily, LedgerError> {
        self.db.cf_handle(name).ok_or_else(|| LedgerError::Corrupt(format!("the {name} column family is missing")))
    }

    /// Visits the journal's entries from `first_seq` on, in order, until `visit` returns
    /// false or the journal ends. Checks that the sequence has no gap.
    pub(crate) fn scan_journal(
        &self,
        first_seq: u64,
        mut visit: impl FnMut(u64, &[u8]) -> Result<bool, LedgerError>,
    ) -> Result<(), LedgerError> {
        let start = journal_key(first_seq);
        let mode = rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward);
        for (expected, item) in (first_seq..).zip(self.db.iterator_cf(self.family(JOURNAL_CF)?, mode)) {
            let (key, value) = item?;
            let seq = seq_of_key(&key)?;
            if seq != expected {
                return Err(LedgerError::Corrupt(format!("journal jumps from {} to {seq}", expected - 1)));
            }
            if !visit(seq, &value)? {
                break;
            }
        }
        Ok(())
    }

    /// One journal entry's bytes.
    pub(crate) fn journal_entry(&self, seq: u64) -> Result<StoredBytes<'_>, LedgerError> {
        self.db
            .get_pinned_cf(self.family(JOURNAL_CF)?, journal_key(seq))?
            .ok_or_else(|| LedgerError::Corrupt(format!("journal entry {seq} missing")))
    }

    /// Writes consecutive journal entries in one RocksDB write, synced if `sync`.
    pub(crate) fn write_journal<'a>(
        &self,
        entries: impl Iterator<Item = (u64, &'a [u8])>,
        sync: bool,
    ) -> Result<(), LedgerError> {
        let family = self.family(JOURNAL_CF)?;
        let mut batch = WriteBatch::default();
        for (seq, bytes) in entries {
            batch.put_cf(family, journal_key(seq), bytes);
        }
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        self.db.write_opt(batch, &options)?;
        Ok(())
    }

    /// Stores metadata records in one write, synced if `sync`.
    pub(crate) fn put_metadata(&self, records: &[(Vec<u8>, Vec<u8>)], sync: bool) -> Result<(), LedgerError> {
        let family = self.family(META_CF)?;
        let mut batch = WriteBatch::default();
        for (key, value) in records {
            batch.put_cf(family, key, value);
        }
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        self.db.write_opt(batch, &options)?;
        Ok(())
    }

    /// Visits every metadata record whose key starts with `prefix`, in key order.
    pub(crate) fn scan_metadata(&self, prefix: &[u8], mut visit: impl FnMut(&[u8], &[u8])) -> Result<(), LedgerError> {
        let mode = rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(self.family(META_CF)?, mode) {
            let (key, value) = item?;
            if !key.starts_with(prefix) {
                break;
            }
            visit(&key, &value);
        }
        Ok(())
    }

    /// A value of the checkpoint column family.
    pub(crate) fn checkpoint_value(&self, key: &[u8]) -> Result<Option<StoredBytes<'_>>, String> {
        let family = self.family(CHECKPOINT_CF).map_err(|e| e.to_string())?;
        self.db.get_pinned_cf(family, key).map_err(|e| e.into_string())
    }

    /// Takes a finished SST file (see `SstWriter`) into the checkpoint column family in
    /// one atomic step (the file is moved, not copied), deletes the key ranges the new
    /// checkpoint no longer uses, then flushes the journal's and metadata's memtables, so
    /// that the write-ahead log before this point is no longer needed at open.
    pub(crate) fn install_checkpoint(&self, file: &Path, stale: &[(Vec<u8>, Vec<u8>)]) -> Result<(), LedgerError> {
        let family = self.family(CHECKPOINT_CF)?;
        let mut ingest = IngestExternalFileOptions::default();
        ingest.set_move_files(true);
        self.db.ingest_external_file_cf_opts(family, &ingest, vec![file])?;
        let mut batch = WriteBatch::default();
        for (from, to) in stale {
            batch.delete_range_cf(family, from, to);
        }
        self.db.write(batch)?;
        for name in [JOURNAL_CF, META_CF] {
            self.db.flush_cf(self.family(name)?)?;
        }
        Ok(())
    }
}

/// Writes a sorted SST file at `path` (synced when finished) through `fill`, which puts
/// keys in ascending order; install it with `Store::install_checkpoint`. No write-ahead
/// log and no memtable: each byte is written once.
pub(crate) fn write_sst_file(
    path: &Path,
    fill: impl FnOnce(&mut SstFile<'_, '_>) -> Result<(), String>,
) -> Result<(), String> {
    let options = Options::default();
    let mut writer = rocksdb::SstFileWriter::create(&options);
    writer.open(path).map_err(|e| e.into_string())?;
    fill(&mut SstFile { writer: &mut writer })?;
    writer.finish().map_err(|e| e.into_string())
}

/// An SST file being filled by `write_sst_file`.
pub(crate) struct SstFile<'w, 'o> {
    writer: &'w mut rocksdb::SstFileWriter<'o>,
}

impl SstFile<'_, '_> {
    pub(crate) fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.writer.put(key, value).map_err(|e| e.into_string())
    }
}
