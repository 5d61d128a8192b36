//! HOT PATH: the ledger's in-memory state and the rules that change it.
//!
//! Every committed transfer passes through `State::apply_batch` exactly once while the
//! ledger's sequencer lock is held, and again through `State::replay` when the ledger is
//! reopened. Both paths share `apply_one`, so recovery re-checks every rule and crashes on
//! a journal that does not replay cleanly instead of running on wrong books.
//!
//! No I/O, no logging above debug, no allocation per transfer beyond the hash-table
//! entries that a new transfer needs.

use crate::accounts::AccountTable;
use crate::currency::Currency;
use crate::error::LedgerError;
use crate::index::{ColdIndex, Horizon};
use crate::journal::{JournaledDetail, ANSWERED_BY_RECORD};
use crate::memory::BigMap;
use crate::types::*;
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};

/// An account's attributes, balances, and where its history starts in the journal.
#[derive(Debug, Clone)]
pub(crate) struct AccountState {
    pub account: Account,
    pub balances: Balances,
    pub links: HistoryLinks,
    /// New debits over the rolling day (checked against `debit_limits`).
    pub velocity: Velocity,
}

/// Length of one velocity bucket: the rolling day is `VELOCITY_BUCKETS` of them, so "the
/// last day" is exact to one bucket (3 hours).
pub const VELOCITY_BUCKET_NS: u64 = 3 * 3600 * NANOS_PER_SECOND;
pub const VELOCITY_BUCKETS: usize = 8;
const _: () = assert!(VELOCITY_BUCKET_NS * VELOCITY_BUCKETS as u64 == 24 * 3600 * NANOS_PER_SECOND);

/// An account's new debits in each bucket of the rolling day (by ledger timestamp, so a
/// replay counts exactly what the live run counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Velocity {
    pub newest_bucket: u32,
    pub counts: [u32; VELOCITY_BUCKETS],
    pub amounts: [u64; VELOCITY_BUCKETS],
}

impl Velocity {
    fn bucket_of(timestamp: u64) -> u32 {
        (timestamp / VELOCITY_BUCKET_NS) as u32
    }

    /// The day's totals once the buckets are moved on to `bucket` (older ones drop out).
    fn advanced(mut self, bucket: u32) -> Velocity {
        if bucket > self.newest_bucket {
            let steps = (bucket - self.newest_bucket).min(VELOCITY_BUCKETS as u32);
            for step in 1..=steps {
                let slot = ((self.newest_bucket + step) as usize) % VELOCITY_BUCKETS;
                self.counts[slot] = 0;
                self.amounts[slot] = 0;
            }
            self.newest_bucket = bucket;
        }
        self
    }

    fn totals(&self) -> (u64, u64) {
        let count = self.counts.iter().map(|c| u64::from(*c)).sum();
        let amount = self.amounts.iter().fold(0u64, |sum, a| sum.saturating_add(*a));
        (count, amount)
    }

    /// Counts a debit at `timestamp` against `limits`: the new counters, or why not.
    fn debit(self, limits: &DebitLimits, timestamp: u64, amount: u64) -> Result<Velocity, TransferError> {
        let bucket = Velocity::bucket_of(timestamp);
        // A timestamp older than the newest bucket cannot happen (timestamps increase).
        let mut velocity = self.advanced(bucket);
        let (count, total) = velocity.totals();
        if limits.count_per_day_max != 0 && count >= u64::from(limits.count_per_day_max) {
            return Err(TransferError::DebitCountLimitExceeded);
        }
        if limits.amount_per_day_max != 0 && total.saturating_add(amount) > limits.amount_per_day_max {
            return Err(TransferError::DebitAmountLimitExceeded);
        }
        let slot = (bucket as usize) % VELOCITY_BUCKETS;
        velocity.counts[slot] = velocity.counts[slot].saturating_add(1);
        velocity.amounts[slot] = velocity.amounts[slot].saturating_add(amount);
        Ok(velocity)
    }
}

/// The head of an account's history chain through the journal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HistoryLinks {
    /// The newest journal entry that moved the account (0: none).
    pub last_seq: u64,
    /// The entry before `last_seq` that moved it (0: none).
    pub previous_seq: u64,
}

impl HistoryLinks {
    /// Records that entry `seq` moves the account; returns the entry before it.
    fn link(&mut self, seq: u64) -> u64 {
        if self.last_seq != seq {
            self.previous_seq = self.last_seq;
            self.last_seq = seq;
        }
        self.previous_seq
    }
}

/// What the ledger remembers of an id: a committed transfer, or a command's answer.
///
/// `answer` says which: `INDEX_TRANSFER` for a committed transfer (and, when `digest` is
/// not 0, the answer of the command keyed by it); otherwise an `AnswerRecord::outcome`
/// code, with `fingerprint` holding the answer's reference (0 unless it committed).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TransferIndexEntry {
    pub seq: u64,
    pub timestamp: u64,
    pub window: WindowId,
    pub fingerprint: u64,
    pub digest: u64,
    pub answer: u16,
}

/// `TransferIndexEntry::answer` of a committed transfer.
pub(crate) const INDEX_TRANSFER: u16 = u16::MAX;
/// `TransferIndexEntry::answer` of a committed hold that was posted, voided or expired,
/// once its hold has left memory (the cold index keeps how it ended).
pub(crate) const INDEX_HOLD_POSTED: u16 = u16::MAX - 1;
pub(crate) const INDEX_HOLD_VOIDED: u16 = u16::MAX - 2;
pub(crate) const INDEX_HOLD_EXPIRED: u16 = u16::MAX - 3;

impl TransferIndexEntry {
    pub fn is_transfer(&self) -> bool {
        self.answer >= INDEX_HOLD_EXPIRED
    }

    /// The entry of a hold that ended so, for the cold index.
    pub fn with_hold_status(self, status: HoldStatus) -> TransferIndexEntry {
        let answer = match status {
            HoldStatus::Pending => INDEX_TRANSFER,
            HoldStatus::Posted => INDEX_HOLD_POSTED,
            HoldStatus::Voided => INDEX_HOLD_VOIDED,
            HoldStatus::Expired => INDEX_HOLD_EXPIRED,
        };
        TransferIndexEntry { answer, ..self }
    }

