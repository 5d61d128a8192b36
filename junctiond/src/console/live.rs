//! The console's live figures: once a second, the daemon's own counters and latency
//! histogram (`metrics.rs`, the same the Prometheus scrape reads) are read, and what
//! changed since the second before becomes one point of a bounded history. Every browser
//! that opens the console sees the same minutes at once, and an idle console costs the
//! daemon one read of a few counters a second.
//!
//! Latency percentiles come from the histogram's buckets, interpolated within the bucket
//! the rank falls in (as Prometheus' `histogram_quantile` does): as exact as the buckets,
//! which are spaced for the switch's range (50 us to 1 s).

use crate::metrics::Metrics;
use prometheus::core::{Collector, Metric};
use std::collections::{BTreeMap, VecDeque};

/// Seconds of history kept: 15 minutes, about 150 bytes a second.
pub const HISTORY_SECONDS_MAX: usize = 900;

/// How often the figures are read.
pub const SAMPLE_INTERVAL_MS: u64 = 1_000;

/// What changed in one interval (normally a second).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Second {
    /// When the interval ended, ms since the epoch.
    pub unix_ms: u64,
    /// Its length: the time since the previous reading.
    pub interval_ms: u64,
    /// Answers sent by both front ends, those that approved (`00`), and the others.
    pub answers: u64,
    pub approved: u64,
    pub declined: u64,
    /// ISO 8583 requests whose latency was measured, and its percentiles (none if none).
    pub latency_count: u64,
    pub latency_us_p50: Option<u64>,
    pub latency_us_p90: Option<u64>,
    pub latency_us_p99: Option<u64>,
    /// Answers other than `00` by response code.
    pub declined_by_code: BTreeMap<String, u64>,
}

/// The counters at one reading.
#[derive(Debug, Clone, Default, PartialEq)]
struct Totals {
    unix_ms: u64,
    /// Answers by response code, both front ends.
    by_code: BTreeMap<String, u64>,
    /// The latency histogram: (upper bound in seconds, cumulative count), and the count.
    buckets: Vec<(f64, u64)>,
    latency_count: u64,
}

impl Totals {
    fn read(metrics: &Metrics, unix_ms: u64) -> Totals {
        let mut by_code = BTreeMap::new();
        for family in metrics.responses_by_code.collect() {
            for metric in family.get_metric() {
                let code = metric.get_label().iter().find(|label| label.name() == "code").map(|label| label.value());
                if let Some(code) = code {
                    *by_code.entry(code.to_string()).or_insert(0) += metric.get_counter().get_value() as u64;
                }
            }
        }
        let proto = metrics.request_latency.metric();
        let histogram = proto.get_histogram();
        let buckets =
            histogram.get_bucket().iter().map(|bucket| (bucket.upper_bound(), bucket.cumulative_count())).collect();
        Totals { unix_ms, by_code, buckets, latency_count: histogram.get_sample_count() }
    }

    /// What happened between `before` and this reading.
    fn since(&self, before: &Totals) -> Second {
        let mut declined_by_code = BTreeMap::new();
        let (mut answers, mut approved) = (0, 0);
        for (code, count) in &self.by_code {
            let count = count.saturating_sub(before.by_code.get(code).copied().unwrap_or(0));
            answers += count;
            if code == "00" {
                approved += count;
            } else if count > 0 {
                declined_by_code.insert(code.clone(), count);
            }
        }
        let buckets: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(index, (bound, count))| {
                (*bound, count.saturating_sub(before.buckets.get(index).map_or(0, |(_, count)| *count)))
            })
            .collect();
        let latency_count = self.latency_count.saturating_sub(before.latency_count);
        let percentile = |q: f64| quantile(q, &buckets, latency_count).map(|seconds| (seconds * 1e6).round() as u64);
        Second {
            unix_ms: self.unix_ms,
            interval_ms: self.unix_ms.saturating_sub(before.unix_ms),
            answers,
            approved,
            declined: answers - approved,
            latency_count,
            latency_us_p50: percentile(0.5),
            latency_us_p90: percentile(0.9),
            latency_us_p99: percentile(0.99),
            declined_by_code,
        }
    }
}

/// The `q` quantile (0..1) of `count` observations in cumulative `buckets` (upper bound
/// in seconds, count at or below it), interpolated linearly within its bucket. Ranks past
/// the last bucket give the last bound (the histogram knows no more). None without data.
pub fn quantile(q: f64, buckets: &[(f64, u64)], count: u64) -> Option<f64> {
    if count == 0 || buckets.is_empty() {
        return None;
    }
    let rank = q * count as f64;
    let mut lower = (0.0, 0u64);
    for &(bound, cumulative) in buckets {
        if cumulative as f64 >= rank && cumulative > lower.1 {
            let within = (rank - lower.1 as f64) / (cumulative - lower.1) as f64;
            return Some(lower.0 + (bound - lower.0) * within.clamp(0.0, 1.0));
        }
        lower = (bound, cumulative);
    }
    Some(lower.0)
}

