//! The operator's web console, served by the daemon on its HTTP port at `/`.
//!
//! A single page (`assets/`: HTML, one script, one stylesheet, and uPlot for the time
//! charts) embedded in the binary, so the console works on a machine with no internet
//! and always matches the daemon that serves it. The page reads the admin API like any
//! other client: the views below, added for it, and those of `http.rs` (participants,
//! positions, windows, BINs); its actions are the admin API's own calls.
//!
//! Security:
//! - Console responses carry a strict Content-Security-Policy (`CONTENT_SECURITY_POLICY`):
//!   scripts and styles only from this origin, no inline script or style, no frames, no
//!   forms posting anywhere. The page builds every element with `textContent` (never
//!   HTML from data), so a participant's name from the configuration is shown as text.
//! - The admin token is typed into the page, kept in the tab's `sessionStorage` and sent
//!   as `Authorization: Bearer`, the header the API checks; never in a URL. A browser
//!   never adds that header to a request another site makes it send, so the actions
//!   cannot be forged cross-site.
//! - Views need the read token or the admin token, as the admin API's other views do
//!   (`http::require_reader`); actions need the admin token. The page itself and its
//!   files need none: they hold no data.
//! - Card numbers reach the page masked (first six, last four), as `activity.rs` keeps them.

pub mod live;

use crate::activity::{Decline, Session};
use crate::http::{error, Access, HttpContext};
use crate::iso_gateway::IsoContext;
use crate::metrics::Metrics;
use crate::windows::Windows;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use junction_engine::Engine;
use junction_ledger::{Currency, WindowId, WindowState};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What the console's pages may load and do: only this origin's script, style, images and
/// API; nothing inline, no plugins, no frames (in or of it), no form posts.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A downloaded clearing file is data, never a page: nothing in it may run.
const DOWNLOAD_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; sandbox";

/// Bytes read from disk per chunk of a clearing file download (files can be gigabytes).
const DOWNLOAD_CHUNK_BYTES: usize = 64 * 1024;

/// An embedded file of the page.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// The page's files, served under `/console/` (the page itself also at `/`). uPlot is
/// vendored as released (see `assets/uplot-LICENSE.txt` for its version and licence).
const ASSETS: [Asset; 7] = [
    Asset { name: "index.html", content_type: "text/html; charset=utf-8", body: include_bytes!("assets/index.html") },
    Asset { name: "app.js", content_type: "text/javascript; charset=utf-8", body: include_bytes!("assets/app.js") },
    Asset { name: "app.css", content_type: "text/css; charset=utf-8", body: include_bytes!("assets/app.css") },
    Asset {
        name: "uplot.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/uplot.min.js"),
    },
    Asset {
        name: "uplot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/uplot.min.css"),
    },
    Asset { name: "favicon.svg", content_type: "image/svg+xml", body: include_bytes!("assets/favicon.svg") },
    Asset {
        name: "uplot-LICENSE.txt",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("assets/uplot-LICENSE.txt"),
    },
];

/// What the console's views read.
pub struct Console {
    pub engine: Arc<Engine>,
    pub clearing: Arc<Windows>,
    pub iso: Arc<IsoContext>,
    pub metrics: Arc<Metrics>,
    /// Who may read and who may act: the admin API's tokens.
    pub http: Arc<HttpContext>,
    pub switch_name: String,
    pub live: live::Live,
}

pub fn router(console: Arc<Console>) -> Router {
    let views = Router::new()
        .route("/v1/admin/console/live", get(live_view))
        .route("/v1/admin/console/positions", get(positions_view))
        .route("/v1/admin/connections", get(connections))
        .route("/v1/admin/windows/{id}/files", get(window_files))
        .route("/v1/admin/windows/{id}/files/{name}", get(download))
        .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&console.http), crate::http::require_reader));
    Router::new()
        .route("/", get(|| async { asset("index.html") }))
        .route("/console/{name}", get(|Path(name): Path<String>| async move { asset(&name) }))
        .merge(views)
        .route("/v1/admin/windows/{id}/verify", post(verify))
        .with_state(console)
}

/// Reads the live figures every `SAMPLE_INTERVAL_MS` until shutdown.
pub async fn sample_loop(console: Arc<Console>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(live::SAMPLE_INTERVAL_MS));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => console.live.sample(&console.metrics, crate::activity::now_unix_ms()),
            _ = shutdown.changed() => return,
        }
    }
}

