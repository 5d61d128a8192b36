//! Running the load: sign every connection on, start the clock, pace (open loop) or keep
//! windows full (closed loop), report each second, and gather the totals.
//!
//! Open-loop pacing: a pacer thread sleeps (with the OS timer, tens of microseconds of
//! slack, where tokio's timer wheel has a millisecond) until the next request is due or
//! `--tick-us` has passed, whichever is later, then wakes every connection's writer
//! through a watch channel; each writer sends all of its requests whose due time has
//! come, in one write. Latency is measured from each request's due time, so the pacer's
//! granularity and any stall on loadgen's side show up in the figures rather than hide.

use crate::connection::{self, Connection, Pacing, Plan, Start};
use crate::cpu::{CpuMeter, SATURATED_SHARE};
use crate::stats::{new_histogram, Counters};
use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often the progress line is printed and a sample taken for the plot.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// How often the run looks whether every connection is done.
const DONE_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// Extra time after the send phase plus the timeout before the run is cut short, should
/// anything hang.
const HANG_GRACE: Duration = Duration::from_secs(30);

/// One second of the run.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Seconds since the start, at the end of this sample.
    pub t_s: f64,
    /// Requests the schedule had due in this second (open loop).
    pub target: Option<f64>,
    pub sent: u64,
    pub answered: u64,
    pub approved: u64,
    pub overloaded: u64,
    pub timeouts: u64,
    pub in_flight: u64,
    pub latency_us_p50: u64,
    pub latency_us_p90: u64,
    pub latency_us_p99: u64,
    pub latency_us_p999: u64,
    pub latency_us_max: u64,
    pub cpu_percent: Option<f64>,
}

pub struct Outcome {
    pub counters: Counters,
    pub latency: Histogram<u64>,
    pub samples: Vec<Sample>,
    /// From the start to the last writer done (the send phase).
    pub send_phase_s: f64,
    /// From the start to the last answer or timeout.
    pub total_s: f64,
    pub failures: Vec<String>,
    pub cpu_percent_average: Option<f64>,
    pub cpu_percent_max: Option<f64>,
    pub saturated_seconds: u64,
    pub cut_short: bool,
}

pub struct Options {
    pub threads: usize,
    pub tick: Duration,
    pub quiet: bool,
}

/// One connection as the run loop sees it, whatever the protocol: its counters, latencies
/// and in-flight count for the reporter, and whether it is done.
pub trait Lane: Send + Sync + 'static {
    fn index(&self) -> u32;
    fn writer_done(&self) -> bool;
    fn reader_done(&self) -> bool;
    /// Calls `f` with the counters, the latencies since the last call (then reset) and the
    /// requests in flight.
    fn take_sample(&self, f: &mut dyn FnMut(&Counters, &Histogram<u64>, u64));
    fn counters(&self) -> Counters;
    fn failure(&self) -> Option<String>;
}

impl Lane for Connection {
    fn index(&self) -> u32 {
        self.index
    }

    fn writer_done(&self) -> bool {
        self.writer_done.load(Ordering::Acquire)
    }

    fn reader_done(&self) -> bool {
        self.reader_done.load(Ordering::Acquire)
    }

    fn take_sample(&self, f: &mut dyn FnMut(&Counters, &Histogram<u64>, u64)) {
        let mut state = self.lock();
        let in_flight = state.in_flight() as u64;
        f(&state.counters, &state.interval, in_flight);
        state.interval.reset();
    }

    fn counters(&self) -> Counters {
        self.lock().counters.clone()
    }

    fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The async runtime of a run: one thread, or `threads` workers.
pub fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    }
    .context("starting the async runtime")
}

pub fn run(plan: Plan, options: &Options) -> Result<Outcome> {
    let runtime = runtime(options.threads)?;
    let outcome = runtime.block_on(drive(Arc::new(plan), options));
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome
}

async fn drive(plan: Arc<Plan>, options: &Options) -> Result<Outcome> {
    // Sign every connection on before the clock starts.
    let mut pending = Vec::new();
    for index in 0..plan.connections {
        let plan = Arc::clone(&plan);
        pending.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(plan.seed.wrapping_add(u64::from(index)));
            connection::sign_on(&plan, 0, index, &mut rng).await.with_context(|| format!("connection {index}"))
        }));
    }
    let mut lanes = Vec::new();
    for (index, handle) in (0..plan.connections).zip(pending) {
        let ready = handle.await.context("a sign-on task failed")??;
        lanes.push((Arc::new(Connection::new(index)), ready));
    }
    let spawn_plan = Arc::clone(&plan);
    drive_lanes(&plan.pacing, plan.timeout, options, lanes, move |connection, ready, start, ticks| {
        tokio::spawn(connection::run(Arc::clone(&spawn_plan), connection, ready, start, ticks))
    })
    .await
}

