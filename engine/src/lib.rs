//! Junction's switch: wire codecs, the sharded authorization pipeline and its admin side.
//!
//! Requests enter through `Engine::submit`, are routed to the shard owning the payer's
//! account (`shard.rs`, the authorization hot path), committed to the ledger in batches by
//! the commit stage (`commit.rs`), and answered through their reply sink once durable.
//! The engine never touches RocksDB: it talks to `junction_ledger::Ledger` only.

pub mod clock;
pub mod codes;
mod commit;
pub mod daemon;
mod engine;
pub mod headroom;
pub mod model;
mod shard;
pub mod vault;

/// The wire formats live in their own crate so clients can use them without the switch.
pub use junction_wire::{iso8583, qr};

pub use codes::{DeclineReason, ResponseCode};
pub use commit::{COMMITS_IN_FLIGHT_MAX, COMMIT_QUEUE_DEPTH_MAX, TRANSFERS_PER_REQUEST_MAX};
pub use engine::*;
pub use shard::{
    AMOUNT_PER_REQUEST_MAX, AUTH_HOLD_TIMEOUT_S, DEDUPE_ENTRIES_PER_SHARD_MAX, HOLDS_PER_SHARD_MAX, SHARD_BURST_MAX,
    TRANSFER_CODE_AUTHORIZATION, TRANSFER_CODE_COMPLETION, TRANSFER_CODE_FX_LEG, TRANSFER_CODE_OPENING_BALANCE,
    TRANSFER_CODE_PURCHASE, TRANSFER_CODE_QR_PAYMENT, TRANSFER_CODE_REFUND, TRANSFER_CODE_REVERSAL,
};
