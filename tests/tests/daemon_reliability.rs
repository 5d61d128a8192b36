//! Hostile and careless clients: a connection that never reads its answers cannot block
//! others; random bytes never bring the daemon down; no full card number reaches the data
//! directory, the clearing files or the logs; load far above the daemon's in-flight bound
//! is declined at once (91, HTTP 503) with bounded memory, and service resumes when it drops.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
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
        junction_wire::iso8583::mac::sign(&mut message, &stalled.key);
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

/// Writes `count` signed purchases of 1 cent on a new connection without waiting, and
/// reads every answer: response code -> how many.
fn flood(address: std::net::SocketAddr, count: usize, first_stan: u32) -> BTreeMap<String, usize> {
    let mut client = IsoClient::connect(address);
    assert_eq!(client.sign_on().get(39), Some("00"));
    client.stan = first_stan;
    let mut frames = Vec::new();
    for _ in 0..count {
        let stan = client.next_stan();
        let mut message = financial("0200", "000000", DEMO_PAN, 1, &stan);
        junction_wire::iso8583::mac::sign(&mut message, &client.key);
        message.encode_framed(&mut frames).unwrap();
    }
    let mut writer = client.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&frames).unwrap());
    let mut codes = BTreeMap::new();
    for _ in 0..count {
        *codes.entry(client.receive().get(39).unwrap().to_string()).or_insert(0) += 1;
    }
    sender.join().unwrap();
    codes
}

