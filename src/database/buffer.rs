//! The write buffer of `PersistenceActor`: the newest pending operation of each record.
//!
//! Pure code, so the ordering rules are unit-tested without a runtime.
//!
//! Ordering rules (what "newest" means):
//! - Within one life of a record, a higher version wins; a lower or equal one is stale and
//!   ignored. That holds for incoming operations and for a failed batch put back under
//!   operations that arrived while it was in flight.
//! - A deletion ends a life. A `persist` that follows a buffered deletion starts a new life:
//!   it is kept whatever its version (the re-created v1 is not "older" than the deleted v5) and
//!   is marked `replaces_deleted`, so the adapter replaces the old row instead of ignoring v1.
//! - A deletion whose version is below the buffered upsert's is stale and ignored.
//! - Operations arrive in order from the one `RecordActor` of a record; the rules only have to
//!   keep a late duplicate or a put-back batch from going backwards.

use super::{PersistedDeletion, PersistedRecord};
use crate::model::{RecordId, Version};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// The newest pending operation of one record.
#[derive(Debug, Clone, PartialEq)]
pub enum PendingOp {
    /// Write this value at this version.
    Upsert {
        /// The version to store.
        version: Version,
        /// The value to store (serialized at flush time, only if still the newest).
        value: Arc<Value>,
        /// A deletion of this record precedes the value and has not reached the database.
        replaces_deleted: bool,
    },
    /// Remove the row; `version` is the last version the record had.
    Delete {
        /// The version the record had when it was deleted.
        version: Version,
    },
}

impl PendingOp {
    /// Combines an older operation with a newer one (in arrival order) into the one to keep.
    fn absorb(older: PendingOp, newer: PendingOp) -> PendingOp {
        use PendingOp::{Delete, Upsert};
        match (older, newer) {
            // Only a put-back can bring this: the newer entry already carries its own deletion.
            (
                _,
                newer @ Upsert {
                    replaces_deleted: true,
                    ..
                },
            ) => newer,
            (
                Upsert {
                    version: old,
                    value,
                    replaces_deleted,
                },
                Upsert {
                    version: new,
                    value: new_value,
                    ..
                },
            ) => {
                if new > old {
                    Upsert {
                        version: new,
                        value: new_value,
                        replaces_deleted,
                    }
                } else {
                    Upsert {
                        version: old,
                        value,
                        replaces_deleted,
                    }
                }
            }
            (Delete { .. }, Upsert { version, value, .. }) => Upsert {
                version,
                value,
                replaces_deleted: true,
            },
            (older @ Upsert { version: old, .. }, Delete { version: deleted }) => {
                if deleted >= old {
                    Delete { version: deleted }
                } else {
                    older
                }
            }
            (Delete { version: a }, Delete { version: b }) => Delete { version: a.max(b) },
        }
    }
}

/// Pending operations keyed by record id. Its size is bounded by the number of distinct
/// records written since the last successful flush, never by the number of writes.
#[derive(Debug, Default)]
pub struct WriteBuffer {
    entries: HashMap<RecordId, PendingOp>,
}

impl WriteBuffer {
    /// Buffers a new value of `id`.
    pub fn persist(&mut self, id: RecordId, version: Version, value: Arc<Value>) {
        self.push(
            id,
            PendingOp::Upsert {
                version,
                value,
                replaces_deleted: false,
            },
        );
    }

    /// Buffers the deletion of `id`, which was at `version`.
    pub fn delete(&mut self, id: RecordId, version: Version) {
        self.push(id, PendingOp::Delete { version });
    }

    fn push(&mut self, id: RecordId, op: PendingOp) {
        let op = match self.entries.remove(&id) {
            Some(older) => PendingOp::absorb(older, op),
            None => op,
        };
        self.entries.insert(id, op);
    }

    /// How many records have a pending operation.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The ids with a pending operation.
    pub fn ids(&self) -> impl Iterator<Item = &RecordId> {
        self.entries.keys()
    }

    /// The pending operation of `id`.
    #[cfg(test)]
    pub fn get(&self, id: &RecordId) -> Option<&PendingOp> {
        self.entries.get(id)
    }

    /// Takes everything for a flush; the buffer is empty afterwards.
    pub fn take(&mut self) -> Vec<(RecordId, PendingOp)> {
        self.entries.drain().collect()
    }

    /// Puts back operations of a failed flush. Whatever was buffered meanwhile is newer and is
    /// applied on top of them, so nothing goes backwards.
    pub fn put_back(&mut self, failed: Vec<(RecordId, PendingOp)>) {
        for (id, older) in failed {
            let op = match self.entries.remove(&id) {
                Some(newer) => PendingOp::absorb(older, newer),
                None => older,
            };
            self.entries.insert(id, op);
        }
    }
}

