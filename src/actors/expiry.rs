//! `ExpirySweeper`: deletes the records whose expiry passed (an exposure's `ttl_seconds`,
//! `Records::expire_record`).
//!
//! Talks to: the store (`Store::expire_due`), the persistence actors (`PersistDeletion`).
//!
//! Invariants:
//! - Every instance runs one, and the store deletes each due record once however many sweep
//!   at the same time; nothing a dying instance holds is needed (the store takes back what it
//!   had claimed). So expiry keeps working while any instance runs.
//! - A record is deleted as a delete deletes it: the tombstone keeps its version, the deletion
//!   is published, so every instance's subscribers get `mesh/record-deleted` and collections
//!   drop it. The instance that deleted it removes its database row (other instances persist
//!   only their own changes).
//! - An expire whose answer was lost is looked up at the next sweep: a tombstone means it
//!   happened, and the row is removed then.
//! - One sweep at a time; a sweep does at most `ROUNDS` batches, the rest waits for the next.

use super::persistence::{PersistDeletion, PersistRoutes};
use crate::metrics::metrics;
use crate::model::{RecordId, Version};
use crate::store::SharedStore;
use actix::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// Records one store call expires at most.
const BATCH: usize = 500;
/// Batches one sweep runs at most before it yields to the next tick.
const ROUNDS: usize = 20;
/// Lost answers kept to look up (an outage makes many; past this the oldest are dropped, and
/// their rows stay in the database until the record is written or deleted again).
const MAX_UNSURE: usize = 10_000;

/// The sweeper (see the module docs).
pub struct ExpirySweeper {
    store: SharedStore,
    persist: Arc<PersistRoutes>,
    every: Duration,
    sweeping: bool,
    /// Expires sent whose answer was lost: looked up at the next sweep.
    unsure: Vec<RecordId>,
}

impl ExpirySweeper {
    /// A sweeper calling the store every `every`.
    pub fn new(store: SharedStore, persist: Arc<PersistRoutes>, every: Duration) -> Self {
        ExpirySweeper {
            store,
            persist,
            every,
            sweeping: false,
            unsure: Vec::new(),
        }
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        if self.sweeping {
            return;
        }
        self.sweeping = true;
        let store = Arc::clone(&self.store);
        let unsure = std::mem::take(&mut self.unsure);
        sweep(store, unsure)
            .into_actor(self)
            .map(|(deleted, unsure), act, _| {
                act.sweeping = false;
                act.unsure = unsure;
                if act.unsure.len() > MAX_UNSURE {
                    let dropped = act.unsure.len() - MAX_UNSURE;
                    log::warn!(
                        "{dropped} expired records may keep their database rows: the store did \
                         not say whether they were deleted"
                    );
                    act.unsure.drain(..dropped);
                }
                for (id, version) in deleted {
                    metrics().records_expired.inc();
                    if let Some(handle) = act.persist.handle(id.as_str()) {
                        handle.addr.do_send(PersistDeletion { id, version });
                    }
                }
            })
            .spawn(ctx);
    }
}

/// One sweep: what became of last sweep's lost answers, then the due records. Answers the
/// records deleted (with their tombstone versions) and the expires still unsure.
async fn sweep(
    store: SharedStore,
    unsure: Vec<RecordId>,
) -> (Vec<(RecordId, Version)>, Vec<RecordId>) {
    let mut deleted = Vec::new();
    let mut still_unsure = Vec::new();
    for id in unsure {
        match store.load(&id).await {
            Ok(record) if !record.exists() && record.version > 0 => {
                deleted.push((id, record.version));
            }
            Ok(_) => {}
            Err(_) => still_unsure.push(id),
        }
    }
    for _ in 0..ROUNDS {
        match store.expire_due(BATCH).await {
            Ok(batch) => {
                deleted.extend(batch.deleted);
                still_unsure.extend(batch.unknown);
                if !batch.more {
                    break;
                }
            }
            Err(e) => {
                log::warn!("expiring records failed: {e}; trying again at the next sweep");
                break;
            }
        }
    }
    (deleted, still_unsure)
}

impl Actor for ExpirySweeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.every, |act, ctx| act.sweep(ctx));
    }
}
