//! The record's synchronisation with the store as a state machine, without actix or I/O.
//!
//! [`Core`] holds the record's state (value or tombstone, and version), the queue of writes
//! and deletes, and one [`Phase`]. Every event (a queued request, a store answer, a published
//! change, a timer) is a method that returns what must happen as [`Effect`]s: store calls,
//! pushes to subscribers, persistence, replies, timers. The actor carries the effects out and
//! feeds each store answer back. Tests drive the same methods with a scripted store.
//!
//! Rules it keeps:
//! - At most one store call is in flight (the phase says which). Published changes that arrive
//!   meanwhile wait in a backlog and are applied once it has answered.
//! - A published change is applied only when it is exactly the next version; older ones (our
//!   own echoes included) are ignored; a jump ahead or a reconnect reloads.
//! - The store's answer decides, never our cache: a newer live record is followed (after a
//!   lost race, through its published versions, so subscribers see each one) or adopted; a
//!   tombstone at or above our version is a deletion; only a store *older* than us (a lower
//!   version, no tombstone to explain it) lost data, and then we write ours back.
//! - A reply tells the truth: success only once applied; `Unavailable` only when nothing was
//!   written; when a call's outcome is unknown we ask the store ([`Effect::Check`]) and answer
//!   `Unknown` only if it cannot tell.

mod answers;
mod effects;
mod transitions;

pub use effects::Deadlines;
pub(crate) use effects::{Effect, Reply, Timer};

use transitions::{fail_writes, push_reply, reply_planned};

use super::queue::{BatchLimits, Checks, Op, Plan, QueuedWrite, Replies, WriteOutcome, plan};
use crate::error::Error;
use crate::metrics::Outcome as Counted;
use crate::model::{Mode, RecordId, Version};
use crate::rules::WriteRules;
use crate::store::{
    Change, Checked, DeleteResult, Expect, History, HistoryLimits, OpId, RemoteChange, StoreError,
    Stored, WriteResult,
};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How far a write-back after data loss moves the version on. Another instance may have been
/// further ahead than we are when the store lost the record (it had applied versions we never
/// heard of); writing ours back at our own version would let the next write reuse one of
/// those versions for another value. A version after the jump was never shown by anyone.
pub(crate) const WRITE_BACK_JUMP: Version = 1_000_000;

/// A write or delete whose store call is in flight or whose outcome is being checked.
enum Call<R: Replies> {
    Write {
        /// Boxed: a `Core` waits in `Ready` most of its life, and the phase is as large as
        /// its largest variant, in every record actor.
        plan: Box<Plan<R::Write>>,
        expected: Expect,
        op: OpId,
    },
    Delete {
        reply: R::Delete,
        before: Stored,
        op: OpId,
        if_version: Option<Version>,
    },
}

impl<R: Replies> Call<R> {
    fn op(&self) -> OpId {
        match self {
            Call::Write { op, .. } | Call::Delete { op, .. } => *op,
        }
    }
}

/// What the core is doing.
enum Phase<R: Replies> {
    /// Nothing in flight: the next queued request may start.
    Ready,
    /// A write or delete is in flight.
    Calling(Call<R>),
    /// A call's answer was lost; asking the store (`asking`) or waiting to ask again.
    Checking {
        call: Call<R>,
        asking: bool,
        deadline: Instant,
    },
    /// Reading the store (after a gap, a reconnect or a race that could not be followed).
    Loading,
    /// Writing our state back, at `record`'s version, to a store that lost it.
    WritingBack { record: Stored },
    /// Lost a race: applying the published versions up to `target` before retrying.
    CatchingUp { target: Version },
    /// The write at the front of the queue waits for its async value guard, which judges it
    /// on the record in state `base` (published changes wait, so the state stays).
    Guarding { base: Expect },
}

/// Settings the core follows.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CoreLimits {
    /// Batch limits for store writes.
    pub batch: BatchLimits,
    /// Most queued requests; more are refused at once.
    pub max_pending: usize,
    /// How much history to keep (here and in the store).
    pub history: HistoryLimits,
    /// The deadlines and pauses.
    pub deadlines: Deadlines,
}

/// A record's state machine (see the module docs).
pub(crate) struct Core<R: Replies> {
    id: RecordId,
    record: Stored,
    phase: Phase<R>,
    pending: VecDeque<Op<R>>,
    /// Boxed when first needed, like `rules`: `Core` lives in every record actor's task.
    #[allow(clippy::box_collection)]
    backlog: Option<Box<VecDeque<RemoteChange>>>,
    /// Bumped on every phase change; timers carry it.
    epoch: u64,
    /// A reload failed: subscribers may be behind, so read again soon.
    stale: bool,
    /// Shared by the record actors whose rules set no size of their own (`RecordEnv`).
    limits: Arc<CoreLimits>,
    /// The changes leading to `record.version`, within `limits.history`: what a resuming
    /// subscriber can be sent.
    history: History,
    /// What every written value must pass.
    /// `None` when the record has no rule (most records: nothing allocated).
    rules: Option<Box<WriteRules>>,
}

