//! Aggregators (payment facilitators) through a real daemon: one sends its sub-merchants'
//! card purchases over ISO 8583 for its acquirer, naming each sub-merchant (field 48); a
//! foreign wallet pays a sub-merchant's aggregated QR code; both settle through the
//! acquirer, and the window's files name the aggregator and the sub-merchant, with the
//! aggregator's own transactions file, and verify.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use junction_wire::iso8583::Iso8583Message;
use junctiond::config::{Config, ParticipantConfig};
use std::collections::BTreeMap;

/// An aggregator of the demo acquirer's shops (the demo's own, 17, is the Shanghai
/// acquirer's), and the demo's aggregator of Shanghai codes.
const AGGREGATOR: u64 = 18;
const AGGREGATOR_INSTITUTION: &str = "800002";
const AGGREGATOR_KEY_HEX: &str = "18181818181818181818181818181818";
const SHANGHAI_AGGREGATOR: u64 = 17;
const SHANGHAI_ACQUIRER: u64 = 9;

fn config() -> Config {
    let mut config = demo_config();
    config.participants.push(ParticipantConfig {
        id: AGGREGATOR,
        name: "Austin Market Payments".into(),
        role: junction_engine::model::Role::Aggregator,
        institution_id: AGGREGATOR_INSTITUTION.into(),
        bic: "AUMPUS44XXX".into(),
        key: AGGREGATOR_KEY_HEX.into(),
        net_debit_caps: BTreeMap::new(),
        endpoint: None,
        acts_for: vec![DEMO_ACQUIRER],
    });
    config
}

/// A purchase the aggregator sends for the demo acquirer, for sub-merchant `sub` (field
/// 48 `SUB<id>`, left out when `None`).
fn purchase(client: &mut IsoClient, sub: Option<&str>, amount: u64) -> Iso8583Message {
    let stan = client.next_stan();
    let mut message = financial("0200", "000000", DEMO_PAN, amount, &stan);
    message.set(33, AGGREGATOR_INSTITUTION).unwrap();
    if let Some(sub) = sub {
        message.set(48, &format!("SUB{sub}")).unwrap();
    }
    client.call(&message)
}

#[test]
fn an_aggregators_sub_merchants_settle_through_its_acquirer_and_are_named_in_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with_config(&dir.path().join("data"), &config());
    let mut aggregator = IsoClient::connect_as(daemon.iso, AGGREGATOR_INSTITUTION, AGGREGATOR_KEY_HEX);
    assert_eq!(aggregator.sign_on().get(39), Some("00"));

    // Its sub-merchants' purchases, for its acquirer.
    assert_eq!(purchase(&mut aggregator, Some("SHOP-0042"), 2_000).get(39), Some("00"));
    assert_eq!(purchase(&mut aggregator, Some("SHOP-0077"), 3_000).get(39), Some("00"));
    // No sub-merchant, or one too long: a format error. Another acquirer: refused.
    assert_eq!(purchase(&mut aggregator, None, 1_000).get(39), Some("30"));
    assert_eq!(purchase(&mut aggregator, Some("SIXTEEN-CHARS-00"), 1_000).get(39), Some("30"));
    let stan = aggregator.next_stan();
    let mut elsewhere = financial("0200", "000000", DEMO_PAN, 1_000, &stan);
    elsewhere.set(32, "200002").unwrap();
    elsewhere.set(33, AGGREGATOR_INSTITUTION).unwrap();
    elsewhere.set(48, "SUBSHOP-0042").unwrap();
    assert_eq!(aggregator.call(&elsewhere).get(39), Some("63"));
    // The acquirer's own purchase names no aggregator.
    let mut acquirer = IsoClient::connect(daemon.iso);
    assert_eq!(acquirer.sign_on().get(39), Some("00"));
    assert_eq!(acquirer.call(&financial("0200", "000000", DEMO_PAN, 1_500, "000900")).get(39), Some("00"));

    // A foreign wallet pays a Shanghai aggregated code: the sub-merchant of aggregator 17.
    let (status, paid) = participant_pays(
        &http_agent(),
        daemon.http,
        (DEMO_WALLET, DEMO_WALLET_KEY_HEX),
        "https://pay.sh-agg.example.cn/m/31000012345",
        "agg-pay-1",
        8_800,
        &[],
    )
    .unwrap();
    assert_eq!(status, 200, "{paid}");

    // The window's files: the rows name the aggregator and the sub-merchant; the acquirer
    // settles; the aggregator has its own transactions file and no position.
    let folder = close_window(&daemon);
    assert_clearing_verifies(&folder);
    let rows = csv_rows(&folder.join("transactions.csv"));
    let of = |sub: &str| rows.iter().find(|r| r["sub_merchant_id"] == sub).unwrap_or_else(|| panic!("{sub}: {rows:?}"));
    let shop = of("SHOP-0042");
    assert_eq!(shop["aggregator_participant"], AGGREGATOR.to_string());
    assert_eq!(shop["acquirer_participant"], DEMO_ACQUIRER.to_string());
    assert_eq!(shop["response_code"], "00");
    let code = of("31000012345");
    assert_eq!(code["aggregator_participant"], SHANGHAI_AGGREGATOR.to_string());
    assert_eq!(code["acquirer_participant"], SHANGHAI_ACQUIRER.to_string());
    assert_eq!(code["merchant_id"], "sh-agg:31000012345");
    assert_eq!(code["mcc"], "5812", "QR rows carry the merchant's category");
    let plain = rows.iter().find(|r| r["rrn"] == "RRN000000900").unwrap();
    assert_eq!((plain["aggregator_participant"].as_str(), plain["sub_merchant_id"].as_str()), ("", ""));
    assert_eq!(rows.len(), 4, "the refused requests never reached the ledger: {rows:?}");
    let own = csv_rows(&folder.join(format!("transactions-{AGGREGATOR}.csv")));
    assert_eq!(own.len(), 2, "the aggregator's file has its two approved purchases: {own:?}");
    assert!(position_net(&folder, DEMO_ACQUIRER, "USD") > 0, "the acquirer is owed the sub-merchants' sales");
    let positions = csv_rows(&folder.join("positions.csv"));
    assert!(positions.iter().all(|p| p["participant_id"] != AGGREGATOR.to_string()), "an aggregator settles nothing");

    // Retired, the Shanghai aggregator's codes no longer route.
    let retired = ureq::post(&daemon.url(&format!("/v1/admin/participants/{SHANGHAI_AGGREGATOR}/retire")))
        .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_empty()
        .unwrap()
        .status();
    assert_eq!(retired.as_u16(), 200);
    let (status, refused) = participant_pays(
        &http_agent(),
        daemon.http,
        (DEMO_WALLET, DEMO_WALLET_KEY_HEX),
        "https://pay.sh-agg.example.cn/m/31000012345",
        "agg-pay-2",
        8_800,
        &[],
    )
    .unwrap();
    assert_eq!((status, refused["error"]["code"].as_str()), (422, Some("unroutable")), "{refused}");
}
