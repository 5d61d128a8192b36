//! The operator's CLI provisions and controls a real `junctiond`: an account and a card
//! from files, the card paying at once over ISO 8583, the account blocked (declined) and
//! unblocked (approved again), a participant's cap changed, an FX rate set and listed.
//! Card numbers go in a file, never on the command line, and never come back in clear.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use std::process::Command;

const NEW_PAN: &str = "4000007777777779";

fn junction(daemon: &Daemon, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(binary("junction"))
        .args(["--url", &format!("http://{}", daemon.http), "--token", ADMIN_TOKEN])
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_cli_provisions_blocks_caps_and_sets_rates() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("data"));

    // An account of issuer 1 with 500.00 USD, and a card drawing on it.
    let (ok, out, err) = junction(
        &daemon,
        &["account", "add", "7001", "--participant", "1", "--currency", "USD", "--opening-balance", "50000"],
    );
    assert!(ok, "{out}{err}");
    let cards = dir.path().join("cards.toml");
    std::fs::write(&cards, format!("[[cards]]\npan = \"{NEW_PAN}\"\naccount = 7001\nexpiry = \"2912\"\n")).unwrap();
    let (ok, out, err) = junction(&daemon, &["cards", "load", cards.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("1 card(s) provisioned") && !out.contains(NEW_PAN), "{out}");
    let (ok, out, _) = junction(&daemon, &["--json", "account", "show", "7001"]);
    assert!(ok);
    let account: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(account["available"], "500.00", "{account}");

    let mut acquirer = IsoClient::connect(daemon.iso);
    assert_eq!(acquirer.sign_on().get(39), Some("00"));
    let mut pay = |amount: u64| {
        let stan = acquirer.next_stan();
        acquirer.call(&financial("0200", "000000", NEW_PAN, amount, &stan)).get(39).map(str::to_string)
    };
    assert_eq!(pay(1_000).as_deref(), Some("00"), "the card pays as soon as it is provisioned");

    // Blocked: declined; unblocked: approved again.
    let (ok, out, err) = junction(&daemon, &["account", "block", "7001"]);
    assert!(ok && out.contains("blocked"), "{out}{err}");
    assert_ne!(pay(1_000).as_deref(), Some("00"), "a blocked account's card was approved");
    let (ok, _, err) = junction(&daemon, &["account", "unblock", "7001"]);
    assert!(ok, "{err}");
    assert_eq!(pay(1_000).as_deref(), Some("00"));
    let (ok, out, _) = junction(&daemon, &["--json", "account", "show", "7001"]);
    assert!(ok);
    let account: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(account["available"], "480.00", "{account}");

    // A cap: shown by `participants` afterwards.
    let (ok, _, err) = junction(&daemon, &["cap", "set", "3", "USD", "123456700"]);
    assert!(ok, "{err}");
    let (ok, out, _) = junction(&daemon, &["--json", "participants"]);
    assert!(ok);
    let participants: serde_json::Value = serde_json::from_str(&out).unwrap();
    let acquirer_caps = participants["participants"].as_array().unwrap().iter().find(|p| p["id"] == 3).unwrap();
    assert_eq!(acquirer_caps["currencies"]["USD"]["net_debit_cap"], 123456700, "{acquirer_caps}");

    // An FX rate: a decimal in, the same decimal listed.
    let (ok, _, err) = junction(&daemon, &["fx", "set", "6", "USD", "THB", "36.125", "--spread-bps", "25"]);
    assert!(ok, "{err}");
    let (ok, out, _) = junction(&daemon, &["fx"]);
    assert!(ok);
    assert!(
        out.lines().any(|l| l.contains("USD") && l.contains("THB") && l.contains("36.125") && l.contains("25")),
        "{out}"
    );
    // A float-looking or malformed rate is refused with the daemon's reason; nothing changes.
    let (ok, _, err) = junction(&daemon, &["fx", "set", "6", "USD", "THB", "abc"]);
    assert!(!ok && err.contains("422"), "{err}");

    // Bad input is named, not half-done: a card file without [[cards]].
    std::fs::write(&cards, "[[accounts]]\nid = 1\n").unwrap();
    let (ok, _, err) = junction(&daemon, &["cards", "load", cards.to_str().unwrap()]);
    assert!(!ok && err.contains("[[cards]]"), "{err}");
    // The daemon's log never held the card number.
    assert!(!daemon.log_text().contains(NEW_PAN));
}

