//! The cross-border QR gateway: HTTP/JSON for wallet participants, merged into the daemon's
//! HTTP router. A wallet scans a merchant's EMV QR code, asks for a quote (the merchant's
//! acquirer from the routing table, the FX rate locked until the quote expires), and pays
//! it; the engine moves the money as one linked group through the FX provider.
//!
//! | endpoint | auth | what |
//! |---|---|---|
//! | `POST /v1/qr/decode` | none | `{"payload"}` -> the parsed QR, its scheme and route; moves nothing |
//! | `POST /v1/qr/quotes` | wallet | `{"payload", "payer_currency", "amount"?, "tip"?}` -> a quote |
//! | `POST /v1/qr/payments` | wallet + idempotency key | `{"quote_id"}` or `{"payload", "payer_currency", "amount"?, "tip"?}` |
//! | `GET /v1/qr/payments/{id}` | the wallet, the acquirer, or admin | the payment and its refunds |
//! | `POST /v1/qr/payments/{id}/refund` | the acquirer or admin + idempotency key | `{"amount"?}` (default: the rest) |
//! | `GET /v1/admin/fx/rates` | none (read-only, like the other admin views) | the rate table |
//! | `POST /v1/admin/fx/rates` | admin token | `{"rates": [{"provider", "base", "quote", "rate", "spread_bps"}]}` |
//!
//! Signatures: see `auth.rs`. Amounts in requests are decimal strings in the merchant's
//! currency (`"12.50"`, never JSON numbers); answers carry integer minor units (`*_minor`)
//! and formatted decimals. Rounding: see `daemon/fx.rs`.
//!
//! Errors are `{"error": {"code", "message", ...}}` with a stable `code`: `bad_json`,
//! `bad_request`, `idempotency_key_required`, `unauthorized`, `bad_signature`,
//! `stale_timestamp`, `unknown_participant`, `forbidden`, `qr_invalid` (with `id`, the
//! failing data object, and `reason`, the parser's code), `unsupported_currency`,
//! `unroutable`, `no_fx_rate`, `amount_required`, `amount_mismatch`, `invalid_amount`,
//! `tip_not_allowed`, `unknown_quote`, `quote_expired`, `quote_already_used`,
//! `unknown_payment`, `in_progress`, `duplicate_conflict`, `insufficient_headroom`,
//! `declined` (with `decline`, the engine's reason), `not_refundable`, `already_refunded`,
//! `refund_exceeds_payment`, `refund_too_small`, `too_many_refunds`, `overloaded` (503),
//! `ledger_unavailable` (503), `system_error`.
//!
//! Idempotency: a money-moving request names a key (`Idempotency-Key` header or
//! `idempotency_key` field). The key, scoped to the caller, is the engine's request key and
//! the ledger's transfer id, so the same key moves money once. The same key with the same
//! request gets the same answer; with a different request, `duplicate_conflict`; while the
//! first is still in flight, `in_progress` (retry). Answers that never reached the ledger
//! (`overloaded`, `ledger_unavailable`) are not remembered: retrying the key tries again.
//!
//! Records are in memory (bounded, see `store.rs`) and are not persisted: after a restart a
//! payment is answered from the ledger's transfers (approved payments only, without the
//! merchant details), and refunds of payments made before the restart are refused.

mod auth;
mod errors;
mod payments;
mod routing;
mod tables;
mod views;

pub use auth::{
    canonical_string, HEADER_IDEMPOTENCY_KEY, HEADER_PARTICIPANT, HEADER_SIGNATURE, HEADER_TIMESTAMP, SIGNATURE_SCHEME,
};
pub use errors::ApiError;
pub use tables::{PAYMENTS_MAX, QUOTES_MAX, QUOTE_EXPIRED_KEPT_MS, REFUNDS_MAX, REFUNDS_PER_PAYMENT_MAX};

use super::admission::Admission;
use super::config::{Config, FxRateConfig};
use super::fx::{self, FxError, FxRate, FxTable};
use super::http;
use auth::{Known, Signers};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use errors::*;
use junction_engine::books::{participant_account, participant_of_account, TRANSFER_CODE_FX_LEG};
use junction_engine::codes::DeclineReason;
use junction_engine::model::{
    auth_code, EntryMode, FxLeg, Instrument, Operation, ReplySink, Request, RequestKey, Response, Role,
};
use junction_engine::Engine;
use junction_ledger::{Currency, ParticipantId, PositionKey, TransferId};
use junction_wire::qr::{QrError, QrPayload, Scheme, Tip};
use payments::*;
use routing::Routes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tables::{Digest, PaymentRecord, Payments, QuoteError, Quotes, RefundRecord, State as PaymentState};
use views::*;

