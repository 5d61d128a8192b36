//! Interoperability with pyiso8583, an independent ISO 8583 implementation: a Python
//! client encodes requests (and computes MACs) with it, sends them to a real `junctiond`,
//! and decodes the answers with it.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use std::process::Command;

#[test]
fn pyiso8583_drives_junctiond() {
    let python_ready = Command::new("python3").args(["-c", "import iso8583"]).status().is_ok_and(|s| s.success());
    if !python_ready {
        assert!(std::env::var("CI").is_err(), "pyiso8583 must be installed in CI (scripts/install-deps.sh)");
        eprintln!("SKIPPED: pyiso8583 is not installed; run scripts/install-deps.sh");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("data"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/iso8583_client.py");
    let output = Command::new("python3")
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
