//! The state machine against a scripted store: every store call the core asks for is answered
//! by [`FakeStore`], which can lose answers, fail, or be changed behind the core's back the way
//! another instance would; the test decides which published changes reach the core.

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

#[test]
fn a_write_is_applied_persisted_and_answered() {
    let mut h = Harness::new(live(json!({"a": 1}), 1));
    h.write(1, json!({"b": 2}), Strategy::Merge);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Update(2, json!({"a": 1, "b": 2})),
            Seen::Persist(2),
            reply(1, "ok v2 changed=true"),
        ]
    );
    // Its own echo changes nothing.
    h.deliver(RemoteChange::Updated {
        version: 2,
        value: Arc::new(json!({"a": 1, "b": 2})),
        patch: None,
    });
    assert!(h.take_seen().is_empty());
    assert!(h.core.is_idle());
}

#[test]
fn a_lost_race_follows_the_published_versions_then_retries() {
    let mut h = Harness::new(live(json!({"n": 1}), 1));
    let v2 = h.store.other_writes(json!({"n": 2}));
    let v3 = h.store.other_writes(json!({"n": 3}));
    h.write(1, json!({"mine": true}), Strategy::Merge);
    // Conflict: waiting for versions 2 and 3, nothing answered yet.
    assert!(h.take_seen().is_empty());
    h.deliver(v2);
    h.deliver(v3);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Update(2, json!({"n": 2})),
            Seen::Update(3, json!({"n": 3})),
            Seen::Update(4, json!({"n": 3, "mine": true})),
            Seen::Persist(4),
            reply(1, "ok v4 changed=true"),
        ]
    );
    // The catch-up timer that fires late belongs to a finished phase.
    h.fire(Timer::CatchUp);
    assert!(h.take_seen().is_empty());
}

#[test]
fn a_lost_race_whose_messages_never_come_reloads() {
    let mut h = Harness::new(live(json!({"n": 1}), 1));
    h.store.other_writes(json!({"n": 2}));
    h.write(1, json!({"mine": true}), Strategy::Merge);
    assert!(h.take_seen().is_empty());
    h.fire(Timer::CatchUp);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Resync(2, json!({"n": 2})),
            Seen::Update(3, json!({"n": 2, "mine": true})),
            Seen::Persist(3),
            reply(1, "ok v3 changed=true"),
        ]
    );
}

#[test]
fn a_write_racing_a_deletion_learns_of_it_and_creates_anew() {
    let mut h = Harness::new(live(json!({"old": true}), 4));
    // Deleted elsewhere; the message has not arrived.
    let deletion = h.store.other_deletes();
    h.write(1, json!({"a": 1}), Strategy::Merge);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Deleted(4),
            // Merged onto nothing: the old value is gone for good.
            Seen::Update(5, json!({"a": 1})),
            Seen::Persist(5),
            reply(1, "ok v5 changed=true"),
        ]
    );
    // The late deletion message is old news.
    h.deliver(deletion);
    assert!(h.take_seen().is_empty());
}

#[test]
fn a_record_recreated_elsewhere_is_never_written_over_with_the_old_value() {
    // Issue scenario 2: at version 10 here; deleted and created again elsewhere, unheard of.
    let mut h = Harness::new(live(json!({"old": 1}), 10));
    h.store.other_deletes();
    h.store.other_writes(json!({"new": 1}));
    h.write(1, json!({"a": 1}), Strategy::Merge);
    // The conflict shows a newer live record: follow it; its messages were lost.
    h.fire(Timer::CatchUp);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Resync(11, json!({"new": 1})),
            Seen::Update(12, json!({"new": 1, "a": 1})),
            Seen::Persist(12),
            reply(1, "ok v12 changed=true"),
        ]
    );
    assert_eq!(h.store.record, live(json!({"new": 1, "a": 1}), 12));
}

#[test]
fn a_deletion_missed_during_a_reconnect_is_applied_not_undone() {
    // Issue scenario 1: the pub/sub connection dropped while another instance deleted.
    let mut h = Harness::new(live(json!({"x": 1}), 1));
    let _lost = h.store.other_deletes();
    h.deliver(RemoteChange::Resync);
    assert_eq!(h.take_seen(), vec![Seen::Deleted(1)]);
    assert_eq!(h.store.record, Stored::absent(1), "nothing written back");
    assert_eq!(h.core.record(), &Stored::absent(1));
}

