//! TLS on both ports and the daemon's secrets, against a real `junctiond`:
//! - ISO 8583 over mutual TLS, driven by the pyiso8583 client through Python's `ssl`
//!   (OpenSSL: a TLS stack independent of the switch's rustls), with a client certificate
//!   signed by the participants' CA; a client without one, and a plain-TCP client, are
//!   refused at the handshake while the switch keeps serving.
//! - HTTPS for the admin API through the `junction` CLI (`--ca-file`): the read token
//!   reads and is refused changes (403), the admin token changes, no token is refused.
//! - Secrets from the environment and from files, printed back by `--print-config` as
//!   their references; the demo's published secrets refused beyond loopback.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use junctiond::config::{Config, TlsConfig};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

const ADMIN: &str = "tls-test-admin-token-0123456789";
const READER: &str = "tls-test-read-token-9876543210";

/// A CA, the switch's certificate (for 127.0.0.1 and localhost) and a participant's
/// client certificate, written as PEM files into `dir`.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "Junction test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, common_name: &str| {
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &ca, &ca_key).unwrap();
        (certificate.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) =
        leaf(vec!["127.0.0.1".into(), "localhost".into()], ExtendedKeyUsagePurpose::ServerAuth, "junctiond test");
    let (client_cert, client_key) = leaf(vec![], ExtendedKeyUsagePurpose::ClientAuth, "acquirer 200001");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", &ca.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server-key.pem", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client-key.pem", &client_key),
    }
}

