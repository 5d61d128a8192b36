//! The messages that cross the pipeline's stage boundaries, in one place so that no stage
//! imports another:
//!
//! ```text
//! Engine::submit --ShardMessage--> shard --CommitBatch--> commit --InFlight--> completion
//!                                    ^                                            |
//!                                    +------------------ Feedback ----------------+
//! ```

use crate::codes::DeclineReason;
use crate::detail::Text;
use crate::fees::Charges;
use crate::model::{AccountSpec, AccountStatus, Request, RequestKey};
use crate::vault::CardEntry;
use crossbeam::channel::{Receiver, Sender};
use junction_ledger::{
    AccountId, Charge, Command, CommandResult, LedgerError, Memo, PositionKey, Ticket, Transfer, TransferFlags,
    TransferId, BATCH_TRANSFERS_MAX,
};
use std::hash::{Hash, Hasher};

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
/// `COMMITS_IN_FLIGHT_MAX` waiting for completion and one being completed (a ledger batch
/// holds at most `BATCH_TRANSFERS_MAX` commands, one per request), and the burst a shard
/// may be blocked sending.
pub const REQUESTS_PAST_SHARDS_MAX: usize =
    (COMMIT_QUEUE_DEPTH_MAX + 1) * SHARD_BURST_MAX + (COMMITS_IN_FLIGHT_MAX + 2) * BATCH_TRANSFERS_MAX;

/// Ledger verdicts a shard has not yet absorbed. Completion sends at most one `Feedback`
/// per request, and a shard absorbs its whole queue before every burst it takes, so at
/// most `REQUESTS_PAST_SHARDS_MAX` can wait: the queue never fills, and feedback is never
/// dropped (a full queue is a broken invariant, and the completion stage panics).
/// Costs 32 bytes a slot, allocated at start (about 5 MiB per shard).
pub const FEEDBACK_QUEUE_DEPTH_MAX: usize = REQUESTS_PAST_SHARDS_MAX;

// A whole shard burst always fits in what is left of a ledger batch.
const _: () = assert!(BATCH_TRANSFERS_MAX > SHARD_BURST_MAX * TRANSFERS_PER_REQUEST_MAX);
const _: () = assert!(std::mem::size_of::<Feedback>() <= 32);

/// Messages a shard's queue carries. `Request` is nearly every message and is moved, not
/// boxed: a box would cost an allocation per request for the rare admin variants' sake.
#[allow(clippy::large_enum_variant)]
pub(crate) enum ShardMessage {
    Request {
        request: Request,
        card: Option<CardEntry>,
    },
    AddAccounts(Vec<AccountSpec>),
    /// Room for this many more accounts, before a bulk load (one table resize, not many).
    ReserveAccounts(usize),
    SetStatus(AccountId, AccountStatus),
    /// Holds the ledger has pending at start, whose cap reservations the shard keeps.
    RestoreHolds(Vec<(RequestKey, HeldReservation)>),
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

/// What the completion stage tells a shard about a hold its authorization placed, when
/// the authorization did not commit as new (declined, or a resend answered from the
/// ledger).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Feedback {
    pub hold: RequestKey,
    pub hold_action: HoldFeedback,
}

/// A hold's cap reservation, as a shard keeps it until the hold is posted, voided or
/// expires.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeldReservation {
    pub cap: PositionKey,
    pub amount: u64,
    pub expires_at_s: u64,
    /// The authorization's RRN, for its completion's or void's clearing row (empty for a
    /// hold restored at start: looked up in the ledger then).
    pub rrn: Text<12>,
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
    /// Cap headroom reserved for this request (the payer's, and an FX provider's for its
    /// leg), returned if it does not commit.
    pub reserved: [Option<(PositionKey, u64)>; 2],
    /// Headroom the participants paid gain once it commits.
    pub credit: [Option<(PositionKey, u64)>; 2],
    /// Headroom returned once it commits (the unposted part of a hold, a voided hold).
    pub release_on_success: Option<(PositionKey, u64)>,
    /// The hold this request placed, to forget if it does not commit.
    pub hold: Option<RequestKey>,
    /// The shard stood in for the card's issuer.
    pub stood_in: bool,
}

impl Pending {
    /// A request the shard declined: nothing reserved, nothing to release.
    pub fn refused(request: Request) -> Pending {
        Pending {
            request,
            reserved: [None, None],
            credit: [None, None],
            release_on_success: None,
            hold: None,
            stood_in: false,
        }
    }
}