/// Suspending a participant from the CLI: its new requests (ISO 8583 and QR) are declined
/// with a named reason, what it approved before still reverses, the suspension survives a
/// kill -9, and reinstating it lets its requests through again.
#[test]
fn a_suspended_participant_is_declined_until_reinstated_across_a_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut daemon = Daemon::start(&data);
    let mut acquirer = IsoClient::connect(daemon.iso);
    assert_eq!(acquirer.sign_on().get(39), Some("00"));
    let before = acquirer.next_stan();
    assert_eq!(acquirer.call(&financial("0200", "000000", DEMO_PAN, 1_500, &before)).get(39), Some("00"));

    let acquirer_id = DEMO_ACQUIRER.to_string();
    let (ok, out, err) = junction(&daemon, &["participant", "suspend", &acquirer_id]);
    assert!(ok && out.contains("suspended"), "{out}{err}");
    let (ok, out, _) = junction(&daemon, &["participants"]);
    let line = out.lines().find(|line| line.trim_start().starts_with(&format!("{acquirer_id} "))).unwrap();
    assert!(ok && line.contains("SUSPENDED"), "{out}");

    // New requests of the acquirer, over ISO 8583 and to its QR merchant: declined, 57.
    let stan = acquirer.next_stan();
    assert_eq!(acquirer.call(&financial("0200", "000000", DEMO_PAN, 1_000, &stan)).get(39), Some("57"));
    let agent = http_agent();
    let (status, answer) = wallet_pays(&agent, daemon.http, &usd_merchant_qr(), "suspended-1", 300).unwrap();
    assert_eq!((status, answer["error"]["decline"].as_str()), (422, Some("participant_suspended")), "{answer}");
    // The purchase approved before still reverses (its positions settle).
    let mut reversal = financial("0400", "000000", DEMO_PAN, 1_500, &acquirer.next_stan());
    reversal.set(90, &original_data("0200", &before)).unwrap();
    assert_eq!(acquirer.call(&reversal).get(39), Some("00"), "a reversal of what was approved was refused");
    let declines = daemon.get_json("/v1/admin/participants");
    let listed = declines["participants"].as_array().unwrap().iter().find(|p| p["id"] == DEMO_ACQUIRER).unwrap();
    assert_eq!(listed["suspended"], true);

    // Killed and restarted: still suspended.
    daemon.kill9();
    let mut daemon = Daemon::start(&data);
    let mut acquirer = IsoClient::connect(daemon.iso);
    acquirer.stan = 100;
    assert_eq!(acquirer.sign_on().get(39), Some("00"));
    let stan = acquirer.next_stan();
    assert_eq!(acquirer.call(&financial("0200", "000000", DEMO_PAN, 1_000, &stan)).get(39), Some("57"));

    // Reinstated: approved again, and a resend of the declined request still gets 57.
    let (ok, out, err) = junction(&daemon, &["participant", "reinstate", &acquirer_id]);
    assert!(ok && out.contains("reinstated"), "{out}{err}");
    assert_eq!(acquirer.call(&financial("0200", "000000", DEMO_PAN, 1_000, &stan)).get(39), Some("57"));
    let fresh = acquirer.next_stan();
    assert_eq!(acquirer.call(&financial("0200", "000000", DEMO_PAN, 1_000, &fresh)).get(39), Some("00"));
    let (status, _) = wallet_pays(&agent, daemon.http, &usd_merchant_qr(), "suspended-2", 300).unwrap();
    assert_eq!(status, 200);

    // An unknown participant: a clear refusal, nothing changed.
    let (ok, out, err) = junction(&daemon, &["participant", "suspend", "999"]);
    assert!(!ok && format!("{out}{err}").contains("999"), "{out}{err}");
    daemon.terminate();
}
