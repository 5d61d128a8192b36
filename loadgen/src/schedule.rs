//! When each request is due: the open loop's schedule.
//!
//! Every rate shape (fixed, ramp, peak-day profile) is a piecewise-linear rate curve
//! `rate(t)` in requests per second over the run. Request `j` (0-based, counted over all
//! connections) is due at `t_j = N⁻¹(j)`, where `N(t) = ∫₀ᵗ rate` is the number of requests
//! due by `t`. On each linear piece `N` is a quadratic, so `N⁻¹` is exact and costs a binary
//! search over the pieces plus a square root: no drift, however long the run.
//!
//! Connections take the due requests round robin (connection `c` sends `j = c, c + C, ...`),
//! so the aggregate follows the curve while each connection stays independent.
//!
//! Latency is measured from `t_j`, not from when the request was actually written: if the
//! switch (or loadgen itself) stalls, the requests that should have gone out meanwhile are
//! late, and that lateness is counted (no coordinated omission).

use anyhow::{bail, ensure, Result};

/// Seconds in the day the peak-day profile describes.
pub const DAY_S: f64 = 86_400.0;

/// The daily curve of a national retail payment switch, as (hour of day, rate relative to
/// the day's average) points joined by straight lines. Shaped after the published pattern
/// of China's NetsUnion/UnionPay retail traffic on a shopping-festival day (11 November):
///
/// - 00:00 the festival's midnight spike: shopping carts paid the moment sales open, the
///   highest rate of the day, decaying within half an hour;
/// - 02:00-06:00 the night trough (about a fifth of the average at 04:00);
/// - 07:00-12:00 the morning rise to a late-morning/lunch peak;
/// - 13:00-17:00 an afternoon plateau;
/// - 19:00-22:00 the evening peak (online shopping after work), the day's busiest hours
///   after the spike;
/// - 23:00 the fall towards midnight.
///
/// The points are normalised at run time so that the curve's integral over the day is
/// exactly `--day-volume`. With the default 3.71e9 (NetsUnion's reported peak day) the
/// average is 42.9k/s and the midnight spike reaches about 180k/s, the design peak.
pub const PEAK_DAY_POINTS: [(f64, f64); 30] = [
    (0.0, 4.94),
    (0.05, 4.94),
    (0.25, 2.0),
    (0.5, 1.3),
    (1.0, 0.8),
    (2.0, 0.4),
    (3.0, 0.25),
    (4.0, 0.2),
    (5.0, 0.24),
    (6.0, 0.42),
    (7.0, 0.8),
    (8.0, 1.1),
    (9.0, 1.3),
    (10.0, 1.45),
    (11.0, 1.55),
    (12.0, 1.6),
    (13.0, 1.4),
    (14.0, 1.3),
    (15.0, 1.28),
    (16.0, 1.3),
    (17.0, 1.35),
    (18.0, 1.45),
    (19.0, 1.6),
    (20.0, 1.75),
    (21.0, 1.8),
    (21.5, 1.7),
    (22.0, 1.45),
    (23.0, 1.05),
    (23.75, 0.9),
    (24.0, 4.94),
];

/// One linear piece of the rate curve: from `start_s` (rate `rate_start`) to the next
/// piece's start (rate `rate_end`), with `due_before` requests due before it starts.
#[derive(Clone, Copy, Debug)]
struct Piece {
    start_s: f64,
    end_s: f64,
    rate_start: f64,
    rate_end: f64,
    due_before: f64,
}

impl Piece {
    fn slope(&self) -> f64 {
        let width = self.end_s - self.start_s;
        if width > 0.0 {
            (self.rate_end - self.rate_start) / width
        } else {
            0.0
        }
    }

    fn due_in(&self) -> f64 {
        (self.end_s - self.start_s) * (self.rate_start + self.rate_end) / 2.0
    }
}

/// A piecewise-linear rate curve over `[0, duration_s]`.
#[derive(Clone, Debug)]
pub struct Schedule {
    pieces: Vec<Piece>,
    duration_s: f64,
    total_due: f64,
}

