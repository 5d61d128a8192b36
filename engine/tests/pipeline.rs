//! The pipeline end to end in process, on a real ledger: every rule and decline code, the
//! operations, idempotency, concurrency and backpressure.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use crossbeam::channel::{unbounded, Receiver, Sender};
use junction_engine::model::*;
use junction_engine::*;
use junction_ledger::*;
use std::sync::Arc;

const ISSUER: ParticipantId = ParticipantId(1);
const ACQUIRER: ParticipantId = ParticipantId(2);
const PAN: &str = "4000001234567899";
const EXPIRED_PAN: &str = "4000001234560001";
const DPAN: &str = "4895370000000013";
const OLD_DPAN: &str = "4895370000000021";
const ACCOUNT: AccountId = AccountId(1001);

fn usd() -> Currency {
    Currency::from_code("USD").unwrap()
}

struct Switch {
    dir: tempfile::TempDir,
    engine: Option<Engine>,
    replies: (Sender<Response>, Receiver<Response>),
    next: u64,
    shards: usize,
}

fn switch_with(shards: usize, queue: usize, cap: u64) -> Switch {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::open(dir.path(), LedgerOptions::default()).unwrap());
    let config = EngineConfig { shards, shard_queue_depth_max: queue, ..EngineConfig::default() };
    let engine = Engine::start(ledger, config).unwrap();
    engine
        .add_participant(ParticipantSpec {
            id: ISSUER,
            name: "Issuer".into(),
            role: Role::Issuer,
            net_debit_caps: vec![(usd(), cap)],
        })
        .unwrap();
    engine
        .add_participant(ParticipantSpec {
            id: ACQUIRER,
            name: "Acquirer".into(),
            role: Role::Acquirer,
            net_debit_caps: vec![(usd(), 1_000_000_000)],
        })
        .unwrap();
    engine
        .add_accounts(&[AccountSpec {
            id: ACCOUNT,
            participant: ISSUER,
            currency: usd(),
            opening_balance: 100_000,
            status: AccountStatus::Active,
            velocity: VelocityLimits::default(),
        }])
        .unwrap();
    engine
        .add_cards(&[
            CardSpec { pan: PAN.into(), account: ACCOUNT, expiry_yymm: 9912 },
            CardSpec { pan: EXPIRED_PAN.into(), account: ACCOUNT, expiry_yymm: 2001 },
        ])
        .unwrap();
    engine
        .add_tokens(&[
            TokenSpec {
                dpan: DPAN.into(),
                account: ACCOUNT,
                expiry_yymm: 9912,
                allowed_entry_modes: EntryModes::of(&[EntryMode::Contactless]),
                fpan: None,
            },
            TokenSpec {
                dpan: OLD_DPAN.into(),
                account: ACCOUNT,
                expiry_yymm: 2001,
                allowed_entry_modes: EntryModes::of(&[EntryMode::Contactless]),
                fpan: None,
            },
        ])
        .unwrap();
    engine.sync().unwrap();
    Switch { dir, engine: Some(engine), replies: unbounded(), next: 1, shards }
}

fn switch() -> Switch {
    switch_with(2, 1024, 10_000_000)
}

impl Switch {
    fn engine(&self) -> &Engine {
        self.engine.as_ref().unwrap()
    }

    /// Stops the engine and the ledger, and starts them again on the same data: what the
    /// switch knows after a restart is what the journal and the checkpoint hold.
    fn restart(&mut self) {
        drop(self.engine.take());
        let ledger = Arc::new(Ledger::open(self.dir.path(), LedgerOptions::default()).unwrap());
        let config = EngineConfig { shards: self.shards, ..EngineConfig::default() };
        self.engine = Some(Engine::start(ledger, config).unwrap());
        self.engine().sync().unwrap();
    }

    fn request(&mut self, operation: Operation, pan: &str, amount: u64) -> Request {
        self.next += 1;
        Request {
            key: RequestKey::derive("test", &[&self.next.to_be_bytes()]),
            operation,
            instrument: Instrument::Card(self.engine().pan_key(pan)),
            amount,
            currency: usd(),
            acquirer: ACQUIRER,
            entry_mode: EntryMode::Chip,
            card_expiry_yymm: None,
            reference: 0,
            detail: Default::default(),
            tag: self.next,
            reply: Arc::new(self.replies.0.clone()),
            trace: TraceSlot::default(),
        }
    }

