//! `mesh/subscribe-collection` and `mesh/unsubscribe-collection`: the session's side. The
//! collection's actor sends the snapshot reply itself, before any diff (see
//! `crate::collections`).

use super::super::SessionActor;
use crate::collections::Refusal;
use crate::collections::actor::{Join, Leave};
use crate::error::Error;
use crate::model::{Mode, RecordId};
use crate::protocol::{CollectionHeld, commands};
use actix::prelude::*;
use serde_json::{Number, Value};

impl SessionActor {
    /// Subscriptions held or being made, records and collections together.
    pub(super) fn watching(&self) -> usize {
        self.subscriptions.len() + self.pending_subscribes + self.collections.len()
    }

    pub(super) fn subscribe_collection(
        &mut self,
        id: Option<Number>,
        collection_id: RecordId,
        (mode, held): (Mode, CollectionHeld),
        ctx: &mut Context<Self>,
    ) {
        const CMD: &str = commands::SUBSCRIBE_COLLECTION;
        let max = self.services.settings.max_subscriptions;
        if !self.collections.contains_key(&collection_id) && self.watching() >= max {
            let error = Error::Limit(format!("a connection may watch at most {max} records"));
            return self.reply(&id, CMD, Err(error));
        }
        // Each may start a collection, which lists the store: a budget of its own.
        if !self.collection_subscribes.allow() {
            return self.reply(&id, CMD, Err(Error::RateLimited));
        }
        let join = Join {
            session: self.number,
            connection: self.connection.clone(),
            outbox: self.outbox.clone(),
            mode,
            reply_to: id.clone(),
            held: std::sync::Arc::new(held),
        };
        let collections = self.services.collections.clone();
        let permit = self.permit.take();
        let wanted = collection_id.clone();
        // Held until the actor has the join, so a later unsubscribe finds the subscription.
        async move { collections.join(&wanted, join).await }
            .into_actor(self)
            .map(move |joined, act, _| {
                drop(permit);
                match joined {
                    Ok(addr) => {
                        // Subscribing again to a per-connection collection starts another
                        // actor: the one it replaces must let go.
                        let number = act.number;
                        if let Some(old) = act.collections.insert(collection_id, addr.clone())
                            && old != addr
                        {
                            old.do_send(Leave { session: number });
                        }
                    }
                    Err(Refusal::Refused) => {
                        if let Some(id) = &id {
                            act.send(crate::collections::frames::refusal(id));
                        }
                    }
                    Err(Refusal::Answered) => {}
                    Err(Refusal::Failed(e)) => act.reply(&id, CMD, Err(e)),
                }
            })
            .wait(ctx);
    }

    pub(super) fn unsubscribe_collection(&mut self, id: Option<Number>, collection_id: RecordId) {
        const CMD: &str = commands::UNSUBSCRIBE_COLLECTION;
        let Some(addr) = self.collections.remove(&collection_id) else {
            return self.reply(&id, CMD, Ok(Value::Bool(false)));
        };
        addr.do_send(Leave {
            session: self.number,
        });
        self.reply(&id, CMD, Ok(Value::Bool(true)));
    }
}