fn junction_cli(daemon_http: std::net::SocketAddr, pki: &Pki, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(binary("junction"))
        .args(["--url", &format!("https://127.0.0.1:{}", daemon_http.port()), "--token", token])
        .args(["--ca-file", pki.ca.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn both_ports_speak_tls_and_tokens_read_or_change() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let read_token_file = dir.path().join("read-token");
    std::fs::write(&read_token_file, format!("{READER}\n")).unwrap();
    let mut config = Config::embedded_default().unwrap();
    config.switch.admin_token = "env:JUNCTION_TEST_ADMIN".into();
    config.switch.read_token = Some(format!("file:{}", read_token_file.display()));
    config.switch.iso8583_tls = Some(TlsConfig {
        cert_file: pki.server_cert.clone(),
        key_file: pki.server_key.clone(),
        client_ca_file: Some(pki.ca.clone()),
    });
    config.switch.http_tls =
        Some(TlsConfig { cert_file: pki.server_cert.clone(), key_file: pki.server_key.clone(), client_ca_file: None });
    let config_path = dir.path().join("junctiond.toml");
    std::fs::write(&config_path, config.to_toml()).unwrap();

    // --print-config shows where the secrets come from, never the secrets.
    let printed = Command::new(binary("junctiond"))
        .args(["--config", config_path.to_str().unwrap(), "--print-config"])
        .env("JUNCTION_TEST_ADMIN", ADMIN)
        .output()
        .unwrap();
    let printed_text = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.status.success(), "{}", String::from_utf8_lossy(&printed.stderr));
    assert!(printed_text.contains("env:JUNCTION_TEST_ADMIN") && printed_text.contains("file:"), "{printed_text}");
    assert!(!printed_text.contains(ADMIN) && !printed_text.contains(READER));
    // An unset variable is a clear error naming the field, before anything starts.
    let unset = Command::new(binary("junctiond"))
        .args(["--config", config_path.to_str().unwrap(), "--print-config"])
        .env_remove("JUNCTION_TEST_ADMIN")
        .output()
        .unwrap();
    assert!(!unset.status.success());
    let unset_error = String::from_utf8_lossy(&unset.stderr);
    assert!(unset_error.contains("switch.admin_token") && unset_error.contains("JUNCTION_TEST_ADMIN"), "{unset_error}");

    let daemon = Daemon::start_with_env(
        &dir.path().join("data"),
        &["--config", config_path.to_str().unwrap()],
        &[("JUNCTION_TEST_ADMIN", ADMIN)],
    );

    // ISO 8583 over mutual TLS, from OpenSSL's side: the whole interop conversation.
    let python_ready = Command::new(python()).args(["-c", "import iso8583"]).status().is_ok_and(|s| s.success());
    if python_ready {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/iso8583_client.py");
        let output = Command::new(python())
            .args([script, "127.0.0.1", &daemon.iso.port().to_string()])
            .args(["--tls-ca", pki.ca.to_str().unwrap()])
            .args(["--tls-cert", pki.client_cert.to_str().unwrap(), "--tls-key", pki.client_key.to_str().unwrap()])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "TLS client failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        let results: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(results["ok"], true, "{results}");
        assert_eq!(results["purchase"]["39"], "00");
        // Without a client certificate the handshake fails: nothing is answered.
        let anonymous = Command::new(python())
            .args([script, "127.0.0.1", &daemon.iso.port().to_string(), "--tls-ca", pki.ca.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!anonymous.status.success(), "a client without a certificate was served");
    } else {
        assert!(std::env::var("CI").is_err(), "pyiso8583 must be installed in CI (scripts/install-deps.sh)");
        eprintln!("SKIPPED the ISO 8583 TLS conversation: pyiso8583 is not installed; run scripts/install-deps.sh");
    }

    // A plain-TCP client speaking ISO 8583 to the TLS port gets no answer, only a close.
    let mut plain = std::net::TcpStream::connect(daemon.iso).unwrap();
    plain.set_read_timeout(Some(std::time::Duration::from_secs(15))).unwrap();
    plain.write_all(b"\x00\x0c0800\x82\x20\x00\x00").unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"\x00"), "a plain-text frame was answered as ISO 8583: {answer:?}");

    // HTTPS: the read token reads, and cannot change anything.
    let status = junction_cli(daemon.http, &pki, READER, &["--json", "status"]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(status["ledger"].is_object(), "{status}");
    let refused = junction_cli(daemon.http, &pki, READER, &["window", "close"]);
    assert!(!refused.status.success());
    let refused_error = String::from_utf8_lossy(&refused.stderr);
    assert!(refused_error.contains("403") && refused_error.contains("read token"), "{refused_error}");
    let closed = junction_cli(daemon.http, &pki, ADMIN, &["--json", "window", "close"]);
    assert!(closed.status.success(), "{}", String::from_utf8_lossy(&closed.stderr));
    // No token: the views are closed too; health and metrics stay open.
    let agent = https_agent(&pki);
    let url = |path: &str| format!("https://127.0.0.1:{}{path}", daemon.http.port());
    assert_eq!(agent.get(&url("/v1/admin/positions")).call().unwrap().status(), 401);
    assert_eq!(agent.get(&url("/health")).call().unwrap().status(), 200);
    let metrics = agent.get(&url("/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
    let refused_handshakes = metrics
        .lines()
        .find_map(|line| line.strip_prefix("junction_iso8583_refusals_total{reason=\"tls_handshake\"} "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .unwrap();
    assert!(refused_handshakes >= 1.0, "{refused_handshakes}");
    // Plain HTTP to the HTTPS port is not served either.
    let plain_http = ureq::get(&format!("http://{}/health", daemon.http)).call();
    assert!(plain_http.is_err(), "plain HTTP was served on the TLS port");
    // The log never holds the secrets.
    let log = std::fs::read_to_string(&daemon.log).unwrap();
    assert!(!log.contains(ADMIN) && !log.contains(READER));
}

fn https_agent(pki: &Pki) -> ureq::Agent {
    use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
    let pem = std::fs::read(&pki.ca).unwrap();
    let roots: Vec<_> = parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(certificate)) => Some(certificate),
            _ => None,
        })
        .collect();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(TlsConfig::builder().root_certs(RootCerts::new_with_certs(&roots)).build())
        .build()
        .into()
}

#[test]
fn the_demo_secrets_stay_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let refused = Command::new(binary("junctiond"))
        .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
        .args(["--iso8583-listen", "0.0.0.0:0", "--http-listen", "127.0.0.1:0", "--print-config"])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "the demo secrets were accepted on 0.0.0.0");
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("switch.admin_token") && error.contains("--allow-demo-secrets"), "{error}");
    // A test network may say so, knowingly.
    let allowed = Command::new(binary("junctiond"))
        .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
        .args(["--iso8583-listen", "0.0.0.0:0", "--allow-demo-secrets", "--print-config"])
        .output()
        .unwrap();
    assert!(allowed.status.success(), "{}", String::from_utf8_lossy(&allowed.stderr));
}