#[test]
fn overload_is_declined_at_once_and_service_resumes_when_it_drops() {
    const CONNECTIONS: usize = 6;
    const REQUESTS_PER_CONNECTION: usize = 3_000;
    const ROUNDS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let mut config = demo_config();
    // A small in-flight bound, so that six pipelining connections are well above it.
    config.switch.requests_in_flight_max = 32;
    let daemon = Daemon::start_with_config(&dir.path().join("data"), &config);
    let agent = http_agent();
    let merchant = usd_merchant_qr();
    let mut totals: BTreeMap<String, usize> = BTreeMap::new();
    let mut rss_after_round = Vec::new();
    let mut qr_answers: BTreeMap<String, usize> = BTreeMap::new();
    let mut qr_refused_key = None;
    for round in 0..ROUNDS {
        let floods: Vec<_> = (0..CONNECTIONS)
            .map(|c| {
                let address = daemon.iso;
                let first_stan = ((round * CONNECTIONS + c) * REQUESTS_PER_CONNECTION) as u32;
                std::thread::spawn(move || flood(address, REQUESTS_PER_CONNECTION, first_stan))
            })
            .collect();
        // A wallet pays over HTTP meanwhile: approved, or refused with 503 while the
        // daemon is at its bound, never anything else.
        let mut n = 0;
        while !floods.iter().all(|f| f.is_finished()) {
            n += 1;
            let key = format!("overload-{round}-{n}");
            let (status, answer) = wallet_pays(&agent, daemon.http, &merchant, &key, 1).unwrap();
            let outcome =
                format!("{status} {}", answer["state"].as_str().or(answer["error"]["code"].as_str()).unwrap());
            if status == 503 {
                qr_refused_key.get_or_insert(key);
            }
            *qr_answers.entry(outcome).or_insert(0) += 1;
        }
        for flood in floods {
            for (code, count) in flood.join().unwrap() {
                *totals.entry(code).or_insert(0) += count;
            }
        }
        rss_after_round.push(daemon.rss_bytes());
    }
    eprintln!("ISO 8583 answers under overload: {totals:?}; QR answers: {qr_answers:?}; RSS after each round: {rss_after_round:?}");
    // Every request was answered, with an approval or 91, and both happened.
    assert_eq!(totals.values().sum::<usize>(), ROUNDS * CONNECTIONS * REQUESTS_PER_CONNECTION);
    assert!(totals.keys().all(|code| code == "00" || code == "91"), "{totals:?}");
    assert!(totals.get("91").copied().unwrap_or(0) > 0, "the excess is declined: {totals:?}");
    assert!(totals.get("00").copied().unwrap_or(0) > 0, "what fits is approved: {totals:?}");
    assert!(qr_answers.keys().all(|a| a == "200 approved" || a == "503 overloaded"), "{qr_answers:?}");
    // Memory does not grow with the offered load: later rounds stay near the first.
    let first = rss_after_round[0];
    for rss in &rss_after_round[1..] {
        assert!(*rss < first + (64 << 20), "resident memory grows round after round: {rss_after_round:?}");
    }
    // Load gone: nothing left in flight, and the next request is served at once.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while daemon.get_json("/v1/admin/status")["requests_in_flight"].as_u64() != Some(0) {
        assert!(
            std::time::Instant::now() < deadline,
            "requests stay in flight after the load is gone: {}",
            daemon.get_json("/v1/admin/status")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut client = IsoClient::connect(daemon.iso);
    assert_eq!(client.sign_on().get(39), Some("00"));
    client.stan = 900_000;
    let stan = client.next_stan();
    assert_eq!(client.call(&financial("0200", "000000", DEMO_PAN, 1, &stan)).get(39), Some("00"));
    // A QR payment refused as overloaded goes through when sent again under its key.
    if let Some(key) = &qr_refused_key {
        let (status, answer) = wallet_pays(&agent, daemon.http, &merchant, key, 1).unwrap();
        assert_eq!((status, answer["state"].as_str()), (200, Some("approved")), "{answer}");
    }
    // Declined requests moved no money: the card's account was debited once per approval.
    let approved = totals["00"] as u64 + 1;
    let account = daemon.get_json("/v1/admin/accounts/1001");
    assert_eq!(account["balances"]["debits_posted"].as_u64(), Some(approved));
    let metrics = ureq::get(&daemon.url("/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
    let iso_91s = metrics
        .lines()
        .find_map(|line| line.strip_prefix("junction_responses_total{code=\"91\",interface=\"iso8583\"} "))
        .and_then(|count| count.parse::<usize>().ok());
    assert_eq!(iso_91s, totals.get("91").copied(), "every ISO 8583 91 is counted in the metrics");
}

/// Hostile variants of a valid JSON body: cut short, bytes flipped, values swapped for
/// huge, negative, wrong-typed or overlong ones, deep nesting, invalid UTF-8.
fn mutations(seed: &str, rng: &mut rand::rngs::StdRng) -> Vec<Vec<u8>> {
    let bytes = seed.as_bytes();
    let mut out = vec![Vec::new(), b"null".to_vec(), b"[]".to_vec(), b"{}".to_vec(), vec![0xff, 0xfe, b'{']];
    out.push(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes());
    for _ in 0..12 {
        out.push(bytes[..rng.gen_range(0..bytes.len())].to_vec());
        let mut flipped = bytes.to_vec();
        for _ in 0..rng.gen_range(1..6) {
            let at = rng.gen_range(0..flipped.len());
            flipped[at] = rng.gen();
        }
        out.push(flipped);
    }
    let swaps = [
        "99999999999999999999999999999999",
        "-1",
        "1e309",
        "0.000000000000000000001",
        "\"\"",
        "\"-0.01\"",
        "\"1e3\"",
        "\"99999999999999999999999.99\"",
        "true",
        "{}",
        "[1,2]",
        "\"\\u0000\"",
        "\"\u{1F4B8}\u{202E}\"",
    ];
    let long = format!("\"{}\"", "9".repeat(200_000));
    let mut values: Vec<&str> = swaps.to_vec();
    values.push(&long);
    // Each value after each ':' in the seed.
    for (at, _) in seed.match_indices(':') {
        for value in &values {
            let end = seed[at + 1..].find([',', '}', ']']).map_or(seed.len(), |e| at + 1 + e);
            out.push(format!("{}{value}{}", &seed[..=at], &seed[end..]).into_bytes());
        }
    }
    out
}

/// The start of a body, for a failure message.
fn shown(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    format!("{:?} ({} bytes)", text.chars().take(120).collect::<String>(), body.len())
}

#[test]
fn hostile_json_bodies_get_clear_errors_and_move_no_money() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("data"));
    let merchant = usd_merchant_qr();
    let pricing = format!(r#"{{"payload":"{merchant}","payer_currency":"USD","amount":"1.00"}}"#);
    // (path, signed as the demo wallet, admin token, a valid body)
    let endpoints: Vec<(&str, bool, bool, String)> = vec![
        ("/v1/qr/decode", false, false, format!(r#"{{"payload":"{merchant}"}}"#)),
        ("/v1/qr/quotes", true, false, pricing.clone()),
        ("/v1/qr/payments", true, false, pricing),
        ("/v1/qr/payments/00000000000000000000000000000001/refund", true, false, r#"{"amount":"1.00"}"#.into()),
        (
            "/v1/admin/fx/rates",
            false,
            true,
            r#"{"rates":[{"provider":6,"base":"USD","quote":"THB","rate":"36.50","spread_bps":50}]}"#.into(),
        ),
        (
            "/v1/admin/accounts",
            false,
            true,
            r#"{"accounts":[{"id":9001,"participant":1,"currency":"USD","opening_balance":100}]}"#.into(),
        ),
        (
            "/v1/admin/cards",
            false,
            true,
            r#"{"cards":[{"pan":"4000001234567899","account":1001,"expiry":"2912"}]}"#.into(),
        ),
        ("/v1/admin/accounts/1001/status", false, true, r#"{"status":"active"}"#.into()),
        ("/v1/admin/participants/5/caps", false, true, r#"{"currency":"USD","net_debit_cap":50000000}"#.into()),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(20022);
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for (index, (path, signed, admin, seed)) in endpoints.iter().enumerate() {
        for (n, body) in mutations(seed, &mut rng).into_iter().enumerate() {
            let timestamp =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
            let key = format!("hostile-{index}-{n}");
            // A connection of its own per request: after refusing an oversized body the
            // daemon closes the connection, and a pooled one would fail the next request.
            let agent = http_agent();
            let mut request = agent.post(&daemon.url(path)).header("content-type", "application/json");
            if *admin {
                request = request.header("authorization", &format!("Bearer {ADMIN_TOKEN}"));
            }
            if *signed {
                let secret = hex::decode(DEMO_WALLET_KEY_HEX).unwrap();
                let participant = DEMO_WALLET.to_string();
                let signature =
                    junction_wire::qr_api::sign_hex(&secret, "POST", path, &timestamp, &participant, &key, &body)
                        .unwrap();
                request = request
                    .header("x-junction-participant", &participant)
                    .header("x-junction-timestamp", &timestamp)
                    .header("x-junction-signature", &signature)
                    .header("idempotency-key", &key);
            }
            let mut response = match request.send(&body[..]) {
                Ok(response) => response,
                // Over the QR router's 16 KiB limit the daemon may answer 413 and close before
                // reading the rest: the client then sees its write fail.
                Err(error) if (path.starts_with("/v1/qr") || path.contains("/fx/")) && body.len() > 16 * 1024 => {
                    *statuses.entry(413).or_insert(0) += 1;
                    eprintln!("{path}: {} bytes refused before they were read ({error})", body.len());
                    continue;
                }
                Err(error) => panic!("{path}: {error} for {}", shown(&body)),
            };
            let status = response.status().as_u16();
            let text = response.body_mut().with_config().limit(1 << 24).read_to_string().unwrap();
            *statuses.entry(status).or_insert(0) += 1;
            assert!(status < 500, "{path}: HTTP {status} for {}: {text}", shown(&body));
            if status >= 400 {
                let json: serde_json::Value =
                    serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: a non-JSON {status}: {text:?}"));
                assert!(json["error"]["code"].is_string(), "{path}: an error without a code: {json}");
            }
        }
    }
    eprintln!("hostile JSON bodies, answers by HTTP status: {statuses:?}");
    // Still up and serving; the books balance: whatever a hostile body got through moved
    // money both ways.
    let mut client = IsoClient::connect(daemon.iso);
    assert_eq!(client.sign_on().get(39), Some("00"));
    let stan = client.next_stan();
    assert_eq!(client.call(&financial("0200", "000000", DEMO_PAN, 100, &stan)).get(39), Some("00"));
    let positions = daemon.get_json("/v1/admin/positions");
    let mut per_currency: BTreeMap<String, i128> = BTreeMap::new();
    for row in positions["positions"].as_array().unwrap() {
        *per_currency.entry(row["currency"].as_str().unwrap().to_string()).or_default() +=
            row["net_minor"].as_str().unwrap().parse::<i128>().unwrap();
    }
    assert!(per_currency.values().all(|net| *net == 0), "{per_currency:?}");
}

/// A client that sends and never reads: sign-on echoes and refused messages are answered
/// by the reader itself, and they count against the connection's in-flight bound like
/// requests do (`CONNECTION_IN_FLIGHT_MAX`, its queue `CONNECTION_QUEUE_DEPTH_MAX`), so
/// the daemon stops reading that connection instead of queueing answers without limit.
#[test]
fn a_client_that_never_reads_cannot_grow_the_daemons_memory() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("data"));
    let mut greedy = IsoClient::connect(daemon.iso);
    greedy.send(&network("000001", ACQUIRER_INSTITUTION, "001"), true);
    // 400,000 frames (about 40 MB): signed echoes and purchases with a bad MAC, answered
    // at the door with 00 and 63. Unbounded, their answers alone would take several
    // hundred megabytes.
    let mut flood = Vec::new();
    for index in 0..400_000u32 {
        let stan = format!("{:06}", index % 1_000_000);
        let mut message = if index % 2 == 0 {
            network(&stan, ACQUIRER_INSTITUTION, "301")
        } else {
            financial("0200", "000000", DEMO_PAN, 100, &stan)
        };
        junction_wire::iso8583::mac::sign(&mut message, &greedy.key);
        let mut raw = Vec::new();
        message.encode(&mut raw).unwrap();
        if index % 2 == 1 {
            let last = raw.len() - 1;
            raw[last] = if raw[last] == b'0' { b'1' } else { b'0' }; // break the MAC
        }
        flood.extend_from_slice(&(raw.len() as u16).to_be_bytes());
        flood.extend_from_slice(&raw);
    }
    let rss_before = daemon.rss_bytes();
    let mut stream = greedy.stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        stream.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
        let _ = stream.write_all(&flood); // blocks once the daemon stops reading
    });
    let mut rss_max = rss_before;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(100));
        rss_max = rss_max.max(daemon.rss_bytes());
    }
    writer.join().unwrap();
    let growth = rss_max.saturating_sub(rss_before);
    assert!(growth < 64 << 20, "the daemon grew by {} MiB for one client that never reads", growth >> 20);
    // Everyone else is served as usual.
    let mut client = IsoClient::connect(daemon.iso);
    assert_eq!(client.sign_on().get(39), Some("00"));
    let stan = client.next_stan();
    assert_eq!(client.call(&financial("0200", "000000", DEMO_PAN, 100, &stan)).get(39), Some("00"));
}