#[test]
fn a_store_that_lost_everything_gets_our_state_back() {
    let mut h = Harness::new(live(json!({"x": 5}), 5));
    h.store.record = Stored::default();
    h.deliver(RemoteChange::Resync);
    // Past any version another instance may have shown before the loss.
    let back = 5 + WRITE_BACK_JUMP;
    assert_eq!(h.take_seen(), vec![Seen::Resync(back, json!({"x": 5}))]);
    assert_eq!(h.store.record, live(json!({"x": 5}), back));
    h.write(1, json!({"x": 6}), Strategy::Replace);
    assert_eq!(h.store.record, live(json!({"x": 6}), back + 1));
}

#[test]
fn a_write_back_that_finds_a_newer_state_takes_it() {
    // Another instance, further ahead, wrote its copy back first.
    let mut h = Harness::new(live(json!(10), 10));
    h.store.record = live(json!(11), 11 + WRITE_BACK_JUMP);
    h.deliver(RemoteChange::Resync);
    assert_eq!(
        h.take_seen(),
        vec![Seen::Resync(11 + WRITE_BACK_JUMP, json!(11))]
    );
}

#[test]
fn a_gap_reloads_and_resyncs() {
    let mut h = Harness::new(live(json!(1), 1));
    h.store.other_writes(json!(2));
    let v3 = h.store.other_writes(json!(3));
    h.deliver(v3);
    assert_eq!(h.take_seen(), vec![Seen::Resync(3, json!(3))]);
}

#[test]
fn a_failed_reload_is_retried() {
    let mut h = Harness::new(live(json!(1), 1));
    h.store.other_writes(json!(2));
    h.store.failing_loads = 1;
    h.deliver(RemoteChange::Resync);
    assert!(h.take_seen().is_empty());
    assert!(!h.core.is_idle(), "a reload is owed");
    h.fire(Timer::Reload);
    assert_eq!(h.take_seen(), vec![Seen::Resync(2, json!(2))]);
    assert!(h.core.is_idle());
}

#[test]
fn a_reconnect_during_a_write_waits_for_the_write() {
    let mut h = Harness::new(live(json!(1), 1));
    let write = QueuedWrite {
        change: Change::Value {
            value: Arc::new(json!(2)),
            strategy: Strategy::Replace,
        },
        queued_at: h.now,
        expected_version: None,
        reply: 1,
    };
    // The write is in flight when the reconnect notice comes: it waits in the backlog.
    let effects = h.core.write(write);
    assert!(matches!(effects.as_slice(), [Effect::Write { .. }]));
    assert!(h.core.remote(RemoteChange::Resync).is_empty());
    let Some(Effect::Write {
        expected,
        values,
        op,
        ..
    }) = effects.into_iter().next()
    else {
        unreachable!("matched above");
    };
    let result = h.store.write(expected, values, op);
    let effects = h.core.written(result, h.now);
    h.run(effects);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Update(2, json!(2)),
            Seen::Persist(2),
            reply(1, "ok v2 changed=true"),
        ]
    );
    // The reload it then made found the same state: nothing more.
    assert!(h.core.is_idle());
}

#[test]
fn a_lost_answer_for_an_applied_write_is_found_and_acknowledged() {
    // Issue scenario 3: Redis stalled past the response timeout, then ran the write.
    let mut h = Harness::new(live(json!(1), 1));
    h.store.fault = Some(Fault::AnswerLostAfterApplying);
    h.write(1, json!(2), Strategy::Replace);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Update(2, json!(2)),
            Seen::Persist(2),
            reply(1, "ok v2 changed=true"),
        ]
    );
}

#[test]
fn a_lost_answer_for_a_write_never_applied_is_unavailable() {
    let mut h = Harness::new(live(json!(1), 1));
    h.store.fault = Some(Fault::AnswerLostBeforeApplying);
    h.write(1, json!(2), Strategy::Replace);
    assert_eq!(h.take_seen(), vec![reply(1, "EUNAVAILABLE")]);
    assert_eq!(h.store.record, live(json!(1), 1));
}

