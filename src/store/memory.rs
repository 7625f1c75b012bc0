//! `MemoryStore`: the embedded in-process store for a single instance with no external service.

use super::{ChangeSink, Store, StoreFuture, WatchToken, WriteResult, ready};
use crate::record::{RecordId, Version, Versioned};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Records in a map guarded by a mutex; every call completes at once.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    records: Arc<Mutex<HashMap<RecordId, Versioned>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> MutexGuard<'_, HashMap<RecordId, Versioned>> {
        // Every critical section below leaves the map consistent before it can panic,
        // so a poisoned lock still guards valid data.
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store for MemoryStore {
    fn load(&self, id: &RecordId) -> StoreFuture<Option<Versioned>> {
        ready(Ok(self.map().get(id).cloned()))
    }

    fn write(
        &self,
        id: &RecordId,
        expected: Version,
        values: Vec<Arc<Value>>,
    ) -> StoreFuture<WriteResult> {
        let mut map = self.map();
        let current = map.get(id).map_or(0, |r| r.version);
        if current != expected {
            return ready(Ok(WriteResult::Conflict {
                current: map.get(id).cloned(),
            }));
        }
        let version = expected + values.len() as Version;
        if let Some(value) = values.into_iter().last() {
            map.insert(id.clone(), Versioned { value, version });
        }
        ready(Ok(WriteResult::Applied { version }))
    }

    fn delete(&self, id: &RecordId) -> StoreFuture<Option<Version>> {
        ready(Ok(self.map().remove(id).map(|r| r.version)))
    }

    fn restore(&self, records: Vec<(RecordId, Versioned)>) -> StoreFuture<usize> {
        let mut map = self.map();
        let mut written = 0;
        for (id, record) in records {
            let newer_exists = map.get(&id).is_some_and(|r| r.version >= record.version);
            if !newer_exists {
                map.insert(id, record);
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