    /// The answer of the command keyed by this id, if it is one.
    pub fn command_outcome(&self, key: TransferId) -> Option<CommandOutcome> {
        if self.is_transfer() {
            return (self.digest != 0)
                .then_some(CommandOutcome::Committed { timestamp: self.timestamp, reference: key.folded() });
        }
        AnswerRecord::decode_outcome(self.answer, self.timestamp, self.fingerprint)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HoldStatus {
    Pending,
    Posted,
    Voided,
    Expired,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Hold {
    pub debit: AccountId,
    pub credit: AccountId,
    pub amount: u64,
    pub currency: Currency,
    /// Nanoseconds since the epoch; 0 = never.
    pub expires_at: u64,
    pub status: HoldStatus,
}

/// A closed window's frozen figures.
#[derive(Debug, Clone)]
pub(crate) struct ClosedWindow {
    pub closed_at: u64,
    pub positions: BTreeMap<PositionKey, Position>,
    pub transfer_count: u64,
    pub first_seq: u64,
    pub last_seq: u64,
}

/// What to restore when a linked chain fails part-way.
#[derive(Debug)]
enum Undo {
    Account(AccountId, Balances, HistoryLinks, Velocity),
    TransferInserted(TransferId),
    HoldInserted(TransferId),
    HoldStatus(TransferId, HoldStatus),
    ExpiryInserted(u64, TransferId),
    ExpiryRemoved(u64, TransferId),
    Position(PositionKey, Option<Position>),
}

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Transfers whose lookups `warm` issues together before they are applied. Enough to keep
/// several cache misses in flight; small enough that what they bring in stays in L1/L2.
const WARM_GROUP: usize = 32;

/// What one commit adds to its journal entry, besides the expired holds.
#[derive(Default)]
pub(crate) struct EntryRecords {
    pub records: Vec<TransferRecord>,
    pub answers: Vec<AnswerRecord>,
    pub details: Vec<JournaledDetail>,
    /// The memos of `details`, one after another.
    pub memos: Vec<u8>,
}

impl EntryRecords {
    /// Journals a command's memo: `answer` is its place in `answers`, or
    /// `ANSWERED_BY_RECORD`.
    fn push_detail(&mut self, answer: u32, first_record: usize, records: usize, memo: &Memo) {
        self.memos.extend_from_slice(memo.as_bytes());
        self.details.push(JournaledDetail {
            answer,
            first_record: first_record as u32,
            records: records as u32,
            memo_end: self.memos.len() as u32,
        });
    }
}

/// A run of commands none of which is known yet, with their memos (empty or one each)
/// and charges.
#[derive(Clone, Copy)]
pub(crate) struct Run<'a> {
    pub commands: &'a [Command],
    pub memos: &'a [Memo],
    pub charges: &'a [Charge],
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub accounts: AccountTable,
    pub transfers: BigMap<TransferId, TransferIndexEntry>,
    pub holds: BigMap<TransferId, Hold>,
    expiries: BTreeSet<(u64, TransferId)>,
    /// The open window and its positions.
    pub window: WindowId,
    pub positions: FxHashMap<PositionKey, Position>,
    pub window_transfer_count: u64,
    pub window_first_seq: u64,
    pub closed_windows: BTreeMap<WindowId, ClosedWindow>,
    pub last_timestamp: u64,
    /// The sequence number the next journal entry will get. Entries are numbered from 1.
    pub next_seq: u64,
    undo: Vec<Undo>,
    /// The records of the batch being committed, kept between batches so that each one
    /// does not allocate (and fault in) a fresh buffer.
    pub records_scratch: Vec<TransferRecord>,
    /// Scratch of `apply_commands`: the keys of the run being gathered, and the per-transfer
    /// results of a run.
    run_keys: rustc_hash::FxHashSet<TransferId>,
    transfer_results_scratch: Vec<Result<TransferOk, TransferError>>,
    /// The charges of the commands committed in the entry being built, summed by
    /// accounts, currency and code; booked by `book_charges` (see `Charge`).
    charges_due: FxHashMap<(AccountId, AccountId, Currency, u16), u128>,
    /// What memory's index is complete for (see `index.rs`).
    pub horizon: Horizon,
    /// The journal entry through which the cold index has every index entry.
    pub cold_through_seq: u64,
    /// Index entries of the batch being applied that only the cold index had, fetched
    /// before anything was applied (`prefetch_cold`), so that applying does no I/O.
    cold_hits: FxHashMap<TransferId, TransferIndexEntry>,
    /// Holds resolved while their id was no longer in memory (see `take_resolved_cold`).
    resolved_cold: Vec<TransferId>,
    /// Lookups made in the cold index by `prefetch_cold` since open.
    pub cold_lookups: u64,
}

/// How `apply_one` gets its timestamp: from the clock (live) or from the journal (replay).
#[derive(Clone, Copy)]
enum Clock {
    Live(u64),
    Replay(u64),
}

impl State {
    pub fn new() -> State {
        State { window: WindowId(1), next_seq: 1, window_first_seq: 1, ..State::default() }
    }

    // ---- the index --------------------------------------------------------------------

    /// What the index knows of an id: memory, or what `prefetch_cold` fetched.
    fn lookup(&self, id: TransferId) -> Option<TransferIndexEntry> {
        self.transfers.get(&id).copied().or_else(|| self.cold_hits.get(&id).copied())
    }

    /// Fetches from the cold index, before a batch is applied, the entries of the ids it
    /// names (transfer ids, holds they resolve, command keys) that memory lacks and that
    /// may be older than memory. Nothing is applied if the cold index cannot be read.
    pub fn prefetch_cold<'a>(
        &mut self,
        ids: impl Iterator<Item = &'a TransferId>,
        cold: &dyn ColdIndex,
    ) -> Result<(), LedgerError> {
        self.cold_hits.clear();
        if self.horizon.floor_seq == 0 {
            return Ok(());
        }
        for id in ids {
            if id.0 != 0
                && self.horizon.may_be_cold(*id)
                && !self.transfers.contains_key(id)
                && !self.cold_hits.contains_key(id)
            {
                self.cold_lookups += 1;
                if let Some(entry) = cold.get(*id)? {
                    self.cold_hits.insert(*id, entry);
                }
            }
        }
        Ok(())
    }

    /// Forgets what `prefetch_cold` fetched for the batch just applied.
    pub fn end_batch(&mut self) {
        self.cold_hits.clear();
    }

    /// The cold index entries that must say how a hold ended before these ids leave
    /// memory: the holds among them that are resolved (a pending hold stays in memory
    /// until it is posted, voided or expires, whatever happens to its id).
    pub fn hold_endings(&self, ids: &[TransferId]) -> Vec<(TransferId, TransferIndexEntry)> {
        ids.iter()
            .filter_map(|id| {
                let hold = self.holds.get(id).filter(|hold| hold.status != HoldStatus::Pending)?;
                let entry = self.transfers.get(id)?;
                Some((*id, entry.with_hold_status(hold.status)))
            })
            .collect()
    }

    /// Drops ids from memory (they are in the cold index, with how their holds ended),
    /// and the resolved holds among them.
    pub fn evict(&mut self, ids: &[TransferId]) {
        for id in ids {
            self.transfers.remove(id);
            if self.holds.get(id).is_some_and(|hold| hold.status != HoldStatus::Pending) {
                self.holds.remove(id);
            }
        }
    }

    /// Holds resolved after their id left memory, to be dropped once the cold index says
    /// how they ended: (id, how it ended), in the order they ended.
    pub fn take_resolved_cold(&mut self) -> Vec<(TransferId, HoldStatus)> {
        let ids = std::mem::take(&mut self.resolved_cold);
        ids.into_iter()
            .filter_map(|id| {
                let hold = self.holds.get(&id).filter(|hold| hold.status != HoldStatus::Pending)?;
                (!self.transfers.contains_key(&id)).then_some((id, hold.status))
            })
            .collect()
    }

    /// Drops resolved holds whose ending is now in the cold index.
    pub fn drop_holds(&mut self, ids: &[TransferId]) {
        for id in ids {
            if self.holds.get(id).is_some_and(|hold| hold.status != HoldStatus::Pending) {
                self.holds.remove(id);
            }
        }
    }

    // ---- accounts -------------------------------------------------------------------

    /// Ok(true) if created, Ok(false) if it already existed with the same attributes.
    pub fn check_account(&self, account: &Account) -> Result<bool, AccountError> {
        if account.id.0 == 0 {
            return Err(AccountError::IdMustNotBeZero);
        }
        if !account.flags.is_valid() {
            return Err(AccountError::FlagsInvalid);
        }
        match self.accounts.get(&account.id) {
            Some(existing) if existing.account == *account => Ok(false),
            Some(_) => Err(AccountError::IdConflict),
            None => Ok(true),
        }
    }

    pub fn insert_account(&mut self, account: Account) {
        let fresh = self.accounts.insert(AccountState {
            account,
            balances: Balances::default(),
            links: HistoryLinks::default(),
            velocity: Velocity::default(),
        });
        assert!(fresh, "account {:?} inserted twice", account.id);
    }

    pub fn update_account(&mut self, update: &AccountUpdate) -> Result<(), AccountError> {
        if !update.flags.is_valid() {
            return Err(AccountError::FlagsInvalid);
        }
        let state = self.accounts.get_mut(&update.id).ok_or(AccountError::NotFound)?;
        state.account.flags = update.flags;
        state.account.credit_limit = update.credit_limit;
        state.account.debit_limits = update.debit_limits;
        state.account.user_data = update.user_data;
        Ok(())
    }

    /// Restores a hold from a checkpoint, with its expiry if it is still pending.
    pub fn insert_hold(&mut self, id: TransferId, hold: Hold) {
        if hold.status == HoldStatus::Pending && hold.expires_at != 0 {
            self.expiries.insert((hold.expires_at, id));
        }
        self.holds.insert(id, hold);
    }

    // ---- windows --------------------------------------------------------------------

    /// Closes the open window at `closed_at`; `last_seq` is the journal entry of the close.
    pub fn close_window(&mut self, closed_at: u64, last_seq: u64) -> WindowId {
        let closed = self.window;
        // Later transfers are stamped after the cut-off.
        self.last_timestamp = self.last_timestamp.max(closed_at);
        let positions: BTreeMap<PositionKey, Position> = self.positions.drain().collect();
        let mut sums: BTreeMap<Currency, i128> = BTreeMap::new();
        for ((_, currency), position) in &positions {
            *sums.entry(*currency).or_default() += position.net();
        }
        for (currency, sum) in sums {
            assert_eq!(sum, 0, "window {closed:?}: nets in {currency} sum to {sum}, not zero");
        }
        self.closed_windows.insert(
            closed,
            ClosedWindow {
                closed_at,
                positions,
                transfer_count: self.window_transfer_count,
                first_seq: self.window_first_seq,
                last_seq,
            },
        );
        self.window = WindowId(closed.0 + 1);
        self.window_transfer_count = 0;
        self.window_first_seq = last_seq + 1;
        closed
    }

    // ---- transfers ------------------------------------------------------------------

    /// Releases every hold whose deadline is at or before `now`; appends their ids.
    pub fn expire_due(&mut self, now: u64, expired: &mut Vec<TransferId>) {
        while let Some(&(expires_at, id)) = self.expiries.first() {
            if expires_at > now {
                break;
            }
            self.expiries.pop_first();
            self.expire(id);
            expired.push(id);
        }
    }

    fn expire(&mut self, id: TransferId) {
        let hold = self.holds.get_mut(&id).expect("an expiry names a known hold");
        assert_eq!(hold.status, HoldStatus::Pending, "hold {id:?} expired twice");
        hold.status = HoldStatus::Expired;
        let hold = *hold;
        self.release_hold(&hold, hold.amount);
        if !self.transfers.contains_key(&id) {
            self.resolved_cold.push(id);
        }
    }

    fn release_hold(&mut self, hold: &Hold, amount: u64) {
        let debit = self.accounts.get_mut(&hold.debit).expect("a hold's debit account exists");
        debit.balances.debits_pending =
            debit.balances.debits_pending.checked_sub(amount).expect("debits_pending covers the hold");
        let credit = self.accounts.get_mut(&hold.credit).expect("a hold's credit account exists");
        credit.balances.credits_pending =
            credit.balances.credits_pending.checked_sub(amount).expect("credits_pending covers the hold");
    }

    /// Applies a batch at time `now`. Appends one result per transfer, and the records of
    /// the committed ones, in order, to be journaled as entry `self.next_seq`. Several
    /// batches may be appended to one entry; a linked chain stays within its batch.
    pub fn apply_batch(
        &mut self,
        now: u64,
        transfers: &[Transfer],
        results: &mut Vec<Result<TransferOk, TransferError>>,
        records: &mut Vec<TransferRecord>,
    ) {
        let count = transfers.len();
        // Results of earlier batches of the same entry come before this one's.
        let results_base = results.len();
        let records_base = records.len();
        let mut chain_start: Option<(usize, usize)> = None; // (transfer index, records length)
        let mut index = 0;
        let mut warmed = 0;
        while index < count {
            if index >= warmed {
                warmed = (index + WARM_GROUP).min(count);
                self.warm(&transfers[index..warmed]);
            }
            let transfer = &transfers[index];
            let linked = transfer.flags.contains(TransferFlags::LINKED);
            if chain_start.is_none() && linked {
                chain_start = Some((index, records.len()));
                self.undo.clear();
            }
            let result = if linked && index + 1 == count {
                Err(TransferError::LinkedChainOpen)
            } else {
                self.apply_one(transfer, Clock::Live(now), chain_start.is_some(), records)
            };
            let failed = result.is_err();
            results.push(result);
            if let Some((start, records_mark)) = chain_start {
                if failed {
                    self.rollback_chain();
                    records.truncate(records_mark);
                    for earlier in &mut results[results_base + start..results_base + index] {
                        *earlier = Err(TransferError::LinkedEventFailed);
                    }
                    // The rest of the chain, up to and including its last member, fails too.
                    let mut member_linked = linked;
                    while member_linked && index + 1 < count {
                        index += 1;
                        member_linked = transfers[index].flags.contains(TransferFlags::LINKED);
                        results.push(Err(if member_linked && index + 1 == count {
                            TransferError::LinkedChainOpen
                        } else {
                            TransferError::LinkedEventFailed
                        }));
                    }
                    chain_start = None;
                } else if !linked {
                    chain_start = None;
                }
            }
            index += 1;
        }
        debug_assert_eq!(results.len() - results_base, count);
        self.window_transfer_count += (records.len() - records_base) as u64;
    }

    /// Applies a batch of commands at time `now`: `transfers` holds their transfers, each
    /// command's consecutive and in order. Appends one result per command, the records of
    /// committed transfers, and the answers that their records do not already say.
    ///
    /// A command whose key is known (answered earlier, or earlier in this batch) gets that
    /// answer again and its transfers are not applied; the rest run through `apply_batch`
    /// in runs as long as possible, so its look-ahead (`warm`) keeps working.
    pub fn apply_commands(
        &mut self,
        now: u64,
        part: &CommandPart<'_>,
        results: &mut Vec<CommandResult>,
        out: &mut EntryRecords,
    ) {
        let CommandPart { transfers, commands, memos, charges } = *part;
        let total: usize = commands.iter().map(|c| c.transfers as usize).sum();
        assert_eq!(total, transfers.len(), "the commands must cover the batch's transfers exactly");
        let memos_of = |from: usize, to: usize| if memos.is_empty() { &[][..] } else { &memos[from..to] };
        // The run of commands not yet applied: commands[run_command..index], whose
        // transfers are transfers[run_transfer..offset] and charges
        // charges[run_charge..charge_offset].
        let (mut run_command, mut run_transfer, mut offset) = (0, 0, 0);
        let (mut run_charge, mut charge_offset) = (0, 0);
        let mut run_keys = std::mem::take(&mut self.run_keys);
        run_keys.clear();
        for (index, command) in commands.iter().enumerate() {
            let count = command.transfers as usize;
            let own_charges = &charges[charge_offset..charge_offset + command.charges as usize];
            let known = self.lookup(command.key).is_some() || run_keys.contains(&command.key);
            let bad_charges = !known && !self.charges_valid(own_charges);
            if known || bad_charges {
                // The earlier answer must be in the index first.
                let run = Run {
                    commands: &commands[run_command..index],
                    memos: memos_of(run_command, index),
                    charges: &charges[run_charge..charge_offset],
                };
                self.apply_run(now, transfers, run, run_transfer, offset, results, out);
                run_keys.clear();
                if known {
                    results.push(self.repeat(command));
                } else {
                    let memo = memos.get(index).copied();
                    let outcome = CommandOutcome::Failed(TransferError::ChargeAccountInvalid);
                    results.push(self.answer_unapplied(now, command, memo, outcome, out));
                }
                offset += count;
                charge_offset += own_charges.len();
                (run_command, run_transfer, run_charge) = (index + 1, offset, charge_offset);
            } else {
                run_keys.insert(command.key);
                offset += count;
                charge_offset += own_charges.len();
            }
        }
        let run = Run {
            commands: &commands[run_command..],
            memos: memos_of(run_command, commands.len()),
            charges: &charges[run_charge..charge_offset],
        };
        self.apply_run(now, transfers, run, run_transfer, offset, results, out);
        self.run_keys = run_keys;
    }

    /// Whether charges name accounts they may move (see `Charge`).
    fn charges_valid(&self, charges: &[Charge]) -> bool {
        let usable = |id: AccountId, currency: Currency| {
            self.accounts.get(&id).is_some_and(|state| {
                let account = &state.account;
                account.currency == currency && account.flags == AccountFlags::NONE && account.debit_limits.is_none()
            })
        };
        charges.iter().all(|charge| {
            charge.amount > 0
                && charge.debit != charge.credit
                && usable(charge.debit, charge.currency)
                && usable(charge.credit, charge.currency)
        })
    }

    /// Answers a command without applying anything of it (its charges are unusable): the
    /// answer is journaled and indexed like any other, so a resend gets it again.
    fn answer_unapplied(
        &mut self,
        now: u64,
        command: &Command,
        memo: Option<Memo>,
        outcome: CommandOutcome,
        out: &mut EntryRecords,
    ) -> CommandResult {
        let answer = AnswerRecord {
            key: command.key,
            digest: command.digest,
            reference: 0,
            timestamp: now,
            outcome: AnswerRecord::encode_outcome(outcome),
        };
        let (seq, window) = (self.next_seq, self.window);
        self.insert_answer(&answer, seq, window);
        out.answers.push(answer);
        if let Some(memo) = memo.filter(|memo| !memo.is_empty()) {
            let answer = (out.answers.len() - 1) as u32;
            out.push_detail(answer, out.records.len(), 0, &memo);
        }
        CommandResult { outcome, repeat: false }
    }

    /// Books the charges of the entry's committed commands: one transfer per accounts,
    /// currency and code, in a fixed order, after every other record of the entry. They
    /// cannot fail: every charge was checked when its command was accepted, and nothing
    /// in between closes an account or limits it.
    pub fn book_charges(&mut self, now: u64, records: &mut Vec<TransferRecord>) {
        if self.charges_due.is_empty() {
            return;
        }
        let mut due: Vec<_> = self.charges_due.drain().collect();
        due.sort_unstable_by_key(|(key, _)| *key);
        let unix_s = now / 1_000_000_000;
        let seq = self.next_seq;
        let mut transfers: Vec<Transfer> = Vec::with_capacity(due.len());
        for ((debit, credit, currency, code), mut amount) in due {
            // A sum past u64 (never in practice) goes in several transfers.
            while amount > 0 {
                let part = u64::try_from(amount).unwrap_or(u64::MAX);
                amount -= u128::from(part);
                let id = TransferId::charge(unix_s, seq, transfers.len() as u32);
                transfers.push(Transfer { code, ..Transfer::new(id.0, debit.0, credit.0, part, currency) });
            }
        }
        let mut results = Vec::with_capacity(transfers.len());
        self.apply_batch(now, &transfers, &mut results, records);
        for (transfer, result) in transfers.iter().zip(&results) {
            assert!(result.is_ok(), "entry {seq}: the charge transfer {transfer:?} failed: {result:?}");
        }
    }

    /// The answer to a command whose key is known.
    fn repeat(&self, command: &Command) -> CommandResult {
        let entry = self.lookup(command.key).expect("a repeated key is in the index");
        let outcome = match entry.command_outcome(command.key) {
            Some(outcome) if entry.digest == command.digest => outcome,
            // Another command with this key, or a plain transfer's id.
            _ => CommandOutcome::Conflict,
        };
        CommandResult { outcome, repeat: true }
    }

    /// Applies a run of commands (none of them known) whose transfers are
    /// `transfers[first_transfer..end]`: the transfers in one `apply_batch`, then the
    /// commands' answers.
    #[allow(clippy::too_many_arguments)]
    fn apply_run(
        &mut self,
        now: u64,
        transfers: &[Transfer],
        run: Run<'_>,
        first_transfer: usize,
        end: usize,
        results: &mut Vec<CommandResult>,
        out: &mut EntryRecords,
    ) {
        let Run { commands, memos, charges } = run;
        let mut charge_offset = 0;
        if commands.is_empty() {
            return;
        }
        let mut transfer_results = std::mem::take(&mut self.transfer_results_scratch);
        transfer_results.clear();
        let mut record = out.records.len();
        self.apply_batch(now, &transfers[first_transfer..end], &mut transfer_results, &mut out.records);
        let (seq, window) = (self.next_seq, self.window);
        let mut first = 0;
        for (index, command) in commands.iter().enumerate() {
            let count = command.transfers as usize;
            let group = &transfer_results[first..first + count];
            let group_transfers = &transfers[first_transfer + first..first_transfer + first + count];
            first += count;
            // This group's transfers that were created now have records, in order.
            let group_record = record;
            record += group.iter().filter(|r| matches!(r, Ok(ok) if ok.created)).count();
            let outcome = if command.refusal != 0 {
                CommandOutcome::Refused(command.refusal)
            } else {
                group_outcome(group, group_transfers)
            };
            let outcome = match outcome {
                CommandOutcome::Committed { timestamp, .. } if command.reference != 0 => {
                    CommandOutcome::Committed { timestamp, reference: command.reference }
                }
                outcome => outcome,
            };
            let own_charges = &charges[charge_offset..charge_offset + command.charges as usize];
            charge_offset += own_charges.len();
            if matches!(outcome, CommandOutcome::Committed { .. }) {
                for charge in own_charges {
                    let key = (charge.debit, charge.credit, charge.currency, charge.code);
                    *self.charges_due.entry(key).or_insert(0) += u128::from(charge.amount);
                }
            }
            let own_transfer = group_transfers.first().filter(|t| t.id == command.key);
            let own_created = own_transfer.is_some() && matches!(group.first(), Some(Ok(ok)) if ok.created);
            let mut answered = ANSWERED_BY_RECORD;
            if matches!(outcome, CommandOutcome::Committed { .. }) && own_created && command.reference == 0 {
                // The transfer's own record answers the command: it carries the digest.
                if let Some(entry) = self.transfers.get_mut(&command.key) {
                    entry.digest = command.digest;
                }
                out.records[group_record].digest = command.digest;
            } else {
                let (timestamp, reference) = match outcome {
                    CommandOutcome::Committed { timestamp, reference } => (timestamp, reference),
                    _ => (now, 0),
                };
                let answer = AnswerRecord {
                    key: command.key,
                    digest: command.digest,
                    reference,
                    timestamp,
                    outcome: AnswerRecord::encode_outcome(outcome),
                };
                self.insert_answer(&answer, seq, window);
                out.answers.push(answer);
                answered = (out.answers.len() - 1) as u32;
            }
            if let Some(memo) = memos.get(index).filter(|memo| !memo.is_empty()) {
                out.push_detail(answered, group_record, record - group_record, memo);
            }
            results.push(CommandResult { outcome, repeat: false });
        }
        self.transfer_results_scratch = transfer_results;
    }

    fn insert_answer(&mut self, answer: &AnswerRecord, seq: u64, window: WindowId) {
        let entry = TransferIndexEntry {
            seq,
            timestamp: answer.timestamp,
            window,
            fingerprint: answer.reference,
            digest: answer.digest,
            answer: answer.outcome,
        };
        let previous = self.transfers.insert(answer.key, entry);
        assert!(previous.is_none(), "the answer of {:?} was recorded twice", answer.key);
    }

    /// Looks up what the next transfers will touch (their ids in the transfer index, their
    /// accounts), so that the cache misses of a whole group overlap instead of stalling
    /// the sequencer one after another: the lookups of different transfers do not depend
    /// on each other, and the processor runs several at once. Applying them afterwards
    /// then finds the lines in cache. Changes nothing.
    fn warm(&self, transfers: &[Transfer]) {
        for transfer in transfers {
            std::hint::black_box(self.transfers.contains_key(&transfer.id));
            for id in [&transfer.debit_account, &transfer.credit_account] {
                let account = self.accounts.get(id);
                // The entry spans two cache lines: touch a field in each.
                std::hint::black_box(account.map(|a| (a.account.flags, a.balances.debits_posted, a.links.last_seq)));
            }
        }
    }

    /// Re-applies a journaled entry's expiries and records. Panics if the journal does not
    /// replay to the same outcome: the books on disk would then be wrong.
    pub fn replay(&mut self, seq: u64, expired: &[TransferId], records: &[TransferRecord], answers: &[AnswerRecord]) {
        assert_eq!(seq, self.next_seq, "journal entry out of order");
        for id in expired {
            let expires_at = self.holds.get(id).map(|h| h.expires_at).expect("replayed expiry names a hold");
            assert!(self.expiries.remove(&(expires_at, *id)), "replayed expiry of {id:?} was not due");
            self.expire(*id);
        }
        let mut scratch = Vec::with_capacity(1);
        for record in records {
            assert_eq!(record.window, self.window, "record of transfer {:?} in the wrong window", record.transfer.id);
            scratch.clear();
            let result = self.apply_one(&record.transfer, Clock::Replay(record.timestamp), false, &mut scratch);
            match result {
                Ok(ok) if ok.created => {}
                other => panic!("journal entry {seq}: transfer {:?} replays as {other:?}", record.transfer.id),
            }
            let journaled = TransferRecord { digest: 0, ..*record };
            assert_eq!(
                scratch.as_slice(),
                std::slice::from_ref(&journaled),
                "journal entry {seq}: record differs on replay"
            );
            if record.digest != 0 {
                if let Some(entry) = self.transfers.get_mut(&record.transfer.id) {
                    entry.digest = record.digest;
                }
            }
        }
        for answer in answers {
            assert!(
                AnswerRecord::decode_outcome(answer.outcome, answer.timestamp, answer.reference).is_some(),
                "journal entry {seq}: the answer of {:?} has an unknown outcome {}",
                answer.key,
                answer.outcome
            );
            self.insert_answer(answer, seq, self.window);
        }
        self.window_transfer_count += records.len() as u64;
        self.next_seq += 1;
    }

    fn rollback_chain(&mut self) {
        while let Some(undo) = self.undo.pop() {
            match undo {
                Undo::Account(id, balances, links, velocity) => {
                    if let Some(account) = self.accounts.get_mut(&id) {
                        account.balances = balances;
                        account.links = links;
                        account.velocity = velocity;
                    }
                }
                Undo::TransferInserted(id) => {
                    self.transfers.remove(&id);
                }
                Undo::HoldInserted(id) => {
                    self.holds.remove(&id);
                }
                Undo::HoldStatus(id, status) => {
                    if let Some(hold) = self.holds.get_mut(&id) {
                        hold.status = status;
                    }
                }
                Undo::ExpiryInserted(at, id) => {
                    self.expiries.remove(&(at, id));
                }
                Undo::ExpiryRemoved(at, id) => {
                    self.expiries.insert((at, id));
                }
                Undo::Position(key, previous) => match previous {
                    Some(position) => {
                        self.positions.insert(key, position);
                    }
                    None => {
                        self.positions.remove(&key);
                    }
                },
            }
        }
    }

    fn timestamp(&mut self, clock: Clock) -> u64 {
        if let Clock::Replay(timestamp) = clock {
            assert!(timestamp > self.last_timestamp, "journal timestamps must increase");
        }
        let timestamp = next_timestamp(self.last_timestamp, clock);
        self.last_timestamp = timestamp;
        timestamp
    }

    /// The transfer as it will be journaled: for post/void, accounts and amount taken from
    /// the hold when left zero. Also the form that duplicate detection compares.
    fn resolve(&self, transfer: &Transfer) -> Transfer {
        let mut resolved = *transfer;
        if transfer.flags.contains(TransferFlags::POST_PENDING) || transfer.flags.contains(TransferFlags::VOID_PENDING)
        {
            if let Some(hold) = self.holds.get(&transfer.pending_id) {
                if resolved.debit_account.0 == 0 {
                    resolved.debit_account = hold.debit;
                }
                if resolved.credit_account.0 == 0 {
                    resolved.credit_account = hold.credit;
                }
                if resolved.amount == 0 {
                    resolved.amount = hold.amount;
                }
            }
        }
        resolved
    }

    fn apply_one(
        &mut self,
        request: &Transfer,
        clock: Clock,
        in_chain: bool,
        records: &mut Vec<TransferRecord>,
    ) -> Result<TransferOk, TransferError> {
        if request.id.0 == 0 {
            return Err(TransferError::IdMustNotBeZero);
        }
        if !request.flags.is_valid() {
            return Err(TransferError::FlagsInvalid);
        }
        let kinds = [TransferFlags::PENDING, TransferFlags::POST_PENDING, TransferFlags::VOID_PENDING]
            .iter()
            .filter(|flag| request.flags.contains(**flag))
            .count();
        if kinds > 1 {
            return Err(TransferError::FlagsConflict);
        }
        let transfer = self.resolve(request);
        let fingerprint = fingerprint(&transfer);
        if let Some(existing) = self.lookup(transfer.id) {
            // An id that answered a command without being its committed transfer is taken:
            // only the command itself, sent again, gets that answer (`apply_commands`).
            return if existing.is_transfer() && existing.fingerprint == fingerprint {
                Ok(TransferOk { timestamp: existing.timestamp, window: existing.window, created: false })
            } else {
                Err(TransferError::IdConflict)
            };
        }
        if transfer.timeout_s != 0 && !transfer.flags.contains(TransferFlags::PENDING) {
            return Err(TransferError::TimeoutRequiresPending);
        }
        let resolving = transfer.flags.contains(TransferFlags::POST_PENDING)
            || transfer.flags.contains(TransferFlags::VOID_PENDING);
        if resolving != (transfer.pending_id.0 != 0) {
            return Err(TransferError::PendingIdInvalid);
        }
        if resolving {
            self.apply_resolve(transfer, fingerprint, clock, in_chain, records)
        } else {
            self.apply_new(transfer, fingerprint, clock, in_chain, records)
        }
    }

    /// A single-phase transfer or a new hold.
    fn apply_new(
        &mut self,
        transfer: Transfer,
        fingerprint: u64,
        clock: Clock,
        in_chain: bool,
        records: &mut Vec<TransferRecord>,
    ) -> Result<TransferOk, TransferError> {
        if transfer.amount == 0 {
            return Err(TransferError::AmountMustNotBeZero);
        }
        if transfer.debit_account == transfer.credit_account {
            return Err(TransferError::AccountsMustBeDifferent);
        }
        let pending = transfer.flags.contains(TransferFlags::PENDING);
        let seq = self.next_seq;
        let window = self.window;
        let [debit, credit] = self.accounts.get_disjoint_mut([&transfer.debit_account, &transfer.credit_account]);
        let debit = debit.ok_or(TransferError::DebitAccountNotFound)?;
        let credit = credit.ok_or(TransferError::CreditAccountNotFound)?;
        if debit.account.currency != transfer.currency || credit.account.currency != transfer.currency {
            return Err(TransferError::CurrencyMismatch);
        }
        if debit.account.flags.contains(AccountFlags::CLOSED) {
            return Err(TransferError::DebitAccountClosed);
        }
        if credit.account.flags.contains(AccountFlags::CLOSED) {
            return Err(TransferError::CreditAccountClosed);
        }
        let amount = transfer.amount;
        let mut debit_balances = debit.balances;
        let mut credit_balances = credit.balances;
        if pending {
            debit_balances.debits_pending =
                debit_balances.debits_pending.checked_add(amount).ok_or(TransferError::Overflow)?;
            credit_balances.credits_pending =
                credit_balances.credits_pending.checked_add(amount).ok_or(TransferError::Overflow)?;
        } else {
            debit_balances.debits_posted =
                debit_balances.debits_posted.checked_add(amount).ok_or(TransferError::Overflow)?;
            credit_balances.credits_posted =
                credit_balances.credits_posted.checked_add(amount).ok_or(TransferError::Overflow)?;
        }
        let debits_total = u128::from(debit_balances.debits_posted) + u128::from(debit_balances.debits_pending);
        let credits_total = u128::from(credit_balances.credits_posted) + u128::from(credit_balances.credits_pending);
        if debits_total > u128::from(u64::MAX) || credits_total > u128::from(u64::MAX) {
            return Err(TransferError::Overflow);
        }
        if debit.account.flags.contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS) {
            let credits_posted = u128::from(debit_balances.credits_posted);
            if debits_total > credits_posted + u128::from(debit.account.credit_limit) {
                return Err(if debit.account.credit_limit == 0 {
                    TransferError::InsufficientFunds
                } else {
                    TransferError::CreditLimitExceeded
                });
            }
        }
        if credit.account.flags.contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
            && credits_total > u128::from(credit_balances.debits_posted)
        {
            return Err(TransferError::CreditsExceedDebits);
        }
        // Velocity, at the timestamp this transfer will get. Counted for every account,
        // so that limits set during the day count the day's earlier debits.
        let timestamp = next_timestamp(self.last_timestamp, clock);
        let velocity = debit.velocity.debit(&debit.account.debit_limits, timestamp, amount)?;

        // Every check passed: mutate.
        if in_chain {
            self.undo.push(Undo::Account(transfer.debit_account, debit.balances, debit.links, debit.velocity));
            self.undo.push(Undo::Account(transfer.credit_account, credit.balances, credit.links, credit.velocity));
        }
        debit.balances = debit_balances;
        debit.velocity = velocity;
        credit.balances = credit_balances;
        let debit_previous_seq = debit.links.link(seq);
        let credit_previous_seq = credit.links.link(seq);
        let debit_participant = debit.account.participant;
        let credit_participant = credit.account.participant;

        let timestamp = self.timestamp(clock);
        self.insert_transfer(&transfer, transfer_entry(seq, timestamp, window, fingerprint), in_chain);
        if pending {
            let expires_at = if transfer.timeout_s == 0 {
                0
            } else {
                timestamp.saturating_add(u64::from(transfer.timeout_s) * NANOS_PER_SECOND)
            };
            let hold = Hold {
                debit: transfer.debit_account,
                credit: transfer.credit_account,
                amount,
                currency: transfer.currency,
                expires_at,
                status: HoldStatus::Pending,
            };
            self.holds.insert(transfer.id, hold);
            if in_chain {
                self.undo.push(Undo::HoldInserted(transfer.id));
            }
            if expires_at != 0 {
                self.expiries.insert((expires_at, transfer.id));
                if in_chain {
                    self.undo.push(Undo::ExpiryInserted(expires_at, transfer.id));
                }
            }
        } else {
            self.move_positions(debit_participant, credit_participant, transfer.currency, amount, in_chain);
        }
        records.push(TransferRecord {
            transfer,
            timestamp,
            window,
            debit_previous_seq,
            credit_previous_seq,
            digest: 0,
        });
        Ok(TransferOk { timestamp, window, created: true })
    }

