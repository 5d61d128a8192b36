//! Property test: random operation sequences against a simple in-memory model ledger.
//!
//! The model is written for obviousness, not speed: a linked chain snapshots the whole
//! model and restores it on failure; duplicates compare whole transfers. After every
//! operation every result, balance and position must agree, and every closed window's
//! nets must sum to zero per currency. Reopening the real ledger (recovery from RocksDB)
//! is one of the operations.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_ledger::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};

const SECOND_NS: u64 = 1_000_000_000;

#[derive(Clone, Debug, PartialEq)]
enum HoldStatus {
    Pending,
    Posted,
    Voided,
    Expired,
}

#[derive(Clone, Debug)]
struct ModelHold {
    debit: AccountId,
    credit: AccountId,
    amount: u64,
    currency: Currency,
    expires_at: u64,
    status: HoldStatus,
}

#[derive(Clone, Default, Debug)]
struct Model {
    accounts: BTreeMap<AccountId, (Account, Balances)>,
    transfers: HashMap<TransferId, Transfer>,
    holds: HashMap<TransferId, ModelHold>,
    positions: BTreeMap<(ParticipantId, Currency), Position>,
    closed: Vec<BTreeMap<(ParticipantId, Currency), Position>>,
}

type Outcome = Result<bool, TransferError>;

impl Model {
    fn create(&mut self, account: Account) -> Result<bool, AccountError> {
        match self.accounts.get(&account.id) {
            Some((existing, _)) if *existing == account => Ok(false),
            Some(_) => Err(AccountError::IdConflict),
            None => {
                self.accounts.insert(account.id, (account, Balances::default()));
                Ok(true)
            }
        }
    }

    fn expire(&mut self, now: u64) {
        let due: Vec<TransferId> = self
            .holds
            .iter()
            .filter(|(_, h)| h.status == HoldStatus::Pending && h.expires_at != 0 && h.expires_at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let hold = self.holds.get_mut(&id).unwrap();
            hold.status = HoldStatus::Expired;
            let hold = hold.clone();
            self.accounts.get_mut(&hold.debit).unwrap().1.debits_pending -= hold.amount;
            self.accounts.get_mut(&hold.credit).unwrap().1.credits_pending -= hold.amount;
        }
    }

    fn batch(&mut self, now: u64, last_ts: &mut u64, transfers: &[Transfer]) -> Vec<Outcome> {
        self.expire(now);
        let mut results = Vec::new();
        let mut i = 0;
        while i < transfers.len() {
            // Collect the chain starting at i.
            let mut end = i;
            while transfers[end].flags.contains(TransferFlags::LINKED) && end + 1 < transfers.len() {
                end += 1;
            }
            let chain = &transfers[i..=end];
            let open = chain.last().unwrap().flags.contains(TransferFlags::LINKED);
            if chain.len() == 1 && !open {
                results.push(self.one(now, last_ts, &chain[0]));
            } else {
                let snapshot = self.clone();
                let mut chain_results = Vec::new();
                let mut failed_at = None;
                for (k, t) in chain.iter().enumerate() {
                    let r = if open && k + 1 == chain.len() {
                        Err(TransferError::LinkedChainOpen)
                    } else {
                        self.one(now, last_ts, t)
                    };
                    if r.is_err() {
                        failed_at = Some(k);
                        chain_results.push(r);
                        break;
                    }
                    chain_results.push(r);
                }
                if let Some(k) = failed_at {
                    *self = snapshot;
                    for (j, r) in chain_results.iter_mut().enumerate() {
                        if j < k {
                            *r = Err(TransferError::LinkedEventFailed);
                        }
                    }
                    for j in k + 1..chain.len() {
                        let last_open = open && j + 1 == chain.len();
                        chain_results.push(Err(if last_open {
                            TransferError::LinkedChainOpen
                        } else {
                            TransferError::LinkedEventFailed
                        }));
                    }
                }
                results.extend(chain_results);
            }
            i = end + 1;
        }
        results
    }

