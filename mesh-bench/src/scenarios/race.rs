//! `race`: concurrent writers on one record, possibly through several server instances.

use crate::args::Options;
use crate::conn::{self, Conn};
use crate::control::{self, Phase, Worker};
use crate::probe::CpuSample;
use crate::report::{Report, rate};
use crate::runner::{Progress, Run};
use crate::stats::{Ctr, check_sequence};
use crate::wire::{self, Incoming, Mode};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Publishes one writer keeps in flight.
const PIPELINE: usize = 16;
/// Time the subscribers get to catch up with the final version after the writes.
const CATCH_UP: Duration = Duration::from_secs(5);

struct Plan {
    urls: Vec<String>,
    record: String,
    mode: Mode,
    writers: usize,
    writes: usize,
    threads: usize,
    /// Per subscriber (one per URL): the version in its subscribe reply.
    first_version: Vec<AtomicU64>,
    /// Per subscriber: the highest version pushed to it so far.
    last_version: Vec<AtomicU64>,
}

/// Runs the scenario; fails when a connection cannot be set up.
pub fn run(options: &Options) -> Result<Report, String> {
    let plan = Arc::new(Plan {
        urls: options.urls.clone(),
        record: format!("bench:race:{}", control::unique_suffix()),
        mode: options.mode,
        writers: options.writers,
        writes: options.writes,
        threads: options.threads,
        first_version: options.urls.iter().map(|_| AtomicU64::new(0)).collect(),
        last_version: options.urls.iter().map(|_| AtomicU64::new(0)).collect(),
    });
    let progress = Progress {
        rates: &[Ctr::WritesAcked, Ctr::Deliveries],
        totals: &[
            Ctr::WritersDone,
            Ctr::WriteErrors,
            Ctr::Gaps,
            Ctr::Duplicates,
            Ctr::OutOfOrder,
        ],
    };
    let mut run = Run::start(options, options.threads, &plan, start_thread, progress);
    let setup = run.set_up(plan.writers + plan.urls.len())?;

    run.monitor.begin_window();
    let cpu_before = CpuSample::take(&options.server_pids);
    let started = Instant::now();
    run.ctl.set(Phase::Measuring);
    let writers = plan.writers as u64;
    let finished = run.monitor.wait("writing", options.duration, |s| {
        s.get(Ctr::WritersDone) >= writers
    });
    run.monitor.end_window();
    let write_seconds = started.elapsed().as_secs_f64();
    let finals = final_versions(&plan.urls, &plan.record);
    let final_version = finals.iter().filter_map(|v| v.as_ref().ok()).copied().max();
    if let Some(target) = final_version {
        run.monitor.wait("catch-up", CATCH_UP, |_| {
            plan.last_version
                .iter()
                .all(|v| v.load(Ordering::Relaxed) >= target)
        });
    }
    let cpu = CpuSample::take(&options.server_pids).since(&cpu_before);
    let counts = run.monitor.snapshot().since(&setup);
    run.stop();

    let acked = counts.get(Ctr::WritesAcked);
    let first = plan.first_version[0].load(Ordering::Relaxed);
    let lost = final_version.map(|f| acked as i64 - (f as i64 - first as i64));
    let mut report = Report::new(options.scenario.name());
    report.line(format!(
        "{} writers x {} writes on {} through {} URL(s){}",
        plan.writers,
        plan.writes,
        plan.record,
        plan.urls.len(),
        if finished {
            ""
        } else {
            " -- TIME LIMIT HIT before every writer finished"
        }
    ));
    report.line(format!(
        "writes acked {acked} of {} ({:.0}/s over {write_seconds:.2} s), write errors {}",
        plan.writers * plan.writes,
        rate(acked, write_seconds),
        counts.get(Ctr::WriteErrors)
    ));
    report.line(format!(
        "final version per URL {:?} (started at {first}); lost updates (acked - versions): {}",
        finals,
        lost.map_or("n/a".into(), |l| l.to_string())
    ));
    report.line(format!(
        "subscribers: {} pushes, gaps {}, duplicates {}, out of order {}, full pushes {}, last seen {:?}",
        counts.get(Ctr::Deliveries),
        counts.get(Ctr::Gaps),
        counts.get(Ctr::Duplicates),
        counts.get(Ctr::OutOfOrder),
        counts.get(Ctr::FullPushes),
        plan.last_version.iter().map(|v| v.load(Ordering::Relaxed)).collect::<Vec<_>>()
    ));
    report.cpu(&cpu, &[("writes", acked)]);
    report.set("writers", plan.writers);
    report.set("writes_per_writer", plan.writes);
    report.set("urls", plan.urls.clone());
    report.set("record", plan.record.clone());
    report.set("finished", finished);
    report.set("write_s", crate::report::round(write_seconds));
    report.set("writes_acked", acked);
    report.set("writes_per_s", rate(acked, write_seconds));
    report.set("initial_version", first);
    report.set(
        "final_versions",
        finals
            .iter()
            .map(|v| v.as_ref().ok().copied())
            .collect::<Vec<_>>(),
    );
    report.set("lost_updates", lost);
    report.set("counts", counts.to_json());
    report.set("first_error", run.ctl.first_error());
    report.timeline = Some(run.monitor.take_timeline());
    Ok(report)
}

