//! QR mode: signed `POST /v1/qr/payments` (direct payments: payload, payer currency and
//! amount, with an Idempotency-Key) to the QR gateway's HTTP API, as a wallet participant.
//!
//! HTTP/1.1 over plain keep-alive TCP connections, written by hand (request with
//! Content-Length, answer read by Content-Length): one request in flight per connection.
//! Open loop: each connection sends its share of the schedule when due, or as soon as its
//! previous answer arrives if it is behind; latency counts from the due time, so queueing
//! behind a slow answer shows as latency. Closed loop: each connection sends the next
//! request as soon as the previous answer arrives.
//!
//! Answers are counted by "code": the HTTP status, and for errors the API's error code
//! (`200`, `422:insufficient_headroom`, `503:overloaded`). Deliberate duplicates resend an
//! answered request's body with its Idempotency-Key (newly signed): they must get the same
//! status, error code and payment id. Approved payments book money for `--verify`: the
//! payer amount from the wallet to the FX provider in the payer currency and the payee
//! amount from the FX provider to the acquirer in the merchant's currency (one transfer
//! from the wallet to the acquirer when both currencies are the same).

use crate::connection::{Pacing, Start};
use crate::run::{drive_lanes, runtime, Lane, Options, Outcome};
use crate::stats::{move_money, new_histogram, Counters};
use crate::traffic::Kind;
use anyhow::{bail, ensure, Context, Result};
use hdrhistogram::Histogram;
use junction_wire::qr::QrPayloadBuilder;
use junction_wire::qr_api;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// The payments endpoint.
pub const PAYMENTS_PATH: &str = "/v1/qr/payments";

/// Answered payments kept per connection for deliberate duplicates.
const DUPLICATES_POOL_MAX: usize = 1024;

/// Largest answer head (status line and headers) loadgen accepts.
const HEAD_BYTES_MAX: usize = 64 * 1024;

/// Largest answer body loadgen accepts.
const BODY_BYTES_MAX: usize = 1024 * 1024;

/// Time allowed to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A merchant QR code of the demo routing table.
#[derive(Clone, Debug)]
pub struct Merchant {
    pub name: &'static str,
    pub payload: String,
    /// ISO 4217 code of the QR's currency (ID 53).
    pub currency: &'static str,
}

/// Merchants of several schemes and currencies that the demo configuration routes:
/// PromptPay THB (acquirer 4), Pix BRL (7), QRIS IDR (8), UnionPay CNY (9), and the demo
/// acquirer's USD merchant (3). None carries an amount: loadgen names it.
pub fn demo_merchants() -> Result<Vec<Merchant>> {
    let promptpay = QrPayloadBuilder::new()
        .merchant_account(29, "A000000677010111", &[(1, "0066812345678")])
        .currency_numeric(764)
        .country("TH")
        .encode()?;
    let pix = QrPayloadBuilder::new()
        .merchant_account(26, "BR.GOV.BCB.PIX", &[(1, "pix@example.com")])
        .mcc("0000")
        .currency_numeric(986)
        .country("BR")
        .merchant_name("Loja Exemplo")
        .merchant_city("SAO PAULO")
        .encode()?;
    let qris = QrPayloadBuilder::new()
        .merchant_account(51, "ID.CO.QRIS.WWW", &[(2, "ID1020099998888"), (3, "UMI")])
        .mcc("5812")
        .currency_numeric(360)
        .country("ID")
        .merchant_name("TOKO CONTOH")
        .merchant_city("JAKARTA")
        .encode()?;
    let unionpay = QrPayloadBuilder::new()
        .primitive(15, "273305240002034410050000000000")
        .mcc("5812")
        .currency_numeric(156)
        .country("CN")
        .merchant_name("LUCKY NOODLE")
        .merchant_city("SHANGHAI")
        .encode()?;
    let usd = QrPayloadBuilder::new()
        .merchant_account(26, "com.junction.demo", &[(1, "LOADGEN-1")])
        .mcc("5812")
        .currency_numeric(840)
        .country("US")
        .merchant_name("Junction Diner")
        .merchant_city("Austin")
        .encode()?;
    Ok(vec![
        Merchant { name: "promptpay", payload: promptpay, currency: "THB" },
        Merchant { name: "pix", payload: pix, currency: "BRL" },
        Merchant { name: "qris", payload: qris, currency: "IDR" },
        Merchant { name: "unionpay", payload: unionpay, currency: "CNY" },
        Merchant { name: "demo-usd", payload: usd, currency: "USD" },
    ])
}

