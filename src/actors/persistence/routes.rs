//! Which `PersistenceActor` a record's writes go to: one actor per rule, the first matching
//! rule wins. Record actors read the routes before each persisted write (`admit`).

use super::{ConfirmWhenLanded, PersistenceActor};
use crate::access::Matcher;
use crate::database::{PersistenceError, has_nul};
use crate::error::{Error, Result};
use actix::{Addr, Handler};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::oneshot;

/// A started [`PersistenceActor`] with the counter record actors read before a persisted
/// write. Cheap to clone.
#[derive(Clone)]
pub struct PersistenceHandle {
    /// The actor.
    pub addr: Addr<PersistenceActor>,
    /// Records held unwritten (buffered plus in flight); after the actor stopped, those lost.
    pub(super) held: Arc<AtomicUsize>,
    pub(super) max: usize,
    /// `ack = "flushed"`: how long a reply waits for the database.
    pub(super) confirm_within: Option<Duration>,
    /// The database cannot hold U+0000 (PostgreSQL).
    pub(super) refuses_nul: bool,
}

impl PersistenceHandle {
    /// Whether a write of a persisted record may be applied now: false while the actor holds
    /// `max_buffered_records` unwritten (the database has been unreachable for a while). A
    /// caller that gets false must refuse the write (nothing applied) rather than apply a
    /// change that might never be persisted. Soft limit: writers checking at the same moment
    /// may overshoot it by their number.
    pub fn has_room(&self) -> bool {
        self.held.load(Ordering::Relaxed) < self.max
    }

    /// Records held unwritten; once the actor has stopped, the number it could not write.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Whether a write to `id`, which this actor persists, may be applied: `Ok` while the
    /// buffer has room; otherwise [`Error::Unavailable`] (counted in
    /// `mesh_persistence_refused_writes_total`), and the write must not be applied, since it
    /// could not be persisted.
    pub fn admit(&self, id: &str) -> Result<()> {
        if self.has_room() {
            return Ok(());
        }
        crate::metrics::metrics().persistence_refused.inc();
        // Debug only: during an outage this runs for every refused write.
        log::debug!(
            "refusing a write to {id}: {} records wait for the persistence database",
            self.held()
        );
        Err(Error::Unavailable)
    }

    /// Whether `value` (what a client sent, or what an update computed) can be persisted:
    /// [`Error::Invalid`] when it holds U+0000 and the database cannot store that
    /// (PostgreSQL). Refused here, before anything is applied, rather than acknowledged and
    /// then missing from the database. Costs one walk over the value.
    pub fn admit_value(&self, value: &Value) -> Result<()> {
        if self.refuses_nul && has_nul(value) {
            return Err(Error::invalid(
                "this record is persisted to PostgreSQL, which cannot store the character \
                 U+0000 (\\u0000) in a string or key; nothing was written",
            ));
        }
        Ok(())
    }

    /// Whether values written through this handle are checked by [`Self::admit_value`].
    pub fn refuses_nul(&self) -> bool {
        self.refuses_nul
    }

    /// With `ack = "flushed"`, how long a reply waits for the database to confirm a write;
    /// `None` with `ack = "stored"`.
    pub fn confirm_within(&self) -> Option<Duration> {
        self.confirm_within
    }

    /// Sends `message` (a `Persist` or `PersistDeletion`) so that the answer comes once the
    /// batch holding it committed (see [`ConfirmWhenLanded`]). The receiver fails if the
    /// actor stops first.
    pub fn persist_confirmed<M>(
        &self,
        message: M,
    ) -> oneshot::Receiver<std::result::Result<(), PersistenceError>>
    where
        M: Send + 'static,
        PersistenceActor: Handler<ConfirmWhenLanded<M>>,
    {
        let (landed, answer) = oneshot::channel();
        self.addr.do_send(ConfirmWhenLanded { message, landed });
        answer
    }
}

/// The live rules: record id → the `PersistenceActor` its writes go to. Record actors look
/// their route up once and again only when `generation` changes.
#[derive(Default)]
pub struct PersistRoutes {
    routes: RwLock<Vec<(Matcher, PersistenceHandle)>>,
    generation: AtomicU64,
}

impl PersistRoutes {
    /// Adds a route after the existing ones (the first matching rule wins).
    pub fn add(&self, write: Matcher, handle: PersistenceHandle) {
        self.routes
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((write, handle));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Changes whenever a route is added.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The actor persisting `id` with its buffer counter, if a rule covers it.
    pub fn handle(&self, id: &str) -> Option<PersistenceHandle> {
        let routes = self
            .routes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        routes
            .iter()
            .find(|(matcher, _)| matcher.matches(id))
            .map(|(_, handle)| handle.clone())
    }

    /// Whether a write to `id` may be applied: `Ok` when `id` is not persisted, otherwise
    /// its rule's [`PersistenceHandle::admit`]. Record actors keep their handle and ask it
    /// directly.
    pub fn admit(&self, id: &str) -> Result<()> {
        self.handle(id).map_or(Ok(()), |handle| handle.admit(id))
    }

    /// Every persistence actor with its rule as config spells it (`write_pattern "^todo:"`),
    /// so the final flush log says which rule each line is about.
    pub fn named_actors(&self) -> Vec<(String, PersistenceHandle)> {
        let routes = self
            .routes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        routes
            .iter()
            .map(|(matcher, handle)| {
                let rule = match matcher {
                    Matcher::Pattern(re) => format!("write_pattern {:?}", re.as_str()),
                    Matcher::Exact(id) => format!("write_id {id:?}"),
                };
                (rule, handle.clone())
            })
            .collect()
    }
}
