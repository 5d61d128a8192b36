//! Helpers shared by Junction's end-to-end tests (the tests themselves live in `tests/`):
//! starting the real `junctiond` binary, a small ISO 8583 client over a real socket, and
//! a signed QR payment over HTTP.

pub mod cluster;

use junction_wire::iso8583::{mac, Iso8583Message, MacKey};
use junction_wire::qr::QrPayloadBuilder;
use junction_wire::qr_api;
use junctiond::config::Config;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The transfer id of transfer `index` of batch `batch` in a crash-test run: batch and
/// index are packed so the checker can tell a whole batch from a part of one.
pub fn crash_transfer_id(run: u32, batch: u64, index: u32) -> u128 {
    (u128::from(run) << 96) | (u128::from(batch) << 32) | u128::from(index) | (1 << 127)
}

/// A binary of the workspace, next to the test executable's folder (`target/<profile>`).
/// `cargo test --workspace` builds them; run `cargo build --release --bins` if missing.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("tests run from target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --release --workspace --bins` first", path.display());
    path
}

/// The Python interpreter of the interop tests: `$JUNCTION_PYTHON`, else the virtual
/// environment `scripts/install-deps.sh` makes (`$JUNCTION_VENV`, default
/// `~/.cache/junction-venv`), else `python3` on the path.
pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("JUNCTION_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = std::env::var_os("JUNCTION_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/junction-venv")));
    match venv.map(|venv| venv.join("bin/python3")) {
        Some(python) if python.exists() => python,
        _ => PathBuf::from("python3"),
    }
}

/// The demo acquirer of the embedded default configuration.
pub const ACQUIRER_INSTITUTION: &str = "200001";
pub const ACQUIRER_KEY_HEX: &str = "33333333333333333333333333333333";
pub const ADMIN_TOKEN: &str = "demo-admin-token-change-me";
/// A demo card of account 1001 (USD 10,000.00), expiring 2912.
pub const DEMO_PAN: &str = "4000001234567899";

/// The demo issuer whose cards (BIN 476173) its own host authorizes, and one of its cards.
pub const HOSTED_ISSUER: u64 = 11;
pub const HOSTED_INSTITUTION: &str = "100003";
pub const HOSTED_KEY_HEX: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
pub const HOSTED_PAN: &str = "4761730000000011";
/// The switch's institution id in the demo configuration (field 33 of what it forwards).
pub const SWITCH_INSTITUTION: &str = "999999";

/// The demo configuration's acquirer participant (of the card purchases and of the USD QR
/// merchant), and its global wallet with the wallet's request key.
pub const DEMO_ACQUIRER: u64 = 3;
pub const DEMO_WALLET: u64 = 5;
pub const DEMO_WALLET_KEY_HEX: &str = "55555555555555555555555555555555";

/// The embedded configuration, as `junctiond --print-config` prints it.
pub fn demo_config() -> Config {
    let output = Command::new(binary("junctiond")).arg("--print-config").output().expect("junctiond --print-config");
    assert!(output.status.success());
    Config::parse(&String::from_utf8(output.stdout).expect("utf-8")).expect("the embedded config parses")
}

/// A running `junctiond` on ephemeral ports with its own data dir. Killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub iso: SocketAddr,
    pub http: SocketAddr,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(data_dir: &Path) -> Daemon {
        Daemon::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Daemon {
        Daemon::start_with_env(data_dir, extra, &[])
    }

    /// Starts it with `extra` arguments and environment variables.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let log = data_dir.with_extension("log");
        let log_file =
            std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("opening the daemon log");
        let mut child = Command::new(binary("junctiond"))
            .args(["--data-dir", data_dir.to_str().expect("utf-8 path")])
            .args(["--iso8583-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("starting junctiond");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        reader.read_line(&mut line).expect("reading junctiond's ready line");
        // Keep draining stdout so the daemon never blocks on it.
        std::thread::spawn(move || for _ in reader.lines() {});
        let field = |name: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|part| part.strip_prefix(name))
                .and_then(|address| address.parse().ok())
                .unwrap_or_else(|| panic!("junctiond did not report {name} (line {line:?}); see {}", log.display()))
        };
        let (iso, http) = (field("iso8583="), field("http="));
        Daemon { child, iso, http, data_dir: data_dir.to_path_buf(), log }
    }

    /// Starts it on `config` (written next to the data dir).
    pub fn start_with_config(data_dir: &Path, config: &Config) -> Daemon {
        let path = data_dir.with_extension("toml");
        std::fs::write(&path, config.to_toml()).expect("writing the config");
        Daemon::start_with(data_dir, &["--config", path.to_str().expect("utf-8 path")])
    }

    /// The resident memory of the process, in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        kib * 1024
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        ureq::get(&self.url(path))
            .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .call()
            .expect("GET")
            .body_mut()
            .read_json()
            .expect("JSON body")
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill -TERM");
        assert!(status.success());
        self.child.wait().expect("waiting for junctiond")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A blocking ISO 8583 client: frames, MACs and matches answers by STAN.
