//! `MemoryStore`: the embedded in-process store for a single instance with no external service.
//!
//! It holds what clients write in this process's memory, so it keeps a budget
//! ([`MemoryLimits`]): a write that would take it past `max_bytes` is refused
//! ([`StoreError::Full`], `ELIMIT` to the writer) and the process never runs out of memory on
//! clients' data. Deleted records keep their tombstone (the last version) so that a record
//! created again continues its versions; the oldest tombstones beyond `max_tombstones` are
//! forgotten (such a record starts again at version 1). Each record keeps its recent history
//! (patches) within the limits each write passes.
//!
//! [`Store::watch_all`] sinks are called by the writing thread itself, once its change is
//! applied and the map's lock released (a sink may call back into the store). With no sink
//! registered a change costs one relaxed atomic load.
//!
//! Deadlines (records that expire) are kept per entry and in an index ordered by deadline
//! (`expiry`), read with tokio's clock. An expiry is the one change a record's watchers
//! ([`Store::watch`]) hear of: nothing else changes a record behind its actor here.

mod expiry;
mod limits;
mod sinks;

pub use limits::{MemoryLimits, default_memory_budget};

use super::{
    Change, ChangeSink, Checked, DeleteResult, Expect, ExpiredBatch, FeedSink, History,
    HistoryLimits, NewVersion, OpId, Store, StoreError, StoreFuture, Stored, WatchToken,
    WriteResult, ready,
};
use crate::metrics::metrics;
use crate::model::{Glob, RecordId, Version, Versioned};
use serde_json::Value;
use sinks::{Feed, Watchers};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// Bytes counted for every id held, besides the id and its value: the map's slot, the entry,
/// the history's queue.
const ENTRY_OVERHEAD: usize = 192;

/// Bytes counted for a record's deadline: its slot in the entry and its node in the index.
const DEADLINE_OVERHEAD: usize = 64;

/// One record's entry: its state, its recent history and the last operation applied to it.
#[derive(Debug, Clone, Default)]
struct Entry {
    stored: Stored,
    last_op: Option<OpId>,
    history: History,
    /// When the record expires (only ever set on a live record).
    deadline: Option<Instant>,
    /// What this entry counts against the budget.
    counted: usize,
}

impl Entry {
    /// What the entry counts against the budget as it is now.
    fn footprint(&self, id: &RecordId) -> usize {
        let value = self.stored.value.as_deref().map_or(0, value_footprint);
        let deadline = if self.deadline.is_some() {
            DEADLINE_OVERHEAD
        } else {
            0
        };
        ENTRY_OVERHEAD + id.as_str().len() + value + self.history.bytes() + deadline
    }
}

/// An estimate of the heap a parsed JSON value takes: every node is a 32-byte `Value`, strings
/// and keys their length, object fields a map slot each.
fn value_footprint(value: &Value) -> usize {
    const NODE: usize = 32;
    NODE + match value {
        Value::String(text) => text.len(),
        Value::Array(items) => items.iter().map(value_footprint).sum(),
        Value::Object(fields) => fields
            .iter()
            .map(|(key, field)| 48 + key.len() + value_footprint(field))
            .sum(),
        _ => 0,
    }
}

/// The records and what they count.
#[derive(Debug, Default)]
struct Records {
    entries: HashMap<RecordId, Entry>,
    /// The keys of `entries`, in order: a listing by glob reads only the ids under the glob's
    /// literal prefix (`item:42:` for `item:42:*`), not the whole store. Changed only when an
    /// entry comes or goes, so a write to an existing record does not touch it.
    ids: BTreeSet<RecordId>,
    /// Sum of the entries' `counted`.
    used: usize,
    /// Deleted records in the order they were deleted, with the version each was deleted at
    /// (an entry written again since is skipped when its turn comes).
    tombstones: VecDeque<(RecordId, Version)>,
    /// Every entry's deadline with its id, soonest first: what [`Store::expire_due`] reads.
    deadlines: BTreeSet<(Instant, RecordId)>,
    limits: MemoryLimits,
}

