//! Targeted tests of the ledger's rules: bad input writes nothing, two-phase transfers,
//! linked groups (FX), idempotency, windows and queries.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_ledger::*;

fn usd() -> Currency {
    Currency::from_code("USD").unwrap()
}

fn account(id: u128, participant: u64, currency: Currency, flags: AccountFlags) -> Account {
    Account {
        id: AccountId(id),
        participant: ParticipantId(participant),
        currency,
        kind: AccountKind::Cardholder,
        flags,
        credit_limit: 0,
        debit_limits: junction_ledger::DebitLimits::NONE,
        user_data: 0,
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    ledger: Ledger,
}

/// Accounts: 1 (P1, funded 1000 from 9), 2 (P2), 3 (P1, JPY), 9 (P9, settlement, unlimited).
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), LedgerOptions::default()).unwrap();
    let jpy = Currency::from_code("JPY").unwrap();
    let created = ledger
        .create_accounts(&[
            account(1, 1, usd(), AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
            account(2, 2, usd(), AccountFlags::NONE),
            account(3, 1, jpy, AccountFlags::NONE),
            account(9, 9, usd(), AccountFlags::NONE),
        ])
        .unwrap();
    assert!(created.iter().all(|r| *r == Ok(true)));
    let funded = ledger.commit(&[Transfer::new(1000, 9, 1, 1000, usd())]).unwrap();
    assert!(funded[0].is_ok());
    Fixture { _dir: dir, ledger }
}

fn one(ledger: &Ledger, transfer: Transfer) -> Result<TransferOk, TransferError> {
    ledger.commit(&[transfer]).unwrap().remove(0)
}

fn balances(ledger: &Ledger, id: u128) -> Balances {
    ledger.account(AccountId(id)).unwrap().balances
}

#[test]
fn bad_input_is_refused_and_writes_nothing() {
    let f = fixture();
    let seq_before = f.ledger.durable_seq();
    let jpy = Currency::from_code("JPY").unwrap();
    let cases = [
        (Transfer::new(0, 1, 2, 5, usd()), TransferError::IdMustNotBeZero),
        (Transfer::new(10, 1, 2, 0, usd()), TransferError::AmountMustNotBeZero),
        (Transfer::new(11, 1, 1, 5, usd()), TransferError::AccountsMustBeDifferent),
        (Transfer::new(12, 77, 2, 5, usd()), TransferError::DebitAccountNotFound),
        (Transfer::new(13, 1, 77, 5, usd()), TransferError::CreditAccountNotFound),
        (Transfer::new(14, 1, 3, 5, usd()), TransferError::CurrencyMismatch),
        (Transfer::new(15, 1, 2, 5, jpy), TransferError::CurrencyMismatch),
        (Transfer::new(16, 1, 2, 1001, usd()), TransferError::InsufficientFunds),
        // 9 has credits 0 and debits 1000: adding u64::MAX overflows its debits.
        (Transfer::new(17, 9, 2, u64::MAX, usd()), TransferError::Overflow),
    ];
    for (transfer, expected) in cases {
        assert_eq!(one(&f.ledger, transfer), Err(expected), "{transfer:?}");
    }
    // Nothing was journaled and nothing moved.
    assert_eq!(f.ledger.durable_seq(), seq_before);
    assert_eq!(balances(&f.ledger, 1).credits_posted, 1000);
    assert_eq!(balances(&f.ledger, 1).debits_posted, 0);
    assert_eq!(balances(&f.ledger, 2), Balances::default());
    assert!(f.ledger.transfer(TransferId(16)).unwrap().is_none());
    // A negative amount cannot be expressed: amounts are u64 minor units, parsed at the edge.
    assert!(u64::try_from(-5i64).is_err());
}

#[test]
fn oversized_batch_is_refused_whole() {
    let f = fixture();
    let transfers: Vec<Transfer> =
        (0..BATCH_TRANSFERS_MAX as u128 + 1).map(|i| Transfer::new(5000 + i, 1, 2, 1, usd())).collect();
    assert!(matches!(f.ledger.submit(&transfers), Err(LedgerError::BatchTooLarge(_))));
    assert_eq!(balances(&f.ledger, 2), Balances::default());
}

