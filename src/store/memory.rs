//! `MemoryStore`: the embedded in-process store for a single instance with no external service.
//!
//! Deleted records keep their tombstone (the last version) for the life of the process: an
//! entry of the id plus a few bytes, so a record created again continues its versions. Each
//! record keeps its recent history (patches) within the limits each write passes.

use super::{
    Change, ChangeSink, Checked, DeleteResult, Expect, History, HistoryLimits, NewVersion, OpId,
    Store, StoreFuture, Stored, WatchToken, WriteResult, ready,
};
use crate::record::{RecordId, Version};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// One record's entry: its state, its recent history and the last operation applied to it.
#[derive(Debug, Clone, Default)]
struct Entry {
    stored: Stored,
    last_op: Option<OpId>,
    history: History,
}

/// Records in a map guarded by a mutex; every call completes at once.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    records: Arc<Mutex<HashMap<RecordId, Entry>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> MutexGuard<'_, HashMap<RecordId, Entry>> {
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
            .get(id)
            .map(|e| e.stored.clone())
            .unwrap_or_default()))
    }

    fn load_with_history(&self, id: &RecordId) -> StoreFuture<(Stored, Vec<Change>)> {
        let map = self.map();
        let Some(entry) = map.get(id) else {
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
        let entry = map.entry(id.clone()).or_default();
        if entry.stored.expect() != expected {
            return ready(Ok(WriteResult::Conflict {
                current: entry.stored.clone(),
            }));
        }
        let mut version = expected.version;
        for new in values {
            version += 1;
            entry.history.record(version, new.patch.as_ref(), history);
            entry.stored = Stored::live(new.value, version);
            entry.last_op = Some(op);
        }
        ready(Ok(WriteResult::Applied { version }))
    }

    fn delete(
        &self,
        id: &RecordId,
        op: OpId,
        if_version: Option<Version>,
    ) -> StoreFuture<DeleteResult> {
        let mut map = self.map();
        let Some(entry) = map.get_mut(id) else {
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
        ready(Ok(DeleteResult::Deleted { version }))
    }

    fn check(&self, id: &RecordId, op: OpId) -> StoreFuture<Checked> {
        let map = self.map();
        let entry = map.get(id).cloned().unwrap_or_default();
        ready(Ok(Checked {
            current: entry.stored,
            last_op: entry.last_op == Some(op),
        }))
    }

    fn restore(&self, records: Vec<(RecordId, Stored)>) -> StoreFuture<usize> {
        let mut map = self.map();
        let mut written = 0;
        for (id, record) in records {
            let entry = map.entry(id).or_default();
            if entry.stored.version < record.version {
                entry.stored = record;
                entry.last_op = None;
                entry.history.clear();
                written += 1;
            }
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
