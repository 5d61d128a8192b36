//! HOT PATH: the authorization loop, one thread per shard.
//!
//! A shard owns the authorization state of a disjoint slice of accounts (shard = hash of
//! the account): status, the holds it placed, and its slices of participants'
//! net-debit-cap headroom. It drains its bounded queue in bursts, applies the rules in the
//! order of `codes.rs`, and hands every request it decides to the commit stage as one
//! batch per burst: what it approves as ledger transfers, what it declines as a refusal.
//! Both are ledger commands keyed by the request key, so the ledger journals the answer
//! with the batch and gives a resend the original answer, whatever the rules would say
//! now. Funds and velocity are checked by the ledger at commit, where every account's
//! balance and daily counters live. Only "try again" answers (91) and balance inquiries,
//! which move nothing, are answered here directly.
//!
//! Nothing here is shared with another shard: no locks but the cap pool's, taken once
//! per headroom slice. No logging above debug. Allocation is per burst, not per request.
//!
//! A declined request is handed back by value in `Err((Request, DeclineReason))`, so a
//! decline costs no allocation; clippy's `result_large_err` is allowed for that reason.
#![allow(clippy::result_large_err)]

use crate::books::{
    participant_account, participant_of_account, TRANSFER_CODE_AUTHORIZATION, TRANSFER_CODE_COMPLETION,
    TRANSFER_CODE_CREDIT_TRANSFER, TRANSFER_CODE_FX_LEG, TRANSFER_CODE_GUARANTEE, TRANSFER_CODE_HOSTED_AUTHORIZATION,
    TRANSFER_CODE_HOSTED_COMPLETION, TRANSFER_CODE_HOSTED_PURCHASE, TRANSFER_CODE_HOSTED_REFUND,
    TRANSFER_CODE_INTERCHANGE, TRANSFER_CODE_PURCHASE, TRANSFER_CODE_QR_PAYMENT, TRANSFER_CODE_REFUND,
    TRANSFER_CODE_REVERSAL, TRANSFER_CODE_STAND_IN_AUTHORIZATION, TRANSFER_CODE_STAND_IN_PURCHASE,
    TRANSFER_CODE_STAND_IN_REFUND, TRANSFER_CODE_SWITCH_FEE, TRANSFER_CODE_TAX_REFUND,
};
use crate::clock;
use crate::codes::DeclineReason;
use crate::detail::{rrn_of_reference, Channel, Detail, Text};
use crate::faults::{Faults, Stage};
use crate::fees::{Charges, Direction, FeeSchedule};
use crate::headroom::{CapPool, LocalHeadroom};
use crate::hosted::{forwarded_reference, refusal_of_issuer_code, HostedBooking, HostedDecision, HostedKind};
use crate::messages::{
    CommitBatch, Feedback, HeldReservation, HoldFeedback, Pending, ShardMessage, ShardQueues, SHARD_BURST_MAX,
};
use crate::model::{
    auth_code, issuer_reference, AccountStatus, FxLeg, Instrument, Operation, PanKey, Request, RequestKey, Response,
};
use crate::routing::StandInLimits;
use crate::stats::EngineStats;
use crate::vault::{is_expired, CardEntry};
use arc_swap::ArcSwap;
use crossbeam::channel::{Receiver, Sender};
use junction_ledger::memory::BigMap;
use junction_ledger::{
    AccountId, Charge, CommandOutcome, Currency, DetailRecord, Ledger, ParticipantId, Transfer, TransferFlags,
    TransferId,
};
use rustc_hash::FxHashMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

/// Requests whose lookups `Shard::warm` issues together (see the ledger's own `warm`).
const WARM_GROUP: usize = 32;

/// Open holds a shard tracks to give their cap reservation back on expiry (about 64
/// bytes each). Beyond it, new authorizations are declined as overloaded.
pub const HOLDS_PER_SHARD_MAX: usize = 4 << 20;

/// How long an authorization hold lasts before the ledger releases it by itself.
pub const AUTH_HOLD_TIMEOUT_S: u32 = 7 * 24 * 3600;

/// Stand-in approvals are counted per card over a rolling day of `STAND_IN_BUCKETS`
/// buckets of `STAND_IN_BUCKET_S`.
pub const STAND_IN_BUCKET_S: u64 = 3 * 3600;
pub const STAND_IN_BUCKETS: usize = 8;
const _: () = assert!(STAND_IN_BUCKET_S * STAND_IN_BUCKETS as u64 == 24 * 3600);

/// Cards a shard counts stand-in approvals for (about 120 bytes each). Counters start
/// empty after a restart: stand-in is the exception, and its limits are a ceiling on a
/// day's risk, not a ledger of it.
pub const STAND_IN_CARDS_PER_SHARD_MAX: usize = 1 << 20;

/// A card's stand-in approvals in each bucket of the rolling day.
#[derive(Debug, Clone, Copy, Default)]
struct StandInDay {
    newest_bucket: u64,
    counts: [u32; STAND_IN_BUCKETS],
    amounts: [u64; STAND_IN_BUCKETS],
}

impl StandInDay {
    fn advance(&mut self, bucket: u64) {
        if bucket <= self.newest_bucket {
            return;
        }
        let steps = (bucket - self.newest_bucket).min(STAND_IN_BUCKETS as u64);
        for step in 1..=steps {
            let slot = ((self.newest_bucket + step) % STAND_IN_BUCKETS as u64) as usize;
            self.counts[slot] = 0;
            self.amounts[slot] = 0;
        }
        self.newest_bucket = bucket;
    }

    fn totals(&self) -> (u64, u64) {
        let count = self.counts.iter().map(|c| u64::from(*c)).sum();
        let amount = self.amounts.iter().fold(0u64, |sum, a| sum.saturating_add(*a));
        (count, amount)
    }

    fn add(&mut self, bucket: u64, amount: u64) {
        let slot = (bucket % STAND_IN_BUCKETS as u64) as usize;
        self.counts[slot] = self.counts[slot].saturating_add(1);
        self.amounts[slot] = self.amounts[slot].saturating_add(amount);
    }
}

/// Largest amount a single request may carry, in minor units (amount sanity, code 13).
pub const AMOUNT_PER_REQUEST_MAX: u64 = 1_000_000_000_000;

struct AuthAccount {
    participant: ParticipantId,
    currency: Currency,
    status: AccountStatus,
}

/// The participants the operator has suspended (`Engine::set_suspended`).
pub type Suspended = rustc_hash::FxHashSet<ParticipantId>;

/// What the admin side changes while traffic flows, each swapped whole (`ArcSwap`).
#[derive(Default, Clone)]
pub(crate) struct SharedRules {
    /// The fee schedule in force (`fees.rs`), read on every payment.
    pub fees: Arc<ArcSwap<FeeSchedule>>,
    /// Suspended participants, read once per burst.
    pub suspended: Arc<ArcSwap<Suspended>>,
}