/// The headers every console page and file carries.
fn page_headers(headers: &mut HeaderMap) {
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
        (header::HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
        (header::HeaderName::from_static("cross-origin-resource-policy"), "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

fn asset(name: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|asset| asset.name == name) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such console file");
    };
    let mut response = asset.body.into_response();
    page_headers(response.headers_mut());
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    response
}

#[derive(serde::Deserialize)]
struct LiveQuery {
    /// Only the seconds that ended after this (ms since the epoch): a page that has the
    /// history asks for what is new.
    since_unix_ms: Option<u64>,
}

/// Throughput, latency and declines per second, what the daemon holds right now, and the
/// latest declines.
async fn live_view(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<LiveQuery>,
) -> Json<Value> {
    let engine = &console.engine;
    let ledger = engine.ledger();
    let (declines, skipped) = console.metrics.recent_declines.latest();
    let participants: std::collections::BTreeMap<u64, String> =
        engine.participants().into_iter().map(|p| (p.id.0, p.name)).collect();
    let declines: Vec<Value> = declines.iter().map(|decline| decline_json(decline, &participants)).collect();
    let health = ledger.health();
    Json(json!({
        "switch": console.switch_name,
        "version": crate::VERSION,
        "now_unix_ms": crate::activity::now_unix_ms(),
        // What the caller's token allows, so the page can say before an action is refused.
        "access": match console.http.access(&headers) {
            Access::Admin => "admin",
            Access::Read => "read",
            Access::None => "none",
        },
        "sample_interval_ms": live::SAMPLE_INTERVAL_MS,
        "seconds": console.live.since(query.since_unix_ms.unwrap_or(0)),
        "answers_by_code": console.live.totals_by_code(),
        "declines_by_reason": engine.stats().by_reason(),
        "requests_in_flight": console.iso.admission.in_flight(),
        "requests_in_flight_max": console.iso.admission.max(),
        "connections_open": console.iso.connections_open.load(Ordering::Relaxed),
        "ledger": {
            "healthy": health.is_ok(),
            "failure": health.err().map(|e| e.to_string()),
            "durable_seq": ledger.durable_seq(),
            "current_window": ledger.current_window().0,
        },
        "window_opened_unix_s": console.clearing.open_window_began_unix_s(),
        "clearing": {
            "verified": console.clearing.figures().verified,
            "failed": console.clearing.figures().failed,
            "windows_unverified": console.clearing.figures().windows_unverified,
        },
        "recent_declines": declines,
        "recent_declines_skipped": skipped,
    }))
}

fn decline_json(decline: &Decline, participants: &std::collections::BTreeMap<u64, String>) -> Value {
    let currency = Currency::from_numeric(decline.currency_numeric).ok();
    json!({
        "unix_ms": decline.unix_ms,
        "interface": decline.interface,
        "participant": decline.participant,
        "participant_name": participants.get(&decline.participant),
        "mti": decline.mti.as_str(),
        "card": decline.card.display(),
        "amount_minor": decline.amount,
        "currency": currency.map(|c| c.code().to_string()),
        "amount": currency.map(|c| c.format_minor(i128::from(decline.amount))),
        "code": decline.code.as_str(),
        "reason": decline.reason.map(|reason| reason.name()),
        "reason_text": decline.reason.map(|reason| reason.to_string()),
        "stan": decline.stan.as_str(),
        "rrn": decline.rrn.as_str(),
    })
}

fn session_json(session: &Session) -> Value {
    json!({
        "connection": session.connection,
        "peer": session.peer.to_string(),
        "connected_unix_ms": session.connected_unix_ms,
        "participant": session.participant,
        "signed_on_unix_ms": session.signed_on_unix_ms,
        "last_echo_unix_ms": session.last_echo_unix_ms,
    })
}

/// Who is connected: the ISO 8583 connections with the participant signed on over each,
/// when each participant's last session ended, issuers' links, and the issuers whose
/// cards their own host authorizes (they need a link up).
async fn connections(State(console): State<Arc<Console>>) -> Json<Value> {
    let (open, last_seen) = console.iso.sessions.snapshot();
    let hosted: std::collections::BTreeSet<u64> = console
        .engine
        .bin_routes()
        .routes()
        .filter(|route| route.mode != junction_engine::routing::RouteMode::Switch)
        .map(|route| route.issuer.0)
        .collect();
    let last_seen: Vec<Value> =
        last_seen.iter().map(|(participant, at)| json!({ "participant": participant, "unix_ms": at })).collect();
    Json(json!({
        "now_unix_ms": crate::activity::now_unix_ms(),
        "sessions": open.iter().map(session_json).collect::<Vec<Value>>(),
        "last_seen": last_seen,
        "issuer_links": console.iso.links.describe(),
        "hosted_issuers": hosted,
    }))
}

/// Each participant's net position in the open window against its net debit cap, per
/// currency it has a cap or a position in, amounts formatted in the currency's exponent.
async fn positions_view(State(console): State<Arc<Console>>) -> Json<Value> {
    let engine = &console.engine;
    let ledger = engine.ledger();
    let window = ledger.current_window();
    let positions = ledger.window_positions(window);
    let empty = std::collections::BTreeMap::new();
    let held = positions.as_ref().map_or(&empty, |w| &w.positions);
    let mut rows = Vec::new();
    for participant in engine.participants() {
        let mut currencies: Vec<(Currency, Option<u64>)> =
            participant.net_debit_caps.iter().map(|(currency, cap)| (*currency, Some(*cap))).collect();
        for (id, currency) in held.keys() {
            if *id == participant.id && !currencies.iter().any(|(c, _)| c == currency) {
                currencies.push((*currency, None));
            }
        }
        for (currency, cap) in currencies {
            let position = held.get(&(participant.id, currency));
            let net = position.map_or(0, |p| p.net());
            rows.push(json!({
                "participant": participant.id.0,
                "name": participant.name,
                "role": participant.role,
                "currency": currency.code(),
                "exponent": currency.exponent(),
                "net_minor": net.to_string(),
                "net": currency.format_minor(net),
                "cap_minor": cap,
                "cap": cap.map(|cap| currency.format_minor(i128::from(cap))),
                "cap_used_permille": cap_used_permille(net, cap),
                "debit_count": position.map_or(0, |p| p.debit_count),
                "credit_count": position.map_or(0, |p| p.credit_count),
            }));
        }
    }
    Json(json!({
        "window": window.0,
        "state": "open",
        "transfer_count": positions.as_ref().map_or(0, |w| w.transfer_count),
        "rows": rows,
    }))
}

/// How much of its cap a participant owes, in thousandths (integer: money is never a
/// float, even on a bar). A participant owed money uses none; no cap uses none.
pub fn cap_used_permille(net_minor: i128, cap_minor: Option<u64>) -> u64 {
    let owed = u128::try_from(-net_minor).unwrap_or(0);
    match cap_minor {
        None => 0,
        Some(0) if owed == 0 => 0,
        Some(0) => 1_000,
        Some(cap) => u64::try_from(owed.saturating_mul(1_000) / u128::from(cap)).unwrap_or(u64::MAX),
    }
}

/// A closed window's folder: its files (from the manifest) and the last check of them.
async fn window_files(State(console): State<Arc<Console>>, Path(id): Path<u64>) -> Response {
    let window = WindowId(id);
    let ledger = console.engine.ledger();
    match ledger.window_positions(window).map(|w| w.state) {
        None => return error(StatusCode::NOT_FOUND, "unknown_window", format!("window {id} does not exist")),
        Some(WindowState::Open) => {
            return error(StatusCode::CONFLICT, "window_open", format!("window {id} is open: it has no files yet"))
        }
        Some(WindowState::Closed { .. }) => {}
    }
    let folder = console.clearing.folder(window);
    let manifest = match read_manifest(&folder).await {
        Ok(manifest) => manifest,
        Err(message) => return error(StatusCode::NOT_FOUND, "no_files", message),
    };
    let files: Vec<Value> = manifest
        .files
        .iter()
        .map(|file| json!({ "name": file.name, "bytes": file.bytes, "sha256": file.sha256 }))
        .collect();
    Json(json!({
        "window": id,
        "folder": folder.display().to_string(),
        "cut_off": manifest.cut_off,
        "records": manifest.records,
        "currencies": manifest.currencies,
        "files": files,
        "verification": console.clearing.verdict(window),
    }))
    .into_response()
}

async fn read_manifest(folder: &std::path::Path) -> Result<junction_clearing::Manifest, String> {
    let path = folder.join(junction_clearing::MANIFEST_FILE);
    let text = tokio::fs::read_to_string(&path).await.map_err(|e| format!("reading {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} does not parse: {e}", path.display()))
}

/// One file of a closed window's folder, as an attachment. Only the manifest and the files
/// it lists can be named, so no path leads out of the folder.
async fn download(State(console): State<Arc<Console>>, Path((id, name)): Path<(u64, String)>) -> Response {
    let folder = console.clearing.folder(WindowId(id));
    let manifest = match read_manifest(&folder).await {
        Ok(manifest) => manifest,
        Err(message) => return error(StatusCode::NOT_FOUND, "no_files", message),
    };
    let listed = name == junction_clearing::MANIFEST_FILE || manifest.files.iter().any(|file| file.name == name);
    if !listed || name.contains(['/', '\\']) || name.starts_with('.') {
        return error(StatusCode::NOT_FOUND, "no_such_file", "the window's manifest lists no such file");
    }
    let file = match tokio::fs::File::open(folder.join(&name)).await {
        Ok(file) => file,
        Err(e) => return error(StatusCode::NOT_FOUND, "no_such_file", format!("opening {name}: {e}")),
    };
    let chunks = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut chunk = vec![0u8; DOWNLOAD_CHUNK_BYTES];
        match file.read(&mut chunk).await {
            Ok(0) => None,
            Ok(read) => {
                chunk.truncate(read);
                Some((Ok::<_, std::io::Error>(chunk), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let content_type = match name.rsplit('.').next() {
        Some("csv") => "text/csv; charset=utf-8",
        Some("xml") => "application/xml",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    // The name is one the daemon wrote (digits, letters, '-', '.'), safe in the header.
    let disposition = format!("attachment; filename=\"{}-{name}\"", junction_clearing::window_folder_name(id));
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOWNLOAD_CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// Checks a closed window's folder again (needs the admin token: it reads every file).
async fn verify(State(console): State<Arc<Console>>, headers: HeaderMap, Path(id): Path<u64>) -> Response {
    if let Some(refusal) = console.http.admin_refusal(&headers) {
        return refusal;
    }
    if console.engine.ledger().window_positions(WindowId(id)).is_none() {
        return error(StatusCode::NOT_FOUND, "unknown_window", format!("window {id} does not exist"));
    }
    let clearing = Arc::clone(&console.clearing);
    match tokio::task::spawn_blocking(move || clearing.verify(WindowId(id))).await {
        Ok(verdict) => Json(json!({ "window": id, "verification": verdict })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_use_counts_only_what_is_owed() {
        assert_eq!(cap_used_permille(-250, Some(1_000)), 250);
        assert_eq!(cap_used_permille(-1_500, Some(1_000)), 1_500);
        assert_eq!(cap_used_permille(400, Some(1_000)), 0, "owed money, not owing");
        assert_eq!(cap_used_permille(-1, None), 0);
        assert_eq!(cap_used_permille(0, Some(0)), 0);
        assert_eq!(cap_used_permille(-1, Some(0)), 1_000);
    }

    #[test]
    fn every_page_file_is_served_with_the_policy_and_others_are_not_found() {
        for asset in &ASSETS {
            let response = super::asset(asset.name);
            assert_eq!(response.status(), StatusCode::OK, "{}", asset.name);
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
            assert_eq!(headers[header::CONTENT_TYPE], asset.content_type);
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        assert_eq!(super::asset("../lib.rs").status(), StatusCode::NOT_FOUND);
        assert_eq!(super::asset("secret").status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_page_has_no_inline_script_or_style_and_loads_nothing_from_elsewhere() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(page.contains("<script src=\"/console/app.js\""), "{page}");
        for forbidden in ["<script>", "style=", "<style", "onclick", "onload", "http://", "https://", "//cdn"] {
            assert!(!page.contains(forbidden), "index.html contains {forbidden}");
        }
        let script = std::str::from_utf8(ASSETS[1].body).unwrap();
        for forbidden in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "localStorage"] {
            assert!(!script.contains(forbidden), "app.js uses {forbidden}");
        }
    }
}
