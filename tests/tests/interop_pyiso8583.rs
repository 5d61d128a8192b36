//! Interoperability with pyiso8583, an independent ISO 8583 implementation: a Python
//! client encodes requests (and computes MACs) with it, sends them to a real `junctiond`,
//! and decodes the answers with it.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use std::process::Command;

#[test]
fn pyiso8583_drives_junctiond() {
    let python_ready = Command::new(python()).args(["-c", "import iso8583"]).status().is_ok_and(|s| s.success());
    if !python_ready {
        assert!(std::env::var("CI").is_err(), "pyiso8583 must be installed in CI (scripts/install-deps.sh)");
        eprintln!("SKIPPED: pyiso8583 is not installed; run scripts/install-deps.sh");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("data"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/iso8583_client.py");
    let output = Command::new(python())
        .args([script, &daemon.iso.ip().to_string(), &daemon.iso.port().to_string()])
        .output()
        .expect("running the Python client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "pyiso8583 client failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let results: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON results");
    assert_eq!(results["ok"], true);
    // 10000.00 - 12.34 - 40.00 (the completion; its hold's rest released)
    assert_eq!(results["balance_inquiry"]["54"], "0002840C000000994766");
}

/// pyiso8583 as an issuer's host: the switch forwards the acquirer's requests for the
/// hosted BIN to it, MAC'd with the issuer's key, and relays its answers.
#[test]
fn pyiso8583_issuer_host_answers_forwarded_requests() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let python_ready = Command::new(python()).args(["-c", "import iso8583"]).status().is_ok_and(|s| s.success());
    if !python_ready {
        assert!(std::env::var("CI").is_err(), "pyiso8583 must be installed in CI (scripts/install-deps.sh)");
        eprintln!("SKIPPED: pyiso8583 is not installed; run scripts/install-deps.sh");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("data"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/iso8583_issuer.py");
    let mut host = Command::new(python())
        .args([script, &daemon.iso.ip().to_string(), &daemon.iso.port().to_string(), "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the Python issuer host");
    let mut stdout = BufReader::new(host.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the Python issuer host did not sign on");

    let mut acquirer = IsoClient::connect(daemon.iso);
    assert_eq!(acquirer.sign_on().get(39), Some("00"));
    let approved = acquirer.call(&financial("0200", "000000", HOSTED_PAN, 1_999, "000601"));
    assert_eq!((approved.get(39), approved.get(38)), (Some("00"), Some("PY0001")));
    let declined = acquirer.call(&financial("0200", "000000", HOSTED_PAN, 60_000, "000602"));
    assert_eq!(declined.get(39), Some("51"));

    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = host.wait().unwrap();
    let mut stderr = String::new();
    host.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(status.success(), "the Python issuer host failed:\n{rest}\n{stderr}");
    let results: serde_json::Value = serde_json::from_str(rest.trim()).expect("JSON results");
    assert_eq!(results["ok"], true, "{results}");
    for seen in results["seen"].as_array().unwrap() {
        assert_eq!(seen["mac_ok"], true);
        assert_eq!(seen["2"], HOSTED_PAN);
        assert_eq!(seen["32"], ACQUIRER_INSTITUTION);
        assert_eq!(seen["33"], SWITCH_INSTITUTION);
    }
}
