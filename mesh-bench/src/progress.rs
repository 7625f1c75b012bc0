//! The progress line: printed every second while the main thread waits for a phase to end.
//! The same tick takes the run's per-second samples (`timeline`), so the report's charts
//! show the seconds the lines printed.

use crate::stats::{Counters, Ctr, RecentLatency, Snapshot};
use crate::timeline::{Sampler, Timeline};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Prints a progress line every second while the main thread waits for a phase to end.
pub struct Monitor {
    counters: Vec<Arc<Counters>>,
    started: Instant,
    next_line: Instant,
    last: Snapshot,
    last_at: Instant,
    /// The phase of the last wait, for the lines and samples at the window's edges.
    phase: String,
    sampler: Sampler,
    /// Shown as per-second rates.
    rates: &'static [Ctr],
    /// Shown as running totals (errors and anomalies).
    totals: &'static [Ctr],
}

/// How often a waiting phase checks its end condition.
const POLL: Duration = Duration::from_millis(20);
/// The shortest part-second at an edge of the measurement window worth a line and a sample:
/// a rate over a few milliseconds is noise.
const SHORTEST: Duration = Duration::from_millis(250);

impl Monitor {
    /// `counters` and `recent` are the worker threads'; `server_pids` the processes whose CPU
    /// and memory are sampled.
    pub fn new(
        counters: Vec<Arc<Counters>>,
        recent: Vec<Arc<RecentLatency>>,
        server_pids: &[u32],
        rates: &'static [Ctr],
        totals: &'static [Ctr],
    ) -> Monitor {
        let now = Instant::now();
        Monitor {
            counters,
            started: now,
            next_line: now + Duration::from_secs(1),
            last: Snapshot::default(),
            last_at: now,
            phase: String::new(),
            sampler: Sampler::new(now, rates, server_pids, recent),
            rates,
            totals,
        }
    }

    /// The totals now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::of(&self.counters)
    }

    /// Waits until `done` holds or `limit` has passed, printing progress; true if `done`.
    pub fn wait(&mut self, phase: &str, limit: Duration, done: impl Fn(&Snapshot) -> bool) -> bool {
        let until = Instant::now() + limit;
        phase.clone_into(&mut self.phase);
        loop {
            let snapshot = self.snapshot();
            if done(&snapshot) {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            if now >= self.next_line {
                self.tick(phase, snapshot, now);
                self.next_line = (self.next_line + Duration::from_secs(1)).max(now);
            }
            std::thread::sleep(POLL.min(until - now).min(self.next_line - now));
        }
    }

    /// Starts the measurement window: the lines start over from here, so the window's samples
    /// are whole seconds. The part-second before gets its line and sample, unless too short.
    pub fn begin_window(&mut self) {
        let now = self.close_interval();
        self.sampler.window_started(now);
        self.next_line = now + Duration::from_secs(1);
    }

    /// Ends the measurement window: its last part-second gets its line and sample, unless too
    /// short. (A window of whole seconds ends just after its last tick: the wait's deadline
    /// is set a little after `begin_window`.)
    pub fn end_window(&mut self) {
        let now = self.close_interval();
        self.sampler.window_ended(now);
        self.next_line = now + Duration::from_secs(1);
    }

    /// Ends the interval since the last line now: a line and a sample, or nothing when it is
    /// shorter than `SHORTEST` (its counts are then left out of the lines and samples; the
    /// summary counts on its own).
    fn close_interval(&mut self) -> Instant {
        let now = Instant::now();
        let snapshot = self.snapshot();
        if now - self.last_at >= SHORTEST {
            self.tick(&self.phase.clone(), snapshot, now);
        } else {
            self.sampler.skip();
            self.last = snapshot;
            self.last_at = now;
        }
        now
    }

    /// The samples taken so far.
    pub fn take_timeline(&mut self) -> Timeline {
        self.sampler.take()
    }

    /// Prints the line for the interval since the last one, and samples it.
    fn tick(&mut self, phase: &str, snapshot: Snapshot, now: Instant) {
        let seconds = (now - self.last_at).as_secs_f64().max(1e-9);
        let delta = snapshot.since(&self.last);
        self.sampler.sample(phase, &delta, seconds, now);
        let mut line = format!("[{:6.1}s {phase:>9}]", (now - self.started).as_secs_f64());
        for &c in self.rates {
            line += &format!(" {} {:.0}/s", c.name(), delta.get(c) as f64 / seconds);
        }
        line.push_str(" |");
        for &c in self.totals {
            line += &format!(" {} {}", c.name(), snapshot.get(c));
        }
        println!("{line}");
        self.last = snapshot;
        self.last_at = now;
    }
}
