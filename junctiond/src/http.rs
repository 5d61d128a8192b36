//! The HTTP side of the daemon: health, Prometheus metrics and the admin API. `/health`
//! and `/metrics` are open (no customer data: for load balancers and Prometheus); the
//! admin API's views need the read token or the admin token, its changes the admin token.

use super::iso_gateway::IsoContext;
use super::metrics::Metrics;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use junction_engine::faults::Stage;
use junction_engine::Engine;
use junction_ledger::{AccountId, WindowId, WindowPositions, WindowState};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub struct HttpContext {
    pub engine: Arc<Engine>,
    pub directory: Arc<crate::directory::Directory>,
    pub clearing: Arc<super::windows::Windows>,
    pub iso: Arc<IsoContext>,
    pub metrics: Arc<Metrics>,
    pub admin_token: String,
    /// `switch.read_token`: reads the admin API, changes nothing.
    pub read_token: Option<String>,
    pub recovery_us: u64,
    /// Extra routes' state (the QR gateway) is merged by the caller.
    pub switch_name: String,
    /// Whether `POST /v1/admin/faults/panic` is served (crash tests).
    pub fault_injection: bool,
    /// With replication: the node's role and how far the log is.
    pub replication: Option<Arc<crate::replication::Status>>,
    /// A partitioned switch: this node's partition and the map (`cluster.rs`).
    pub cluster: Option<Arc<crate::cluster::Partitions>>,
}

/// What a replication standby serves on its HTTP address until it takes over: its status
/// (`/v1/admin/status`, `/metrics`) and `/health` answering 503 (not serving payments).
pub struct StandbyServer {
    pub address: std::net::SocketAddr,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl StandbyServer {
    pub async fn start(
        address: std::net::SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
        status: Arc<crate::replication::Status>,
    ) -> anyhow::Result<StandbyServer> {
        use anyhow::Context;
        let listener =
            tokio::net::TcpListener::bind(address).await.with_context(|| format!("listening for HTTP on {address}"))?;
        let address = listener.local_addr()?;
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let for_status = Arc::clone(&status);
        let for_metrics = Arc::clone(&status);
        let router = Router::new()
            .route("/health", get(|| async { (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "standby" }))) }))
            .route("/v1/admin/status", get(move || async move { Json(json!({ "replication": for_status.json() })) }))
            .route(
                "/metrics",
                get(move || async move {
                    ([("content-type", "text/plain; version=0.0.4")], for_metrics.metrics()).into_response()
                }),
            );
        let task = tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.await;
            };
            if let Err(error) = crate::tls::serve_http(listener, tls, router, stopped).await {
                tracing::error!(%error, "standby HTTP server failed");
            }
        });
        Ok(StandbyServer { address, shutdown, task })
    }

    /// Stops serving and frees the address (returned, for the primary's server).
    pub async fn stop(self) -> std::net::SocketAddr {
        let _ = self.shutdown.send(());
        let _ = self.task.await;
        self.address
    }
}

/// Largest admin request body: a full provisioning batch with room to spare.
pub const ADMIN_BODY_BYTES_MAX: usize = 32 << 20;

pub fn admin_router(context: Arc<HttpContext>) -> Router {
    // The views: anyone with the read token or the admin token.
    let views = Router::new()
        .route("/v1/admin/status", get(status))
        // Onboarding is a change: its handler checks for the admin token.
        .route("/v1/admin/participants", get(participants).post(onboard))
        .route("/v1/admin/windows", get(windows))
        .route("/v1/admin/positions", get(positions))
        .route("/v1/admin/accounts/{id}", get(account))
        .route("/v1/admin/bins", get(bins))
        .route("/v1/admin/fees", get(fees))
        .route("/v1/admin/issuer-links", get(issuer_links))
        .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&context), require_reader));
    // The changes: each handler checks for the admin token (`admin_refusal`).
    let changes = Router::new()
        .route("/v1/admin/windows/close", post(close_window))
        .route("/v1/admin/windows/{id}/settle", post(settle_window))
        .route("/v1/admin/accounts", post(provision_accounts))
        .route("/v1/admin/accounts/{id}/status", post(account_status))
        .route("/v1/admin/cards", post(provision_cards))
        .route("/v1/admin/participants/{id}/caps", post(set_cap))
        .route("/v1/admin/participants/{id}/suspend", post(suspend))
        .route("/v1/admin/participants/{id}/reinstate", post(reinstate))
        .route("/v1/admin/participants/{id}/retire", post(retire))
        .route("/v1/admin/participants/{id}/keys", post(rotate_key))
        .route("/v1/admin/bins", axum::routing::put(replace_bins).post(upsert_bins))
        .route("/v1/admin/bins/{prefix}", axum::routing::delete(delete_bin))
        .route("/v1/admin/fees", axum::routing::put(replace_fees))
        .route("/v1/admin/faults/panic", post(inject_panic))
        .route("/v1/admin/cluster/cutoff", post(cluster_cutoff))
        .route("/v1/admin/cluster/issuers/{id}", axum::routing::put(cluster_move));
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(views)
        .merge(changes)
        // Bulk provisioning sends up to PROVISION_BATCH_MAX records (about 100 bytes each).
        .layer(axum::extract::DefaultBodyLimit::max(ADMIN_BODY_BYTES_MAX))
        .with_state(context)
}

