//! The ledger's bounds, in one place: what a caller may pass in one call, and how much
//! the writer queues and writes at once.

/// Most transfers in one submitted batch. A batch is one journal entry; bigger batches
/// amortise the sync better but hold the sequencer lock longer (about 100 ns per transfer).
pub const BATCH_TRANSFERS_MAX: usize = 8_192;

/// Most accounts created in one call (one journal entry).
pub const ACCOUNTS_PER_CALL_MAX: usize = 100_000;

/// Most transfers returned by one page of an account's history.
pub const HISTORY_PAGE_MAX: usize = 10_000;

const _: () = assert!(BATCH_TRANSFERS_MAX * 160 <= WRITE_GROUP_BYTES_MAX, "a full batch must fit a write group");

/// Journal entries queued for the writer thread. When full, `submit` blocks: the ledger
/// applies backpressure rather than buffering without limit. Costs up to this many
/// encoded entries of memory (about 1.2 MiB each at `BATCH_TRANSFERS_MAX`).
pub const WRITE_QUEUE_DEPTH_MAX: usize = 64;

/// Most bytes the writer puts into one synced RocksDB write (one group commit).
pub const WRITE_GROUP_BYTES_MAX: usize = 32 << 20;

/// Journal entries a replicated ledger may have published and not yet seen acknowledged.
/// Past it, new entries wait: the ledger applies backpressure to a slow replicated log.
pub const REPLICATION_IN_FLIGHT_MAX: u64 = 1024;

/// Most accounts in one journal entry: a call creating more writes several entries.
pub const ACCOUNTS_PER_ENTRY_MAX: usize = 8_192;

/// Most bytes of metadata records in one journal entry (the last record may pass it).
pub const METADATA_ENTRY_BYTES_MAX: usize = 1 << 20;

/// What any one journal entry stays under, given the bounds above (a full transfer batch
/// is about 1.3 MiB): a replicated log must accept messages of this size (NATS:
/// `max_payload`).
pub const JOURNAL_ENTRY_BYTES_MAX: usize = 4 << 20;
