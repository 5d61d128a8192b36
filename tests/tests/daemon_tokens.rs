//! Device tokens against a real daemon: a token requestor (a phone maker's token service)
//! gets a token for a card, pays with it at a terminal, suspends, resumes and deletes it;
//! the issuer does too; a hosted issuer's host approves or declines tokens of its cards
//! (an account verification on its link); an issuer issues a card and binds a token in one
//! call, both usable at once. Everything holds across a kill -9, and neither card numbers
//! nor token numbers reach the disk or the log in clear.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use junction_wire::iso8583::Iso8583Message;
use junctiond::config::{Config, TokenRangeConfig};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// The demo's token requestor and its key; the demo issuer of `DEMO_PAN`.
const REQUESTOR: (u64, &str) = (16, "16161616161616161616161616161616");
const ISSUER: (u64, &str) = (1, "11111111111111111111111111111111");
const OTHER_ISSUER: (u64, &str) = (2, "22222222222222222222222222222222");
const WALLET: (u64, &str) = (DEMO_WALLET, DEMO_WALLET_KEY_HEX);

fn token_request(id: &str, number: &str, expiry: &str, modes: Option<&[&str]>) -> String {
    let mut body = json!({ "token_request_id": id, "card": { "number": number, "expiry": expiry } });
    if let Some(modes) = modes {
        body["entry_modes"] = json!(modes);
    }
    body.to_string()
}

/// A purchase of `amount` cents with `number` read as `entry_mode` (field 22).
fn purchase(acquirer: &mut IsoClient, number: &str, amount: u64, entry_mode: &str) -> Iso8583Message {
    let stan = acquirer.next_stan();
    let mut message = financial("0200", "000000", number, amount, &stan);
    message.set(22, entry_mode).unwrap();
    acquirer.call(&message)
}

fn code(answer: &Iso8583Message) -> &str {
    answer.get(39).unwrap_or("--")
}

fn acquirer(daemon: &Daemon) -> IsoClient {
    let mut client = IsoClient::connect(daemon.iso);
    assert_eq!(client.sign_on().get(39), Some("00"));
    client
}

/// Every file of the data folder, read whole: none may hold `secret` in clear.
fn assert_nowhere_in_clear(folder: &Path, secret: &str) {
    for entry in walk(folder) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds a number in clear",
            entry.display()
        );
    }
}

