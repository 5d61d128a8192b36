//! The one place in Junction that opens RocksDB.

use rocksdb::{ColumnFamilyDescriptor, Options, DB};
use std::path::Path;

/// Column family holding journal entries, keyed by big-endian sequence number.
pub(crate) const JOURNAL_CF: &str = "journal";
/// Column family of opaque metadata the engine persists through the ledger (participants,
/// card directory entries, authorization settings). The ledger does not interpret it.
pub(crate) const META_CF: &str = "meta";
/// Column family of the latest checkpoint (see `checkpoint.rs`).
pub(crate) const CHECKPOINT_CF: &str = "checkpoint";

/// Memtable size for the journal. Larger means fewer flushes while ingesting at full rate;
/// costs that much memory per memtable (up to `WRITE_BUFFER_COUNT_MAX` of them).
const WRITE_BUFFER_SIZE_BYTES: usize = 128 << 20;
const WRITE_BUFFER_COUNT_MAX: i32 = 4;

pub(crate) fn open(path: &Path, wal_size_bytes_max: u64) -> Result<DB, rocksdb::Error> {
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

    let meta = Options::default();
    DB::open_cf_descriptors(
        &options,
        path,
        vec![
            ColumnFamilyDescriptor::new(JOURNAL_CF, journal),
            ColumnFamilyDescriptor::new(META_CF, meta),
            ColumnFamilyDescriptor::new(CHECKPOINT_CF, Options::default()),
        ],
    )
}