#[test]
fn a_store_that_cannot_be_asked_gives_unknown_then_a_reload() {
    let mut h = Harness::new(live(json!(1), 1));
    h.store.fault = Some(Fault::AnswerLostAfterApplying);
    h.store.failing_checks = usize::MAX;
    h.write(1, json!(2), Strategy::Replace);
    assert!(h.take_seen().is_empty(), "still asking");
    h.fire(Timer::Check);
    h.now += super::state::CHECK_DEADLINE + Duration::from_secs(1);
    h.fire(Timer::Check);
    assert_eq!(h.take_seen(), vec![reply(1, "EUNKNOWN")]);
    // Once the store answers, the write that did happen reaches subscribers.
    h.store.failing_checks = 0;
    h.fire(Timer::Reload);
    assert_eq!(h.take_seen(), vec![Seen::Resync(2, json!(2))]);
}

#[test]
fn a_lost_answer_with_other_writes_since_is_unknown_and_persisted() {
    let mut h = Harness::new(live(json!(1), 1));
    h.store.fault = Some(Fault::AnswerLostAfterApplying);
    h.store.failing_checks = 1;
    h.write(1, json!(2), Strategy::Replace);
    // Before the store can be asked again, another instance writes on top.
    h.store.other_writes(json!(3));
    h.fire(Timer::Check);
    assert_eq!(
        h.take_seen(),
        vec![
            reply(1, "EUNKNOWN"),
            Seen::Persist(3),
            Seen::Resync(3, json!(3)),
        ]
    );
}

#[test]
fn a_store_refusing_the_connection_is_unavailable_at_once() {
    let mut h = Harness::new(live(json!(1), 1));
    h.store.fault = Some(Fault::Down);
    h.write(1, json!(2), Strategy::Replace);
    assert_eq!(h.take_seen(), vec![reply(1, "EUNAVAILABLE")]);
}

#[test]
fn a_delete_leaves_a_tombstone_and_a_new_record_continues_after_it() {
    let mut h = Harness::new(live(json!(1), 3));
    h.delete(1);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Deleted(3),
            Seen::PersistDeletion(3),
            reply(1, "deleted v3")
        ]
    );
    h.delete(2);
    assert_eq!(h.take_seen(), vec![reply(2, "absent")]);
    h.write(3, json!("again"), Strategy::Replace);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Update(4, json!("again")),
            Seen::Persist(4),
            reply(3, "ok v4 changed=true"),
        ]
    );
}

#[test]
fn a_delete_whose_answer_was_lost_is_found() {
    let mut h = Harness::new(live(json!(1), 3));
    h.store.fault = Some(Fault::AnswerLostAfterApplying);
    h.delete(1);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Deleted(3),
            Seen::PersistDeletion(3),
            reply(1, "deleted v3")
        ]
    );
}

#[test]
fn a_remote_deletion_then_creation_reaches_subscribers_in_order() {
    let mut h = Harness::new(live(json!(1), 1));
    let deleted = h.store.other_deletes();
    let created = h.store.other_writes(json!("new"));
    h.deliver(deleted);
    h.deliver(created);
    assert_eq!(
        h.take_seen(),
        vec![Seen::Deleted(1), Seen::Update(2, json!("new"))]
    );
}

#[test]
fn queued_writes_beyond_the_limit_are_refused() {
    let mut limits = limits();
    limits.max_pending = 2;
    let mut h = Harness::with_limits(live(json!(0), 1), limits);
    // Hold the first write in flight by losing its answer and failing the check.
    h.store.fault = Some(Fault::AnswerLostBeforeApplying);
    h.store.failing_checks = 1;
    h.write(1, json!(1), Strategy::Replace);
    h.write(2, json!(2), Strategy::Replace);
    h.write(3, json!(3), Strategy::Replace);
    h.write(4, json!(4), Strategy::Replace);
    assert_eq!(h.take_seen(), vec![reply(4, "ELIMIT")]);
    h.fire(Timer::Check);
    assert_eq!(
        h.take_seen(),
        vec![
            reply(1, "EUNAVAILABLE"),
            Seen::Update(2, json!(2)),
            Seen::Update(3, json!(3)),
            Seen::Persist(3),
            reply(2, "ok v2 changed=true"),
            reply(3, "ok v3 changed=true"),
        ]
    );
}

