//! The gateway's state and logic: signatures and callers, pricing, the engine round trip,
//! payments, refunds, and answers recovered from the ledger.

use super::auth::{Known, Signers};
use super::errors::{is_final, ApiError};
use super::quote::{FeeRule, Quote};
use super::requests::{digest, hex_id, idempotency_key, now_ms, parse_hex_id, parse_json, parse_qr, path_and_query};
use super::routing::Routes;
use super::tables::{
    self, Digest, PaymentRecord, Payments, QuoteError, Quotes, RefundRecord, State as PaymentState,
    REFUNDS_PER_PAYMENT_MAX,
};
use super::views::{PaymentBody, PaymentView, PricingFields, RefundBody, RefundView};
use crate::admission::Admission;
use crate::config::{Config, FxRateConfig, QrRouteConfig};
use crate::fx::{self, FxError, FxTable};
use crate::http;
use crate::metrics::{Metrics, INTERFACE_QR};
use crate::telemetry::{self, Telemetry};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::Json;
use junction_engine::books::{participant_account, participant_of_account, TRANSFER_CODE_FX_LEG};
use junction_engine::detail::{Channel, Detail, Text};
use junction_engine::model::{
    auth_code, EntryMode, FxLeg, Instrument, Operation, Request, RequestKey, Response, Role, TraceSlot,
};
use junction_engine::{Engine, ResponseCode};
use junction_ledger::{Currency, ParticipantId, PositionKey, TransferId};
use junction_wire::qr::{QrPayload, Tip};
use serde_json::json;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Largest request body the QR endpoints read. A QR payload is at most 512 characters
/// (up to 2 KiB of UTF-8); the rest of a request is a few short fields.
pub const REQUEST_BODY_BYTES_MAX: usize = 16 * 1024;

/// The QR gateway's state, shared by its handlers.
pub struct QrGateway {
    pub(super) engine: Arc<Engine>,
    /// Shared with the ISO 8583 gateway: past its bound a payment is refused with 503.
    pub(super) admission: Arc<Admission>,
    /// Answers are counted with the ISO 8583 gateway's, by code (`interface="qr"`).
    pub(super) metrics: Arc<Metrics>,
    /// One change of the FX rates or the QR routes at a time (each is written whole).
    fx_changes: parking_lot::Mutex<()>,
    /// Merchant codes that are not EMV, read into the EMV form.
    pub(super) code_types: super::CodeTypes,
    /// The inbound and outbound flows' rules (`flows.rs`), when the switch has a home market.
    pub(super) flows: Option<super::Flows>,
    pub(super) signers: Signers,
    /// `[[qr_routes]]` in force: the configuration's, or the table the operator last put
    /// (`PUT /v1/admin/qr-routes`, kept in the ledger's metadata).
    pub(super) routes: arc_swap::ArcSwap<RouteTable>,
    pub(super) fx: Arc<FxTable>,
    pub(super) quotes: Quotes,
    pub(super) payments: Payments,
    pub(super) admin_token: String,
    /// `switch.read_token`: may read the rate table too.
    pub(super) read_token: Option<String>,
    pub(super) quote_ttl_ms: u64,
    /// Keys quote ids so that they are not sequential.
    pub(super) id_keys: std::collections::hash_map::RandomState,
    pub(super) next_id: AtomicU64,
    /// Traces a sampled share of requests (`[telemetry]`).
    pub(super) telemetry: Option<Arc<Telemetry>>,
}

impl QrGateway {
    /// From the validated configuration.
    pub fn new(
        engine: Arc<Engine>,
        directory: &Arc<crate::directory::Directory>,
        config: &Config,
        admission: Arc<Admission>,
        metrics: Arc<Metrics>,
        telemetry: Option<Arc<Telemetry>>,
    ) -> Result<QrGateway, String> {
        let rates = config.fx_rates.iter().map(FxRateConfig::to_rate).collect::<Result<Vec<_>, _>>()?;
        let fx = FxTable::new(&rates)?;
        // Rates set at runtime, kept in the ledger's metadata, are in force over the
        // configuration's for their pairs.
        if let Some(value) =
            engine.ledger().metadata(&[META_FX_RATES]).map_err(|e| format!("reading the FX rates: {e}"))?
        {
            let stored: Vec<FxRateConfig> =
                serde_json::from_slice(&value).map_err(|e| format!("the stored FX rates do not decode: {e}"))?;
            let stored = stored.iter().map(FxRateConfig::to_rate).collect::<Result<Vec<_>, _>>()?;
            fx.upsert(&stored)?;
            tracing::info!(rates = stored.len(), "FX rates as last set through the admin API");
        }
        let stored = engine.ledger().metadata(&[META_QR_ROUTES]).map_err(|e| format!("reading the QR routes: {e}"))?;
        let entries = match stored {
            Some(value) => {
                let entries: Vec<QrRouteConfig> =
                    serde_json::from_slice(&value).map_err(|e| format!("the stored QR routes do not decode: {e}"))?;
                tracing::info!(routes = entries.len(), "QR routes as last put through the admin API");
                entries
            }
            None => config.qr_routes.clone(),
        };
        Ok(QrGateway {
            engine,
            admission,
            metrics,
            signers: Signers::new(Arc::clone(directory), config),
            routes: arc_swap::ArcSwap::from_pointee(RouteTable { routes: Routes::new(&entries)?, entries }),
            code_types: super::CodeTypes::new(&config.qr_code_types).map_err(|e| e.to_string())?,
            flows: config.qr_flows.as_ref().map(super::Flows::new).transpose().map_err(|e| e.to_string())?,
            fx: Arc::new(fx),
            fx_changes: parking_lot::Mutex::new(()),
            quotes: Quotes::default(),
            payments: Payments::default(),
            admin_token: config.switch.admin_token.clone(),
            read_token: config.switch.read_token.clone(),
            quote_ttl_ms: config.qr.quote_ttl_ms,
            id_keys: std::collections::hash_map::RandomState::new(),
            next_id: AtomicU64::new(1),
            telemetry,
        })
    }
}

