//! Instant tax refunds for tourists: the refund is paid at the shop, straight to the
//! tourist's own card or wallet, instead of at the airport, and is guaranteed until
//! customs confirm the departure.
//!
//! | endpoint | signed by | what |
//! |---|---|---|
//! | `POST /v1/tax-refunds` | the refund agent | `{"refund_id", "amount", "currency", "card": {"number"}` or `"wallet": {"participant", "currency", "account"}`, `"invoices": [...]}` |
//! | `POST /v1/tax-refunds/{refund_id}/departure` | the refund agent | customs confirmed the departure: the guarantee is released |
//! | `GET /v1/tax-refunds/{refund_id}` | the refund agent | the refund as it stands |
//!
//! Signatures as the QR API's (`qr/auth.rs`); the caller is a participant of role
//! `refund_agent`. A refund is known by its agent and `refund_id`: the same request again
//! gets the same answer, another with the same id is `duplicate_conflict`.
//!
//! **To a card** on the switch's books: one engine request (`Operation::TaxRefund`) pays
//! the card's account from the agent's position in the shop's currency, through the FX
//! provider when the card's currency is another (the tourist receives the converted amount
//! rounded down), and places a guarantee hold of what the card received, all or nothing.
//! **To a wallet**: a payment from the agent's position to the wallet's (the wallet credits
//! its user); the wallet guarantees it, so the switch holds nothing.
//!
//! **Departure confirmed** (`.../departure`) before `tax_refunds.departure_within_s` (90
//! days by default): the hold is released (voided). **Not confirmed in time**: the sweep
//! captures the hold (the refund is clawed back from the card to the agent, in the card's
//! currency), or for a wallet books the payment back (the wallet collects from its user).
//! Each step is a ledger transfer with its own reference, and a row of the clearing files
//! (channel `tax_refund`, `merchant_id` = the refund id, `original_rrn` = the refund's).
//!
//! Records live in the ledger's metadata (written before the refund's payment, so a
//! restart finishes what it finds open: the same request key gets the ledger's outcome).

use crate::admission::{self, Admission};
use crate::config::{Config, TaxRefundsConfig};
use crate::fx::FxTable;
use crate::qr::{is_final, ApiError, Known, Signers};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use junction_engine::books::participant_account;
use junction_engine::codes::DeclineReason;
use junction_engine::detail::{Channel, Detail, MaskedCard, Text};
use junction_engine::model::{EntryMode, FxLeg, Instrument, Operation, PanKey, Request, RequestKey, Response, Role};
use junction_engine::Engine;
use junction_ledger::{Currency, ParticipantId};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Metadata tag of tax refund records: tag, request key (16 bytes).
const META_TAX_REFUND: u8 = b't';

/// Most refunds whose guarantee is open at once (each about 500 bytes in memory). Past
/// it a new refund is refused with 503.
pub const TAX_REFUNDS_OPEN_MAX: usize = 1_000_000;

/// Most invoices one refund names, and the longest refund id and invoice number.
const INVOICES_MAX: usize = 50;
const ID_CHARS_MAX: usize = 35;

/// The guarantee hold outlives the departure window by this much, so that the switch
/// captures it before the ledger would release it by itself.
const GUARANTEE_MARGIN_S: u64 = 7 * 24 * 3600;

/// Where a refund stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    /// Recorded, its payment submitted (a restart resubmits it to learn its outcome).
    Booking,
    /// Paid, and guaranteed until the departure is confirmed or the time is up.
    Guaranteed,
    /// Departure confirmed: the guarantee is being released.
    Releasing,
    Released,
    /// No departure in time: the refund is being clawed back.
    ClawingBack,
    ClawedBack,
    /// The switch declined the refund; nothing moved.
    Declined,
    /// A release or clawback the ledger refused for good (the hold was no longer there:
    /// expired, or resolved otherwise). Logged as an error for an operator.
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    key: String,
    agent: u64,
    refund_id: String,
    /// The content's digest (a resend must ask the same).
    digest: String,
    invoices: Vec<String>,
    amount_minor: u64,
    currency: String,
    /// What the card or wallet received, in its currency.
    credited_minor: u64,
    credited_currency: String,
    provider: Option<u64>,
    rate: Option<String>,
    /// The card: the vault's key of its number (never the number) and its masked form.
    card_key: Option<String>,
    card_masked: Option<String>,
    /// The wallet: its participant and the tourist's account there.
    wallet: Option<u64>,
    wallet_account: Option<String>,
    received_ms: u64,
    departure_by_ms: u64,
    state: RefundState,
    decline: Option<String>,
    changed_ms: u64,
}

