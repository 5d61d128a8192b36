//! Disk trouble: when the ledger cannot write (a full disk), the batch being written fails,
//! nothing after it is accepted, and everything acknowledged before it is there after a
//! reopen. Needs root to mount a small tmpfs; skipped (loudly) otherwise, but CI runs as root.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_ledger::*;
use std::process::Command;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_stops_commits_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert!(std::env::var("CI").is_err(), "CI runs as root and must be able to mount a tmpfs");
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
        return;
    }
    let _mount = Mount(dir.path().to_path_buf());
    let path = dir.path().join("ledger");
    // A small WAL: RocksDB preallocates little, so the full disk shows at once.
    let options = LedgerOptions { wal_size_bytes_max: 1 << 20, ..LedgerOptions::default() };
    let ledger = Ledger::open(&path, options.clone()).unwrap();
    let usd = Currency::from_code("USD").unwrap();
    let account = |id: u128| Account {
        id: AccountId(id),
        participant: ParticipantId(id as u64),
        currency: usd,
        kind: AccountKind::Cardholder,
        flags: AccountFlags::NONE,
        credit_limit: 0,
        debit_limits: junction_ledger::DebitLimits::NONE,
        user_data: 0,
    };
    ledger.create_accounts(&[account(1), account(2)]).unwrap();
    // Fill the disk, leaving a little room.
    let filler = dir.path().join("filler");
    let status = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=64", "status=none"])
        .arg(format!("of={}", filler.display()))
        .status()
        .unwrap();
    assert!(!status.success(), "dd stops when the disk is full");
    let _ = Command::new("truncate").args(["-s", "-1M"]).arg(&filler).status();
    // Commit until the disk refuses.
    let mut acknowledged = Vec::new();
    let mut failure = None;
    for batch in 0..10_000u128 {
        let transfers: Vec<Transfer> =
            (0..256u128).map(|i| Transfer::new(batch * 1_000 + i + 1, 1, 2, 1, usd)).collect();
        match ledger.commit(&transfers) {
            Ok(results) => {
                assert!(results.iter().all(|r| r.is_ok()));
                acknowledged.extend(transfers.iter().map(|t| t.id));
            }
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    let failure = failure.expect("the full disk made a commit fail");
    assert!(matches!(failure, LedgerError::Unavailable(_)), "{failure:?}");
    assert!(!acknowledged.is_empty());
    // Nothing more is accepted, and the ledger says why.
    assert!(matches!(ledger.submit(&[Transfer::new(9_999_999, 1, 2, 1, usd)]), Err(LedgerError::Unavailable(_))));
    assert!(ledger.health().is_err());
    drop(ledger);
    // Make room, reopen: every acknowledged transfer is there, exactly once.
    std::fs::remove_file(&filler).unwrap();
    let reopened = Ledger::open(&path, options).unwrap();
    let mut seen = std::collections::HashSet::new();
    reopened.for_each_transfer(1, reopened.durable_seq(), |r| assert!(seen.insert(r.transfer.id))).unwrap();
    for id in &acknowledged {
        assert!(seen.contains(id), "acknowledged transfer {id:?} lost");
    }
    let balances = reopened.account(AccountId(2)).unwrap().balances;
    assert_eq!(balances.credits_posted, seen.len() as u64);
    eprintln!("disk full after {} acknowledged transfers: {failure}", acknowledged.len());
}