/// One shard's decisions from one burst: one ledger command per request (its transfers,
/// or its refusal), and what the completion stage must do for each.
pub(crate) struct CommitBatch {
    pub shard: usize,
    pub transfers: Vec<Transfer>,
    pub commands: Vec<Command>,
    /// One per command: its request's `Detail`, for the clearing files.
    pub memos: Vec<Memo>,
    /// The commands' charges (their fees), consecutive in command order.
    pub charges: Vec<Charge>,
    pub pending: Vec<Pending>,
    /// Some request of the batch is traced: the stages note their times for it.
    pub traced: bool,
}

impl CommitBatch {
    pub fn new(shard: usize) -> CommitBatch {
        CommitBatch {
            shard,
            transfers: Vec::new(),
            commands: Vec::new(),
            memos: Vec::new(),
            charges: Vec::new(),
            pending: Vec::new(),
            traced: false,
        }
    }

    /// Adds an approved request's transfers; more than one are linked into an
    /// all-or-nothing group.
    pub fn push(&mut self, transfers: &[Transfer], pending: Pending) {
        self.push_with_reference(transfers, pending, 0);
    }

    /// `push`, answered with `reference` instead of the first transfer's folded id (an
    /// issuer's authorization code, `model::issuer_reference`).
    pub fn push_with_reference(&mut self, transfers: &[Transfer], pending: Pending, reference: u64) {
        self.push_charged(transfers, pending, reference, &Charges::default());
    }

    /// `push_with_reference`, with the fees the request books if it commits (the
    /// request's detail already says them).
    pub fn push_charged(&mut self, transfers: &[Transfer], pending: Pending, reference: u64, charges: &Charges) {
        assert!(!transfers.is_empty() && transfers.len() <= TRANSFERS_PER_REQUEST_MAX);
        let last = transfers.len() - 1;
        for (index, transfer) in transfers.iter().enumerate() {
            let mut transfer = *transfer;
            if index < last {
                transfer.flags = transfer.flags | TransferFlags::LINKED;
            }
            self.transfers.push(transfer);
        }
        self.commands.push(Command {
            key: TransferId(pending.request.key.0),
            digest: content_hash(&pending.request),
            transfers: transfers.len() as u32,
            refusal: 0,
            reference,
            charges: charges.len() as u32,
        });
        self.charges.extend(charges.iter());
        self.memos.push(pending.request.detail.to_memo());
        self.pending.push(pending);
    }

    /// Adds a request the shard declines: a refusal the ledger journals under its key.
    pub fn refuse(&mut self, request: Request, reason: DeclineReason) {
        self.refuse_with_code(request, reason.id(), [None, None]);
    }

    /// Adds a refusal with its ledger code (an engine reason's id, or an issuer's decline
    /// code, `hosted::refusal_of_issuer_code`), giving back what was reserved for it.
    pub fn refuse_with_code(&mut self, request: Request, refusal: u16, reserved: [Option<(PositionKey, u64)>; 2]) {
        self.commands.push(Command {
            key: TransferId(request.key.0),
            digest: content_hash(&request),
            transfers: 0,
            refusal,
            reference: 0,
            charges: 0,
        });
        let mut detail = request.detail;
        // A decline books no fees, whatever was computed before it was declined.
        (detail.interchange, detail.acquirer_fee, detail.payer_fee) = (0, 0, 0);
        self.memos.push(detail.to_memo());
        self.pending.push(Pending { reserved, ..Pending::refused(request) });
    }
}

/// A digest of what a request asks, to tell a resend from a conflicting reuse of its key
/// (the ledger compares it when a key comes back). Never 0.
pub(crate) fn content_hash(request: &Request) -> u64 {
    let mut hasher = rustc_hash::FxHasher::default();
    request.asked_operation().hash(&mut hasher);
    request.instrument.hash(&mut hasher);
    request.amount.hash(&mut hasher);
    request.currency.hash(&mut hasher);
    request.acquirer.hash(&mut hasher);
    // The references (RRN and STAN, a QR payment's quote) too: the same key with other
    // references is another request, as it always was for the transfer it books.
    request.reference.hash(&mut hasher);
    hasher.finish().max(1)
}

/// Ledger batches on their way to durability, with the shard batches they were made of.
/// The shards' batches travel whole (no request is moved out of them) and are answered
/// in place by the completion stage.
pub(crate) struct InFlight {
    pub ticket: Result<Ticket<CommandResult>, LedgerError>,
    pub batches: Vec<CommitBatch>,
    /// When the ledger applied the batch, if a request of it is traced.
    pub applied: Option<std::time::Instant>,
}