impl Record {
    fn request_key(&self) -> Option<RequestKey> {
        u128::from_str_radix(&self.key, 16).ok().map(RequestKey)
    }

    fn hold_key(&self) -> Option<RequestKey> {
        self.request_key().map(|key| RequestKey::derive_from(key, "guarantee"))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundBody {
    refund_id: String,
    amount: String,
    currency: String,
    card: Option<CardBody>,
    wallet: Option<WalletBody>,
    #[serde(default)]
    invoices: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CardBody {
    number: String,
}

impl std::fmt::Debug for CardBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardBody").field("number", &junction_wire::iso8583::MaskedPan(&self.number)).finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WalletBody {
    participant: u64,
    currency: String,
    account: String,
}

/// The tax refunds' gateway.
pub struct TaxRefunds {
    engine: Arc<Engine>,
    admission: Arc<Admission>,
    signers: Signers,
    fx: Arc<FxTable>,
    settings: TaxRefundsConfig,
    /// Refunds not final yet, by request key (all of them are in the metadata too).
    open: Mutex<HashMap<u128, Record>>,
    /// Releases and clawbacks one at a time: a departure confirmed just as the sweep finds
    /// the refund due never races it for the same hold.
    steps: tokio::sync::Mutex<()>,
}

impl TaxRefunds {
    pub fn new(
        engine: Arc<Engine>,
        directory: &Arc<crate::directory::Directory>,
        config: &Config,
        admission: Arc<Admission>,
        fx: Arc<FxTable>,
    ) -> Result<TaxRefunds, String> {
        Ok(TaxRefunds {
            engine,
            admission,
            signers: Signers::new(Arc::clone(directory), config),
            fx,
            settings: config.tax_refunds.clone(),
            open: Mutex::new(HashMap::new()),
            steps: tokio::sync::Mutex::new(()),
        })
    }

    /// Loads the open refunds (blocking: at start).
    pub fn load(&self) -> Result<usize, String> {
        let mut open = self.open.lock();
        self.engine
            .ledger()
            .scan_metadata(&[META_TAX_REFUND], |_, value| match serde_json::from_slice::<Record>(value) {
                Ok(record) if !is_done(record.state) => {
                    if let Some(key) = record.request_key() {
                        open.insert(key.0, record);
                    }
                }
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "a tax refund record does not decode; skipped"),
            })
            .map_err(|e| e.to_string())?;
        Ok(open.len())
    }

    fn verify(&self, headers: &HeaderMap, method: &Method, uri: &Uri, body: &[u8]) -> Result<Arc<Known>, ApiError> {
        let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        let known = self.signers.verify(headers, method, path, body, now_ms() / 1000)?;
        if known.role != Role::RefundAgent {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only refund_agent participants pay tax refunds",
            ));
        }
        Ok(known)
    }

    fn stored(&self, key: RequestKey) -> Result<Option<Record>, ApiError> {
        if let Some(record) = self.open.lock().get(&key.0) {
            return Ok(Some(record.clone()));
        }
        let stored =
            self.engine.ledger().metadata(&record_key(key)).map_err(|e| ApiError::ledger_unavailable(e.to_string()))?;
        Ok(stored.and_then(|value| serde_json::from_slice(&value).ok()))
    }

    /// Writes a record: durable no later than the next commit (the refund's own payment,
    /// or the release or clawback that follows); a finished one durable at once (a sync, on
    /// a blocking thread).
    async fn persist(&self, record: &Record) -> Result<(), ApiError> {
        let key = record.request_key().ok_or_else(ApiError::system_error)?;
        let value = serde_json::to_vec(record).map_err(|_| ApiError::system_error())?;
        let records = [(record_key(key), value)];
        // A finished refund leaves memory: it is written durably first (off the async
        // threads), so that a request that no longer finds it in memory reads this state,
        // never an older one.
        let written = if is_done(record.state) {
            let ledger = Arc::clone(self.engine.ledger());
            tokio::task::spawn_blocking(move || ledger.put_metadata(&records))
                .await
                .map_err(|_| ApiError::system_error())?
        } else {
            self.engine.ledger().put_metadata_before_next_commit(&records)
        };
        written.map_err(|e| ApiError::ledger_unavailable(e.to_string()))?;
        let mut open = self.open.lock();
        if is_done(record.state) {
            open.remove(&key.0);
        } else {
            open.insert(key.0, record.clone());
        }
        Ok(())
    }

    async fn create(
        &self,
        headers: HeaderMap,
        method: Method,
        uri: Uri,
        body: Bytes,
    ) -> Result<HttpResponse, ApiError> {
        let agent = self.verify(&headers, &method, &uri, &body)?;
        let request: RefundBody = serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_json", e.to_string()))?;
        let bad = |message: &str| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message.to_string());
        if request.refund_id.is_empty() || request.refund_id.len() > ID_CHARS_MAX || !is_printable(&request.refund_id) {
            return Err(bad("refund_id must be 1-35 printable characters"));
        }
        if request.invoices.is_empty()
            || request.invoices.len() > INVOICES_MAX
            || request.invoices.iter().any(|i| i.is_empty() || i.len() > ID_CHARS_MAX || !is_printable(i))
        {
            return Err(bad("invoices: 1-50 invoice numbers of 1-35 printable characters"));
        }
        let currency = Currency::from_code(&request.currency).map_err(|_| bad("currency must be an ISO 4217 code"))?;
        if !agent.settles_in(currency) {
            return Err(ApiError::unprocessable(
                "unsupported_currency",
                format!("the agent does not settle in {currency}"),
            ));
        }
        let amount = crate::fx::parse_minor_units(&request.amount, currency)
            .ok()
            .filter(|a| *a > 0 && *a <= junction_engine::AMOUNT_PER_REQUEST_MAX)
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "invalid_amount",
                    format!("{} is not a valid amount of {currency}", request.amount),
                )
            })?;
        let key = RequestKey::derive("tax-refund", &[&agent.id.0.to_be_bytes(), request.refund_id.as_bytes()]);
        let card_key = request.card.as_ref().map(|card| self.engine.pan_key(&card.number));
        let digest = digest(&request, card_key);
        if let Some(existing) = self.stored(key)? {
            if existing.digest != digest {
                return Err(ApiError::conflict("duplicate_conflict", "this refund_id was used for another refund"));
            }
            return self.answer(&existing);
        }
        {
            let open = self.open.lock();
            if open.contains_key(&key.0) {
                return Err(ApiError::conflict("in_progress", "a refund with this refund_id is being paid; retry"));
            }
            if open.len() >= TAX_REFUNDS_OPEN_MAX {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "too many open refunds; retry",
                ));
            }
        }
        let now = now_ms();
        let mut record = Record {
            key: format!("{:032x}", key.0),
            agent: agent.id.0,
            refund_id: request.refund_id.clone(),
            digest,
            invoices: request.invoices.clone(),
            amount_minor: amount,
            currency: currency.code().to_string(),
            credited_minor: 0,
            credited_currency: String::new(),
            provider: None,
            rate: None,
            card_key: None,
            card_masked: None,
            wallet: None,
            wallet_account: None,
            received_ms: now,
            departure_by_ms: now.saturating_add(self.settings.departure_within_s.saturating_mul(1000)),
            state: RefundState::Booking,
            decline: None,
            changed_ms: now,
        };
        // Where it goes, in which currency.
        let target_currency = match (&request.card, &request.wallet) {
            (Some(card), None) => {
                let pan_key = self.engine.pan_key(&card.number);
                let (_, card_currency, _) = self.engine.card_account(pan_key).ok_or_else(|| {
                    ApiError::unprocessable("unknown_card", "no card or token with this number on the switch's books")
                })?;
                record.card_key = Some(format!("{:032x}", pan_key.0));
                record.card_masked = Some(MaskedCard::of(&card.number).display());
                card_currency
            }
            (None, Some(wallet)) => {
                let participant =
                    self.signers.get(ParticipantId(wallet.participant)).filter(|p| p.role == Role::Wallet).ok_or_else(
                        || ApiError::unprocessable("unknown_wallet", "wallet.participant is not a wallet"),
                    )?;
                let wallet_currency = Currency::from_code(&wallet.currency)
                    .ok()
                    .filter(|c| participant.settles_in(*c))
                    .ok_or_else(|| {
                        ApiError::unprocessable("unsupported_currency", "the wallet does not settle in wallet.currency")
                    })?;
                if wallet.account.is_empty() || wallet.account.len() > ID_CHARS_MAX || !is_printable(&wallet.account) {
                    return Err(bad("wallet.account must be 1-35 printable characters"));
                }
                record.wallet = Some(wallet.participant);
                record.wallet_account = Some(wallet.account.clone());
                wallet_currency
            }
            _ => return Err(bad("name exactly one of card or wallet")),
        };
        if !agent.settles_in(target_currency) {
            return Err(ApiError::unprocessable(
                "unsupported_currency",
                format!("the agent must settle in {target_currency} to take a refund back from it"),
            ));
        }
        record.credited_currency = target_currency.code().to_string();
        record.credited_minor = if target_currency == currency {
            amount
        } else {
            let rate = self
                .fx
                .lookup(currency, target_currency)
                .map_err(|e| ApiError::unprocessable("no_fx_rate", e.to_string()))?;
            record.provider = Some(rate.provider.0);
            record.rate = Some(rate.payee_per_payer(currency).to_string());
            rate.payee_amount(amount, currency, target_currency)
                .ok()
                .filter(|credit| *credit > 0)
                .ok_or_else(|| ApiError::unprocessable("invalid_amount", "the converted amount is not valid"))?
        };
        // The key is claimed (in `open`, under its lock) before anything is written: a
        // second request with this refund_id meanwhile is told to retry.
        {
            let mut open = self.open.lock();
            if open.contains_key(&key.0) {
                return Err(ApiError::conflict("in_progress", "a refund with this refund_id is being paid; retry"));
            }
            open.insert(key.0, record.clone());
        }
        if let Err(error) = self.persist(&record).await {
            self.open.lock().remove(&key.0);
            return Err(error);
        }
        let response = self.submit(&record, Step::Refund).await;
        match response.decline {
            None => record.state = RefundState::Guaranteed,
            Some(reason) if is_final(reason) => {
                record.state = RefundState::Declined;
                record.decline = Some(reason.name().to_string());
            }
            Some(reason) => {
                // Never reached the ledger: forgotten, the agent may retry.
                let _ = self.engine.ledger().delete_metadata_lazily(&[record_key(key)]);
                self.open.lock().remove(&key.0);
                return Err(ApiError::declined(reason));
            }
        }
        record.changed_ms = now_ms();
        self.persist(&record).await?;
        self.answer(&record)
    }

    /// Customs confirmed the departure: the guarantee is released.
    async fn departure(
        &self,
        headers: HeaderMap,
        method: Method,
        uri: Uri,
        refund_id: String,
    ) -> Result<HttpResponse, ApiError> {
        let agent = self.verify(&headers, &method, &uri, &[])?;
        let key = RequestKey::derive("tax-refund", &[&agent.id.0.to_be_bytes(), refund_id.as_bytes()]);
        let _one_at_a_time = self.steps.lock().await;
        let mut record = self.stored(key)?.ok_or_else(unknown)?;
        match record.state {
            RefundState::Guaranteed if now_ms() >= record.departure_by_ms => {
                return Err(ApiError::conflict(
                    "too_late",
                    "the departure was not confirmed in time: the refund is clawed back",
                ))
            }
            RefundState::Guaranteed | RefundState::Releasing => {}
            RefundState::Released => return self.answer(&record),
            RefundState::Failed => {
                return Err(ApiError::conflict("failed", "the guarantee could not be resolved; see the log"))
            }
            RefundState::ClawingBack | RefundState::ClawedBack => {
                return Err(ApiError::conflict(
                    "too_late",
                    "the departure was not confirmed in time: the refund was clawed back",
                ))
            }
            RefundState::Booking => {
                return Err(ApiError::conflict("in_progress", "the refund is still being paid; retry"))
            }
            RefundState::Declined => {
                return Err(ApiError::conflict("declined", "the refund was declined: nothing to release"))
            }
        }
        record.state = RefundState::Releasing;
        self.persist(&record).await?;
        self.finish(&mut record).await?;
        self.answer(&record)
    }

    async fn view(
        &self,
        headers: HeaderMap,
        method: Method,
        uri: Uri,
        refund_id: String,
    ) -> Result<HttpResponse, ApiError> {
        let agent = self.verify(&headers, &method, &uri, &[])?;
        let key = RequestKey::derive("tax-refund", &[&agent.id.0.to_be_bytes(), refund_id.as_bytes()]);
        let record = self.stored(key)?.ok_or_else(unknown)?;
        Ok(Json(view(&record)).into_response())
    }

    fn answer(&self, record: &Record) -> Result<HttpResponse, ApiError> {
        match record.state {
            RefundState::Booking => Err(ApiError::conflict("in_progress", "the refund is still being paid; retry")),
            RefundState::Declined => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "declined",
                format!("the switch declined the refund ({})", record.decline.as_deref().unwrap_or("declined")),
            )),
            _ => Ok(Json(view(record)).into_response()),
        }
    }

    /// Takes a record in a moving state (`Booking`, `Releasing`, `ClawingBack`) to the next
    /// one. A step the engine could not take now (overloaded) is left for the sweep.
    async fn finish(&self, record: &mut Record) -> Result<(), ApiError> {
        if record.state == RefundState::Releasing && record.wallet.is_some() {
            // A wallet guarantees its own refunds: releasing moves nothing.
            record.state = RefundState::Released;
            record.changed_ms = now_ms();
            return self.persist(record).await;
        }
        let (step, done) = match record.state {
            RefundState::Booking => (Step::Refund, RefundState::Guaranteed),
            RefundState::Releasing => (Step::Release, RefundState::Released),
            RefundState::ClawingBack => (Step::ClawBack, RefundState::ClawedBack),
            _ => return Ok(()),
        };
        let response = self.submit(record, step).await;
        match response.decline {
            None => record.state = done,
            Some(reason) if is_final(reason) && step == Step::Refund => {
                record.state = RefundState::Declined;
                record.decline = Some(reason.name().to_string());
            }
            Some(reason) if is_final(reason) => {
                // Journaled under the step's key: asking again would get the same answer.
                tracing::error!(refund = %record.refund_id, ?reason, ?step, "a tax refund's step was refused for good");
                record.state = RefundState::Failed;
                record.decline = Some(reason.name().to_string());
            }
            Some(reason) => {
                tracing::warn!(refund = %record.refund_id, ?reason, ?step, "a tax refund's step was not taken yet; the sweep retries it");
                return Err(ApiError::declined(reason));
            }
        }
        record.changed_ms = now_ms();
        self.persist(record).await
    }

    /// The engine request of one step of a refund.
    async fn submit(&self, record: &Record, step: Step) -> Response {
        let Some(request) = self.request(record, step) else {
            return Response::declined(0, RequestKey(0), DeclineReason::SystemError);
        };
        admission::round_trip(&self.engine, &self.admission, request).await
    }

    fn request(&self, record: &Record, step: Step) -> Option<Request> {
        let key = record.request_key()?;
        let agent = ParticipantId(record.agent);
        let currency = Currency::from_code(&record.currency).ok()?;
        let credited = Currency::from_code(&record.credited_currency).ok()?;
        let timeout_s = self.settings.departure_within_s.saturating_add(GUARANTEE_MARGIN_S).min(u64::from(u32::MAX));
        let hold = RequestKey::derive_from(key, "guarantee");
        let rrn = format!("{:032x}", key.0);
        let step_key = match step {
            Step::Refund => key,
            Step::Release => RequestKey::derive_from(key, "tax-release"),
            Step::ClawBack => RequestKey::derive_from(key, "tax-clawback"),
        };
        let step_rrn = format!("{:032x}", step_key.0);
        let detail = Detail {
            channel: Channel::TaxRefund,
            rrn: Text::new(&step_rrn[..12]),
            merchant: Text::new(&record.refund_id),
            original_rrn: if step == Step::Refund { Text::default() } else { Text::new(&rrn[..12]) },
            card: record.card_masked.as_deref().map(MaskedCard::from_display).unwrap_or_default(),
            wallet: record.wallet.unwrap_or_default(),
            acquirer: agent.0,
            ..Detail::default()
        };
        let fx = |provider: Option<u64>, amount: u64, into: Currency| {
            provider.map(|p| FxLeg { provider: ParticipantId(p), credit_amount: amount, credit_currency: into })
        };
        let card = record.card_key.as_deref().and_then(|k| u128::from_str_radix(k, 16).ok()).map(PanKey);
        let (operation, instrument, amount, request_currency) = match (step, card, record.wallet) {
            (Step::Refund, Some(card), _) => (
                Operation::TaxRefund {
                    fx: fx(record.provider, record.credited_minor, credited),
                    guarantee_timeout_s: timeout_s as u32,
                },
                Instrument::Card(card),
                record.amount_minor,
                currency,
            ),
            (Step::Release, Some(card), _) => {
                (Operation::Reverse { original: hold }, Instrument::Card(card), record.credited_minor, credited)
            }
            (Step::ClawBack, Some(card), _) => {
                (Operation::Complete { original: hold }, Instrument::Card(card), 0, credited)
            }
            (Step::Refund, None, Some(wallet)) => (
                Operation::Payment {
                    payee: participant_account(ParticipantId(wallet), credited),
                    fx: fx(record.provider, record.credited_minor, credited),
                },
                Instrument::Account(participant_account(agent, currency)),
                record.amount_minor,
                currency,
            ),
            (Step::ClawBack, None, Some(wallet)) => (
                Operation::Payment {
                    payee: participant_account(agent, currency),
                    fx: fx(record.provider, record.amount_minor, currency),
                },
                Instrument::Account(participant_account(ParticipantId(wallet), credited)),
                record.credited_minor,
                credited,
            ),
            _ => return None,
        };
        let payee = match operation {
            Operation::Payment { .. } if step == Step::ClawBack => agent,
            Operation::Payment { .. } => ParticipantId(record.wallet.unwrap_or_default()),
            _ => agent,
        };
        Some(Request {
            key: step_key,
            operation,
            instrument,
            amount,
            currency: request_currency,
            acquirer: payee,
            entry_mode: EntryMode::Unknown,
            card_expiry_yymm: None,
            reference: key.0,
            detail: Detail { amount, currency_numeric: request_currency.numeric(), ..detail },
            tag: 0,
            reply: admission::no_reply(),
            trace: Default::default(),
        })
    }

    /// One sweep: finishes steps left open (a restart, an overload) and claws back the
    /// refunds whose departure was not confirmed in time.
    async fn sweep(&self) {
        let _one_at_a_time = self.steps.lock().await;
        let now = now_ms();
        let due: Vec<Record> = self
            .open
            .lock()
            .values()
            .filter(|r| r.state != RefundState::Guaranteed || r.departure_by_ms <= now)
            .cloned()
            .collect();
        for mut record in due {
            if record.state == RefundState::Guaranteed {
                record.state = RefundState::ClawingBack;
                if self.persist(&record).await.is_err() {
                    continue;
                }
                tracing::info!(refund = %record.refund_id, agent = record.agent, "no departure confirmed in time: clawing the tax refund back");
            }
            let _ = self.finish(&mut record).await;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Refund,
    Release,
    ClawBack,
}

fn is_done(state: RefundState) -> bool {
    matches!(state, RefundState::Released | RefundState::ClawedBack | RefundState::Declined | RefundState::Failed)
}

fn record_key(key: RequestKey) -> Vec<u8> {
    let mut bytes = vec![META_TAX_REFUND];
    bytes.extend_from_slice(&key.0.to_be_bytes());
    bytes
}

/// What a request asks, to tell a resend from another request with the same id. The card
/// is named by the vault's keyed hash of its number: a plain hash of a card number is
/// brute-forced in milliseconds from its first six and last four digits.
fn digest(request: &RefundBody, card_key: Option<PanKey>) -> String {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    let target = match (card_key, &request.wallet) {
        (Some(key), _) => format!("card\n{:032x}", key.0),
        (_, Some(wallet)) => format!("wallet\n{}\n{}\n{}", wallet.participant, wallet.currency, wallet.account),
        _ => String::new(),
    };
    for part in [request.amount.as_str(), &request.currency, &target, &request.invoices.join("\n")] {
        hasher.update((part.len() as u32).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

fn is_printable(text: &str) -> bool {
    text.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b',')
}

fn view(record: &Record) -> serde_json::Value {
    let money = |minor: u64, code: &str| {
        let formatted = Currency::from_code(code).map(|c| c.format_minor(minor.into())).unwrap_or_default();
        json!({ "amount": formatted, "amount_minor": minor, "currency": code })
    };
    let guarantee = record.card_key.is_some().then(|| {
        json!({
            "amount": money(record.credited_minor, &record.credited_currency),
            "reference": record.hold_key().map(|k| format!("{:032x}", k.0)),
        })
    });
    json!({
        "refund_id": record.refund_id,
        "reference": record.key,
        "state": record.state,
        "agent": record.agent,
        "invoices": record.invoices,
        "refund": money(record.amount_minor, &record.currency),
        "credited": money(record.credited_minor, &record.credited_currency),
        "rate": record.rate,
        "card": record.card_masked,
        "wallet": record.wallet.map(|w| json!({ "participant": w, "account": record.wallet_account })),
        "guarantee": guarantee,
        "departure_by_ms": record.departure_by_ms,
    })
}

fn unknown() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "unknown_refund", "no refund of this agent has this refund_id")
}

use crate::activity::now_unix_ms as now_ms;

// ---- HTTP ----------------------------------------------------------------------------------

pub fn router(gateway: Arc<TaxRefunds>) -> Router {
    Router::new()
        .route("/v1/tax-refunds", post(create))
        .route("/v1/tax-refunds/{id}", get(show))
        .route("/v1/tax-refunds/{id}/departure", post(departure))
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
        .with_state(gateway)
}

async fn create(
    State(gateway): State<Arc<TaxRefunds>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> HttpResponse {
    let Ok(body) = body else {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the body is too large").into_response();
    };
    // In its own task: a client that hangs up never leaves a paid refund without its record.
    crate::http::detached(async move {
        gateway.create(headers, method, uri, body).await.unwrap_or_else(IntoResponse::into_response)
    })
    .await
}

async fn departure(
    State(gateway): State<Arc<TaxRefunds>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> HttpResponse {
    crate::http::detached(async move {
        gateway.departure(headers, method, uri, id).await.unwrap_or_else(IntoResponse::into_response)
    })
    .await
}

async fn show(
    State(gateway): State<Arc<TaxRefunds>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> HttpResponse {
    gateway.view(headers, method, uri, id).await.unwrap_or_else(IntoResponse::into_response)
}

/// Finishes what a restart left open, then sweeps every `sweep_every_ms`.
pub async fn sweep_loop(gateway: Arc<TaxRefunds>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let every = Duration::from_millis(gateway.settings.sweep_every_ms);
    loop {
        gateway.sweep().await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}