    /// Posts or voids a hold.
    fn apply_resolve(
        &mut self,
        transfer: Transfer,
        fingerprint: u64,
        clock: Clock,
        in_chain: bool,
        records: &mut Vec<TransferRecord>,
    ) -> Result<TransferOk, TransferError> {
        let post = transfer.flags.contains(TransferFlags::POST_PENDING);
        let Some(hold) = self.holds.get(&transfer.pending_id).copied() else {
            // The hold left memory with its id: the cold index says how it ended.
            return Err(match self.lookup(transfer.pending_id).map(|entry| entry.answer) {
                Some(INDEX_HOLD_POSTED) => TransferError::PendingAlreadyPosted,
                Some(INDEX_HOLD_VOIDED) => TransferError::PendingAlreadyVoided,
                Some(INDEX_HOLD_EXPIRED) => TransferError::PendingExpired,
                Some(_) => TransferError::PendingTransferNotPending,
                None => TransferError::PendingTransferNotFound,
            });
        };
        match hold.status {
            HoldStatus::Pending => {}
            HoldStatus::Posted => return Err(TransferError::PendingAlreadyPosted),
            HoldStatus::Voided => return Err(TransferError::PendingAlreadyVoided),
            HoldStatus::Expired => return Err(TransferError::PendingExpired),
        }
        // `resolve` filled zero accounts and amount from the hold.
        if transfer.debit_account != hold.debit
            || transfer.credit_account != hold.credit
            || transfer.currency != hold.currency
        {
            return Err(TransferError::PendingTransferMismatch);
        }
        if transfer.amount > hold.amount {
            return Err(TransferError::PendingAmountExceeded);
        }
        if !post && transfer.amount != hold.amount {
            // A void releases the whole hold; naming another amount is a mistake.
            return Err(TransferError::PendingTransferMismatch);
        }
        let seq = self.next_seq;
        let window = self.window;
        let [debit, credit] = self.accounts.get_disjoint_mut([&hold.debit, &hold.credit]);
        let debit = debit.expect("a hold's debit account exists");
        let credit = credit.expect("a hold's credit account exists");
        let mut debit_balances = debit.balances;
        let mut credit_balances = credit.balances;
        debit_balances.debits_pending -= hold.amount;
        credit_balances.credits_pending -= hold.amount;
        if post {
            debit_balances.debits_posted =
                debit_balances.debits_posted.checked_add(transfer.amount).ok_or(TransferError::Overflow)?;
            credit_balances.credits_posted =
                credit_balances.credits_posted.checked_add(transfer.amount).ok_or(TransferError::Overflow)?;
        }
        if in_chain {
            self.undo.push(Undo::Account(hold.debit, debit.balances, debit.links, debit.velocity));
            self.undo.push(Undo::Account(hold.credit, credit.balances, credit.links, credit.velocity));
        }
        debit.balances = debit_balances;
        credit.balances = credit_balances;
        let debit_previous_seq = debit.links.link(seq);
        let credit_previous_seq = credit.links.link(seq);
        let debit_participant = debit.account.participant;
        let credit_participant = credit.account.participant;

        let timestamp = self.timestamp(clock);
        self.insert_transfer(&transfer, transfer_entry(seq, timestamp, window, fingerprint), in_chain);
        if let Some(stored) = self.holds.get_mut(&transfer.pending_id) {
            stored.status = if post { HoldStatus::Posted } else { HoldStatus::Voided };
        }
        if !self.transfers.contains_key(&transfer.pending_id) {
            self.resolved_cold.push(transfer.pending_id);
        }
        if in_chain {
            self.undo.push(Undo::HoldStatus(transfer.pending_id, HoldStatus::Pending));
        }
        if hold.expires_at != 0 && self.expiries.remove(&(hold.expires_at, transfer.pending_id)) && in_chain {
            self.undo.push(Undo::ExpiryRemoved(hold.expires_at, transfer.pending_id));
        }
        if post {
            self.move_positions(debit_participant, credit_participant, transfer.currency, transfer.amount, in_chain);
        }
        records.push(TransferRecord {
            transfer,
            timestamp,
            window,
            debit_previous_seq,
            credit_previous_seq,
            digest: 0,
        });
        Ok(TransferOk { timestamp, window, created: true })
    }

