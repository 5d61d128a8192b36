//! HOT PATH: the completion stage, one thread behind the commit stage.
//!
//! Waits for each ledger batch to be durable, then answers every request in it, gives
//! headroom back to the cap pool (once per batch) and tells the shards which of their
//! holds did not commit (`Feedback`), so they forget them.

use crate::codes::DeclineReason;
use crate::faults::{Faults, Stage};
use crate::headroom::CapPool;
use crate::hosted::decline_of_refusal;
use crate::messages::{Feedback, HoldFeedback, InFlight, Pending};
use crate::model::Response;
use crate::stats::EngineStats;
use crossbeam::channel::{Receiver, Sender, TrySendError};
use junction_ledger::{CommandOutcome, CommandResult, Ledger, PositionKey};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::Instant;

pub(crate) fn completion_loop(
    input: Receiver<InFlight>,
    ledger: Arc<Ledger>,
    caps: Arc<CapPool>,
    feedback: Vec<Sender<Feedback>>,
    stats: Arc<EngineStats>,
    stats_slot: usize,
    faults: &Faults,
) {
    let mut give_back: FxHashMap<PositionKey, i128> = FxHashMap::default();
    let mut responses: Vec<Response> = Vec::new();
    while let Ok(mut in_flight) = input.recv() {
        faults.check(Stage::Completion);
        let results = in_flight.ticket.and_then(|ticket| ledger.wait(ticket));
        let durable = in_flight.applied.map(|_| Instant::now());
        let mut index = 0;
        for batch in &in_flight.batches {
            for pending in &batch.pending {
                let result = match &results {
                    Ok(results) => Some(results[index]),
                    Err(_) => None,
                };
                index += 1;
                let request = &pending.request;
                let response = match result {
                    Some(CommandResult { outcome: CommandOutcome::Committed { timestamp, reference }, repeat }) => {
                        if repeat {
                            // A resend of an approved request: the original's answer, and
                            // this copy's reservations go back.
                            pending.reserved.into_iter().for_each(|reserved| add(&mut give_back, reserved));
                            send_feedback(&feedback, batch.shard, pending, HoldFeedback::Recheck);
                        } else {
                            pending.credit.into_iter().for_each(|credit| add(&mut give_back, credit));
                            add(&mut give_back, pending.release_on_success);
                        }
                        Response {
                            stood_in: pending.stood_in,
                            ..Response::approved(request.tag, request.key, reference, Some(timestamp))
                        }
                    }
                    declined => {
                        let (code, reason) = match declined {
                            Some(CommandResult { outcome: CommandOutcome::Failed(error), .. }) => {
                                let reason = DeclineReason::from_ledger(error);
                                (reason.code(), reason)
                            }
                            Some(CommandResult { outcome: CommandOutcome::Refused(refusal), .. }) => {
                                decline_of_refusal(refusal)
                            }
                            Some(CommandResult { outcome: CommandOutcome::Conflict, .. }) => {
                                (DeclineReason::DuplicateConflict.code(), DeclineReason::DuplicateConflict)
                            }
                            _ => (DeclineReason::LedgerUnavailable.code(), DeclineReason::LedgerUnavailable),
                        };
                        pending.reserved.into_iter().for_each(|reserved| add(&mut give_back, reserved));
                        send_feedback(&feedback, batch.shard, pending, HoldFeedback::Forget);
                        Response {
                            code,
                            stood_in: pending.stood_in,
                            ..Response::declined(request.tag, request.key, reason)
                        }
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
        let requests = in_flight.batches.iter_mut().flat_map(|batch| batch.pending.iter_mut().map(|p| &mut p.request));
        for (request, response) in requests.zip(responses.drain(..)) {
            // A traced request's spans end before its answer goes: the caller's own span
            // ends after the answer, so it holds the engine's.
            if let Some(mut trace) = request.trace.take() {
                let stages = trace.stages();
                (stages.applied, stages.durable) = (in_flight.applied, durable);
                trace.finish(&response);
            }
            request.reply.send(response);
        }
    }
}

fn add(give_back: &mut FxHashMap<PositionKey, i128>, amount: Option<(PositionKey, u64)>) {
    if let Some((key, amount)) = amount {
        *give_back.entry(key).or_default() += i128::from(amount);
    }
}

/// Tells the shard what to undo. Never dropped: the queue is sized so that it cannot
/// fill (`FEEDBACK_QUEUE_DEPTH_MAX`); if it ever does, the bound's reasoning is wrong and
/// the process stops rather than let a shard's holds and counters drift from the books.
fn send_feedback(feedback: &[Sender<Feedback>], shard: usize, pending: &Pending, hold_action: HoldFeedback) {
    let Some(hold) = pending.hold else { return };
    let message = Feedback { hold, hold_action };
    match feedback[shard].try_send(message) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            panic!(
                "shard {shard}'s feedback queue is full: more requests past the shards than REQUESTS_PAST_SHARDS_MAX"
            )
        }
        // The shard has stopped: the engine is shutting down, nothing is left to undo.
        Err(TrySendError::Disconnected(_)) => {}
    }
}
