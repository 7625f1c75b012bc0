//! `CollectionActor`: one per collection id that has subscribers on this instance.
//!
//! It holds the collection's [`Membership`] (listed from the store when it starts, then kept
//! current from the store's change feed: only ids its glob matches reach it), its subscribers
//! and, for each, the members it may see and the version of its diffs. A batch of changed ids
//! is loaded from the store together; ids that change meanwhile make the next batch, so a
//! lone change goes out at once and a burst is coalesced, with no timer.
//!
//! Per batch the window change is computed once; each subscriber then gets, in order:
//! a `mesh/collection-diff` (its own version, +1, only when its visible members changed) and
//! a `mesh/record-update` for each changed member it sees (full, or a patch in patch mode
//! when it holds the version before).
//!
//! Visibility: a member is shown to a connection only if a record exposure lets it read the
//! record (its read guard runs when the member enters the window or the connection joins).
//!
//! A collection whose rule has a resolver gets an actor per subscribing connection: its
//! members are what the resolver returns for that connection (`super::resolver`), run again
//! on each batch of changes instead of loading only the changed ids.

mod fan_out;
mod handlers;
mod recheck;

use super::Collections;
use super::frames::{self, Opening};
use super::membership::Membership;
use super::resolver::{PerConnection, Rerun, RunError};
use super::visible::Visible;
use crate::access::{Decision, Guard, Operation};
use crate::actors::registry::Directory;
use crate::connection::Connection;
use crate::error::Error;
use crate::model::{Glob, Mode, RecordId, Versioned};
use crate::outbox::Outbox;
use crate::protocol::{self, CollectionHeld, commands};
use crate::store::SharedStore;
use actix::prelude::*;
use futures_util::future::join_all;
use serde_json::{Number, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// How long a collection with no subscriber stays loaded (a page reload comes back).
const LINGER: Duration = Duration::from_secs(5);
/// Pause before loading again after the store failed.
const RETRY: Duration = Duration::from_millis(500);

/// What became of a [`Join`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Subscribed; the snapshot reply is queued.
    Admitted,
    /// Refused; the error reply is queued.
    Refused,
    /// This actor is retiring: join a fresh one.
    Retry,
}

/// A session joining: the snapshot reply goes to `outbox` (for request `reply_to`).
#[derive(Clone, Message)]
#[rtype(result = "Admission")]
pub(crate) struct Join {
    pub session: u64,
    pub connection: Connection,
    pub outbox: Outbox,
    pub mode: Mode,
    pub reply_to: Option<Number>,
    /// What the client holds when it resumes.
    pub held: Arc<CollectionHeld>,
}

/// A session leaving; answers whether it was subscribed.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct Leave {
    pub session: u64,
}

/// The connection's metadata changed: run the collection's guard and the members' read
/// guards again for this session.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Recheck {
    pub session: u64,
}

/// From the store's change feed.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) enum Feed {
    /// This record changed (on some instance).
    Changed(RecordId),
    /// Changes may have been missed: list everything again.
    Resync,
}

struct Subscriber {
    connection: Connection,
    outbox: Outbox,
    mode: Mode,
    /// Diffs sent so far, plus one (the snapshot is version 1).
    version: u64,
    /// The members this subscriber sees.
    visible: Visible,
}

/// The collection (see the module docs).
pub(crate) struct CollectionActor {
    id: RecordId,
    glob: Glob,
    /// The collection's own guard.
    guard: Option<Guard>,
    store: SharedStore,
    directory: Arc<Directory>,
    hub: Collections,
    membership: Membership,
    /// The first listing failed: joins are answered with this error (`Forbidden`: Mesh's
    /// refusal, for a resolver that failed).
    failed: Option<Error>,
    /// The resolver and connection, for a per-connection collection.
    per_connection: Option<PerConnection>,
    subscribers: HashMap<u64, Subscriber>,
    /// Changed ids not loaded yet.
    pending: HashSet<RecordId>,
    /// A load is running.
    loading: bool,
    /// List everything again at the next load.
    resync: bool,
    /// Decided to stop: joins are refused so the hub starts a fresh actor.
    closing: bool,
    /// Listed at start and not shown to anyone yet: the first join needs no listing of its
    /// own.
    fresh: bool,
    /// Bumped by every join and leave, so a linger timer knows whether it is stale.
    activity: u64,
}