    fn ask(&self, request: Request) -> Response {
        self.engine().submit(request);
        self.replies.1.recv().unwrap()
    }

    fn available(&self) -> i128 {
        self.engine().ledger().account(ACCOUNT).unwrap().balances.available()
    }
}

fn declined(response: Response, reason: DeclineReason, code: &str) {
    assert_eq!(response.decline, Some(reason), "{response:?}");
    assert_eq!(response.code.as_str(), code);
}

#[test]
fn purchase_duplicate_and_conflict() {
    let mut s = switch();
    let request = s.request(Operation::Purchase, PAN, 2_500);
    let first = s.ask(request.clone());
    assert_eq!(first.code, ResponseCode::Approved);
    assert!(first.auth_code.is_some());
    assert_eq!(s.available(), 97_500);
    // The same request again: the same answer, money moved once.
    let again = s.ask(request.clone());
    assert_eq!((again.code, again.auth_code, again.timestamp), (first.code, first.auth_code, first.timestamp));
    assert_eq!(s.available(), 97_500);
    // Same key, other content: 94.
    let mut conflicting = request;
    conflicting.amount = 2_600;
    declined(s.ask(conflicting), DeclineReason::DuplicateConflict, "94");
    assert_eq!(s.available(), 97_500);
}

#[test]
fn every_rule_has_its_code() {
    let mut s = switch();
    let r = s.request(Operation::Purchase, "4000009999999999", 100);
    declined(s.ask(r), DeclineReason::UnknownCard, "14");
    let mut r = s.request(Operation::Purchase, DPAN, 100);
    declined(s.ask(r.clone()), DeclineReason::TokenDomainViolation, "57");
    r.entry_mode = EntryMode::Contactless;
    r.key = RequestKey(r.key.0 + 1);
    assert_eq!(s.ask(r).code, ResponseCode::Approved);
    let mut r = s.request(Operation::Purchase, OLD_DPAN, 100);
    r.entry_mode = EntryMode::Contactless;
    declined(s.ask(r), DeclineReason::TokenExpired, "57");
    let r = s.request(Operation::Purchase, EXPIRED_PAN, 100);
    declined(s.ask(r), DeclineReason::CardExpired, "54");
    let mut r = s.request(Operation::Purchase, PAN, 100);
    r.card_expiry_yymm = Some(9911);
    declined(s.ask(r), DeclineReason::CardExpired, "54");
    let r = s.request(Operation::Purchase, PAN, 0);
    declined(s.ask(r), DeclineReason::InvalidAmount, "13");
    let r = s.request(Operation::Purchase, PAN, AMOUNT_PER_REQUEST_MAX + 1);
    declined(s.ask(r), DeclineReason::InvalidAmount, "13");
    let mut r = s.request(Operation::Purchase, PAN, 100);
    r.currency = Currency::from_code("EUR").unwrap();
    declined(s.ask(r), DeclineReason::CurrencyMismatch, "12");
    let r = s.request(Operation::Purchase, PAN, 1_000_000);
    declined(s.ask(r), DeclineReason::InsufficientFunds, "51");
    // A declined request resent gets the same decline.
    let r = s.request(Operation::Purchase, PAN, 0);
    let first = s.ask(r.clone());
    assert_eq!(s.ask(r).decline, first.decline);

    s.engine().set_velocity_limits(ACCOUNT, VelocityLimits { count_per_day_max: 3, amount_per_day_max: 0 }).unwrap();
    s.engine().sync().unwrap();
    let mut codes = Vec::new();
    for _ in 0..4 {
        let r = s.request(Operation::Purchase, PAN, 10);
        codes.push(s.ask(r).code.as_str().to_string());
    }
    // One approval (the token purchase) already counts today.
    assert_eq!(codes, vec!["00", "00", "65", "65"]);
    s.engine().set_velocity_limits(ACCOUNT, VelocityLimits { count_per_day_max: 0, amount_per_day_max: 150 }).unwrap();
    s.engine().sync().unwrap();
    let r = s.request(Operation::Purchase, PAN, 31);
    declined(s.ask(r), DeclineReason::VelocityAmountExceeded, "61");
    let r = s.request(Operation::Purchase, PAN, 30);
    assert_eq!(s.ask(r).code, ResponseCode::Approved);
    s.engine().set_velocity_limits(ACCOUNT, VelocityLimits::default()).unwrap();

    s.engine().set_account_status(ACCOUNT, AccountStatus::Blocked).unwrap();
    s.engine().sync().unwrap();
    let r = s.request(Operation::Purchase, PAN, 10);
    declined(s.ask(r), DeclineReason::AccountBlocked, "05");
    s.engine().set_account_status(ACCOUNT, AccountStatus::Closed).unwrap();
    s.engine().sync().unwrap();
    let r = s.request(Operation::Purchase, PAN, 10);
    declined(s.ask(r), DeclineReason::AccountClosed, "05");
}

