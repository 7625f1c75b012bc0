//! The open-loop writer (fanout, collection): writes at fixed times, whatever the server
//! answers.
//!
//! A closed-loop writer waits for acks, so a slow server gets fewer writes and the slow
//! moments get fewer samples (coordinated omission). Here write `k` is due at
//! `start + k / rate` and carries that due time as its `sent_us` stamp: a write sent late,
//! or delivered late, counts its whole delay from when it should have gone out.
//!
//! The writer runs alone on its own thread and waits with blocking sleeps: tokio's timer
//! rounds every deadline up to the next millisecond, which at 1,000 writes/s would add
//! about half a millisecond of the tool's own lag to every sample. A thread sleep wakes
//! within tens of microseconds (its timer slack set to the minimum), and blocking this
//! thread stalls no subscriber.

use crate::conn::Conn;
use crate::control::{Phase, Worker};
use crate::report::Report;
use crate::stats::{Ctr, Latency, Snapshot};
use crate::wire::{self, Incoming};
use futures_util::FutureExt;
use std::borrow::Cow;
use std::sync::Mutex;
use std::time::Duration;

/// A write sent later than this after its due time counts as a missed schedule.
pub const LATE: Duration = Duration::from_millis(1);
/// Longest single sleep, so the end of the run is noticed promptly at low rates.
const MAX_NAP: Duration = Duration::from_millis(5);

/// What the writer needs besides its connection.
pub struct Schedule<'a> {
    pub rate: usize,
    /// The record write `seq` (1, 2, ...) goes to.
    pub record: &'a dyn Fn(u64) -> Cow<'a, str>,
    pub pad: &'a str,
    /// How late each write went out while measuring (µs; 1 when on time).
    pub send_lag: &'a Mutex<Latency>,
}

/// Writes at `rate` per second from now until the run leaves the measurement window;
/// returns how many writes are still unanswered then. Fails when the connection fails.
pub async fn write(w: &Worker, schedule: &Schedule<'_>, conn: &mut Conn) -> Result<u64, String> {
    crate::probe::tighten_timer_slack();
    let interval_us = 1e6 / schedule.rate as f64;
    let start_us = w.ctl.now_us();
    let late_us = LATE.as_micros() as u64;
    let (mut sent, mut answered) = (0u64, 0u64);
    for seq in 1u64.. {
        let due_us = start_us + ((seq - 1) as f64 * interval_us) as u64;
        let Some(now_us) = wait_until(w, conn, due_us, &mut answered).await? else {
            break;
        };
        let lag_us = now_us.saturating_sub(due_us);
        if w.ctl.measuring() {
            if lag_us > late_us {
                w.counters.bump(Ctr::LateWrites);
            }
            if let Ok(mut h) = schedule.send_lag.lock() {
                h.saturating_record(lag_us.max(1));
            }
        }
        let id = conn.next_id();
        conn.send(wire::publish(id, &(schedule.record)(seq), |out| {
            wire::stamped_value(out, seq, due_us, schedule.pad)
        }))
        .await?;
        w.counters.bump(Ctr::WritesSent);
        sent += 1;
    }
    Ok(sent.saturating_sub(answered))
}

/// Reads the replies to the `unanswered` writes as they come, up to `limit` in all (after
/// [`write`], so that every write the run made is counted acked or refused). Fails when
/// the connection fails or the time is up.
pub async fn await_replies(
    w: &Worker,
    conn: &mut Conn,
    mut unanswered: u64,
    limit: Duration,
) -> Result<(), String> {
    let until = tokio::time::Instant::now() + limit;
    while unanswered > 0 {
        let bytes = tokio::time::timeout_at(until, conn.recv())
            .await
            .map_err(|_| format!("{unanswered} writes unanswered after {limit:?}"))?
            .ok_or("connection closed")?;
        let Ok(frame) = serde_json::from_slice::<Incoming>(&bytes) else {
            w.counters.bump(Ctr::BadFrames);
            continue;
        };
        if frame.id.is_some() {
            w.count_ack(frame.payload.0.as_ref());
            unanswered -= 1;
        } else if frame.command == wire::PING {
            w.pong(conn).await?;
        }
    }
    Ok(())
}

/// Reads the replies that have arrived (adding them to `answered`), then sleeps until
/// `due_us`; the time then, or `None` once the run is past measuring.
async fn wait_until(
    w: &Worker,
    conn: &mut Conn,
    due_us: u64,
    answered: &mut u64,
) -> Result<Option<u64>, String> {
    loop {
        // This task otherwise never waits, and the thread's event loop then never reads
        // the socket's readiness: replies would pile up unread until some send blocked.
        tokio::task::yield_now().await;
        *answered += drain_replies(w, conn).await?;
        if w.ctl.phase() >= Phase::Draining {
            return Ok(None);
        }
        let now_us = w.ctl.now_us();
        if now_us >= due_us {
            return Ok(Some(now_us));
        }
        std::thread::sleep(Duration::from_micros(due_us - now_us).min(MAX_NAP));
    }
}

/// Counts every reply already received, without waiting for more; returns how many.
pub(super) async fn drain_replies(w: &Worker, conn: &mut Conn) -> Result<u64, String> {
    let mut replies = 0;
    // `recv` keeps partial frames in the connection's buffer, so giving up on a pending
    // poll loses nothing.
    while let Some(next) = conn.recv().now_or_never() {
        let bytes = next.ok_or("connection closed")?;
        let Ok(frame) = serde_json::from_slice::<Incoming>(&bytes) else {
            w.counters.bump(Ctr::BadFrames);
            continue;
        };
        if frame.id.is_some() {
            w.count_ack(frame.payload.0.as_ref());
            replies += 1;
        } else if frame.command == wire::PING {
            w.pong(conn).await?;
        }
    }
    Ok(replies)
}

/// The lines only an open loop reports: the schedule kept, and how late writes went out.
pub fn report_lines(
    report: &mut Report,
    rate: usize,
    counts: &Snapshot,
    seconds: f64,
    send_lag: &Mutex<Latency>,
) {
    let sent = counts.get(Ctr::WritesSent);
    let late = counts.get(Ctr::LateWrites);
    report.line(format!(
        "open loop: {sent} writes sent of {:.0} scheduled ({:.0}/s), missed schedule \
         (sent > {} ms late) {late}",
        rate as f64 * seconds,
        rate as f64,
        LATE.as_millis()
    ));
    report.set("writes_sent_per_s", crate::report::rate(sent, seconds));
    report.set("late_writes", late);
    if let Ok(send_lag) = send_lag.lock() {
        report.latency("send_lag", "send lag behind schedule", &send_lag);
    }
}
