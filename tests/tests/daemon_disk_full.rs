//! Disk trouble through the real daemon: its data directory is a small tmpfs that fills
//! up under traffic. The daemon must stop approving (91), say why in its log, /health and
//! /metrics, keep running, and after a restart with room again every purchase it approved
//! is in the ledger, exactly once. Needs root to mount the tmpfs; skipped (loudly)
//! otherwise, but CI runs as root.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use std::process::Command;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_stops_approvals_and_loses_nothing_approved() {
    let dir = tempfile::tempdir().unwrap();
    // The data dir is the mount point itself, so the daemon's log (data.log) stays outside.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=96m", "tmpfs"])
        .arg(&data)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert!(std::env::var("CI").is_err(), "CI runs as root and must be able to mount a tmpfs");
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
        return;
    }
    let mount = Mount(data.clone());
    let mut config = demo_config();
    // A small write-ahead log, so that RocksDB preallocates little and the full disk
    // shows within a few thousand purchases.
    config.switch.ledger_wal_size_bytes_max = 1 << 20;
    let mut daemon = Daemon::start_with_config(&data, &config);
    let mut client = IsoClient::connect(daemon.iso);
    assert_eq!(client.sign_on().get(39), Some("00"));
    let stan = client.next_stan();
    assert_eq!(client.call(&financial("0200", "000000", DEMO_PAN, 1, &stan)).get(39), Some("00"));
    let mut approved = 1u64;
    // Fill the disk, leaving a little room.
    let filler = data.join("filler");
    let status = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=128", "status=none"])
        .arg(format!("of={}", filler.display()))
        .status()
        .unwrap();
    assert!(!status.success(), "dd stops when the disk is full");
    let _ = Command::new("truncate").args(["-s", "-1M"]).arg(&filler).status();
    // Purchase until the daemon stops approving.
    let mut refusal = None;
    for _ in 0..200_000 {
        let stan = client.next_stan();
        let code = client.call(&financial("0200", "000000", DEMO_PAN, 1, &stan)).get(39).unwrap().to_string();
        if code == "00" {
            approved += 1;
        } else {
            refusal = Some(code);
            break;
        }
    }
    let refusal = refusal.expect("the full disk stopped approvals");
    assert!(refusal == "91" || refusal == "96", "answered {refusal}");
    // It stays up and keeps refusing; health, metrics and the log say why.
    for _ in 0..20 {
        let stan = client.next_stan();
        let code = client.call(&financial("0200", "000000", DEMO_PAN, 1, &stan)).get(39).unwrap().to_string();
        assert!(code == "91" || code == "96", "approved on a full disk: {code}");
    }
    let mut health = ureq::get(&daemon.url("/health")).config().http_status_as_error(false).build().call().unwrap();
    assert_eq!(health.status().as_u16(), 503);
    let body: serde_json::Value = health.body_mut().read_json().unwrap();
    assert_eq!(body["status"], "failing");
    assert!(!body["reason"].as_str().unwrap().is_empty());
    let metrics = ureq::get(&daemon.url("/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
    assert!(metrics.contains("junction_ledger_healthy 0"), "the metrics say the ledger is failing");
    let log = daemon.log_text();
    assert!(log.contains("ledger write failed"), "the log says why approvals stopped");
    daemon.kill9();
    // Room again: restart, and every approval is there exactly once.
    std::fs::remove_file(&filler).unwrap();
    let daemon = Daemon::start_with_config(&data, &config);
    let account = daemon.get_json("/v1/admin/accounts/1001");
    assert_eq!(account["balances"]["debits_posted"].as_u64(), Some(approved));
    let mut client = IsoClient::connect(daemon.iso);
    assert_eq!(client.sign_on().get(39), Some("00"));
    client.stan = 500_000;
    let stan = client.next_stan();
    assert_eq!(client.call(&financial("0200", "000000", DEMO_PAN, 1, &stan)).get(39), Some("00"));
    eprintln!("disk full after {approved} approved purchases: answered {refusal}");
    drop(daemon);
    drop(mount);
}
