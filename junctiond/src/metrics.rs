//! Prometheus metrics of the daemon. What each one means is in `docs/operations.md`, whose
//! table `tests/tests/daemon_metrics.rs` checks against a running daemon's `/metrics`.
//!
//! Two kinds: counters the front ends bump as things happen (registered here), and figures
//! other parts keep for themselves (the engine's, the ledger's, the windows'), read at each
//! scrape into a `Scrape` and written out by `render`. Times are in seconds and sizes in
//! bytes, with the unit in the name; one thing is counted by one metric.

use junction_engine::ResponseCode;
use junction_ledger::{IndexReport, WriterReport};
use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// The `interface` label of answers: which front end sent them.
pub const INTERFACE_ISO8583: &str = "iso8583";
pub const INTERFACE_QR: &str = "qr";
/// Credit transfers (`credit/`): the code is the ISO 20022 status (ACSC, PDNG) or status
/// reason (AC01, AM02, DUPL, FF01, ...) of the answer.
pub const INTERFACE_ISO20022: &str = "iso20022";

pub struct Metrics {
    pub registry: Registry,
    pub messages_received: IntCounter,
    /// Answers sent, by front end and response code.
    pub responses_by_code: IntCounterVec,
    /// ISO 8583 requests the gateway answered itself, without the engine, by reason.
    pub frame_errors: IntCounter,
    /// ISO 8583 connections whose TLS handshake failed or timed out.
    pub tls_handshake_failures: IntCounter,
    pub format_errors: IntCounter,
    pub security_refusals: IntCounter,
    /// Requests answered 91 at once because their connection was behind (see `Backlog`).
    pub requests_shed: IntCounter,
    /// Requests answered 91 at the door because `requests_in_flight_max` were in.
    pub requests_refused_in_flight_max: IntCounter,
    pub request_latency: Histogram,
    /// Issuer hosts (see `forwarding.rs`).
    pub issuer_answers: IntCounter,
    pub issuer_timeouts: IntCounter,
    pub issuer_late_answers: IntCounter,
    pub issuer_unmatched_answers: IntCounter,
    pub stand_in: IntCounter,
    pub advices_acknowledged: IntCounter,
    pub advices_outstanding: IntGauge,
    /// Not exported: the last declines of both front ends, for the console
    /// (`activity.rs`). Here because both front ends already share this struct.
    pub recent_declines: crate::activity::RecentDeclines,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("junction".into()), None)?;
        let messages_received = IntCounter::new("iso8583_messages_received_total", "ISO 8583 messages received")?;
        let responses_by_code = IntCounterVec::new(
            Opts::new("responses_total", "Answers sent, by front end (iso8583, qr, iso20022) and response code (ISO 8583; ISO 20022 status or reason for iso20022)"),
            &["interface", "code"],
        )?;
        let refusals = IntCounterVec::new(
            Opts::new(
                "iso8583_refusals_total",
                "ISO 8583 messages the gateway answered itself without the engine, by reason",
            ),
            &["reason"],
        )?;
        let buckets =
            vec![0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
        let request_latency = Histogram::with_opts(
            HistogramOpts::new(
                "request_latency_seconds",
                "From an ISO 8583 request's arrival to its answer being queued for writing",
            )
            .buckets(buckets),
        )?;
        let issuer_answers = IntCounter::new("issuer_answers_total", "Forwarded requests the issuer answered in time")?;
        let issuer_timeouts = IntCounter::new(
            "issuer_unanswered_total",
            "Forwarded requests the issuer did not answer in time, or that found no link",
        )?;
        let issuer_late_answers =
            IntCounter::new("issuer_late_answers_total", "Issuer answers that came after the switch answered")?;
        let issuer_unmatched_answers =
            IntCounter::new("issuer_unmatched_answers_total", "Responses from issuers matching nothing sent")?;
        let stand_in = IntCounter::new("stand_in_total", "Requests the switch decided standing in for an issuer")?;
        let advices_acknowledged =
            IntCounter::new("advices_acknowledged_total", "Advices an issuer acknowledged (then forgotten)")?;
        let advices_outstanding =
            IntGauge::new("advices_outstanding", "Advices kept until their issuer acknowledges them")?;
        for collector in [
            Box::new(messages_received.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(responses_by_code.clone()),
            Box::new(refusals.clone()),
            Box::new(request_latency.clone()),
            Box::new(issuer_answers.clone()),
            Box::new(issuer_timeouts.clone()),
            Box::new(issuer_late_answers.clone()),
            Box::new(issuer_unmatched_answers.clone()),
            Box::new(stand_in.clone()),
            Box::new(advices_acknowledged.clone()),
            Box::new(advices_outstanding.clone()),
        ] {
            registry.register(collector)?;
        }
        // Every reason is exported from the start (at 0), so a rate over it always exists.
        let refusal = |reason: &str| refusals.with_label_values(&[reason]);
        Ok(Metrics {
            registry,
            messages_received,
            responses_by_code,
            frame_errors: refusal("frame"),
            tls_handshake_failures: refusal("tls_handshake"),
            format_errors: refusal("format"),
            security_refusals: refusal("security"),
            requests_shed: refusal("shed"),
            requests_refused_in_flight_max: refusal("in_flight_max"),
            request_latency,
            issuer_answers,
            issuer_timeouts,
            issuer_late_answers,
            issuer_unmatched_answers,
            stand_in,
            advices_acknowledged,
            advices_outstanding,
            recent_declines: crate::activity::RecentDeclines::default(),
        })
    }

    /// An ISO 8583 answer of the engine's, and how long its request took.
    pub fn observe(&self, code: ResponseCode, latency: Duration) {
        self.responses_by_code.with_label_values(&[INTERFACE_ISO8583, code.as_str()]).inc();
        self.request_latency.observe(latency.as_secs_f64());
    }

    /// The exposition text: the registry's metrics, then the figures read for this scrape.
    pub fn render(&self, scrape: &Scrape) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        let mut text = String::from_utf8(buffer).unwrap_or_default();
        scrape.write(&mut text);
        text
    }
}

