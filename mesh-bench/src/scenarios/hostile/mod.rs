//! `hostile`: well-behaved clients beside hostile ones, to show what the hostile ones cost
//! everyone else. The well-behaved half is a small fan-out: open-loop writers, each on its
//! own record, and patch subscribers spread over those records (latency from each write's due
//! time to its delivery). The hostile half is `attacks`, on a thread of its own so building
//! its frames never delays the well-behaved clients' reads. `--baseline` runs the same
//! without the hostile half, for the comparison.

mod attacks;
mod frames;

use super::fanout::follow;
use super::openloop::drain_replies;
use crate::args::Options;
use crate::conn::{self, Conn};
use crate::control::{self, Phase, Worker};
use crate::probe;
use crate::report::{Report, rate};
use crate::runner::{Progress, Run};
use crate::stats::Ctr;
use crate::wire::{self, Incoming, Mode};
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

/// Default writes per second of each well-behaved writer: far below the shipped
/// per-connection limit (1,000/s), so the limiter never touches them.
const DEFAULT_RATE: usize = 50;

struct Plan {
    url: String,
    /// The well-behaved records, one per writer.
    good: Vec<String>,
    /// Each hostile connection's own record.
    bad: Vec<String>,
    /// What stalled and churning clients subscribe to: every well-behaved record and every
    /// `numbers` record (the largest pushes).
    follow: Vec<String>,
    subscribers: usize,
    /// Threads of the well-behaved clients; the hostile ones get the next one.
    threads: usize,
    rate: usize,
    pad: String,
    bomb: usize,
}

/// The kind of hostile connection `index`: each kind in turn.
fn attack_of(index: usize) -> attacks::Attack {
    attacks::ALL[index % attacks::ALL.len()]
}