fn walk(folder: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn call(http: SocketAddr, method: &str, path: &str, signer: (u64, &str), body: &str) -> (u16, Value) {
    signed_call(&http_agent(), http, method, path, signer, body)
}

#[test]
fn a_token_lives_suspended_resumed_and_deleted_across_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut daemon = Daemon::start(&data);
    let http = daemon.http;
    let mut acquirer = acquirer(&daemon);

    // The requestor asks; the issuer's rules approve; the number comes from its range.
    let body = token_request("enrol-0001", DEMO_PAN, "2912", None);
    let (status, token) = call(http, "POST", "/v1/tokens", REQUESTOR, &body);
    assert_eq!(status, 201, "{token}");
    let number = token["token_number"].as_str().unwrap().to_string();
    assert!(number.starts_with("489538") && number.len() == 16 && junction_wire::luhn::is_valid(&number), "{number}");
    assert_eq!(token["state"], "active");
    assert_eq!(token["approver"], "rules");
    assert_eq!(token["card"], "400000******7899");
    assert_eq!(token["entry_modes"], json!(["contactless", "ecommerce"]));
    assert_eq!(token["token_expiry"], "2912");
    assert!(!token.to_string().contains(DEMO_PAN), "the card number never comes back");
    let token_ref = token["token_ref"].as_str().unwrap().to_string();

    // The same request again: the same token. The same id for another request: refused.
    let (status, again) = call(http, "POST", "/v1/tokens", REQUESTOR, &body);
    assert_eq!((status, again["token_number"].as_str()), (200, Some(number.as_str())));
    let other = token_request("enrol-0001", DEMO_PAN, "2912", Some(&["contactless"]));
    let (status, conflict) = call(http, "POST", "/v1/tokens", REQUESTOR, &other);
    assert_eq!((status, conflict["error"]["code"].as_str()), (409, Some("duplicate_conflict")));

    // It pays contactless at once; not by magnetic stripe (its domain).
    assert_eq!(code(&purchase(&mut acquirer, &number, 1_000, "071")), "00");
    assert_eq!(code(&purchase(&mut acquirer, &number, 1_000, "021")), "57");

    // Suspended by its requestor: 57. Seen suspended by its issuer. Resumed by the issuer.
    let path = format!("/v1/tokens/{token_ref}");
    let (status, view) = call(http, "POST", &format!("{path}/suspend"), REQUESTOR, "");
    assert_eq!((status, view["state"].as_str()), (200, Some("suspended")), "{view}");
    assert!(view.get("token_number").is_none(), "the number is in the first answer only");
    assert_eq!(code(&purchase(&mut acquirer, &number, 1_000, "071")), "57");
    let (status, view) = call(http, "GET", &path, ISSUER, "");
    assert_eq!((status, view["state"].as_str()), (200, Some("suspended")));
    assert_eq!(view["token_last4"].as_str(), Some(&number[12..]));
    let (status, view) = call(http, "POST", &format!("{path}/resume"), ISSUER, "");
    assert_eq!((status, view["state"].as_str()), (200, Some("active")));
    assert_eq!(code(&purchase(&mut acquirer, &number, 1_000, "071")), "00");
    // What the issuer suspends, only the issuer resumes.
    assert_eq!(call(http, "POST", &format!("{path}/suspend"), ISSUER, "").0, 200);
    let (status, refused) = call(http, "POST", &format!("{path}/resume"), REQUESTOR, "");
    assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("suspended_by_issuer")));
    assert_eq!(call(http, "POST", &format!("{path}/resume"), ISSUER, "").0, 200);

    // Nobody else sees or touches it; only requestors ask for tokens.
    let (status, _) = call(http, "GET", &path, OTHER_ISSUER, "");
    assert_eq!(status, 404);
    let (status, _) = call(http, "POST", &format!("{path}/suspend"), WALLET, "");
    assert_eq!(status, 404);
    let (status, refused) = call(http, "POST", "/v1/tokens", WALLET, &token_request("w-1", DEMO_PAN, "2912", None));
    assert_eq!((status, refused["error"]["code"].as_str()), (403, Some("forbidden")));

    // Refusals: an unknown card and a wrong expiry alike (no telling which numbers
    // exist), a bad check digit, modes beyond the issuer's, a malformed body.
    let (status, unknown) =
        call(http, "POST", "/v1/tokens", REQUESTOR, &token_request("enrol-x1", "4000001234567881", "2912", None));
    let (status_2, refused) =
        call(http, "POST", "/v1/tokens", REQUESTOR, &token_request("enrol-x2", DEMO_PAN, "2811", None));
    assert_eq!((status, &unknown["error"]), (status_2, &refused["error"]), "the same refusal");
    assert_eq!(
        (refused["error"]["reason"].as_str(), refused["error"]["issuer_code"].as_str()),
        (Some("card_not_eligible"), Some("14"))
    );
    let (status, again) =
        call(http, "POST", "/v1/tokens", REQUESTOR, &token_request("enrol-x2", DEMO_PAN, "2811", None));
    assert_eq!(
        (status, again["error"]["reason"].as_str()),
        (422, Some("card_not_eligible")),
        "a refusal is remembered"
    );
    let (status, refused) =
        call(http, "POST", "/v1/tokens", REQUESTOR, &token_request("enrol-x3", "4000001234567898", "2912", None));
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("bad_card_number")));
    let chip = token_request("enrol-x4", DEMO_PAN, "2912", Some(&["chip"]));
    let (status, refused) = call(http, "POST", "/v1/tokens", REQUESTOR, &chip);
    assert_eq!((status, refused["error"]["code"].as_str()), (422, Some("entry_modes_not_allowed")));
    let (status, refused) = call(http, "POST", "/v1/tokens", REQUESTOR, "{\"token_request_id\": 5}");
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("bad_json")));

    // A second token of the same card, suspended, and the first deleted: 14 for good.
    let (status, second) = call(
        http,
        "POST",
        "/v1/tokens",
        REQUESTOR,
        &token_request("enrol-0002", DEMO_PAN, "2912", Some(&["ecommerce"])),
    );
    assert_eq!(status, 201, "{second}");
    let second_number = second["token_number"].as_str().unwrap().to_string();
    assert_ne!(second_number, number);
    let second_path = format!("/v1/tokens/{}", second["token_ref"].as_str().unwrap());
    assert_eq!(call(http, "POST", &format!("{second_path}/suspend"), ISSUER, "").0, 200);
    let (status, view) = call(http, "POST", &format!("{path}/delete"), REQUESTOR, "");
    assert_eq!((status, view["state"].as_str()), (200, Some("deleted")));
    assert_eq!(code(&purchase(&mut acquirer, &number, 1_000, "071")), "14");
    let (status, refused) = call(http, "POST", &format!("{path}/resume"), ISSUER, "");
    assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("token_deleted")));
    // The card itself is untouched.
    assert_eq!(code(&purchase(&mut acquirer, DEMO_PAN, 1_000, "051")), "00");

    // kill -9: the states, the tokens and the remembered answers survive.
    daemon.kill9();
    let log = daemon.log_text();
    let daemon = Daemon::start(&data);
    let http = daemon.http;
    let mut acquirer = IsoClient::connect(daemon.iso);
    // New STANs: the ones used before the kill are the same requests, answered as before.
    acquirer.stan = 1_000;
    assert_eq!(acquirer.sign_on().get(39), Some("00"));
    assert_eq!(code(&purchase(&mut acquirer, &number, 1_000, "071")), "14", "still deleted");
    assert_eq!(code(&purchase(&mut acquirer, &second_number, 1_000, "810")), "57", "still suspended");
    let (status, refused) = call(http, "POST", &format!("{second_path}/resume"), REQUESTOR, "");
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("suspended_by_issuer")),
        "the issuer's hold too"
    );
    assert_eq!(call(http, "POST", &format!("{second_path}/resume"), ISSUER, "").0, 200);
    assert_eq!(code(&purchase(&mut acquirer, &second_number, 1_000, "810")), "00");
    let (status, again) = call(http, "POST", "/v1/tokens", REQUESTOR, &body);
    assert_eq!(
        (status, again["token_number"].as_str(), again["state"].as_str()),
        (200, Some(number.as_str()), Some("deleted"))
    );
    let metrics = ureq::get(&daemon.url("/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
    assert!(metrics.contains("token_suspended"), "suspended tokens' declines are counted by reason");

    let log = log + &daemon.log_text();
    for secret in [DEMO_PAN, number.as_str(), second_number.as_str()] {
        assert!(!log.contains(secret), "a number in the log");
        assert_nowhere_in_clear(&data, secret);
    }
}

/// The demo with a token range for the hosted issuer, routed to its host, and quick links.
fn hosted_config() -> Config {
    let mut config = demo_config();
    config.issuer_links.timeout_ms = 500;
    config.issuer_links.echo_interval_ms = 300;
    config.token_ranges.push(TokenRangeConfig {
        issuer: HOSTED_ISSUER,
        prefix: "48953922".into(),
        length: 16,
        requestors: vec![],
        entry_modes: vec!["contactless".into(), "ecommerce".into()],
    });
    let mut route = config.bin_routes[0].clone();
    route.prefix = "48953922".into();
    config.bin_routes.push(route);
    config
}

/// The next message the switch sends the host that is not an echo (echoes are answered).
fn next_from_switch(host: &mut IsoClient, wait: Duration) -> Option<Iso8583Message> {
    let deadline = Instant::now() + wait;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let message = host.receive_within(left)?;
        if message.mti() == "0800" {
            host.send(&issuer_answer(&message, "00", None), true);
            continue;
        }
        return Some(message);
    }
    None
}

