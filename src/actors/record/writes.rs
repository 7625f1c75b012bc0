//! Planning a batch of queued writes: each write's value against the one before it, the
//! limits that refuse a write, and the batch's size limits. Pure code.

use crate::error::Error;
use crate::record::{Strategy, Version, apply_strategy, serialized_len};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

use super::messages::WriteOutcome;
use crate::store::NewVersion;

/// A write waiting in the record's queue.
pub(crate) struct QueuedWrite<R> {
    /// The incoming value.
    pub value: Arc<Value>,
    /// How it combines with the current value.
    pub strategy: Strategy,
    /// When it was queued: a write that keeps losing races fails after a deadline.
    pub queued_at: Instant,
    /// Applied only if the record is at this version (0: only if it does not exist).
    pub expected_version: Option<Version>,
    /// Where its outcome goes.
    pub reply: R,
}

/// The limits a batch respects.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchLimits {
    /// Most writes in one store call.
    pub max_writes: usize,
    /// Most bytes of serialized values in one store call (at least one value always goes).
    pub max_bytes: usize,
    /// Largest value a merge may produce.
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
}

/// Takes the leading writes of `queue` (as many as `limits` allow) and computes their values
/// starting from `base` at `version`. Writes that change nothing or are refused get their
/// outcome without a version; the others get consecutive versions.
pub(crate) fn plan<R>(
    queue: &mut std::collections::VecDeque<super::state::Op<R>>,
    base: Option<&Arc<Value>>,
    mut version: Version,
    limits: BatchLimits,
) -> Plan<R> {
    let mut plan = Plan {
        writes: Vec::new(),
        outcomes: Vec::new(),
        values: Vec::new(),
    };
    let mut base = base.cloned();
    let mut bytes = 0;
    // Sizes only matter when a second value could join the batch.
    let measure = queue.len() > 1 && limits.max_writes > 1;
    while plan.writes.len() < limits.max_writes {
        let Some(super::state::Op::Write(_)) = queue.front() else {
            break;
        };
        let Some(super::state::Op::Write(write)) = queue.pop_front() else {
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
        let next = apply_strategy(base.as_ref(), &write.value, write.strategy);
        let merged = write.strategy != Strategy::Replace;
        let size = if merged || measure {
            serialized_len(&next)
        } else {
            0
        };
        if merged && size > limits.max_value_bytes {
            plan.outcomes.push(Err(Error::Limit(format!(
                "the merged value would exceed {} bytes",
                limits.max_value_bytes
            ))));
            plan.writes.push(write);
            continue;
        }
        let changed = base.as_deref() != Some(next.as_ref());
        if changed {
            if !plan.values.is_empty() && bytes + size > limits.max_bytes {
                // Goes first in the next batch, computed again on the new state.
                queue.push_front(super::state::Op::Write(write));
                break;
            }
            bytes += size;
            version += 1;
            let patch = match &base {
                Some(previous) if limits.patches => {
                    let patch = json_patch::diff(previous, &next);
                    // A patch is a list of operations: it always serializes.
                    serde_json::to_value(patch).ok().map(Arc::new)
                }
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