#[test]
fn a_batch_stops_at_its_byte_limit() {
    let mut limits = limits();
    limits.batch.max_bytes = 30;
    let mut h = Harness::with_limits(live(json!(0), 1), limits);
    // The first write is in flight; the next three queue behind it.
    h.store.fault = Some(Fault::AnswerLostBeforeApplying);
    h.store.failing_checks = 1;
    h.write(1, json!("first"), Strategy::Replace);
    for (ticket, text) in [(2, "a".repeat(20)), (3, "b".repeat(20)), (4, "c".repeat(5))] {
        h.write(ticket, json!(text), Strategy::Replace);
    }
    h.fire(Timer::Check);
    let seen = h.take_seen();
    // Three writes, two store calls: 22 + 22 bytes do not fit in 30, 22 + 7 do.
    let replies: Vec<_> = seen
        .iter()
        .filter(|s| matches!(s, Seen::Reply(..)))
        .collect();
    assert_eq!(replies.len(), 4);
    let persisted: Vec<_> = seen
        .iter()
        .filter(|s| matches!(s, Seen::Persist(_)))
        .collect();
    assert_eq!(persisted, vec![&Seen::Persist(2), &Seen::Persist(4)]);
}

#[test]
fn a_write_that_changes_nothing_sends_nothing() {
    let mut h = Harness::new(live(json!({"a": 1}), 1));
    h.write(1, json!({"a": 1}), Strategy::Merge);
    assert_eq!(h.take_seen(), vec![reply(1, "ok v1 changed=false")]);
}

#[test]
fn a_merge_too_large_is_refused_alone() {
    let mut limits = limits();
    limits.batch.max_value_bytes = 20;
    let mut h = Harness::with_limits(live(json!({"a": 1}), 1), limits);
    h.write(1, json!({"b": "x".repeat(30)}), Strategy::Merge);
    assert_eq!(h.take_seen(), vec![reply(1, "ELIMIT")]);
}

#[test]
fn a_delete_when_the_store_lost_the_record_deletes_it_and_keeps_the_tombstone() {
    // Redis restarted empty; this instance still holds version 26.
    let mut h = Harness::new(live(json!({"n": 26}), 26));
    h.store.record = Stored::default();
    h.delete(1);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Deleted(26),
            Seen::PersistDeletion(26),
            reply(1, "deleted v26")
        ]
    );
    assert_eq!(h.store.record, Stored::absent(26 + WRITE_BACK_JUMP));
    // And a new record continues after it.
    h.write(2, json!("new"), Strategy::Replace);
    assert_eq!(h.store.record, live(json!("new"), 27 + WRITE_BACK_JUMP));
}

#[test]
fn a_delete_whose_answer_was_lost_while_the_store_lost_everything_still_deletes() {
    // The chaos run's case: Redis was killed with the delete in flight and came back empty.
    let mut h = Harness::new(live(json!({"n": 211}), 211));
    h.store.fault = Some(Fault::AnswerLostBeforeApplying);
    h.store.failing_checks = 1;
    h.delete(1);
    h.store.record = Stored::default();
    h.fire(Timer::Check);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Deleted(211),
            Seen::PersistDeletion(211),
            reply(1, "deleted v211")
        ]
    );
    assert_eq!(
        h.store.record,
        Stored::absent(211 + WRITE_BACK_JUMP),
        "not written back as live"
    );
}

#[test]
fn an_update_function_runs_again_on_the_fresh_value_after_a_lost_race() {
    let mut h = Harness::new(live(json!(1), 1));
    h.store.other_writes(json!(10));
    let write = QueuedWrite {
        change: Change::Update(Arc::new(|current: Option<&Value>| {
            Ok(json!(current.and_then(Value::as_i64).unwrap_or(0) + 1))
        })),
        queued_at: h.now,
        expected_version: None,
        reply: 1,
    };
    let effects = h.core.write(write);
    h.run(effects);
    h.fire(Timer::CatchUp);
    assert_eq!(
        h.take_seen(),
        vec![
            Seen::Resync(2, json!(10)),
            Seen::Update(3, json!(11)),
            Seen::Persist(3),
            reply(1, "ok v3 changed=true"),
        ]
    );
}
