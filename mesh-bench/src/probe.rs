//! Readings from /proc: CPU time and resident memory of a process.

use std::time::Instant;

/// CPU seconds (user + system, all threads) of `pid`, or of this process for `None`.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields after the last
    // ')' are the fixed ones, starting with field 3 (state); utime and stime are 14, 15.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks_per_second())
}

/// CPU seconds the whole machine has spent busy (all cores, everything but idle and
/// iowait), from the first line of /proc/stat.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: u64 = ticks.iter().take(8).sum::<u64>() - ticks.get(3)? - ticks.get(4)?;
    Some(busy as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Resident memory of `pid` (or this process), in bytes, from VmRSS.
pub fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Raises the soft descriptor limit to the hard one, so thousands of connections fit.
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Lets this thread's sleeps end as close to their deadline as the kernel can (the default
/// slack of 50 µs would add to every open-loop write's lag). Best effort: without it the
/// lag is only a little larger, and is reported either way.
pub fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and changes only this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

/// CPU readings at one moment: each server, and this tool.
pub struct CpuSample {
    at: Instant,
    servers: Vec<Option<f64>>,
    tool: Option<f64>,
    machine: Option<f64>,
}

impl CpuSample {
    /// Reads the CPU time of the servers, this tool and the machine now.
    pub fn take(server_pids: &[u32]) -> CpuSample {
        CpuSample {
            at: Instant::now(),
            servers: server_pids
                .iter()
                .map(|&pid| cpu_seconds(Some(pid)))
                .collect(),
            tool: cpu_seconds(None),
            machine: machine_busy_seconds(),
        }
    }

    /// CPU spent between `earlier` and this sample.
    pub fn since(&self, earlier: &CpuSample) -> CpuWindow {
        let delta = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
        let servers: Vec<Option<f64>> = self
            .servers
            .iter()
            .zip(&earlier.servers)
            .map(|(&now, &then)| delta(now, then))
            .collect();
        let server_total = if servers.is_empty() {
            None
        } else {
            servers.iter().copied().sum::<Option<f64>>()
        };
        let tool = delta(self.tool, earlier.tool);
        let machine = delta(self.machine, earlier.machine);
        CpuWindow {
            seconds: (self.at - earlier.at).as_secs_f64(),
            servers,
            server_total,
            tool,
            others: others(machine, tool, server_total),
        }
    }
}

/// What the rest of the machine used: on a shared machine, why figures move between runs.
fn others(machine: Option<f64>, tool: Option<f64>, servers: Option<f64>) -> Option<f64> {
    Some((machine? - tool? - servers.unwrap_or(0.0)).max(0.0))
}

/// CPU used over a window of wall time.
pub struct CpuWindow {
    /// Wall-clock length of the window.
    pub seconds: f64,
    /// Per `--server-pid`; `None` where /proc could not be read (the process ended?).
    pub servers: Vec<Option<f64>>,
    /// Sum over the servers; `None` without `--server-pid` or when one was unreadable.
    pub server_total: Option<f64>,
    pub tool: Option<f64>,
    /// CPU seconds used by every other process on the machine.
    pub others: Option<f64>,
}

impl CpuWindow {
    /// `count` per server CPU-second.
    pub fn per_server_cpu_second(&self, count: u64) -> Option<f64> {
        self.server_total
            .filter(|&cpu| cpu > 0.0)
            .map(|cpu| count as f64 / cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert!(cpu_seconds(None).is_some());
        assert!(rss_bytes(None).is_some_and(|b| b > 0));
        assert!(machine_busy_seconds().is_some_and(|s| s > 0.0));
    }
}
