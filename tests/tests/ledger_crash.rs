//! Crash test: a real child process commits batches; we SIGKILL it at random moments,
//! reopen the ledger, and check that every acknowledged batch is there in full, no batch
//! is there in part, nothing is there twice, and the books balance.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_ledger::*;
use junction_tests::crash_transfer_id;
use rand::Rng;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const CYCLES: u32 = 25;
const BATCH_SIZE: u32 = 256;

#[test]
fn sigkill_never_loses_an_acknowledged_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::thread_rng();
    let mut acked_per_run: Vec<Option<u64>> = Vec::new();
    for run in 0..CYCLES {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ledger-crash-writer"))
            .args([dir.path().to_str().unwrap(), &run.to_string(), &BATCH_SIZE.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the writer");
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines_rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until it has opened the ledger, then let it run for a random while.
        assert_eq!(lines_rx.recv_timeout(Duration::from_secs(60)).unwrap(), "ready");
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..300)));
        sigkill(child.id());
        let status = child.wait().unwrap();
        assert!(!status.success(), "the writer was killed, not finished");
        reader.join().unwrap();
        let last_ack =
            lines_rx.try_iter().filter_map(|l| l.strip_prefix("ack ").map(|n| n.parse::<u64>().unwrap())).last();
        acked_per_run.push(last_ack);

        // Reopen and check everything so far.
        let ledger = Ledger::open(dir.path(), LedgerOptions::default()).expect("reopening after SIGKILL");
        let mut seen = HashMap::new();
        ledger
            .for_each_transfer(1, ledger.durable_seq(), |r| *seen.entry(r.transfer.id.0).or_insert(0u32) += 1)
            .unwrap();
        assert!(seen.values().all(|n| *n == 1), "a transfer is journaled twice");
        for (past_run, acked) in acked_per_run.iter().enumerate() {
            check_run(&seen, past_run as u32, *acked);
        }
        check_books(&ledger);
    }
    let total_acked: u64 = acked_per_run.iter().map(|a| a.map_or(0, |n| n + 1)).sum();
    assert!(total_acked > 0, "the writer acknowledged nothing in {CYCLES} runs");
    eprintln!("{CYCLES} SIGKILL cycles, {total_acked} acknowledged batches, all present");
}

/// Every batch up to the last acknowledged one is present in full; any later batch is
/// present in full or not at all; batches are contiguous.
fn check_run(seen: &HashMap<u128, u32>, run: u32, acked: Option<u64>) {
    let mut batch = 0u64;
    loop {
        let present: Vec<bool> =
            (0..BATCH_SIZE).map(|i| seen.contains_key(&crash_transfer_id(run, batch, i))).collect();
        let all = present.iter().all(|p| *p);
        let none = present.iter().all(|p| !*p);
        assert!(all || none, "run {run} batch {batch} is there in part");
        if acked.is_some_and(|a| batch <= a) {
            assert!(all, "run {run} batch {batch} was acknowledged but is missing");
        }
        if none {
            break;
        }
        batch += 1;
    }
}

fn check_books(ledger: &Ledger) {
    let mut debits = 0u128;
    let mut credits = 0u128;
    for id in 1..=64u128 {
        let b = ledger.account(AccountId(id)).expect("account exists").balances;
        debits += u128::from(b.debits_posted);
        credits += u128::from(b.credits_posted);
    }
    assert_eq!(debits, credits, "the books balance");
    for window in ledger.windows() {
        let sum: i128 = window.positions.values().map(|p| p.net()).sum();
        assert_eq!(sum, 0, "window {:?} nets sum to zero", window.window);
    }
}

fn sigkill(pid: u32) {
    // SIGKILL through the kill(1) command keeps this crate free of unsafe code.
    let status = Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("running kill");
    assert!(status.success());
}
