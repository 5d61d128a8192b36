//! Windows and clearing through the real daemon: close windows while traffic flows, the
//! files appear and verify with `junction clearing verify`, tampering is caught, state
//! changes need the admin token, and every approved amount is in exactly one window.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn post(daemon: &Daemon, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut request = ureq::post(&daemon.url(path)).config().http_status_as_error(false).build();
    if let Some(token) = token {
        request = request.header("authorization", &format!("Bearer {token}"));
    }
    let mut response = request.send_empty().expect("POST");
    let status = response.status().as_u16();
    (status, response.body_mut().read_json().unwrap_or(serde_json::Value::Null))
}

#[test]
fn windows_close_under_traffic_and_files_verify() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("data"));

    // State changes need the admin token.
    assert_eq!(post(&daemon, "/v1/admin/windows/close", None).0, 401);
    assert_eq!(post(&daemon, "/v1/admin/windows/close", Some("wrong-token-wrong-token")).0, 401);

    // Traffic on one thread while windows close on this one.
    let stop = Arc::new(AtomicBool::new(false));
    let address = daemon.iso;
    let traffic = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut client = IsoClient::connect(address);
            assert_eq!(client.sign_on().get(39), Some("00"));
            let mut approved = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let stan = client.next_stan();
                let answer = client.call(&financial("0200", "000000", DEMO_PAN, 7, &stan));
                if answer.get(39) == Some("00") {
                    approved += 7;
                }
            }
            approved
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let mut folders = Vec::new();
    for _ in 0..2 {
        let (status, body) = post(&daemon, "/v1/admin/windows/close", Some(ADMIN_TOKEN));
        assert_eq!(status, 200, "{body}");
        folders.push(std::path::PathBuf::from(body["folder"].as_str().unwrap()));
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    let approved = traffic.join().unwrap();
    assert!(approved > 0);
    let (status, _) = post(&daemon, "/v1/admin/windows/close", Some(ADMIN_TOKEN));
    assert_eq!(status, 200);

    // Wait for the files (written in the background), then verify them with the CLI.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let windows = daemon.get_json("/v1/admin/windows");
        let statuses: Vec<String> =
            windows["windows"].as_array().unwrap().iter().map(|w| w["status"].as_str().unwrap().to_string()).collect();
        if statuses.iter().filter(|s| *s == "files_written").count() == 3 {
            assert_eq!(statuses.last().map(String::as_str), Some("open"));
            break;
        }
        assert!(Instant::now() < deadline, "files not written: {statuses:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let junction = binary("junction");
    for folder in &folders {
        let output = Command::new(&junction).args(["clearing", "verify"]).arg(folder).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let shown = Command::new(&junction).args(["clearing", "show"]).arg(folder).output().unwrap();
        assert!(shown.status.success());
    }

    // Every approved cent is in exactly one window: the acquirer's credits add up.
    let mut credited = 0u128;
    for window in 1..=3 {
        let positions = daemon.get_json(&format!("/v1/admin/positions?window={window}"));
        for row in positions["positions"].as_array().unwrap() {
            if row["participant"] == 3 && row["currency"] == "USD" {
                credited += row["credits_minor"].as_str().unwrap().parse::<u128>().unwrap();
            }
        }
    }
    assert_eq!(credited, u128::from(approved));

    // A tampered copy fails verification, naming the problem; settling needs the files.
    let copy = dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(&folders[0]).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let positions = copy.join("positions.csv");
    let text = std::fs::read_to_string(&positions).unwrap();
    // One changed digit: the first participant's debit count.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut fields: Vec<String> = lines[1].split(',').map(str::to_string).collect();
    fields[3] = (fields[3].parse::<u64>().unwrap() + 1).to_string();
    lines[1] = fields.join(",");
    let tampered = lines.join("\n") + "\n";
    assert_ne!(text, tampered);
    std::fs::write(&positions, tampered).unwrap();
    let output = Command::new(&junction).args(["clearing", "verify"]).arg(&copy).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("positions.csv"));

    assert_eq!(post(&daemon, "/v1/admin/windows/1/settle", Some(ADMIN_TOKEN)).0, 200);
    assert_eq!(post(&daemon, "/v1/admin/windows/99/settle", Some(ADMIN_TOKEN)).0, 409);
    let windows = daemon.get_json("/v1/admin/windows");
    assert_eq!(windows["windows"][0]["status"], "settled");
}