#[test]
fn net_debit_cap_is_reported_distinctly() {
    let mut s = switch_with(2, 1024, 5_000);
    let first = s.request(Operation::Purchase, PAN, 4_000);
    let approved = s.ask(first.clone());
    assert_eq!(approved.code, ResponseCode::Approved);
    let r = s.request(Operation::Purchase, PAN, 2_000);
    declined(s.ask(r), DeclineReason::NetDebitCapExceeded, "05");
    // Near the cap, a resend of the approved purchase still gets its original answer.
    let again = s.ask(first);
    assert_eq!((again.code, again.auth_code), (ResponseCode::Approved, approved.auth_code));
    assert_eq!(s.available(), 96_000);
    // A refund credits the issuer and gives headroom back.
    let r = s.request(Operation::Refund, PAN, 3_000);
    assert_eq!(s.ask(r).code, ResponseCode::Approved);
    let r = s.request(Operation::Purchase, PAN, 2_000);
    assert_eq!(s.ask(r).code, ResponseCode::Approved);
    // Closing the window starts the cap afresh.
    s.engine().close_window().unwrap();
    let r = s.request(Operation::Purchase, PAN, 4_900);
    assert_eq!(s.ask(r).code, ResponseCode::Approved);
}

#[test]
fn hold_completion_reversal_refund_inquiry() {
    let mut s = switch();
    let auth = s.request(Operation::Authorize, PAN, 10_000);
    let auth_key = auth.key;
    assert_eq!(s.ask(auth).code, ResponseCode::Approved);
    assert_eq!(s.available(), 90_000);
    let complete = s.request(Operation::Complete { original: auth_key }, PAN, 7_000);
    assert_eq!(s.ask(complete.clone()).code, ResponseCode::Approved);
    assert_eq!(s.available(), 93_000, "the unposted 3000 of the hold is released");
    let mut twice = complete;
    twice.key = RequestKey(twice.key.0 ^ 1);
    declined(s.ask(twice), DeclineReason::OriginalAlreadyFinal, "12");

    let auth = s.request(Operation::Authorize, PAN, 5_000);
    let auth_key = auth.key;
    assert_eq!(s.ask(auth).code, ResponseCode::Approved);
    let reversal = s.request(Operation::Reverse { original: auth_key }, PAN, 0);
    assert_eq!(s.ask(reversal).code, ResponseCode::Approved);
    assert_eq!(s.available(), 93_000);
    // A second reversal message for the same original moves nothing.
    let reversal = s.request(Operation::Reverse { original: auth_key }, PAN, 0);
    let _ = s.ask(reversal);
    assert_eq!(s.available(), 93_000);

    let purchase = s.request(Operation::Purchase, PAN, 1_234);
    let purchase_key = purchase.key;
    assert_eq!(s.ask(purchase).code, ResponseCode::Approved);
    assert_eq!(s.available(), 93_000 - 1_234);
    for _ in 0..2 {
        let reversal = s.request(Operation::Reverse { original: purchase_key }, PAN, 0);
        assert_eq!(s.ask(reversal).code, ResponseCode::Approved);
        assert_eq!(s.available(), 93_000, "reversed once");
    }
    let unknown = s.request(Operation::Reverse { original: RequestKey(42) }, PAN, 0);
    declined(s.ask(unknown), DeclineReason::OriginalNotFound, "25");

    let refund = s.request(Operation::Refund, PAN, 500);
    assert_eq!(s.ask(refund).code, ResponseCode::Approved);
    let inquiry = s.request(Operation::BalanceInquiry, PAN, 0);
    let answer = s.ask(inquiry);
    assert_eq!(answer.balance, Some((93_500, usd())));
    // Positions: the issuer owes the acquirer what was posted minus what came back.
    let window = s.engine().ledger().window_positions(s.engine().ledger().current_window()).unwrap();
    assert_eq!(window.positions[&(ISSUER, usd())].net(), -(7_000 - 500));
    assert_eq!(window.positions[&(ACQUIRER, usd())].net(), 7_000 - 500);
}

