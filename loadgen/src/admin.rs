//! The switch's admin HTTP API, as loadgen uses it: provisioning a data set, raising net
//! debit caps, reading net positions. Blocking calls, made before and after the load.

use crate::stats::Delta;
use crate::traffic::{pan, Card, PROVISION_CARDS_MAX};
use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Accounts or cards per provisioning call. The API takes up to 100,000, but its JSON
/// body limit (axum's default, 2 MiB) is reached at about 25,000 accounts (some 80 bytes
/// each), so loadgen sends fewer.
pub const PROVISION_CHUNK_MAX: usize = 20_000;

/// Net debit cap loadgen sets for the issuer and the acquirer when it provisions, in minor
/// units: large enough that cap declines (05) never show in a run.
pub const PROVISION_NET_DEBIT_CAP: u64 = 1_000_000_000_000_000;

/// Longest an admin call may take (provisioning a chunk syncs the ledger).
const ADMIN_CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Expiry of the cards loadgen provisions (YYMM).
pub const PROVISION_CARD_EXPIRY: &str = "3912";

pub struct Admin {
    agent: ureq::Agent,
    /// The switch's nodes (a primary and its standbys); `base` is the one serving.
    bases: Vec<String>,
    base: String,
    token: String,
}

/// How long `health` looks for a serving node among several (a failover in progress).
const SERVING_NODE_WAIT: Duration = Duration::from_secs(30);

/// What `Admin::provision` creates.
#[derive(Clone, Copy)]
pub struct Provision<'a> {
    pub count: u64,
    pub account_base: u64,
    pub issuer: u64,
    pub acquirer: u64,
    pub opening_balance: u64,
    /// The card numbers' BIN (6 digits).
    pub bin: &'a str,
}

impl Admin {
    pub fn new(address: SocketAddr, token: &str) -> Admin {
        Admin::nodes(&[address], token)
    }