impl QrGateway {
    /// The rate table (shared with the credit transfers' gateway).
    pub fn fx(&self) -> Arc<FxTable> {
        Arc::clone(&self.fx)
    }
}

/// The QR routes' metadata record: the table as JSON.
pub const META_QR_ROUTES: u8 = b'q';

/// The FX rates set at runtime: every rate in force, as `[[fx_rates]]` entries.
pub const META_FX_RATES: u8 = b'r';

impl QrGateway {
    /// Adds or replaces rates, durably: the pairs set at runtime are written first (so a
    /// restart keeps them over the configuration's), then swapped in; all or none.
    pub(super) fn set_rates(&self, rates: &[fx::FxRate]) -> Result<(), ApiError> {
        let _change = self.fx_changes.lock();
        // The table stays within its bounds with these rates.
        let next = FxTable::new(&self.fx.all()).map_err(|e| ApiError::unprocessable("invalid_rate", e))?;
        next.upsert(rates).map_err(|e| ApiError::unprocessable("invalid_rate", e))?;
        let stored = self
            .engine
            .ledger()
            .metadata(&[META_FX_RATES])
            .map_err(|e| ApiError::ledger_unavailable(e.to_string()))?
            .and_then(|value| serde_json::from_slice::<Vec<FxRateConfig>>(&value).ok())
            .unwrap_or_default();
        let set_at_runtime = FxTable::new(&stored.iter().filter_map(|entry| entry.to_rate().ok()).collect::<Vec<_>>())
            .map_err(|e| ApiError::unprocessable("invalid_rate", e))?;
        set_at_runtime.upsert(rates).map_err(|e| ApiError::unprocessable("invalid_rate", e))?;
        let entries: Vec<FxRateConfig> = set_at_runtime
            .all()
            .iter()
            .map(|rate| FxRateConfig {
                provider: rate.provider.0,
                base: rate.base.code().to_string(),
                quote: rate.quote.code().to_string(),
                rate: rate.mid.to_string(),
                spread_bps: rate.spread_bps,
            })
            .collect();
        let record = serde_json::to_vec(&entries).map_err(|_| ApiError::system_error())?;
        self.engine
            .ledger()
            .put_metadata(&[(vec![META_FX_RATES], record)])
            .map_err(|e| ApiError::ledger_unavailable(e.to_string()))?;
        self.fx.upsert(rates).map_err(|e| ApiError::unprocessable("invalid_rate", e))?;
        tracing::info!(rates = rates.len(), "FX rates updated");
        Ok(())
    }
}

/// The QR routes in force, and the entries they were built from.
pub struct RouteTable {
    pub routes: Routes,
    pub entries: Vec<QrRouteConfig>,
}

impl QrGateway {
    /// Replaces the QR routes, durably, from the next request on: every acquirer must be
    /// one in service.
    pub(super) fn set_routes(&self, entries: Vec<QrRouteConfig>) -> Result<usize, ApiError> {
        // One change at a time: the table written is the table swapped in.
        let _change = self.fx_changes.lock();
        let directory = self.signers.directory();
        let role_of = |id: u64| directory.get(ParticipantId(id)).filter(|m| !m.is_retired()).map(|m| m.role);
        crate::config::check_qr_routes(&entries, &role_of)
            .map_err(|e| ApiError::unprocessable("invalid_routes", e.to_string()))?;
        let routes = Routes::new(&entries).map_err(|e| ApiError::unprocessable("invalid_routes", e))?;
        let record = serde_json::to_vec(&entries).map_err(|_| ApiError::system_error())?;
        self.engine
            .ledger()
            .put_metadata(&[(vec![META_QR_ROUTES], record)])
            .map_err(|e| ApiError::ledger_unavailable(e.to_string()))?;
        let count = entries.len();
        self.routes.store(Arc::new(RouteTable { routes, entries }));
        tracing::info!(routes = count, "QR routes replaced");
        Ok(count)
    }
}

