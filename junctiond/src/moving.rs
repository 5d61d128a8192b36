//! Moving an issuer to another partition of the switch (rebalancing), without losing or
//! doubling a payment.
//!
//! `junction cluster move <issuer> <partition>` marks the issuer moving in the map
//! (`cluster.rs`, `Placement::moving_to`). From then on:
//!
//! 1. **Doors hold its requests.** Every door sends the issuer's requests through NATS and
//!    waits while the map says it moves (reading the map again before each attempt), up
//!    to `cluster.request_timeout_ms`; a partition that no longer owns the issuer answers
//!    "moved" and the door looks again. Nothing new of the issuer is booked meanwhile.
//! 2. **The old owner drains.** Its primary (this file) closes the gate once: every
//!    request whose partition was decided before the move is in the engine. Then its
//!    shards finish what they were sent, and it waits until the issuer's accounts stay
//!    still (`QUIET`).
//! 3. **Hand-over.** For each of the issuer's accounts, what is available moves to the
//!    issuer's position account (`Engine::hand_out`, a journaled, replicated transfer
//!    whose id is derived from the move and the account: a primary that takes over the
//!    move moves nothing twice). The accounts, those amounts and the cards (PAN keys, never
//!    numbers) go to the new owner's primary over NATS request/reply
//!    (`<bucket>.<partition>.handover`), which provisions them and books each amount in
//!    (`Engine::hand_in`, the same transfer id: a resend books nothing twice) before it
//!    answers. Holds stay where they were placed.
//! 4. **The map switches.** The issuer is the new partition's, `moved_from` the old one.
//!    For `cluster.moved_lookback_s` the new owner first asks the old one about each of
//!    the issuer's requests: a resend of what the old one answered, or a completion or
//!    reversal of what it booked, is answered there (against its books, where the hold
//!    or the purchase is); anything else is booked by the new owner.
//!
//! Every step can be repeated: a primary killed mid-move is replaced by its standby,
//! which sees the move in the map and runs it again.
//!
//! **Sweeps.** What the old owner books for a moved issuer afterwards can credit a moved
//! account there (a reversal of a purchase it booked, a hold voided, expired or completed
//! for less). Every `SWEEP_EVERY` it moves what such accounts have available to the new
//! owner the same way: a record in its ledger's metadata first (the transfer id and the
//! account), then the transfer out, the hand-over, and the record deleted once the new
//! owner took it. A primary that dies in between leaves the record to its successor,
//! which sends it again (the transfer id makes both sides book it once).

