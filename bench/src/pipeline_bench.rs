//! `bench pipeline`: the whole in-process pipeline — routing, shard rules, group commit
//! into the ledger with the WAL synced, answers — at several shard counts and account
//! distributions. Latency is per request, from submit to answer.

use crate::machine::{CpuMeter, CpuUse, Machine};
use anyhow::{Context, Result};
use crossbeam::channel::unbounded;
use hdrhistogram::Histogram;
use junction_engine::detail::{Channel, Detail, MaskedCard, Text};
use junction_engine::model::*;
use junction_engine::*;
use junction_ledger::*;
use rand::distributions::Distribution;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, clap::Args)]
pub struct PipelineArgs {
    /// Requests per case.
    #[arg(long, default_value_t = 5_000_000)]
    pub requests: u64,
    /// Shard counts to run each case with.
    #[arg(long, default_value = "1,2,4", value_delimiter = ',')]
    pub shards: Vec<usize>,
    /// Cases: uniform-10k, uniform-10m, zipf, hot.
    #[arg(long, default_value = "uniform-10k,uniform-10m,zipf,hot", value_delimiter = ',')]
    pub cases: Vec<String>,
    /// Requests in flight (submitted, not yet answered) at most.
    #[arg(long, default_value_t = 65_536)]
    pub in_flight: u64,
    /// Commit delay in microseconds (how long a partial batch may wait to fill).
    #[arg(long, default_value_t = COMMIT_DELAY_US_DEFAULT)]
    pub commit_delay_us: u64,
    /// Reserve room for the case's transfers in the ledger's transfer index at open
    /// (`LedgerOptions::transfers_reserved`, as an operator sizes it for a day's volume),
    /// instead of letting the index grow by doubling during the run.
    #[arg(long)]
    pub reserve_index: bool,
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Also run the same transfers against a PostgreSQL double-entry schema at this URL
    /// (e.g. "host=/var/run/postgresql user=postgres") and print the ratio.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Transfers for the PostgreSQL baseline (it is much slower).
    #[arg(long, default_value_t = 50_000)]
    pub postgres_transfers: u64,
    /// Charge fees on every purchase (interchange 1.10 %, the switch's 0.02 % + 0.01 from
    /// the acquirer and 0.01 % from the issuer): three charges per payment, netted per
    /// journal entry (`engine/src/fees.rs`).
    #[arg(long)]
    pub fees: bool,
}

#[derive(Debug, Serialize)]
struct CaseResult {
    case: String,
    shards: usize,
    accounts: u64,
    requests: u64,
    approved: u64,
    seconds: f64,
    transfers_per_s: u64,
    latency_us_p50: u64,
    latency_us_p99: u64,
    latency_us_p999: u64,
    latency_us_max: u64,
    /// Process CPU (all threads, user + system) per approved transfer while driven.
    cpu_us_per_transfer: f64,
    cpu: CpuUse,
    machine: Machine,
}

const PARTICIPANTS: u64 = 16;
const HOT_PARTICIPANT: u64 = 1;
const ACQUIRER: ParticipantId = ParticipantId(100);