/// The figures other parts of the daemon keep, read at one scrape.
pub struct Scrape {
    pub version: &'static str,
    pub commit: &'static str,
    pub ledger_healthy: bool,
    pub writer: WriterReport,
    pub index: IndexReport,
    pub recovery_us: u64,
    pub declines_by_reason: BTreeMap<&'static str, u64>,
    pub queue_depths: Vec<usize>,
    pub connections_open: usize,
    pub requests_in_flight: usize,
    /// Per issuer with a hosted BIN or a link: (issuer, links in rotation, links out of it).
    pub issuer_links: Vec<(u64, usize, usize)>,
    /// When the open settlement window began, seconds since the epoch.
    pub window_opened_unix_s: f64,
    pub clearing: ClearingFigures,
    /// With replication: the node's own lines (`replication::Status::metrics`).
    pub replication: Option<String>,
    /// A partitioned switch: the partition's own lines (`cluster::Partitions::metrics`).
    pub cluster: Option<String>,
}

/// What the daemon did with closed windows' clearing files since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClearingFigures {
    /// Folders written (or found written) that passed verification.
    pub verified: u64,
    /// Folders that could not be written, or that did not verify.
    pub failed: u64,
    /// Closed windows newer than the newest folder verified.
    pub windows_unverified: u64,
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

/// One metric's HELP and TYPE lines.
fn header(text: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(text, "# HELP junction_{name} {help}\n# TYPE junction_{name} {kind}");
}

/// A metric without labels.
fn single(text: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(text, name, kind, help);
    let _ = writeln!(text, "junction_{name} {value}");
}

