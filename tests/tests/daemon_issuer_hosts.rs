//! The four-party model over real sockets: an acquirer's request for a card whose BIN
//! routes to an issuer's host is forwarded to that host (a test client signed on as the
//! issuer), its answer relayed; when the host is down or late the switch stands in and
//! advises the issuer afterwards, exactly once, across a kill -9 of the switch.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use junction_wire::iso8583::Iso8583Message;
use junctiond::config::{Config, TokenConfig};
use std::time::{Duration, Instant};

/// A device token of the hosted issuer, and the card number behind it.
const HOSTED_DPAN: &str = "4895371111111113";
const HOSTED_FPAN: &str = "4761730000000029";

/// The demo configuration with quick issuer-link timings and a token of the hosted issuer
/// (its token range routed to it).
fn config() -> Config {
    let mut config = demo_config();
    config.issuer_links.timeout_ms = 400;
    config.issuer_links.echo_interval_ms = 300;
    config.issuer_links.advice_retry_ms = 300;
    config.tokens.push(TokenConfig {
        dpan: HOSTED_DPAN.into(),
        account: 0,
        expiry: "3012".into(),
        entry_modes: vec!["contactless".into(), "ecommerce".into()],
        fpan: Some(HOSTED_FPAN.into()),
    });
    let mut token_range = config.bin_routes[0].clone();
    token_range.prefix = "48953711".into();
    config.bin_routes.push(token_range);
    config
}

fn issuer(daemon: &Daemon) -> IsoClient {
    let mut issuer = IsoClient::connect_as(daemon.iso, HOSTED_INSTITUTION, HOSTED_KEY_HEX);
    assert_eq!(issuer.sign_on().get(39), Some("00"));
    issuer
}

fn acquirer(daemon: &Daemon) -> IsoClient {
    let mut client = IsoClient::connect(daemon.iso);
    assert_eq!(client.sign_on().get(39), Some("00"));
    client
}

/// The next message the switch sends the issuer that is not an echo (echoes are answered).
fn next_from_switch(issuer: &mut IsoClient, wait: Duration) -> Option<Iso8583Message> {
    let deadline = Instant::now() + wait;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let message = issuer.receive_within(left)?;
        if message.mti() == "0800" {
            issuer.send(&issuer_answer(&message, "00", None), true);
            continue;
        }
        return Some(message);
    }
    None
}

