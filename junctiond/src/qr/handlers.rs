//! The QR gateway's HTTP handlers and router (endpoints in the module docs of `qr`).

use super::errors::ApiError;
use super::gateway::{Caller, QrGateway, REQUEST_BODY_BYTES_MAX};
use super::requests::{body_bytes, hex_id, now_ms, parse_hex_id, parse_json};
use super::views::{
    DecodeBody, DecodeView, PaymentView, PricingFields, PricingView, QuoteView, RatesBody, RefundView, RouteErrorView,
    RouteView,
};
use crate::http;
use crate::telemetry::{self, Telemetry};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::MatchedPath;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use axum::{Json, Router};
use junction_engine::model::{RequestKey, Role};
use junction_ledger::{Currency, ParticipantId};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::KeyValue;
use serde_json::json;
use std::sync::Arc;
use tracing::Instrument as _;

pub fn router(gateway: Arc<QrGateway>) -> Router {
    let router = Router::new()
        .route("/v1/qr/decode", post(decode))
        .route("/v1/qr/quotes", post(create_quote))
        .route("/v1/qr/payments", post(create_payment))
        .route("/v1/qr/payments/{id}", get(get_payment))
        .route("/v1/qr/payments/{id}/refund", post(refund))
        .route("/v1/admin/fx/rates", get(list_rates).post(set_rates))
        .route("/v1/admin/qr-routes", get(list_routes).put(replace_routes))
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX));
    // Tracing off: not even the layer.
    let router = match &gateway.telemetry {
        Some(telemetry) => router.layer(axum::middleware::from_fn_with_state(Arc::clone(telemetry), traced)),
        None => router,
    };
    router.with_state(gateway)
}

/// A sampled request (or one whose caller's `traceparent` says sampled) runs inside its
/// server span; the engine's part of it becomes a child span (`QrGateway::submit`).
async fn traced(
    State(telemetry): State<Arc<Telemetry>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> HttpResponse {
    let caller = Telemetry::caller_context(request.headers());
    let sampled = match &caller {
        Some(context) => context.span().span_context().is_sampled(),
        None => telemetry.sample(),
    };
    if !sampled {
        return next.run(request).await;
    }
    let method = request.method().to_string();
    let route = request.extensions().get::<MatchedPath>().map_or("-", MatchedPath::as_str).to_string();
    let traced = telemetry.root(
        format!("{method} {route}"),
        &caller.unwrap_or_default(),
        vec![KeyValue::new("http.request.method", method), KeyValue::new("http.route", route)],
    );
    let log_span = tracing::info_span!("request", trace_id = %traced.trace_id());
    let response = telemetry::in_http_request(traced.context().clone(), next.run(request)).instrument(log_span).await;
    traced.end_with(vec![KeyValue::new("http.response.status_code", i64::from(response.status().as_u16()))]);
    response
}

// ---- handlers ----------------------------------------------------------------------------

async fn decode(State(gateway): State<Arc<QrGateway>>, body: Result<Bytes, BytesRejection>) -> HttpResponse {
    let result = (|| {
        let body = body_bytes(body)?;
        let request: DecodeBody = parse_json(&body)?;
        let payload = gateway.read_code(&request.payload)?;
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
            Some(currency) => match gateway.routes.load().routes.route(&payload, currency, &gateway.signers) {
                Ok((scheme, acquirer)) => {
                    view.route = Some(RouteView {
                        scheme: scheme.key.scheme.as_str(),
                        merchant_id: &scheme.key.identifier,
                        acquirer: acquirer.0,
                        acquirer_name: gateway.signers.get(acquirer).map(|known| known.name.clone()),
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
        let payload = gateway.read_code(
            request.payload.as_deref().ok_or_else(|| ApiError::bad_request("bad_request", "payload is required"))?,
        )?;
        let now = now_ms();
        let quote = Arc::new(gateway.price(&wallet, &payload, &request, gateway.new_quote_id(), now)?);
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
        let may_see = |wallet: ParticipantId, acquirer: ParticipantId| match &caller {
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

async fn list_rates(State(gateway): State<Arc<QrGateway>>, headers: HeaderMap) -> HttpResponse {
    if http::access(&headers, &gateway.admin_token, gateway.read_token.as_deref()) == http::Access::None {
        let message = "this view needs the read token or the admin token";
        return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    }
    Json(json!({ "rates": gateway.fx.all() })).into_response()
}

/// The QR routes in force, as `[[qr_routes]]` entries.
async fn list_routes(State(gateway): State<Arc<QrGateway>>, headers: HeaderMap) -> HttpResponse {
    if http::access(&headers, &gateway.admin_token, gateway.read_token.as_deref()) == http::Access::None {
        let message = "this view needs the read token or the admin token";
        return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    }
    Json(json!({ "routes": gateway.routes.load().entries })).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RoutesBody {
    routes: Vec<crate::config::QrRouteConfig>,
}

/// Replaces the whole QR routing table (`PUT`), durably; refused whole if any rule is bad.
async fn replace_routes(
    State(gateway): State<Arc<QrGateway>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> HttpResponse {
    match http::access(&headers, &gateway.admin_token, gateway.read_token.as_deref()) {
        http::Access::Admin => {}
        http::Access::Read => {
            return ApiError::new(StatusCode::FORBIDDEN, "forbidden", "the read token cannot change the QR routes")
                .into_response()
        }
        http::Access::None => {
            return ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "this call needs the admin token")
                .into_response()
        }
    }
    let result = async {
        let body = body_bytes(body)?;
        let request: RoutesBody = parse_json(&body)?;
        let worker = Arc::clone(&gateway);
        tokio::task::spawn_blocking(move || worker.set_routes(request.routes))
            .await
            .map_err(|_| ApiError::system_error())?
    }
    .await;
    match result {
        Ok(count) => Json(json!({ "routes": count })).into_response(),
        Err(error) => error.into_response(),
    }
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
        Ok(rates)
    })();
    let rates = match result {
        Ok(rates) => rates,
        Err(error) => return error.into_response(),
    };
    let worker = Arc::clone(&gateway);
    match tokio::task::spawn_blocking(move || worker.set_rates(&rates)).await {
        Ok(Ok(())) => Json(json!({ "rates": gateway.fx.all() })).into_response(),
        Ok(Err(error)) => error.into_response(),
        Err(_) => ApiError::system_error().into_response(),
    }
}
