//! The progress line: printed every second while the main thread waits for a phase to end.

use crate::stats::{Counters, Ctr, Snapshot};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Prints a progress line every second while the main thread waits for a phase to end.
pub struct Monitor {
    counters: Vec<Arc<Counters>>,
    started: Instant,
    next_line: Instant,
    last: Snapshot,
    last_at: Instant,
    /// Shown as per-second rates.
    rates: &'static [Ctr],
    /// Shown as running totals (errors and anomalies).
    totals: &'static [Ctr],
}

/// How often a waiting phase checks its end condition.
const POLL: Duration = Duration::from_millis(20);

impl Monitor {
    pub fn new(
        counters: Vec<Arc<Counters>>,
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
                self.print(phase, snapshot, now);
                self.next_line = (self.next_line + Duration::from_secs(1)).max(now);
            }
            std::thread::sleep(POLL.min(until - now).min(self.next_line - now));
        }
    }

    fn print(&mut self, phase: &str, snapshot: Snapshot, now: Instant) {
        let seconds = (now - self.last_at).as_secs_f64().max(1e-9);
        let delta = snapshot.since(&self.last);
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
