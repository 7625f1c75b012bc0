//! The one route to a record's actor. Client requests (sessions), server code (`Records`, and
//! through it the admin API and command handlers) and the sessions' resyncs all reach record
//! actors here, in three steps:
//! - resolve: for a client, its exposure rule and guard decide (in the shared `Directory` when
//!   no guard has to run and an actor is live, otherwise by the `RegistryActor`, which runs the
//!   guard and starts the actor); server code is trusted and skips this;
//! - lease: the actor cannot retire while a message sent through the route is unanswered;
//! - send, and send again to a fresh actor if the one resolved stopped first (its load
//!   failed), a few times with a growing pause.
//!
//! A message sent with an actor already resolved is queued on it before [`RecordRoute::send`]
//! returns, so one caller's requests reach the record in the order it sent them.
//!
//! An established subscription is the exception by design: it lives on one actor, so its
//! `Unsubscribe` goes to that actor's address (if the actor stopped, so did the subscription).

use super::record::{RecordActor, ResyncSubscriber};
use super::registry::{Directory, GetRecordActor, Leased, RegistryActor, ResolveAccess};
use crate::access::{Decision, Exposure, Operation};
use crate::connection::Connection;
use crate::error::Error;
use crate::model::RecordId;
use crate::outbox::Outbox;
use actix::prelude::*;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// How many actors a message is offered to before it fails with `Unavailable`.
const ATTEMPTS: u64 = 8;

/// A client's access to a record, decided at once or by the registry later.
pub(crate) enum Access {
    /// Decided now: no guard had to run.
    Now(Result<Leased, Error>),
    /// The registry decides (a guard runs, or the actor is started); `Internal` if it does not
    /// answer.
    Later(Pin<Box<dyn Future<Output = Result<Leased, Error>>>>),
}

/// The route (see the module docs); clones share it.
#[derive(Clone)]
pub struct RecordRoute {
    registry: Addr<RegistryActor>,
    directory: Arc<Directory>,
}

impl RecordRoute {
    /// A route through `registry`, resolving in its `directory` where it can.
    pub(crate) fn new(registry: Addr<RegistryActor>, directory: Arc<Directory>) -> Self {
        RecordRoute {
            registry,
            directory,
        }
    }

    /// A client's access to `id` for `op`. An actor the registry starts for it is placed on the
    /// caller's thread.
    pub(crate) fn resolve(&self, id: &RecordId, op: Operation, connection: &Connection) -> Access {
        if let Some(resolved) = self.directory.resolve_now(id, op) {
            return Access::Now(resolved);
        }
        let asked = self.registry.send(ResolveAccess {
            id: id.clone(),
            op,
            connection: connection.clone(),
            near: Some(Arbiter::current()),
        });
        Access::Later(Box::pin(async move {
            asked.await.unwrap_or(Err(Error::Internal))
        }))
    }

    /// What the exposure rules say about `op` on `id`, without running a guard (a session
    /// rechecking its subscriptions runs the guards itself).
    pub(crate) fn decide(&self, id: &RecordId, op: Operation) -> Decision {
        self.directory.decide(id, op)
    }

    /// Adds an exposure after all existing ones.
    pub(crate) fn expose(&self, exposure: Exposure) {
        self.directory.expose(exposure);
    }

    /// The registry, for what is not a message to one record (releasing the workers).
    pub(crate) fn registry(&self) -> &Addr<RegistryActor> {
        &self.registry
    }

    /// After `outbox` drained from congestion: asks each record it marked stale for its full
    /// value (for `subscriber`), and forgets the records no longer subscribed. Shared by
    /// sessions and server subscriptions, whose queues work alike.
    pub(crate) fn resync_stale(
        &self,
        outbox: &Outbox,
        subscriber: u64,
    ) -> impl Future<Output = ()> + 'static {
        outbox.clear_congestion();
        let asks: Vec<_> = outbox
            .stale_records()
            .into_iter()
            .map(|id| {
                let asked = self.send(
                    &id,
                    None,
                    ResyncSubscriber {
                        session: subscriber,
                    },
                );
                (id, asked)
            })
            .collect();
        let outbox = outbox.clone();
        async move {
            for (id, asked) in asks {
                if !matches!(asked.await, Ok(true)) {
                    outbox.forget_stale(&id);
                }
            }
        }
    }

    /// Sends `msg` to `id`'s actor: to `resolved` when access was resolved (queued on it now),
    /// otherwise to the live actor or one the registry starts. Fails with
    /// [`Error::Unavailable`] when no actor could take it (the record could not load).
    pub(crate) fn send<M>(
        &self,
        id: &RecordId,
        resolved: Option<Leased>,
        msg: M,
    ) -> impl Future<Output = Result<M::Result, Error>> + use<M>
    where
        M: Message + Clone + Send + 'static,
        M::Result: Send,
        RecordActor: Handler<M>,
    {
        let first = resolved
            .or_else(|| self.directory.lease(id))
            .map(|leased| (leased.addr.send(msg.clone()), leased));
        let registry = self.registry.clone();
        let id = id.clone();
        let first_tried = first.is_some();
        async move {
            if let Some((request, lease)) = first {
                // The lease lives until the answer is in.
                let answer = request.await;
                drop(lease);
                match answer {
                    Ok(result) => return Ok(result),
                    Err(MailboxError::Timeout) => return Err(Error::Unavailable),
                    Err(MailboxError::Closed) => {}
                }
            }
            // The first attempt, when there was one, counts.
            let tried = u64::from(first_tried);
            for attempt in tried..ATTEMPTS {
                let target = registry
                    .send(GetRecordActor { id: id.clone() })
                    .await
                    .map_err(|_| Error::Internal)?;
                match target.addr.send(msg.clone()).await {
                    Ok(result) => return Ok(result),
                    Err(MailboxError::Closed) => {
                        // The actor stopped (its load failed); give it a moment to be
                        // forgotten and try a fresh one.
                        drop(target);
                        actix::clock::sleep(Duration::from_millis(attempt * 5)).await;
                    }
                    Err(MailboxError::Timeout) => return Err(Error::Unavailable),
                }
            }
            Err(Error::Unavailable)
        }
    }
}
