//! HOT PATH: the commit stage, one thread behind the shards.
//!
//! Merges the shards' batches into ledger batches of up to `BATCH_TRANSFERS_MAX`
//! transfers, waiting at most `commit_delay_us` for a partial batch to fill, and submits
//! them. The ledger applies a batch at once and syncs it in the background, so the next
//! batch is applied while the previous one is being written; the completion stage
//! (`completion.rs`) waits for durability and answers.

use crate::faults::{Faults, Stage};
use crate::messages::{CommitBatch, InFlight, SHARD_BURST_MAX, TRANSFERS_PER_REQUEST_MAX};
use crossbeam::channel::{Receiver, RecvTimeoutError, Sender};
use junction_ledger::{CommandPart, Ledger, BATCH_TRANSFERS_MAX};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Shard batches one ledger batch usually gathers (a capacity hint, not a bound).
const BATCHES_PER_COMMIT_HINT: usize = 16;

// A whole shard burst (at most SHARD_BURST_MAX commands, TRANSFERS_PER_REQUEST_MAX
// transfers each) always fits in what is left of a ledger batch.
const ABSORB_TRANSFERS_MAX: usize = BATCH_TRANSFERS_MAX - SHARD_BURST_MAX * TRANSFERS_PER_REQUEST_MAX;

pub(crate) fn commit_loop(
    input: Receiver<CommitBatch>,
    ledger: Arc<Ledger>,
    completion: Sender<InFlight>,
    commit_delay: Duration,
    faults: &Faults,
) {
    while let Ok(first) = input.recv() {
        faults.check(Stage::Commit);
        // A ledger batch is bounded in transfers and in commands (a burst of refusals has
        // no transfers at all).
        let mut transfers = first.transfers.len();
        let mut commands = first.commands.len();
        let mut batches = Vec::with_capacity(BATCHES_PER_COMMIT_HINT);
        batches.push(first);
        let deadline = Instant::now() + commit_delay;
        while transfers <= ABSORB_TRANSFERS_MAX && commands <= ABSORB_TRANSFERS_MAX {
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
            commands += batch.commands.len();
            batches.push(batch);
        }
        let parts: Vec<CommandPart<'_>> = batches
            .iter()
            .map(|batch| CommandPart {
                transfers: &batch.transfers,
                commands: &batch.commands,
                memos: &batch.memos,
                charges: &batch.charges,
            })
            .collect();
        let ticket = ledger.submit_commands(&parts);
        let applied = batches.iter().any(|batch| batch.traced).then(Instant::now);
        if completion.send(InFlight { ticket, batches, applied }).is_err() {
            break;
        }
    }
}