pub struct IsoClient {
    pub stream: TcpStream,
    pub key: MacKey,
    pub institution: String,
    pub stan: u32,
}

impl IsoClient {
    pub fn connect(address: SocketAddr) -> IsoClient {
        IsoClient::connect_as(address, ACQUIRER_INSTITUTION, ACQUIRER_KEY_HEX)
    }

    /// A client of another participant (e.g. an issuer's host).
    pub fn connect_as(address: SocketAddr, institution: &str, key_hex: &str) -> IsoClient {
        let stream = TcpStream::connect(address).expect("connecting to junctiond");
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        let key = MacKey::new(&hex::decode(key_hex).expect("hex")).expect("key");
        IsoClient { stream, key, institution: institution.into(), stan: 0 }
    }

    /// Reads one message if one comes within `wait`.
    pub fn receive_within(&mut self, wait: Duration) -> Option<Iso8583Message> {
        self.stream.set_read_timeout(Some(wait)).expect("timeout");
        let mut prefix = [0u8; 2];
        let got = self.stream.read_exact(&mut prefix);
        self.stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        got.ok()?;
        let mut raw = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        self.stream.read_exact(&mut raw).expect("reading a message");
        let message = Iso8583Message::decode(&raw).expect("the message decodes");
        assert!(message.contains(64) || message.contains(128), "a message without a MAC: {}", message.summary());
        mac::verify(&raw, &self.key).expect("the message's MAC verifies");
        Some(message)
    }

    pub fn next_stan(&mut self) -> String {
        self.stan += 1;
        format!("{:06}", self.stan)
    }

    /// Sends raw bytes as one frame.
    pub fn send_frame(&mut self, raw: &[u8]) {
        let mut framed = Vec::with_capacity(raw.len() + 2);
        framed.extend_from_slice(&(raw.len() as u16).to_be_bytes());
        framed.extend_from_slice(raw);
        self.stream.write_all(&framed).expect("writing a frame");
    }

    pub fn send(&mut self, message: &Iso8583Message, signed: bool) {
        let mut message = message.clone();
        if signed {
            mac::sign(&mut message, &self.key);
        }
        let mut raw = Vec::new();
        message.encode(&mut raw).expect("encoding");
        self.send_frame(&raw);
    }

    /// Reads one answer; checks its MAC when it carries one.
    pub fn receive(&mut self) -> Iso8583Message {
        let mut prefix = [0u8; 2];
        self.stream.read_exact(&mut prefix).expect("reading an answer's length");
        let mut raw = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        self.stream.read_exact(&mut raw).expect("reading an answer");
        let message = Iso8583Message::decode(&raw).expect("the answer decodes");
        if message.contains(64) || message.contains(128) {
            mac::verify(&raw, &self.key).expect("the answer's MAC verifies");
        }
        message
    }

    pub fn call(&mut self, message: &Iso8583Message) -> Iso8583Message {
        self.send(message, true);
        self.receive()
    }

    pub fn sign_on(&mut self) -> Iso8583Message {
        let stan = self.next_stan();
        let message = network(&stan, &self.institution, "001");
        self.call(&message)
    }
}

pub fn network(stan: &str, institution: &str, code: &str) -> Iso8583Message {
    let mut m = Iso8583Message::new("0800").expect("mti");
    m.set(7, "1125120000").expect("7");
    m.set(11, stan).expect("11");
    m.set(32, institution).expect("32");
    m.set(70, code).expect("70");
    m
}