/// The rules of a record without any.
static NO_RULES: WriteRules = WriteRules {
    schema: None,
    value_guard: None,
    ttl: None,
    max_value_bytes: None,
};

/// How a new subscriber starts.
#[derive(Debug, PartialEq)]
pub(crate) enum Joining {
    /// With the current value; `resumed` is `Some(false)` when the client asked to resume and
    /// cannot (it gets the whole value instead), `None` when it did not ask.
    Snapshot {
        /// What the reply says about resuming.
        resumed: Option<bool>,
    },
    /// From the version it holds: the reply says so and the changes after it follow, ahead
    /// of any newer update.
    Resumed {
        /// The version the client holds.
        since: Version,
        /// The changes from `since` to the current version (none: it is up to date).
        changes: Vec<Change>,
    },
}

/// What a subscriber that holds `since` can be sent.
pub(crate) enum Resume {
    /// These changes bring it to the current version (none: it is up to date).
    Changes(Vec<Change>),
    /// It cannot follow: send the whole value.
    Full,
}

type Effects<R> = Vec<Effect<R>>;

impl<R: Replies> Core<R> {
    /// A core for a record the store holds as `record`, with the changes leading to it.
    pub fn new(
        id: RecordId,
        record: Stored,
        history: Vec<Change>,
        limits: impl Into<Arc<CoreLimits>>,
        rules: WriteRules,
    ) -> Self {
        let mut core = Core {
            id,
            record,
            phase: Phase::Ready,
            pending: VecDeque::new(),
            backlog: None,
            epoch: 0,
            stale: false,
            limits: limits.into(),
            history: History::default(),
            rules: (!rules.is_empty()).then(|| Box::new(rules)),
        };
        for change in history {
            core.remember(Some(change.patch), change.version);
        }
        core
    }

    /// What a subscriber holding version `since` of the live record needs to catch up.
    pub fn resume(&self, since: Version) -> Resume {
        let current = self.record.version;
        if !self.record.exists() || since > current {
            return Resume::Full;
        }
        if since == current {
            return Resume::Changes(Vec::new());
        }
        match self.history.since(since) {
            Some(changes) => Resume::Changes(changes),
            None => Resume::Full,
        }
    }

    /// How a subscriber in `mode` that holds `since` (`Some(None)`: it asked to resume with
    /// something that is not a version) starts. A full-mode subscriber needs each missed
    /// version whole, which the history (patches) cannot give: it resumes only when it
    /// missed nothing.
    pub fn join(&self, since: Option<Option<Version>>, mode: Mode) -> Joining {
        let Some(since) = since else {
            return Joining::Snapshot { resumed: None };
        };
        match since.map(|since| (since, self.resume(since))) {
            Some((since, Resume::Changes(changes)))
                if changes.is_empty() || mode == Mode::Patch =>
            {
                Joining::Resumed { since, changes }
            }
            _ => Joining::Snapshot {
                resumed: Some(false),
            },
        }
    }

    /// Records the change that led to `version` (the record's new version); without a patch
    /// the history restarts: nothing before this version can be resumed from.
    fn remember(&mut self, patch: Option<Arc<Value>>, version: Version) {
        self.history
            .record(version, patch.as_ref(), self.limits.history);
    }

    fn forget_history(&mut self) {
        self.history.clear();
    }

    fn rules(&self) -> &WriteRules {
        self.rules.as_deref().unwrap_or(&NO_RULES)
    }

    /// The record as this instance knows it.
    pub fn record(&self) -> &Stored {
        &self.record
    }

