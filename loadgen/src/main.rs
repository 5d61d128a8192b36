//! `loadgen`: drives a running `junctiond` over its real interfaces (ISO 8583, or the QR
//! gateway's HTTP API with `--mode qr`, see `qr.rs`) and reports honest
//! latency. A client only: it links the wire codecs (`junction-wire`), never the switch.
//!
//! ISO 8583 mode: many TCP connections, each signed on as the acquirer with every message
//! MAC'd; requests sent open loop on a schedule (fixed rate, ramp, or a national switch's
//! peak day) with latency measured from the scheduled time, or closed loop for maximum
//! throughput. A traffic mix of purchases, authorizations and their completions,
//! reversals, refunds, balance inquiries, deliberate duplicates and requests that must
//! decline. At the end: answers by code, timeouts, throughput, latency percentiles, a
//! JSON report, a plot, and with `--verify` a check of the ledger's positions against the
//! approvals seen.
//!
//! Issuer-host mode (`--mode issuer`, `issuer.rs`): loadgen signs on as a card issuer's
//! host and answers what the switch forwards to it, for four-party runs (loadgen as
//! acquirer <-> junctiond <-> loadgen as issuer).
//!
//! Targets are any addresses: load testers run loadgen from another machine (the test
//! suite keeps to loopback).

mod admin;
mod connection;
mod cpu;
mod issuer;
mod message;
mod plot;
mod qr;
mod report;
mod run;
mod schedule;
mod stats;
mod traffic;
mod verify;

use anyhow::{bail, ensure, Context, Result};
use clap::{Parser, ValueEnum};
use connection::{Pacing, Plan};
use junction_wire::iso8583::MacKey;
use schedule::{parse_count, parse_ramp, Schedule, DAY_S};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use traffic::{Chooser, Dataset, Kind, Mix};

/// Exit status when `--verify` finds a difference (or cannot be sure).
const EXIT_CHECK_FAILED: u8 = 3;

/// Most connections one loadgen opens (terminal ids carry the index in four digits).
const CONNECTIONS_MAX: u32 = 9999;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// ISO 8583 over TCP, as an acquirer's host.
    Iso8583,
    /// The QR gateway's HTTP API, as a wallet: signed direct payments.
    Qr,
    /// ISO 8583 as an issuer's host: answers what the switch forwards (see `issuer.rs`).
    Issuer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Profile {
    /// A national switch's day: night trough, morning and evening peaks, a midnight
    /// shopping-festival spike. See `schedule::PEAK_DAY_POINTS`.
    PeakDay,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Skew {
    Uniform,
    Zipf,
}

/// Drive a running junctiond and report latency honestly (open loop, corrected for
/// coordinated omission).
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, after_help = AFTER_HELP)]
struct Args {
    /// Interface to drive.
    #[arg(long, value_enum, default_value = "iso8583")]
    mode: Mode,
    /// The switch's ISO 8583 listener (host:port). Several, comma-separated (a
    /// primary and its standbys): a connection that fails moves to the next one that
    /// takes it, signs on and resends every request still unanswered.
    #[arg(long, default_value = "127.0.0.1:8583")]
    iso: String,
    /// The switch's admin HTTP listener, for --provision and --verify (host:port).
    /// Several, comma-separated: the one whose /health says ok is used.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: String,
    /// TCP connections, each signed on as the acquirer.
    #[arg(long, default_value_t = 8)]
    connections: u32,
    /// The acquirer's institution id (field 32).
    #[arg(long, default_value = "200001")]
    institution: String,
    /// The acquirer's MAC key, hex.
    #[arg(long, default_value = "33333333333333333333333333333333")]
    key: String,
    /// The acquirer's participant id at the switch (money it receives, for --verify).
    #[arg(long, default_value_t = 3)]
    acquirer_participant: u64,

    /// QR mode: the paying wallet participant (demo: 5 pays in SGD, 10 in THB).
    #[arg(long, default_value_t = 5)]
    wallet: u64,
    /// QR mode: the wallet's signing key, hex (default: the demo wallet's).
    #[arg(long)]
    wallet_key: Option<String>,
    /// QR mode: the currency the wallet pays in (default: the demo wallet's).
    #[arg(long)]
    payer_currency: Option<String>,
    /// QR mode: the FX provider participant, for --verify when an answer names none.
    #[arg(long, default_value_t = 6)]
    fx_provider: u64,

