//! `loadgen` end to end against a real `junctiond`: a few seconds of open-loop and
//! closed-loop traffic with the full mix, checked through loadgen's JSON report (the
//! answers add up, duplicates got their original answers, must-decline requests
//! declined) and through `--verify` (the ledger's positions moved exactly by what loadgen
//! saw approved). No wall-clock figure is asserted.

use junction_tests::{binary, Daemon};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn loadgen(daemon: &Daemon, args: &[&str]) -> Output {
    Command::new(binary("loadgen"))
        .args(["--iso", &daemon.iso.to_string(), "--http", &daemon.http.to_string(), "--quiet"])
        .args(args)
        .output()
        .expect("running loadgen")
}

fn text(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn read_report(path: &Path) -> Value {
    let json = std::fs::read_to_string(path).expect("loadgen wrote its JSON report");
    serde_json::from_str(&json).expect("the report is JSON")
}

fn number(report: &Value, pointer: &str) -> u64 {
    report.pointer(pointer).and_then(Value::as_u64).unwrap_or_else(|| panic!("report has no number at {pointer}"))
}

/// The arithmetic every report must satisfy.
fn check_arithmetic(report: &Value) {
    let sent = number(report, "/requests_sent");
    let answered = number(report, "/responses_answered");
    let timeouts = number(report, "/timeouts");
    let lost = number(report, "/requests_lost");
    let by_code: u64 = report["responses_by_code"].as_object().expect("codes").values().filter_map(Value::as_u64).sum();
    assert!(sent > 0, "loadgen sent nothing");
    assert_eq!(by_code, answered, "answers by code add up to the answers");
    assert_eq!(answered, sent - timeouts - lost, "every request sent is answered, timed out or lost");
    let by_kind_sent: u64 = report["by_kind"].as_object().expect("kinds").values().map(|k| number(k, "/sent")).sum();
    assert_eq!(by_kind_sent, sent, "requests by kind add up to requests sent");
    for kind in report["by_kind"].as_object().expect("kinds").values() {
        let codes: u64 = kind["responses_by_code"].as_object().expect("codes").values().filter_map(Value::as_u64).sum();
        assert!(codes + number(kind, "/timeouts") <= number(kind, "/sent"), "{kind}");
    }
    let percentiles = ["latency_us_p50", "latency_us_p90", "latency_us_p99", "latency_us_p999", "latency_us_max"];
    let values: Vec<u64> = percentiles.iter().map(|name| number(report, &format!("/{name}"))).collect();
    assert!(values.windows(2).all(|pair| pair[0] <= pair[1]), "percentiles are ordered: {values:?}");
    assert!(report["throughput_per_s"].as_f64().expect("throughput") > 0.0);
    assert!(!report["series"].as_array().expect("series").is_empty(), "a sample per second");
}

#[test]
fn open_loop_mix_on_provisioned_cards_verifies_against_the_ledger() {
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = Daemon::start(&dir.path().join("data"));
    let json = dir.path().join("report.json");
    let plot = dir.path().join("report.svg");
    let output = loadgen(
        &daemon,
        &[
            "--provision",
            "2000",
            "--skew",
            "zipf",
            "--hot-merchant",
            "0.2",
            "--connections",
            "4",
            "--rate",
            "1500",
            "--duration",
            "6s",
            "--mix",
            "duplicate=8,unknown_card=4,insufficient_funds=4,reversal=6",
            "--verify",
            "--json",
            json.to_str().expect("utf-8 path"),
            "--plot",
            plot.to_str().expect("utf-8 path"),
        ],
    );
    assert!(output.status.success(), "loadgen failed\n{}", text(&output));
    let report = read_report(&json);
    check_arithmetic(&report);

    // Open loop sends exactly what the schedule had due.
    assert_eq!(number(&report, "/requests_sent"), number(&report, "/target_requests"));
    assert_eq!(number(&report, "/requests_sent"), 9000);
    assert_eq!(number(&report, "/timeouts"), 0);
    assert_eq!(number(&report, "/connection_errors"), 0);
    assert_eq!(number(&report, "/unmatched_answers") + number(&report, "/bad_answers"), 0);

    // Every kind of the mix was sent; approvals, unknown cards and short funds were seen.
    for (name, kind) in report["by_kind"].as_object().expect("kinds") {
        assert!(number(kind, "/sent") > 0, "no {name} was sent");
    }
    for code in ["00", "14", "51"] {
        assert!(number(&report, &format!("/responses_by_code/{code}")) > 0, "no answer {code}");
    }

    // Duplicates got their original's answer; must-decline requests declined as they must.
    let duplicates = &report["duplicates"];
    assert!(number(duplicates, "/sent") > 0);
    assert_eq!(number(duplicates, "/mismatched"), 0, "{}", report["mismatch_examples"]);
    assert_eq!(number(duplicates, "/matched") + number(duplicates, "/overloaded"), number(duplicates, "/sent"));
    for must in report["must_decline"].as_object().expect("must_decline").values() {
        assert!(number(must, "/sent") > 0);
        assert_eq!(number(must, "/mismatched"), 0, "{must}");
    }

    // The ledger moved exactly what loadgen saw approved: issuer 1 paid acquirer 3 in USD.
    let verify = &report["verify"];
    assert_eq!(verify["passed"], true, "{}", text(&output));
    let rows = verify["rows"].as_array().expect("rows");
    assert!(rows.iter().any(|row| row["participant"] == 1 && row["currency"] == "USD"));
    assert!(rows.iter().all(|row| row["matches"] == true));
    assert!(String::from_utf8_lossy(&output.stdout).contains("verify: PASSED"));

    // The plot is drawn where a font is available (Debian's fonts-dejavu-core).
    if Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").exists() {
        let svg = std::fs::read_to_string(&plot).expect("loadgen wrote the plot");
        assert!(svg.contains("<svg") && svg.contains("latency"), "an SVG with its titles");
    }
}

