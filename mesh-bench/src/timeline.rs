//! The run second by second, for the HTML report's charts: taken at the progress line's tick,
//! so what the charts show is what the progress lines printed, plus the latency percentiles
//! and the CPU and memory of each second.

use crate::probe::{self, CpuSample};
use crate::stats::{Ctr, Latency, RecentLatency, Snapshot, new_latency};
use std::sync::Arc;
use std::time::Instant;

/// Every sample of a run.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// The counters shown as rates (the progress line's), in the order of `Sample::rates`.
    pub rate_names: Vec<&'static str>,
    /// The `--server-pid`s, in the order of `Sample::servers`.
    pub pids: Vec<u32>,
    pub samples: Vec<Sample>,
    /// The measurement window, in seconds since the run started; `None` until it starts
    /// (or ends).
    pub window: (Option<f64>, Option<f64>),
}

/// What happened over one interval, about a second (shorter at the edges of the window).
#[derive(Clone, Debug)]
pub struct Sample {
    /// End of the interval, in seconds since the run started.
    pub at: f64,
    /// Length of the interval in seconds.
    pub seconds: f64,
    /// The phase the progress line showed (setup, warmup, measuring, ...).
    pub phase: String,
    /// Per second, one per `Timeline::rate_names`.
    pub rates: Vec<f64>,
    /// `None` when no latency was recorded in the interval (outside the window, or a
    /// scenario that measures none).
    pub latency: Option<Percentiles>,
    /// One per `Timeline::pids`.
    pub servers: Vec<Resources>,
    /// Cores this tool kept busy.
    pub tool_cores: Option<f64>,
}

impl Sample {
    /// Start of the interval, in seconds since the run started.
    pub fn from(&self) -> f64 {
        self.at - self.seconds
    }
}

/// Latency of one interval, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Percentiles {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
    pub samples: u64,
}

impl Percentiles {
    /// `None` for an empty histogram.
    pub fn of(h: &Latency) -> Option<Percentiles> {
        (!h.is_empty()).then(|| Percentiles {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
            samples: h.len(),
        })
    }
}

/// One server process over one interval; `None` where /proc could not be read (it ended?).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Resources {
    /// CPU seconds per wall second: how many cores it kept busy.
    pub cores: Option<f64>,
    /// Resident memory at the end of the interval.
    pub rss_bytes: Option<u64>,
}

/// Takes the samples: owns the readings the next sample is a difference from.
pub struct Sampler {
    timeline: Timeline,
    started: Instant,
    rates: &'static [Ctr],
    recent: Vec<Arc<RecentLatency>>,
    /// The interval's latencies, merged from every thread; kept to reuse its allocation.
    merged: Latency,
    cpu: CpuSample,
}

impl Sampler {
    /// A sampler whose clock starts at `started`; `recent` are the threads' latencies.
    pub fn new(
        started: Instant,
        rates: &'static [Ctr],
        server_pids: &[u32],
        recent: Vec<Arc<RecentLatency>>,
    ) -> Sampler {
        Sampler {
            timeline: Timeline {
                rate_names: rates.iter().map(|c| c.name()).collect(),
                pids: server_pids.to_vec(),
                ..Timeline::default()
            },
            started,
            rates,
            recent,
            merged: new_latency(),
            cpu: CpuSample::take(server_pids),
        }
    }

    /// Records the interval since the previous sample (or `skip`): `counts` are the counts in
    /// it, `seconds` its length.
    pub fn sample(&mut self, phase: &str, counts: &Snapshot, seconds: f64, now: Instant) {
        self.merged.reset();
        for recent in &self.recent {
            recent.drain_into(&mut self.merged);
        }
        let cpu = CpuSample::take(&self.timeline.pids);
        let window = cpu.since(&self.cpu);
        let cores = |cpu_seconds: Option<f64>| {
            cpu_seconds
                .filter(|_| window.seconds > 0.0)
                .map(|s| s / window.seconds)
        };
        let servers = self
            .timeline
            .pids
            .iter()
            .zip(&window.servers)
            .map(|(&pid, &cpu)| Resources {
                cores: cores(cpu),
                rss_bytes: probe::rss_bytes(Some(pid)),
            })
            .collect();
        let seconds = seconds.max(1e-9);
        self.timeline.samples.push(Sample {
            at: (now - self.started).as_secs_f64(),
            seconds,
            phase: phase.to_owned(),
            rates: self
                .rates
                .iter()
                .map(|&c| counts.get(c) as f64 / seconds)
                .collect(),
            latency: Percentiles::of(&self.merged),
            servers,
            tool_cores: cores(window.tool),
        });
        self.cpu = cpu;
    }

    /// Drops the interval since the previous sample: the next one starts now.
    pub fn skip(&mut self) {
        for recent in &self.recent {
            recent.drain_into(&mut self.merged);
        }
        self.cpu = CpuSample::take(&self.timeline.pids);
    }

    /// Marks the start of the measurement window.
    pub fn window_started(&mut self, now: Instant) {
        self.timeline.window.0 = Some((now - self.started).as_secs_f64());
    }

    /// Marks the end of the measurement window.
    pub fn window_ended(&mut self, now: Instant) {
        self.timeline.window.1 = Some((now - self.started).as_secs_f64());
    }

    /// The samples so far, leaving none behind.
    pub fn take(&mut self) -> Timeline {
        Timeline {
            rate_names: self.timeline.rate_names.clone(),
            pids: self.timeline.pids.clone(),
            ..std::mem::take(&mut self.timeline)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Counters;
    use std::time::Duration;

    #[test]
    fn a_sample_holds_the_interval_rates_and_latencies() {
        let recent: Vec<Arc<RecentLatency>> = (0..2).map(|_| Arc::default()).collect();
        let start = Instant::now();
        let pid = std::process::id();
        let mut sampler = Sampler::new(
            start,
            &[Ctr::WritesAcked, Ctr::Deliveries],
            &[pid],
            recent.clone(),
        );
        for us in 1..=100 {
            recent[0].record(us * 10);
        }
        recent[1].record(5_000);
        let counters = Arc::new(Counters::default());
        counters.add(Ctr::WritesAcked, 50);
        counters.add(Ctr::Deliveries, 500);
        let counts = Snapshot::of(&[counters]);
        sampler.sample("measuring", &counts, 0.5, start + Duration::from_secs(2));
        // Nothing new: the next interval has no latency.
        sampler.sample(
            "measuring",
            &Snapshot::default(),
            1.0,
            start + Duration::from_secs(3),
        );
        let timeline = sampler.take();
        assert_eq!(timeline.rate_names, ["writes_acked", "deliveries"]);
        let [first, second] = &timeline.samples[..] else {
            panic!("two samples, not {:?}", timeline.samples);
        };
        assert_eq!(first.rates, [100.0, 1000.0]);
        assert_eq!((first.at, first.from()), (2.0, 1.5));
        let latency = first.latency.expect("latencies recorded");
        assert_eq!(latency.samples, 101);
        assert!((505..=515).contains(&latency.p50), "{latency:?}");
        assert!((4995..=5005).contains(&latency.max), "{latency:?}");
        assert_eq!(second.latency, None);
        assert_eq!(second.rates, [0.0, 0.0]);
        let me = first.servers[0];
        assert!(me.cores.is_some() && me.rss_bytes.is_some_and(|b| b > 0));
        assert!(sampler.take().samples.is_empty());
    }
}
