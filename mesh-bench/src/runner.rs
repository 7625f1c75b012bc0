//! What the load scenarios share: start the worker threads and the progress line, wait for
//! setup, run the warmup and the measurement window, stop. A scenario supplies its plan, what
//! each thread spawns, which counters the progress line shows, and its report.

use crate::args::Options;
use crate::control::{self, Control, Phase, Worker, Workers, spawn_workers};
use crate::probe::{CpuSample, CpuWindow};
use crate::progress::Monitor;
use crate::stats::{Ctr, Latency, Snapshot, new_latency};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What the progress line shows.
pub struct Progress {
    /// Shown as per-second rates.
    pub rates: &'static [Ctr],
    /// Shown as running totals (errors and anomalies).
    pub totals: &'static [Ctr],
}

/// A run in progress: its phase, its workers and the progress line.
pub struct Run {
    pub ctl: Arc<Control>,
    pub monitor: Monitor,
    /// `None` once the workers have been stopped.
    workers: Option<Workers>,
}

/// Counts and CPU over the measurement window.
pub struct Measured {
    pub counts: Snapshot,
    pub cpu: CpuWindow,
}

impl Run {
    /// Starts `threads` worker threads; each runs `thread(worker, plan)` once to spawn its
    /// connection tasks.
    pub fn start<P, F, Fut>(
        options: &Options,
        threads: usize,
        plan: &Arc<P>,
        thread: F,
        progress: Progress,
    ) -> Run
    where
        P: Send + Sync + 'static,
        F: Fn(Worker, Arc<P>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let ctl = Control::new();
        let plan = plan.clone();
        let workers = spawn_workers(threads, options.connect_concurrency, &ctl, move |w| {
            thread(w, plan.clone())
        });
        let monitor = Monitor::new(
            workers.counters.clone(),
            workers.recent.clone(),
            &options.server_pids,
            progress.rates,
            progress.totals,
        );
        Run {
            ctl,
            monitor,
            workers: Some(workers),
        }
    }

    /// Waits until `expected` connections are ready or have failed, or setup's time limit has
    /// passed; true if every one is ready.
    pub fn wait_for_setup(&mut self, expected: usize) -> bool {
        self.wait_for_setup_within(expected, control::setup_limit(expected))
    }

    /// [`Run::wait_for_setup`] with another time limit (setups that do more per connection).
    pub fn wait_for_setup_within(&mut self, expected: usize, limit: Duration) -> bool {
        let expected = expected as u64;
        self.monitor.wait("setup", limit, |s| {
            s.get(Ctr::Ready) + s.get(Ctr::ConnectFailed) >= expected
        }) && self.monitor.snapshot().get(Ctr::ConnectFailed) == 0
    }

    /// Waits until `expected` connections are ready. Any failure ends the run (a load with
    /// missing connections would measure something else than asked): the workers are stopped
    /// and the error tells how far setup got and the first error met.
    pub fn set_up(&mut self, expected: usize) -> Result<Snapshot, String> {
        self.set_up_within(expected, control::setup_limit(expected))
    }

    /// [`Run::set_up`] with another time limit.
    pub fn set_up_within(&mut self, expected: usize, limit: Duration) -> Result<Snapshot, String> {
        let complete = self.wait_for_setup_within(expected, limit);
        let setup = self.monitor.snapshot();
        if complete {
            return Ok(setup);
        }
        self.stop();
        Err(format!(
            "setup failed: {} of {expected} connections ready, {} failed; first error: {}",
            setup.get(Ctr::Ready),
            setup.get(Ctr::ConnectFailed),
            self.ctl
                .first_error()
                .unwrap_or_else(|| "none (timed out)".into())
        ))
    }

    /// Runs the warmup and the measurement window, then lets the load drain.
    pub fn measure(&mut self, options: &Options) -> Measured {
        self.measure_until(options, |_| false)
    }

    /// [`Run::measure`], ending the warmup or the window early once `stop` holds (checked
    /// every few milliseconds).
    pub fn measure_until(
        &mut self,
        options: &Options,
        stop: impl Fn(&Snapshot) -> bool,
    ) -> Measured {
        let (ctl, monitor) = (&self.ctl, &mut self.monitor);
        ctl.set(Phase::Warmup);
        monitor.wait("warmup", options.warmup, &stop);
        monitor.begin_window();
        let (counts_before, cpu_before) =
            (monitor.snapshot(), CpuSample::take(&options.server_pids));
        ctl.set(Phase::Measuring);
        monitor.wait("measuring", options.duration, &stop);
        ctl.set(Phase::Draining);
        monitor.end_window();
        let (counts_after, cpu_after) = (monitor.snapshot(), CpuSample::take(&options.server_pids));
        Measured {
            counts: counts_after.since(&counts_before),
            cpu: cpu_after.since(&cpu_before),
        }
    }

    /// Ends the run: every connection task is stopped. Returns the latencies the workers
    /// recorded, merged.
    pub fn stop(&mut self) -> Latency {
        self.ctl.set(Phase::Done);
        match self.workers.take() {
            Some(workers) => workers.finish(control::STOP_LIMIT),
            None => new_latency(),
        }
    }
}
