//! `RecordActor`: one per active record id.
//!
//! Owns the record's value and version, its subscribers and its queue of pending writes.
//! Talks to: the store (load, compare-and-set writes, deletes), subscribers' outboxes (pushes),
//! sessions (`SubscriptionEnded`), the registry (`RecordActorStopped`).
//!
//! Invariants:
//! - Every operation on the record goes through this mailbox. A subscribe registers the
//!   subscriber and returns the snapshot in one handler, so its first push is snapshot + 1.
//! - At most one store write is in flight; queued writes wait and then go together as one
//!   batch of consecutive versions. State changes only when the store has answered, so a
//!   subscriber joining during a write gets the old snapshot and then every new version.
//! - Each update is diffed at most once and serialized at most once per mode; the same bytes go
//!   to every subscriber of that mode.
//! - The actor stops after `linger` with no subscribers and nothing pending.
//! - With a shared store (Redis), the actor watches the record's changes *before* it loads,
//!   applies a published change only when it is exactly the next version, ignores older ones
//!   (including its own echoes), and reloads on a jump ahead or after the store reconnected.
//!   Changes that arrive while a store call is in flight wait until it has answered.
//! - No subscriber ever sees a version go backwards: if the store comes back with an older
//!   version (Redis restarted without persistence), the actor writes its newer state back.

use crate::error::Error;
use crate::metrics::{Outcome, metrics};
use crate::outbox::{Outbox, PushError};
use crate::protocol;
use crate::record::{
    Frame, Mode, RecordId, Strategy, Version, Versioned, apply_strategy, deleted_frame, full_frame,
    patch_frame,
};
use crate::store::{ChangeSink, RemoteChange, SharedStore, WatchToken, WriteResult};
use actix::prelude::*;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;

use super::registry::RecordActorStopped;
use super::session::SubscriptionEnded;

/// How long a write keeps being re-applied after losing races with other instances before it
/// fails with `ECONFLICT`.
const CONFLICT_DEADLINE: Duration = Duration::from_secs(10);
/// How long to wait for the published changes that explain a lost race before reloading.
const CATCH_UP_WAIT: Duration = Duration::from_millis(500);
/// How long to wait for a deletion notice or a reconnect notice after finding a record gone.
const ABSENCE_WAIT: Duration = Duration::from_secs(3);

/// Settings every `RecordActor` follows.
#[derive(Clone)]
pub struct RecordSettings {
    /// Where writes of persisted records go.
    pub persist: Arc<crate::persistence::PersistRoutes>,
    /// How long an unused actor stays alive.
    pub linger: Duration,
    /// Largest value a merge may produce, serialized.
    pub max_value_bytes: usize,
    /// Most queued writes sent to the store in one call (1 = no batching).
    pub max_write_batch: usize,
}

/// What every `RecordActor` shares: the store, settings and counters.
pub struct RecordEnv {
    /// Where values live.
    pub store: SharedStore,
    /// Linger and limits.
    pub settings: RecordSettings,
    /// Live `RecordActor` count.
    pub live: Arc<AtomicUsize>,
    /// Told when an actor stops, so the directory forgets it.
    pub registry: Recipient<RecordActorStopped>,
}

/// The result of an applied write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The record's version after the write.
    pub version: Version,
    /// False when the write produced the value the record already had (nothing was sent).
    pub changed: bool,
}

/// Adds a subscriber and answers with the snapshot it starts from.
#[derive(Message, Clone)]
#[rtype(result = "Result<Option<Versioned>, Error>")]
pub struct Subscribe {
    /// The session's numeric id (one subscription per session and record).
    pub session: u64,
    /// Full or patch.
    pub mode: Mode,
    /// Where pushes go.
    pub outbox: Outbox,
    /// Echoed in `SubscriptionEnded` so a stale notice cannot end a newer subscription.
    pub token: u64,
    /// Told when the subscription ends from this side (record deleted).
    pub ended: Recipient<SubscriptionEnded>,
    /// The request id to answer; the reply is queued here, ahead of any later push.
    pub reply_to: Option<serde_json::Number>,
}

