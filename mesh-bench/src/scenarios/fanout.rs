//! `fanout`: many subscribers on one record, one pipelined writer.

use super::openloop::{self, Schedule};
use crate::args::Options;
use crate::conn::Conn;
use crate::control::{self, Control, Phase, Worker};
use crate::report::{Report, rate};
use crate::runner::{Measured, Progress, Run};
use crate::stats::{Ctr, Latency, check_sequence, new_latency};
use crate::wire::{self, Incoming, Mode, Payload};
use serde_json::Value;
use std::borrow::Cow;
use std::sync::{Arc, Mutex};

/// What every thread needs to know.
struct Plan {
    url: String,
    record: String,
    mode: Mode,
    subscribers: usize,
    threads: usize,
    in_flight: usize,
    /// Open loop at this many writes per second; the writer then has thread 0 to itself.
    rate: Option<usize>,
    pad: String,
    /// Open loop: how late each measured write went out.
    send_lag: Mutex<Latency>,
}

impl Plan {
    /// Worker threads: the subscribers' `threads`, plus the open-loop writer's own.
    fn all_threads(&self) -> usize {
        self.threads + usize::from(self.rate.is_some())
    }

    /// The first thread that hosts subscribers.
    fn first_subscriber_thread(&self) -> usize {
        usize::from(self.rate.is_some())
    }
}

/// Runs the scenario; fails when a connection cannot be set up.
pub fn run(options: &Options) -> Result<Report, String> {
    let plan = Arc::new(Plan {
        url: options.url().to_owned(),
        record: options
            .record
            .clone()
            .unwrap_or_else(|| format!("bench:fanout:{}", control::unique_suffix())),
        mode: options.mode,
        subscribers: options.subscribers,
        threads: options.threads,
        in_flight: options.in_flight,
        rate: options.rate,
        pad: "x".repeat(options.pad),
        send_lag: Mutex::new(new_latency()),
    });
    // The open-loop writer reads its acknowledgements in bursts between scheduled sends, so
    // per second it shows the writes it sent (the schedule it keeps) rather than acks.
    let progress = Progress {
        rates: match options.rate {
            Some(_) => &[Ctr::WritesSent, Ctr::Deliveries],
            None => &[Ctr::WritesAcked, Ctr::Deliveries],
        },
        totals: &[
            Ctr::Ready,
            Ctr::Gaps,
            Ctr::FullPushes,
            Ctr::WriteErrors,
            Ctr::LateWrites,
            Ctr::Closed,
        ],
    };
    let mut run = Run::start(options, plan.all_threads(), &plan, start_thread, progress);
    let setup = run.set_up(plan.subscribers + 1)?;
    let measured = run.measure(options);
    let latency = run.stop();
    let mut report = summarize(options, &plan, measured, &latency, &run.ctl);
    report.set("connections_ready", setup.get(Ctr::Ready));
    report.timeline = Some(run.monitor.take_timeline());
    Ok(report)
}

fn summarize(
    options: &Options,
    plan: &Plan,
    measured: Measured,
    latency: &Latency,
    ctl: &Control,
) -> Report {
    let counts = measured.counts;
    let seconds = measured.cpu.seconds;
    let (acked, deliveries) = (counts.get(Ctr::WritesAcked), counts.get(Ctr::Deliveries));
    let mut report = Report::new(options.scenario.name());
    let load = match plan.rate {
        Some(rate) => format!("open loop at {rate} writes/s"),
        None => format!("{} writes in flight", plan.in_flight),
    };
    report.line(format!(
        "{} {} subscribers on {}, {load}, pad {} B, {:.1} s measured",
        plan.subscribers,
        plan.mode.as_str(),
        plan.record,
        options.pad,
        seconds
    ));
    report.line(format!(
        "writes acked {acked} ({:.0}/s), deliveries {deliveries} ({:.0}/s), deliveries / (writes x subscribers) {:.3}",
        rate(acked, seconds),
        rate(deliveries, seconds),
        deliveries as f64 / (acked * plan.subscribers as u64).max(1) as f64
    ));
    report.line(format!(
        "gaps {}, full pushes to patch subscribers {}, write errors {}, closed {}, bad frames {}",
        counts.get(Ctr::Gaps),
        counts.get(Ctr::FullPushes),
        counts.get(Ctr::WriteErrors),
        counts.get(Ctr::Closed),
        counts.get(Ctr::BadFrames)
    ));
    if let Some(rate) = plan.rate {
        openloop::report_lines(&mut report, rate, &counts, seconds, &plan.send_lag);
    }
    report.latency("latency", "write->delivery latency", latency);
    report.cpu(
        &measured.cpu,
        &[("deliveries", deliveries), ("writes", acked)],
    );
    report.set("subscribers", plan.subscribers);
    report.set("mode", plan.mode.as_str());
    report.set(
        "in_flight",
        plan.rate.map_or(plan.in_flight.into(), |_| Value::Null),
    );
    report.set("rate", plan.rate);
    report.set("pad", options.pad);
    report.set("threads", options.threads);
    report.set("writes_per_s", rate(acked, seconds));
    report.set("deliveries_per_s", rate(deliveries, seconds));
    report.set("counts", counts.to_json());
    report.set("first_error", ctl.first_error());
    report
}

