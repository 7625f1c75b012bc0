//! `RecordActor`: one per active record id.
//!
//! Owns the record's subscribers and its [`state::Core`]: the value or tombstone, the version,
//! the queue of writes and deletes, and where the record stands with the store.
//! Talks to: the store (load, compare-and-set, delete, check, write-back), subscribers'
//! outboxes (pushes), sessions (`SubscriptionEnded`), the persistence actor (`Persist`,
//! `PersistDeletion`), the registry (`RecordActorStopped`).
//!
//! Invariants:
//! - Every operation on the record goes through this mailbox. A subscribe registers the
//!   subscriber and queues the reply (the snapshot) in one handler, so its first push is
//!   snapshot + 1.
//! - The decisions live in `state` (pure, unit-tested against a scripted store); this file only
//!   carries out its effects and feeds the store's answers back, so at most one store call is
//!   in flight and state changes only when the store has answered.
//! - Each update is diffed at most once and serialized at most once per mode (`fanout`).
//! - With a shared store (Redis), the actor watches the record's changes *before* it loads, so
//!   a change published after the load cannot be missed and one before it is ignored as older.
//! - The actor stops after `linger` with no subscribers and nothing queued or in flight.
//!
//! # Layout
//! - `messages`: what the actor handles, its settings and environment.
//! - `state`: the synchronisation state machine (its types and requests; `state/answers.rs` the
//!   store's answers, published changes and timers; `state/transitions.rs` what they share).
//! - `writes`: planning a batch of queued writes.
//! - `fanout`: subscribers and the frames they get.
//! - `persisted`: values the database cannot hold, replies held until it confirms.

mod fanout;
mod messages;
mod persisted;
mod state;
#[cfg(test)]
mod tests;
mod writes;

pub use messages::{
    ApplyWrite, DeleteRecord, GetHistory, GetSnapshot, RecordEnv, RecordSettings, RemoteChanged,
    ResyncSubscriber, RetireWhenIdle, Subscribe, SubscriptionEnded, Unsubscribe, UpdateRecord,
    WriteOutcome,
};

use crate::error::Error;
use crate::metrics::metrics;
use crate::outbox::PushError;
use crate::protocol;
use crate::record::{Mode, RecordId, Version, Versioned, full_frame, patch_frame};
use crate::store::{ChangeSink, Stored, WatchToken};
use actix::prelude::*;
use fanout::{Subscriber, Subscribers};
use serde_json::Value;
use state::{Answer, Core, CoreLimits, Effect, Op, Resume};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use writes::{BatchLimits, Change, QueuedWrite};

use super::persistence::{Persist, PersistDeletion, PersistenceHandle};
use super::registry::{RecordActorStopped, RetireRecordActor};
use persisted::Held;

/// Where a request's answer goes.
enum Reply {
    Write(oneshot::Sender<Result<WriteOutcome, Error>>),
    Delete(oneshot::Sender<Result<Option<Version>, Error>>),
}

impl Reply {
    fn send(self, answer: Answer) {
        match (self, answer) {
            (Reply::Write(to), Answer::Write(result)) => {
                let _ = to.send(result);
            }
            (Reply::Delete(to), Answer::Delete(result)) => {
                let _ = to.send(result);
            }
            (Reply::Write(to), Answer::Delete(_)) => {
                let _ = to.send(Err(Error::Internal));
            }
            (Reply::Delete(to), Answer::Write(_)) => {
                let _ = to.send(Err(Error::Internal));
            }
        }
    }

    fn fail(self, error: Error) {
        match self {
            Reply::Write(to) => {
                let _ = to.send(Err(error));
            }
            Reply::Delete(to) => {
                let _ = to.send(Err(error));
            }
        }
    }
}

/// The actor owning one record (see the module docs).
pub struct RecordActor {
    id: RecordId,
    env: Arc<RecordEnv>,
    /// `None` until the first load has answered.
    core: Option<Core<Reply>>,
    subscribers: Subscribers,
    used_since_tick: bool,
    watch: Option<WatchToken>,
    /// The persistence actor for this record and the routes' generation it was looked up at.
    persist_route: Option<(u64, Option<PersistenceHandle>)>,
    /// Asked the registry whether it may stop; waiting for the answer.
    retiring: bool,
    /// Its thread is stopping ([`RetireWhenIdle`]): retire as soon as idle, linger or not.
    leaving: bool,
}

/// How often a leaving actor checks whether it is idle.
const LEAVING_CHECK: Duration = Duration::from_millis(10);

impl RecordActor {
    /// An actor for `id`; it loads the record when it starts.
    pub fn new(id: RecordId, env: Arc<RecordEnv>) -> Self {
        RecordActor {
            id,
            env,
            core: None,
            subscribers: Subscribers::default(),
            used_since_tick: true,
            watch: None,
            persist_route: None,
            retiring: false,
            leaving: false,
        }
    }

