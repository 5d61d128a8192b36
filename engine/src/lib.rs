//! Junction's authorization pipeline: the shards, the rules, the vault, the cap headroom,
//! and the commit and completion stages behind them.
//!
//! Requests enter through `Engine::submit`, are routed to the shard owning the payer's
//! account (`shard.rs`, the authorization hot path), committed to the ledger in batches by
//! the commit stage (`commit.rs`), and answered through their reply sink once durable by
//! the completion stage (`completion.rs`). The messages between the stages live in
//! `messages.rs`, so no stage imports another.
//!
//! The engine knows no sockets, HTTP, TOML, async runtime or signals (that is
//! `junctiond`), and never touches RocksDB: it talks to `junction_ledger::Ledger` only.

pub mod books;
pub mod clock;
pub mod codes;
mod commit;
mod completion;
pub mod detail;
mod engine;
pub mod faults;
pub mod fees;
pub mod headroom;
pub mod hosted;
mod messages;
pub mod model;
mod provisioning;
pub mod routing;
mod shard;
pub mod stats;
pub mod vault;

pub use books::{participant_account, participant_of_account};
pub use codes::{DeclineReason, ResponseCode};
pub use engine::{
    CardRecord, Engine, EngineConfig, EngineError, PauseGuard, COMMIT_DELAY_US_DEFAULT, PROVISION_BATCH_MAX,
    SHARD_QUEUE_DEPTH_MAX_DEFAULT,
};
pub use messages::{
    COMMITS_IN_FLIGHT_MAX, COMMIT_QUEUE_DEPTH_MAX, FEEDBACK_QUEUE_DEPTH_MAX, REQUESTS_PAST_SHARDS_MAX, SHARD_BURST_MAX,
    TRANSFERS_PER_REQUEST_MAX,
};
pub use shard::{AMOUNT_PER_REQUEST_MAX, AUTH_HOLD_TIMEOUT_S, HOLDS_PER_SHARD_MAX};
pub use stats::EngineStats;