/// Who is calling an endpoint that several kinds of caller may use.
pub(super) enum Caller {
    Admin,
    Participant(Arc<Known>),
}

impl QrGateway {
    pub(super) fn verify(
        &self,
        headers: &HeaderMap,
        method: &Method,
        uri: &Uri,
        body: &[u8],
    ) -> Result<Arc<Known>, ApiError> {
        self.signers.verify(headers, method, path_and_query(uri), body, now_ms() / 1000)
    }

    pub(super) fn verify_wallet(
        &self,
        headers: &HeaderMap,
        method: &Method,
        uri: &Uri,
        body: &[u8],
    ) -> Result<Arc<Known>, ApiError> {
        let known = self.verify(headers, method, uri, body)?;
        if known.role != Role::Wallet {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "only wallet participants pay QR codes"));
        }
        Ok(known)
    }

    /// The admin token (`Authorization: Bearer`) or a participant's signature.
    pub(super) fn caller(
        &self,
        headers: &HeaderMap,
        method: &Method,
        uri: &Uri,
        body: &[u8],
    ) -> Result<Caller, ApiError> {
        if headers.contains_key("authorization") {
            return if http::authorized(headers, &self.admin_token) {
                Ok(Caller::Admin)
            } else {
                Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "the admin token is wrong"))
            };
        }
        self.verify(headers, method, uri, body).map(Caller::Participant)
    }

    /// A merchant code: one of a configured non-EMV type read into the EMV form, or EMV.
    pub(super) fn read_code(&self, code: &str) -> Result<junction_wire::qr::QrPayload, ApiError> {
        match self.code_types.read(code) {
            Some(Ok(payload)) => Ok(payload),
            Some(Err(malformed)) => Err(ApiError::unprocessable(
                "qr_invalid",
                format!("a {} code: {}", malformed.code_type, malformed.message),
            )
            .with("reason", "merchant_id")
            .with("code_type", malformed.code_type)),
            None => parse_qr(code),
        }
    }

    pub(super) fn new_quote_id(&self) -> u128 {
        let sequence = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut hasher = self.id_keys.build_hasher();
        hasher.write_u64(sequence);
        // Unique by the sequence, unpredictable by the keyed hash.
        (u128::from(hasher.finish()) << 64) | u128::from(sequence)
    }

    /// Prices a payment of `payload` by `wallet` in `payer_currency`.
    pub(super) fn price(
        &self,
        wallet: &Known,
        payload: &QrPayload,
        request: &PricingFields,
        id: u128,
        now_ms: u64,
    ) -> Result<Quote, ApiError> {
        let payee_currency = Currency::from_numeric(payload.currency_numeric()).map_err(|_| {
            ApiError::unprocessable(
                "unsupported_currency",
                format!("the QR's currency {:03} (ID 53) is not one the switch settles", payload.currency_numeric()),
            )
            .with("id", "53")
        })?;
        let payer_code = request
            .payer_currency
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("bad_request", "payer_currency is required (e.g. \"USD\")"))?;
        let payer_currency = Currency::from_code(payer_code).map_err(|_| {
            ApiError::bad_request("bad_request", format!("payer_currency {payer_code:?} is not an ISO 4217 code"))
        })?;
        if !wallet.settles_in(payer_currency) {
            return Err(ApiError::unprocessable(
                "unsupported_currency",
                format!("wallet {} does not settle in {payer_currency}", wallet.id.0),
            ));
        }
        let (scheme, acquirer) = self
            .routes
            .load()
            .routes
            .route(payload, payee_currency, &self.signers)
            .map_err(|unroutable| ApiError::unprocessable("unroutable", unroutable.0))?;
        // An aggregator's sub-merchant settles through the aggregator's acquirer.
        let aggregator = match self.code_types.aggregator_of(&scheme.key.identifier) {
            Some((aggregator, sub_merchant)) => {
                let member = self.signers.get(ParticipantId(aggregator)).filter(|m| !m.is_retired());
                if !member.is_some_and(|m| m.acts_for.contains(&acquirer)) {
                    return Err(ApiError::unprocessable(
                        "unroutable",
                        format!("the code's aggregator {aggregator} is not in service for acquirer {}", acquirer.0),
                    ));
                }
                Some((ParticipantId(aggregator), sub_merchant.to_string()))
            }
            None => None,
        };
        // Inbound or outbound: the direction's own routing and currency rules.
        let flow = self.flows.as_ref().map(|flows| {
            let wallet_country = wallet.bic.get(4..6).unwrap_or_default();
            (flows, flows.classify(wallet_country, payload.country()))
        });
        if let Some((flows, flow)) = flow {
            flows.check(flow, payer_currency, payee_currency, payload.country(), acquirer)?;
        }
        let exponent = payee_currency.exponent();
        let amount_field = |text: &str, field: &str| {
            fx::parse_minor_units(text, payee_currency).map_err(|reason| {
                ApiError::bad_request("invalid_amount", format!("{field} {text:?} {reason} ({payee_currency})"))
            })
        };
        let qr_amount = payload.amount_minor_units(exponent).map_err(|e| ApiError::qr_invalid(&e))?;
        let asked = request.amount.as_deref().map(|text| amount_field(text, "amount")).transpose()?;
        let amount_minor = match (qr_amount, asked) {
            (Some(qr), Some(asked)) if qr != asked => {
                return Err(ApiError::unprocessable(
                    "amount_mismatch",
                    format!("the QR fixes the amount at {} {payee_currency}", payee_currency.format_minor(qr.into())),
                ))
            }
            (Some(amount), _) | (None, Some(amount)) => amount,
            (None, None) => {
                return Err(ApiError::unprocessable(
                    "amount_required",
                    "the QR has no amount (ID 54): give \"amount\" in the merchant's currency",
                ))
            }
        };
        if amount_minor == 0 {
            return Err(ApiError::bad_request("invalid_amount", "the amount must be more than zero"));
        }
        let tip_minor = request.tip.as_deref().map(|text| amount_field(text, "tip")).transpose()?.unwrap_or(0);
        let (fee_rule, fee_minor) = match payload.tip() {
            None => (FeeRule::None, 0),
            Some(Tip::Prompt) => (FeeRule::TipPrompt, 0),
            Some(Tip::FixedFee { .. }) => (
                FeeRule::FixedFee,
                payload.fixed_fee_minor_units(exponent).map_err(|e| ApiError::qr_invalid(&e))?.unwrap_or(0),
            ),
            Some(Tip::PercentageFee { percentage }) => {
                let fee = fx::percentage_fee(amount_minor, percentage).ok_or_else(|| {
                    ApiError::unprocessable("qr_invalid", format!("ID 57: percentage {percentage:?} is not usable"))
                        .with("id", "57")
                        .with("reason", "bad_value")
                })?;
                (FeeRule::PercentageFee, fee)
            }
        };
        if tip_minor > 0 && fee_rule != FeeRule::TipPrompt {
            return Err(ApiError::unprocessable("tip_not_allowed", "the QR does not ask for a tip (ID 55 is not 01)"));
        }
        let payee_minor = amount_minor
            .checked_add(tip_minor)
            .and_then(|sum| sum.checked_add(fee_minor))
            .filter(|total| *total <= junction_engine::AMOUNT_PER_REQUEST_MAX)
            .ok_or_else(|| ApiError::unprocessable("invalid_amount", "the amount is too large"))?;
        let (payer_minor, fx) = if payer_currency == payee_currency {
            (payee_minor, None)
        } else {
            let rate = self.fx.lookup(payer_currency, payee_currency).map_err(|e| match e {
                FxError::NoRate(..) => ApiError::unprocessable("no_fx_rate", e.to_string()),
                FxError::Overflow => ApiError::unprocessable("invalid_amount", e.to_string()),
            })?;
            if let Some((flows, flow)) = flow {
                flows.check_rate(flow, &rate)?;
            }
            let charged = rate
                .payer_amount(payee_minor, payee_currency, payer_currency)
                .map_err(|e| ApiError::unprocessable("invalid_amount", e.to_string()))?;
            (charged, Some(rate))
        };
        Ok(Quote {
            id,
            wallet: wallet.id,
            expires_at_ms: now_ms.saturating_add(self.quote_ttl_ms),
            scheme: scheme.key.scheme,
            merchant_identifier: scheme.key.identifier.clone(),
            merchant_name: payload.merchant_name().map(str::to_owned),
            mcc: payload.mcc().unwrap_or_default().to_string(),
            aggregator,
            flow: flow.map(|(_, flow)| flow),
            acquirer,
            payee_currency,
            payer_currency,
            amount_minor,
            tip_minor,
            fee_minor,
            fee_rule,
            payee_minor,
            payer_minor,
            fx,
        })
    }

    /// Submits a request to the engine and waits for its answer without blocking a thread;
    /// declined at once as overloaded when the daemon is at its in-flight bound.
    pub(super) async fn submit(&self, request: Request) -> Response {
        let detail = request.detail;
        let response = self.submit_admitted(request).await;
        self.metrics.responses_by_code.with_label_values(&[INTERFACE_QR, response.code.as_str()]).inc();
        if response.code != ResponseCode::Approved {
            self.metrics.recent_declines.note(crate::activity::Decline {
                unix_ms: crate::activity::now_unix_ms(),
                interface: INTERFACE_QR,
                participant: detail.wallet,
                mti: detail.mti,
                card: detail.card,
                amount: detail.amount,
                currency_numeric: detail.currency_numeric,
                code: response.code,
                reason: response.decline,
                stan: detail.stan,
                rrn: detail.rrn,
            });
        }
        response
    }

    async fn submit_admitted(&self, mut request: Request) -> Response {
        if let (Some(telemetry), Some(context)) = (&self.telemetry, telemetry::http_request()) {
            request.trace = TraceSlot::new(Box::new(telemetry.child("engine", &context)));
        }
        crate::admission::round_trip(&self.engine, &self.admission, request).await
    }

    pub(super) fn engine_request(
        key: RequestKey,
        payer: PositionKey,
        payee: PositionKey,
        amount: u64,
        fx: Option<FxLeg>,
        reference: u128,
        detail: Detail,
    ) -> Request {
        Request {
            key,
            operation: Operation::Payment { payee: participant_account(payee.0, payee.1), fx },
            instrument: Instrument::Account(participant_account(payer.0, payer.1)),
            amount,
            currency: payer.1,
            acquirer: payee.0,
            entry_mode: EntryMode::Unknown,
            card_expiry_yymm: None,
            reference,
            detail: Detail { amount, currency_numeric: payer.1.numeric(), ..detail },
            tag: 0,
            // Replaced by `submit`.
            reply: crate::admission::no_reply(),
            trace: Default::default(),
        }
    }

    /// The stored answer for a key seen before: the same request gets its answer, another
    /// request with the key a conflict.
    pub(super) fn replay(
        record: &PaymentRecord,
        refunds: &tables::BoundedMap<RefundRecord>,
        content: Digest,
    ) -> ApiResult {
        if record.content != content {
            return Err(ApiError::conflict(
                "duplicate_conflict",
                "this idempotency key was used for a different payment request",
            ));
        }
        payment_answer(record, refunds)
    }

    pub(super) async fn pay(self: &Arc<Self>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> ApiResult {
        let wallet = self.verify_wallet(&headers, &method, &uri, &body)?;
        let mut request: PaymentBody = parse_json(&body)?;
        let pricing = request.take_pricing();
        let idempotency = idempotency_key(&headers, request.idempotency_key.as_deref())?;
        let key = RequestKey::derive("qr", &[&wallet.id.0.to_be_bytes(), idempotency.as_bytes()]);
        let now = now_ms();
        let quote_id = match (&request.quote_id, &pricing.payload) {
            (Some(id), None) if pricing.is_empty() => Some(parse_hex_id(id, "quote_id")?),
            (None, Some(_)) => None,
            _ => {
                return Err(ApiError::bad_request(
                    "bad_request",
                    "give either quote_id alone, or payload with payer_currency (and amount, tip)",
                ))
            }
        };
        let content = match quote_id {
            Some(id) => digest(&[b"quote", &id.to_be_bytes()]),
            None => pricing.digest(),
        };
        {
            let table = self.payments.table.lock();
            if let Some(record) = table.payments.get(&key) {
                return Self::replay(record, &table.refunds, content);
            }
        }
        let quote = match quote_id {
            Some(id) => match self.quotes.take(id, wallet.id, key, now) {
                Ok(quote) => quote,
                Err(error) => {
                    if matches!(error, QuoteError::Unknown | QuoteError::Expired) {
                        // Paid before a restart (or before its record was forgotten)?
                        if let Some((reference, answer)) = self.recover(key, |payer, _| payer == wallet.id).await? {
                            if reference != id {
                                return Err(ApiError::conflict(
                                    "duplicate_conflict",
                                    "this idempotency key was used for a different payment request",
                                ));
                            }
                            return Ok(answer);
                        }
                    }
                    return Err(match error {
                        QuoteError::Unknown | QuoteError::Full => {
                            ApiError::new(StatusCode::NOT_FOUND, "unknown_quote", "no such quote for this wallet")
                        }
                        QuoteError::Expired => {
                            ApiError::new(StatusCode::GONE, "quote_expired", "the quote has expired: ask for a new one")
                        }
                        QuoteError::Used => {
                            ApiError::conflict("quote_already_used", "the quote was paid with another idempotency key")
                        }
                    });
                }
            },
            None => {
                let payload = self.read_code(pricing.payload.as_deref().unwrap_or_default())?;
                // Deterministic, so that a resend after the record is forgotten is the same
                // ledger transfer (the reference is part of it).
                let id = RequestKey::derive("qr-direct-quote", &[&key.0.to_be_bytes()]).0;
                Arc::new(self.price(&wallet, &payload, &pricing, id, now)?)
            }
        };
        {
            let mut table = self.payments.table.lock();
            if let Some(record) = table.payments.get(&key) {
                // The same key arrived twice at once; the quote is taken by this key either way.
                return Self::replay(record, &table.refunds, content);
            }
            table.payments.insert(
                key,
                PaymentRecord {
                    id: key,
                    content,
                    quote: Arc::clone(&quote),
                    state: PaymentState::Pending,
                    refunded_payee_minor: 0,
                    credited_payer_minor: 0,
                    refund_in_flight: false,
                    refunds: Vec::new(),
                },
            );
        }
        // The rest runs in its own task: if the client goes away, the answer must still
        // land in the record, or the key would say `in_progress` forever.
        let gateway = Arc::clone(self);
        let wallet = wallet.id;
        tokio::spawn(telemetry::carried(async move { gateway.complete_payment(key, content, quote, wallet).await }))
            .await
            .unwrap_or_else(|_| Err(ApiError::system_error()))
    }

    /// Submits a payment recorded as pending and records the engine's answer.
    async fn complete_payment(
        &self,
        key: RequestKey,
        content: Digest,
        quote: Arc<Quote>,
        wallet: ParticipantId,
    ) -> ApiResult {
        let fx = quote.fx.map(|rate| FxLeg {
            provider: rate.provider,
            credit_amount: quote.payee_minor,
            credit_currency: quote.payee_currency,
        });
        let response = self
            .submit(Self::engine_request(
                key,
                (wallet, quote.payer_currency),
                (quote.acquirer, quote.payee_currency),
                quote.payer_minor,
                fx,
                quote.id,
                qr_detail(&quote, key, None, wallet),
            ))
            .await;
        let mut table = self.payments.table.lock();
        let tables::PaymentTable { payments, refunds } = &mut *table;
        let state = match response.decline {
            None => PaymentState::Approved {
                ledger_timestamp_ns: response.timestamp.unwrap_or_default(),
                auth_code: response.auth_code.unwrap_or(auth_code(TransferId(key.0).folded())),
            },
            Some(reason) if is_final(reason) => {
                self.quotes.release(quote.id, key);
                PaymentState::Declined(reason)
            }
            Some(reason) => {
                payments.remove(&key);
                self.quotes.release(quote.id, key);
                return Err(ApiError::declined(reason));
            }
        };
        match payments.get_mut(&key) {
            Some(record) => {
                record.state = state;
                payment_answer(record, refunds)
            }
            // Forgotten while in flight (the table is full of newer payments): answer anyway.
            None => {
                let stand_in = PaymentRecord {
                    id: key,
                    content,
                    quote,
                    state,
                    refunded_payee_minor: 0,
                    credited_payer_minor: 0,
                    refund_in_flight: false,
                    refunds: Vec::new(),
                };
                payment_answer(&stand_in, refunds)
            }
        }
    }

    /// A payment the in-memory table does not know, from the ledger: approved payments
    /// only (a declined one left no transfer), with the transfer's reference (the quote id).
    /// `visible(payer, payee)` says whether the caller may see it.
    pub(super) async fn recover(
        &self,
        key: RequestKey,
        visible: impl FnOnce(ParticipantId, ParticipantId) -> bool,
    ) -> Result<Option<(u128, HttpResponse)>, ApiError> {
        let ledger = Arc::clone(self.engine.ledger());
        let lookup = tokio::task::spawn_blocking(move || {
            let first = ledger.transfer(TransferId(key.0))?;
            let second = match first {
                Some(record) if record.transfer.code == TRANSFER_CODE_FX_LEG => {
                    ledger.transfer(TransferId(RequestKey::derive_from(key, "fx-leg").0))?
                }
                _ => None,
            };
            Ok::<_, junction_ledger::LedgerError>((first, second))
        })
        .await
        .map_err(|_| ApiError::system_error())?
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable", e.to_string()))?;
        let (Some(first), second) = lookup else { return Ok(None) };
        let payee_leg = second.unwrap_or(first).transfer;
        let payer_leg = first.transfer;
        let (Some(payer), Some(payee)) =
            (participant_of_account(payer_leg.debit_account), participant_of_account(payee_leg.credit_account))
        else {
            return Ok(None);
        };
        // Only payments are answered here: a refund's transfer debits an acquirer.
        let payer_is_wallet = self.signers.get(payer).is_some_and(|known| known.role == Role::Wallet);
        if !payer_is_wallet || !visible(payer, payee) {
            return Ok(None);
        }
        Ok(Some((
            payer_leg.user_data_128,
            Json(json!({
                "payment_id": hex_id(key.0),
                "state": "approved",
                "recovered_from_ledger": true,
                "quote_id": hex_id(payer_leg.user_data_128),
                "auth_code": String::from_utf8_lossy(&auth_code(TransferId(key.0).folded())),
                "ledger_timestamp_ns": first.timestamp,
                "wallet": payer.0,
                "acquirer": payee.0,
                "payer_currency": payer_leg.currency.code(),
                "payer_amount_minor": payer_leg.amount,
                "payer_amount": payer_leg.currency.format_minor(payer_leg.amount.into()),
                "payee_currency": payee_leg.currency.code(),
                "payee_amount_minor": payee_leg.amount,
                "payee_amount": payee_leg.currency.format_minor(payee_leg.amount.into()),
            }))
            .into_response(),
        )))
    }

    pub(super) async fn refund(
        self: &Arc<Self>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        id: String,
        body: Bytes,
    ) -> ApiResult {
        let caller = self.caller(&headers, &method, &uri, &body)?;
        let payment_id = RequestKey(parse_hex_id(&id, "the payment id")?);
        let request: RefundBody = parse_json(&body)?;
        let idempotency = idempotency_key(&headers, request.idempotency_key.as_deref())?;
        let key = RequestKey::derive("qr-refund", &[&payment_id.0.to_be_bytes(), idempotency.as_bytes()]);
        let content = digest(&[b"refund", request.amount.as_deref().unwrap_or("rest").as_bytes()]);
        let unknown = || {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_payment",
                "no such payment (records are kept in memory and not across restarts)",
            )
        };
        let (quote, amount, credit) = {
            let mut table = self.payments.table.lock();
            let tables::PaymentTable { payments, refunds } = &mut *table;
            let payment = payments.get_mut(&payment_id).ok_or_else(unknown)?;
            match caller {
                Caller::Admin => {}
                Caller::Participant(known) if known.id == payment.quote.acquirer => {}
                Caller::Participant(known) if known.id == payment.quote.wallet => {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        "a refund debits the acquirer's position: the merchant's acquirer asks for it",
                    ))
                }
                Caller::Participant(_) => return Err(unknown()),
            }
            if let Some(existing) = refunds.get(&key) {
                if existing.content != content || existing.payment != payment_id {
                    return Err(ApiError::conflict(
                        "duplicate_conflict",
                        "this idempotency key was used for a different refund",
                    ));
                }
                return refund_answer(existing, &payment.quote);
            }
            if !matches!(payment.state, PaymentState::Approved { .. }) {
                return Err(ApiError::conflict("not_refundable", "only an approved payment can be refunded"));
            }
            if payment.refund_in_flight {
                return Err(ApiError::conflict("in_progress", "another refund of this payment is in flight; retry"));
            }
            if payment.refunds.len() >= REFUNDS_PER_PAYMENT_MAX {
                return Err(ApiError::conflict(
                    "too_many_refunds",
                    format!("a payment may have at most {REFUNDS_PER_PAYMENT_MAX} refunds"),
                ));
            }
            let quote = Arc::clone(&payment.quote);
            let remaining = quote.payee_minor.saturating_sub(payment.refunded_payee_minor);
            if remaining == 0 {
                return Err(ApiError::conflict("already_refunded", "the payment is refunded in full"));
            }
            let amount = match request.amount.as_deref() {
                None => remaining,
                Some(text) => fx::parse_minor_units(text, quote.payee_currency).map_err(|reason| {
                    ApiError::bad_request(
                        "invalid_amount",
                        format!("amount {text:?} {reason} ({})", quote.payee_currency),
                    )
                })?,
            };
            if amount == 0 {
                return Err(ApiError::bad_request("invalid_amount", "the refund amount must be more than zero"));
            }
            if amount > remaining {
                return Err(ApiError::unprocessable(
                    "refund_exceeds_payment",
                    format!(
                        "at most {} {} is left to refund",
                        quote.payee_currency.format_minor(remaining.into()),
                        quote.payee_currency
                    ),
                ));
            }
            let credit = fx::refund_credit(
                quote.payer_minor,
                quote.payee_minor,
                payment.refunded_payee_minor,
                payment.credited_payer_minor,
                amount,
            );
            if credit == 0 {
                return Err(ApiError::unprocessable(
                    "refund_too_small",
                    format!("the refund is worth less than one minor unit of {}", quote.payer_currency),
                ));
            }
            payment.refund_in_flight = true;
            payment.refunds.push(key);
            refunds.insert(
                key,
                RefundRecord {
                    id: key,
                    payment: payment_id,
                    content,
                    payee_minor: amount,
                    payer_minor: credit,
                    state: PaymentState::Pending,
                },
            );
            (quote, amount, credit)
        };
        let gateway = Arc::clone(self);
        tokio::spawn(telemetry::carried(async move {
            gateway.complete_refund(key, payment_id, content, quote, amount, credit).await
        }))
        .await
        .unwrap_or_else(|_| Err(ApiError::system_error()))
    }

    /// Submits a refund recorded as pending and records the engine's answer (in its own
    /// task, like `complete_payment`).
    async fn complete_refund(
        &self,
        key: RequestKey,
        payment_id: RequestKey,
        content: Digest,
        quote: Arc<Quote>,
        amount: u64,
        credit: u64,
    ) -> ApiResult {
        // The acquirer pays back in the merchant's currency; the FX provider turns it into
        // the wallet's at the payment's effective rate.
        let fx = quote.fx.map(|rate| FxLeg {
            provider: rate.provider,
            credit_amount: credit,
            credit_currency: quote.payer_currency,
        });
        let response = self
            .submit(Self::engine_request(
                key,
                (quote.acquirer, quote.payee_currency),
                (quote.wallet, quote.payer_currency),
                amount,
                fx,
                payment_id.0,
                qr_detail(&quote, key, Some(payment_id), quote.wallet),
            ))
            .await;
        let mut table = self.payments.table.lock();
        let tables::PaymentTable { payments, refunds } = &mut *table;
        let state = match response.decline {
            None => PaymentState::Approved {
                ledger_timestamp_ns: response.timestamp.unwrap_or_default(),
                auth_code: response.auth_code.unwrap_or(auth_code(TransferId(key.0).folded())),
            },
            Some(reason) => PaymentState::Declined(reason),
        };
        let payment = payments.get_mut(&payment_id);
        match response.decline {
            None => {
                if let Some(payment) = payment {
                    payment.refund_in_flight = false;
                    payment.refunded_payee_minor += amount;
                    payment.credited_payer_minor += credit;
                }
            }
            Some(reason) if is_final(reason) => {
                if let Some(payment) = payment {
                    payment.refund_in_flight = false;
                }
            }
            Some(reason) => {
                if let Some(payment) = payment {
                    payment.refund_in_flight = false;
                    payment.refunds.retain(|k| *k != key);
                }
                refunds.remove(&key);
                return Err(ApiError::declined(reason));
            }
        }
        let record =
            RefundRecord { id: key, payment: payment_id, content, payee_minor: amount, payer_minor: credit, state };
        let answer = refund_answer(&record, &quote);
        if let Some(stored) = refunds.get_mut(&key) {
            stored.state = state;
        }
        answer
    }
}

