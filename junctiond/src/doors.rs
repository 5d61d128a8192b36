//! The HTTP doors of a partitioned switch: a wallet's QR requests and a payment system's
//! ISO 20022 messages, received by any node, are answered by the partition that books
//! them.
//!
//! A card's request goes to its issuer's partition (`cluster.rs`). A wallet or a payment
//! system pays from its own position, which any partition could book. What ties it to
//! one partition is its records: idempotency keys, quotes, payments and refunds, credits
//! and their limits. A resend must find the payment it repeats. So the map places each
//! wallet and payment system in a partition (`issuer.<id>`, like an issuer: participant
//! ids are one space), and every door sends that sender's requests there:
//!
//! - **By sender** (`POST /v1/qr/quotes`, `/v1/qr/payments`, `/v1/iso20022/pacs.008`,
//!   `/camt.056`, `/quotes`): the door checks the signature, reads where the map places
//!   the signer, and sends the request as it came (method, path, headers, body) to that
//!   partition's primary over core NATS request/reply (`<bucket>.<partition>.http`, a
//!   queue group per partition). The primary runs it through its own router, as if it had
//!   come in on its own port, and the door relays the answer. A sender the map does not
//!   place is served where it arrives (a single switch's way). No answer (a takeover
//!   there): sent again until the deadline, then 503 `partition_unavailable`; the resend
//!   is safe, since the idempotency key decides.
//! - **Where known** (`GET /v1/qr/payments/{id}`, `POST /v1/qr/payments/{id}/refund`,
//!   `POST /v1/iso20022/pacs.004`): the caller is the merchant's acquirer or the receiving
//!   system, not the payer, so the door cannot tell the partition. It runs the request
//!   here; if this partition does not know the payment (or credit), it asks the others in
//!   turn, and the first that knows it answers. Nothing moves where it is not known.
//!
//! A placed wallet or payment system does not move: its records stay where they were
//! booked (`http.rs` refuses the move). Place it before it pays.

use crate::cluster::Partitions;
use crate::qr::Signers;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tower::ServiceExt as _;

/// Set by a handler on an answer that says "no such payment (or credit) here": the door
/// asks the other partitions.
#[derive(Debug, Clone, Copy)]
pub struct NotKnownHere;

/// On a request a partition serves for another door: never forwarded again.
#[derive(Debug, Clone, Copy)]
struct ServedForDoor;

/// Headers of a forwarded HTTP request and of its answer.
const HEADER_METHOD: &str = "Junction-Http-Method";
const HEADER_PATH: &str = "Junction-Http-Path";
const HEADER_STATUS: &str = "Junction-Http-Status";
/// On an answer that is not the request's: `moved` (the sender is not placed here) or
/// `not-known-here`.
const HEADER_DOOR: &str = "Junction-Door";
const DOOR_MOVED: &str = "moved";
const DOOR_NOT_KNOWN_HERE: &str = "not-known-here";

/// HTTP headers that belong to one connection, not to the request (lower case, as HTTP
/// header names are kept).
const HOP_BY_HOP: [&str; 5] = ["host", "content-length", "connection", "transfer-encoding", "keep-alive"];

/// The largest body a door reads (the credit gateway's bound; the QR gateway's is smaller).
const BODY_BYTES_MAX: usize = 4 * crate::credit::xml::MESSAGE_BYTES_MAX;
/// The largest answer a partition sends back.
const ANSWER_BYTES_MAX: usize = 1 << 20;

/// The pause before sending again when a partition has no primary to answer.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How a request that may belong to another partition finds it (the others are
/// answered here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// The partition the map places its signer in.
    BySender,
    /// The partition that knows the payment or credit it names.
    WhereKnown,
}

fn route(method: &Method, path: &str) -> Option<Route> {
    const BY_SENDER: [&str; 5] =
        ["/v1/qr/quotes", "/v1/qr/payments", "/v1/iso20022/pacs.008", "/v1/iso20022/camt.056", "/v1/iso20022/quotes"];
    let payment = path.strip_prefix("/v1/qr/payments/");
    match *method {
        Method::POST if BY_SENDER.contains(&path) => Some(Route::BySender),
        Method::POST if path == "/v1/iso20022/pacs.004" => Some(Route::WhereKnown),
        Method::POST if payment.is_some_and(|rest| rest.ends_with("/refund")) => Some(Route::WhereKnown),
        Method::GET if payment.is_some_and(|rest| !rest.is_empty() && !rest.contains('/')) => Some(Route::WhereKnown),
        _ => None,
    }
}

