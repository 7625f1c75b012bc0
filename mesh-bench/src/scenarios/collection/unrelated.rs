//! `collection --shape unrelated-writes`: C collections, each with S subscribers, held by
//! `C / P x S` connections of P subscriptions each (subscribed pipelined), while an
//! open-loop writer writes records in none of them. The figure is the server's CPU per
//! write, to compare with the same run under `--no-collections` (the same connections and
//! writes, no subscription): the issue asks that it stay within 10 %.
//!
//! The collections have no members (nothing the writes could change), and the written
//! records share the members' id prefix up to the collection number, so the server has to
//! tell them apart rather than skip them on the first characters. One more connection
//! follows the written records (plain record subscriptions, in both runs) for the
//! write-to-push latency; the collection subscribers should receive nothing.

use super::super::openloop::{self, Schedule};
use super::{Names, SetupMemory, WINDOW, block_of, create_records};
use crate::args::Options;
use crate::conn::Conn;
use crate::control::{self, Phase, Worker};
use crate::report::{Report, rate, round};
use crate::runner::{Progress, Run};
use crate::stats::{Ctr, Latency, new_latency};
use crate::wire::{self, Incoming, Mode};
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The records written, in turn.
const TARGETS: usize = 100;
/// Longest wait, after the window, for the last replies and pushes.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

struct Plan {
    url: String,
    names: Names,
    collections: usize,
    /// Subscribers of each collection.
    subscribers: usize,
    per_connection: usize,
    /// Connections holding the subscriptions.
    holders: usize,
    no_collections: bool,
    mode: Mode,
    /// Threads of holders and the follower; the writer has one more to itself.
    threads: usize,
    rate: usize,
    pad: String,
    targets: Vec<String>,
    send_lag: Mutex<Latency>,
}

