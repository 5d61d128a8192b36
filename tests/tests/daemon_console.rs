//! The operator's console in a real browser: headless Chromium, driven through
//! chromedriver (WebDriver, with the `fantoccini` crate), against a real `junctiond` while
//! an acquirer's ISO 8583 traffic flows (approvals, 51s and 14s, echo tests).
//!
//! It checks that the page loads and runs with nothing in the browser's log (no script
//! error, no Content-Security-Policy violation, no failed load), and asks for a token
//! before it asks the daemon for anything; that with the read token its figures change as
//! traffic flows; that declines show masked card numbers and the page never holds a full
//! one; that a participant name with markup in it is shown as text; that an action
//! without the admin token (with the read token) is refused and nothing changes; that a
//! window closed from the page, with the admin token, shows up with its files verified,
//! and that one of its files downloads through the page byte for byte.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/install-deps.sh` installs
//! them; `$JUNCTION_CHROMIUM` and `$JUNCTION_CHROMEDRIVER` name other binaries). Without
//! them the test fails, saying so: it never passes without a browser.
//!
//! What it leaves behind, in the cargo target folder (`target/test-output/daemon_console/`,
//! next to `target/release/`): `console.png`, a screenshot of the whole page at the end
//! of the run, and `browser-log.json`, everything the browser logged.
//!
//! Nothing here asserts a time: every wait is bounded only so that a broken console fails
//! instead of hanging.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use fantoccini::{Client, ClientBuilder, Locator};
use junction_tests::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest any one thing may take to show up on the page before the test gives up.
const WAIT_MAX: Duration = Duration::from_secs(60);

/// How often a wait looks again.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// A participant name with markup in it, as a configuration could hold one: the page must
/// show these characters, not make elements of them.
const MARKUP_NAME: &str = "Bangkok <b>Acquirer</b> & \"Co\" <img src=x>";
const MARKUP_PARTICIPANT: u64 = 4;

/// The daemon's read token in this test: views, no changes.
const READ_TOKEN: &str = "console-test-read-token";

/// A card number nobody provisioned (declined 14).
const UNKNOWN_PAN: &str = "4111111111111111";

/// The flags this machine's closed network needs (Chromium's background connections are
/// refused otherwise and it stalls), headless, and a screen of a laptop.
const CHROMIUM_FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1440,900",
];

/// `(chromium, chromedriver)`, or a failure that says how to get them.
fn browser_binaries() -> (PathBuf, PathBuf) {
    let find = |variable: &str, default: &str| {
        std::env::var_os(variable).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default))
    };
    let chromium = find("JUNCTION_CHROMIUM", "/usr/bin/chromium");
    let chromedriver = find("JUNCTION_CHROMEDRIVER", "/usr/bin/chromedriver");
    for (binary, package) in [(&chromium, "chromium"), (&chromedriver, "chromium-driver")] {
        assert!(
            binary.exists(),
            "{} is missing: the console test needs a real browser. Run scripts/install-deps.sh \
             (it installs Debian's `chromium` and `chromium-driver`), or apt-get install {package}; \
             $JUNCTION_CHROMIUM and $JUNCTION_CHROMEDRIVER name binaries elsewhere.",
            binary.display()
        );
    }
    (chromium, chromedriver)
}

/// `target/test-output/daemon_console/`, emptied.
fn output_folder() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target
    let target = exe.parent().and_then(Path::parent).and_then(Path::parent).unwrap();
    let folder = target.join("test-output").join("daemon_console");
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).unwrap();
    folder
}

/// An acquirer's terminal sending purchases on one connection until stopped: mostly
/// approved cents on the demo card, every tenth too large (51), every tenth on an
/// unknown card (14), and an echo test now and then.
struct Traffic {
    stop: Arc<AtomicBool>,
    answers: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<(u64, u64)>>,
}