pub fn run(args: &PipelineArgs) -> Result<()> {
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let machine = Machine::detect(&base);
    machine.print();
    println!(
        "settings: {} requests per case (purchases), {} in flight, commit delay {} us, WAL synced per group commit, \
         transfer index {}, fees {}",
        args.requests,
        args.in_flight,
        args.commit_delay_us,
        if args.reserve_index { "reserved for the run at open" } else { "grown as needed" },
        if args.fees { "charged (interchange and the switch's, 3 charges per purchase)" } else { "none" }
    );
    let mut results = Vec::new();
    for case in &args.cases {
        let accounts: u64 = match case.as_str() {
            "uniform-10k" | "zipf" | "hot" => 10_000,
            "uniform-10m" => 10_000_000,
            other => anyhow::bail!("unknown case {other:?}"),
        };
        for &shards in &args.shards {
            let dir = tempfile::Builder::new().prefix("junction-bench-pipeline-").tempdir_in(&base)?;
            let result = run_case(case, accounts, shards, args, dir.path(), &machine)
                .with_context(|| format!("running case {case} with {shards} shards"))?;
            println!(
                "{:<12} shards {}  {:>9} transfers/s  latency p50 {:>6} us  p99 {:>6} us  p99.9 {:>6} us  max {:>7} us  ({} approved)  \
                 cpu {:.2} us/transfer (user {:.1} s, system {:.1} s), steal {:.1}%",
                result.case,
                result.shards,
                result.transfers_per_s,
                result.latency_us_p50,
                result.latency_us_p99,
                result.latency_us_p999,
                result.latency_us_max,
                result.approved,
                result.cpu_us_per_transfer,
                result.cpu.user_s,
                result.cpu.system_s,
                result.cpu.steal_percent
            );
            results.push(result);
        }
    }
    if let Some(url) = &args.postgres {
        println!(
            "PostgreSQL baseline: 10000 accounts, {} transfers, one transaction each, {} connections",
            args.postgres_transfers,
            crate::postgres_baseline::POSTGRES_CONNECTIONS
        );
        let baseline = crate::postgres_baseline::run(url, 10_000, args.postgres_transfers)?;
        println!(
            "postgres     {:>9} transfers/s  ({} transfers in {:.2} s)",
            baseline.transfers_per_s, baseline.transfers, baseline.seconds
        );
        if let Some(best) = results.iter().filter(|r| r.case == "uniform-10k").map(|r| r.transfers_per_s).max() {
            println!(
                "junction/postgres: {:.1}x (junction uniform-10k best {} transfers/s vs postgres {})",
                best as f64 / baseline.transfers_per_s.max(1) as f64,
                best,
                baseline.transfers_per_s
            );
        }
    }
    if let Some(path) = &args.json {
        let lines: Vec<String> = results.iter().map(serde_json::to_string).collect::<Result<_, _>>()?;
        std::fs::write(path, lines.join("\n") + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

pub(crate) fn provision(engine: &Engine, accounts: u64) -> Result<()> {
    let usd = Currency::from_code("USD")?;
    for participant in 1..=PARTICIPANTS {
        engine.add_participant(ParticipantSpec {
            id: ParticipantId(participant),
            name: format!("Issuer {participant}"),
            role: Role::Issuer,
            net_debit_caps: vec![(usd, u64::MAX / 64)],
        })?;
    }
    engine.add_participant(ParticipantSpec {
        id: ACQUIRER,
        name: "Acquirer".into(),
        role: Role::Acquirer,
        net_debit_caps: vec![(usd, u64::MAX / 64)],
    })?;
    let specs: Vec<AccountSpec> = (1..=accounts)
        .map(|id| AccountSpec {
            id: AccountId(u128::from(id)),
            participant: ParticipantId(participant_of(id)),
            currency: usd,
            opening_balance: 1_000_000_000,
            status: AccountStatus::Active,
            velocity: VelocityLimits::default(),
        })
        .collect();
    for chunk in specs.chunks(PROVISION_BATCH_MAX) {
        engine.add_accounts(chunk)?;
    }
    engine.sync()?;
    Ok(())
}

/// A purchase's record as the ISO 8583 gateway fills it (what the clearing files carry):
/// the benches' requests carry one each, so they journal what the switch journals.
pub(crate) fn purchase_detail() -> Detail {
    Detail {
        channel: Channel::Iso8583,
        mti: Text::new("0200"),
        processing_code: Text::new("000000"),
        rrn: Text::new("000100000042"),
        stan: Text::new("000042"),
        acquirer_institution: Text::new("10000000001"),
        terminal: Text::new("TERM0001"),
        merchant: Text::new("MERCHANT0000001"),
        mcc: Text::new("5411"),
        card: MaskedCard::of("4000001234567899"),
        ..Detail::default()
    }
}

/// The switch's own participant of `--fees`.
const SWITCH: ParticipantId = ParticipantId(1_000);

/// `--fees`: the switch's participant and a schedule that charges every purchase.
fn charge_fees(engine: &Engine) -> Result<()> {
    use junction_engine::fees::{FeeSchedule, InterchangeRule, Rate, Scope};
    let usd = Currency::from_code("USD")?;
    engine.add_participant(ParticipantSpec {
        id: SWITCH,
        name: "Switch fees".into(),
        role: Role::Switch,
        net_debit_caps: vec![(usd, u64::MAX / 64)],
    })?;
    engine.set_fee_schedule(FeeSchedule {
        switch_participant: Some(SWITCH),
        interchange: vec![InterchangeRule { mcc: None, scope: Scope::Any, rate: Rate::parse("1.10", 0)? }],
        acquirer_fee: Rate::parse("0.02", 1)?,
        issuer_fee: Rate::parse("0.01", 0)?,
        ..FeeSchedule::default()
    })?;
    Ok(())
}

/// Account `id` belongs to issuer `participant_of(id)`; in the hot case, 70% of the
/// traffic goes to accounts of issuer 1.
fn participant_of(id: u64) -> u64 {
    id % PARTICIPANTS + 1
}

fn run_case(
    case: &str,
    accounts: u64,
    shards: usize,
    args: &PipelineArgs,
    dir: &std::path::Path,
    machine: &Machine,
) -> Result<CaseResult> {
    // The provisioning's opening balances are transfers too.
    let transfers_reserved = if args.reserve_index { (args.requests + accounts) as usize } else { 0 };
    let ledger = Arc::new(Ledger::open(dir, LedgerOptions { transfers_reserved, ..LedgerOptions::default() })?);
    let config = EngineConfig {
        shards,
        shard_queue_depth_max: (args.in_flight as usize).max(1024),
        commit_delay_us: args.commit_delay_us,
        ..EngineConfig::default()
    };
    let engine = Engine::start(ledger, config)?;
    let provisioning = Instant::now();
    provision(&engine, accounts)?;
    if args.fees {
        charge_fees(&engine)?;
    }
    eprintln!("  provisioned {accounts} accounts in {:.1} s", provisioning.elapsed().as_secs_f64());
    let meter = CpuMeter::start();
    let Driven { latency, approved, overloaded, seconds } =
        drive(&engine, case, accounts, args.requests, args.in_flight, 0)?;
    let cpu = meter.stop();
    if overloaded > 0 {
        eprintln!("  note: {overloaded} requests were declined with 91 (a shard queue was full)");
    }
    engine.shutdown();
    Ok(CaseResult {
        case: case.to_string(),
        shards,
        accounts,
        requests: args.requests,
        approved,
        seconds,
        transfers_per_s: (approved as f64 / seconds) as u64,
        latency_us_p50: latency.value_at_quantile(0.50),
        latency_us_p99: latency.value_at_quantile(0.99),
        latency_us_p999: latency.value_at_quantile(0.999),
        latency_us_max: latency.max(),
        cpu_us_per_transfer: cpu.us_per(approved),
        cpu,
        machine: machine.clone(),
    })
}

/// How many times per window of in-flight requests the driver is woken to send more.
const ROOM_STEPS_PER_WINDOW: u64 = 64;

/// What one run of the request driver saw.
pub(crate) struct Driven {
    pub latency: Histogram<u64>,
    pub approved: u64,
    pub overloaded: u64,
    pub seconds: f64,
}

/// Sends `total` purchases of the case's account distribution through the engine, at
/// most `in_flight` unanswered at once, and collects every answer. Request keys start
/// after `first_key` (a key seen before is answered as a duplicate, not committed again).
pub(crate) fn drive(
    engine: &Engine,
    case: &str,
    accounts: u64,
    total: u64,
    in_flight: u64,
    first_key: u64,
) -> Result<Driven> {
    let usd = Currency::from_code("USD")?;

    let (reply_tx, reply_rx) = unbounded::<Response>();
    let sink: Arc<dyn ReplySink> = Arc::new(reply_tx);
    // As the ISO 8583 gateway fills it (what the clearing files carry): every request
    // carries one to the ledger's journal.
    let detail = purchase_detail();
    let started = Instant::now();
    // One token per `room_step` answers: past the window, the driver waits for a token
    // before sending the next `room_step` requests. Waking it per answer would cost the
    // pipeline it measures a context switch per request.
    let room_step = (in_flight / ROOM_STEPS_PER_WINDOW).max(1);
    let (room_tx, room_rx) = crossbeam::channel::unbounded::<()>();
    let collector = {
        std::thread::spawn(move || -> Result<(Histogram<u64>, u64, u64)> {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
            let mut approved = 0u64;
            let mut overloaded = 0u64;
            for answered in 0..total {
                let response = reply_rx.recv()?;
                let sent_ns = response.tag;
                let now_ns = started.elapsed().as_nanos() as u64;
                latency.record((now_ns.saturating_sub(sent_ns) / 1000).max(1))?;
                match response.code {
                    ResponseCode::Approved => approved += 1,
                    ResponseCode::SystemUnavailable => overloaded += 1,
                    _ => {}
                }
                if answered % room_step == room_step - 1 {
                    let _ = room_tx.send(());
                }
            }
            Ok((latency, approved, overloaded))
        })
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    // Request keys carry their time, as ISO 8583 keys do (field 7): the ledger then never
    // looks for a fresh key in its cold index.
    let start_unix_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    // Zipf over account ranks (exponent 1.1): a few accounts take most of the traffic.
    let zipf = rand_distr::Zipf::new(accounts, 1.1).map_err(|e| anyhow::anyhow!("zipf parameters: {e}"))?;
    let hot_accounts: Vec<u64> = (1..=accounts).filter(|id| participant_of(*id) == HOT_PARTICIPANT).collect();
    let mut window_end = in_flight;
    for sent in 0..total {
        // Block (not spin) until the window has room: on 2 cores a spinning driver would
        // take a whole core from the pipeline it measures.
        while sent >= window_end {
            room_rx.recv()?;
            window_end += room_step;
        }
        let account = match case {
            "zipf" => (zipf.sample(&mut rng) as u64).clamp(1, accounts),
            "hot" if rng.gen_bool(0.7) => hot_accounts[rng.gen_range(0..hot_accounts.len())],
            _ => rng.gen_range(1..=accounts),
        };
        engine.submit(Request {
            key: RequestKey(TransferId::timed(start_unix_s, u128::from(first_key + sent) + 1).0),
            operation: Operation::Purchase,
            instrument: Instrument::Account(AccountId(u128::from(account))),
            amount: rng.gen_range(1..10_000),
            currency: usd,
            acquirer: ACQUIRER,
            entry_mode: EntryMode::Chip,
            card_expiry_yymm: None,
            reference: 0,
            detail,
            tag: started.elapsed().as_nanos() as u64,
            reply: Arc::clone(&sink),
            trace: TraceSlot::default(),
        });
    }
    let (latency, approved, overloaded) =
        collector.join().map_err(|_| anyhow::anyhow!("the collector thread panicked"))??;
    Ok(Driven { latency, approved, overloaded, seconds: started.elapsed().as_secs_f64() })
}