impl Records {
    /// `id`'s entry in `entries`, made (empty, and filed in `ids`) if there is none. Takes
    /// the two fields rather than `self`, so the caller may read the others meanwhile.
    fn entry<'a>(
        entries: &'a mut HashMap<RecordId, Entry>,
        ids: &mut BTreeSet<RecordId>,
        id: &RecordId,
    ) -> &'a mut Entry {
        match entries.entry(id.clone()) {
            std::collections::hash_map::Entry::Occupied(held) => held.into_mut(),
            std::collections::hash_map::Entry::Vacant(new) => {
                ids.insert(id.clone());
                new.insert(Entry::default())
            }
        }
    }

    /// The ids that can match `glob`: those starting with its literal prefix, in order.
    fn under<'a>(&'a self, glob: &'a Glob) -> impl Iterator<Item = &'a RecordId> + 'a {
        let prefix = glob.literal_prefix();
        self.ids
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |id| id.as_str().starts_with(prefix))
    }

    /// Sets what `id`'s entry counts to what it holds now.
    fn recount(&mut self, id: &RecordId) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        let now = entry.footprint(id);
        self.used = self.used - entry.counted + now;
        entry.counted = now;
        metrics().store_memory_bytes.set(self.used as i64);
    }

    /// Forgets the oldest tombstones beyond the limit.
    fn trim_tombstones(&mut self) {
        while self.tombstones.len() > self.limits.max_tombstones {
            let Some((id, version)) = self.tombstones.pop_front() else {
                break;
            };
            let still_that_tombstone = self
                .entries
                .get(&id)
                .is_some_and(|e| !e.stored.exists() && e.stored.version == version);
            if still_that_tombstone && let Some(entry) = self.entries.remove(&id) {
                self.ids.remove(&id);
                self.used -= entry.counted;
            }
        }
        metrics().store_memory_bytes.set(self.used as i64);
    }
}

/// Records in a map guarded by a mutex; every call completes at once.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    records: Arc<Mutex<Records>>,
    feed: Arc<Feed>,
    watchers: Arc<Watchers>,
}

impl MemoryStore {
    /// An empty store without a budget.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that keeps within `limits`.
    pub fn with_limits(limits: MemoryLimits) -> Self {
        let store = Self::default();
        store.map().limits = limits;
        store
    }