impl Schedule {
    /// From (time in seconds, rate per second) points, strictly increasing in time, the
    /// first at 0 and the last at or after `duration_s` (the curve is cut there).
    pub fn from_points(points: &[(f64, f64)], duration_s: f64) -> Result<Schedule> {
        ensure!(duration_s > 0.0, "the duration must be positive");
        ensure!(points.len() >= 2, "a rate curve needs at least two points");
        ensure!(points[0].0 == 0.0, "a rate curve starts at time 0");
        let mut pieces = Vec::with_capacity(points.len());
        let mut due_before = 0.0;
        for pair in points.windows(2) {
            let ((start_s, rate_start), (end_s, rate_end)) = (pair[0], pair[1]);
            ensure!(end_s > start_s, "rate curve times must increase");
            ensure!(rate_start >= 0.0 && rate_end >= 0.0, "rates must not be negative");
            ensure!(rate_start.is_finite() && rate_end.is_finite(), "rates must be finite");
            if start_s >= duration_s {
                break;
            }
            let mut piece = Piece { start_s, end_s, rate_start, rate_end, due_before };
            if end_s > duration_s {
                piece.rate_end = rate_start + piece.slope() * (duration_s - start_s);
                piece.end_s = duration_s;
            }
            due_before += piece.due_in();
            pieces.push(piece);
        }
        let last_end = pieces.last().map_or(0.0, |p| p.end_s);
        ensure!(last_end >= duration_s, "the rate curve ends at {last_end} s, before the run's {duration_s} s");
        Ok(Schedule { pieces, duration_s, total_due: due_before })
    }

    pub fn fixed(rate: f64, duration_s: f64) -> Result<Schedule> {
        ensure!(rate > 0.0, "--rate must be positive");
        Schedule::from_points(&[(0.0, rate), (duration_s, rate)], duration_s)
    }

    pub fn ramp(from: f64, to: f64, duration_s: f64) -> Result<Schedule> {
        ensure!(from > 0.0 || to > 0.0, "a ramp needs a positive rate at one end at least");
        Schedule::from_points(&[(0.0, from), (duration_s, to)], duration_s)
    }

    /// The peak-day curve scaled to `day_volume` requests a day, played `compress` times
    /// faster: wall second `t` sends at the real per-second rate of day second
    /// `t * compress`, so a run sends `day_volume / compress` requests per played day.
    pub fn peak_day(day_volume: f64, compress: f64, duration_s: f64) -> Result<Schedule> {
        ensure!(day_volume > 0.0 && day_volume.is_finite(), "--day-volume must be positive");
        ensure!(compress >= 1.0, "--compress must be at least 1");
        let relative_mean = peak_day_relative_mean();
        let average_rate = day_volume / DAY_S;
        let day_wall_s = DAY_S / compress;
        let days = (duration_s / day_wall_s).ceil().max(1.0) as u64;
        let mut points = Vec::new();
        for day in 0..days {
            for (index, (hour, relative)) in PEAK_DAY_POINTS.iter().enumerate() {
                if day > 0 && index == 0 {
                    continue; // the previous day's 24:00 point is this day's 00:00
                }
                let t = day as f64 * day_wall_s + hour * 3600.0 / compress;
                points.push((t, average_rate * relative / relative_mean));
            }
        }
        Schedule::from_points(&points, duration_s)
    }

    pub fn duration_s(&self) -> f64 {
        self.duration_s
    }

    /// Requests due over the whole run: the integral rounded down, forgiving float noise
    /// (a curve that integrates to 1999.9999999 has 2000).
    pub fn total_requests(&self) -> u64 {
        (self.total_due + 1e-6).floor() as u64
    }

    /// Rate at `t` seconds, per second.
    #[cfg(test)]
    pub fn rate_at(&self, t: f64) -> f64 {
        let index = self.pieces.partition_point(|p| p.end_s <= t).min(self.pieces.len() - 1);
        let piece = &self.pieces[index];
        piece.rate_start + piece.slope() * (t - piece.start_s).clamp(0.0, piece.end_s - piece.start_s)
    }

    pub fn peak_rate(&self) -> f64 {
        self.pieces.iter().map(|p| p.rate_start.max(p.rate_end)).fold(0.0, f64::max)
    }

    /// Requests due by `t` seconds from the start: `N(t)`, not rounded.
    pub fn due_by(&self, t: f64) -> f64 {
        if t <= 0.0 {
            return 0.0;
        }
        if t >= self.duration_s {
            return self.total_due;
        }
        let index = self.pieces.partition_point(|p| p.end_s <= t).min(self.pieces.len() - 1);
        let piece = &self.pieces[index];
        let x = (t - piece.start_s).clamp(0.0, piece.end_s - piece.start_s);
        piece.due_before + piece.rate_start * x + piece.slope() * x * x / 2.0
    }