/// A JSON error with a stable machine-readable code and a human message.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": { "code": code, "message": message.into() } }))).into_response()
}

/// Runs a request's work in a task of its own: a client that hangs up never leaves money
/// half moved (axum drops a handler's future when its connection goes).
pub async fn detached(work: impl std::future::Future<Output = Response> + Send + 'static) -> Response {
    tokio::spawn(work)
        .await
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "system_error", "the switch failed; retry"))
}

/// Whether the request carries the admin token (`Authorization: Bearer <token>`),
/// compared in constant time.
pub fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) =
        headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.as_bytes()).into()
}

/// What a request's bearer token lets it do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    None,
    Read,
    Admin,
}

/// What the bearer token of `headers` lets it do, given the admin and the read token.
pub fn access(headers: &HeaderMap, admin_token: &str, read_token: Option<&str>) -> Access {
    if authorized(headers, admin_token) {
        Access::Admin
    } else if read_token.is_some_and(|token| authorized(headers, token)) {
        Access::Read
    } else {
        Access::None
    }
}

impl HttpContext {
    pub fn access(&self, headers: &HeaderMap) -> Access {
        access(headers, &self.admin_token, self.read_token.as_deref())
    }

    /// The answer to a change asked without the admin token: 401 without a token, 403
    /// with the read token. None: go ahead.
    pub fn admin_refusal(&self, headers: &HeaderMap) -> Option<Response> {
        match self.access(headers) {
            Access::Admin => None,
            Access::Read => Some(error(StatusCode::FORBIDDEN, "forbidden", "the read token cannot change anything")),
            Access::None => Some(error(StatusCode::UNAUTHORIZED, "unauthorized", "this call needs the admin token")),
        }
    }
}

/// Lets a view through with the read token or the admin token.
pub async fn require_reader(
    State(context): State<Arc<HttpContext>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if context.access(request.headers()) == Access::None {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "this view needs the read token or the admin token");
    }
    next.run(request).await
}

async fn health(State(context): State<Arc<HttpContext>>) -> Response {
    let ledger = context.engine.ledger();
    // A ledger that failed to write refuses commits; report it so load balancers see it.
    match ledger.health() {
        Ok(()) => Json(json!({ "status": "ok", "ledger_durable_seq": ledger.durable_seq() })).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "failing", "reason": e.to_string() })))
            .into_response(),
    }
}

async fn metrics(State(context): State<Arc<HttpContext>>) -> Response {
    let engine = &context.engine;
    let ledger = engine.ledger();
    // Issuers whose BINs go to their host are listed even with no link up (0 in rotation).
    let mut issuer_links: std::collections::BTreeMap<u64, (usize, usize)> = engine
        .bin_routes()
        .routes()
        .filter(|route| route.mode != junction_engine::routing::RouteMode::Switch)
        .map(|route| (route.issuer.0, (0, 0)))
        .collect();
    for (issuer, in_rotation, out_of_rotation) in context.iso.links.counts() {
        issuer_links.insert(issuer.0, (in_rotation, out_of_rotation));
    }
    let scrape = crate::metrics::Scrape {
        version: env!("CARGO_PKG_VERSION"),
        commit: crate::COMMIT,
        ledger_healthy: ledger.health().is_ok(),
        writer: ledger.writer_report(),
        index: ledger.index_report(),
        recovery_us: context.recovery_us,
        declines_by_reason: engine.stats().by_reason(),
        queue_depths: engine.queue_depths(),
        connections_open: context.iso.connections_open.load(Ordering::Relaxed),
        requests_in_flight: context.iso.admission.in_flight(),
        issuer_links: issuer_links.into_iter().map(|(issuer, (up, out))| (issuer, up, out)).collect(),
        window_opened_unix_s: context.clearing.open_window_began_unix_s(),
        clearing: context.clearing.figures(),
        replication: context.replication.as_ref().map(|status| status.metrics()),
        cluster: context.cluster.as_ref().map(|cluster| cluster.counters.metrics()),
    };
    ([("content-type", "text/plain; version=0.0.4")], context.metrics.render(&scrape)).into_response()
}