#[test]
fn two_phase_hold_post_partial_void_and_expire() {
    let f = fixture();
    let mut hold = Transfer::new(20, 1, 2, 600, usd());
    hold.flags = TransferFlags::PENDING;
    assert!(one(&f.ledger, hold).is_ok());
    assert_eq!(balances(&f.ledger, 1).debits_pending, 600);
    // The hold reduces what is available.
    assert_eq!(one(&f.ledger, Transfer::new(21, 1, 2, 401, usd())), Err(TransferError::InsufficientFunds));
    // Partial post of 250: the rest of the hold is released.
    let mut post = Transfer::new(22, 0, 0, 250, usd());
    post.flags = TransferFlags::POST_PENDING;
    post.pending_id = TransferId(20);
    assert!(one(&f.ledger, post).is_ok());
    let b = balances(&f.ledger, 1);
    assert_eq!((b.debits_pending, b.debits_posted), (0, 250));
    let mut again = post;
    again.id = TransferId(23);
    assert_eq!(one(&f.ledger, again), Err(TransferError::PendingAlreadyPosted));

    let mut hold2 = Transfer::new(30, 1, 2, 100, usd());
    hold2.flags = TransferFlags::PENDING;
    assert!(one(&f.ledger, hold2).is_ok());
    let mut void = Transfer::new(31, 0, 0, 0, usd());
    void.flags = TransferFlags::VOID_PENDING;
    void.pending_id = TransferId(30);
    assert!(one(&f.ledger, void).is_ok());
    let mut post_voided = post;
    post_voided.id = TransferId(32);
    post_voided.pending_id = TransferId(30);
    assert_eq!(one(&f.ledger, post_voided), Err(TransferError::PendingAlreadyVoided));
    let mut too_much = post;
    too_much.id = TransferId(33);
    too_much.pending_id = TransferId(34);
    assert_eq!(one(&f.ledger, too_much), Err(TransferError::PendingTransferNotFound));
    too_much.pending_id = TransferId(1000);
    assert_eq!(one(&f.ledger, too_much), Err(TransferError::PendingTransferNotPending));

    // Expiry: a hold with a 1 s timeout is released by the first commit after its deadline.
    let now = 4_000_000_000_000_000_000u64;
    let mut hold3 = Transfer::new(40, 1, 2, 100, usd());
    hold3.flags = TransferFlags::PENDING;
    hold3.timeout_s = 1;
    let r = f.ledger.wait(f.ledger.submit_at(now, &[hold3]).unwrap()).unwrap();
    assert!(r[0].is_ok());
    assert!(f.ledger.is_pending(TransferId(40)));
    let mut post3 = post;
    post3.id = TransferId(41);
    post3.pending_id = TransferId(40);
    let r = f.ledger.wait(f.ledger.submit_at(now + 2_000_000_000, &[post3]).unwrap()).unwrap();
    assert_eq!(r[0], Err(TransferError::PendingExpired));
    assert_eq!(balances(&f.ledger, 1).debits_pending, 0);
}

#[test]
fn idempotent_retry_and_conflict() {
    let f = fixture();
    let t = Transfer::new(50, 1, 2, 10, usd());
    let first = one(&f.ledger, t).unwrap();
    assert!(first.created);
    let retry = one(&f.ledger, t).unwrap();
    assert!(!retry.created);
    assert_eq!(retry.timestamp, first.timestamp);
    let mut changed = t;
    changed.amount = 11;
    assert_eq!(one(&f.ledger, changed), Err(TransferError::IdConflict));
    assert_eq!(balances(&f.ledger, 2).credits_posted, 10, "money moved once");
}

