//! `MemoryStore`: the embedded in-process store for a single instance with no external service.
//!
//! It holds what clients write in this process's memory, so it keeps a budget
//! ([`MemoryLimits`]): a write that would take it past `max_bytes` is refused
//! ([`StoreError::Full`], `ELIMIT` to the writer) and the process never runs out of memory on
//! clients' data. Deleted records keep their tombstone (the last version) so that a record
//! created again continues its versions; the oldest tombstones beyond `max_tombstones` are
//! forgotten (such a record starts again at version 1). Each record keeps its recent history
//! (patches) within the limits each write passes.

use super::{
    Change, ChangeSink, Checked, DeleteResult, Expect, History, HistoryLimits, NewVersion, OpId,
    Store, StoreError, StoreFuture, Stored, WatchToken, WriteResult, ready,
};
use crate::metrics::metrics;
use crate::record::{RecordId, Version};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// What the memory store may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Most bytes of records (values by their in-memory size, history by its serialized
    /// size, a fixed overhead per id) before writes that grow it are refused.
    pub max_bytes: usize,
    /// Most tombstones kept; the oldest beyond it are forgotten.
    pub max_tombstones: usize,
}

impl Default for MemoryLimits {
    /// No budget: for tests and embedders that bound their own data.
    fn default() -> Self {
        MemoryLimits {
            max_bytes: usize::MAX,
            max_tombstones: usize::MAX,
        }
    }
}

/// Half of the memory this process may use: the machine's, or its cgroup's limit when lower
/// (a container). 1 GiB when neither can be read.
pub fn default_memory_budget() -> usize {
    // SAFETY: sysconf only reads system configuration.
    let (pages, page_size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let machine = (pages > 0 && page_size > 0).then(|| pages as usize * page_size as usize);
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok());
    let total = match (machine, cgroup) {
        (Some(m), Some(c)) => m.min(c),
        (m, c) => m.or(c).unwrap_or(2 << 30),
    };
    total / 2
}

/// Bytes counted for every id held, besides the id and its value: the map's slot, the entry,
/// the history's queue.
const ENTRY_OVERHEAD: usize = 192;

/// One record's entry: its state, its recent history and the last operation applied to it.
#[derive(Debug, Clone, Default)]
struct Entry {
    stored: Stored,
    last_op: Option<OpId>,
    history: History,
    /// What this entry counts against the budget.
    counted: usize,
}

impl Entry {
    /// What the entry counts against the budget as it is now.
    fn footprint(&self, id: &RecordId) -> usize {
        let value = self.stored.value.as_deref().map_or(0, value_footprint);
        ENTRY_OVERHEAD + id.as_str().len() + value + self.history.bytes()
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
    /// Sum of the entries' `counted`.
    used: usize,
    /// Deleted records in the order they were deleted, with the version each was deleted at
    /// (an entry written again since is skipped when its turn comes).
    tombstones: VecDeque<(RecordId, Version)>,
    limits: MemoryLimits,
}

impl Records {
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
    ) -> StoreFuture<WriteResult> {
        let mut map = self.map();
        let map = &mut *map;
        let entry = map.entries.entry(id.clone()).or_default();
        if entry.stored.expect() != expected {
            return ready(Ok(WriteResult::Conflict {
                current: entry.stored.clone(),
            }));
        }
        if let Some(refusal) = over_budget(map.used, entry, id, &values, history, map.limits) {
            metrics().store_full_refusals.inc();
            // A refused first write leaves no empty entry behind.
            if entry.stored == Stored::default() {
                map.entries.remove(id);
            }
            return ready(Err(refusal));
        }
        let mut version = expected.version;
        for new in values {
            version += 1;
            entry.history.record(version, new.patch.as_ref(), history);
            entry.stored = Stored::live(new.value, version);
            entry.last_op = Some(op);
        }
        map.recount(id);
        ready(Ok(WriteResult::Applied { version }))
    }