    /// An admin client for a switch of several nodes: calls go to the one that `health`
    /// last found serving (a standby answers 503).
    pub fn nodes(addresses: &[SocketAddr], token: &str) -> Admin {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(ADMIN_CALL_TIMEOUT))
            .build()
            .new_agent();
        let bases: Vec<String> = addresses.iter().map(|address| format!("http://{address}")).collect();
        Admin { agent, base: bases[0].clone(), bases, token: token.to_string() }
    }

    fn get(&self, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut response = self
            .agent
            .get(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .call()
            .with_context(|| format!("calling GET {url}"))?;
        let status = response.status();
        let body = response.body_mut().read_to_string().with_context(|| format!("reading the answer of GET {url}"))?;
        ensure!(status.is_success(), "GET {url} answered {status}: {body}");
        serde_json::from_str(&body).with_context(|| format!("GET {url} did not answer JSON"))
    }

    /// One figure of the switch's Prometheus metrics, `None` if it has no such line.
    pub fn metric(&self, name: &str) -> Result<Option<f64>> {
        let url = format!("{}/metrics", self.base);
        let mut response = self.agent.get(&url).call().with_context(|| format!("calling GET {url}"))?;
        let body = response.body_mut().read_to_string().with_context(|| format!("reading GET {url}"))?;
        Ok(body.lines().find_map(|line| {
            let (metric, value) = line.split_once(' ')?;
            (metric == name).then(|| value.trim().parse().ok()).flatten()
        }))
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        // Sent with its length rather than chunked: the switch's JSON extractor refuses large
        // chunked bodies.
        let bytes = serde_json::to_vec(body).context("encoding a request body")?;
        let mut response = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .send(&bytes[..])
            .with_context(|| format!("calling POST {url}"))?;
        let status = response.status();
        let text = response.body_mut().read_to_string().with_context(|| format!("reading the answer of POST {url}"))?;
        if status.as_u16() == 401 {
            bail!("POST {url} refused: wrong --admin-token ({text})");
        }
        ensure!(status.is_success(), "POST {url} answered {status}: {text}");
        serde_json::from_str(&text).with_context(|| format!("POST {url} did not answer JSON"))
    }

    /// Checks that the switch answers, before anything else is asked of it.
    /// From one read of the switch's status, if it answers: its CPU time so far
    /// (`process.cpu_us`) and its longest pause since it started (`ledger.pause_us_max`).
    pub fn daemon_readings(&self) -> (Option<u64>, Option<u64>) {
        match self.get("/v1/admin/status") {
            Ok(status) => (status["process"]["cpu_us"].as_u64(), status["ledger"]["pause_us_max"].as_u64()),
            Err(_) => (None, None),
        }
    }

    /// Checks that the switch is healthy; with several nodes, finds the one serving
    /// (waiting up to `SERVING_NODE_WAIT` for a failover to finish) and uses it from now on.
    pub fn health(&mut self) -> Result<()> {
        if self.bases.len() == 1 {
            let health = self.get("/health")?;
            ensure!(health["status"] == "ok", "the switch is not healthy: {health}");
            return Ok(());
        }
        let deadline = std::time::Instant::now() + SERVING_NODE_WAIT;
        loop {
            for base in self.bases.clone() {
                self.base = base;
                if self.get("/health").is_ok_and(|health| health["status"] == "ok") {
                    return Ok(());
                }
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "none of {} serves (all down or standbys)",
                self.bases.join(", ")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Creates `count` USD accounts of `issuer` (ids `account_base..`) funded with
    /// `opening_balance`, each with one card from the deterministic range of `bin`, and
    /// raises the USD net debit caps of the issuer and the acquirer. Provisioning the same
    /// range again changes nothing (the switch's provisioning is idempotent).
    pub fn provision(&self, plan: &Provision<'_>, progress: &mut dyn FnMut(u64)) -> Result<Vec<Card>> {
        let Provision { count, account_base, issuer, acquirer, opening_balance, bin } = *plan;
        ensure!(count > 0, "--provision needs at least one account");
        ensure!(count <= PROVISION_CARDS_MAX, "--provision takes at most {PROVISION_CARDS_MAX} accounts");
        let mut cards = Vec::with_capacity(usize::try_from(count).unwrap_or(usize::MAX));
        let mut done = 0u64;
        while done < count {
            let chunk = (count - done).min(PROVISION_CHUNK_MAX as u64);
            let serials = done..done + chunk;
            let accounts: Vec<Value> = serials
                .clone()
                .map(|serial| {
                    json!({"id": account_base + serial, "participant": issuer, "currency": "USD", "opening_balance": opening_balance})
                })
                .collect();
            self.post("/v1/admin/accounts", &json!({ "accounts": accounts }))
                .context("provisioning accounts (is --issuer a participant that settles in USD?)")?;
            let chunk_cards: Vec<Value> = serials
                .clone()
                .map(|serial| {
                    json!({"pan": pan(bin, serial), "account": account_base + serial, "expiry": PROVISION_CARD_EXPIRY})
                })
                .collect();
            self.post("/v1/admin/cards", &json!({ "cards": chunk_cards })).context("provisioning cards")?;
            cards.extend(serials.map(|serial| Card { pan: pan(bin, serial), issuer, currency: 840, opening_balance }));
            done += chunk;
            progress(done);
        }
        for participant in [issuer, acquirer] {
            self.post(
                &format!("/v1/admin/participants/{participant}/caps"),
                &json!({"currency": "USD", "net_debit_cap": PROVISION_NET_DEBIT_CAP}),
            )
            .with_context(|| format!("raising the USD net debit cap of participant {participant}"))?;
        }
        Ok(cards)
    }

    /// Net positions of a window (the open one by default).
    pub fn positions(&self, window: Option<u64>) -> Result<Snapshot> {
        let path = match window {
            Some(window) => format!("/v1/admin/positions?window={window}"),
            None => "/v1/admin/positions".to_string(),
        };
        let value = self.get(&path)?;
        Snapshot::from_json(&value).with_context(|| format!("reading positions from {path}"))
    }
}

/// Positions of one window by (participant, currency code).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub window: u64,
    pub rows: BTreeMap<(u64, String), Delta>,
}

impl Snapshot {
    fn from_json(value: &Value) -> Result<Snapshot> {
        let window = value["window"].as_u64().ok_or_else(|| anyhow!("no window number"))?;
        let mut rows = BTreeMap::new();
        for row in value["positions"].as_array().ok_or_else(|| anyhow!("no positions array"))? {
            let participant = row["participant"].as_u64().ok_or_else(|| anyhow!("a row has no participant"))?;
            let currency = row["currency"].as_str().ok_or_else(|| anyhow!("a row has no currency"))?.to_string();
            let number = |name: &str| -> Result<u128> {
                match &row[name] {
                    Value::String(text) => text.parse().with_context(|| format!("{name} is not a number: {text}")),
                    Value::Number(number) => {
                        number.as_u64().map(u128::from).ok_or_else(|| anyhow!("{name} is negative"))
                    }
                    other => bail!("{name} is not a number: {other}"),
                }
            };
            let delta = Delta {
                debit_count: u64::try_from(number("debit_count")?)?,
                credit_count: u64::try_from(number("credit_count")?)?,
                debits_minor: number("debits_minor")?,
                credits_minor: number("credits_minor")?,
            };
            rows.insert((participant, currency), delta);
        }
        Ok(Snapshot { window, rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_positions_json() {
        let value = json!({"window": 3, "state": "open", "positions": [
            {"participant": 1, "currency": "USD", "debit_count": 2, "credit_count": 1,
             "debits_minor": "300", "credits_minor": "50", "net_minor": "-250", "net": "-2.50"}
        ]});
        let snapshot = Snapshot::from_json(&value).expect("parses");
        assert_eq!(snapshot.window, 3);
        let row = snapshot.rows[&(1, "USD".to_string())];
        assert_eq!((row.debit_count, row.credit_count, row.debits_minor, row.credits_minor), (2, 1, 300, 50));
    }
}
