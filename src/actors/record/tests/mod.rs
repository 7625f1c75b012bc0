//! The state machine against a scripted store: every store call the core asks for is answered
//! by [`FakeStore`], which can lose answers, fail, or be changed behind the core's back the way
//! another instance would; the test decides which published changes reach the core.
//!
//! This file holds the fake store and the harness; the tests are by topic: `writes` (applied,
//! batched, refused, deleted), `lost_answers` (store calls whose outcome is unknown) and
//! `conflicts` (other instances' changes, gaps, reconnects, a store that lost everything).

use super::state::{Answer, Core, CoreLimits, Effect, Timer, WRITE_BACK_JUMP};
use super::writes::{BatchLimits, Change, QueuedWrite};
use crate::record::{RecordId, Strategy, Version};
use crate::store::{
    Checked, DeleteResult, Expect, HistoryLimits, NewVersion, OpId, RemoteChange, StoreError,
    Stored, WriteResult,
};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod conflicts;
mod lost_answers;
mod writes;

/// What the next write or delete does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// Applied, but the answer is lost (a timeout after Redis ran it).
    AnswerLostAfterApplying,
    /// Not applied, and no answer (a timeout before Redis ran it).
    AnswerLostBeforeApplying,
    /// Refused at once (connection refused).
    Down,
}

/// One record in a store that other instances share.
#[derive(Default)]
struct FakeStore {
    record: Stored,
    last_op: Option<OpId>,
    /// Applied to the next write or delete.
    fault: Option<Fault>,
    /// How many of the next checks fail.
    failing_checks: usize,
    /// How many of the next loads fail.
    failing_loads: usize,
}

impl FakeStore {
    fn lost() -> StoreError {
        StoreError::Indeterminate("scripted timeout".into())
    }

    fn down() -> StoreError {
        StoreError::Unavailable("scripted outage".into())
    }

