//! `records`: every connection writes its own record in a closed loop.

use crate::args::Options;
use crate::conn::Conn;
use crate::control::{Phase, Worker};
use crate::report::{Report, rate};
use crate::runner::{Progress, Run};
use crate::stats::{Ctr, check_sequence};
use crate::wire::{self, Incoming, Mode};
use std::sync::Arc;
use std::time::Duration;

/// Pause after a failed write, so a server that refuses everything is not hammered.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

struct Plan {
    url: String,
    connections: usize,
    threads: usize,
    pad: String,
}

/// Runs the scenario; fails when a connection cannot be set up.
pub fn run(options: &Options) -> Result<Report, String> {
    let plan = Arc::new(Plan {
        url: options.url().to_owned(),
        connections: options.connections,
        threads: options.threads,
        pad: "x".repeat(options.pad),
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
    report.line(format!(
        "{} connections, each writing bench:rec:<i> in a closed loop, {seconds:.1} s measured",
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
    report.latency("latency", "write->push latency", &latency);
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

async fn start_thread(w: Worker, plan: Arc<Plan>) {
    for i in (w.index..plan.connections).step_by(plan.threads) {
        w.spawn(writer(w.clone(), plan.clone(), i));
    }
}

async fn writer(w: Worker, plan: Arc<Plan>, index: usize) {
    let record = format!("bench:rec:{index}");
    let Some((mut conn, version)) = w.open_subscribed(&plan.url, &record, Mode::Full).await else {
        return;
    };
    w.ctl.reached(Phase::Warmup).await;
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
        match own_push(&w, &mut conn, id, seq, &mut last_version).await {
            Outcome::Pushed => {}
            Outcome::Refused => tokio::time::sleep(ERROR_BACKOFF).await,
            Outcome::Closed => {
                w.counters.bump(Ctr::Closed);
                return;
            }
        }
    }
}

enum Outcome {
    Pushed,
    Refused,
    Closed,
}

/// Reads until the push of value `seq` arrives (or the write `id` is refused). The
/// reply of a write may come after its push: it is counted when it arrives.
async fn own_push(w: &Worker, conn: &mut Conn, id: u64, seq: u64, last: &mut u64) -> Outcome {
    loop {
        let Some(bytes) = conn.recv().await else {
            return Outcome::Closed;
        };
        let Ok(frame) = serde_json::from_slice::<Incoming>(&bytes) else {
            w.counters.bump(Ctr::BadFrames);
            continue;
        };
        let payload = frame.payload.0;
        if let Some(reply_id) = frame.id {
            let refused = !payload.as_ref().is_some_and(|p| p.succeeded());
            w.count_ack(payload.as_ref());
            if reply_id == id && refused {
                return Outcome::Refused;
            }
            continue;
        }
        match (&*frame.command, payload) {
            (wire::RECORD_UPDATE, Some(p)) => {
                w.counters.bump(Ctr::Deliveries);
                check_sequence(&w.counters, last, p.version.unwrap_or(0));
                if let Some(full) = p.full.0
                    && full.seq == Some(seq)
                {
                    if let Some(sent_us) = full.sent_us {
                        w.record_latency(sent_us);
                    }
                    return Outcome::Pushed;
                }
            }
            (wire::PING, _) if w.pong(conn).await.is_err() => return Outcome::Closed,
            _ => {}
        }
    }
}
