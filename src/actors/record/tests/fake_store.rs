//! [`FakeStore`]: one record in a store that other instances share, scripted by the test
//! (lost answers, outages, changes behind the core's back). Held to the real stores: it runs
//! the record scenario the memory store, Redis and Redis Cluster run (`tests/common/
//! record_scenario.rs`) and must log the same outcomes as the memory store.

use crate::model::{Glob, RecordId, Version, Versioned};
use crate::store::{
    Change, ChangeSink, Checked, DeleteResult, Expect, ExpiredBatch, FeedSink, HistoryLimits,
    NewVersion, OpId, RemoteChange, Store, StoreError, StoreFuture, Stored, WatchToken,
    WriteResult, ready,
};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// What the next write or delete does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Fault {
    /// Applied, but the answer is lost (a timeout after Redis ran it).
    AnswerLostAfterApplying,
    /// Not applied, and no answer (a timeout before Redis ran it).
    AnswerLostBeforeApplying,
    /// Refused at once (connection refused).
    Down,
}

/// One record in a store that other instances share.
#[derive(Default)]
pub(super) struct FakeStore {
    pub(super) record: Stored,
    pub(super) last_op: Option<OpId>,
    /// Applied to the next write or delete.
    pub(super) fault: Option<Fault>,
    /// How many of the next checks fail.
    pub(super) failing_checks: usize,
    /// How many of the next loads fail.
    pub(super) failing_loads: usize,
    /// The record's deadline, with the id it was set under (the fake has one record, any id
    /// names it; an expiry reports the id its deadline came with).
    pub(super) deadline: Option<(RecordId, Instant)>,
}

impl FakeStore {
    fn lost() -> StoreError {
        StoreError::Indeterminate("scripted timeout".into())
    }

    fn down() -> StoreError {
        StoreError::Unavailable("scripted outage".into())
    }

    pub(super) fn write(
        &mut self,
        expected: Expect,
        values: Vec<NewVersion>,
        op: OpId,
    ) -> Result<WriteResult, StoreError> {
        let fault = self.fault.take();
        match fault {
            Some(Fault::Down) => return Err(Self::down()),
            Some(Fault::AnswerLostBeforeApplying) => return Err(Self::lost()),
            _ => {}
        }
        if self.record.expect() != expected {
            return Ok(WriteResult::Conflict {
                current: self.record.clone(),
            });
        }
        let version = expected.version + values.len() as Version;
        if let Some(last) = values.last() {
            self.record = Stored::live(Arc::clone(&last.value), version);
            self.last_op = Some(op);
        }
        match fault {
            Some(Fault::AnswerLostAfterApplying) => Err(Self::lost()),
            _ => Ok(WriteResult::Applied { version }),
        }
    }

    pub(super) fn delete(
        &mut self,
        op: OpId,
        if_version: Option<Version>,
    ) -> Result<DeleteResult, StoreError> {
        let fault = self.fault.take();
        match fault {
            Some(Fault::Down) => return Err(Self::down()),
            Some(Fault::AnswerLostBeforeApplying) => return Err(Self::lost()),
            _ => {}
        }
        let version = self.record.version;
        if let Some(wanted) = if_version
            && !(self.record.exists() && version == wanted)
        {
            return Ok(DeleteResult::Mismatch {
                current: self.record.clone(),
            });
        }
        let result = if self.record.value.take().is_some() {
            self.last_op = Some(op);
            DeleteResult::Deleted { version }
        } else {
            DeleteResult::Absent { version }
        };
        self.deadline = None;
        match fault {
            Some(Fault::AnswerLostAfterApplying) => Err(Self::lost()),
            _ => Ok(result),
        }
    }

    /// Sets or clears the live record's deadline.
    pub(super) fn set_expiry(&mut self, id: &RecordId, ttl: Option<Duration>) -> bool {
        if !self.record.exists() {
            return false;
        }
        self.deadline = ttl.map(|ttl| (id.clone(), Instant::now() + ttl));
        true
    }

    /// Deletes the record if its deadline has passed.
    pub(super) fn expire_due(&mut self, max: usize) -> ExpiredBatch {
        let mut batch = ExpiredBatch::default();
        let due = self
            .deadline
            .as_ref()
            .filter(|(_, at)| *at <= Instant::now());
        if let Some((id, _)) = due.cloned() {
            if max == 0 {
                batch.more = true;
            } else if self.record.value.take().is_some() {
                self.last_op = Some(OpId::next());
                self.deadline = None;
                batch.deleted.push((id, self.record.version));
            }
        }
        batch
    }

    pub(super) fn load(&mut self) -> Result<Stored, StoreError> {
        if self.failing_loads > 0 {
            self.failing_loads -= 1;
            return Err(Self::down());
        }
        Ok(self.record.clone())
    }

    pub(super) fn check(&mut self, op: OpId) -> Result<Checked, StoreError> {
        if self.failing_checks > 0 {
            self.failing_checks -= 1;
            return Err(Self::down());
        }
        Ok(Checked {
            current: self.record.clone(),
            last_op: self.last_op == Some(op),
        })
    }