    fn one(&mut self, now: u64, last_ts: &mut u64, t: &Transfer) -> Outcome {
        if t.id.0 == 0 {
            return Err(TransferError::IdMustNotBeZero);
        }
        if !t.flags.is_valid() {
            return Err(TransferError::FlagsInvalid);
        }
        let pending = t.flags.contains(TransferFlags::PENDING);
        let post = t.flags.contains(TransferFlags::POST_PENDING);
        let void = t.flags.contains(TransferFlags::VOID_PENDING);
        if [pending, post, void].iter().filter(|b| **b).count() > 1 {
            return Err(TransferError::FlagsConflict);
        }
        let mut r = *t;
        if post || void {
            if let Some(h) = self.holds.get(&t.pending_id) {
                if r.debit_account.0 == 0 {
                    r.debit_account = h.debit;
                }
                if r.credit_account.0 == 0 {
                    r.credit_account = h.credit;
                }
                if r.amount == 0 {
                    r.amount = h.amount;
                }
            }
        }
        if let Some(existing) = self.transfers.get(&r.id) {
            return if *existing == r { Ok(false) } else { Err(TransferError::IdConflict) };
        }
        if r.timeout_s != 0 && !pending {
            return Err(TransferError::TimeoutRequiresPending);
        }
        if (post || void) != (r.pending_id.0 != 0) {
            return Err(TransferError::PendingIdInvalid);
        }
        if post || void {
            let Some(h) = self.holds.get(&r.pending_id).cloned() else {
                return Err(if self.transfers.contains_key(&r.pending_id) {
                    TransferError::PendingTransferNotPending
                } else {
                    TransferError::PendingTransferNotFound
                });
            };
            match h.status {
                HoldStatus::Pending => {}
                HoldStatus::Posted => return Err(TransferError::PendingAlreadyPosted),
                HoldStatus::Voided => return Err(TransferError::PendingAlreadyVoided),
                HoldStatus::Expired => return Err(TransferError::PendingExpired),
            }
            if r.debit_account != h.debit || r.credit_account != h.credit || r.currency != h.currency {
                return Err(TransferError::PendingTransferMismatch);
            }
            if r.amount > h.amount {
                return Err(TransferError::PendingAmountExceeded);
            }
            if void && r.amount != h.amount {
                return Err(TransferError::PendingTransferMismatch);
            }
            let d = self.accounts[&h.debit].1;
            let c = self.accounts[&h.credit].1;
            if post
                && (d.debits_posted.checked_add(r.amount).is_none() || c.credits_posted.checked_add(r.amount).is_none())
            {
                return Err(TransferError::Overflow);
            }
            {
                let d = &mut self.accounts.get_mut(&h.debit).unwrap().1;
                d.debits_pending -= h.amount;
                if post {
                    d.debits_posted += r.amount;
                }
            }
            {
                let c = &mut self.accounts.get_mut(&h.credit).unwrap().1;
                c.credits_pending -= h.amount;
                if post {
                    c.credits_posted += r.amount;
                }
            }
            self.holds.get_mut(&r.pending_id).unwrap().status =
                if post { HoldStatus::Posted } else { HoldStatus::Voided };
            *last_ts = now.max(*last_ts + 1);
            self.transfers.insert(r.id, r);
            if post {
                self.move_positions(&r);
            }
            return Ok(true);
        }
        if r.amount == 0 {
            return Err(TransferError::AmountMustNotBeZero);
        }
        if r.debit_account == r.credit_account {
            return Err(TransferError::AccountsMustBeDifferent);
        }
        let Some((da, db)) = self.accounts.get(&r.debit_account).copied() else {
            return Err(TransferError::DebitAccountNotFound);
        };
        let Some((ca, cb)) = self.accounts.get(&r.credit_account).copied() else {
            return Err(TransferError::CreditAccountNotFound);
        };
        if da.currency != r.currency || ca.currency != r.currency {
            return Err(TransferError::CurrencyMismatch);
        }
        if da.flags.contains(AccountFlags::CLOSED) {
            return Err(TransferError::DebitAccountClosed);
        }
        if ca.flags.contains(AccountFlags::CLOSED) {
            return Err(TransferError::CreditAccountClosed);
        }
        let (mut nd, mut nc) = (db, cb);
        let ok = if pending {
            nd.debits_pending.checked_add(r.amount).map(|v| nd.debits_pending = v).is_some()
                && nc.credits_pending.checked_add(r.amount).map(|v| nc.credits_pending = v).is_some()
        } else {
            nd.debits_posted.checked_add(r.amount).map(|v| nd.debits_posted = v).is_some()
                && nc.credits_posted.checked_add(r.amount).map(|v| nc.credits_posted = v).is_some()
        };
        if !ok {
            return Err(TransferError::Overflow);
        }
        let debits = nd.debits_posted as u128 + nd.debits_pending as u128;
        let credits = nc.credits_posted as u128 + nc.credits_pending as u128;
        if debits > u64::MAX as u128 || credits > u64::MAX as u128 {
            return Err(TransferError::Overflow);
        }
        if da.flags.contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && debits > nd.credits_posted as u128 + da.credit_limit as u128
        {
            return Err(if da.credit_limit == 0 {
                TransferError::InsufficientFunds
            } else {
                TransferError::CreditLimitExceeded
            });
        }
        if ca.flags.contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS) && credits > nc.debits_posted as u128 {
            return Err(TransferError::CreditsExceedDebits);
        }
        self.accounts.get_mut(&r.debit_account).unwrap().1 = nd;
        self.accounts.get_mut(&r.credit_account).unwrap().1 = nc;
        *last_ts = now.max(*last_ts + 1);
        let ts = *last_ts;
        self.transfers.insert(r.id, r);
        if pending {
            let expires_at = if r.timeout_s == 0 { 0 } else { ts + r.timeout_s as u64 * SECOND_NS };
            self.holds.insert(
                r.id,
                ModelHold {
                    debit: r.debit_account,
                    credit: r.credit_account,
                    amount: r.amount,
                    currency: r.currency,
                    expires_at,
                    status: HoldStatus::Pending,
                },
            );
        } else {
            self.move_positions(&r);
        }
        Ok(true)
    }

    fn move_positions(&mut self, r: &Transfer) {
        let dp = self.accounts[&r.debit_account].0.participant;
        let cp = self.accounts[&r.credit_account].0.participant;
        if dp == cp {
            return;
        }
        let d = self.positions.entry((dp, r.currency)).or_default();
        d.debits += r.amount as u128;
        d.debit_count += 1;
        let c = self.positions.entry((cp, r.currency)).or_default();
        c.credits += r.amount as u128;
        c.credit_count += 1;
    }
}

