//! The state machine against a scripted store: every store call the core asks for is answered
//! by [`FakeStore`], which can lose answers, fail, or be changed behind the core's back the way
//! another instance would; the test decides which published changes reach the core.
//!
//! This file holds the fake store and the harness; the tests are by topic: `writes` (applied,
//! batched, refused, deleted), `lost_answers` (store calls whose outcome is unknown) and
//! `conflicts` (other instances' changes, gaps, reconnects, a store that lost everything).

use super::queue::{BatchLimits, Edit, QueuedWrite, Replies};
use super::state::{Core, CoreLimits, Deadlines, Effect, Reply, Timer, WRITE_BACK_JUMP};
use crate::metrics::Outcome as Counted;
use crate::model::{RecordId, Strategy, Version};
use crate::store::{HistoryLimits, RemoteChange, Stored};
use fake_store::{FakeStore, Fault};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod actor;
mod conflicts;
mod fake_store;
mod joining;
mod lifecycle;
mod lost_answers;
mod rules;
mod writes;

/// Requests are told apart by a number in tests.
struct Tickets;

impl Replies for Tickets {
    type Write = u32;
    type Delete = u32;
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
    /// The reply after it changed nothing: the current state is persisted again.
    Vouch,
    /// The async value guard was asked about this value (the record being at this value).
    Guard(Option<Value>, Value),
}

/// The core, the store it talks to, and everything observed.
struct Harness {
    core: Core<Tickets>,
    store: FakeStore,
    seen: Vec<Seen>,
    /// The write outcomes counted, in order.
    counted: Vec<Counted>,
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
        deadlines: Deadlines::default(),
    }
}

fn describe(reply: Reply<Tickets>) -> (u32, String) {
    match reply {
        Reply::Write(ticket, Ok(outcome)) => (
            ticket,
            format!("ok v{} changed={}", outcome.version, outcome.changed),
        ),
        Reply::Write(ticket, Err(e)) | Reply::Delete(ticket, Err(e)) => {
            (ticket, e.code().to_string())
        }
        Reply::Delete(ticket, Ok(Some(version))) => (ticket, format!("deleted v{version}")),
        Reply::Delete(ticket, Ok(None)) => (ticket, "absent".to_string()),
    }
}

impl Harness {
    /// A core that loaded `record` from a store holding it.
    fn new(record: Stored) -> Self {
        Self::with_limits(record, limits())
    }

    fn with_limits(record: Stored, limits: CoreLimits) -> Self {
        Self::with_rules(record, limits, Default::default())
    }

    fn with_rules(record: Stored, limits: CoreLimits, rules: crate::rules::WriteRules) -> Self {
        Harness {
            core: Core::new(id(), record.clone(), Vec::new(), limits, rules),
            store: FakeStore {
                record,
                ..FakeStore::default()
            },
            seen: Vec::new(),
            counted: Vec::new(),
            timers: Vec::new(),
            now: Instant::now(),
        }
    }

    /// Carries out effects, answering store calls from the fake store, until none is left.
    fn run(&mut self, effects: Vec<Effect<Tickets>>) {
        let mut queue: VecDeque<Effect<Tickets>> = effects.into();
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
                Effect::Delete { op, if_version } => {
                    let result = self.store.delete(op, if_version);
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
                Effect::Reply(reply) => {
                    let (ticket, text) = describe(reply);
                    self.seen.push(Seen::Reply(ticket, text));
                    Vec::new()
                }
                Effect::Vouch => {
                    self.seen.push(Seen::Vouch);
                    Vec::new()
                }
                Effect::Count(outcome) => {
                    self.counted.push(outcome);
                    Vec::new()
                }
                Effect::Guard { proposal, .. } => {
                    let current = proposal.current.map(|v| (*v).clone());
                    let proposed = (*proposal.proposed).clone();
                    self.seen.push(Seen::Guard(current, proposed));
                    Vec::new()
                }
            };
            queue.extend(more);
        }
    }

    fn write(&mut self, ticket: u32, value: Value, strategy: Strategy) {
        self.write_from(ticket, value, strategy, None);
    }

    /// A write by `writer` (a client: its value guard runs), or by the server (`None`).
    fn write_from(
        &mut self,
        ticket: u32,
        value: Value,
        strategy: Strategy,
        writer: Option<crate::connection::Connection>,
    ) {
        let write = QueuedWrite {
            writer,
            ..self.queued(ticket, value, strategy)
        };
        let effects = self.core.write(write);
        self.run(effects);
    }

    /// A write of `value` queued now, by the server, with no condition.
    fn queued(&self, ticket: u32, value: Value, strategy: Strategy) -> QueuedWrite<u32> {
        self.queued_change(
            ticket,
            Edit::Value {
                value: Arc::new(value),
                strategy,
            },
        )
    }

    /// A write making `change`, queued now, by the server, with no condition.
    fn queued_change(&self, ticket: u32, change: Edit) -> QueuedWrite<u32> {
        QueuedWrite {
            change,
            queued_at: self.now,
            expected_version: None,
            writer: None,
            skip_schema: false,
            approved: None,
            asks: 0,
            reply: ticket,
        }
    }

    /// The async value guard answers.
    fn answer_guard(&mut self, allowed: bool) {
        let effects = self.core.guarded(allowed);
        self.run(effects);
    }

    fn delete(&mut self, ticket: u32) {
        self.delete_if(ticket, None);
    }

    fn delete_if(&mut self, ticket: u32, if_version: Option<Version>) {
        let effects = self.core.delete(ticket, if_version);
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
