//! Replication on NATS JetStream, with real processes on loopback: a 3-server NATS cluster,
//! a primary and a standby `junctiond`, and loadgen or a plain ISO 8583 client.

#![allow(clippy::unwrap_used)]

use junction_tests::cluster::{replicated_config, NatsCluster, Node};
use junction_tests::{binary, financial, http_agent, IsoClient, ADMIN_TOKEN, DEMO_PAN};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const LEASE_MS: u64 = 2_000;

/// One cluster at a time: three NATS servers and two daemons per test are plenty for two
/// cores, and lease timing should not compete with another test's load.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// loadgen against both nodes, in the background.
fn loadgen(nodes: [&Node; 2], rate: &str, duration: &str) -> std::process::Child {
    let isos = format!("{},{}", nodes[0].iso, nodes[1].iso);
    let https = format!("{},{}", nodes[0].http, nodes[1].http);
    Command::new(binary("loadgen"))
        .args(["--iso", &isos, "--http", &https, "--provision", "5000", "--rate", rate, "--duration", duration])
        .args(["--timeout", "20s", "--connections", "4", "--verify"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting loadgen")
}

/// A 3-server NATS cluster, node a serving as the primary and node b a caught-up standby.
fn primary_and_standby(dir: &std::path::Path) -> (NatsCluster, Node, Node) {
    let nats = NatsCluster::start(&dir.join("nats"));
    let config = replicated_config(&nats, LEASE_MS);
    let mut a = Node::new(dir, "a", &config);
    let mut b = Node::new(dir, "b", &config);
    a.start(false);
    a.wait_primary(Duration::from_secs(30));
    b.start(true);
    b.wait_caught_up_standby();
    (nats, a, b)
}

fn finished(child: std::process::Child) -> (Output, String) {
    let output = child.wait_with_output().expect("loadgen ran");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output, text)
}

#[test]
fn a_standby_takes_over_from_a_killed_primary_and_every_approval_counts_once() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (_nats, mut a, mut b) = primary_and_standby(dir.path());

    // kill -9 of the primary in the middle of loadgen's run.
    let run = loadgen([&a, &b], "1000", "10s");
    std::thread::sleep(Duration::from_secs(4));
    a.kill9();
    let killed = Instant::now();
    b.wait_primary(Duration::from_secs(20));
    let failover = killed.elapsed();
    let (output, text) = finished(run);
    assert!(output.status.success(), "loadgen failed across the failover:\n{text}");
    assert!(text.contains("verify: PASSED"), "{text}");
    assert!(text.contains("failovers"), "no connection failed over:\n{text}");
    assert!(failover < Duration::from_secs(20), "the standby took {failover:?}");

    // The old primary comes back as a standby and catches up; a second failover, back to
    // it, loses nothing either.
    a.start(true);
    a.wait_caught_up_standby();
    let run = loadgen([&b, &a], "1000", "8s");
    std::thread::sleep(Duration::from_secs(3));
    b.kill9();
    a.wait_primary(Duration::from_secs(20));
    let (output, text) = finished(run);
    assert!(output.status.success() && text.contains("verify: PASSED"), "second failover:\n{text}");

    // The new primary closes the window; its clearing files verify (both runs' traffic,
    // each approval once: loadgen's verify compared the positions above).
    let closed: serde_json::Value = http_agent()
        .post(&format!("http://{}/v1/admin/windows/close", a.http))
        .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_empty()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let folder = std::path::PathBuf::from(closed["folder"].as_str().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !folder.join("manifest.json").exists() {
        assert!(Instant::now() < deadline, "no clearing files in {}", folder.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    junction_clearing::verify_folder(&folder).unwrap();
}

#[test]
fn a_paused_primary_is_fenced_out_and_approves_nothing_after_the_takeover() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (_nats, mut a, mut b) = primary_and_standby(dir.path());

    let mut client = IsoClient::connect(a.iso);
    assert_eq!(client.sign_on().get(39), Some("00"));
    let first = financial("0200", "000000", DEMO_PAN, 1_000, "000501");
    let approved = client.call(&first);
    assert_eq!(approved.get(39), Some("00"));

    // Paused past its lease: the standby takes over.
    a.signal("STOP");
    let paused = financial("0200", "000000", DEMO_PAN, 2_000, "000502");
    client.send(&paused, true);
    b.wait_primary(Duration::from_secs(20));
    a.signal("CONT");

    // What the old primary read while paused, it must not approve; it ends itself.
    if let Some(answer) = client.receive_within(Duration::from_secs(10)) {
        assert_ne!(answer.get(39), Some("00"), "a fenced primary approved: {}", answer.summary());
    }
    let status = a.exited_within(Duration::from_secs(15)).expect("the old primary did not stop");
    assert_eq!(status.code(), Some(junctiond::replication::EXIT_FENCED), "{status:?}");

    // The new primary has the first payment (a resend gets its answer) and books the
    // second once, when it is resent to it.
    let mut client = IsoClient::connect(b.iso);
    assert_eq!(client.sign_on().get(39), Some("00"));
    let again = client.call(&first);
    assert_eq!((again.get(39), again.get(38)), (Some("00"), approved.get(38)), "the resend's original answer");
    let second = client.call(&paused);
    assert_eq!(second.get(39), Some("00"));
    let second_again = client.call(&paused);
    assert_eq!(second_again.get(38), second.get(38));
}

/// A purchase with a new STAN until its answer is `code` (or the time is up): that STAN
/// and the answer's authorization code.
fn until_answered(client: &mut IsoClient, code: &str, within: Duration) -> (String, Option<String>) {
    let deadline = Instant::now() + within;
    loop {
        let stan = client.next_stan();
        let request = financial("0200", "000000", DEMO_PAN, 100, &stan);
        let answer = client.call(&request);
        if answer.get(39) == Some(code) {
            return (stan, answer.get(38).map(str::to_string));
        }
        assert!(Instant::now() < deadline, "no {code} within {within:?}: last answer {}", answer.summary());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn without_a_nats_quorum_the_primary_declines_and_resumes_when_it_is_back() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsCluster::start(&dir.path().join("nats"));
    let config = replicated_config(&nats, LEASE_MS);
    let mut a = Node::new(dir.path(), "a", &config);
    a.start(false);
    a.wait_primary(Duration::from_secs(30));
    let mut client = IsoClient::connect(a.iso);
    client.stan = 600;
    assert_eq!(client.sign_on().get(39), Some("00"));
    let (first_stan, first) = until_answered(&mut client, "00", Duration::from_secs(10));

    // One server down: approvals go on.
    nats.kill(2);
    until_answered(&mut client, "00", Duration::from_secs(20));

    // Two down: no quorum. Past half a lease the primary declines at the door (91).
    nats.kill(1);
    std::thread::sleep(Duration::from_millis(LEASE_MS));
    until_answered(&mut client, "91", Duration::from_secs(20));

    // Back: approvals resume, and nothing approved before was lost. The first request
    // may wait for the stream's new leader and the replicator's catch-up: a longer read.
    nats.restart(1);
    nats.restart(2);
    let back = Instant::now();
    client.stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    until_answered(&mut client, "00", Duration::from_secs(90));
    eprintln!("approvals resumed {:?} after the servers came back", back.elapsed());
    let resend = client.call(&financial("0200", "000000", DEMO_PAN, 100, &first_stan));
    assert_eq!((resend.get(39), resend.get(38).map(str::to_string)), (Some("00"), first));
    assert!(a.exited_within(Duration::ZERO).is_none(), "the primary stopped; see {}", a.log.display());
}

#[test]
fn a_node_whose_journal_the_stream_never_acknowledged_moves_it_aside_and_rebuilds() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    // Two separate logs: node a's journal was acknowledged by log X only; when a rejoins
    // on log Y (node b's), its entries are ones Y never acknowledged, as for a primary that
    // died with entries in flight.
    let log_x = NatsCluster::start_with(&dir.path().join("x"), 1);
    let log_y = NatsCluster::start_with(&dir.path().join("y"), 1);
    let mut a = Node::new(dir.path(), "a", &replicated_config(&log_x, LEASE_MS));
    let mut b = Node::new(dir.path(), "b", &replicated_config(&log_y, LEASE_MS));
    a.start(false);
    a.wait_primary(Duration::from_secs(30));
    let only_on_a = financial("0200", "000000", DEMO_PAN, 700, "000701");
    let mut client = IsoClient::connect(a.iso);
    client.sign_on();
    assert_eq!(client.call(&only_on_a).get(39), Some("00"));
    a.kill9();
    b.start(false);
    b.wait_primary(Duration::from_secs(30));
    let on_b = financial("0200", "000000", DEMO_PAN, 800, "000702");
    let mut client = IsoClient::connect(b.iso);
    client.sign_on();
    let answer_on_b = client.call(&on_b);
    assert_eq!(answer_on_b.get(39), Some("00"));

    a.configure(&replicated_config(&log_y, LEASE_MS));
    a.start(true);
    a.wait_caught_up_standby();
    assert!(a.log_text().contains("moved aside, rebuilding from the stream"), "see {}", a.log.display());
    let aside: Vec<_> = std::fs::read_dir(a.data_dir.as_path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("ledger.diverged-"))
        .collect();
    assert_eq!(aside.len(), 1, "the diverged journal is kept for inspection");

    // a takes over from b with b's books: b's payment is known, a's old one is not.
    b.kill9();
    a.wait_primary(Duration::from_secs(20));
    let mut client = IsoClient::connect(a.iso);
    client.sign_on();
    let again = client.call(&on_b);
    assert_eq!((again.get(39), again.get(38)), (Some("00"), answer_on_b.get(38)));
    let balance = client.call(&financial("0200", "310000", DEMO_PAN, 0, "000703"));
    let opening = junction_tests::demo_config().accounts.iter().find(|x| x.id == 1001).unwrap().opening_balance;
    let expected = format!("0002840C{:012}", opening - 800);
    assert_eq!(balance.get(54), Some(expected.as_str()), "only b's purchase is on the books");
}