impl CollectionActor {
    pub(crate) fn new(
        id: RecordId,
        (glob, guard): (Glob, Option<Guard>),
        membership: Membership,
        hub: Collections,
    ) -> Self {
        CollectionActor {
            id,
            glob,
            guard,
            store: hub.store(),
            directory: hub.directory(),
            hub,
            membership,
            failed: None,
            per_connection: None,
            subscribers: HashMap::new(),
            pending: HashSet::new(),
            loading: false,
            resync: false,
            closing: false,
            fresh: true,
            activity: 0,
        }
    }

    /// Makes this the collection of one connection, its members decided by a resolver.
    pub(crate) fn per_connection(mut self, source: PerConnection) -> Self {
        self.per_connection = Some(source);
        self
    }

    /// Runs the resolver for a batch: the members now, with what changed loaded.
    fn resolve(
        &self,
        source: PerConnection,
        rerun: Rerun,
    ) -> impl Future<Output = Result<Vec<(RecordId, Option<Versioned>)>, RunError>> + 'static {
        let rule = (self.id.clone(), self.glob.clone(), self.hub.max_members());
        source.run(rule, self.store.clone(), rerun)
    }

    /// The members when the actor starts (listed from the store, or what the resolver
    /// returns), or the error joins are then answered with (`Forbidden`: the resolver failed).
    fn first_listing(
        &self,
    ) -> impl Future<Output = Result<Vec<(RecordId, Option<Versioned>)>, Error>> + 'static {
        use futures_util::FutureExt;
        let id = self.id.clone();
        if let Some(source) = self.per_connection.clone() {
            let everything = Rerun {
                held: HashSet::new(),
                changed: HashSet::new(),
                everything: true,
            };
            let resolved = self.resolve(source, everything);
            return async move {
                resolved.await.map_err(|e| {
                    log::warn!("collection {id}: {e}");
                    match e {
                        RunError::Resolver(_) => Error::Forbidden,
                        RunError::TooMany(why) => Error::Limit(why),
                        RunError::Store(_) => Error::Unavailable,
                    }
                })
            }
            .left_future();
        }
        let (store, glob, max) = (
            self.store.clone(),
            self.glob.clone(),
            self.hub.max_members(),
        );
        async move {
            let listed = store.list_matching(&glob, max).await.map_err(|e| {
                log::warn!("collection {id}: listing failed: {e}");
                match e {
                    crate::store::StoreError::TooMany { .. } => Error::Limit(e.to_string()),
                    _ => Error::Unavailable,
                }
            })?;
            Ok(listed.into_iter().map(|(id, r)| (id, Some(r))).collect())
        }
        .right_future()
    }

    /// Which of `ids` `connection` may read: at once when no guard has to run.
    fn readable(
        &self,
        connection: &Connection,
        ids: Vec<RecordId>,
    ) -> impl Future<Output = Vec<RecordId>> + 'static {
        let decided: Vec<(RecordId, Decision)> = ids
            .into_iter()
            .map(|id| {
                let decision = self.directory.decide(&id, Operation::Read);
                (id, decision)
            })
            .collect();
        let connection = connection.clone();
        async move {
            let checks = decided.into_iter().map(|(id, decision)| {
                let connection = connection.clone();
                async move {
                    let allowed = match decision {
                        Decision::Allowed => true,
                        Decision::NotExposed => false,
                        Decision::Guarded(guard) => guard.allows(connection, id.clone()).await,
                    };
                    allowed.then_some(id)
                }
            });
            join_all(checks).await.into_iter().flatten().collect()
        }
    }

    fn admit(&mut self, join: Join) -> ResponseActFuture<Self, Admission> {
        let window = self.membership.window();
        let check = self.readable(&join.connection, window.clone());
        let admitted = check.into_actor(self).map(move |readable, act, ctx| {
            let visible = Visible::from_readable(window.len(), readable);
            let opening = match join.held.since {
                None => Opening::Fresh,
                // Versions stay exact in a JavaScript number.
                Some(Some(since)) if since < 1 << 53 => Opening::Resumed {
                    since,
                    held: &join.held.members,
                },
                Some(_) => Opening::NotResumed,
            };
            let version = opening.version();
            if let Some(request) = &join.reply_to {
                let members: Vec<(RecordId, Arc<Value>, u64)> = window
                    .iter()
                    .filter(|id| visible.contains(id, &act.membership))
                    .filter_map(|id| {
                        let member = act.membership.get(id)?;
                        Some((id.clone(), member.value.clone(), member.version))
                    })
                    .collect();
                let snapshot = frames::snapshot(request, &members, opening);
                let max = act.hub.max_snapshot_bytes();
                if snapshot.len() > max {
                    let error = Error::Limit(format!(
                        "the collection's snapshot is {} bytes, over {max}",
                        snapshot.len()
                    ));
                    let cmd = commands::SUBSCRIBE_COLLECTION;
                    let _ = join
                        .outbox
                        .push(protocol::error_frame(request, cmd, &error));
                    act.linger_if_idle(ctx);
                    return Admission::Refused;
                }
                let _ = join.outbox.push(snapshot);
            }
            let subscriber = Subscriber {
                connection: join.connection,
                outbox: join.outbox,
                mode: join.mode,
                version,
                visible,
            };
            act.subscribers.insert(join.session, subscriber);
            act.fresh = false;
            Admission::Admitted
        });
        Box::pin(admitted)
    }

    /// Admits `join` after listing the collection again: its first subscriber after a
    /// while, whose members changes still in flight on the feed may not have reached, gets a
    /// snapshot at least as new as the writes acknowledged before it asked.
    fn relist_and_admit(&mut self, join: Join) -> ResponseActFuture<Self, Admission> {
        let listing = self.store.list_matching(&self.glob, self.hub.max_members());
        let admitted = listing.into_actor(self).then(move |listed, act, _| {
            match listed {
                Ok(listed) => {
                    let batch = relisting(act.membership.ids(), listed);
                    act.membership.apply(batch);
                }
                Err(e) => {
                    log::warn!("collection {}: listing failed: {e}", act.id);
                    act.resync = true;
                }
            }
            act.admit(join)
        });
        Box::pin(admitted)
    }

    fn start_load(&mut self, ctx: &mut Context<Self>) {
        if self.loading || (self.pending.is_empty() && !self.resync) {
            return;
        }
        self.loading = true;
        let store = self.store.clone();
        if let Some(source) = self.per_connection.clone() {
            let rerun = Rerun {
                held: self.membership.ids().into_iter().collect(),
                changed: std::mem::take(&mut self.pending),
                everything: std::mem::take(&mut self.resync),
            };
            self.resolve(source, rerun)
                .into_actor(self)
                .map(|loaded, act, ctx| act.loaded(loaded.map_err(|e| e.to_string()), ctx))
                .spawn(ctx);
            return;
        }
        if std::mem::take(&mut self.resync) {
            self.pending.clear();
            let glob = self.glob.clone();
            let max = self.hub.max_members();
            let held: Vec<RecordId> = self.membership.ids();
            async move {
                let listed = store
                    .list_matching(&glob, max)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(relisting(held, listed))
            }
            .into_actor(self)
            .map(|loaded, act, ctx| act.loaded(loaded, ctx))
            .spawn(ctx);
            return;
        }
        let ids: Vec<RecordId> = self.pending.drain().collect();
        let loads = ids.iter().map(|id| store.load(id)).collect::<Vec<_>>();
        async move {
            let mut batch = Vec::with_capacity(loads.len());
            for (id, loaded) in ids.iter().zip(join_all(loads).await) {
                let state = loaded.map_err(|e| e.to_string())?;
                batch.push((id.clone(), state.versioned()));
            }
            Ok(batch)
        }
        .into_actor(self)
        .map(|loaded, act, ctx| act.loaded(loaded, ctx))
        .spawn(ctx);
    }

    fn loaded(
        &mut self,
        loaded: Result<Vec<(RecordId, Option<Versioned>)>, String>,
        ctx: &mut Context<Self>,
    ) {
        self.loading = false;
        match loaded {
            Ok(batch) => self.apply(batch, ctx),
            Err(e) => {
                log::warn!("collection {}: loading changes failed: {e}", self.id);
                // Everything again, once the store answers.
                self.resync = true;
                ctx.run_later(RETRY, |act, ctx| act.start_load(ctx));
                return;
            }
        }
        self.start_load(ctx);
    }

    fn apply(&mut self, batch: Vec<(RecordId, Option<Versioned>)>, ctx: &mut Context<Self>) {
        let change = self.membership.apply(batch);
        if change.is_empty() || self.subscribers.is_empty() {
            return;
        }
        if change.added.is_empty() {
            // Nothing entered: no guard to run (the common case, a member's new value).
            let seen = self.subscribers.keys().map(|s| (*s, Vec::new())).collect();
            return self.fan_out(&change, seen);
        }
        // Which subscribers see each entering member (guards may have to run).
        let checks: Vec<_> = self
            .subscribers
            .iter()
            .map(|(session, s)| {
                let check = self.readable(&s.connection, change.added.clone());
                let session = *session;
                async move { (session, check.await) }
            })
            .collect();
        async move { join_all(checks).await }
            .into_actor(self)
            .map(move |seen, act, _| act.fan_out(&change, seen))
            .wait(ctx);
    }

    /// Starts the linger timer if nobody is subscribed.
    fn linger_if_idle(&mut self, ctx: &mut Context<Self>) {
        if self.subscribers.is_empty() {
            self.linger(ctx);
        }
    }

    fn linger(&mut self, ctx: &mut Context<Self>) {
        if self.per_connection.is_some() {
            // Its one connection left: nobody else can join it.
            return self.close(ctx);
        }
        let activity = self.activity;
        ctx.run_later(LINGER, move |act, ctx| {
            if act.activity == activity && act.subscribers.is_empty() {
                act.close(ctx);
            }
        });
    }

    fn close(&mut self, ctx: &mut Context<Self>) {
        self.closing = true;
        self.hub.forget(&self.id, &self.glob, &ctx.address());
        ctx.stop();
    }
}

/// The batch that takes a membership holding `held` to `listed`: the listed records, and
/// every held id the listing lacks as gone.
fn relisting(
    held: Vec<RecordId>,
    listed: Vec<(RecordId, Versioned)>,
) -> Vec<(RecordId, Option<Versioned>)> {
    let mut batch: HashMap<RecordId, Option<Versioned>> =
        held.into_iter().map(|id| (id, None)).collect();
    batch.extend(listed.into_iter().map(|(id, record)| (id, Some(record))));
    batch.into_iter().collect()
}

impl Actor for CollectionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Filed in the feed index before listing, so no change after the listing is missed:
        // feed messages wait in the mailbox until the listing is in.
        self.hub.index(&self.glob, ctx.address());
        self.first_listing()
            .into_actor(self)
            .map(|listed, act, _| match listed {
                Ok(batch) => {
                    act.membership.apply(batch);
                }
                Err(error) => act.failed = Some(error),
            })
            .wait(ctx);
    }
}