/// Removes a session's subscription; answers whether there was one.
#[derive(Message, Clone)]
#[rtype(result = "bool")]
pub struct Unsubscribe {
    /// The session's numeric id.
    pub session: u64,
}

/// Writes a value with a strategy.
#[derive(Message, Clone)]
#[rtype(result = "Result<WriteOutcome, Error>")]
pub struct ApplyWrite {
    /// The incoming value (shared: a replace stores it without copying).
    pub value: Arc<Value>,
    /// How it combines with the current value.
    pub strategy: Strategy,
}

/// Deletes the record; answers the version it had, or `None` if it was absent.
#[derive(Message, Clone)]
#[rtype(result = "Result<Option<Version>, Error>")]
pub struct DeleteRecord;

/// A change the store published for this record (another instance's write or our own echo).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoteChanged {
    /// What changed.
    pub change: RemoteChange,
}

/// A subscriber's client fell behind and skipped updates: send it the current full value.
/// Answers whether the session is (still) subscribed.
#[derive(Message, Clone)]
#[rtype(result = "bool")]
pub struct ResyncSubscriber {
    /// The session's numeric id.
    pub session: u64,
}

/// The current value and version.
#[derive(Message, Clone)]
#[rtype(result = "Result<Option<Versioned>, Error>")]
pub struct GetSnapshot;

struct Subscriber {
    mode: Mode,
    outbox: Outbox,
    token: u64,
    ended: Recipient<SubscriptionEnded>,
}

impl Subscriber {
    fn new(mode: Mode, outbox: Outbox, token: u64, ended: Recipient<SubscriptionEnded>) -> Self {
        metrics().subscriptions(mode).inc();
        Subscriber {
            mode,
            outbox,
            token,
            ended,
        }
    }
}

impl Drop for Subscriber {
    /// However a subscription ends (unsubscribe, deletion, closed session), the gauge follows.
    fn drop(&mut self) {
        metrics().subscriptions(self.mode).dec();
    }
}

enum PendingOp {
    Write {
        value: Arc<Value>,
        strategy: Strategy,
        queued_at: std::time::Instant,
        reply: oneshot::Sender<Result<WriteOutcome, Error>>,
    },
    Delete {
        reply: oneshot::Sender<Result<Option<Version>, Error>>,
    },
}

/// The actor owning one record (see the module docs).
pub struct RecordActor {
    id: RecordId,
    env: Arc<RecordEnv>,
    value: Option<Arc<Value>>,
    version: Version,
    loaded: bool,
    subscribers: HashMap<u64, Subscriber>,
    pending: VecDeque<PendingOp>,
    in_flight: bool,
    used_since_tick: bool,
    watch: Option<WatchToken>,
    /// Published changes that arrived while a store call was in flight.
    backlog: VecDeque<RemoteChange>,
    /// Versions of our own deletions whose published echo has not come back yet.
    own_deletions: VecDeque<Version>,
    /// After losing a race: the store's version, which published changes will bring us to
    /// (in order, with patches) before queued writes are retried.
    catch_up_to: Option<Version>,
    /// The persistence actor for this record and the routes' generation it was looked up at.
    persist_route: Option<(u64, Option<Addr<super::persistence::PersistenceActor>>)>,
    /// After a write found the record absent in the store: a remote deletion (its `Deleted`
    /// message is on the way) or a store that lost its data (a `Resync` is on the way).
    /// Queued writes wait for the answer.
    awaiting_absence: bool,
}

impl RecordActor {
    /// An actor for `id`; it loads the record when it starts.
    pub fn new(id: RecordId, env: Arc<RecordEnv>) -> Self {
        RecordActor {
            id,
            env,
            value: None,
            version: 0,
            loaded: false,
            subscribers: HashMap::new(),
            pending: VecDeque::new(),
            in_flight: false,
            used_since_tick: true,
            watch: None,
            backlog: VecDeque::new(),
            own_deletions: VecDeque::new(),
            catch_up_to: None,
            awaiting_absence: false,
            persist_route: None,
        }
    }

