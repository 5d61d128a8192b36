//! Junction's books: a double-entry journal on RocksDB.
//!
//! The ledger owns the only RocksDB handle in the system. It keeps accounts with their
//! balances and holds, commits batches of transfers durably (one synced write per group
//! of batches), nets every participant's position per currency for each settlement
//! window, and rebuilds all of it from the journal when reopened.
//!
//! It knows nothing about ISO 8583, QR codes, sockets or clearing-file formats (those are
//! the `junction-clearing` crate, on this crate's public API).

mod accounts;
mod checkpoint;
pub mod currency;
mod error;
mod index;
mod indexer;
mod journal;
mod ledger;
mod limits;
pub mod memory;
mod recovery;
mod state;
mod store;
pub mod types;
mod writer;

pub use currency::{Currency, UnknownCurrency};
pub use error::LedgerError;
pub use index::{COLD_FILE_ENTRIES_MAX, TIMED_ID_SKEW_S};
pub use indexer::{IndexUpkeep, EVICTED_PER_LOCK_MAX, EVICTED_PER_ROUND_MAX, INDEX_UPKEEP_INTERVAL_MS};
pub use ledger::{
    AccountView, CheckpointReport, IndexReport, Ledger, LedgerOptions, PendingHold, Ticket, WindowPositions,
    CHECKPOINT_COPY_BUCKETS, DUPLICATE_WINDOW_S_DEFAULT, INDEX_MEMORY_ENTRIES_MAX_DEFAULT,
};
pub use limits::{
    ACCOUNTS_PER_CALL_MAX, BATCH_TRANSFERS_MAX, HISTORY_PAGE_MAX, JOURNAL_ENTRY_BYTES_MAX, REPLICATION_IN_FLIGHT_MAX,
    WRITE_GROUP_BYTES_MAX, WRITE_QUEUE_DEPTH_MAX,
};
pub use recovery::RecoveryReport;
pub use types::*;
pub use writer::{JournalSink, WriterReport, DURABLE_WAIT_MS_MAX};