/// Runs the shape; fails when the records cannot be created or a connection set up.
pub fn run(options: &Options, names: &Names) -> Result<Report, String> {
    let targets = (0..TARGETS).map(|k| names.unrelated(k)).collect();
    let plan = Arc::new(Plan {
        url: options.url().to_owned(),
        names: names.clone(),
        collections: options.collections,
        subscribers: options.subscribers,
        per_connection: options.per_connection,
        holders: options.holder_connections(),
        no_collections: options.no_collections,
        mode: options.mode,
        threads: options.threads,
        rate: options.rate.unwrap_or(1000),
        pad: "x".repeat(options.pad),
        targets,
        send_lag: Mutex::new(new_latency()),
    });
    create_records(&plan.url, &plan.targets, &plan.pad)?;
    let mut memory = SetupMemory::before(options);
    let progress = Progress {
        rates: &[Ctr::Subscriptions, Ctr::WritesSent, Ctr::Deliveries],
        totals: &[
            Ctr::Ready,
            Ctr::Subscriptions,
            Ctr::Unexpected,
            Ctr::WriteErrors,
            Ctr::LateWrites,
            Ctr::Closed,
        ],
    };
    let started = Instant::now();
    let mut run = Run::start(options, plan.threads + 1, &plan, start_thread, progress);
    let expected = plan.holders + 2;
    let subscriptions = subscriptions(&plan);
    let limit = control::setup_limit(expected)
        .max(Duration::from_secs(60 + subscriptions as u64 / 1000))
        .min(Duration::from_secs(300));
    let setup = run.set_up_within(expected, limit)?;
    let setup_seconds = started.elapsed().as_secs_f64();
    memory.set_up();
    let measured = run.measure(options);
    memory.ended();
    let settled = run.monitor.wait("settling", SETTLE_LIMIT, |s| {
        s.get(Ctr::WritersDone) >= 1 && s.get(Ctr::Deliveries) >= s.get(Ctr::WritesAcked)
    });
    let totals = run.monitor.snapshot();
    let latency = run.stop();

    let counts = measured.counts;
    let seconds = measured.cpu.seconds;
    // The window's writes are the ones sent in it (the server's work for a write happens
    // then; the open-loop writer reads its acks in bursts, straddling the window's edges).
    let sent = counts.get(Ctr::WritesSent);
    let mut report = Report::new(options.scenario.name());
    let held = if plan.no_collections {
        format!(
            "baseline (--no-collections): {} connections without subscriptions",
            plan.holders
        )
    } else {
        format!(
            "{} collections x {} {} subscribers ({} connections x up to {})",
            plan.collections,
            options.subscribers,
            plan.mode.as_str(),
            plan.holders,
            plan.per_connection
        )
    };
    report.line(format!(
        "unrelated-writes: {held}; open loop at {} writes/s to {TARGETS} records in no \
         collection, pad {} B, {seconds:.1} s measured",
        plan.rate, options.pad
    ));
    let subscribed = setup.get(Ctr::Subscriptions);
    report.line(format!(
        "setup: {subscribed} subscriptions on {} connections in {setup_seconds:.1} s ({:.0}/s); \
         {}",
        setup.get(Ctr::Ready),
        rate(subscribed, setup_seconds),
        memory.describe(subscribed),
    ));
    report.line(format!(
        "writes sent {sent} ({:.0}/s), pushes to the follower {} ({:.0}/s); whole run{}: \
         pushes {} of {} acked writes",
        rate(sent, seconds),
        counts.get(Ctr::Deliveries),
        rate(counts.get(Ctr::Deliveries), seconds),
        if settled { "" } else { ", NOT settled" },
        totals.get(Ctr::Deliveries),
        totals.get(Ctr::WritesAcked),
    ));
    report.line(format!(
        "pushes to collection subscribers (should be none) {}, write errors {}, closed {}, \
         bad frames {}",
        totals.get(Ctr::Unexpected),
        totals.get(Ctr::WriteErrors),
        totals.get(Ctr::Closed),
        totals.get(Ctr::BadFrames)
    ));
    openloop::report_lines(&mut report, plan.rate, &counts, seconds, &plan.send_lag);
    report.latency("latency", "write->push latency (follower)", &latency);
    report.cpu(&measured.cpu, &[("writes", sent)]);
    let per_write_us = measured
        .cpu
        .server_total
        .filter(|_| sent > 0)
        .map(|cpu| cpu * 1e6 / sent as f64);
    report.line(match per_write_us {
        Some(us) => format!(
            "server CPU per write: {us:.1} µs (compare {} --no-collections: within 10 %)",
            if plan.no_collections {
                "with a run without"
            } else {
                "with"
            }
        ),
        None => "server CPU per write: n/a (pass --server-pid)".into(),
    });
    report.set("shape", options.shape.name());
    report.set("no_collections", plan.no_collections);
    report.set("collections", plan.collections);
    report.set("subscribers", options.subscribers);
    report.set("per_connection", plan.per_connection);
    report.set("holder_connections", plan.holders);
    report.set("subscriptions", subscribed);
    report.set("mode", plan.mode.as_str());
    report.set("rate", plan.rate);
    report.set("pad", options.pad);
    report.set("threads", options.threads);
    report.set("setup_s", round(setup_seconds));
    memory.set(&mut report, subscribed);
    report.set("writes_per_s", rate(sent, seconds));
    report.set("server_cpu_us_per_write", per_write_us.map(round));
    report.set("settled", settled);
    report.set("unexpected_pushes", totals.get(Ctr::Unexpected));
    report.set("counts", counts.to_json());
    report.set("totals", totals.to_json());
    report.set("first_error", run.ctl.first_error());
    report.timeline = Some(run.monitor.take_timeline());
    Ok(report)
}

/// Collection subscriptions the run makes.
fn subscriptions(plan: &Plan) -> usize {
    if plan.no_collections {
        0
    } else {
        plan.collections * plan.subscribers
    }
}

/// The writer alone on thread 0; the holders and the follower spread over the others.
async fn start_thread(w: Worker, plan: Arc<Plan>) {
    if w.index == 0 {
        w.spawn(writer(w.clone(), plan));
        return;
    }
    if w.index == 1 {
        w.spawn(follower(w.clone(), plan.clone()));
    }
    for index in (w.index - 1..plan.holders).step_by(plan.threads) {
        w.spawn(holder(w.clone(), plan.clone(), index));
    }
}

