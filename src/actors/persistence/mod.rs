//! `PersistenceActor`: one per persistence rule; writes records to its database in batches.
//!
//! Owns the write buffer (the newest pending operation of each record id, see
//! `persistence::buffer` for the ordering rules), the one flush in flight, the retry
//! state, and the callers waiting for `Flush` or `Shutdown`.
//! Talks to: a persistence adapter (SQLite or PostgreSQL). Told by record actors (`Persist`,
//! `PersistDeletion`), and by the server (`Flush`, `Shutdown`, `GetStatus`).
//!
//! Invariants:
//! - At most one flush is in flight; it runs as a future beside the mailbox, so `Persist`
//!   keeps buffering while the database works (or hangs).
//! - A flush takes the whole buffer and makes at most one adapter call per kind: `delete_batch`
//!   for deletions, then `store_batch` for upserts. A record id is in only one of them.
//! - Nothing is dropped on failure: the failed part is put back under whatever arrived
//!   meanwhile, and a buffered version is never replaced by an older one.
//! - A failing database is retried with exponential backoff (`flush_interval`, doubling, up to
//!   `max_retry_delay`); size and interval triggers wait for the backoff, an explicit `Flush`
//!   does not. One warning when an outage starts, one info line when it ends.
//! - `Shutdown` flushes until the buffer is empty or `shutdown_retries` retries have failed,
//!   then answers and stops the actor. `Abandon` stops it at once (the server's stop deadline
//!   passed); either way what was not written is logged as lost, count and ids.
//! - Rows the database rejects for their own data (`PersistenceError::Rejected`) are found by
//!   retrying the batch row by row; only those are dropped (error log with their ids, counted
//!   in `mesh_persistence_rejected_records_total`), everything else lands.
//! - The records held (buffered plus in flight) are published in a shared counter, so record
//!   actors can check [`PersistenceHandle::has_room`] before applying a persisted write and
//!   refuse it while `max_buffered_records` are held (a long database outage).
//! - `ack = "flushed"` (`ConfirmWhenLanded`): the operation is buffered and its waiter noted
//!   in one handler, with a sequence number. A flush covers every waiter numbered before it
//!   started (their operation, or a newer state of the record, is in it); when it lands those
//!   waiters hear `Ok` (`Err` for a row the database rejected), when it fails they wait for
//!   the retry. While any waiter waits, a flush starts as soon as none is in flight (no
//!   interval): group commit, the writes that arrived during one flush make the next. Waiters
//!   whose record actor gave up (closed) are dropped whenever their record gets a new one, so
//!   they are bounded by the records with a pending operation.

use crate::database::buffer::{PendingOp, WriteBuffer, to_rows};
use crate::database::{PersistenceError, SharedAdapter};
use crate::model::RecordId;
use actix::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

mod handlers;
mod messages;
mod routes;

pub use crate::database::PersistenceOptions;
pub use messages::{
    Abandon, ConfirmWhenLanded, Flush, GetStatus, Landed, Persist, PersistDeletion,
    PersistenceStatus, Shutdown,
};
pub use routes::{PersistRoutes, PersistenceHandle};

type Reply = oneshot::Sender<Result<usize, PersistenceError>>;

/// A `Shutdown` in progress.
struct Stopping {
    replies: Vec<Reply>,
    /// Failed attempts since `Shutdown` arrived.
    failures: u32,
    /// Rows written since `Shutdown` arrived.
    landed: usize,
}

/// The actor writing records to a persistence adapter (see the module docs).
pub struct PersistenceActor {
    adapter: SharedAdapter,
    options: PersistenceOptions,
    buffer: WriteBuffer,
    /// Records in the flush in flight; 0 when none is.
    in_flight: usize,
    /// The interval elapsed with something buffered; flush when allowed.
    interval_due: bool,
    failures: u32,
    failing_since: Option<Instant>,
    /// No automatic flush before this instant (backoff).
    retry_at: Option<Instant>,
    /// `Flush` callers waiting for the next flush to start.
    flush_waiters: Vec<Reply>,
    stopping: Option<Stopping>,
    rows_landed: u64,
    /// What this actor last added to the buffered-records gauge.
    reported_buffered: i64,
    /// Shared with [`PersistenceHandle`]s: buffered plus in flight.
    held: Arc<AtomicUsize>,
    /// Ids of the flush in flight, to name them if they are lost.
    in_flight_ids: Vec<RecordId>,
    /// The loss was logged already (by `Abandon`).
    loss_reported: bool,
    /// `ack = "flushed"` callers per record, with their sequence numbers.
    waiters: HashMap<RecordId, Vec<(u64, Landed)>>,
    /// The sequence number the next waiter gets.
    next_waiter: u64,
}