#[test]
fn a_hosted_issuers_host_approves_and_declines_its_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with_config(&dir.path().join("data"), &hosted_config());
    let http = daemon.http;

    // No host connected: no decision, nothing remembered.
    let body = token_request("h-0001", HOSTED_PAN, "3012", None);
    let (status, refused) = call(http, "POST", "/v1/tokens", REQUESTOR, &body);
    assert_eq!((status, refused["error"]["code"].as_str()), (503, Some("issuer_unavailable")), "{refused}");

    let mut host = IsoClient::connect_as(daemon.iso, HOSTED_INSTITUTION, HOSTED_KEY_HEX);
    assert_eq!(host.sign_on().get(39), Some("00"));
    let asking = std::thread::spawn(move || call(http, "POST", "/v1/tokens", REQUESTOR, &body));
    let verification = next_from_switch(&mut host, Duration::from_secs(10)).expect("the host is asked");
    assert_eq!(verification.mti(), "0100");
    assert_eq!(verification.get(2), Some(HOSTED_PAN), "the host sees its own card number");
    assert_eq!((verification.get(3), verification.get(4)), (Some("000000"), Some("000000000000")));
    assert_eq!((verification.get(25), verification.get(48)), (Some("51"), Some("TKN16")));
    assert_eq!(verification.get(33), Some(SWITCH_INSTITUTION));
    host.send(&issuer_answer(&verification, "00", Some("TK0001")), true);
    let (status, token) = asking.join().unwrap();
    assert_eq!((status, token["approver"].as_str()), (201, Some("host")), "{token}");
    let number = token["token_number"].as_str().unwrap().to_string();
    assert!(number.starts_with("48953922") && junction_wire::luhn::is_valid(&number));

    // A purchase with the token reaches the host with the real card number.
    let mut acquirer = acquirer(&daemon);
    let stan = acquirer.next_stan();
    let mut buy = financial("0200", "000000", &number, 2_500, &stan);
    buy.set(22, "071").unwrap();
    acquirer.send(&buy, true);
    let forwarded = next_from_switch(&mut host, Duration::from_secs(10)).expect("forwarded");
    assert_eq!(forwarded.get(2), Some(HOSTED_PAN));
    host.send(&issuer_answer(&forwarded, "00", Some("HB0001")), true);
    assert_eq!(code(&acquirer.receive()), "00");

    // Suspended: declined by the switch, the host never asked.
    let path = format!("/v1/tokens/{}", token["token_ref"].as_str().unwrap());
    assert_eq!(call(http, "POST", &format!("{path}/suspend"), (HOSTED_ISSUER, HOSTED_KEY_HEX), "").0, 200);
    assert_eq!(code(&purchase(&mut acquirer, &number, 2_500, "071")), "57");
    assert!(next_from_switch(&mut host, Duration::from_millis(300)).is_none(), "nothing went to the host");

    // The host declines another: the refusal with its code, remembered without asking again.
    let body = token_request("h-0002", HOSTED_PAN, "3012", Some(&["ecommerce"]));
    let second = body.clone();
    let asking = std::thread::spawn(move || call(http, "POST", "/v1/tokens", REQUESTOR, &second));
    let verification = next_from_switch(&mut host, Duration::from_secs(10)).expect("the host is asked");
    host.send(&issuer_answer(&verification, "05", None), true);
    let (status, refused) = asking.join().unwrap();
    assert_eq!((status, refused["error"]["issuer_code"].as_str()), (422, Some("05")), "{refused}");
    let (status, again) = call(http, "POST", "/v1/tokens", REQUESTOR, &body);
    assert_eq!((status, again["error"]["issuer_code"].as_str()), (422, Some("05")));

    // "Try again" (91) is no decision: nothing remembered, the retry asks the host again.
    let body = token_request("h-0003", HOSTED_PAN, "3012", None);
    let third = body.clone();
    let asking = std::thread::spawn(move || call(http, "POST", "/v1/tokens", REQUESTOR, &third));
    let verification = next_from_switch(&mut host, Duration::from_secs(10)).expect("the host is asked");
    host.send(&issuer_answer(&verification, "91", None), true);
    let (status, refused) = asking.join().unwrap();
    assert_eq!((status, refused["error"]["code"].as_str()), (503, Some("issuer_unavailable")), "{refused}");
    let asking = std::thread::spawn(move || call(http, "POST", "/v1/tokens", REQUESTOR, &body));
    let verification = next_from_switch(&mut host, Duration::from_secs(10)).expect("the host is asked again");
    host.send(&issuer_answer(&verification, "00", None), true);
    assert_eq!(asking.join().unwrap().0, 201);
}