impl Scrape {
    fn write(&self, text: &mut String) {
        header(text, "build_info", "gauge", "The running build: its version and git commit (always 1)");
        let _ = writeln!(text, "junction_build_info{{version=\"{}\",commit=\"{}\"}} 1", self.version, self.commit);
        single(
            text,
            "ledger_healthy",
            "gauge",
            "1 while the ledger can write; 0 after a write failed (approvals stop)",
            u8::from(self.ledger_healthy),
        );
        let writer = &self.writer;
        for (name, kind, help, value) in [
            ("ledger_group_commits_total", "counter", "Synced ledger writes (group commits)", writer.group_commits),
            ("ledger_entries_total", "counter", "Journal entries written", writer.entries),
            ("ledger_bytes_total", "counter", "Journal bytes written", writer.bytes),
            (
                "ledger_index_entries",
                "gauge",
                "Request keys and transfer ids in the in-memory index",
                self.index.entries_in_memory,
            ),
            (
                "ledger_cold_lookups_total",
                "counter",
                "Lookups in the cold index (ids memory did not have that could be older than memory)",
                self.index.cold_lookups,
            ),
        ] {
            single(text, name, kind, help, value);
        }
        for (name, kind, help, us) in [
            ("ledger_commit_seconds_total", "counter", "Time spent in synced writes", writer.commit_us_total),
            ("ledger_commit_seconds_max", "gauge", "The longest synced write since start", writer.commit_us_max),
            (
                "ledger_wait_seconds_max",
                "gauge",
                "The longest a journal entry waited from queued to durable since start (stalls)",
                writer.wait_us_max,
            ),
            (
                "ledger_pause_seconds_max",
                "gauge",
                "The longest gap between two group commits while requests waited (for the sequencer or the disk) since start",
                writer.pause_us_max,
            ),
            ("ledger_recovery_seconds", "gauge", "How long the ledger's recovery took at start", self.recovery_us),
        ] {
            single(text, name, kind, help, seconds(us));
        }
        header(text, "engine_declines_total", "counter", "Declines decided by the engine, by reason");
        for (reason, count) in &self.declines_by_reason {
            let _ = writeln!(text, "junction_engine_declines_total{{reason=\"{reason}\"}} {count}");
        }
        header(text, "shard_queue_depth", "gauge", "Requests waiting in each shard's queue");
        for (shard, depth) in self.queue_depths.iter().enumerate() {
            let _ = writeln!(text, "junction_shard_queue_depth{{shard=\"{shard}\"}} {depth}");
        }
        single(text, "connections_open", "gauge", "Open ISO 8583 connections", self.connections_open);
        single(
            text,
            "requests_in_flight",
            "gauge",
            "Requests (ISO 8583 and QR) handed to the engine, not yet answered",
            self.requests_in_flight,
        );
        header(
            text,
            "issuer_links",
            "gauge",
            "Signed-on links of issuers' hosts, by state (in_rotation, out_of_rotation after timeouts or a failed echo)",
        );
        for (issuer, in_rotation, out_of_rotation) in &self.issuer_links {
            let _ = writeln!(text, "junction_issuer_links{{issuer=\"{issuer}\",state=\"in_rotation\"}} {in_rotation}");
            let _ = writeln!(
                text,
                "junction_issuer_links{{issuer=\"{issuer}\",state=\"out_of_rotation\"}} {out_of_rotation}"
            );
        }
        single(
            text,
            "window_opened_timestamp_seconds",
            "gauge",
            "When the open settlement window began: the previous window's close (the ledger's first window: this daemon's start)",
            self.window_opened_unix_s,
        );
        header(
            text,
            "clearing_folders_total",
            "counter",
            "Closed windows' clearing folders written (or found written) and checked, by result",
        );
        let _ = writeln!(text, "junction_clearing_folders_total{{result=\"verified\"}} {}", self.clearing.verified);
        let _ = writeln!(text, "junction_clearing_folders_total{{result=\"failed\"}} {}", self.clearing.failed);
        single(
            text,
            "clearing_windows_unverified",
            "gauge",
            "Closed windows newer than the newest whose clearing folder verified (1 while one is written)",
            self.clearing.windows_unverified,
        );
        if let Some(replication) = &self.replication {
            text.push_str(replication);
        }
        if let Some(cluster) = &self.cluster {
            text.push_str(cluster);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape() -> Scrape {
        Scrape {
            version: "0.1.0",
            commit: "abc",
            ledger_healthy: true,
            writer: WriterReport { commit_us_total: 1_500_000, pause_us_max: 250, ..WriterReport::default() },
            index: IndexReport::default(),
            recovery_us: 3_200_000,
            declines_by_reason: BTreeMap::from([("insufficient_funds", 2)]),
            queue_depths: vec![0, 3],
            connections_open: 1,
            requests_in_flight: 0,
            issuer_links: vec![(11, 1, 0)],
            window_opened_unix_s: 1_795_644_000.5,
            clearing: ClearingFigures { verified: 2, failed: 0, windows_unverified: 0 },
            replication: None,
            cluster: None,
        }
    }

    #[test]
    fn times_are_seconds_and_every_sample_has_its_type() {
        let metrics = Metrics::new().unwrap();
        metrics.observe(ResponseCode::Approved, Duration::from_micros(300));
        let text = metrics.render(&scrape());
        assert!(text.contains("junction_ledger_commit_seconds_total 1.5\n"), "{text}");
        assert!(text.contains("junction_ledger_pause_seconds_max 0.00025\n"), "{text}");
        assert!(text.contains("junction_ledger_recovery_seconds 3.2\n"), "{text}");
        assert!(text.contains("junction_responses_total{code=\"00\",interface=\"iso8583\"} 1\n"), "{text}");
        assert!(text.contains("junction_iso8583_refusals_total{reason=\"shed\"} 0\n"), "{text}");
        assert!(text.contains("junction_issuer_links{issuer=\"11\",state=\"in_rotation\"} 1\n"), "{text}");
        assert!(text.contains("junction_window_opened_timestamp_seconds 1795644000.5\n"), "{text}");
        assert!(!text.contains("_us"), "no metric in microseconds: {text}");
        // Each metric's samples follow its own TYPE line (the exposition format wants it).
        let mut typed = std::collections::BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split_whitespace().next().unwrap();
                assert!(typed.insert(name.to_string()), "{name} is typed twice");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix).filter(|family| typed.contains(*family)))
                    .unwrap_or(name);
                assert!(typed.contains(family), "{name} has no TYPE line before it");
            }
        }
    }
}