/// The doors' state: the map, and the signatures a door checks before it sends anything on.
pub struct HttpDoors {
    partitions: Arc<Partitions>,
    signers: Signers,
    /// How long a door waits for the partition's answer: the cluster's request deadline
    /// plus the longest a credit's answer may take there.
    deadline: Duration,
}

impl HttpDoors {
    pub fn new(partitions: Arc<Partitions>, signers: Signers, deadline: Duration) -> HttpDoors {
        HttpDoors { partitions, signers, deadline }
    }
}

/// The middleware in front of the QR and credit gateways' routes.
pub async fn door(State(doors): State<Arc<HttpDoors>>, request: Request, next: Next) -> Response {
    let Some(route) = route(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let served_for_door = request.extensions().get::<ServedForDoor>().is_some();
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, BODY_BYTES_MAX).await else {
        return crate::http::error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the request body is too large");
    };
    let path = crate::qr::path_and_query(&parts.uri).to_string();
    match route {
        Route::BySender => {
            let now_s = junction_engine::clock::now_unix_s();
            // Checked here as the gateway checks it: a request that does not verify is
            // refused at the door, never served here instead of at its partition.
            let signer = match doors.signers.verify(&parts.headers, &parts.method, &path, &body, now_s) {
                Ok(signer) => signer,
                Err(refused) => return refused.into_response(),
            };
            let placement = doors.partitions.placement(signer.id.0);
            let ours = placement.as_ref().is_none_or(|p| p.partition == doors.partitions.me && p.moving_to.is_none());
            if ours {
                return next.run(Request::from_parts(parts, Body::from(body))).await;
            }
            if served_for_door {
                // The door's map is behind this one's: it reads it again.
                return door_status(DOOR_MOVED);
            }
            doors.by_sender(signer.id.0, &parts, &path, body).await
        }
        Route::WhereKnown => {
            let here = next.run(Request::from_parts(parts.clone(), Body::from(body.clone()))).await;
            if here.extensions().get::<NotKnownHere>().is_none() || served_for_door {
                return here;
            }
            doors.where_known(&parts, &path, body, here).await
        }
    }
}

impl HttpDoors {
    /// Sends a request to the partition its sender is placed in until one answers or the
    /// deadline passes (503 `partition_unavailable`).
    async fn by_sender(&self, sender: u64, parts: &axum::http::request::Parts, path: &str, body: Bytes) -> Response {
        let headers = nats_headers(parts, path);
        let deadline = tokio::time::Instant::now() + self.deadline;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                tracing::warn!(sender, "no partition answered a forwarded HTTP request in time");
                self.partitions.counters.forward_failures.fetch_add(1, Ordering::Relaxed);
                return unavailable();
            }
            let partition = match self.partitions.placement(sender) {
                Some(placement) if placement.moving_to.is_none() => placement.partition,
                _ => {
                    tokio::time::sleep(RETRY_PAUSE.min(remaining)).await;
                    continue;
                }
            };
            match self.ask(&partition, &headers, &body, remaining).await {
                Ok(answer) if door_of(&answer) == Some(DOOR_MOVED) => {
                    tokio::time::sleep(RETRY_PAUSE.min(remaining)).await;
                }
                Ok(answer) => {
                    self.partitions.counters.forwarded.fetch_add(1, Ordering::Relaxed);
                    return http_answer(answer);
                }
                Err(error) => {
                    tracing::debug!(partition, %error, "a forwarded HTTP request got no answer; sending it again");
                    if error.kind() != async_nats::RequestErrorKind::TimedOut {
                        tokio::time::sleep(RETRY_PAUSE.min(remaining)).await;
                    }
                }
            }
        }
    }

    /// Asks every other partition at once about a payment or credit this one does not
    /// know; the answer of one that knows it. None does: `here`'s answer. One that could
    /// not be asked, or failed: 503 (it may be the one that knows).
    async fn where_known(
        &self,
        parts: &axum::http::request::Parts,
        path: &str,
        body: Bytes,
        here: Response,
    ) -> Response {
        let headers = nats_headers(parts, path);
        let deadline = tokio::time::Instant::now() + self.deadline;
        let others = self.partitions.partitions().into_iter().filter(|p| *p != self.partitions.me);
        let mut asked: futures_util::stream::FuturesUnordered<_> =
            others.map(|partition| self.ask_until(partition, &headers, &body, deadline)).collect();
        let mut failed = false;
        while let Some(answer) = asked.next().await {
            match answer {
                Some(answer) if door_of(&answer) == Some(DOOR_NOT_KNOWN_HERE) => {}
                Some(answer) if status_of(&answer).is_some_and(|status| !status.is_server_error()) => {
                    self.partitions.counters.forwarded.fetch_add(1, Ordering::Relaxed);
                    return http_answer(answer);
                }
                _ => failed = true,
            }
        }
        if failed {
            self.partitions.counters.forward_failures.fetch_add(1, Ordering::Relaxed);
            return unavailable();
        }
        here
    }

    /// One partition's answer, sent again while it has no primary, until `deadline`.
    async fn ask_until(
        &self,
        partition: String,
        headers: &async_nats::HeaderMap,
        body: &Bytes,
        deadline: tokio::time::Instant,
    ) -> Option<async_nats::Message> {
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                return None;
            }
            match self.ask(&partition, headers, body, remaining).await {
                Ok(answer) => return Some(answer),
                Err(error) if error.kind() == async_nats::RequestErrorKind::TimedOut => return None,
                Err(_) => tokio::time::sleep(RETRY_PAUSE.min(remaining)).await,
            }
        }
    }

    async fn ask(
        &self,
        partition: &str,
        headers: &async_nats::HeaderMap,
        body: &Bytes,
        wait: Duration,
    ) -> Result<async_nats::Message, async_nats::RequestError> {
        let request = async_nats::Request::new().headers(headers.clone()).payload(body.clone()).timeout(Some(wait));
        self.partitions.client().send_request(self.partitions.http_subject(partition), request).await
    }
}

