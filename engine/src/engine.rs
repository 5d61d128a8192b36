//! The engine's handle: starts the shards and the commit and completion stages, routes
//! requests, and serves the admin side (provisioning, limits, window close).
//!
//! Provisioning is persisted as opaque metadata through the ledger (the engine never
//! touches RocksDB itself) and reloaded on start, so a restarted switch knows its
//! participants, cards and limits again.

use crate::books::{
    is_stand_in, participant_account, participant_of_account, TRANSFER_CODE_HANDOVER, TRANSFER_CODE_OPENING_BALANCE,
};
use crate::codes::DeclineReason;
use crate::commit;
use crate::completion;
use crate::detail::Text;
use crate::faults::{Faults, Stage};
use crate::fees::{FeeSchedule, FeeScheduleSpec};
use crate::headroom::CapPool;
use crate::hosted::{decline_of_refusal, Claim, InFlight};
use crate::messages::content_hash;
use crate::messages::{
    HeldReservation, ShardMessage, ShardQueues, COMMITS_IN_FLIGHT_MAX, COMMIT_QUEUE_DEPTH_MAX, FEEDBACK_QUEUE_DEPTH_MAX,
};
use crate::model::{
    AccountSpec, AccountStatus, CardSpec, EntryMode, Instrument, PanKey, ParticipantSpec, ReplySink, Request,
    RequestKey, Response, TokenSpec, TokenState, VelocityLimits,
};
use crate::provisioning::{
    decode_card, decode_participant, encode_card, encode_participant, meta_key, META_BIN_ROUTES, META_CARD, META_FEES,
    META_PARTICIPANT, META_SEALED_PAN, META_SUSPENDED,
};
use crate::routing::{BinRoute, BinRoutes, BinTable, RouteTarget};
use crate::shard::{Shard, SharedRules, Suspended};
use crate::stats::EngineStats;
use crate::vault::{CardEntry, Directory, DirectoryError, Vault, VaultKeyTooShort};
use crossbeam::channel::{bounded, Sender, TrySendError};
use junction_ledger::{
    Account, AccountError, AccountFlags, AccountId, AccountKind, AccountUpdate, CommandOutcome, Currency, DebitLimits,
    Ledger, LedgerError, ParticipantId, PositionKey, Transfer, TransferId, WindowPositions, ACCOUNTS_PER_CALL_MAX,
    BATCH_TRANSFERS_MAX,
};
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Requests waiting in one shard's queue. A full queue declines new requests at once with
/// 91 instead of queueing without limit. Costs about 200 bytes per slot.
pub const SHARD_QUEUE_DEPTH_MAX_DEFAULT: usize = 65_536;

/// Default wait for a partial ledger batch to fill before it is committed anyway.
pub const COMMIT_DELAY_US_DEFAULT: u64 = 100;

/// Accounts handed to a shard in one message when the engine reloads at start.
const RELOAD_CHUNK_ACCOUNTS: usize = 65_536;