    fn insert_transfer(&mut self, transfer: &Transfer, entry: TransferIndexEntry, in_chain: bool) {
        self.transfers.insert(transfer.id, entry);
        if in_chain {
            self.undo.push(Undo::TransferInserted(transfer.id));
        }
    }

    fn move_positions(
        &mut self,
        debtor: ParticipantId,
        creditor: ParticipantId,
        currency: Currency,
        amount: u64,
        in_chain: bool,
    ) {
        if debtor == creditor {
            return; // an on-us transfer moves no position
        }
        for (participant, debit_side) in [(debtor, true), (creditor, false)] {
            let key = (participant, currency);
            let position = self.positions.entry(key).or_default();
            if in_chain {
                let previous =
                    if position.debit_count == 0 && position.credit_count == 0 { None } else { Some(*position) };
                self.undo.push(Undo::Position(key, previous));
            }
            if debit_side {
                position.debits += u128::from(amount);
                position.debit_count += 1;
            } else {
                position.credits += u128::from(amount);
                position.credit_count += 1;
            }
        }
    }
}

/// A command's outcome from its transfers' results: committed (the first transfer's
/// timestamp and reference) or the first real failure (not "another link failed").
fn group_outcome(results: &[Result<TransferOk, TransferError>], transfers: &[Transfer]) -> CommandOutcome {
    let mut failure = None;
    for result in results {
        if let Err(error) = result {
            if failure.is_none() || failure == Some(TransferError::LinkedEventFailed) {
                failure = Some(*error);
            }
        }
    }
    match (failure, results.first(), transfers.first()) {
        (Some(error), _, _) => CommandOutcome::Failed(error),
        (None, Some(Ok(ok)), Some(transfer)) => {
            CommandOutcome::Committed { timestamp: ok.timestamp, reference: transfer.id.folded() }
        }
        // A command with no transfers and no refusal: nothing to do, nothing failed.
        _ => CommandOutcome::Failed(TransferError::AmountMustNotBeZero),
    }
}