async fn status(State(context): State<Arc<HttpContext>>) -> Json<Value> {
    let engine = &context.engine;
    let ledger = engine.ledger();
    Json(json!({
        "switch": context.switch_name,
        "version": crate::VERSION,
        "shards": engine.shard_count(),
        "queue_depths": engine.queue_depths(),
        "connections_open": context.iso.connections_open.load(Ordering::Relaxed),
        "requests_in_flight": context.iso.admission.in_flight(),
        "requests_in_flight_max": context.iso.admission.max(),
        "responses_by_code": engine.stats().by_code(),
        "declines_by_reason": engine.stats().by_reason(),
        "ledger": {
            "durable_seq": ledger.durable_seq(),
            "accounts": ledger.account_count(),
            "current_window": ledger.current_window().0,
            "recovery_us": context.recovery_us,
            // The longest the ledger stood still while requests waited, since start.
            "pause_us_max": ledger.writer_report().pause_us_max,
            "index": index_json(ledger.index_report()),
        },
        "replication": context.replication.as_ref().map(|status| status.json()),
        "cluster": context.cluster.as_ref().map(|cluster| cluster.json()),
        // For load testers: CPU per request is (difference of cpu_us) / (requests).
        "process": { "cpu_us": process_cpu_us() },
    }))
}

fn index_json(index: junction_ledger::IndexReport) -> serde_json::Value {
    json!({
        "entries_in_memory": index.entries_in_memory,
        "holds_in_memory": index.holds_in_memory,
        "cold_lookups": index.cold_lookups,
    })
}

/// User plus system CPU time of this process so far, in microseconds (`/proc/self/stat`,
/// in USER_HZ ticks, which Linux fixes at 100 per second); `None` off Linux.
fn process_cpu_us() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((user + system) * 10_000)
}

async fn participants(State(context): State<Arc<HttpContext>>) -> Json<Value> {
    let engine = &context.engine;
    let list: Vec<Value> = engine
        .participants()
        .iter()
        .map(|p| {
            let member = context.directory.get(p.id);
            let caps: serde_json::Map<String, Value> = p
                .net_debit_caps
                .iter()
                .map(|(currency, cap)| {
                    let headroom = engine.cap_headroom(p.id, *currency).unwrap_or_default();
                    (
                        currency.code().to_string(),
                        json!({ "net_debit_cap": cap, "headroom_in_pool": headroom.to_string() }),
                    )
                })
                .collect();
            json!({
                "id": p.id.0,
                "name": p.name,
                "role": p.role,
                "suspended": engine.is_suspended(p.id),
                "retired": member.as_ref().is_some_and(|m| m.is_retired()),
                "institution_id": member.as_ref().map(|m| m.institution_id.clone()),
                "bic": member.as_ref().map(|m| m.bic.clone()),
                "keys": member.as_ref().map(|m| m.key_view()),
                "currencies": caps,
            })
        })
        .collect();
    Json(json!({ "participants": list }))
}

fn window_json(window: &WindowPositions) -> Value {
    let (state, closed_at) = match window.state {
        WindowState::Open => ("open", None),
        WindowState::Closed { closed_at } => ("closed", Some(closed_at)),
    };
    json!({
        "window": window.window.0,
        "state": state,
        "closed_at_ns": closed_at,
        "transfer_count": window.transfer_count,
        "first_seq": window.first_seq,
        "last_seq": window.last_seq,
    })
}

