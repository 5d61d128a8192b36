//! Crash safety end to end: two clients drive `junctiond`, one over ISO 8583 (card
//! purchases) and one over the QR API (signed wallet payments), while the test kills the
//! daemon with SIGKILL at random moments, sometimes right after asking it to close a window
//! (so the close or the file writing is cut short). After each restart every unanswered
//! request is sent again (same STAN, same idempotency key), and at the end the books must
//! equal what the clients saw approved, exactly once; each window's nets sum to zero; every
//! clearing folder verifies.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use rand::Rng;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CYCLES: usize = 8;
const OPENING_BALANCE_MINOR: u64 = 1_000_000; // account 1001 in the demo config

#[derive(Default)]
struct Ledgerbook {
    /// STAN -> amount of every ISO 8583 request sent.
    sent: BTreeMap<String, u64>,
    /// STAN -> response code of every answer seen.
    answered: BTreeMap<String, String>,
    /// Idempotency key -> amount of every QR payment sent.
    qr_sent: BTreeMap<String, u64>,
    /// Idempotency key -> "status state" of every QR answer seen.
    qr_answered: BTreeMap<String, String>,
}

impl Ledgerbook {
    fn unanswered(&self) -> Vec<(String, u64)> {
        self.sent.iter().filter(|(stan, _)| !self.answered.contains_key(*stan)).map(|(s, a)| (s.clone(), *a)).collect()
    }

    fn qr_unanswered(&self) -> Vec<(String, u64)> {
        self.qr_sent
            .iter()
            .filter(|(key, _)| !self.qr_answered.contains_key(*key))
            .map(|(k, a)| (k.clone(), *a))
            .collect()
    }
}

/// One QR payment as "status state", or `None` when the daemon does not answer.
fn qr_pay(agent: &ureq::Agent, http: SocketAddr, merchant: &str, key: &str, amount: u64) -> Option<String> {
    let (status, answer) = wallet_pays(agent, http, merchant, key, amount)?;
    Some(format!("{status} {}", answer["state"].as_str().unwrap_or("-")))
}

fn drive_qr(http: SocketAddr, book: Arc<Mutex<Ledgerbook>>, resend: Vec<(String, u64)>, cycle: usize) {
    let agent = http_agent();
    let merchant = usd_merchant_qr();
    let mut rng = rand::thread_rng();
    let mut work = resend;
    for n in 0.. {
        let (key, amount) = work.pop().unwrap_or_else(|| (format!("crash-{cycle}-{n}"), rng.gen_range(1..200)));
        book.lock().unwrap().qr_sent.insert(key.clone(), amount);
        match qr_pay(&agent, http, &merchant, &key, amount) {
            Some(answer) => book.lock().unwrap().qr_answered.insert(key, answer),
            None => return, // the daemon died
        };
    }
}

fn drive(address: std::net::SocketAddr, book: Arc<Mutex<Ledgerbook>>, resend: Vec<(String, u64)>, first_stan: u32) {
    let mut client = IsoClient::connect(address);
    assert_eq!(client.sign_on().get(39), Some("00"));
    client.stan = first_stan;
    let mut rng = rand::thread_rng();
    let mut work: Vec<(String, u64)> = resend;
    loop {
        let (stan, amount) = match work.pop() {
            Some(item) => item,
            None => (client.next_stan(), rng.gen_range(1..200)),
        };
        book.lock().unwrap().sent.insert(stan.clone(), amount);
        let answer = client.call(&financial("0200", "000000", DEMO_PAN, amount, &stan));
        book.lock().unwrap().answered.insert(stan, answer.get(39).unwrap().to_string());
    }
}

fn post_close(daemon: &Daemon) {
    let _ = ureq::post(&daemon.url("/v1/admin/windows/close"))
        .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_empty();
}