/// Serves the HTTP requests other partitions' doors send this one, through `router` (the
/// gateways' routes, behind `door`), until `shutdown`. Only a primary serves.
pub async fn serve(
    partitions: Arc<Partitions>,
    router: axum::Router,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let subject = partitions.http_subject(&partitions.me);
    tracing::info!(subject, "serving HTTP requests forwarded by other partitions' doors");
    let counted = Arc::clone(&partitions);
    partitions
        .respond(subject, shutdown, move |message| {
            let (partitions, router) = (Arc::clone(&counted), router.clone());
            async move {
                let answer = serve_one(router, message).await;
                partitions.counters.served.fetch_add(1, Ordering::Relaxed);
                answer
            }
        })
        .await
}

/// One forwarded request through `router`: the answer's headers (its status among them)
/// and body.
async fn serve_one(router: axum::Router, message: async_nats::Message) -> (async_nats::HeaderMap, Bytes) {
    let header = |name: &str| message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
    let mut builder = Request::builder()
        .method(header(HEADER_METHOD).as_deref().unwrap_or("GET"))
        .uri(header(HEADER_PATH).unwrap_or_else(|| "/".into()));
    for (name, values) in message.headers.iter().flat_map(|h| h.iter()) {
        let name: &str = name.as_ref();
        if is_doors_header(name) {
            continue;
        }
        for value in values {
            builder = builder.header(name, value.as_str());
        }
    }
    let request = match builder.extension(ServedForDoor).body(Body::from(message.payload)) {
        Ok(request) => request,
        Err(error) => {
            let answer = crate::http::error(StatusCode::BAD_REQUEST, "bad_request", error.to_string());
            return nats_answer(answer).await;
        }
    };
    let answer = router.oneshot(request).await.unwrap_or_else(|never| match never {});
    nats_answer(answer).await
}

/// An answer as NATS carries it back: a body over `ANSWER_BYTES_MAX` is a 502.
async fn nats_answer(answer: Response) -> (async_nats::HeaderMap, Bytes) {
    let (parts, body) = answer.into_parts();
    let Ok(body) = axum::body::to_bytes(body, ANSWER_BYTES_MAX).await else {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(HEADER_STATUS, StatusCode::BAD_GATEWAY.as_str());
        return (headers, Bytes::new());
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(HEADER_STATUS, parts.status.as_str());
    for (name, value) in &parts.headers {
        if let (false, Ok(value)) = (skipped(name.as_str()), value.to_str()) {
            headers.append(name.as_str(), value);
        }
    }
    if parts.extensions.get::<NotKnownHere>().is_some() {
        headers.insert(HEADER_DOOR, DOOR_NOT_KNOWN_HERE);
    }
    if let Some(DoorStatus(status)) = parts.extensions.get::<DoorStatus>() {
        headers.insert(HEADER_DOOR, *status);
    }
    (headers, body)
}

/// A request as NATS carries it: the HTTP headers (but the connection's, and any that
/// look like the doors' own), the method and the path.
fn nats_headers(parts: &axum::http::request::Parts, path: &str) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(HEADER_METHOD, parts.method.as_str());
    headers.insert(HEADER_PATH, path);
    for (name, value) in &parts.headers {
        if let (false, Ok(value)) = (skipped(name.as_str()), value.to_str()) {
            headers.append(name.as_str(), value);
        }
    }
    headers
}

