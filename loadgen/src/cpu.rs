//! Loadgen's own CPU use, from `/proc/self/stat`, so a run can tell when the load
//! generator rather than the switch is the bottleneck.

use std::time::Instant;

/// Clock ticks per second of `/proc/*/stat` times. Linux reports them in USER_HZ, which
/// is 100 on every architecture loadgen runs on (reading `sysconf(_SC_CLK_TCK)` would
/// need unsafe code for a constant).
pub const CLOCK_TICKS_PER_S: f64 = 100.0;

/// Busy share of its threads above which loadgen warns that it is saturated.
pub const SATURATED_SHARE: f64 = 0.9;

/// User plus system CPU time of this process so far, in seconds; `None` off Linux.
pub fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: parse after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / CLOCK_TICKS_PER_S)
}

/// Samples CPU use between calls.
pub struct CpuMeter {
    last_cpu_s: Option<f64>,
    last_at: Instant,
    first_cpu_s: Option<f64>,
    first_at: Instant,
}

impl CpuMeter {
    pub fn new() -> CpuMeter {
        let now = Instant::now();
        let cpu = process_cpu_s();
        CpuMeter { last_cpu_s: cpu, last_at: now, first_cpu_s: cpu, first_at: now }
    }

    /// CPU used since the last sample, in percent of one core.
    pub fn sample_percent(&mut self) -> Option<f64> {
        let now = Instant::now();
        let cpu = process_cpu_s()?;
        let elapsed = now.duration_since(self.last_at).as_secs_f64();
        let percent = self.last_cpu_s.map(|last| 100.0 * (cpu - last) / elapsed.max(1e-3));
        self.last_cpu_s = Some(cpu);
        self.last_at = now;
        percent
    }

    /// CPU used since the meter was made, in percent of one core.
    pub fn average_percent(&self) -> Option<f64> {
        let cpu = process_cpu_s()?;
        let elapsed = self.first_at.elapsed().as_secs_f64();
        self.first_cpu_s.map(|first| 100.0 * (cpu - first) / elapsed.max(1e-3))
    }
}

impl Default for CpuMeter {
    fn default() -> Self {
        CpuMeter::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_cpu_time() {
        if cfg!(target_os = "linux") {
            let cpu = super::process_cpu_s().expect("/proc/self/stat parses");
            assert!(cpu >= 0.0);
        }
    }
}