fn positions_json(window: &WindowPositions) -> Value {
    let mut value = window_json(window);
    let rows: Vec<Value> = window
        .positions
        .iter()
        .map(|((participant, currency), p)| {
            json!({
                "participant": participant.0,
                "currency": currency.code(),
                "debit_count": p.debit_count,
                "credit_count": p.credit_count,
                "debits_minor": p.debits.to_string(),
                "credits_minor": p.credits.to_string(),
                "net_minor": p.net().to_string(),
                "net": currency.format_minor(p.net()),
            })
        })
        .collect();
    value["positions"] = Value::Array(rows);
    value
}

async fn windows(State(context): State<Arc<HttpContext>>) -> Json<Value> {
    let list: Vec<Value> = context
        .engine
        .ledger()
        .windows()
        .iter()
        .map(|w| {
            let mut value = window_json(w);
            value["status"] = json!(context.clearing.status(w.window, w.state));
            if w.state != WindowState::Open {
                value["folder"] = json!(context.clearing.folder(w.window).display().to_string());
            }
            value
        })
        .collect();
    Json(json!({ "windows": list }))
}

async fn settle_window(State(context): State<Arc<HttpContext>>, headers: HeaderMap, Path(id): Path<u64>) -> Response {
    if let Some(refusal) = context.admin_refusal(&headers) {
        return refusal;
    }
    let clearing = Arc::clone(&context.clearing);
    match tokio::task::spawn_blocking(move || clearing.settle(WindowId(id))).await {
        Ok(Ok(())) => Json(json!({ "window": id, "status": "settled" })).into_response(),
        Ok(Err(message)) => error(StatusCode::CONFLICT, "not_settleable", message),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct PositionsQuery {
    window: Option<u64>,
}

async fn positions(State(context): State<Arc<HttpContext>>, Query(query): Query<PositionsQuery>) -> Response {
    let ledger = context.engine.ledger();
    let window = query.window.map(WindowId).unwrap_or_else(|| ledger.current_window());
    match ledger.window_positions(window) {
        Some(positions) => Json(positions_json(&positions)).into_response(),
        None => error(StatusCode::NOT_FOUND, "unknown_window", format!("window {} does not exist", window.0)),
    }
}

/// A cut-off of the whole partitioned switch: every partition closes its window, and one
/// merged clearing set is made of their parts (`cluster.rs`).
async fn cluster_cutoff(State(context): State<Arc<HttpContext>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = context.admin_refusal(&headers) {
        return refusal;
    }
    let Some(cluster) = &context.cluster else {
        return error(
            StatusCode::NOT_FOUND,
            "not_partitioned",
            "this switch has no [cluster]: close its window instead",
        );
    };
    match cluster.cut().await {
        Ok(record) => Json(json!({ "cut": record.cut, "partitions": record.partitions })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "cluster_unavailable", format!("{e:#}")),
    }
}

/// Puts an issuer in a partition of the map: `{"partition": "b"}`. The switch must not be
/// taking requests for its cards while it moves (see docs/scale-out.md).
async fn cluster_move(
    State(context): State<Arc<HttpContext>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refusal) = context.admin_refusal(&headers) {
        return refusal;
    }
    let Some(cluster) = &context.cluster else {
        return error(StatusCode::NOT_FOUND, "not_partitioned", "this switch has no [cluster]");
    };
    let Ok(issuer) = id.parse::<u64>() else {
        return error(StatusCode::BAD_REQUEST, "bad_participant_id", "participant ids are decimal integers");
    };
    use junction_engine::model::Role;
    let role = match context.engine.participant(junction_ledger::ParticipantId(issuer)) {
        Some(p) if matches!(p.role, Role::Issuer | Role::Wallet | Role::PaymentSystem) => p.role,
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "unknown_issuer",
                format!("participant {issuer} is not an issuer, a wallet or a payment system"),
            )
        }
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Move {
        partition: String,
    }
    let moved: Move = match serde_json::from_slice(&body) {
        Ok(moved) => moved,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
    };
    let name_ok = !moved.partition.is_empty()
        && moved.partition.len() <= 32
        && moved.partition.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name_ok {
        return error(StatusCode::BAD_REQUEST, "bad_partition", "a partition is 1-32 letters, digits, - and _");
    }
    // A wallet's or payment system's records (idempotency keys, quotes, payments, credits)
    // stay in the partition that booked them: it is placed once, and does not move.
    match cluster.assign(issuer, &moved.partition, role == Role::Issuer).await {
        Ok(placement) if placement.moving_to.is_some() => (
            StatusCode::ACCEPTED,
            Json(json!({ "issuer": issuer, "partition": placement.partition, "moving_to": placement.moving_to })),
        )
            .into_response(),
        Ok(placement) => Json(json!({ "issuer": issuer, "partition": placement.partition })).into_response(),
        Err(e) => error(StatusCode::CONFLICT, "cannot_move", format!("{e:#}")),
    }
}