#[test]
fn concurrent_purchases_never_overspend() {
    let s = switch_with(4, 65_536, u64::MAX / 4);
    let engine = s.engine();
    let approved: i128 = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                scope.spawn(move || {
                    let (tx, rx) = unbounded();
                    let sink: Arc<dyn ReplySink> = Arc::new(tx);
                    for i in 0..500u64 {
                        engine.submit(Request {
                            key: RequestKey::derive("race", &[&t.to_be_bytes(), &i.to_be_bytes()]),
                            operation: Operation::Purchase,
                            instrument: Instrument::Card(engine.pan_key(PAN)),
                            amount: 73,
                            currency: usd(),
                            acquirer: ACQUIRER,
                            entry_mode: EntryMode::Chip,
                            card_expiry_yymm: None,
                            reference: 0,
                            detail: Default::default(),
                            tag: i,
                            reply: Arc::clone(&sink),
                            trace: TraceSlot::default(),
                        });
                    }
                    (0..500).map(|_| rx.recv().unwrap()).filter(|r| r.code == ResponseCode::Approved).count() as i128
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    // 4000 * 73 = 292000 asked of 100000: exactly floor(100000 / 73) fit.
    assert_eq!(approved, 100_000 / 73);
    let balance = engine.ledger().account(ACCOUNT).unwrap().balances.available();
    assert_eq!(balance, 100_000 - approved * 73);
    assert!(balance >= 0);
}

#[test]
fn full_queue_declines_at_once_with_91() {
    let mut s = switch_with(1, 4, 10_000_000);
    let pause = s.engine().pause().unwrap();
    for _ in 0..10 {
        let r = s.request(Operation::Purchase, PAN, 1);
        s.engine().submit(r);
    }
    // With the shard stopped, 4 wait in its queue and 6 are refused at once.
    let refused: Vec<Response> = (0..6).map(|_| s.replies.1.recv().unwrap()).collect();
    assert!(refused.iter().all(|r| r.code.as_str() == "91" && r.decline == Some(DeclineReason::Overloaded)));
    assert!(s.replies.1.try_recv().is_err());
    drop(pause);
    let served: Vec<Response> = (0..4).map(|_| s.replies.1.recv().unwrap()).collect();
    assert!(served.iter().all(|r| r.code == ResponseCode::Approved));
    assert_eq!(s.engine().stats().by_reason().get("overloaded"), Some(&6));
}

#[test]
fn provisioning_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = Arc::new(Ledger::open(dir.path(), LedgerOptions::default()).unwrap());
        let engine = Engine::start(ledger, EngineConfig::default()).unwrap();
        engine
            .add_participant(ParticipantSpec {
                id: ISSUER,
                name: "Issuer".into(),
                role: Role::Issuer,
                net_debit_caps: vec![(usd(), 10_000)],
            })
            .unwrap();
        engine
            .add_participant(ParticipantSpec {
                id: ACQUIRER,
                name: "Acq".into(),
                role: Role::Acquirer,
                net_debit_caps: vec![(usd(), 10_000)],
            })
            .unwrap();
        engine
            .add_accounts(&[AccountSpec {
                id: ACCOUNT,
                participant: ISSUER,
                currency: usd(),
                opening_balance: 50_000,
                status: AccountStatus::Active,
                velocity: VelocityLimits::default(),
            }])
            .unwrap();
        engine.add_cards(&[CardSpec { pan: PAN.into(), account: ACCOUNT, expiry_yymm: 9912 }]).unwrap();
        let (tx, rx) = unbounded();
        engine.submit(purchase(&engine, 1, 6_000, Arc::new(tx.clone())));
        assert_eq!(rx.recv().unwrap().code, ResponseCode::Approved);
    }
    let ledger = Arc::new(Ledger::open(dir.path(), LedgerOptions::default()).unwrap());
    let engine = Engine::start(ledger, EngineConfig::default()).unwrap();
    let (tx, rx) = unbounded();
    // The card, the account and the cap (6000 of 10000 used this window) are known again.
    engine.submit(purchase(&engine, 2, 3_000, Arc::new(tx.clone())));
    assert_eq!(rx.recv().unwrap().code, ResponseCode::Approved);
    engine.submit(purchase(&engine, 3, 3_000, Arc::new(tx)));
    assert_eq!(rx.recv().unwrap().decline, Some(DeclineReason::NetDebitCapExceeded));
}

