//! Deadlines in the memory store: each entry's own, mirrored in `Records::deadlines` ordered
//! by time so a sweep reads only the records that are due. One lock guards both, so a record
//! is deleted by one sweep only and a deadline moved later is never acted on early.

use super::Records;
use crate::model::RecordId;
use crate::store::{ExpiredBatch, OpId};
use std::time::Duration;
use tokio::time::Instant;

/// The longest life a deadline is given: a larger ttl means "practically never" and must not
/// overflow the clock.
const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The deadline `ttl` from now.
pub(super) fn deadline_after(ttl: Duration) -> Instant {
    Instant::now() + ttl.min(LONGEST)
}

impl Records {
    /// Gives `id`'s entry this deadline (or none) and files it in the index. The caller
    /// recounts the entry.
    pub(super) fn set_deadline(&mut self, id: &RecordId, deadline: Option<Instant>) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        if let Some(old) = entry.deadline.take() {
            self.deadlines.remove(&(old, id.clone()));
        }
        if let Some(new) = deadline {
            entry.deadline = Some(new);
            self.deadlines.insert((new, id.clone()));
        }
    }

    /// Deletes `id`'s live entry as a delete does: tombstone at its version, no history, no
    /// deadline, `op` its last operation. The caller trims the tombstones.
    pub(super) fn tombstone(&mut self, id: &RecordId, op: OpId) {
        self.set_deadline(id, None);
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        if entry.stored.value.take().is_none() {
            return;
        }
        entry.history.clear();
        entry.last_op = Some(op);
        self.tombstones
            .push_back((id.clone(), entry.stored.version));
        self.recount(id);
    }

    /// Deletes up to `max` records whose deadline is at or before `now`, soonest first.
    pub(super) fn expire_due(&mut self, now: Instant, max: usize) -> ExpiredBatch {
        let mut batch = ExpiredBatch::default();
        while let Some((deadline, id)) = self.deadlines.first().cloned() {
            if deadline > now {
                break;
            }
            if batch.deleted.len() == max {
                batch.more = true;
                break;
            }
            let version = self
                .entries
                .get(&id)
                .filter(|e| e.stored.exists())
                .map(|e| e.stored.version);
            // Each expiry is an operation of its own, as a delete is.
            self.tombstone(&id, OpId::next());
            // Only live entries have deadlines; this keeps a stray one from looping.
            self.deadlines.remove(&(deadline, id.clone()));
            if let Some(version) = version {
                batch.deleted.push((id, version));
            }
        }
        self.trim_tombstones();
        batch
    }
}
