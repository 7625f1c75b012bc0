//! `records`: every connection writes its own record, in a closed loop (publish, wait for its
//! own push, repeat) or, with `--rate-per-connection`, in an open loop (writes at fixed times
//! whatever the pushes).
//!
//! Besides the overall figures the report gives the spread between connections (writes and
//! mean latency per connection, and per tool thread): an unfair server, or tool, serves some
//! connections far more often than others, which percentiles over all writes only hint at.

use crate::args::Options;
use crate::conn::Conn;
use crate::control::{Phase, Worker};
use crate::report::{Report, rate};
use crate::runner::{Progress, Run};
use crate::stats::{Ctr, Latency, check_sequence, new_latency};
use crate::wire::{self, Incoming, Mode};
use futures_util::future::{Either, select};
use serde_json::json;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Pause after a failed write, so a server that refuses everything is not hammered.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

struct Plan {
    /// Connection i goes to `urls[i % urls.len()]` (several instances: a fleet).
    urls: Vec<String>,
    connections: usize,
    threads: usize,
    pad: String,
    /// Open loop: writes per second on each connection.
    rate: Option<f64>,
    /// One per connection, written only by its own task.
    tallies: Vec<Tally>,
    /// Open loop: how late each write went out while measuring (µs; 1 when on time).
    send_lag: Mutex<Latency>,
}

/// One connection's own pushes over the measurement window and their summed latency.
#[derive(Default)]
struct Tally {
    pushes: AtomicU64,
    latency_us: AtomicU64,
}

impl Tally {
    fn add(&self, us: u64) {
        self.pushes.fetch_add(1, Ordering::Relaxed);
        self.latency_us.fetch_add(us, Ordering::Relaxed);
    }
}

impl Plan {
    fn url(&self, index: usize) -> &str {
        &self.urls[index % self.urls.len()]
    }
}

/// Runs the scenario; fails when a connection cannot be set up.
pub fn run(options: &Options) -> Result<Report, String> {
    let plan = Arc::new(Plan {
        urls: options.urls.clone(),
        connections: options.connections,
        threads: options.threads,
        pad: "x".repeat(options.pad),
        rate: options.rate_per_connection,
        tallies: (0..options.connections).map(|_| Tally::default()).collect(),
        send_lag: Mutex::new(new_latency()),
    });
    let progress = Progress {
        rates: &[Ctr::WritesAcked, Ctr::Deliveries],
        totals: &[Ctr::Ready, Ctr::Gaps, Ctr::WriteErrors, Ctr::Closed],
    };
    let mut run = Run::start(options, options.threads, &plan, start_thread, progress);
    let setup = run.set_up(plan.connections)?;
    let measured = run.measure(options);
    let latency = run.stop();

    let counts = measured.counts;
    let seconds = measured.cpu.seconds;
    let acked = counts.get(Ctr::WritesAcked);
    let mut report = Report::new(options.scenario.name());
    let how = match plan.rate {
        Some(rate) => format!("an open loop at {rate} writes/s each"),
        None => "a closed loop".to_owned(),
    };
    report.line(format!(
        "{} connections, each writing bench:rec:<i> in {how}, {seconds:.1} s measured",
        plan.connections
    ));
    report.line(format!(
        "writes acked {acked} ({:.0}/s), own pushes {} ({:.0}/s)",
        rate(acked, seconds),
        counts.get(Ctr::Deliveries),
        rate(counts.get(Ctr::Deliveries), seconds)
    ));
    report.line(format!(
        "gaps {}, write errors {}, closed {}, bad frames {}",
        counts.get(Ctr::Gaps),
        counts.get(Ctr::WriteErrors),
        counts.get(Ctr::Closed),
        counts.get(Ctr::BadFrames)
    ));
    if let Some(per_connection) = plan.rate {
        let total = (per_connection * plan.connections as f64).round() as usize;
        super::openloop::report_lines(&mut report, total, &counts, seconds, &plan.send_lag);
        report.set("rate_per_connection", per_connection);
    }
    report.latency("latency", "write->push latency", &latency);
    spread(&mut report, &plan);
    report.cpu(&measured.cpu, &[("writes", acked)]);
    report.set("connections", plan.connections);
    report.set("connections_ready", setup.get(Ctr::Ready));
    report.set("pad", options.pad);
    report.set("threads", options.threads);
    report.set("writes_per_s", rate(acked, seconds));
    report.set("counts", counts.to_json());
    report.set("first_error", run.ctl.first_error());
    report.timeline = Some(run.monitor.take_timeline());
    Ok(report)
}

