//! A partitioned switch, with real processes on loopback: a 3-server NATS cluster and two
//! partitions (a primary each), each owning one issuer; loadgen driving each door with
//! the other partition's cards; one cut-off of the whole switch merged into one clearing
//! set; an issuer moved from one partition to the other under load.

#![allow(clippy::unwrap_used)]

use junction_tests::cluster::{self, NatsCluster, Node};
use junction_tests::{
    binary, demo_config, financial, http_agent, signed_call, usd_merchant_qr, wallet_pays, IsoClient, ACQUIRER_KEY_HEX,
    ADMIN_TOKEN, DEMO_ACQUIRER, DEMO_WALLET, DEMO_WALLET_KEY_HEX,
};
use junctiond::config::Config;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The demo's two issuers, each in its own partition, and the BINs of their cards.
const ISSUER_A: u64 = 1;
const ISSUER_B: u64 = 2;
const BIN_A: &str = "424242";
const BIN_B: &str = "434343";

/// One partition's configuration: the demo's, with both issuers' BINs routed (the door
/// finds a card's issuer by its BIN), issuer 2 settling USD too (loadgen's cards are USD),
/// its own journal stream, and the map seeded with both issuers and the demo wallet (in b).
fn partition_config(nats: &NatsCluster, partition: &str) -> Config {
    let mut config = demo_config();
    for participant in config.participants.iter_mut().filter(|p| p.id == ISSUER_B) {
        participant.net_debit_caps.insert("USD".into(), 100_000_000_000);
    }
    let route = |prefix: &str, issuer: u64| {
        serde_json::from_value(serde_json::json!({ "prefix": prefix, "issuer": issuer, "mode": "switch" })).unwrap()
    };
    config.bin_routes.push(route(BIN_A, ISSUER_A));
    config.bin_routes.push(route(BIN_B, ISSUER_B));
    cluster::partition_config(config, nats, partition, &[(ISSUER_A, "a"), (ISSUER_B, "b"), (DEMO_WALLET, "b")])
}

/// One cluster at a time: three NATS servers and three daemons per test are plenty for
/// two cores, and lease timing should not compete with another test's load.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn two_partitions(dir: &Path) -> (NatsCluster, Node, Node) {
    let nats = NatsCluster::start(&dir.join("nats"));
    let mut a = Node::new(dir, "a", &partition_config(&nats, "a"));
    let mut b = Node::new(dir, "b", &partition_config(&nats, "b"));
    a.start(false);
    b.start(false);
    a.wait_primary(Duration::from_secs(60));
    b.wait_primary(Duration::from_secs(60));
    (nats, a, b)
}

/// Partition a as a primary (a1) and a caught-up standby (a2), and partition b.
fn partition_a_with_a_standby(dir: &Path) -> (NatsCluster, Node, Node, Node) {
    let nats = NatsCluster::start(&dir.join("nats"));
    let config_a = partition_config(&nats, "a");
    let mut a1 = Node::new(dir, "a1", &config_a);
    let mut a2 = Node::new(dir, "a2", &config_a);
    let mut b = Node::new(dir, "b", &partition_config(&nats, "b"));
    a1.start(false);
    b.start(false);
    a1.wait_primary(Duration::from_secs(60));
    b.wait_primary(Duration::from_secs(60));
    a2.start(true);
    a2.wait_caught_up_standby();
    (nats, a1, a2, b)
}

/// loadgen sending cards that `owner` provisions (and verifies) through `door`.
fn loadgen(door: &Node, owner: &Node, issuer: u64, bin: &str, account_base: u64) -> std::process::Child {
    let base = account_base.to_string();
    loadgen_with(
        door,
        &owner.http.to_string(),
        issuer,
        bin,
        &["--account-base", &base, "--duration", "6s", "--timeout", "20s"],
    )
}

