//! `junctiond` as `deploy/junctiond.service` runs it: the notifications systemd's
//! `Type=notify` waits for (read here from a socket of our own, as systemd would), and
//! `deploy/junctiond.example.toml`, which must not start until its secrets are filled in.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The next notification (one datagram: `KEY=value` lines).
fn notification(socket: &UnixDatagram) -> String {
    let mut buffer = [0u8; 4096];
    let length = socket.recv(&mut buffer).expect("a notification within the timeout");
    String::from_utf8(buffer[..length].to_vec()).unwrap()
}

#[test]
fn tells_the_service_manager_when_it_serves_and_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut daemon =
        Daemon::start_with_env(&dir.path().join("data"), &[], &[("NOTIFY_SOCKET", path.to_str().unwrap())]);

    // READY=1 comes once both listeners serve: both answer now.
    let ready = notification(&socket);
    assert!(ready.lines().any(|line| line == "READY=1"), "{ready:?}");
    let status = format!("STATUS=serving: iso8583 {}, http {}", daemon.iso, daemon.http);
    assert!(ready.lines().any(|line| line == status), "{ready:?}");
    assert_eq!(daemon.get_json("/health")["status"], "ok");
    let mut client = IsoClient::connect(daemon.iso);
    assert_eq!(client.sign_on().get(39), Some("00"));

    // SIGTERM: STOPPING=1 as the drain starts, then a clean exit.
    let exit = daemon.terminate();
    let stopping = notification(&socket);
    assert!(stopping.lines().any(|line| line == "STOPPING=1"), "{stopping:?}");
    assert!(exit.success(), "{exit:?}");
    assert!(daemon.log_text().contains("junctiond stopped cleanly"));
}

fn print_config(path: &Path) -> std::process::Output {
    Command::new(binary("junctiond")).arg("--config").arg(path).arg("--print-config").output().unwrap()
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

#[test]
fn the_example_configuration_starts_once_its_secrets_are_filled_in() {
    let dir = tempfile::tempdir().unwrap();
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/junctiond.example.toml"))
            .unwrap();
    let path = dir.path().join("junctiond.toml");
    // Without its TLS sections: their certificate files are the operator's to make
    // (daemon_tls.rs covers TLS with certificates of its own).
    let tls_start = example.find("[switch.iso8583_tls]").unwrap();
    let tls_end = example.find("[qr]").unwrap();
    assert!(example[tls_start..tls_end].contains("[switch.http_tls]"));
    let example = format!("{}{}", &example[..tls_start], &example[tls_end..]);

    // As shipped: refused, naming the first empty secret.
    std::fs::write(&path, &example).unwrap();
    let refused = print_config(&path);
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("switch.admin_token"), "{error}");

    // Each secret as the file says: `openssl rand -hex 32`, one per participant.
    let secrets = ["admin_token = \"\"", "vault_key = \"\"", "key = \"\""];
    assert_eq!(example.lines().filter(|line| secrets.contains(line)).count(), 4, "a token, a vault key, two keys");
    let filled: String = example
        .lines()
        .map(|line| match secrets.iter().find(|secret| line == **secret) {
            Some(secret) => secret.replace("\"\"", &format!("\"{}\"", random_hex())),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, &filled).unwrap();
    let printed = print_config(&path);
    assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
    let mut config = junctiond::config::Config::parse(&String::from_utf8(printed.stdout).unwrap()).unwrap();
    assert_eq!(config.switch.data_dir, Path::new("/var/lib/junction"));
    assert_eq!(config.participants.len(), 2);

    // It serves. The example's index of 50 million ids takes 4.4 GiB at start: a small one
    // here; the listeners and the data dir come from the command line, as in the unit.
    config.switch.index_memory_entries_max = 100_000;
    let daemon = Daemon::start_with_config(&dir.path().join("data"), &config);
    assert_eq!(daemon.get_json("/health")["status"], "ok");
    // Its acquirer signs on with the key generated for it.
    let mut client = IsoClient::connect_as(daemon.iso, "200001", &config.participants[1].key);
    assert_eq!(client.sign_on().get(39), Some("00"));
}
