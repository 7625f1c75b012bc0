//! `RegistryActor`: the exposure table and the directory of live `RecordActor`s.
//!
//! Talks to: sessions (`ResolveAccess`), the server API (`GetRecordActor`), record actors
//! (`RecordActorStopped`).
//!
//! Invariants:
//! - At most one live `RecordActor` per id is handed out; a stopped one is replaced on demand.
//! - Guards run as futures outside the mailbox, so a slow guard delays only its own request.
//! - A record actor is started only after access was granted, so refused requests cost nothing.
//! - Record actors are spread over several arbiters (threads) by id hash.

use super::record::{RecordActor, RecordEnv, RecordSettings};
use crate::access::{Decision, Exposure, ExposureTable, Operation};
use crate::connection::Connection;
use crate::error::Error;
use crate::record::RecordId;
use crate::store::SharedStore;
use actix::prelude::*;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

/// Checks access to a record for a connection and returns its actor.
#[derive(Message)]
#[rtype(result = "Result<Addr<RecordActor>, Error>")]
pub struct ResolveAccess {
    /// The record.
    pub id: RecordId,
    /// Read (subscribe) or write.
    pub op: Operation,
    /// Who asks; guards read its metadata.
    pub connection: Connection,
}

/// Returns the record's actor without an access check (server-side API).
#[derive(Message)]
#[rtype(result = "Addr<RecordActor>")]
pub struct GetRecordActor {
    /// The record.
    pub id: RecordId,
}

/// A record actor stopped; forget it unless a newer one replaced it already.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordActorStopped {
    /// The record.
    pub id: RecordId,
    /// The actor that stopped.
    pub addr: Addr<RecordActor>,
}

/// Adds an exposure at runtime, after the existing ones.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AddExposure {
    /// The rule.
    pub exposure: Exposure,
}

/// The registry (see the module docs).
pub struct RegistryActor {
    exposures: ExposureTable,
    records: HashMap<RecordId, Addr<RecordActor>>,
    arbiters: Vec<ArbiterHandle>,
    hasher: std::collections::hash_map::RandomState,
    store: SharedStore,
    settings: RecordSettings,
    live: Arc<AtomicUsize>,
    env: Option<Arc<RecordEnv>>,
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
            exposures,
            records: HashMap::new(),
            arbiters,
            hasher: Default::default(),
            store,
            settings,
            live,
            env: None,
        }
    }

    fn record(&mut self, id: &RecordId) -> Addr<RecordActor> {
        if let Some(addr) = self.records.get(id).filter(|addr| addr.connected()) {
            return addr.clone();
        }
        let Some(env) = self.env.clone() else {
            unreachable!("env is set in started() before any message is handled");
        };
        let arbiter = &self.arbiters[self.hasher.hash_one(id) as usize % self.arbiters.len()];
        let record_id = id.clone();
        let addr = RecordActor::start_in_arbiter(arbiter, move |ctx| {
            // Unbounded mailbox: senders must never be parked, or messages from one session
            // could overtake each other. Sessions bound their own in-flight requests.
            ctx.set_mailbox_capacity(0);
            RecordActor::new(record_id, env)
        });
        self.records.insert(id.clone(), addr.clone());
        addr
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
        }));
    }
}

impl Handler<ResolveAccess> for RegistryActor {
    type Result = ResponseActFuture<Self, Result<Addr<RecordActor>, Error>>;

    fn handle(&mut self, msg: ResolveAccess, _ctx: &mut Context<Self>) -> Self::Result {
        match self.exposures.decide(msg.id.as_str(), msg.op) {
            Decision::NotExposed => Box::pin(fut::ready(Err(Error::Forbidden))),
            Decision::Allowed => Box::pin(fut::ready(Ok(self.record(&msg.id)))),
            Decision::Guarded(guard) => {
                let id = msg.id.clone();
                Box::pin(
                    async move { guard.allows(msg.connection, msg.id).await }
                        .into_actor(self)
                        .map(move |allowed, act, _| {
                            if allowed {
                                Ok(act.record(&id))
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
        MessageResult(self.record(&msg.id))
    }
}

impl Handler<RecordActorStopped> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: RecordActorStopped, _ctx: &mut Context<Self>) {
        if self.records.get(&msg.id) == Some(&msg.addr) {
            self.records.remove(&msg.id);
        }
    }
}

impl Handler<AddExposure> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: AddExposure, _ctx: &mut Context<Self>) {
        self.exposures.push(msg.exposure);
    }
}

/// Sends `msg` to the record's actor, replacing an actor that stopped in the meantime.
///
/// `first` is an actor already resolved (for example by an access check). Fails with
/// [`Error::Unavailable`] when no actor could take the message (its record could not load).
pub async fn send_to_record<M>(
    registry: &Addr<RegistryActor>,
    id: &RecordId,
    first: Option<Addr<RecordActor>>,
    msg: M,
) -> Result<M::Result, Error>
where
    M: Message + Clone + Send + 'static,
    M::Result: Send,
    RecordActor: Handler<M>,
{
    let mut addr = first;
    for attempt in 0..8u64 {
        let target = match addr.take() {
            Some(addr) => addr,
            None => registry
                .send(GetRecordActor { id: id.clone() })
                .await
                .map_err(|_| Error::Internal)?,
        };
        match target.send(msg.clone()).await {
            Ok(result) => return Ok(result),
            Err(MailboxError::Closed) => {
                // The actor stopped (idle, or its load failed); give it a moment to be
                // forgotten and try a fresh one.
                actix::clock::sleep(Duration::from_millis(attempt * 5)).await;
            }
            Err(MailboxError::Timeout) => return Err(Error::Unavailable),
        }
    }
    Err(Error::Unavailable)
}