#[test]
fn closed_loop_on_the_demo_cards_in_two_currencies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = Daemon::start(&dir.path().join("data"));
    let json = dir.path().join("report.json");
    let output = loadgen(
        &daemon,
        &[
            "--closed-loop",
            "--in-flight",
            "32",
            "--connections",
            "2",
            "--duration",
            "2s",
            "--verify",
            "--json",
            json.to_str().expect("utf-8 path"),
        ],
    );
    assert!(output.status.success(), "loadgen failed\n{}", text(&output));
    let report = read_report(&json);
    check_arithmetic(&report);
    assert!(report["target_requests"].is_null(), "closed loop has no schedule");
    assert_eq!(number(&report, "/duplicates/mismatched"), 0, "{}", report["mismatch_examples"]);
    let verify = &report["verify"];
    assert_eq!(verify["passed"], true, "{}", text(&output));
    // The demo cards are a USD card of issuer 1 and a JPY card of issuer 2.
    let rows = verify["rows"].as_array().expect("rows");
    for (participant, currency) in [(1, "USD"), (2, "JPY"), (3, "USD"), (3, "JPY")] {
        assert!(
            rows.iter().any(|row| row["participant"] == participant && row["currency"] == currency),
            "no position of participant {participant} in {currency}: {rows:?}"
        );
    }
}