/// The doors' own headers, whatever their case.
fn is_doors_header(name: &str) -> bool {
    name.len() >= 9 && name[..9].eq_ignore_ascii_case("junction-")
}

/// Not carried between a door and a partition: the connection's headers and the doors'.
fn skipped(name: &str) -> bool {
    HOP_BY_HOP.contains(&name) || is_doors_header(name)
}

fn door_of(answer: &async_nats::Message) -> Option<&str> {
    answer.headers.as_ref().and_then(|h| h.get(HEADER_DOOR)).map(|v| v.as_str())
}

fn status_of(answer: &async_nats::Message) -> Option<StatusCode> {
    let status = answer.headers.as_ref()?.get(HEADER_STATUS)?.as_str().parse::<u16>().ok()?;
    StatusCode::from_u16(status).ok()
}

/// The answer a partition sent, as the door writes it.
fn http_answer(answer: async_nats::Message) -> Response {
    let status = status_of(&answer).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, answer.payload).into_response();
    for (name, values) in answer.headers.iter().flat_map(|h| h.iter()) {
        let name: &str = name.as_ref();
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else { continue };
        if skipped(name.as_str()) {
            continue;
        }
        for value in values {
            if let Ok(value) = HeaderValue::from_str(value.as_str()) {
                response.headers_mut().append(name.clone(), value);
            }
        }
    }
    response
}

/// A partition's answer to a door that is not the request's (`DOOR_MOVED`): never seen by
/// a client.
#[derive(Debug, Clone, Copy)]
struct DoorStatus(&'static str);

fn door_status(status: &'static str) -> Response {
    let mut response = StatusCode::CONFLICT.into_response();
    response.extensions_mut().insert(DoorStatus(status));
    response
}

fn unavailable() -> Response {
    crate::http::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "partition_unavailable",
        "the partition that books this request did not answer in time; send it again (same idempotency key)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_find_their_partition_by_sender_by_what_they_name_or_here() {
        let cases = [
            (Method::POST, "/v1/qr/payments", Some(Route::BySender)),
            (Method::POST, "/v1/qr/quotes", Some(Route::BySender)),
            (Method::POST, "/v1/iso20022/pacs.008", Some(Route::BySender)),
            (Method::POST, "/v1/iso20022/camt.056", Some(Route::BySender)),
            (Method::POST, "/v1/iso20022/quotes", Some(Route::BySender)),
            (Method::POST, "/v1/iso20022/pacs.004", Some(Route::WhereKnown)),
            (Method::GET, "/v1/qr/payments/00ab", Some(Route::WhereKnown)),
            (Method::POST, "/v1/qr/payments/00ab/refund", Some(Route::WhereKnown)),
            (Method::POST, "/v1/qr/decode", None),
            (Method::GET, "/v1/qr/payments/", None),
            (Method::GET, "/v1/admin/fx/rates", None),
            (Method::GET, "/v1/qr/payments", None),
        ];
        for (method, path, expected) in cases {
            assert_eq!(route(&method, path), expected, "{method} {path}");
        }
    }

    #[test]
    fn a_clients_headers_carry_over_but_the_doors_own_and_the_connections_do_not() {
        let request = Request::builder()
            .method("POST")
            .uri("/v1/qr/payments?x=1")
            .header("x-junction-signature", "ab")
            .header("idempotency-key", "k1")
            .header("traceparent", "00-1-2-01")
            .header("junction-http-status", "200")
            .header("Junction-Door", "moved")
            .header("host", "switch")
            .header("content-length", "2")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let headers = nats_headers(&parts, "/v1/qr/payments?x=1");
        let names: std::collections::BTreeSet<String> = headers.iter().map(|(name, _)| name.to_string()).collect();
        let expected = [HEADER_METHOD, HEADER_PATH, "idempotency-key", "traceparent", "x-junction-signature"];
        assert_eq!(names, expected.iter().map(|name| name.to_string()).collect());
        assert_eq!(headers.get(HEADER_PATH).map(|v| v.as_str()), Some("/v1/qr/payments?x=1"));
    }
}