/// Runs connections that are ready: starts the clock and the pacer (open loop), spawns
/// each lane's task, samples every second, and gathers the totals when all are done.
pub async fn drive_lanes<L: Lane, T>(
    pacing: &Pacing,
    timeout: Duration,
    options: &Options,
    lanes: Vec<(Arc<L>, T)>,
    mut spawn: impl FnMut(Arc<L>, T, Start, Option<watch::Receiver<u64>>) -> tokio::task::JoinHandle<()>,
) -> Result<Outcome> {
    let start = Start {
        instant: Instant::now(),
        unix_s: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
    };
    let (tick_sender, tick_receiver) = watch::channel(0u64);
    let stop = Arc::new(AtomicBool::new(false));
    let pacer = match pacing {
        Pacing::Open(schedule) => {
            let schedule = schedule.clone();
            let stop = Arc::clone(&stop);
            let tick = options.tick;
            Some(
                std::thread::Builder::new()
                    .name("loadgen-pacer".into())
                    .spawn(move || pace(&schedule, start, tick, tick_sender, &stop))
                    .context("starting the pacer thread")?,
            )
        }
        Pacing::Closed { .. } => {
            drop(tick_sender);
            None
        }
    };
    let mut connections: Vec<Arc<L>> = Vec::new();
    let mut tasks = Vec::new();
    for (connection, item) in lanes {
        let ticks = pacer.is_some().then(|| tick_receiver.clone());
        connections.push(Arc::clone(&connection));
        tasks.push(spawn(connection, item, start, ticks));
    }
    drop(tick_receiver);

    let send_phase = match pacing {
        Pacing::Open(schedule) => Duration::from_secs_f64(schedule.duration_s()),
        Pacing::Closed { duration, .. } => *duration,
    };
    let hang_deadline = send_phase + timeout + HANG_GRACE;
    let mut reporter = Reporter::new(pacing, options);
    let mut ticker = tokio::time::interval(DONE_CHECK_INTERVAL);
    let mut next_sample = start.instant + SAMPLE_INTERVAL;
    let mut send_phase_s = None;
    let mut cut_short = false;
    loop {
        ticker.tick().await;
        if Instant::now() >= next_sample {
            reporter.sample(&connections, start);
            next_sample += SAMPLE_INTERVAL;
        }
        if send_phase_s.is_none() && connections.iter().all(|c| c.writer_done()) {
            send_phase_s = Some(start.instant.elapsed().as_secs_f64());
        }
        if connections.iter().all(|c| c.reader_done()) {
            break;
        }
        if start.instant.elapsed() > hang_deadline {
            eprintln!("loadgen: the run did not end {} s after its timeout; cutting it short", HANG_GRACE.as_secs());
            cut_short = true;
            break;
        }
    }
    stop.store(true, Ordering::Release);
    for task in tasks {
        if cut_short {
            task.abort();
        } else {
            let _ = task.await;
        }
    }
    if let Some(pacer) = pacer {
        if pacer.join().is_err() {
            bail!("the pacer thread panicked");
        }
    }
    reporter.sample(&connections, start);
    let total_s = start.instant.elapsed().as_secs_f64();
    let mut counters = Counters::default();
    let mut failures = Vec::new();
    for connection in &connections {
        counters.merge(&connection.counters());
        if let Some(why) = connection.failure() {
            failures.push(format!("connection {}: {why}", connection.index()));
        }
    }
    Ok(Outcome {
        counters,
        latency: reporter.total,
        samples: reporter.samples,
        send_phase_s: send_phase_s.unwrap_or(total_s),
        total_s,
        failures,
        cpu_percent_average: reporter.cpu.average_percent(),
        cpu_percent_max: reporter.cpu_max,
        saturated_seconds: reporter.saturated_seconds,
        cut_short,
    })
}

/// The pacer thread: wakes the writers when requests fall due (see the module doc).
fn pace(
    schedule: &crate::schedule::Schedule,
    start: Start,
    tick: Duration,
    sender: watch::Sender<u64>,
    stop: &AtomicBool,
) {
    let mut ticks = 0u64;
    while !stop.load(Ordering::Acquire) {
        let now_s = start.instant.elapsed().as_secs_f64();
        ticks += 1;
        if sender.send(ticks).is_err() {
            return; // every writer has finished
        }
        // Requests 0..=floor(N(now)) are due; the next one is the first not yet due.
        let next = schedule.due_by(now_s).floor() as u64 + 1;
        let Some(next_due_s) = schedule.due_at(next) else {
            return; // everything is due: the writers send the rest and finish
        };
        let wait_s = (next_due_s - start.instant.elapsed().as_secs_f64()).max(tick.as_secs_f64());
        std::thread::sleep(Duration::from_secs_f64(wait_s));
    }
}

/// Takes a sample each second: totals, the second's latencies, the progress line.
struct Reporter {
    quiet: bool,
    threads: usize,
    schedule: Option<crate::schedule::Schedule>,
    total: Histogram<u64>,
    second: Histogram<u64>,
    samples: Vec<Sample>,
    last: Totals,
    last_t_s: f64,
    cpu: CpuMeter,
    cpu_max: Option<f64>,
    saturated_seconds: u64,
}

