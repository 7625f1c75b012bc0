//! What a record actor does for a persisted record besides telling its persistence actor:
//! refusing values the database cannot hold, and holding replies until the database confirms
//! (`[[records.persist]] ack = "flushed"`).
//!
//! Admission: a client's value is checked when it arrives (before any merge: merging values
//! without U+0000 gives none), an update's result when it is computed; refused writes change
//! nothing.
//!
//! Held replies: in one step of the core, a persist effect comes before the replies it covers (`commit`,
//! `delete_applied`). When the record's rule asks for flushed acknowledgements, the actor sends
//! the persist as a `ConfirmWhenLanded` and holds every reply that follows it in the step; one
//! task then waits for the landing, bounded by `ack_timeout_ms`, and sends them in order. The
//! actor itself does not wait: the record's next writes proceed meanwhile and land in the next
//! batch (group commit).
//!
//! What a held success becomes:
//! - the batch committed: the reply as planned;
//! - the database refused the row, did not commit within the deadline, or the persistence
//!   actor stopped: [`Error::NotDurable`] (`EUNKNOWN`): the change is applied in the store and
//!   subscribers have it, but it is not known to be in the database.
//!
//! Refusals (`Err` replies) are sent unchanged: nothing was written for them.

use super::Channels;
use super::queue::{Edit, UpdateFn};
use super::state::Reply;
use crate::actors::persistence::{
    ConfirmWhenLanded, Persist, PersistDeletion, PersistenceActor, PersistenceHandle,
};
use crate::database::PersistenceError;
use crate::error::Error;
use crate::model::RecordId;
use crate::store::Stored;
use actix::Handler;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// [`Effect::Vouch`](super::state::Effect::Vouch): under `ack = "flushed"`, persists `record`
/// (its current state) again so that the replies after it in this step wait for it to be in
/// the database. Harmless when it is already: the
/// database keeps a row at an equal version, and a deletion removes only up to its version.
pub(super) fn confirm_current(
    handle: &PersistenceHandle,
    id: RecordId,
    record: Stored,
    held: &mut Held,
) {
    if handle.confirm_within().is_none() {
        return;
    }
    let version = record.version;
    match record.value {
        Some(value) => persist(handle, Persist { id, version, value }, held),
        None if version > 0 => persist(handle, PersistDeletion { id, version }, held),
        // Never written: nothing to vouch for.
        None => {}
    }
}

/// Refuses a write `handle`'s database could not store (see the module docs); an update is
/// wrapped so that its result is checked when computed.
pub(super) fn admit_change(handle: &PersistenceHandle, change: &mut Edit) -> Result<(), Error> {
    match change {
        Edit::Value { value, .. } => handle.admit_value(value),
        Edit::Update(update) if handle.refuses_nul() => {
            let (inner, handle) = (Arc::clone(update), handle.clone());
            let checked: UpdateFn = Arc::new(move |base| {
                let next = inner(base)?;
                handle.admit_value(&next)?;
                Ok(next)
            });
            *update = checked;
            Ok(())
        }
        Edit::Update(_) => Ok(()),
    }
}

/// Sends `message` (a `Persist` or `PersistDeletion`): plainly under `ack = "stored"`; under
/// `ack = "flushed"` so that the replies after it in this step wait for its landing.
pub(super) fn persist<M>(handle: &PersistenceHandle, message: M, held: &mut Held)
where
    M: actix::Message<Result = ()> + Send + 'static,
    PersistenceActor: Handler<M> + Handler<ConfirmWhenLanded<M>>,
{
    match handle.confirm_within() {
        Some(within) => held.wait_for(handle.persist_confirmed(message), within),
        None => handle.addr.do_send(message),
    }
}

/// The answer of the persistence actor for one confirmed operation.
pub(super) type Landing = oneshot::Receiver<Result<(), PersistenceError>>;

/// The replies of one step that wait for a landing.
#[derive(Default)]
pub(super) struct Held {
    landing: Option<(Landing, Duration)>,
    replies: Vec<Reply<Channels>>,
}

impl Held {
    /// The replies that follow wait for `landing`, at most `within`. A later persist in the same
    /// step replaces an earlier one: its landing implies the earlier one's (the newer state
    /// of the record is what the database holds then).
    pub fn wait_for(&mut self, landing: Landing, within: Duration) {
        self.landing = Some((landing, within));
    }

    /// Holds `reply` if a landing is awaited; otherwise gives it back to be sent now.
    pub fn hold(&mut self, reply: Reply<Channels>) -> Option<Reply<Channels>> {
        if self.landing.is_none() {
            return Some(reply);
        }
        self.replies.push(reply);
        None
    }

    /// Sends the held replies once the landing is known (on the current arbiter, so they go
    /// out even if the record actor stops meanwhile).
    pub fn release(self) {
        let Some((landing, within)) = self.landing else {
            return;
        };
        if self.replies.is_empty() {
            return;
        }
        let replies = self.replies;
        actix::spawn(async move {
            let durable = match tokio::time::timeout(within, landing).await {
                Ok(Ok(Ok(()))) => true,
                Ok(Ok(Err(e))) => {
                    log::warn!("a flushed acknowledgement failed: {e}");
                    false
                }
                Ok(Err(_)) => {
                    log::warn!("the persistence actor stopped before confirming a write");
                    false
                }
                Err(_) => false,
            };
            if !durable {
                crate::metrics::metrics()
                    .persistence_unconfirmed
                    .inc_by(replies.len() as u64);
            }
            for reply in replies {
                if durable { reply } else { not_durable(reply) }.send();
            }
        });
    }
}

/// A success becomes [`Error::NotDurable`]; a refusal stays what it was.
fn not_durable(reply: Reply<Channels>) -> Reply<Channels> {
    match reply {
        Reply::Write(to, Ok(_)) => Reply::Write(to, Err(Error::NotDurable)),
        Reply::Delete(to, Ok(_)) => Reply::Delete(to, Err(Error::NotDurable)),
        refused => refused,
    }
}
