//! `collection --shape members-writes`: S subscribers, a connection each, on one collection
//! of M members; an open-loop writer updates the members in turn (every Kth write creates a
//! new member instead). Each value carries its due time, so the latency is from when the
//! write should have gone out to each subscriber's `mesh/record-update`.
//!
//! After the window the writer stops, waits for its last replies, and the run settles until
//! every acknowledged write has reached every subscriber (or a time limit): the summary then
//! compares the record-updates delivered with acked writes x S, and the members the diffs
//! added with creates x S. Each subscriber checks its diff versions go up by one.

use super::super::openloop::{self, Schedule};
use super::{Names, SetupMemory, create_records};
use crate::args::Options;
use crate::control::{Phase, Worker};
use crate::report::{Report, rate};
use crate::runner::{Measured, Progress, Run};
use crate::stats::{Ctr, Latency, Snapshot, check_sequence, new_latency};
use crate::wire::{self, Incoming, Mode, Payload};
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest wait, after the window, for the last replies and deliveries.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

struct Plan {
    url: String,
    collection: String,
    /// What member ids start with.
    prefix: String,
    members: usize,
    subscribers: usize,
    /// Threads of subscribers; the writer has one more to itself.
    threads: usize,
    rate: usize,
    create_every: usize,
    mode: Mode,
    pad: String,
    send_lag: Mutex<Latency>,
}

impl Plan {
    /// The record write `seq` goes to: a new member every `create_every`th write, else the
    /// existing members in turn.
    fn target(&self, seq: u64) -> String {
        let every = self.create_every as u64;
        if every > 0 && seq.is_multiple_of(every) {
            format!("{}new{seq}", self.prefix)
        } else {
            format!("{}{}", self.prefix, (seq - 1) % self.members as u64)
        }
    }

    /// Writes among the first `sent` that created a member.
    fn creates(&self, sent: u64) -> u64 {
        sent.checked_div(self.create_every as u64).unwrap_or(0)
    }
}

/// Runs the shape; fails when the members cannot be created or a subscriber set up.
pub fn run(options: &Options, names: &Names) -> Result<Report, String> {
    let plan = Arc::new(Plan {
        url: options.url().to_owned(),
        collection: names.collection(0),
        prefix: names.member_prefix(0),
        members: options.members,
        subscribers: options.subscribers,
        threads: options.threads,
        // The shape's default applies when --rate is not given.
        rate: options.rate.unwrap_or(100),
        create_every: options.create_every,
        mode: options.mode,
        pad: "x".repeat(options.pad),
        send_lag: Mutex::new(new_latency()),
    });
    let ids: Vec<String> = (0..plan.members)
        .map(|k| format!("{}{k}", plan.prefix))
        .collect();
    let created = create_records(&plan.url, &ids, &plan.pad)?;
    drop(ids);
    let progress = Progress {
        rates: &[Ctr::WritesSent, Ctr::Deliveries],
        totals: &[
            Ctr::Ready,
            Ctr::Diffs,
            Ctr::Gaps,
            Ctr::WriteErrors,
            Ctr::LateWrites,
            Ctr::Closed,
        ],
    };
    let mut memory = SetupMemory::before(options);
    let mut run = Run::start(options, plan.threads + 1, &plan, start_thread, progress);
    let setup = run.set_up(plan.subscribers + 1)?;
    memory.set_up();
    let measured = run.measure(options);
    memory.ended();
    let expected = |s: &Snapshot| Expected::of(&plan, s);
    let settled = run.monitor.wait("settling", SETTLE_LIMIT, |s| {
        s.get(Ctr::WritersDone) >= 1 && expected(s).met(s)
    });
    let totals = run.monitor.snapshot();
    let latency = run.stop();
    let settle = Settle {
        expected: expected(&totals),
        totals,
        settled,
    };
    // Every ready connection but the writer's holds one subscription.
    let subscribed = setup.get(Ctr::Ready).saturating_sub(1);
    let setup_line = format!(
        "setup: {subscribed} subscriptions; {}",
        memory.describe(subscribed)
    );
    let mut report = summarize(options, &plan, measured, &latency, (&settle, setup_line));
    memory.set(&mut report, subscribed);
    report.set("first_error", run.ctl.first_error());
    report.set("connections_ready", setup.get(Ctr::Ready));
    report.set(
        "members_created_s",
        crate::report::round(created.as_secs_f64()),
    );
    report.timeline = Some(run.monitor.take_timeline());
    Ok(report)
}

/// The whole run once the load has settled: what was received, what should have been.
struct Settle {
    expected: Expected,
    totals: Snapshot,
    /// Everything expected arrived before the time limit.
    settled: bool,
}

/// What the subscribers should have received once every write has been delivered.
struct Expected {
    deliveries: u64,
    added: u64,
}

