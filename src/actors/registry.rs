//! `RegistryActor`: the exposure table and the directory of live `RecordActor`s.
//!
//! Talks to: sessions (`ResolveAccess`), the server API (`GetRecordActor`), record actors
//! (`RecordActorStopped`, `RetireRecordActor`).
//!
//! Invariants:
//! - At most one live `RecordActor` per id is handed out; a stopped one is replaced on demand.
//! - Every address handed out comes with a [`Lease`] the sender holds until its message has
//!   been answered. A record actor stops only when the registry agrees (`RetireRecordActor`):
//!   no lease is out, and in the same step the registry forgets it. So a message is never sent
//!   to an actor that is about to stop, and one client's messages to a record can never be
//!   split between an old actor and its successor (which could reorder its writes).
//! - Guards run as futures outside the mailbox, so a slow guard delays only its own request.
//! - A record actor is started only after access was granted, so refused requests cost nothing.
//! - A record actor starts on the thread of the session that first needed it, so that
//!   session's requests and the actor's replies and pushes to it never cross threads (in a
//!   100-writer benchmark this raised writes per CPU-second by 60%: each hop to another thread
//!   is a wake-up in the kernel). Actors started for server-side calls are spread over the
//!   record arbiters by id hash. An HTTP worker's actors would die with it: at shutdown
//!   ([`ReleaseWorkers`]) they retire as soon as idle, the usual way, before the workers stop.
//! - Sessions resolve the common case without a message: an exposure with no guard and a
//!   live actor are looked up in the shared [`Directory`] on the session's own thread. Only a
//!   guard, or an actor to start, costs a round trip through the registry's mailbox.

use super::record::{
    RecordActor, RecordActorStopped, RecordEnv, RecordSettings, RetireRecordActor, RetireWhenIdle,
};
use crate::access::{Decision, Exposure, ExposureTable, Operation};
use crate::connection::Connection;
use crate::error::Error;
use crate::model::RecordId;
use crate::store::SharedStore;
use actix::prelude::*;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A handed-out record actor address: the actor does not stop while its lease is held.
/// Hold it until the message sent with it has been answered.
pub struct Lease(Arc<AtomicUsize>);

