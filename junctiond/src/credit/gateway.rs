//! The credit transfers' gateway: a pacs.008 checked, resolved, limited, priced, booked,
//! pushed to the receiving system, and answered; returns, recalls, and the background
//! work that finishes what a restart or a slow receiver left open.

use super::messages::{self, CreditTransferMessage, Creditor, Refusal, Status};
use super::records::{self, Record, State, Usage, UsageClaim};
use super::xml::{self, Kind, Leaves};
use crate::admission::{self, Admission};
use crate::config::{Config, CreditTransfersConfig};
use crate::fx::{FxError, FxTable};
use crate::metrics::Metrics;
use crate::qr::{is_final, ApiError, Known, Signers};
use axum::http::StatusCode;
use junction_engine::books::participant_account;
use junction_engine::codes::DeclineReason;
use junction_engine::detail::{Channel, Detail, Text};
use junction_engine::model::Response;
use junction_engine::model::{EntryMode, FxLeg, Instrument, Operation, Request, RequestKey, Role};
use junction_engine::Engine;
use junction_ledger::{Currency, ParticipantId};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Most credits in flight (being booked, pushed or returned) at once. Past it a new
/// credit is refused with 503 (retry), never queued without bound.
pub const CREDITS_IN_FLIGHT_MAX: usize = 100_000;

/// How many times the final status is pushed to a sender that was answered "pending"
/// before the switch stops (the sender can still ask again with the same message).
pub const SENDER_NOTICES_MAX: u32 = 10;

/// A payment system, as the directory knows it (onboarded at runtime or configured).
pub struct System {
    pub id: ParticipantId,
    pub bic: String,
    pub currency: Currency,
    pub endpoint: String,
    /// Retired: no new credit goes to it; those booked before are still delivered and
    /// returned.
    pub retired: bool,
}

fn system_of(member: &crate::directory::Member) -> Option<Arc<System>> {
    if member.role != Role::PaymentSystem {
        return None;
    }
    Some(Arc::new(System {
        id: member.id,
        bic: member.bic.clone(),
        currency: *member.currencies.first()?,
        endpoint: member.endpoint.clone()?,
        retired: member.is_retired(),
    }))
}

struct Proxy {
    system: ParticipantId,
    account: String,
    name: String,
}

/// What a debtor may send in one currency (minor units; 0 = no limit).
#[derive(Debug, Clone, Copy, Default)]
struct Limits {
    per_transaction: u64,
    per_day: u64,
    per_year: u64,
}

/// A credit being moved, in memory: its record, and a version each change bumps (the
/// sender's request waits on it).
pub(super) struct Live {
    pub(super) record: Mutex<Record>,
    changed: tokio::sync::watch::Sender<u64>,
    /// A `finish` task is taking it to its end (one at a time).
    finishing: std::sync::atomic::AtomicBool,
}

impl Live {
    fn new(record: Record) -> Live {
        let (changed, _) = tokio::sync::watch::channel(0);
        Live { record: Mutex::new(record), changed, finishing: std::sync::atomic::AtomicBool::new(false) }
    }

    fn update(&self, change: impl FnOnce(&mut Record)) -> Record {
        self.update_then(change, |_| {})
    }

    /// `update`, with `then` run on the new record while it is still locked (writing it:
    /// two changes are written in the order they were made).
    fn update_then(&self, change: impl FnOnce(&mut Record), then: impl FnOnce(&Record)) -> Record {
        let mut record = self.record.lock();
        change(&mut record);
        then(&record);
        let copy = record.clone();
        drop(record);
        self.changed.send_modify(|version| *version += 1);
        copy
    }
}

/// The gateway's state.
pub struct CreditGateway {
    engine: Arc<Engine>,
    admission: Arc<Admission>,
    metrics: Arc<Metrics>,
    signers: Signers,
    directory: Arc<crate::directory::Directory>,
    fx: Arc<FxTable>,
    /// By (kind, id) and by id alone (a proxy given without its type).
    proxies: HashMap<(String, String), Proxy>,
    proxy_kinds: HashMap<String, Vec<String>>,
    limits: HashMap<Currency, Limits>,
    pub(super) settings: CreditTransfersConfig,
    switch_bic: String,
    pub(super) live: Mutex<HashMap<u128, Arc<Live>>>,
    usage: Mutex<HashMap<String, Usage>>,
    http: ureq::Agent,
    next_message: AtomicU64,
    /// Quotes handed out and not yet used or expired, by id.
    quotes: Mutex<HashMap<String, CreditQuote>>,
}

/// Most quotes held at once; past it, a new quote is refused with 503.
pub const CREDIT_QUOTES_MAX: usize = 100_000;

/// How long a return refused for good waits before it is tried again.
const RETURN_REFUSED_RETRY: Duration = Duration::from_secs(60);

/// Most live quotes of one sender.
pub const CREDIT_QUOTES_PER_SENDER_MAX: usize = 1_000;

/// A rate locked for one sender, one pair and one amount, until it expires or is used.
#[derive(Debug, Clone)]
struct CreditQuote {
    sender: u64,
    debit: (u64, Currency),
    credit: (u64, Currency),
    /// Which side the sender fixed.
    fixed: (u64, Currency),
    provider: ParticipantId,
    /// The all-in rate (credit currency per debit currency) as `XchgRate` carries it.
    rate: rust_decimal::Decimal,
    expires_at_ms: u64,
}

/// What `POST /v1/iso20022/quotes` asks.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    /// The receiving system's currency.
    pub creditor_currency: String,
    /// The amount and its currency: the sender's (what is debited) or the creditor's
    /// (what is received).
    pub amount: String,
    pub currency: String,
}

/// The answer to the sender or a receiver: the HTTP status and an XML body.
#[derive(Default)]
pub struct XmlAnswer {
    pub status: u16,
    pub body: String,
    /// A return that names no credit this partition booked: in a partitioned switch,
    /// another partition may have booked it (`doors.rs`).
    pub not_known_here: bool,
}

