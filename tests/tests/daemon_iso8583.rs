//! `junctiond` end to end over its real ISO 8583 socket: network management, every
//! financial message, duplicates, security refusals, malformed frames. After each bad
//! input the same connection and the daemon keep working.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use junction_wire::iso8583::Iso8583Message;

fn available(daemon: &Daemon, account: u64) -> String {
    daemon.get_json(&format!("/v1/admin/accounts/{account}"))["available"].as_str().unwrap().to_string()
}

fn code(m: &Iso8583Message) -> &str {
    m.get(39).unwrap_or("--")
}

#[test]
fn iso8583_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("data"));
    let mut client = IsoClient::connect(daemon.iso);

    // Before sign-on, financial messages are refused.
    let stan = client.next_stan();
    let refused = client.call(&financial("0200", "000000", DEMO_PAN, 100, &stan));
    assert_eq!((refused.mti(), code(&refused)), ("0210", "63"));

    let answer = client.sign_on();
    assert_eq!((answer.mti(), code(&answer), answer.get(70)), ("0810", "00", Some("001")));
    let stan = client.next_stan();
    let echo = client.call(&network(&stan, ACQUIRER_INSTITUTION, "301"));
    assert_eq!(code(&echo), "00");
    assert_eq!(available(&daemon, 1001), "10000.00");

    // Purchase, then its duplicate, then a conflicting reuse of its key.
    let stan = client.next_stan();
    let purchase = financial("0200", "000000", DEMO_PAN, 2_500, &stan);
    let approved = client.call(&purchase);
    assert_eq!((approved.mti(), code(&approved)), ("0210", "00"));
    assert_eq!(approved.get(11), Some(stan.as_str()));
    assert_eq!(approved.get(37), purchase.get(37));
    let auth_code = approved.get(38).expect("an approval carries an auth code").to_string();
    assert_eq!(available(&daemon, 1001), "9975.00");
    let again = client.call(&purchase);
    assert_eq!((code(&again), again.get(38)), ("00", Some(auth_code.as_str())));
    assert_eq!(available(&daemon, 1001), "9975.00", "a resend moves nothing");
    let mut conflicting = purchase.clone();
    conflicting.set(4, "000000002600").unwrap();
    assert_eq!(code(&client.call(&conflicting)), "94");

    // Reversal of the purchase (0400 naming it in field 90), twice.
    for _ in 0..2 {
        let rstan = client.next_stan();
        let mut reversal = financial("0400", "000000", DEMO_PAN, 2_500, &rstan);
        reversal.set(90, &original_data("0200", &stan)).unwrap();
        let answer = client.call(&reversal);
        assert_eq!((answer.mti(), code(&answer)), ("0410", "00"));
    }
    assert_eq!(available(&daemon, 1001), "10000.00");

    // Authorization, partial completion (0220), and reversal of another hold (0420).
    let auth_stan = client.next_stan();
    let answer = client.call(&financial("0100", "000000", DEMO_PAN, 10_000, &auth_stan));
    assert_eq!((answer.mti(), code(&answer)), ("0110", "00"));
    assert_eq!(available(&daemon, 1001), "9900.00");
    let cstan = client.next_stan();
    let mut completion = financial("0220", "000000", DEMO_PAN, 8_000, &cstan);
    completion.set(90, &original_data("0100", &auth_stan)).unwrap();
    let answer = client.call(&completion);
    assert_eq!((answer.mti(), code(&answer)), ("0230", "00"));
    assert_eq!(available(&daemon, 1001), "9920.00");
    let hold_stan = client.next_stan();
    assert_eq!(code(&client.call(&financial("0100", "000000", DEMO_PAN, 5_000, &hold_stan))), "00");
    let rstan = client.next_stan();
    let mut reversal = financial("0420", "000000", DEMO_PAN, 5_000, &rstan);
    reversal.set(90, &original_data("0100", &hold_stan)).unwrap();
    let answer = client.call(&reversal);
    assert_eq!((answer.mti(), code(&answer)), ("0430", "00"));
    assert_eq!(available(&daemon, 1001), "9920.00");

    // Refund (processing code 20) and balance inquiry (31).
    let stan = client.next_stan();
    assert_eq!(code(&client.call(&financial("0200", "200000", DEMO_PAN, 1_000, &stan))), "00");
    assert_eq!(available(&daemon, 1001), "9930.00");
    let stan = client.next_stan();
    let inquiry = client.call(&financial("0100", "310000", DEMO_PAN, 0, &stan));
    assert_eq!(code(&inquiry), "00");
    assert_eq!(inquiry.get(54), Some("0002840C000000993000"));

    // Declines with their codes.
    let stan = client.next_stan();
    assert_eq!(code(&client.call(&financial("0200", "000000", "4000009999999999", 100, &stan))), "14");
    let stan = client.next_stan();
    assert_eq!(code(&client.call(&financial("0200", "000000", DEMO_PAN, 2_000_000, &stan))), "51");
    let stan = client.next_stan();
    assert_eq!(code(&client.call(&financial("0500", "000000", DEMO_PAN, 100, &stan))), "12", "unknown MTI");
    let stan = client.next_stan();
    let mut missing = financial("0200", "000000", DEMO_PAN, 100, &stan);
    missing.remove(41);
    assert_eq!(code(&client.call(&missing)), "30", "missing field 41");

    // Security: a wrong MAC, another institution's field 32.
    let stan = client.next_stan();
    let mut tampered = financial("0200", "000000", DEMO_PAN, 100, &stan);
    tampered.set(64, "0123456789ABCDEF").unwrap();
    client.send(&tampered, false);
    assert_eq!(code(&client.receive()), "63");
    let stan = client.next_stan();
    let mut other = financial("0200", "000000", DEMO_PAN, 100, &stan);
    other.set(32, "200002").unwrap();
    assert_eq!(code(&client.call(&other)), "63");
    assert_eq!(available(&daemon, 1001), "9930.00", "nothing refused moved money");

    // Malformed frames: garbage bitmap, a field too long, a non-numeric amount, a short
    // message, a zero length, an oversized length. Each gets 30 on the same connection.
    let bad_frames: Vec<Vec<u8>> = vec![
        b"0200ZZZZZZZZZZZZZZZZ".to_vec(),
        {
            let mut raw = Vec::new();
            financial("0200", "000000", DEMO_PAN, 100, "999001").encode(&mut raw).unwrap();
            // LLVAR field 2 declares 16; make it declare 99 (too long) by editing the prefix.
            let position = raw.windows(18).position(|w| w == b"164000001234567899").unwrap();
            raw[position..position + 2].copy_from_slice(b"99");
            raw
        },
        {
            let mut raw = Vec::new();
            financial("0200", "000000", DEMO_PAN, 100, "999002").encode(&mut raw).unwrap();
            let position = raw.windows(12).position(|w| w == b"000000000100").unwrap();
            raw[position..position + 12].copy_from_slice(b"00000000ABCD");
            raw
        },
        b"02".to_vec(),
    ];
    for raw in &bad_frames {
        client.send_frame(raw);
        assert_eq!(code(&client.receive()), "30", "frame {:?}", String::from_utf8_lossy(raw));
    }
    use std::io::Write;
    client.stream.write_all(&[0, 0]).unwrap();
    assert_eq!(code(&client.receive()), "30", "zero length");
    let mut oversized = vec![0xFF, 0xFF];
    oversized.extend(std::iter::repeat_n(b'9', 0xFFFF));
    client.stream.write_all(&oversized).unwrap();
    assert_eq!(code(&client.receive()), "30", "oversized frame");
    // The connection still works.
    let stan = client.next_stan();
    assert_eq!(code(&client.call(&financial("0200", "000000", DEMO_PAN, 100, &stan))), "00");

    // Sign-off: financial messages are refused again.
    let stan = client.next_stan();
    assert_eq!(code(&client.call(&network(&stan, ACQUIRER_INSTITUTION, "002"))), "00");
    let stan = client.next_stan();
    assert_eq!(code(&client.call(&financial("0200", "000000", DEMO_PAN, 100, &stan))), "63");

    // Nothing of the card number reaches the log in clear.
    let log = daemon.log_text();
    assert!(log.contains("MAC check failed"), "the refusal is logged");
    assert!(!log.contains(DEMO_PAN), "a full card number is in the log");

    // The build it runs, in the metrics, the status and both binaries' --version.
    let version = env!("CARGO_PKG_VERSION");
    let metrics = ureq::get(&daemon.url("/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
    let build_line =
        metrics.lines().find(|line| line.starts_with("junction_build_info{")).expect("a build-info metric");
    assert!(build_line.contains(&format!("version=\"{version}\"")) && build_line.ends_with(" 1"), "{build_line}");
    assert!(metrics.contains("junction_ledger_pause_seconds_max "), "the pause metric is exported");
    for (binary_name, printed) in [("junctiond", "junctiond"), ("junction", "junction")] {
        let output = std::process::Command::new(binary(binary_name)).arg("--version").output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.starts_with(&format!("{printed} {version} (commit ")), "{binary_name} --version: {text}");
    }
}