#[derive(Clone, Copy, Default)]
struct Totals {
    sent: u64,
    answered: u64,
    approved: u64,
    overloaded: u64,
    timeouts: u64,
    lost: u64,
    in_flight: u64,
    bad: u64,
}

impl Reporter {
    fn new(pacing: &Pacing, options: &Options) -> Reporter {
        Reporter {
            quiet: options.quiet,
            threads: options.threads.max(1),
            schedule: match pacing {
                Pacing::Open(schedule) => Some(schedule.clone()),
                Pacing::Closed { .. } => None,
            },
            total: new_histogram(),
            second: new_histogram(),
            samples: Vec::new(),
            last: Totals::default(),
            last_t_s: 0.0,
            cpu: CpuMeter::new(),
            cpu_max: None,
            saturated_seconds: 0,
        }
    }

    fn sample<L: Lane>(&mut self, connections: &[Arc<L>], start: Start) {
        let t_s = start.instant.elapsed().as_secs_f64();
        let mut totals = Totals::default();
        self.second.reset();
        let second = &mut self.second;
        for connection in connections {
            connection.take_sample(&mut |counters, interval, in_flight| {
                totals.sent += counters.sent_total();
                totals.answered += counters.answered_total();
                totals.approved += counters.approved_total();
                totals.overloaded += counters.overloaded_total();
                totals.timeouts += counters.timeouts_total();
                totals.lost += counters.lost;
                totals.bad += counters.bad_answers + counters.unmatched_answers;
                totals.in_flight += in_flight;
                // Both histograms share bounds, so adding cannot fail.
                let _ = second.add(interval);
            });
        }
        let _ = self.total.add(&self.second);
        let sliver = t_s - self.last_t_s < 0.2 && !self.samples.is_empty();
        // CPU time is counted in 10 ms ticks: a sliver's share would be noise.
        let cpu = if sliver { None } else { self.cpu.sample_percent() };
        if let Some(percent) = cpu {
            self.cpu_max = Some(self.cpu_max.map_or(percent, |m: f64| m.max(percent)));
        }
        let saturated = cpu.is_some_and(|p| p >= SATURATED_SHARE * 100.0 * self.threads as f64);
        if saturated {
            self.saturated_seconds += 1;
        }
        let target = self.schedule.as_ref().map(|s| s.due_by(t_s) - s.due_by(self.last_t_s));
        let elapsed = (t_s - self.last_t_s).max(1e-3);
        let quantile = |q: f64| if self.second.is_empty() { 0 } else { self.second.value_at_quantile(q) };
        let sample = Sample {
            t_s,
            target,
            sent: totals.sent - self.last.sent,
            answered: totals.answered - self.last.answered,
            approved: totals.approved - self.last.approved,
            overloaded: totals.overloaded - self.last.overloaded,
            timeouts: totals.timeouts - self.last.timeouts,
            in_flight: totals.in_flight,
            latency_us_p50: quantile(0.5),
            latency_us_p90: quantile(0.9),
            latency_us_p99: quantile(0.99),
            latency_us_p999: quantile(0.999),
            latency_us_max: if self.second.is_empty() { 0 } else { self.second.max() },
            cpu_percent: cpu,
        };
        // A last sliver after the final whole second joins that second's sample.
        if sliver {
            if let Some(last) = self.samples.last_mut() {
                last.sent += sample.sent;
                last.answered += sample.answered;
                last.approved += sample.approved;
                last.overloaded += sample.overloaded;
                last.timeouts += sample.timeouts;
                last.in_flight = sample.in_flight;
                last.latency_us_max = last.latency_us_max.max(sample.latency_us_max);
                self.last = totals;
                return;
            }
        }
        if !self.quiet {
            let run_p99 = if self.total.is_empty() { 0 } else { self.total.value_at_quantile(0.99) };
            let target_text = sample.target.map_or(String::new(), |t| format!(" (target {:.0}/s)", t / elapsed));
            eprintln!(
                "[{t_s:6.1}s] sent {:.0}/s{target_text} answered {:.0}/s in flight {} | p99 {} (run {}) max {} | 91 {} \
                 timeouts {} lost {} bad {} | cpu {}{}",
                sample.sent as f64 / elapsed,
                sample.answered as f64 / elapsed,
                sample.in_flight,
                format_us(sample.latency_us_p99),
                format_us(run_p99),
                format_us(sample.latency_us_max),
                totals.overloaded,
                totals.timeouts,
                totals.lost,
                totals.bad,
                cpu.map_or("?".into(), |p| format!("{p:.0}%")),
                if saturated { " LOADGEN SATURATED: figures are loadgen's limit, not the switch's" } else { "" },
            );
        }
        self.samples.push(sample);
        self.last = totals;
        self.last_t_s = t_s;
    }
}

/// Microseconds as the most readable unit.
pub fn format_us(us: u64) -> String {
    if us >= 10_000_000 {
        format!("{:.1}s", us as f64 / 1e6)
    } else if us >= 1_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{us}us")
    }
}
