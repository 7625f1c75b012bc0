//! The phases the load scenarios share: setup, then warmup and the measurement window.

use crate::args::Options;
use crate::control::{self, Control, Phase, Workers};
use crate::probe::{CpuSample, CpuWindow};
use crate::stats::{Ctr, Monitor, Snapshot};

/// Waits until `expected` connections are ready. Any failure ends the run (a load with
/// missing connections would measure something else than asked): the workers are stopped
/// and the error tells how far setup got and the first error met.
pub fn set_up(
    ctl: &Control,
    monitor: &mut Monitor,
    workers: Workers,
    expected: usize,
) -> Result<(Workers, Snapshot), String> {
    let expected = expected as u64;
    let complete = monitor.wait("setup", control::setup_limit(expected as usize), |s| {
        s.get(Ctr::Ready) + s.get(Ctr::ConnectFailed) >= expected
    });
    let setup = monitor.snapshot();
    if complete && setup.get(Ctr::ConnectFailed) == 0 {
        return Ok((workers, setup));
    }
    ctl.set(Phase::Done);
    workers.finish(control::STOP_LIMIT);
    Err(format!(
        "setup failed: {} of {expected} connections ready, {} failed; first error: {}",
        setup.get(Ctr::Ready),
        setup.get(Ctr::ConnectFailed),
        ctl.first_error()
            .unwrap_or_else(|| "none (timed out)".into())
    ))
}

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
