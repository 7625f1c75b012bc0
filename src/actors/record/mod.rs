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
//! - The decisions live in `state` and `lifecycle` (pure, unit-tested, the first against a
//!   scripted store); this file and `handlers` only carry out their effects and feed the
//!   store's answers back, so at most one store call is in flight and state changes only when
//!   the store has answered.
//! - Each update is diffed at most once and serialized at most once per mode (`fanout`).
//! - With a shared store (Redis), the actor watches the record's changes *before* it loads, so
//!   a change published after the load cannot be missed and one before it is ignored as older.
//! - The actor stops after `linger` with no subscribers and nothing queued or in flight.
//!
//! # Layout
//! - `messages`: what the actor handles and sends, its settings and environment.
//! - `handlers`: the message handlers (each hands its request to `Core` or answers from it).
//! - `state`: the synchronisation state machine (its types and requests; `state/answers.rs` the
//!   store's answers, published changes and timers; `state/transitions.rs` what they share).
//! - `lifecycle`: when the actor may stop (linger, leaving with its thread).
//! - `queue`: the queued requests and planning a batch of queued writes.
//! - `fanout`: subscribers and the frames they get.
//! - `persisted`: values the database cannot hold, replies held until it confirms.

mod answer;
mod fanout;
mod handlers;
mod lifecycle;
mod messages;
mod persisted;
mod queue;
mod state;
#[cfg(test)]
mod tests;

pub use answer::Answer;
pub use messages::{
    ApplyWrite, DeleteRecord, GetHistory, GetSnapshot, OnEnd, RecordActorStopped, RecordEnv,
    RecordSettings, RemoteChanged, ResyncSubscriber, RetireRecordActor, RetireWhenIdle, Subscribe,
    SubscriptionEnded, Unsubscribe, UpdateRecord,
};
pub use queue::WriteOutcome;

use crate::error::Error;
use crate::metrics::metrics;
use crate::model::{RecordId, Version};
use crate::rules::WriteRules;
use crate::store::{ChangeSink, WatchToken};
use actix::prelude::*;
use fanout::Subscribers;
use lifecycle::{Lifecycle, Next};
use queue::{BatchLimits, Edit, Op, Replies};
use state::{Core, CoreLimits, Effect, Reply};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::persistence::{Persist, PersistDeletion, PersistenceHandle};
use persisted::Held;

/// The actor's replies: the answers its handlers return (see `answer`).
struct Channels;

impl Replies for Channels {
    type Write = Answer<WriteOutcome>;
    type Delete = Answer<Option<Version>>;
}

impl Reply<Channels> {
    fn send(self) {
        match self {
            Reply::Write(to, result) => to.send(result),
            Reply::Delete(to, result) => to.send(result),
        }
    }
}

/// The actor owning one record (see the module docs).
pub struct RecordActor {
    id: RecordId,
    env: Arc<RecordEnv>,
    /// `None` until the first load has answered (no message is handled before: the load
    /// holds the mailbox) and after it failed (the actor is stopping).
    core: Option<Core<Channels>>,
    subscribers: Subscribers,
    lifecycle: Lifecycle,
    watch: Option<WatchToken>,
    /// The persistence actor for this record and the routes' generation it was looked up at.
    /// Boxed, and only once a change needs it: most actors never persist, and the handle is
    /// large (this struct is inline in every record actor's task).
    persist_route: Option<Box<(u64, Option<PersistenceHandle>)>>,
    /// Its exposure's write rules (schema, value guard, expiry, size), read at start and
    /// handed to the core once loaded (`None`: no rule, or handed over).
    rules: Option<Box<WriteRules>>,
}

/// The core's clock: tokio's, so that tests on paused time move the core's deadlines too.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// How often a leaving actor checks whether it is idle.
const LEAVING_CHECK: Duration = Duration::from_millis(10);

impl RecordActor {
    /// An actor for `id`; it loads the record when it starts.
    pub fn new(id: RecordId, env: Arc<RecordEnv>, rules: WriteRules) -> Self {
        RecordActor {
            rules: (!rules.is_empty()).then(|| Box::new(rules)),
            id,
            env,
            core: None,
            subscribers: Subscribers::default(),
            lifecycle: Lifecycle::default(),
            watch: None,
            persist_route: None,
        }
    }

    /// The loaded state, or `Unavailable` (the load failed and the actor is stopping).
    fn core(&self) -> Result<&Core<Channels>, Error> {
        self.core.as_ref().ok_or(Error::Unavailable)
    }

    /// The core's limits: the ones all actors share, unless the rules set a size.
    fn limits(&self, rules: &WriteRules) -> Arc<CoreLimits> {
        let settings = &self.env.settings;
        let limits = |max_value_bytes| CoreLimits {
            batch: BatchLimits {
                max_writes: settings.max_write_batch.max(1),
                max_bytes: settings.max_write_batch_bytes,
                max_value_bytes,
                patches: settings.history.versions > 0,
            },
            max_pending: settings.max_pending_writes.max(1),
            history: settings.history,
            deadlines: settings.deadlines,
        };
        match rules.max_value_bytes {
            Some(max) => Arc::new(limits(max)),
            None => Arc::clone(
                self.env
                    .shared_limits
                    .get_or_init(|| Arc::new(limits(settings.max_value_bytes))),
            ),
        }
    }