/// The demo configuration's wallets: (participant, key, currency it pays in).
pub const DEMO_WALLETS: [(u64, &str, &str); 2] =
    [(5, "55555555555555555555555555555555", "SGD"), (10, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "THB")];

/// ISO 4217 numeric code of the currencies loadgen books.
pub fn currency_numeric(code: &str) -> Option<u16> {
    Some(match code {
        "USD" => 840,
        "JPY" => 392,
        "EUR" => 978,
        "SGD" => 702,
        "THB" => 764,
        "BRL" => 986,
        "IDR" => 360,
        "CNY" => 156,
        _ => return None,
    })
}

/// Minor-unit exponent of a currency (ISO 4217).
fn exponent(code: &str) -> u32 {
    match code {
        "JPY" | "KRW" | "VND" | "CLP" | "ISK" => 0,
        "KWD" | "BHD" | "OMR" | "JOD" | "TND" | "LYD" | "IQD" => 3,
        _ => 2,
    }
}

/// Minor units as the API's decimal string ("12.50").
pub fn decimal(minor: u64, currency: &str) -> String {
    let exponent = exponent(currency);
    if exponent == 0 {
        return minor.to_string();
    }
    let scale = 10u64.pow(exponent);
    format!("{}.{:0width$}", minor / scale, minor % scale, width = exponent as usize)
}

/// Everything the QR connections share, fixed for the run.
pub struct QrPlan {
    pub http: SocketAddr,
    pub wallet: u64,
    pub key: Vec<u8>,
    pub payer_currency: String,
    /// The FX provider, when an answer does not name one (same-currency payments).
    pub fx_provider: u64,
    pub merchants: Vec<Merchant>,
    pub connections: u32,
    pub pacing: Pacing,
    pub timeout: Duration,
    /// Amounts in the merchant's minor units.
    pub amount_min: u64,
    pub amount_max: u64,
    /// Share of requests that resend an answered payment.
    pub duplicate_share: f64,
    /// Chance that an answered payment is kept for a later duplicate.
    pub keep_for_duplicate: f64,
    /// Makes this run's idempotency keys unique.
    pub nonce: String,
    pub seed: u64,
}

fn unix_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A keep-alive HTTP/1.1 connection with one request in flight.
pub struct HttpConnection {
    stream: TcpStream,
    buffer: Vec<u8>,
    host: String,
}

/// An answer: status, whether the server closes the connection, the body.
pub struct HttpAnswer {
    pub status: u16,
    pub close: bool,
    pub body: Vec<u8>,
}

impl HttpConnection {
    pub async fn connect(address: SocketAddr) -> Result<HttpConnection> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .with_context(|| format!("connecting to {address} timed out"))?
            .with_context(|| format!("connecting to {address}"))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        Ok(HttpConnection { stream, buffer: Vec::with_capacity(8192), host: address.to_string() })
    }

    /// Sends a POST with a JSON body and `headers`, and reads its answer.
    pub async fn post(&mut self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<HttpAnswer> {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            self.host,
            body.len()
        );
        for (name, value) in headers {
            request.push_str(name);
            request.push_str(": ");
            request.push_str(value);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        self.stream.write_all(&bytes).await.context("writing the request")?;
        self.read_answer().await
    }

    async fn read_answer(&mut self) -> Result<HttpAnswer> {
        let head_end = loop {
            if let Some(at) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            ensure!(self.buffer.len() < HEAD_BYTES_MAX, "the answer's head is too long");
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buffer[..head_end]).context("the answer's head is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let mut length = 0usize;
        let mut close = status_line.starts_with("HTTP/1.0");
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().with_context(|| format!("bad content-length {value:?}"))?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") && !value.eq_ignore_ascii_case("identity") {
                bail!("the switch answered with transfer-encoding {value}, which loadgen does not read");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        ensure!(length <= BODY_BYTES_MAX, "the answer's body is too long ({length} bytes)");
        while self.buffer.len() < head_end + length {
            self.fill().await?;
        }
        let body = self.buffer[head_end..head_end + length].to_vec();
        self.buffer.drain(..head_end + length);
        Ok(HttpAnswer { status, close, body })
    }

    async fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 8192];
        let read = self.stream.read(&mut chunk).await.context("reading the answer")?;
        ensure!(read > 0, "the switch closed the connection");
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}

