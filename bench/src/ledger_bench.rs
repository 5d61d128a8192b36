//! `bench ledger`: transfers committed durably per second, in batches, straight into the
//! ledger (no authorization pipeline), with per-batch commit latency.

use crate::machine::Machine;
use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use junction_ledger::*;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::VecDeque;
use std::time::Instant;

#[derive(Debug, Clone, clap::Args)]
pub struct LedgerArgs {
    /// Transfers per case.
    #[arg(long, default_value_t = 10_000_000)]
    pub transfers: u64,
    /// Transfers per batch (one journal entry).
    #[arg(long, default_value_t = BATCH_TRANSFERS_MAX)]
    pub batch: usize,
    /// Batches submitted before waiting for the oldest (pipelining depth).
    #[arg(long, default_value_t = 8)]
    pub in_flight: usize,
    /// Cases to run, comma-separated: uniform-10k, uniform-1m, uniform-10m, hot.
    #[arg(long, default_value = "uniform-10k,uniform-1m,hot", value_delimiter = ',')]
    pub cases: Vec<String>,
    /// Folder for the temporary databases (default: the system temp dir).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Write one JSON record per case to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

#[derive(Debug, Serialize)]
struct CaseResult {
    case: String,
    accounts: u64,
    transfers: u64,
    batch_transfers: usize,
    in_flight: usize,
    sync: bool,
    seconds: f64,
    transfers_per_s: u64,
    latency_us_p50: u64,
    latency_us_p99: u64,
    latency_us_max: u64,
    /// Time to reopen the ledger afterwards by replaying the whole journal.
    recovery_ms: u64,
    /// Time to write a checkpoint of the state, then to reopen from it.
    checkpoint_ms: u64,
    recovery_from_checkpoint_ms: u64,
    machine: Machine,
}

pub fn run(args: &LedgerArgs) -> Result<()> {
    anyhow::ensure!(args.batch >= 1 && args.batch <= BATCH_TRANSFERS_MAX, "--batch must be 1..={BATCH_TRANSFERS_MAX}");
    anyhow::ensure!(args.in_flight >= 1, "--in-flight must be at least 1");
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let machine = Machine::detect(&base);
    machine.print();
    println!(
        "settings: {} transfers per case, batches of {}, {} in flight, WAL synced on every group commit",
        args.transfers, args.batch, args.in_flight
    );
    let mut results = Vec::new();
    for case in &args.cases {
        let accounts: u64 = match case.as_str() {
            "uniform-10k" | "hot" => 10_000,
            "uniform-1m" => 1_000_000,
            "uniform-10m" => 10_000_000,
            other => anyhow::bail!("unknown case {other:?}"),
        };
        let dir = tempfile::Builder::new().prefix("junction-bench-ledger-").tempdir_in(&base)?;
        let result = run_case(case, accounts, args, dir.path(), &machine)?;
        println!(
            "{:<12} {:>10} transfers/s   batch commit p50 {:>6} us  p99 {:>6} us  max {:>6} us   ({} transfers in {:.2} s)\n{:<12} reopen by full replay {} ms; checkpoint written in {} ms; reopen from it {} ms",
            result.case,
            result.transfers_per_s,
            result.latency_us_p50,
            result.latency_us_p99,
            result.latency_us_max,
            result.transfers,
            result.seconds,
            "",
            result.recovery_ms,
            result.checkpoint_ms,
            result.recovery_from_checkpoint_ms
        );
        results.push(result);
        drop(dir); // deletes the database
    }
    if let Some(path) = &args.json {
        let lines: Vec<String> = results.iter().map(serde_json::to_string).collect::<Result<_, _>>()?;
        std::fs::write(path, lines.join("\n") + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn run_case(
    case: &str,
    accounts: u64,
    args: &LedgerArgs,
    dir: &std::path::Path,
    machine: &Machine,
) -> Result<CaseResult> {
    let ledger = Ledger::open(dir, LedgerOptions::default())?;
    let usd = Currency::from_code("USD")?;
    let all: Vec<Account> = (1..=u128::from(accounts))
        .map(|id| Account {
            id: AccountId(id),
            participant: ParticipantId((id % 16) as u64 + 1),
            currency: usd,
            kind: AccountKind::Cardholder,
            flags: AccountFlags::NONE,
            credit_limit: 0,
            debit_limits: junction_ledger::DebitLimits::NONE,
            user_data: 0,
        })
        .collect();
    for chunk in all.chunks(ACCOUNTS_PER_CALL_MAX) {
        ledger.create_accounts(chunk)?;
    }
    // Generate the whole workload first, so the timed loop measures the ledger only.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6a75_6e63);
    let batches: Vec<Vec<Transfer>> = (0..args.transfers.div_ceil(args.batch as u64))
        .map(|b| {
            let count = (args.transfers - b * args.batch as u64).min(args.batch as u64);
            (0..count)
                .map(|i| {
                    let id = u128::from(b * args.batch as u64 + i + 1);
                    let debit = if case == "hot" && rng.gen_bool(0.5) { 1 } else { rng.gen_range(1..=accounts) };
                    let mut credit = rng.gen_range(1..=accounts);
                    if credit == debit {
                        credit = credit % accounts + 1;
                    }
                    Transfer::new(id, u128::from(debit), u128::from(credit), rng.gen_range(1..10_000), usd)
                })
                .collect()
        })
        .collect();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut in_flight: VecDeque<(Instant, Ticket)> = VecDeque::with_capacity(args.in_flight);
    let mut committed = 0u64;
    let mut finish = |ledger: &Ledger, started: Instant, ticket: Ticket| -> Result<()> {
        let results = ledger.wait(ticket)?;
        latency.record((started.elapsed().as_micros() as u64).max(1))?;
        committed += results.iter().filter(|r| r.is_ok()).count() as u64;
        Ok(())
    };
    let started = Instant::now();
    let mut submit_time = std::time::Duration::ZERO;
    for batch in &batches {
        if in_flight.len() == args.in_flight {
            if let Some((at, ticket)) = in_flight.pop_front() {
                finish(&ledger, at, ticket)?;
            }
        }
        let submitted = Instant::now();
        let ticket = ledger.submit(batch)?;
        submit_time += submitted.elapsed();
        in_flight.push_back((submitted, ticket));
    }
    while let Some((at, ticket)) = in_flight.pop_front() {
        finish(&ledger, at, ticket)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "  {case}: {:.2} s of {:.2} s spent applying batches (sequencer), the rest waiting for durability",
        submit_time.as_secs_f64(),
        seconds
    );
    anyhow::ensure!(committed == args.transfers, "only {committed} of {} transfers committed", args.transfers);
    drop(batches);
    drop(ledger);
    let reopened = Ledger::open(dir, LedgerOptions::default())?;
    let recovery_ms = reopened.recovery().duration_us / 1000;
    let checkpointing = Instant::now();
    reopened.checkpoint()?;
    let checkpoint_ms = checkpointing.elapsed().as_millis() as u64;
    drop(reopened);
    let reopened = Ledger::open(dir, LedgerOptions::default())?;
    let report = reopened.recovery();
    let recovery_from_checkpoint_ms = report.duration_us / 1000;
    println!(
        "  {case}: reopen from the checkpoint: RocksDB open {} ms, checkpoint load {} ms, journal replay {} ms",
        report.storage_open_us / 1000,
        report.checkpoint_load_us / 1000,
        report.replay_us / 1000
    );
    drop(reopened);
    Ok(CaseResult {
        case: case.to_string(),
        accounts,
        transfers: args.transfers,
        batch_transfers: args.batch,
        in_flight: args.in_flight,
        sync: true,
        seconds,
        transfers_per_s: (args.transfers as f64 / seconds) as u64,
        latency_us_p50: latency.value_at_quantile(0.50),
        latency_us_p99: latency.value_at_quantile(0.99),
        latency_us_max: latency.max(),
        recovery_ms,
        checkpoint_ms,
        recovery_from_checkpoint_ms,
        machine: machine.clone(),
    })
}