impl PersistenceActor {
    /// An actor writing through `adapter`. Start it with `.start()`.
    pub fn new(adapter: SharedAdapter, options: PersistenceOptions) -> Self {
        PersistenceActor {
            adapter,
            options,
            buffer: WriteBuffer::default(),
            in_flight: 0,
            interval_due: false,
            failures: 0,
            failing_since: None,
            retry_at: None,
            flush_waiters: Vec::new(),
            stopping: None,
            rows_landed: 0,
            reported_buffered: 0,
            held: Arc::new(AtomicUsize::new(0)),
            in_flight_ids: Vec::new(),
            loss_reported: false,
            waiters: HashMap::new(),
            next_waiter: 0,
        }
    }

    /// Starts the actor and returns its handle.
    pub fn spawn(self) -> PersistenceHandle {
        let held = Arc::clone(&self.held);
        let max = self.options.max_buffered_records;
        let confirm_within = self.options.confirm_within;
        let refuses_nul = self.adapter.refuses_nul();
        PersistenceHandle {
            addr: self.start(),
            held,
            max,
            confirm_within,
            refuses_nul,
        }
    }

    /// Logs what is still held as not persisted, once; returns how many.
    fn report_loss(&mut self) -> usize {
        let lost = self.buffer.len() + self.in_flight;
        if lost > 0 && !self.loss_reported {
            log::error!("persistence stopped with {lost} records not written to the database");
            let mut ids: Vec<&str> = self.buffer.ids().map(RecordId::as_str).collect();
            ids.extend(self.in_flight_ids.iter().map(RecordId::as_str));
            log::debug!("records not persisted: {}", ids.join(" "));
        }
        self.loss_reported = true;
        lost
    }

    fn in_backoff(&self) -> bool {
        self.retry_at.is_some_and(|at| Instant::now() < at)
    }

