//! The one place in Junction that opens and calls RocksDB. Everything else in the ledger
//! (the handle, the writer thread, recovery, checkpoints) goes through `Store`'s calls,
//! which speak in journal sequence numbers, metadata records and checkpoint files.

use crate::error::LedgerError;
use crate::journal::MetadataChange;
use rocksdb::{ColumnFamilyDescriptor, IngestExternalFileOptions, Options, WriteBatch, WriteOptions, DB};
use std::path::Path;

/// Column family holding journal entries, keyed by big-endian sequence number.
const JOURNAL_CF: &str = "journal";
/// Column family of opaque metadata the engine persists through the ledger (participants,
/// card directory entries, authorization settings). The ledger does not interpret it.
const META_CF: &str = "meta";
/// Column family of the latest checkpoint (see `checkpoint.rs`).
const CHECKPOINT_CF: &str = "checkpoint";
/// Column family of the cold index: transfer id (16 bytes, big-endian) -> index entry
/// (see `index.rs`), written as whole SST files, expired by compaction.
const INDEX_CF: &str = "index";

/// Prefix of the ledger's own records in the metadata family. The engine's keys start with
/// a printable tag, so a 0 byte never collides with them.
const LEDGER_META_PREFIX: u8 = 0;

/// Bloom filter bits per key of the cold index: a lookup of an id it does not hold is
/// answered from memory about 99% of the time.
const INDEX_BLOOM_BITS_PER_KEY: f64 = 10.0;