pub(crate) struct Shard {
    pub index: usize,
    pub input: Receiver<ShardMessage>,
    pub feedback: Receiver<Feedback>,
    pub commit: Sender<CommitBatch>,
    pub ledger: Arc<Ledger>,
    pub caps: Arc<CapPool>,
    pub stats: Arc<EngineStats>,
    faults: Arc<Faults>,
    /// What the admin side changes while traffic flows.
    rules: SharedRules,
    /// The suspended participants as of this burst (read once per burst).
    suspended: Arc<Suspended>,
    accounts: BigMap<AccountId, AuthAccount>,
    /// Stand-in approvals per card of hosted issuers (cards of a shard: routed by card).
    stand_in: FxHashMap<PanKey, StandInDay>,
    holds: FxHashMap<RequestKey, HeldReservation>,
    hold_expiries: BTreeSet<(u64, RequestKey)>,
    headroom: LocalHeadroom,
}

/// The time facts the rules need, read once per burst.
#[derive(Clone, Copy)]
struct Now {
    unix_s: u64,
    yymm: u16,
}

impl Shard {
    pub fn new(
        index: usize,
        queues: ShardQueues,
        ledger: Arc<Ledger>,
        caps: Arc<CapPool>,
        stats: Arc<EngineStats>,
        faults: Arc<Faults>,
        rules: SharedRules,
    ) -> Shard {
        let ShardQueues { input, feedback, commit } = queues;
        Shard {
            index,
            input,
            feedback,
            commit,
            ledger,
            caps,
            stats,
            faults,
            suspended: rules.suspended.load_full(),
            rules,
            accounts: BigMap::default(),
            holds: FxHashMap::default(),
            hold_expiries: BTreeSet::new(),
            headroom: LocalHeadroom::default(),
            stand_in: FxHashMap::default(),
        }
    }

    pub fn run(mut self) {
        // A burst is taken off the queue first, so that its lookups can be warmed a group
        // at a time (see `warm`) before each request is handled.
        let mut burst: Vec<Option<ShardMessage>> = Vec::with_capacity(SHARD_BURST_MAX);
        while let Ok(first) = self.input.recv() {
            self.faults.check(Stage::Shard);
            let unix_s = clock::now_unix_s();
            let now = Now { unix_s, yymm: clock::yymm(unix_s) };
            self.absorb_feedback();
            self.expire_holds(now.unix_s);
            self.suspended = self.rules.suspended.load_full();
            burst.push(Some(first));
            while burst.len() < SHARD_BURST_MAX {
                let Ok(message) = self.input.try_recv() else { break };
                burst.push(Some(message));
            }
            let mut batch = CommitBatch::new(self.index);
            for index in 0..burst.len() {
                if index % WARM_GROUP == 0 {
                    self.warm(&burst[index..(index + WARM_GROUP).min(burst.len())]);
                }
                if let Some(message) = burst[index].take() {
                    self.handle(message, now, &mut batch);
                }
            }
            burst.clear();
            if batch.traced {
                let sealed = Instant::now();
                for pending in &mut batch.pending {
                    if let Some(stages) = pending.request.trace.stages() {
                        stages.sealed = Some(sealed);
                    }
                }
            }
            if !batch.pending.is_empty() && self.commit.send(batch).is_err() {
                break; // the commit stage has stopped: the engine is shutting down
            }
        }
        self.headroom.flush(&self.caps);
    }

    /// Looks up the accounts of the next requests before they
    /// are handled, so that the cache misses of a group overlap instead of stalling one
    /// after another: with millions of accounts per shard, each lookup misses the cache.
    /// Changes nothing.
    fn warm(&self, group: &[Option<ShardMessage>]) {
        for message in group {
            if let Some(ShardMessage::Request { request, card }) = message {
                let account = match (request.instrument, card) {
                    (Instrument::Account(id), _) => id,
                    (_, Some(card)) => card.account,
                    (_, None) => continue,
                };
                std::hint::black_box(self.accounts.get(&account).map(|a| a.status));
            }
        }
    }

    fn absorb_feedback(&mut self) {
        while let Ok(feedback) = self.feedback.try_recv() {
            let key = feedback.hold;
            let forget = match feedback.hold_action {
                HoldFeedback::Forget => true,
                // Rare (a resent authorization): a look at the ledger is affordable.
                HoldFeedback::Recheck => !self.ledger.is_pending(TransferId(key.0)),
            };
            if forget {
                if let Some(hold) = self.holds.remove(&key) {
                    self.hold_expiries.remove(&(hold.expires_at_s, key));
                }
            }
        }
    }

    /// Gives back the cap reservation of holds the ledger has released by timeout.
    ///
    /// Only for holds the ledger actually has: an authorization that never committed had
    /// its reservation returned by the completion stage already, and giving it back here
    /// too would hand out the same headroom twice (the unsafe side). Its hold is normally
    /// forgotten through the feedback, which is never dropped; this check keeps the books
    /// right even if a hold were left behind. One ledger look-up per expired hold.
    fn expire_holds(&mut self, now_s: u64) {
        while let Some(&(at, key)) = self.hold_expiries.first() {
            if at > now_s {
                break;
            }
            self.hold_expiries.pop_first();
            if let Some(hold) = self.holds.remove(&key) {
                if self.ledger.contains_transfer(TransferId(key.0)) {
                    self.caps.give_back(hold.cap, i128::from(hold.amount));
                }
            }
        }
    }

    fn handle(&mut self, message: ShardMessage, now: Now, batch: &mut CommitBatch) {
        match message {
            ShardMessage::Request { mut request, card } => {
                if request.trace.is_traced() {
                    request.trace.stamp(|stages| &mut stages.shard);
                    batch.traced = true;
                }
                if let Err((request, reason)) = self.authorize(request, card, now, batch) {
                    self.refuse(request, reason, batch);
                }
            }
            ShardMessage::AddAccounts(specs) => {
                for spec in specs {
                    self.accounts.insert(
                        spec.id,
                        AuthAccount { participant: spec.participant, currency: spec.currency, status: spec.status },
                    );
                }
            }
            ShardMessage::ReserveAccounts(additional) => self.accounts.reserve(additional),
            ShardMessage::SetStatus(id, status) => {
                if let Some(account) = self.accounts.get_mut(&id) {
                    account.status = status;
                }
            }
            ShardMessage::RestoreHolds(holds) => {
                for (key, hold) in holds {
                    self.holds.insert(key, hold);
                    self.hold_expiries.insert((hold.expires_at_s, key));
                }
            }
            ShardMessage::Barrier(done) => {
                let _ = done.send(());
            }
            ShardMessage::Pause(paused) => {
                // Rendezvous channel: the first send tells `pause` we stopped; the second
                // blocks until the guard is dropped (then it fails and we go on).
                let _ = paused.send(());
                let _ = paused.send(());
            }
        }
    }

