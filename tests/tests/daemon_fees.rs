//! Interchange and the switch's fees through the real daemon: a domestic and a
//! cross-border purchase, a refund and a reversal, each booked with its fees, against
//! amounts worked out by hand here; the window's files show them per transaction and per
//! participant (positions.csv: gross + interchange + fees = net) and verify; the schedule
//! changes at runtime through the admin API and survives a restart.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_engine::fees::{FeeScheduleSpec, InterchangeRuleSpec, RateSpec, Scope};
use junction_tests::*;
use std::path::Path;
use std::process::Command;

/// The card of issuer 2 (Japan), in JPY.
const JPY_PAN: &str = "3560001234567894";
const SWITCH_PARTICIPANT: u64 = 12;

fn rate(percent: &str, fixed_minor: u64) -> RateSpec {
    RateSpec { percent: percent.into(), fixed_minor }
}

fn schedule() -> FeeScheduleSpec {
    FeeScheduleSpec {
        switch_participant: Some(SWITCH_PARTICIPANT),
        interchange: vec![
            InterchangeRuleSpec { mcc: Some("5411".into()), scope: Scope::Domestic, rate: rate("0.80", 0) },
            InterchangeRuleSpec { mcc: None, scope: Scope::CrossBorder, rate: rate("1.50", 5) },
            InterchangeRuleSpec { mcc: None, scope: Scope::Any, rate: rate("1.10", 0) },
        ],
        acquirer_fee: rate("0.02", 1),
        issuer_fee: rate("0.01", 0),
        qr_acquirer_fee: rate("0", 0),
        wallet_fee: rate("0", 0),
    }
}

/// Every camt.053 of a folder against the official schema (xmllint; CI installs it).
fn validate_statements(folder: &Path) {
    let available = Command::new("xmllint").arg("--version").output().is_ok_and(|o| o.status.success());
    if !available {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI must validate the XML: install libxml2-utils");
        eprintln!("!!!!!!!! xmllint not installed: the statements were NOT validated against the schema !!!!!!!!");
        return;
    }
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../clearing/schemas/camt.053.001.08.xsd");
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with("camt053-") {
            continue;
        }
        let output = Command::new("xmllint").arg("--noout").arg("--schema").arg(&schema).arg(&path).output().unwrap();
        assert!(output.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
    }
}

fn pay(
    client: &mut IsoClient,
    mti: &str,
    processing: &str,
    pan: &str,
    amount: u64,
    currency: &str,
) -> (String, String) {
    let stan = client.next_stan();
    let mut message = financial(mti, processing, pan, amount, &stan);
    message.set(18, "5411").unwrap();
    message.set(49, currency).unwrap();
    let answer = client.call(&message);
    assert_eq!(answer.get(39), Some("00"), "{mti} {processing} of {amount} {currency}");
    (stan.clone(), format!("RRN{stan:0>9}"))
}