/// A financial request from the demo acquirer's terminal.
pub fn financial(mti: &str, processing: &str, pan: &str, amount: u64, stan: &str) -> Iso8583Message {
    let mut m = Iso8583Message::new(mti).expect("mti");
    m.set(2, pan).expect("2");
    m.set(3, processing).expect("3");
    m.set(4, &format!("{amount:012}")).expect("4");
    m.set(7, "1125120000").expect("7");
    m.set(11, stan).expect("11");
    m.set(12, "120000").expect("12");
    m.set(13, "1125").expect("13");
    m.set(22, "051").expect("22");
    m.set(32, ACQUIRER_INSTITUTION).expect("32");
    m.set(37, &format!("RRN{stan:0>9}")).expect("37");
    m.set(41, "TERM0001").expect("41");
    m.set(42, "MERCHANT0000001").expect("42");
    m.set(49, "840").expect("49");
    m
}

/// An issuer's host's answer to what the switch sent it: its fields echoed, `code`, and
/// `auth` as field 38.
pub fn issuer_answer(request: &Iso8583Message, code: &str, auth: Option<&str>) -> Iso8583Message {
    let mut mti = request.mti().as_bytes().to_vec();
    mti[2] += 1;
    let mut answer = Iso8583Message::new(std::str::from_utf8(&mti).expect("an ASCII MTI")).expect("mti");
    for field in [2, 3, 4, 7, 11, 12, 13, 32, 33, 37, 41, 42, 49, 70, 90] {
        if let Some(value) = request.get(field) {
            answer.set(field, value).expect("an echoed field");
        }
    }
    answer.set(39, code).expect("39");
    if let Some(auth) = auth {
        answer.set(38, auth).expect("38");
    }
    answer
}

/// Field 90 naming an original request sent with `financial` (same transmission time).
pub fn original_data(mti: &str, stan: &str) -> String {
    format!("{mti}{stan}1125120000{ACQUIRER_INSTITUTION:0>11}{:0>11}", 0)
}

/// A USD merchant of the demo acquirer, as a wallet scans it.
pub fn usd_merchant_qr() -> String {
    QrPayloadBuilder::new()
        .merchant_account(26, "com.junction.demo", &[(1, "DINER-42")])
        .mcc("5812")
        .currency_numeric(840)
        .country("US")
        .merchant_name("Junction Diner")
        .merchant_city("Austin")
        .encode()
        .expect("the demo merchant encodes")
}

/// The demo wallet pays `amount` US cents for the `merchant` QR under idempotency `key`:
/// the HTTP status and JSON answer, or `None` when the daemon does not answer.
pub fn wallet_pays(
    agent: &ureq::Agent,
    http: SocketAddr,
    merchant: &str,
    key: &str,
    amount: u64,
) -> Option<(u16, serde_json::Value)> {
    wallet_pays_with(agent, http, merchant, key, amount, &[])
}

/// `wallet_pays` with more HTTP headers (a `traceparent`, say).
pub fn wallet_pays_with(
    agent: &ureq::Agent,
    http: SocketAddr,
    merchant: &str,
    key: &str,
    amount: u64,
    headers: &[(&str, &str)],
) -> Option<(u16, serde_json::Value)> {
    let signer = (DEMO_WALLET, DEMO_WALLET_KEY_HEX);
    participant_pays(agent, http, signer, merchant, key, amount, headers)
}

/// A wallet `(participant, key hex)` pays `amount` US cents for the `merchant` QR under
/// idempotency `key`, its request signed with that key.
pub fn participant_pays(
    agent: &ureq::Agent,
    http: SocketAddr,
    (participant, key_hex): (u64, &str),
    merchant: &str,
    key: &str,
    amount: u64,
    headers: &[(&str, &str)],
) -> Option<(u16, serde_json::Value)> {
    let amount = format!("{}.{:02}", amount / 100, amount % 100);
    let body = serde_json::json!({ "payload": merchant, "payer_currency": "USD", "amount": amount });
    qr_pay(agent, http, (participant, key_hex), &body, key, headers)
}