    /// Declines a request. A final decline goes to the ledger as a refusal, journaled with
    /// the batch and answered once durable, so that a resend gets it again (or the original
    /// answer, if the key was answered before). "Try again" (91, 96) is answered at once and
    /// remembered nowhere, and so is a balance inquiry, which moves nothing.
    fn refuse(&mut self, request: Request, reason: DeclineReason, batch: &mut CommitBatch) {
        let remembered = !matches!(
            reason,
            DeclineReason::Overloaded | DeclineReason::LedgerUnavailable | DeclineReason::SystemError
        ) && request.operation != Operation::BalanceInquiry;
        if remembered {
            batch.refuse(request, reason);
        } else {
            self.stats.record(self.index, reason.code(), Some(reason));
            request.reply.send(Response::declined(request.tag, request.key, reason));
        }
    }

    /// The rules, in the order of the table in `codes.rs`. Ok: the request went to the
    /// commit batch or was answered; Err: decline it with this reason.
    fn authorize(
        &mut self,
        mut request: Request,
        card: Option<CardEntry>,
        now: Now,
        batch: &mut CommitBatch,
    ) -> Result<(), (Request, DeclineReason)> {
        // 1. A resend of a request answered before is the ledger's to answer (the command's
        // key): whatever the rules say now, it gets the original answer.
        if let Operation::Payment { payee, fx } = request.operation {
            return self.payment(request, payee, fx, batch);
        }
        if let Operation::Hosted(booking) = request.operation {
            return self.hosted(request, booking, now, batch);
        }
        // 2. Unknown card, token or account.
        let account_id = match (request.instrument, card) {
            (Instrument::Account(id), _) => id,
            (_, Some(card)) => card.account,
            (_, None) => return Err((request, DeclineReason::UnknownCard)),
        };
        let Some(account) = self.accounts.get_mut(&account_id) else {
            return Err((request, DeclineReason::UnknownCard));
        };
        request.detail.issuer = account.participant.0;
        let follow_up = matches!(request.operation, Operation::Complete { .. } | Operation::Reverse { .. });
        // A suspended acquirer or issuer: nothing new; what was approved still completes
        // or reverses, so its positions settle.
        if !follow_up
            && !self.suspended.is_empty()
            && (self.suspended.contains(&request.acquirer) || self.suspended.contains(&account.participant))
        {
            return Err((request, DeclineReason::ParticipantSuspended));
        }
        // 3. Device token: its state, its own expiry and its domain. (The directory knows
        // whether a number is a token; the gateway need not.) A tax refund pays into the
        // token's account: no use of the token at a terminal, so no domain to keep it to.
        if let Some(card) = card.filter(|_| !follow_up) {
            let paid_in = matches!(request.operation, Operation::TaxRefund { .. });
            if let Some(reason) = card.token_refusal(request.entry_mode, now.yymm, paid_in) {
                return Err((request, reason));
            }
        }
        // 4. Account status. Reversals and completions of what was approved still go through.
        match account.status {
            AccountStatus::Active => {}
            _ if follow_up => {}
            AccountStatus::Blocked => return Err((request, DeclineReason::AccountBlocked)),
            AccountStatus::Closed => return Err((request, DeclineReason::AccountClosed)),
        }
        // 5. Card expiry, and the expiry the terminal read must be the card's.
        if let Some(CardEntry { token: None, expiry_yymm, .. }) = card {
            if !follow_up
                && (is_expired(expiry_yymm, now.yymm)
                    || request.card_expiry_yymm.is_some_and(|read| read != expiry_yymm))
            {
                return Err((request, DeclineReason::CardExpired));
            }
        }
        // A tax refund pays into the card in the card's currency: its own amount rules.
        if let Operation::TaxRefund { fx, guarantee_timeout_s } = request.operation {
            let (issuer, currency) = (account.participant, account.currency);
            return self.tax_refund(request, account_id, (issuer, currency), fx, guarantee_timeout_s, now, batch);
        }
        // 6. Amount sanity.
        if request.currency != account.currency {
            return Err((request, DeclineReason::CurrencyMismatch));
        }
        let needs_amount = !matches!(
            request.operation,
            Operation::BalanceInquiry | Operation::Reverse { .. } | Operation::Complete { .. }
        );
        if request.amount > AMOUNT_PER_REQUEST_MAX || (needs_amount && request.amount == 0) {
            return Err((request, DeclineReason::InvalidAmount));
        }
        let participant = account.participant;
        let currency = account.currency;
        match request.operation {
            Operation::BalanceInquiry => {
                let available = self.ledger.account(account_id).map_or(0, |view| view.balances.available());
                let response = Response {
                    balance: Some((available, currency)),
                    ..Response::approved(request.tag, request.key, TransferId(request.key.0).folded(), None)
                };
                self.stats.record(self.index, response.code, None);
                request.reply.send(response);
                Ok(())
            }
            Operation::Authorize | Operation::Purchase => {
                // 7. Velocity over the rolling day is the ledger's, with funds (9).
                let hold = request.operation == Operation::Authorize;
                if hold && self.holds.len() >= HOLDS_PER_SHARD_MAX {
                    return Err((request, DeclineReason::Overloaded));
                }
                // 8. The issuer participant's net debit cap (funds, 9, are the ledger's).
                let cap = (participant, currency);
                // Past the cap, a resend of a committed request still gets its original answer:
                // the ledger answers the refusal with it.
                if !self.headroom.reserve(&self.caps, cap, request.amount) {
                    return Err((request, DeclineReason::NetDebitCapExceeded));
                }
                let mut transfer = Transfer::new(
                    request.key.0,
                    account_id.0,
                    participant_account(request.acquirer, currency).0,
                    request.amount,
                    currency,
                );
                transfer.user_data_128 = request.reference;
                if hold {
                    transfer.flags = TransferFlags::PENDING;
                    transfer.timeout_s = AUTH_HOLD_TIMEOUT_S;
                    transfer.code = TRANSFER_CODE_AUTHORIZATION;
                    let expires_at_s = now.unix_s + u64::from(AUTH_HOLD_TIMEOUT_S);
                    let rrn = request.detail.rrn;
                    self.holds.insert(request.key, HeldReservation { cap, amount: request.amount, expires_at_s, rrn });
                    self.hold_expiries.insert((expires_at_s, request.key));
                } else {
                    transfer.code = TRANSFER_CODE_PURCHASE;
                }
                let creditor = (!hold && request.acquirer != participant).then_some((request.acquirer, currency));
                // A hold pays its fees when it is completed.
                let charges = if hold {
                    Charges::default()
                } else {
                    self.card_fees(&mut request, participant, currency, transfer.amount, Direction::Pay)
                };
                batch.push_charged(
                    &[transfer],
                    Pending {
                        request,
                        reserved: [Some((cap, transfer.amount)), None],
                        credit: [creditor.map(|key| (key, transfer.amount)), None],
                        release_on_success: None,
                        hold: hold.then_some(RequestKey(transfer.id.0)),
                        stood_in: false,
                    },
                    0,
                    &charges,
                );
                Ok(())
            }
            Operation::Complete { original } => {
                let mut transfer = Transfer::new(request.key.0, 0, 0, request.amount, currency);
                transfer.flags = TransferFlags::POST_PENDING;
                transfer.pending_id = TransferId(original.0);
                transfer.code = TRANSFER_CODE_COMPLETION;
                transfer.user_data_128 = request.reference;
                // The hold's reservation becomes the posting; what is not posted goes back.
                let held = self.holds.remove(&original);
                if let Some(hold) = held {
                    self.hold_expiries.remove(&(hold.expires_at_s, original));
                }
                request.detail.original_rrn = self.original_rrn(held, TransferId(original.0));
                let posted = if request.amount == 0 { held.map_or(0, |h| h.amount) } else { request.amount };
                let release = held.map(|h| (h.cap, h.amount.saturating_sub(posted)));
                let creditor = (request.acquirer != participant).then_some(((request.acquirer, currency), posted));
                let charges = self.card_fees(&mut request, participant, currency, posted, Direction::Pay);
                batch.push_charged(
                    &[transfer],
                    Pending {
                        request,
                        reserved: [None, None],
                        credit: [creditor, None],
                        release_on_success: release,
                        hold: None,
                        stood_in: false,
                    },
                    0,
                    &charges,
                );
                Ok(())
            }
            Operation::Reverse { original } => {
                self.reverse(request, account_id, participant, currency, original, batch)
            }
            // Handled before the account rules.
            Operation::Payment { .. } | Operation::Hosted(_) | Operation::TaxRefund { .. } => {
                Err((request, DeclineReason::SystemError))
            }
            Operation::Refund => {
                // The acquirer pays the cardholder back: its cap is the one reserved.
                let cap = (request.acquirer, currency);
                if !self.headroom.reserve(&self.caps, cap, request.amount) {
                    return Err((request, DeclineReason::NetDebitCapExceeded));
                }
                let mut transfer = Transfer::new(
                    request.key.0,
                    participant_account(request.acquirer, currency).0,
                    account_id.0,
                    request.amount,
                    currency,
                );
                transfer.code = TRANSFER_CODE_REFUND;
                transfer.user_data_128 = request.reference;
                let creditor = (request.acquirer != participant).then_some(((participant, currency), transfer.amount));
                let charges = self.card_fees(&mut request, participant, currency, transfer.amount, Direction::Refund);
                batch.push_charged(
                    &[transfer],
                    Pending {
                        request,
                        reserved: [Some((cap, transfer.amount)), None],
                        credit: [creditor, None],
                        release_on_success: None,
                        hold: None,
                        stood_in: false,
                    },
                    0,
                    &charges,
                );
                Ok(())
            }
        }
    }

