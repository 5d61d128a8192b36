//! Prometheus metrics of the daemon. What each one means is in `docs/operations.md`.

use junction_engine::ResponseCode;
use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use std::time::Duration;

pub struct Metrics {
    pub registry: Registry,
    pub messages_received: IntCounter,
    pub responses_by_code: IntCounterVec,
    pub format_errors: IntCounter,
    pub frame_errors: IntCounter,
    pub security_refusals: IntCounter,
    /// Requests answered 91 at once because their connection was behind (see `Backlog`).
    pub requests_shed: IntCounter,
    pub request_latency: Histogram,
    pub ledger_durable_seq: IntGauge,
    pub ledger_recovery_us: IntGauge,
    /// Issuer hosts (see `forwarding.rs`).
    pub issuer_answers: IntCounter,
    pub issuer_timeouts: IntCounter,
    pub issuer_late_answers: IntCounter,
    pub issuer_unmatched_answers: IntCounter,
    pub stand_in: IntCounter,
    pub advices_acknowledged: IntCounter,
    pub advices_outstanding: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("junction".into()), None)?;
        let messages_received = IntCounter::new("iso8583_messages_received_total", "ISO 8583 messages received")?;
        let responses_by_code = IntCounterVec::new(
            Opts::new("responses_total", "Answers sent, by ISO 8583 response code (QR answers included)"),
            &["code"],
        )?;
        let format_errors = IntCounter::new("format_errors_total", "Messages answered 30 (format error)")?;
        let frame_errors = IntCounter::new("frame_errors_total", "Frames with an impossible length prefix")?;
        let security_refusals =
            IntCounter::new("security_refusals_total", "Messages refused for MAC, sign-on or institution")?;
        let requests_shed = IntCounter::new(
            "iso8583_requests_shed_total",
            "Requests answered 91 at once because their connection's reads were behind (overload)",
        )?;
        let buckets =
            vec![0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
        let request_latency = Histogram::with_opts(
            HistogramOpts::new("request_latency_seconds", "From a request's arrival to its answer being queued")
                .buckets(buckets),
        )?;
        let ledger_durable_seq = IntGauge::new("ledger_durable_seq", "Last journal entry durable on disk")?;
        let ledger_recovery_us = IntGauge::new("ledger_recovery_us", "How long the ledger's recovery took at start")?;
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
            Box::new(format_errors.clone()),
            Box::new(frame_errors.clone()),
            Box::new(security_refusals.clone()),
            Box::new(requests_shed.clone()),
            Box::new(request_latency.clone()),
            Box::new(ledger_durable_seq.clone()),
            Box::new(ledger_recovery_us.clone()),
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
        Ok(Metrics {
            registry,
            messages_received,
            responses_by_code,
            format_errors,
            frame_errors,
            security_refusals,
            requests_shed,
            request_latency,
            ledger_durable_seq,
            ledger_recovery_us,
            issuer_answers,
            issuer_timeouts,
            issuer_late_answers,
            issuer_unmatched_answers,
            stand_in,
            advices_acknowledged,
            advices_outstanding,
        })
    }

    pub fn observe(&self, code: ResponseCode, latency: Duration) {
        self.responses_by_code.with_label_values(&[code.as_str()]).inc();
        self.request_latency.observe(latency.as_secs_f64());
    }

    /// The exposition text, with the engine's own figures appended.
    pub fn render(&self, extra: &str) -> String {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        let mut text = String::from_utf8(buffer).unwrap_or_default();
        text.push_str(extra);
        text
    }
}