async fn close_window(State(context): State<Arc<HttpContext>>, headers: HeaderMap) -> Response {
    if let Some(refusal) = context.admin_refusal(&headers) {
        return refusal;
    }
    if context.cluster.is_some() {
        // A window closed here alone would belong to no cut-off: its transfers would be in
        // no merged set.
        return error(
            StatusCode::CONFLICT,
            "partitioned",
            "a partition's windows close only at a cut-off of the whole switch: POST /v1/admin/cluster/cutoff",
        );
    }
    let engine = Arc::clone(&context.engine);
    match tokio::task::spawn_blocking(move || engine.close_window()).await {
        Ok(Ok(closed)) => {
            tracing::info!(window = closed.window.0, transfers = closed.transfer_count, "settlement window closed");
            // The files are written in the background; the window's status says when.
            let clearing = Arc::clone(&context.clearing);
            let window = closed.window;
            tokio::task::spawn_blocking(move || {
                if let Err(error) = clearing.write(window) {
                    tracing::error!(window = window.0, %error, "writing clearing files failed");
                }
            });
            let mut body = positions_json(&closed);
            body["folder"] = json!(context.clearing.folder(window).display().to_string());
            Json(body).into_response()
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

async fn account(State(context): State<Arc<HttpContext>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u128>() else {
        return error(StatusCode::BAD_REQUEST, "bad_account_id", "account ids are decimal integers");
    };
    match context.engine.ledger().account(AccountId(id)) {
        Some(view) => Json(json!({
            "id": id.to_string(),
            "participant": view.account.participant.0,
            "currency": view.account.currency.code(),
            "balances": view.balances,
            "available": view.account.currency.format_minor(view.balances.available()),
        }))
        .into_response(),
        None => error(StatusCode::NOT_FOUND, "unknown_account", "no such account"),
    }
}

/// Runs an admin change off the async threads, mapping engine errors to JSON.
async fn admin_call(
    context: &Arc<HttpContext>,
    headers: &HeaderMap,
    change: impl FnOnce(&Engine) -> Result<Value, junction_engine::EngineError> + Send + 'static,
) -> Response {
    if let Some(refusal) = context.admin_refusal(headers) {
        return refusal;
    }
    let engine = Arc::clone(&context.engine);
    match tokio::task::spawn_blocking(move || change(&engine)).await {
        Ok(Ok(value)) => Json(value).into_response(),
        Ok(Err(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, "rejected", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsBody {
    accounts: Vec<super::config::AccountConfig>,
}

async fn provision_accounts(
    State(context): State<Arc<HttpContext>>,
    headers: HeaderMap,
    body: Result<Json<AccountsBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "bad_json", "expected {\"accounts\": [...]}");
    };
    admin_call(&context, &headers, move |engine| {
        let mut specs = Vec::with_capacity(body.accounts.len());
        for a in &body.accounts {
            let currency = junction_ledger::Currency::from_code(&a.currency)
                .map_err(|e| junction_engine::EngineError::Config(e.to_string()))?;
            specs.push(junction_engine::model::AccountSpec {
                id: AccountId(u128::from(a.id)),
                participant: junction_ledger::ParticipantId(a.participant),
                currency,
                opening_balance: a.opening_balance,
                status: junction_engine::model::AccountStatus::Active,
                velocity: junction_engine::model::VelocityLimits {
                    count_per_day_max: a.velocity_count_per_day_max,
                    amount_per_day_max: a.velocity_amount_per_day_max,
                },
            });
        }
        engine.add_accounts(&specs)?;
        engine.sync()?;
        Ok(json!({ "provisioned": specs.len() }))
    })
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CardsBody {
    cards: Vec<super::config::CardConfig>,
}

async fn provision_cards(
    State(context): State<Arc<HttpContext>>,
    headers: HeaderMap,
    body: Result<Json<CardsBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "bad_json", "expected {\"cards\": [...]}");
    };
    admin_call(&context, &headers, move |engine| {
        if body.cards.len() > junction_engine::PROVISION_BATCH_MAX {
            return Err(junction_engine::EngineError::Config(format!(
                "at most {} cards per call",
                junction_engine::PROVISION_BATCH_MAX
            )));
        }
        let mut cards = Vec::with_capacity(body.cards.len());
        for c in &body.cards {
            let expiry = super::config::parse_yymm(&c.expiry)
                .ok_or_else(|| junction_engine::EngineError::Config("card expiry must be YYMM".into()))?;
            if !(12..=19).contains(&c.pan.len()) || !c.pan.bytes().all(|b| b.is_ascii_digit()) {
                return Err(junction_engine::EngineError::Config("a card number must be 12-19 digits".into()));
            }
            cards.push(junction_engine::model::CardSpec {
                pan: c.pan.clone(),
                account: AccountId(u128::from(c.account)),
                expiry_yymm: expiry,
            });
        }
        engine.add_cards(&cards)?;
        Ok(json!({ "provisioned": cards.len() }))
    })
    .await
}

#[derive(serde::Deserialize)]
struct StatusBody {
    status: String,
}

async fn account_status(
    State(context): State<Arc<HttpContext>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    body: Result<Json<StatusBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "bad_json", "expected {\"status\": \"active|blocked|closed\"}");
    };
    let status = match body.status.as_str() {
        "active" => junction_engine::model::AccountStatus::Active,
        "blocked" => junction_engine::model::AccountStatus::Blocked,
        "closed" => junction_engine::model::AccountStatus::Closed,
        _ => return error(StatusCode::BAD_REQUEST, "bad_status", "status is active, blocked or closed"),
    };
    admin_call(&context, &headers, move |engine| {
        engine.set_account_status(AccountId(u128::from(id)), status)?;
        engine.sync()?;
        Ok(json!({ "account": id, "status": body.status }))
    })
    .await
}

#[derive(serde::Deserialize)]
struct CapBody {
    currency: String,
    net_debit_cap: u64,
}

async fn set_cap(
    State(context): State<Arc<HttpContext>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    body: Result<Json<CapBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "bad_json", "expected {\"currency\": ..., \"net_debit_cap\": ...}");
    };
    let Ok(currency) = junction_ledger::Currency::from_code(&body.currency) else {
        return error(StatusCode::BAD_REQUEST, "bad_currency", "unknown currency");
    };
    if let Some(cluster) = &context.cluster {
        // A partitioned switch: the cap is the whole switch's, which its partitions lease.
        if let Some(refusal) = context.admin_refusal(&headers) {
            return refusal;
        }
        let participant = junction_ledger::ParticipantId(id);
        let settles = context
            .engine
            .participant(participant)
            .is_some_and(|spec| spec.net_debit_caps.iter().any(|(c, _)| *c == currency));
        if !settles {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_currency",
                format!("participant {id} does not settle in {currency}"),
            );
        }
        return match cluster.set_cap(participant, currency, body.net_debit_cap).await {
            Ok(()) => Json(json!({ "participant": id, "currency": body.currency, "net_debit_cap": body.net_debit_cap,
                                   "scope": "switch" }))
            .into_response(),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "cluster_unavailable", format!("{e:#}")),
        };
    }
    admin_call(&context, &headers, move |engine| {
        engine.set_net_debit_cap(junction_ledger::ParticipantId(id), currency, body.net_debit_cap)?;
        Ok(json!({ "participant": id, "currency": body.currency, "net_debit_cap": body.net_debit_cap }))
    })
    .await
}