    /// Open loop at a fixed rate, requests per second.
    #[arg(long, group = "pacing", value_parser = parse_count)]
    rate: Option<f64>,
    /// Open loop, rate rising (or falling) linearly over the run: FROM:TO per second.
    #[arg(long, group = "pacing")]
    ramp: Option<String>,
    /// Open loop following a daily profile.
    #[arg(long, group = "pacing", value_enum)]
    profile: Option<Profile>,
    /// Requests a day for --profile (rates are this day's real per-second rates).
    #[arg(long, default_value = "3.71e9", value_parser = parse_count)]
    day_volume: f64,
    /// Time compression of --profile: 1440 plays the day in a minute.
    #[arg(long, default_value = "1440", value_parser = parse_count)]
    compress: f64,
    /// Closed loop: keep --in-flight requests outstanding, for maximum throughput.
    #[arg(long, group = "pacing")]
    closed_loop: bool,
    /// Requests in flight in closed loop, spread over the connections.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,

    /// Length of the send phase, e.g. 20s, 500ms, 2m (default 10s; one played day for
    /// --profile).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// A request not answered within this is a timeout.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,

    /// Shares of the traffic mix, KIND=SHARE,...; unnamed kinds keep their default.
    /// Kinds: purchase (50), authorization (12), completion (10), reversal (4), refund (4),
    /// balance_inquiry (10), duplicate (4), unknown_card (3), insufficient_funds (3).
    #[arg(long)]
    mix: Option<String>,
    /// Amounts in minor units, MIN:MAX (default 1:10 with the demo cards, 100:20000 with
    /// --provision).
    #[arg(long)]
    amount: Option<String>,
    /// How cards are chosen.
    #[arg(long, value_enum, default_value = "uniform")]
    skew: Skew,
    /// Exponent of --skew zipf.
    #[arg(long, default_value_t = 1.0)]
    zipf_exponent: f64,
    /// Share of requests from one hot merchant (field 42 HOTMERCHANT0001, its own terminal
    /// per connection).
    #[arg(long, default_value_t = 0.0)]
    hot_merchant: f64,
    /// MTIs never resent as deliberate duplicates, e.g. 0420 (comma-separated). By default
    /// every kind of request may be resent.
    #[arg(long, value_delimiter = ',')]
    resend_exclude: Vec<String>,
    /// Distinct merchants (field 42) of the other requests.
    #[arg(long, default_value_t = 1000)]
    merchants: u32,

    /// Create this many USD accounts with one card each through the admin API (issuer
    /// --issuer, deterministic Luhn-valid card numbers 424242...), raise the issuer's and
    /// acquirer's USD net debit caps, and use those cards. Without it: the demo cards.
    #[arg(long)]
    provision: Option<u64>,
    /// BIN of --provision's card numbers (6 digits): another issuer's cards need their
    /// own BIN where the BIN table routes by issuer (a partitioned switch).
    #[arg(long, default_value = traffic::PROVISION_BIN)]
    provision_bin: String,
    /// First account id of --provision.
    #[arg(long, default_value_t = 100_000_000)]
    account_base: u64,
    /// Issuer participant of --provision's accounts and --hosted-cards (in issuer mode:
    /// loadgen's own participant id, for --verify).
    #[arg(long, default_value_t = 1)]
    issuer: u64,
    /// Use this many card numbers of --hosted-bin, not provisioned at the switch: their BIN
    /// routes to an issuer's host (a loadgen in --mode issuer), which holds their accounts.
    #[arg(long, conflicts_with = "provision")]
    hosted_cards: Option<u64>,
    /// BIN of --hosted-cards.
    #[arg(long, default_value = "476173")]
    hosted_bin: String,
    /// ISO 4217 numeric currency of --hosted-cards.
    #[arg(long, default_value_t = 840)]
    hosted_currency: u16,