/// Runs the scenario; fails when a well-behaved connection cannot be set up.
pub fn run(options: &Options) -> Result<Report, String> {
    let prefix = format!("bench:hostile:{}", control::unique_suffix());
    let good: Vec<String> = (0..options.writers)
        .map(|i| format!("{prefix}:good:{i}"))
        .collect();
    let bad: Vec<String> = (0..options.hostile)
        .map(|i| format!("{prefix}:bad:{i}"))
        .collect();
    let mut plan = Plan {
        url: options.url().to_owned(),
        follow: good.clone(),
        good,
        bad,
        subscribers: options.subscribers,
        threads: options.threads,
        rate: options.rate.unwrap_or(DEFAULT_RATE),
        pad: "x".repeat(options.pad),
        bomb: options.bomb,
    };
    plan.follow.extend(
        (0..options.hostile)
            .filter(|&i| attack_of(i) == attacks::Attack::Numbers)
            .map(|i| plan.bad[i].clone()),
    );
    let plan = Arc::new(plan);
    let progress = Progress {
        rates: &[Ctr::WritesSent, Ctr::Deliveries, Ctr::HostileFrames],
        totals: &[
            Ctr::Ready,
            Ctr::Gaps,
            Ctr::WriteErrors,
            Ctr::Closed,
            Ctr::HostileConnects,
            Ctr::HostileCutOff,
        ],
    };
    let threads = plan.threads + usize::from(!plan.bad.is_empty());
    let mut run = Run::start(options, threads, &plan, start_thread, progress);
    run.set_up(plan.subscribers + plan.good.len())?;
    let rss_start = max_rss(&options.server_pids);
    let peak = Cell::new(rss_start.unwrap_or(0));
    let over_limit = Cell::new(false);
    let measured = run.measure_until(options, |_| {
        let now = max_rss(&options.server_pids).unwrap_or(0);
        peak.set(peak.get().max(now));
        over_limit.set(over_limit.get() || now > options.rss_limit);
        over_limit.get()
    });
    let latency = run.stop();
    // The hostile clients start in the warmup: their counts are the whole run's.
    let totals = run.monitor.snapshot();
    let rss_end = max_rss(&options.server_pids);
    let up = server_up(&plan.url, &options.server_pids);

    let counts = measured.counts;
    let seconds = measured.cpu.seconds;
    let (sent, deliveries) = (counts.get(Ctr::WritesSent), counts.get(Ctr::Deliveries));
    let mut report = Report::new(options.scenario.name());
    report.line(format!(
        "well-behaved: {} writers at {}/s each, {} patch subscribers over their records, \
         pad {} B; hostile: {}; {seconds:.1} s measured",
        plan.good.len(),
        plan.rate,
        plan.subscribers,
        options.pad,
        hostile_mix(&plan)
    ));
    report.line(format!(
        "writes sent {sent} ({:.0}/s), acked {}, errors {}, deliveries {deliveries} ({:.0}/s), \
         deliveries / expected {:.3}",
        rate(sent, seconds),
        counts.get(Ctr::WritesAcked),
        counts.get(Ctr::WriteErrors),
        rate(deliveries, seconds),
        deliveries as f64 / (sent * plan.subscribers as u64 / plan.good.len() as u64).max(1) as f64
    ));
    report.line(format!(
        "gaps {}, full pushes to patch subscribers {}, well-behaved connections closed {}",
        counts.get(Ctr::Gaps),
        counts.get(Ctr::FullPushes),
        counts.get(Ctr::Closed)
    ));
    report.line(format!(
        "hostile (warmup included): connections {}, frames {}, error replies {}, cut off {}",
        totals.get(Ctr::HostileConnects),
        totals.get(Ctr::HostileFrames),
        totals.get(Ctr::HostileRefused),
        totals.get(Ctr::HostileCutOff)
    ));
    report.latency("latency", "write->delivery latency", &latency);
    report.cpu(&measured.cpu, &[("deliveries", deliveries)]);
    let timeline = run.monitor.take_timeline();
    let mib = |b: Option<u64>| b.map_or("n/a".into(), |b| format!("{:.0}", b as f64 / 1048576.0));
    let every_10s: Vec<String> = timeline
        .samples
        .iter()
        .step_by(10)
        .map(|s| mib(s.servers.iter().filter_map(|r| r.rss_bytes).max()))
        .collect();
    report.line(format!(
        "server RSS (MiB): start {}, peak {}, end {}; every 10 s: {}{}",
        mib(rss_start),
        mib(rss_start.map(|_| peak.get())),
        mib(rss_end),
        every_10s.join(" "),
        if over_limit.get() {
            format!(
                "; PASSED --rss-limit {} MiB: run ended early",
                options.rss_limit >> 20
            )
        } else {
            String::new()
        }
    ));
    report.line(match &up {
        Ok(()) => "server up after the run: yes (answered a noop on a new connection)".into(),
        Err(why) => format!("server up after the run: NO ({why})"),
    });
    report.set("writers", plan.good.len());
    report.set("subscribers", plan.subscribers);
    report.set("rate", plan.rate);
    report.set("pad", options.pad);
    report.set("threads", options.threads);
    report.set("hostile", plan.bad.len());
    report.set("bomb", plan.bomb);
    report.set("writes_per_s", rate(sent, seconds));
    report.set("deliveries_per_s", rate(deliveries, seconds));
    report.set("server_rss_start_bytes", rss_start);
    report.set("server_rss_peak_bytes", rss_start.map(|_| peak.get()));
    report.set("server_rss_end_bytes", rss_end);
    report.set("rss_limit_passed", over_limit.get());
    report.set("server_up", up.is_ok());
    report.set("counts", counts.to_json());
    report.set("totals", totals.to_json());
    report.set("first_error", run.ctl.first_error());
    report.timeline = Some(timeline);
    Ok(report)
}

