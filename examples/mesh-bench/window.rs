//! The measured part shared by fanout and records: warmup, then the measurement window.

use crate::args::Options;
use crate::control::{Control, Phase};
use crate::probe::{CpuSample, CpuWindow};
use crate::stats::{Monitor, Snapshot};

/// Counts and CPU over the measurement window.
pub struct Measured {
    pub counts: Snapshot,
    pub cpu: CpuWindow,
}

/// Runs the warmup and the measurement window, then lets the load drain; the caller
/// ends the run.
pub fn measure(ctl: &Control, monitor: &mut Monitor, options: &Options) -> Measured {
    ctl.set(Phase::Warmup);
    monitor.wait("warmup", options.warmup, |_| false);
    let (counts_before, cpu_before) = (monitor.snapshot(), CpuSample::take(&options.server_pids));
    ctl.set(Phase::Measuring);
    monitor.wait("measuring", options.duration, |_| false);
    ctl.set(Phase::Draining);
    let (counts_after, cpu_after) = (monitor.snapshot(), CpuSample::take(&options.server_pids));
    Measured {
        counts: counts_after.since(&counts_before),
        cpu: cpu_after.since(&cpu_before),
    }
}
