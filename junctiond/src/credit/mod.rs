//! Credit transfers between instant-payment systems in ISO 20022: the link that lets a
//! user of one system pay a user of another, by mobile number, email, payee id or
//! account, in seconds, in the other currency.
//!
//! | endpoint | signed by | body | answer |
//! |---|---|---|---|
//! | `POST /v1/iso20022/pacs.008` | the sending system | a credit (one transaction) | `pacs.002` |
//! | `POST /v1/iso20022/pacs.004` | the receiving system | a return of a credit it took | `pacs.002` |
//! | `POST /v1/iso20022/camt.056` | the sending system | a recall of a settled credit | `pacs.004` (or 409 JSON) |
//! | `POST /v1/iso20022/quotes` | the sending system | JSON `{"creditor_currency", "amount", "currency"}` | JSON: a quote |
//!
//! Participants of role `payment_system` sign like the QR API (`qr/auth.rs`: the same
//! three headers over the same canonical string). Every message is read through
//! `xml::read` (bounded, no DTD, validated against the official schema); a message that
//! does not pass is answered `RJCT FF01` (HTTP 400). Every message the switch writes is
//! checked against its schema too.
//!
//! # A credit's way
//! 1. **Resolved**: the creditor's proxy (`CdtrAcct/Prxy`: `MBNO`, `EMAL`, or proprietary
//!    `PAYEEID`) from `credit_transfers.proxies`, or its account at the system whose BIC
//!    is `CdtrAgt`. Unknown: `AC01` (proxy) or `RC01` (agent), nothing booked.
//! 2. **Priced**: `IntrBkSttlmAmt` in the sending system's currency fixes what is debited;
//!    in the receiving system's, what the creditor receives (`AM03` otherwise). Between
//!    two currencies, at the FX provider's rate of the moment (`fx.rs`: the debit rounded
//!    up, the credit rounded down), the provider's legs linked with the credit; or at a
//!    quote's: the sender asked `POST /v1/iso20022/quotes` for the same amount and puts the
//!    quote's `xchg_rate` in `XchgRate` (used once, until `quote_ttl_ms`; a rate that names
//!    no live quote: `NARR`).
//! 3. **Limited**: per transaction, per debtor per UTC day and per UTC year
//!    (`credit_transfers.limits`, by sending currency): `AM02`. The debtor is the sending
//!    system's `DbtrAcct` (`RR01` when missing and a debtor limit applies).
//! 4. **Booked**: one engine payment, the sending system's position to the receiving
//!    system's (`AM04` when the sender's net debit cap has no room). The record, the
//!    debtor's usage and the payment are durable before anything is answered.
//! 5. **Pushed** to the receiving system's endpoint as a pacs.008 of its own (amount in its
//!    currency, creditor's account resolved, the switch's reference `J` + 32 hex digits as
//!    `TxId`), answered with its pacs.002. `ACSC` (or `ACCP`, `ACSP`, `ACWC`): settled.
//!    `RJCT`: the money is returned to the sender (its reason passed on). No answer: tried
//!    again every `retry_every_ms`; after `give_up_after_ms`, returned with `AB05`.
//! 6. **Answered**: the sender's request waits up to `answer_within_ms` for the outcome:
//!    `ACSC`, `RJCT` with the reason, or `PDNG`. After `PDNG`, the final pacs.002 is pushed
//!    to the sender's endpoint (`<endpoint>/pacs.002`) when it is known.
//!
//! # The same answer every time
//! A credit is known by its sending system and the message's `EndToEndId` and `TxId`. The
//! same message again (any `MsgId`) gets the credit's status as it stands; another message
//! with the same ids is refused `DUPL` and moves nothing. Records are kept for
//! `records_kept_s`.
//!
//! # Returns and recalls
//! A receiving system returns a credit with a pacs.004 naming the switch's reference as
//! `OrgnlTxId` (the whole amount, in its currency: `AM09` otherwise). The switch books the
//! return (the same amounts back through the same FX provider, which ends where it
//! started) and pushes a pacs.004 to the sending system. A sending system recalls a settled
//! credit with a camt.056; the switch passes it to the receiving system (`camt.056` at its
//! endpoint), which agrees by answering with a pacs.004 (booked as above, and the sender
//! gets its own pacs.004 as the answer, or 202 `returning` if the return is not booked
//! within `answer_within_ms`: the pacs.004 is then pushed to it) or refuses with any other
//! answer (409 `recall_refused`). A return the ledger refuses for good (the receiving
//! system's cap, a suspension) is logged as an error and tried again every minute under a
//! new key; the journaled refusal of the old key would otherwise be its answer forever.
//!
//! Each message is handled in a task of its own: a client that hangs up never leaves a
//! booked credit, a return or a recall half done.
//!
//! Records live in the ledger's metadata (`records.rs`), so they survive a kill -9 and
//! reach a standby with the journal; what a restart left unfinished is finished by
//! `resume`.