    /// Issuer mode: share of requests approved (the others get 05).
    #[arg(long, default_value_t = 1.0)]
    approve: f64,
    /// Issuer mode: each answer waits a delay drawn uniformly from MIN:MAX, e.g. 1ms:5ms.
    #[arg(long, default_value = "0ms:0ms")]
    latency: String,
    /// Issuer mode: every card's available balance; a larger amount gets 51. Acquirer
    /// mode: the balance --hosted-cards are taken to have (for must-decline requests).
    #[arg(long, default_value = "1e9", value_parser = parse_count)]
    balance: f64,
    /// Issuer mode: go away at AT for LENGTH, e.g. 10s:5s (see --outage-kind).
    #[arg(long)]
    outage: Option<String>,
    /// Issuer mode: how the host goes away during --outage.
    #[arg(long, value_enum, default_value = "silent")]
    outage_kind: issuer::OutageKind,
    /// Opening balance of --provision's accounts, minor units.
    #[arg(long, default_value = "1e10", value_parser = parse_count)]
    opening_balance: f64,
    /// Admin API token.
    #[arg(long, env = "LOADGEN_ADMIN_TOKEN", default_value = "demo-admin-token-change-me")]
    admin_token: String,

    /// Compare the ledger's positions before and after with the approvals seen; exit 3 on
    /// any difference. Valid only when loadgen is the switch's only traffic.
    #[arg(long)]
    verify: bool,
    /// With --verify: other nodes' admin listeners (host:port,...) whose positions' changes
    /// count too: the other partitions of a partitioned switch, where an issuer moving
    /// during the run has part of the run's traffic booked, or where the wallet paying in
    /// QR mode is placed.
    #[arg(long, value_name = "HOST:PORT,...")]
    verify_also: Option<String>,
    /// ISO 8583: write loadgen's own record of every request the switch answered for good
    /// (RRN, MTI, currency, amount, response and authorization codes) to this CSV file,
    /// the input of `junction clearing reconcile` (the acquirer's side of the window).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a plot of latency and throughput over time (.png or .svg).
    #[arg(long)]
    plot: Option<PathBuf>,

