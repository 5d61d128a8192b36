//! HOT PATH: the commit stage and the completion stage behind the shards.
//!
//! Commit stage (one thread): merges the shards' batches into ledger batches of up to
//! `BATCH_TRANSFERS_MAX` transfers, waiting at most `commit_delay_us` for a partial batch
//! to fill, and submits them. The ledger applies a batch at once and syncs it in the
//! background, so the next batch is applied while the previous one is being written.
//!
//! Completion stage (one thread): waits for each batch to be durable, then answers every
//! request in it, gives headroom back to the cap pool (once per batch) and tells the
//! shards which of their approvals the ledger refused.

use crate::codes::DeclineReason;
use crate::headroom::{CapKey, CapPool};
use crate::model::{Request, RequestKey, Response};
use crate::shard::{Feedback, SHARD_BURST_MAX};
use crate::EngineStats;
use crossbeam::channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use junction_ledger::{AccountId, Ledger, LedgerError, Ticket, Transfer, TransferError, BATCH_TRANSFERS_MAX};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most ledger transfers one request may need (an FX payment: two legs and a fee).
pub const TRANSFERS_PER_REQUEST_MAX: usize = 3;

/// Ledger batches submitted and not yet answered. Bounds the memory of requests waiting
/// for durability; when full, the commit stage waits, the shards' queues fill, and new
/// requests are declined with 91.
pub const COMMITS_IN_FLIGHT_MAX: usize = 8;

/// Batches from shards waiting for the commit stage.
pub const COMMIT_QUEUE_DEPTH_MAX: usize = 64;

/// Shard batches one ledger batch usually gathers (a capacity hint, not a bound).
const BATCHES_PER_COMMIT_HINT: usize = 16;

/// Ledger verdicts a shard has not yet absorbed. A full queue drops the feedback, which
/// only leaves a velocity counter a little high: the safe side.
pub const FEEDBACK_QUEUE_DEPTH_MAX: usize = 65_536;

// A whole shard burst always fits in what is left of a ledger batch.
const ABSORB_TRANSFERS_MAX: usize = BATCH_TRANSFERS_MAX - SHARD_BURST_MAX * TRANSFERS_PER_REQUEST_MAX;
const _: () = assert!(BATCH_TRANSFERS_MAX > SHARD_BURST_MAX * TRANSFERS_PER_REQUEST_MAX);

/// What the completion stage must do for one request once the ledger has spoken.
pub(crate) struct Pending {
    pub request: Request,
    pub account: AccountId,
    /// Cap headroom reserved for this request (the payer's, and an FX provider's for its
    /// leg), returned if it does not commit.
    pub reserved: [Option<(CapKey, u64)>; 2],
    /// Headroom the participants paid gain once it commits.
    pub credit: [Option<(CapKey, u64)>; 2],
    /// Headroom returned once it commits (the unposted part of a hold, a voided hold).
    pub release_on_success: Option<(CapKey, u64)>,
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
                transfer.flags = transfer.flags | junction_ledger::TransferFlags::LINKED;
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
    ticket: Result<Ticket, LedgerError>,
    batches: Vec<CommitBatch>,
}