/// Largest request body the QR endpoints read. A QR payload is at most 512 characters
/// (up to 2 KiB of UTF-8); the rest of a request is a few short fields.
pub const REQUEST_BODY_BYTES_MAX: usize = 16 * 1024;
/// Longest idempotency key, in bytes (visible ASCII only).
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 128;

/// How the QR's IDs 55-57 charge the payer on top of the amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeeRule {
    None,
    /// 55 = 01: the payer may add a tip.
    TipPrompt,
    /// 55 = 02: the fixed convenience fee of 56.
    FixedFee,
    /// 55 = 03: the percentage convenience fee of 57.
    PercentageFee,
}

/// A priced payment: what the payer is charged and what the merchant's acquirer receives.
/// Quotes live in the quote store until they expire; a direct payment prices one too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub id: u128,
    pub wallet: ParticipantId,
    pub expires_at_ms: u64,
    pub scheme: Scheme,
    pub merchant_identifier: String,
    pub merchant_name: Option<String>,
    pub acquirer: ParticipantId,
    pub payee_currency: Currency,
    pub payer_currency: Currency,
    /// The merchant's amount (ID 54 or the wallet's), payee currency.
    pub amount_minor: u64,
    pub tip_minor: u64,
    pub fee_minor: u64,
    pub fee_rule: FeeRule,
    /// amount + tip + fee: what the acquirer receives.
    pub payee_minor: u64,
    /// What the wallet is charged.
    pub payer_minor: u64,
    /// `None` when both currencies are the same.
    pub fx: Option<FxRate>,
}

/// The QR gateway's state, shared by its handlers.
pub struct QrGateway {
    engine: Arc<Engine>,
    /// Shared with the ISO 8583 gateway: past its bound a payment is refused with 503.
    admission: Arc<Admission>,
    signers: Signers,
    routes: Routes,
    fx: FxTable,
    quotes: Quotes,
    payments: Payments,
    admin_token: String,
    quote_ttl_ms: u64,
    /// Keys quote ids so that they are not sequential.
    id_keys: std::collections::hash_map::RandomState,
    next_id: AtomicU64,
}

impl QrGateway {
    /// From the validated configuration.
    pub fn new(engine: Arc<Engine>, config: &Config, admission: Arc<Admission>) -> Result<QrGateway, String> {
        let rates = config.fx_rates.iter().map(FxRateConfig::to_rate).collect::<Result<Vec<_>, _>>()?;
        Ok(QrGateway {
            engine,
            admission,
            signers: Signers::new(config)?,
            routes: Routes::new(&config.qr_routes)?,
            fx: FxTable::new(&rates)?,
            quotes: Quotes::default(),
            payments: Payments::default(),
            admin_token: config.switch.admin_token.clone(),
            quote_ttl_ms: config.qr.quote_ttl_ms,
            id_keys: std::collections::hash_map::RandomState::new(),
            next_id: AtomicU64::new(1),
        })
    }
}

pub fn router(gateway: Arc<QrGateway>) -> Router {
    Router::new()
        .route("/v1/qr/decode", post(decode))
        .route("/v1/qr/quotes", post(create_quote))
        .route("/v1/qr/payments", post(create_payment))
        .route("/v1/qr/payments/{id}", get(get_payment))
        .route("/v1/qr/payments/{id}/refund", post(refund))
        .route("/v1/admin/fx/rates", get(list_rates).post(set_rates))
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .with_state(gateway)
}

// ---- handlers ----------------------------------------------------------------------------

