//! What the benchmark ran on, printed with every result.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: u64,
    pub kernel: String,
    pub disk_dir: String,
}

impl Machine {
    pub fn detect(dir: &std::path::Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':']).to_string()))
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory_gib: memory_kib / (1 << 20),
            kernel,
            disk_dir: dir.display().to_string(),
        }
    }

    pub fn print(&self) {
        println!("machine: {} | {} cores | {} GiB | Linux {}", self.cpu, self.cores, self.memory_gib, self.kernel);
        println!("data dir: {} (deleted afterwards)", self.disk_dir);
    }
}

/// The kernel reports process and system CPU time in USER_HZ ticks, fixed at 100 per second
/// in the /proc ABI whatever the kernel's own tick rate.
const PROC_TICKS_PER_SECOND: f64 = 100.0;

/// CPU time this process used and the time the hypervisor kept from this machine's CPUs
/// (steal), over an interval. On a VM, throughput drifts with the host; CPU per transfer
/// and steal tell a slower run of the same code from slower code.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    process_ticks: (u64, u64),
    system_ticks: (u64, u64),
}

/// What a `CpuMeter` saw between its start and `stop`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuUse {
    /// Process CPU seconds in user mode and in the kernel, over all its threads.
    pub user_s: f64,
    pub system_s: f64,
    /// The share of all CPUs' time the hypervisor gave to others (`steal` in /proc/stat).
    pub steal_percent: f64,
}

impl CpuMeter {
    pub fn start() -> CpuMeter {
        CpuMeter { process_ticks: process_ticks(), system_ticks: system_ticks() }
    }

    pub fn stop(&self) -> CpuUse {
        let (user, system) = process_ticks();
        let (steal, all) = system_ticks();
        let all = all.saturating_sub(self.system_ticks.1).max(1);
        CpuUse {
            user_s: user.saturating_sub(self.process_ticks.0) as f64 / PROC_TICKS_PER_SECOND,
            system_s: system.saturating_sub(self.process_ticks.1) as f64 / PROC_TICKS_PER_SECOND,
            steal_percent: 100.0 * steal.saturating_sub(self.system_ticks.0) as f64 / all as f64,
        }
    }
}

impl CpuUse {
    /// Process CPU microseconds per unit of work (for example per approved transfer).
    pub fn us_per(&self, units: u64) -> f64 {
        (self.user_s + self.system_s) * 1e6 / units.max(1) as f64
    }
}

/// This process's (user, system) ticks: fields 14 and 15 of /proc/self/stat. The command
/// name (field 2) may hold spaces, so fields are counted after its closing parenthesis.
fn process_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<u64> = after_name.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
    match fields[..] {
        [user, system] => (user, system),
        _ => (0, 0),
    }
}

/// All CPUs' (steal, total) ticks from the first line of /proc/stat.
fn system_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("cpu "))
        .map(|rest| rest.split_whitespace().filter_map(|f| f.parse().ok()).collect())
        .unwrap_or_default();
    // user nice system idle iowait irq softirq steal guest guest_nice; guest time is
    // already counted in user and nice.
    let total = fields.iter().take(8).sum();
    (fields.get(7).copied().unwrap_or(0), total)
}