    /// Starts a flush if one is wanted and allowed; finishes a `Shutdown` once nothing is left.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight > 0 {
            return;
        }
        if !self.flush_waiters.is_empty() {
            return self.start_flush(ctx);
        }
        if self.buffer.is_empty() {
            self.interval_due = false;
            if let Some(stopping) = self.stopping.take() {
                for reply in stopping.replies {
                    let _ = reply.send(Ok(stopping.landed));
                }
                ctx.stop();
            }
            return;
        }
        if self.in_backoff() {
            return;
        }
        if self.stopping.is_some()
            || self.interval_due
            || !self.waiters.is_empty()
            || self.buffer.len() >= self.options.max_buffer_size
        {
            self.start_flush(ctx);
        }
    }

    /// Moves the process-wide gauge by this actor's change in buffered records.
    fn report_buffer(&mut self) {
        let held = self.buffer.len() + self.in_flight;
        self.held.store(held, Ordering::Relaxed);
        let now = held as i64;
        crate::metrics::metrics()
            .persistence_buffered
            .inc_by(now - self.reported_buffered);
        self.reported_buffered = now;
    }

    fn start_flush(&mut self, ctx: &mut Context<Self>) {
        let waiters = std::mem::take(&mut self.flush_waiters);
        self.interval_due = false;
        let ops = self.buffer.take();
        if ops.is_empty() {
            for waiter in waiters {
                let _ = waiter.send(Ok(0));
            }
            return;
        }
        let (upserts, deletions) = to_rows(&ops);
        self.in_flight = ops.len();
        self.in_flight_ids = ops.iter().map(|(id, _)| id.clone()).collect();
        self.report_buffer();
        let started = Instant::now();
        // Every waiter numbered below this has its operation in this flush.
        let covered = self.next_waiter;
        let adapter = Arc::clone(&self.adapter);
        async move {
            let deleted =
                write_isolating_rejects(deletions, |d| d.id.clone(), |d| adapter.delete_batch(d))
                    .await;
            let stored = write_isolating_rejects(
                upserts,
                |row| row.id.clone(),
                |rows| adapter.store_batch(rows),
            )
            .await;
            (deleted, stored)
        }
        .into_actor(self)
        .map(move |(deleted, stored), act, ctx| {
            let m = crate::metrics::metrics();
            m.persistence_flush_seconds
                .observe(started.elapsed().as_secs_f64());
            if deleted.is_err() || stored.is_err() {
                m.persistence_flush_failures.inc();
            }
            act.finish_flush(ops, waiters, covered, deleted, stored, ctx);
            act.report_buffer();
        })
        .spawn(ctx);
    }

    fn finish_flush(
        &mut self,
        ops: Vec<(RecordId, PendingOp)>,
        waiters: Vec<Reply>,
        covered: u64,
        deleted: Result<Vec<String>, PersistenceError>,
        stored: Result<Vec<String>, PersistenceError>,
        ctx: &mut Context<Self>,
    ) {
        self.in_flight = 0;
        self.in_flight_ids.clear();
        let rejected: Vec<String> = [&deleted, &stored]
            .into_iter()
            .filter_map(|r| r.as_ref().ok())
            .flatten()
            .cloned()
            .collect();
        if !rejected.is_empty() {
            log::error!(
                "the persistence database rejected {} records, which are dropped (the rest \
                 landed): {}",
                rejected.len(),
                rejected.join(" ")
            );
            crate::metrics::metrics()
                .persistence_rejected
                .inc_by(rejected.len() as u64);
        }
        let (deleted, stored) = (deleted.map(drop), stored.map(drop));
        let total = ops.len();
        let (deletes_failed, upserts_failed) = (deleted.is_err(), stored.is_err());
        if !self.waiters.is_empty() {
            let rejected: HashSet<&str> = rejected.iter().map(String::as_str).collect();
            for (id, op) in &ops {
                let failed = match op {
                    PendingOp::Delete { .. } => deletes_failed,
                    PendingOp::Upsert { .. } => upserts_failed,
                };
                if !failed {
                    self.confirm(id, covered, rejected.contains(id.as_str()));
                }
            }
        }
        let failed: Vec<_> = ops
            .into_iter()
            .filter(|(_, op)| match op {
                PendingOp::Delete { .. } => deletes_failed,
                PendingOp::Upsert { .. } => upserts_failed,
            })
            .collect();
        let landed = total - failed.len();
        self.rows_landed += landed as u64;
        if let Some(stopping) = &mut self.stopping {
            stopping.landed += landed;
        }
        let error = deleted.err().or(stored.err());
        let Some(error) = error else {
            self.recovered(landed);
            for waiter in waiters {
                let _ = waiter.send(Ok(landed));
            }
            return self.pump(ctx);
        };
        self.buffer.put_back(failed);
        for waiter in waiters {
            let _ = waiter.send(Err(error.clone()));
        }
        if let Some(stopping) = &mut self.stopping {
            stopping.failures += 1;
            if stopping.failures > self.options.shutdown_retries {
                log::error!(
                    "final persistence flush gave up after {} attempts: {error}",
                    stopping.failures
                );
                for reply in std::mem::take(&mut stopping.replies) {
                    let _ = reply.send(Err(error.clone()));
                }
                self.stopping = None;
                ctx.stop();
                return;
            }
        }
        self.failed(&error, ctx);
    }

    /// Answers the waiters of `id` the landed flush covered (numbered below `covered`).
    fn confirm(&mut self, id: &RecordId, covered: u64, rejected: bool) {
        let Some(list) = self.waiters.get_mut(id) else {
            return;
        };
        let waiting = std::mem::take(list);
        for (seq, landed) in waiting {
            if seq >= covered {
                list.push((seq, landed));
            } else if rejected {
                let error = PersistenceError::Rejected(format!("the database rejected {id}"));
                let _ = landed.send(Err(error));
            } else {
                let _ = landed.send(Ok(()));
            }
        }
        if list.is_empty() {
            self.waiters.remove(id);
        }
    }

    /// Notes a waiter for the operation of `id` just buffered.
    fn wait_for(&mut self, id: RecordId, landed: Landed) {
        let seq = self.next_waiter;
        self.next_waiter += 1;
        let list = self.waiters.entry(id).or_default();
        // Callers that stopped waiting (timed out) are forgotten here.
        list.retain(|(_, w)| !w.is_closed());
        list.push((seq, landed));
    }

    /// Records a failure: logs the start of an outage once and schedules the retry.
    fn failed(&mut self, error: &PersistenceError, ctx: &mut Context<Self>) {
        self.failures += 1;
        // A shutdown starts its own, short backoff: the process is waiting for it.
        let attempt = self.stopping.as_ref().map_or(self.failures, |s| s.failures);
        let delay = backoff(&self.options, attempt);
        self.retry_at = Some(Instant::now() + delay);
        if self.failing_since.is_none() {
            self.failing_since = Some(Instant::now());
            log::warn!(
                "persistence flush failed, keeping {} records buffered and retrying with \
                 backoff: {error}",
                self.buffer.len()
            );
        } else {
            log::debug!(
                "persistence flush failed again (attempt {}, next in {delay:?}): {error}",
                self.failures
            );
        }
        ctx.run_later(delay, |act, ctx| act.pump(ctx));
    }

    /// Records a success: logs the end of an outage and clears the backoff.
    fn recovered(&mut self, landed: usize) {
        if let Some(since) = self.failing_since.take() {
            log::info!(
                "persistence recovered after {:?} and {} failed flushes; {landed} records landed",
                since.elapsed(),
                self.failures
            );
        }
        self.failures = 0;
        self.retry_at = None;
    }
}

