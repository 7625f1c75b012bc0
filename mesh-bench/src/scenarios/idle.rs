//! `idle`: many subscribed connections held open; server memory per connection. The
//! connections share 100 records, or with `--own-records` each has its own (so the figure
//! includes a record actor per connection).

use crate::args::Options;
use crate::control::{Phase, Worker};
use crate::probe::{self, CpuSample};
use crate::report::{Report, rate, round};
use crate::runner::{Progress, Run};
use crate::stats::Ctr;
use crate::wire::{self, Incoming, Mode};
use std::sync::Arc;
use std::time::Instant;

/// The records the idle connections spread over (without `--own-records`).
const RECORDS: usize = 100;

struct Plan {
    url: String,
    connections: usize,
    threads: usize,
    /// How many records the connections spread over: `RECORDS`, or one each.
    records: usize,
}

/// Runs the scenario. Failed connections are reported, not fatal: how many connections
/// the server takes is part of what this scenario finds out.
pub fn run(options: &Options) -> Result<Report, String> {
    let plan = Arc::new(Plan {
        url: options.url().to_owned(),
        connections: options.connections,
        threads: options.threads,
        records: if options.own_records {
            options.connections
        } else {
            RECORDS
        },
    });
    let pid = options.server_pids.first().copied();
    let rss_before = pid.and_then(|p| probe::rss_bytes(Some(p)));
    let started = Instant::now();
    let progress = Progress {
        rates: &[Ctr::Ready],
        totals: &[
            Ctr::Ready,
            Ctr::ConnectFailed,
            Ctr::Closed,
            Ctr::Pings,
            Ctr::Deliveries,
        ],
    };
    let mut run = Run::start(options, options.threads, &plan, start_thread, progress);
    run.wait_for_setup(plan.connections);
    let setup_seconds = started.elapsed().as_secs_f64();
    let setup = run.monitor.snapshot();
    // Let the server settle (buffers freed after the handshakes) before reading RSS.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let rss_after = pid.and_then(|p| probe::rss_bytes(Some(p)));
    run.monitor.begin_window();
    let cpu_before = CpuSample::take(&options.server_pids);
    run.ctl.set(Phase::Measuring);
    run.monitor.wait("holding", options.hold, |_| false);
    run.monitor.end_window();
    let cpu = CpuSample::take(&options.server_pids).since(&cpu_before);
    let rss_end = pid.and_then(|p| probe::rss_bytes(Some(p)));
    let held = run.monitor.snapshot();
    let tool_rss = probe::rss_bytes(None);
    run.stop();

    let ready = setup.get(Ctr::Ready);
    let per_connection = match (rss_before, rss_after) {
        (Some(before), Some(after)) if ready > 0 => {
            Some(after.saturating_sub(before) as f64 / ready as f64)
        }
        _ => None,
    };
    let mib =
        |b: Option<u64>| b.map_or("n/a".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
    let mut report = Report::new(options.scenario.name());
    report.line(format!(
        "{ready} of {} connections subscribed to {} records in {setup_seconds:.1} s ({:.0}/s), {} failed, {} closed while held",
        plan.connections,
        plan.records,
        rate(ready, setup_seconds),
        setup.get(Ctr::ConnectFailed),
        held.get(Ctr::Closed)
    ));
    report.line(format!(
        "server RSS: before {}, after setup {}, after holding {:.0} s {}",
        mib(rss_before),
        mib(rss_after),
        options.hold.as_secs_f64(),
        mib(rss_end)
    ));
    report.line(format!(
        "server memory per connection: {}",
        per_connection.map_or("n/a (needs --server-pid)".into(), |b| format!(
            "{b:.0} bytes"
        ))
    ));
    report.line(format!("tool RSS: {}", mib(tool_rss)));
    report.cpu(&cpu, &[]);
    report.set("connections", plan.connections);
    report.set("records", plan.records);
    report.set("ready", ready);
    report.set("connect_failed", setup.get(Ctr::ConnectFailed));
    report.set("closed_while_held", held.get(Ctr::Closed));
    report.set("setup_s", round(setup_seconds));
    report.set("server_rss_before_bytes", rss_before);
    report.set("server_rss_after_setup_bytes", rss_after);
    report.set("server_rss_after_hold_bytes", rss_end);
    report.set(
        "server_bytes_per_connection",
        per_connection.map(f64::round),
    );
    report.set("tool_rss_bytes", tool_rss);
    report.set("first_error", run.ctl.first_error());
    report.timeline = Some(run.monitor.take_timeline());
    Ok(report)
}

async fn start_thread(w: Worker, plan: Arc<Plan>) {
    for i in (w.index..plan.connections).step_by(plan.threads) {
        w.spawn(hold(w.clone(), plan.clone(), i));
    }
}

/// Subscribes, then only answers pings until the run ends.
async fn hold(w: Worker, plan: Arc<Plan>, index: usize) {
    let record = format!("bench:idle:{}", index % plan.records);
    let Some((mut conn, _)) = w.open_subscribed(&plan.url, &record, Mode::Full).await else {
        return;
    };
    while let Some(bytes) = conn.recv().await {
        match serde_json::from_slice::<Incoming>(&bytes) {
            Ok(frame) if frame.command == wire::PING => {
                if w.pong(&mut conn).await.is_err() {
                    break;
                }
            }
            Ok(frame) if frame.command == wire::RECORD_UPDATE => w.counters.bump(Ctr::Deliveries),
            Ok(_) => {}
            Err(_) => w.counters.bump(Ctr::BadFrames),
        }
    }
    w.counters.bump(Ctr::Closed);
}