#[test]
fn qr_mode_pays_merchants_in_several_currencies_and_verifies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = Daemon::start(&dir.path().join("data"));
    let json = dir.path().join("report.json");
    let output = loadgen(
        &daemon,
        &[
            "--mode",
            "qr",
            "--rate",
            "150",
            "--duration",
            "3s",
            "--connections",
            "4",
            "--mix",
            "duplicate=10",
            "--verify",
            "--json",
            json.to_str().expect("utf-8 path"),
        ],
    );
    assert!(output.status.success(), "loadgen failed\n{}", text(&output));
    let report = read_report(&json);
    check_arithmetic(&report);
    assert_eq!(report["mode"], "qr");
    assert_eq!(number(&report, "/requests_sent"), number(&report, "/target_requests"));
    assert_eq!(number(&report, "/requests_sent"), 450);
    assert_eq!(number(&report, "/timeouts") + number(&report, "/requests_lost"), 0);
    assert_eq!(number(&report, "/connection_errors"), 0);
    assert_eq!(number(&report, "/bad_answers"), 0);
    // Well within the demo wallet's cap: every payment is approved (HTTP 200).
    assert_eq!(number(&report, "/responses_by_code/200"), 450, "{}", report["responses_by_code"]);

    let duplicates = &report["duplicates"];
    assert!(number(duplicates, "/sent") > 0, "no duplicate payment was sent");
    assert_eq!(number(duplicates, "/mismatched"), 0, "{}", report["mismatch_examples"]);
    assert_eq!(number(duplicates, "/matched") + number(duplicates, "/overloaded"), number(duplicates, "/sent"));

    // Wallet 5 paid in SGD through FX provider 6 to the acquirers of every scheme.
    let verify = &report["verify"];
    assert_eq!(verify["passed"], true, "{}", text(&output));
    let rows = verify["rows"].as_array().expect("rows");
    assert!(rows.iter().all(|row| row["matches"] == true));
    for (participant, currency) in [(5, "SGD"), (6, "SGD"), (4, "THB"), (7, "BRL"), (8, "IDR"), (9, "CNY"), (3, "USD")]
    {
        assert!(
            rows.iter().any(|row| row["participant"] == participant && row["currency"] == currency),
            "no position of participant {participant} in {currency}: {rows:?}"
        );
    }
}

#[test]
fn verify_fails_loudly_when_other_traffic_moves_money() {
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = Daemon::start(&dir.path().join("data"));
    // Other traffic on the switch while a verified run is going on.
    let mut other = Command::new(binary("loadgen"))
        .args(["--iso", &daemon.iso.to_string(), "--http", &daemon.http.to_string(), "--quiet"])
        .args(["--rate", "400", "--duration", "4s", "--connections", "1", "--mix", "purchase=100,duplicate=0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting the other loadgen");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let output = loadgen(&daemon, &["--rate", "200", "--duration", "2s", "--connections", "1", "--verify"]);
    let _ = other.wait();
    assert_eq!(output.status.code(), Some(3), "verify must fail with status 3\n{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("DIFFERENT") && stdout.contains("verify: FAILED"), "{}", text(&output));
}

#[test]
fn refuses_what_it_cannot_do() {
    let run = |args: &[&str]| Command::new(binary("loadgen")).args(args).output().expect("running loadgen");
    let qr = run(&["--mode", "qr", "--rate", "10", "--provision", "10"]);
    assert_eq!(qr.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&qr.stderr).contains("--provision"), "{}", text(&qr));
    let stranger = run(&["--mode", "qr", "--rate", "10", "--wallet", "42"]);
    assert_eq!(stranger.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stranger.stderr).contains("--wallet-key"), "{}", text(&stranger));
    let nowhere = run(&["--iso", "not-an-address", "--rate", "10"]);
    assert_eq!(nowhere.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("not an address"), "{}", text(&nowhere));
    let no_pacing = run(&[]);
    assert_eq!(no_pacing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_pacing.stderr).contains("choose a pacing"), "{}", text(&no_pacing));
}

/// Resends at overload: the daemon's in-flight bound is tiny, so a good share of the
/// traffic is told to try again (91); every deliberate duplicate still gets its original's
/// answer or 91, never another one, whether the original was approved or declined
/// (unknown card, insufficient funds), with refunds moving balances in between. loadgen
/// exits non-zero on any mismatch.
#[test]
fn duplicates_at_overload_get_their_original_answer_or_91() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = junction_tests::demo_config();
    // Commits gathered for 5 ms, so that at 6,000/s some 30 requests wait at once: past the
    // bound of 16 on any machine.
    config.switch.requests_in_flight_max = 16;
    config.switch.commit_delay_us = 5_000;
    let daemon = Daemon::start_with_config(&dir.path().join("data"), &config);
    let json = dir.path().join("report.json");
    let output = loadgen(
        &daemon,
        &[
            "--provision",
            "500",
            "--connections",
            "4",
            "--rate",
            "6000",
            "--duration",
            "4s",
            "--mix",
            "purchase=40,refund=10,duplicate=25,unknown_card=5,insufficient_funds=20",
            "--json",
            json.to_str().expect("utf-8 path"),
        ],
    );
    let report = read_report(&json);
    assert!(output.status.success(), "loadgen failed (a duplicate answered otherwise?)\n{}", text(&output));
    check_arithmetic(&report);
    let duplicates = &report["duplicates"];
    assert!(number(duplicates, "/sent") > 100, "{duplicates}");
    assert_eq!(number(duplicates, "/mismatched"), 0, "{}", report["mismatch_examples"]);
    assert!(number(&report, "/responses_by_code/91") > 0, "the daemon was never overloaded: the test proves nothing");
    assert!(number(&report, "/responses_by_code/51") > 0, "no decline for funds to resend");
}