#[test]
fn pipelined_requests_and_clean_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&dir.path().join("data"));
    let mut client = IsoClient::connect(daemon.iso);
    assert_eq!(code(&client.sign_on()), "00");
    // 500 purchases written back to back before reading any answer.
    let mut stans = std::collections::BTreeSet::new();
    let mut batch = Vec::new();
    for _ in 0..500 {
        let stan = client.next_stan();
        let mut message = financial("0200", "000000", DEMO_PAN, 1, &stan);
        junction_wire::iso8583::mac::sign(&mut message, &client.key);
        let mut raw = Vec::new();
        message.encode(&mut raw).unwrap();
        batch.extend_from_slice(&(raw.len() as u16).to_be_bytes());
        batch.extend_from_slice(&raw);
        stans.insert(stan);
    }
    use std::io::Write;
    client.stream.write_all(&batch).unwrap();
    for _ in 0..500 {
        let answer = client.receive();
        assert_eq!(code(&answer), "00");
        assert!(stans.remove(answer.get(11).unwrap()), "each STAN answered once");
    }
    assert_eq!(available(&daemon, 1001), "9995.00");
    let status = daemon.terminate();
    assert!(status.success(), "SIGTERM stops cleanly: {status:?}");
    assert!(daemon.log_text().contains("junctiond stopped cleanly"));
    // Restarted on the same data, the books are as they were.
    let daemon = Daemon::start(&dir.path().join("data"));
    assert_eq!(available(&daemon, 1001), "9995.00");
}

