//! The same answer every time, over the real socket: a resend (same fields 32, 41, 11, 7)
//! gets its original's response code and moves nothing, declines included, whatever has
//! changed since, across a kill -9, and while the shards' queues are full (then it may be
//! told to try again, 91, never anything else).

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use std::io::Write;

const DEMO_ACCOUNT: u64 = 1001;
const OPENING_BALANCE_MINOR: u64 = 1_000_000;

fn available(daemon: &Daemon) -> String {
    daemon.get_json(&format!("/v1/admin/accounts/{DEMO_ACCOUNT}"))["available"].as_str().unwrap().to_string()
}

fn framed(client: &IsoClient, message: &junction_wire::iso8583::Iso8583Message) -> Vec<u8> {
    let mut message = message.clone();
    junction_wire::iso8583::mac::sign(&mut message, &client.key);
    let mut raw = Vec::new();
    message.encode(&mut raw).unwrap();
    let mut out = (raw.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&raw);
    out
}

#[test]
fn a_declined_purchase_keeps_its_decline_after_a_refund_a_kill9_and_under_full_queues() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut config = demo_config();
    // Tiny shard queues, so that a burst fills them.
    config.switch.shard_queue_depth_max = 4;
    let mut daemon = Daemon::start_with_config(&data, &config);
    let mut client = IsoClient::connect(daemon.iso);
    assert_eq!(client.sign_on().get(39), Some("00"));
    // Drain the card, then a purchase of 50.00 is declined for funds.
    let drain = financial("0200", "000000", DEMO_PAN, OPENING_BALANCE_MINOR, "000101");
    assert_eq!(client.call(&drain).get(39), Some("00"));
    let purchase = financial("0200", "000000", DEMO_PAN, 5_000, "000102");
    assert_eq!(client.call(&purchase).get(39), Some("51"));
    assert_eq!(available(&daemon), "0.00");
    // The cardholder is refunded 100.00; the exact purchase resent is still declined.
    let refund = financial("0200", "200000", DEMO_PAN, 10_000, "000103");
    assert_eq!(client.call(&refund).get(39), Some("00"));
    assert_eq!(client.call(&purchase).get(39), Some("51"), "the resend got another answer than the original");
    assert_eq!(available(&daemon), "100.00", "the resend moved money");

    // kill -9 between the decline and another resend: the decline was journaled.
    daemon.kill9();
    let daemon = Daemon::start_with_config(&data, &config);
    let mut client = IsoClient::connect(daemon.iso);
    assert_eq!(client.sign_on().get(39), Some("00"));
    assert_eq!(client.call(&purchase).get(39), Some("51"));
    assert_eq!(client.call(&drain).get(39), Some("00"), "the approval's resend is approved");
    assert_eq!(available(&daemon), "100.00");

    // A burst that fills the shards' queues, with the resend among it: each copy of the
    // resend is answered 51 or 91, never 00, and no money moves.
    let mut burst = Vec::new();
    for n in 0..3_000u32 {
        if n % 10 == 0 {
            burst.extend_from_slice(&framed(&client, &purchase));
        } else {
            let stan = format!("{:06}", 200_000 + n);
            let mut inquiry = financial("0200", "310000", DEMO_PAN, 0, &stan);
            inquiry.set(4, "000000000000").unwrap();
            burst.extend_from_slice(&framed(&client, &inquiry));
        }
    }
    client.stream.write_all(&burst).unwrap();
    let (mut resend_answers, mut overloaded) = (std::collections::BTreeMap::new(), 0);
    for _ in 0..3_000 {
        let answer = client.receive();
        let code = answer.get(39).unwrap().to_string();
        if code == "91" {
            overloaded += 1;
        }
        if answer.get(11) == Some("000102") {
            *resend_answers.entry(code).or_insert(0) += 1;
        }
    }
    assert!(overloaded > 0, "the burst never filled a queue: the test proves nothing");
    assert_eq!(resend_answers.values().sum::<u32>(), 300);
    assert!(
        resend_answers.keys().all(|code| code == "51" || code == "91"),
        "a resend under overload got another final answer: {resend_answers:?}"
    );
    // Once the burst is over, the resend is answered 51 again.
    assert_eq!(client.call(&purchase).get(39), Some("51"));
    assert_eq!(available(&daemon), "100.00");
}