    /// The persistence actor for this record, if a rule covers it (looked up again only when
    /// rules were added).
    fn persistence(&mut self) -> Option<&PersistenceHandle> {
        let routes = &self.env.settings.persist;
        let generation = routes.generation();
        if !matches!(self.persist_route.as_deref(), Some((seen, _)) if *seen == generation) {
            let route = routes.handle(self.id.as_str());
            self.persist_route = Some(Box::new((generation, route)));
        }
        self.persist_route
            .as_deref()
            .and_then(|(_, route)| route.as_ref())
    }

    /// Whether a write can be persisted: the record's persistence buffer has room (its
    /// database has not been unreachable for long) and its value holds nothing the database
    /// cannot store (U+0000 in PostgreSQL; an update's result is checked when computed).
    fn admit(&mut self, change: &mut Edit) -> Result<(), Error> {
        let id = self.id.clone();
        let Some(handle) = self.persistence() else {
            return Ok(());
        };
        handle
            .admit(id.as_str())
            .and_then(|()| persisted::admit_change(handle, change))
    }

    /// Does what the lifecycle asks.
    fn follow(&mut self, next: Next, ctx: &mut Context<Self>) {
        match next {
            Next::Stay => {}
            Next::Stop => ctx.stop(),
            Next::AskToRetire => {
                let ask = RetireRecordActor {
                    id: self.id.clone(),
                    addr: ctx.address(),
                };
                self.env
                    .retire
                    .send(ask)
                    .into_actor(self)
                    .map(|granted, act, ctx| {
                        let next = act.lifecycle.answered(matches!(granted, Ok(true)));
                        act.follow(next, ctx);
                    })
                    .spawn(ctx);
            }
            Next::CheckOften => {
                ctx.run_interval(LEAVING_CHECK, |act, ctx| {
                    act.forget_closed_subscribers();
                    let next = act.lifecycle.leaving_check(act.is_idle());
                    act.follow(next, ctx);
                });
            }
        }
    }

    /// A session that ended while its subscribe was in flight never sent Unsubscribe; its
    /// closed outbox says it is gone even if no update has tried it since.
    fn forget_closed_subscribers(&mut self) {
        self.subscribers.retain(|s| !s.outbox.is_closed());
    }

    /// The linger tick (from the thread's clock, [`crate::actors::clock`]).
    fn linger_tick(&mut self, ctx: &mut Context<Self>) {
        self.forget_closed_subscribers();
        let next = self.lifecycle.tick(self.is_idle());
        self.follow(next, ctx);
    }

    fn is_idle(&self) -> bool {
        self.subscribers.is_empty() && self.core.as_ref().is_none_or(Core::is_idle)
    }

    /// Feeds one event to the core and carries out what it asks for.
    fn step(
        &mut self,
        ctx: &mut Context<Self>,
        event: impl FnOnce(&mut Core<Channels>, Instant) -> Vec<Effect<Channels>>,
    ) {
        let Some(core) = self.core.as_mut() else {
            return;
        };
        let effects = event(core, now());
        let mut held = Held::default();
        for effect in effects {
            self.carry_out(effect, &mut held, ctx);
        }
        held.release();
    }

    fn carry_out(&mut self, effect: Effect<Channels>, held: &mut Held, ctx: &mut Context<Self>) {
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
                ttl,
            } => store
                .write(&self.id, expected, values, op, history, ttl)
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
            Effect::Vouch => {
                let (id, record) = (self.id.clone(), self.core.as_ref().map(Core::record));
                if let (Some(record), Some(handle)) = (record.cloned(), self.persistence()) {
                    persisted::confirm_current(handle, id, record, held);
                }
            }
            Effect::Guard { guard, proposal } => {
                async move { guard.allows(proposal).await }
                    .into_actor(self)
                    .map(|allowed, act, ctx| act.step(ctx, |core, _| core.guarded(allowed)))
                    .spawn(ctx);
            }
            Effect::Reply(reply) => {
                // A record actor refuses with EFORBIDDEN only for a value guard.
                if matches!(reply, Reply::Write(_, Err(Error::Forbidden))) {
                    metrics().guard_denials.inc();
                }
                if let Some(reply) = held.hold(reply) {
                    reply.send();
                }
            }
            Effect::Count(outcome) => metrics().write(outcome),
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
                let rules = act.rules.take().map(|rules| *rules).unwrap_or_default();
                let limits = act.limits(&rules);
                act.core = Some(Core::new(act.id.clone(), record, history, limits, rules));
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
        crate::actors::clock::join(tick, None, ctx.address().downgrade());
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
                    Op::Write(write) => Reply::Write(write.reply, Err(Error::Unavailable)).send(),
                    Op::Delete { reply, .. } => {
                        Reply::Delete(reply, Err(Error::Unavailable)).send()
                    }
                }
            }
        }
        self.env.registry.do_send(RecordActorStopped {
            id: self.id.clone(),
            addr: ctx.address(),
        });
    }
}