    /// The persistence actor for this record, if a rule covers it (looked up again only when
    /// rules were added).
    fn persistence(&mut self) -> Option<Addr<super::persistence::PersistenceActor>> {
        let routes = &self.env.settings.persist;
        let generation = routes.generation();
        match &self.persist_route {
            Some((seen, route)) if *seen == generation => route.clone(),
            _ => {
                let route = routes.route(self.id.as_str());
                self.persist_route = Some((generation, route.clone()));
                route
            }
        }
    }

    /// A store call finished: apply what was published meanwhile, then start the next one.
    fn op_done(&mut self, ctx: &mut Context<Self>) {
        self.in_flight = false;
        while !self.in_flight {
            let Some(change) = self.backlog.pop_front() else {
                break;
            };
            self.on_remote(change, ctx);
        }
        self.pump(ctx);
    }

    fn on_remote(&mut self, change: RemoteChange, ctx: &mut Context<Self>) {
        match change {
            RemoteChange::Updated { version, value } => {
                if version <= self.version {
                    // Our own echo, or older than what we hold.
                } else if version == self.version + 1 {
                    let previous = self.value.replace(Arc::clone(&value));
                    self.version = version;
                    self.fan_out(previous.as_deref(), &value);
                } else {
                    self.reload(ctx, false);
                }
            }
            RemoteChange::Deleted { version } => {
                if self.own_deletions.front() == Some(&version) {
                    self.own_deletions.pop_front();
                } else if self.value.is_none() {
                    // Already gone here.
                } else if version >= self.version {
                    self.awaiting_absence = false;
                    self.apply_deletion(version);
                } else {
                    self.reload(ctx, false);
                }
            }
            RemoteChange::Resync => {
                self.awaiting_absence = false;
                self.reload(ctx, true);
            }
        }
    }

    /// Lost a race to another instance: its changes are on their way through the store's
    /// channel. Apply them as they come (subscribers get every version), then retry the
    /// queued writes; reload if they do not arrive in time.
    fn await_catch_up(&mut self, target: Version, ctx: &mut Context<Self>) {
        self.catch_up_to = Some(target);
        Self::check_catch_up_later(target, ctx);
        self.op_done(ctx);
    }

    /// A write found the record absent: wait for the published deletion, or for the store's
    /// reconnect notice, before deciding; if neither comes, the store lost it.
    fn await_absence(&mut self, ctx: &mut Context<Self>) {
        self.awaiting_absence = true;
        ctx.run_later(ABSENCE_WAIT, |act, ctx| {
            if act.awaiting_absence && !act.in_flight {
                act.awaiting_absence = false;
                act.reload(ctx, true);
            }
        });
        self.op_done(ctx);
    }

    fn check_catch_up_later(target: Version, ctx: &mut Context<Self>) {
        ctx.run_later(CATCH_UP_WAIT, move |act, ctx| {
            if act.catch_up_to != Some(target) || act.version >= target {
                return;
            }
            if act.in_flight {
                Self::check_catch_up_later(target, ctx);
            } else {
                // The published changes were lost: read the store instead.
                act.catch_up_to = None;
                act.reload(ctx, false);
            }
        });
    }

    /// Reads the store again and settles on its state. `after_outage`: an absent or older
    /// record means the store lost data (not a deletion), so our state is written back.
    fn reload(&mut self, ctx: &mut Context<Self>, after_outage: bool) {
        // Whatever we were waiting for, the store's answer settles it.
        self.awaiting_absence = false;
        self.catch_up_to = None;
        self.in_flight = true;
        self.env
            .store
            .load(&self.id)
            .into_actor(self)
            .map(move |result, act, ctx| match result {
                Ok(current) => act.settle(current, after_outage, ctx),
                Err(e) => {
                    // Still unreachable; the next reconnect sends another resync.
                    log::warn!("reloading {} failed: {e}", act.id);
                    act.op_done(ctx);
                }
            })
            .spawn(ctx);
    }

