//! Commands answered once, and the index in two tiers: a command's answer (committed,
//! failed or refused) is given again to the same command, across a reopen, after its key
//! left memory for the cold index, and for a timed key or not; holds that ended after
//! their id went cold keep telling how they ended.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_ledger::*;

fn usd() -> Currency {
    Currency::from_code("USD").unwrap()
}

fn account(id: u128, participant: u64, flags: AccountFlags) -> Account {
    Account {
        id: AccountId(id),
        participant: ParticipantId(participant),
        currency: usd(),
        kind: AccountKind::Cardholder,
        flags,
        credit_limit: 0,
        debit_limits: DebitLimits::NONE,
        user_data: 0,
    }
}

/// A tiny memory bound, so that upkeep moves nearly everything to the cold index.
fn options() -> LedgerOptions {
    LedgerOptions { index_memory_entries_max: 4, ..LedgerOptions::default() }
}

fn open(dir: &std::path::Path) -> Ledger {
    let ledger = Ledger::open(dir, options()).unwrap();
    let created = ledger.create_accounts(&[
        account(1, 1, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        account(9, 9, AccountFlags::NONE),
    ]);
    assert!(created.unwrap().iter().all(|r| r.is_ok()));
    ledger
}

fn command(key: TransferId, digest: u64, transfers: u32) -> Command {
    Command { key, digest, transfers, refusal: 0, reference: 0, charges: 0 }
}

fn run(ledger: &Ledger, transfers: &[Transfer], commands: &[Command]) -> Vec<CommandResult> {
    run_with_memos(ledger, transfers, commands, &[])
}

fn run_with_memos(ledger: &Ledger, transfers: &[Transfer], commands: &[Command], memos: &[Memo]) -> Vec<CommandResult> {
    let ticket = ledger.submit_commands(&[CommandPart { transfers, commands, memos, charges: &[] }]).unwrap();
    ledger.wait(ticket).unwrap()
}

/// A memo of `tag` bytes, each `tag` (memos of different lengths side by side).
fn memo(tag: u8) -> Memo {
    Memo::new(&vec![tag; usize::from(tag) * 40]).unwrap()
}

/// Every (records, details) pair of the journal so far, one per entry with transfers.
fn batches(ledger: &Ledger) -> Vec<(Vec<TransferRecord>, Vec<DetailRecord>)> {
    let mut out = Vec::new();
    ledger.for_each_batch(1, ledger.last_seq(), |records, details| out.push((records, details))).unwrap();
    out
}

#[test]
fn memos_are_journaled_once_with_the_answer_and_their_own_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = open(dir.path());
    let fund = TransferId(100);
    let failing = TransferId(101);
    let refused = TransferId(102);
    let paid = TransferId(103);
    let transfers = [
        Transfer::new(fund.0, 9, 1, 100, usd()),
        Transfer::new(failing.0, 1, 9, 500, usd()),
        Transfer::new(paid.0, 1, 9, 40, usd()),
    ];
    let commands = [
        command(fund, 1, 1),
        command(failing, 2, 1),
        Command { key: refused, digest: 3, transfers: 0, refusal: 7, reference: 0, charges: 0 },
        command(paid, 4, 1),
    ];
    let memos = [Memo::EMPTY, memo(2), memo(3), memo(4)];
    run_with_memos(&ledger, &transfers, &commands, &memos);
    // A resend of the purchase is answered again and journals nothing new.
    let again = run_with_memos(&ledger, &transfers[2..], &commands[3..], &memos[3..]);
    assert!(again[0].repeat);
    // One memo per command too few is refused before anything happens.
    let refused_call = ledger.submit_commands(&[CommandPart {
        transfers: &[],
        commands: &commands[2..3],
        memos: &memos,
        charges: &[],
    }]);
    assert!(matches!(refused_call, Err(LedgerError::MemosDoNotMatchCommands { memos: 4, commands: 1 })));
    assert!(Memo::new(&[1; MEMO_BYTES + 1]).is_none(), "a memo longer than MEMO_BYTES is refused");
    for reopened in [false, true] {
        if reopened {
            drop(ledger);
            ledger = open(dir.path());
        }
        let seen = batches(&ledger);
        let details: Vec<&DetailRecord> = seen.iter().flat_map(|(_, d)| d).collect();
        // The empty memo (the funding) is not journaled; each other command's is, once.
        assert_eq!(details.len(), 3, "reopened: {reopened}");
        let (records, entry_details) = seen.iter().find(|(_, d)| !d.is_empty()).unwrap();
        let by_key = |key: TransferId| entry_details.iter().find(|d| d.key == key).unwrap();
        let failed = by_key(failing);
        assert_eq!((failed.records, failed.memo), (0, memo(2)));
        assert!(matches!(failed.outcome(), Some(CommandOutcome::Failed(TransferError::InsufficientFunds))));
        assert_eq!(by_key(refused).outcome(), Some(CommandOutcome::Refused(7)));
        let committed = by_key(paid);
        assert_eq!((committed.records, committed.memo), (1, memo(4)));
        assert_eq!(committed.reference, paid.folded());
        assert_eq!(records[committed.first_record as usize].transfer.id, paid);
        assert!(matches!(committed.outcome(), Some(CommandOutcome::Committed { .. })));
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn answers_are_given_again_from_memory_the_cold_index_and_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = open(dir.path());
    // Fund account 1 with 100.
    let fund = TransferId::timed(now_s(), 1);
    let results = run(&ledger, &[Transfer::new(fund.0, 9, 1, 100, usd())], &[command(fund, 11, 1)]);
    assert!(matches!(results[0].outcome, CommandOutcome::Committed { .. }));
    assert_eq!(ledger.index_report().cold_lookups, 0, "nothing is cold yet");
    // A purchase of 500 fails for funds; a refusal is recorded; an untimed purchase of 40
    // commits; a timed one too.
    let failing = TransferId::timed(now_s(), 2);
    let refused = TransferId::timed(now_s(), 3);
    let untimed = TransferId(4);
    let timed = TransferId::timed(now_s(), 5);
    let transfers = [
        Transfer::new(failing.0, 1, 9, 500, usd()),
        Transfer::new(untimed.0, 1, 9, 40, usd()),
        Transfer::new(timed.0, 1, 9, 40, usd()),
    ];
    let commands = [
        command(failing, 21, 1),
        Command { key: refused, digest: 31, transfers: 0, refusal: 7, reference: 0, charges: 0 },
        command(untimed, 41, 1),
        command(timed, 51, 1),
    ];
    let first = run(&ledger, &transfers, &commands);
    assert_eq!(first[0].outcome, CommandOutcome::Failed(TransferError::InsufficientFunds));
    assert_eq!(first[1].outcome, CommandOutcome::Refused(7));
    assert!(matches!(first[2].outcome, CommandOutcome::Committed { .. }));
    assert!(first.iter().all(|r| !r.repeat));
    assert_eq!(ledger.account(AccountId(1)).unwrap().balances.available(), 20);

    // Refunded 1000: the failed purchase sent again still fails, nothing moves.
    let refund = TransferId::timed(now_s(), 6);
    run(&ledger, &[Transfer::new(refund.0, 9, 1, 1000, usd())], &[command(refund, 61, 1)]);
    let check = |ledger: &Ledger, when: &str| {
        let again = run(ledger, &transfers, &commands);
        for (index, (a, b)) in again.iter().zip(&first).enumerate() {
            assert_eq!(a.outcome, b.outcome, "{when}: command {index}");
            assert!(a.repeat, "{when}: command {index} is a repeat");
        }
        assert!(ledger.account(AccountId(1)).unwrap().balances.available() >= 1020, "{when}: money moved");
        // Another digest under a known key is a conflict.
        let conflict = run(
            ledger,
            &[],
            &[Command { key: failing, digest: 99, transfers: 0, refusal: 7, reference: 0, charges: 0 }],
        );
        assert_eq!(conflict[0].outcome, CommandOutcome::Conflict, "{when}");
    };
    check(&ledger, "in memory");
    // Most ids go to the cold index.
    let upkeep = ledger.index_upkeep().unwrap();
    assert!(upkeep.evicted > 0, "{upkeep:?}");
    assert!(upkeep.in_memory as usize <= 4, "{upkeep:?}");
    let lookups = ledger.index_report().cold_lookups;
    check(&ledger, "from the cold index");
    assert!(ledger.index_report().cold_lookups > lookups, "the cold index was asked");
    assert!(ledger.contains_transfer(failing) && ledger.contains_transfer(untimed));
    // A timed id later than memory's floor by more than the skew is fresh: no lookup.
    let lookups = ledger.index_report().cold_lookups;
    let fresh = TransferId::timed(now_s() + TIMED_ID_SKEW_S + 60, 7);
    run(&ledger, &[Transfer::new(fresh.0, 9, 1, 1, usd())], &[command(fresh, 71, 1)]);
    assert_eq!(ledger.index_report().cold_lookups, lookups, "a fresh timed id cost a cold lookup");
    let untimed_fresh = TransferId(8);
    run(&ledger, &[Transfer::new(untimed_fresh.0, 9, 1, 1, usd())], &[command(untimed_fresh, 81, 1)]);
    assert!(ledger.index_report().cold_lookups > lookups, "an untimed id is looked up");
    assert_eq!(ledger.transfer(timed).unwrap().unwrap().transfer.amount, 40);
    // A checkpoint, a reopen: memory starts from the journal after the checkpoint.
    ledger.checkpoint().unwrap();
    drop(ledger);
    ledger = Ledger::open(dir.path(), options()).unwrap();
    check(&ledger, "after a reopen");
    drop(ledger);
    // A reopen without the checkpoint's help (full replay) gives the same answers too.
    ledger = Ledger::open(dir.path(), options()).unwrap();
    check(&ledger, "after a second reopen");
}

#[test]
fn holds_that_end_after_their_id_went_cold_still_say_how_they_ended() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());
    ledger.commit(&[Transfer::new(TransferId::timed(now_s(), 1).0, 9, 1, 1000, usd())]).unwrap();
    let hold = TransferId::timed(now_s(), 2);
    let mut pending = Transfer::new(hold.0, 1, 9, 300, usd());
    pending.flags = TransferFlags::PENDING;
    assert!(ledger.commit(&[pending]).unwrap()[0].is_ok());
    // Filler, so that the hold's id leaves memory.
    let filler: Vec<Transfer> =
        (10..30u128).map(|n| Transfer::new(TransferId::timed(now_s(), n).0, 9, 1, 1, usd())).collect();
    ledger.commit(&filler).unwrap();
    assert!(ledger.index_upkeep().unwrap().evicted > 0);
    // Posted while its id is cold, then the hold leaves memory too.
    let mut post = Transfer::new(TransferId::timed(now_s(), 3).0, 0, 0, 300, usd());
    post.flags = TransferFlags::POST_PENDING;
    post.pending_id = hold;
    assert!(ledger.commit(&[post]).unwrap()[0].is_ok());
    ledger
        .commit(&filler.iter().map(|t| Transfer { id: TransferId(t.id.0 + 1000), ..*t }).collect::<Vec<_>>())
        .unwrap();
    ledger.index_upkeep().unwrap();
    ledger.index_upkeep().unwrap();
    assert_eq!(ledger.index_report().holds_in_memory, 0, "the ended hold left memory");
    let mut again = Transfer::new(TransferId::timed(now_s(), 4).0, 0, 0, 300, usd());
    again.flags = TransferFlags::POST_PENDING;
    again.pending_id = hold;
    assert_eq!(ledger.commit(&[again]).unwrap()[0], Err(TransferError::PendingAlreadyPosted));
    let mut void = again;
    void.id = TransferId::timed(now_s(), 5);
    void.flags = TransferFlags::VOID_PENDING;
    assert_eq!(ledger.commit(&[void]).unwrap()[0], Err(TransferError::PendingAlreadyPosted));
}