mod gateway;
mod messages;
mod records;
pub mod xml;

pub use gateway::{CreditGateway, XmlAnswer, CREDITS_IN_FLIGHT_MAX, SENDER_NOTICES_MAX};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::post;
use axum::Router;
use std::sync::Arc;
use std::time::Duration;

pub fn router(gateway: Arc<CreditGateway>) -> Router {
    Router::new()
        .route("/v1/iso20022/pacs.008", post(message::<0>))
        .route("/v1/iso20022/pacs.004", post(message::<1>))
        .route("/v1/iso20022/camt.056", post(message::<2>))
        .route("/v1/iso20022/quotes", post(quote))
        // Bodies somewhat over a message's bound still reach `xml::read`, which answers them
        // FF01 like any other unreadable message; far over it, 413.
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(gateway)
}

/// Reads a message as the gateway does and interprets it: the status reason code of its
/// refusal (FF01 for what does not read or validate). For the fuzz target and tests.
pub fn read_message(kind: xml::Kind, bytes: &[u8]) -> Result<(), &'static str> {
    let leaves = xml::read(kind, bytes).map_err(|_| "FF01")?;
    let interpreted = match kind {
        xml::Kind::Pacs008 => messages::credit_transfer(&leaves).map(|_| ()),
        xml::Kind::Pacs002 => messages::status_answer(&leaves).map(|_| ()),
        xml::Kind::Pacs004 => messages::return_message(&leaves).map(|_| ()),
        xml::Kind::Camt056 => messages::recall_message(&leaves).map(|_| ()),
    };
    interpreted.map_err(|refusal| refusal.code)
}

/// Largest request body read at all.
const BODY_BYTES_MAX: usize = 4 * xml::MESSAGE_BYTES_MAX;

fn xml_response(answer: XmlAnswer) -> HttpResponse {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, [("content-type", "application/xml; charset=utf-8")], answer.body).into_response();
    if answer.not_known_here {
        response.extensions_mut().insert(crate::doors::NotKnownHere);
    }
    response
}

fn answered(result: Result<XmlAnswer, crate::qr::ApiError>) -> HttpResponse {
    match result {
        Ok(answer) => xml_response(answer),
        Err(error) => error.into_response(),
    }
}

fn body_or_error(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Box<HttpResponse>> {
    body.map_err(|rejection| {
        Box::new(crate::http::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("a message is at most {} bytes ({rejection})", xml::MESSAGE_BYTES_MAX),
        ))
    })
}

/// The messages the switch takes, by the index its route names (`message::<I>`).
const INBOUND: [xml::Kind; 3] = [xml::Kind::Pacs008, xml::Kind::Pacs004, xml::Kind::Camt056];

/// `POST /v1/iso20022/<message>`: handled in a task of its own (`http::detached`), so that
/// a client that hangs up never leaves a booked credit, a return or a recall half done.
async fn message<const INDEX: usize>(
    State(gateway): State<Arc<CreditGateway>>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> HttpResponse {
    let body = match body_or_error(body) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    // Signed over the path with its query, as the QR API signs (`qr/auth.rs`).
    let path = crate::qr::path_and_query(&uri).to_string();
    crate::http::detached(async move { answered(gateway.receive(INBOUND[INDEX], &headers, &path, body).await) }).await
}

async fn quote(
    State(gateway): State<Arc<CreditGateway>>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> HttpResponse {
    match body_or_error(body) {
        Ok(body) => match gateway.quote(&headers, crate::qr::path_and_query(&uri), &body) {
            Ok(view) => axum::Json(view).into_response(),
            Err(error) => error.into_response(),
        },
        Err(response) => *response,
    }
}

/// How often final records past `records_kept_s` are removed.
const PRUNE_EVERY_S: u64 = 300;

/// Finishes what a previous run left open (`CreditGateway::load` found it), then removes
/// old final records every few minutes until the daemon stops.
pub async fn resume_and_prune(
    gateway: Arc<CreditGateway>,
    open: Vec<junction_engine::model::RequestKey>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    if !open.is_empty() {
        tracing::info!(credits = open.len(), "finishing the credit transfers a previous run left open");
    }
    for key in open {
        let live = gateway.live.lock().get(&key.0).cloned();
        if let Some(live) = live {
            gateway.ensure_finishing(&live, key);
        }
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(PRUNE_EVERY_S)) => {}
            _ = shutdown.changed() => return,
        }
        let pruner = Arc::clone(&gateway);
        match tokio::task::spawn_blocking(move || pruner.prune()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(removed)) => tracing::info!(removed, "old credit transfer records removed"),
            Ok(Err(error)) => tracing::warn!(%error, "removing old credit transfer records failed"),
            Err(error) => tracing::warn!(%error, "removing old credit transfer records failed"),
        }
    }
}