/// loadgen at 300/s over 2 connections with `--verify`, provisioning 2,000 of `issuer`'s
/// cards at `http` (its admin listeners) and sending them through `door`; `more` adds
/// the rest (`--duration`, `--timeout`...).
fn loadgen_with(door: &Node, http: &str, issuer: u64, bin: &str, more: &[&str]) -> std::process::Child {
    Command::new(binary("loadgen"))
        .args(["--iso", &door.iso.to_string(), "--http", http])
        .args(["--provision", "2000", "--issuer", &issuer.to_string(), "--provision-bin", bin])
        .args(["--rate", "300", "--connections", "2", "--verify"])
        .args(more)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting loadgen")
}

fn finished(child: std::process::Child) -> (bool, String) {
    let output = child.wait_with_output().expect("loadgen ran");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Requests loadgen saw approved: `00: <n>` of its "by code" line.
fn approved(text: &str) -> u64 {
    text.lines()
        .find_map(|line| line.trim().strip_prefix("by code"))
        .and_then(|codes| codes.split(", ").find_map(|code| code.trim().strip_prefix("00: ")))
        .and_then(|count| count.split(' ').next())
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

fn card(bin: &str, serial: u64) -> String {
    let body = format!("{bin}{serial:09}");
    format!("{body}{}", junction_wire::luhn::check_digit(&body))
}

fn admin(node: &Node, method: &str, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
    let url = format!("http://{}{path}", node.http);
    let token = format!("Bearer {ADMIN_TOKEN}");
    let agent = http_agent();
    let mut response = match (method, body) {
        ("GET", _) => agent.get(&url).header("authorization", &token).call(),
        ("PUT", Some(body)) => agent.put(&url).header("authorization", &token).send_json(&body),
        (_, Some(body)) => agent.post(&url).header("authorization", &token).send_json(&body),
        (_, None) => agent.post(&url).header("authorization", &token).send_empty(),
    }
    .unwrap_or_else(|error| panic!("{method} {url}: {error}"));
    response.body_mut().read_json().unwrap()
}

fn available(node: &Node, account: u64) -> String {
    admin(node, "GET", &format!("/v1/admin/accounts/{account}"), None)["available"].as_str().unwrap().to_string()
}

fn wait_for(path: &Path, within: Duration, what: &str, nodes: &[&Node]) {
    let deadline = Instant::now() + within;
    while !path.exists() {
        if Instant::now() > deadline {
            let logs: Vec<String> = nodes
                .iter()
                .map(|node| {
                    let text = node.log_text();
                    let tail: Vec<&str> = text.lines().rev().take(25).collect();
                    format!("--- {}:\n{}", node.name, tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
                })
                .collect();
            panic!("{what}: no {} within {within:?}\n{}", path.display(), logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn any_node_is_a_door_and_one_cut_off_merges_every_partition_into_one_set() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (_nats, a, b) = two_partitions(dir.path());

    // Every request crosses: issuer 1's cards (partition a) through b's door, issuer 2's
    // (partition b) through a's. Each loadgen verifies against the owning partition's
    // positions.
    let through_b = loadgen(&b, &a, ISSUER_A, BIN_A, 100_000_000);
    let through_a = loadgen(&a, &b, ISSUER_B, BIN_B, 200_000_000);
    let (ok_b, text_b) = finished(through_b);
    let (ok_a, text_a) = finished(through_a);
    assert!(ok_b && text_b.contains("verify: PASSED"), "issuer 1's cards through b's door:\n{text_b}");
    assert!(ok_a && text_a.contains("verify: PASSED"), "issuer 2's cards through a's door:\n{text_a}");
    for text in [&text_a, &text_b] {
        assert!(approved(text) > 1000, "most requests approved:\n{text}");
    }
    for (door, owner) in [(&a, &b), (&b, &a)] {
        let door_status = &admin(door, "GET", "/v1/admin/status", None)["cluster"];
        let owner_status = &admin(owner, "GET", "/v1/admin/status", None)["cluster"];
        assert!(
            door_status["forwarded"].as_u64().unwrap_or(0) > 1000,
            "{}: {door_status}\n{}",
            door.name,
            door.log_text()
        );
        assert!(owner_status["served_for_other_doors"].as_u64().unwrap_or(0) > 1000, "{}: {owner_status}", owner.name);
        assert_eq!(door_status["forward_failures"], 0, "{}: {door_status}", door.name);
    }

    // The same request through two doors: one booking, one answer.
    let pan = card(BIN_B, 7);
    let account = 200_000_007;
    let before = available(&b, account);
    let purchase = financial("0200", "000000", &pan, 1_234, "770001");
    let mut at_b = IsoClient::connect(b.iso);
    assert_eq!(at_b.sign_on().get(39), Some("00"));
    let first = at_b.call(&purchase);
    assert_eq!(first.get(39), Some("00"), "{first:?}");
    let mut at_a = IsoClient::connect(a.iso);
    assert_eq!(at_a.sign_on().get(39), Some("00"));
    let again = at_a.call(&purchase);
    assert_eq!((again.get(39), again.get(38)), (first.get(39), first.get(38)), "the resend through a's door");
    let after = available(&b, account);
    let moved = |text: &str| -> i64 { text.replace('.', "").parse().unwrap() };
    assert_eq!(moved(&before) - moved(&after), 1_234, "the card paid once: {before} -> {after}");
    // A card the map does not place is the door's own (the demo card of issuer 1's BIN
    // 400000 has no route): approved at either door from that node's own books.
    assert_eq!(at_a.call(&financial("0200", "000000", junction_tests::DEMO_PAN, 100, "770002")).get(39), Some("00"));

    // One cut-off for the whole switch, asked of b; a (the first partition by name)
    // merges both parts.
    let cut = admin(&b, "POST", "/v1/admin/cluster/cutoff", None);
    assert_eq!(cut["partitions"], serde_json::json!(["a", "b"]), "{cut}");
    let n = cut["cut"].as_u64().unwrap();
    let merged = a.data_dir.join("clearing").join(junction_clearing::cut_folder_name(n));
    wait_for(&merged.join("manifest.json"), Duration::from_secs(60), "the merged set", &[&a, &b]);
    let report = junction_clearing::verify_folder(&merged).unwrap();
    let cluster = report.manifest.cluster.clone().expect("a merged set says so");
    assert_eq!(cluster.partitions, ["a", "b"]);
    let parts: Vec<&str> = cluster.parts.iter().map(|part| part.partition.as_str()).collect();
    assert_eq!(parts, ["a", "b"]);
    let part_transactions: u64 = cluster.parts.iter().map(|part| part.records.transactions).sum();
    assert_eq!(report.manifest.records.transactions, part_transactions);
    // Each partition booked one loadgen's requests (loadgen's approvals count its
    // resends too, each answered again from the one row of its original).
    for (part, text) in cluster.parts.iter().zip([&text_b, &text_a]) {
        let rows = part.records.transactions;
        assert!(rows > 1000 && approved(text) > 1000, "partition {}: {rows} transactions", part.partition);
    }

    // Each partition's own folder is a part; the acquirer's merged net is the sum of its
    // nets in the parts, and every net of the set sums to zero.
    let part_folder =
        |node: &Node, window: u64| node.data_dir.join("clearing").join(junction_clearing::window_folder_name(window));
    let folder_a = part_folder(&a, cluster.parts[0].window);
    let folder_b = part_folder(&b, cluster.parts[1].window);
    let acquirer = junction_tests::DEMO_ACQUIRER;
    let net = |folder: &Path| junction_tests::position_net(folder, acquirer, "USD");
    assert_eq!(net(&merged), net(&folder_a) + net(&folder_b));
    assert!(net(&folder_a) > 0 && net(&folder_b) > 0, "the acquirer was paid in both partitions");
    let nets: i64 = junction_tests::csv_rows(&merged.join("positions.csv"))
        .iter()
        .filter(|row| row["currency"] == "USD")
        .map(|row| row["net_minor"].parse::<i64>().unwrap())
        .sum();
    assert_eq!(nets, 0);

    // A set that lost a part must not verify, and parts missing one partition are not
    // merged.
    let tampered = dir.path().join("tampered");
    copy_folder(&merged, &tampered);
    let manifest_path = tampered.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    manifest["cluster"]["parts"].as_array_mut().unwrap().pop();
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let problem = junction_clearing::verify_folder(&tampered).unwrap_err().to_string();
    assert!(problem.contains("partition b's part is missing"), "{problem}");
    let only_a = [junction_clearing::Part { partition: "a".into(), folder: folder_a.clone() }];
    let config = junctiond::windows::clearing_config(&demo_config());
    let refused =
        junction_clearing::merge_parts(99, &["a".into(), "b".into()], &only_a, &dir.path().join("out"), &config);
    assert!(matches!(refused, Err(junction_clearing::MergeError::MissingPart(ref p)) if p == "b"), "{refused:?}");

    // `junction clearing merge` makes the same set again by hand from the two folders.
    let output = Command::new(binary("junction"))
        .args(["clearing", "merge", "--cut", &n.to_string(), "--out", dir.path().join("by-hand").to_str().unwrap()])
        .args(["--part", &format!("a={}", folder_a.display()), "--part", &format!("b={}", folder_b.display())])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let by_hand = dir.path().join("by-hand").join(junction_clearing::cut_folder_name(n));
    junction_clearing::verify_folder(&by_hand).unwrap();
    let rows = |folder: &Path| std::fs::read(folder.join("transactions.csv")).unwrap();
    assert_eq!(rows(&by_hand), rows(&merged), "the same parts merge to the same rows");
}

fn copy_folder(from: &Path, to: &PathBuf) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn a_partitions_primary_killed_mid_run_hands_over_to_its_standby_and_the_other_door_loses_nothing() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (_nats, mut a1, mut a2, b) = partition_a_with_a_standby(dir.path());

    // Issuer 1's cards (partition a) through b's door; partition a's primary is killed
    // -9 in the middle. b's door sends what gets no answer again until a2 answers it.
    let both = format!("{},{}", a1.http, a2.http);
    let run = loadgen_with(&b, &both, ISSUER_A, BIN_A, &["--duration", "12s", "--timeout", "30s"]);
    std::thread::sleep(Duration::from_secs(6));
    a1.kill9();
    a2.wait_primary(Duration::from_secs(30));
    let (ok, text) = finished(run);
    assert!(ok && text.contains("verify: PASSED"), "across partition a's takeover:\n{text}");
    assert!(approved(&text) > 2000, "{text}");
    assert!(text.contains("timeouts            0"), "{text}");
    let door = &admin(&b, "GET", "/v1/admin/status", None)["cluster"];
    assert_eq!(door["forward_failures"], 0, "b's door answered 91 for partition a: {door}");
    let taken_over = &admin(&a2, "GET", "/v1/admin/status", None)["cluster"];
    assert!(taken_over["served_for_other_doors"].as_u64().unwrap_or(0) > 100, "a2 after the takeover: {taken_over}");
}

/// An acquirer refunds in both partitions (each books the refunds of the cards it serves):
/// its net debit cap is the whole switch's, leased in slices by the partitions, so what
/// both approve together never passes it.
#[test]
fn a_net_debit_cap_holds_for_the_whole_switch_across_partitions() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (_nats, a, b) = two_partitions(dir.path());
    let cap = 100_000; // 1,000.00 USD for the whole switch
    let set = admin(
        &b,
        "POST",
        "/v1/admin/participants/3/caps",
        Some(serde_json::json!({"currency": "USD", "net_debit_cap": cap})),
    );
    assert_eq!(set["scope"], "switch", "{set}");
    std::thread::sleep(Duration::from_secs(1));

    // The demo card's BIN has no route: each door books its refunds in its own partition.
    let mut clients = [IsoClient::connect(a.iso), IsoClient::connect(b.iso)];
    for client in &mut clients {
        assert_eq!(client.sign_on().get(39), Some("00"));
    }
    let mut approved = [0u64; 2];
    for n in 0..40u64 {
        let side = (n % 2) as usize;
        let refund = financial("0200", "200000", junction_tests::DEMO_PAN, 10_000, &format!("88{n:04}"));
        let answer = clients[side].call(&refund);
        match answer.get(39) {
            Some("00") => approved[side] += 10_000,
            Some("05") => {}
            other => panic!("refund {n}: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    let total = approved[0] + approved[1];
    eprintln!("refunds approved: a {}, b {}, of the switch's cap {cap}", approved[0], approved[1]);
    assert!(
        total <= cap,
        "refunds approved in a {} and b {}: {total} over the switch's cap {cap}",
        approved[0],
        approved[1]
    );
    assert!(approved[0] > 0 && approved[1] > 0, "both partitions refunded: {approved:?}");
    assert!(total >= cap * 3 / 4, "the pool was used, not only declined: {approved:?}");
}

/// The payments of wallet `wallet` a node's ledger booked: its positions' debits.
fn wallet_debits(node: &Node, wallet: u64) -> u64 {
    let positions = admin(node, "GET", "/v1/admin/positions", None);
    positions["positions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["participant"] == wallet)
        .map(|row| row["debit_count"].as_u64().unwrap())
        .sum()
}

/// The demo wallet is placed in partition b. Its payments, through either door, are
/// booked once, in b: a resend through the other door gets the original answer; the
/// payment is found and refunded through a's door; loadgen's QR traffic through a's door
/// adds up in b's positions (with its own duplicates); and the wallet does not move.
#[test]
fn a_wallets_payments_through_either_door_are_booked_once_in_its_partition() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (_nats, a, b) = two_partitions(dir.path());
    let agent = http_agent();
    let merchant = usd_merchant_qr();

    let (status, paid) = wallet_pays(&agent, a.http, &merchant, "door-a-1", 1_234).expect("a's door answers");
    assert_eq!(status, 200, "{paid}");
    let id = paid["payment_id"].as_str().unwrap().to_string();
    for (door, name) in [(&b, "b"), (&a, "a")] {
        let (status, again) = wallet_pays(&agent, door.http, &merchant, "door-a-1", 1_234).expect("answers");
        assert_eq!(status, 200, "the resend through {name}'s door: {again}");
        assert_eq!(again["payment_id"], paid["payment_id"], "through {name}: {again}");
        assert_eq!(again["auth_code"], paid["auth_code"], "through {name}: {again}");
    }
    assert_eq!(wallet_debits(&b, DEMO_WALLET), 1, "booked once, in b");
    assert_eq!(wallet_debits(&a, DEMO_WALLET), 0, "nothing booked in a");

    // The acquirer finds and refunds it through a's door (a does not know it; b does).
    let wallet = (DEMO_WALLET, DEMO_WALLET_KEY_HEX);
    let acquirer = (DEMO_ACQUIRER, ACQUIRER_KEY_HEX);
    let path = format!("/v1/qr/payments/{id}");
    let (status, found) = signed_call(&agent, a.http, "GET", &path, wallet, "");
    assert_eq!((status, found["payment_id"].as_str()), (200, Some(id.as_str())), "{found}");
    let refund = serde_json::json!({ "amount": "2.34", "idempotency_key": "refund-1" }).to_string();
    let (status, refunded) = signed_call(&agent, a.http, "POST", &format!("{path}/refund"), acquirer, &refund);
    assert_eq!(status, 200, "{refunded}");
    let (status, again) = signed_call(&agent, b.http, "POST", &format!("{path}/refund"), acquirer, &refund);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["refund_id"], refunded["refund_id"], "the refund's resend: {again}");
    let (status, unknown) = signed_call(&agent, a.http, "GET", &format!("/v1/qr/payments/{:032x}", 7), wallet, "");
    assert_eq!((status, unknown["error"]["code"].as_str()), (404, Some("unknown_payment")), "{unknown}");

    // loadgen pays as the wallet through a's door; its check sums both partitions.
    let output = Command::new(binary("loadgen"))
        .args(["--mode", "qr", "--http", &a.http.to_string(), "--verify", "--verify-also", &b.http.to_string()])
        .args(["--rate", "100", "--duration", "5s", "--connections", "4", "--timeout", "20s"])
        .output()
        .expect("loadgen runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && text.contains("verify: PASSED"), "loadgen through a's door:\n{text}");
    assert_eq!(wallet_debits(&a, DEMO_WALLET), 0, "still nothing booked in a:\n{text}");
    assert!(wallet_debits(&b, DEMO_WALLET) > 200, "b booked loadgen's payments:\n{text}");
    let door_status = &admin(&a, "GET", "/v1/admin/status", None)["cluster"];
    assert!(door_status["forwarded"].as_u64().unwrap() > 200, "a forwarded them: {door_status}");

    // Placed once: it does not move (its records stay where they were booked).
    let url = format!("http://{}/v1/admin/cluster/issuers/{DEMO_WALLET}", a.http);
    let mut refused = agent
        .put(&url)
        .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_json(serde_json::json!({ "partition": "a" }))
        .unwrap();
    assert_eq!(refused.status().as_u16(), 409);
    let body: serde_json::Value = refused.body_mut().read_json().unwrap();
    assert_eq!(body["error"]["code"], "cannot_move", "{body}");
}

/// Issuer 1 moves from partition a to b while loadgen sends its cards through a's door:
/// nothing lost or doubled (loadgen's positions check, summed over both partitions), no
/// request failed for the move, and what a booked before the move (a resend, a hold's
/// completion, a purchase's reversal) is answered from a's books after it.
#[test]
fn an_issuer_moved_between_partitions_under_load_loses_and_doubles_nothing() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (_nats, a, b) = two_partitions(dir.path());
    let base = 300_000_000u64;
    // Cards of issuer 1 besides loadgen's, and what the move must not forget: a purchase,
    // a hold and a purchase to reverse later, booked by a before loadgen starts (loadgen
    // checks the positions' change over its run alone).
    let account = |serial: u64| base + serial;
    let serials = [11u64, 12, 13, 14];
    let accounts: Vec<serde_json::Value> = serials
        .iter()
        .map(|s| serde_json::json!({"id": account(5_000 + s), "participant": ISSUER_A, "currency": "USD", "opening_balance": 1_000_000}))
        .collect();
    admin(&a, "POST", "/v1/admin/accounts", Some(serde_json::json!({ "accounts": accounts })));
    let cards: Vec<serde_json::Value> = serials
        .iter()
        .map(|s| serde_json::json!({"pan": card(BIN_A, 5_000 + s), "account": account(5_000 + s), "expiry": "3912"}))
        .collect();
    admin(&a, "POST", "/v1/admin/cards", Some(serde_json::json!({ "cards": cards })));
    let mut at_a = IsoClient::connect(a.iso);
    assert_eq!(at_a.sign_on().get(39), Some("00"));
    let purchase = financial("0200", "000000", &card(BIN_A, 5_011), 2_500, "990001");
    let first = at_a.call(&purchase);
    assert_eq!(first.get(39), Some("00"), "{first:?}\n{}", a.log_text());
    let hold = financial("0100", "000000", &card(BIN_A, 5_012), 4_000, "990002");
    assert_eq!(at_a.call(&hold).get(39), Some("00"));
    let to_reverse = financial("0200", "000000", &card(BIN_A, 5_013), 1_500, "990003");
    assert_eq!(at_a.call(&to_reverse).get(39), Some("00"));

    let (base_text, also) = (base.to_string(), b.http.to_string());
    let more = ["--account-base", &base_text, "--duration", "12s", "--timeout", "20s", "--verify-also", &also];
    let run = loadgen_with(&a, &a.http.to_string(), ISSUER_A, BIN_A, &more);
    let deadline = Instant::now() + Duration::from_secs(60);
    while admin(&a, "GET", &format!("/v1/admin/accounts/{}", account(1_999)), None)["available"].is_null() {
        assert!(Instant::now() < deadline, "loadgen did not provision its cards");
        std::thread::sleep(Duration::from_millis(200));
    }

    std::thread::sleep(Duration::from_secs(3));
    // A partition no node runs is refused (the issuer's requests would wait for it).
    let url = format!("http://{}/v1/admin/cluster/issuers/{ISSUER_A}", a.http);
    let refused = http_agent()
        .put(&url)
        .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_json(serde_json::json!({"partition": "c"}))
        .unwrap();
    assert_eq!(refused.status(), 409);
    let moving =
        admin(&a, "PUT", &format!("/v1/admin/cluster/issuers/{ISSUER_A}"), Some(serde_json::json!({"partition": "b"})));
    assert_eq!(moving["moving_to"], "b", "{moving}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = &admin(&b, "GET", "/v1/admin/status", None)["cluster"];
        if status["map"][ISSUER_A.to_string()] == "b" {
            assert_eq!(status["moves"][ISSUER_A.to_string()]["moved_from"], "a", "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "the move did not end: {status}\n{}", a.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }

    let (ok, text) = finished(run);
    assert!(ok && text.contains("verify: PASSED"), "loadgen across the move:\n{text}\n{}", a.log_text());
    assert!(approved(&text) > 2000, "most requests approved:\n{text}");
    assert!(!text.contains(" 91: "), "no request failed for the move:\n{text}");
    let door = &admin(&a, "GET", "/v1/admin/status", None)["cluster"];
    assert!(door["forwarded"].as_u64().unwrap_or(0) > 500, "a's door forwarded after the move: {door}");
    assert_eq!(door["forward_failures"], 0, "{door}");

    // The cards are b's now: b holds their accounts with what they had available.
    assert_ne!(
        admin(&b, "GET", &format!("/v1/admin/accounts/{}", account(1_999)), None)["available"],
        serde_json::Value::Null
    );
    // A resend of a purchase a booked, through b's door: a's answer, booked once.
    let mut at_b = IsoClient::connect(b.iso);
    assert_eq!(at_b.sign_on().get(39), Some("00"));
    let again = at_b.call(&purchase);
    assert_eq!((again.get(39), again.get(38)), (first.get(39), first.get(38)), "the resend after the move");
    // The hold a placed is completed, and the purchase a booked is reversed, through b's
    // door: both are a's to book, where the hold and the purchase are.
    let mut completion = financial("0220", "000000", &card(BIN_A, 5_012), 4_000, "990004");
    completion.set(90, &junction_tests::original_data("0100", "990002")).unwrap();
    assert_eq!(at_b.call(&completion).get(39), Some("00"), "the completion of a's hold");
    let mut reversal = financial("0400", "000000", &card(BIN_A, 5_013), 1_500, "990005");
    reversal.set(90, &junction_tests::original_data("0200", "990003")).unwrap();
    assert_eq!(at_b.call(&reversal).get(39), Some("00"), "the reversal of a's purchase");
    // A new purchase is b's.
    let cents = |text: &str| -> i64 { text.replace('.', "").parse().unwrap() };
    assert_eq!(cents(&available(&b, account(5_014))), 1_000_000, "what the account had moved to b");
    assert_eq!(at_b.call(&financial("0200", "000000", &card(BIN_A, 5_014), 700, "990006")).get(39), Some("00"));
    assert_eq!(cents(&available(&b, account(5_014))), 1_000_000 - 700, "booked at b");
    assert_eq!(cents(&available(&a, account(5_014))), 0, "nothing left at a");
    assert_eq!(cents(&available(&b, account(5_011))), 1_000_000 - 2_500, "the purchase a booked moved with it");
    // The hold stayed at a and was completed there; the rest moved before.
    assert_eq!(cents(&available(&b, account(5_012))), 1_000_000 - 4_000);
    assert_eq!(cents(&available(&a, account(5_012))), 0);
    // The reversal credited the card at a: a sweeps it to b.
    let deadline = Instant::now() + Duration::from_secs(30);
    while cents(&available(&b, account(5_013))) != 1_000_000 {
        assert!(Instant::now() < deadline, "the reversal's money did not reach b:\n{}", a.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(cents(&available(&a, account(5_013))), 0, "swept from a");
    // The configuration's account of issuer 1 is provisioned on both nodes, each with its
    // opening balance: at b it now holds what it had at a, not both.
    assert_eq!(cents(&available(&b, 1002)), 50_000);
    assert_eq!(cents(&available(&a, 1002)), 0);

    // One cut-off: both partitions' parts merge into one set that verifies and nets to zero.
    let cut = admin(&b, "POST", "/v1/admin/cluster/cutoff", None);
    let n = cut["cut"].as_u64().unwrap();
    let merged = a.data_dir.join("clearing").join(junction_clearing::cut_folder_name(n));
    wait_for(&merged.join("manifest.json"), Duration::from_secs(60), "the merged set", &[&a, &b]);
    junction_clearing::verify_folder(&merged).unwrap();
    let nets: i64 = junction_tests::csv_rows(&merged.join("positions.csv"))
        .iter()
        .filter(|row| row["currency"] == "USD")
        .map(|row| row["net_minor"].parse::<i64>().unwrap())
        .sum();
    assert_eq!(nets, 0);
}

/// Issuer 1 moves from a to b under load, and a's primary is killed -9 in the middle of
/// the hand-over (its accounts' money moved out, b not yet told): a's standby takes over
/// and runs the move again. Nothing is lost or booked twice, and the accounts hold at b
/// what they held at a, once.
#[test]
fn a_move_survives_the_old_owners_primary_killed_in_the_middle_of_the_hand_over() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (_nats, mut a1, mut a2, b) = partition_a_with_a_standby(dir.path());

    let (both, also) = (format!("{},{}", a1.http, a2.http), b.http.to_string());
    let more = ["--duration", "14s", "--timeout", "30s", "--verify-also", &also];
    let run = loadgen_with(&b, &both, ISSUER_A, BIN_A, &more);
    std::thread::sleep(Duration::from_secs(4));
    let moving =
        admin(&b, "PUT", &format!("/v1/admin/cluster/issuers/{ISSUER_A}"), Some(serde_json::json!({"partition": "b"})));
    assert_eq!(moving["moving_to"], "b", "{moving}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !a1.log_text().contains("handing over") {
        assert!(Instant::now() < deadline, "a1 did not start the hand-over:\n{}", a1.log_text());
        std::thread::sleep(Duration::from_millis(5));
    }
    a1.kill9();
    a2.wait_primary(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(60);
    while admin(&b, "GET", "/v1/admin/status", None)["cluster"]["map"][ISSUER_A.to_string()] != "b" {
        assert!(Instant::now() < deadline, "a2 did not finish the move:\n{}", a2.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    // a2 ran the move again and ended it (a1 died before b was told).
    assert!(a2.log_text().contains("issuer moved"), "{}", a2.log_text());
    let (ok, text) = finished(run);
    assert!(ok && text.contains("verify: PASSED"), "across the move and a's takeover:\n{text}\n{}", a2.log_text());
    assert!(text.contains("timeouts            0"), "{text}");
    // The configuration's account of issuer 1, on every node with 500.00: at b it holds
    // what it held at a, once; at a nothing.
    let cents = |text: String| -> i64 { text.replace('.', "").parse().unwrap() };
    assert_eq!(cents(available(&b, 1002)), 50_000);
    assert_eq!(cents(available(&a2, 1002)), 0);
}