use crate::cluster::{Partitions, Placement};
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use futures_util::StreamExt;
use junction_engine::model::{AccountSpec, AccountStatus, PanKey, RequestKey, VelocityLimits};
use junction_engine::{CardRecord, Engine};
use junction_ledger::{AccountId, Currency, ParticipantId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the old owner's primary looks for moves to run.
const MOVES_EVERY: Duration = Duration::from_millis(200);
/// The longest pause before a failed move is tried again (the pause doubles from
/// `MOVES_EVERY` with each failure): the issuer's requests wait at the doors meanwhile.
const MOVE_RETRY_MAX: Duration = Duration::from_secs(5);
/// The issuer's accounts must not change for this long before they are handed over: what
/// was in the pipeline when the gate closed has committed by then.
const QUIET: Duration = Duration::from_millis(250);
/// At most this long waiting for quiet (a busy issuer's pipeline under a backlog); then
/// the hand-over goes on (a debit still in the pipeline then finds the funds moved: 51).
const QUIET_WAIT_MAX: Duration = Duration::from_secs(10);
/// Accounts per hand-over message (a NATS message stays far below its 1 MiB limit).
const ACCOUNTS_PER_MESSAGE: usize = 1_000;
/// How long one hand-over message waits for the new owner's answer.
const HANDOVER_WAIT: Duration = Duration::from_secs(30);
/// How often the old owner sweeps what moved issuers' accounts got there since.
const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// A sweep not yet taken by the new owner: this prefix and the transfer id (16 bytes), in
/// the ledger's metadata; the value is the account id (16 bytes).
const SWEEP_RECORD: &[u8] = b"cluster/sweep/";

/// One message of a hand-over: some of the issuer's accounts with what moves into each,
/// and the cards on them.
#[derive(Debug, Serialize, Deserialize)]
struct Handover {
    issuer: u64,
    from: String,
    /// A sweep after the move (the accounts keep what they have and get more), not the
    /// move's hand-over (an account the new owner had already holds what is handed over).
    #[serde(default)]
    sweep: bool,
    accounts: Vec<HandedAccount>,
    cards: Vec<HandedCard>,
}

#[derive(Debug, Serialize, Deserialize)]
struct HandedAccount {
    id: String,
    currency: String,
    /// `active`, `blocked` or `closed`.
    status: String,
    count_per_day_max: u32,
    amount_per_day_max: u64,
    /// Minor units, and the id of the transfer that moved them out (and moves them in).
    amount: u64,
    transfer: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct HandedCard {
    key: String,
    card: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed: Option<String>,
}

/// Runs on a partition's primary until `shutdown`: the moves away from this partition,
/// and the hand-overs of issuers moving here.
pub async fn run(partitions: Arc<Partitions>, engine: Arc<Engine>, shutdown: watch::Receiver<bool>) {
    tokio::spawn(take_handovers(Arc::clone(&partitions), Arc::clone(&engine), shutdown.clone()));
    let mut shutdown = shutdown;
    let mut last_sweep = std::time::Instant::now();
    // A move that failed (its new owner down, say) is tried again after a pause that
    // doubles with each failure, up to `MOVE_RETRY_MAX`: each try drains again.
    let mut failed: std::collections::HashMap<u64, (u32, std::time::Instant)> = std::collections::HashMap::new();
    loop {
        if last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = std::time::Instant::now();
            if let Err(error) = sweep(&partitions, &engine).await {
                tracing::warn!(error = format!("{error:#}"), "sweeping moved issuers' accounts failed; trying again");
            }
        }
        let moving_away = partitions.moving_away();
        failed.retain(|issuer, _| moving_away.iter().any(|(moving, _)| moving == issuer));
        for (issuer, moving) in moving_away {
            if failed.get(&issuer).is_some_and(|(_, next)| std::time::Instant::now() < *next) {
                continue;
            }
            match move_away(&partitions, &engine, issuer, &moving).await {
                Ok(accounts) => {
                    failed.remove(&issuer);
                    partitions.counters.moved_away.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(
                        issuer,
                        to = moving.moving_to,
                        accounts,
                        "issuer moved: handed over to its new partition"
                    )
                }
                Err(error) => {
                    let failures = failed.get(&issuer).map_or(1, |(failures, _)| failures + 1);
                    let pause = MOVES_EVERY.saturating_mul(1 << failures.min(8)).min(MOVE_RETRY_MAX);
                    failed.insert(issuer, (failures, std::time::Instant::now() + pause));
                    tracing::warn!(
                        issuer,
                        failures,
                        retry_in_ms = pause.as_millis() as u64,
                        error = format!("{error:#}"),
                        "moving an issuer failed; trying again"
                    )
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(MOVES_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Drains `issuer`, hands it over to the partition it moves to and switches the map.
/// Returns how many accounts moved.
async fn move_away(
    partitions: &Arc<Partitions>,
    engine: &Arc<Engine>,
    issuer: u64,
    moving: &Placement,
) -> Result<usize> {
    let to = moving.moving_to.clone().context("not a move")?;
    let drained = {
        let (partitions, engine) = (Arc::clone(partitions), Arc::clone(engine));
        tokio::task::spawn_blocking(move || drain(&partitions, &engine, ParticipantId(issuer)))
    };
    let (accounts, cards) = drained.await??;
    let keyed: Vec<(AccountId, RequestKey)> = accounts
        .iter()
        .map(|spec| (spec.id, handover_key(issuer, &moving.partition, &to, moving.since, spec.id)))
        .collect();
    let amounts = {
        let (engine, keyed) = (Arc::clone(engine), keyed.clone());
        tokio::task::spawn_blocking(move || engine.hand_out(&keyed)).await??
    };
    tracing::info!(
        issuer,
        to,
        accounts = accounts.len(),
        "issuer drained and its accounts' money handed out; handing over"
    );
    let handed: Vec<HandedAccount> = accounts
        .iter()
        .zip(keyed.iter().zip(amounts))
        .map(|(spec, ((_, transfer), amount))| handed_account(spec, *transfer, amount))
        .collect();
    let cards: Vec<HandedCard> = cards
        .into_iter()
        .map(|card| HandedCard {
            key: format!("{:032x}", card.key.0),
            card: hex::encode(&card.card),
            sealed: card.sealed.map(hex::encode),
        })
        .collect();
    let moved = handed.len();
    send_handover(partitions, issuer, &to, handed, cards, false).await?;
    partitions.finish_move(issuer, moving).await?;
    Ok(moved)
}

/// Sends `to` an issuer's accounts, then the cards on them (a card is served only once
/// its account is), in messages of at most `ACCOUNTS_PER_MESSAGE`, each answered once taken.
async fn send_handover(
    partitions: &Partitions,
    issuer: u64,
    to: &str,
    mut handed: Vec<HandedAccount>,
    mut cards: Vec<HandedCard>,
    sweep: bool,
) -> Result<()> {
    let subject = partitions.handover_subject(to);
    let mut chunks: Vec<Handover> = Vec::new();
    while !handed.is_empty() {
        let rest = handed.split_off(handed.len().min(ACCOUNTS_PER_MESSAGE));
        chunks.push(Handover { issuer, from: partitions.me.clone(), sweep, accounts: handed, cards: Vec::new() });
        handed = rest;
    }
    while !cards.is_empty() {
        let rest = cards.split_off(cards.len().min(ACCOUNTS_PER_MESSAGE));
        chunks.push(Handover { issuer, from: partitions.me.clone(), sweep, accounts: Vec::new(), cards });
        cards = rest;
    }
    for chunk in &chunks {
        let body = Bytes::from(serde_json::to_vec(chunk)?);
        let request = async_nats::Request::new().payload(body).timeout(Some(HANDOVER_WAIT));
        let answer = partitions
            .client()
            .send_request(subject.clone(), request)
            .await
            .with_context(|| format!("handing issuer {issuer} over to partition {to}"))?;
        let text = String::from_utf8_lossy(&answer.payload);
        if text != "ok" {
            bail!("partition {to} refused issuer {issuer}'s hand-over: {text}");
        }
    }
    Ok(())
}

fn handed_account(spec: &AccountSpec, transfer: RequestKey, amount: u64) -> HandedAccount {
    HandedAccount {
        id: format!("{:032x}", spec.id.0),
        currency: spec.currency.code().to_string(),
        status: status_name(spec.status).to_string(),
        count_per_day_max: spec.velocity.count_per_day_max,
        amount_per_day_max: spec.velocity.amount_per_day_max,
        amount,
        transfer: format!("{:032x}", transfer.0),
    }
}

/// Moves what the accounts of issuers that moved away got here since to their new owner
/// (see the module's notes): new sweep records first, then every record not yet taken.
async fn sweep(partitions: &Arc<Partitions>, engine: &Arc<Engine>) -> Result<()> {
    let moved = partitions.moved_away();
    if moved.is_empty() {
        return Ok(());
    }
    let scanned = {
        let engine = Arc::clone(engine);
        let issuers: Vec<u64> = moved.iter().map(|(issuer, _)| *issuer).collect();
        tokio::task::spawn_blocking(move || plan_sweeps(&engine, &issuers)).await??
    };
    for (SweepPlan { issuer, accounts, pending }, (_, to)) in scanned.into_iter().zip(moved) {
        if pending.is_empty() {
            continue;
        }
        let keyed: Vec<(AccountId, RequestKey)> = pending.iter().map(|(key, account)| (*account, *key)).collect();
        let amounts = {
            let (engine, keyed) = (Arc::clone(engine), keyed.clone());
            tokio::task::spawn_blocking(move || engine.hand_out(&keyed)).await??
        };
        let handed: Vec<HandedAccount> = keyed
            .iter()
            .zip(amounts)
            .filter_map(|((account, key), amount)| {
                let spec = accounts.iter().find(|spec| spec.id == *account)?;
                Some(handed_account(spec, *key, amount))
            })
            .collect();
        let swept: u64 = handed.iter().map(|account| account.amount).sum();
        send_handover(partitions, issuer, &to, handed, Vec::new(), true).await?;
        let records: Vec<Vec<u8>> = pending.iter().map(|(key, _)| sweep_record(*key)).collect();
        // A durable write waits for replication, which runs on this runtime: not here.
        let ledger = Arc::clone(engine.ledger());
        tokio::task::spawn_blocking(move || ledger.delete_metadata(&records)).await??;
        partitions.counters.sweeps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            issuer,
            to,
            accounts = pending.len(),
            swept,
            "swept moved accounts' new money to their new partition"
        );
    }
    Ok(())
}

/// One moved issuer's sweep: its accounts here, and the sweep records of them not yet
/// taken by the new owner (transfer id, account).
struct SweepPlan {
    issuer: u64,
    accounts: Vec<AccountSpec>,
    pending: Vec<(RequestKey, AccountId)>,
}

/// Records a sweep for every account of `issuers` with money available here and none
/// pending, and returns each issuer's records not yet taken.
fn plan_sweeps(engine: &Engine, issuers: &[u64]) -> Result<Vec<SweepPlan>> {
    let ledger = engine.ledger();
    let mut pending: Vec<(RequestKey, AccountId)> = Vec::new();
    ledger.scan_metadata(SWEEP_RECORD, |key, value| {
        let id = key.get(SWEEP_RECORD.len()..).and_then(|id| <[u8; 16]>::try_from(id).ok());
        let account = <[u8; 16]>::try_from(value).ok();
        if let (Some(id), Some(account)) = (id, account) {
            pending.push((RequestKey(u128::from_be_bytes(id)), AccountId(u128::from_be_bytes(account))));
        }
    })?;
    let mut plans = Vec::with_capacity(issuers.len());
    for &issuer in issuers {
        let accounts = engine.issuer_accounts(ParticipantId(issuer));
        let waiting: BTreeSet<AccountId> = pending.iter().map(|(_, account)| *account).collect();
        let mut fresh = Vec::new();
        for spec in &accounts {
            let available = ledger.account(spec.id).map(|view| view.balances.available()).unwrap_or(0);
            if available > 0 && !waiting.contains(&spec.id) {
                let key = RequestKey::derive(
                    "sweep",
                    &[&spec.id.0.to_be_bytes(), &ledger.last_seq().to_be_bytes(), &issuer.to_be_bytes()],
                );
                fresh.push((key, spec.id));
            }
        }
        if !fresh.is_empty() {
            let records: Vec<(Vec<u8>, Vec<u8>)> =
                fresh.iter().map(|(key, account)| (sweep_record(*key), account.0.to_be_bytes().to_vec())).collect();
            ledger.put_metadata(&records)?;
            pending.extend(fresh);
        }
        let ids: BTreeSet<AccountId> = accounts.iter().map(|spec| spec.id).collect();
        let mine = pending.iter().filter(|(_, account)| ids.contains(account)).copied().collect();
        plans.push(SweepPlan { issuer, accounts, pending: mine });
    }
    Ok(plans)
}

fn sweep_record(key: RequestKey) -> Vec<u8> {
    let mut record = SWEEP_RECORD.to_vec();
    record.extend_from_slice(&key.0.to_be_bytes());
    record
}

/// The old owner's side before the hand-over: every request decided before the move in
/// the engine, the shards through them, the issuer's accounts still. Returns the accounts
/// and their cards.
fn drain(
    partitions: &Partitions,
    engine: &Engine,
    issuer: ParticipantId,
) -> Result<(Vec<AccountSpec>, Vec<CardRecord>)> {
    partitions.close_gate_once();
    engine.sync()?;
    let accounts = engine.issuer_accounts(issuer);
    let ids: BTreeSet<AccountId> = accounts.iter().map(|spec| spec.id).collect();
    let started = std::time::Instant::now();
    let mut last = balances(engine, &ids);
    loop {
        std::thread::sleep(QUIET);
        let now = balances(engine, &ids);
        if now == last {
            break;
        }
        if started.elapsed() > QUIET_WAIT_MAX {
            tracing::warn!(issuer = issuer.0, "the issuer's accounts did not stay still; handing over anyway");
            break;
        }
        last = now;
    }
    let cards = engine.card_records(&ids)?;
    Ok((accounts, cards))
}

fn balances(engine: &Engine, ids: &BTreeSet<AccountId>) -> Vec<junction_ledger::Balances> {
    ids.iter().filter_map(|id| engine.ledger().account(*id)).map(|view| view.balances).collect()
}

fn status_name(status: AccountStatus) -> &'static str {
    match status {
        AccountStatus::Active => "active",
        AccountStatus::Blocked => "blocked",
        AccountStatus::Closed => "closed",
    }
}

/// The id of the transfer that moves `account`'s money in this move: out at the old
/// owner, in at the new one.
fn handover_key(issuer: u64, from: &str, to: &str, since: u64, account: AccountId) -> RequestKey {
    RequestKey::derive(
        "handover",
        &[&issuer.to_be_bytes(), from.as_bytes(), to.as_bytes(), &since.to_be_bytes(), &account.0.to_be_bytes()],
    )
}

/// Takes the hand-overs of issuers moving to this partition until `shutdown`.
async fn take_handovers(partitions: Arc<Partitions>, engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    let subject = partitions.handover_subject(&partitions.me);
    let mut requests = match partitions.client().queue_subscribe(subject.clone(), partitions.me.clone()).await {
        Ok(requests) => requests,
        Err(error) => {
            tracing::error!(subject, %error, "cannot take hand-overs of issuers moving here");
            return;
        }
    };
    loop {
        let message = tokio::select! {
            message = requests.next() => match message {
                Some(message) => message,
                None => return,
            },
            _ = shutdown.changed() => return,
        };
        let Some(reply) = message.reply.clone() else { continue };
        let engine = Arc::clone(&engine);
        let taken = tokio::task::spawn_blocking(move || take_handover(&engine, &message.payload)).await;
        let answer = match taken {
            Ok(Ok(())) => "ok".to_string(),
            Ok(Err(error)) => format!("{error:#}"),
            Err(error) => error.to_string(),
        };
        if let Err(error) = partitions.client().publish(reply, Bytes::from(answer)).await {
            tracing::warn!(%error, "answering a hand-over failed");
        }
    }
}

fn take_handover(engine: &Engine, payload: &[u8]) -> Result<()> {
    let handover: Handover = serde_json::from_slice(payload).context("a hand-over message is not readable")?;
    let issuer = ParticipantId(handover.issuer);
    let mut accounts = Vec::with_capacity(handover.accounts.len());
    for account in &handover.accounts {
        let hex128 = |text: &str| u128::from_str_radix(text, 16).map_err(|_| anyhow!("{text:?} is not a hex id"));
        let spec = AccountSpec {
            id: AccountId(hex128(&account.id)?),
            participant: issuer,
            currency: Currency::from_code(&account.currency).map_err(|e| anyhow!("{e}"))?,
            opening_balance: 0,
            status: match account.status.as_str() {
                "active" => AccountStatus::Active,
                "blocked" => AccountStatus::Blocked,
                "closed" => AccountStatus::Closed,
                other => bail!("account status {other:?} is not one of active, blocked, closed"),
            },
            velocity: VelocityLimits {
                count_per_day_max: account.count_per_day_max,
                amount_per_day_max: account.amount_per_day_max,
            },
        };
        accounts.push((spec, RequestKey(hex128(&account.transfer)?), account.amount));
    }
    engine.hand_in(&accounts, !handover.sweep)?;
    let mut cards = Vec::with_capacity(handover.cards.len());
    for card in &handover.cards {
        cards.push(CardRecord {
            key: PanKey(u128::from_str_radix(&card.key, 16).context("a card's key is not hex")?),
            card: hex::decode(&card.card).context("a card record is not hex")?,
            sealed: card.sealed.as_deref().map(hex::decode).transpose().context("a sealed number is not hex")?,
        });
    }
    engine.import_cards(&cards)?;
    if !handover.accounts.is_empty() || !cards.is_empty() {
        tracing::info!(
            issuer = issuer.0,
            from = handover.from,
            accounts = handover.accounts.len(),
            cards = cards.len(),
            "took over an issuer's accounts and cards"
        );
    }
    Ok(())
}