    /// Adopts the store's state (`in_flight` is set by the caller and cleared here). Newer:
    /// take it and send full values. Absent: a deletion, unless `after_outage`. Older: the
    /// store lost data; write ours back so no subscriber sees a version go backwards.
    fn settle(&mut self, current: Option<Versioned>, after_outage: bool, ctx: &mut Context<Self>) {
        let ours = self.snapshot();
        match (current, ours) {
            (Some(current), _) if current.version > self.version => self.adopt(current),
            (Some(current), Some(_)) if current.version == self.version => {}
            (None, None) => {}
            (None, Some(_)) if !after_outage => {
                let last = self.version;
                self.apply_deletion(last);
            }
            (_, Some(ours)) => {
                log::warn!(
                    "store lost record {} (had version {}); writing it back",
                    self.id,
                    ours.version
                );
                self.env
                    .store
                    .restore(vec![(self.id.clone(), ours)])
                    .into_actor(self)
                    .map(|result, act, ctx| {
                        if let Err(e) = result {
                            log::warn!("writing back {} failed: {e}", act.id);
                        }
                        act.op_done(ctx);
                    })
                    .spawn(ctx);
                return;
            }
            (Some(current), None) => self.adopt(current),
        }
        self.op_done(ctx);
    }

    fn snapshot(&self) -> Option<Versioned> {
        self.value.as_ref().map(|value| Versioned {
            value: Arc::clone(value),
            version: self.version,
        })
    }

    fn is_idle(&self) -> bool {
        self.subscribers.is_empty() && self.pending.is_empty() && !self.in_flight
    }

