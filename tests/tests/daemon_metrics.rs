//! The operations guide's metrics against a running daemon: every metric the guide names
//! is exported (replication's by a replicated node: their lines come from the same code),
//! every exported metric is in the guide, and the Grafana dashboard and the Prometheus
//! alerts in `deploy/` use only exported metrics.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use junction_tests::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Metric families of an exposition text: the names of its TYPE lines.
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Every `junction_...` metric name in a text (a doc, a dashboard, rules), with a
/// histogram's series suffixes taken off.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(found) = text[at..].find("junction_") {
        let start = at + found;
        let preceded = start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |length| start + length);
        if !preceded {
            let name = &text[start..end];
            let name =
                ["_bucket", "_sum", "_count"].iter().find_map(|suffix| name.strip_suffix(suffix)).unwrap_or(name);
            names.insert(name.to_string());
        }
        at = end;
    }
    names
}

/// The value of the sample whose line starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn scrape(daemon: &Daemon) -> String {
    ureq::get(&daemon.url("/metrics")).call().unwrap().body_mut().read_to_string().unwrap()
}

#[test]
fn the_guide_lists_what_is_exported_and_deploy_uses_only_that() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("data"));

    // Traffic on both front ends, a decline, and a window closed with its files.
    let mut client = IsoClient::connect(daemon.iso);
    assert_eq!(client.sign_on().get(39), Some("00"));
    let stan = client.next_stan();
    assert_eq!(client.call(&financial("0200", "000000", DEMO_PAN, 1_500, &stan)).get(39), Some("00"));
    let stan = client.next_stan();
    assert_eq!(client.call(&financial("0200", "000000", DEMO_PAN, 2_000_000, &stan)).get(39), Some("51"));
    let (status, answer) = wallet_pays(&http_agent(), daemon.http, &usd_merchant_qr(), "metrics-qr-1", 250).unwrap();
    assert_eq!((status, answer["state"].as_str()), (200, Some("approved")), "{answer}");
    let closed = ureq::post(&daemon.url("/v1/admin/windows/close"))
        .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_empty()
        .unwrap();
    assert_eq!(closed.status().as_u16(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = scrape(&daemon);
        if sample(&text, "junction_clearing_folders_total{result=\"verified\"}") == Some(1.0) {
            break text;
        }
        assert!(Instant::now() < deadline, "the closed window's folder is not verified:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    };

    // The figures of what just happened.
    // The sign-on's answer (00) is an ISO 8583 answer too.
    assert_eq!(sample(&text, "junction_responses_total{code=\"00\",interface=\"iso8583\"}"), Some(2.0), "{text}");
    assert_eq!(sample(&text, "junction_responses_total{code=\"51\",interface=\"iso8583\"}"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "junction_responses_total{code=\"00\",interface=\"qr\"}"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "junction_engine_declines_total{reason=\"insufficient_funds\"}"), Some(1.0));
    assert_eq!(sample(&text, "junction_request_latency_seconds_count"), Some(2.0), "{text}");
    assert_eq!(sample(&text, "junction_clearing_folders_total{result=\"failed\"}"), Some(0.0));
    assert_eq!(sample(&text, "junction_clearing_windows_unverified"), Some(0.0));
    assert_eq!(sample(&text, "junction_ledger_healthy"), Some(1.0));
    assert!(sample(&text, "junction_ledger_entries_total").unwrap() >= 3.0, "{text}");
    assert!(sample(&text, "junction_ledger_commit_seconds_total").unwrap() > 0.0, "{text}");
    assert!(sample(&text, "junction_ledger_recovery_seconds").unwrap() < 60.0, "recovery in seconds: {text}");
    // The window closed a moment ago: the open one began then, in seconds since the epoch.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let opened = sample(&text, "junction_window_opened_timestamp_seconds").unwrap();
    assert!(now - 60.0 < opened && opened <= now + 1.0, "opened {opened}, now {now}");
    // The demo's hosted issuer has no host signed on.
    assert_eq!(sample(&text, "junction_issuer_links{issuer=\"11\",state=\"in_rotation\"}"), Some(0.0), "{text}");

    let mut exported = families(&text);
    for family in &exported {
        assert!(family.starts_with("junction_"), "{family} lacks the junction_ prefix");
        assert!(!family.contains("_us"), "{family}: times are exported in seconds");
    }
    let replicated = families(&junctiond::replication::Status::default().metrics());
    assert!(replicated.contains("junction_replication_lag"), "{replicated:?}");
    exported.extend(replicated);
    exported.extend(families(&junctiond::cluster::Counters::default().metrics()));

    let guide = std::fs::read_to_string(repository().join("docs/operations.md")).unwrap();
    let documented = names_in(&guide);
    let undocumented: Vec<_> = exported.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&exported).collect();
    assert!(undocumented.is_empty(), "exported, not in docs/operations.md: {undocumented:?}");
    assert!(missing.is_empty(), "in docs/operations.md, never exported: {missing:?}");

    for file in ["deploy/grafana/junction.json", "deploy/prometheus/alerts.yml"] {
        let used = names_in(&std::fs::read_to_string(repository().join(file)).unwrap());
        assert!(used.len() > 10, "{file} uses {used:?}");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(unknown.is_empty(), "{file} uses metrics that are not exported: {unknown:?}");
    }
}