impl CreditGateway {
    pub fn new(
        engine: Arc<Engine>,
        directory: &Arc<crate::directory::Directory>,
        config: &Config,
        admission: Arc<Admission>,
        metrics: Arc<Metrics>,
        fx: Arc<FxTable>,
    ) -> Result<CreditGateway, String> {
        let settings = config.credit_transfers.clone();
        let mut proxies = HashMap::new();
        let mut proxy_kinds: HashMap<String, Vec<String>> = HashMap::new();
        for proxy in &settings.proxies {
            proxies.insert(
                (proxy.kind.clone(), proxy.id.clone()),
                Proxy { system: ParticipantId(proxy.system), account: proxy.account.clone(), name: proxy.name.clone() },
            );
            proxy_kinds.entry(proxy.id.clone()).or_default().push(proxy.kind.clone());
        }
        let mut limits = HashMap::new();
        for limit in &settings.limits {
            let currency = Currency::from_code(&limit.currency).map_err(|e| e.to_string())?;
            limits.insert(
                currency,
                Limits {
                    per_transaction: limit.per_transaction_max,
                    per_day: limit.per_debtor_day_max,
                    per_year: limit.per_debtor_year_max,
                },
            );
        }
        let http = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(settings.delivery_timeout_ms)))
            .http_status_as_error(false)
            .max_response_header_size(16 * 1024)
            .build()
            .new_agent();
        let gateway = CreditGateway {
            engine,
            admission,
            metrics,
            signers: Signers::new(Arc::clone(directory), config),
            directory: Arc::clone(directory),
            fx,
            proxies,
            proxy_kinds,
            limits,
            settings,
            switch_bic: config.switch.bic.clone(),
            live: Mutex::new(HashMap::new()),
            usage: Mutex::new(HashMap::new()),
            http,
            next_message: AtomicU64::new(0),
            quotes: Mutex::new(HashMap::new()),
        };
        Ok(gateway)
    }

    /// Loads the debtors' usage and the credits a previous run left unfinished; their
    /// work is resumed by `resume`.
    pub fn load(&self) -> Result<Vec<RequestKey>, String> {
        let ledger = self.engine.ledger();
        let usage: Vec<Usage> = records::load_all(ledger, records::META_DEBTOR_USAGE).map_err(|e| e.to_string())?;
        let mut table = self.usage.lock();
        for entry in usage {
            table.insert(entry.debtor.clone(), entry);
        }
        drop(table);
        // Streamed: only the unfinished records are kept.
        let mut open = Vec::new();
        let mut live = self.live.lock();
        ledger
            .scan_metadata(&[records::META_CREDIT], |_, value| {
                let Ok(record) = serde_json::from_slice::<Record>(value) else {
                    tracing::error!("a credit transfer record does not decode; skipped");
                    return;
                };
                let unfinished =
                    !record.state.is_final() || (!record.sender_told && record.notices < SENDER_NOTICES_MAX);
                if let (true, Some(key)) = (unfinished, record.request_key()) {
                    live.insert(key.0, Arc::new(Live::new(record)));
                    open.push(key);
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(open)
    }

    /// Removes final records older than `records_kept_s` (with their reference), and
    /// debtors' usage of past years. How many records went.
    pub fn prune(&self) -> Result<usize, String> {
        let ledger = self.engine.ledger();
        let cutoff = now_ms().saturating_sub(self.settings.records_kept_s.saturating_mul(1000));
        // Streamed: only what goes is kept, not every record of the duplicate window.
        let mut deletes = Vec::new();
        ledger
            .scan_metadata(&[records::META_CREDIT], |_, value| {
                let Ok(record) = serde_json::from_slice::<Record>(value) else { return };
                if !record.state.is_final() || record.received_ms >= cutoff {
                    return;
                }
                if let (Some(key), Some(reference)) =
                    (record.request_key(), records::parse_reference(&record.reference))
                {
                    deletes.push(records::record_key(key));
                    deletes.push(records::reference_key(reference));
                }
            })
            .map_err(|e| e.to_string())?;
        // A record brought back into memory (a late return) stays until it is done.
        let live = self.live.lock();
        deletes.retain(|key| {
            key[0] != records::META_CREDIT
                || !key[1..].try_into().map(u128::from_be_bytes).is_ok_and(|k| live.contains_key(&k))
        });
        drop(live);
        let removed = deletes.len() / 2;
        let (_, year) = day_and_year(now_ms());
        let mut usage = self.usage.lock();
        usage.retain(|debtor, entry| {
            let keep = entry.year >= year;
            if !keep {
                deletes.push(records::usage_key(debtor));
            }
            keep
        });
        drop(usage);
        if !deletes.is_empty() {
            ledger.delete_metadata(&deletes).map_err(|e| e.to_string())?;
        }
        Ok(removed)
    }

    fn new_message_id(&self, prefix: &str) -> String {
        let sequence = self.next_message.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        // Unique across restarts by the clock, within a run by the sequence.
        format!("JNC{prefix}{now:x}{sequence:x}")
    }

    fn verify(&self, headers: &axum::http::HeaderMap, path: &str, body: &[u8]) -> Result<Arc<Known>, ApiError> {
        let known = self.signers.verify(headers, &axum::http::Method::POST, path, body, now_ms() / 1000)?;
        if known.role != Role::PaymentSystem {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "forbidden",
                "only payment_system participants send ISO 20022 credit transfers",
            ));
        }
        Ok(known)
    }

    /// A payment system by id, retired or not (what it booked before still completes).
    fn system(&self, id: ParticipantId) -> Option<Arc<System>> {
        self.signers.get(id).and_then(|member| system_of(&member))
    }

    fn system_by_bic(&self, bic: &str) -> Option<ParticipantId> {
        self.directory.by_bic(bic).and_then(|member| system_of(&member)).filter(|s| !s.retired).map(|system| system.id)
    }

    /// Whether some payment system settles in `currency`.
    fn system_in(&self, currency: Currency) -> bool {
        self.directory.members().iter().filter_map(|m| system_of(m)).any(|s| s.currency == currency && !s.retired)
    }

    /// A status report to `to` about one of its messages.
    fn status_report(&self, to: Option<&System>, status: Status<'_>) -> String {
        let msg_id = self.new_message_id("S");
        let report = messages::status_report(&Status { msg_id: &msg_id, to_bic: to.map(|s| s.bic.as_str()), ..status });
        checked(Kind::Pacs002, report)
    }

    /// The answer to a message that could not be read or is refused as a whole.
    fn refusal(
        &self,
        to: Option<&System>,
        kind: Kind,
        original_msg_id: &str,
        refusal: &Refusal,
        status: u16,
    ) -> XmlAnswer {
        self.count(refusal.code);
        XmlAnswer {
            status,
            not_known_here: false,
            body: self.status_report(
                to,
                Status {
                    msg_id: "",
                    created_ms: now_ms(),
                    from_bic: &self.switch_bic,
                    to_bic: None,
                    original_msg_id: if original_msg_id.is_empty() { "NOTPROVIDED" } else { original_msg_id },
                    original_kind: kind,
                    original_end_to_end_id: None,
                    original_tx_id: None,
                    original_uetr: None,
                    status: "RJCT",
                    reason: Some((refusal.code, &refusal.info)),
                    accepted_ms: None,
                    reference: None,
                    settled: None,
                },
            ),
        }
    }

    fn count(&self, status: &str) {
        self.metrics.responses_by_code.with_label_values(&[crate::metrics::INTERFACE_ISO20022, status]).inc();
    }

    /// The sender's answer for a record as it stands.
    fn answer_of(&self, record: &Record) -> XmlAnswer {
        let sender = self.system(ParticipantId(record.sender));
        let (status, reason): (&str, Option<(&str, &str)>) = match &record.state {
            State::Settled { .. } => ("ACSC", None),
            State::Booking | State::Delivering | State::Returning { .. } => ("PDNG", None),
            State::Returned { code, info, .. } | State::Rejected { code, info } => ("RJCT", Some((code, info))),
        };
        let debit = Currency::from_code(&record.debit_currency).ok().map(|currency| (record.debit_minor, currency));
        let booked = !matches!(record.state, State::Rejected { .. });
        XmlAnswer {
            status: 200,
            not_known_here: false,
            body: self.status_report(
                sender.as_deref(),
                Status {
                    msg_id: "",
                    created_ms: now_ms(),
                    from_bic: &self.switch_bic,
                    to_bic: None,
                    original_msg_id: &record.msg_id,
                    original_kind: Kind::Pacs008,
                    original_end_to_end_id: Some(&record.end_to_end_id),
                    original_tx_id: record.tx_id.as_deref(),
                    original_uetr: record.uetr.as_deref(),
                    status,
                    reason,
                    accepted_ms: booked.then_some(record.received_ms),
                    reference: booked.then_some(record.reference.as_str()),
                    settled: if booked { debit } else { None },
                },
            ),
        }
    }

    // ---- quotes -------------------------------------------------------------------------

    /// `POST /v1/iso20022/quotes`: locks the FX provider's rate of the moment for one
    /// credit of the sender's, until `quote_ttl_ms`. The sender's pacs.008 then carries the
    /// quote's rate as `XchgRate` (and the same amount): it is booked at the quoted amounts.
    pub fn quote(
        &self,
        headers: &axum::http::HeaderMap,
        path: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, ApiError> {
        let signer = self.verify(headers, path, body)?;
        let sender = self.system(signer.id).ok_or_else(ApiError::system_error)?;
        let request: QuoteRequest = serde_json::from_slice(body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_json", e.to_string()))?;
        let creditor = Currency::from_code(&request.creditor_currency)
            .ok()
            .filter(|c| *c != sender.currency && self.system_in(*c))
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "unsupported_currency",
                    format!("no other payment system settles in {}", request.creditor_currency),
                )
            })?;
        let currency = Currency::from_code(&request.currency)
            .ok()
            .filter(|c| *c == sender.currency || *c == creditor)
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "unsupported_currency",
                    format!("the amount must be in {} or {creditor}", sender.currency),
                )
            })?;
        let minor = crate::fx::parse_minor_units(&request.amount, currency)
            .ok()
            .filter(|m| *m > 0 && *m <= junction_engine::AMOUNT_PER_REQUEST_MAX)
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "invalid_amount",
                    format!("{} is not a valid amount of {currency}", request.amount),
                )
            })?;
        let rate = self
            .fx
            .lookup(sender.currency, creditor)
            .map_err(|e| ApiError::unprocessable("no_fx_rate", e.to_string()))?;
        let (debit, credit) = if currency == sender.currency {
            (minor, rate.payee_amount(minor, sender.currency, creditor).unwrap_or(0))
        } else {
            (rate.payer_amount(minor, creditor, sender.currency).unwrap_or(0), minor)
        };
        if debit == 0 || credit == 0 || debit > junction_engine::AMOUNT_PER_REQUEST_MAX {
            return Err(ApiError::unprocessable("invalid_amount", "the converted amount is not valid"));
        }
        let now = now_ms();
        let quote = CreditQuote {
            sender: sender.id.0,
            debit: (debit, sender.currency),
            credit: (credit, creditor),
            fixed: (minor, currency),
            provider: rate.provider,
            rate: messages::base_one_rate(rate.payee_per_payer(sender.currency)),
            expires_at_ms: now.saturating_add(self.settings.quote_ttl_ms),
        };
        let id = self.new_message_id("Q");
        let mut quotes = self.quotes.lock();
        quotes.retain(|_, q| q.expires_at_ms > now);
        if quotes.len() >= CREDIT_QUOTES_MAX
            || quotes.values().filter(|q| q.sender == sender.id.0).count() >= CREDIT_QUOTES_PER_SENDER_MAX
        {
            return Err(overloaded());
        }
        quotes.insert(id.clone(), quote.clone());
        let money = |(minor, currency): (u64, Currency)| serde_json::json!({ "amount": currency.format_minor(minor.into()), "amount_minor": minor, "currency": currency.code() });
        Ok(serde_json::json!({
            "quote_id": id,
            "xchg_rate": quote.rate.to_string(),
            "debit": money(quote.debit),
            "credit": money(quote.credit),
            "expires_at_ms": quote.expires_at_ms,
        }))
    }

    /// The live quote of this sender that a credit's `XchgRate` and amount name (used up).
    fn take_quote(
        &self,
        sender: ParticipantId,
        rate: &str,
        fixed: (u64, Currency),
        creditor: Currency,
    ) -> Option<CreditQuote> {
        let rate: rust_decimal::Decimal = rate.parse().ok()?;
        let now = now_ms();
        let mut quotes = self.quotes.lock();
        let id = quotes
            .iter()
            .find(|(_, q)| {
                q.sender == sender.0
                    && q.expires_at_ms > now
                    && q.fixed == fixed
                    && q.credit.1 == creditor
                    && q.rate == rate.normalize()
            })
            .map(|(id, _)| id.clone())?;
        quotes.remove(&id)
    }

    /// A signed message of `kind` from a payment system, read and interpreted: its system
    /// and what it says, or the answer refusing it (`FF01` and HTTP 400 for what does not
    /// read; another reason, HTTP 200, for what reads but cannot be taken).
    async fn incoming<T>(
        &self,
        headers: &axum::http::HeaderMap,
        path: &str,
        body: axum::body::Bytes,
        kind: Kind,
        interpret: impl FnOnce(&Leaves) -> Result<T, Refusal>,
    ) -> Result<Result<(Arc<System>, T), XmlAnswer>, ApiError> {
        let signer = self.verify(headers, path, &body)?;
        let system = self.system(signer.id).ok_or_else(ApiError::system_error)?;
        let read =
            tokio::task::spawn_blocking(move || xml::read(kind, &body)).await.map_err(|_| ApiError::system_error())?;
        let leaves = match read {
            Ok(leaves) => leaves,
            Err(error) => return Ok(Err(self.refusal(Some(&system), kind, "", &Refusal::format(error.0), 400))),
        };
        match interpret(&leaves) {
            Ok(message) => Ok(Ok((system, message))),
            Err(refusal) => {
                let msg_id = leaves.text(kind.message_id_path()).unwrap_or_default();
                let status = if refusal.code == "FF01" { 400 } else { 200 };
                Ok(Err(self.refusal(Some(&system), kind, msg_id, &refusal, status)))
            }
        }
    }

    /// A message a payment system sent: a credit (pacs.008), a return (pacs.004) or a
    /// recall (camt.056).
    pub async fn receive(
        self: &Arc<Self>,
        kind: Kind,
        headers: &axum::http::HeaderMap,
        path: &str,
        body: axum::body::Bytes,
    ) -> Result<XmlAnswer, ApiError> {
        match kind {
            Kind::Pacs008 => self.receive_credit(headers, path, body).await,
            Kind::Pacs004 => self.receive_return(headers, path, body).await,
            Kind::Camt056 => self.receive_recall(headers, path, body).await,
            Kind::Pacs002 => {
                Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "the switch takes no pacs.002 here"))
            }
        }
    }

    // ---- pacs.008 from a sending system -------------------------------------------------

    /// `POST /v1/iso20022/pacs.008`.
    async fn receive_credit(
        self: &Arc<Self>,
        headers: &axum::http::HeaderMap,
        path: &str,
        body: axum::body::Bytes,
    ) -> Result<XmlAnswer, ApiError> {
        let (sender, message) =
            match self.incoming(headers, path, body, Kind::Pacs008, messages::credit_transfer).await? {
                Ok(read) => read,
                Err(refused) => return Ok(refused),
            };
        let key = credit_key(sender.id, &message.end_to_end_id, message.tx_id.as_deref());
        let digest = content_digest(sender.id, &message);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.settings.answer_within_ms);
        match self.admit(&sender, key, &digest, &message)? {
            Admit::Stored(record) => Ok(self.resend(&record, &digest, &message)),
            Admit::New(live, book) => self.start(live, book, deadline).await,
            Admit::Resumed(live) => {
                self.ensure_finishing(&live, key);
                let record = live.record.lock().clone();
                if record.digest != digest {
                    return Ok(self.duplicate(&record, &message));
                }
                Ok(self.wait_for(&live, deadline).await)
            }
            Admit::Existing(live) => {
                let record = live.record.lock().clone();
                if record.digest != digest {
                    return Ok(self.duplicate(&record, &message));
                }
                Ok(self.wait_for(&live, deadline).await)
            }
        }
    }

    /// A credit's entry: the one moving, the one stored, or a new one decided now (its
    /// entry holds the key while it moves, so a copy arriving meanwhile waits for it).
    fn admit(
        &self,
        sender: &System,
        key: RequestKey,
        digest: &str,
        message: &CreditTransferMessage,
    ) -> Result<Admit, ApiError> {
        let mut table = self.live.lock();
        if let Some(live) = table.get(&key.0) {
            return Ok(Admit::Existing(Arc::clone(live)));
        }
        let stored: Option<Record> = records::load(self.engine.ledger(), &records::record_key(key))
            .map_err(|e| ApiError::ledger_unavailable(e.to_string()))?;
        if let Some(record) = stored {
            if !record.state.is_final() {
                // Unfinished (an interrupted run of this node or of a primary before it):
                // back into memory, to be finished.
                let live = Arc::new(Live::new(record));
                table.insert(key.0, Arc::clone(&live));
                return Ok(Admit::Resumed(live));
            }
            return Ok(Admit::Stored(Box::new(record)));
        }
        if table.len() >= CREDITS_IN_FLIGHT_MAX {
            return Err(overloaded());
        }
        let (record, book) = self.decide(sender, key, digest.to_string(), message);
        let live = Arc::new(Live::new(record));
        table.insert(key.0, Arc::clone(&live));
        Ok(Admit::New(live, book))
    }

    /// A message whose ids were seen before: the same message gets the credit's status
    /// as it stands; another one with the same ids is refused as a duplicate.
    fn resend(&self, record: &Record, digest: &str, message: &CreditTransferMessage) -> XmlAnswer {
        if record.digest != digest {
            return self.duplicate(record, message);
        }
        self.count("resend");
        self.answer_of(record)
    }

    fn duplicate(&self, record: &Record, message: &CreditTransferMessage) -> XmlAnswer {
        self.count("DUPL");
        let sender = self.system(ParticipantId(record.sender));
        XmlAnswer {
            status: 200,
            not_known_here: false,
            body: self.status_report(
                sender.as_deref(),
                Status {
                    msg_id: "",
                    created_ms: now_ms(),
                    from_bic: &self.switch_bic,
                    to_bic: None,
                    original_msg_id: &message.msg_id,
                    original_kind: Kind::Pacs008,
                    original_end_to_end_id: Some(&message.end_to_end_id),
                    original_tx_id: message.tx_id.as_deref(),
                    original_uetr: message.uetr.as_deref(),
                    status: "RJCT",
                    reason: Some(("DUPL", "these end-to-end and transaction ids were used for another credit")),
                    accepted_ms: None,
                    reference: None,
                    settled: None,
                },
            ),
        }
    }

    /// Resolves, prices and limits a new credit: a record, and whether to book it.
    fn decide(
        &self,
        sender: &System,
        key: RequestKey,
        digest: String,
        message: &CreditTransferMessage,
    ) -> (Record, bool) {
        let now = now_ms();
        let reference = records::reference_of(key);
        let mut record = Record {
            key: format!("{:032x}", key.0),
            reference: records::reference_text(reference),
            sender: sender.id.0,
            receiver: 0,
            msg_id: message.msg_id.clone(),
            end_to_end_id: message.end_to_end_id.clone(),
            tx_id: message.tx_id.clone(),
            uetr: message.uetr.clone(),
            digest,
            debtor_name: message.debtor_name.clone(),
            debtor_account: message.debtor_account.clone(),
            creditor_name: message.creditor_name.clone(),
            creditor_account: String::new(),
            remittance: message.remittance.clone(),
            debit_minor: 0,
            debit_currency: sender.currency.code().to_string(),
            credit_minor: 0,
            credit_currency: String::new(),
            provider: None,
            rate: None,
            received_ms: now,
            state: State::Booking,
            attempts: 0,
            usage: None,
            sender_told: false,
            notices: 0,
            return_id: None,
            return_attempt: 0,
        };
        match self.plan(sender, message, &mut record) {
            Ok(()) => (record, true),
            Err(refusal) => {
                record.state = State::Rejected { code: refusal.code.to_string(), info: refusal.info };
                (record, false)
            }
        }
    }

    fn plan(&self, sender: &System, message: &CreditTransferMessage, record: &mut Record) -> Result<(), Refusal> {
        // The creditor: a proxy from the directory, or an account at a system by its BIC.
        let (receiver, account, name) = match &message.creditor {
            Creditor::Proxy { kind, id } => {
                let kind = match kind.as_deref() {
                    Some(kind) => kind.to_string(),
                    None => match self.proxy_kinds.get(id).map(Vec::as_slice) {
                        Some([only]) => only.clone(),
                        _ => return Err(Refusal::new("AC01", "unknown proxy")),
                    },
                };
                let proxy =
                    self.proxies.get(&(kind, id.clone())).ok_or_else(|| Refusal::new("AC01", "unknown proxy"))?;
                (proxy.system, proxy.account.clone(), Some(proxy.name.clone()).filter(|n| !n.is_empty()))
            }
            Creditor::Account { account, bic } => {
                let bic = bic.as_deref().ok_or_else(|| Refusal::new("RC01", "the creditor agent's BIC is missing"))?;
                let system = self
                    .system_by_bic(bic)
                    .or_else(|| self.system_by_bic(&format!("{bic}XXX")))
                    .ok_or_else(|| Refusal::new("RC01", format!("no payment system has BIC {bic}")))?;
                (system, account.clone(), None)
            }
        };
        if receiver == sender.id {
            return Err(Refusal::new("RC01", "the creditor's system is the sender's: pay within it"));
        }
        let receiver = self
            .system(receiver)
            .filter(|system| !system.retired)
            .ok_or_else(|| Refusal::new("RC01", "unknown or retired receiving system"))?;
        record.receiver = receiver.id.0;
        record.creditor_account = account;
        if record.creditor_name.is_none() {
            record.creditor_name = name;
        }
        record.credit_currency = receiver.currency.code().to_string();
        // The amount, in whichever of the two currencies the sender fixed.
        let currency = Currency::from_code(&message.currency)
            .ok()
            .filter(|c| *c == sender.currency || *c == receiver.currency)
            .ok_or_else(|| {
                Refusal::new(
                    "AM03",
                    format!("the amount must be in {} (sent) or {} (received)", sender.currency, receiver.currency),
                )
            })?;
        let minor = crate::fx::parse_minor_units(&message.amount, currency)
            .ok()
            .filter(|m| *m > 0 && *m <= junction_engine::AMOUNT_PER_REQUEST_MAX)
            .ok_or_else(|| Refusal::new("AM12", format!("the amount {} {currency} is not valid", message.amount)))?;
        let quoted = match &message.exchange_rate {
            Some(rate) if sender.currency != receiver.currency => {
                let quote = self.take_quote(sender.id, rate, (minor, currency), receiver.currency).ok_or_else(|| {
                    Refusal::new(
                        "NARR",
                        "XchgRate names no live quote of this amount: ask for a quote, or send no XchgRate to take the rate of the moment",
                    )
                })?;
                record.provider = Some(quote.provider.0);
                record.rate = Some(quote.rate.to_string());
                Some((quote.debit.0, quote.credit.0))
            }
            _ => None,
        };
        let (debit, credit) = if let Some(amounts) = quoted {
            amounts
        } else if sender.currency == receiver.currency {
            (minor, minor)
        } else {
            let rate = self.fx.lookup(sender.currency, receiver.currency).map_err(|e| match e {
                FxError::NoRate(..) => Refusal::new("CURR", e.to_string()),
                FxError::Overflow => Refusal::new("AM12", e.to_string()),
            })?;
            let converted = if currency == sender.currency {
                rate.payee_amount(minor, sender.currency, receiver.currency).map(|credit| (minor, credit))
            } else {
                rate.payer_amount(minor, receiver.currency, sender.currency).map(|debit| (debit, minor))
            };
            let (debit, credit) = converted.map_err(|e| Refusal::new("AM12", e.to_string()))?;
            if credit == 0 || debit > junction_engine::AMOUNT_PER_REQUEST_MAX {
                return Err(Refusal::new("AM12", "the converted amount is not valid"));
            }
            record.provider = Some(rate.provider.0);
            record.rate = Some(messages::base_one_rate(rate.payee_per_payer(sender.currency)).to_string());
            (debit, credit)
        };
        record.debit_minor = debit;
        record.credit_minor = credit;
        // The debtor's limits, in the sending currency.
        let limits = self.limits.get(&sender.currency).copied().unwrap_or_default();
        if limits.per_transaction > 0 && debit > limits.per_transaction {
            return Err(Refusal::new(
                "AM02",
                format!(
                    "over the limit per transaction ({} {})",
                    sender.currency.format_minor(limits.per_transaction.into()),
                    sender.currency
                ),
            ));
        }
        if limits.per_day > 0 || limits.per_year > 0 {
            let debtor_account = message.debtor_account.as_deref().ok_or_else(|| {
                Refusal::new("RR01", "the debtor's account is missing (DbtrAcct): limits are per debtor")
            })?;
            let debtor = format!("{}:{debtor_account}", sender.id.0);
            let (day, year) = day_and_year(record.received_ms);
            let mut usage = self.usage.lock();
            let entry =
                usage.entry(debtor.clone()).or_insert_with(|| Usage { debtor: debtor.clone(), ..Usage::default() });
            if entry.year != year {
                entry.year = year;
                entry.year_amount = 0;
            }
            if entry.day != day {
                entry.day = day;
                entry.day_amount = 0;
            }
            if limits.per_day > 0 && entry.day_amount.saturating_add(debit) > limits.per_day {
                return Err(Refusal::new("AM02", "over the debtor's limit per day"));
            }
            if limits.per_year > 0 && entry.year_amount.saturating_add(debit) > limits.per_year {
                return Err(Refusal::new("AM02", "over the debtor's limit per year"));
            }
            entry.day_amount += debit;
            entry.year_amount += debit;
            record.usage = Some(UsageClaim { debtor, day, year, amount: debit });
        }
        Ok(())
    }

    /// Records a decided credit and, when it is to be booked, books it and starts its
    /// delivery; then answers the sender.
    async fn start(
        self: &Arc<Self>,
        live: Arc<Live>,
        book: bool,
        deadline: tokio::time::Instant,
    ) -> Result<XmlAnswer, ApiError> {
        let record = live.record.lock().clone();
        let Some(key) = record.request_key() else { return Err(ApiError::system_error()) };
        let ledger = Arc::clone(self.engine.ledger());
        if !book {
            // Refused before booking: kept (synced) so that a resend gets the same answer.
            let puts =
                vec![(records::record_key(key), records::encode(&Record { sender_told: true, ..record.clone() }))];
            let stored = tokio::task::spawn_blocking(move || ledger.put_metadata(&puts)).await;
            self.live.lock().remove(&key.0);
            if !matches!(stored, Ok(Ok(()))) {
                return Err(ApiError::ledger_unavailable("the ledger did not take the record"));
            }
            let answer = self.answer_of(&record);
            if let State::Rejected { code, .. } = &record.state {
                self.count(code);
            }
            return Ok(answer);
        }
        // The record, the debtor's usage and the reference reach the disk no later than
        // the payment: after a crash the record is there to finish it.
        let mut puts = vec![
            (records::record_key(key), records::encode(&record)),
            (
                records::reference_key(records::parse_reference(&record.reference).unwrap_or_default()),
                key.0.to_be_bytes().to_vec(),
            ),
        ];
        // The usage is written under its lock: snapshots reach the journal in order.
        let written = {
            let usage = self.usage.lock();
            if let Some(claim) = &record.usage {
                if let Some(entry) = usage.get(&claim.debtor) {
                    puts.push((records::usage_key(&claim.debtor), records::encode(entry)));
                }
            }
            ledger.put_metadata_before_next_commit(&puts)
        };
        if let Err(error) = written {
            self.give_back(&record);
            self.live.lock().remove(&key.0);
            return Err(ApiError::ledger_unavailable(error.to_string()));
        }
        match self.book(&live).await {
            Booked::Yes | Booked::Refused => {}
            Booked::NotNow(reason) => {
                // Never reached the ledger (overloaded): forgotten, the sender may retry.
                self.give_back(&record);
                self.live.lock().remove(&key.0);
                let reference = records::parse_reference(&record.reference).unwrap_or_default();
                let _ = self
                    .engine
                    .ledger()
                    .delete_metadata_lazily(&[records::record_key(key), records::reference_key(reference)]);
                return Err(ApiError::declined(reason));
            }
        }
        self.ensure_finishing(&live, key);
        Ok(self.wait_for(&live, deadline).await)
    }

    /// Submits the credit's payment: the sending system's position to the receiving
    /// system's, through the FX provider when the currencies differ.
    async fn book(&self, live: &Live) -> Booked {
        let record = live.record.lock().clone();
        let Some(request) = self.payment(&record, false) else { return Booked::NotNow(DeclineReason::SystemError) };
        let response = admission::round_trip(&self.engine, &self.admission, request).await;
        match response.decline {
            None => {
                self.change(live, |r| r.state = State::Delivering);
                Booked::Yes
            }
            Some(reason) if is_final(reason) => {
                self.give_back(&record);
                let (code, info) = iso_reason(reason);
                self.change(live, |r| r.state = State::Rejected { code: code.into(), info: info.clone() });
                self.count(code);
                Booked::Refused
            }
            Some(reason) => Booked::NotNow(reason),
        }
    }

    /// The engine request of a credit's payment, or of its return (the other way, the
    /// same amounts: the FX provider ends where it started).
    fn payment(&self, record: &Record, is_return: bool) -> Option<Request> {
        let key = record.request_key()?;
        let debit_currency = Currency::from_code(&record.debit_currency).ok()?;
        let credit_currency = Currency::from_code(&record.credit_currency).ok()?;
        let rrn = record.reference.get(1..13)?;
        let return_rrn = record.reference.get(13..25)?;
        let sender = (ParticipantId(record.sender), debit_currency, record.debit_minor);
        let receiver = (ParticipantId(record.receiver), credit_currency, record.credit_minor);
        let (payer, payee, key) = if is_return {
            (receiver, sender, RequestKey::derive_from(key, "credit-return"))
        } else {
            (sender, receiver, key)
        };
        let fx = record.provider.map(|provider| FxLeg {
            provider: ParticipantId(provider),
            credit_amount: payee.2,
            credit_currency: payee.1,
        });
        let detail = Detail {
            channel: Channel::CreditTransfer,
            rrn: Text::new(if is_return { return_rrn } else { rrn }),
            merchant: Text::new(&record.end_to_end_id),
            original_rrn: if is_return { Text::new(rrn) } else { Text::default() },
            wallet: payer.0 .0,
            acquirer: payee.0 .0,
            amount: payer.2,
            currency_numeric: payer.1.numeric(),
            ..Detail::default()
        };
        Some(Request {
            key,
            operation: Operation::Payment { payee: participant_account(payee.0, payee.1), fx },
            instrument: Instrument::Account(participant_account(payer.0, payer.1)),
            amount: payer.2,
            currency: payer.1,
            acquirer: payee.0,
            entry_mode: EntryMode::Unknown,
            card_expiry_yymm: None,
            reference: records::parse_reference(&record.reference).unwrap_or_default(),
            detail,
            tag: 0,
            reply: admission::no_reply(),
            trace: Default::default(),
        })
    }

    /// Gives back what a credit that was not booked counted in its debtor's usage.
    fn give_back(&self, record: &Record) {
        let Some(claim) = &record.usage else { return };
        let mut usage = self.usage.lock();
        if let Some(entry) = usage.get_mut(&claim.debtor) {
            if entry.day == claim.day {
                entry.day_amount = entry.day_amount.saturating_sub(claim.amount);
            }
            if entry.year == claim.year {
                entry.year_amount = entry.year_amount.saturating_sub(claim.amount);
            }
            let put = vec![(records::usage_key(&claim.debtor), records::encode(&*entry))];
            let _ = self.engine.ledger().put_metadata_before_next_commit(&put);
        }
    }

    /// Changes a credit's record and writes it, in that order for every change.
    fn change(&self, live: &Live, change: impl FnOnce(&mut Record)) -> Record {
        live.update_then(change, |record| self.persist(record))
    }

    /// Writes a record's new state (durable with the next commit or sync: a state lost in
    /// a crash is found again by `finish`, which is idempotent).
    fn persist(&self, record: &Record) {
        let Some(key) = record.request_key() else { return };
        if let Err(error) =
            self.engine.ledger().put_metadata_before_next_commit(&[(records::record_key(key), records::encode(record))])
        {
            tracing::error!(%error, reference = %record.reference, "a credit transfer's state was not written");
        }
    }

    /// Waits until the credit's state is final or the deadline passes, then answers.
    async fn wait_for(&self, live: &Live, deadline: tokio::time::Instant) -> XmlAnswer {
        let mut changes = live.changed.subscribe();
        loop {
            let record = live.record.lock().clone();
            if record.state.is_final() {
                if !record.sender_told {
                    self.change(live, |r| r.sender_told = true);
                }
                if let State::Settled { .. } = record.state {
                    self.count("ACSC");
                }
                return self.answer_of(&record);
            }
            if tokio::time::timeout_at(deadline, changes.changed()).await.is_err() {
                self.count("PDNG");
                return self.answer_of(&record);
            }
        }
    }

    // ---- the background side: delivering, returning, telling the sender ------------------

    /// Takes a credit to its end: books it if a restart left it unbooked, pushes it until
    /// the receiving system answers or the time is up, books the return when there is one,
    /// and tells a sender that was answered "pending".
    pub(super) async fn finish(self: Arc<Self>, live: Arc<Live>) {
        let retry = Duration::from_millis(self.settings.retry_every_ms);
        loop {
            let record = live.record.lock().clone();
            let Some(key) = record.request_key() else { return };
            match &record.state {
                State::Booking => {
                    // Left by a restart: the same key gets the ledger's original outcome, or
                    // books it now if it never got there.
                    if let Booked::NotNow(_) = self.book(&live).await {
                        tokio::time::sleep(retry).await;
                    }
                }
                State::Delivering => {
                    if now_ms() > record.received_ms.saturating_add(self.settings.give_up_after_ms) {
                        let info = "the receiving system did not take the credit in time; returned".to_string();
                        // Only from Delivering: a return that came in meanwhile stands.
                        self.change(&live, |r| {
                            if r.state == State::Delivering {
                                r.state = State::Returning { code: "AB05".into(), info };
                            }
                        });
                        continue;
                    }
                    match self.push(&record).await {
                        Ok(answer) => match answer.status.as_str() {
                            "ACSC" | "ACCP" | "ACSP" | "ACWC" | "ACCC" => {
                                let at_ms = now_ms();
                                self.change(&live, |r| {
                                    if r.state == State::Delivering {
                                        r.state = State::Settled { at_ms };
                                    }
                                });
                            }
                            "RJCT" => {
                                let code = answer.reason.unwrap_or_else(|| "NARR".into());
                                let info = answer.info.unwrap_or_else(|| "refused by the receiving system".into());
                                self.change(&live, |r| {
                                    if r.state == State::Delivering {
                                        r.state = State::Returning { code, info };
                                    }
                                });
                            }
                            _ => {
                                live.update(|r| r.attempts += 1);
                                tokio::time::sleep(retry).await;
                            }
                        },
                        Err(error) => {
                            tracing::warn!(reference = %record.reference, %error, "pushing a credit failed; retrying");
                            live.update(|r| r.attempts += 1);
                            tokio::time::sleep(retry).await;
                        }
                    }
                }
                State::Returning { code, info } => {
                    let Some(request) = self.payment(&record, true) else {
                        tracing::error!(reference = %record.reference, "a credit's record does not make a return");
                        return;
                    };
                    let response: Response = admission::round_trip(&self.engine, &self.admission, request).await;
                    match response.decline {
                        None => {
                            let (code, info, at_ms) = (code.clone(), info.clone(), now_ms());
                            self.change(&live, |r| r.state = State::Returned { code, info, at_ms });
                        }
                        Some(reason) if is_final(reason) => {
                            // Refused for good under this key: an operator must look (a cap,
                            // a suspension); tried again under a new key, not too often.
                            tracing::error!(
                                reference = %record.reference, ?reason, attempt = record.return_attempt,
                                "a credit's return was refused; trying again under a new key"
                            );
                            self.change(&live, |r| r.return_attempt += 1);
                            tokio::time::sleep(retry.max(RETURN_REFUSED_RETRY)).await;
                        }
                        Some(reason) => {
                            tracing::warn!(reference = %record.reference, ?reason, "a credit's return was not booked yet; retrying");
                            tokio::time::sleep(retry).await;
                        }
                    }
                }
                State::Settled { .. } | State::Returned { .. } | State::Rejected { .. } => {
                    if !record.sender_told && record.notices < SENDER_NOTICES_MAX {
                        // The sender's own request may still take the answer itself.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let record = live.record.lock().clone();
                        if !record.state.is_final() {
                            // A return came in meanwhile: take it first.
                            continue;
                        }
                        if !record.sender_told {
                            match self.tell_sender(&record).await {
                                Ok(()) => {
                                    self.change(&live, |r| r.sender_told = true);
                                }
                                Err(error) => {
                                    tracing::warn!(reference = %record.reference, %error, "telling the sender failed");
                                    self.change(&live, |r| r.notices += 1);
                                    tokio::time::sleep(retry).await;
                                }
                            }
                            continue;
                        }
                    }
                    // Done. Written durably first: a resend that no longer finds it in memory
                    // reads this record, never an older one still on its way to the journal.
                    let done = live.record.lock().clone();
                    let ledger = Arc::clone(self.engine.ledger());
                    let put = vec![(records::record_key(key), records::encode(&done))];
                    let written = tokio::task::spawn_blocking(move || ledger.put_metadata(&put)).await;
                    if !matches!(written, Ok(Ok(()))) {
                        tokio::time::sleep(retry).await;
                        continue;
                    }
                    // Then out of memory, unless something changed meanwhile (a return).
                    let mut table = self.live.lock();
                    let record = live.record.lock().clone();
                    if records::encode(&record) == records::encode(&done)
                        && record.state.is_final()
                        && (record.sender_told || record.notices >= SENDER_NOTICES_MAX)
                    {
                        table.remove(&key.0);
                        live.finishing.store(false, Ordering::Release);
                        return;
                    }
                }
            }
        }
    }

    /// Pushes the credit to the receiving system; its answer (a pacs.002).
    async fn push(&self, record: &Record) -> Result<messages::StatusAnswer, String> {
        let receiver = self.system(ParticipantId(record.receiver)).ok_or("unknown receiving system")?;
        let sender = self.system(ParticipantId(record.sender)).ok_or("unknown sending system")?;
        let (Ok(credit_currency), Ok(debit_currency)) =
            (Currency::from_code(&record.credit_currency), Currency::from_code(&record.debit_currency))
        else {
            return Err("a record with unknown currencies".into());
        };
        let msg_id = self.new_message_id("C");
        let rate = record.rate.as_deref().and_then(|r| r.parse::<rust_decimal::Decimal>().ok());
        let body = messages::push(&messages::Push {
            msg_id: &msg_id,
            created_ms: now_ms(),
            switch_bic: &self.switch_bic,
            settlement_method: "CLRG",
            sender_bic: &sender.bic,
            receiver_bic: &receiver.bic,
            end_to_end_id: &record.end_to_end_id,
            reference: &record.reference,
            uetr: record.uetr.as_deref(),
            credit: (record.credit_minor, credit_currency),
            instructed: rate.map(|rate| (record.debit_minor, debit_currency, rate)),
            debtor_name: record.debtor_name.as_deref(),
            debtor_account: record.debtor_account.as_deref(),
            creditor_name: record.creditor_name.as_deref(),
            creditor_account: &record.creditor_account,
            remittance: record.remittance.as_deref(),
        });
        let body = checked(Kind::Pacs008, body);
        let answer = self.post(&receiver, "pacs.008", &record.reference, body).await?;
        let leaves = tokio::task::spawn_blocking(move || xml::read(Kind::Pacs002, answer.as_bytes()))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("the receiving system's answer: {e}"))?;
        let status = messages::status_answer(&leaves).map_err(|r| r.info)?;
        if status.original_tx_id.as_deref().is_some_and(|id| id != record.reference)
            || status.original_end_to_end_id.as_deref().is_some_and(|id| id != record.end_to_end_id)
        {
            return Err("the receiving system answered about another credit".into());
        }
        Ok(status)
    }

    /// POSTs a message to a system's endpoint (`<endpoint>/<message>`), signed with the
    /// system's key; the answer's body when it is a 2xx.
    async fn post(&self, to: &System, message: &str, idempotency_key: &str, body: String) -> Result<String, String> {
        let url = format!("{}/{message}", to.endpoint.trim_end_matches('/'));
        let path = url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|at| rest[at..].to_string()))
            .unwrap_or_else(|| "/".into());
        let headers = self
            .signers
            .sign(to.id, "POST", &path, idempotency_key, body.as_bytes(), now_ms() / 1000)
            .ok_or("no key for the system")?;
        let agent = self.http.clone();
        let key = idempotency_key.to_string();
        tokio::task::spawn_blocking(move || {
            let mut request =
                agent.post(&url).header("content-type", "application/xml").header("idempotency-key", &key);
            for (name, value) in &headers {
                request = request.header(*name, value);
            }
            let mut response = request.send(body.as_bytes()).map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let text = response
                .body_mut()
                .with_config()
                .limit(xml::MESSAGE_BYTES_MAX as u64)
                .read_to_string()
                .map_err(|e| e.to_string())?;
            if (200..300).contains(&status) {
                Ok(text)
            } else {
                Err(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>()))
            }
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Tells the sender the final status of a credit it was answered "pending" for: a
    /// pacs.002, or a pacs.004 when the receiving system returned the credit.
    async fn tell_sender(&self, record: &Record) -> Result<(), String> {
        let sender = self.system(ParticipantId(record.sender)).ok_or("unknown sending system")?;
        let (message, body) = match (&record.return_id, &record.state) {
            (Some(_), State::Returned { .. }) => ("pacs.004", self.returned_notice(record).body),
            _ => ("pacs.002", self.answer_of(record).body),
        };
        self.post(&sender, message, &record.reference, body).await.map(|_| ())
    }

    // ---- pacs.004 from a receiving system, camt.056 from a sending system ----------------

    /// `POST /v1/iso20022/pacs.004`: the receiving system returns a credit it had taken
    /// (the creditor's account closed, a recall it agreed to).
    async fn receive_return(
        self: &Arc<Self>,
        headers: &axum::http::HeaderMap,
        path: &str,
        body: axum::body::Bytes,
    ) -> Result<XmlAnswer, ApiError> {
        let (system, returned) =
            match self.incoming(headers, path, body, Kind::Pacs004, messages::return_message).await? {
                Ok(read) => read,
                Err(refused) => return Ok(refused),
            };
        Ok(self.take_return(&system, &returned).await)
    }

    async fn take_return(self: &Arc<Self>, system: &System, returned: &messages::ReturnMessage) -> XmlAnswer {
        let refuse = |code: &'static str, info: &str| {
            self.refusal(Some(system), Kind::Pacs004, &returned.msg_id, &Refusal::new(code, info), 200)
        };
        let Some(reference) = returned.original_tx_id.as_deref().and_then(records::parse_reference) else {
            return refuse("NOOR", "OrgnlTxId must be the switch's reference of the credit");
        };
        let unknown = || XmlAnswer { not_known_here: true, ..refuse("NOOR", "no credit has this reference") };
        let Some(key) = self.key_of_reference(reference) else { return unknown() };
        let live = match self.live_or_stored(key) {
            Ok(Some(live)) => live,
            Ok(None) => return unknown(),
            Err(error) => return refuse("NARR", &error),
        };
        let record = live.record.lock().clone();
        if record.receiver != system.id.0 {
            return refuse("NOOR", "no credit to this system has this reference");
        }
        let amount_ok = Currency::from_code(&returned.currency)
            .ok()
            .filter(|c| c.code() == record.credit_currency)
            .and_then(|c| crate::fx::parse_minor_units(&returned.amount, c).ok())
            == Some(record.credit_minor);
        if !amount_ok {
            return refuse("AM09", "a return gives back the whole credit, in the credit's currency");
        }
        if matches!(record.state, State::Booking | State::Rejected { .. }) {
            return refuse("NOOR", "the credit was never booked");
        }
        let code = returned.reason.clone().unwrap_or_else(|| "NARR".into());
        let info = returned.info.clone().unwrap_or_else(|| "returned by the receiving system".into());
        let return_id = returned.return_id.clone().unwrap_or_else(|| returned.msg_id.clone());
        // Decided on the record as it is now (a push's outcome may land meanwhile).
        let mut taken = false;
        self.change(&live, |r| {
            if matches!(r.state, State::Settled { .. } | State::Delivering) {
                r.state = State::Returning { code, info };
                r.return_id = Some(return_id);
                r.sender_told = false;
                r.notices = 0;
                taken = true;
            }
        });
        if taken {
            self.ensure_finishing(&live, key);
        }
        // The return is booked by `finish`; wait for it like a sender waits.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.settings.answer_within_ms);
        let mut changes = live.changed.subscribe();
        loop {
            let record = live.record.lock().clone();
            let done = matches!(record.state, State::Returned { .. });
            if done || tokio::time::timeout_at(deadline, changes.changed()).await.is_err() {
                let status = if done { "ACSC" } else { "PDNG" };
                self.count(if done { "return" } else { "PDNG" });
                let credit = Currency::from_code(&record.credit_currency).ok().map(|c| (record.credit_minor, c));
                return XmlAnswer {
                    status: 200,
                    not_known_here: false,
                    body: self.status_report(
                        Some(system),
                        Status {
                            msg_id: "",
                            created_ms: now_ms(),
                            from_bic: &self.switch_bic,
                            to_bic: None,
                            original_msg_id: &returned.msg_id,
                            original_kind: Kind::Pacs004,
                            original_end_to_end_id: returned.original_end_to_end_id.as_deref(),
                            original_tx_id: returned.original_tx_id.as_deref(),
                            original_uetr: None,
                            status,
                            reason: None,
                            accepted_ms: Some(now_ms()),
                            reference: Some(&record.reference),
                            settled: credit,
                        },
                    ),
                };
            }
        }
    }

    fn key_of_reference(&self, reference: u128) -> Option<RequestKey> {
        let value = self.engine.ledger().metadata(&records::reference_key(reference)).ok()??;
        value.try_into().ok().map(u128::from_be_bytes).map(RequestKey)
    }

    /// A credit's record as it stands, from memory or the metadata.
    fn peek(&self, key: RequestKey) -> Result<Option<Record>, String> {
        if let Some(live) = self.live.lock().get(&key.0) {
            return Ok(Some(live.record.lock().clone()));
        }
        records::load(self.engine.ledger(), &records::record_key(key)).map_err(|e| e.to_string())
    }

    /// The credit in memory, or its stored record brought back into memory.
    fn live_or_stored(&self, key: RequestKey) -> Result<Option<Arc<Live>>, String> {
        let mut table = self.live.lock();
        if let Some(live) = table.get(&key.0) {
            return Ok(Some(Arc::clone(live)));
        }
        let stored: Option<Record> =
            records::load(self.engine.ledger(), &records::record_key(key)).map_err(|e| e.to_string())?;
        Ok(stored.map(|record| {
            let live = Arc::new(Live::new(record));
            table.insert(key.0, Arc::clone(&live));
            live
        }))
    }

    /// Makes sure a credit has a `finish` task taking it to its end, and is in memory.
    pub(super) fn ensure_finishing(self: &Arc<Self>, live: &Arc<Live>, key: RequestKey) {
        self.live.lock().entry(key.0).or_insert_with(|| Arc::clone(live));
        if live.finishing.swap(true, Ordering::AcqRel) {
            return;
        }
        let gateway = Arc::clone(self);
        let live = Arc::clone(live);
        tokio::spawn(async move { gateway.finish(live).await });
    }

    /// `POST /v1/iso20022/camt.056`: the sending system recalls a credit. The switch
    /// passes the recall on to the receiving system; if it agrees, it answers with a
    /// pacs.004, the switch books the return and answers the sender with its own pacs.004.
    async fn receive_recall(
        self: &Arc<Self>,
        headers: &axum::http::HeaderMap,
        path: &str,
        body: axum::body::Bytes,
    ) -> Result<XmlAnswer, ApiError> {
        let (sender, recall) = match self.incoming(headers, path, body, Kind::Camt056, messages::recall_message).await?
        {
            Ok(read) => read,
            Err(refused) => return Ok(refused),
        };
        let key = credit_key(
            sender.id,
            recall.original_end_to_end_id.as_deref().unwrap_or_default(),
            recall.original_tx_id.as_deref(),
        );
        let not_found = || {
            ApiError::new(axum::http::StatusCode::NOT_FOUND, "unknown_credit", "no credit of this sender has these ids")
        };
        let record = self.peek(key).map_err(ApiError::ledger_unavailable)?.ok_or_else(not_found)?;
        match &record.state {
            State::Settled { .. } => {}
            State::Returned { .. } => return Ok(self.returned_notice(&record)),
            State::Returning { .. } => return Err(returning()),
            State::Rejected { .. } | State::Booking | State::Delivering => {
                return Err(ApiError::conflict(
                    "not_recallable",
                    "only a settled credit can be recalled (a pending one is still being delivered or returned)",
                ));
            }
        }
        let receiver = self.system(ParticipantId(record.receiver)).ok_or_else(ApiError::system_error)?;
        let Ok(credit_currency) = Currency::from_code(&record.credit_currency) else {
            return Err(ApiError::system_error());
        };
        let case_id = if recall.case_id.is_empty() { self.new_message_id("R") } else { recall.case_id.clone() };
        let notice = checked(
            Kind::Camt056,
            messages::recall_notice(&messages::RecallNotice {
                case_id: &case_id,
                created_ms: now_ms(),
                switch_bic: &self.switch_bic,
                to_bic: &receiver.bic,
                original_msg_id: &record.msg_id,
                original_end_to_end_id: &record.end_to_end_id,
                reference: &record.reference,
                credited: (record.credit_minor, credit_currency),
                reason: recall.reason.as_deref().unwrap_or("CUST"),
            }),
        );
        let answer = match self.post(&receiver, "camt.056", &record.reference, notice).await {
            Ok(answer) => answer,
            Err(error) => {
                return Err(ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    "recall_refused",
                    format!("the receiving system did not agree to return the credit: {error}"),
                ))
            }
        };
        let leaves = tokio::task::spawn_blocking(move || xml::read(Kind::Pacs004, answer.as_bytes()))
            .await
            .map_err(|_| ApiError::system_error())?
            .map_err(|e| {
                ApiError::new(
                    axum::http::StatusCode::BAD_GATEWAY,
                    "bad_answer",
                    format!("the receiving system answered the recall with no valid pacs.004: {e}"),
                )
            })?;
        let returned = messages::return_message(&leaves)
            .map_err(|r| ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "bad_answer", r.info))?;
        let taken = self.take_return(&receiver, &returned).await;
        if !taken.body.contains("<TxSts>ACSC</TxSts>") && !taken.body.contains("<TxSts>PDNG</TxSts>") {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "bad_answer",
                "the receiving system's return did not match the credit",
            ));
        }
        let Some(live) = self.live.lock().get(&key.0).cloned() else {
            // Finished meanwhile: the stored record has the return.
            let record = self.peek(key).map_err(ApiError::ledger_unavailable)?.ok_or_else(not_found)?;
            return match record.state {
                State::Returned { .. } => Ok(self.returned_notice(&record)),
                _ => Err(returning()),
            };
        };
        // Booked: the sender has its pacs.004 here, no separate notice. Not yet: it is
        // pushed to the sender once booked.
        let mut booked = false;
        let record = self.change(&live, |r| {
            if matches!(r.state, State::Returned { .. }) {
                r.sender_told = true;
                booked = true;
            }
        });
        if !booked {
            return Err(returning());
        }
        Ok(self.returned_notice(&record))
    }

    /// A pacs.004 telling the sender its credit came back.
    fn returned_notice(&self, record: &Record) -> XmlAnswer {
        let sender = self.system(ParticipantId(record.sender));
        let (code, info) = match &record.state {
            State::Returning { code, info } | State::Returned { code, info, .. } => (code.as_str(), info.as_str()),
            _ => ("NARR", ""),
        };
        let Ok(debit_currency) = Currency::from_code(&record.debit_currency) else {
            return XmlAnswer { status: 500, ..XmlAnswer::default() };
        };
        let msg_id = self.new_message_id("B");
        let body = messages::return_notice(&messages::ReturnNotice {
            msg_id: &msg_id,
            created_ms: now_ms(),
            switch_bic: &self.switch_bic,
            to_bic: sender.as_deref().map_or("JNCTXXXX", |s| s.bic.as_str()),
            return_id: &format!("R{}", &record.reference[1..]),
            original_msg_id: &record.msg_id,
            original_end_to_end_id: &record.end_to_end_id,
            original_tx_id: record.tx_id.as_deref(),
            original_amount: (record.debit_minor, debit_currency),
            returned: (record.debit_minor, debit_currency),
            reason: code,
            info: Some(info).filter(|i| !i.is_empty()),
        });
        XmlAnswer { status: 200, body: checked(Kind::Pacs004, body), not_known_here: false }
    }
}