impl Expected {
    /// From the totals of the whole run (the writer starts after setup, so every write it
    /// made is one every subscriber must see).
    fn of(plan: &Plan, totals: &Snapshot) -> Expected {
        let subscribers = plan.subscribers as u64;
        Expected {
            deliveries: totals.get(Ctr::WritesAcked) * subscribers,
            added: plan.creates(totals.get(Ctr::WritesSent)) * subscribers,
        }
    }

    fn met(&self, totals: &Snapshot) -> bool {
        totals.get(Ctr::Deliveries) >= self.deliveries
            && totals.get(Ctr::MembersAdded) >= self.added
    }
}

fn summarize(
    options: &Options,
    plan: &Plan,
    measured: Measured,
    latency: &Latency,
    (settle, setup_line): (&Settle, String),
) -> Report {
    let counts = measured.counts;
    let seconds = measured.cpu.seconds;
    // The window's writes are the ones sent in it: the open-loop writer reads its replies in
    // bursts between sends, so acks lag behind and straddle the window's edges.
    let (sent, deliveries) = (counts.get(Ctr::WritesSent), counts.get(Ctr::Deliveries));
    let mut report = Report::new(options.scenario.name());
    let creating = match plan.create_every {
        0 => "no member created".to_owned(),
        every => format!("every {every}th creating a member"),
    };
    report.line(format!(
        "members-writes: {} {} subscribers on {} ({} members), open loop at {} writes/s \
         ({creating}), pad {} B, {seconds:.1} s measured",
        plan.subscribers,
        plan.mode.as_str(),
        plan.collection,
        plan.members,
        plan.rate,
        options.pad,
    ));
    report.line(setup_line);
    report.line(format!(
        "writes sent {sent} ({:.0}/s), record-updates {deliveries} ({:.0}/s), \
         record-updates / (writes x subscribers) {:.3} (window)",
        rate(sent, seconds),
        rate(deliveries, seconds),
        deliveries as f64 / (sent * plan.subscribers as u64).max(1) as f64
    ));
    settle_lines(&mut report, settle);
    openloop::report_lines(&mut report, plan.rate, &counts, seconds, &plan.send_lag);
    report.latency("latency", "write->record-update latency", latency);
    report.cpu(
        &measured.cpu,
        &[("deliveries", deliveries), ("writes", sent)],
    );
    report.set("shape", options.shape.name());
    report.set("subscribers", plan.subscribers);
    report.set("members", plan.members);
    report.set("mode", plan.mode.as_str());
    report.set("rate", plan.rate);
    report.set("create_every", plan.create_every);
    report.set("pad", options.pad);
    report.set("threads", options.threads);
    report.set("writes_per_s", rate(sent, seconds));
    report.set("deliveries_per_s", rate(deliveries, seconds));
    report.set("counts", counts.to_json());
    report
}

/// The checks over the whole run, once settled.
fn settle_lines(report: &mut Report, settle: &Settle) {
    let Settle {
        expected,
        totals,
        settled,
    } = settle;
    let (deliveries, added) = (totals.get(Ctr::Deliveries), totals.get(Ctr::MembersAdded));
    report.line(format!(
        "whole run{}: record-updates {deliveries} of {} expected (acked writes x subscribers), \
         members added by diffs {added} of {} expected (creates x subscribers)",
        if *settled { "" } else { ", NOT settled" },
        expected.deliveries,
        expected.added,
    ));
    report.line(format!(
        "diffs {}: version gaps {}, duplicates {}, out of order {}; members removed {}; \
         write errors {}, closed {}, bad frames {}",
        totals.get(Ctr::Diffs),
        totals.get(Ctr::Gaps),
        totals.get(Ctr::Duplicates),
        totals.get(Ctr::OutOfOrder),
        totals.get(Ctr::MembersRemoved),
        totals.get(Ctr::WriteErrors),
        totals.get(Ctr::Closed),
        totals.get(Ctr::BadFrames),
    ));
    report.set("settled", *settled);
    report.set("deliveries_total", deliveries);
    report.set("deliveries_expected", expected.deliveries);
    report.set("members_added_total", added);
    report.set("members_added_expected", expected.added);
    report.set("totals", totals.to_json());
}

/// The writer alone on thread 0; the subscribers spread over the others.
async fn start_thread(w: Worker, plan: Arc<Plan>) {
    if w.index == 0 {
        w.spawn(writer(w.clone(), plan));
        return;
    }
    for _ in (w.index - 1..plan.subscribers).step_by(plan.threads) {
        w.spawn(subscriber(w.clone(), plan.clone()));
    }
}