    pub(super) fn restore(&mut self, record: Stored) -> Result<usize, StoreError> {
        if self.record.version < record.version {
            if !record.exists() {
                self.deadline = None;
            }
            // As the real stores: a restore is not an operation and leaves the last one.
            self.record = record;
            Ok(1)
        } else {
            Ok(0)
        }
    }

    /// Another instance writes: returns the change it publishes.
    pub(super) fn other_writes(&mut self, value: Value) -> RemoteChange {
        let value = Arc::new(value);
        self.record = Stored::live(Arc::clone(&value), self.record.version + 1);
        self.last_op = Some(OpId(u64::MAX));
        RemoteChange::Updated {
            version: self.record.version,
            value,
            patch: None,
        }
    }

    /// Another instance deletes: returns the change it publishes.
    pub(super) fn other_deletes(&mut self) -> RemoteChange {
        self.record.value = None;
        self.last_op = Some(OpId(u64::MAX));
        RemoteChange::Deleted {
            version: self.record.version,
        }
    }
}

/// The fake behind the [`Store`] trait, for the shared scenario: one record (any id names it),
/// no watching or listing.
pub(super) struct Shared(pub(super) Mutex<FakeStore>);

impl Shared {
    fn with<T: Send + 'static>(
        &self,
        call: impl FnOnce(&mut FakeStore) -> Result<T, StoreError>,
    ) -> StoreFuture<T> {
        ready(call(&mut self.0.lock().expect("fake store")))
    }
}

fn not_in_the_fake<T: Send + 'static>() -> StoreFuture<T> {
    ready(Err(StoreError::Unavailable("not in the fake store".into())))
}

impl Store for Shared {
    fn load(&self, _: &RecordId) -> StoreFuture<Stored> {
        self.with(FakeStore::load)
    }

    fn load_with_history(&self, _: &RecordId) -> StoreFuture<(Stored, Vec<Change>)> {
        self.with(|fake| fake.load().map(|record| (record, Vec::new())))
    }

    fn write(
        &self,
        id: &RecordId,
        expected: Expect,
        values: Vec<NewVersion>,
        op: OpId,
        _: HistoryLimits,
        ttl: Option<Duration>,
    ) -> StoreFuture<WriteResult> {
        let id = id.clone();
        self.with(move |fake| {
            let before = fake.record.version;
            let result = fake.write(expected, values, op);
            // Applied with values (also when the answer is then lost): the version moved.
            if fake.record.version != before && ttl.is_some() {
                fake.set_expiry(&id, ttl);
            }
            result
        })
    }

    fn set_expiry(&self, id: &RecordId, ttl: Option<Duration>) -> StoreFuture<bool> {
        let id = id.clone();
        self.with(move |fake| Ok(fake.set_expiry(&id, ttl)))
    }

    fn expire_due(&self, max: usize) -> StoreFuture<ExpiredBatch> {
        self.with(move |fake| Ok(fake.expire_due(max)))
    }

    fn delete(
        &self,
        _: &RecordId,
        op: OpId,
        if_version: Option<Version>,
    ) -> StoreFuture<DeleteResult> {
        self.with(|fake| fake.delete(op, if_version))
    }

    fn check(&self, _: &RecordId, op: OpId) -> StoreFuture<Checked> {
        self.with(|fake| fake.check(op))
    }

    fn restore(&self, records: Vec<(RecordId, Stored)>) -> StoreFuture<usize> {
        self.with(|fake| {
            let mut written = 0;
            for (_, record) in records {
                written += fake.restore(record)?;
            }
            Ok(written)
        })
    }

    /// Accepted; the fake never publishes (other instances' changes are the harness's).
    fn watch(&self, _: &RecordId, _: ChangeSink) -> StoreFuture<WatchToken> {
        ready(Ok(WatchToken::next()))
    }

    fn unwatch(&self, _: &RecordId, _: WatchToken) {}

    fn list_matching(&self, _: &Glob, _: usize) -> StoreFuture<Vec<(RecordId, Versioned)>> {
        not_in_the_fake()
    }

    fn watch_all(&self, _: FeedSink) -> StoreFuture<WatchToken> {
        not_in_the_fake()
    }

    fn unwatch_all(&self, _: WatchToken) {}
}

include!("../../../../tests/common/record_scenario.rs");

#[actix_rt::test]
async fn the_fake_store_answers_like_the_memory_store() {
    let id = RecordId::parse("scenario", 64).expect("id");
    let fake = record_scenario(&Shared(Mutex::new(FakeStore::default())), &id).await;
    let memory = record_scenario(&crate::store::MemoryStore::new(), &id).await;
    for (step, (fake, memory)) in fake.iter().zip(&memory).enumerate() {
        assert_eq!(fake, memory, "step {step}");
    }
    assert_eq!(fake.len(), memory.len());
}
