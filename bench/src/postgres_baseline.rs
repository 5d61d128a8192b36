//! The baseline most teams would build: a PostgreSQL double-entry schema (accounts with a
//! non-negative balance check, a transfers table), one transaction per transfer, driven
//! by several client connections. `bench pipeline --postgres URL` runs the same workload
//! against it and prints Junction's throughput as a multiple of it. See bench/README.md
//! for starting Debian's PostgreSQL.

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Client connections driving PostgreSQL (more than cores: each waits on its commit).
pub const POSTGRES_CONNECTIONS: usize = 16;

pub struct BaselineResult {
    pub transfers: u64,
    pub seconds: f64,
    pub transfers_per_s: u64,
}

pub fn run(url: &str, accounts: u64, transfers: u64) -> Result<BaselineResult> {
    let mut admin = postgres::Client::connect(url, postgres::NoTls).context("connecting to PostgreSQL")?;
    admin.batch_execute(
        "DROP TABLE IF EXISTS bench_transfers; DROP TABLE IF EXISTS bench_accounts;
         CREATE TABLE bench_accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL CHECK (balance >= 0));
         CREATE TABLE bench_transfers (id BIGINT PRIMARY KEY, debit BIGINT NOT NULL REFERENCES bench_accounts,
             credit BIGINT NOT NULL REFERENCES bench_accounts, amount BIGINT NOT NULL CHECK (amount > 0),
             created_at TIMESTAMPTZ NOT NULL DEFAULT now());",
    )?;
    admin.execute(
        "INSERT INTO bench_accounts SELECT g, 1000000000000 FROM generate_series(1, $1::BIGINT) g",
        &[&(accounts as i64)],
    )?;
    admin.batch_execute("VACUUM ANALYZE bench_accounts")?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..POSTGRES_CONNECTIONS)
        .map(|worker| {
            let url = url.to_string();
            let next = Arc::clone(&next);
            std::thread::spawn(move || -> Result<u64> {
                let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
                let debit_stmt = client.prepare("UPDATE bench_accounts SET balance = balance - $2 WHERE id = $1")?;
                let credit_stmt = client.prepare("UPDATE bench_accounts SET balance = balance + $2 WHERE id = $1")?;
                let insert = client
                    .prepare("INSERT INTO bench_transfers (id, debit, credit, amount) VALUES ($1, $2, $3, $4)")?;
                let mut rng = rand::rngs::StdRng::seed_from_u64(worker as u64);
                let mut done = 0;
                loop {
                    let id = next.fetch_add(1, Ordering::Relaxed);
                    if id >= transfers {
                        return Ok(done);
                    }
                    let debit = rng.gen_range(1..=accounts) as i64;
                    let mut credit = rng.gen_range(1..=accounts) as i64;
                    if credit == debit {
                        credit = credit % accounts as i64 + 1;
                    }
                    let amount: i64 = rng.gen_range(1..10_000);
                    // Lock rows in id order, as careful teams do, to avoid deadlocks.
                    let mut tx = client.transaction()?;
                    if debit < credit {
                        tx.execute(&debit_stmt, &[&debit, &amount])?;
                        tx.execute(&credit_stmt, &[&credit, &amount])?;
                    } else {
                        tx.execute(&credit_stmt, &[&credit, &amount])?;
                        tx.execute(&debit_stmt, &[&debit, &amount])?;
                    }
                    tx.execute(&insert, &[&((id + 1) as i64), &debit, &credit, &amount])?;
                    tx.commit()?;
                    done += 1;
                }
            })
        })
        .collect();
    let mut committed = 0;
    for worker in workers {
        committed += worker.join().map_err(|_| anyhow::anyhow!("a PostgreSQL worker panicked"))??;
    }
    let seconds = started.elapsed().as_secs_f64();
    admin.batch_execute("DROP TABLE bench_transfers; DROP TABLE bench_accounts;")?;
    Ok(BaselineResult { transfers: committed, seconds, transfers_per_s: (committed as f64 / seconds) as u64 })
}