/// The same answer every time: a purchase declined for funds, the card then refunded, the
/// exact purchase resent: the original 51, nothing moves. Also after a restart.
#[test]
fn a_declined_purchase_resent_after_a_refund_gets_its_decline() {
    let mut s = switch();
    let drain = s.request(Operation::Purchase, PAN, 100_000);
    assert_eq!(s.ask(drain).code, ResponseCode::Approved);
    let purchase = s.request(Operation::Purchase, PAN, 5_000);
    declined(s.ask(purchase.clone()), DeclineReason::InsufficientFunds, "51");
    let refund = s.request(Operation::Refund, PAN, 10_000);
    assert_eq!(s.ask(refund).code, ResponseCode::Approved);
    assert_eq!(s.available(), 10_000);
    declined(s.ask(purchase.clone()), DeclineReason::InsufficientFunds, "51");
    assert_eq!(s.available(), 10_000, "the resend moved money");
    s.restart();
    declined(s.ask(purchase.clone()), DeclineReason::InsufficientFunds, "51");
    assert_eq!(s.available(), 10_000);
    // The same key with other content is still a conflict.
    let mut other = purchase;
    other.amount = 4_000;
    declined(s.ask(other), DeclineReason::DuplicateConflict, "94");
    assert_eq!(s.available(), 10_000);
}

/// A shard's own declines are final too: a card blocked, a purchase declined 05, the card
/// unblocked, the purchase resent: 05 again. And an approval resent after the card was
/// blocked is still approved, with the same authorization code.
#[test]
fn a_shards_decline_and_an_approval_resent_after_the_rules_changed_keep_their_answers() {
    let mut s = switch();
    let approved = s.request(Operation::Purchase, PAN, 1_000);
    let first = s.ask(approved.clone());
    assert_eq!(first.code, ResponseCode::Approved);
    s.engine().set_account_status(ACCOUNT, AccountStatus::Blocked).unwrap();
    s.engine().sync().unwrap();
    let blocked = s.request(Operation::Purchase, PAN, 1_000);
    declined(s.ask(blocked.clone()), DeclineReason::AccountBlocked, "05");
    let again = s.ask(approved.clone());
    assert_eq!((again.code, again.auth_code), (first.code, first.auth_code));
    s.engine().set_account_status(ACCOUNT, AccountStatus::Active).unwrap();
    s.engine().sync().unwrap();
    declined(s.ask(blocked.clone()), DeclineReason::AccountBlocked, "05");
    s.restart();
    declined(s.ask(blocked), DeclineReason::AccountBlocked, "05");
    let again = s.ask(approved);
    assert_eq!((again.code, again.auth_code), (first.code, first.auth_code));
    assert_eq!(s.available(), 99_000);
}