impl Traffic {
    fn start(iso: std::net::SocketAddr) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(AtomicU64::new(0));
        let (stopping, counting) = (Arc::clone(&stop), Arc::clone(&answers));
        let thread = std::thread::spawn(move || {
            let mut client = IsoClient::connect(iso);
            assert_eq!(client.sign_on().get(39), Some("00"));
            let (mut approved, mut declined) = (0u64, 0u64);
            let mut sent = 0u64;
            while !stopping.load(Ordering::Relaxed) {
                sent += 1;
                let stan = client.next_stan();
                let request = match sent % 10 {
                    // More than the card's account holds (USD 10,000.00).
                    3 => financial("0200", "000000", DEMO_PAN, 2_000_000, &stan),
                    7 => financial("0200", "000000", UNKNOWN_PAN, 1_000, &stan),
                    _ => financial("0200", "000000", DEMO_PAN, 1, &stan),
                };
                match client.call(&request).get(39) {
                    Some("00") => approved += 1,
                    Some(_) => declined += 1,
                    None => panic!("an answer without a response code"),
                }
                if sent.is_multiple_of(50) {
                    let stan = client.next_stan();
                    let echo = network(&stan, ACQUIRER_INSTITUTION, "301");
                    assert_eq!(client.call(&echo).get(39), Some("00"));
                }
                counting.fetch_add(1, Ordering::Relaxed);
                // A steady trickle, not a benchmark: the browser shares the machine.
                std::thread::sleep(Duration::from_millis(4));
            }
            (approved, declined)
        });
        Traffic { stop, answers, thread: Some(thread) }
    }

    /// Stops it: (approved, declined).
    fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// chromedriver and the browser session it runs. Dropping it ends the session (which
/// ends Chromium) and then chromedriver, also when the test fails half way.
struct Browser {
    driver: Child,
    port: u16,
    client: Option<Client>,
    session: String,
    /// Where a failed wait leaves a screenshot.
    output: PathBuf,
}