/// Suspends a participant: nothing new of it is approved until it is reinstated.
async fn suspend(State(context): State<Arc<HttpContext>>, headers: HeaderMap, Path(id): Path<u64>) -> Response {
    set_suspended(context, headers, id, true).await
}

/// Reinstates a suspended participant.
async fn reinstate(State(context): State<Arc<HttpContext>>, headers: HeaderMap, Path(id): Path<u64>) -> Response {
    set_suspended(context, headers, id, false).await
}

async fn set_suspended(context: Arc<HttpContext>, headers: HeaderMap, id: u64, suspended: bool) -> Response {
    directory_call(&context, &headers, move |directory| {
        directory.set_suspended(junction_ledger::ParticipantId(id), suspended)?;
        tracing::info!(participant = id, suspended, "participant status changed");
        Ok(json!({ "participant": id, "suspended": suspended }))
    })
    .await
}

/// Runs a change of the participant directory on a blocking thread (it writes the
/// ledger's metadata durably), after the admin token is checked.
async fn directory_call(
    context: &Arc<HttpContext>,
    headers: &HeaderMap,
    change: impl FnOnce(&crate::directory::Directory) -> Result<Value, crate::directory::DirectoryError> + Send + 'static,
) -> Response {
    use crate::directory::DirectoryError;
    if let Some(refusal) = context.admin_refusal(headers) {
        return refusal;
    }
    let directory = Arc::clone(&context.directory);
    match tokio::task::spawn_blocking(move || change(&directory)).await {
        Ok(Ok(value)) => Json(value).into_response(),
        Ok(Err(e @ DirectoryError::Invalid(_))) => error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string()),
        Ok(Err(e @ DirectoryError::Conflict(_))) => error(StatusCode::CONFLICT, "conflict", e.to_string()),
        Ok(Err(e @ DirectoryError::Unknown(_))) => error(StatusCode::NOT_FOUND, "unknown_participant", e.to_string()),
        Ok(Err(e @ DirectoryError::Engine(junction_engine::EngineError::UnknownParticipant(_)))) => {
            error(StatusCode::NOT_FOUND, "unknown_participant", e.to_string())
        }
        Ok(Err(e @ DirectoryError::Engine(_))) => error(StatusCode::UNPROCESSABLE_ENTITY, "rejected", e.to_string()),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "ledger_unavailable", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// Onboards a participant at runtime: the body is its `[[participants]]` entry as JSON.
/// It can sign on, sign requests and be paid from the moment the answer comes back.
async fn onboard(
    State(context): State<Arc<HttpContext>>,
    headers: HeaderMap,
    body: Result<Json<super::config::ParticipantConfig>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let entry = match body {
        Ok(Json(entry)) => entry,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, "bad_json", rejection.body_text()),
    };
    directory_call(&context, &headers, move |directory| {
        let member = directory.onboard(entry)?;
        Ok(json!({ "participant": member.id.0, "name": member.name, "role": member.role, "keys": member.key_view() }))
    })
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    /// The new key, hex (at least 16 bytes).
    key: String,
    /// How long the old key is still accepted, seconds (0: not at all).
    overlap_s: u64,
}