/// Most accounts, cards or tokens provisioned in one call.
pub const PROVISION_BATCH_MAX: usize = ACCOUNTS_PER_CALL_MAX;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Authorization threads; each owns a slice of the accounts.
    pub shards: usize,
    pub shard_queue_depth_max: usize,
    pub commit_delay_us: u64,
    /// Key of the vault's PAN hashing. At least 16 bytes.
    pub vault_key: Vec<u8>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            shards: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            shard_queue_depth_max: SHARD_QUEUE_DEPTH_MAX_DEFAULT,
            commit_delay_us: COMMIT_DELAY_US_DEFAULT,
            vault_key: b"junction-demo-vault-key-change-me".to_vec(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("engine configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    VaultKey(#[from] VaultKeyTooShort),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error("account {0:?}: {1}")]
    Account(AccountId, String),
    #[error("unknown participant {0:?}")]
    UnknownParticipant(ParticipantId),
    #[error("stored provisioning record does not decode: {0}")]
    Metadata(String),
    #[error("the engine is stopping")]
    Stopped,
}

/// Shards stay paused while this lives.
pub struct PauseGuard {
    _held: Vec<crossbeam::channel::Receiver<()>>,
}

/// The switch's engine. Share it with `Arc`.
pub struct Engine {
    ledger: Arc<Ledger>,
    vault: Vault,
    directory: Arc<Directory>,
    caps: Arc<CapPool>,
    shards: RwLock<Vec<Sender<ShardMessage>>>,
    stats: Arc<EngineStats>,
    participants: RwLock<BTreeMap<ParticipantId, ParticipantSpec>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Serialises admin operations with one another (never taken by traffic).
    admin: Mutex<()>,
    /// Where declines that never reach a shard (overload) are counted.
    front_slot: usize,
    faults: Arc<Faults>,
    /// BIN routes to issuers' hosts (`routing.rs`).
    routes: BinRoutes,
    /// Requests out at issuers' hosts, with the copies waiting for them (`hosted.rs`).
    hosted: Arc<InFlight>,
    /// The fee schedule and the suspended participants, read by the shards.
    rules: SharedRules,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("shards", &self.shards.read().len()).finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts the pipeline on `ledger` and reloads what was provisioned before.
    pub fn start(ledger: Arc<Ledger>, config: EngineConfig) -> Result<Engine, EngineError> {
        if config.shards == 0 || config.shards > 256 {
            return Err(EngineError::Config(format!("shards must be 1..=256, not {}", config.shards)));
        }
        if config.shard_queue_depth_max == 0 {
            return Err(EngineError::Config("shard_queue_depth_max must be at least 1".into()));
        }
        let vault = Vault::new(&config.vault_key)?;
        let caps = Arc::new(CapPool::new());
        let faults = Arc::new(Faults::default());
        let rules = SharedRules::default();
        // Slots: one per shard, one for the completion stage, one for the front door.
        let stats = Arc::new(EngineStats::new(config.shards + 2));
        let (commit_tx, commit_rx) = bounded(COMMIT_QUEUE_DEPTH_MAX);
        let (completion_tx, completion_rx) = bounded(COMMITS_IN_FLIGHT_MAX);
        let mut shard_senders = Vec::new();
        let mut feedback_senders = Vec::new();
        let mut threads = Vec::new();
        for index in 0..config.shards {
            let (shard_tx, shard_rx) = bounded(config.shard_queue_depth_max);
            let (feedback_tx, feedback_rx) = bounded(FEEDBACK_QUEUE_DEPTH_MAX);
            let queues = ShardQueues { input: shard_rx, feedback: feedback_rx, commit: commit_tx.clone() };
            let shard = Shard::new(
                index,
                queues,
                Arc::clone(&ledger),
                Arc::clone(&caps),
                Arc::clone(&stats),
                Arc::clone(&faults),
                rules.clone(),
            );
            threads.push(spawn(format!("shard-{index}"), move || shard.run())?);
            shard_senders.push(shard_tx);
            feedback_senders.push(feedback_tx);
        }
        drop(commit_tx);
        let commit_ledger = Arc::clone(&ledger);
        let delay = Duration::from_micros(config.commit_delay_us);
        let commit_faults = Arc::clone(&faults);
        threads.push(spawn("commit".into(), move || {
            commit::commit_loop(commit_rx, commit_ledger, completion_tx, delay, &commit_faults)
        })?);
        let (completion_ledger, completion_caps, completion_stats, completion_faults) =
            (Arc::clone(&ledger), Arc::clone(&caps), Arc::clone(&stats), Arc::clone(&faults));
        let completion_slot = config.shards;
        threads.push(spawn("completion".into(), move || {
            completion::completion_loop(
                completion_rx,
                completion_ledger,
                completion_caps,
                feedback_senders,
                completion_stats,
                completion_slot,
                &completion_faults,
            )
        })?);
        let engine = Engine {
            ledger,
            vault,
            directory: Arc::new(Directory::new()),
            caps,
            shards: RwLock::new(shard_senders),
            stats,
            participants: RwLock::new(BTreeMap::new()),
            threads: Mutex::new(threads),
            admin: Mutex::new(()),
            front_slot: config.shards + 1,
            faults,
            routes: BinRoutes::default(),
            rules,
            hosted: Arc::new(InFlight::default()),
        };
        engine.reload()?;
        Ok(engine)
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    pub fn shard_count(&self) -> usize {
        self.shards.read().len()
    }

    /// Requests waiting in each shard's queue.
    pub fn queue_depths(&self) -> Vec<usize> {
        self.shards.read().iter().map(|s| s.len()).collect()
    }

    fn shard_of(&self, id: u128, shards: usize) -> usize {
        let mixed = ((id as u64) ^ ((id >> 64) as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((mixed >> 32) % shards as u64) as usize
    }

    /// Routes a request to its shard. Never blocks: a full shard queue answers 91 at once.
    /// The answer arrives through the request's reply sink.
    pub fn submit(&self, request: Request) {
        let card = match request.instrument {
            Instrument::Card(key) => self.directory.get(key),
            Instrument::Account(_) => None,
        };
        let routing_id = match (request.instrument, card) {
            (Instrument::Account(id), _) => id.0,
            (_, Some(card)) => card.account.0,
            (Instrument::Card(key), None) => key.0,
        };
        let shards = self.shards.read();
        if shards.is_empty() {
            drop(shards);
            self.refuse(request, DeclineReason::SystemError);
            return;
        }
        let shard = &shards[self.shard_of(routing_id, shards.len())];
        match shard.try_send(ShardMessage::Request { request, card }) {
            Ok(()) => {}
            Err(TrySendError::Full(ShardMessage::Request { request, .. })) => {
                drop(shards);
                self.refuse(request, DeclineReason::Overloaded);
            }
            Err(TrySendError::Disconnected(ShardMessage::Request { request, .. })) => {
                drop(shards);
                self.refuse(request, DeclineReason::SystemError);
            }
            Err(_) => {}
        }
    }

    fn refuse(&self, request: Request, reason: DeclineReason) {
        self.stats.record(self.front_slot, reason.code(), Some(reason));
        request.reply.send(Response::declined(request.tag, request.key, reason));
    }

    /// Waits until every shard has handled everything sent to it before this call.
    pub fn sync(&self) -> Result<(), EngineError> {
        let shards = self.shards.read().clone();
        let mut done = Vec::new();
        for shard in &shards {
            let (tx, rx) = bounded(1);
            shard.send(ShardMessage::Barrier(tx)).map_err(|_| EngineError::Stopped)?;
            done.push(rx);
        }
        for rx in done {
            rx.recv().map_err(|_| EngineError::Stopped)?;
        }
        Ok(())
    }

    /// Stops every shard until the returned guard is dropped (requests keep queueing, and
    /// are declined with 91 once a queue is full). For tests of backpressure and for
    /// operators draining traffic.
    pub fn pause(&self) -> Result<PauseGuard, EngineError> {
        let shards = self.shards.read().clone();
        let mut held = Vec::new();
        for shard in &shards {
            // A zero-capacity channel: the shard blocks in its send until we drop this end.
            let (tx, rx) = bounded(0);
            shard.send(ShardMessage::Pause(tx)).map_err(|_| EngineError::Stopped)?;
            rx.recv().map_err(|_| EngineError::Stopped)?;
            held.push(rx);
        }
        Ok(PauseGuard { _held: held })
    }

    // ---- the issuer-host path (hosted.rs) -------------------------------------------

    /// The fee schedule in force.
    pub fn fee_schedule(&self) -> Arc<FeeSchedule> {
        self.rules.fees.load_full()
    }

    /// Puts a schedule in force without recording it (the empty one a switch without
    /// fees starts with, which still knows the participants' countries).
    pub fn install_fee_schedule(&self, schedule: FeeSchedule) {
        self.rules.fees.store(Arc::new(schedule));
    }

    /// Gives the fee schedule in force the countries of participants it does not know
    /// (one onboarded at runtime), under the admin lock so no schedule change is undone.
    pub fn add_fee_countries(&self, countries: &[(ParticipantId, [u8; 2])]) {
        let _admin = self.admin.lock();
        let current = self.rules.fees.load();
        if countries.iter().all(|(id, _)| current.countries.contains_key(id)) {
            return;
        }
        let mut schedule = (**current).clone();
        for (id, country) in countries {
            schedule.countries.entry(*id).or_insert(*country);
        }
        self.rules.fees.store(Arc::new(schedule));
    }

    /// Replaces the fee schedule, durably; it applies to the next payment. Its switch
    /// participant must exist, with a position account in every currency of the others
    /// (fees are charged in the payment's currency).
    pub fn set_fee_schedule(&self, schedule: FeeSchedule) -> Result<(), EngineError> {
        let _admin = self.admin.lock();
        if let Some(switch) = schedule.switch_participant {
            let participants = self.participants.read();
            let Some(spec) = participants.get(&switch) else {
                return Err(EngineError::UnknownParticipant(switch));
            };
            let own: BTreeSet<Currency> = spec.net_debit_caps.iter().map(|(c, _)| *c).collect();
            let needed: BTreeSet<Currency> =
                participants.values().flat_map(|p| p.net_debit_caps.iter().map(|(c, _)| *c)).collect();
            if let Some(missing) = needed.difference(&own).next() {
                return Err(EngineError::Config(format!(
                    "fees: the switch participant {} has no {missing} position (give it a net debit cap in {missing})",
                    switch.0
                )));
            }
        }
        let record = serde_json::to_vec(&schedule.to_spec()).map_err(|e| EngineError::Config(e.to_string()))?;
        self.ledger.put_metadata(&[(vec![META_FEES], record)])?;
        self.rules.fees.store(Arc::new(schedule));
        Ok(())
    }

    /// The fee schedule kept in the ledger's metadata, with `countries` (from the
    /// participants' BICs), if one was ever set.
    pub fn stored_fee_schedule(
        &self,
        countries: BTreeMap<ParticipantId, [u8; 2]>,
    ) -> Result<Option<FeeSchedule>, EngineError> {
        let mut spec = None;
        self.ledger
            .scan_metadata(&[META_FEES], |_, value| spec = Some(serde_json::from_slice::<FeeScheduleSpec>(value)))?;
        match spec {
            None => Ok(None),
            Some(Err(e)) => Err(EngineError::Metadata(format!("the fee schedule record: {e}"))),
            Some(Ok(spec)) => spec.to_schedule(countries).map(Some).map_err(|e| EngineError::Config(e.to_string())),
        }
    }

    /// The BIN route of a card number, if one matches.
    pub fn route(&self, pan: &str) -> Option<RouteTarget> {
        self.routes.route(pan)
    }

    /// The BIN table now in force.
    pub fn bin_routes(&self) -> Arc<BinTable> {
        self.routes.table()
    }

    /// Replaces the BIN table, durably; it applies to the next request.
    pub fn set_bin_routes(&self, routes: Vec<BinRoute>) -> Result<(), EngineError> {
        let _admin = self.admin.lock();
        for route in &routes {
            match self.participant(route.issuer) {
                None => return Err(EngineError::UnknownParticipant(route.issuer)),
                Some(p) if p.role != crate::model::Role::Issuer => {
                    return Err(EngineError::Config(format!(
                        "BIN {}: participant {} is not an issuer",
                        route.prefix, route.issuer.0
                    )))
                }
                Some(_) => {}
            }
        }
        let table = BinTable::new(routes.clone()).map_err(|e| EngineError::Config(e.to_string()))?;
        let record = serde_json::to_vec(&routes).map_err(|e| EngineError::Config(e.to_string()))?;
        self.ledger.put_metadata(&[(vec![META_BIN_ROUTES], record)])?;
        self.routes.replace(table);
        Ok(())
    }

    /// The answer a request already has in the ledger (it was answered before: a resend),
    /// or a conflict if its key was used for another request.
    pub fn answered(&self, request: &Request) -> Result<Option<Response>, EngineError> {
        let Some((digest, outcome)) = self.ledger.command_answer(TransferId(request.key.0))? else {
            return Ok(None);
        };
        let response = if digest != content_hash(request) {
            Response::declined(request.tag, request.key, DeclineReason::DuplicateConflict)
        } else {
            match outcome {
                CommandOutcome::Committed { timestamp, reference } => Response {
                    stood_in: self.booked_standing_in(request.key),
                    ..Response::approved(request.tag, request.key, reference, Some(timestamp))
                },
                CommandOutcome::Failed(error) => {
                    Response::declined(request.tag, request.key, DeclineReason::from_ledger(error))
                }
                CommandOutcome::Refused(refusal) => {
                    let (code, reason) = decline_of_refusal(refusal);
                    // Only standing in refuses for the stand-in limits.
                    let stood_in = reason == DeclineReason::StandInLimitExceeded;
                    Response { code, stood_in, ..Response::declined(request.tag, request.key, reason) }
                }
                CommandOutcome::Conflict => {
                    Response::declined(request.tag, request.key, DeclineReason::DuplicateConflict)
                }
            }
        };
        Ok(Some(response))
    }

    /// Whether the obligation a hosted request booked was the switch's stand-in decision
    /// (a resend's answer is marked stood in again). False for anything else.
    fn booked_standing_in(&self, key: RequestKey) -> bool {
        let obligation = TransferId(RequestKey::derive_from(key, "obligation").0);
        matches!(self.ledger.transfer(obligation), Ok(Some(record)) if is_stand_in(record.transfer.code))
    }

    /// Claims a request for forwarding to its issuer, or parks a copy of one already out.
    pub fn claim_forward(&self, request: &Request) -> Claim {
        self.hosted.claim(request.key, request.tag, &request.reply)
    }

    /// Whether a request is out at its issuer or being booked.
    pub fn forwarding(&self, key: RequestKey) -> bool {
        self.hosted.contains(key)
    }

    /// Forgets a claim whose request was answered without a booking (91: the issuer is
    /// down and stand-in is not allowed), answering its waiting copies the same way.
    pub fn release_forward(&self, response: &Response) {
        self.hosted.finish(response.key, response);
    }

    /// Reserves `amount` of a participant's net debit cap before a request leaves for an
    /// issuer's host. False: it would breach the cap.
    pub fn reserve_cap(&self, participant: ParticipantId, currency: Currency, amount: u64) -> bool {
        self.caps.take((participant, currency), amount)
    }

    /// Gives back a reservation that will not be booked.
    pub fn release_cap(&self, participant: ParticipantId, currency: Currency, amount: u64) {
        self.caps.give_back((participant, currency), i128::from(amount));
    }

    /// Books a forwarded request's outcome (`Operation::Hosted`) through its card's shard;
    /// its answer goes to the request and to the copies that waited for it.
    pub fn submit_hosted(&self, mut request: Request) {
        let inner = Arc::clone(&request.reply);
        request.reply = Arc::new(HostedReply { inner, hosted: Arc::clone(&self.hosted) });
        self.submit(request);
    }

    /// The card number to hand the issuer's host: the real one behind a device token of a
    /// hosted issuer, or `pan` itself. `None` if the token's sealed number does not open.
    pub fn card_number_for_issuer(&self, pan: &str) -> Option<String> {
        match self.directory.sealed(self.vault.pan_key(pan)) {
            Some(sealed) => self.vault.open(&sealed),
            None => Some(pan.to_string()),
        }
    }

    /// Makes a pipeline stage panic on its next turn (for crash tests: the process must end).
    pub fn inject_panic(&self, stage: Stage) {
        match stage {
            Stage::LedgerWriter => self.ledger.inject_writer_panic(),
            stage => self.faults.inject_panic(stage),
        }
    }

    /// The PAN key the directory uses for a card number (the number itself is not kept).
    pub fn pan_key(&self, pan: &str) -> PanKey {
        self.vault.pan_key(pan)
    }

    /// The account, currency and issuer of a card or device token on the switch's own
    /// books (a tax refund's, say); `None` for a number the directory does not know.
    pub fn card_account(&self, key: PanKey) -> Option<(AccountId, Currency, ParticipantId)> {
        let entry = self.directory.get(key)?;
        let view = self.ledger.account(entry.account)?;
        Some((entry.account, view.account.currency, view.account.participant))
    }

    // ---- admin side -----------------------------------------------------------------

    /// Provisions a participant: its position account in each currency and its caps.
    pub fn add_participant(&self, spec: ParticipantSpec) -> Result<(), EngineError> {
        let _admin = self.admin.lock();
        self.add_participant_inner(&spec)?;
        self.ledger.put_metadata(&[(meta_key(META_PARTICIPANT, spec.id.0.into()), encode_participant(&spec))])?;
        Ok(())
    }

    fn add_participant_inner(&self, spec: &ParticipantSpec) -> Result<(), EngineError> {
        let accounts: Vec<Account> = spec
            .net_debit_caps
            .iter()
            .map(|(currency, _)| Account {
                id: participant_account(spec.id, *currency),
                participant: spec.id,
                currency: *currency,
                kind: AccountKind::Position,
                flags: AccountFlags::NONE,
                credit_limit: 0,
                debit_limits: junction_ledger::DebitLimits::NONE,
                user_data: 0,
            })
            .collect();
        for (account, result) in accounts.iter().zip(self.ledger.create_accounts(&accounts)?) {
            result.map_err(|e| EngineError::Account(account.id, e.to_string()))?;
        }
        for (currency, cap) in &spec.net_debit_caps {
            self.caps.set_cap((spec.id, *currency), *cap);
        }
        self.participants.write().insert(spec.id, spec.clone());
        Ok(())
    }

    pub fn participants(&self) -> Vec<ParticipantSpec> {
        self.participants.read().values().cloned().collect()
    }

    pub fn participant(&self, id: ParticipantId) -> Option<ParticipantSpec> {
        self.participants.read().get(&id).cloned()
    }

    /// Changes a participant's net debit cap in a currency, without stopping traffic.
    pub fn set_net_debit_cap(
        &self,
        participant: ParticipantId,
        currency: Currency,
        cap: u64,
    ) -> Result<(), EngineError> {
        let _admin = self.admin.lock();
        let mut spec = self.participant(participant).ok_or(EngineError::UnknownParticipant(participant))?;
        match spec.net_debit_caps.iter_mut().find(|(c, _)| *c == currency) {
            Some(entry) => entry.1 = cap,
            None => {
                return Err(EngineError::Config(format!("participant {participant:?} does not settle in {currency}")))
            }
        }
        self.caps.set_cap((participant, currency), cap);
        self.participants.write().insert(participant, spec.clone());
        self.ledger.put_metadata(&[(meta_key(META_PARTICIPANT, participant.0.into()), encode_participant(&spec))])?;
        Ok(())
    }

    /// Suspends a participant (`true`) or reinstates it: from the next burst of every
    /// shard, nothing new of it is approved (declined `ParticipantSuspended`); what it
    /// approved before still completes, reverses and settles. Durable (a journal entry),
    /// so it survives a restart and reaches a standby.
    pub fn set_suspended(&self, participant: ParticipantId, suspended: bool) -> Result<(), EngineError> {
        let _admin = self.admin.lock();
        if self.participant(participant).is_none() {
            return Err(EngineError::UnknownParticipant(participant));
        }
        let mut set: Suspended = (**self.rules.suspended.load()).clone();
        if suspended {
            set.insert(participant);
        } else {
            set.remove(&participant);
        }
        let mut ids: Vec<u64> = set.iter().map(|p| p.0).collect();
        ids.sort_unstable();
        let record = serde_json::to_vec(&ids).map_err(|e| EngineError::Config(e.to_string()))?;
        // Journaled first: the shards never act on a suspension the books do not hold.
        self.ledger.put_metadata(&[(vec![META_SUSPENDED], record)])?;
        self.rules.suspended.store(Arc::new(set));
        Ok(())
    }

    /// Whether the operator has suspended a participant.
    pub fn is_suspended(&self, participant: ParticipantId) -> bool {
        let suspended = self.rules.suspended.load();
        !suspended.is_empty() && suspended.contains(&participant)
    }

    /// Headroom of a participant's cap not granted to any shard.
    pub fn cap_headroom(&self, participant: ParticipantId, currency: Currency) -> Option<i128> {
        self.caps.available((participant, currency))
    }

    /// Provisions cardholder accounts in bulk: ledger accounts that may not be overdrawn,
    /// funded with their opening balance from the issuer's position account (on-us, so no
    /// position moves), and their authorization state in their shards.
    pub fn add_accounts(&self, specs: &[AccountSpec]) -> Result<(), EngineError> {
        if specs.len() > PROVISION_BATCH_MAX {
            return Err(EngineError::Config(format!("at most {PROVISION_BATCH_MAX} accounts per call")));
        }
        let _admin = self.admin.lock();
        for spec in specs {
            if participant_of_account(spec.id).is_some() || spec.id.0 == 0 {
                return Err(EngineError::Account(spec.id, "id is reserved for position accounts".into()));
            }
            let participant =
                self.participant(spec.participant).ok_or(EngineError::UnknownParticipant(spec.participant))?;
            if !participant.net_debit_caps.iter().any(|(c, _)| *c == spec.currency) {
                return Err(EngineError::Account(spec.id, format!("participant does not settle in {}", spec.currency)));
            }
        }
        let accounts: Vec<Account> = specs
            .iter()
            .map(|spec| Account {
                id: spec.id,
                participant: spec.participant,
                currency: spec.currency,
                kind: AccountKind::Cardholder,
                flags: AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
                credit_limit: 0,
                debit_limits: debit_limits(spec.velocity),
                user_data: status_data(spec.status),
            })
            .collect();
        let mut fresh = Vec::new();
        for ((spec, account), result) in specs.iter().zip(&accounts).zip(self.ledger.create_accounts(&accounts)?) {
            match result {
                Ok(true) => fresh.push(*spec),
                Ok(false) => {}
                // Provisioned again with other daily limits or status (the configuration
                // changed): they apply from now on.
                Err(AccountError::IdConflict)
                    if self.ledger.account(account.id).is_some_and(|view| {
                        Account { debit_limits: account.debit_limits, user_data: account.user_data, ..view.account }
                            == *account
                    }) =>
                {
                    self.change_account(account.id, |update| {
                        update.debit_limits = account.debit_limits;
                        update.user_data = account.user_data;
                    })?;
                }
                Err(e) => return Err(EngineError::Account(account.id, e.to_string())),
            }
        }
        // Opening balances, in ledger batches; the transfer id is derived from the account
        // so that provisioning twice funds once.
        let funding: Vec<Transfer> = fresh
            .iter()
            .filter(|spec| spec.opening_balance > 0)
            .map(|spec| {
                let id = RequestKey::derive("opening-balance", &[&spec.id.0.to_be_bytes()]).0;
                let issuer = participant_account(spec.participant, spec.currency);
                let mut transfer = Transfer::new(id, issuer.0, spec.id.0, spec.opening_balance, spec.currency);
                transfer.code = TRANSFER_CODE_OPENING_BALANCE;
                transfer
            })
            .collect();
        for chunk in funding.chunks(BATCH_TRANSFERS_MAX) {
            for (transfer, result) in chunk.iter().zip(self.ledger.commit(chunk)?) {
                result.map_err(|e| EngineError::Account(transfer.credit_account, format!("opening balance: {e}")))?;
            }
        }
        self.install_accounts(specs)?;
        Ok(())
    }

    fn install_accounts(&self, specs: &[AccountSpec]) -> Result<(), EngineError> {
        let shards = self.shards.read().clone();
        let mut per_shard: Vec<Vec<AccountSpec>> = vec![Vec::new(); shards.len()];
        for spec in specs {
            per_shard[self.shard_of(spec.id.0, shards.len())].push(*spec);
        }
        for (shard, specs) in shards.iter().zip(per_shard) {
            if !specs.is_empty() {
                shard.send(ShardMessage::AddAccounts(specs)).map_err(|_| EngineError::Stopped)?;
            }
        }
        Ok(())
    }

    /// Provisions cards; only the vault's hash of each PAN is kept.
    pub fn add_cards(&self, cards: &[CardSpec]) -> Result<Vec<PanKey>, EngineError> {
        let mut records = Vec::with_capacity(cards.len());
        let mut keys = Vec::with_capacity(cards.len());
        let mut entries = Vec::with_capacity(cards.len());
        for card in cards {
            let (key, entry) = self.directory.card_entry(&self.vault, card)?;
            records.push((meta_key(META_CARD, key.0), encode_card(&entry)));
            entries.push((key, entry));
            keys.push(key);
        }
        // Durable first: a card the directory serves is one a restart knows again.
        self.ledger.put_metadata(&records)?;
        for (key, entry) in entries {
            self.directory.insert_entry(key, entry)?;
        }
        Ok(keys)
    }

    /// Provisions device tokens with their domain restrictions.
    pub fn add_tokens(&self, tokens: &[TokenSpec]) -> Result<Vec<PanKey>, EngineError> {
        let mut records = Vec::with_capacity(tokens.len());
        let mut keys = Vec::with_capacity(tokens.len());
        let mut entries = Vec::with_capacity(tokens.len());
        for token in tokens {
            let (key, entry) = self.directory.token_entry(&self.vault, token)?;
            records.push((meta_key(META_CARD, key.0), encode_card(&entry)));
            let sealed = token.fpan.as_ref().map(|fpan| self.vault.seal(fpan));
            if let Some(sealed) = &sealed {
                records.push((meta_key(META_SEALED_PAN, key.0), sealed.clone()));
            }
            entries.push((key, entry, sealed));
            keys.push(key);
        }
        // Durable first: a token the directory serves is one a restart knows again.
        self.ledger.put_metadata(&records)?;
        for (key, entry, sealed) in entries {
            if let Some(sealed) = sealed {
                self.directory.insert_sealed(key, sealed);
            }
            self.directory.insert_entry(key, entry)?;
        }
        Ok(keys)
    }

    /// Suspends, resumes or deletes a device token: the changed record is durable before
    /// the token's next use sees it. A deleted token stays deleted (what it approved still
    /// completes or reverses); the state it had before is returned.
    pub fn set_token_state(&self, key: PanKey, state: TokenState) -> Result<TokenState, EngineError> {
        let _admin = self.admin.lock();
        let not_a_token = || EngineError::Config("no device token has this number".into());
        let mut entry = self.directory.get(key).ok_or_else(not_a_token)?;
        let token = entry.token.as_mut().ok_or_else(not_a_token)?;
        let before = token.state;
        if before == TokenState::Deleted && state != TokenState::Deleted {
            return Err(EngineError::Config("the token is deleted; a deleted token never comes back".into()));
        }
        if before != state {
            token.state = state;
            self.ledger.put_metadata(&[(meta_key(META_CARD, key.0), encode_card(&entry))])?;
            self.directory.insert_entry(key, entry)?;
        }
        Ok(before)
    }

    /// A cardholder account's participant, currency and status; `None` if it is not one.
    pub fn account_status(&self, id: AccountId) -> Option<(ParticipantId, Currency, AccountStatus)> {
        let view = self.ledger.account(id)?;
        (view.account.kind == AccountKind::Cardholder)
            .then(|| (view.account.participant, view.account.currency, status_of_data(view.account.user_data)))
    }

    /// Seals a secret (a device token's number, kept so that a replayed token request gets
    /// the same one) under the vault's sealing key: `Vault::seal`.
    pub fn seal(&self, secret: &str) -> Vec<u8> {
        self.vault.seal(secret)
    }

    /// Opens what `seal` sealed; `None` if it was sealed under another vault key or altered.
    pub fn open_sealed(&self, sealed: &[u8]) -> Option<String> {
        self.vault.open(sealed)
    }

    /// What the directory knows of a card or device token.
    pub fn card_entry(&self, key: PanKey) -> Option<CardEntry> {
        self.directory.get(key)
    }

    /// Why a new use of a device token would be refused now (`CardEntry::token_refusal`):
    /// for requests the switch forwards to an issuer's host, which the shards never see.
    pub fn token_refusal(&self, key: PanKey, mode: EntryMode) -> Option<DeclineReason> {
        let today = crate::clock::yymm(crate::clock::now_unix_s());
        self.directory.get(key)?.token_refusal(mode, today, false)
    }

    /// Funds an account's opening balance if it was not: for an account whose creation a
    /// crash cut short between the account and its funding (the transfer id is derived
    /// from the account, so it is never funded twice).
    pub fn ensure_opening_balance(&self, spec: &AccountSpec) -> Result<(), EngineError> {
        if spec.opening_balance == 0 {
            return Ok(());
        }
        let id = RequestKey::derive("opening-balance", &[&spec.id.0.to_be_bytes()]).0;
        if self.ledger.transfer(TransferId(id))?.is_some() {
            return Ok(());
        }
        let issuer = participant_account(spec.participant, spec.currency);
        let mut transfer = Transfer::new(id, issuer.0, spec.id.0, spec.opening_balance, spec.currency);
        transfer.code = TRANSFER_CODE_OPENING_BALANCE;
        for result in self.ledger.commit(std::slice::from_ref(&transfer))? {
            result.map_err(|e| EngineError::Account(spec.id, format!("opening balance: {e}")))?;
        }
        Ok(())
    }

    // ---- moving an issuer to another partition of the switch --------------------------

    /// The cardholder accounts of `issuer`, as another partition would provision them
    /// (opening balance 0: what they hold moves with `hand_out` and `hand_in`).
    pub fn issuer_accounts(&self, issuer: ParticipantId) -> Vec<AccountSpec> {
        let mut specs = Vec::new();
        self.ledger.for_each_account(|account| {
            if account.participant == issuer && account.kind == AccountKind::Cardholder {
                specs.push(spec_of(account));
            }
        });
        specs
    }

    /// The directory's records of the cards and tokens on `accounts`, as the ledger's
    /// metadata keeps them (a PAN key, never a card number; a token's real number sealed).
    pub fn card_records(&self, accounts: &BTreeSet<AccountId>) -> Result<Vec<CardRecord>, EngineError> {
        let mut records = Vec::new();
        self.ledger.scan_metadata(&[META_CARD], |key, value| {
            let Some(id) = key.get(1..17).and_then(|id| <[u8; 16]>::try_from(id).ok()) else { return };
            if decode_card(value).is_some_and(|entry| accounts.contains(&entry.account)) {
                records.push(CardRecord { key: PanKey(u128::from_be_bytes(id)), card: value.to_vec(), sealed: None });
            }
        })?;
        for record in &mut records {
            record.sealed = self.ledger.metadata(&meta_key(META_SEALED_PAN, record.key.0))?;
        }
        Ok(records)
    }

    /// Provisions cards and tokens another partition handed over (`card_records`): durable
    /// before the directory serves them.
    pub fn import_cards(&self, cards: &[CardRecord]) -> Result<(), EngineError> {
        let mut metadata = Vec::with_capacity(cards.len());
        let mut entries = Vec::with_capacity(cards.len());
        for card in cards {
            let entry = decode_card(&card.card)
                .ok_or_else(|| EngineError::Config(format!("card record {:032x} is not readable", card.key.0)))?;
            metadata.push((meta_key(META_CARD, card.key.0), card.card.clone()));
            if let Some(sealed) = &card.sealed {
                metadata.push((meta_key(META_SEALED_PAN, card.key.0), sealed.clone()));
            }
            entries.push((card.key, entry, card.sealed.clone()));
        }
        for chunk in metadata.chunks(PROVISION_BATCH_MAX) {
            self.ledger.put_metadata(chunk)?;
        }
        for (key, entry, sealed) in entries {
            if let Some(sealed) = sealed {
                self.directory.insert_sealed(key, sealed);
            }
            self.directory.insert_entry(key, entry)?;
        }
        Ok(())
    }

    /// Moves what each account has available now to its issuer's position account (on-us:
    /// no position moves), once for its key: a key booked before moves nothing again and
    /// its amount is returned. Holds stay where they are. In ledger batches.
    pub fn hand_out(&self, accounts: &[(AccountId, RequestKey)]) -> Result<Vec<u64>, EngineError> {
        let mut amounts = vec![0u64; accounts.len()];
        let mut transfers = Vec::new();
        let mut slots = Vec::new();
        for (slot, (account, key)) in accounts.iter().enumerate() {
            if let Some(record) = self.ledger.transfer(TransferId(key.0))? {
                amounts[slot] = record.transfer.amount;
                continue;
            }
            let view = self
                .ledger
                .account(*account)
                .ok_or_else(|| EngineError::Account(*account, "no such account".into()))?;
            let amount = u64::try_from(view.balances.available()).unwrap_or(0);
            if amount == 0 {
                continue;
            }
            let position = participant_account(view.account.participant, view.account.currency);
            let mut transfer = Transfer::new(key.0, account.0, position.0, amount, view.account.currency);
            transfer.code = TRANSFER_CODE_HANDOVER;
            transfers.push(transfer);
            slots.push(slot);
        }
        let mut slots = slots.into_iter();
        for chunk in transfers.chunks(BATCH_TRANSFERS_MAX) {
            for (transfer, result) in chunk.iter().zip(self.ledger.commit(chunk)?) {
                let slot = slots.next().unwrap_or_default();
                result.map_err(|e| EngineError::Account(transfer.debit_account, format!("handing over: {e}")))?;
                amounts[slot] = transfer.amount;
            }
        }
        Ok(amounts)
    }

    /// Credits what another partition's `hand_out` moved to each account, from its
    /// issuer's position account, once for its key; provisions the accounts this
    /// partition has none of first. With `replace` (a move's hand-over, not a later sweep)
    /// it empties the ones it had into the position account first: the account then holds
    /// what the old owner handed over. In ledger batches.
    pub fn hand_in(&self, accounts: &[(AccountSpec, RequestKey, u64)], replace: bool) -> Result<(), EngineError> {
        let missing: Vec<AccountSpec> = accounts
            .iter()
            .filter(|(spec, _, _)| self.ledger.account(spec.id).is_none())
            .map(|(spec, _, _)| AccountSpec { opening_balance: 0, ..*spec })
            .collect();
        for chunk in missing.chunks(PROVISION_BATCH_MAX) {
            self.add_accounts(chunk)?;
        }
        let mut transfers = Vec::new();
        for (spec, key, amount) in accounts {
            if self.ledger.transfer(TransferId(key.0))?.is_some() {
                continue;
            }
            let position = participant_account(spec.participant, spec.currency);
            // An account this partition had already (a configuration's cards are
            // provisioned on every node, each with its opening balance) holds what the
            // old owner says, not that plus its own: what it has available goes back to
            // the issuer's position first (once: the id is derived from the hand-over's).
            let own = self.ledger.account(spec.id).map(|view| view.balances.available()).unwrap_or(0);
            let absorb = RequestKey::derive_from(*key, "absorbed");
            let absorbed = || self.ledger.transfer(TransferId(absorb.0));
            if let (true, Ok(own @ 1..), None) = (replace, u64::try_from(own), absorbed()?) {
                let mut transfer = Transfer::new(absorb.0, spec.id.0, position.0, own, spec.currency);
                transfer.code = TRANSFER_CODE_HANDOVER;
                transfers.push(transfer);
            }
            if *amount > 0 {
                let mut transfer = Transfer::new(key.0, position.0, spec.id.0, *amount, spec.currency);
                transfer.code = TRANSFER_CODE_HANDOVER;
                transfers.push(transfer);
            }
        }
        for chunk in transfers.chunks(BATCH_TRANSFERS_MAX) {
            for (transfer, result) in chunk.iter().zip(self.ledger.commit(chunk)?) {
                result.map_err(|e| EngineError::Account(transfer.credit_account, format!("taking over: {e}")))?;
            }
        }
        Ok(())
    }

    /// Blocks, closes or reopens an account: a journaled change of the ledger account (its
    /// `user_data` holds the status), then the account's shard applies it.
    pub fn set_account_status(&self, id: AccountId, status: AccountStatus) -> Result<(), EngineError> {
        let _admin = self.admin.lock();
        self.change_account(id, |update| update.user_data = status_data(status))?;
        let shards = self.shards.read().clone();
        shards[self.shard_of(id.0, shards.len())]
            .send(ShardMessage::SetStatus(id, status))
            .map_err(|_| EngineError::Stopped)?;
        Ok(())
    }

    /// Changes an account's daily limits. The ledger checks them (with funds), so they are
    /// a journaled change to the ledger account, effective for the next request.
    pub fn set_velocity_limits(&self, id: AccountId, limits: VelocityLimits) -> Result<(), EngineError> {
        let _admin = self.admin.lock();
        self.change_account(id, |update| update.debit_limits = debit_limits(limits))
    }

    /// A journaled change to a provisioned cardholder account's attributes.
    fn change_account(&self, id: AccountId, change: impl FnOnce(&mut AccountUpdate)) -> Result<(), EngineError> {
        let view = self.ledger.account(id).ok_or_else(|| EngineError::Account(id, "not provisioned".into()))?;
        if view.account.kind != AccountKind::Cardholder {
            return Err(EngineError::Account(id, "not a cardholder account".into()));
        }
        let mut update = AccountUpdate {
            id,
            flags: view.account.flags,
            credit_limit: view.account.credit_limit,
            debit_limits: view.account.debit_limits,
            user_data: view.account.user_data,
        };
        change(&mut update);
        self.ledger.update_account(update)?.map_err(|e| EngineError::Account(id, e.to_string()))
    }

    /// Closes the settlement window and gives each participant its window's net back as
    /// headroom: the next window starts from zero.
    pub fn close_window(&self) -> Result<WindowPositions, EngineError> {
        let _admin = self.admin.lock();
        let closed = self.ledger.close_window()?;
        for ((participant, currency), position) in &closed.positions {
            self.caps.give_back((*participant, *currency), -position.net());
        }
        Ok(closed)
    }

    /// Reloads provisioning persisted by earlier runs.
    fn reload(&self) -> Result<(), EngineError> {
        let mut participants = Vec::new();
        let mut failure = None;
        self.ledger.scan_metadata(&[META_PARTICIPANT], |_, value| match decode_participant(value) {
            Some(spec) => participants.push(spec),
            None => failure = Some("participant"),
        })?;
        for spec in &participants {
            self.add_participant_inner(spec)?;
        }
        // Cardholder accounts are the ledger's, with the engine's status in their data. They
        // go to their shards in chunks as they are read, so the shards insert meanwhile.
        let shards = self.shards.read().clone();
        let expected = self.ledger.account_count();
        for shard in shards.iter() {
            // Accounts spread evenly over shards (by hash); a little slack for the skew.
            let share = expected / shards.len() + expected / (shards.len() * 64) + 1;
            shard.send(ShardMessage::ReserveAccounts(share)).map_err(|_| EngineError::Stopped)?;
        }
        let mut buffers: Vec<Vec<AccountSpec>> = vec![Vec::new(); shards.len()];
        let mut accounts = 0usize;
        let mut stopped = false;
        self.ledger.for_each_account(|account| {
            if account.kind != AccountKind::Cardholder {
                return;
            }
            accounts += 1;
            let shard = self.shard_of(account.id.0, shards.len());
            buffers[shard].push(spec_of(account));
            if buffers[shard].len() >= RELOAD_CHUNK_ACCOUNTS {
                let chunk = std::mem::take(&mut buffers[shard]);
                stopped |= shards[shard].send(ShardMessage::AddAccounts(chunk)).is_err();
            }
        });
        for (shard, chunk) in shards.iter().zip(buffers) {
            if !chunk.is_empty() {
                stopped |= shard.send(ShardMessage::AddAccounts(chunk)).is_err();
            }
        }
        if stopped {
            return Err(EngineError::Stopped);
        }
        let mut cards = 0usize;
        let directory = Arc::clone(&self.directory);
        let mut directory_error = None;
        self.ledger.scan_metadata(&[META_CARD], |key, value| {
            match (key.get(1..17).and_then(|k| k.try_into().ok()), decode_card(value)) {
                (Some(k), Some(entry)) => {
                    if let Err(e) = directory.insert_entry(PanKey(u128::from_be_bytes(k)), entry) {
                        directory_error = Some(e);
                    }
                    cards += 1;
                }
                _ => failure = Some("card"),
            }
        })?;
        let directory = Arc::clone(&self.directory);
        self.ledger.scan_metadata(&[META_SEALED_PAN], |key, value| {
            match key.get(1..17).and_then(|k| k.try_into().ok()) {
                Some(k) => directory.insert_sealed(PanKey(u128::from_be_bytes(k)), value.to_vec()),
                None => failure = Some("sealed card number"),
            }
        })?;
        let mut suspended = None;
        self.ledger.scan_metadata(&[META_SUSPENDED], |_, value| {
            suspended = Some(serde_json::from_slice::<Vec<u64>>(value).ok());
        })?;
        match suspended {
            Some(Some(ids)) => self.rules.suspended.store(Arc::new(ids.into_iter().map(ParticipantId).collect())),
            Some(None) => failure = Some("suspended participants"),
            None => {}
        }
        let mut routes = None;
        self.ledger.scan_metadata(&[META_BIN_ROUTES], |_, value| {
            routes = Some(serde_json::from_slice::<Vec<BinRoute>>(value).ok().and_then(|r| BinTable::new(r).ok()));
        })?;
        match routes {
            Some(Some(table)) => self.routes.replace(table),
            Some(None) => failure = Some("BIN routes"),
            None => {}
        }
        if let Some(what) = failure {
            return Err(EngineError::Metadata(format!("a {what} record")));
        }
        if let Some(error) = directory_error {
            return Err(error.into());
        }
        // Positions of the open window already used headroom, and so do the holds still
        // pending: their reservations are back as before the restart, and each shard
        // gives a hold's back when it expires.
        if let Some(window) = self.ledger.window_positions(self.ledger.current_window()) {
            for ((participant, currency), position) in &window.positions {
                self.caps.give_back((*participant, *currency), position.net());
            }
        }
        self.restore_holds()?;
        if !participants.is_empty() {
            tracing::info!(participants = participants.len(), accounts, cards, "provisioning reloaded");
        }
        Ok(())
    }

    /// The holds the ledger has pending, as cap reservations: taken from the pool, and
    /// kept by the shard of each hold's account until the hold is resolved or expires.
    fn restore_holds(&self) -> Result<(), EngineError> {
        let shards = self.shards.read().clone();
        let mut per_shard: Vec<Vec<(RequestKey, HeldReservation)>> = vec![Vec::new(); shards.len()];
        let mut reserved: FxHashMap<PositionKey, i128> = FxHashMap::default();
        for (id, hold) in self.ledger.pending_holds() {
            let Some(participant) = self.ledger.account(hold.debit_account).map(|view| view.account.participant) else {
                continue;
            };
            let cap = (participant, hold.currency);
            *reserved.entry(cap).or_default() -= i128::from(hold.amount);
            let expires_at_s = if hold.expires_at == 0 { u64::MAX } else { hold.expires_at / 1_000_000_000 };
            let shard = self.shard_of(hold.debit_account.0, shards.len());
            per_shard[shard].push((
                RequestKey(id.0),
                HeldReservation { cap, amount: hold.amount, expires_at_s, rrn: Text::default() },
            ));
        }
        self.caps.give_back_all(&reserved);
        for (shard, holds) in shards.iter().zip(per_shard) {
            if !holds.is_empty() {
                shard.send(ShardMessage::RestoreHolds(holds)).map_err(|_| EngineError::Stopped)?;
            }
        }
        Ok(())
    }

    /// Stops the pipeline after answering everything already accepted.
    pub fn shutdown(&self) {
        self.shards.write().clear();
        for thread in self.threads.lock().drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts a pipeline thread. A panic on it ends the whole process at once, after the panic
/// hook has printed it: a broken invariant on one stage must not leave the other stages
/// answering 91 or waiting forever for it. A supervisor restarts the switch, and recovery
/// rebuilds the state from the journal.
fn spawn(name: String, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, EngineError> {
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_err() {
                std::process::abort();
            }
        })
        .map_err(|e| EngineError::Config(format!("spawning a thread: {e}")))
}

/// The ledger's debit limits of an account with these daily limits.
fn debit_limits(limits: VelocityLimits) -> DebitLimits {
    DebitLimits { count_per_day_max: limits.count_per_day_max, amount_per_day_max: limits.amount_per_day_max }
}

/// An account's status as the engine keeps it in the ledger account's `user_data`.
fn status_data(status: AccountStatus) -> u64 {
    match status {
        AccountStatus::Active => 0,
        AccountStatus::Blocked => 1,
        AccountStatus::Closed => 2,
    }
}

/// What the engine knows of a ledger account, as a spec (its opening balance 0: the
/// ledger has its balances).
fn spec_of(account: &Account) -> AccountSpec {
    AccountSpec {
        id: account.id,
        participant: account.participant,
        currency: account.currency,
        opening_balance: 0,
        status: status_of_data(account.user_data),
        velocity: VelocityLimits {
            count_per_day_max: account.debit_limits.count_per_day_max,
            amount_per_day_max: account.debit_limits.amount_per_day_max,
        },
    }
}

fn status_of_data(data: u64) -> AccountStatus {
    match data {
        1 => AccountStatus::Blocked,
        2 => AccountStatus::Closed,
        _ => AccountStatus::Active,
    }
}

/// A card or token as the directory keeps it in the ledger's metadata, for moving its
/// issuer to another partition (`Engine::card_records`, `Engine::import_cards`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRecord {
    pub key: PanKey,
    /// The encoded directory entry (`provisioning::encode_card`).
    pub card: Vec<u8>,
    /// A token's real card number, sealed by the vault.
    pub sealed: Option<Vec<u8>>,
}

/// The reply sink of a hosted booking: answers the request, then the copies that waited.
struct HostedReply {
    inner: Arc<dyn ReplySink>,
    hosted: Arc<InFlight>,
}

impl ReplySink for HostedReply {
    fn send(&self, response: Response) {
        self.inner.send(response);
        self.hosted.finish(response.key, &response);
    }
}