/// The timestamp the next transfer gets: the clock, forced past the last one (live), or
/// the journal's (replay).
fn next_timestamp(last_timestamp: u64, clock: Clock) -> u64 {
    match clock {
        Clock::Live(now) => now.max(last_timestamp + 1),
        Clock::Replay(timestamp) => timestamp,
    }
}

fn transfer_entry(seq: u64, timestamp: u64, window: WindowId, fingerprint: u64) -> TransferIndexEntry {
    TransferIndexEntry { seq, timestamp, window, fingerprint, digest: 0, answer: INDEX_TRANSFER }
}

/// A 64-bit digest of a resolved transfer's content, for telling an idempotent retry from
/// a conflicting reuse of an id. Stable across restarts (no random seed). A multiply-mix
/// over the fields' words with a final avalanche: fast on the hot path, and a collision
/// could only make a conflicting reuse look like a retry, which moves no money.
pub(crate) fn fingerprint(transfer: &Transfer) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let words = [
        transfer.debit_account.0 as u64,
        (transfer.debit_account.0 >> 64) as u64,
        transfer.credit_account.0 as u64,
        (transfer.credit_account.0 >> 64) as u64,
        transfer.amount,
        transfer.pending_id.0 as u64,
        (transfer.pending_id.0 >> 64) as u64,
        u64::from(transfer.currency.numeric())
            | u64::from(transfer.code) << 16
            | u64::from(transfer.flags.0) << 32
            | u64::from(transfer.currency.exponent()) << 48,
        u64::from(transfer.timeout_s),
        transfer.user_data_128 as u64,
        (transfer.user_data_128 >> 64) as u64,
        transfer.user_data_64,
    ];
    let mut hash = 0x6a75_6e63_7469_6f6e_u64;
    for word in words {
        hash = (hash ^ word).wrapping_mul(K).rotate_left(29);
    }
    // murmur3's fmix64
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}