    /// When request `j` is due, in seconds from the start; `None` past the end of the run.
    pub fn due_at(&self, j: u64) -> Option<f64> {
        if j >= self.total_requests() {
            return None;
        }
        let target = (j as f64).min(self.total_due);
        let index = self.pieces.partition_point(|p| p.due_before + p.due_in() <= target).min(self.pieces.len() - 1);
        let piece = &self.pieces[index];
        let remaining = target - piece.due_before;
        // N(start + x) = due_before + r0 x + a x² / 2; solved for x in the form that stays
        // exact when the slope is zero and avoids cancellation when it is small.
        let (r0, a) = (piece.rate_start, piece.slope());
        let discriminant = (r0 * r0 + 2.0 * a * remaining).max(0.0);
        let denominator = r0 + discriminant.sqrt();
        let x = if denominator > 0.0 { 2.0 * remaining / denominator } else { 0.0 };
        Some((piece.start_s + x).min(piece.end_s))
    }
}

/// The mean of the peak-day curve over the day, in its relative units (trapezoids).
pub fn peak_day_relative_mean() -> f64 {
    let area: f64 = PEAK_DAY_POINTS.windows(2).map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0).sum();
    area / 24.0
}

/// Parses `FROM:TO` of `--ramp`.
pub fn parse_ramp(text: &str) -> Result<(f64, f64)> {
    let Some((from, to)) = text.split_once(':') else {
        bail!("--ramp takes FROM:TO, e.g. 1000:20000");
    };
    Ok((parse_count(from)?, parse_count(to)?))
}

/// A count such as `20000`, `2e4` or `3.71e9`.
pub fn parse_count(text: &str) -> Result<f64> {
    let value: f64 = text.trim().parse().map_err(|_| anyhow::anyhow!("{text:?} is not a number"))?;
    ensure!(value.is_finite() && value >= 0.0, "{text:?} must be a finite number, not negative");
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_rate_is_evenly_spaced() {
        let schedule = Schedule::fixed(1000.0, 2.0).expect("valid");
        assert_eq!(schedule.total_requests(), 2000);
        assert_eq!(schedule.due_at(0), Some(0.0));
        let t = schedule.due_at(500).expect("in range");
        assert!((t - 0.5).abs() < 1e-9, "{t}");
        assert_eq!(schedule.due_at(2000), None);
        assert!((schedule.due_by(0.5) - 500.0).abs() < 1e-9);
    }

    #[test]
    fn ramp_inverts_its_integral() {
        let schedule = Schedule::ramp(0.0, 2000.0, 10.0).expect("valid");
        // N(t) = 100 t², 10,000 in all.
        assert_eq!(schedule.total_requests(), 10_000);
        for j in [1u64, 100, 2500, 9999] {
            let t = schedule.due_at(j).expect("in range");
            assert!((100.0 * t * t - j as f64).abs() < 1e-6, "j={j} t={t}");
        }
    }

    #[test]
    fn due_times_never_go_backwards() {
        let schedule = Schedule::peak_day(3.71e9, 1440.0 * 60.0, 1.0).expect("valid");
        let mut last = 0.0;
        for j in (0..schedule.total_requests()).step_by(97) {
            let t = schedule.due_at(j).expect("in range");
            assert!(t >= last, "j={j}: {t} < {last}");
            last = t;
        }
    }

    #[test]
    fn peak_day_volume_and_peak() {
        let schedule = Schedule::peak_day(3.71e9, 1440.0, 60.0).expect("valid");
        let sent = schedule.total_requests() as f64;
        assert!((sent - 3.71e9 / 1440.0).abs() < 2.0, "{sent}");
        let peak = schedule.peak_rate();
        assert!((170_000.0..190_000.0).contains(&peak), "peak {peak}");
        // The 04:00 trough is well below the average.
        let trough = schedule.rate_at(4.0 * 3600.0 / 1440.0);
        assert!(trough < 0.3 * 3.71e9 / DAY_S, "trough {trough}");
    }

    #[test]
    fn profile_longer_than_a_day_repeats() {
        // 100/s on average, a day played per second: two days are 200 requests.
        let schedule = Schedule::peak_day(8.64e6, 86_400.0, 2.0).expect("valid");
        assert!((schedule.total_requests() as f64 - 200.0).abs() < 2.0);
        assert!((schedule.rate_at(1.0) - schedule.rate_at(2.0)).abs() < 1e-6);
    }
}
