//! Participants changed at runtime, through a real daemon, under traffic:
//! - a wallet and an acquirer onboarded and used at once, and a QR route to the acquirer
//!   put at runtime;
//! - a key rotated while a connection signed on with the old one keeps working, then a
//!   rotation without overlap that refuses the old key at once;
//! - an acquiring service provider sending for its acquirers, refused for another;
//! - a wallet trying to act as an acquirer; suspension; retirement; refusals of bad
//!   changes; an FX rate set;
//! - then a kill -9, after which every change still holds, and the window's files name and
//!   settle the new participants.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use junction_wire::iso8583::{Iso8583Message, MacKey};
use junction_wire::qr::QrPayloadBuilder;
use serde_json::{json, Value};
use std::io::Read;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const NEW_WALLET: u64 = 50;
const NEW_WALLET_KEY: &str = "50505050505050505050505050505050";
const NEW_ACQUIRER: u64 = 51;
const NEW_ACQUIRER_INSTITUTION: &str = "200051";
const KEY_ONE: &str = "51515151515151515151515151515151";
const KEY_TWO: &str = "52525252525252525252525252525252";
const KEY_THREE: &str = "53535353535353535353535353535353";

fn junction(daemon: &Daemon, args: &[&str]) -> (bool, String) {
    let output = Command::new(binary("junction"))
        .args(["--url", &format!("http://{}", daemon.http), "--token", ADMIN_TOKEN])
        .args(args)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn admin(daemon: &Daemon, path: &str, body: &Value) -> (u16, Value) {
    let mut response = http_agent()
        .post(&daemon.url(path))
        .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_json(body)
        .unwrap();
    (response.status().as_u16(), response.body_mut().read_json().unwrap_or(Value::Null))
}

fn put(daemon: &Daemon, path: &str, body: &Value) -> (u16, Value) {
    let mut response = http_agent()
        .put(&daemon.url(path))
        .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_json(body)
        .unwrap();
    (response.status().as_u16(), response.body_mut().read_json().unwrap_or(Value::Null))
}

fn listed(daemon: &Daemon, id: u64) -> Value {
    let all = daemon.get_json("/v1/admin/participants");
    all["participants"].as_array().unwrap().iter().find(|p| p["id"] == id).cloned().unwrap_or(Value::Null)
}

/// A purchase of the new acquirer's terminal (its own field 32).
fn purchase(client: &mut IsoClient, amount: u64) -> Iso8583Message {
    let stan = client.next_stan();
    let mut message = financial("0200", "000000", DEMO_PAN, amount, &stan);
    message.set(32, &client.institution.clone()).unwrap();
    message
}

/// Sends `message` MAC'd with the client's key and reads the answer without checking its
/// MAC (the switch signs a refusal with the key in force, which the client may not hold).
fn call_unverified(client: &mut IsoClient, message: &Iso8583Message) -> Iso8583Message {
    client.send(message, true);
    let mut prefix = [0u8; 2];
    client.stream.read_exact(&mut prefix).unwrap();
    let mut raw = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    client.stream.read_exact(&mut raw).unwrap();
    Iso8583Message::decode(&raw).unwrap()
}

fn key(hex_key: &str) -> MacKey {
    MacKey::new(&hex::decode(hex_key).unwrap()).unwrap()
}

/// The demo acquirer buys with the demo card until told to stop; every answer must be 00.
fn traffic(daemon: &Daemon, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let address = daemon.iso;
    std::thread::spawn(move || {
        let mut client = IsoClient::connect(address);
        assert_eq!(client.sign_on().get(39), Some("00"));
        let mut approved = 0;
        while !stop.load(Ordering::Relaxed) {
            let stan = client.next_stan();
            let answer = client.call(&financial("0200", "000000", DEMO_PAN, 100, &stan));
            assert_eq!(answer.get(39), Some("00"), "traffic during the changes: {}", answer.summary());
            approved += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        approved
    })
}

#[test]
fn participants_are_onboarded_rotated_suspended_and_retired_at_runtime_across_a_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut daemon = Daemon::start(&data);
    let agent = http_agent();
    let stop = Arc::new(AtomicBool::new(false));
    let background = traffic(&daemon, Arc::clone(&stop));

    // 1. A wallet onboarded with the CLI, from a file written as the configuration is, and
    //    paying at once.
    let file = dir.path().join("wallet.toml");
    std::fs::write(
        &file,
        format!(
            "[[participants]]\nid = {NEW_WALLET}\nname = \"Onboarded Wallet\"\nrole = \"wallet\"\n\
             institution_id = \"300050\"\nbic = \"ONBWSGSGXXX\"\nkey = \"{NEW_WALLET_KEY}\"\n\
             net_debit_caps = {{ USD = 1000000 }}\n"
        ),
    )
    .unwrap();
    let (ok, out) = junction(&daemon, &["participant", "onboard", file.to_str().unwrap()]);
    assert!(ok && out.contains(&format!("participant {NEW_WALLET} onboarded")), "{out}");
    let wallet = (NEW_WALLET, NEW_WALLET_KEY);
    let (status, paid) =
        participant_pays(&agent, daemon.http, wallet, &usd_merchant_qr(), "new-1", 1_250, &[]).unwrap();
    assert_eq!((status, paid["state"].as_str()), (200, Some("approved")), "{paid}");
    let listed_wallet = listed(&daemon, NEW_WALLET);
    assert_eq!(listed_wallet["role"], "wallet");
    assert_eq!(listed_wallet["bic"], "ONBWSGSGXXX");
    assert!(!listed_wallet.to_string().contains(NEW_WALLET_KEY), "the admin API shows a key: {listed_wallet}");
    // Its key is in the ledger only sealed.
    let fingerprint = listed_wallet["keys"]["current"].as_str().unwrap().to_string();
    assert_eq!(fingerprint.len(), 16);

    // 2. An acquirer onboarded through the API signs on and buys at once.
    let acquirer_entry = json!({
        "id": NEW_ACQUIRER, "name": "Onboarded Acquirer", "role": "acquirer",
        "institution_id": NEW_ACQUIRER_INSTITUTION, "bic": "ONBAUS33XXX", "key": KEY_ONE,
        "net_debit_caps": { "USD": 10_000_000 },
    });
    let (status, body) = admin(&daemon, "/v1/admin/participants", &acquirer_entry);
    assert_eq!(status, 200, "{body}");
    let mut old_connection = IsoClient::connect_as(daemon.iso, NEW_ACQUIRER_INSTITUTION, KEY_ONE);
    assert_eq!(old_connection.sign_on().get(39), Some("00"));
    let message = purchase(&mut old_connection, 2_000);
    assert_eq!(old_connection.call(&message).get(39), Some("00"));

    // 2b. A QR route to the new acquirer, put at runtime: the new wallet pays its merchant.
    let mut routes = daemon.get_json("/v1/admin/qr-routes")["routes"].clone();
    routes.as_array_mut().unwrap().push(json!({
        "scheme": "other", "identifier": "com.onboarded.shop", "acquirer": NEW_ACQUIRER,
    }));
    let (status, body) = put(&daemon, "/v1/admin/qr-routes", &json!({ "routes": routes }));
    assert_eq!(status, 200, "{body}");
    let shop = QrPayloadBuilder::new()
        .merchant_account(26, "com.onboarded.shop", &[(1, "SHOP-1")])
        .mcc("5411")
        .currency_numeric(840)
        .country("US")
        .merchant_name("Onboarded Shop")
        .merchant_city("Austin")
        .encode()
        .unwrap();
    let (status, paid) = participant_pays(&agent, daemon.http, wallet, &shop, "new-shop", 500, &[]).unwrap();
    assert_eq!((status, paid["state"].as_str()), (200, Some("approved")), "{paid}");
    let mut bad_routes = routes.clone();
    bad_routes.as_array_mut().unwrap().push(json!({ "scheme": "other", "identifier": "x", "acquirer": NEW_WALLET }));
    let (status, body) = put(&daemon, "/v1/admin/qr-routes", &json!({ "routes": bad_routes }));
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_routes")), "a wallet as acquirer");
    let (ok, out) = junction(&daemon, &["qr-routes"]);
    assert!(ok && out.contains("com.onboarded.shop") && !out.lines().any(|l| l.starts_with("other      x ")), "{out}");

    // 3. Bad changes are refused, and nothing is half made.
    let (status, body) = admin(&daemon, "/v1/admin/participants", &acquirer_entry);
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conflict")), "{body}");
    let mut clash = acquirer_entry.clone();
    clash["id"] = json!(52);
    let (status, body) = admin(&daemon, "/v1/admin/participants", &clash);
    assert_eq!(status, 409, "the same institution id twice: {body}");
    let mut short_key = clash.clone();
    short_key["institution_id"] = json!("200052");
    short_key["bic"] = json!("ONBBUS33XXX");
    short_key["key"] = json!("abcd");
    let (status, body) = admin(&daemon, "/v1/admin/participants", &short_key);
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid")), "{body}");
    let mut bad_bic = short_key.clone();
    bad_bic["key"] = json!(KEY_TWO);
    bad_bic["bic"] = json!("é-not-a-bic");
    assert_eq!(admin(&daemon, "/v1/admin/participants", &bad_bic).0, 422);
    let (status, _) = admin(&daemon, "/v1/admin/participants", &json!({ "id": 53 }));
    assert_eq!(status, 400, "an incomplete entry");
    assert!(listed(&daemon, 52).is_null(), "a refused participant exists");
    let (status, _) = admin(&daemon, "/v1/admin/participants/999/keys", &json!({ "key": KEY_TWO, "overlap_s": 0 }));
    assert_eq!(status, 404);
    let read_only = http_agent()
        .post(&daemon.url("/v1/admin/participants/51/retire"))
        .header("authorization", "Bearer wrong-token")
        .send_empty()
        .unwrap();
    assert_ne!(read_only.status().as_u16(), 200, "a change without the admin token");

    // 4. A rotation with an overlap: the connection signed on with the old key keeps
    //    working (its answers MAC'd with the key it uses), a new one uses the new key.
    let (ok, out) = {
        let key_file = dir.path().join("key-two");
        std::fs::write(&key_file, KEY_TWO).unwrap();
        junction(
            &daemon,
            &["participant", "rotate-key", "51", "--key-file", key_file.to_str().unwrap(), "--overlap-s", "3600"],
        )
    };
    assert!(ok && out.contains("current"), "{out}");
    let message = purchase(&mut old_connection, 2_100);
    assert_eq!(old_connection.call(&message).get(39), Some("00"), "the old key during its overlap");
    let mut new_connection = IsoClient::connect_as(daemon.iso, NEW_ACQUIRER_INSTITUTION, KEY_TWO);
    new_connection.stan = 500; // its STANs and RRNs apart from the other connection's
    assert_eq!(new_connection.sign_on().get(39), Some("00"));
    let message = purchase(&mut new_connection, 2_200);
    assert_eq!(new_connection.call(&message).get(39), Some("00"), "the new key");
    // The old connection switches keys without signing on again.
    old_connection.key = key(KEY_TWO);
    let message = purchase(&mut old_connection, 2_300);
    assert_eq!(old_connection.call(&message).get(39), Some("00"));
    let keys = &listed(&daemon, NEW_ACQUIRER)["keys"];
    assert!(keys["previous"]["fingerprint"].is_string(), "{keys}");
    assert_eq!(keys["in_use"], keys["current"], "the switch signs with the key the acquirer now uses: {keys}");

    // 5. A rotation without overlap: the replaced key is refused at once.
    let (status, body) = admin(&daemon, "/v1/admin/participants/51/keys", &json!({ "key": KEY_THREE, "overlap_s": 0 }));
    assert_eq!(status, 200, "{body}");
    let message = purchase(&mut new_connection, 2_400);
    let refused = call_unverified(&mut new_connection, &message);
    assert_ne!(refused.get(39), Some("00"), "a replaced key after its overlap: {}", refused.summary());
    new_connection.key = key(KEY_THREE);
    let message = purchase(&mut new_connection, 2_500);
    assert_eq!(new_connection.call(&message).get(39), Some("00"), "the key in force");

    // 6. A wallet signed on over ISO 8583 may not act as an acquirer.
    let mut impostor = IsoClient::connect_as(daemon.iso, "300050", NEW_WALLET_KEY);
    assert_eq!(impostor.sign_on().get(39), Some("00"));
    let message = purchase(&mut impostor, 1_000);
    assert_eq!(impostor.call(&message).get(39), Some("63"), "a wallet's purchase");

    // 7. An acquiring service provider, onboarded for the demo acquirer and the new one:
    //    it sends for each of them (field 32 the acquirer, 33 itself), never for another.
    let provider = json!({
        "id": 54, "name": "Onboarded Service Provider", "role": "acquiring_service_provider",
        "institution_id": "600054", "bic": "ASPRUS33XXX", "key": KEY_ONE,
        "net_debit_caps": {}, "acts_for": [DEMO_ACQUIRER, NEW_ACQUIRER],
    });
    let (status, body) = admin(&daemon, "/v1/admin/participants", &provider);
    assert_eq!(status, 200, "{body}");
    let mut asp = IsoClient::connect_as(daemon.iso, "600054", KEY_ONE);
    asp.stan = 700_000; // apart from the demo acquirer's own traffic on the same terminal
    assert_eq!(asp.sign_on().get(39), Some("00"));
    let on_behalf = |asp: &mut IsoClient, acquirer: &str, forwarder: Option<&str>, amount: u64| {
        let stan = asp.next_stan();
        let mut message = financial("0200", "000000", DEMO_PAN, amount, &stan);
        message.set(32, acquirer).unwrap();
        if let Some(forwarder) = forwarder {
            message.set(33, forwarder).unwrap();
        }
        asp.call(&message).get(39).map(str::to_string)
    };
    assert_eq!(on_behalf(&mut asp, ACQUIRER_INSTITUTION, Some("600054"), 3_100).as_deref(), Some("00"));
    assert_eq!(on_behalf(&mut asp, NEW_ACQUIRER_INSTITUTION, Some("600054"), 3_200).as_deref(), Some("00"));
    assert_eq!(on_behalf(&mut asp, "200002", Some("600054"), 3_300).as_deref(), Some("63"), "an unlisted acquirer");
    assert_eq!(on_behalf(&mut asp, ACQUIRER_INSTITUTION, None, 3_400).as_deref(), Some("63"), "without field 33");
    assert_eq!(on_behalf(&mut asp, ACQUIRER_INSTITUTION, Some("600099"), 3_500).as_deref(), Some("63"));
    let mut not_an_acquirer = provider.clone();
    not_an_acquirer["id"] = json!(55);
    not_an_acquirer["institution_id"] = json!("600055");
    not_an_acquirer["bic"] = json!("ASPSUS33XXX");
    not_an_acquirer["acts_for"] = json!([NEW_WALLET]);
    assert_eq!(admin(&daemon, "/v1/admin/participants", &not_an_acquirer).0, 422, "acts for a wallet");

    // 8. Suspended, then reinstated.
    let (ok, out) = junction(&daemon, &["participant", "suspend", "50"]);
    assert!(ok, "{out}");
    let (status, answer) =
        participant_pays(&agent, daemon.http, wallet, &usd_merchant_qr(), "new-2", 300, &[]).unwrap();
    assert_eq!((status, answer["error"]["decline"].as_str()), (422, Some("participant_suspended")), "{answer}");
    let (ok, out) = junction(&daemon, &["participant", "reinstate", "50"]);
    assert!(ok, "{out}");
    let (status, paid) = participant_pays(&agent, daemon.http, wallet, &usd_merchant_qr(), "new-3", 700, &[]).unwrap();
    assert_eq!((status, paid["state"].as_str()), (200, Some("approved")), "{paid}");

    // 9. Retired for good: it can no longer sign, and reinstating it is refused.
    let (ok, out) = junction(&daemon, &["participant", "retire", "50"]);
    assert!(ok && out.contains("retired"), "{out}");
    let (status, answer) =
        participant_pays(&agent, daemon.http, wallet, &usd_merchant_qr(), "new-4", 300, &[]).unwrap();
    assert_eq!((status, answer["error"]["code"].as_str()), (403, Some("participant_retired")), "{answer}");
    let (status, _) = admin(&daemon, "/v1/admin/participants/50/reinstate", &json!({}));
    assert_eq!(status, 409);
    let message = purchase(&mut impostor, 1_000);
    assert_eq!(call_unverified(&mut impostor, &message).get(39), Some("63"), "a retired participant's message");
    let (ok, out) = junction(&daemon, &["participants"]);
    assert!(ok && out.lines().any(|l| l.trim_start().starts_with("50 ") && l.contains("RETIRED")), "{out}");

    // An FX rate set at runtime is kept too.
    let rate =
        json!({ "rates": [{ "provider": 6, "base": "USD", "quote": "THB", "rate": "40.125", "spread_bps": 30 }] });
    let (status, body) = admin(&daemon, "/v1/admin/fx/rates", &rate);
    assert_eq!(status, 200, "{body}");

    stop.store(true, Ordering::Relaxed);
    let approved = background.join().unwrap();
    assert!(approved > 0);

    // 10. kill -9: every change holds after the restart.
    daemon.kill9();
    let daemon = Daemon::start(&data);
    assert_eq!(listed(&daemon, NEW_WALLET)["retired"], true);
    assert_eq!(listed(&daemon, NEW_WALLET)["keys"]["current"], fingerprint.as_str());
    let mut after = IsoClient::connect_as(daemon.iso, NEW_ACQUIRER_INSTITUTION, KEY_THREE);
    after.stan = 900;
    assert_eq!(after.sign_on().get(39), Some("00"), "the rotated key after a restart");
    let message = purchase(&mut after, 2_600);
    assert_eq!(after.call(&message).get(39), Some("00"));
    let mut stale = IsoClient::connect_as(daemon.iso, NEW_ACQUIRER_INSTITUTION, KEY_TWO);
    let stan = stale.next_stan();
    let sign_on = network(&stan, NEW_ACQUIRER_INSTITUTION, "001");
    assert_ne!(call_unverified(&mut stale, &sign_on).get(39), Some("00"), "a replaced key after a restart");
    let (status, answer) =
        participant_pays(&agent, daemon.http, wallet, &usd_merchant_qr(), "new-5", 300, &[]).unwrap();
    assert_eq!(status, 403, "{answer}");
    // The new acquirer retired after the restart: its provider may no longer send for it,
    // nor may a wallet pay its shop; what it took before still settles (below).
    let (status, body) = admin(&daemon, "/v1/admin/participants/51/retire", &json!({}));
    assert_eq!(status, 200, "{body}");
    let mut asp = IsoClient::connect_as(daemon.iso, "600054", KEY_ONE);
    asp.stan = 800_000;
    assert_eq!(asp.sign_on().get(39), Some("00"));
    assert_eq!(on_behalf(&mut asp, NEW_ACQUIRER_INSTITUTION, Some("600054"), 3_600).as_deref(), Some("63"));
    assert_eq!(on_behalf(&mut asp, ACQUIRER_INSTITUTION, Some("600054"), 3_700).as_deref(), Some("00"));
    let (status, answer) = wallet_pays(&agent, daemon.http, &shop, "retired-shop", 500).unwrap();
    assert_eq!((status, answer["error"]["decline"].as_str()), (422, Some("participant_suspended")), "{answer}");
    let rates = daemon.get_json("/v1/admin/fx/rates")["rates"].clone();
    let thb = rates.as_array().unwrap().iter().find(|r| r["quote"] == "THB" && r["base"] == "USD").unwrap();
    assert_eq!((thb["mid"].as_str(), thb["spread_bps"].as_u64()), (Some("40.125"), Some(30)), "{rates}");
    let routes = daemon.get_json("/v1/admin/qr-routes");
    assert!(routes.to_string().contains("com.onboarded.shop"), "the QR route after a restart: {routes}");
    let log = std::fs::read_to_string(&daemon.log).unwrap_or_default();
    for secret in [NEW_WALLET_KEY, KEY_ONE, KEY_TWO, KEY_THREE] {
        assert!(!log.contains(secret), "a key in the daemon's log");
    }

    // 11. The window's files name the new participants and settle them.
    let folder = close_window(&daemon);
    assert_clearing_verifies(&folder);
    let positions = csv_rows(&folder.join("positions.csv"));
    let named = |id: u64| positions.iter().find(|row| row["participant_id"] == id.to_string()).cloned().unwrap();
    assert_eq!(named(NEW_WALLET)["participant_name"], "Onboarded Wallet");
    assert_eq!(named(NEW_ACQUIRER)["participant_name"], "Onboarded Acquirer");
    // The wallet paid 12.50 + 7.00 to the demo merchant's acquirer and 5.00 to the new
    // shop (same currency: no FX).
    assert_eq!(position_net(&folder, NEW_WALLET, "USD"), -2_450);
    // The acquirer's purchases: 20.00 + 21.00 + 22.00 + 23.00 + 25.00 + 26.00, 32.00 its
    // service provider sent, and its shop's 5.00, less interchange and fees if the
    // schedule charges any.
    let acquirer_net = position_net(&folder, NEW_ACQUIRER, "USD");
    assert!(acquirer_net > 13_700 && acquirer_net <= 17_400, "{acquirer_net}");
    let provider_rows = positions.iter().filter(|row| row["participant_id"] == "54").count();
    assert_eq!(provider_rows, 0, "a service provider settles nothing itself");
    let statement = std::fs::read_to_string(folder.join(format!("camt053-{NEW_ACQUIRER}-USD.xml"))).unwrap();
    assert!(statement.contains("ONBAUS33XXX"), "the new acquirer's statement names its BIC");
}
