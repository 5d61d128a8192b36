//! Hostile and careless clients: a connection that never reads its answers cannot block
//! others; random bytes never bring the daemon down; no full card number reaches the data
//! directory, the clearing files or the logs.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::time::Duration;

#[test]
fn a_stalled_client_does_not_block_others() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("data"));
    // Client A writes 20,000 signed requests and never reads an answer.
    let mut stalled = IsoClient::connect(daemon.iso);
    stalled.send(&network("000001", ACQUIRER_INSTITUTION, "001"), true);
    let mut flood = Vec::new();
    for _ in 0..20_000 {
        let stan = stalled.next_stan();
        let mut message = financial("0200", "300000", DEMO_PAN, 0, &stan);
        message.set(3, "310000").unwrap();
        junction_engine::iso8583::mac::sign(&mut message, &stalled.key);
        let mut raw = Vec::new();
        message.encode(&mut raw).unwrap();
        flood.extend_from_slice(&(raw.len() as u16).to_be_bytes());
        flood.extend_from_slice(&raw);
    }
    stalled.stream.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = stalled.stream.write_all(&flood); // may block once the socket buffers are full
                                              // Client B is served at once.
    let mut client = IsoClient::connect(daemon.iso);
    assert_eq!(client.sign_on().get(39), Some("00"));
    let stan = client.next_stan();
    assert_eq!(client.call(&financial("0200", "000000", DEMO_PAN, 100, &stan)).get(39), Some("00"));
    let status = daemon.get_json("/v1/admin/status");
    let in_flight = status["requests_in_flight"].as_u64().unwrap();
    assert!(in_flight <= 4096, "a connection's in-flight requests are bounded: {in_flight}");
}

#[test]
fn random_bytes_never_bring_it_down_and_no_card_number_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let daemon = Daemon::start(&data);
    let mut rng = rand::rngs::StdRng::seed_from_u64(8583);
    // 300 connections of random frames and raw garbage.
    for round in 0..300 {
        let mut stream = std::net::TcpStream::connect(daemon.iso).unwrap();
        let mut bytes = Vec::new();
        for _ in 0..rng.gen_range(1..20) {
            let length: usize = rng.gen_range(0..300);
            if round % 3 == 0 {
                bytes.extend_from_slice(&(length as u16).to_be_bytes());
            }
            let mut body: Vec<u8> = (0..length).map(|_| rng.gen()).collect();
            if round % 2 == 0 && body.len() > 20 {
                body[..4].copy_from_slice(b"0200");
            }
            bytes.extend_from_slice(&body);
        }
        let _ = stream.write_all(&bytes);
    }
    // The daemon still answers, correctly.
    let mut client = IsoClient::connect(daemon.iso);
    assert_eq!(client.sign_on().get(39), Some("00"));
    let stan = client.next_stan();
    assert_eq!(client.call(&financial("0200", "000000", DEMO_PAN, 100, &stan)).get(39), Some("00"));
    // Traffic with every demo card and token, a window with its files.
    for pan in [DEMO_PAN, "4000001234560002", "3560001234567894", "4895370000000013", "4000009999999999"] {
        let stan = client.next_stan();
        let _ = client.call(&financial("0200", "000000", pan, 10, &stan));
    }
    let _ = ureq::post(&daemon.url("/v1/admin/windows/close"))
        .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_empty()
        .unwrap();
    let folder = data.join("clearing").join("window-00000001");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !folder.join("manifest.json").exists() {
        assert!(std::time::Instant::now() < deadline, "clearing files were not written");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(client);
    let log = daemon.log_text();
    drop(daemon);
    // Search every file under the data dir (ledger, clearing) and the log.
    let pans = ["4000001234567899", "4000001234560002", "3560001234567894", "4895370000000013", "4000009999999999"];
    let mut files = vec![];
    let mut stack = vec![data.clone()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap().path();
            if entry.is_dir() {
                stack.push(entry);
            } else {
                files.push(entry);
            }
        }
    }
    assert!(files.len() > 5);
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for pan in pans {
            assert!(
                !bytes.windows(pan.len()).any(|w| w == pan.as_bytes()),
                "{} holds a full card number",
                file.display()
            );
        }
    }
    for pan in pans {
        assert!(!log.contains(pan), "the log holds a full card number");
    }
    // The demo keys are never logged either.
    assert!(!log.contains("33333333333333333333333333333333"));
    assert!(!log.contains(ADMIN_TOKEN));
}