/// Velocity is the ledger's: a card at its daily count limit stays declined after a restart.
#[test]
fn a_card_at_its_daily_count_limit_stays_declined_after_a_restart() {
    let mut s = switch();
    s.engine().set_velocity_limits(ACCOUNT, VelocityLimits { count_per_day_max: 2, amount_per_day_max: 0 }).unwrap();
    for _ in 0..2 {
        let r = s.request(Operation::Purchase, PAN, 10);
        assert_eq!(s.ask(r).code, ResponseCode::Approved);
    }
    let third = s.request(Operation::Purchase, PAN, 10);
    declined(s.ask(third.clone()), DeclineReason::VelocityCountExceeded, "65");
    s.restart();
    let fourth = s.request(Operation::Purchase, PAN, 10);
    declined(s.ask(fourth), DeclineReason::VelocityCountExceeded, "65");
    declined(s.ask(third), DeclineReason::VelocityCountExceeded, "65");
    // Raising the limit lets the next one through; the declined ones stay declined.
    s.engine().set_velocity_limits(ACCOUNT, VelocityLimits { count_per_day_max: 3, amount_per_day_max: 0 }).unwrap();
    let fifth = s.request(Operation::Purchase, PAN, 10);
    assert_eq!(s.ask(fifth).code, ResponseCode::Approved);
}

/// The cap reservations of holds still open come back with a restart: a cap that open
/// holds fill is still full.
#[test]
fn a_cap_that_open_holds_fill_is_still_full_after_a_restart() {
    let mut s = switch_with(2, 1024, 10_000);
    let hold = s.request(Operation::Authorize, PAN, 6_000);
    assert_eq!(s.ask(hold.clone()).code, ResponseCode::Approved);
    let over = s.request(Operation::Authorize, PAN, 5_000);
    declined(s.ask(over), DeclineReason::NetDebitCapExceeded, "05");
    s.restart();
    assert_eq!(s.engine().cap_headroom(ISSUER, usd()).map(|h| h <= 4_000), Some(true));
    let over = s.request(Operation::Authorize, PAN, 5_000);
    declined(s.ask(over), DeclineReason::NetDebitCapExceeded, "05");
    // Completing the hold posts it within the cap; voiding the rest frees it.
    let complete = s.request(Operation::Complete { original: hold.key }, PAN, 6_000);
    assert_eq!(s.ask(complete).code, ResponseCode::Approved);
    let fits = s.request(Operation::Authorize, PAN, 4_000);
    assert_eq!(s.ask(fits).code, ResponseCode::Approved);
}

fn purchase(engine: &Engine, n: u64, amount: u64, reply: Arc<dyn ReplySink>) -> Request {
    Request {
        key: RequestKey::derive("restart", &[&n.to_be_bytes()]),
        operation: Operation::Purchase,
        instrument: Instrument::Card(engine.pan_key(PAN)),
        amount,
        currency: usd(),
        acquirer: ACQUIRER,
        entry_mode: EntryMode::Chip,
        card_expiry_yymm: None,
        reference: 0,
        detail: Default::default(),
        tag: n,
        reply,
        trace: TraceSlot::default(),
    }
}