/// The spread between connections: own pushes and mean latency per connection (min, 1st
/// percentile, median, 99th percentile, max), and per tool thread.
fn spread(report: &mut Report, plan: &Plan) {
    let load = |t: &Tally| {
        let pushes = t.pushes.load(Ordering::Relaxed);
        (pushes, t.latency_us.load(Ordering::Relaxed))
    };
    let mut pushes: Vec<u64> = plan.tallies.iter().map(|t| load(t).0).collect();
    let mut means: Vec<u64> = plan
        .tallies
        .iter()
        .map(load)
        .filter(|&(n, _)| n > 0)
        .map(|(n, sum)| sum / n)
        .collect();
    pushes.sort_unstable();
    means.sort_unstable();
    let (pushes, means) = (quantiles(&pushes), quantiles(&means));
    if let Some([min, p1, p50, p99, max]) = pushes {
        report.line(format!(
            "per connection, own pushes: min {min}  p1 {p1}  median {p50}  p99 {p99}  max {max}"
        ));
        report.set(
            "per_connection_pushes",
            json!({"min": min, "p1": p1, "p50": p50, "p99": p99, "max": max}),
        );
    }
    if let Some([min, p1, p50, p99, max]) = means {
        let ms = |us: u64| us as f64 / 1000.0;
        report.line(format!(
            "per connection, mean latency: min {:.2} ms  p1 {:.2} ms  median {:.2} ms  \
             p99 {:.2} ms  max {:.2} ms",
            ms(min),
            ms(p1),
            ms(p50),
            ms(p99),
            ms(max)
        ));
        report.set(
            "per_connection_mean_latency_us",
            json!({"min": min, "p1": p1, "p50": p50, "p99": p99, "max": max}),
        );
    }
    // Connection i runs on tool thread i % threads (`start_thread`).
    let mut threads = vec![(0u64, 0u64); plan.threads];
    for (i, tally) in plan.tallies.iter().enumerate() {
        let (n, sum) = load(tally);
        threads[i % plan.threads].0 += n;
        threads[i % plan.threads].1 += sum;
    }
    let each: Vec<String> = threads
        .iter()
        .map(|&(n, sum)| format!("{n} ({:.2} ms)", sum as f64 / n.max(1) as f64 / 1000.0))
        .collect();
    report.line(format!(
        "per tool thread, own pushes (mean latency): {}",
        each.join(", ")
    ));
    report.set(
        "per_thread",
        threads
            .iter()
            .map(|&(n, sum)| json!({"pushes": n, "mean_latency_us": sum / n.max(1)}))
            .collect::<Vec<_>>(),
    );
}

/// Min, 1st percentile, median, 99th percentile and max of sorted values.
fn quantiles(sorted: &[u64]) -> Option<[u64; 5]> {
    let last = sorted.len().checked_sub(1)?;
    let at = |q: f64| sorted[((last as f64) * q).round() as usize];
    Some([sorted[0], at(0.01), at(0.5), at(0.99), sorted[last]])
}

async fn start_thread(w: Worker, plan: Arc<Plan>) {
    for i in (w.index..plan.connections).step_by(plan.threads) {
        match plan.rate {
            Some(rate) => w.spawn(scheduled_writer(w.clone(), plan.clone(), i, rate)),
            None => w.spawn(writer(w.clone(), plan.clone(), i)),
        }
    }
}

async fn writer(w: Worker, plan: Arc<Plan>, index: usize) {
    let record = format!("bench:rec:{index}");
    let Some((mut conn, version)) = w
        .open_subscribed(plan.url(index), &record, Mode::Full)
        .await
    else {
        return;
    };
    w.ctl.reached(Phase::Warmup).await;
    let tally = &plan.tallies[index];
    let mut last_version = version;
    let mut seq = 0;
    while w.ctl.phase() < Phase::Draining {
        seq += 1;
        let id = conn.next_id();
        let sent_us = w.ctl.now_us();
        let frame = wire::publish(id, &record, |out| {
            wire::stamped_value(out, seq, sent_us, &plan.pad)
        });
        if conn.send(frame).await.is_err() {
            w.counters.bump(Ctr::Closed);
            return;
        }
        w.counters.bump(Ctr::WritesSent);
        match own_push(&w, &mut conn, id, seq, &mut last_version, tally).await {
            Outcome::Pushed => {}
            Outcome::Refused => tokio::time::sleep(ERROR_BACKOFF).await,
            Outcome::Closed => {
                w.counters.bump(Ctr::Closed);
                return;
            }
        }
    }
}