/// Four parties: loadgen as an issuer's host (signed on as the demo hosted issuer, which
/// goes away for two seconds mid-run) and loadgen as an acquirer sending that issuer's
/// cards. The switch forwards, relays, stands in while the host is away and advises it
/// afterwards; both ends' `--verify` must find the ledger's positions equal to what they
/// saw (the issuer counting its own approvals and the switch's advices).
#[test]
fn four_parties_with_an_issuer_host_that_goes_away() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = junction_tests::demo_config();
    config.issuer_links.timeout_ms = 500;
    config.issuer_links.echo_interval_ms = 500;
    config.issuer_links.advice_retry_ms = 300;
    let daemon = Daemon::start_with_config(&dir.path().join("data"), &config);
    let issuer_json = dir.path().join("issuer.json");
    let issuer_out = std::fs::File::create(dir.path().join("issuer.out")).expect("issuer output file");
    let mut issuer = Command::new(binary("loadgen"))
        .args(["--iso", &daemon.iso.to_string(), "--http", &daemon.http.to_string(), "--quiet"])
        .args(["--mode", "issuer", "--institution", junction_tests::HOSTED_INSTITUTION])
        .args(["--key", junction_tests::HOSTED_KEY_HEX, "--issuer", "11", "--connections", "2"])
        .args(["--latency", "1ms:4ms", "--approve", "0.9", "--duration", "9s", "--verify"])
        .args(["--outage", "3s:2s", "--outage-kind", "disconnect"])
        .args(["--json", issuer_json.to_str().expect("utf-8 path")])
        .stdout(issuer_out.try_clone().expect("file"))
        .stderr(issuer_out)
        .spawn()
        .expect("starting loadgen as the issuer");
    std::thread::sleep(std::time::Duration::from_millis(800));
    let acquirer_json = dir.path().join("acquirer.json");
    let acquirer = loadgen(
        &daemon,
        &[
            "--hosted-cards",
            "300",
            "--issuer",
            "11",
            "--rate",
            "300",
            "--duration",
            "6s",
            "--mix",
            "authorization=0,completion=0,unknown_card=0",
            "--verify",
            "--json",
            acquirer_json.to_str().expect("utf-8 path"),
        ],
    );
    let issuer_status = issuer.wait().expect("the issuer loadgen ends");
    let issuer_text = std::fs::read_to_string(dir.path().join("issuer.out")).unwrap_or_default();
    assert!(acquirer.status.success(), "the acquirer's --verify failed\n{}", text(&acquirer));
    assert!(issuer_status.success(), "the issuer's --verify failed\n{issuer_text}");
    let acquirer_report = read_report(&acquirer_json);
    let issuer_report = read_report(&issuer_json);
    check_arithmetic(&acquirer_report);
    assert!(number(&acquirer_report, "/stood_in") > 0, "the host's outage was never stood in for");
    assert!(number(&issuer_report, "/approved") > 0, "the host approved nothing");
    assert_eq!(
        number(&issuer_report, "/stand_in_approved") + number(&issuer_report, "/stand_in_declined"),
        number(&acquirer_report, "/stood_in"),
        "one advice per stand-in decision the acquirer saw\n{issuer_text}"
    );
    assert!(number(&issuer_report, "/reconnects") > 0);
    assert_eq!(issuer_report["verify"]["passed"], true, "{issuer_text}");
    assert_eq!(number(&acquirer_report, "/duplicates/mismatched"), 0);
}
