//! The HTTP JSON API: hostile bodies against every endpoint that reads one, sent over a
//! real socket to a daemon running in this process (embedded demo configuration, a real
//! ledger in a temporary folder). No body may crash it, hang it or get a 5xx other than
//! 503 (overloaded or ledger unavailable); every refusal is a JSON error with a code.
//!
//! The first byte of the input picks the endpoint; the rest is the body. QR requests are
//! signed with the demo wallet's key, so the fuzzer reaches the code past the signature.
#![no_main]

use junctiond::{self as daemon, config::Config};
use junction_wire::qr_api;
use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

const ADMIN_TOKEN: &str = "demo-admin-token-change-me";
const WALLET: &str = "5";
const WALLET_KEY: [u8; 16] = [0x55; 16];

/// (path, signed as the wallet, admin token)
const ENDPOINTS: [(&str, bool, bool); 10] = [
    ("/v1/qr/decode", false, false),
    ("/v1/qr/quotes", true, false),
    ("/v1/qr/payments", true, false),
    ("/v1/qr/payments/00000000000000000000000000000001/refund", true, false),
    ("/v1/admin/fx/rates", false, true),
    ("/v1/admin/accounts", false, true),
    ("/v1/admin/cards", false, true),
    ("/v1/admin/accounts/1001/status", false, true),
    ("/v1/admin/participants/5/caps", false, true),
    ("/v1/admin/windows/close", false, true),
];

fn daemon() -> SocketAddr {
    static ADDRESS: OnceLock<SocketAddr> = OnceLock::new();
    *ADDRESS.get_or_init(|| {
        let free = |_| std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
        let (iso, http) = (free(0), free(1));
        let mut config = Config::embedded_default().expect("the embedded config");
        config.switch.data_dir = std::env::temp_dir().join(format!("junction-fuzz-http-{}", std::process::id()));
        config.switch.iso8583_listen = iso;
        config.switch.http_listen = http;
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("a runtime");
            runtime.block_on(daemon::run(config)).expect("the daemon runs");
        });
        for _ in 0..600 {
            if TcpStream::connect(http).is_ok() {
                return http;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the in-process daemon never listened on {http}");
    })
}

fn post(address: SocketAddr, path: &str, signed: bool, admin: bool, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(address).expect("connecting");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("a timeout");
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: fuzz\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if admin {
        head.push_str(&format!("authorization: Bearer {ADMIN_TOKEN}\r\n"));
    }
    if signed {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .to_string();
        let key = "fuzz";
        let signature =
            qr_api::sign_hex(&WALLET_KEY, "POST", path, &timestamp, WALLET, key, body).expect("a valid key");
        head.push_str(&format!(
            "{}: {WALLET}\r\n{}: {timestamp}\r\n{}: {signature}\r\n{}: {key}\r\n",
            qr_api::HEADER_PARTICIPANT,
            qr_api::HEADER_TIMESTAMP,
            qr_api::HEADER_SIGNATURE,
            qr_api::HEADER_IDEMPOTENCY_KEY
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("writing the head");
    stream.write_all(body).expect("writing the body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("the daemon answers");
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let body = match response.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => response[at + 4..].to_vec(),
        None => Vec::new(),
    };
    (status, body)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let (path, signed, admin) = ENDPOINTS[usize::from(selector) % ENDPOINTS.len()];
    let (status, answer) = post(daemon(), path, signed, admin, body);
    assert!(status < 500 || status == 503, "{path}: HTTP {status} for {:?}", String::from_utf8_lossy(body));
    if status >= 400 {
        let json: serde_json::Value = serde_json::from_slice(&answer)
            .unwrap_or_else(|_| panic!("{path}: a non-JSON {status}: {:?}", String::from_utf8_lossy(&answer)));
        assert!(
            json["error"]["code"].is_string() || json["error"].is_string(),
            "{path}: an error without a code: {json}"
        );
    }
});