/// The open loop: write `k` (1, 2, ...) is due `k - 1` intervals after the connection's
/// start, which is spread over the first interval by the connection's index so the
/// connections do not write in step. Each write is stamped with its due time, so a write
/// sent late (tokio's timer wakes on whole milliseconds, or the thread is busy) or pushed
/// late counts its whole delay; the pushes are read while waiting for the next due time.
async fn scheduled_writer(w: Worker, plan: Arc<Plan>, index: usize, rate: f64) {
    let record = format!("bench:rec:{index}");
    let Some((mut conn, version)) = w
        .open_subscribed(plan.url(index), &record, Mode::Full)
        .await
    else {
        return;
    };
    w.ctl.reached(Phase::Warmup).await;
    let tally = &plan.tallies[index];
    let interval_us = 1e6 / rate;
    let start_us = w.ctl.now_us() + (interval_us * index as f64 / plan.connections as f64) as u64;
    let due = |seq: u64| start_us + (interval_us * (seq - 1) as f64) as u64;
    let at = |us: u64| tokio::time::Instant::from_std(w.ctl.instant_at(us));
    let mut last_version = version;
    let mut seq = 1;
    let mut timer = pin!(tokio::time::sleep_until(at(due(seq))));
    loop {
        let next = match select(timer.as_mut(), pin!(conn.recv())).await {
            Either::Left(((), _)) => None,
            Either::Right((frame, _)) => Some(frame),
        };
        let bytes = match next {
            Some(Some(bytes)) => bytes,
            Some(None) => {
                w.counters.bump(Ctr::Closed);
                return;
            }
            None => {
                if w.ctl.phase() >= Phase::Draining {
                    return;
                }
                let due_us = due(seq);
                if w.ctl.measuring() {
                    let lag_us = w.ctl.now_us().saturating_sub(due_us);
                    if lag_us > super::openloop::LATE.as_micros() as u64 {
                        w.counters.bump(Ctr::LateWrites);
                    }
                    if let Ok(mut h) = plan.send_lag.lock() {
                        h.saturating_record(lag_us.max(1));
                    }
                }
                let id = conn.next_id();
                let frame = wire::publish(id, &record, |out| {
                    wire::stamped_value(out, seq, due_us, &plan.pad)
                });
                if conn.send(frame).await.is_err() {
                    w.counters.bump(Ctr::Closed);
                    return;
                }
                w.counters.bump(Ctr::WritesSent);
                seq += 1;
                timer.as_mut().reset(at(due(seq)));
                continue;
            }
        };
        match read(&w, &bytes, &mut last_version, tally) {
            Seen::Ping if w.pong(&mut conn).await.is_err() => {
                w.counters.bump(Ctr::Closed);
                return;
            }
            _ => {}
        }
    }
}

enum Outcome {
    Pushed,
    Refused,
    Closed,
}

/// What a frame from the server was, once counted.
enum Seen {
    /// The reply to request `id` (counted acked or refused).
    Reply {
        id: u64,
        refused: bool,
    },
    /// A push of our value `seq` (its latency recorded while measuring).
    Push {
        seq: Option<u64>,
    },
    Ping,
    Other,
}

/// Counts one frame: replies as acks or errors, pushes as deliveries (checking the version
/// sequence) with their latency from the value's `sent_us`.
fn read(w: &Worker, bytes: &[u8], last: &mut u64, tally: &Tally) -> Seen {
    let Ok(frame) = serde_json::from_slice::<Incoming>(bytes) else {
        w.counters.bump(Ctr::BadFrames);
        return Seen::Other;
    };
    let payload = frame.payload.0;
    if let Some(id) = frame.id {
        let refused = !payload.as_ref().is_some_and(|p| p.succeeded());
        w.count_ack(payload.as_ref());
        return Seen::Reply { id, refused };
    }
    match (&*frame.command, payload) {
        (wire::RECORD_UPDATE, Some(p)) => {
            w.counters.bump(Ctr::Deliveries);
            check_sequence(&w.counters, last, p.version.unwrap_or(0));
            let stamp = p.full.0.unwrap_or_default();
            if let Some(us) = stamp.sent_us.and_then(|sent_us| w.record_latency(sent_us)) {
                tally.add(us);
            }
            Seen::Push { seq: stamp.seq }
        }
        (wire::PING, _) => Seen::Ping,
        _ => Seen::Other,
    }
}

/// Reads until the push of value `seq` arrives (or the write `id` is refused). The
/// reply of a write may come after its push: it is counted when it arrives.
async fn own_push(
    w: &Worker,
    conn: &mut Conn,
    id: u64,
    seq: u64,
    last: &mut u64,
    tally: &Tally,
) -> Outcome {
    loop {
        let Some(bytes) = conn.recv().await else {
            return Outcome::Closed;
        };
        match read(w, &bytes, last, tally) {
            Seen::Reply { id: reply, refused } if reply == id && refused => {
                return Outcome::Refused;
            }
            Seen::Push { seq: Some(pushed) } if pushed == seq => return Outcome::Pushed,
            Seen::Ping if w.pong(conn).await.is_err() => return Outcome::Closed,
            _ => {}
        }
    }
}