/// Rows ready for `store_batch`, and the deletions for `delete_batch`, from taken operations.
///
/// A value that cannot be serialized is logged and left out (a `serde_json::Value` always
/// serializes, so this does not happen in practice).
pub fn to_rows(ops: &[(RecordId, PendingOp)]) -> (Vec<PersistedRecord>, Vec<PersistedDeletion>) {
    let mut upserts = Vec::new();
    let mut deletions = Vec::new();
    for (id, op) in ops {
        match op {
            PendingOp::Upsert {
                version,
                value,
                replaces_deleted,
            } => match serde_json::to_string(&**value) {
                Ok(json) => upserts.push(PersistedRecord {
                    id: id.as_str().to_owned(),
                    version: *version,
                    value_json: Arc::from(json),
                    replaces_deleted: *replaces_deleted,
                }),
                Err(e) => log::error!("cannot serialize record {id} for persistence: {e}"),
            },
            PendingOp::Delete { version } => deletions.push(PersistedDeletion {
                id: id.as_str().to_owned(),
                version: *version,
            }),
        }
    }
    (upserts, deletions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(s: &str) -> RecordId {
        RecordId::parse(s, 64).expect("valid id")
    }

    fn upsert(version: Version, v: i64, replaces_deleted: bool) -> PendingOp {
        PendingOp::Upsert {
            version,
            value: Arc::new(json!(v)),
            replaces_deleted,
        }
    }

    #[test]
    fn newer_version_wins_never_the_reverse() {
        let mut b = WriteBuffer::default();
        b.persist(id("a"), 2, Arc::new(json!(2)));
        b.persist(id("a"), 3, Arc::new(json!(3)));
        b.persist(id("a"), 1, Arc::new(json!(1)));
        assert_eq!(b.get(&id("a")), Some(&upsert(3, 3, false)));
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn recreation_after_deletion_is_kept_and_marked() {
        let mut b = WriteBuffer::default();
        b.persist(id("a"), 5, Arc::new(json!(5)));
        b.delete(id("a"), 5);
        assert_eq!(b.get(&id("a")), Some(&PendingOp::Delete { version: 5 }));
        b.persist(id("a"), 1, Arc::new(json!(10)));
        assert_eq!(b.get(&id("a")), Some(&upsert(1, 10, true)));
        b.persist(id("a"), 2, Arc::new(json!(20)));
        assert_eq!(b.get(&id("a")), Some(&upsert(2, 20, true)));
    }

    #[test]
    fn stale_deletion_is_ignored() {
        let mut b = WriteBuffer::default();
        b.persist(id("a"), 7, Arc::new(json!(7)));
        b.delete(id("a"), 5);
        assert_eq!(b.get(&id("a")), Some(&upsert(7, 7, false)));
    }

    #[test]
    fn put_back_never_replaces_newer() {
        let mut b = WriteBuffer::default();
        b.persist(id("a"), 3, Arc::new(json!(3)));
        b.persist(id("b"), 1, Arc::new(json!(1)));
        let failed = b.take();
        b.persist(id("a"), 4, Arc::new(json!(4)));
        b.put_back(failed);
        assert_eq!(b.get(&id("a")), Some(&upsert(4, 4, false)));
        assert_eq!(b.get(&id("b")), Some(&upsert(1, 1, false)));
    }

    #[test]
    fn put_back_deletion_under_recreation_marks_it() {
        let mut b = WriteBuffer::default();
        b.delete(id("a"), 5);
        let failed = b.take();
        // Re-created while the deletion was in flight: the buffer did not see the deletion.
        b.persist(id("a"), 1, Arc::new(json!(1)));
        b.put_back(failed);
        assert_eq!(b.get(&id("a")), Some(&upsert(1, 1, true)));
    }

    #[test]
    fn put_back_of_recreation_keeps_the_mark() {
        let mut b = WriteBuffer::default();
        b.delete(id("a"), 5);
        b.persist(id("a"), 1, Arc::new(json!(1)));
        let failed = b.take();
        b.persist(id("a"), 2, Arc::new(json!(2)));
        b.put_back(failed);
        assert_eq!(b.get(&id("a")), Some(&upsert(2, 2, true)));
    }

    #[test]
    fn put_back_under_deletion_and_recreation_keeps_the_new_life() {
        let mut b = WriteBuffer::default();
        b.persist(id("a"), 5, Arc::new(json!(5)));
        let failed = b.take();
        b.delete(id("a"), 5);
        b.persist(id("a"), 1, Arc::new(json!(1)));
        b.put_back(failed);
        assert_eq!(b.get(&id("a")), Some(&upsert(1, 1, true)));
    }

    #[test]
    fn put_back_under_deletion_stays_deleted() {
        let mut b = WriteBuffer::default();
        b.persist(id("a"), 5, Arc::new(json!(5)));
        let failed = b.take();
        b.delete(id("a"), 5);
        b.put_back(failed);
        assert_eq!(b.get(&id("a")), Some(&PendingOp::Delete { version: 5 }));
    }

    #[test]
    fn to_rows_splits_kinds() {
        let mut b = WriteBuffer::default();
        b.persist(id("a"), 1, Arc::new(json!({"x": 1})));
        b.delete(id("b"), 2);
        let ops = b.take();
        let (upserts, deletions) = to_rows(&ops);
        assert_eq!(upserts.len(), 1);
        assert_eq!(&*upserts[0].value_json, r#"{"x":1}"#);
        assert_eq!(
            deletions,
            vec![PersistedDeletion {
                id: "b".to_owned(),
                version: 2
            }]
        );
    }
}