    fn limits(&self) -> CoreLimits {
        let settings = &self.env.settings;
        CoreLimits {
            batch: BatchLimits {
                max_writes: settings.max_write_batch.max(1),
                max_bytes: settings.max_write_batch_bytes,
                max_value_bytes: settings.max_value_bytes,
                patches: settings.history.versions > 0,
            },
            max_pending: settings.max_pending_writes.max(1),
            history: settings.history,
        }
    }

    /// The persistence actor for this record, if a rule covers it (looked up again only when
    /// rules were added).
    fn persistence(&mut self) -> Option<&PersistenceHandle> {
        let routes = &self.env.settings.persist;
        let generation = routes.generation();
        if !matches!(&self.persist_route, Some((seen, _)) if *seen == generation) {
            let route = routes.handle(self.id.as_str());
            self.persist_route = Some((generation, route));
        }
        self.persist_route
            .as_ref()
            .and_then(|(_, route)| route.as_ref())
    }

    /// Refuses a write that could not be persisted: the record's persistence buffer is full
    /// (its database has been unreachable for long), or its value holds what the database
    /// cannot store (U+0000 in PostgreSQL; an update's result is checked when computed).
    /// Nothing is applied then.
    fn admit(&mut self, change: &mut Change) -> Result<(), Error> {
        let id = self.id.clone();
        let Some(handle) = self.persistence() else {
            return Ok(());
        };
        let admitted = handle
            .admit(id.as_str())
            .and_then(|()| persisted::admit_change(handle, change));
        if admitted.is_err() {
            metrics().write(crate::metrics::Outcome::Refused);
        }
        admitted
    }

    /// Asks the registry whether this actor may stop, and stops if it agrees. Only the
    /// registry knows whether someone is about to send it a message.
    fn ask_to_retire(&mut self, ctx: &mut Context<Self>) {
        if self.retiring {
            return;
        }
        self.retiring = true;
        let ask = RetireRecordActor {
            id: self.id.clone(),
            addr: ctx.address(),
        };
        self.env
            .retire
            .send(ask)
            .into_actor(self)
            .map(|granted, act, ctx| {
                act.retiring = false;
                if matches!(granted, Ok(true)) {
                    ctx.stop();
                }
            })
            .spawn(ctx);
    }

    /// A session that ended while its subscribe was in flight never sent Unsubscribe; its
    /// closed outbox says it is gone even if no update has tried it since.
    fn forget_closed_subscribers(&mut self) {
        self.subscribers.0.retain(|_, s| !s.outbox.is_closed());
    }

    fn is_idle(&self) -> bool {
        self.subscribers.0.is_empty() && self.core.as_ref().is_none_or(Core::is_idle)
    }

    /// Feeds one event to the core and carries out what it asks for.
    fn step(
        &mut self,
        ctx: &mut Context<Self>,
        event: impl FnOnce(&mut Core<Reply>, Instant) -> Vec<Effect<Reply>>,
    ) {
        let Some(core) = self.core.as_mut() else {
            return;
        };
        let effects = event(core, Instant::now());
        let mut held = Held::default();
        for effect in effects {
            self.carry_out(effect, &mut held, ctx);
        }
        held.release();
    }