impl Browser {
    async fn start(chromium: &Path, chromedriver: &Path, dir: &Path, downloads: &Path, output: &Path) -> Browser {
        // A free port for chromedriver (it cannot be told to pick one and say which).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.join("chromedriver.log");
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
        let mut browser = Browser { driver, port, client: None, session: String::new(), output: output.into() };
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            let status = http_agent()
                .get(&format!("http://127.0.0.1:{port}/status"))
                .call()
                .ok()
                .and_then(|mut response| response.body_mut().read_json::<Value>().ok());
            if status.as_ref().and_then(|s| s["value"]["ready"].as_bool()) == Some(true) {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready; see {}", log.display());
            tokio::time::sleep(POLL_EVERY).await;
        }
        let profile = dir.join("chromium-profile");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|flag| flag.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": args,
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                },
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(capabilities) = capabilities else { unreachable!() };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("starting a Chromium session: {e}; see {}", log.display()));
        browser.session = client.session_id().await.unwrap().expect("a session id");
        browser.client = Some(client);
        browser
    }

    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// What the browser logged since the last call (chromedriver's log endpoint: console
    /// messages, script errors, CSP violations, failed loads).
    fn log(&self) -> Vec<Value> {
        let url = format!("http://127.0.0.1:{}/session/{}/se/log", self.port, self.session);
        let mut response = http_agent().post(&url).send_json(json!({ "type": "browser" })).unwrap();
        let body: Value = response.body_mut().read_json().unwrap();
        body["value"].as_array().cloned().unwrap_or_default()
    }

    async fn script(&self, script: &str) -> Value {
        self.client().execute(script, vec![]).await.unwrap_or_else(|e| panic!("running {script}: {e}"))
    }

    async fn text(&self, id: &str) -> String {
        let value = self.script(&format!("return document.getElementById('{id}').textContent;")).await;
        value.as_str().unwrap_or_default().to_string()
    }

    /// Waits until `script` returns something other than null, false or "", and returns it.
    async fn until(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            let value = self.script(script).await;
            if !matches!(&value, Value::Null | Value::Bool(false)) && value.as_str() != Some("") {
                return value;
            }
            if Instant::now() >= deadline {
                if let Ok(png) = self.client().screenshot().await {
                    let _ = std::fs::write(self.output.join("failure.png"), png);
                }
                panic!("the console never showed {what} ({script}); see failure.png in {}", self.output.display());
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    async fn click(&self, id: &str) {
        self.client().find(Locator::Id(id)).await.unwrap().click().await.unwrap();
    }

    /// Clicks `button`, waits for the confirmation dialog, and confirms.
    async fn click_and_confirm(&self, button: &str) {
        self.click(button).await;
        self.until("the confirmation dialog", "return document.getElementById('confirm').open;").await;
        self.click("confirm-ok").await;
        self.until("the dialog closing", "return !document.getElementById('confirm').open;").await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("http://127.0.0.1:{}/session/{}", self.port, self.session);
            let _ = http_agent().delete(&url).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Types a token into the page's bar and uses it.
async fn type_token(browser: &Browser, token: &str) {
    browser.client().find(Locator::Id("token-input")).await.unwrap().send_keys(token).await.unwrap();
    browser.click("token-save").await;
}

/// A figure of a tile, as a number ("12,345" -> 12345).
fn figure(text: &str) -> u64 {
    text.chars().filter(char::is_ascii_digit).collect::<String>().parse().unwrap_or(0)
}

/// Log entries that would mean the console is broken: errors and warnings.
fn problems(log: &[Value]) -> Vec<&Value> {
    log.iter().filter(|entry| matches!(entry["level"].as_str(), Some("SEVERE" | "WARNING"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_live_figures_and_acts_only_with_the_admin_token() {
    let (chromium, chromedriver) = browser_binaries();
    let output = output_folder();
    let dir = tempfile::tempdir().unwrap();
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();

    let mut config = demo_config();
    config.participants.iter_mut().find(|p| p.id == MARKUP_PARTICIPANT).unwrap().name = MARKUP_NAME.into();
    config.switch.read_token = Some(READ_TOKEN.into());
    let daemon = Daemon::start_with_config(&dir.path().join("data"), &config);
    let traffic = Traffic::start(daemon.iso);
    let browser = Browser::start(&chromium, &chromedriver, dir.path(), &downloads, &output).await;
    let mut log = Vec::new();

    // The page needs no token; without one it asks for one, and asks the daemon nothing.
    browser.client().goto(&daemon.url("/")).await.unwrap();
    assert_eq!(browser.client().title().await.unwrap(), "Junction console");
    browser
        .until(
            "that it needs a token",
            "return document.getElementById('connection-state').textContent === 'no token';",
        )
        .await;
    assert_eq!(browser.text("token-state").await, "not set");
    let asked = browser
        .script("return performance.getEntriesByType('resource').filter(e => e.name.includes('/v1/')).length;")
        .await;
    assert_eq!(asked.as_u64(), Some(0), "no API call without a token");

    // With the read token it shows everything.
    type_token(&browser, READ_TOKEN).await;
    browser
        .until("that it is live", "return document.getElementById('connection-state').dataset.state === 'live';")
        .await;
    browser
        .until("read access", "return document.getElementById('token-state').textContent === 'read: views only';")
        .await;

    // The figures move with the traffic: answers since start, and the throughput chart
    // gets a point a second.
    let points = "return Number(document.getElementById('chart-throughput').dataset.points || 0);";
    let answers_before = figure(&browser.text("tile-answers").await);
    let points_before = browser.script(points).await.as_u64().unwrap();
    browser
        .until(
            "answers going up",
            &format!(
                "return Number(document.getElementById('tile-answers').textContent.replace(/\\D/g, '')) > {answers_before};"
            ),
        )
        .await;
    browser.until("a new second on the chart", &format!("{} > {points_before};", points.trim_end_matches(';'))).await;
    browser
        .until(
            "a throughput",
            "return Number(document.getElementById('tile-throughput').textContent.replace(/\\D/g, '')) > 0;",
        )
        .await;
    browser.until("a latency", "return document.getElementById('tile-latency').textContent.includes('ms');").await;
    assert!(traffic.answers.load(Ordering::Relaxed) > 0);

    // Declines with masked cards, and the codes' bars.
    let declines = "return document.querySelector('#declines tbody').textContent;";
    browser
        .until(
            "a 51 on the demo card, masked",
            &format!("{} .includes('400000******7899');", declines.trim_end_matches(';')),
        )
        .await;
    browser
        .until(
            "a 14 on the unknown card, masked",
            &format!("{} .includes('411111******1111');", declines.trim_end_matches(';')),
        )
        .await;
    browser
        .until(
            "the 51s among the codes",
            "return document.getElementById('decline-codes').textContent.includes('51 insufficient funds');",
        )
        .await;
    let page = browser.client().source().await.unwrap();
    assert!(!page.contains(DEMO_PAN) && !page.contains(UNKNOWN_PAN), "a full card number on the page");

    // Participants: the acquirer is signed on and its echo was seen; a name with markup
    // is text, and made no element.
    browser
        .until(
            "the acquirer signed on",
            &format!("return document.querySelector('#participants tr[data-participant=\"{DEMO_ACQUIRER}\"] .badge').textContent === 'signed on';"),
        )
        .await;
    browser
        .until(
            "the acquirer's last echo",
            &format!("return document.querySelector('#participants tr[data-participant=\"{DEMO_ACQUIRER}\"] td:nth-child(7)').textContent.endsWith('ago');"),
        )
        .await;
    let name = browser
        .script(&format!(
            "return document.querySelector('#participants tr[data-participant=\"{MARKUP_PARTICIPANT}\"] td:nth-child(2)').textContent;"
        ))
        .await;
    assert_eq!(name.as_str(), Some(MARKUP_NAME));
    let injected = browser.script("return document.querySelectorAll('main b, main img').length;").await;
    assert_eq!(injected.as_u64(), Some(0), "markup from a participant's name became elements");
    // Positions against caps: the issuer of the demo card owes, the acquirer is owed.
    browser.until("the issuer's USD position", "return document.querySelector('#positions tr[data-participant=\"1\"][data-currency=\"USD\"] .meter') !== null;").await;

    // Up to here, the browser logged nothing wrong: no script error, no CSP violation,
    // no failed load.
    let entries = browser.log();
    log.extend(entries.iter().cloned());
    assert!(problems(&entries).is_empty(), "the browser logged problems: {:#?}", problems(&entries));

    // An action with the read token only: the page asks, warns, sends, and shows the
    // refusal; the window stays open.
    browser.click("close-window").await;
    browser.until("the confirmation dialog", "return document.getElementById('confirm').open;").await;
    let warned = browser.script("return !document.getElementById('confirm-token').hidden;").await;
    assert_eq!(warned, Value::Bool(true), "the dialog warns that the token cannot act");
    browser.click("confirm-ok").await;
    let notice = browser
        .until(
            "the refusal",
            "const n = document.getElementById('notice'); return !n.hidden && n.dataset.kind === 'error' && n.textContent;",
        )
        .await;
    assert!(notice.as_str().unwrap().contains("admin token"), "{notice}");
    let windows = daemon.get_json("/v1/admin/windows");
    assert_eq!(windows["windows"].as_array().unwrap().len(), 1, "nothing closed without the token: {windows}");
    assert_eq!(windows["windows"][0]["state"], "open");
    // The only thing the browser logged about it is the daemon's refusal (403).
    let entries = browser.log();
    log.extend(entries.iter().cloned());
    let unexpected: Vec<&Value> =
        problems(&entries).into_iter().filter(|e| !e["message"].as_str().unwrap_or("").contains("403")).collect();
    assert!(unexpected.is_empty(), "the browser logged problems: {unexpected:#?}");

    // With the admin token: the window closes, and shows up with its files verified.
    type_token(&browser, ADMIN_TOKEN).await;
    browser
        .until(
            "admin access",
            "return document.getElementById('token-state').textContent === 'admin: views and actions';",
        )
        .await;
    browser.click_and_confirm("close-window").await;
    browser
        .until("the close", "const n = document.getElementById('notice'); return n.dataset.kind === 'info' && n.textContent.startsWith('Window #1 closed');")
        .await;
    browser
        .until(
            "window 1 verified",
            "return document.querySelector('#windows tr[data-window=\"1\"] [data-verification=\"verified\"]') !== null;",
        )
        .await;
    browser
        .until(
            "window 2 open",
            "return document.querySelector('#windows tr[data-window=\"2\"][data-status=\"open\"]') !== null;",
        )
        .await;
    let windows = daemon.get_json("/v1/admin/windows");
    let closed = windows["windows"].as_array().unwrap().iter().find(|w| w["window"] == 1).unwrap().clone();
    assert_eq!(closed["status"], "files_written", "{windows}");
    let files = daemon.get_json("/v1/admin/windows/1/files");
    assert_eq!(files["verification"]["verified"], true, "{files}");
    let folder = PathBuf::from(closed["folder"].as_str().unwrap());

    // A file of the window downloads through the page (with the token in a header).
    browser
        .script("document.querySelector('#windows tr[data-window=\"1\"] button[data-file=\"positions.csv\"]').click(); return true;")
        .await;
    let downloaded = downloads.join("window-00000001-positions.csv");
    let deadline = Instant::now() + WAIT_MAX;
    while !downloaded.exists() {
        assert!(Instant::now() < deadline, "the download of positions.csv never arrived in {}", downloads.display());
        tokio::time::sleep(POLL_EVERY).await;
    }
    // Chromium renames the file into place once it is whole.
    assert_eq!(std::fs::read(&downloaded).unwrap(), std::fs::read(folder.join("positions.csv")).unwrap());

    // Suspending a participant from its row (with a confirmation), then reinstating it.
    let wallet_row = format!("#participants tr[data-participant=\"{DEMO_WALLET}\"]");
    for (label, suspended, badge) in [("Suspend…", true, "suspended"), ("Reinstate…", false, "QR API (HTTP)")] {
        browser
            .until(
                label,
                &format!("const b = document.querySelector('{wallet_row} button'); return b !== null && b.textContent === '{label}';"),
            )
            .await;
        browser.script(&format!("document.querySelector('{wallet_row} button').click(); return true;")).await;
        browser.until("the confirmation dialog", "return document.getElementById('confirm').open;").await;
        browser.click("confirm-ok").await;
        browser
            .until(
                "the participant's new state",
                &format!("return document.querySelector('{wallet_row} .badge').textContent === '{badge}';"),
            )
            .await;
        let participants = daemon.get_json("/v1/admin/participants");
        let wallet = participants["participants"].as_array().unwrap().iter().find(|p| p["id"] == DEMO_WALLET).unwrap();
        assert_eq!(wallet["suspended"], suspended, "{participants}");
    }

    // The token stayed in this tab's session storage and out of every URL the page asked for.
    let urls = browser
        .script("return performance.getEntriesByType('resource').map(e => e.name).concat([location.href]);")
        .await;
    assert!(!urls.to_string().contains(ADMIN_TOKEN), "the token is in a URL: {urls}");
    let stored = browser.script("return [sessionStorage.getItem('junction.adminToken'), localStorage.length];").await;
    assert_eq!(stored, json!([ADMIN_TOKEN, 0]));

    // The whole page, for people to look at.
    browser.client().set_window_size(1440, 2300).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let png = browser.client().screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(output.join("console.png"), &png).unwrap();

    let entries = browser.log();
    log.extend(entries.iter().cloned());
    std::fs::write(output.join("browser-log.json"), serde_json::to_string_pretty(&log).unwrap()).unwrap();
    assert!(problems(&entries).is_empty(), "the browser logged problems: {:#?}", problems(&entries));

    let (approved, declined) = traffic.stop();
    assert!(approved > 0 && declined > 0, "traffic: {approved} approved, {declined} declined");
    drop(browser);
    drop(daemon);
}