/// Writes `items` with `write`; when the database rejects the batch for its data, writes them
/// one by one to find the rejected ones. Answers the ids of the rejected items (dropped), or
/// the first other failure (then the caller keeps every item for a retry; items written
/// meanwhile are written again, which upserts and deletions allow).
async fn write_isolating_rejects<T, W>(
    items: Vec<T>,
    id: impl Fn(&T) -> String,
    write: W,
) -> Result<Vec<String>, PersistenceError>
where
    T: Clone,
    W: Fn(Vec<T>) -> crate::database::PersistenceFuture<()>,
{
    if items.is_empty() {
        return Ok(Vec::new());
    }
    match write(items.clone()).await {
        Ok(()) => return Ok(Vec::new()),
        Err(PersistenceError::Rejected(e)) if items.len() == 1 => {
            log::debug!("record {} rejected: {e}", id(&items[0]));
            return Ok(vec![id(&items[0])]);
        }
        Err(PersistenceError::Rejected(e)) => {
            log::warn!(
                "the persistence database rejected a batch of {} records ({e}); retrying \
                 them one by one",
                items.len()
            );
        }
        Err(other) => return Err(other),
    }
    let mut rejected = Vec::new();
    for item in items {
        match write(vec![item.clone()]).await {
            Ok(()) => {}
            Err(PersistenceError::Rejected(e)) => {
                log::debug!("record {} rejected: {e}", id(&item));
                rejected.push(id(&item));
            }
            Err(other) => return Err(other),
        }
    }
    Ok(rejected)
}

/// `flush_interval * 2^(attempt - 1)`, at least 10 ms, at most `max_retry_delay`.
fn backoff(options: &PersistenceOptions, attempt: u32) -> Duration {
    let base = options.flush_interval.max(Duration::from_millis(10));
    let factor = 1u32 << attempt.saturating_sub(1).min(20);
    base.saturating_mul(factor).min(options.max_retry_delay)
}

impl Actor for PersistenceActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A zero period would spin (and tokio refuses it).
        let tick = self.options.flush_interval.max(Duration::from_millis(1));
        ctx.run_interval(tick, |act, ctx| {
            if !act.buffer.is_empty() {
                act.interval_due = true;
                act.pump(ctx);
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        crate::metrics::metrics()
            .persistence_buffered
            .inc_by(-self.reported_buffered);
        self.reported_buffered = 0;
        // The shared counter keeps the number lost, for the server's stop report.
        let lost = self.report_loss();
        self.held.store(lost, Ordering::Relaxed);
        // Waiting callers see their reply channel close and get `PersistenceError::Stopped`.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let options = PersistenceOptions {
            flush_interval: Duration::from_millis(100),
            max_retry_delay: Duration::from_millis(500),
            ..PersistenceOptions::default()
        };
        let delays: Vec<_> = (1..=5).map(|n| backoff(&options, n).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
        assert_eq!(backoff(&options, u32::MAX), Duration::from_millis(500));
    }
}