#[test]
fn fees_are_booked_with_each_payment_and_add_up_in_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = demo_config();
    config.fees = Some(schedule());
    let data = dir.path().join("data");
    let daemon = Daemon::start_with_config(&data, &config);
    let mut client = IsoClient::connect(daemon.iso);
    assert_eq!(client.sign_on().get(39), Some("00"));

    // A domestic grocery purchase of 123.45 USD (acquirer and issuer both in the US):
    // interchange 0.80 % = 98.76 -> 0.99; acquirer 0.02 % = 2.469 -> 0.02, + 0.01 = 0.03;
    // issuer 0.01 % = 1.2345 -> 0.01.
    let (purchase_stan, domestic) = pay(&mut client, "0200", "000000", DEMO_PAN, 12_345, "840");
    // A cross-border purchase of 10,000 JPY (a Japanese card at a US acquirer):
    // interchange 1.50 % + 5 = 155; acquirer 2 + 1 = 3; issuer 1.
    let (_, cross_border) = pay(&mut client, "0200", "000000", JPY_PAN, 10_000, "392");
    // A refund of 50.00 USD: interchange comes back, 0.80 % = 0.40; the fees are paid
    // again: acquirer 1.0 -> 0.01 + 0.01 = 0.02; issuer 0.5 -> 0.01 (half up).
    let (_, refund) = pay(&mut client, "0200", "200000", DEMO_PAN, 5_000, "840");
    // The reversal of the domestic purchase gives back exactly what it paid.
    let stan = client.next_stan();
    let mut reversal = financial("0400", "000000", DEMO_PAN, 12_345, &stan);
    reversal.set(90, &original_data("0200", &purchase_stan)).unwrap();
    assert_eq!(client.call(&reversal).get(39), Some("00"));
    let reversed = format!("RRN{stan:0>9}");

    let folder = close_window(&daemon);
    let verified = Command::new(binary("junction")).args(["clearing", "verify"]).arg(&folder).output().unwrap();
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));

    let transactions = csv_rows(&folder.join("transactions.csv"));
    let row = |rrn: &str| transactions.iter().find(|r| r["rrn"] == rrn).unwrap_or_else(|| panic!("no row {rrn}"));
    let fees = |rrn: &str| {
        let r = row(rrn);
        (r["interchange"].clone(), r["acquirer_fee"].clone(), r["payer_fee"].clone())
    };
    let owned = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(fees(&domestic), owned("0.99", "0.03", "0.01"));
    assert_eq!(fees(&cross_border), owned("155", "3", "1"));
    assert_eq!(fees(&refund), owned("-0.40", "0.02", "0.01"));
    assert_eq!(fees(&reversed), owned("-0.99", "-0.03", "-0.01"));
    assert_eq!(row(&reversed)["original_rrn"], domestic);

    // Per participant and currency: gross + interchange + fees = net, with the fees as
    // summed by hand from the four payments above.
    let positions = csv_rows(&folder.join("positions.csv"));
    let position = |participant: u64, currency: &str| {
        let r = positions
            .iter()
            .find(|r| r["participant_id"] == participant.to_string() && r["currency"] == currency)
            .unwrap_or_else(|| panic!("no position of {participant} in {currency}"));
        (r["interchange"].clone(), r["fees"].clone())
    };
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    // Acquirer 3, USD: interchange -0.99 + 0.40 + 0.99; fees -0.03 - 0.02 + 0.03.
    assert_eq!(position(DEMO_ACQUIRER, "USD"), pair("0.40", "-0.02"));
    // Issuer 1, USD: interchange 0.99 - 0.40 - 0.99; fees -0.01 - 0.01 + 0.01.
    assert_eq!(position(1, "USD"), pair("-0.40", "-0.01"));
    assert_eq!(position(SWITCH_PARTICIPANT, "USD"), pair("0.00", "0.03"));
    assert_eq!(position(DEMO_ACQUIRER, "JPY"), pair("-155", "-3"));
    assert_eq!(position(2, "JPY"), pair("155", "-1"));
    assert_eq!(position(SWITCH_PARTICIPANT, "JPY"), pair("0", "4"));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["fee_participant"], SWITCH_PARTICIPANT);
    // The statements carry the charges, and still validate against the official schema.
    let statement = std::fs::read_to_string(folder.join(format!("camt053-{DEMO_ACQUIRER}-USD.xml"))).unwrap();
    assert!(statement.contains("<Id>INTERCHANGE</Id>") && statement.contains("<Id>SWITCH-FEES</Id>"), "{statement}");
    validate_statements(&folder);

    // A new schedule at runtime: no interchange, a flat 0.10 USD acquirer fee; it applies
    // to the next purchase and survives a restart.
    let new =
        FeeScheduleSpec { interchange: vec![], acquirer_fee: rate("0", 10), issuer_fee: rate("0", 0), ..schedule() };
    let unauthorized =
        ureq::put(&daemon.url("/v1/admin/fees")).config().http_status_as_error(false).build().send_json(&new).unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);
    let changed = ureq::put(&daemon.url("/v1/admin/fees"))
        .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_json(&new)
        .unwrap();
    assert_eq!(changed.status().as_u16(), 200);
    let bad = FeeScheduleSpec { acquirer_fee: rate("101", 0), ..new.clone() };
    let refused = ureq::put(&daemon.url("/v1/admin/fees"))
        .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .config()
        .http_status_as_error(false)
        .build()
        .send_json(&bad)
        .unwrap();
    assert_ne!(refused.status().as_u16(), 200, "a rate over 100 % is refused");
    // The CLI shows it (as JSON for scripts), and sets one from a TOML file.
    let junction = |args: &[&str]| {
        Command::new(binary("junction"))
            .arg("--url")
            .arg(format!("http://{}", daemon.http))
            .args(args)
            .output()
            .unwrap()
    };
    let shown = junction(&["fees", "--json"]);
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["fees"]["acquirer_fee"]["fixed_minor"], 10);
    let file = dir.path().join("fees.toml");
    std::fs::write(&file, "switch_participant = 12\nacquirer_fee = { fixed_minor = 10 }\n").unwrap();
    let set = junction(&["fees", "set", file.to_str().unwrap()]);
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    let (_, later) = pay(&mut client, "0200", "000000", DEMO_PAN, 1_000, "840");
    drop(client);
    let mut daemon = daemon;
    daemon.terminate();
    let daemon = Daemon::start_with_config(&data, &config);
    let shown = daemon.get_json("/v1/admin/fees");
    assert_eq!(shown["fees"]["acquirer_fee"]["fixed_minor"], 10, "{shown}");
    assert_eq!(shown["fees"]["interchange"].as_array().map(Vec::len), Some(0), "{shown}");
    let folder = close_window(&daemon);
    assert!(Command::new(binary("junction")).args(["clearing", "verify"]).arg(&folder).status().unwrap().success());
    let transactions = csv_rows(&folder.join("transactions.csv"));
    let later_row = transactions.iter().find(|r| r["rrn"] == later).unwrap();
    assert_eq!((later_row["interchange"].as_str(), later_row["acquirer_fee"].as_str()), ("0.00", "0.10"));
}