pub(super) type ApiResult = Result<HttpResponse, ApiError>;

pub(super) fn payment_answer(record: &PaymentRecord, refunds: &tables::BoundedMap<RefundRecord>) -> ApiResult {
    let refund_views: Vec<RefundView<'_>> =
        record.refunds.iter().filter_map(|k| refunds.get(k)).map(|r| RefundView::of(r, &record.quote)).collect();
    let view = PaymentView::of(
        &record.quote,
        record.id,
        record.state,
        record.refunded_payee_minor,
        record.credited_payer_minor,
        refund_views,
    );
    match record.state {
        PaymentState::Pending => Err(ApiError::conflict(
            "in_progress",
            "a request with this idempotency key is still being processed; retry",
        )
        .attach("payment", json!(view))),
        PaymentState::Approved { .. } => Ok(Json(view).into_response()),
        PaymentState::Declined(reason) => Err(ApiError::declined(reason).attach("payment", json!(view))),
    }
}

pub(super) fn refund_answer(record: &RefundRecord, quote: &Quote) -> ApiResult {
    let view = RefundView::of(record, quote);
    match record.state {
        PaymentState::Pending => {
            Err(ApiError::conflict("in_progress", "a refund with this idempotency key is still being processed; retry")
                .attach("refund", json!(view)))
        }
        PaymentState::Approved { .. } => Ok(Json(view).into_response()),
        PaymentState::Declined(reason) => Err(ApiError::declined(reason).attach("refund", json!(view))),
    }
}

/// A QR payment's or refund's record for the clearing files. Its RRN is the first 12 hex
/// digits of its payment (or refund) id, as the API returns it; a refund's original RRN
/// is its payment's.
fn qr_detail(quote: &Quote, key: RequestKey, refunds: Option<RequestKey>, wallet: ParticipantId) -> Detail {
    let short = |id: RequestKey| Text::new(&hex_id(id.0)[..12]);
    Detail {
        channel: Channel::Qr,
        rrn: short(key),
        merchant: Text::new(&quote.merchant_identifier),
        mcc: Text::new(&quote.mcc),
        aggregator: quote.aggregator.as_ref().map_or(0, |(id, _)| u32::try_from(id.0).unwrap_or(0)),
        sub_merchant: quote.aggregator.as_ref().map(|(_, sub)| Text::new(sub)).unwrap_or_default(),
        original_rrn: refunds.map(short).unwrap_or_default(),
        qr_scheme: Text::new(quote.scheme.as_str()),
        wallet: wallet.0,
        acquirer: quote.acquirer.0,
        ..Detail::default()
    }
}
