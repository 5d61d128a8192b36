//! Background upkeep of the daemon: ledger checkpoints, so a restart replays only the
//! journal written since the last one (recovery in seconds, not minutes); echoes on
//! issuer links; advices sent until acknowledged.

use crate::advices::Advices;
use crate::config::IssuerLinksConfig;
use crate::issuer_links::IssuerLinks;
use crate::metrics::Metrics;
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

/// Echoes every issuer link each `echo_interval_ms` (a link that fails one leaves the
/// rotation until it answers again), and forgets late answers past their window.
pub async fn issuer_links_loop(
    links: Arc<IssuerLinks>,
    config: IssuerLinksConfig,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    // Links out of rotation are probed every `timeout_ms` (at most every echo interval),
    // so that a host back from a silent outage is used again within a probe or two, not
    // only at the next regular echo.
    let probe_ms = config.timeout_ms.min(config.echo_interval_ms).max(100);
    let mut since_all_ms = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(probe_ms)) => {
                since_all_ms += probe_ms;
                let all = since_all_ms >= config.echo_interval_ms;
                if all {
                    since_all_ms = 0;
                }
                links.echo_links(Duration::from_millis(config.timeout_ms), all).await;
                if all {
                    links.sweep();
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Sends the advices each `advice_retry_ms` until their issuers acknowledge them.
pub async fn advices_loop(
    advices: Arc<Advices>,
    metrics: Arc<Metrics>,
    config: IssuerLinksConfig,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let mut full_round = false;
        match advices.send_round(Duration::from_millis(config.timeout_ms)).await {
            Ok(acknowledged) => {
                metrics.advices_acknowledged.inc_by(acknowledged as u64);
                full_round = acknowledged == crate::advices::ADVICES_PER_ROUND_MAX;
            }
            Err(error) => tracing::error!(%error, "sending advices failed"),
        }
        if let Ok(outstanding) = advices.outstanding() {
            metrics.advices_outstanding.set(outstanding as i64);
        }
        if full_round {
            // A backlog the issuer is taking in: the next round at once.
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(config.advice_retry_ms)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
