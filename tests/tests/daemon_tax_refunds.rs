//! Instant tax refunds, end to end against a real `junctiond`: paid to a USD card (through
//! the FX provider, guaranteed by a hold) and to a foreign wallet; released when the
//! departure is confirmed, clawed back when it is not by the time the test set
//! (`tax_refunds.departure_within_s`); kept across a kill -9; every step in the window's
//! files, which verify.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use junction_tests::{
    assert_clearing_verifies, close_window, csv_rows, demo_config, http_agent, position_net, Daemon, DEMO_PAN,
    DEMO_WALLET,
};
use junction_wire::qr_api;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const AGENT: u64 = 15;
const AGENT_KEY: &str = "ffffffffffffffffffffffffffffffff";
/// The demo card's account (USD), at the demo issuer 1.
const CARD_ACCOUNT: u64 = 1001;
/// What the customs of the test allow: the guarantee is clawed back after this.
const DEPARTURE_WITHIN_S: u64 = 4;

/// A signed request of the refund agent (or of `participant` with `key`).
fn call(daemon: &Daemon, method: &str, path: &str, body: &str, participant: u64, key: &str) -> (u16, Value) {
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs().to_string();
    let signer = participant.to_string();
    let signature =
        qr_api::sign_hex(&hex::decode(key).unwrap(), method, path, &timestamp, &signer, "", body.as_bytes()).unwrap();
    let agent = http_agent();
    let url = format!("http://{}{path}", daemon.http);
    let mut response = if method == "GET" {
        agent
            .get(&url)
            .header(qr_api::HEADER_PARTICIPANT, &signer)
            .header(qr_api::HEADER_TIMESTAMP, &timestamp)
            .header(qr_api::HEADER_SIGNATURE, &signature)
            .call()
            .unwrap()
    } else {
        agent
            .post(&url)
            .header(qr_api::HEADER_PARTICIPANT, &signer)
            .header(qr_api::HEADER_TIMESTAMP, &timestamp)
            .header(qr_api::HEADER_SIGNATURE, &signature)
            .header("content-type", "application/json")
            .send(body.as_bytes())
            .unwrap()
    };
    let status = response.status().as_u16();
    (status, response.body_mut().read_json().unwrap_or(Value::Null))
}

fn refund(daemon: &Daemon, body: &Value) -> (u16, Value) {
    call(daemon, "POST", "/v1/tax-refunds", &body.to_string(), AGENT, AGENT_KEY)
}

fn state(daemon: &Daemon, id: &str) -> String {
    let (status, view) = call(daemon, "GET", &format!("/v1/tax-refunds/{id}"), "", AGENT, AGENT_KEY);
    assert_eq!(status, 200, "{view}");
    view["state"].as_str().unwrap().to_string()
}