#[test]
fn linked_fx_group_is_all_or_nothing() {
    let f = fixture();
    let jpy = Currency::from_code("JPY").unwrap();
    // FX provider P5 with liquidity in USD (51) and JPY (52); merchant 4 at acquirer P4 in JPY.
    f.ledger
        .create_accounts(&[
            account(51, 5, usd(), AccountFlags::NONE),
            account(52, 5, jpy, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
            account(4, 4, jpy, AccountFlags::NONE),
        ])
        .unwrap();
    let mut leg1 = Transfer::new(60, 1, 51, 100, usd());
    leg1.flags = TransferFlags::LINKED;
    let leg2 = Transfer::new(61, 52, 4, 15_000, jpy);
    // The FX provider has no JPY liquidity yet: the JPY leg fails, so the USD leg must not move.
    let r = f.ledger.commit(&[leg1, leg2]).unwrap();
    assert_eq!(r, vec![Err(TransferError::LinkedEventFailed), Err(TransferError::InsufficientFunds)]);
    assert_eq!(balances(&f.ledger, 51), Balances::default());
    assert!(f.ledger.transfer(TransferId(60)).unwrap().is_none());
    // Fund the liquidity and retry the same ids: both legs commit.
    f.ledger.create_accounts(&[account(53, 5, jpy, AccountFlags::NONE)]).unwrap();
    assert!(one(&f.ledger, Transfer::new(62, 53, 52, 1_000_000, jpy)).is_ok());
    let r = f.ledger.commit(&[leg1, leg2]).unwrap();
    assert!(r.iter().all(|r| r.as_ref().is_ok_and(|ok| ok.created)));
    // A chain left open at the end of a batch fails whole.
    let mut open = Transfer::new(63, 1, 2, 1, usd());
    open.flags = TransferFlags::LINKED;
    assert_eq!(f.ledger.commit(&[open]).unwrap(), vec![Err(TransferError::LinkedChainOpen)]);
    // Positions: P1 paid P5 100 USD; P5 paid P4 15000 JPY; on-us JPY funding moved nothing.
    let window = f.ledger.window_positions(f.ledger.current_window()).unwrap();
    let jpy_p4 = window.positions[&(ParticipantId(4), jpy)];
    assert_eq!((jpy_p4.credits, jpy_p4.net()), (15_000, 15_000));
    assert_eq!(window.positions[&(ParticipantId(5), jpy)].net(), -15_000);
    assert_eq!(window.positions[&(ParticipantId(5), usd())].net(), 100);
}

#[test]
fn parts_commit_as_one_entry_and_keep_their_chains_apart() {
    let f = fixture();
    let seq_before = f.ledger.durable_seq();
    // Part 1: a plain transfer, then a chain whose second link overdraws account 1.
    let plain = Transfer::new(70, 1, 2, 10, usd());
    let mut link = Transfer::new(71, 1, 2, 20, usd());
    link.flags = TransferFlags::LINKED;
    let overdraw = Transfer::new(72, 1, 2, 5_000, usd());
    // Part 2: a chain that commits, and a chain left open at the end of its part: a chain
    // does not run on into the next part.
    let mut first = Transfer::new(73, 1, 2, 30, usd());
    first.flags = TransferFlags::LINKED;
    let second = Transfer::new(74, 2, 9, 5, usd());
    let mut open = Transfer::new(75, 1, 2, 1, usd());
    open.flags = TransferFlags::LINKED;
    // Part 3: a duplicate of part 1's committed transfer, and a new one.
    let again = plain;
    let last = Transfer::new(76, 1, 2, 40, usd());
    let parts: [&[Transfer]; 3] = [&[plain, link, overdraw], &[first, second, open], &[again, last]];
    let ticket = f.ledger.submit_parts(&parts).unwrap();
    let results = f.ledger.wait(ticket).unwrap();
    let outcome: Vec<Result<bool, TransferError>> = results.iter().map(|r| r.map(|ok| ok.created)).collect();
    assert_eq!(
        outcome,
        vec![
            Ok(true),
            Err(TransferError::LinkedEventFailed),
            Err(TransferError::InsufficientFunds),
            Ok(true),
            Ok(true),
            Err(TransferError::LinkedChainOpen),
            Ok(false),
            Ok(true),
        ]
    );
    assert_eq!(f.ledger.durable_seq(), seq_before + 1, "the parts are one journal entry");
    assert_eq!(balances(&f.ledger, 1).debits_posted, 10 + 30 + 40);
    assert_eq!(balances(&f.ledger, 2).credits_posted, 10 + 30 + 40);
    assert!(f.ledger.transfer(TransferId(71)).unwrap().is_none());
    assert!(f.ledger.transfer(TransferId(75)).unwrap().is_none());
    let window = f.ledger.window_positions(f.ledger.current_window()).unwrap();
    assert_eq!(window.transfer_count, 1 + 4, "the funding and the four committed transfers");
    // Too many transfers across the parts is refused whole.
    let many = vec![Transfer::new(80, 1, 2, 1, usd()); BATCH_TRANSFERS_MAX];
    let parts: [&[Transfer]; 2] = [&many, &[last]];
    assert!(
        matches!(f.ledger.submit_parts(&parts), Err(LedgerError::BatchTooLarge(n)) if n == BATCH_TRANSFERS_MAX + 1)
    );
}

#[test]
fn window_close_is_a_cut_and_history_pages() {
    let f = fixture();
    for i in 0..5 {
        assert!(one(&f.ledger, Transfer::new(100 + i, 1, 2, 10, usd())).is_ok());
    }
    let closed = f.ledger.close_window().unwrap();
    assert_eq!(closed.window, WindowId(1));
    assert_eq!(closed.transfer_count, 6); // funding + 5
    assert!(matches!(closed.state, WindowState::Closed { .. }));
    assert_eq!(closed.positions[&(ParticipantId(2), usd())].credits, 50);
    let after = one(&f.ledger, Transfer::new(200, 1, 2, 7, usd())).unwrap();
    assert_eq!(after.window, WindowId(2));
    assert_eq!(f.ledger.window_positions(WindowId(2)).unwrap().positions[&(ParticipantId(2), usd())].credits, 7);
    // Streaming a window's journal range gives exactly its transfers.
    let mut ids = Vec::new();
    f.ledger.for_each_transfer(closed.first_seq, closed.last_seq.unwrap(), |r| ids.push(r.transfer.id.0)).unwrap();
    assert_eq!(ids, vec![1000, 100, 101, 102, 103, 104]);
    // History of account 2, newest first, in pages of two.
    let page1 = f.ledger.account_transfers(AccountId(2), None, 2).unwrap();
    assert_eq!(page1.iter().map(|r| r.transfer.id.0).collect::<Vec<_>>(), vec![200, 104]);
    let page2 = f.ledger.account_transfers(AccountId(2), Some(page1[1].timestamp), 10).unwrap();
    assert_eq!(page2.iter().map(|r| r.transfer.id.0).collect::<Vec<_>>(), vec![103, 102, 101, 100]);
    // The same after a reopen: the chain is on disk.
    let dir = f._dir.path().to_path_buf();
    drop(f.ledger);
    let reopened = Ledger::open(&dir, LedgerOptions::default()).unwrap();
    let all = reopened.account_transfers(AccountId(1), None, 100).unwrap();
    assert_eq!(all.iter().map(|r| r.transfer.id.0).collect::<Vec<_>>(), vec![200, 104, 103, 102, 101, 100, 1000]);
}

#[test]
fn account_rules() {
    let f = fixture();
    assert_eq!(
        f.ledger.create_accounts(&[account(0, 1, usd(), AccountFlags::NONE)]).unwrap(),
        vec![Err(AccountError::IdMustNotBeZero)]
    );
    assert_eq!(f.ledger.create_accounts(&[account(2, 2, usd(), AccountFlags::NONE)]).unwrap(), vec![Ok(false)]);
    assert_eq!(
        f.ledger.create_accounts(&[account(2, 3, usd(), AccountFlags::NONE)]).unwrap(),
        vec![Err(AccountError::IdConflict)]
    );
    // Closing an account stops new transfers to it; a credit limit allows an overdraft.
    f.ledger.update_account(update(2, AccountFlags::CLOSED, 0)).unwrap().unwrap();
    assert_eq!(one(&f.ledger, Transfer::new(300, 1, 2, 1, usd())), Err(TransferError::CreditAccountClosed));
    f.ledger.update_account(update(1, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS, 500)).unwrap().unwrap();
    assert!(one(&f.ledger, Transfer::new(301, 1, 9, 1400, usd())).is_ok());
    assert_eq!(one(&f.ledger, Transfer::new(302, 1, 9, 101, usd())), Err(TransferError::CreditLimitExceeded));
}

#[test]
fn checkpoint_then_reopen_replays_only_the_tail() {
    let f = fixture();
    let mut hold = Transfer::new(700, 1, 2, 100, usd());
    hold.flags = TransferFlags::PENDING;
    hold.timeout_s = 3600;
    assert!(one(&f.ledger, hold).is_ok());
    assert!(one(&f.ledger, Transfer::new(701, 1, 2, 5, usd())).is_ok());
    f.ledger.close_window().unwrap();
    let covered = f.ledger.checkpoint().unwrap();
    assert!(one(&f.ledger, Transfer::new(702, 1, 2, 7, usd())).is_ok());
    let before: Vec<_> = [1u128, 2, 9].iter().map(|id| f.ledger.account(AccountId(*id)).unwrap()).collect();
    let windows_before = f.ledger.windows();
    let dir = f._dir.path().to_path_buf();
    drop(f.ledger);
    let reopened = Ledger::open(&dir, LedgerOptions::default()).unwrap();
    let report = reopened.recovery();
    assert_eq!(report.checkpoint_seq, covered);
    assert_eq!((report.entries_replayed, report.transfers_replayed), (1, 1));
    let after: Vec<_> = [1u128, 2, 9].iter().map(|id| reopened.account(AccountId(*id)).unwrap()).collect();
    assert_eq!(before, after);
    assert_eq!(windows_before, reopened.windows());
    // Idempotency, holds and history survive the checkpoint.
    assert_eq!(one(&reopened, Transfer::new(701, 1, 2, 5, usd())).map(|ok| ok.created), Ok(false));
    assert_eq!(one(&reopened, Transfer::new(701, 1, 2, 6, usd())), Err(TransferError::IdConflict));
    assert!(reopened.is_pending(TransferId(700)));
    let history = reopened.account_transfers(AccountId(2), None, 10).unwrap();
    assert_eq!(history.iter().map(|r| r.transfer.id.0).collect::<Vec<_>>(), vec![702, 701, 700]);
}

fn update(id: u128, flags: AccountFlags, credit_limit: u64) -> AccountUpdate {
    AccountUpdate { id: AccountId(id), flags, credit_limit, debit_limits: DebitLimits::NONE, user_data: 0 }
}
