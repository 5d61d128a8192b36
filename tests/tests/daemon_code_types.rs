//! Merchant codes that are not EMV, through a real daemon: the demo configuration's three
//! code types (a URL with the merchant id in the path, a URL with it in a query parameter,
//! a proprietary prefix) each paid by a foreign wallet, each refused when its merchant id
//! is malformed, and refused as unroutable when no acquirer takes its merchant; then the
//! window's files carry each payment with its merchant.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use serde_json::Value;

const SHANGHAI_ACQUIRER: u64 = 9;

fn pay(daemon: &Daemon, code: &str, key: &str, amount: u64) -> (u16, Value) {
    let wallet = (DEMO_WALLET, DEMO_WALLET_KEY_HEX);
    participant_pays(&http_agent(), daemon.http, wallet, code, key, amount, &[]).unwrap()
}

fn decode(daemon: &Daemon, code: &str) -> (u16, Value) {
    let mut response = http_agent()
        .post(&daemon.url("/v1/qr/decode"))
        .header("content-type", "application/json")
        .send_json(serde_json::json!({ "payload": code }))
        .unwrap();
    (response.status().as_u16(), response.body_mut().read_json().unwrap())
}

#[test]
fn codes_that_are_not_emv_are_read_by_their_type_routed_and_paid() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("data"));

    // Valid codes of each kind: paid (a USD wallet, CNY merchants) through the acquirer
    // their route names.
    let valid = [
        ("https://pay.sh-agg.example.cn/m/31000012345?sig=ab12", "sh-agg:31000012345", 8_800),
        ("HTTPS://PAY.SH-AGG.EXAMPLE.CN/m/31000067890/", "sh-agg:31000067890", 1_000),
        ("https://qr.wx-agg.example.cn/pay?v=2&mid=WX88AB12&sign=ff", "wx-agg:WX88AB12", 4_500),
        ("LKL1:1000123456", "lkl:1000123456", 2_300),
    ];
    for (index, (code, merchant, amount)) in valid.iter().enumerate() {
        let (status, view) = decode(&daemon, code);
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["route"]["merchant_id"], *merchant, "{view}");
        assert_eq!(view["route"]["acquirer"], SHANGHAI_ACQUIRER, "{view}");
        let (status, paid) = pay(&daemon, code, &format!("agg-{index}"), *amount);
        assert_eq!((status, paid["state"].as_str()), (200, Some("approved")), "{code}: {paid}");
        // The same key again: the same answer.
        let (status, again) = pay(&daemon, code, &format!("agg-{index}"), *amount);
        assert_eq!((status, &again["payment_id"]), (200, &paid["payment_id"]), "{again}");
    }

    // Malformed: a known kind whose merchant id is missing, too short or not its alphabet.
    for code in [
        "https://pay.sh-agg.example.cn/m/",
        "https://pay.sh-agg.example.cn/m/1234",
        "https://pay.sh-agg.example.cn/m/3100001234x",
        "https://qr.wx-agg.example.cn/pay?v=2",
        "https://qr.wx-agg.example.cn/pay?mid=WX-88",
        "LKL1:10001234567890",
    ] {
        let (status, refused) = pay(&daemon, code, "agg-bad", 100);
        assert_eq!((status, refused["error"]["code"].as_str()), (422, Some("qr_invalid")), "{code}: {refused}");
        assert_eq!(refused["error"]["reason"], "merchant_id", "{refused}");
    }
    // Something of no known kind is read as EMV, and is not EMV.
    let (status, refused) = pay(&daemon, "https://elsewhere.example.com/m/31000012345", "agg-other", 100);
    assert_eq!((status, refused["error"]["code"].as_str()), (422, Some("qr_invalid")), "{refused}");

    // Unroutable: a well-formed lkl code whose merchant no acquirer takes.
    let (status, refused) = pay(&daemon, "LKL1:2000123456", "agg-unroutable", 100);
    assert_eq!((status, refused["error"]["code"].as_str()), (422, Some("unroutable")), "{refused}");
    let (_, view) = decode(&daemon, "LKL1:2000123456");
    assert_eq!(view["route_error"]["code"], "unroutable", "{view}");

    // The window's files: one QR row per payment, with its merchant, paid to the acquirer.
    let folder = close_window(&daemon);
    assert_clearing_verifies(&folder);
    let rows = csv_rows(&folder.join("transactions.csv"));
    for (_, merchant, amount) in valid {
        let row = rows.iter().find(|row| row["merchant_id"] == merchant).unwrap_or_else(|| panic!("{merchant}"));
        assert_eq!(row["channel"], "qr");
        assert_eq!(row["acquirer_participant"], SHANGHAI_ACQUIRER.to_string());
        let shown = format!("{}.{:02}", amount / 100, amount % 100);
        // The wallet paid in USD; the merchant is paid in CNY.
        let paid = (row["settlement_currency"].as_str(), row["settlement_amount"].as_str());
        assert_eq!(paid, ("CNY", shown.as_str()), "{row:?}");
        assert_eq!((row["currency"].as_str(), row["qr_scheme"].as_str()), ("USD", "other"));
    }
    let total: i64 = valid.iter().map(|(_, _, amount)| *amount as i64).sum();
    assert!(position_net(&folder, SHANGHAI_ACQUIRER, "CNY") > 0);
    assert!(position_net(&folder, SHANGHAI_ACQUIRER, "CNY") <= total);
}