mod model {
    //! Property test: random sequences of operations on one card, resends of earlier
    //! requests, restarts and window closes, against a model of what the account may
    //! spend. Every answer must be the model's, every resend's answer its original's, and
    //! the ledger's balance must be the model's after each step.
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        Purchase(u64),
        Authorize(u64),
        Complete { hold: usize, amount: u64 },
        Reverse(usize),
        Refund(u64),
        Resend(usize),
        Restart,
        CloseWindow,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (1u64..40_000).prop_map(Step::Purchase),
            3 => (1u64..40_000).prop_map(Step::Authorize),
            2 => (0usize..8, 0u64..40_000).prop_map(|(hold, amount)| Step::Complete { hold, amount }),
            2 => (0usize..16).prop_map(Step::Reverse),
            1 => (1u64..5_000).prop_map(Step::Refund),
            3 => (0usize..16).prop_map(Step::Resend),
            1 => Just(Step::Restart),
            1 => Just(Step::CloseWindow),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
        #[test]
        fn answers_and_balance_follow_the_model(steps in prop::collection::vec(step(), 1..40)) {
            let mut s = switch();
            // The model: what is available, the open holds, what each request answered.
            let mut available: i128 = 100_000;
            let mut holds: Vec<(RequestKey, u64, bool)> = Vec::new(); // key, amount, open
            let mut sent: Vec<(Request, Response)> = Vec::new(); // request, its first answer
            let mut posted: Vec<(RequestKey, u64, bool)> = Vec::new(); // approved purchases/completions: key, amount, reversed
            let mut voided: std::collections::HashSet<RequestKey> = std::collections::HashSet::new();
            for step in steps {
                match step {
                    Step::Purchase(amount) => {
                        let r = s.request(Operation::Purchase, PAN, amount);
                        let expected = if i128::from(amount) <= available { ResponseCode::Approved } else { ResponseCode::InsufficientFunds };
                        let answer = s.ask(r.clone());
                        prop_assert_eq!(answer.code, expected);
                        if expected == ResponseCode::Approved {
                            available -= i128::from(amount);
                            posted.push((r.key, amount, false));
                        }
                        sent.push((r, answer));
                    }
                    Step::Authorize(amount) => {
                        let r = s.request(Operation::Authorize, PAN, amount);
                        let expected = if i128::from(amount) <= available { ResponseCode::Approved } else { ResponseCode::InsufficientFunds };
                        let answer = s.ask(r.clone());
                        prop_assert_eq!(answer.code, expected);
                        if expected == ResponseCode::Approved {
                            available -= i128::from(amount);
                            holds.push((r.key, amount, true));
                        }
                        sent.push((r, answer));
                    }
                    Step::Complete { hold, amount } => {
                        let Some(&(key, held, open)) = holds.get(hold) else { continue };
                        let r = s.request(Operation::Complete { original: key }, PAN, amount);
                        let answer = s.ask(r.clone());
                        let post = if amount == 0 { held } else { amount };
                        if !open {
                            prop_assert_eq!(answer.code, ResponseCode::InvalidTransaction);
                        } else if post > held {
                            prop_assert_eq!(answer.code, ResponseCode::InvalidAmount);
                        } else {
                            prop_assert_eq!(answer.code, ResponseCode::Approved);
                            available += i128::from(held - post);
                            holds[hold].2 = false;
                            posted.push((r.key, post, false));
                        }
                        sent.push((r, answer));
                    }
                    Step::Reverse(index) => {
                        // Reverse an open hold (void) or an approved posting.
                        let target = if index % 2 == 0 {
                            holds.get(index / 2).map(|h| (h.0, h.1, h.2, true))
                        } else {
                            posted.get(index / 2).map(|p| (p.0, p.1, !p.2, false))
                        };
                        let Some((key, amount, open, is_hold)) = target else { continue };
                        let r = s.request(Operation::Reverse { original: key }, PAN, 0);
                        let answer = s.ask(r.clone());
                        if open {
                            prop_assert_eq!(answer.code, ResponseCode::Approved);
                            available += i128::from(amount);
                            if is_hold {
                                holds[index / 2].2 = false;
                                voided.insert(key);
                            } else {
                                posted[index / 2].2 = true
                            }
                        } else if is_hold && !voided.contains(&key) {
                            // A completed hold cannot be voided.
                            prop_assert_eq!(answer.code, ResponseCode::InvalidTransaction);
                        } else if is_hold {
                            // Voiding an already voided hold again: the same void, approved, moves nothing.
                            prop_assert_eq!(answer.code, ResponseCode::Approved);
                        } else {
                            // Reversing twice is the same ledger transfer: approved, moves nothing.
                            prop_assert_eq!(answer.code, ResponseCode::Approved);
                        }
                        sent.push((r, answer));
                    }
                    Step::Refund(amount) => {
                        let r = s.request(Operation::Refund, PAN, amount);
                        let answer = s.ask(r.clone());
                        prop_assert_eq!(answer.code, ResponseCode::Approved);
                        available += i128::from(amount);
                        sent.push((r, answer));
                    }
                    Step::Resend(index) => {
                        let Some((request, original)) = sent.get(index).cloned() else { continue };
                        // A resend gets the original answer (code and authorization code)
                        // and moves nothing, whatever changed since: declines included.
                        let answer = s.ask(request);
                        prop_assert_eq!((answer.code, answer.decline, answer.auth_code), (original.code, original.decline, original.auth_code));
                    }
                    Step::Restart => s.restart(),
                    Step::CloseWindow => {
                        s.engine().close_window().unwrap();
                    }
                }
                prop_assert_eq!(s.available(), available);
            }
        }
    }
}