#[test]
fn an_issuer_issues_a_card_and_binds_a_token_usable_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("data"));
    let http = daemon.http;
    let mut acquirer = acquirer(&daemon);
    let card = "4000099999999901";
    let body = json!({
        "request_id": "issue-0001",
        "card": { "number": card, "expiry": "3011" },
        "account": { "id": 1099, "currency": "USD", "opening_balance": 50_000 },
        "token": { "requestor": REQUESTOR.0 },
    })
    .to_string();
    let (status, issued) = call(http, "POST", "/v1/issuer/cards", ISSUER, &body);
    assert_eq!((status, issued["approver"].as_str()), (201, Some("issuer")), "{issued}");
    let number = issued["token_number"].as_str().unwrap().to_string();
    assert_eq!(issued["requestor"], REQUESTOR.0);
    assert_eq!(issued["card"], "400009******9901");

    // Both pay at once: the token contactless, the card by chip; the opening balance holds.
    assert_eq!(code(&purchase(&mut acquirer, &number, 30_000, "071")), "00");
    let stan = acquirer.next_stan();
    let mut by_card = financial("0200", "000000", card, 15_000, &stan);
    by_card.set(14, "3011").unwrap();
    assert_eq!(code(&acquirer.call(&by_card)), "00");
    assert_eq!(code(&purchase(&mut acquirer, &number, 10_000, "071")), "51", "50,000 cents were opened");

    // The same call again: the same answer, the balance funded once.
    let (status, again) = call(http, "POST", "/v1/issuer/cards", ISSUER, &body);
    assert_eq!((status, again["token_number"].as_str()), (200, Some(number.as_str())));
    assert_eq!(code(&purchase(&mut acquirer, &number, 10_000, "071")), "51");

    // The requestor manages the token it was bound for.
    let path = format!("/v1/tokens/{}/suspend", issued["token_ref"].as_str().unwrap());
    assert_eq!(call(http, "POST", &path, REQUESTOR, "").0, 200);
    assert_eq!(code(&purchase(&mut acquirer, &number, 100, "071")), "57");

    // Refusals: not an issuer; an issuer without a token range; another issuer's account;
    // a card number in use.
    let (status, _) = call(http, "POST", "/v1/issuer/cards", WALLET, &body);
    assert_eq!(status, 403);
    let theirs = body.replace("issue-0001", "issue-2").replace("\"USD\"", "\"JPY\"");
    let (status, refused) = call(http, "POST", "/v1/issuer/cards", OTHER_ISSUER, &theirs);
    assert_eq!((status, refused["error"]["code"].as_str()), (422, Some("no_token_range")), "{refused}");
    let taken = body.replace("issue-0001", "issue-2").replace("1099", "2001");
    let (status, refused) = call(http, "POST", "/v1/issuer/cards", ISSUER, &taken);
    assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("account_taken")), "{refused}");
    let reused = body.replace("issue-0001", "issue-3").replace("1099", "1098");
    let (status, refused) = call(http, "POST", "/v1/issuer/cards", ISSUER, &reused);
    assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("card_taken")), "{refused}");
}