enum Admit {
    Existing(Arc<Live>),
    Resumed(Arc<Live>),
    Stored(Box<Record>),
    New(Arc<Live>, bool),
}

enum Booked {
    Yes,
    Refused,
    NotNow(DeclineReason),
}

/// The ISO status reason of an engine decline.
fn iso_reason(reason: DeclineReason) -> (&'static str, String) {
    let code = match reason {
        DeclineReason::NetDebitCapExceeded | DeclineReason::InsufficientFunds => "AM04",
        DeclineReason::ParticipantSuspended => "AG01",
        DeclineReason::InvalidAmount => "AM12",
        _ => "NARR",
    };
    (code, format!("declined by the switch: {}", reason.name()))
}

/// A credit's request key: its sending system, end-to-end id and transaction id.
fn credit_key(sender: ParticipantId, end_to_end_id: &str, tx_id: Option<&str>) -> RequestKey {
    RequestKey::derive(
        "pacs.008",
        &[&sender.0.to_be_bytes(), end_to_end_id.as_bytes(), tx_id.unwrap_or_default().as_bytes()],
    )
}

/// What a message asks, without its message id and time: the same ids with the same
/// content are a resend.
fn content_digest(sender: ParticipantId, message: &CreditTransferMessage) -> String {
    let mut hasher = Sha256::new();
    let creditor = match &message.creditor {
        Creditor::Proxy { kind, id } => format!("proxy\n{}\n{id}", kind.as_deref().unwrap_or_default()),
        Creditor::Account { account, bic } => format!("account\n{account}\n{}", bic.as_deref().unwrap_or_default()),
    };
    for part in [
        sender.0.to_string().as_str(),
        &message.end_to_end_id,
        message.tx_id.as_deref().unwrap_or_default(),
        &message.amount,
        &message.currency,
        message.debtor_account.as_deref().unwrap_or_default(),
        &creditor,
        message.exchange_rate.as_deref().unwrap_or_default(),
    ] {
        hasher.update((part.len() as u32).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// A message the switch wrote, checked against its schema; a failure is a bug, logged.
fn checked(kind: Kind, body: String) -> String {
    if let Err(error) = xml::check_written(kind, &body) {
        tracing::error!(%error, message = kind.name_id(), "the switch wrote a message its schema refuses");
    }
    body
}

/// The UTC day (days since 1970) and year of a time.
fn day_and_year(unix_ms: u64) -> (i64, i64) {
    let day = (unix_ms / 86_400_000) as i64;
    (day, junction_wire::calendar::civil_from_days(day).0)
}

/// A recall the receiving system agreed to, whose return is not booked yet: the sender
/// gets the pacs.004 at its endpoint once it is.
fn returning() -> ApiError {
    ApiError::new(
        StatusCode::ACCEPTED,
        "returning",
        "the credit is being returned; the pacs.004 is pushed to the sending system's endpoint once booked",
    )
}

fn overloaded() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "too many credits in flight; retry the same message")
}

use crate::activity::now_unix_ms as now_ms;