#[test]
fn sigkill_loses_nothing_approved_and_moves_money_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let book = Arc::new(Mutex::new(Ledgerbook::default()));
    let mut rng = rand::thread_rng();
    for cycle in 0..CYCLES {
        let mut daemon = Daemon::start(&data);
        let (unanswered, qr_unanswered) = {
            let book = book.lock().unwrap();
            (book.unanswered(), book.qr_unanswered())
        };
        let wallet = {
            let book = Arc::clone(&book);
            let address = daemon.http;
            std::thread::spawn(move || drive_qr(address, book, qr_unanswered, cycle))
        };
        let client = {
            let book = Arc::clone(&book);
            let address = daemon.iso;
            let first_stan = 100_000 * (cycle as u32 + 1);
            std::thread::spawn(move || drive(address, book, unanswered, first_stan))
        };
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..600)));
        if cycle % 3 == 1 {
            // Kill right after a close request: the close or its files may be cut short.
            post_close(&daemon);
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..30)));
        }
        daemon.kill9();
        assert!(client.join().is_err(), "the client notices the dead daemon");
        wallet.join().unwrap();
    }
    // Last start: answer everything still unanswered, then check the books.
    let daemon = Daemon::start(&data);
    let (unanswered, qr_unanswered) = {
        let book = book.lock().unwrap();
        (book.unanswered(), book.qr_unanswered())
    };
    let mut client = IsoClient::connect(daemon.iso);
    assert_eq!(client.sign_on().get(39), Some("00"));
    for (stan, amount) in unanswered {
        let answer = client.call(&financial("0200", "000000", DEMO_PAN, amount, &stan));
        book.lock().unwrap().answered.insert(stan, answer.get(39).unwrap().to_string());
    }
    let agent = http_agent();
    let merchant = usd_merchant_qr();
    for (key, amount) in qr_unanswered {
        let answer = qr_pay(&agent, daemon.http, &merchant, &key, amount).expect("the daemon answers");
        book.lock().unwrap().qr_answered.insert(key, answer);
    }
    // A QR payment sent again under its key after all the restarts is the same payment.
    if let Some((key, amount)) = book.lock().unwrap().qr_sent.iter().next() {
        assert_eq!(qr_pay(&agent, daemon.http, &merchant, key, *amount).as_deref(), Some("200 approved"));
    }
    let book = book.lock().unwrap();
    assert_eq!(book.sent.len(), book.answered.len());
    assert_eq!(book.qr_sent.len(), book.qr_answered.len());
    assert!(
        book.qr_answered.values().all(|answer| answer == "200 approved"),
        "only approved QR payments expected: {:?}",
        book.qr_answered.values().filter(|a| *a != "200 approved").collect::<Vec<_>>()
    );
    let qr_approved: u64 = book.qr_sent.values().sum();
    assert!(qr_approved > 0);
    let approved: u64 = book.answered.iter().filter(|(_, code)| *code == "00").map(|(stan, _)| book.sent[stan]).sum();
    assert!(approved > 0);
    assert!(
        book.answered.values().all(|code| code == "00"),
        "only approvals expected: {:?}",
        book.answered.values().filter(|c| *c != "00").collect::<Vec<_>>()
    );
    let account = daemon.get_json("/v1/admin/accounts/1001");
    let debits: u64 = account["balances"]["debits_posted"].as_u64().unwrap();
    let credits: u64 = account["balances"]["credits_posted"].as_u64().unwrap();
    assert_eq!(credits, OPENING_BALANCE_MINOR);
    assert_eq!(debits, approved, "every approved purchase is in the ledger exactly once, nothing else");

    // Every window's nets sum to zero; the acquirer's credits add up to what was approved
    // over both front ends, and the wallet's debits to its approved payments.
    let windows = daemon.get_json("/v1/admin/windows");
    let mut acquirer_credits = 0u128;
    let mut wallet_debits = 0u128;
    for window in windows["windows"].as_array().unwrap() {
        let positions = daemon.get_json(&format!("/v1/admin/positions?window={}", window["window"]));
        let mut sum = 0i128;
        for row in positions["positions"].as_array().unwrap() {
            sum += row["net_minor"].as_str().unwrap().parse::<i128>().unwrap();
            let minor = |field: &str| row[field].as_str().unwrap().parse::<u128>().unwrap();
            if row["participant"] == DEMO_ACQUIRER {
                acquirer_credits += minor("credits_minor");
            }
            if row["participant"] == DEMO_WALLET && row["currency"] == "USD" {
                wallet_debits += minor("debits_minor");
            }
        }
        assert_eq!(sum, 0, "window {} nets sum to zero", window["window"]);
    }
    assert_eq!(acquirer_credits, u128::from(approved + qr_approved));
    assert_eq!(wallet_debits, u128::from(qr_approved));

    // Closed windows all get their files after the restarts, and they verify.
    let closed: Vec<String> = windows["windows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["status"] != "open")
        .map(|w| w["folder"].as_str().unwrap().to_string())
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for folder in &closed {
        while !std::path::Path::new(folder).join("manifest.json").exists() {
            assert!(std::time::Instant::now() < deadline, "{folder} never written");
            std::thread::sleep(Duration::from_millis(50));
        }
        let output =
            std::process::Command::new(binary("junction")).args(["clearing", "verify", folder]).output().unwrap();
        assert!(output.status.success(), "{folder}: {}", String::from_utf8_lossy(&output.stderr));
    }
    eprintln!(
        "{CYCLES} SIGKILL cycles: {} ISO 8583 requests ({approved} minor units approved), {} QR payments ({qr_approved} minor units), {} closed windows verified",
        book.sent.len(),
        book.qr_sent.len(),
        closed.len()
    );
}