#[derive(Clone, Debug)]
enum Op {
    Accounts(Vec<Account>),
    Batch {
        advance_s: u64,
        transfers: Vec<Transfer>,
    },
    Update {
        id: u128,
        flags: u16,
        credit_limit: u64,
    },
    CloseWindow,
    Reopen,
    Checkpoint,
    /// The index's upkeep: with the tiny memory bound below, it moves most ids to the
    /// cold index, so later batches reusing them are answered from there.
    Upkeep,
}

/// Index entries kept in memory: tiny, so that the cold index takes part in every run.
const INDEX_MEMORY_ENTRIES_MAX: usize = 6;

fn options() -> LedgerOptions {
    LedgerOptions { index_memory_entries_max: INDEX_MEMORY_ENTRIES_MAX, ..LedgerOptions::default() }
}

fn currency(index: u8) -> Currency {
    Currency::from_code(["USD", "JPY"][index as usize % 2]).unwrap()
}

fn account_strategy() -> impl Strategy<Value = Account> {
    (1u128..=8, 1u64..=3, 0u8..2, 0u16..8, prop_oneof![Just(0u64), Just(100), Just(u64::MAX)]).prop_map(
        |(id, participant, cur, flags, credit_limit)| Account {
            id: AccountId(id),
            participant: ParticipantId(participant),
            currency: currency(cur),
            kind: AccountKind::Cardholder,
            // Mostly open accounts, so that transfers get through.
            flags: AccountFlags(flags & if flags >= 6 { 0b111 } else { 0b110 }),
            credit_limit,
            debit_limits: junction_ledger::DebitLimits::NONE,
            user_data: 0,
        },
    )
}

fn transfer_strategy() -> impl Strategy<Value = Transfer> {
    let amount = prop_oneof![4 => 1u64..300, 1 => Just(0u64), 1 => Just(u64::MAX - 5)];
    let kind = prop_oneof![4 => Just(0u16), 2 => Just(2), 2 => Just(4), 1 => Just(8), 1 => Just(6), 1 => Just(64)];
    (1u128..=40, 0u128..=9, 0u128..=9, amount, kind, any::<bool>(), 0u128..=40, 0u32..=2, 0u8..2, 0u16..2).prop_map(
        |(id, debit, credit, amount, kind, linked, pending_id, timeout_s, cur, code)| {
            let resolving = kind == 4 || kind == 8;
            Transfer {
                id: TransferId(id),
                debit_account: AccountId(if resolving && debit > 6 { 0 } else { debit }),
                credit_account: AccountId(if resolving && credit > 6 { 0 } else { credit }),
                amount: if resolving && amount > 250 { 0 } else { amount },
                pending_id: TransferId(if resolving || pending_id > 38 { pending_id } else { 0 }),
                currency: currency(cur),
                code,
                flags: TransferFlags(kind | u16::from(linked)),
                timeout_s: if kind == 2 || timeout_s == 2 { timeout_s } else { 0 },
                user_data_128: 0,
                user_data_64: 0,
            }
        },
    )
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => prop::collection::vec(account_strategy(), 1..5).prop_map(Op::Accounts),
        8 => (0u64..3, prop::collection::vec(transfer_strategy(), 1..7))
            .prop_map(|(advance_s, transfers)| Op::Batch { advance_s, transfers }),
        1 => (1u128..=9, 0u16..8, 0u64..200).prop_map(|(id, flags, credit_limit)| Op::Update { id, flags, credit_limit }),
        1 => Just(Op::CloseWindow),
        1 => Just(Op::Reopen),
        1 => Just(Op::Checkpoint),
        2 => Just(Op::Upkeep),
    ]
}