    /// A payment between participants' positions (QR): cap, then one or two linked legs.
    fn payment(
        &mut self,
        mut request: Request,
        payee: AccountId,
        fx: Option<FxLeg>,
        batch: &mut CommitBatch,
    ) -> Result<(), (Request, DeclineReason)> {
        let Instrument::Account(payer_account) = request.instrument else {
            return Err((request, DeclineReason::UnknownCard));
        };
        let (Some(payer), Some(payee_participant)) =
            (participant_of_account(payer_account), participant_of_account(payee))
        else {
            return Err((request, DeclineReason::UnknownCard));
        };
        let credit_amount = fx.map_or(request.amount, |leg| leg.credit_amount);
        let credit_currency = fx.map_or(request.currency, |leg| leg.credit_currency);
        if request.amount == 0
            || request.amount > AMOUNT_PER_REQUEST_MAX
            || credit_amount == 0
            || credit_amount > AMOUNT_PER_REQUEST_MAX
        {
            return Err((request, DeclineReason::InvalidAmount));
        }
        if !self.suspended.is_empty()
            && (self.suspended.contains(&payer)
                || self.suspended.contains(&payee_participant)
                || fx.is_some_and(|leg| self.suspended.contains(&leg.provider)))
        {
            return Err((request, DeclineReason::ParticipantSuspended));
        }
        // A resend of a committed payment gets its original answer from the ledger,
        // whatever the caps say now (a refusal with a known key is answered with it).
        let cap = (payer, request.currency);
        if !self.headroom.reserve(&self.caps, cap, request.amount) {
            return Err((request, DeclineReason::NetDebitCapExceeded));
        }
        // The FX provider pays the payee: its cap in the payee's currency is reserved too.
        let provider_cap = fx.map(|leg| ((leg.provider, leg.credit_currency), leg.credit_amount));
        if let Some((key, amount)) = provider_cap {
            if !self.headroom.reserve(&self.caps, key, amount) {
                self.headroom.unreserve(cap, request.amount);
                return Err((request, DeclineReason::NetDebitCapExceeded));
            }
        }
        let mut first = Transfer::new(request.key.0, payer_account.0, payee.0, request.amount, request.currency);
        let credit_transfer = matches!(request.detail.channel, Channel::CreditTransfer | Channel::TaxRefund);
        first.code = match request.detail.channel {
            Channel::CreditTransfer => TRANSFER_CODE_CREDIT_TRANSFER,
            Channel::TaxRefund => TRANSFER_CODE_TAX_REFUND,
            _ => TRANSFER_CODE_QR_PAYMENT,
        };
        first.user_data_128 = request.reference;
        let mut legs = [first, first];
        let count = match fx {
            None => 1,
            Some(leg) => {
                legs[0].credit_account = participant_account(leg.provider, request.currency);
                legs[0].code = TRANSFER_CODE_FX_LEG;
                let mut second = Transfer::new(
                    RequestKey::derive_from(request.key, "fx-leg").0,
                    participant_account(leg.provider, leg.credit_currency).0,
                    payee.0,
                    leg.credit_amount,
                    leg.credit_currency,
                );
                second.code = TRANSFER_CODE_FX_LEG;
                second.user_data_128 = request.reference;
                legs[1] = second;
                2
            }
        };
        // Who gains headroom once it commits: the payee, and the FX provider in the
        // payer's currency.
        let credit = match fx {
            None => {
                [(payee_participant != payer).then_some(((payee_participant, credit_currency), credit_amount)), None]
            }
            Some(leg) => [
                (payee_participant != leg.provider).then_some(((payee_participant, credit_currency), credit_amount)),
                (payer != leg.provider).then_some(((leg.provider, request.currency), request.amount)),
            ],
        };
        let reserved = [Some((cap, first.amount)), provider_cap];
        // A QR refund (it names the payment it refunds) books no fees: they were the
        // payment's. Credit transfers between payment systems and tax refunds carry no card
        // or QR fees.
        let charges = if request.detail.original_rrn.is_empty() && !credit_transfer {
            let charges = self.rules.fees.load().qr_charges(
                (payer, request.currency, request.amount),
                (payee_participant, credit_currency, credit_amount),
            );
            self.note_fees(&mut request.detail, &charges, participant_account(payee_participant, credit_currency));
            charges
        } else {
            Charges::default()
        };
        batch.push_charged(
            &legs[..count],
            Pending { request, reserved, credit, release_on_success: None, hold: None, stood_in: false },
            0,
            &charges,
        );
        Ok(())
    }