/// Names the SST files written for the cold index before RocksDB takes them in.
pub(crate) const COLD_FILE_PREFIX: &str = "junction-cold-index-";

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
    /// Opens the store; the cold index forgets entries older than `index_retention_ns`
    /// when it compacts.
    pub(crate) fn open(path: &Path, wal_size_bytes_max: u64, index_retention_ns: u64) -> Result<Store, LedgerError> {
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
        // Flushes and compactions write their files behind them, a megabyte at a time: a
        // file with hundreds of megabytes dirty would make the WAL's next fsync wait for
        // it (ext4 `data=ordered`), a stall of every commit.
        options.set_bytes_per_sync(SST_WRITE_BEHIND_BYTES);

        let mut journal = Options::default();
        journal.set_write_buffer_size(WRITE_BUFFER_SIZE_BYTES);
        journal.set_max_write_buffer_number(WRITE_BUFFER_COUNT_MAX);
        journal.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Keys only ever grow, so levels never overlap and compaction is mostly trivial moves.
        journal.set_level_compaction_dynamic_level_bytes(true);

        let mut index = index_file_options();
        index.set_level_compaction_dynamic_level_bytes(true);
        index.set_compaction_filter("junction-index-expiry", move |_level: u32, _key: &[u8], value: &[u8]| {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
            if crate::index::timestamp_of_value(value).saturating_add(index_retention_ns) < now {
                rocksdb::CompactionDecision::Remove
            } else {
                rocksdb::CompactionDecision::Keep
            }
        });

        let db = DB::open_cf_descriptors(
            &options,
            path,
            vec![
                ColumnFamilyDescriptor::new(JOURNAL_CF, journal),
                ColumnFamilyDescriptor::new(META_CF, Options::default()),
                ColumnFamilyDescriptor::new(CHECKPOINT_CF, Options::default()),
                ColumnFamilyDescriptor::new(INDEX_CF, index),
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

    /// Writes consecutive journal entries in one RocksDB write, synced if `sync`, with the
    /// metadata changes some of them carry.
    pub(crate) fn write_journal<'a>(
        &self,
        entries: impl Iterator<Item = (u64, &'a [u8], Option<&'a MetadataChange>)>,
        sync: bool,
    ) -> Result<(), LedgerError> {
        let family = self.family(JOURNAL_CF)?;
        let meta = self.family(META_CF)?;
        let mut batch = WriteBatch::default();
        for (seq, bytes, metadata) in entries {
            batch.put_cf(family, journal_key(seq), bytes);
            if let Some(change) = metadata {
                for (key, value) in &change.puts {
                    batch.put_cf(meta, key, value);
                }
                for key in &change.deletes {
                    batch.delete_cf(meta, key);
                }
            }
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

    /// One metadata record by its key.
    pub(crate) fn metadata(&self, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.db.get_cf(self.family(META_CF)?, key)?)
    }

    /// A record of the ledger's own in the metadata family (never the engine's).
    pub(crate) fn ledger_record(&self, name: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.db.get_cf(self.family(META_CF)?, ledger_key(name))?)
    }

    /// Stores a record of the ledger's own, synced.
    pub(crate) fn put_ledger_record(&self, name: &str, value: &[u8]) -> Result<(), LedgerError> {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        let mut batch = WriteBatch::default();
        batch.put_cf(self.family(META_CF)?, ledger_key(name), value);
        self.db.write_opt(batch, &options)?;
        Ok(())
    }

    /// The cold index's value for an id.
    pub(crate) fn cold_index_value(
        &self,
        id: crate::types::TransferId,
    ) -> Result<Option<StoredBytes<'_>>, LedgerError> {
        Ok(self.db.get_pinned_cf(self.family(INDEX_CF)?, id.0.to_be_bytes())?)
    }

    /// Writes entries, sorted by id, as one SST file and takes it into the cold index.
    pub(crate) fn install_cold_index(
        &self,
        entries: impl Iterator<Item = (crate::types::TransferId, [u8; crate::index::INDEX_VALUE_BYTES])>,
    ) -> Result<(), LedgerError> {
        let file = self.path().join(format!("{COLD_FILE_PREFIX}{}.sst", std::process::id()));
        let written = write_sst_file(&file, &index_file_options(), |sst| {
            for (id, value) in entries {
                sst.put(&id.0.to_be_bytes(), &value)?;
            }
            Ok(())
        });
        if let Err(error) = written {
            let _ = std::fs::remove_file(&file);
            return Err(LedgerError::Storage(format!("writing a cold index file: {error}")));
        }
        let mut ingest = IngestExternalFileOptions::default();
        ingest.set_move_files(true);
        let result = self.db.ingest_external_file_cf_opts(self.family(INDEX_CF)?, &ingest, vec![&file]);
        let _ = std::fs::remove_file(&file);
        Ok(result?)
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

/// How the cold index's files are made, by compaction or by `install_cold_index`: with a
/// bloom filter, so that looking up an id that is not there (every fresh request's, once
/// memory has dropped ids) costs a filter probe per file, not an index block search.
fn index_file_options() -> Options {
    let mut options = Options::default();
    let mut table = rocksdb::BlockBasedOptions::default();
    table.set_bloom_filter(INDEX_BLOOM_BITS_PER_KEY, false);
    options.set_block_based_table_factory(&table);
    options.set_compression_type(rocksdb::DBCompressionType::Lz4);
    options
}

fn ledger_key(name: &str) -> Vec<u8> {
    let mut key = vec![LEDGER_META_PREFIX];
    key.extend_from_slice(name.as_bytes());
    key
}

/// Writes a sorted SST file at `path` (synced when finished) through `fill`, which puts
/// keys in ascending order; install it with `Store::install_checkpoint`. No write-ahead
/// log and no memtable: each byte is written once. Written behind as it grows
/// (`SstFile::put`): a checkpoint or cold-index file of hundreds of megabytes never has
/// more than a few megabytes dirty, which the WAL's fsync would otherwise wait for.
pub(crate) fn write_sst_file(
    path: &Path,
    options: &Options,
    fill: impl FnOnce(&mut SstFile<'_, '_>) -> Result<(), String>,
) -> Result<(), String> {
    let mut writer = rocksdb::SstFileWriter::create(options);
    writer.open(path).map_err(|e| e.into_string())?;
    // RocksDB's SST writer takes no `bytes_per_sync` through the C API: its file's
    // writeback is started from a second descriptor of the same file (writeback is per
    // file, not per descriptor).
    let behind = std::fs::File::open(path).ok();
    fill(&mut SstFile { writer: &mut writer, behind, since_behind: 0 })?;
    writer.finish().map_err(|e| e.into_string())
}

/// How much a checkpoint or cold-index file is written (or a flush's, a compaction's)
/// before its writeback is started.
const SST_WRITE_BEHIND_BYTES: u64 = 1 << 20;
/// How much of it may be dirty before its writer waits for the writeback it started.
const SST_DIRTY_BYTES_MAX: u64 = 8 << 20;

/// An SST file being filled by `write_sst_file`.
pub(crate) struct SstFile<'w, 'o> {
    writer: &'w mut rocksdb::SstFileWriter<'o>,
    /// The same file, read-only, for its writeback.
    behind: Option<std::fs::File>,
    since_behind: u64,
}

impl SstFile<'_, '_> {
    pub(crate) fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.writer.put(key, value).map_err(|e| e.into_string())?;
        self.since_behind += (key.len() + value.len()) as u64;
        if self.since_behind >= SST_WRITE_BEHIND_BYTES {
            self.since_behind = 0;
            if let Some(file) = &self.behind {
                write_behind(file);
            }
        }
        Ok(())
    }
}

/// Starts the writeback of everything written to `file`, and waits for what lies more
/// than `SST_DIRTY_BYTES_MAX` before its end. Advisory: an error changes nothing (the
/// writer's final fsync makes the file durable and reports real errors).
#[allow(unsafe_code)]
fn write_behind(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let Ok(length) = file.metadata().map(|m| m.len()) else { return };
    // SAFETY: sync_file_range only reads its integer arguments; `fd` is open for the
    // duration of the call (borrowed from `file`).
    let _ = unsafe { libc::sync_file_range(fd, 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    if length > SST_DIRTY_BYTES_MAX {
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        let settled = (length - SST_DIRTY_BYTES_MAX) as libc::off64_t;
        // SAFETY: as above.
        let _ = unsafe { libc::sync_file_range(fd, 0, settled, flags) };
    }
}
