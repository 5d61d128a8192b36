//! Background upkeep of the daemon: ledger checkpoints, so a restart replays only the
//! journal written since the last one (recovery in seconds, not minutes).

use junction_engine::Engine;
use std::sync::Arc;
use std::time::Duration;

/// How often the daemon considers writing a checkpoint.
pub const CHECKPOINT_INTERVAL_S: u64 = 60;

/// Journal entries that must have been written since the last checkpoint for a new one
/// to be worth its cost (copying the state pauses traffic briefly).
pub const CHECKPOINT_ENTRIES_MIN: u64 = 1_000;

/// Writes a checkpoint now, off the async threads. Logs the outcome.
pub async fn checkpoint(engine: &Arc<Engine>) -> Option<u64> {
    let engine = Arc::clone(engine);
    match tokio::task::spawn_blocking(move || engine.ledger().checkpoint()).await {
        Ok(Ok(seq)) => Some(seq),
        Ok(Err(error)) => {
            tracing::error!(%error, "writing a ledger checkpoint failed");
            None
        }
        Err(error) => {
            tracing::error!(%error, "the checkpoint task failed");
            None
        }
    }
}

/// Checkpoints every `CHECKPOINT_INTERVAL_S` when enough was written, until shutdown.
pub async fn checkpoint_loop(engine: Arc<Engine>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut last = engine.ledger().recovery().checkpoint_seq;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(CHECKPOINT_INTERVAL_S)) => {
                if engine.ledger().durable_seq() >= last + CHECKPOINT_ENTRIES_MIN {
                    if let Some(seq) = checkpoint(&engine).await {
                        last = seq;
                    }
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}