    fn write(
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

    fn delete(&mut self, op: OpId) -> Result<DeleteResult, StoreError> {
        let fault = self.fault.take();
        match fault {
            Some(Fault::Down) => return Err(Self::down()),
            Some(Fault::AnswerLostBeforeApplying) => return Err(Self::lost()),
            _ => {}
        }
        let version = self.record.version;
        let result = if self.record.value.take().is_some() {
            self.last_op = Some(op);
            DeleteResult::Deleted { version }
        } else {
            DeleteResult::Absent { version }
        };
        match fault {
            Some(Fault::AnswerLostAfterApplying) => Err(Self::lost()),
            _ => Ok(result),
        }
    }

    fn load(&mut self) -> Result<Stored, StoreError> {
        if self.failing_loads > 0 {
            self.failing_loads -= 1;
            return Err(Self::down());
        }
        Ok(self.record.clone())
    }

    fn check(&mut self, op: OpId) -> Result<Checked, StoreError> {
        if self.failing_checks > 0 {
            self.failing_checks -= 1;
            return Err(Self::down());
        }
        Ok(Checked {
            current: self.record.clone(),
            last_op: self.last_op == Some(op),
        })
    }

    fn restore(&mut self, record: Stored) -> Result<usize, StoreError> {
        if self.record.version < record.version {
            self.record = record;
            self.last_op = None;
            Ok(1)
        } else {
            Ok(0)
        }
    }

    /// Another instance writes: returns the change it publishes.
    fn other_writes(&mut self, value: Value) -> RemoteChange {
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
    fn other_deletes(&mut self) -> RemoteChange {
        self.record.value = None;
        self.last_op = Some(OpId(u64::MAX));
        RemoteChange::Deleted {
            version: self.record.version,
        }
    }
}

/// What the core did, other than store calls, in a form tests compare.
#[derive(Debug, PartialEq)]
enum Seen {
    Update(Version, Value),
    Resync(Version, Value),
    Deleted(Version),
    Persist(Version),
    PersistDeletion(Version),
    Reply(u32, String),
}

/// The core, the store it talks to, and everything observed.
struct Harness {
    core: Core<u32>,
    store: FakeStore,
    seen: Vec<Seen>,
    timers: Vec<(Timer, u64)>,
    now: Instant,
}

fn id() -> RecordId {
    RecordId::parse("doc", 64).expect("id")
}

fn limits() -> CoreLimits {
    CoreLimits {
        batch: BatchLimits {
            max_writes: 64,
            max_bytes: 1 << 20,
            max_value_bytes: 1 << 20,
            patches: true,
        },
        max_pending: 100,
        history: HistoryLimits {
            versions: 10,
            bytes: 1 << 20,
        },
    }
}

fn describe(answer: Answer) -> String {
    match answer {
        Answer::Write(Ok(outcome)) => {
            format!("ok v{} changed={}", outcome.version, outcome.changed)
        }
        Answer::Write(Err(e)) | Answer::Delete(Err(e)) => e.code().to_string(),
        Answer::Delete(Ok(Some(version))) => format!("deleted v{version}"),
        Answer::Delete(Ok(None)) => "absent".to_string(),
    }
}

impl Harness {
    /// A core that loaded `record` from a store holding it.
    fn new(record: Stored) -> Self {
        Self::with_limits(record, limits())
    }

    fn with_limits(record: Stored, limits: CoreLimits) -> Self {
        Harness {
            core: Core::new(id(), record.clone(), Vec::new(), limits),
            store: FakeStore {
                record,
                ..FakeStore::default()
            },
            seen: Vec::new(),
            timers: Vec::new(),
            now: Instant::now(),
        }
    }

    /// Carries out effects, answering store calls from the fake store, until none is left.
    fn run(&mut self, effects: Vec<Effect<u32>>) {
        let mut queue: VecDeque<Effect<u32>> = effects.into();
        while let Some(effect) = queue.pop_front() {
            let now = self.now;
            let more = match effect {
                Effect::Load => {
                    let result = self.store.load();
                    self.core.loaded(result)
                }
                Effect::Write {
                    expected,
                    values,
                    op,
                    ..
                } => {
                    let result = self.store.write(expected, values, op);
                    self.core.written(result, now)
                }
                Effect::Delete { op, .. } => {
                    let result = self.store.delete(op);
                    self.core.deleted(result, now)
                }
                Effect::Check { op } => {
                    let result = self.store.check(op);
                    self.core.checked(result, now)
                }
                Effect::WriteBack(record) => {
                    let result = self.store.restore(record);
                    self.core.written_back(result)
                }
                Effect::Timer { timer, epoch, .. } => {
                    self.timers.push((timer, epoch));
                    Vec::new()
                }
                Effect::Update {
                    current, version, ..
                } => {
                    self.seen.push(Seen::Update(version, (*current).clone()));
                    Vec::new()
                }
                Effect::Resync { value, version } => {
                    self.seen.push(Seen::Resync(version, (*value).clone()));
                    Vec::new()
                }
                Effect::Deleted { version } => {
                    self.seen.push(Seen::Deleted(version));
                    Vec::new()
                }
                Effect::Persist { version, .. } => {
                    self.seen.push(Seen::Persist(version));
                    Vec::new()
                }
                Effect::PersistDeletion { version } => {
                    self.seen.push(Seen::PersistDeletion(version));
                    Vec::new()
                }
                Effect::Reply(ticket, answer) => {
                    self.seen.push(Seen::Reply(ticket, describe(answer)));
                    Vec::new()
                }
            };
            queue.extend(more);
        }
    }

    fn write(&mut self, ticket: u32, value: Value, strategy: Strategy) {
        let write = QueuedWrite {
            change: Change::Value {
                value: Arc::new(value),
                strategy,
            },
            queued_at: self.now,
            expected_version: None,
            reply: ticket,
        };
        let effects = self.core.write(write);
        self.run(effects);
    }

    fn delete(&mut self, ticket: u32) {
        let effects = self.core.delete(ticket, None);
        self.run(effects);
    }

    fn deliver(&mut self, change: RemoteChange) {
        let effects = self.core.remote(change);
        self.run(effects);
    }

    /// Fires the most recent timer of this kind; panics if none was asked for.
    fn fire(&mut self, timer: Timer) {
        let at = self
            .timers
            .iter()
            .rposition(|(t, _)| *t == timer)
            .unwrap_or_else(|| panic!("no {timer:?} timer was asked for"));
        let (_, epoch) = self.timers.remove(at);
        let effects = self.core.timer(timer, epoch);
        self.run(effects);
    }

    fn take_seen(&mut self) -> Vec<Seen> {
        std::mem::take(&mut self.seen)
    }
}

fn live(value: Value, version: Version) -> Stored {
    Stored::live(Arc::new(value), version)
}

fn reply(ticket: u32, text: &str) -> Seen {
    Seen::Reply(ticket, text.to_string())
}
