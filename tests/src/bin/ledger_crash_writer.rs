//! A child process for the ledger crash test: opens the ledger, commits batches of
//! transfers as fast as it can (several in flight), and prints `ack <batch>` to stdout
//! after each batch is durable. The test kills it with SIGKILL at random moments.
//!
//! Usage: ledger-crash-writer <data-dir> <run> <batch-size>

use anyhow::{Context, Result};
use junction_ledger::*;
use junction_tests::crash_transfer_id;
use std::collections::VecDeque;
use std::io::Write;

/// Accounts 1..=ACCOUNTS of participants 1..=4, created on first run.
const ACCOUNTS: u128 = 64;
/// Batches submitted but not yet acknowledged.
const IN_FLIGHT_MAX: usize = 4;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).context("reading the data dir argument")?;
    let run: u32 = args.get(2).context("reading the run argument")?.parse()?;
    let batch_size: u32 = args.get(3).context("reading the batch size argument")?.parse()?;
    let ledger = Ledger::open(std::path::Path::new(dir), LedgerOptions::default()).context("opening the ledger")?;
    let usd = Currency::from_code("USD")?;
    let accounts: Vec<Account> = (1..=ACCOUNTS)
        .map(|id| Account {
            id: AccountId(id),
            participant: ParticipantId((id % 4) as u64 + 1),
            currency: usd,
            kind: AccountKind::Cardholder,
            flags: AccountFlags::NONE,
            credit_limit: 0,
            debit_limits: junction_ledger::DebitLimits::NONE,
            user_data: 0,
        })
        .collect();
    ledger.create_accounts(&accounts).context("creating accounts")?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "ready")?;
    out.flush()?;
    let mut in_flight = VecDeque::new();
    for batch in 0u64.. {
        let transfers: Vec<Transfer> = (0..batch_size)
            .map(|index| {
                let id = crash_transfer_id(run, batch, index);
                let debit = (id % ACCOUNTS) + 1;
                let credit = ((id / 7) % ACCOUNTS) + 1;
                let credit = if credit == debit { credit % ACCOUNTS + 1 } else { credit };
                let mut t = Transfer::new(id, debit, credit, (index as u64 % 1000) + 1, usd);
                // Every eighth pair is a linked group, to crash in the middle of one.
                if index % 8 == 0 && index + 1 < batch_size {
                    t.flags = TransferFlags::LINKED;
                }
                t
            })
            .collect();
        in_flight.push_back((batch, ledger.submit(&transfers)?));
        if in_flight.len() >= IN_FLIGHT_MAX {
            if let Some((acked, ticket)) = in_flight.pop_front() {
                let results = ledger.wait(ticket)?;
                anyhow::ensure!(results.iter().all(|r| r.is_ok()), "batch {acked} had a failure: {results:?}");
                writeln!(out, "ack {acked}")?;
                out.flush()?;
            }
        }
        if batch % 64 == 63 {
            ledger.close_window()?;
        }
    }
    Ok(())
}