    /// Threads of loadgen's async runtime (the pacer has its own).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Shortest sleep of the open-loop pacer, microseconds.
    #[arg(long, default_value_t = 200)]
    tick_us: u64,
    /// Seed of the traffic's random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

const AFTER_HELP: &str = "\
Examples:
  loadgen --rate 5000 --duration 20s
  loadgen --provision 100000 --skew zipf --rate 20000 --duration 60s --verify --json run.json --plot run.png
  loadgen --ramp 1000:40000 --duration 60s --plot ramp.svg
  loadgen --profile peak-day --day-volume 3.71e9 --compress 1440
  loadgen --closed-loop --in-flight 512 --duration 20s
  loadgen --mode issuer --institution 400001 --key 44444444444444444444444444444444 --issuer 4 \
          --latency 1ms:5ms --approve 0.95 --duration 60s --verify      (an issuer's host)
  loadgen --hosted-cards 10000 --issuer 4 --rate 2000 --duration 30s --verify   (cards of that issuer)

Latency is measured from each request's scheduled send time (open loop), so stalls show.
Exit status: 0 done, 1 error, 3 --verify found a difference or could not be sure.";

fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number.trim().parse().with_context(|| format!("{text:?} is not a duration like 20s"))?;
    let seconds = match unit {
        "ms" => value / 1e3,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => bail!("{text:?}: unknown unit {unit:?} (ms, s, m, h)"),
    };
    ensure!(seconds.is_finite() && seconds > 0.0, "{text:?} must be positive");
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_range(text: &str) -> Result<(u64, u64)> {
    let (low, high) = text.split_once(':').with_context(|| format!("{text:?} is not MIN:MAX"))?;
    let low: u64 = low.trim().parse().with_context(|| format!("{low:?} is not a whole number"))?;
    let high: u64 = high.trim().parse().with_context(|| format!("{high:?} is not a whole number"))?;
    ensure!(low >= 1 && low <= high, "{text:?}: need 1 <= MIN <= MAX");
    Ok((low, high))
}

/// Resolves `text` (host:port) to the address to use.
fn target(text: &str, flag: &str) -> Result<SocketAddr> {
    let addresses: Vec<SocketAddr> =
        text.to_socket_addrs().with_context(|| format!("{flag} {text}: not an address"))?.collect();
    ensure!(!addresses.is_empty(), "{flag} {text}: resolves to nothing");
    Ok(addresses[0])
}

/// CPU microseconds the switch (from its status, when it answers) and loadgen spent
/// since `before`, and the switch's longest pause. A failover in the run makes the
/// switch's CPU figure meaningless: none then.
fn cpu_used(admin: &admin::Admin, before: (Option<u64>, Option<f64>)) -> (Option<u64>, Option<u64>, Option<u64>) {
    let (daemon_cpu_us, pause_us_max) = admin.daemon_readings();
    let daemon = before.0.zip(daemon_cpu_us).and_then(|(start, end)| end.checked_sub(start));
    let own = before.1.zip(cpu::process_cpu_s()).map(|(start, end)| ((end - start).max(0.0) * 1e6) as u64);
    (daemon, own, pause_us_max)
}

/// A comma-separated list of addresses.
fn target_list(text: &str, flag: &str) -> Result<Vec<SocketAddr>> {
    text.split(',').map(|one| target(one.trim(), flag)).collect()
}

/// Three characters that differ between runs, so request keys never repeat across runs.
fn run_nonce() -> String {
    const ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut value = (nanos as u64) ^ (u64::from(std::process::id()) << 20);
    value ^= value >> 29;
    (0..3)
        .map(|_| {
            let c = ALPHABET[(value % 36) as usize] as char;
            value /= 36;
            c
        })
        .collect()
}

fn main() -> ExitCode {
    let args = Args::parse();
    match real_main(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("loadgen: error: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn real_main(args: Args) -> Result<ExitCode> {
    if args.mode == Mode::Qr {
        return qr_main(args);
    }
    if args.mode == Mode::Issuer {
        return issuer_main(args);
    }
    ensure!((1..=CONNECTIONS_MAX).contains(&args.connections), "--connections must be 1 to {CONNECTIONS_MAX}");
    ensure!((1..=64).contains(&args.threads), "--threads must be 1 to 64");
    ensure!((0.0..=1.0).contains(&args.hot_merchant), "--hot-merchant is a share between 0 and 1");
    ensure!(args.zipf_exponent > 0.0, "--zipf-exponent must be positive");
    let targets = target_list(&args.iso, "--iso")?;
    let https = target_list(&args.http, "--http")?;
    let (iso, http) = (targets[0], https[0]);
    let key_bytes = hex::decode(args.key.trim()).context("--key is not hex")?;
    let key = MacKey::new(&key_bytes).context("--key")?;
    let mix = Mix::parse(args.mix.as_deref())?;

    let (pacing, pacing_text, target_requests) = pacing(&args)?;
    let mut admin = admin::Admin::nodes(&https, &args.admin_token);
    let needs_admin = args.provision.is_some() || args.verify;
    if needs_admin {
        admin.health().with_context(|| format!("reaching the admin API at {http} (--http)"))?;
    }

    let (cards, default_amounts) = match args.provision {
        Some(count) => {
            ensure!(args.opening_balance >= 1.0 && args.opening_balance <= 1e15, "--opening-balance must be 1 to 1e15");
            ensure!(
                args.provision_bin.len() == 6 && args.provision_bin.bytes().all(|b| b.is_ascii_digit()),
                "--provision-bin must be 6 digits"
            );
            eprintln!("loadgen: provisioning {count} accounts and cards through the admin API at {http}...");
            let started = std::time::Instant::now();
            let mut last_report = std::time::Instant::now();
            let plan = admin::Provision {
                count,
                account_base: args.account_base,
                issuer: args.issuer,
                acquirer: args.acquirer_participant,
                opening_balance: args.opening_balance as u64,
                bin: &args.provision_bin,
            };
            let cards = admin.provision(&plan, &mut |done| {
                if last_report.elapsed() > Duration::from_secs(2) || done == count {
                    eprintln!("loadgen:   {done}/{count} provisioned");
                    last_report = std::time::Instant::now();
                }
            })?;
            eprintln!("loadgen: provisioned in {:.1} s", started.elapsed().as_secs_f64());
            (cards, (100, 20_000))
        }
        None => match args.hosted_cards {
            Some(count) => {
                ensure!((1..=traffic::PROVISION_CARDS_MAX).contains(&count), "--hosted-cards must be 1 to 1e9");
                ensure!(
                    (6..=11).contains(&args.hosted_bin.len()) && args.hosted_bin.bytes().all(|b| b.is_ascii_digit()),
                    "--hosted-bin must be 6 to 11 digits"
                );
                let cards = (0..count)
                    .map(|serial| traffic::Card {
                        pan: traffic::pan(&args.hosted_bin, serial),
                        issuer: args.issuer,
                        currency: args.hosted_currency,
                        opening_balance: args.balance as u64,
                    })
                    .collect();
                (cards, (100, 20_000))
            }
            None => (traffic::demo_cards(), (1, 10)),
        },
    };
    let (amount_min, amount_max) = match &args.amount {
        Some(text) => parse_range(text).context("--amount")?,
        None => default_amounts,
    };
    let chooser = match args.skew {
        Skew::Uniform => Chooser::Uniform,
        Skew::Zipf => Chooser::zipf(cards.len(), args.zipf_exponent),
    };
    let card_count = cards.len();
    let dataset = Dataset { cards, chooser, amount_min, amount_max };
    let duplicate_share = mix.share(Kind::Duplicate);
    let keep_for_duplicate =
        if duplicate_share > 0.0 { (3.0 * duplicate_share / (1.0 - duplicate_share).max(1e-3)).min(1.0) } else { 0.0 };

    let before = if args.verify {
        eprintln!("loadgen: --verify: reading positions before the run (valid only if loadgen is the only traffic)");
        Some(admin.positions(None).context("reading positions before the run")?)
    } else {
        None
    };
    let also = verify_also(&args)?;

    let plan = Plan {
        targets,
        institution: args.institution.clone(),
        key,
        connections: args.connections,
        pacing,
        timeout: args.timeout,
        dataset,
        mix,
        acquirer: args.acquirer_participant,
        hot_merchant_share: args.hot_merchant,
        merchants: args.merchants,
        nonce: run_nonce(),
        seed: args.seed,
        keep_for_duplicate,
        resend_excluded: args.resend_exclude.iter().map(|m| m.trim().to_string()).collect(),
        record: args.record.as_deref().map(connection::Record::create).transpose()?.map(Arc::new),
    };
    let record = plan.record.clone();
    eprintln!(
        "loadgen: iso8583 to {iso}: {pacing_text}, {} connection(s), {} card(s) ({}), mix {}",
        args.connections,
        card_count,
        match args.skew {
            Skew::Uniform => "uniform".to_string(),
            Skew::Zipf => format!("zipf {}", args.zipf_exponent),
        },
        plan.mix.shares().iter().map(|(k, s)| format!("{}={:.0}%", k.name(), s * 100.0)).collect::<Vec<_>>().join(",")
    );
    let options = run::Options { threads: args.threads, tick: Duration::from_micros(args.tick_us), quiet: args.quiet };
    let cpu_before = (admin.daemon_readings().0, cpu::process_cpu_s());
    let outcome = run::run(plan, &options)?;
    let (daemon_cpu_us, loadgen_cpu_us, daemon_pause_us_max) = cpu_used(&admin, cpu_before);
    if let (Some(record), Some(path)) = (record, &args.record) {
        record.finish()?;
        eprintln!("loadgen: recorded the answers in {}", path.display());
    }

    let context = report::Context {
        daemon_cpu_us,
        loadgen_cpu_us,
        daemon_pause_us_max,
        mode: "iso8583".into(),
        pacing: pacing_text,
        connections: args.connections,
        target_requests,
        threads: args.threads,
    };
    conclude(&args, &mut admin, before.as_ref(), &also, &outcome, context)
}

/// QR mode: signed direct payments to the QR gateway as a wallet (see `qr.rs`).
fn qr_main(args: Args) -> Result<ExitCode> {
    ensure!((1..=CONNECTIONS_MAX).contains(&args.connections), "--connections must be 1 to {CONNECTIONS_MAX}");
    ensure!((1..=64).contains(&args.threads), "--threads must be 1 to 64");
    ensure!(args.provision.is_none(), "--provision is for the ISO 8583 mode's cards; QR mode pays as --wallet");
    let http = target(&args.http, "--http")?;
    let demo = qr::DEMO_WALLETS.iter().find(|(id, _, _)| *id == args.wallet);
    let key_text = match (&args.wallet_key, demo) {
        (Some(key), _) => key.clone(),
        (None, Some((_, key, _))) => (*key).to_string(),
        (None, None) => bail!("--wallet {} is not a demo wallet: give its --wallet-key", args.wallet),
    };
    let key = hex::decode(key_text.trim()).context("--wallet-key is not hex")?;
    let payer_currency = match (&args.payer_currency, demo) {
        (Some(currency), _) => currency.trim().to_ascii_uppercase(),
        (None, Some((_, _, currency))) => (*currency).to_string(),
        (None, None) => bail!("--wallet {} is not a demo wallet: give its --payer-currency", args.wallet),
    };
    ensure!(
        !args.verify || qr::currency_numeric(&payer_currency).is_some(),
        "--verify does not know the currency {payer_currency}"
    );
    let mix = Mix::parse(args.mix.as_deref())?;
    let duplicate_share = mix.share(Kind::Duplicate);
    let keep_for_duplicate =
        if duplicate_share > 0.0 { (3.0 * duplicate_share / (1.0 - duplicate_share).max(1e-3)).min(1.0) } else { 0.0 };
    let (amount_min, amount_max) = match &args.amount {
        Some(text) => parse_range(text).context("--amount")?,
        None => (100, 5_000),
    };
    let (pacing, pacing_text, target_requests) = pacing(&args)?;
    let pacing_text = match &pacing {
        Pacing::Closed { .. } => {
            format!("{pacing_text} (QR: one request in flight per connection, so {} in flight)", args.connections)
        }
        Pacing::Open(_) => pacing_text,
    };
    let mut admin = admin::Admin::new(http, &args.admin_token);
    let before = if args.verify {
        admin.health().with_context(|| format!("reaching the admin API at {http} (--http)"))?;
        eprintln!("loadgen: --verify: reading positions before the run (valid only if loadgen is the only traffic)");
        Some(admin.positions(None).context("reading positions before the run")?)
    } else {
        None
    };
    let also = verify_also(&args)?;
    let merchants = qr::demo_merchants()?;
    let nonce = format!(
        "{}{:x}",
        run_nonce(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    );
    eprintln!(
        "loadgen: qr to {http}: {pacing_text}, {} connection(s), wallet {} paying in {payer_currency}, merchants {}, \
         duplicates {:.0}%",
        args.connections,
        args.wallet,
        merchants.iter().map(|m| format!("{} {}", m.name, m.currency)).collect::<Vec<_>>().join(", "),
        duplicate_share * 100.0
    );
    let plan = qr::QrPlan {
        http,
        wallet: args.wallet,
        key,
        payer_currency,
        fx_provider: args.fx_provider,
        merchants,
        connections: args.connections,
        pacing,
        timeout: args.timeout,
        amount_min,
        amount_max,
        duplicate_share,
        keep_for_duplicate,
        nonce,
        seed: args.seed,
    };
    let options = run::Options { threads: args.threads, tick: Duration::from_micros(args.tick_us), quiet: args.quiet };
    let cpu_before = (admin.daemon_readings().0, cpu::process_cpu_s());
    let outcome = qr::run(plan, &options)?;
    let (daemon_cpu_us, loadgen_cpu_us, daemon_pause_us_max) = cpu_used(&admin, cpu_before);
    let context = report::Context {
        daemon_cpu_us,
        loadgen_cpu_us,
        daemon_pause_us_max,
        mode: "qr".into(),
        pacing: pacing_text,
        connections: args.connections,
        target_requests,
        threads: args.threads,
    };
    conclude(&args, &mut admin, before.as_ref(), &also, &outcome, context)
}

/// Issuer-host mode: answers what the switch forwards until --duration has passed.
fn issuer_main(args: Args) -> Result<ExitCode> {
    ensure!((1..=64).contains(&args.connections), "--connections must be 1 to 64 in issuer mode");
    ensure!((0.0..=1.0).contains(&args.approve), "--approve is a share between 0 and 1");
    let iso = target(&args.iso, "--iso")?;
    let http = target(&args.http, "--http")?;
    let key = MacKey::new(&hex::decode(args.key.trim()).context("--key is not hex")?).context("--key")?;
    let (low, high) = args.latency.split_once(':').context("--latency is MIN:MAX, e.g. 1ms:5ms")?;
    let latency = (parse_duration_or_zero(low)?, parse_duration_or_zero(high)?);
    ensure!(latency.0 <= latency.1, "--latency: MIN must not exceed MAX");
    let outage = match &args.outage {
        Some(text) => {
            let (at, length) = text.split_once(':').context("--outage is AT:LENGTH, e.g. 10s:5s")?;
            Some(issuer::Outage {
                at: parse_duration_or_zero(at)?,
                length: parse_duration(length)?,
                kind: args.outage_kind,
            })
        }
        None => None,
    };
    let plan = issuer::IssuerPlan {
        iso,
        institution: args.institution.clone(),
        key,
        connections: args.connections,
        duration: args.duration.unwrap_or(Duration::from_secs(10)),
        approve: args.approve,
        latency,
        balance: args.balance as u64,
        outage,
        seed: args.seed,
        quiet: args.quiet,
    };
    let mut admin = admin::Admin::new(http, &args.admin_token);
    if args.verify {
        admin.health().with_context(|| format!("reaching the admin API at {http} (--http)"))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(issuer::run(plan, args.verify.then_some(&admin), args.issuer))?;
    print!("{}", issuer::render(&report));
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).context("encoding the JSON report")?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    if report.verify.as_ref().is_some_and(|v| !v.passed) {
        eprintln!("loadgen: CHECK FAILED: the issuer's position differs from what it approved and was advised");
        return Ok(ExitCode::from(EXIT_CHECK_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

/// A duration, where 0 (with or without a unit) is allowed.
fn parse_duration_or_zero(text: &str) -> Result<Duration> {
    let digits = text.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if digits.parse::<f64>().is_ok_and(|v| v == 0.0) {
        return Ok(Duration::ZERO);
    }
    parse_duration(text)
}

/// --verify-also's nodes and their positions before the run.
fn verify_also(args: &Args) -> Result<Vec<(admin::Admin, admin::Snapshot)>> {
    let Some(list) = args.verify_also.as_deref().filter(|_| args.verify) else { return Ok(Vec::new()) };
    let mut also = Vec::new();
    for address in target_list(list, "--verify-also")? {
        let admin = admin::Admin::nodes(&[address], &args.admin_token);
        let before = admin.positions(None).with_context(|| format!("reading positions at {address} before the run"))?;
        also.push((admin, before));
    }
    Ok(also)
}

/// Verifies (with --verify), prints and writes the report, and picks the exit status.
fn conclude(
    args: &Args,
    admin: &mut admin::Admin,
    before: Option<&admin::Snapshot>,
    also: &[(admin::Admin, admin::Snapshot)],
    outcome: &run::Outcome,
    context: report::Context,
) -> Result<ExitCode> {
    let verify_outcome = match before {
        Some(before) => {
            let counters = &outcome.counters;
            let mut doubts = Vec::new();
            if counters.timeouts_total() > 0 {
                doubts.push(format!("{} request(s) timed out", counters.timeouts_total()));
            }
            if counters.lost > 0 {
                doubts.push(format!("{} request(s) were lost with their connection", counters.lost));
            }
            // After a failover the serving node is another one.
            admin.health().context("finding the switch's serving node after the run")?;
            let (windows, mut change) =
                verify::ledger_change(admin, before).context("reading positions after the run")?;
            for (other, before) in also {
                let (_, more) = verify::ledger_change(other, before).context("reading --verify-also's positions")?;
                for (key, delta) in more {
                    change.entry(key).or_default().add(&delta);
                }
            }
            let inconclusive = (!doubts.is_empty())
                .then(|| format!("{}: their outcome is unknown, so the totals cannot be exact", doubts.join(", ")));
            Some(verify::compare(&counters.positions, windows, &change, inconclusive))
        }
        None => None,
    };

    let report = report::build(context, outcome, verify_outcome);
    print!("{}", report::render(&report));
    if let Some(outcome) = &report.verify {
        print!("{}", verify::render(outcome));
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).context("encoding the JSON report")?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("loadgen: report written to {}", path.display());
    }
    if let Some(path) = &args.plot {
        if let Err(error) = plot::write_reporting(&report, path) {
            eprintln!("loadgen: {error:#}");
        }
    }

    // A resend answered differently from its original is a broken promise of the switch:
    // always a failure, with or without --verify.
    let mut failures = Vec::new();
    if report.duplicates.mismatched > 0 {
        failures.push(format!("{} duplicate(s) did not get their original's answer", report.duplicates.mismatched));
    }
    if args.verify {
        if report.verify.as_ref().is_some_and(|v| !v.passed) {
            failures.push("the ledger's positions differ from the approvals seen (or cannot be compared)".to_string());
        }
        let must: u64 = report.must_decline.values().map(|m| m.mismatched).sum();
        if must > 0 {
            failures.push(format!("{must} request(s) that must decline got another code"));
        }
    }
    if !failures.is_empty() {
        eprintln!("loadgen: CHECK FAILED: {}", failures.join("; "));
        return Ok(ExitCode::from(EXIT_CHECK_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

/// The pacing of the run, a description, and the requests due (open loop).
fn pacing(args: &Args) -> Result<(Pacing, String, Option<u64>)> {
    let duration = args.duration;
    let seconds = |default_s: f64| duration.map_or(default_s, |d| d.as_secs_f64());
    if let Some(rate) = args.rate {
        let duration_s = seconds(10.0);
        let schedule = Schedule::fixed(rate, duration_s)?;
        check_rate(schedule.peak_rate(), args.connections)?;
        let total = schedule.total_requests();
        return Ok((Pacing::Open(schedule), format!("open loop, fixed {rate:.0}/s for {duration_s} s"), Some(total)));
    }
    if let Some(ramp) = &args.ramp {
        let (from, to) = parse_ramp(ramp)?;
        let duration_s = seconds(10.0);
        let schedule = Schedule::ramp(from, to, duration_s)?;
        check_rate(schedule.peak_rate(), args.connections)?;
        let total = schedule.total_requests();
        let text = format!("open loop, ramp {from:.0}/s to {to:.0}/s over {duration_s} s");
        return Ok((Pacing::Open(schedule), text, Some(total)));
    }
    if let Some(Profile::PeakDay) = args.profile {
        let duration_s = seconds(DAY_S / args.compress.max(1.0));
        let schedule = Schedule::peak_day(args.day_volume, args.compress, duration_s)?;
        check_rate(schedule.peak_rate(), args.connections)?;
        let total = schedule.total_requests();
        let text = format!(
            "open loop, peak-day profile {:.3e}/day compressed {}x (peak {:.0}/s) for {duration_s:.1} s",
            args.day_volume,
            args.compress,
            schedule.peak_rate()
        );
        return Ok((Pacing::Open(schedule), text, Some(total)));
    }
    if args.closed_loop {
        ensure!(args.in_flight >= 1, "--in-flight must be at least 1");
        let duration = duration.unwrap_or(Duration::from_secs(10));
        let connections = args.connections as usize;
        let window_per_connection: Vec<usize> = (0..connections)
            .map(|c| args.in_flight / connections + usize::from(c < args.in_flight % connections))
            .collect();
        let text = format!("closed loop, {} in flight for {} s", args.in_flight, duration.as_secs_f64());
        return Ok((Pacing::Closed { window_per_connection, duration }, text, None));
    }
    bail!("choose a pacing: --rate N, --ramp FROM:TO, --profile peak-day, or --closed-loop")
}

/// Keys stay unique only if no connection sends a million requests in one second.
fn check_rate(peak: f64, connections: u32) -> Result<()> {
    let per_connection = peak / f64::from(connections);
    ensure!(
        per_connection < f64::from(message::STAN_MODULUS) / 2.0,
        "{peak:.0}/s over {connections} connection(s) is {per_connection:.0}/s each: STANs would repeat within a \
         second; use more --connections"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20s").expect("valid"), Duration::from_secs(20));
        assert_eq!(parse_duration("500ms").expect("valid"), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").expect("valid"), Duration::from_secs(120));
        assert_eq!(parse_duration("3").expect("valid"), Duration::from_secs(3));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn targets_are_any_addresses_and_lists_of_them() {
        assert!(target("127.0.0.1:8583", "--iso").is_ok());
        assert!(target("[::1]:8583", "--iso").is_ok());
        assert_eq!(target("10.1.2.3:8583", "--iso").unwrap().to_string(), "10.1.2.3:8583");
        assert!(target("not an address", "--iso").is_err());
        assert_eq!(target_list("127.0.0.1:8583, 127.0.0.1:8593", "--iso").unwrap().len(), 2);
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
