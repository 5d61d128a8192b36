//! `bench recovery`: how long the switch takes to come back. Provisions N accounts,
//! drives M purchases through the engine, stops, and restarts the way `junctiond` does
//! (ledger open, then the engine reloading its provisioning): once by replaying the
//! whole journal, once from a checkpoint, and once from a checkpoint plus a journal tail.

use crate::machine::Machine;
use crate::pipeline_bench::{drive, provision, Driven};
use anyhow::{Context, Result};
use junction_engine::*;
use junction_ledger::*;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, clap::Args)]
pub struct RecoveryArgs {
    /// Accounts provisioned (each with a ledger account and an engine record).
    #[arg(long, default_value_t = 10_000_000)]
    pub accounts: u64,
    /// Purchases driven through the engine before the first restart.
    #[arg(long, default_value_t = 10_000_000)]
    pub transfers: u64,
    /// Purchases driven after the checkpoint (the journal tail the last restart replays).
    #[arg(long, default_value_t = 1_000_000)]
    pub tail: u64,
    #[arg(long, default_value_t = 2)]
    pub shards: usize,
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// One restart: the ledger's phases and the engine's reload, in milliseconds.
#[derive(Debug, Serialize)]
struct Restart {
    case: &'static str,
    total_ms: u64,
    storage_open_ms: u64,
    checkpoint_load_ms: u64,
    journal_replay_ms: u64,
    transfers_replayed: u64,
    engine_reload_ms: u64,
}

#[derive(Debug, Serialize)]
struct RecoveryResult {
    accounts: u64,
    transfers: u64,
    tail: u64,
    shards: usize,
    database_bytes: u64,
    checkpoint_write_ms: u64,
    /// How long commits waited while the checkpoint copied the state.
    checkpoint_pause_ms: u64,
    /// The longest single wait.
    checkpoint_pause_us_max: u64,
    restarts: Vec<Restart>,
    machine: Machine,
}

pub fn run(args: &RecoveryArgs) -> Result<()> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let machine = Machine::detect(&base);
    machine.print();
    println!(
        "settings: {} accounts, {} purchases, then a tail of {} after the checkpoint, {} shards",
        args.accounts, args.transfers, args.tail, args.shards
    );
    let dir = tempfile::Builder::new().prefix("junction-bench-recovery-").tempdir_in(&base)?;
    let path = dir.path();
    let config = EngineConfig { shards: args.shards, ..EngineConfig::default() };

    {
        let ledger = Arc::new(Ledger::open(path, LedgerOptions::default())?);
        let engine = Engine::start(Arc::clone(&ledger), config.clone())?;
        let provisioning = Instant::now();
        provision(&engine, args.accounts)?;
        println!("provisioned {} accounts in {:.1} s", args.accounts, provisioning.elapsed().as_secs_f64());
        run_traffic(&engine, args.accounts, args.transfers, 0)?;
        stop(engine, ledger)?;
    }
    let mut restarts = vec![restart("full replay", path, &config)?];

    let (engine, ledger) = start(path, &config)?;
    let report = ledger.checkpoint_report()?;
    let checkpoint_write_ms = report.duration_us / 1000;
    let checkpoint_pause_ms = report.pause_us / 1000;
    let checkpoint_pause_us_max = report.pause_us_max;
    println!(
        "checkpoint written in {checkpoint_write_ms} ms; commits waited {checkpoint_pause_ms} ms in all, \
         {checkpoint_pause_us_max} us at most at once"
    );
    stop(engine, ledger)?;
    restarts.push(restart("checkpoint", path, &config)?);

    let (engine, ledger) = start(path, &config)?;
    run_traffic(&engine, args.accounts, args.tail, args.transfers)?;
    stop(engine, ledger)?;
    restarts.push(restart("checkpoint + tail", path, &config)?);

    let result = RecoveryResult {
        accounts: args.accounts,
        transfers: args.transfers,
        tail: args.tail,
        shards: args.shards,
        database_bytes: folder_bytes(path),
        checkpoint_write_ms,
        checkpoint_pause_ms,
        checkpoint_pause_us_max,
        restarts,
        machine,
    };
    println!("database: {:.2} GB", result.database_bytes as f64 / 1e9);
    if let Some(json) = &args.json {
        std::fs::write(json, serde_json::to_string(&result)? + "\n")
            .with_context(|| format!("writing {}", json.display()))?;
    }
    drop(dir); // deletes the database
    Ok(())
}

/// Drives `transfers` purchases with request keys after `first_key`.
fn run_traffic(engine: &Engine, accounts: u64, transfers: u64, first_key: u64) -> Result<()> {
    if transfers == 0 {
        return Ok(());
    }
    let Driven { approved, seconds, .. } = drive(engine, "uniform", accounts, transfers, 65_536, first_key)?;
    println!("drove {transfers} purchases in {seconds:.1} s ({approved} approved)");
    Ok(())
}

fn start(path: &Path, config: &EngineConfig) -> Result<(Engine, Arc<Ledger>)> {
    let ledger = Arc::new(Ledger::open(path, LedgerOptions::default())?);
    let engine = Engine::start(Arc::clone(&ledger), config.clone())?;
    Ok((engine, ledger))
}

/// Stops the engine and closes the ledger (RocksDB's lock is released on the last drop).
fn stop(engine: Engine, ledger: Arc<Ledger>) -> Result<()> {
    engine.shutdown();
    drop(engine);
    let ledger = Arc::try_unwrap(ledger).map_err(|_| anyhow::anyhow!("the ledger is still shared after shutdown"))?;
    drop(ledger);
    Ok(())
}

/// Opens the ledger and starts the engine as `junctiond` does, and times both.
fn restart(case: &'static str, path: &Path, config: &EngineConfig) -> Result<Restart> {
    let started = Instant::now();
    let ledger = Arc::new(Ledger::open(path, LedgerOptions::default())?);
    let opened = started.elapsed();
    let engine = Engine::start(Arc::clone(&ledger), config.clone())?;
    let total = started.elapsed();
    let report = ledger.recovery();
    let restart = Restart {
        case,
        total_ms: total.as_millis() as u64,
        storage_open_ms: report.storage_open_us / 1000,
        checkpoint_load_ms: report.checkpoint_load_us / 1000,
        journal_replay_ms: report.replay_us / 1000,
        transfers_replayed: report.transfers_replayed,
        engine_reload_ms: (total - opened).as_millis() as u64,
    };
    println!(
        "restart ({case}): {} ms = RocksDB open {} ms + checkpoint load {} ms + journal replay {} ms ({} transfers) + engine reload {} ms",
        restart.total_ms,
        restart.storage_open_ms,
        restart.checkpoint_load_ms,
        restart.journal_replay_ms,
        restart.transfers_replayed,
        restart.engine_reload_ms
    );
    stop(engine, ledger)?;
    Ok(restart)
}

fn folder_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}