    /// Starts the next store operation if none is in flight.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight {
            return;
        }
        if self.awaiting_absence {
            return;
        }
        if let Some(target) = self.catch_up_to {
            if self.version < target {
                return;
            }
            self.catch_up_to = None;
        }
        match self.pending.front() {
            None => {}
            Some(PendingOp::Delete { .. }) => self.start_delete(ctx),
            Some(PendingOp::Write { .. }) => self.start_writes(ctx),
        }
    }

    fn start_delete(&mut self, ctx: &mut Context<Self>) {
        let Some(PendingOp::Delete { reply }) = self.pending.pop_front() else {
            return;
        };
        self.in_flight = true;
        self.env
            .store
            .delete(&self.id)
            .into_actor(self)
            .map(move |result, act, ctx| {
                let outcome = match result {
                    Ok(last) => {
                        if let Some(last) = last {
                            // Its published echo must not delete a re-created record later.
                            act.own_deletions.push_back(last);
                            if let Some(actor) = act.persistence() {
                                actor.do_send(super::persistence::PersistDeletion {
                                    id: act.id.clone(),
                                    version: last,
                                });
                            }
                        }
                        act.apply_deletion(last.unwrap_or(act.version));
                        Ok(last)
                    }
                    Err(e) => {
                        log::warn!("delete of {} failed: {e}", act.id);
                        Err(Error::Unavailable)
                    }
                };
                let _ = reply.send(outcome);
                act.op_done(ctx);
            })
            .spawn(ctx);
    }

    /// Takes the leading run of writes, computes their values against the current state and
    /// sends the changed ones to the store in one compare-and-set.
    fn start_writes(&mut self, ctx: &mut Context<Self>) {
        let mut batch = Vec::new();
        while batch.len() < self.env.settings.max_write_batch
            && matches!(self.pending.front(), Some(PendingOp::Write { .. }))
        {
            if let Some(op) = self.pending.pop_front() {
                batch.push(op);
            }
        }
        let mut base = self.value.clone();
        let mut version = self.version;
        let mut values = Vec::new();
        // The outcome each write gets if the store accepts the batch.
        let mut planned = Vec::with_capacity(batch.len());
        for op in &batch {
            if let PendingOp::Write {
                value, strategy, ..
            } = op
            {
                let next = apply_strategy(base.as_ref(), value, *strategy);
                if *strategy != Strategy::Replace && self.too_large(&next) {
                    planned.push(Err(Error::Limit(format!(
                        "the merged value would exceed {} bytes",
                        self.env.settings.max_value_bytes
                    ))));
                    continue;
                }
                let changed = base.as_deref() != Some(next.as_ref());
                if changed {
                    version += 1;
                    values.push(Arc::clone(&next));
                    base = Some(next);
                }
                planned.push(Ok(WriteOutcome { version, changed }));
            }
        }
        if values.is_empty() {
            reply_writes(batch, planned);
            return self.pump(ctx);
        }
        self.in_flight = true;
        self.env
            .store
            .write(&self.id, self.version, values.clone())
            .into_actor(self)
            .map(
                move |result, act, ctx| match act.finish_writes(batch, planned, values, result) {
                    Some(Some(current)) if current.version > act.version => {
                        act.await_catch_up(current.version, ctx)
                    }
                    Some(None) if act.value.is_some() => act.await_absence(ctx),
                    Some(current) => act.settle(current, false, ctx),
                    None => act.op_done(ctx),
                },
            )
            .spawn(ctx);
    }

    fn too_large(&self, value: &Value) -> bool {
        let mut counter = ByteCounter(0);
        // Counting bytes cannot fail: the writer never errors.
        let _ = serde_json::to_writer(&mut counter, value);
        counter.0 > self.env.settings.max_value_bytes
    }

    fn finish_writes(
        &mut self,
        batch: Vec<PendingOp>,
        planned: Vec<Result<WriteOutcome, Error>>,
        values: Vec<Arc<Value>>,
        result: Result<WriteResult, crate::store::StoreError>,
    ) -> Option<Option<Versioned>> {
        let mut conflict = None;
        match result {
            Ok(WriteResult::Applied { .. }) => {
                for value in values {
                    let previous = self.value.replace(Arc::clone(&value));
                    self.version += 1;
                    self.fan_out(previous.as_deref(), &value);
                }
                // Queued for the database before anyone is told the write succeeded, so a
                // final flush at shutdown always includes every acknowledged write.
                if let (Some(actor), Some(value)) = (self.persistence(), self.value.clone()) {
                    actor.do_send(super::persistence::Persist {
                        id: self.id.clone(),
                        version: self.version,
                        value,
                    });
                }
                reply_writes(batch, planned);
            }
            Ok(WriteResult::Conflict { current }) => {
                conflict = Some(current);
                // Put the writes back in front, in order, to be recomputed on the fresh value.
                for op in batch.into_iter().rev() {
                    match op {
                        PendingOp::Write {
                            value,
                            strategy,
                            queued_at,
                            reply,
                        } if queued_at.elapsed() < CONFLICT_DEADLINE => {
                            metrics().write(Outcome::ConflictRetried);
                            self.pending.push_front(PendingOp::Write {
                                value,
                                strategy,
                                queued_at,
                                reply,
                            });
                        }
                        PendingOp::Write { reply, .. } => {
                            let _ = reply.send(Err(Error::Conflict));
                        }
                        other => self.pending.push_front(other),
                    }
                }
            }
            Err(e) => {
                log::warn!("write of {} failed: {e}", self.id);
                for op in batch {
                    if let PendingOp::Write { reply, .. } = op {
                        metrics().write(Outcome::Failed);
                        let _ = reply.send(Err(Error::Unavailable));
                    }
                }
            }
        }
        conflict
    }

    /// Sends one update to every subscriber, serializing each frame kind at most once.
    fn fan_out(&mut self, previous: Option<&Value>, current: &Arc<Value>) {
        if self.subscribers.is_empty() {
            return;
        }
        let mut frames = UpdateFrames {
            id: &self.id,
            previous,
            current,
            version: self.version,
            full: None,
            patch: None,
        };
        let mut gone = Vec::new();
        metrics().pushes.inc_by(self.subscribers.len() as u64);
        for (session, subscriber) in &self.subscribers {
            let frame = match subscriber.mode {
                Mode::Full => frames.full(),
                Mode::Patch => frames.patch(),
            };
            if subscriber.outbox.push_update(frames.id, frame) == Err(PushError::Closed) {
                gone.push(*session);
            }
        }
        for session in gone {
            self.subscribers.remove(&session);
        }
    }

    /// Takes a newer state from the store; subscribers get it as a full value (a resync).
    fn adopt(&mut self, current: Versioned) {
        self.value = Some(Arc::clone(&current.value));
        self.version = current.version;
        let frame = full_frame(&self.id, &current.value, current.version);
        metrics().resyncs.inc_by(self.subscribers.len() as u64);
        let id = &self.id;
        self.subscribers
            .retain(|_, s| s.outbox.push_update(id, frame.clone()) != Err(PushError::Closed));
    }

    /// Forgets the value, tells every subscriber and ends their subscriptions.
    fn apply_deletion(&mut self, last_version: Version) {
        self.value = None;
        self.version = 0;
        if self.subscribers.is_empty() {
            return;
        }
        let frame = deleted_frame(&self.id, last_version);
        metrics().pushes.inc_by(self.subscribers.len() as u64);
        for (_, subscriber) in self.subscribers.drain() {
            subscriber.outbox.forget_stale(&self.id);
            let _ = subscriber.outbox.push(frame.clone());
            subscriber.ended.do_send(SubscriptionEnded {
                record_id: self.id.clone(),
                token: subscriber.token,
            });
        }
    }
}