#[test]
fn charges_book_only_with_their_command_netted_into_one_transfer_per_payer_payee_and_code() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = open(dir.path());
    // Accounts without limits (7 and 8 are fee accounts), besides 1 (limited) and 9.
    let free = [account(7, 7, AccountFlags::NONE), account(8, 8, AccountFlags::NONE)];
    assert!(ledger.create_accounts(&free).unwrap().iter().all(|r| r.is_ok()));
    run(&ledger, &[Transfer::new(100, 9, 1, 1_000, usd())], &[command(TransferId(100), 1, 1)]);
    let charge = |debit: u128, credit: u128, amount: u64, code: u16| Charge {
        debit: AccountId(debit),
        credit: AccountId(credit),
        currency: usd(),
        amount,
        code,
    };
    let with_charges = |key: u128, charges: u32| Command { charges, ..command(TransferId(key), key as u64, 1) };
    let transfers = [
        Transfer::new(101, 1, 9, 100, usd()),
        Transfer::new(102, 1, 9, 50, usd()),
        Transfer::new(103, 1, 9, 5_000, usd()), // fails: insufficient funds
        Transfer::new(104, 1, 9, 10, usd()),    // its charge names a limited account
    ];
    let commands = [with_charges(101, 1), with_charges(102, 2), with_charges(103, 1), with_charges(104, 1)];
    let charges =
        [charge(9, 7, 3, 16), charge(9, 7, 2, 16), charge(9, 8, 1, 17), charge(9, 7, 5, 16), charge(1, 7, 1, 16)];
    let ticket = ledger.submit_commands(&[CommandPart {
        transfers: &transfers,
        commands: &commands,
        memos: &[],
        charges: &charges,
    }]);
    let results = ledger.wait(ticket.unwrap()).unwrap();
    assert!(matches!(results[0].outcome, CommandOutcome::Committed { .. }));
    assert!(matches!(results[1].outcome, CommandOutcome::Committed { .. }));
    assert_eq!(results[2].outcome, CommandOutcome::Failed(TransferError::InsufficientFunds));
    assert_eq!(results[3].outcome, CommandOutcome::Failed(TransferError::ChargeAccountInvalid));
    let check = |ledger: &Ledger| {
        let posted = |id: u128| {
            let b = ledger.account(AccountId(id)).unwrap().balances;
            (b.debits_posted, b.credits_posted)
        };
        // 9 paid 3 + 2 to 7 and 1 to 8; the failed and refused commands booked nothing.
        assert_eq!(posted(7), (0, 5));
        assert_eq!(posted(8), (0, 1));
        assert_eq!(posted(1), (150, 1_000), "the refused command's transfer did not move");
        let mut charge_records = Vec::new();
        ledger
            .for_each_batch(1, ledger.last_seq(), |records, _| {
                charge_records.extend(records.iter().filter(|r| r.transfer.code >= 16).map(|r| r.transfer))
            })
            .unwrap();
        let shapes: Vec<(u128, u128, u64, u16)> =
            charge_records.iter().map(|t| (t.debit_account.0, t.credit_account.0, t.amount, t.code)).collect();
        assert_eq!(shapes, [(9, 7, 5, 16), (9, 8, 1, 17)], "one transfer per payer, payee and code");
    };
    check(&ledger);
    // A resend of the first command is answered again and books nothing more.
    let again = ledger.submit_commands(&[CommandPart {
        transfers: &transfers[..1],
        commands: &commands[..1],
        memos: &[],
        charges: &charges[..1],
    }]);
    assert!(ledger.wait(again.unwrap()).unwrap()[0].repeat);
    check(&ledger);
    // A part whose commands name more charges than it has is refused whole.
    let short = ledger.submit_commands(&[CommandPart {
        transfers: &transfers[..1],
        commands: &[with_charges(105, 2)],
        memos: &[],
        charges: &charges[..1],
    }]);
    assert!(matches!(short, Err(LedgerError::CommandsDoNotCoverCharges { commands: 2, charges: 1 })));
    drop(ledger);
    ledger = open(dir.path());
    check(&ledger);
}