/// The history and the last reading.
#[derive(Default)]
pub struct Live {
    state: parking_lot::Mutex<LiveState>,
}

#[derive(Default)]
struct LiveState {
    history: VecDeque<Second>,
    last: Option<Totals>,
}

impl Live {
    /// Reads the figures now and adds the second since the last reading.
    pub fn sample(&self, metrics: &Metrics, unix_ms: u64) {
        let now = Totals::read(metrics, unix_ms);
        let mut state = self.state.lock();
        if let Some(before) = state.last.take() {
            if state.history.len() == HISTORY_SECONDS_MAX {
                state.history.pop_front();
            }
            let second = now.since(&before);
            state.history.push_back(second);
        }
        state.last = Some(now);
    }

    /// The seconds that ended after `unix_ms`, oldest first.
    pub fn since(&self, unix_ms: u64) -> Vec<Second> {
        self.state.lock().history.iter().filter(|second| second.unix_ms > unix_ms).cloned().collect()
    }

    /// Answers since the daemon started, by response code (both front ends).
    pub fn totals_by_code(&self) -> BTreeMap<String, u64> {
        self.state.lock().last.as_ref().map(|totals| totals.by_code.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use junction_engine::ResponseCode;
    use std::time::Duration;

    const BUCKETS: [f64; 4] = [0.000_1, 0.001, 0.01, 1.0];

    fn cumulative(counts: [u64; 4]) -> Vec<(f64, u64)> {
        let mut sum = 0;
        BUCKETS
            .iter()
            .zip(counts)
            .map(|(bound, count)| {
                sum += count;
                (*bound, sum)
            })
            .collect()
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_of_the_rank() {
        // 100 observations: 50 up to 100 us, 40 up to 1 ms, 10 up to 10 ms.
        let buckets = cumulative([50, 40, 10, 0]);
        let at = |q| quantile(q, &buckets, 100).unwrap();
        assert!((at(0.5) - 0.000_1).abs() < 1e-12, "{}", at(0.5));
        assert!((at(0.25) - 0.000_05).abs() < 1e-12, "{}", at(0.25));
        // Rank 70 is 20 of 40 into (100 us, 1 ms].
        assert!((at(0.7) - 0.000_55).abs() < 1e-12, "{}", at(0.7));
        assert!((at(0.99) - 0.0091).abs() < 1e-9, "{}", at(0.99));
        assert_eq!(quantile(0.5, &buckets, 0), None);
        // Observations past the last bound: the last bound is all the histogram can say.
        assert_eq!(quantile(0.99, &cumulative([0, 0, 0, 1]), 3), Some(1.0));
    }

    #[test]
    fn a_second_is_what_changed_since_the_reading_before() {
        let metrics = Metrics::new().unwrap();
        let live = Live::default();
        metrics.observe(ResponseCode::Approved, Duration::from_micros(80));
        live.sample(&metrics, 1_000);
        assert!(live.since(0).is_empty(), "the first reading is the baseline");
        for _ in 0..3 {
            metrics.observe(ResponseCode::Approved, Duration::from_micros(300));
        }
        metrics.observe(ResponseCode::InsufficientFunds, Duration::from_micros(300));
        metrics.responses_by_code.with_label_values(&[crate::metrics::INTERFACE_QR, "05"]).inc();
        live.sample(&metrics, 2_000);
        let seconds = live.since(0);
        assert_eq!(seconds.len(), 1);
        let second = &seconds[0];
        assert_eq!((second.unix_ms, second.interval_ms), (2_000, 1_000));
        assert_eq!((second.answers, second.approved, second.declined), (5, 3, 2));
        assert_eq!(second.declined_by_code, BTreeMap::from([("05".into(), 1), ("51".into(), 1)]));
        assert_eq!(second.latency_count, 4);
        // All four in (250 us, 500 us]: the median is halfway.
        assert_eq!(second.latency_us_p50, Some(375));
        assert_eq!(live.totals_by_code().get("00"), Some(&4));
        assert!(live.since(2_000).is_empty());
        live.sample(&metrics, 3_000);
        assert_eq!(live.since(2_000)[0].answers, 0);
        assert_eq!(live.since(2_000)[0].latency_us_p50, None);
    }

    #[test]
    fn the_history_is_bounded() {
        let metrics = Metrics::new().unwrap();
        let live = Live::default();
        for second in 0..=HISTORY_SECONDS_MAX as u64 + 5 {
            live.sample(&metrics, second * 1_000);
        }
        let seconds = live.since(0);
        assert_eq!(seconds.len(), HISTORY_SECONDS_MAX);
        assert_eq!(seconds[0].unix_ms, 6_000);
    }
}