fn reply_writes(batch: Vec<PendingOp>, planned: Vec<Result<WriteOutcome, Error>>) {
    for outcome in &planned {
        metrics().write(match outcome {
            Ok(WriteOutcome { changed: true, .. }) => Outcome::Applied,
            Ok(_) => Outcome::Unchanged,
            Err(_) => Outcome::Refused,
        });
    }
    for (op, outcome) in batch.into_iter().zip(planned) {
        if let PendingOp::Write { reply, .. } = op {
            let _ = reply.send(outcome);
        }
    }
}

/// Counts serialized bytes without storing them.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Lazily built frames for one update.
struct UpdateFrames<'a> {
    id: &'a RecordId,
    previous: Option<&'a Value>,
    current: &'a Value,
    version: Version,
    full: Option<Frame>,
    patch: Option<Frame>,
}

impl UpdateFrames<'_> {
    fn full(&mut self) -> Frame {
        self.full
            .get_or_insert_with(|| full_frame(self.id, self.current, self.version))
            .clone()
    }

    /// The patch frame, or the full frame when the patch would be larger (the client takes a
    /// full value as a resync, and it costs fewer bytes).
    fn patch(&mut self) -> Frame {
        if let Some(frame) = &self.patch {
            return frame.clone();
        }
        let empty = Value::Object(Default::default());
        let patch = json_patch::diff(self.previous.unwrap_or(&empty), self.current);
        let mut frame = patch_frame(self.id, &patch, self.version);
        let full = self.full();
        if frame.len() > full.len() {
            frame = full;
        }
        self.patch = Some(frame.clone());
        frame
    }
}

impl Actor for RecordActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.env.live.fetch_add(1, Ordering::Relaxed);
        metrics().record_actors.inc();
        // Watch, then load, before any message is handled (`wait` holds the mailbox): a change
        // published after the load cannot be missed, one before it is ignored as older.
        let weak = ctx.address().downgrade();
        let sink: ChangeSink = Arc::new(move |change| {
            if let Some(addr) = weak.upgrade() {
                addr.do_send(RemoteChanged { change });
            }
        });
        let store = Arc::clone(&self.env.store);
        let id = self.id.clone();
        async move {
            let token = store.watch(&id, sink).await?;
            match store.load(&id).await {
                Ok(snapshot) => Ok((token, snapshot)),
                Err(e) => {
                    store.unwatch(&id, token);
                    Err(e)
                }
            }
        }
        .into_actor(self)
        .map(|result, act, ctx| match result {
            Ok((token, snapshot)) => {
                act.watch = Some(token);
                if let Some(s) = snapshot {
                    act.value = Some(s.value);
                    act.version = s.version;
                }
                act.loaded = true;
            }
            Err(e) => {
                // Stop: queued requests fail with a closed mailbox and are retried by a
                // fresh actor, which loads again.
                log::warn!("loading record {} failed: {e}", act.id);
                ctx.stop();
            }
        })
        .wait(ctx);
        let tick = self.env.settings.linger.max(Duration::from_millis(10));
        ctx.run_interval(tick, |act, ctx| {
            // A session that ended while its subscribe was in flight never sent Unsubscribe;
            // its closed outbox says it is gone even if no update has tried it since.
            act.subscribers.retain(|_, s| !s.outbox.is_closed());
            if act.used_since_tick || !act.is_idle() {
                act.used_since_tick = false;
            } else {
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.env.live.fetch_sub(1, Ordering::Relaxed);
        metrics().record_actors.dec();
        if let Some(token) = self.watch.take() {
            self.env.store.unwatch(&self.id, token);
        }
        for op in self.pending.drain(..) {
            match op {
                PendingOp::Write { reply, .. } => {
                    let _ = reply.send(Err(Error::Unavailable));
                }
                PendingOp::Delete { reply } => {
                    let _ = reply.send(Err(Error::Unavailable));
                }
            }
        }
        self.env.registry.do_send(RecordActorStopped {
            id: self.id.clone(),
            addr: ctx.address(),
        });
    }
}

impl Handler<Subscribe> for RecordActor {
    type Result = Result<Option<Versioned>, Error>;

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Context<Self>) -> Self::Result {
        self.used_since_tick = true;
        if !self.loaded {
            return Err(Error::Unavailable);
        }
        if let Some(request_id) = &msg.reply_to {
            let reply = protocol::SubscribeReply {
                success: true,
                record: self.value.as_deref().unwrap_or(&Value::Null),
                version: self.version,
            };
            let frame =
                protocol::reply_frame(request_id, protocol::commands::SUBSCRIBE_RECORD, &reply);
            let _ = msg.outbox.push(frame);
        }
        let subscriber = Subscriber::new(msg.mode, msg.outbox, msg.token, msg.ended);
        self.subscribers.insert(msg.session, subscriber);
        Ok(self.snapshot())
    }
}