fn wait_state(daemon: &Daemon, id: &str, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = state(daemon, id);
        if now == wanted {
            return;
        }
        assert!(Instant::now() < deadline, "refund {id} is {now}, never {wanted}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn available(daemon: &Daemon) -> String {
    daemon.get_json(&format!("/v1/admin/accounts/{CARD_ACCOUNT}"))["available"].as_str().unwrap().to_string()
}

fn to_card(id: &str, amount: &str) -> Value {
    json!({"refund_id": id, "amount": amount, "currency": "CNY", "card": {"number": DEMO_PAN}, "invoices": ["INV-1", "INV-2"]})
}

fn to_wallet(id: &str, amount: &str) -> Value {
    json!({"refund_id": id, "amount": amount, "currency": "CNY",
           "wallet": {"participant": DEMO_WALLET, "currency": "SGD", "account": "GW-TOURIST-1"}, "invoices": ["INV-9"]})
}

#[test]
fn tax_refunds_paid_guaranteed_released_and_clawed_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut config = demo_config();
    config.tax_refunds.departure_within_s = DEPARTURE_WITHIN_S;
    config.tax_refunds.sweep_every_ms = 200;
    let mut daemon = Daemon::start_with_config(&data, &config);
    let before = available(&daemon);

    // A: CNY 500.00 to a USD card, departure confirmed: the tourist keeps USD 68.71.
    let (status, a) = refund(&daemon, &to_card("TR-A", "500.00"));
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["state"], "guaranteed");
    // 500.00 CNY at 7.24 CNY per USD plus the provider's 0.50%: 68.717..., rounded down.
    assert_eq!(a["credited"], json!({"amount": "68.71", "amount_minor": 6871, "currency": "USD"}));
    assert_eq!(a["guarantee"]["amount"]["amount"], "68.71");
    assert_eq!(a["card"], "400000******7899");
    // Credited and held: the card's available balance is where it was.
    assert_eq!(available(&daemon), before);
    let (status, released) = call(&daemon, "POST", "/v1/tax-refunds/TR-A/departure", "", AGENT, AGENT_KEY);
    assert_eq!(status, 200, "{released}");
    assert_eq!(released["state"], "released");
    let after_a = available(&daemon);
    assert_eq!(cents(&after_a) - cents(&before), 6871);
    // The same request again: the same refund, as it stands; another with its id: refused.
    let (status, again) = refund(&daemon, &to_card("TR-A", "500.00"));
    assert_eq!((status, again["state"].as_str()), (200, Some("released")));
    let (status, conflict) = refund(&daemon, &to_card("TR-A", "501.00"));
    assert_eq!((status, conflict["error"]["code"].as_str()), (409, Some("duplicate_conflict")), "{conflict}");

    // B: no departure in time: the guarantee is captured, the refund clawed back.
    let (status, b) = refund(&daemon, &to_card("TR-B", "200.00"));
    assert_eq!((status, b["state"].as_str()), (200, Some("guaranteed")), "{b}");
    let b_credit = b["credited"]["amount_minor"].as_u64().unwrap();
    wait_state(&daemon, "TR-B", "clawed_back");
    assert_eq!(available(&daemon), after_a, "the card ends where it was before B");
    let (status, late) = call(&daemon, "POST", "/v1/tax-refunds/TR-B/departure", "", AGENT, AGENT_KEY);
    assert_eq!((status, late["error"]["code"].as_str()), (409, Some("too_late")));

    // C and D: to a foreign wallet (SGD); D's departure confirmed, C's not.
    let (status, c) = refund(&daemon, &to_wallet("TR-C", "300.00"));
    assert_eq!((status, c["state"].as_str()), (200, Some("guaranteed")), "{c}");
    assert_eq!(c["credited"]["currency"], "SGD");
    assert!(c["guarantee"].is_null(), "a wallet guarantees its own refunds");
    let (status, d) = refund(&daemon, &to_wallet("TR-D", "100.00"));
    assert_eq!(status, 200, "{d}");
    let (status, d) = call(&daemon, "POST", "/v1/tax-refunds/TR-D/departure", "", AGENT, AGENT_KEY);
    assert_eq!((status, d["state"].as_str()), (200, Some("released")));
    wait_state(&daemon, "TR-C", "clawed_back");

    // F: to the card's device token (DPAN): the same account, released.
    let mut to_token = to_card("TR-F", "10.00");
    to_token["card"]["number"] = json!("4895370000000013");
    let (status, f) = refund(&daemon, &to_token);
    assert_eq!(
        (status, f["state"].as_str(), f["card"].as_str()),
        (200, Some("guaranteed"), Some("489537******0013")),
        "{f}"
    );
    let (status, f) = call(&daemon, "POST", "/v1/tax-refunds/TR-F/departure", "", AGENT, AGENT_KEY);
    assert_eq!((status, f["state"].as_str()), (200, Some("released")));
    let after_a = available(&daemon);

    // Refused: an unknown card, neither or both targets, no invoice, an unsigned call, a
    // wallet calling.
    let (status, unknown) = refund(
        &daemon,
        &json!({"refund_id": "TR-X1", "amount": "1.00", "currency": "CNY", "card": {"number": "4111111111111111"}, "invoices": ["I"]}),
    );
    assert_eq!((status, unknown["error"]["code"].as_str()), (422, Some("unknown_card")));
    let (status, _) =
        refund(&daemon, &json!({"refund_id": "TR-X2", "amount": "1.00", "currency": "CNY", "invoices": ["I"]}));
    assert_eq!(status, 400);
    let (status, _) = refund(
        &daemon,
        &json!({"refund_id": "TR-X3", "amount": "1.00", "currency": "CNY", "card": {"number": DEMO_PAN}, "invoices": []}),
    );
    assert_eq!(status, 400);
    let (status, _) = call(
        &daemon,
        "POST",
        "/v1/tax-refunds",
        &to_card("TR-X4", "1.00").to_string(),
        DEMO_WALLET,
        "55555555555555555555555555555555",
    );
    assert_eq!(status, 403);
    let mut response = http_agent()
        .post(&daemon.url("/v1/tax-refunds"))
        .header("content-type", "application/json")
        .send(to_card("TR-X5", "1.00").to_string().as_bytes())
        .unwrap();
    assert_eq!(response.status().as_u16(), 401, "{}", response.body_mut().read_to_string().unwrap());

    // E: kill -9 with its guarantee open; after the restart it is still clawed back on time.
    let (status, e) = refund(&daemon, &to_card("TR-E", "50.00"));
    assert_eq!((status, e["state"].as_str()), (200, Some("guaranteed")));
    let e_credit = e["credited"]["amount_minor"].as_u64().unwrap();
    daemon.kill9();
    let daemon = Daemon::start_with_config(&data, &config);
    wait_state(&daemon, "TR-E", "clawed_back");
    assert_eq!(state(&daemon, "TR-A"), "released");
    assert_eq!(available(&daemon), after_a, "the card ends with A and F only");

    // The window's files: the agent paid CNY 1,160.00; it took back B's and E's USD (the
    // cards' holds are in their currency) and C's CNY 300.00 (a wallet's refund comes back
    // through the FX provider at the refund's own amounts); every step is a row naming its
    // refund.
    let folder = close_window(&daemon);
    assert_clearing_verifies(&folder);
    let net = |participant: u64, currency: &str| position_net(&folder, participant, currency);
    assert_eq!(net(AGENT, "CNY"), -116_000 + 30_000);
    assert_eq!(net(AGENT, "USD"), (b_credit + e_credit) as i64);
    assert_eq!(net(AGENT, "SGD"), 0);
    // The wallet kept D's refund only.
    let (_, d_view) = call(&daemon, "GET", "/v1/tax-refunds/TR-D", "", AGENT, AGENT_KEY);
    assert_eq!(net(DEMO_WALLET, "SGD"), d_view["credited"]["amount_minor"].as_i64().unwrap());

    let rows = csv_rows(&folder.join("transactions.csv"));
    let steps = |id: &str| -> Vec<(String, bool)> {
        rows.iter()
            .filter(|row| row["channel"] == "tax_refund" && row["merchant_id"] == id)
            .map(|row| (row["response_code"].clone(), row["original_rrn"].is_empty()))
            .collect()
    };
    // The refund (no original), then its release or clawback (naming the refund).
    assert_eq!(steps("TR-A"), vec![("00".to_string(), true), ("00".to_string(), false)]);
    assert_eq!(steps("TR-B"), vec![("00".to_string(), true), ("00".to_string(), false)]);
    assert_eq!(steps("TR-C"), vec![("00".to_string(), true), ("00".to_string(), false)]);
    assert_eq!(steps("TR-D"), vec![("00".to_string(), true)], "releasing a wallet's refund moves nothing");
    let transfers = std::fs::read_to_string(folder.join("transfers.csv")).unwrap();
    assert!(!transfers.contains(DEMO_PAN), "no card number in the files");
}

fn cents(amount: &str) -> i64 {
    amount.replace('.', "").parse().unwrap()
}
