//! Issuer-host mode (`--mode issuer`): loadgen plays a card issuer's host. It connects to
//! the switch's ISO 8583 port, signs on as the issuer (its institution id and MAC key) on
//! `--connections` links, and answers what the switch forwards:
//!
//! - 0100/0200: approved (00, with an authorization code) with probability `--approve`,
//!   else 05; an amount above `--balance` gets 51; a balance inquiry gets 00 and field 54.
//!   Each answer waits a delay drawn from `--latency MIN:MAX`.
//! - 0400/0420 reversals: 00 when the original (field 90) is one it approved, 25 when it
//!   does not know the original.
//! - 0120/0220/0420 advices of the switch's stand-in decisions: acknowledged (0130, 0230,
//!   0430). A resent advice is recognised by its field 90 and counted once.
//! - 0800 echoes: 0810.
//!
//! `--outage AT:LENGTH` makes the host go away for a while (`--outage-kind silent`: it
//! stops answering anything, echoes included; `disconnect`: it closes its links and signs
//! on again afterwards), so the switch stands in.
//!
//! At the end it prints what it saw. With `--verify` it compares the issuer's position
//! change at the switch with what it approved itself and what the advices told it: the
//! four-party check, run next to an acquirer-mode loadgen with `--verify` of its own.

use crate::admin::{Admin, Snapshot};
use crate::message::{Stamp, STAN_MODULUS};
use crate::traffic::currency_code;
use crate::verify;
use anyhow::{bail, Context, Result};
use junction_wire::iso8583::{mac, next_frame, Iso8583Message, MacKey};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// How long a sign-on may take.
const SIGN_ON_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `--verify` waits at the end for the switch to deliver its last advices.
const ADVICES_DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutageKind {
    /// The host keeps its connections but answers nothing, echoes included.
    Silent,
    /// The host closes its links, and signs on again when the outage ends.
    Disconnect,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Outage {
    pub at: Duration,
    pub length: Duration,
    pub kind: OutageKind,
}

pub struct IssuerPlan {
    pub iso: SocketAddr,
    pub institution: String,
    pub key: MacKey,
    pub connections: u32,
    pub duration: Duration,
    pub approve: f64,
    pub latency: (Duration, Duration),
    pub balance: u64,
    pub outage: Option<Outage>,
    pub seed: u64,
    pub quiet: bool,
}

/// What one original request became, by its identity (field 90 of what refers to it).
#[derive(Clone, Copy, Debug, Default)]
struct Original {
    /// 0100 authorization, 0200 purchase (processing 00) or refund (20).
    kind: OriginalKind,
    currency: u16,
    amount: u64,
    /// Approved by this host, or by the switch standing in (an advice said 00).
    approved: bool,
    reversed: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum OriginalKind {
    #[default]
    Authorization,
    Purchase,
    Refund,
}

/// Counters of the run; `originals` holds what money moved by the issuer's account.
#[derive(Default)]
struct Tally {
    received_by_mti: BTreeMap<String, u64>,
    approved: u64,
    declined: u64,
    reversals_approved: u64,
    reversals_unknown: u64,
    advices: u64,
    advices_repeated: u64,
    stand_in_approved: u64,
    stand_in_declined: u64,
    echoes: u64,
    ignored_in_outage: u64,
    bad_messages: u64,
    reconnects: u64,
    originals: HashMap<String, Original>,
    advices_seen: std::collections::HashSet<String>,
}

#[derive(Debug, Serialize)]
pub struct IssuerReport {
    pub connections: u32,
    pub duration_s: f64,
    pub received_by_mti: BTreeMap<String, u64>,
    pub approved: u64,
    pub declined: u64,
    pub reversals_approved: u64,
    pub reversals_unknown: u64,
    pub advices: u64,
    pub advices_repeated: u64,
    pub stand_in_approved: u64,
    pub stand_in_declined: u64,
    pub echoes: u64,
    pub ignored_in_outage: u64,
    pub bad_messages: u64,
    pub reconnects: u64,
    /// What the issuer owes net by currency (debits minus credits of its position), as it
    /// saw it.
    pub owed_minor: BTreeMap<String, i128>,
    pub authorizations_approved: u64,
    pub verify: Option<IssuerVerify>,
}

#[derive(Debug, Serialize)]
pub struct IssuerVerify {
    pub passed: bool,
    pub inconclusive: Option<String>,
    /// Currency, what the issuer saw, what the ledger shows (net debit of its position).
    pub rows: Vec<(String, String, String)>,
}

/// The identity of an original request: field 90's layout of its MTI, STAN, time,
/// acquirer and forwarder.
fn identity(message: &Iso8583Message) -> String {
    format!(
        "{:0>4}{:0>6}{:0>10}{:0>11}{:0>11}",
        message.mti(),
        message.get(11).unwrap_or("0"),
        message.get(7).unwrap_or("0"),
        message.get(32).unwrap_or("0"),
        message.get(33).unwrap_or("0"),
    )
}

struct Shared {
    plan: IssuerPlan,
    tally: std::sync::Mutex<Tally>,
    started: Instant,
}

impl Shared {
    fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the host is in its outage now.
    fn in_outage(&self) -> bool {
        self.plan.outage.is_some_and(|o| {
            let elapsed = self.started.elapsed();
            elapsed >= o.at && elapsed < o.at + o.length
        })
    }
}

pub async fn run(plan: IssuerPlan, admin: Option<&Admin>, participant: u64) -> Result<IssuerReport> {
    let before: Option<Snapshot> = match admin {
        Some(admin) => Some(admin.positions(None).context("reading positions before the run")?),
        None => None,
    };
    let shared = Arc::new(Shared { plan, tally: Default::default(), started: Instant::now() });
    let plan = &shared.plan;
    eprintln!(
        "loadgen: issuer host {} on {} link(s) to {}: approve {:.0}%, latency {:?}..{:?}, balance {}{}",
        plan.institution,
        plan.connections,
        plan.iso,
        plan.approve * 100.0,
        plan.latency.0,
        plan.latency.1,
        plan.balance,
        plan.outage.map_or(String::new(), |o| format!(", outage {:?} at {:?} for {:?}", o.kind, o.at, o.length)),
    );
    let mut links = Vec::new();
    for index in 0..plan.connections {
        links.push(tokio::spawn(link_task(Arc::clone(&shared), index)));
    }
    let deadline = shared.started + plan.duration;
    let mut last_report = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if links.iter().all(|l| l.is_finished()) {
            for link in links.drain(..) {
                link.await.context("an issuer link task failed")??;
            }
            bail!("every issuer link ended before the run's end");
        }
        if !plan.quiet && last_report.elapsed() > Duration::from_secs(2) {
            let tally = shared.tally();
            eprintln!(
                "loadgen: issuer {:>5.1} s: {} approved, {} declined, {} reversals, {} advices ({} repeated)",
                shared.started.elapsed().as_secs_f64(),
                tally.approved,
                tally.declined,
                tally.reversals_approved,
                tally.advices,
                tally.advices_repeated
            );
            last_report = Instant::now();
        }
    }
    let verify = match (admin, before) {
        (Some(admin), Some(before)) => {
            // The switch sends its last advices once it has a link: keep serving until it
            // has none left.
            let drain_deadline = Instant::now() + ADVICES_DRAIN_TIMEOUT;
            let mut outstanding = admin.metric("junction_advices_outstanding").unwrap_or(None);
            while outstanding.is_some_and(|n| n > 0.0) && Instant::now() < drain_deadline {
                tokio::time::sleep(Duration::from_millis(250)).await;
                outstanding = admin.metric("junction_advices_outstanding").unwrap_or(None);
            }
            let (_, change) = verify::ledger_change(admin, &before).context("reading positions after the run")?;
            let tally = shared.tally();
            let owed = owed(&tally);
            let mut rows = Vec::new();
            let mut passed = true;
            let mut currencies: Vec<String> = owed.keys().cloned().collect();
            for (p, currency) in change.keys() {
                if *p == participant && !currencies.contains(currency) {
                    currencies.push(currency.clone());
                }
            }
            for currency in currencies {
                let seen = owed.get(&currency).copied().unwrap_or(0);
                let ledger = change
                    .get(&(participant, currency.clone()))
                    .map_or(0, |d| d.debits_minor as i128 - d.credits_minor as i128);
                passed &= seen == ledger;
                rows.push((currency, seen.to_string(), ledger.to_string()));
            }
            let mut doubts = Vec::new();
            if tally.originals.values().any(|o| o.kind == OriginalKind::Authorization && o.approved) {
                doubts.push("authorizations were approved: their completions are booked by the switch without asking the issuer, so the issuer cannot count them".to_string());
            }
            if outstanding.is_some_and(|n| n > 0.0) {
                doubts.push(format!("{} advice(s) still outstanding at the switch", outstanding.unwrap_or(0.0)));
            }
            let inconclusive = (!doubts.is_empty()).then(|| doubts.join("; "));
            Some(IssuerVerify { passed: passed && inconclusive.is_none(), inconclusive, rows })
        }
        _ => None,
    };
    for link in links {
        link.abort();
    }
    let tally = shared.tally();
    Ok(IssuerReport {
        connections: shared.plan.connections,
        duration_s: shared.started.elapsed().as_secs_f64(),
        received_by_mti: tally.received_by_mti.clone(),
        approved: tally.approved,
        declined: tally.declined,
        reversals_approved: tally.reversals_approved,
        reversals_unknown: tally.reversals_unknown,
        advices: tally.advices,
        advices_repeated: tally.advices_repeated,
        stand_in_approved: tally.stand_in_approved,
        stand_in_declined: tally.stand_in_declined,
        echoes: tally.echoes,
        ignored_in_outage: tally.ignored_in_outage,
        bad_messages: tally.bad_messages,
        reconnects: tally.reconnects,
        owed_minor: owed(&tally),
        authorizations_approved: tally
            .originals
            .values()
            .filter(|o| o.kind == OriginalKind::Authorization && o.approved)
            .count() as u64,
        verify,
    })
}

/// Net debit of the issuer's position by currency, from what it approved and what the
/// advices told it.
fn owed(tally: &Tally) -> BTreeMap<String, i128> {
    let mut owed = BTreeMap::new();
    for original in tally.originals.values() {
        if !original.approved || original.reversed {
            continue;
        }
        let amount = i128::from(original.amount);
        let signed = match original.kind {
            OriginalKind::Authorization => 0,
            OriginalKind::Purchase => amount,
            OriginalKind::Refund => -amount,
        };
        *owed.entry(currency_code(original.currency).to_string()).or_insert(0) += signed;
    }
    owed
}

/// One link: signs on, answers, and (with a disconnect outage) goes away and comes back.
async fn link_task(shared: Arc<Shared>, index: u32) -> Result<()> {
    let mut rng = SmallRng::seed_from_u64(shared.plan.seed ^ (u64::from(index) << 32));
    let mut first = true;
    loop {
        if let Some(outage) = shared.plan.outage.filter(|o| o.kind == OutageKind::Disconnect) {
            let elapsed = shared.started.elapsed();
            if elapsed >= outage.at && elapsed < outage.at + outage.length {
                tokio::time::sleep(outage.at + outage.length - elapsed).await;
            }
        }
        if shared.started.elapsed() >= shared.plan.duration + ADVICES_DRAIN_TIMEOUT {
            return Ok(());
        }
        let stream = match sign_on(&shared.plan, &mut rng).await {
            Ok(stream) => stream,
            Err(error) if first => return Err(error),
            Err(error) => {
                eprintln!("loadgen: issuer link {index}: {error:#}; trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if !first {
            shared.tally().reconnects += 1;
        }
        first = false;
        serve(&shared, stream, &mut rng).await;
    }
}

async fn sign_on(plan: &IssuerPlan, rng: &mut SmallRng) -> Result<TcpStream> {
    let mut stream = tokio::time::timeout(SIGN_ON_TIMEOUT, TcpStream::connect(plan.iso))
        .await
        .context("connecting timed out")?
        .with_context(|| format!("connecting to {}", plan.iso))?;
    stream.set_nodelay(true)?;
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut message = Iso8583Message::new("0800")?;
    message.set(7, &Stamp::of(now_s).transmission)?;
    message.set(11, &format!("{:06}", rng.gen_range(0..STAN_MODULUS)))?;
    message.set(32, &plan.institution)?;
    message.set(70, "001")?;
    mac::sign(&mut message, &plan.key);
    let mut out = Vec::new();
    message.encode_framed(&mut out)?;
    stream.write_all(&out).await?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let answer = tokio::time::timeout(SIGN_ON_TIMEOUT, async {
        loop {
            if let Some((raw, _)) = next_frame(&buffer)? {
                return Ok::<_, anyhow::Error>(Iso8583Message::decode(raw)?);
            }
            let read = stream.read(&mut chunk).await?;
            if read == 0 {
                bail!("the switch closed the connection during sign-on");
            }
            buffer.extend_from_slice(&chunk[..read]);
        }
    })
    .await
    .context("no answer to the sign-on")??;
    if answer.mti() != "0810" || answer.get(39) != Some("00") {
        bail!(
            "sign-on as issuer {} refused ({} {}): check --institution and --key",
            plan.institution,
            answer.mti(),
            answer.get(39).unwrap_or("--")
        );
    }
    Ok(stream)
}

/// Reads what the switch sends on one link and answers it, until the link closes (or a
/// disconnect outage begins).
async fn serve(shared: &Arc<Shared>, stream: TcpStream, rng: &mut SmallRng) {
    let (mut reader, mut writer) = stream.into_split();
    let (sender, mut receiver) = mpsc::channel::<Vec<u8>>(65_536);
    let writer_task = tokio::spawn(async move {
        while let Some(mut bytes) = receiver.recv().await {
            while let Ok(more) = receiver.try_recv() {
                bytes.extend_from_slice(&more);
            }
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut buffer = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let disconnect_at = shared.plan.outage.filter(|o| o.kind == OutageKind::Disconnect).map(|o| o.at);
    loop {
        let read = match disconnect_at.map(|at| at.saturating_sub(shared.started.elapsed())) {
            Some(left) if left.is_zero() && shared.in_outage() => break,
            Some(left) if !left.is_zero() => match tokio::time::timeout(left, reader.read(&mut chunk)).await {
                Ok(read) => read,
                Err(_) => break,
            },
            _ => reader.read(&mut chunk).await,
        };
        let read = match read {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        buffer.extend_from_slice(&chunk[..read]);
        let mut consumed = 0;
        while let Ok(Some((raw, size))) = next_frame(&buffer[consumed..]) {
            consumed += size;
            let message = match mac::decode_verified(raw, &shared.plan.key) {
                Ok(message) => message,
                Err(_) => {
                    shared.tally().bad_messages += 1;
                    continue;
                }
            };
            if shared.in_outage() {
                shared.tally().ignored_in_outage += 1;
                continue;
            }
            if let Some((answer, delay)) = decide(shared, &message, rng) {
                let mut answer = answer;
                let mut out = Vec::new();
                if mac::sign_framed(&mut answer, &shared.plan.key, &mut out).is_err() {
                    continue;
                }
                if delay.is_zero() {
                    let _ = sender.try_send(out);
                } else {
                    let sender = sender.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = sender.send(out).await;
                    });
                }
            }
        }
        buffer.drain(..consumed);
    }
    drop(sender);
    let _ = writer_task.await;
}

/// The answer to one message from the switch, and how long to wait before sending it.
fn decide(shared: &Shared, message: &Iso8583Message, rng: &mut SmallRng) -> Option<(Iso8583Message, Duration)> {
    let plan = &shared.plan;
    let mti = message.mti().to_string();
    let mut tally = shared.tally();
    *tally.received_by_mti.entry(mti.clone()).or_insert(0) += 1;
    let respond = |code: &str| -> Option<Iso8583Message> {
        let mut mti_bytes = mti.clone().into_bytes();
        mti_bytes[2] += 1;
        let mut answer = Iso8583Message::new(std::str::from_utf8(&mti_bytes).ok()?).ok()?;
        answer.copy_fields(message, &[2, 3, 4, 7, 11, 12, 13, 32, 33, 37, 41, 42, 49, 70, 90]);
        let _ = answer.set(39, code);
        Some(answer)
    };
    let delay = || {
        let (low, high) = plan.latency;
        if high <= low {
            low
        } else {
            Duration::from_nanos(rand::thread_rng().gen_range(low.as_nanos() as u64..=high.as_nanos() as u64))
        }
    };
    match mti.as_str() {
        "0800" => {
            tally.echoes += 1;
            Some((respond("00")?, Duration::ZERO))
        }
        "0100" | "0200" => {
            let processing = message.get(3).unwrap_or("000000");
            let amount: u64 = message.get(4).and_then(|a| a.parse().ok()).unwrap_or(0);
            let currency: u16 = message.get(49).and_then(|c| c.parse().ok()).unwrap_or(0);
            if processing.starts_with("30") || processing.starts_with("31") {
                let mut answer = respond("00")?;
                let _ = answer.set(54, &format!("0002{currency:03}C{:012}", plan.balance));
                return Some((answer, delay()));
            }
            let kind = match (mti.as_str(), processing.get(..2)) {
                ("0100", _) => OriginalKind::Authorization,
                (_, Some("20")) => OriginalKind::Refund,
                _ => OriginalKind::Purchase,
            };
            let approve = amount <= plan.balance && rng.gen_bool(plan.approve.clamp(0.0, 1.0));
            let code = if amount > plan.balance {
                "51"
            } else if approve {
                "00"
            } else {
                "05"
            };
            let entry = tally.originals.entry(identity(message)).or_default();
            entry.kind = kind;
            entry.currency = currency;
            entry.amount = amount;
            entry.approved |= approve;
            if approve {
                tally.approved += 1;
            } else {
                tally.declined += 1;
            }
            let mut answer = respond(code)?;
            if approve {
                let _ = answer.set(38, &format!("{:06}", rng.gen_range(0..1_000_000)));
            }
            Some((answer, delay()))
        }
        "0400" | "0420" if !message.contains(39) => {
            let original = message.get(90).unwrap_or("").to_string();
            let code = match tally.originals.get_mut(&original) {
                Some(entry) if entry.approved => {
                    if !entry.reversed {
                        tally.reversals_approved += 1;
                    }
                    if let Some(entry) = tally.originals.get_mut(&original) {
                        entry.reversed = true;
                    }
                    "00"
                }
                _ => {
                    tally.reversals_unknown += 1;
                    "25"
                }
            };
            Some((respond(code)?, delay()))
        }
        // Advices of the switch's stand-in decisions (a 0420 advice carries field 39).
        "0120" | "0220" | "0420" => {
            tally.advices += 1;
            let original = message.get(90).unwrap_or("").to_string();
            let fresh = tally.advices_seen.insert(format!("{mti}{original}"));
            if !fresh {
                tally.advices_repeated += 1;
                return Some((respond("00")?, Duration::ZERO));
            }
            let approved = message.get(39) == Some("00");
            if approved {
                tally.stand_in_approved += 1;
            } else {
                tally.stand_in_declined += 1;
            }
            if mti == "0420" {
                if approved {
                    tally.originals.entry(original).or_default().reversed = true;
                }
            } else {
                let amount: u64 = message.get(4).and_then(|a| a.parse().ok()).unwrap_or(0);
                let currency: u16 = message.get(49).and_then(|c| c.parse().ok()).unwrap_or(0);
                let kind = match (mti.as_str(), message.get(3).and_then(|p| p.get(..2))) {
                    ("0120", _) => OriginalKind::Authorization,
                    (_, Some("20")) => OriginalKind::Refund,
                    _ => OriginalKind::Purchase,
                };
                let entry = tally.originals.entry(original).or_default();
                entry.kind = kind;
                entry.amount = amount;
                entry.currency = currency;
                entry.approved |= approved;
            }
            Some((respond("00")?, Duration::ZERO))
        }
        _ => None,
    }
}

pub fn render(report: &IssuerReport) -> String {
    use std::fmt::Write;
    let mut w = String::new();
    let _ = writeln!(w, "issuer host: {} link(s), {:.1} s", report.connections, report.duration_s);
    let received: Vec<String> = report.received_by_mti.iter().map(|(m, n)| format!("{m} {n}")).collect();
    let _ = writeln!(w, "  received            {}", received.join(", "));
    let _ = writeln!(w, "  approved            {}  declined {}", report.approved, report.declined);
    let _ = writeln!(
        w,
        "  reversals approved  {}  original unknown {}",
        report.reversals_approved, report.reversals_unknown
    );
    let _ = writeln!(
        w,
        "  advices             {} ({} repeated: the same decision sent again), stand-in approvals {}, declines {}",
        report.advices, report.advices_repeated, report.stand_in_approved, report.stand_in_declined
    );
    let _ = writeln!(
        w,
        "  echoes              {}  ignored in outage {}  reconnects {}",
        report.echoes, report.ignored_in_outage, report.reconnects
    );
    if report.bad_messages > 0 {
        let _ = writeln!(w, "  bad messages        {} (MAC or format)", report.bad_messages);
    }
    for (currency, owed) in &report.owed_minor {
        let _ = writeln!(
            w,
            "  owed net            {currency} {owed} minor units (approved purchases minus refunds and reversals)"
        );
    }
    if let Some(verify) = &report.verify {
        let _ = writeln!(w, "verify (issuer): {}", if verify.passed { "PASSED" } else { "FAILED" });
        if let Some(why) = &verify.inconclusive {
            let _ = writeln!(w, "  inconclusive: {why}");
        }
        for (currency, seen, ledger) in &verify.rows {
            let _ = writeln!(w, "  {currency}: issuer saw net {seen}, ledger shows net {ledger}");
        }
    }
    w
}