    /// Nothing queued and nothing in flight.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && matches!(self.phase, Phase::Ready) && !self.stale
    }

    /// Empties the queue (the actor is stopping): these requests never reached the store.
    pub fn take_pending(&mut self) -> Vec<Op<R>> {
        self.pending.drain(..).collect()
    }

    /// A store call is in flight (published changes wait).
    fn busy(&self) -> bool {
        matches!(
            self.phase,
            Phase::Calling(_)
                | Phase::Checking { .. }
                | Phase::Loading
                | Phase::WritingBack { .. }
                | Phase::Guarding { .. }
        )
    }

    fn set_phase(&mut self, phase: Phase<R>) {
        self.epoch += 1;
        self.phase = phase;
    }

    /// Leaves the current phase, if `expected` says it is the one an answer belongs to: the
    /// phase is handed over (`Ready` takes its place) and the epoch moves on, so the old
    /// phase's timers do nothing. `None`, with nothing changed, when it is not.
    fn take_phase(&mut self, expected: impl FnOnce(&Phase<R>) -> bool) -> Option<Phase<R>> {
        if !expected(&self.phase) {
            return None;
        }
        self.epoch += 1;
        Some(std::mem::replace(&mut self.phase, Phase::Ready))
    }

    fn arm(timer: Timer, after: Duration, epoch: u64) -> Effect<R> {
        Effect::Timer {
            timer,
            after,
            epoch,
        }
    }

    // ---- requests ---------------------------------------------------------------------

    /// Queues a write.
    pub fn write(&mut self, write: QueuedWrite<R::Write>) -> Effects<R> {
        if self.pending.len() >= self.limits.max_pending {
            let error = Error::Limit(format!(
                "more than {} writes are queued for this record; try again",
                self.limits.max_pending
            ));
            return self.refuse(write, error);
        }
        let mut out = Vec::new();
        self.pending.push_back(Op::Write(write));
        self.pump(&mut out);
        out
    }

    /// Answers a write refused before it was queued (its value cannot be persisted): nothing
    /// changes.
    pub fn refuse(&mut self, write: QueuedWrite<R::Write>, error: Error) -> Effects<R> {
        vec![
            Effect::Count(Counted::Refused),
            Effect::Reply(Reply::Write(write.reply, Err(error))),
        ]
    }

    /// Queues a delete (only if the live record is at `if_version`, when given).
    pub fn delete(&mut self, reply: R::Delete, if_version: Option<Version>) -> Effects<R> {
        let mut out = Vec::new();
        self.pending.push_back(Op::Delete { reply, if_version });
        self.pump(&mut out);
        out
    }

    /// Starts the next queued request when nothing is in flight.
    fn pump(&mut self, out: &mut Effects<R>) {
        while matches!(self.phase, Phase::Ready) {
            match self.pending.front() {
                None => return,
                Some(Op::Delete { .. }) => {
                    let Some(Op::Delete { reply, if_version }) = self.pending.pop_front() else {
                        unreachable!("the front was a delete");
                    };
                    let op = OpId::next();
                    out.push(Effect::Delete { op, if_version });
                    let before = self.record.clone();
                    self.set_phase(Phase::Calling(Call::Delete {
                        reply,
                        before,
                        op,
                        if_version,
                    }));
                }
                Some(Op::Write(_)) => {
                    let checks = Checks {
                        id: &self.id,
                        rules: self.rules.as_deref().unwrap_or(&NO_RULES),
                    };
                    let mut plan = plan::<R>(
                        &mut self.pending,
                        self.record.value.as_ref(),
                        self.record.version,
                        self.limits.batch,
                        checks,
                    );
                    if let (Some(proposal), Some(guard)) =
                        (plan.ask.take(), self.rules().value_guard.clone())
                    {
                        out.push(Effect::Guard { guard, proposal });
                        let base = self.record.expect();
                        self.set_phase(Phase::Guarding { base });
                        continue;
                    }
                    if plan.values.is_empty() {
                        reply_planned(plan, out);
                        continue;
                    }
                    let op = OpId::next();
                    let expected = self.record.expect();
                    out.push(Effect::Write {
                        expected,
                        values: plan.values.clone(),
                        op,
                        history: self.limits.history,
                        ttl: self.rules().ttl,
                    });
                    let plan = Box::new(plan);
                    self.set_phase(Phase::Calling(Call::Write { plan, expected, op }));
                }
            }
        }
    }

    /// The async value guard answered for the write at the front of the queue: it goes ahead
    /// (approved for the state it was judged on) or is refused with `EFORBIDDEN`.
    pub fn guarded(&mut self, allowed: bool) -> Effects<R> {
        let mut out = Vec::new();
        let Some(Phase::Guarding { base }) =
            self.take_phase(|phase| matches!(phase, Phase::Guarding { .. }))
        else {
            return out;
        };
        if allowed {
            if let Some(Op::Write(write)) = self.pending.front_mut() {
                write.approved = Some(base);
            }
        } else if let Some(Op::Write(write)) = self.pending.pop_front() {
            out.push(Effect::Count(Counted::Refused));
            push_reply(&mut out, Reply::Write(write.reply, Err(Error::Forbidden)));
        }
        self.carry_on(&mut out);
        out
    }

    /// The call finished: apply what was published meanwhile, then start the next request.
    fn carry_on(&mut self, out: &mut Effects<R>) {
        while !self.busy() {
            let Some(change) = self.backlog.as_mut().and_then(|b| b.pop_front()) else {
                break;
            };
            self.apply_remote(change, out);
        }
        self.pump(out);
    }
}