    /// A tax refund to a card (`Operation::TaxRefund`): the agent's payment into the card's
    /// account, and the guarantee hold on the same account, as one linked group.
    ///
    /// Headroom: the agent's cap (and the FX provider's in the card's currency) are
    /// reserved like a payment's. The issuer's gain from the refund is not given to it:
    /// the guarantee holds it, as an authorization's reservation would, and it comes back
    /// to the issuer when the hold is released (or expires); a capture turns it into the
    /// clawback. So the issuer is never worse off than before the refund.
    #[allow(clippy::too_many_arguments)]
    fn tax_refund(
        &mut self,
        request: Request,
        account_id: AccountId,
        card: (ParticipantId, Currency),
        fx: Option<FxLeg>,
        guarantee_timeout_s: u32,
        now: Now,
        batch: &mut CommitBatch,
    ) -> Result<(), (Request, DeclineReason)> {
        let (issuer, card_currency) = card;
        let credit_amount = fx.map_or(request.amount, |leg| leg.credit_amount);
        let credit_currency = fx.map_or(request.currency, |leg| leg.credit_currency);
        if credit_currency != card_currency {
            return Err((request, DeclineReason::CurrencyMismatch));
        }
        if request.amount == 0
            || request.amount > AMOUNT_PER_REQUEST_MAX
            || credit_amount == 0
            || credit_amount > AMOUNT_PER_REQUEST_MAX
            || guarantee_timeout_s == 0
        {
            return Err((request, DeclineReason::InvalidAmount));
        }
        if self.holds.len() >= HOLDS_PER_SHARD_MAX {
            return Err((request, DeclineReason::Overloaded));
        }
        if fx.is_some_and(|leg| self.suspended.contains(&leg.provider)) {
            return Err((request, DeclineReason::ParticipantSuspended));
        }
        let agent = (request.acquirer, request.currency);
        if !self.headroom.reserve(&self.caps, agent, request.amount) {
            return Err((request, DeclineReason::NetDebitCapExceeded));
        }
        let provider_cap = fx.map(|leg| ((leg.provider, card_currency), credit_amount));
        if let Some((key, amount)) = provider_cap {
            if !self.headroom.reserve(&self.caps, key, amount) {
                self.headroom.unreserve(agent, request.amount);
                return Err((request, DeclineReason::NetDebitCapExceeded));
            }
        }
        let card_account = account_id.0;
        let mut legs = [Transfer::new(request.key.0, 0, card_account, credit_amount, card_currency); 3];
        let count = match fx {
            None => {
                legs[0].debit_account = participant_account(request.acquirer, request.currency);
                1
            }
            Some(leg) => {
                legs[0] = Transfer::new(
                    request.key.0,
                    participant_account(request.acquirer, request.currency).0,
                    participant_account(leg.provider, request.currency).0,
                    request.amount,
                    request.currency,
                );
                legs[1] = Transfer::new(
                    RequestKey::derive_from(request.key, "fx-leg").0,
                    participant_account(leg.provider, card_currency).0,
                    card_account,
                    credit_amount,
                    card_currency,
                );
                2
            }
        };
        for leg in &mut legs[..count] {
            leg.code = TRANSFER_CODE_TAX_REFUND;
            leg.user_data_128 = request.reference;
        }
        let hold_key = RequestKey::derive_from(request.key, "guarantee");
        let mut hold = Transfer::new(
            hold_key.0,
            card_account,
            participant_account(request.acquirer, card_currency).0,
            credit_amount,
            card_currency,
        );
        hold.flags = TransferFlags::PENDING;
        hold.timeout_s = guarantee_timeout_s;
        hold.code = TRANSFER_CODE_GUARANTEE;
        hold.user_data_128 = request.reference;
        legs[count] = hold;
        let expires_at_s = now.unix_s + u64::from(guarantee_timeout_s);
        let held = HeldReservation {
            cap: (issuer, card_currency),
            amount: credit_amount,
            expires_at_s,
            rrn: request.detail.rrn,
        };
        self.holds.insert(hold_key, held);
        self.hold_expiries.insert((expires_at_s, hold_key));
        // The FX provider gains in the agent's currency; the issuer's gain is the hold's.
        let credit = [
            fx.and_then(|leg| {
                (leg.provider != request.acquirer).then_some(((leg.provider, request.currency), request.amount))
            }),
            None,
        ];
        let reserved = [Some((agent, request.amount)), provider_cap];
        batch.push(
            &legs[..count + 1],
            Pending { request, reserved, credit, release_on_success: None, hold: Some(hold_key), stood_in: false },
        );
        Ok(())
    }