    fn carry_out(&mut self, effect: Effect<Reply>, held: &mut Held, ctx: &mut Context<Self>) {
        let store = &self.env.store;
        match effect {
            Effect::Load => store
                .load(&self.id)
                .into_actor(self)
                .map(|result, act, ctx| act.step(ctx, |core, _| core.loaded(result)))
                .spawn(ctx),
            Effect::Write {
                expected,
                values,
                op,
                history,
            } => store
                .write(&self.id, expected, values, op, history)
                .into_actor(self)
                .map(|result, act, ctx| act.step(ctx, |core, now| core.written(result, now)))
                .spawn(ctx),
            Effect::Delete { op, if_version } => store
                .delete(&self.id, op, if_version)
                .into_actor(self)
                .map(|result, act, ctx| act.step(ctx, |core, now| core.deleted(result, now)))
                .spawn(ctx),
            Effect::Check { op } => store
                .check(&self.id, op)
                .into_actor(self)
                .map(|result, act, ctx| act.step(ctx, |core, now| core.checked(result, now)))
                .spawn(ctx),
            Effect::WriteBack(record) => store
                .restore(vec![(self.id.clone(), record)])
                .into_actor(self)
                .map(|result, act, ctx| act.step(ctx, |core, _| core.written_back(result)))
                .spawn(ctx),
            Effect::Timer {
                timer,
                after,
                epoch,
            } => {
                ctx.run_later(after, move |act, ctx| {
                    act.step(ctx, |core, _| core.timer(timer, epoch))
                });
            }
            Effect::Update {
                previous,
                current,
                version,
                patch,
            } => self.subscribers.update(
                &self.id,
                previous.as_deref(),
                &current,
                version,
                patch.as_deref(),
            ),
            Effect::Resync { value, version } => self.subscribers.resync(&self.id, &value, version),
            Effect::Deleted { version } => self.subscribers.deleted(&self.id, version),
            Effect::Persist { value, version } => {
                let id = self.id.clone();
                if let Some(handle) = self.persistence() {
                    persisted::persist(handle, Persist { id, version, value }, held);
                }
            }
            Effect::PersistDeletion { version } => {
                let id = self.id.clone();
                if let Some(handle) = self.persistence() {
                    persisted::persist(handle, PersistDeletion { id, version }, held);
                }
            }
            Effect::Reply(reply, answer) => {
                if !held.waiting() && persisted::changed_nothing(&answer) {
                    // Vouches for the current state, which may not have landed yet.
                    let (id, record) = (self.id.clone(), self.core.as_ref().map(Core::record));
                    if let (Some(record), Some(handle)) = (record.cloned(), self.persistence()) {
                        persisted::confirm_current(handle, id, record, held);
                    }
                }
                if let Some((reply, answer)) = held.hold(reply, answer) {
                    reply.send(answer);
                }
            }
        }
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
            match store.load_with_history(&id).await {
                Ok(snapshot) => Ok((token, snapshot)),
                Err(e) => {
                    store.unwatch(&id, token);
                    Err(e)
                }
            }
        }
        .into_actor(self)
        .map(|result, act, ctx| match result {
            Ok((token, (record, history))) => {
                act.watch = Some(token);
                act.core = Some(Core::new(act.id.clone(), record, history, act.limits()));
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
            act.forget_closed_subscribers();
            if act.used_since_tick || !act.is_idle() {
                act.used_since_tick = false;
            } else {
                act.ask_to_retire(ctx);
            }
        });
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.env.live.fetch_sub(1, Ordering::Relaxed);
        metrics().record_actors.dec();
        if let Some(token) = self.watch.take() {
            self.env.store.unwatch(&self.id, token);
        }
        if let Some(core) = self.core.as_mut() {
            // Never sent to the store: nothing was written.
            for op in core.take_pending() {
                match op {
                    Op::Write(write) => write.reply.fail(Error::Unavailable),
                    Op::Delete { reply, .. } => reply.fail(Error::Unavailable),
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
        let Some(core) = &self.core else {
            return Err(Error::Unavailable);
        };
        let record = core.record();
        let snapshot = record.versioned();
        // A full-mode subscriber needs each missed version whole, which the history (patches)
        // cannot give: it resumes only when it missed nothing.
        let resume = match msg.since {
            Some(Some(since)) => match core.resume(since) {
                Resume::Changes(changes) if changes.is_empty() || msg.mode == Mode::Patch => {
                    Some((since, changes))
                }
                _ => None,
            },
            _ => None,
        };
        if let Some(request_id) = &msg.reply_to {
            const CMD: &str = protocol::commands::SUBSCRIBE_RECORD;
            let frame = match &resume {
                Some((since, _)) => {
                    let reply = protocol::ResumeReply {
                        success: true,
                        resumed: true,
                        version: *since,
                    };
                    protocol::reply_frame(request_id, CMD, &reply)
                }
                None => {
                    let reply = protocol::SubscribeReply {
                        success: true,
                        record: record.value.as_deref().unwrap_or(&Value::Null),
                        version: record.version,
                        resumed: msg.since.map(|_| false),
                    };
                    protocol::reply_frame(request_id, CMD, &reply)
                }
            };
            let _ = msg.outbox.push(frame);
        }
        if let Some((_, changes)) = &resume {
            // The missed versions go out now, ahead of any newer update.
            metrics().pushes.inc_by(changes.len() as u64);
            for change in changes {
                let frame = patch_frame(&self.id, &*change.patch, change.version);
                let _ = msg.outbox.push_update(&self.id, frame);
            }
        }
        let subscriber = Subscriber::new(msg.mode, msg.outbox, msg.token, msg.ended);
        self.subscribers.0.insert(msg.session, subscriber);
        Ok(snapshot)
    }
}

impl Handler<GetHistory> for RecordActor {
    type Result = Result<Option<(Version, Vec<crate::store::Change>)>, Error>;

    fn handle(&mut self, msg: GetHistory, _ctx: &mut Context<Self>) -> Self::Result {
        self.used_since_tick = true;
        let Some(core) = &self.core else {
            return Err(Error::Unavailable);
        };
        Ok(match core.resume(msg.since) {
            Resume::Changes(changes) => Some((core.record().version, changes)),
            Resume::Full => None,
        })
    }
}

impl Handler<Unsubscribe> for RecordActor {
    type Result = bool;

    fn handle(&mut self, msg: Unsubscribe, _ctx: &mut Context<Self>) -> bool {
        self.used_since_tick = true;
        let Some(subscriber) = self.subscribers.0.remove(&msg.session) else {
            return false;
        };
        if let Some(frame) = msg.farewell {
            subscriber.outbox.forget_stale(&self.id);
            let _ = subscriber.outbox.push(frame);
        }
        true
    }
}

impl RecordActor {
    /// Queues a write; the answer comes when the store has taken it (or refused).
    fn queue_write(
        &mut self,
        mut change: Change,
        expected_version: Option<Version>,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<WriteOutcome, Error>> {
        self.used_since_tick = true;
        if let Err(refused) = self.admit(&mut change) {
            return Box::pin(std::future::ready(Err(refused)));
        }
        let (reply, outcome) = oneshot::channel();
        let write = QueuedWrite {
            change,
            queued_at: Instant::now(),
            expected_version,
            reply: Reply::Write(reply),
        };
        match self.core {
            Some(_) => self.step(ctx, |core, _| core.write(write)),
            None => write.reply.fail(Error::Unavailable),
        }
        // A dropped answer means the actor went away with the call in flight.
        Box::pin(async move { outcome.await.unwrap_or(Err(Error::Unknown)) })
    }
}

impl Handler<ApplyWrite> for RecordActor {
    type Result = ResponseFuture<Result<WriteOutcome, Error>>;

    fn handle(&mut self, msg: ApplyWrite, ctx: &mut Context<Self>) -> Self::Result {
        let change = Change::Value {
            value: msg.value,
            strategy: msg.strategy,
        };
        self.queue_write(change, msg.expected_version, ctx)
    }
}

impl Handler<UpdateRecord> for RecordActor {
    type Result = ResponseFuture<Result<WriteOutcome, Error>>;

    fn handle(&mut self, msg: UpdateRecord, ctx: &mut Context<Self>) -> Self::Result {
        self.queue_write(Change::Update(msg.update), msg.expected_version, ctx)
    }
}

impl Handler<DeleteRecord> for RecordActor {
    type Result = ResponseFuture<Result<Option<Version>, Error>>;

    fn handle(&mut self, msg: DeleteRecord, ctx: &mut Context<Self>) -> Self::Result {
        self.used_since_tick = true;
        let (reply, outcome) = oneshot::channel();
        let reply = Reply::Delete(reply);
        match self.core {
            Some(_) => self.step(ctx, |core, _| core.delete(reply, msg.if_version)),
            None => reply.fail(Error::Unavailable),
        }
        Box::pin(async move { outcome.await.unwrap_or(Err(Error::Unknown)) })
    }
}

impl Handler<RemoteChanged> for RecordActor {
    type Result = ();

    fn handle(&mut self, msg: RemoteChanged, ctx: &mut Context<Self>) {
        self.step(ctx, |core, _| core.remote(msg.change));
    }
}

impl Handler<ResyncSubscriber> for RecordActor {
    type Result = bool;

    fn handle(&mut self, msg: ResyncSubscriber, _ctx: &mut Context<Self>) -> bool {
        let Some(subscriber) = self.subscribers.0.get(&msg.session) else {
            return false;
        };
        let frame = match self.core.as_ref().map(Core::record) {
            Some(Stored {
                value: Some(value),
                version,
            }) => full_frame(&self.id, value, *version),
            // Absent values produce no updates, so nothing can be stale; nothing to send.
            _ => return true,
        };
        metrics().resyncs.inc();
        if subscriber.outbox.resync(&self.id, frame) == Err(PushError::Closed) {
            self.subscribers.0.remove(&msg.session);
        }
        true
    }
}

impl Handler<GetSnapshot> for RecordActor {
    type Result = Result<Option<Versioned>, Error>;

    fn handle(&mut self, _msg: GetSnapshot, _ctx: &mut Context<Self>) -> Self::Result {
        self.used_since_tick = true;
        match &self.core {
            Some(core) => Ok(core.record().versioned()),
            None => Err(Error::Unavailable),
        }
    }
}

impl Handler<RetireWhenIdle> for RecordActor {
    type Result = ();

    fn handle(&mut self, _: RetireWhenIdle, ctx: &mut Context<Self>) {
        if self.leaving {
            return;
        }
        self.leaving = true;
        ctx.run_interval(LEAVING_CHECK, |act, ctx| {
            act.forget_closed_subscribers();
            if act.is_idle() {
                act.ask_to_retire(ctx);
            }
        });
    }
}