pub(crate) fn commit_loop(
    input: Receiver<CommitBatch>,
    ledger: Arc<Ledger>,
    completion: Sender<InFlight>,
    commit_delay: Duration,
) {
    while let Ok(first) = input.recv() {
        let mut transfers = first.transfers.len();
        let mut batches = Vec::with_capacity(BATCHES_PER_COMMIT_HINT);
        batches.push(first);
        let deadline = Instant::now() + commit_delay;
        while transfers <= ABSORB_TRANSFERS_MAX {
            let batch = match input.try_recv() {
                Ok(batch) => batch,
                Err(_) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    match input.recv_timeout(deadline - now) {
                        Ok(batch) => batch,
                        Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            transfers += batch.transfers.len();
            batches.push(batch);
        }
        let parts: Vec<&[Transfer]> = batches.iter().map(|batch| batch.transfers.as_slice()).collect();
        let ticket = ledger.submit_parts(&parts);
        if completion.send(InFlight { ticket, batches }).is_err() {
            break;
        }
    }
}

pub(crate) fn completion_loop(
    input: Receiver<InFlight>,
    ledger: Arc<Ledger>,
    caps: Arc<CapPool>,
    feedback: Vec<Sender<Feedback>>,
    stats: Arc<EngineStats>,
    stats_slot: usize,
) {
    let mut give_back: FxHashMap<CapKey, i128> = FxHashMap::default();
    let mut responses: Vec<Response> = Vec::new();
    while let Ok(in_flight) = input.recv() {
        let results = in_flight.ticket.and_then(|ticket| ledger.wait(ticket));
        let mut index = 0;
        for batch in &in_flight.batches {
            let mut first = 0;
            for (pending, &count) in batch.pending.iter().zip(&batch.counts) {
                let count = usize::from(count);
                let first_transfer = batch.transfers[first].id.0;
                first += count;
                let outcome = match &results {
                    Ok(results) => verdict(&results[index..index + count]),
                    Err(_) => Err(DeclineReason::LedgerUnavailable),
                };
                index += count;
                let request = &pending.request;
                let response = match outcome {
                    Ok((timestamp, created)) => {
                        if created {
                            pending.credit.into_iter().for_each(|credit| add(&mut give_back, credit));
                            add(&mut give_back, pending.release_on_success);
                        } else {
                            // A resend of an approved request: the original's answer, and
                            // this copy's reservations go back.
                            pending.reserved.into_iter().for_each(|reserved| add(&mut give_back, reserved));
                            send_feedback(&feedback, batch.shard, pending, false);
                        }
                        Response::approved(request.tag, request.key, first_transfer, Some(timestamp))
                    }
                    Err(reason) => {
                        pending.reserved.into_iter().for_each(|reserved| add(&mut give_back, reserved));
                        send_feedback(&feedback, batch.shard, pending, true);
                        Response::declined(request.tag, request.key, reason)
                    }
                };
                stats.record(stats_slot, response.code, response.decline);
                responses.push(response);
            }
        }
        // Headroom first, answers after: a client that acts on an answer finds the
        // headroom it implies already back in the pool.
        caps.give_back_all(&give_back);
        give_back.clear();
        let requests = in_flight.batches.iter().flat_map(|batch| batch.pending.iter().map(|p| &p.request));
        for (request, response) in requests.zip(responses.drain(..)) {
            request.reply.send(response);
        }
    }
}

/// A request's outcome from its transfers' results: approved (timestamp, newly created)
/// or the reason of the transfer that failed (not "another link failed").
fn verdict(results: &[Result<junction_ledger::TransferOk, TransferError>]) -> Result<(u64, bool), DeclineReason> {
    let mut failure = None;
    for result in results {
        if let Err(error) = result {
            if failure.is_none() || failure == Some(TransferError::LinkedEventFailed) {
                failure = Some(*error);
            }
        }
    }
    match (failure, results.first()) {
        (None, Some(Ok(first))) => Ok((first.timestamp, first.created)),
        (Some(error), _) => Err(DeclineReason::from_ledger(error)),
        _ => Err(DeclineReason::SystemError),
    }
}

fn add(give_back: &mut FxHashMap<CapKey, i128>, amount: Option<(CapKey, u64)>) {
    if let Some((key, amount)) = amount {
        *give_back.entry(key).or_default() += i128::from(amount);
    }
}

fn send_feedback(feedback: &[Sender<Feedback>], shard: usize, pending: &Pending, forget_hold: bool) {
    if pending.velocity.is_none() && pending.hold.is_none() {
        return;
    }
    let message = Feedback {
        account: pending.account,
        velocity: pending.velocity,
        hold: if forget_hold { pending.hold } else { None },
        recheck_hold: if forget_hold { None } else { pending.hold },
    };
    if let Some(sender) = feedback.get(shard) {
        if let Err(TrySendError::Full(_)) = sender.try_send(message) {
            tracing::debug!(shard, "feedback queue full; a velocity counter stays high");
        }
    }
}
