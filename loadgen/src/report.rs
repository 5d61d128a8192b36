//! The end-of-run report: text for people, JSON (`--json`) for scripts and tests.

use crate::run::{format_us, Outcome, Sample};
use crate::stats::Counters;
use crate::traffic::{Kind, KINDS};
use crate::verify;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize)]
pub struct KindReport {
    pub sent: u64,
    pub timeouts: u64,
    /// Times this kind was drawn but its fallback was sent (nothing to complete/repeat).
    pub drawn_but_fell_back: u64,
    pub responses_by_code: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DuplicatesReport {
    pub sent: u64,
    /// Resends answered with their original's code (and authorization code).
    pub matched: u64,
    pub mismatched: u64,
    /// Resends or originals answered 91: not comparable.
    pub overloaded: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct MustDeclineReport {
    pub sent: u64,
    pub expected_code: String,
    /// Answered with another code than expected (91 excluded).
    pub mismatched: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub mode: String,
    pub pacing: String,
    pub connections: u32,
    pub target_requests: Option<u64>,
    pub requests_sent: u64,
    pub responses_answered: u64,
    pub responses_by_code: BTreeMap<String, u64>,
    pub timeouts: u64,
    /// In flight when their connection failed: outcome unknown.
    pub requests_lost: u64,
    pub failovers: u64,
    pub resent_after_failover: u64,
    /// Connections that failed during the run.
    pub connection_errors: u64,
    pub connection_failures: Vec<String>,
    /// Answers that matched no request in flight (late after a timeout).
    pub unmatched_answers: u64,
    /// Answers the switch gave standing in for an issuer's host (field 44 "1").
    pub stood_in: u64,
    /// Answers that did not decode or whose MAC did not verify.
    pub bad_answers: u64,
    pub send_phase_s: f64,
    pub total_s: f64,
    /// Answers per second of the send phase.
    pub throughput_per_s: f64,
    pub sent_per_s: f64,
    pub latency_us_p50: u64,
    pub latency_us_p90: u64,
    pub latency_us_p99: u64,
    pub latency_us_p999: u64,
    pub latency_us_p9999: u64,
    pub latency_us_max: u64,
    pub latency_us_mean: f64,
    /// Answers that took longer than 100 ms and than 1 s from their scheduled send.
    pub answers_over_100ms: u64,
    pub answers_over_1s: u64,
    pub by_kind: BTreeMap<String, KindReport>,
    pub duplicates: DuplicatesReport,
    pub must_decline: BTreeMap<String, MustDeclineReport>,
    pub mismatch_examples: Vec<String>,
    pub loadgen_threads: usize,
    pub loadgen_cpu_percent_avg: Option<f64>,
    /// CPU microseconds per answered request: the switch's (all its threads) and loadgen's.
    /// Throughput on a VM drifts with its host; CPU per request does not.
    pub daemon_cpu_us_per_request: Option<f64>,
    pub loadgen_cpu_us_per_request: Option<f64>,
    /// The switch's longest pause since it started (its status' `ledger.pause_us_max`):
    /// the longest gap between two group commits while requests waited.
    pub daemon_pause_us_max: Option<u64>,
    pub loadgen_cpu_percent_max: Option<f64>,
    /// Seconds in which loadgen used at least 90% of its threads.
    pub loadgen_saturated_seconds: u64,
    pub cut_short: bool,
    pub verify: Option<verify::Outcome>,
    pub series: Vec<Sample>,
}

pub struct Context {
    /// CPU microseconds spent during the run by the switch (from its status) and by
    /// loadgen itself, when known.
    pub daemon_cpu_us: Option<u64>,
    pub loadgen_cpu_us: Option<u64>,
    pub daemon_pause_us_max: Option<u64>,
    pub mode: String,
    pub pacing: String,
    pub connections: u32,
    pub target_requests: Option<u64>,
    pub threads: usize,
}

fn per_request(cpu_us: Option<u64>, answered: u64) -> Option<f64> {
    cpu_us.filter(|_| answered > 0).map(|us| us as f64 / answered as f64)
}

pub fn build(context: Context, outcome: &Outcome, verify: Option<verify::Outcome>) -> Report {
    let counters: &Counters = &outcome.counters;
    let latency = &outcome.latency;
    let quantile = |q: f64| if latency.is_empty() { 0 } else { latency.value_at_quantile(q) };
    let by_kind = KINDS
        .iter()
        .map(|kind| {
            let index = kind.index();
            let report = KindReport {
                sent: counters.sent[index],
                timeouts: counters.timeouts[index],
                drawn_but_fell_back: counters.fallbacks[index],
                responses_by_code: counters.by_code_of(*kind),
            };
            (kind.name().to_string(), report)
        })
        .collect();
    let must_decline = KINDS
        .iter()
        .filter_map(|kind| {
            let expected = kind.expected_code()?;
            let report = MustDeclineReport {
                sent: counters.sent[kind.index()],
                expected_code: expected.to_string(),
                mismatched: counters.expected_code_mismatched[kind.index()],
            };
            Some((kind.name().to_string(), report))
        })
        .collect();
    let send_phase_s = outcome.send_phase_s.max(1e-3);
    Report {
        mode: context.mode,
        pacing: context.pacing,
        connections: context.connections,
        target_requests: context.target_requests,
        requests_sent: counters.sent_total(),
        responses_answered: counters.answered_total(),
        responses_by_code: counters.by_code(),
        timeouts: counters.timeouts_total(),
        requests_lost: counters.lost,
        failovers: counters.failovers,
        resent_after_failover: counters.resent_after_failover,
        connection_errors: outcome.failures.len() as u64,
        connection_failures: outcome.failures.clone(),
        unmatched_answers: counters.unmatched_answers,
        stood_in: counters.stood_in,
        bad_answers: counters.bad_answers,
        send_phase_s: outcome.send_phase_s,
        total_s: outcome.total_s,
        throughput_per_s: counters.answered_total() as f64 / send_phase_s,
        sent_per_s: counters.sent_total() as f64 / send_phase_s,
        latency_us_p50: quantile(0.5),
        latency_us_p90: quantile(0.9),
        latency_us_p99: quantile(0.99),
        latency_us_p999: quantile(0.999),
        latency_us_p9999: quantile(0.9999),
        latency_us_max: if latency.is_empty() { 0 } else { latency.max() },
        latency_us_mean: if latency.is_empty() { 0.0 } else { latency.mean() },
        answers_over_100ms: if latency.is_empty() { 0 } else { latency.count_between(100_001, u64::MAX) },
        answers_over_1s: if latency.is_empty() { 0 } else { latency.count_between(1_000_001, u64::MAX) },
        by_kind,
        duplicates: DuplicatesReport {
            sent: counters.sent[Kind::Duplicate.index()],
            matched: counters.duplicates_matched,
            mismatched: counters.duplicates_mismatched,
            overloaded: counters.duplicates_overloaded,
        },
        must_decline,
        mismatch_examples: counters.mismatch_examples.clone(),
        loadgen_threads: context.threads,
        loadgen_cpu_percent_avg: outcome.cpu_percent_average,
        daemon_cpu_us_per_request: per_request(context.daemon_cpu_us, counters.answered_total()),
        loadgen_cpu_us_per_request: per_request(context.loadgen_cpu_us, counters.answered_total()),
        daemon_pause_us_max: context.daemon_pause_us_max,
        loadgen_cpu_percent_max: outcome.cpu_percent_max,
        loadgen_saturated_seconds: outcome.saturated_seconds,
        cut_short: outcome.cut_short,
        verify,
        series: outcome.samples.clone(),
    }
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.2}%", 100.0 * part as f64 / whole as f64)
    }
}