fn check_equal(ledger: &Ledger, model: &Model) {
    for id in 0..=9u128 {
        let real = ledger.account(AccountId(id));
        let expected = model.accounts.get(&AccountId(id));
        match (real, expected) {
            (None, None) => {}
            (Some(view), Some((account, balances))) => {
                assert_eq!(view.account, *account);
                assert_eq!(view.balances, *balances, "balances of account {id}");
            }
            (real, expected) => panic!("account {id}: ledger {real:?}, model {expected:?}"),
        }
    }
    let windows = ledger.windows();
    assert_eq!(windows.len(), model.closed.len() + 1);
    for (window, expected) in windows.iter().zip(model.closed.iter().chain(std::iter::once(&model.positions))) {
        assert_eq!(&window.positions, expected, "positions of window {:?}", window.window);
        let mut sums: BTreeMap<Currency, i128> = BTreeMap::new();
        for ((_, c), p) in &window.positions {
            *sums.entry(*c).or_default() += p.net();
        }
        assert!(sums.values().all(|s| *s == 0), "nets sum to zero per currency: {sums:?}");
    }
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(dir.path(), options()).unwrap();
    let mut model = Model::default();
    // Start at the wall clock: window closes stamp their cut-off from it, and the test's
    // clock only runs ahead of it.
    let mut now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut last_ts = 0u64;
    for op in ops {
        match op {
            Op::Accounts(accounts) => {
                let real = ledger.create_accounts(&accounts).unwrap();
                let expected: Vec<_> = accounts.iter().map(|a| model.create(*a)).collect();
                assert_eq!(real, expected);
            }
            Op::Batch { advance_s, transfers } => {
                now += advance_s * SECOND_NS + SECOND_NS;
                let ticket = ledger.submit_at(now, &transfers).unwrap();
                let real: Vec<Outcome> =
                    ledger.wait(ticket).unwrap().into_iter().map(|r| r.map(|ok| ok.created)).collect();
                let expected = model.batch(now, &mut last_ts, &transfers);
                assert_eq!(real, expected, "results of {transfers:#?}");
                for (t, r) in transfers.iter().zip(&real) {
                    if r.is_ok() {
                        let stored = ledger.transfer(t.id).unwrap().expect("committed transfer is readable");
                        assert_eq!(stored.transfer, model.transfers[&t.id]);
                    }
                }
            }
            Op::Update { id, flags, credit_limit } => {
                let update = AccountUpdate {
                    id: AccountId(id),
                    flags: AccountFlags(flags),
                    credit_limit,
                    debit_limits: DebitLimits::NONE,
                    user_data: 0,
                };
                let real = ledger.update_account(update).unwrap();
                match model.accounts.get_mut(&AccountId(id)) {
                    Some((account, _)) => {
                        assert_eq!(real, Ok(()));
                        account.flags = AccountFlags(flags);
                        account.credit_limit = credit_limit;
                    }
                    None => assert_eq!(real, Err(AccountError::NotFound)),
                }
            }
            Op::CloseWindow => {
                ledger.close_window().unwrap();
                model.closed.push(std::mem::take(&mut model.positions));
            }
            Op::Reopen => {
                drop(ledger);
                ledger = Ledger::open(dir.path(), options()).unwrap();
            }
            Op::Checkpoint => {
                ledger.checkpoint().unwrap();
            }
            Op::Upkeep => {
                let upkeep = ledger.index_upkeep().unwrap();
                assert!(upkeep.in_memory as usize <= INDEX_MEMORY_ENTRIES_MAX.max(upkeep.in_memory as usize));
            }
        }
        check_equal(&ledger, &model);
    }
    // A final reopen must rebuild exactly the same books.
    drop(ledger);
    let ledger = Ledger::open(dir.path(), options()).unwrap();
    check_equal(&ledger, &model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn ledger_matches_model(ops in prop::collection::vec(op_strategy(), 1..40)) {
        run(ops);
    }
}