impl Handler<Unsubscribe> for RecordActor {
    type Result = bool;

    fn handle(&mut self, msg: Unsubscribe, _ctx: &mut Context<Self>) -> bool {
        self.used_since_tick = true;
        self.subscribers.remove(&msg.session).is_some()
    }
}

impl Handler<ApplyWrite> for RecordActor {
    type Result = ResponseFuture<Result<WriteOutcome, Error>>;

    fn handle(&mut self, msg: ApplyWrite, ctx: &mut Context<Self>) -> Self::Result {
        self.used_since_tick = true;
        let (reply, outcome) = oneshot::channel();
        self.pending.push_back(PendingOp::Write {
            value: msg.value,
            strategy: msg.strategy,
            queued_at: std::time::Instant::now(),
            reply,
        });
        self.pump(ctx);
        Box::pin(async move { outcome.await.unwrap_or(Err(Error::Unavailable)) })
    }
}

impl Handler<DeleteRecord> for RecordActor {
    type Result = ResponseFuture<Result<Option<Version>, Error>>;

    fn handle(&mut self, _msg: DeleteRecord, ctx: &mut Context<Self>) -> Self::Result {
        self.used_since_tick = true;
        let (reply, outcome) = oneshot::channel();
        self.pending.push_back(PendingOp::Delete { reply });
        self.pump(ctx);
        Box::pin(async move { outcome.await.unwrap_or(Err(Error::Unavailable)) })
    }
}

impl Handler<RemoteChanged> for RecordActor {
    type Result = ();

    fn handle(&mut self, msg: RemoteChanged, ctx: &mut Context<Self>) {
        if self.in_flight {
            self.backlog.push_back(msg.change);
        } else {
            self.on_remote(msg.change, ctx);
            self.pump(ctx);
        }
    }
}

impl Handler<ResyncSubscriber> for RecordActor {
    type Result = bool;

    fn handle(&mut self, msg: ResyncSubscriber, _ctx: &mut Context<Self>) -> bool {
        let Some(subscriber) = self.subscribers.get(&msg.session) else {
            return false;
        };
        let frame = match &self.value {
            Some(value) => full_frame(&self.id, value, self.version),
            // Absent values produce no updates, so nothing can be stale; nothing to send.
            None => return true,
        };
        metrics().resyncs.inc();
        if subscriber.outbox.resync(&self.id, frame) == Err(PushError::Closed) {
            self.subscribers.remove(&msg.session);
        }
        true
    }
}

impl Handler<GetSnapshot> for RecordActor {
    type Result = Result<Option<Versioned>, Error>;

    fn handle(&mut self, _msg: GetSnapshot, _ctx: &mut Context<Self>) -> Self::Result {
        self.used_since_tick = true;
        if !self.loaded {
            return Err(Error::Unavailable);
        }
        Ok(self.snapshot())
    }
}