async fn decode(State(gateway): State<Arc<QrGateway>>, body: Result<Bytes, BytesRejection>) -> HttpResponse {
    let result = (|| {
        let body = body_bytes(body)?;
        let request: DecodeBody = parse_json(&body)?;
        let payload = parse_qr(&request.payload)?;
        let currency = Currency::from_numeric(payload.currency_numeric()).ok();
        let mut view = DecodeView {
            scheme: payload.scheme().key.scheme.as_str(),
            merchant_id: &payload.scheme().key.identifier,
            currency: currency.as_ref().map(Currency::code),
            route: None,
            route_error: None,
            qr: &payload,
        };
        match currency {
            None => {
                view.route_error = Some(RouteErrorView {
                    code: "unsupported_currency",
                    message: format!(
                        "currency {:03} (ID 53) is not one the switch settles",
                        payload.currency_numeric()
                    ),
                })
            }
            Some(currency) => match gateway.routes.route(&payload, currency, &gateway.signers) {
                Ok((scheme, acquirer)) => {
                    view.route = Some(RouteView {
                        scheme: scheme.key.scheme.as_str(),
                        merchant_id: &scheme.key.identifier,
                        acquirer: acquirer.0,
                        acquirer_name: gateway.signers.get(acquirer).map(|known| known.name.as_str()),
                        currency: currency.code().to_string(),
                    })
                }
                Err(unroutable) => {
                    view.route_error = Some(RouteErrorView { code: "unroutable", message: unroutable.0 })
                }
            },
        }
        Ok::<_, ApiError>(Json(view).into_response())
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn create_quote(
    State(gateway): State<Arc<QrGateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> HttpResponse {
    let result = (|| {
        let body = body_bytes(body)?;
        let wallet = gateway.verify_wallet(&headers, &method, &uri, &body)?;
        let request: PricingFields = parse_json(&body)?;
        let payload = parse_qr(
            request.payload.as_deref().ok_or_else(|| ApiError::bad_request("bad_request", "payload is required"))?,
        )?;
        let now = now_ms();
        let quote = Arc::new(gateway.price(wallet, &payload, &request, gateway.new_quote_id(), now)?);
        gateway.quotes.insert(Arc::clone(&quote), now).map_err(|_| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "the quote store is full; retry shortly")
        })?;
        let view = QuoteView {
            quote_id: hex_id(quote.id),
            expires_at_ms: quote.expires_at_ms,
            expires_in_ms: quote.expires_at_ms.saturating_sub(now),
            pricing: PricingView::of(&quote),
        };
        Ok::<_, ApiError>(Json(view).into_response())
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn create_payment(
    State(gateway): State<Arc<QrGateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> HttpResponse {
    let body = match body_bytes(body) {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    gateway.pay(method, uri, headers, body).await.unwrap_or_else(IntoResponse::into_response)
}

async fn get_payment(
    State(gateway): State<Arc<QrGateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> HttpResponse {
    let result = async {
        let caller = gateway.caller(&headers, &method, &uri, &[])?;
        let key = RequestKey(parse_hex_id(&id, "the payment id")?);
        let may_see = |wallet: ParticipantId, acquirer: ParticipantId| match caller {
            Caller::Admin => true,
            Caller::Participant(known) => known.id == wallet || known.id == acquirer,
        };
        {
            let table = gateway.payments.table.lock();
            if let Some(record) = table.payments.get(&key) {
                if may_see(record.quote.wallet, record.quote.acquirer) {
                    let refunds = record
                        .refunds
                        .iter()
                        .filter_map(|k| table.refunds.get(k))
                        .map(|r| RefundView::of(r, &record.quote))
                        .collect();
                    let view = PaymentView::of(
                        &record.quote,
                        record.id,
                        record.state,
                        record.refunded_payee_minor,
                        record.credited_payer_minor,
                        refunds,
                    );
                    return Ok(Json(view).into_response());
                }
            }
        }
        match gateway.recover(key, may_see).await? {
            Some((_, answer)) => Ok(answer),
            None => Err(ApiError::new(StatusCode::NOT_FOUND, "unknown_payment", "no such payment")),
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn refund(
    State(gateway): State<Arc<QrGateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> HttpResponse {
    let body = match body_bytes(body) {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    gateway.refund(method, uri, headers, id, body).await.unwrap_or_else(IntoResponse::into_response)
}

async fn list_rates(State(gateway): State<Arc<QrGateway>>) -> HttpResponse {
    Json(json!({ "rates": gateway.fx.all() })).into_response()
}

async fn set_rates(
    State(gateway): State<Arc<QrGateway>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> HttpResponse {
    let result = (|| {
        if !http::authorized(&headers, &gateway.admin_token) {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "this call needs the admin token"));
        }
        let body = body_bytes(body)?;
        let request: RatesBody = parse_json(&body)?;
        let mut rates = Vec::with_capacity(request.rates.len());
        for entry in &request.rates {
            let rate = entry.to_rate().map_err(|e| ApiError::unprocessable("invalid_rate", e))?;
            let provider =
                gateway.signers.get(rate.provider).filter(|p| p.role == Role::FxProvider).ok_or_else(|| {
                    ApiError::unprocessable(
                        "invalid_rate",
                        format!("participant {} is not an fx_provider", entry.provider),
                    )
                })?;
            if !provider.settles_in(rate.base) || !provider.settles_in(rate.quote) {
                return Err(ApiError::unprocessable(
                    "invalid_rate",
                    format!("participant {} does not settle in both {} and {}", entry.provider, rate.base, rate.quote),
                ));
            }
            rates.push(rate);
        }
        gateway.fx.upsert(&rates).map_err(|e| ApiError::unprocessable("invalid_rate", e))?;
        tracing::info!(rates = rates.len(), "FX rates updated");
        Ok(Json(json!({ "rates": gateway.fx.all() })).into_response())
    })();
    result.unwrap_or_else(IntoResponse::into_response)
}