/// The record's version seen by a fresh subscribe through each URL.
fn final_versions(urls: &[String], record: &str) -> Vec<Result<u64, String>> {
    actix_rt::System::new().block_on(async {
        let client = conn::http_client();
        let mut versions = Vec::new();
        for url in urls {
            let version = match Conn::open(&client, url).await {
                Ok(mut conn) => conn.subscribe(record, Mode::Full).await,
                Err(e) => Err(e),
            };
            versions.push(version);
        }
        versions
    })
}

async fn start_thread(w: Worker, plan: Arc<Plan>) {
    for u in (w.index..plan.urls.len()).step_by(plan.threads) {
        w.spawn(subscriber(w.clone(), plan.clone(), u));
    }
    for i in (w.index..plan.writers).step_by(plan.threads) {
        w.spawn(writer(w.clone(), plan.clone(), i));
    }
}

async fn subscriber(w: Worker, plan: Arc<Plan>, u: usize) {
    let Some((mut conn, version)) = w
        .open_subscribed(&plan.urls[u], &plan.record, plan.mode)
        .await
    else {
        return;
    };
    plan.first_version[u].store(version, Ordering::Relaxed);
    plan.last_version[u].store(version, Ordering::Relaxed);
    let mut last = version;
    while let Some(bytes) = conn.recv().await {
        let Ok(frame) = serde_json::from_slice::<Incoming>(&bytes) else {
            w.counters.bump(Ctr::BadFrames);
            continue;
        };
        match (&*frame.command, frame.payload.0) {
            (wire::RECORD_UPDATE, Some(p)) => {
                w.counters.bump(Ctr::Deliveries);
                if plan.mode == Mode::Patch && p.full.0.is_some() {
                    w.counters.bump(Ctr::FullPushes);
                }
                check_sequence(&w.counters, &mut last, p.version.unwrap_or(0));
                plan.last_version[u].store(last, Ordering::Relaxed);
            }
            (wire::PING, _) if w.pong(&mut conn).await.is_err() => break,
            _ => {}
        }
    }
    w.counters.bump(Ctr::Closed);
}

async fn writer(w: Worker, plan: Arc<Plan>, index: usize) {
    let url = &plan.urls[index % plan.urls.len()];
    if let Some(mut conn) = w.open(url).await {
        w.counters.bump(Ctr::Ready);
        w.ctl.reached(Phase::Measuring).await;
        // A run that failed its setup goes straight to Done: nothing to write then.
        if w.ctl.phase() == Phase::Measuring
            && let Err(e) = write_all(&w, &plan, &mut conn, index).await
        {
            w.ctl.note_error(format!("writer {index}: {e}"));
        }
    }
    w.counters.bump(Ctr::WritersDone);
}

/// Makes `plan.writes` publishes with up to `PIPELINE` in flight; returns once all are
/// answered.
async fn write_all(w: &Worker, plan: &Plan, conn: &mut Conn, index: usize) -> Result<(), String> {
    let (mut sent, mut answered) = (0usize, 0usize);
    while answered < plan.writes {
        let mut fed = false;
        while sent < plan.writes && sent - answered < PIPELINE {
            let id = conn.next_id();
            conn.feed(wire::publish(id, &plan.record, |out| {
                wire::race_value(out, index, sent)
            }))
            .await?;
            w.counters.bump(Ctr::WritesSent);
            sent += 1;
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
            answered += 1;
            w.count_ack(frame.payload.0.as_ref());
        } else if frame.command == wire::PING {
            w.pong(conn).await?;
        }
    }
    Ok(())
}