/// One subscriber until the run ends: record-updates (latency), diffs (versions, members).
async fn subscriber(w: Worker, plan: Arc<Plan>) {
    let subscribe = async |conn: &mut crate::conn::Conn| {
        let members = conn
            .subscribe_collection(&plan.collection, plan.mode)
            .await?;
        if members != plan.members {
            return Err(format!(
                "the snapshot of {} has {members} members, not {}",
                plan.collection, plan.members
            ));
        }
        Ok(())
    };
    let Some((mut conn, ())) = w.open_ready(&plan.url, subscribe).await else {
        return;
    };
    // The snapshot is version 1; each diff adds one.
    let mut diff_version = 1;
    while let Some(bytes) = conn.recv().await {
        let Ok(frame) = serde_json::from_slice::<Incoming>(&bytes) else {
            w.counters.bump(Ctr::BadFrames);
            continue;
        };
        match (&*frame.command, frame.payload.0) {
            (wire::RECORD_UPDATE, Some(payload)) => on_update(&w, &payload),
            (wire::COLLECTION_DIFF, Some(payload)) => {
                w.counters.bump(Ctr::Diffs);
                let version = payload.version.unwrap_or(0);
                check_sequence(&w.counters, &mut diff_version, version);
                let added = payload.added.0.unwrap_or(0) as u64;
                w.counters.add(Ctr::MembersAdded, added);
                let removed = payload.removed.0.unwrap_or(0) as u64;
                w.counters.add(Ctr::MembersRemoved, removed);
            }
            (wire::PING, _) if w.pong(&mut conn).await.is_err() => break,
            _ => {}
        }
    }
    w.counters.bump(Ctr::Closed);
}

/// A member's new value: counted, and its stamp timed. Every write changes `sent_us`, so a
/// patch always carries it.
fn on_update(w: &Worker, payload: &Payload) {
    w.counters.bump(Ctr::Deliveries);
    let sent_us = match &payload.full.0 {
        Some(full) => full.sent_us,
        None => payload.patch.sent_us,
    };
    match sent_us {
        Some(sent_us) => {
            w.record_latency(sent_us);
        }
        None => w.counters.bump(Ctr::BadFrames),
    }
}

/// Writes at the planned rate from the warmup to the end of the window, then waits for the
/// last replies.
async fn writer(w: Worker, plan: Arc<Plan>) {
    let Some(mut conn) = w.open(&plan.url).await else {
        return;
    };
    w.counters.bump(Ctr::Ready);
    w.ctl.reached(Phase::Warmup).await;
    let target = |seq| {
        if plan.creates(seq) > plan.creates(seq - 1) {
            w.counters.bump(Ctr::Creates);
        }
        Cow::Owned(plan.target(seq))
    };
    let schedule = Schedule {
        rate: plan.rate,
        record: &target,
        pad: &plan.pad,
        send_lag: &plan.send_lag,
    };
    super::write_until_done(&w, &schedule, &mut conn, SETTLE_LIMIT).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(members: usize, create_every: usize) -> Plan {
        Plan {
            url: String::new(),
            collection: "bench:col:r:0".into(),
            prefix: "bench:item:r:0:".into(),
            members,
            subscribers: 10,
            threads: 1,
            rate: 100,
            create_every,
            mode: Mode::Full,
            pad: String::new(),
            send_lag: Mutex::new(new_latency()),
        }
    }

    #[test]
    fn writes_go_round_the_members_and_every_kth_creates_one() {
        let every_4th = plan(3, 4);
        let targets: Vec<String> = (1..=9).map(|seq| every_4th.target(seq)).collect();
        let tails: Vec<&str> = targets
            .iter()
            .map(|t| t.strip_prefix("bench:item:r:0:").unwrap())
            .collect();
        assert_eq!(tails, ["0", "1", "2", "new4", "1", "2", "0", "new8", "2"]);
        let creates: Vec<u64> = (1..=9).map(|sent| every_4th.creates(sent)).collect();
        assert_eq!(creates, [0, 0, 0, 1, 1, 1, 1, 2, 2]);
        let never = plan(3, 0);
        assert_eq!(never.target(4), "bench:item:r:0:0");
        assert_eq!(never.creates(100), 0);
    }

    #[test]
    fn expected_counts_scale_with_the_subscribers() {
        let plan = plan(3, 4);
        let counters = Arc::new(crate::stats::Counters::default());
        counters.add(Ctr::WritesSent, 9);
        counters.add(Ctr::WritesAcked, 9);
        let totals = Snapshot::of(std::slice::from_ref(&counters));
        let expected = Expected::of(&plan, &totals);
        assert_eq!((expected.deliveries, expected.added), (90, 20));
        assert!(!expected.met(&totals));
        counters.add(Ctr::Deliveries, 90);
        counters.add(Ctr::MembersAdded, 20);
        assert!(expected.met(&Snapshot::of(&[counters])));
    }
}