/// A QR payment request `body` (payload, payer currency, amount...) sent as participant
/// `(id, key hex)` under idempotency `key`, signed with that key: the HTTP status and JSON
/// answer, or `None` when the daemon does not answer.
pub fn qr_pay(
    agent: &ureq::Agent,
    http: SocketAddr,
    (participant, key_hex): (u64, &str),
    body: &serde_json::Value,
    key: &str,
    headers: &[(&str, &str)],
) -> Option<(u16, serde_json::Value)> {
    let path = "/v1/qr/payments";
    let body = body.to_string();
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0).to_string();
    let secret = hex::decode(key_hex).expect("hex");
    let participant = participant.to_string();
    let signature =
        qr_api::sign_hex(&secret, "POST", path, &timestamp, &participant, key, body.as_bytes()).expect("a key");
    let mut request = agent.post(&format!("http://{http}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request
        .header(qr_api::HEADER_PARTICIPANT, &participant)
        .header(qr_api::HEADER_TIMESTAMP, &timestamp)
        .header(qr_api::HEADER_SIGNATURE, &signature)
        .header(qr_api::HEADER_IDEMPOTENCY_KEY, key)
        .header("content-type", "application/json")
        .send(body.as_bytes())
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.body_mut().read_json().ok()?))
}

/// A request signed as participant `(id, key hex)` signs it (no idempotency key): the
/// HTTP status and JSON answer (`null` when the answer is not JSON).
pub fn signed_call(
    agent: &ureq::Agent,
    http: SocketAddr,
    method: &str,
    path: &str,
    (participant, key_hex): (u64, &str),
    body: &str,
) -> (u16, serde_json::Value) {
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0).to_string();
    let secret = hex::decode(key_hex).expect("hex");
    let participant = participant.to_string();
    let signature =
        qr_api::sign_hex(&secret, method, path, &timestamp, &participant, "", body.as_bytes()).expect("a key");
    let url = format!("http://{http}{path}");
    let sent = match method {
        "GET" => agent
            .get(&url)
            .header(qr_api::HEADER_PARTICIPANT, &participant)
            .header(qr_api::HEADER_TIMESTAMP, &timestamp)
            .header(qr_api::HEADER_SIGNATURE, &signature)
            .call(),
        _ => agent
            .post(&url)
            .header(qr_api::HEADER_PARTICIPANT, &participant)
            .header(qr_api::HEADER_TIMESTAMP, &timestamp)
            .header(qr_api::HEADER_SIGNATURE, &signature)
            .header("content-type", "application/json")
            .send(body.as_bytes()),
    };
    let mut response = sent.expect("the daemon answers");
    let status = response.status().as_u16();
    (status, response.body_mut().read_json().unwrap_or(serde_json::Value::Null))
}

/// An HTTP agent that hands back 4xx/5xx answers instead of failing on them.
pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// Closes the daemon's open window and waits for its clearing folder; the folder.
pub fn close_window(daemon: &Daemon) -> PathBuf {
    let response: serde_json::Value = ureq::post(&daemon.url("/v1/admin/windows/close"))
        .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_empty()
        .expect("closing the window")
        .body_mut()
        .read_json()
        .expect("the close's answer");
    let folder = PathBuf::from(response["folder"].as_str().expect("the close names its folder"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !folder.join("manifest.json").exists() {
        assert!(std::time::Instant::now() < deadline, "the files of {} did not appear", folder.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    folder
}

/// Checks a window's folder with `junction clearing verify`, as clearing staff would.
pub fn assert_clearing_verifies(folder: &Path) {
    let output = Command::new(binary("junction")).args(["clearing", "verify"]).arg(folder).output().expect("junction");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A participant's net in a currency in a window's `positions.csv`, in minor units (0 when
/// it has no row).
pub fn position_net(folder: &Path, participant: u64, currency: &str) -> i64 {
    csv_rows(&folder.join("positions.csv"))
        .iter()
        .find(|row| row["participant_id"] == participant.to_string() && row["currency"] == currency)
        .map_or(0, |row| row["net_minor"].parse().expect("net_minor"))
}

/// The rows of a clearing CSV file (no quoted fields) as maps from header name to value.
pub fn csv_rows(path: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).expect("reading a CSV file");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    lines
        .map(|line| header.iter().zip(line.split(',')).map(|(h, v)| (h.to_string(), v.to_string())).collect())
        .collect()
}