    fn delete(
        &self,
        id: &RecordId,
        op: OpId,
        if_version: Option<Version>,
    ) -> StoreFuture<DeleteResult> {
        let mut map = self.map();
        let Some(entry) = map.entries.get_mut(id) else {
            return ready(Ok(match if_version {
                Some(_) => DeleteResult::Mismatch {
                    current: Stored::default(),
                },
                None => DeleteResult::Absent { version: 0 },
            }));
        };
        let version = entry.stored.version;
        if if_version.is_some_and(|v| !entry.stored.exists() || v != version) {
            return ready(Ok(DeleteResult::Mismatch {
                current: entry.stored.clone(),
            }));
        }
        if entry.stored.value.take().is_none() {
            return ready(Ok(DeleteResult::Absent { version }));
        }
        entry.history.clear();
        entry.last_op = Some(op);
        map.tombstones.push_back((id.clone(), version));
        map.recount(id);
        map.trim_tombstones();
        ready(Ok(DeleteResult::Deleted { version }))
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
        let mut map = self.map();
        let mut written = 0;
        // Restored data is what was already acknowledged: it is counted, never refused.
        for (id, record) in records {
            let entry = map.entries.entry(id.clone()).or_default();
            if entry.stored.version < record.version {
                entry.stored = record;
                entry.last_op = None;
                entry.history.clear();
                written += 1;
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
        ready(Ok(written))
    }

    /// No other instance can change a record here, so there is nothing to deliver: the sink
    /// is dropped at once and the token only exists to be handed back.
    fn watch(&self, _id: &RecordId, _sink: ChangeSink) -> StoreFuture<WatchToken> {
        ready(Ok(WatchToken::next()))
    }

    fn unwatch(&self, _id: &RecordId, _token: WatchToken) {}
}

/// Why a write would take the store past its budget, if it would. A write that does not grow
/// the entry always passes, so a full store can still be shrunk by overwriting.
fn over_budget(
    used: usize,
    entry: &Entry,
    id: &RecordId,
    values: &[NewVersion],
    history: HistoryLimits,
    limits: MemoryLimits,
) -> Option<StoreError> {
    let last = values.last()?;
    let added: usize = values
        .iter()
        .filter_map(|new| new.patch.as_deref())
        .map(crate::record::serialized_len)
        .sum();
    let history_bytes = (entry.history.bytes() + added).min(history.bytes);
    let after = ENTRY_OVERHEAD + id.as_str().len() + value_footprint(&last.value) + history_bytes;
    let grows = after.saturating_sub(entry.counted);
    (grows > 0 && used + grows > limits.max_bytes).then(|| {
        StoreError::Full(format!(
            "the server's memory store is full ({} bytes; [store] max_memory_bytes)",
            limits.max_bytes
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Stored;
    use serde_json::json;

    const HISTORY: HistoryLimits = HistoryLimits {
        versions: 10,
        bytes: 1000,
    };

    fn id(n: usize) -> RecordId {
        RecordId::parse(&format!("r:{n}"), 64).unwrap()
    }

    async fn put(store: &MemoryStore, id: &RecordId, value: Value) -> Result<Version, StoreError> {
        let current = store.load(id).await?;
        let values = vec![NewVersion {
            value: Arc::new(value),
            patch: None,
        }];
        match store
            .write(id, current.expect(), values, OpId::next(), HISTORY)
            .await?
        {
            WriteResult::Applied { version } => Ok(version),
            WriteResult::Conflict { .. } => panic!("no one else writes"),
        }
    }

    #[actix_rt::test]
    async fn writes_past_the_budget_are_refused_and_shrinking_still_works() {
        let store = MemoryStore::with_limits(MemoryLimits {
            max_bytes: 20_000,
            max_tombstones: 10,
        });
        let big = json!("x".repeat(4_000));
        let mut written = 0;
        let refused = loop {
            match put(&store, &id(written), big.clone()).await {
                Ok(_) => written += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(refused, StoreError::Full(_)), "{refused:?}");
        assert_eq!(written, 4);
        // The refused id left nothing behind.
        assert!(!store.map().entries.contains_key(&id(written)));
        // Smaller values fit where bigger ones were; deleting makes room.
        assert_eq!(put(&store, &id(0), json!("small")).await.unwrap(), 2);
        put(&store, &id(written), big.clone()).await.unwrap();
        store.delete(&id(1), OpId::next(), None).await.unwrap();
        put(&store, &id(written + 1), big).await.unwrap();
    }

    #[actix_rt::test]
    async fn the_oldest_tombstones_beyond_the_limit_are_forgotten() {
        let store = MemoryStore::with_limits(MemoryLimits {
            max_bytes: usize::MAX,
            max_tombstones: 2,
        });
        for n in 0..3 {
            put(&store, &id(n), json!(n)).await.unwrap();
            store.delete(&id(n), OpId::next(), None).await.unwrap();
        }
        // r:1 was written again: its old tombstone must not take the new value with it.
        put(&store, &id(1), json!("again")).await.unwrap();
        put(&store, &id(3), json!(3)).await.unwrap();
        store.delete(&id(3), OpId::next(), None).await.unwrap();
        assert_eq!(store.load(&id(0)).await.unwrap(), Stored::default());
        assert_eq!(store.load(&id(1)).await.unwrap().version, 2);
        assert_eq!(store.load(&id(2)).await.unwrap().version, 1);
        assert_eq!(store.load(&id(3)).await.unwrap().version, 1);
        assert_eq!(store.map().tombstones.len(), 2);
    }
}
