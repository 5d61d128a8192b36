//! The messages that cross the pipeline's stage boundaries, in one place so that no stage
//! imports another:
//!
//! ```text
//! Engine::submit --ShardMessage--> shard --CommitBatch--> commit --InFlight--> completion
//!                                    ^                                            |
//!                                    +------------------ Feedback ----------------+
//! ```

use crate::model::{AccountSpec, AccountStatus, Request, RequestKey, VelocityLimits};
use crate::vault::CardEntry;
use crossbeam::channel::{Receiver, Sender};
use junction_ledger::{AccountId, LedgerError, PositionKey, Ticket, Transfer, TransferFlags, BATCH_TRANSFERS_MAX};

/// Most ledger transfers one request may need (an FX payment: two legs and a fee).
pub const TRANSFERS_PER_REQUEST_MAX: usize = 3;

/// Requests a shard takes from its queue before handing a batch to the commit stage: the
/// most requests one `CommitBatch` carries.
pub const SHARD_BURST_MAX: usize = 1024;

/// Shard batches waiting for the commit stage. When full, a shard waits in its send; its
/// own queue then fills and new requests are declined with 91 at the door.
pub const COMMIT_QUEUE_DEPTH_MAX: usize = 64;

/// Ledger batches submitted and not yet answered. Bounds the memory of requests waiting
/// for durability; when full, the commit stage waits, the shards' queues fill, and new
/// requests are declined with 91.
pub const COMMITS_IN_FLIGHT_MAX: usize = 8;

/// The most requests that can be past the shards at once: the commit queue full of
/// whole bursts, one ledger batch being gathered or handed on by the commit stage,
/// `COMMITS_IN_FLIGHT_MAX` waiting for completion and one being completed (each request
/// is at least one transfer, so a ledger batch holds at most `BATCH_TRANSFERS_MAX`), and
/// the burst a shard may be blocked sending.
pub const REQUESTS_PAST_SHARDS_MAX: usize =
    (COMMIT_QUEUE_DEPTH_MAX + 1) * SHARD_BURST_MAX + (COMMITS_IN_FLIGHT_MAX + 2) * BATCH_TRANSFERS_MAX;

/// Ledger verdicts a shard has not yet absorbed. Completion sends at most one `Feedback`
/// per request, and a shard absorbs its whole queue before every burst it takes, so at
/// most `REQUESTS_PAST_SHARDS_MAX` can wait: the queue never fills, and feedback is never
/// dropped (a full queue is a broken invariant, and the completion stage panics).
/// Costs 80 bytes a slot, allocated at start (about 12 MiB per shard).
pub const FEEDBACK_QUEUE_DEPTH_MAX: usize = REQUESTS_PAST_SHARDS_MAX;

// A whole shard burst always fits in what is left of a ledger batch.
const _: () = assert!(BATCH_TRANSFERS_MAX > SHARD_BURST_MAX * TRANSFERS_PER_REQUEST_MAX);
const _: () = assert!(std::mem::size_of::<Feedback>() <= 80);

/// Messages a shard's queue carries.
pub(crate) enum ShardMessage {
    Request {
        request: Request,
        card: Option<CardEntry>,
    },
    AddAccounts(Vec<AccountSpec>),
    /// Room for this many more accounts, before a bulk load (one table resize, not many).
    ReserveAccounts(usize),
    SetStatus(AccountId, AccountStatus),
    SetVelocity(AccountId, VelocityLimits),
    /// Sent by `Engine::sync` and answered once everything before it was handled.
    Barrier(Sender<()>),
    /// Sent by `Engine::pause`: the shard says it has stopped, then waits until the
    /// other end is dropped.
    Pause(Sender<()>),
}

/// A shard's queues: its requests in, the completion stage's feedback in, its batches out.
pub(crate) struct ShardQueues {
    pub input: Receiver<ShardMessage>,
    pub feedback: Receiver<Feedback>,
    pub commit: Sender<CommitBatch>,
}

/// What the completion stage tells a shard after the ledger's verdict, for a request
/// that did not commit as new (declined, or a resend answered from the ledger).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Feedback {
    pub account: AccountId,
    /// The hold the request placed, if any (see `hold_action`).
    pub hold: Option<RequestKey>,
    /// Undo a velocity increment of `velocity_amount` in this bucket.
    pub velocity_bucket: Option<u32>,
    pub velocity_amount: u64,
    pub hold_action: HoldFeedback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HoldFeedback {
    /// The authorization did not commit: forget the hold.
    Forget,
    /// A resend of this authorization was answered from the ledger: keep the hold only if
    /// the ledger still has it pending (the resend re-entered it in the shard).
    Recheck,
}

/// What the completion stage must do for one request once the ledger has spoken.
pub(crate) struct Pending {
    pub request: Request,
    pub account: AccountId,
    /// Cap headroom reserved for this request (the payer's, and an FX provider's for its
    /// leg), returned if it does not commit.
    pub reserved: [Option<(PositionKey, u64)>; 2],
    /// Headroom the participants paid gain once it commits.
    pub credit: [Option<(PositionKey, u64)>; 2],
    /// Headroom returned once it commits (the unposted part of a hold, a voided hold).
    pub release_on_success: Option<(PositionKey, u64)>,
    /// The velocity increment (bucket, amount) to undo if it does not commit.
    pub velocity: Option<(u64, u64)>,
    /// The hold this request placed, to forget if it does not commit.
    pub hold: Option<RequestKey>,
}

/// One shard's approvals from one burst.
pub(crate) struct CommitBatch {
    pub shard: usize,
    pub transfers: Vec<Transfer>,
    pub pending: Vec<Pending>,
    /// Transfers per pending request, in order.
    pub counts: Vec<u8>,
}

impl CommitBatch {
    pub fn new(shard: usize) -> CommitBatch {
        CommitBatch { shard, transfers: Vec::new(), pending: Vec::new(), counts: Vec::new() }
    }

    /// Adds a request's transfers; more than one are linked into an all-or-nothing group.
    pub fn push(&mut self, transfers: &[Transfer], pending: Pending) {
        assert!(!transfers.is_empty() && transfers.len() <= TRANSFERS_PER_REQUEST_MAX);
        let last = transfers.len() - 1;
        for (index, transfer) in transfers.iter().enumerate() {
            let mut transfer = *transfer;
            if index < last {
                transfer.flags = transfer.flags | TransferFlags::LINKED;
            }
            self.transfers.push(transfer);
        }
        self.pending.push(pending);
        self.counts.push(transfers.len() as u8);
    }
}

/// Ledger batches on their way to durability, with the shard batches they were made of.
/// The shards' batches travel whole (no request is moved out of them) and are answered
/// in place by the completion stage.
pub(crate) struct InFlight {
    pub ticket: Result<Ticket, LedgerError>,
    pub batches: Vec<CommitBatch>,
}