    /// Books what an issuer's host answered (or what the switch decides standing in for
    /// it): the obligation between the issuer's and the acquirer's position accounts, or a
    /// refusal with the issuer's own code. See `hosted.rs`.
    fn hosted(
        &mut self,
        mut request: Request,
        booking: HostedBooking,
        now: Now,
        batch: &mut CommitBatch,
    ) -> Result<(), (Request, DeclineReason)> {
        let currency = request.currency;
        request.detail.issuer = booking.issuer.0;
        let payer = if booking.kind.issuer_pays() { booking.issuer } else { request.acquirer };
        let reserved = [(booking.reserved > 0).then_some(((payer, currency), booking.reserved)), None];
        let mut stood_in = false;
        let auth_code = match booking.decision {
            HostedDecision::Approved { auth_code } => Some(auth_code),
            HostedDecision::Book => None,
            HostedDecision::Declined { code } => {
                batch.refuse_with_code(request, refusal_of_issuer_code(code), reserved);
                return Ok(());
            }
            HostedDecision::Refused { reason } => {
                batch.refuse_with_code(request, reason.id(), reserved);
                return Ok(());
            }
            HostedDecision::StandIn { limits } => {
                stood_in = true;
                request.detail.stood_in = true;
                // Completing or reversing what was approved is never refused for limits.
                let limited =
                    matches!(booking.kind, HostedKind::Purchase | HostedKind::Refund | HostedKind::Authorization);
                if let Err(reason) = if limited { self.stand_in(&request, &limits, now) } else { Ok(()) } {
                    batch.refuse_with_code(request, reason.id(), reserved);
                    if let Some(last) = batch.pending.last_mut() {
                        last.stood_in = true;
                    }
                    return Ok(());
                }
                // The switch's own code, derived from the request key: a resend gets it again.
                Some(auth_code(TransferId(request.key.0).folded()))
            }
        };
        let issuer = participant_account(booking.issuer, currency);
        let acquirer = participant_account(request.acquirer, currency);
        let id = RequestKey::derive_from(request.key, "obligation").0;
        let code = |hosted: u16, standing_in: u16| if stood_in { standing_in } else { hosted };
        // A reversal of a booked obligation: what its original request paid in fees.
        let mut original_detail = None;
        let (mut transfer, credit, release_on_success, hold) = match booking.kind {
            HostedKind::Purchase => {
                let mut transfer = Transfer::new(id, issuer.0, acquirer.0, request.amount, currency);
                transfer.code = code(TRANSFER_CODE_HOSTED_PURCHASE, TRANSFER_CODE_STAND_IN_PURCHASE);
                (transfer, Some(((request.acquirer, currency), request.amount)), None, None)
            }
            HostedKind::Refund => {
                let mut transfer = Transfer::new(id, acquirer.0, issuer.0, request.amount, currency);
                transfer.code = code(TRANSFER_CODE_HOSTED_REFUND, TRANSFER_CODE_STAND_IN_REFUND);
                (transfer, Some(((booking.issuer, currency), request.amount)), None, None)
            }
            HostedKind::Authorization => {
                if self.holds.len() >= HOLDS_PER_SHARD_MAX {
                    return Err((request, DeclineReason::Overloaded));
                }
                let mut transfer = Transfer::new(id, issuer.0, acquirer.0, request.amount, currency);
                transfer.flags = TransferFlags::PENDING;
                transfer.timeout_s = AUTH_HOLD_TIMEOUT_S;
                transfer.code = code(TRANSFER_CODE_HOSTED_AUTHORIZATION, TRANSFER_CODE_STAND_IN_AUTHORIZATION);
                let expires_at_s = now.unix_s + u64::from(AUTH_HOLD_TIMEOUT_S);
                let cap = (booking.issuer, currency);
                let rrn = request.detail.rrn;
                self.holds.insert(request.key, HeldReservation { cap, amount: request.amount, expires_at_s, rrn });
                self.hold_expiries.insert((expires_at_s, request.key));
                (transfer, None, None, Some(request.key))
            }
            HostedKind::Completion { original } => {
                let mut transfer = Transfer::new(id, 0, 0, request.amount, currency);
                transfer.flags = TransferFlags::POST_PENDING;
                transfer.pending_id = TransferId(RequestKey::derive_from(original, "obligation").0);
                transfer.code = TRANSFER_CODE_HOSTED_COMPLETION;
                let held = self.holds.remove(&original);
                if let Some(hold) = held {
                    self.hold_expiries.remove(&(hold.expires_at_s, original));
                }
                request.detail.original_rrn = self.original_rrn(held, transfer.pending_id);
                let posted = if request.amount == 0 { held.map_or(0, |h| h.amount) } else { request.amount };
                let release = held.map(|h| (h.cap, h.amount.saturating_sub(posted)));
                (transfer, Some(((request.acquirer, currency), posted)), release, None)
            }
            HostedKind::Reversal { original } => {
                let obligation = TransferId(RequestKey::derive_from(original, "obligation").0);
                let held = self.holds.remove(&original);
                if let Some(hold) = held {
                    self.hold_expiries.remove(&(hold.expires_at_s, original));
                }
                if held.is_some() || self.ledger.is_pending(obligation) {
                    request.detail.original_rrn = self.original_rrn(held, obligation);
                    let mut void = Transfer::new(RequestKey::derive_from(original, "void").0, 0, 0, 0, currency);
                    void.flags = TransferFlags::VOID_PENDING;
                    void.pending_id = obligation;
                    void.code = TRANSFER_CODE_REVERSAL;
                    (void, None, held.map(|h| (h.cap, h.amount)), None)
                } else {
                    // The obligation and the original request's detail are in one entry.
                    let (record, detail) = match self.ledger.transfer_with_detail(obligation, TransferId(original.0)) {
                        Ok(Some((record, detail))) => (record.transfer, detail),
                        Ok(None) => return Err((request, DeclineReason::OriginalNotFound)),
                        Err(_) => return Err((request, DeclineReason::LedgerUnavailable)),
                    };
                    original_detail = detail;
                    request.detail.original_rrn = rrn_of_reference(record.user_data_128);
                    let mut reversal = Transfer::new(
                        RequestKey::derive_from(original, "reversal").0,
                        record.credit_account.0,
                        record.debit_account.0,
                        record.amount,
                        record.currency,
                    );
                    reversal.code = TRANSFER_CODE_REVERSAL;
                    let payee = participant_of_account(reversal.credit_account).unwrap_or(booking.issuer);
                    (reversal, Some(((payee, currency), record.amount)), None, None)
                }
            }
        };
        transfer.user_data_128 = request.reference;
        if matches!(booking.kind, HostedKind::Purchase | HostedKind::Refund | HostedKind::Authorization) {
            transfer.user_data_64 = forwarded_reference(booking.forwarded_stan);
        }
        let charges = match booking.kind {
            HostedKind::Purchase | HostedKind::Completion { .. } if transfer.amount > 0 || request.amount > 0 => {
                let amount = if transfer.amount > 0 { transfer.amount } else { request.amount };
                self.card_fees(&mut request, booking.issuer, currency, amount, Direction::Pay)
            }
            HostedKind::Refund => {
                self.card_fees(&mut request, booking.issuer, currency, transfer.amount, Direction::Refund)
            }
            HostedKind::Reversal { .. } => self.reversal_fees(&mut request, currency, original_detail),
            _ => Charges::default(),
        };
        let reference = auth_code.map_or(0, issuer_reference);
        let pending = Pending { request, reserved, credit: [credit, None], release_on_success, hold, stood_in };
        batch.push_charged(&[transfer], pending, reference, &charges);
        Ok(())
    }

    /// A card payment's fees under the schedule in force, noted in its detail; the
    /// charges it books if it commits.
    fn card_fees(
        &self,
        request: &mut Request,
        issuer: ParticipantId,
        currency: Currency,
        amount: u64,
        direction: Direction,
    ) -> Charges {
        // A tax refund's guarantee is not a purchase: its capture pays no interchange.
        if request.detail.channel == Channel::TaxRefund {
            return Charges::default();
        }
        let schedule = self.rules.fees.load();
        let fees = schedule.card(request.acquirer, issuer, request.detail.mcc.as_str(), amount);
        let charges = schedule.card_charges(fees, request.acquirer, issuer, currency, direction);
        self.note_fees(&mut request.detail, &charges, participant_account(request.acquirer, currency));
        charges
    }

