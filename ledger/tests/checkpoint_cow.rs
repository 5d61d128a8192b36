//! A checkpoint taken while commits run is the state as of its entry exactly: the accounts
//! are copied in pieces with copy-on-write, and the books reopened from the checkpoint and
//! the journal after it equal the books that were live.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_ledger::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const ACCOUNTS: u128 = 200_000;

fn usd() -> Currency {
    Currency::from_code("USD").unwrap()
}

#[test]
fn a_checkpoint_under_traffic_reopens_to_the_same_books() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::open(dir.path(), LedgerOptions::default()).unwrap());
    let accounts: Vec<Account> = (1..=ACCOUNTS)
        .map(|id| Account {
            id: AccountId(id),
            participant: ParticipantId((id % 7) as u64 + 1),
            currency: usd(),
            kind: AccountKind::Cardholder,
            flags: AccountFlags::NONE,
            credit_limit: 0,
            debit_limits: DebitLimits { count_per_day_max: 0, amount_per_day_max: 0 },
            user_data: 0,
        })
        .collect();
    for chunk in accounts.chunks(ACCOUNTS_PER_CALL_MAX) {
        assert!(ledger.create_accounts(chunk).unwrap().iter().all(|r| r.is_ok()));
    }
    // Traffic on every account while checkpoints copy the table.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (ledger, stop) = (Arc::clone(&ledger), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut next = 1u128;
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<Transfer> = (0..512)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let debit = u128::from(seed % ACCOUNTS as u64) + 1;
                        let credit = debit % ACCOUNTS + 1;
                        next += 1;
                        Transfer::new(next, debit, credit, seed % 1000 + 1, usd())
                    })
                    .collect();
                for result in ledger.commit(&batch).unwrap() {
                    result.unwrap();
                }
            }
        })
    };
    let mut waited_max = 0;
    for _ in 0..3 {
        let report = ledger.checkpoint_report().unwrap();
        waited_max = waited_max.max(report.pause_us_max);
    }
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    let live: Vec<Balances> = (1..=ACCOUNTS).map(|id| ledger.account(AccountId(id)).unwrap().balances).collect();
    let positions = ledger.window_positions(ledger.current_window()).unwrap().positions;
    let ledger = Arc::try_unwrap(ledger).map_err(|_| "still shared").unwrap();
    drop(ledger);
    let reopened = Ledger::open(dir.path(), LedgerOptions::default()).unwrap();
    assert!(reopened.recovery().checkpoint_seq > 0, "the reopen used the checkpoint");
    for id in 1..=ACCOUNTS {
        assert_eq!(reopened.account(AccountId(id)).unwrap().balances, live[id as usize - 1], "account {id}");
    }
    assert_eq!(reopened.window_positions(reopened.current_window()).unwrap().positions, positions);
    eprintln!("longest wait of a commit for a checkpoint's copy: {waited_max} us");
}