impl Lease {
    fn new(count: &Arc<AtomicUsize>) -> Lease {
        count.fetch_add(1, Ordering::AcqRel);
        Lease(Arc::clone(count))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A record actor's address with the lease that keeps it from stopping.
pub struct Leased {
    /// The actor.
    pub addr: Addr<RecordActor>,
    /// Held (never read) until the message sent to `addr` has been answered: dropping it
    /// lets the actor retire.
    _lease: Lease,
}

/// Checks access to a record for a connection and returns its actor.
#[derive(Message)]
#[rtype(result = "Result<Leased, Error>")]
pub struct ResolveAccess {
    /// The record.
    pub id: RecordId,
    /// Read (subscribe) or write.
    pub op: Operation,
    /// Who asks; guards read its metadata.
    pub connection: Connection,
    /// The asker's thread: a record actor started for this request starts there (`None`:
    /// on a record arbiter).
    pub near: Option<ArbiterHandle>,
}

/// Returns the record's actor without an access check (server-side API).
#[derive(Message)]
#[rtype(result = "Leased")]
pub struct GetRecordActor {
    /// The record.
    pub id: RecordId,
}

/// A live record actor and the count of leases out on it.
struct Live {
    addr: Addr<RecordActor>,
    leases: Arc<AtomicUsize>,
    /// Started on a session's thread (an HTTP worker), not on a record arbiter.
    on_worker: bool,
}

/// The server is stopping its HTTP workers: from now on record actors start on the record
/// arbiters, and those living on workers retire as soon as they are idle. Answers with the
/// actors asked to leave, so the caller can wait for them before the workers stop.
#[derive(Message)]
#[rtype(result = "Vec<Addr<RecordActor>>")]
pub struct ReleaseWorkers;

/// The exposure table and the live record actors, shared by the registry and the sessions.
///
/// Only the registry starts or forgets an actor. Leases are taken under the read lock (many
/// sessions at once: the count is atomic) and a retirement is decided under the write lock,
/// so no lease can be taken while the count is checked and the actor forgotten: an actor that
/// agreed to stop is never handed out again.
pub struct Directory {
    exposures: RwLock<ExposureTable>,
    live: RwLock<HashMap<RecordId, Live>>,
}

impl Directory {
    fn new(exposures: ExposureTable) -> Self {
        Directory {
            exposures: RwLock::new(exposures),
            live: RwLock::new(HashMap::new()),
        }
    }

    /// For handing out leases.
    fn live(&self) -> RwLockReadGuard<'_, HashMap<RecordId, Live>> {
        // Every change to the map is a single insert or remove: a poisoned lock is consistent.
        self.live
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// For starting, retiring and forgetting actors (the registry only).
    fn live_mut(&self) -> RwLockWriteGuard<'_, HashMap<RecordId, Live>> {
        self.live
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What the exposures say about `op` on `id`, before any guard runs.
    pub(crate) fn decide(&self, id: &RecordId, op: Operation) -> Decision {
        let exposures = self.exposures.read();
        let exposures = exposures
            .as_ref()
            .unwrap_or_else(|poisoned| poisoned.get_ref());
        exposures.decide(id.as_str(), op)
    }

    /// The write rules of `id` (schema, value guard, expiry, size), read by its record actor
    /// when it starts.
    pub(crate) fn write_rules(&self, id: &RecordId) -> crate::rules::WriteRules {
        let exposures = self.exposures.read();
        let exposures = exposures
            .as_ref()
            .unwrap_or_else(|poisoned| poisoned.get_ref());
        exposures.write_rules(id.as_str())
    }

    /// Adds an exposure after the existing ones; requests resolved from now on see it.
    pub(crate) fn expose(&self, exposure: Exposure) {
        let mut exposures = self.exposures.write();
        let exposures = exposures
            .as_mut()
            .unwrap_or_else(|poisoned| poisoned.get_mut());
        exposures.push(exposure);
    }

    /// The record's live actor with a lease, if one is running.
    pub(crate) fn lease(&self, id: &RecordId) -> Option<Leased> {
        let live = self.live();
        let found = live.get(id).filter(|live| live.addr.connected())?;
        Some(Leased {
            addr: found.addr.clone(),
            _lease: Lease::new(&found.leases),
        })
    }

    /// Access to a record decided without the registry, when that is possible: `None` when a
    /// guard has to run or no actor is live, and the registry must be asked
    /// ([`ResolveAccess`]).
    pub(crate) fn resolve_now(
        &self,
        id: &RecordId,
        op: Operation,
    ) -> Option<Result<Leased, Error>> {
        match self.decide(id, op) {
            Decision::NotExposed => Some(Err(Error::Forbidden)),
            Decision::Guarded(_) => None,
            Decision::Allowed => self.lease(id).map(Ok),
        }
    }
}

/// The registry (see the module docs).
pub struct RegistryActor {
    directory: Arc<Directory>,
    arbiters: Vec<ArbiterHandle>,
    hasher: std::collections::hash_map::RandomState,
    store: SharedStore,
    settings: RecordSettings,
    live: Arc<AtomicUsize>,
    env: Option<Arc<RecordEnv>>,
    /// Whether a session's request may start an actor on the session's thread (until the
    /// workers are released at shutdown).
    place_near: bool,
}

impl RegistryActor {
    /// A registry placing record actors on `arbiters` (at least one).
    pub fn new(
        exposures: ExposureTable,
        store: SharedStore,
        arbiters: Vec<ArbiterHandle>,
        settings: RecordSettings,
        live: Arc<AtomicUsize>,
    ) -> Self {
        RegistryActor {
            directory: Arc::new(Directory::new(exposures)),
            arbiters,
            hasher: Default::default(),
            store,
            settings,
            live,
            env: None,
            place_near: true,
        }
    }

    /// The directory sessions resolve through (share it before the registry starts).
    pub fn directory(&self) -> Arc<Directory> {
        Arc::clone(&self.directory)
    }

    fn record(&mut self, id: &RecordId, near: Option<&ArbiterHandle>) -> Leased {
        let mut live = self.directory.live_mut();
        if let Some(found) = live.get(id).filter(|found| found.addr.connected()) {
            return Leased {
                addr: found.addr.clone(),
                _lease: Lease::new(&found.leases),
            };
        }
        let Some(env) = self.env.clone() else {
            unreachable!("env is set in started() before any message is handled");
        };
        let hashed = &self.arbiters[self.hasher.hash_one(id) as usize % self.arbiters.len()];
        let near = near.filter(|_| self.place_near);
        let arbiter = near.unwrap_or(hashed);
        let record_id = id.clone();
        let rules = self.directory.write_rules(id);
        let addr = RecordActor::start_in_arbiter(arbiter, move |ctx| {
            // Unbounded mailbox: senders must never be parked, or messages from one session
            // could overtake each other. Sessions bound their own in-flight requests.
            ctx.set_mailbox_capacity(0);
            RecordActor::new(record_id, env, rules)
        });
        let leases = Arc::new(AtomicUsize::new(0));
        let lease = Lease::new(&leases);
        live.insert(
            id.clone(),
            Live {
                addr: addr.clone(),
                leases,
                on_worker: near.is_some(),
            },
        );
        Leased {
            addr,
            _lease: lease,
        }
    }
}

impl Actor for RegistryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(0);
        self.env = Some(Arc::new(RecordEnv {
            store: Arc::clone(&self.store),
            settings: self.settings.clone(),
            live: Arc::clone(&self.live),
            registry: ctx.address().recipient(),
            retire: ctx.address().recipient(),
            shared_limits: Default::default(),
        }));
    }
}