/// Rotates a participant's key, the old one accepted for `overlap_s` more.
async fn rotate_key(
    State(context): State<Arc<HttpContext>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    body: Result<Json<KeyBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "bad_json", "expected {\"key\": \"<hex>\", \"overlap_s\": ...}");
    };
    directory_call(&context, &headers, move |directory| {
        let member = directory.rotate_key(junction_ledger::ParticipantId(id), &body.key, body.overlap_s)?;
        Ok(json!({ "participant": id, "keys": member.key_view() }))
    })
    .await
}

/// Retires a participant for good; its positions still settle.
async fn retire(State(context): State<Arc<HttpContext>>, headers: HeaderMap, Path(id): Path<u64>) -> Response {
    directory_call(&context, &headers, move |directory| {
        directory.retire(junction_ledger::ParticipantId(id))?;
        Ok(json!({ "participant": id, "retired": true }))
    })
    .await
}

/// The BIN table in force (routes by prefix) and the state of each issuer's links.
async fn bins(State(context): State<Arc<HttpContext>>) -> Json<Value> {
    let table = context.engine.bin_routes();
    let routes: Vec<&junction_engine::routing::BinRoute> = table.routes().collect();
    Json(json!({ "routes": routes }))
}

/// The fee schedule in force, as written in the configuration's `[fees]`.
async fn fees(State(context): State<Arc<HttpContext>>) -> Json<Value> {
    Json(json!({ "fees": context.engine.fee_schedule().to_spec() }))
}