/// "2 diff-bomb, 2 numbers, …", or "none (baseline)".
fn hostile_mix(plan: &Plan) -> String {
    if plan.bad.is_empty() {
        return "none (baseline)".into();
    }
    attacks::ALL
        .iter()
        .map(|&a| {
            let n = (0..plan.bad.len()).filter(|&i| attack_of(i) == a).count();
            format!("{n} {}", a.name())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The largest resident memory among `pids`, if any could be read.
fn max_rss(pids: &[u32]) -> Option<u64> {
    pids.iter()
        .filter_map(|&pid| probe::rss_bytes(Some(pid)))
        .max()
}

/// Whether every server process still exists and the server answers a `mesh/noop` on a
/// new connection within 10 s.
fn server_up(url: &str, pids: &[u32]) -> Result<(), String> {
    if let Some(pid) = pids
        .iter()
        .find(|&&pid| probe::rss_bytes(Some(pid)).is_none())
    {
        return Err(format!("process {pid} is gone"));
    }
    actix_rt::System::new().block_on(async {
        let client = conn::http_client();
        let mut conn = Conn::open(&client, url).await?;
        let id = conn.next_id();
        conn.send(wire::request(id, "mesh/noop", &serde_json::Value::Null))
            .await?;
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let bytes = conn.recv().await.ok_or("closed before answering")?;
                if let Ok(frame) = serde_json::from_slice::<Incoming>(&bytes)
                    && frame.id == Some(id)
                {
                    return Ok(());
                }
            }
        })
        .await
        .map_err(|_| "no answer to a noop in 10 s".to_owned())?
    })
}

/// Spawns this thread's share: well-behaved subscribers and writers on the first `threads`
/// threads, every hostile connection on the last.
async fn start_thread(w: Worker, plan: Arc<Plan>) {
    if w.index == plan.threads {
        for (i, record) in plan.bad.iter().enumerate() {
            let (w, plan, record) = (w.clone(), plan.clone(), record.clone());
            w.clone().spawn(async move {
                let target = attacks::Target {
                    url: &plan.url,
                    record,
                    bomb: plan.bomb,
                    follow: &plan.follow,
                };
                attacks::run(w, attack_of(i), target).await;
            });
        }
        return;
    }
    for i in (w.index..plan.subscribers).step_by(plan.threads) {
        let (w2, plan) = (w.clone(), plan.clone());
        w.spawn(async move {
            let record = &plan.good[i % plan.good.len()];
            follow(w2, &plan.url, record, Mode::Patch).await;
        });
    }
    for i in (w.index..plan.good.len()).step_by(plan.threads) {
        w.spawn(writer(w.clone(), plan.clone(), i));
    }
}

/// Writes record `good[index]` at `rate` per second from the warmup on, at fixed due times
/// whatever the answers; each value carries its due time, so latency counts from when the
/// write should have gone out.
async fn writer(w: Worker, plan: Arc<Plan>, index: usize) {
    let Some(mut conn) = w.open(&plan.url).await else {
        return;
    };
    w.counters.bump(Ctr::Ready);
    w.ctl.reached(Phase::Warmup).await;
    let record = &plan.good[index];
    let interval_us = 1e6 / plan.rate as f64;
    let start_us = w.ctl.now_us();
    for seq in 1u64.. {
        if drain_replies(&w, &mut conn).await.is_err() {
            w.counters.bump(Ctr::Closed);
            return;
        }
        if w.ctl.phase() >= Phase::Draining {
            return;
        }
        let due_us = start_us + ((seq - 1) as f64 * interval_us) as u64;
        let now_us = w.ctl.now_us();
        if due_us > now_us {
            tokio::time::sleep(Duration::from_micros(due_us - now_us)).await;
        }
        let id = conn.next_id();
        let frame = wire::publish(id, record, |out| {
            wire::stamped_value(out, seq, due_us, &plan.pad)
        });
        if conn.send(frame).await.is_err() {
            w.counters.bump(Ctr::Closed);
            return;
        }
        w.counters.bump(Ctr::WritesSent);
    }
}