    /// What a reversal gives back: exactly the charges its original booked, as the
    /// original's journaled detail says them (read with the original's transfer; none
    /// when it booked none, or when there is no detail: a reversal is never refused for
    /// its fees).
    fn reversal_fees(&self, request: &mut Request, currency: Currency, original: Option<DetailRecord>) -> Charges {
        let Some(detail) = original else { return Charges::default() };
        let Ok(paid) = Detail::from_memo(&detail.memo) else { return Charges::default() };
        if !matches!(detail.outcome(), Some(CommandOutcome::Committed { .. })) {
            return Charges::default();
        }
        let acquirer = ParticipantId(paid.acquirer);
        let issuer = ParticipantId(paid.issuer);
        let schedule = self.rules.fees.load();
        // The original's own amounts, turned around: what flowed one way flows back.
        let mut charges = Charges::default();
        let switch = schedule.switch_participant.unwrap_or(ParticipantId(0));
        let legs = [
            (acquirer, issuer, paid.interchange, TRANSFER_CODE_INTERCHANGE),
            (acquirer, switch, paid.acquirer_fee, TRANSFER_CODE_SWITCH_FEE),
            (issuer, switch, paid.payer_fee, TRANSFER_CODE_SWITCH_FEE),
        ];
        for (from, to, amount, code) in legs {
            if amount == 0 || from == to || from.0 == 0 || to.0 == 0 {
                continue;
            }
            // `amount` > 0 flowed from -> to: it comes back to -> from; < 0 the other way.
            let (debit, credit) = if amount > 0 { (to, from) } else { (from, to) };
            charges.push(Charge {
                debit: participant_account(debit, currency),
                credit: participant_account(credit, currency),
                currency,
                amount: amount.unsigned_abs(),
                code,
            });
        }
        request.detail.interchange = -paid.interchange;
        request.detail.acquirer_fee = -paid.acquirer_fee;
        request.detail.payer_fee = -paid.payer_fee;
        charges
    }

    /// Writes a payment's charges into its detail, signed from the acquirer's side
    /// (`acquirer_account`): interchange it pays (+) or receives back (-), its own fee,
    /// and the other side's fee (the issuer's or the wallet's).
    fn note_fees(&self, detail: &mut Detail, charges: &Charges, acquirer_account: AccountId) {
        let (mut interchange, mut acquirer_fee, mut payer_fee) = (0i64, 0i64, 0i64);
        let switch = self.rules.fees.load().switch_participant;
        for charge in charges.iter() {
            let amount = i64::try_from(charge.amount).unwrap_or(i64::MAX);
            if charge.code == TRANSFER_CODE_INTERCHANGE {
                interchange += if charge.debit == acquirer_account { amount } else { -amount };
            } else if charge.debit == acquirer_account {
                acquirer_fee += amount;
            } else if charge.credit == acquirer_account {
                acquirer_fee -= amount;
            } else if participant_of_account(charge.debit) == switch {
                payer_fee -= amount;
            } else {
                payer_fee += amount;
            }
        }
        (detail.interchange, detail.acquirer_fee, detail.payer_fee) = (interchange, acquirer_fee, payer_fee);
    }

    /// The RRN of the authorization a completion or void resolves: kept with its hold, or
    /// (a hold restored at start) read from the hold's transfer in the ledger.
    fn original_rrn(&self, held: Option<HeldReservation>, hold_id: TransferId) -> Text<12> {
        match held {
            Some(hold) if !hold.rrn.is_empty() => hold.rrn,
            _ => match self.ledger.transfer(hold_id) {
                Ok(Some(record)) => rrn_of_reference(record.transfer.user_data_128),
                _ => Text::default(),
            },
        }
    }

    /// The stand-in limits of a card's route, against the card's stand-in approvals of the
    /// rolling day; counts this one if it fits.
    fn stand_in(&mut self, request: &Request, limits: &StandInLimits, now: Now) -> Result<(), DeclineReason> {
        if limits.amount_per_transaction_max != 0 && request.amount > limits.amount_per_transaction_max {
            return Err(DeclineReason::StandInLimitExceeded);
        }
        let Instrument::Card(card) = request.instrument else { return Err(DeclineReason::UnknownCard) };
        let bucket = now.unix_s / STAND_IN_BUCKET_S;
        if self.stand_in.len() >= STAND_IN_CARDS_PER_SHARD_MAX {
            // Forget the cards with nothing in the rolling day; past that, the safe side.
            self.stand_in.retain(|_, day| day.newest_bucket + STAND_IN_BUCKETS as u64 > bucket);
            if self.stand_in.len() >= STAND_IN_CARDS_PER_SHARD_MAX {
                return Err(DeclineReason::StandInLimitExceeded);
            }
        }
        let day = self.stand_in.entry(card).or_default();
        day.advance(bucket);
        let (count, amount) = day.totals();
        if limits.count_per_card_per_day_max != 0 && count >= u64::from(limits.count_per_card_per_day_max) {
            return Err(DeclineReason::StandInLimitExceeded);
        }
        if limits.amount_per_card_per_day_max != 0
            && amount.saturating_add(request.amount) > limits.amount_per_card_per_day_max
        {
            return Err(DeclineReason::StandInLimitExceeded);
        }
        day.add(bucket, request.amount);
        Ok(())
    }