    fn map(&self) -> MutexGuard<'_, Records> {
        // Every critical section below leaves the map consistent before it can panic,
        // so a poisoned lock still guards valid data.
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store for MemoryStore {
    fn load(&self, id: &RecordId) -> StoreFuture<Stored> {
        ready(Ok(self
            .map()
            .entries
            .get(id)
            .map(|e| e.stored.clone())
            .unwrap_or_default()))
    }

    fn load_with_history(&self, id: &RecordId) -> StoreFuture<(Stored, Vec<Change>)> {
        let map = self.map();
        let Some(entry) = map.entries.get(id) else {
            return ready(Ok((Stored::default(), Vec::new())));
        };
        ready(Ok((entry.stored.clone(), entry.history.all())))
    }

    fn write(
        &self,
        id: &RecordId,
        expected: Expect,
        values: Vec<NewVersion>,
        op: OpId,
        history: HistoryLimits,
        ttl: Option<Duration>,
    ) -> StoreFuture<WriteResult> {
        let written = self.apply_write(id, expected, values, op, history, ttl);
        // A write of no values changes nothing.
        if let Ok(WriteResult::Applied { version }) = written
            && version != expected.version
        {
            self.feed.changed([id]);
        }
        ready(written)
    }

    fn delete(
        &self,
        id: &RecordId,
        op: OpId,
        if_version: Option<Version>,
    ) -> StoreFuture<DeleteResult> {
        let deleted = self.apply_delete(id, op, if_version);
        if matches!(deleted, DeleteResult::Deleted { .. }) {
            self.feed.changed([id]);
        }
        ready(Ok(deleted))
    }

    fn set_expiry(&self, id: &RecordId, ttl: Option<Duration>) -> StoreFuture<bool> {
        let mut map = self.map();
        if !map.entries.get(id).is_some_and(|e| e.stored.exists()) {
            return ready(Ok(false));
        }
        // A deadline is a few bytes, counted but never refused: shortening a record's life
        // must work in a full store too.
        map.set_deadline(id, ttl.map(expiry::deadline_after));
        map.recount(id);
        ready(Ok(true))
    }

    fn expire_due(&self, max: usize) -> StoreFuture<ExpiredBatch> {
        let batch = self.map().expire_due(Instant::now(), max);
        self.watchers.deleted(&batch.deleted);
        self.feed.changed(batch.deleted.iter().map(|(id, _)| id));
        ready(Ok(batch))
    }

    fn check(&self, id: &RecordId, op: OpId) -> StoreFuture<Checked> {
        let map = self.map();
        let entry = map.entries.get(id).cloned().unwrap_or_default();
        ready(Ok(Checked {
            current: entry.stored,
            last_op: entry.last_op == Some(op),
        }))
    }

    fn restore(&self, records: Vec<(RecordId, Stored)>) -> StoreFuture<usize> {
        let written = self.apply_restore(records);
        let mut seen = std::collections::HashSet::new();
        self.feed
            .changed(written.iter().filter(|id| seen.insert(*id)));
        ready(Ok(written.len()))
    }

    /// No other instance can change a record here: the sink only ever hears of the record's
    /// expiry (see the module docs).
    fn watch(&self, id: &RecordId, sink: ChangeSink) -> StoreFuture<WatchToken> {
        ready(Ok(self.watchers.add(id, sink)))
    }

    fn unwatch(&self, id: &RecordId, token: WatchToken) {
        self.watchers.remove(id, token);
    }

    /// Walks every entry under the lock (writes wait meanwhile); ids are checked against the
    /// glob's literal prefix first, so non-matching ids cost one comparison.
    fn list_matching(&self, glob: &Glob, max: usize) -> StoreFuture<Vec<(RecordId, Versioned)>> {
        let map = self.map();
        let mut found = Vec::new();
        for id in map.under(glob) {
            if !glob.matches(id.as_str()) {
                continue;
            }
            let Some(record) = map.entries.get(id).and_then(|e| e.stored.versioned()) else {
                continue;
            };
            if found.len() == max {
                return ready(Err(StoreError::TooMany {
                    max,
                    pattern: glob.as_str().to_string(),
                }));
            }
            found.push((id.clone(), record));
        }
        ready(Ok(found))
    }

    fn watch_all(&self, sink: FeedSink) -> StoreFuture<WatchToken> {
        ready(Ok(self.feed.add(sink)))
    }

    fn unwatch_all(&self, token: WatchToken) {
        self.feed.remove(token);
    }
}

/// The changes themselves, under the map's lock; the [`Store`] methods above report them to
/// the feed once the lock is released.
impl MemoryStore {
    fn apply_write(
        &self,
        id: &RecordId,
        expected: Expect,
        values: Vec<NewVersion>,
        op: OpId,
        history: HistoryLimits,
        ttl: Option<Duration>,
    ) -> Result<WriteResult, StoreError> {
        let mut map = self.map();
        let map = &mut *map;
        let entry = Records::entry(&mut map.entries, &mut map.ids, id);
        if entry.stored.expect() != expected {
            return Ok(WriteResult::Conflict {
                current: entry.stored.clone(),
            });
        }
        // A write of no values changes nothing, its deadline included.
        let ttl = ttl.filter(|_| !values.is_empty());
        let dated = ttl.is_some() || entry.deadline.is_some();
        if let Some(refusal) = over_budget(map.used, entry, id, &values, history, dated, map.limits)
        {
            metrics().store_full_refusals.inc();
            // A refused first write leaves no empty entry behind.
            if entry.stored == Stored::default() {
                map.entries.remove(id);
                map.ids.remove(id);
            }
            return Err(refusal);
        }
        let mut version = expected.version;
        for new in values {
            version += 1;
            entry.history.record(version, new.patch.as_ref(), history);
            entry.stored = Stored::live(new.value, version);
            entry.last_op = Some(op);
        }
        if let Some(ttl) = ttl {
            map.set_deadline(id, Some(expiry::deadline_after(ttl)));
        }
        map.recount(id);
        Ok(WriteResult::Applied { version })
    }