/// Spawns this thread's share of the subscribers, and the writer on thread 0 (alone
/// there in open loop).
async fn start_thread(w: Worker, plan: Arc<Plan>) {
    if let Some(first) = w.index.checked_sub(plan.first_subscriber_thread()) {
        for _ in (first..plan.subscribers).step_by(plan.threads) {
            w.spawn(subscriber(w.clone(), plan.clone()));
        }
    }
    if w.index == 0 {
        w.spawn(writer(w.clone(), plan));
    }
}

async fn subscriber(w: Worker, plan: Arc<Plan>) {
    follow(w, &plan.url, &plan.record, plan.mode).await;
}

/// One subscriber of `record` until the run ends: deliveries, version sequence and
/// write-to-delivery latency (`hostile` runs the same ones beside its attacks).
pub(super) async fn follow(w: Worker, url: &str, record: &str, mode: Mode) {
    let Some((mut conn, version)) = w.open_subscribed(url, record, mode).await else {
        return;
    };
    let mut state = SubscriberState {
        last_version: version,
        last_sent_us: None,
    };
    while let Some(bytes) = conn.recv().await {
        let Ok(frame) = serde_json::from_slice::<Incoming>(&bytes) else {
            w.counters.bump(Ctr::BadFrames);
            continue;
        };
        match (&*frame.command, frame.payload.0) {
            (wire::RECORD_UPDATE, Some(payload)) => state.on_update(&w, mode, &payload),
            (wire::PING, _) if w.pong(&mut conn).await.is_err() => break,
            _ => {}
        }
    }
    w.counters.bump(Ctr::Closed);
}

/// What a subscriber remembers between pushes.
struct SubscriberState {
    last_version: u64,
    /// The record's `sent_us` as last seen: a patch omits it when it did not change.
    last_sent_us: Option<u64>,
}

impl SubscriberState {
    fn on_update(&mut self, w: &Worker, mode: Mode, payload: &Payload) {
        w.counters.bump(Ctr::Deliveries);
        check_sequence(
            &w.counters,
            &mut self.last_version,
            payload.version.unwrap_or(0),
        );
        let sent_us = match &payload.full.0 {
            Some(full) => {
                if mode == Mode::Patch {
                    w.counters.bump(Ctr::FullPushes);
                }
                full.sent_us
            }
            None if payload.patch.present => payload.patch.sent_us.or(self.last_sent_us),
            None => {
                w.counters.bump(Ctr::BadFrames);
                return;
            }
        };
        self.last_sent_us = sent_us;
        if let Some(sent_us) = sent_us {
            w.record_latency(sent_us);
        }
    }
}

/// Keeps `in_flight` publishes outstanding from the warmup on.
async fn writer(w: Worker, plan: Arc<Plan>) {
    let Some(mut conn) = w.open(&plan.url).await else {
        return;
    };
    w.counters.bump(Ctr::Ready);
    w.ctl.reached(Phase::Warmup).await;
    let written = match plan.rate {
        Some(rate) => {
            let schedule = Schedule {
                rate,
                record: &|_| Cow::Borrowed(&plan.record),
                pad: &plan.pad,
                send_lag: &plan.send_lag,
            };
            openloop::write(&w, &schedule, &mut conn).await.map(drop)
        }
        None => write_loop(&w, &plan, &mut conn).await,
    };
    if let Err(e) = written {
        w.ctl.note_error(format!("writer: {e}"));
    }
    w.counters.bump(Ctr::Closed);
}

async fn write_loop(w: &Worker, plan: &Plan, conn: &mut Conn) -> Result<(), String> {
    let (mut seq, mut in_flight) = (0u64, 0usize);
    loop {
        let mut fed = false;
        while in_flight < plan.in_flight && w.ctl.phase() < Phase::Draining {
            seq += 1;
            let id = conn.next_id();
            let sent_us = w.ctl.now_us();
            conn.feed(wire::publish(id, &plan.record, |out| {
                wire::stamped_value(out, seq, sent_us, &plan.pad)
            }))
            .await?;
            w.counters.bump(Ctr::WritesSent);
            in_flight += 1;
            fed = true;
        }
        if fed {
            conn.flush().await?;
        }
        let bytes = conn.recv().await.ok_or("connection closed")?;
        let Ok(frame) = serde_json::from_slice::<Incoming>(&bytes) else {
            w.counters.bump(Ctr::BadFrames);
            continue;
        };
        if frame.id.is_some() {
            in_flight = in_flight.saturating_sub(1);
            w.count_ack(frame.payload.0.as_ref());
        } else if frame.command == wire::PING {
            w.pong(conn).await?;
        }
    }
}