/// Roles hold over ISO 8583: a wallet and an issuer may sign on (and an issuer's host
/// answers what it is sent), but a purchase from either is refused (63) and moves nothing;
/// the acquirer's own goes through on the same switch.
#[test]
fn only_an_acquirer_originates_requests() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("data"));
    let before = available(&daemon, 1001);
    for (name, institution, key) in
        [("the wallet", "300001", DEMO_WALLET_KEY_HEX), ("the issuer", "100001", "11111111111111111111111111111111")]
    {
        let mut client = IsoClient::connect_as(daemon.iso, institution, key);
        assert_eq!(client.sign_on().get(39), Some("00"), "{name} signs on");
        let stan = client.next_stan();
        let mut purchase = financial("0200", "000000", DEMO_PAN, 1_000, &stan);
        purchase.set(32, institution).unwrap();
        let answer = client.call(&purchase);
        assert_eq!((answer.mti(), code(&answer)), ("0210", "63"), "a purchase from {name}");
        // Echoes still work on the same connection.
        let echo = network(&client.next_stan(), institution, "301");
        assert_eq!(client.call(&echo).get(39), Some("00"));
    }
    assert_eq!(available(&daemon, 1001), before, "a refused purchase moved money");
    let mut acquirer = IsoClient::connect(daemon.iso);
    assert_eq!(acquirer.sign_on().get(39), Some("00"));
    let stan = acquirer.next_stan();
    assert_eq!(code(&acquirer.call(&financial("0200", "000000", DEMO_PAN, 1_000, &stan))), "00");
}