/// Net debit of a participant's USD position in the open window, minor units.
fn net_debit(daemon: &Daemon, participant: u64) -> i128 {
    let positions = daemon.get_json("/v1/admin/positions");
    positions["positions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["participant"] == participant && p["currency"] == "USD")
        .map(|p| {
            let minor = |name: &str| match &p[name] {
                serde_json::Value::String(text) => text.parse::<i128>().unwrap(),
                other => i128::from(other.as_u64().unwrap()),
            };
            minor("debits_minor") - minor("credits_minor")
        })
        .sum()
}

fn metric(daemon: &Daemon, name: &str) -> f64 {
    let text = ureq::get(&daemon.url("/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

#[test]
fn forwarded_and_relayed_with_macs_on_both_legs() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with_config(&dir.path().join("data"), &config());
    let mut issuer = issuer(&daemon);
    let mut acquirer = acquirer(&daemon);

    // An approval: the issuer sees the acquirer's fields, field 33 naming the switch, the
    // switch's own STAN, its own MAC (checked by `receive_within`).
    let purchase = financial("0200", "000000", HOSTED_PAN, 12_345, "000201");
    acquirer.send(&purchase, true);
    let forwarded = next_from_switch(&mut issuer, Duration::from_secs(5)).expect("the purchase is forwarded");
    assert_eq!(forwarded.mti(), "0200");
    assert_eq!(forwarded.get(2), Some(HOSTED_PAN));
    assert_eq!(forwarded.get(4), Some("000000012345"));
    assert_eq!(forwarded.get(32), Some(ACQUIRER_INSTITUTION));
    assert_eq!(forwarded.get(33), Some(SWITCH_INSTITUTION));
    assert_eq!(forwarded.get(37), purchase.get(37));
    assert_eq!(forwarded.get(11).unwrap().len(), 6);
    issuer.send(&issuer_answer(&forwarded, "00", Some("HB1234")), true);
    let relayed = acquirer.receive();
    assert_eq!((relayed.mti(), relayed.get(39), relayed.get(38)), ("0210", Some("00"), Some("HB1234")));
    assert_eq!(relayed.get(11), Some("000201"), "the acquirer's own STAN comes back");
    assert!(relayed.get(44).is_none(), "the issuer answered: not stood in");
    assert_eq!(net_debit(&daemon, HOSTED_ISSUER), 12_345, "the obligation is booked");

    // A decline is relayed with the issuer's code, and its resend gets it again without
    // reaching the issuer.
    let large = financial("0200", "000000", HOSTED_PAN, 900_000, "000202");
    acquirer.send(&large, true);
    let forwarded = next_from_switch(&mut issuer, Duration::from_secs(5)).unwrap();
    issuer.send(&issuer_answer(&forwarded, "51", None), true);
    assert_eq!(acquirer.receive().get(39), Some("51"));
    assert_eq!(acquirer.call(&large).get(39), Some("51"));
    assert_eq!(acquirer.call(&purchase).get(38), Some("HB1234"), "a resend gets the issuer's auth code");
    assert!(next_from_switch(&mut issuer, Duration::from_millis(300)).is_none(), "a resend was forwarded");

    // A resend while the issuer has not answered: one forward, one answer for both copies.
    let slow = financial("0200", "000000", HOSTED_PAN, 700, "000203");
    acquirer.send(&slow, true);
    let forwarded = next_from_switch(&mut issuer, Duration::from_secs(5)).unwrap();
    acquirer.send(&slow, true);
    std::thread::sleep(Duration::from_millis(100));
    issuer.send(&issuer_answer(&forwarded, "00", Some("HB5678")), true);
    for _ in 0..2 {
        let relayed = acquirer.receive();
        assert_eq!((relayed.get(11), relayed.get(39), relayed.get(38)), (Some("000203"), Some("00"), Some("HB5678")));
    }
    assert!(next_from_switch(&mut issuer, Duration::from_millis(300)).is_none(), "the copy was forwarded too");
    assert_eq!(net_debit(&daemon, HOSTED_ISSUER), 13_045);

    // A device token (contactless, its domain): the issuer sees the real card number,
    // never the token.
    let mut token_purchase = financial("0200", "000000", HOSTED_DPAN, 500, "000204");
    token_purchase.set(22, "071").unwrap();
    acquirer.send(&token_purchase, true);
    let forwarded = next_from_switch(&mut issuer, Duration::from_secs(5)).unwrap();
    assert_eq!(forwarded.get(2), Some(HOSTED_FPAN));
    issuer.send(&issuer_answer(&forwarded, "00", Some("HB0001")), true);
    assert_eq!(acquirer.receive().get(39), Some("00"));

    // A reversal names its original as the issuer saw it: the switch's STAN in field 90.
    let mut reversal = financial("0400", "000000", HOSTED_PAN, 700, "000205");
    reversal.set(90, &original_data("0200", "000203")).unwrap();
    acquirer.send(&reversal, true);
    let forwarded_reversal = next_from_switch(&mut issuer, Duration::from_secs(5)).unwrap();
    assert_eq!(forwarded_reversal.mti(), "0400");
    let original = forwarded_reversal.get(90).unwrap();
    assert_eq!(&original[..4], "0200");
    assert_eq!(&original[31..], format!("{SWITCH_INSTITUTION:0>11}"));
    issuer.send(&issuer_answer(&forwarded_reversal, "00", None), true);
    assert_eq!(acquirer.receive().get(39), Some("00"));
    assert_eq!(net_debit(&daemon, HOSTED_ISSUER), 13_045 - 700 + 500);
    // No secret in the log: the card numbers appear masked at most.
    let log = daemon.log_text();
    assert!(!log.contains(HOSTED_PAN) && !log.contains(HOSTED_FPAN), "a card number in clear in the log");
}

#[test]
fn the_issuers_cap_holds_before_forwarding() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with_config(&dir.path().join("data"), &config());
    let mut issuer = issuer(&daemon);
    let mut acquirer = acquirer(&daemon);
    let response = http_agent()
        .post(&daemon.url(&format!("/v1/admin/participants/{HOSTED_ISSUER}/caps")))
        .header("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_json(serde_json::json!({ "currency": "USD", "net_debit_cap": 1_000 }))
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // 6.00 approved by the host; 6.00 more would pass the 10.00 cap: declined by the switch,
    // never asked.
    acquirer.send(&financial("0200", "000000", HOSTED_PAN, 600, "000301"), true);
    let forwarded = next_from_switch(&mut issuer, Duration::from_secs(5)).unwrap();
    issuer.send(&issuer_answer(&forwarded, "00", Some("CAP001")), true);
    assert_eq!(acquirer.receive().get(39), Some("00"));
    assert_eq!(acquirer.call(&financial("0200", "000000", HOSTED_PAN, 600, "000302")).get(39), Some("05"));
    assert!(
        next_from_switch(&mut issuer, Duration::from_millis(300)).is_none(),
        "a request past the cap was forwarded"
    );
    // A decline by the host gives its reservation back: 4.00 still fits.
    acquirer.send(&financial("0200", "000000", HOSTED_PAN, 400, "000303"), true);
    let forwarded = next_from_switch(&mut issuer, Duration::from_secs(5)).unwrap();
    issuer.send(&issuer_answer(&forwarded, "05", None), true);
    assert_eq!(acquirer.receive().get(39), Some("05"));
    acquirer.send(&financial("0200", "000000", HOSTED_PAN, 400, "000304"), true);
    let forwarded = next_from_switch(&mut issuer, Duration::from_secs(5)).expect("the cap was given back");
    issuer.send(&issuer_answer(&forwarded, "00", Some("CAP002")), true);
    assert_eq!(acquirer.receive().get(39), Some("00"));
    assert_eq!(net_debit(&daemon, HOSTED_ISSUER), 1_000);
}

#[test]
fn stand_in_is_advised_exactly_once_across_a_reconnect_and_a_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = config();
    let mut daemon = Daemon::start_with_config(&data, &config);
    let mut issuer_host = issuer(&daemon);
    let mut acquirer_host = acquirer(&daemon);

    // The host is late: the switch answers for it after the timeout, marked stood in.
    let late = financial("0200", "000000", HOSTED_PAN, 2_500, "000401");
    acquirer_host.send(&late, true);
    let forwarded = next_from_switch(&mut issuer_host, Duration::from_secs(5)).unwrap();
    let stood_in = acquirer_host.receive();
    assert_eq!((stood_in.get(39), stood_in.get(44)), (Some("00"), Some("1")));
    // The host's late approval agrees: nothing more (the advice will tell it).
    issuer_host.send(&issuer_answer(&forwarded, "00", Some("LATE01")), true);
    // The host goes away; a purchase now is stood in at once, and one past the stand-in
    // limit per transaction (500.00) is declined 61.
    drop(issuer_host);
    while !daemon.get_json("/v1/admin/issuer-links")["links"].as_array().unwrap().is_empty() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let down = financial("0200", "000000", HOSTED_PAN, 3_000, "000402");
    let answer_down = acquirer_host.call(&down);
    assert_eq!((answer_down.get(39), answer_down.get(44)), (Some("00"), Some("1")));
    assert_eq!(acquirer_host.call(&financial("0200", "000000", HOSTED_PAN, 60_000, "000403")).get(39), Some("61"));
    assert_eq!(net_debit(&daemon, HOSTED_ISSUER), 5_500);

    // kill -9: the advices are durable, and the answers too.
    daemon.kill9();
    let daemon = Daemon::start_with_config(&data, &config);
    let mut acquirer_host = acquirer(&daemon);
    let resent = acquirer_host.call(&down);
    assert_eq!(resent.get(39), Some("00"));
    assert_eq!(resent.get(38), answer_down.get(38), "the stand-in's resend gets the same auth code");
    assert_eq!(resent.get(44), Some("1"), "and is marked stood in again");
    let over_limit = acquirer_host.call(&financial("0200", "000000", HOSTED_PAN, 60_000, "000403"));
    assert_eq!((over_limit.get(39), over_limit.get(44)), (Some("61"), Some("1")));

    // The host signs on again: three advices (two approvals, one decline), each sent until
    // acknowledged. It acknowledges one at first and lets the others come again.
    let mut issuer_host = issuer(&daemon);
    let mut seen: std::collections::BTreeMap<String, (String, Option<String>, u32)> = Default::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut acknowledged = 0;
    while Instant::now() < deadline && acknowledged < 3 {
        let Some(advice) = next_from_switch(&mut issuer_host, Duration::from_secs(2)) else { continue };
        assert_eq!(advice.mti(), "0220", "a stand-in of a purchase is advised with 0220");
        assert_eq!(advice.get(33), Some(SWITCH_INSTITUTION));
        let original = advice.get(90).unwrap().to_string();
        let entry =
            seen.entry(original).or_insert((advice.get(39).unwrap().into(), advice.get(4).map(String::from), 0));
        entry.2 += 1;
        if entry.2 >= 2 || acknowledged == 0 {
            issuer_host.send(&issuer_answer(&advice, "00", None), true);
            acknowledged += 1;
        }
    }
    assert_eq!(seen.len(), 3, "one advice per stand-in decision: {seen:?}");
    let codes: Vec<&str> = seen.values().map(|(code, _, _)| code.as_str()).collect();
    assert_eq!(codes.iter().filter(|c| **c == "00").count(), 2);
    assert_eq!(codes.iter().filter(|c| **c == "61").count(), 1);
    assert!(seen.values().any(|(_, _, times)| *times >= 2), "an unacknowledged advice is sent again");
    // Acknowledged: never sent again.
    assert!(
        next_from_switch(&mut issuer_host, Duration::from_millis(1_000)).is_none(),
        "an acknowledged advice came again"
    );
    assert_eq!(metric(&daemon, "junction_advices_outstanding"), 0.0);
    assert_eq!(net_debit(&daemon, HOSTED_ISSUER), 5_500);
}

#[test]
fn a_late_approval_after_a_91_is_reversed_at_the_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config();
    config.bin_routes[0].mode = junction_engine::routing::RouteMode::Host;
    let daemon = Daemon::start_with_config(&dir.path().join("data"), &config);
    let mut issuer_host = issuer(&daemon);
    let mut acquirer_host = acquirer(&daemon);
    acquirer_host.send(&financial("0200", "000000", HOSTED_PAN, 4_200, "000501"), true);
    let forwarded = next_from_switch(&mut issuer_host, Duration::from_secs(5)).unwrap();
    // No stand-in for this BIN: the acquirer is told to try again.
    let told = acquirer_host.receive();
    assert_eq!((told.get(39), told.get(44)), (Some("91"), None));
    // The host approves late: the switch reverses that approval at the issuer (0420 naming
    // the request as forwarded), until acknowledged.
    issuer_host.send(&issuer_answer(&forwarded, "00", Some("LATE02")), true);
    let reversal = next_from_switch(&mut issuer_host, Duration::from_secs(5)).expect("a reversal of the late approval");
    assert_eq!(reversal.mti(), "0420");
    assert_eq!(reversal.get(4), Some("000000004200"));
    let original = reversal.get(90).unwrap();
    assert_eq!(&original[..4], "0200");
    assert_eq!(&original[4..10], forwarded.get(11).unwrap(), "field 90 names the STAN the issuer saw");
    issuer_host.send(&issuer_answer(&reversal, "00", None), true);
    assert!(next_from_switch(&mut issuer_host, Duration::from_millis(1_000)).is_none());
    assert_eq!(net_debit(&daemon, HOSTED_ISSUER), 0, "a 91 moves nothing");

    // The BIN table changes at runtime: the same card on the switch's books has no account.
    let routes = serde_json::json!({ "routes": [{ "prefix": "476173", "issuer": HOSTED_ISSUER, "mode": "switch" }] });
    let changed = http_agent()
        .put(&daemon.url("/v1/admin/bins"))
        .header("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_json(routes)
        .unwrap();
    assert_eq!(changed.status().as_u16(), 200);
    assert_eq!(acquirer_host.call(&financial("0200", "000000", HOSTED_PAN, 100, "000502")).get(39), Some("14"));
    assert!(next_from_switch(&mut issuer_host, Duration::from_millis(300)).is_none());
    let bad = http_agent()
        .put(&daemon.url("/v1/admin/bins"))
        .header("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_json(serde_json::json!({ "routes": [{ "prefix": "47", "issuer": HOSTED_ISSUER, "mode": "host" }] }))
        .unwrap();
    assert_eq!(bad.status().as_u16(), 422, "a 2-digit BIN is refused");
}