    fn apply_delete(&self, id: &RecordId, op: OpId, if_version: Option<Version>) -> DeleteResult {
        let mut map = self.map();
        let Some(entry) = map.entries.get(id) else {
            return match if_version {
                Some(_) => DeleteResult::Mismatch {
                    current: Stored::default(),
                },
                None => DeleteResult::Absent { version: 0 },
            };
        };
        let version = entry.stored.version;
        if if_version.is_some_and(|v| !entry.stored.exists() || v != version) {
            return DeleteResult::Mismatch {
                current: entry.stored.clone(),
            };
        }
        if !entry.stored.exists() {
            return DeleteResult::Absent { version };
        }
        map.tombstone(id, op);
        map.trim_tombstones();
        DeleteResult::Deleted { version }
    }

    /// Returns the ids written (an id given twice can be written twice).
    fn apply_restore(&self, records: Vec<(RecordId, Stored)>) -> Vec<RecordId> {
        let mut map = self.map();
        let map = &mut *map;
        let mut written = Vec::new();
        // Restored data is what was already acknowledged: it is counted, never refused.
        for (id, record) in records {
            let entry = Records::entry(&mut map.entries, &mut map.ids, &id);
            if entry.stored.version < record.version {
                // The last operation stays what it was (as on Redis): a restore is not an
                // operation, and `check` answering for an op that was applied stays true.
                let deleted = !record.exists();
                entry.stored = record;
                entry.history.clear();
                written.push(id.clone());
                // A restored tombstone is a deletion: the deadline goes with the record.
                if deleted {
                    map.set_deadline(&id, None);
                }
            }
            map.recount(&id);
        }
        if map.used > map.limits.max_bytes {
            log::warn!(
                "the restored records take {} bytes of the memory store's {}: writes that grow \
                 it are refused until records are deleted ([store] max_memory_bytes)",
                map.used,
                map.limits.max_bytes
            );
        }
        written
    }
}

/// Why a write would take the store past its budget, if it would. A write that does not grow
/// the entry always passes, so a full store can still be shrunk by overwriting.
fn over_budget(
    used: usize,
    entry: &Entry,
    id: &RecordId,
    values: &[NewVersion],
    history: HistoryLimits,
    dated: bool,
    limits: MemoryLimits,
) -> Option<StoreError> {
    let last = values.last()?;
    let added: usize = values
        .iter()
        .filter_map(|new| new.patch.as_deref())
        .map(crate::model::serialized_len)
        .sum();
    let history_bytes = (entry.history.bytes() + added).min(history.bytes);
    let deadline = if dated { DEADLINE_OVERHEAD } else { 0 };
    let after = ENTRY_OVERHEAD
        + id.as_str().len()
        + value_footprint(&last.value)
        + history_bytes
        + deadline;
    let grows = after.saturating_sub(entry.counted);
    (grows > 0 && used + grows > limits.max_bytes).then(|| {
        StoreError::Full(format!(
            "the server's memory store is full ({} bytes; [store] max_memory_bytes)",
            limits.max_bytes
        ))
    })
}

#[cfg(test)]
mod tests;