/// Replaces the fee schedule (the configuration's `[fees]`, as JSON), durably; the next
/// payment pays under it. Refused whole when any rate is invalid.
async fn replace_fees(
    State(context): State<Arc<HttpContext>>,
    headers: HeaderMap,
    body: Result<Json<junction_engine::fees::FeeScheduleSpec>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let spec = match body {
        Ok(Json(spec)) => spec,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, "bad_json", rejection.body_text()),
    };
    admin_call(&context, &headers, move |engine| {
        let countries = engine.fee_schedule().countries.clone();
        let schedule = spec.to_schedule(countries).map_err(|e| junction_engine::EngineError::Config(e.to_string()))?;
        if let Some(switch) = schedule.switch_participant {
            match engine.participant(switch) {
                Some(p) if p.role == junction_engine::model::Role::Switch => {}
                Some(_) => {
                    return Err(junction_engine::EngineError::Config(format!(
                        "participant {} does not have the role \"switch\"",
                        switch.0
                    )))
                }
                None => return Err(junction_engine::EngineError::UnknownParticipant(switch)),
            }
        }
        engine.set_fee_schedule(schedule)?;
        Ok(json!({ "fees": engine.fee_schedule().to_spec() }))
    })
    .await
}

async fn issuer_links(State(context): State<Arc<HttpContext>>) -> Json<Value> {
    let links = context.iso.links.describe();
    Json(json!({ "links": links, "advices_outstanding": context.metrics.advices_outstanding.get() }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BinsBody {
    routes: Vec<junction_engine::routing::BinRoute>,
}

/// Replaces the whole BIN table (`PUT`).
async fn replace_bins(
    State(context): State<Arc<HttpContext>>,
    headers: HeaderMap,
    body: Result<Json<BinsBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_json",
            "expected {\"routes\": [{\"prefix\", \"issuer\", \"mode\", ...}]}",
        );
    };
    admin_call(&context, &headers, move |engine| {
        engine.set_bin_routes(body.routes)?;
        Ok(json!({ "routes": engine.bin_routes().len() }))
    })
    .await
}

/// Adds routes or changes those of the same prefixes (`POST`).
async fn upsert_bins(
    State(context): State<Arc<HttpContext>>,
    headers: HeaderMap,
    body: Result<Json<BinsBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_json",
            "expected {\"routes\": [{\"prefix\", \"issuer\", \"mode\", ...}]}",
        );
    };
    admin_call(&context, &headers, move |engine| {
        let mut routes: Vec<_> = engine.bin_routes().routes().cloned().collect();
        for route in body.routes {
            routes.retain(|r| r.prefix != route.prefix);
            routes.push(route);
        }
        engine.set_bin_routes(routes)?;
        Ok(json!({ "routes": engine.bin_routes().len() }))
    })
    .await
}

async fn delete_bin(
    State(context): State<Arc<HttpContext>>,
    headers: HeaderMap,
    Path(prefix): Path<String>,
) -> Response {
    admin_call(&context, &headers, move |engine| {
        let mut routes: Vec<_> = engine.bin_routes().routes().cloned().collect();
        let before = routes.len();
        routes.retain(|r| r.prefix != prefix);
        if routes.len() == before {
            return Err(junction_engine::EngineError::Config(format!("no route for BIN {prefix}")));
        }
        engine.set_bin_routes(routes)?;
        Ok(json!({ "routes": engine.bin_routes().len() }))
    })
    .await
}

#[derive(serde::Deserialize)]
struct PanicRequest {
    /// `shard`, `commit`, `completion` or `ledger-writer`.
    stage: String,
}

/// Crash tests: the named pipeline stage panics on its next turn, and the process ends.
/// Served only when the daemon was started with `--enable-fault-injection`.
async fn inject_panic(
    State(context): State<Arc<HttpContext>>,
    headers: HeaderMap,
    Json(request): Json<PanicRequest>,
) -> Response {
    if !context.fault_injection {
        return error(StatusCode::NOT_FOUND, "not_found", "fault injection is not enabled");
    }
    if let Some(refusal) = context.admin_refusal(&headers) {
        return refusal;
    }
    let Some(stage) = Stage::parse(&request.stage) else {
        return error(StatusCode::BAD_REQUEST, "bad_request", "stage is shard, commit, completion or ledger-writer");
    };
    tracing::warn!(?stage, "fault injected: the stage panics on its next turn");
    context.engine.inject_panic(stage);
    Json(json!({ "injected": request.stage })).into_response()
}
