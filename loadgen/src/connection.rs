//! One ISO 8583 connection of loadgen: it signs on as the acquirer, then a writer task
//! sends requests when they are due and a reader task matches the answers.
//!
//! The writer builds every request that is due into one buffer and writes it with one
//! call. The reader splits all frames out of each read, checks their MACs, and matches
//! them by STAN and transmission time (field 11 and 7, echoed by the switch) to the
//! requests in flight: answers come back in any order. The two tasks share one mutex per
//! connection (in-flight table, pools, counters), each taking it once per batch; the
//! reporter takes it once a second.

use crate::message::{match_key, Builder, Financial, Stamp, STAN_MODULUS};
use crate::schedule::Schedule;
use crate::stats::{code_slot, move_money, new_histogram, Counters};
use crate::traffic::{currency_code, Dataset, Kind, Mix};
use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use junction_wire::iso8583::{mac, next_frame, Iso8583Message, MacKey};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

/// Requests one connection may have in flight. Past it the writer waits for answers (the
/// waiting still counts as latency, measured from the due time). The switch itself stops
/// reading a connection at 4,096 in flight, so this bound is rarely what stops us.
pub const IN_FLIGHT_PER_CONNECTION_MAX: usize = 65_536;

/// Requests built into one write. Bounds the write buffer (about 200 bytes a request).
pub const WRITE_BATCH_MAX: usize = 2048;

/// Bytes read per system call.
const READ_BUFFER_SIZE_BYTES: usize = 64 * 1024;

/// Approved authorizations kept per connection for later completions or reversals.
/// Beyond it the oldest is dropped and stays an open hold at the switch (moves nothing).
pub const HOLDS_POOL_MAX: usize = 4096;

/// Approved purchases kept per connection for later reversals.
pub const PURCHASES_POOL_MAX: usize = 4096;

/// Answered requests kept (with their bytes) per connection for deliberate duplicates.
pub const DUPLICATES_POOL_MAX: usize = 1024;

/// How often the reader looks for requests past their timeout.
const TIMEOUT_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Time allowed to connect and sign on.
pub const SIGN_ON_TIMEOUT: Duration = Duration::from_secs(10);

/// Share of reversals that void an open hold (0420) rather than reverse a purchase (0400).
const REVERSAL_OF_HOLD_SHARE: f64 = 0.3;

/// Merchant id (field 42) of the hot merchant.
pub const HOT_MERCHANT: &str = "HOTMERCHANT0001";

/// How requests are paced.
pub enum Pacing {
    /// Open loop: each request due at the schedule's time, sent then whatever the answers.
    Open(Schedule),
    /// Closed loop: each connection keeps this many requests in flight, for `duration`.
    Closed { window_per_connection: Vec<usize>, duration: Duration },
}

/// Everything the connections share, fixed for the run.
pub struct Plan {
    /// The switch's nodes: the first that takes a connection serves it; with several, a
    /// connection that fails moves on to the next (failover) and resends what is unanswered.
    pub targets: Vec<SocketAddr>,
    pub institution: String,
    pub key: MacKey,
    pub connections: u32,
    pub pacing: Pacing,
    pub timeout: Duration,
    pub dataset: Dataset,
    pub mix: Mix,
    /// The acquirer's participant id (to attribute money in positions).
    pub acquirer: u64,
    pub hot_merchant_share: f64,
    pub merchants: u32,
    /// Three characters that make this run's terminal ids (and so request keys) unique.
    pub nonce: String,
    pub seed: u64,
    /// Chance that a request's bytes are kept for a later deliberate duplicate: enough
    /// candidates for the duplicate share, without copying every request.
    pub keep_for_duplicate: f64,
    /// MTIs whose requests are never resent as deliberate duplicates (`--resend-exclude`).
    pub resend_excluded: Vec<String>,
    /// `--record`: where each final answer is written, as `junction clearing reconcile`
    /// reads a participant's records.
    pub record: Option<Arc<Record>>,
}

/// loadgen's own record of what it sent and was answered (`--record`): one row per
/// request the switch answered for good (not 91 or 96, not balance inquiries, not
/// deliberate duplicates: what the switch's transactions file holds once each).
pub struct Record {
    out: Mutex<std::io::BufWriter<std::fs::File>>,
}

/// Header of the record file.
pub const RECORD_HEADER: &str = "rrn,mti,currency,amount_minor,response_code,auth_code\n";

/// Bytes of rows a connection gathers before it writes them to the record file.
const RECORD_FLUSH_BYTES: usize = 256 << 10;

impl Record {
    pub fn create(path: &std::path::Path) -> Result<Record> {
        use std::io::Write;
        let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        out.write_all(RECORD_HEADER.as_bytes())?;
        Ok(Record { out: Mutex::new(out) })
    }