/// Holder `index`: subscribes to its block of collections (unless `--no-collections`),
/// then only answers pings; any push is unexpected.
async fn holder(w: Worker, plan: Arc<Plan>, index: usize) {
    let block = block_of(index, plan.collections, plan.per_connection);
    let subscribe = async |conn: &mut Conn| {
        if plan.no_collections {
            return Ok(());
        }
        let mut refused: Option<String> = None;
        conn.pipeline(
            block.len(),
            WINDOW,
            |id, i| {
                let collection = plan.names.collection(block.start + i);
                wire::subscribe_collection(id, &collection, plan.mode)
            },
            |payload| match payload {
                Some(p) if p.succeeded() => w.counters.bump(Ctr::Subscriptions),
                other => {
                    refused.get_or_insert_with(|| {
                        let why = other.map_or("unreadable reply".into(), |p| p.describe());
                        format!("subscribe-collection refused: {why}")
                    });
                }
            },
        )
        .await?;
        refused.map_or(Ok(()), Err)
    };
    let Some((mut conn, ())) = w.open_ready(&plan.url, subscribe).await else {
        return;
    };
    while let Some(bytes) = conn.recv().await {
        match serde_json::from_slice::<Incoming>(&bytes) {
            Ok(frame) if frame.command == wire::PING => {
                if w.pong(&mut conn).await.is_err() {
                    break;
                }
            }
            Ok(frame)
                if [wire::RECORD_UPDATE, wire::COLLECTION_DIFF].contains(&&*frame.command) =>
            {
                w.counters.bump(Ctr::Unexpected)
            }
            Ok(_) => {}
            Err(_) => w.counters.bump(Ctr::BadFrames),
        }
    }
    w.counters.bump(Ctr::Closed);
}

/// Follows every written record (full mode): one push per write, timed from its stamp.
async fn follower(w: Worker, plan: Arc<Plan>) {
    let subscribe = async |conn: &mut Conn| {
        let mut refused: Option<String> = None;
        conn.pipeline(
            plan.targets.len(),
            WINDOW,
            |id, i| wire::subscribe(id, &plan.targets[i], Mode::Full),
            |payload| {
                if !payload.is_some_and(|p| p.succeeded()) {
                    refused.get_or_insert_with(|| "subscribe refused".into());
                }
            },
        )
        .await?;
        refused.map_or(Ok(()), Err)
    };
    let Some((mut conn, ())) = w.open_ready(&plan.url, subscribe).await else {
        return;
    };
    while let Some(bytes) = conn.recv().await {
        let Ok(frame) = serde_json::from_slice::<Incoming>(&bytes) else {
            w.counters.bump(Ctr::BadFrames);
            continue;
        };
        match (&*frame.command, frame.payload.0) {
            (wire::RECORD_UPDATE, Some(payload)) => {
                w.counters.bump(Ctr::Deliveries);
                if let Some(sent_us) = payload.full.0.and_then(|full| full.sent_us) {
                    w.record_latency(sent_us);
                }
            }
            (wire::PING, _) if w.pong(&mut conn).await.is_err() => break,
            _ => {}
        }
    }
    w.counters.bump(Ctr::Closed);
}

/// Writes the targets in turn at the planned rate from the warmup to the end of the window,
/// then waits for the last replies.
async fn writer(w: Worker, plan: Arc<Plan>) {
    let Some(mut conn) = w.open(&plan.url).await else {
        return;
    };
    w.counters.bump(Ctr::Ready);
    w.ctl.reached(Phase::Warmup).await;
    let target = |seq: u64| Cow::Borrowed(plan.targets[(seq - 1) as usize % TARGETS].as_str());
    let schedule = Schedule {
        rate: plan.rate,
        record: &target,
        pad: &plan.pad,
        send_lag: &plan.send_lag,
    };
    super::write_until_done(&w, &schedule, &mut conn, SETTLE_LIMIT).await;
}