    /// Voids a hold, or moves a posted transfer's amount back. Either way the ledger id is
    /// derived from the original, so two reversals of one original move money once.
    fn reverse(
        &mut self,
        mut request: Request,
        account_id: AccountId,
        participant: ParticipantId,
        currency: Currency,
        original: RequestKey,
        batch: &mut CommitBatch,
    ) -> Result<(), (Request, DeclineReason)> {
        let held = self.holds.get(&original).copied();
        let void_id = RequestKey::derive_from(original, "void").0;
        // A hold still open, or one this very reversal voided already (a resend gets the
        // original answer from the ledger).
        if held.is_some()
            || self.ledger.is_pending(TransferId(original.0))
            || self.ledger.contains_transfer(TransferId(void_id))
        {
            let mut void = Transfer::new(void_id, 0, 0, 0, currency);
            void.flags = TransferFlags::VOID_PENDING;
            void.pending_id = TransferId(original.0);
            void.code = TRANSFER_CODE_REVERSAL;
            // The original's key, not this message's references: every reversal message
            // of one original must be the same ledger transfer, so it moves money once.
            void.user_data_128 = original.0;
            if let Some(hold) = held {
                self.holds.remove(&original);
                self.hold_expiries.remove(&(hold.expires_at_s, original));
            }
            request.detail.original_rrn = self.original_rrn(held, TransferId(original.0));
            batch.push(
                &[void],
                Pending {
                    request,
                    reserved: [None, None],
                    credit: [None, None],
                    release_on_success: held.map(|h| (h.cap, h.amount)),
                    hold: None,
                    stood_in: false,
                },
            );
            return Ok(());
        }
        // The original's transfer and its detail (what fees it paid), in one journal read.
        let (record, original_detail) =
            match self.ledger.transfer_with_detail(TransferId(original.0), TransferId(original.0)) {
                Ok(Some(found)) => found,
                Ok(None) => return Err((request, DeclineReason::OriginalNotFound)),
                Err(_) => return Err((request, DeclineReason::LedgerUnavailable)),
            };
        let original_transfer = record.transfer;
        request.detail.original_rrn = rrn_of_reference(original_transfer.user_data_128);
        if original_transfer.flags.contains(TransferFlags::PENDING)
            || (original_transfer.debit_account != account_id && original_transfer.credit_account != account_id)
        {
            // A hold that is no longer pending, or someone else's transfer.
            return Err((request, DeclineReason::OriginalAlreadyFinal));
        }
        let mut reversal = Transfer::new(
            RequestKey::derive_from(original, "reversal").0,
            original_transfer.credit_account.0,
            original_transfer.debit_account.0,
            original_transfer.amount,
            original_transfer.currency,
        );
        reversal.code = TRANSFER_CODE_REVERSAL;
        reversal.user_data_128 = original.0;
        // Whoever is paid back gains headroom once it commits.
        let payee = participant_of_account(reversal.credit_account).unwrap_or(participant);
        let payer = participant_of_account(reversal.debit_account).unwrap_or(participant);
        let credit = (payee != payer).then_some(((payee, currency), reversal.amount));
        let charges = self.reversal_fees(&mut request, original_transfer.currency, original_detail);
        batch.push_charged(
            &[reversal],
            Pending {
                request,
                reserved: [None, None],
                credit: [credit, None],
                release_on_success: None,
                hold: None,
                stood_in: false,
            },
            0,
            &charges,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam::channel::bounded;
    use junction_ledger::{
        Account, AccountFlags, AccountKind, LedgerOptions, TransferFlags as Flags, BATCH_TRANSFERS_MAX,
    };

    const ISSUER: ParticipantId = ParticipantId(1);
    const CARDHOLDER: AccountId = AccountId(1001);

    fn usd() -> Currency {
        Currency::from_code("USD").unwrap()
    }

    /// A shard on a real ledger with a funded cardholder account, and the issuer's cap.
    fn shard(dir: &std::path::Path) -> (Shard, Arc<CapPool>) {
        let ledger = Arc::new(Ledger::open(dir, LedgerOptions::default()).unwrap());
        let issuer = participant_account(ISSUER, usd());
        let account = |id: AccountId, kind, flags| Account {
            id,
            participant: ISSUER,
            currency: usd(),
            kind,
            flags,
            credit_limit: 0,
            debit_limits: junction_ledger::DebitLimits::NONE,
            user_data: 0,
        };
        ledger
            .create_accounts(&[
                account(issuer, AccountKind::Position, AccountFlags::NONE),
                account(CARDHOLDER, AccountKind::Cardholder, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
            ])
            .unwrap();
        assert!(ledger.commit(&[Transfer::new(9, issuer.0, CARDHOLDER.0, 10_000, usd())]).unwrap()[0].is_ok());
        let caps = Arc::new(CapPool::new());
        caps.set_cap((ISSUER, usd()), 1_000);
        let (_, input) = bounded(1);
        let (_, feedback) = bounded(1);
        let (commit, _) = bounded(BATCH_TRANSFERS_MAX);
        let stats = Arc::new(EngineStats::new(1));
        let queues = ShardQueues { input, feedback, commit };
        let shard = Shard::new(0, queues, ledger, Arc::clone(&caps), stats, Arc::default(), SharedRules::default());
        (shard, caps)
    }

    /// All the headroom there is: the pool's and what the shard holds as a slice.
    fn headroom(shard: &mut Shard, caps: &CapPool) -> i128 {
        shard.headroom.flush(caps);
        caps.available((ISSUER, usd())).unwrap()
    }

    fn hold(shard: &mut Shard, key: RequestKey, amount: u64, expires_at_s: u64) {
        assert!(shard.headroom.reserve(&shard.caps, (ISSUER, usd()), amount));
        shard
            .holds
            .insert(key, HeldReservation { cap: (ISSUER, usd()), amount, expires_at_s, rrn: Default::default() });
        shard.hold_expiries.insert((expires_at_s, key));
    }

    #[test]
    fn a_hold_whose_feedback_was_lost_does_not_give_its_cap_back_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (mut shard, caps) = shard(dir.path());
        // An authorization reserved 300 of the cap and placed a hold, but the ledger
        // refused it: the completion stage gave the 300 back, and the "forget this hold"
        // feedback never arrived.
        hold(&mut shard, RequestKey(77), 300, 100);
        caps.give_back((ISSUER, usd()), 300);
        assert_eq!(headroom(&mut shard, &caps), 1_000);
        // The hold's expiry must not hand the 300 out a second time.
        shard.expire_holds(200);
        assert!(shard.holds.is_empty());
        assert_eq!(headroom(&mut shard, &caps), 1_000, "the cap's headroom exceeds the cap");
    }

    #[test]
    fn an_expired_hold_the_ledger_has_gives_its_cap_back_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut shard, caps) = shard(dir.path());
        let key = RequestKey(78);
        hold(&mut shard, key, 300, 100);
        let mut authorization =
            Transfer::new(key.0, CARDHOLDER.0, participant_account(ParticipantId(3), usd()).0, 300, usd());
        authorization.flags = Flags::PENDING;
        authorization.timeout_s = 1;
        // The acquirer's position account, so that the hold can commit.
        let acquirer = Account {
            id: participant_account(ParticipantId(3), usd()),
            participant: ParticipantId(3),
            currency: usd(),
            kind: AccountKind::Position,
            flags: AccountFlags::NONE,
            credit_limit: 0,
            debit_limits: junction_ledger::DebitLimits::NONE,
            user_data: 0,
        };
        shard.ledger.create_accounts(&[acquirer]).unwrap();
        assert!(shard.ledger.commit(&[authorization]).unwrap()[0].is_ok());
        assert!(shard.ledger.contains_transfer(TransferId(key.0)));
        assert_eq!(headroom(&mut shard, &caps), 700);
        shard.expire_holds(200);
        assert_eq!(headroom(&mut shard, &caps), 1_000);
        shard.expire_holds(300);
        assert_eq!(headroom(&mut shard, &caps), 1_000);
    }
}
