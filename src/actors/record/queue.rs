//! A record's queue of requests (writes and deletes) and planning a batch of queued writes:
//! each write's value against the one before it, the limits that refuse a write, and the
//! batch's size limits. Pure code.

use crate::connection::Connection;
use crate::error::Error;
use crate::model::{
    RecordId, Strategy, Version, apply_strategy, change_patch, serialized_len,
    serializes_longer_than,
};
use crate::rules::{ProposedWrite, WriteRules};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

use crate::store::{Expect, NewVersion};

/// A change computed from the record's current value (`None`: it does not exist) inside its
/// actor, so nothing else can write in between; run again on the fresh value after a lost race
/// with another instance. Returning an error refuses the write.
pub type UpdateFn = Arc<dyn Fn(Option<&Value>) -> Result<Value, Error> + Send + Sync>;

/// What a write does to the record.
#[derive(Clone)]
pub enum Edit {
    /// Combine a value with the current one.
    Value {
        /// The incoming value.
        value: Arc<Value>,
        /// How it combines with the current value.
        strategy: Strategy,
    },
    /// Compute the new value from the current one.
    Update(UpdateFn),
}

impl Edit {
    /// The new value after `base`.
    fn apply(&self, base: Option<&Arc<Value>>) -> Result<Arc<Value>, Error> {
        match self {
            Edit::Value { value, strategy } => Ok(apply_strategy(base, value, *strategy)),
            Edit::Update(update) => match update(base.map(|b| &**b))? {
                Value::Null => Err(Error::invalid("an update must not produce null")),
                next => Ok(Arc::new(next)),
            },
        }
    }
}

/// The result of an applied write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOutcome {
    /// The record's version after the write.
    pub version: Version,
    /// False when the write produced the value the record already had (nothing was sent).
    pub changed: bool,
}

/// The types a request's answer travels in: oneshot senders in the actor, plain tickets in
/// the state machine's tests. Separate types for writes and deletes, so a write can only ever
/// be answered with a write's outcome.
pub(crate) trait Replies {
    /// Where a write's outcome goes.
    type Write;
    /// Where a delete's outcome goes.
    type Delete;
}

/// A queued request.
pub(crate) enum Op<R: Replies> {
    /// A write.
    Write(QueuedWrite<R::Write>),
    /// A delete, only if the live record is at `if_version` when given.
    Delete {
        /// Where the answer goes.
        reply: R::Delete,
        /// The version the live record must have.
        if_version: Option<Version>,
    },
}

/// A write waiting in the record's queue.
pub(crate) struct QueuedWrite<R> {
    /// What it does.
    pub change: Edit,
    /// When it was queued: a write that keeps losing races fails after a deadline.
    pub queued_at: Instant,
    /// Applied only if the record is at this version (0: only if it does not exist).
    pub expected_version: Option<Version>,
    /// The client writing (its value guard runs); `None`: the server writes.
    pub writer: Option<Connection>,
    /// The server's write opted out of the schema.
    pub skip_schema: bool,
    /// The async value guard allowed it on the record in this state (judged again on any
    /// other).
    pub approved: Option<Expect>,
    /// How many times its async value guard was asked (see [`MAX_GUARD_ASKS`]).
    pub asks: u8,
    /// Where its outcome goes.
    pub reply: R,
}

/// How many times an async value guard is asked about one write: each answer that comes after
/// the record moved (another instance kept writing it) is asked again, so a record written
/// faster than its guard answers would otherwise hold the write, and every write queued behind
/// it, for ever. Past this, the write fails with `ECONFLICT`, as a write that keeps losing races
/// does.
pub(crate) const MAX_GUARD_ASKS: u8 = 8;

/// The record a batch is planned for and the rules its values must pass.
#[derive(Clone, Copy)]
pub(crate) struct Checks<'a> {
    /// The record (value guards see it).
    pub id: &'a RecordId,
    /// Its exposure's write rules.
    pub rules: &'a WriteRules,
}

/// The limits a batch respects.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchLimits {
    /// Most writes in one store call.
    pub max_writes: usize,
    /// Most bytes of serialized values in one store call (at least one value always goes).
    pub max_bytes: usize,
    /// Largest value stored, serialized.
    pub max_value_bytes: usize,
    /// Compute each new version's patch (for the history).
    pub patches: bool,
}

/// Writes taken from the queue, with the values that go to the store and the outcome each
/// write gets if the store accepts them.
pub(crate) struct Plan<R> {
    /// The writes, in queue order.
    pub writes: Vec<QueuedWrite<R>>,
    /// Each write's outcome if the batch is applied (same order as `writes`).
    pub outcomes: Vec<Result<WriteOutcome, Error>>,
    /// The new versions, one per changed write, for versions `base + 1 ..`.
    pub values: Vec<NewVersion>,
    /// The write at the front of the queue waits for its async value guard on this proposal
    /// (only when the batch is otherwise empty: it is judged on the record's current state).
    pub ask: Option<ProposedWrite>,
}

