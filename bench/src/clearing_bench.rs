//! `bench clearing`: ingest a window of N purchases (a transfer and the gateway's record
//! of its message each) into a real ledger, close it, and write its clearing files
//! (transfers, transactions and each participant's, camt.053, pacs.009, manifest). Reports the time to close
//! the window, the time to write all files, and the bytes written.

use crate::machine::{CpuMeter, CpuUse, Machine};
use anyhow::{Context, Result};
use junction_clearing::{write_window_files, ClearingConfig};
use junction_engine::detail::{Detail, Text};
use junction_ledger::*;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

#[derive(Debug, Clone, clap::Args)]
pub struct ClearingArgs {
    /// Window sizes to run, in transfers.
    #[arg(long, default_value = "10000000,100000000", value_delimiter = ',')]
    pub transfers: Vec<u64>,
    /// Accounts, spread over 32 participants in USD, EUR and JPY.
    #[arg(long, default_value_t = 100_000)]
    pub accounts: u64,
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Keep each case's folder (ledger and clearing files) to look at, and print where it
    /// is; by default it is deleted.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Serialize)]
struct CaseResult {
    case: String,
    transfers: u64,
    ingest_s: f64,
    close_ms: u64,
    files_ms: u64,
    /// CPU of the whole process (every thread) while the files were written.
    files_cpu: CpuUse,
    bytes_written: u64,
    machine: Machine,
}

const PARTICIPANTS: u64 = 32;

pub fn run(args: &ClearingArgs) -> Result<()> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let machine = Machine::detect(&base);
    machine.print();
    println!("settings: {} accounts over {PARTICIPANTS} participants, USD/EUR/JPY, one window per case", args.accounts);
    let mut results = Vec::new();
    for &transfers in &args.transfers {
        let dir = tempfile::Builder::new().prefix("junction-bench-clearing-").tempdir_in(&base)?;
        let result = run_case(transfers, args.accounts, dir.path(), &machine)?;
        if args.keep {
            println!("kept {}", dir.keep().display());
        }
        println!(
            "{:<14} close {:>6} ms   files {:>7} ms   {:>6} MB written   files CPU {:.1} s ({:.2} µs/transfer, steal {:.1}%)   (ingest {:.1} s)",
            result.case,
            result.close_ms,
            result.files_ms,
            result.bytes_written / 1_000_000,
            result.files_cpu.user_s + result.files_cpu.system_s,
            result.files_cpu.us_per(result.transfers),
            result.files_cpu.steal_percent,
            result.ingest_s
        );
        results.push(result);
    }
    if let Some(path) = &args.json {
        let lines: Vec<String> = results.iter().map(serde_json::to_string).collect::<Result<_, _>>()?;
        std::fs::write(path, lines.join("\n") + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn run_case(transfers: u64, accounts: u64, dir: &std::path::Path, machine: &Machine) -> Result<CaseResult> {
    let ledger = Ledger::open(&dir.join("ledger"), LedgerOptions::default())?;
    let currencies = [Currency::from_code("USD")?, Currency::from_code("EUR")?, Currency::from_code("JPY")?];
    let all: Vec<Account> = (1..=u128::from(accounts))
        .map(|id| Account {
            id: AccountId(id),
            participant: ParticipantId((id % u128::from(PARTICIPANTS)) as u64 + 1),
            currency: currencies[(id % 3) as usize],
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
    let template = crate::pipeline_bench::purchase_detail();
    // Ingest: accounts of the same currency are congruent mod 3.
    let started = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut in_flight = VecDeque::new();
    let mut next_id = 1u128;
    let mut remaining = transfers;
    while remaining > 0 {
        let count = remaining.min(BATCH_TRANSFERS_MAX as u64);
        remaining -= count;
        let mut memos = Vec::with_capacity(count as usize);
        let batch: Vec<Transfer> = (0..count)
            .map(|_| {
                let debit = rng.gen_range(1..=accounts);
                let mut credit = rng.gen_range(1..=accounts / 3).saturating_mul(3) + debit % 3;
                if credit == debit || credit > accounts || credit == 0 {
                    credit = if debit + 3 <= accounts { debit + 3 } else { debit - 3 };
                }
                let transfer = Transfer::new(
                    next_id,
                    u128::from(debit),
                    u128::from(credit),
                    rng.gen_range(1..100_000),
                    currencies[(debit % 3) as usize],
                );
                // Each transfer is a purchase's, with the record the ISO 8583 gateway keeps
                // of it: the files have one transactions row per transfer, in three files.
                let participant = |account: u64| (account % PARTICIPANTS) + 1;
                memos.push(
                    Detail {
                        rrn: Text::new(&format!("{next_id:012}")),
                        stan: Text::new(&format!("{:06}", next_id % 1_000_000)),
                        acquirer: participant(credit),
                        issuer: participant(debit),
                        amount: transfer.amount,
                        currency_numeric: transfer.currency.numeric(),
                        ..template
                    }
                    .to_memo(),
                );
                next_id += 1;
                transfer
            })
            .collect();
        let commands: Vec<Command> = batch
            .iter()
            .map(|t| Command { key: t.id, digest: 1, transfers: 1, refusal: 0, reference: 0, charges: 0 })
            .collect();
        in_flight.push_back(ledger.submit_commands(&[CommandPart {
            transfers: &batch,
            commands: &commands,
            memos: &memos,
            charges: &[],
        }])?);
        if in_flight.len() >= 8 {
            if let Some(ticket) = in_flight.pop_front() {
                ledger.wait(ticket)?;
            }
        }
    }
    while let Some(ticket) = in_flight.pop_front() {
        ledger.wait(ticket)?;
    }
    let ingest_s = started.elapsed().as_secs_f64();

    let closing = Instant::now();
    let closed = ledger.close_window()?;
    let close_ms = closing.elapsed().as_millis() as u64;
    anyhow::ensure!(closed.transfer_count == transfers, "window holds {} transfers", closed.transfer_count);
    let config = ClearingConfig {
        switch_name: "Junction bench".into(),
        switch_bic: "JNCTSGSGXXX".into(),
        settlement_bank_bic: "SETLSGSGXXX".into(),
        participants: BTreeMap::new(),
        fee_participant: None,
    };
    let writing = Instant::now();
    let meter = CpuMeter::start();
    let manifest = write_window_files(&ledger, closed.window, &dir.join("clearing"), &config)?;
    let files_ms = writing.elapsed().as_millis() as u64;
    let files_cpu = meter.stop();
    let folder = dir.join("clearing").join(junction_clearing::window_folder_name(closed.window.0));
    let manifest_bytes = std::fs::metadata(folder.join("manifest.json")).map(|m| m.len()).unwrap_or(0);
    let bytes_written = manifest.files.iter().map(|f| f.bytes).sum::<u64>() + manifest_bytes;
    Ok(CaseResult {
        case: format!("window-{}m", transfers / 1_000_000),
        transfers,
        ingest_s,
        close_ms,
        files_ms,
        files_cpu,
        bytes_written,
        machine: machine.clone(),
    })
}
