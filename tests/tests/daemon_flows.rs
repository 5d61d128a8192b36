//! The QR payments' two directions through a real daemon (the demo's home market is the
//! Mainland): a Mainland CNY wallet pays a Thai PromptPay merchant (outbound), a foreign
//! SGD wallet pays a Shanghai merchant's aggregated code (inbound), each under its own
//! rules; a payment at home is domestic, one between two other markets cross-border; a
//! payment a direction's rules refuse is `flow_not_allowed`, naming the flow. The
//! window's files verify with every one of them.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use serde_json::{json, Value};

const MAINLAND_WALLET: (u64, &str) = (19, "19191919191919191919191919191919");
const GLOBAL_WALLET: (u64, &str) = (DEMO_WALLET, DEMO_WALLET_KEY_HEX);
/// A PromptPay merchant (mobile 0812345678) asking THB 350.00, made with the independent
/// `promptpay` package (`qrcode.generate_payload("0812345678", 350.00)`).
const PROMPTPAY_350_THB: &str = "00020101021229370016A000000677010111011300668123456785802TH53037645406350.00630412CC";
const SHANGHAI_CODE: &str = "https://pay.sh-agg.example.cn/m/31000012345";

/// A wallet pays `code`, in `currency`, under idempotency key `key`.
fn pay(
    daemon: &Daemon,
    wallet: (u64, &str),
    code: &str,
    currency: &str,
    amount: Option<&str>,
    key: &str,
) -> (u16, Value) {
    let mut body = json!({ "payload": code, "payer_currency": currency });
    if let Some(amount) = amount {
        body["amount"] = json!(amount);
    }
    qr_pay(&http_agent(), daemon.http, wallet, &body, key, &[]).unwrap()
}

#[test]
fn inbound_and_outbound_payments_follow_their_own_rules() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = demo_config();
    // Foreign wallets pay Mainland merchants in SGD only, here.
    config.qr_flows.as_mut().unwrap().inbound.payer_currencies = vec!["SGD".into()];
    let daemon = Daemon::start_with_config(&dir.path().join("data"), &config);

    // Outbound: the CNY wallet pays THB 350.00 in Bangkok, converted at provider 6's rate.
    let (status, outbound) = pay(&daemon, MAINLAND_WALLET, PROMPTPAY_350_THB, "CNY", None, "out-1");
    assert_eq!(status, 200, "{outbound}");
    assert_eq!((outbound["flow"].as_str(), outbound["state"].as_str()), (Some("outbound"), Some("approved")));
    assert_eq!(
        (outbound["payee_currency"].as_str(), outbound["payee_amount_minor"].as_u64()),
        (Some("THB"), Some(35_000))
    );
    assert_eq!((outbound["payer_currency"].as_str(), outbound["fx"]["provider"].as_u64()), (Some("CNY"), Some(6)));
    assert_eq!(outbound["acquirer"], 4);

    // Inbound: the SGD wallet pays CNY 88.00 to a Shanghai aggregator's sub-merchant.
    let (status, inbound) = pay(&daemon, GLOBAL_WALLET, SHANGHAI_CODE, "SGD", Some("88.00"), "in-1");
    assert_eq!(status, 200, "{inbound}");
    assert_eq!((inbound["flow"].as_str(), inbound["payee_currency"].as_str()), (Some("inbound"), Some("CNY")));
    assert_eq!((inbound["aggregator"].as_u64(), inbound["sub_merchant_id"].as_str()), (Some(17), Some("31000012345")));
    assert_eq!(inbound["acquirer"], 9);

    // At home: domestic, no FX. Between two other markets: cross-border.
    let (status, domestic) = pay(&daemon, MAINLAND_WALLET, SHANGHAI_CODE, "CNY", Some("20.00"), "dom-1");
    assert_eq!(
        (status, domestic["flow"].as_str(), domestic["fx"].is_null()),
        (200, Some("domestic"), true),
        "{domestic}"
    );
    let (status, across) = pay(&daemon, GLOBAL_WALLET, PROMPTPAY_350_THB, "SGD", None, "x-1");
    assert_eq!((status, across["flow"].as_str()), (200, Some("cross_border")), "{across}");

    // The rules: inbound only in SGD here; outbound only to the listed countries.
    let (status, refused) = pay(&daemon, GLOBAL_WALLET, SHANGHAI_CODE, "USD", Some("88.00"), "in-2");
    assert_eq!(
        (status, refused["error"]["code"].as_str(), refused["error"]["flow"].as_str()),
        (422, Some("flow_not_allowed"), Some("inbound")),
        "{refused}"
    );
    let (status, refused) = pay(&daemon, MAINLAND_WALLET, &usd_merchant_qr(), "CNY", Some("10.00"), "out-2");
    assert_eq!(
        (status, refused["error"]["code"].as_str(), refused["error"]["flow"].as_str()),
        (422, Some("flow_not_allowed"), Some("outbound")),
        "{refused}"
    );
    // The same key again gets the same answer (nothing moved twice).
    let (status, again) = pay(&daemon, MAINLAND_WALLET, PROMPTPAY_350_THB, "CNY", None, "out-1");
    assert_eq!((status, again["payment_id"].as_str()), (200, outbound["payment_id"].as_str()));

    // The window: the four payments, the files verify.
    let folder = close_window(&daemon);
    assert_clearing_verifies(&folder);
    let rows = csv_rows(&folder.join("transactions.csv"));
    assert_eq!(rows.iter().filter(|r| r["channel"] == "qr" && r["response_code"] == "00").count(), 4, "{rows:?}");
    let wallet_19: Vec<_> = rows.iter().filter(|r| r["wallet_participant"] == "19").collect();
    assert_eq!(wallet_19.len(), 2);
    assert!(position_net(&folder, 19, "CNY") < 0, "the Mainland wallet owes what its users paid");
}