pub fn render(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    let w = &mut text;
    let _ = writeln!(w, "loadgen {}: {}, {} connection(s)", report.mode, report.pacing, report.connections);
    if let Some(target) = report.target_requests {
        let _ = writeln!(w, "  requests due        {target}");
    }
    let _ = writeln!(w, "  requests sent       {}", report.requests_sent);
    let _ = writeln!(w, "  answered            {}", report.responses_answered);
    let codes: Vec<String> = report
        .responses_by_code
        .iter()
        .map(|(code, count)| format!("{code}: {count} ({})", percent(*count, report.responses_answered)))
        .collect();
    let _ = writeln!(w, "    by code           {}", codes.join(", "));
    let _ = writeln!(w, "  timeouts            {}", report.timeouts);
    let _ = writeln!(w, "  lost (conn. failed) {}", report.requests_lost);
    if report.failovers > 0 {
        let _ = writeln!(
            w,
            "  failovers           {} connection(s) moved to another node, {} request(s) resent there",
            report.failovers, report.resent_after_failover
        );
    }
    let _ = writeln!(w, "  connection errors   {}", report.connection_errors);
    for failure in &report.connection_failures {
        let _ = writeln!(w, "    {failure}");
    }
    let _ = writeln!(w, "  unmatched answers   {}  bad answers {}", report.unmatched_answers, report.bad_answers);
    if report.stood_in > 0 {
        let _ = writeln!(w, "  stood in            {} (the switch answered for the issuer's host)", report.stood_in);
    }
    let accounted = report.responses_answered + report.timeouts + report.requests_lost;
    let _ = writeln!(
        w,
        "  sent = answered + timeouts + lost: {} = {} {}",
        report.requests_sent,
        accounted,
        if accounted == report.requests_sent { "(ok)" } else { "(DOES NOT ADD UP)" }
    );
    let _ = writeln!(
        w,
        "  throughput          {:.0} answers/s ({:.0} sent/s) over {:.1} s",
        report.throughput_per_s, report.sent_per_s, report.send_phase_s
    );
    let _ = writeln!(
        w,
        "  latency from the scheduled send: p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}  (mean {})",
        format_us(report.latency_us_p50),
        format_us(report.latency_us_p90),
        format_us(report.latency_us_p99),
        format_us(report.latency_us_p999),
        format_us(report.latency_us_p9999),
        format_us(report.latency_us_max),
        format_us(report.latency_us_mean as u64),
    );
    if report.answers_over_100ms > 0 {
        let _ = writeln!(
            w,
            "  slow answers        {} over 100 ms, {} over 1 s",
            report.answers_over_100ms, report.answers_over_1s
        );
    }
    let _ = writeln!(w, "  by kind:");
    for (name, kind) in &report.by_kind {
        if kind.sent == 0 && kind.drawn_but_fell_back == 0 {
            continue;
        }
        let codes: Vec<String> = kind.responses_by_code.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        let fallback = if kind.drawn_but_fell_back > 0 {
            format!(" (drawn {}x with nothing to refer to: sent as a fallback)", kind.drawn_but_fell_back)
        } else {
            String::new()
        };
        let timeouts = if kind.timeouts > 0 { format!(", {} timeouts", kind.timeouts) } else { String::new() };
        let _ = writeln!(w, "    {name:<19} sent {:>9}  {}{timeouts}{fallback}", kind.sent, codes.join(", "));
    }
    let d = &report.duplicates;
    let _ = writeln!(
        w,
        "  duplicates: {} resent, {} got the original answer, {} did not{}",
        d.sent,
        d.matched,
        d.mismatched,
        if d.overloaded > 0 { format!(", {} not comparable (91)", d.overloaded) } else { String::new() }
    );
    for (name, must) in &report.must_decline {
        let _ = writeln!(
            w,
            "  must decline {}: {name}: {} sent, {} answered otherwise",
            must.expected_code, must.sent, must.mismatched
        );
    }
    for example in &report.mismatch_examples {
        let _ = writeln!(w, "    mismatch: {example}");
    }
    let cpu = |p: Option<f64>| p.map_or("?".to_string(), |p| format!("{p:.0}%"));
    let _ = writeln!(
        w,
        "  loadgen cpu: average {}, busiest second {} (of {} thread(s) = {}%)",
        cpu(report.loadgen_cpu_percent_avg),
        cpu(report.loadgen_cpu_percent_max),
        report.loadgen_threads,
        100 * report.loadgen_threads
    );
    let per = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.1} µs"));
    let _ = writeln!(
        w,
        "  cpu per request: switch {}, loadgen {} (user + system, all threads)",
        per(report.daemon_cpu_us_per_request),
        per(report.loadgen_cpu_us_per_request)
    );
    if let Some(pause_us) = report.daemon_pause_us_max {
        let _ = writeln!(
            w,
            "  switch's longest pause: {:.1} ms (since it started: the longest gap between two group commits while requests waited)",
            pause_us as f64 / 1000.0
        );
    }
    if report.loadgen_saturated_seconds > 0 {
        let _ = writeln!(
            w,
            "  WARNING: loadgen was saturated for {} s: those figures measure loadgen, not the switch (try --threads, \
             fewer --connections, or a lower rate)",
            report.loadgen_saturated_seconds
        );
    }
    if report.cut_short {
        let _ = writeln!(w, "  WARNING: the run was cut short (it did not end by itself)");
    }
    text
}
