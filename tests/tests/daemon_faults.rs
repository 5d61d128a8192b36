//! A broken invariant ends the process: a panic injected into any pipeline thread (a
//! shard, the commit stage, the completion stage, the ledger's writer) takes the whole
//! daemon down at once, by a signal, instead of leaving the other stages answering 91 or
//! waiting forever. A restart on the same data recovers, and every approval answered
//! before the fault is still there.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

fn inject(daemon: &Daemon, stage: &str) {
    let response = ureq::post(&daemon.url("/v1/admin/faults/panic"))
        .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_json(serde_json::json!({ "stage": stage }))
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}

/// Waits for the daemon to exit on its own; its exit status.
fn wait_for_exit(daemon: &mut Daemon) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the daemon did not end after a panic in a pipeline thread");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_panic_in_any_pipeline_thread_ends_the_process_and_a_restart_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut approved_before = 0u64;
    let mut approvals = Vec::new();
    for stage in ["shard", "commit", "completion", "ledger-writer"] {
        let mut daemon = Daemon::start_with(&data, &["--enable-fault-injection"]);
        let mut client = IsoClient::connect(daemon.iso);
        assert_eq!(client.sign_on().get(39), Some("00"));
        // One approval before the fault, on the books for good.
        client.stan = 1000 * (approved_before as u32 + 1);
        let stan = client.next_stan();
        let approved = client.call(&financial("0200", "000000", DEMO_PAN, 100, &stan));
        assert_eq!(approved.get(39), Some("00"), "{stage}: the purchase before the fault");
        approvals.push((client.stan, approved.get(38).unwrap().to_string()));
        approved_before += 1;
        inject(&daemon, stage);
        // The next request reaches the stage, which panics: the process must end.
        let stan = client.next_stan();
        client.send(&financial("0200", "000000", DEMO_PAN, 100, &stan), true);
        let status = wait_for_exit(&mut daemon);
        assert_eq!(status.signal(), Some(libc_sigabrt()), "{stage}: ended by {status:?}, not by SIGABRT");
        assert!(
            daemon.log_text().contains("fault injected"),
            "{stage}: the panic message is in the log before the abort"
        );
    }
    // A restart recovers: every approval answered before a fault is on the books, and its
    // resend gets the original answer. The request that met the fault was never answered:
    // it may or may not have been committed, never twice.
    let daemon = Daemon::start(&data);
    let mut client = IsoClient::connect(daemon.iso);
    assert_eq!(client.sign_on().get(39), Some("00"));
    for (stan, auth_code) in &approvals {
        let resend = client.call(&financial("0200", "000000", DEMO_PAN, 100, &format!("{stan:06}")));
        assert_eq!(resend.get(39), Some("00"));
        assert_eq!(resend.get(38), Some(auth_code.as_str()), "the resend of STAN {stan} gets the original answer");
    }
    let account = daemon.get_json("/v1/admin/accounts/1001");
    let debits = account["balances"]["debits_posted"].as_u64().unwrap();
    assert!(
        (approved_before * 100..=approved_before * 2 * 100).contains(&debits),
        "approvals before the faults survived, and no request was booked twice: {account}"
    );
}

#[test]
fn fault_injection_is_refused_unless_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("data"));
    let agent = http_agent();
    let response = agent
        .post(&daemon.url("/v1/admin/faults/panic"))
        .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_json(serde_json::json!({ "stage": "shard" }))
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let mut client = IsoClient::connect(daemon.iso);
    assert_eq!(client.sign_on().get(39), Some("00"));
}

fn libc_sigabrt() -> i32 {
    6
}