/// Takes the leading writes of `queue` (as many as `limits` allow) and computes their values
/// starting from `base` at `version`. Writes that change nothing or are refused get their
/// outcome without a version; the others get consecutive versions.
pub(crate) fn plan<R: Replies>(
    queue: &mut std::collections::VecDeque<Op<R>>,
    base: Option<&Arc<Value>>,
    mut version: Version,
    limits: BatchLimits,
    checks: Checks<'_>,
) -> Plan<R::Write> {
    let mut plan = Plan {
        writes: Vec::new(),
        outcomes: Vec::new(),
        values: Vec::new(),
        ask: None,
    };
    let mut base = base.cloned();
    let mut bytes = 0;
    // Sizes only matter when a second value could join the batch.
    let measure = queue.len() > 1 && limits.max_writes > 1;
    while plan.writes.len() < limits.max_writes {
        let Some(Op::Write(_)) = queue.front() else {
            break;
        };
        let Some(Op::Write(write)) = queue.pop_front() else {
            unreachable!("the front was a write");
        };
        if let Some(expected) = write.expected_version {
            let current = if base.is_some() { version } else { 0 };
            if expected != current {
                plan.outcomes.push(Err(Error::VersionMismatch { current }));
                plan.writes.push(write);
                continue;
            }
        }
        let next = match write.change.apply(base.as_ref()) {
            Ok(next) => next,
            Err(refused) => {
                plan.outcomes.push(Err(refused));
                plan.writes.push(write);
                continue;
            }
        };
        // What is stored is checked, not what was sent: a merge grows a value, and numbers
        // such as 1e15 serialize longer than they were written. Counting stops at the limit.
        if serializes_longer_than(next.as_ref(), limits.max_value_bytes) {
            plan.outcomes.push(Err(Error::Limit(format!(
                "the value would be larger than {} bytes as stored",
                limits.max_value_bytes
            ))));
            plan.writes.push(write);
            continue;
        }
        let state = Expect {
            version,
            exists: base.is_some(),
        };
        match judge(&write, &base, &next, state, checks) {
            Judged::Allowed => {}
            Judged::Refused(refused) => {
                plan.outcomes.push(Err(refused));
                plan.writes.push(write);
                continue;
            }
            Judged::Ask(_) if write.asks >= MAX_GUARD_ASKS => {
                plan.outcomes.push(Err(Error::Conflict));
                plan.writes.push(write);
                continue;
            }
            Judged::Ask(proposal) => {
                let mut write = write;
                // Judged alone, on the record's state once the writes before it are stored.
                if plan.writes.is_empty() {
                    write.asks += 1;
                    plan.ask = Some(proposal);
                }
                queue.push_front(Op::Write(write));
                break;
            }
        }
        let size = if measure {
            serialized_len(next.as_ref())
        } else {
            0
        };
        let changed = base.as_deref() != Some(next.as_ref());
        if changed {
            if !plan.values.is_empty() && bytes + size > limits.max_bytes {
                // Goes first in the next batch, computed again on the new state.
                queue.push_front(Op::Write(write));
                break;
            }
            bytes += size;
            version += 1;
            let patch = match &base {
                Some(previous) if limits.patches => Some(Arc::new(change_patch(previous, &next))),
                _ => None,
            };
            plan.values.push(NewVersion {
                value: Arc::clone(&next),
                patch,
            });
            base = Some(next);
        }
        plan.outcomes.push(Ok(WriteOutcome { version, changed }));
        plan.writes.push(write);
    }
    plan
}

/// What the rules say about a write's new value.
enum Judged {
    Allowed,
    Refused(Error),
    /// Its async value guard must answer first.
    Ask(ProposedWrite),
}

/// Checks `next` (the value `write` would store over `base`, the record being in `state`)
/// against the schema, then the value guard of a client's write.
fn judge<R>(
    write: &QueuedWrite<R>,
    base: &Option<Arc<Value>>,
    next: &Arc<Value>,
    state: Expect,
    checks: Checks<'_>,
) -> Judged {
    if let Some(schema) = &checks.rules.schema
        && !write.skip_schema
        && let Err(violations) = schema.check(next)
    {
        return Judged::Refused(Error::Schema(violations));
    }
    let (Some(guard), Some(writer)) = (&checks.rules.value_guard, &write.writer) else {
        return Judged::Allowed;
    };
    if write.approved == Some(state) {
        return Judged::Allowed;
    }
    let proposal = ProposedWrite {
        connection: writer.clone(),
        id: checks.id.clone(),
        current: base.clone(),
        proposed: Arc::clone(next),
    };
    match guard.decide_now(&proposal) {
        Some(true) => Judged::Allowed,
        Some(false) => Judged::Refused(Error::Forbidden),
        None => Judged::Ask(proposal),
    }
}