/// Checks before the run that the gateway parses and routes every merchant's QR code.
async fn check_merchants(plan: &QrPlan) -> Result<()> {
    let mut http = HttpConnection::connect(plan.http).await.context("reaching the QR gateway (--http)")?;
    for merchant in &plan.merchants {
        let body = json!({ "payload": merchant.payload }).to_string();
        let answer = http.post("/v1/qr/decode", &[], body.as_bytes()).await?;
        let text = String::from_utf8_lossy(&answer.body);
        ensure!(
            answer.status == 200,
            "the gateway does not decode the {} merchant's QR: {} {text}",
            merchant.name,
            answer.status
        );
        if answer.close {
            http = HttpConnection::connect(plan.http).await?;
        }
    }
    Ok(())
}

struct LaneState {
    counters: Counters,
    interval: Histogram<u64>,
    in_flight: u64,
}

/// One QR connection as the run loop sees it.
pub struct QrLane {
    index: u32,
    state: Mutex<LaneState>,
    writer_done: AtomicBool,
    reader_done: AtomicBool,
    failure: Mutex<Option<String>>,
}

impl QrLane {
    fn new(index: u32) -> QrLane {
        QrLane {
            index,
            state: Mutex::new(LaneState { counters: Counters::default(), interval: new_histogram(), in_flight: 0 }),
            writer_done: AtomicBool::new(false),
            reader_done: AtomicBool::new(false),
            failure: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn note_failure(&self, why: String) {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if failure.is_none() {
            *failure = Some(why);
        }
    }
}

impl Lane for QrLane {
    fn index(&self) -> u32 {
        self.index
    }

    fn writer_done(&self) -> bool {
        self.writer_done.load(Ordering::Acquire)
    }

    fn reader_done(&self) -> bool {
        self.reader_done.load(Ordering::Acquire)
    }

    fn take_sample(&self, f: &mut dyn FnMut(&Counters, &Histogram<u64>, u64)) {
        let mut state = self.lock();
        f(&state.counters, &state.interval, state.in_flight);
        state.interval.reset();
    }

    fn counters(&self) -> Counters {
        self.lock().counters.clone()
    }

    fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// An answered payment kept for a deliberate duplicate.
struct Kept {
    key: String,
    body: Vec<u8>,
    code: String,
    payment_id: Option<String>,
}

/// Runs the QR load to the end.
pub fn run(plan: QrPlan, options: &Options) -> Result<Outcome> {
    let runtime = runtime(options.threads)?;
    let plan = Arc::new(plan);
    let outcome = runtime.block_on(async {
        check_merchants(&plan).await?;
        let mut lanes = Vec::new();
        for index in 0..plan.connections {
            let http = HttpConnection::connect(plan.http).await.with_context(|| format!("connection {index}"))?;
            lanes.push((Arc::new(QrLane::new(index)), http));
        }
        let spawn_plan = Arc::clone(&plan);
        drive_lanes(&plan.pacing, plan.timeout, options, lanes, move |lane, http, start, ticks| {
            tokio::spawn(lane_run(Arc::clone(&spawn_plan), lane, http, start, ticks))
        })
        .await
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}

async fn lane_run(
    plan: Arc<QrPlan>,
    lane: Arc<QrLane>,
    http: HttpConnection,
    start: Start,
    mut ticks: Option<watch::Receiver<u64>>,
) {
    let mut http = Some(http);
    let mut rng = SmallRng::seed_from_u64(plan.seed ^ (u64::from(lane.index) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut pool: VecDeque<Kept> = VecDeque::new();
    let stride = u64::from(plan.connections);
    let mut own = 0u64;
    let wallet = plan.wallet.to_string();
    loop {
        let due_ns = match &plan.pacing {
            Pacing::Open(schedule) => match schedule.due_at(u64::from(lane.index) + own * stride) {
                Some(t) => (t * 1e9) as u64,
                None => break,
            },
            Pacing::Closed { duration, .. } => {
                let now = start.elapsed_ns();
                if now >= u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX) {
                    break;
                }
                now
            }
        };
        own += 1;
        while start.elapsed_ns() < due_ns {
            let pacer_alive = match ticks.as_mut() {
                Some(ticks) => ticks.changed().await.is_ok(),
                None => false,
            };
            if !pacer_alive {
                tokio::time::sleep(Duration::from_nanos(due_ns.saturating_sub(start.elapsed_ns()))).await;
            }
        }

        // A deliberate duplicate, or a fresh payment.
        let duplicate = if plan.duplicate_share > 0.0 && rng.gen_bool(plan.duplicate_share.min(1.0)) {
            let kept = pool.pop_back();
            if kept.is_none() {
                lane.lock().counters.fallbacks[Kind::Duplicate.index()] += 1;
            }
            kept
        } else {
            None
        };
        let (kind, key, body) = match &duplicate {
            Some(kept) => (Kind::Duplicate, kept.key.clone(), kept.body.clone()),
            None => {
                let merchant = &plan.merchants[rng.gen_range(0..plan.merchants.len())];
                let amount = rng.gen_range(plan.amount_min..=plan.amount_max);
                let body = json!({
                    "payload": merchant.payload,
                    "payer_currency": plan.payer_currency,
                    "amount": decimal(amount, merchant.currency),
                })
                .to_string()
                .into_bytes();
                (Kind::Purchase, format!("lg-{}-{}-{own}", plan.nonce, lane.index), body)
            }
        };
        let timestamp = unix_s();
        let signed = qr_api::sign_hex(
            &plan.key,
            "POST",
            PAYMENTS_PATH,
            &timestamp.to_string(),
            &plan.wallet.to_string(),
            &key,
            &body,
        );
        let signature = match signed {
            Ok(signature) => signature,
            Err(error) => {
                lane.note_failure(format!("the wallet key: {error}"));
                break;
            }
        };
        let connection = match http.take() {
            Some(connection) => connection,
            None => match HttpConnection::connect(plan.http).await {
                Ok(connection) => connection,
                Err(error) => {
                    lane.note_failure(format!("reconnecting: {error:#}"));
                    break;
                }
            },
        };
        let mut connection = connection;
        {
            let mut state = lane.lock();
            state.counters.sent[kind.index()] += 1;
            state.in_flight = 1;
        }
        let timestamp_text = timestamp.to_string();
        let headers = [
            ("x-junction-participant", wallet.as_str()),
            ("x-junction-timestamp", timestamp_text.as_str()),
            ("x-junction-signature", signature.as_str()),
            ("idempotency-key", key.as_str()),
        ];
        let deadline_ns = due_ns.saturating_add(u64::try_from(plan.timeout.as_nanos()).unwrap_or(u64::MAX));
        let remaining =
            Duration::from_nanos(deadline_ns.saturating_sub(start.elapsed_ns())).max(Duration::from_millis(1));
        let result = tokio::time::timeout(remaining, connection.post(PAYMENTS_PATH, &headers, &body)).await;
        let received = Instant::now();
        let mut state = lane.lock();
        state.in_flight = 0;
        match result {
            Err(_) => {
                // The answer may still come on this connection: drop it, open another.
                state.counters.timeouts[kind.index()] += 1;
            }
            Ok(Err(error)) => {
                state.counters.lost += 1;
                drop(state);
                lane.note_failure(format!("{error:#} (reconnected)"));
            }
            Ok(Ok(answer)) => {
                let due = start.instant + Duration::from_nanos(due_ns);
                let latency_us = u64::try_from(received.saturating_duration_since(due).as_micros()).unwrap_or(u64::MAX);
                state.interval.saturating_record(latency_us.max(1));
                let value: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
                let code = if answer.status == 200 {
                    "200".to_string()
                } else {
                    format!("{}:{}", answer.status, value["error"]["code"].as_str().unwrap_or("?"))
                };
                let payment_id = value["payment_id"].as_str().map(str::to_string);
                let counters = &mut state.counters;
                counters.answer_named(kind, &code);
                if answer.status == 200 && payment_id.is_none() {
                    counters.bad_answers += 1;
                }
                match &duplicate {
                    Some(kept) => {
                        if answer.status == 503 {
                            counters.duplicates_overloaded += 1;
                        } else if kept.code == code && kept.payment_id == payment_id {
                            counters.duplicates_matched += 1;
                        } else {
                            counters.duplicates_mismatched += 1;
                            counters.note_mismatch(format!(
                                "duplicate payment (key {}) answered {code} payment {:?}, the original {} payment {:?}",
                                kept.key, payment_id, kept.code, kept.payment_id
                            ));
                        }
                    }
                    None => {
                        if answer.status == 200 {
                            book(&plan, counters, &value);
                        }
                        if answer.status < 500
                            && plan.keep_for_duplicate > 0.0
                            && rng.gen_bool(plan.keep_for_duplicate.min(1.0))
                        {
                            if pool.len() >= DUPLICATES_POOL_MAX {
                                pool.pop_front();
                            }
                            pool.push_back(Kept { key, body, code, payment_id });
                        }
                    }
                }
                if !answer.close {
                    http = Some(connection);
                }
            }
        }
    }
    lane.writer_done.store(true, Ordering::Release);
    lane.reader_done.store(true, Ordering::Release);
}

/// Books an approved payment's money as its answer describes it.
fn book(plan: &QrPlan, counters: &mut Counters, answer: &Value) {
    let wallet = answer["wallet"].as_u64().unwrap_or(plan.wallet);
    let acquirer = answer["acquirer"].as_u64();
    let payer_currency = answer["payer_currency"].as_str().and_then(currency_numeric);
    let payee_currency = answer["payee_currency"].as_str().and_then(currency_numeric);
    let payer = answer["payer_amount_minor"].as_u64();
    let payee = answer["payee_amount_minor"].as_u64();
    let (Some(acquirer), Some(payer_currency), Some(payee_currency), Some(payer), Some(payee)) =
        (acquirer, payer_currency, payee_currency, payer, payee)
    else {
        counters.bad_answers += 1;
        counters.note_mismatch(format!("an approved payment's answer lacks what --verify needs: {answer}"));
        return;
    };
    if payer_currency == payee_currency {
        move_money(&mut counters.positions, wallet, acquirer, payee_currency, payee);
    } else {
        let provider = answer["fx"]["provider"].as_u64().unwrap_or(plan.fx_provider);
        move_money(&mut counters.positions, wallet, provider, payer_currency, payer);
        move_money(&mut counters.positions, provider, acquirer, payee_currency, payee);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        assert_eq!(decimal(1250, "THB"), "12.50");
        assert_eq!(decimal(5, "USD"), "0.05");
        assert_eq!(decimal(700, "JPY"), "700");
    }

    #[test]
    fn demo_merchants_encode() {
        let merchants = demo_merchants().expect("valid payloads");
        assert_eq!(merchants.len(), 5);
        for merchant in merchants {
            assert!(currency_numeric(merchant.currency).is_some());
            junction_wire::qr::QrPayload::parse(&merchant.payload).expect("parses");
        }
    }
}