    fn write(&self, rows: &mut Vec<u8>) -> Result<()> {
        use std::io::Write;
        self.out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .write_all(rows)
            .context("writing the record file")?;
        rows.clear();
        Ok(())
    }

    /// Writes what is buffered and syncs the file.
    pub fn finish(&self) -> Result<()> {
        use std::io::Write;
        let mut out = self.out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        out.flush().context("writing the record file")?;
        out.get_ref().sync_all().context("syncing the record file")
    }
}

/// When the run started, monotonic and wall clock.
#[derive(Clone, Copy, Debug)]
pub struct Start {
    pub instant: Instant,
    pub unix_s: f64,
}

impl Start {
    pub fn elapsed_ns(&self) -> u64 {
        u64::try_from(self.instant.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// An approved original request that a completion, reversal or duplicate refers to.
#[derive(Clone, Copy, Debug)]
struct Original {
    card: u32,
    amount: u64,
    stan: u32,
    transmission: u64,
    hot: bool,
}

/// Money an approved request moves, as the switch books it.
#[derive(Clone, Copy, Debug)]
enum Money {
    None,
    /// Cardholder (issuer) pays the acquirer: purchase, completion.
    IssuerPays {
        card: u32,
        amount: u64,
    },
    /// The acquirer pays the cardholder (issuer): refund, reversal of a purchase.
    AcquirerPays {
        card: u32,
        amount: u64,
    },
}

/// What a duplicate must get: its original's answer.
#[derive(Clone, Copy, Debug)]
struct Expected {
    kind: Kind,
    mti: &'static str,
    code: [u8; 2],
    auth_code: Option<[u8; 6]>,
}

struct InFlight {
    due_ns: u64,
    kind: Kind,
    mti: &'static str,
    money: Money,
    /// For authorizations and purchases: what later requests need to name them.
    original: Option<Original>,
    duplicate_of: Option<Expected>,
    /// The framed bytes, kept for a later duplicate.
    raw: Option<Box<[u8]>>,
    /// The framed bytes, kept to resend after a failover (several targets only).
    frame: Option<Box<[u8]>>,
}

struct Answered {
    raw: Box<[u8]>,
    key: u64,
    expected: Expected,
}

/// State of one connection shared by its writer, its reader and the reporter.
pub struct State {
    in_flight: FxHashMap<u64, InFlight>,
    /// (due, key) in send order, to find timeouts without scanning the table.
    send_order: VecDeque<(u64, u64)>,
    holds: VecDeque<Original>,
    purchases: VecDeque<Original>,
    answered: VecDeque<Answered>,
    /// Rows for the record file not yet written (`--record`).
    record_rows: Vec<u8>,
    pub counters: Counters,
    /// Latencies since the reporter last took them.
    pub interval: Histogram<u64>,
}

impl State {
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

pub struct Connection {
    pub index: u32,
    pub state: Mutex<State>,
    /// The reader tells the writer that answers freed room (closed loop, in-flight cap).
    room: Notify,
    pub writer_done: AtomicBool,
    pub reader_done: AtomicBool,
    pub failed: AtomicBool,
    /// Why the connection failed, for the report.
    pub failure: Mutex<Option<String>>,
}

impl Connection {
    pub fn new(index: u32) -> Connection {
        Connection {
            index,
            state: Mutex::new(State {
                in_flight: FxHashMap::default(),
                send_order: VecDeque::new(),
                holds: VecDeque::new(),
                purchases: VecDeque::new(),
                answered: VecDeque::new(),
                record_rows: Vec::new(),
                counters: Counters::default(),
                interval: new_histogram(),
            }),
            room: Notify::new(),
            writer_done: AtomicBool::new(false),
            reader_done: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
        }
    }

    /// The shared state. A panic in another task while holding it leaves counters that
    /// are still worth reporting, so a poisoned lock is taken over.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn fail(&self, why: String) {
        if !self.failed.swap(true, Ordering::AcqRel) {
            *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        }
        self.room.notify_one();
    }
}

/// A connected, signed-on connection, ready to run.
pub struct Ready {
    /// Which of `Plan::targets` it is connected to.
    pub target: usize,
    pub stream: TcpStream,
    pub builder: Builder,
    pub next_stan: u32,
}

/// Connects to the first of the targets that takes the connection, from `first` on, and
/// signs on there.
pub async fn sign_on(plan: &Plan, first: usize, index: u32, rng: &mut SmallRng) -> Result<Ready> {
    let mut failures = Vec::new();
    for offset in 0..plan.targets.len() {
        let target = (first + offset) % plan.targets.len();
        match sign_on_at(plan, target, index, rng).await {
            Ok(ready) => return Ok(ready),
            Err(error) => failures.push(format!("{error:#}")),
        }
    }
    bail!("{}", failures.join("; "))
}

/// Connects and signs on (0800, 70 = 001, MAC'd); fails with the switch's code if refused.
async fn sign_on_at(plan: &Plan, target: usize, index: u32, rng: &mut SmallRng) -> Result<Ready> {
    let address = plan.targets[target];
    let mut stream = tokio::time::timeout(SIGN_ON_TIMEOUT, TcpStream::connect(address))
        .await
        .with_context(|| format!("connecting to {address} timed out"))?
        .with_context(|| format!("connecting to {address}"))?;
    stream.set_nodelay(true).context("setting TCP_NODELAY")?;
    let mut builder = Builder::new(plan.key.clone(), &plan.institution, index)?;
    let stan = rng.gen_range(0..STAN_MODULUS);
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut out = Vec::new();
    builder.network("001", stan, &Stamp::of(now_s), &mut out)?;
    stream.write_all(&out).await.context("sending the sign-on")?;
    let answer = tokio::time::timeout(SIGN_ON_TIMEOUT, read_one(&mut stream, builder.key()))
        .await
        .context("no answer to the sign-on")??;
    let code = answer.get(39).unwrap_or("--");
    if answer.mti() != "0810" || code != "00" {
        bail!(
            "sign-on refused: {} with response code {code} (check --institution and --key: the switch must know \
             institution {} with this MAC key)",
            answer.mti(),
            plan.institution
        );
    }
    Ok(Ready { target, stream, builder, next_stan: (stan + 1) % STAN_MODULUS })
}

/// Reads one framed answer. A MAC that does not verify is reported (a refused sign-on is
/// signed with the key the switch expected, which may not be ours).
async fn read_one(stream: &mut TcpStream, key: &MacKey) -> Result<Iso8583Message> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((raw, _)) = next_frame(&buffer).context("the switch sent a bad frame")? {
            let message = Iso8583Message::decode(raw).context("the switch's answer does not decode")?;
            if message.contains(64) && mac::verify(raw, key).is_err() && message.get(39) == Some("00") {
                bail!("the switch's answer to the sign-on has a MAC that does not verify with --key");
            }
            return Ok(message);
        }
        let read = stream.read(&mut chunk).await.context("reading the sign-on answer")?;
        if read == 0 {
            bail!("the switch closed the connection during sign-on");
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// The writer's own state: what it needs to build requests.
struct Generator {
    plan: Arc<Plan>,
    start: Start,
    builder: Builder,
    rng: SmallRng,
    next_stan: u32,
    stamp: Stamp,
    terminal: String,
    hot_terminal: String,
    merchant: String,
}

impl Generator {
    /// Makes `self.stamp` the second `due_ns` falls in (computed once per second).
    fn refresh_stamp(&mut self, due_ns: u64) {
        let unix_s = (self.start.unix_s + due_ns as f64 / 1e9).floor() as u64;
        if unix_s != self.stamp.unix_s {
            self.stamp = Stamp::of(unix_s);
        }
    }

    /// Whether to keep this request's bytes for a later deliberate duplicate.
    fn keep_for_duplicate(&mut self, mti: &str) -> bool {
        let plan = &self.plan;
        plan.keep_for_duplicate > 0.0
            && !plan.resend_excluded.iter().any(|excluded| excluded == mti)
            && self.rng.gen_bool(plan.keep_for_duplicate.min(1.0))
    }

    fn take_stan(&mut self) -> u32 {
        let stan = self.next_stan;
        self.next_stan = (self.next_stan + 1) % STAN_MODULUS;
        stan
    }

    /// Builds one request due at `due_ns` into `out` and registers it in flight.
    fn next(&mut self, state: &mut State, due_ns: u64, out: &mut Vec<u8>) -> Result<()> {
        let plan = Arc::clone(&self.plan);
        let drawn = plan.mix.draw(&mut self.rng);
        let counters = &mut state.counters;
        match drawn {
            Kind::Duplicate => {
                if let Some(answered) = state.answered.pop_back() {
                    out.extend_from_slice(&answered.raw);
                    counters.sent[Kind::Duplicate.index()] += 1;
                    let entry = InFlight {
                        due_ns,
                        kind: Kind::Duplicate,
                        mti: answered.expected.mti,
                        money: Money::None,
                        original: None,
                        duplicate_of: Some(answered.expected),
                        raw: None,
                        frame: None,
                    };
                    register(state, answered.key, entry);
                    return Ok(());
                }
                counters.fallbacks[Kind::Duplicate.index()] += 1;
                self.fresh(state, Kind::Purchase, due_ns, out)
            }
            Kind::Completion => match state.holds.pop_front() {
                Some(hold) => self.follow_up(state, Kind::Completion, hold, true, due_ns, out),
                None => {
                    counters.fallbacks[Kind::Completion.index()] += 1;
                    self.fresh(state, Kind::Authorization, due_ns, out)
                }
            },
            Kind::Reversal => {
                let of_hold = self.rng.gen_bool(REVERSAL_OF_HOLD_SHARE);
                let picked = if of_hold {
                    state.holds.pop_back().map(|h| (h, true)).or_else(|| state.purchases.pop_back().map(|p| (p, false)))
                } else {
                    state.purchases.pop_back().map(|p| (p, false)).or_else(|| state.holds.pop_back().map(|h| (h, true)))
                };
                match picked {
                    Some((original, is_hold)) => self.follow_up(state, Kind::Reversal, original, is_hold, due_ns, out),
                    None => {
                        counters.fallbacks[Kind::Reversal.index()] += 1;
                        self.fresh(state, Kind::Purchase, due_ns, out)
                    }
                }
            }
            kind => self.fresh(state, kind, due_ns, out),
        }
    }

    /// A request that names no earlier one.
    fn fresh(&mut self, state: &mut State, kind: Kind, due_ns: u64, out: &mut Vec<u8>) -> Result<()> {
        let plan = Arc::clone(&self.plan);
        let dataset = &plan.dataset;
        let card_index = dataset.pick(&mut self.rng);
        let card = &dataset.cards[card_index];
        let card_id = card_index as u32;
        let unknown_pan;
        let (mti, processing, pan, amount, money) = match kind {
            Kind::Authorization => {
                let amount = dataset.amount(&mut self.rng);
                ("0100", "000000", card.pan.as_str(), amount, Money::None)
            }
            Kind::Refund => {
                let amount = dataset.amount(&mut self.rng);
                ("0200", "200000", card.pan.as_str(), amount, Money::AcquirerPays { card: card_id, amount })
            }
            Kind::BalanceInquiry => ("0100", "310000", card.pan.as_str(), 0, Money::None),
            Kind::UnknownCard => {
                let serial = self.rng.gen_range(0..crate::traffic::PROVISION_CARDS_MAX);
                unknown_pan = crate::traffic::pan(crate::traffic::UNKNOWN_BIN, serial);
                let amount = dataset.amount(&mut self.rng);
                ("0200", "000000", unknown_pan.as_str(), amount, Money::None)
            }
            Kind::InsufficientFunds => {
                // Twice what the account opened with: more than it can hold after any
                // plausible run, less than the per-request maximum and the raised caps.
                let amount = card.opening_balance.saturating_mul(2).max(1);
                ("0200", "000000", card.pan.as_str(), amount, Money::IssuerPays { card: card_id, amount })
            }
            Kind::Purchase | Kind::Completion | Kind::Reversal | Kind::Duplicate => {
                let amount = dataset.amount(&mut self.rng);
                ("0200", "000000", card.pan.as_str(), amount, Money::IssuerPays { card: card_id, amount })
            }
        };
        let hot = plan.hot_merchant_share > 0.0 && self.rng.gen_bool(plan.hot_merchant_share.min(1.0));
        if !hot {
            use std::fmt::Write as _;
            self.merchant.clear();
            let _ = write!(self.merchant, "MERCHANT{:07}", self.rng.gen_range(0..plan.merchants.max(1)));
        }
        let stan = self.take_stan();
        let keep = self.keep_for_duplicate(mti);
        self.refresh_stamp(due_ns);
        let stamp = &self.stamp;
        let terminal = if hot { &self.hot_terminal } else { &self.terminal };
        let merchant = if hot { HOT_MERCHANT } else { self.merchant.as_str() };
        let start = out.len();
        self.builder.financial(
            &Financial {
                mti,
                processing,
                pan,
                amount,
                currency: card.currency,
                stan,
                stamp,
                terminal,
                merchant,
                original: None,
            },
            out,
        )?;
        let original = matches!(kind, Kind::Authorization | Kind::Purchase).then_some(Original {
            card: card_id,
            amount,
            stan,
            transmission: stamp.transmission_number,
            hot,
        });
        state.counters.sent[kind.index()] += 1;
        let entry = InFlight {
            due_ns,
            kind,
            mti,
            money,
            original,
            duplicate_of: None,
            raw: keep.then(|| out[start..].to_vec().into_boxed_slice()),
            frame: None,
        };
        register(state, match_key(stan, stamp.transmission_number), entry);
        Ok(())
    }

    /// A completion (0220) of a hold, or a reversal (0420 of a hold, 0400 of a purchase).
    fn follow_up(
        &mut self,
        state: &mut State,
        kind: Kind,
        original: Original,
        of_hold: bool,
        due_ns: u64,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let plan = Arc::clone(&self.plan);
        let card = &plan.dataset.cards[original.card as usize];
        let (mti, original_mti, amount, money) = match (kind, of_hold) {
            (Kind::Completion, _) => {
                // Post between half and all of the hold.
                let amount = self.rng.gen_range(original.amount.div_ceil(2)..=original.amount).max(1);
                ("0220", "0100", amount, Money::IssuerPays { card: original.card, amount })
            }
            (_, true) => ("0420", "0100", original.amount, Money::None),
            (_, false) => {
                ("0400", "0200", original.amount, Money::AcquirerPays { card: original.card, amount: original.amount })
            }
        };
        let field_90 = self.builder.original_data(original_mti, original.stan, original.transmission);
        let stan = self.take_stan();
        let keep = self.keep_for_duplicate(mti);
        self.refresh_stamp(due_ns);
        let stamp = &self.stamp;
        // The switch finds the original by this terminal (field 41) and field 90.
        let terminal = if original.hot { &self.hot_terminal } else { &self.terminal };
        let merchant = if original.hot { HOT_MERCHANT } else { self.merchant.as_str() };
        let start = out.len();
        self.builder.financial(
            &Financial {
                mti,
                processing: "000000",
                pan: &card.pan,
                amount,
                currency: card.currency,
                stan,
                stamp,
                terminal,
                merchant,
                original: Some(&field_90),
            },
            out,
        )?;
        state.counters.sent[kind.index()] += 1;
        let raw = keep.then(|| out[start..].to_vec().into_boxed_slice());
        let entry = InFlight { due_ns, kind, mti, money, original: None, duplicate_of: None, raw, frame: None };
        register(state, match_key(stan, stamp.transmission_number), entry);
        Ok(())
    }
}

fn register(state: &mut State, key: u64, entry: InFlight) {
    state.send_order.push_back((entry.due_ns, key));
    if let Some(previous) = state.in_flight.insert(key, entry) {
        // Only possible if a connection sent a million requests in one second.
        state.counters.timeouts[previous.kind.index()] += 1;
        state.counters.note_mismatch(format!("request key reused while in flight (STAN wrapped): {key}"));
    }
}

/// How long a connection whose switch went away keeps trying the other targets.
pub const FAILOVER_WINDOW: Duration = Duration::from_secs(30);

/// Where the writer is in the schedule (kept across a failover).
#[derive(Default)]
struct Pace {
    /// This connection's requests so far; global index = index + own * stride.
    own: u64,
    next_due_ns: Option<u64>,
    /// The schedule (or duration) is over.
    finished: bool,
}

/// Runs a signed-on connection to the end: the writer until the schedule (or duration)
/// is over, the reader until every request is answered or timed out. With several
/// targets, a failed connection moves to another, signs on and resends what was in flight.
pub async fn run(
    plan: Arc<Plan>,
    connection: Arc<Connection>,
    ready: Ready,
    start: Start,
    mut ticks: Option<watch::Receiver<u64>>,
) {
    let mut generator = Generator {
        plan: Arc::clone(&plan),
        start,
        builder: ready.builder,
        rng: SmallRng::seed_from_u64(plan.seed ^ (u64::from(connection.index) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        next_stan: ready.next_stan,
        stamp: Stamp::of(0),
        terminal: format!("L{}{:04}", plan.nonce, connection.index % 10_000),
        hot_terminal: format!("H{}{:04}", plan.nonce, connection.index % 10_000),
        merchant: String::new(),
    };
    let mut pace = Pace::default();
    let (mut stream, mut target) = (ready.stream, ready.target);
    let mut resend = false;
    loop {
        // The write half stays open until the reader is done: closing it tells the switch
        // we are done, and it then closes the connection, a failure while answers are due.
        let (reader, mut writer) = stream.into_split();
        let reader_task = tokio::spawn(read_loop(Arc::clone(&plan), Arc::clone(&connection), reader, start));
        if resend {
            if let Err(error) = resend_in_flight(&connection, &mut writer).await {
                connection.fail(format!("{error:#}"));
            }
        }
        if !pace.finished {
            let result = write_loop(&plan, &connection, &mut writer, &mut generator, &mut pace, start, ticks.as_mut());
            if let Err(error) = result.await {
                connection.fail(format!("{error:#}"));
            }
        }
        if pace.finished {
            connection.writer_done.store(true, Ordering::Release);
        }
        let _ = reader_task.await;
        if connection.failed.load(Ordering::Acquire) && plan.targets.len() > 1 {
            if let Some(ready) = failover(&plan, &connection, target).await {
                (stream, target, resend) = (ready.stream, ready.target, true);
                continue;
            }
        }
        let _ = writer.shutdown().await;
        break;
    }
    connection.writer_done.store(true, Ordering::Release);
    // A failed connection: whatever is still in flight has an unknown outcome.
    let mut state = connection.lock();
    let lost = state.in_flight.len() as u64;
    state.counters.lost += lost;
    state.in_flight.clear();
    state.send_order.clear();
    if let Some(record) = &plan.record {
        if let Err(error) = record.write(&mut state.record_rows) {
            state.counters.note_mismatch(format!("{error:#}"));
        }
    }
    drop(state);
    connection.reader_done.store(true, Ordering::Release);
}

/// After the connection failed: the next target that takes a connection and a sign-on
/// within `FAILOVER_WINDOW`, or `None`.
async fn failover(plan: &Plan, connection: &Connection, from: usize) -> Option<Ready> {
    let why = connection.failure.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default();
    let deadline = Instant::now() + FAILOVER_WINDOW;
    let mut rng = SmallRng::seed_from_u64(plan.seed ^ u64::from(connection.index));
    while Instant::now() < deadline {
        if let Ok(ready) = sign_on(plan, from + 1, connection.index, &mut rng).await {
            eprintln!(
                "loadgen: connection {} failed over from {} to {} ({why})",
                connection.index, plan.targets[from], plan.targets[ready.target]
            );
            connection.lock().counters.failovers += 1;
            connection.failed.store(false, Ordering::Release);
            *connection.failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
            return Some(ready);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Sends every request still in flight again, in the order first sent: the switch answers
/// each resend with its original answer if it had one, so nothing is booked twice.
async fn resend_in_flight(connection: &Connection, writer: &mut OwnedWriteHalf) -> Result<()> {
    let mut out = Vec::new();
    {
        let mut state = connection.lock();
        let mut count = 0u64;
        let State { send_order, in_flight, .. } = &mut *state;
        // `send_order` may name a key twice (a deliberate duplicate of an answered request
        // reuses its key): each request in flight goes once.
        let mut resent = rustc_hash::FxHashSet::default();
        for (_, key) in send_order.iter() {
            if !resent.insert(*key) {
                continue;
            }
            if let Some(frame) = in_flight.get(key).and_then(|entry| entry.frame.as_deref()) {
                out.extend_from_slice(frame);
                count += 1;
            }
        }
        state.counters.resent_after_failover += count;
    }
    writer.write_all(&out).await.context("resending after a failover")
}

async fn write_loop(
    plan: &Plan,
    connection: &Connection,
    writer: &mut OwnedWriteHalf,
    generator: &mut Generator,
    pace: &mut Pace,
    start: Start,
    mut ticks: Option<&mut watch::Receiver<u64>>,
) -> Result<()> {
    let mut out: Vec<u8> = Vec::with_capacity(READ_BUFFER_SIZE_BYTES);
    let mut due: Vec<u64> = Vec::with_capacity(WRITE_BATCH_MAX);
    let stride = u64::from(plan.connections);
    let keep_frames = plan.targets.len() > 1;
    let closed_loop_end = match &plan.pacing {
        Pacing::Closed { duration, .. } => Some(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)),
        Pacing::Open(_) => None,
    };
    loop {
        if connection.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        let now_ns = start.elapsed_ns();
        due.clear();
        let mut finished = false;
        let room = IN_FLIGHT_PER_CONNECTION_MAX.saturating_sub(connection.lock().in_flight.len());
        match &plan.pacing {
            Pacing::Open(schedule) => {
                while due.len() < WRITE_BATCH_MAX.min(room) {
                    if pace.next_due_ns.is_none() {
                        let j = u64::from(connection.index) + pace.own * stride;
                        match schedule.due_at(j) {
                            Some(t) => pace.next_due_ns = Some((t * 1e9) as u64),
                            None => {
                                finished = true;
                                break;
                            }
                        }
                    }
                    match pace.next_due_ns {
                        Some(t) if t <= now_ns => {
                            due.push(t);
                            pace.own += 1;
                            pace.next_due_ns = None;
                        }
                        _ => break,
                    }
                }
            }
            Pacing::Closed { window_per_connection, .. } => {
                if closed_loop_end.is_some_and(|end| now_ns >= end) {
                    finished = true;
                } else {
                    let window = window_per_connection.get(connection.index as usize).copied().unwrap_or(1);
                    let free = window.saturating_sub(IN_FLIGHT_PER_CONNECTION_MAX - room);
                    due.extend(std::iter::repeat_n(now_ns, free.min(WRITE_BATCH_MAX)));
                }
            }
        }
        if !due.is_empty() {
            {
                let mut state = connection.lock();
                for due_ns in &due {
                    let (before, registered) = (out.len(), state.send_order.len());
                    generator.next(&mut state, *due_ns, &mut out)?;
                    if keep_frames && state.send_order.len() > registered {
                        if let Some(&(_, key)) = state.send_order.back() {
                            if let Some(entry) = state.in_flight.get_mut(&key) {
                                entry.frame = Some(out[before..].into());
                            }
                        }
                    }
                }
            }
            writer.write_all(&out).await.context("writing requests")?;
            out.clear();
        }
        if finished {
            pace.finished = true;
            return Ok(());
        }
        if due.len() == WRITE_BATCH_MAX {
            // Behind schedule: send the rest before waiting, letting the reader run between.
            tokio::task::yield_now().await;
            continue;
        }
        match (&plan.pacing, ticks.as_mut()) {
            (Pacing::Open(_), Some(ticks)) if room > 0 => {
                if ticks.changed().await.is_err() {
                    // The pacer is done: everything left is due now. Look once more, then
                    // wait briefly (only reached if the last due time is still ahead).
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            _ => {
                tokio::select! {
                    _ = connection.room.notified() => {}
                    _ = tokio::time::sleep(TIMEOUT_CHECK_INTERVAL) => {}
                }
            }
        }
    }
}

/// One answer, parsed outside the lock.
struct Answer {
    key: u64,
    /// For the record file: field 37 and field 4 as echoed, and field 49's currency.
    rrn: [u8; 12],
    amount: u64,
    currency: u16,
    code: [u8; 2],
    auth_code: Option<[u8; 6]>,
    /// Field 44 "1": the switch answered for the issuer (stand-in).
    stood_in: bool,
    received: Instant,
}

async fn read_loop(plan: Arc<Plan>, connection: Arc<Connection>, mut reader: OwnedReadHalf, start: Start) {
    let mut buffer: Vec<u8> = Vec::with_capacity(READ_BUFFER_SIZE_BYTES);
    let mut chunk = vec![0u8; READ_BUFFER_SIZE_BYTES];
    let mut answers: Vec<Answer> = Vec::with_capacity(1024);
    let mut bad = 0u64;
    let mut check = tokio::time::interval(TIMEOUT_CHECK_INTERVAL);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timeout_ns = u64::try_from(plan.timeout.as_nanos()).unwrap_or(u64::MAX);
    loop {
        tokio::select! {
            read = reader.read(&mut chunk) => {
                let read = match read {
                    Ok(0) => {
                        connection.fail("the switch closed the connection".into());
                        break;
                    }
                    Ok(read) => read,
                    Err(error) => {
                        connection.fail(format!("reading answers: {error}"));
                        break;
                    }
                };
                let received = Instant::now();
                buffer.extend_from_slice(&chunk[..read]);
                let mut consumed = 0;
                loop {
                    match next_frame(&buffer[consumed..]) {
                        Ok(Some((raw, size))) => {
                            match parse_answer(raw, &plan.key, received) {
                                Some(answer) => answers.push(answer),
                                None => bad += 1,
                            }
                            consumed += size;
                        }
                        Ok(None) => break,
                        Err(error) => {
                            connection.fail(format!("the switch sent a bad frame: {error}"));
                            consumed = buffer.len();
                            break;
                        }
                    }
                }
                buffer.drain(..consumed);
                {
                    let mut state = connection.lock();
                    state.counters.bad_answers += bad;
                    bad = 0;
                    for answer in answers.drain(..) {
                        apply(&plan, &mut state, answer, start);
                    }
                }
                connection.room.notify_one();
                if connection.failed.load(Ordering::Acquire) {
                    break;
                }
            }
            _ = check.tick() => {
                if connection.failed.load(Ordering::Acquire) {
                    break; // the writer found the connection broken
                }
                let mut state = connection.lock();
                expire(&mut state, start.elapsed_ns(), timeout_ns);
                if connection.writer_done.load(Ordering::Acquire) && state.in_flight.is_empty() {
                    break;
                }
                drop(state);
                connection.room.notify_one();
            }
        }
    }
    // The writer stops at a failure too (it checks the flag); `run` decides what becomes
    // of the requests still in flight.
    connection.room.notify_one();
}

fn parse_answer(raw: &[u8], key: &MacKey, received: Instant) -> Option<Answer> {
    let message = mac::decode_verified(raw, key).ok()?;
    let stan: u32 = message.get(11)?.parse().ok()?;
    let transmission: u64 = message.get(7)?.parse().ok()?;
    let code: [u8; 2] = message.get_bytes(39)?.try_into().ok()?;
    let auth_code = message.get_bytes(38).and_then(|c| <[u8; 6]>::try_from(c).ok());
    let stood_in = message.get(44) == Some("1");
    let mut rrn = [b' '; 12];
    for (slot, byte) in rrn.iter_mut().zip(message.get_bytes(37).unwrap_or(b"")) {
        *slot = *byte;
    }
    let amount = message.get(4).and_then(|a| a.parse().ok()).unwrap_or(0);
    let currency = message.get(49).and_then(|c| c.parse().ok()).unwrap_or(0);
    Some(Answer { key: match_key(stan, transmission), rrn, amount, currency, code, auth_code, stood_in, received })
}

fn apply(plan: &Plan, state: &mut State, answer: Answer, start: Start) {
    let Some(entry) = state.in_flight.remove(&answer.key) else {
        state.counters.unmatched_answers += 1;
        return;
    };
    let due = start.instant + Duration::from_nanos(entry.due_ns);
    let latency_us = u64::try_from(answer.received.saturating_duration_since(due).as_micros()).unwrap_or(u64::MAX);
    state.interval.saturating_record(latency_us.max(1));
    let slot = code_slot(&answer.code);
    let counters = &mut state.counters;
    counters.answers[entry.kind.index()][slot] += 1;
    // Stand-in decisions: a deliberate duplicate's answer repeats its original's mark.
    counters.stood_in += u64::from(answer.stood_in && entry.duplicate_of.is_none());
    let code = std::str::from_utf8(&answer.code).unwrap_or("??");
    let overloaded = answer.code == *b"91";
    if let Some(expected) = entry.duplicate_of {
        if overloaded {
            counters.duplicates_overloaded += 1;
        } else if answer.code == expected.code && (answer.code != *b"00" || answer.auth_code == expected.auth_code) {
            counters.duplicates_matched += 1;
        } else {
            counters.duplicates_mismatched += 1;
            counters.note_mismatch(format!(
                "duplicate of a {} ({}) answered {code} (auth {}), the original {} (auth {})",
                expected.kind.name(),
                expected.mti,
                auth_text(answer.auth_code),
                std::str::from_utf8(&expected.code).unwrap_or("??"),
                auth_text(expected.auth_code),
            ));
        }
    }
    if let Some(must) = entry.kind.expected_code() {
        // A stood-in answer is the switch's decision under the BIN's stand-in limits, not
        // the issuer's: it need not be the code the issuer would have given.
        if code != must && !entry.kind.also_accepts(code) && !overloaded && !answer.stood_in {
            counters.expected_code_mismatched[entry.kind.index()] += 1;
            counters.note_mismatch(format!("{} answered {code}, expected {must}", entry.kind.name()));
        }
    }
    if answer.code == *b"00" && entry.duplicate_of.is_none() {
        let cards = &plan.dataset.cards;
        match entry.money {
            Money::None => {}
            Money::IssuerPays { card, amount } => {
                let card = &cards[card as usize];
                move_money(&mut counters.positions, card.issuer, plan.acquirer, card.currency, amount);
            }
            Money::AcquirerPays { card, amount } => {
                let card = &cards[card as usize];
                move_money(&mut counters.positions, plan.acquirer, card.issuer, card.currency, amount);
            }
        }
        if let Some(original) = entry.original {
            let (pool, max) = match entry.kind {
                Kind::Authorization => (&mut state.holds, HOLDS_POOL_MAX),
                _ => (&mut state.purchases, PURCHASES_POOL_MAX),
            };
            if pool.len() >= max {
                pool.pop_front();
            }
            pool.push_back(original);
        }
    }
    let journaled = !overloaded && answer.code != *b"96" && entry.kind != Kind::BalanceInquiry;
    if let Some(record) = plan.record.as_ref().filter(|_| journaled && entry.duplicate_of.is_none()) {
        push_record_row(&mut state.record_rows, entry.mti, &answer);
        if state.record_rows.len() >= RECORD_FLUSH_BYTES {
            if let Err(error) = record.write(&mut state.record_rows) {
                state.counters.note_mismatch(format!("{error:#}"));
            }
        }
    }
    if let Some(raw) = entry.raw {
        // Only final answers are kept: 91 and 96 say "try again", 94 is the conflict.
        if !overloaded && answer.code != *b"94" && answer.code != *b"96" {
            if state.answered.len() >= DUPLICATES_POOL_MAX {
                state.answered.pop_front();
            }
            let expected =
                Expected { kind: entry.kind, mti: entry.mti, code: answer.code, auth_code: answer.auth_code };
            state.answered.push_back(Answered { raw, key: answer.key, expected });
        }
    }
}

/// One row of the record file (`RECORD_HEADER`).
fn push_record_row(out: &mut Vec<u8>, mti: &str, answer: &Answer) {
    use std::io::Write;
    let rrn = std::str::from_utf8(&answer.rrn).unwrap_or("").trim_end();
    let auth = answer.auth_code.map(|c| String::from_utf8_lossy(&c).into_owned()).unwrap_or_default();
    let code = std::str::from_utf8(&answer.code).unwrap_or("??");
    // Writing into a Vec cannot fail.
    let _ = writeln!(out, "{rrn},{mti},{},{},{code},{auth}", currency_code(answer.currency), answer.amount);
}

fn auth_text(code: Option<[u8; 6]>) -> String {
    code.map_or_else(|| "-".into(), |c| String::from_utf8_lossy(&c).into_owned())
}

/// Counts requests past their timeout and forgets them; a later answer is "unmatched".
fn expire(state: &mut State, now_ns: u64, timeout_ns: u64) {
    while let Some(&(due_ns, key)) = state.send_order.front() {
        let live = state.in_flight.get(&key).is_some_and(|entry| entry.due_ns == due_ns);
        if live && due_ns.saturating_add(timeout_ns) > now_ns {
            break;
        }
        state.send_order.pop_front();
        if live {
            if let Some(entry) = state.in_flight.remove(&key) {
                state.counters.timeouts[entry.kind.index()] += 1;
            }
        }
    }
}