impl Handler<ResolveAccess> for RegistryActor {
    type Result = ResponseActFuture<Self, Result<Leased, Error>>;

    fn handle(&mut self, msg: ResolveAccess, _ctx: &mut Context<Self>) -> Self::Result {
        match self.directory.decide(&msg.id, msg.op) {
            Decision::NotExposed => Box::pin(fut::ready(Err(Error::Forbidden))),
            Decision::Allowed => {
                let leased = self.record(&msg.id, msg.near.as_ref());
                Box::pin(fut::ready(Ok(leased)))
            }
            Decision::Guarded(guard) => {
                let id = msg.id.clone();
                let near = msg.near;
                Box::pin(
                    async move { guard.allows(msg.connection, msg.id).await }
                        .into_actor(self)
                        .map(move |allowed, act, _| {
                            if allowed {
                                Ok(act.record(&id, near.as_ref()))
                            } else {
                                crate::metrics::metrics().guard_denials.inc();
                                Err(Error::Forbidden)
                            }
                        }),
                )
            }
        }
    }
}

impl Handler<GetRecordActor> for RegistryActor {
    type Result = MessageResult<GetRecordActor>;

    fn handle(&mut self, msg: GetRecordActor, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(self.record(&msg.id, None))
    }
}

impl Handler<RetireRecordActor> for RegistryActor {
    type Result = bool;

    fn handle(&mut self, msg: RetireRecordActor, _ctx: &mut Context<Self>) -> bool {
        let mut live = self.directory.live_mut();
        let Some(found) = live.get(&msg.id) else {
            return false;
        };
        if found.addr != msg.addr || found.leases.load(Ordering::Acquire) != 0 {
            return false;
        }
        live.remove(&msg.id);
        true
    }
}

impl Handler<ReleaseWorkers> for RegistryActor {
    type Result = MessageResult<ReleaseWorkers>;

    fn handle(&mut self, _: ReleaseWorkers, _ctx: &mut Context<Self>) -> Self::Result {
        self.place_near = false;
        let live = self.directory.live();
        let leaving: Vec<_> = live
            .values()
            .filter(|found| found.on_worker && found.addr.connected())
            .map(|found| found.addr.clone())
            .collect();
        for addr in &leaving {
            addr.do_send(RetireWhenIdle);
        }
        MessageResult(leaving)
    }
}

impl Handler<RecordActorStopped> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: RecordActorStopped, _ctx: &mut Context<Self>) {
        let mut live = self.directory.live_mut();
        if live
            .get(&msg.id)
            .is_some_and(|found| found.addr == msg.addr)
        {
            live.remove(&msg.id);
        }
    }
}
