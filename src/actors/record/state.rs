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

use super::messages::WriteOutcome;
use super::writes::{BatchLimits, Plan, QueuedWrite, plan};
use crate::error::Error;
use crate::metrics::{Outcome as Counted, metrics};
use crate::record::{RecordId, Version};
use crate::store::{
    Change, Checked, DeleteResult, Expect, History, HistoryLimits, NewVersion, OpId, RemoteChange,
    StoreError, Stored, WriteResult,
};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a write keeps being re-applied after losing races before it fails with
/// `ECONFLICT`.
pub(crate) const CONFLICT_DEADLINE: Duration = Duration::from_secs(10);
/// How long to wait for the published changes that explain a lost race before reloading.
pub(crate) const CATCH_UP_WAIT: Duration = Duration::from_millis(500);
/// How long to keep asking the store what became of a call whose answer was lost.
pub(crate) const CHECK_DEADLINE: Duration = Duration::from_secs(3);
/// Pause between two such questions.
pub(crate) const CHECK_RETRY: Duration = Duration::from_millis(250);
/// How far a write-back after data loss moves the version on. Another instance may have been
/// further ahead than we are when the store lost the record (it had applied versions we never
/// heard of); writing ours back at our own version would let the next write reuse one of
/// those versions for another value. A version after the jump was never shown by anyone.
pub(crate) const WRITE_BACK_JUMP: Version = 1_000_000;
/// Pause before reading the store again after a failed reload.
pub(crate) const RELOAD_RETRY: Duration = Duration::from_secs(1);

/// A queued request.
pub(crate) enum Op<R> {
    /// A write.
    Write(QueuedWrite<R>),
    /// A delete, only if the live record is at `if_version` when given.
    Delete {
        /// Where the answer goes.
        reply: R,
        /// The version the live record must have.
        if_version: Option<Version>,
    },
}

/// What a request is answered with.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A write's outcome.
    Write(Result<WriteOutcome, Error>),
    /// A delete's outcome: the version deleted at, or `None` when there was no record.
    Delete(Result<Option<Version>, Error>),
}

/// Timers the core asks for; each comes back through [`Core::timer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The published changes after a lost race did not all arrive.
    CatchUp,
    /// Ask the store again what became of a call.
    Check,
    /// Read the store again after a failed reload.
    Reload,
}

/// What the actor must do.
#[derive(Debug)]
pub(crate) enum Effect<R> {
    /// Read the record; answer with [`Core::loaded`].
    Load,
    /// Compare-and-set; answer with [`Core::written`].
    Write {
        /// The state the record must be in.
        expected: Expect,
        /// The new versions.
        values: Vec<NewVersion>,
        /// The call's id.
        op: OpId,
        /// How much history the store keeps.
        history: HistoryLimits,
    },
    /// Delete; answer with [`Core::deleted`].
    Delete {
        /// The call's id.
        op: OpId,
        /// The version the live record must have.
        if_version: Option<Version>,
    },
    /// Ask what became of `op`; answer with [`Core::checked`].
    Check {
        /// The call asked about.
        op: OpId,
    },
    /// Write our state back to a store that lost it; answer with [`Core::written_back`].
    WriteBack(Stored),
    /// Call [`Core::timer`] after `after`, with `epoch`.
    Timer {
        /// Which timer.
        timer: Timer,
        /// How long from now.
        after: Duration,
        /// Echoed back; a timer from an earlier phase is ignored.
        epoch: u64,
    },
    /// Subscribers get this version, as a patch from `previous` or whole.
    Update {
        /// The value before (`None`: the record was just created).
        previous: Option<Arc<Value>>,
        /// The new value.
        current: Arc<Value>,
        /// Its version.
        version: Version,
        /// The patch from `previous`, when already computed.
        patch: Option<Arc<Value>>,
    },
    /// Subscribers get the whole value: versions between were skipped.
    Resync {
        /// The value.
        value: Arc<Value>,
        /// Its version.
        version: Version,
    },
    /// The record was deleted at this version: tell subscribers and end their subscriptions.
    Deleted {
        /// The tombstone version.
        version: Version,
    },
    /// Keep this value in the database (when a persistence rule covers the record).
    Persist {
        /// The value.
        value: Arc<Value>,
        /// Its version.
        version: Version,
    },
    /// Remove the record from the database.
    PersistDeletion {
        /// The tombstone version.
        version: Version,
    },
    /// Answer a request.
    Reply(R, Answer),
}

/// A write or delete whose store call is in flight or whose outcome is being checked.
enum Call<R> {
    Write {
        plan: Plan<R>,
        expected: Expect,
        op: OpId,
    },
    Delete {
        reply: R,
        before: Stored,
        op: OpId,
        if_version: Option<Version>,
    },
}

impl<R> Call<R> {
    fn op(&self) -> OpId {
        match self {
            Call::Write { op, .. } | Call::Delete { op, .. } => *op,
        }
    }
}

/// What the core is doing.
enum Phase<R> {
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
}

/// A record's state machine (see the module docs).
pub(crate) struct Core<R> {
    id: RecordId,
    record: Stored,
    phase: Phase<R>,
    pending: VecDeque<Op<R>>,
    backlog: VecDeque<RemoteChange>,
    /// Bumped on every phase change; timers carry it.
    epoch: u64,
    /// A reload failed: subscribers may be behind, so read again soon.
    stale: bool,
    limits: CoreLimits,
    /// The changes leading to `record.version`, within `limits.history`: what a resuming
    /// subscriber can be sent.
    history: History,
}

/// What a subscriber that holds `since` can be sent.
pub(crate) enum Resume {
    /// These changes bring it to the current version (none: it is up to date).
    Changes(Vec<Change>),
    /// It cannot follow: send the whole value.
    Full,
}

type Effects<R> = Vec<Effect<R>>;

impl<R> Core<R> {
    /// A core for a record the store holds as `record`, with the changes leading to it.
    pub fn new(id: RecordId, record: Stored, history: Vec<Change>, limits: CoreLimits) -> Self {
        let mut core = Core {
            id,
            record,
            phase: Phase::Ready,
            pending: VecDeque::new(),
            backlog: VecDeque::new(),
            epoch: 0,
            stale: false,
            limits,
            history: History::default(),
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

    /// Records the change that led to `version` (the record's new version); without a patch
    /// the history restarts: nothing before this version can be resumed from.
    fn remember(&mut self, patch: Option<Arc<Value>>, version: Version) {
        self.history
            .record(version, patch.as_ref(), self.limits.history);
    }

    fn forget_history(&mut self) {
        self.history.clear();
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
            Phase::Calling(_) | Phase::Checking { .. } | Phase::Loading | Phase::WritingBack { .. }
        )
    }

    fn set_phase(&mut self, phase: Phase<R>) {
        self.epoch += 1;
        self.phase = phase;
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
    pub fn write(&mut self, write: QueuedWrite<R>) -> Effects<R> {
        let mut out = Vec::new();
        if self.pending.len() >= self.limits.max_pending {
            metrics().write(Counted::Refused);
            let error = Error::Limit(format!(
                "more than {} writes are queued for this record; try again",
                self.limits.max_pending
            ));
            out.push(Effect::Reply(write.reply, Answer::Write(Err(error))));
            return out;
        }
        self.pending.push_back(Op::Write(write));
        self.pump(&mut out);
        out
    }

    /// Queues a delete (only if the live record is at `if_version`, when given).
    pub fn delete(&mut self, reply: R, if_version: Option<Version>) -> Effects<R> {
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
                    let plan = plan(
                        &mut self.pending,
                        self.record.value.as_ref(),
                        self.record.version,
                        self.limits.batch,
                    );
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
                    });
                    self.set_phase(Phase::Calling(Call::Write { plan, expected, op }));
                }
            }
        }
    }

    /// The call finished: apply what was published meanwhile, then start the next request.
    fn carry_on(&mut self, out: &mut Effects<R>) {
        while !self.busy() {
            let Some(change) = self.backlog.pop_front() else {
                break;
            };
            self.apply_remote(change, out);
        }
        self.pump(out);
    }

    // ---- store answers ----------------------------------------------------------------

    /// The answer to [`Effect::Write`].
    pub fn written(&mut self, result: Result<WriteResult, StoreError>, now: Instant) -> Effects<R> {
        let mut out = Vec::new();
        let Phase::Calling(Call::Write { .. }) = &self.phase else {
            log::error!("record {}: a write answer with no write in flight", self.id);
            return out;
        };
        let Phase::Calling(call) = std::mem::replace(&mut self.phase, Phase::Ready) else {
            unreachable!("checked above");
        };
        let Call::Write { plan, expected, op } = call else {
            unreachable!("checked above");
        };
        self.epoch += 1;
        match result {
            Ok(WriteResult::Applied { .. }) => self.commit(plan, &mut out),
            Ok(WriteResult::Conflict { current }) => {
                self.requeue(plan, now, &mut out);
                self.settle(current, true, &mut out);
            }
            Err(StoreError::Indeterminate(reason)) => {
                log::warn!(
                    "write of {} may or may not have happened ({reason}); checking",
                    self.id
                );
                out.push(Effect::Check { op });
                self.set_phase(Phase::Checking {
                    call: Call::Write { plan, expected, op },
                    asking: true,
                    deadline: now + CHECK_DEADLINE,
                });
                return out;
            }
            Err(e) => {
                log::warn!("write of {} failed: {e}", self.id);
                fail_writes(plan, Error::Unavailable, &mut out);
            }
        }
        self.carry_on(&mut out);
        out
    }

    /// The answer to [`Effect::Delete`].
    pub fn deleted(
        &mut self,
        result: Result<DeleteResult, StoreError>,
        now: Instant,
    ) -> Effects<R> {
        let mut out = Vec::new();
        let Phase::Calling(Call::Delete { .. }) = &self.phase else {
            log::error!(
                "record {}: a delete answer with no delete in flight",
                self.id
            );
            return out;
        };
        let Phase::Calling(Call::Delete {
            reply,
            before,
            op,
            if_version,
        }) = std::mem::replace(&mut self.phase, Phase::Ready)
        else {
            unreachable!("checked above");
        };
        self.epoch += 1;
        match result {
            Ok(DeleteResult::Deleted { version }) => {
                self.delete_applied(reply, version, &mut out);
            }
            Ok(DeleteResult::Absent { version })
                if self.record.exists() && version < self.record.version =>
            {
                // The store lost the record (an older tombstone or none explains its absence):
                // it existed, so this delete is what the client asked for.
                let ours = self.record.version;
                self.deleted_over_lost_data(reply, ours, &mut out);
                return out;
            }
            Ok(DeleteResult::Absent { version }) => {
                out.push(Effect::Reply(reply, Answer::Delete(Ok(None))));
                self.settle(Stored::absent(version), false, &mut out);
            }
            Ok(DeleteResult::Mismatch { current }) => {
                let version = if current.exists() { current.version } else { 0 };
                let error = Error::VersionMismatch { current: version };
                out.push(Effect::Reply(reply, Answer::Delete(Err(error))));
                self.settle(current, false, &mut out);
            }
            Err(StoreError::Indeterminate(reason)) => {
                log::warn!(
                    "delete of {} may or may not have happened ({reason}); checking",
                    self.id
                );
                out.push(Effect::Check { op });
                self.set_phase(Phase::Checking {
                    call: Call::Delete {
                        reply,
                        before,
                        op,
                        if_version,
                    },
                    asking: true,
                    deadline: now + CHECK_DEADLINE,
                });
                return out;
            }
            Err(e) => {
                log::warn!("delete of {} failed: {e}", self.id);
                out.push(Effect::Reply(
                    reply,
                    Answer::Delete(Err(Error::Unavailable)),
                ));
            }
        }
        self.carry_on(&mut out);
        out
    }

    /// The answer to [`Effect::Check`].
    pub fn checked(&mut self, result: Result<Checked, StoreError>, now: Instant) -> Effects<R> {
        let mut out = Vec::new();
        let Phase::Checking { asking: true, .. } = &self.phase else {
            log::error!("record {}: a check answer with no check in flight", self.id);
            return out;
        };
        let Phase::Checking { call, deadline, .. } =
            std::mem::replace(&mut self.phase, Phase::Ready)
        else {
            unreachable!("checked above");
        };
        self.epoch += 1;
        let checked = match result {
            Ok(checked) => checked,
            Err(e) if now < deadline => {
                log::debug!("checking the last call on {} failed: {e}", self.id);
                self.set_phase(Phase::Checking {
                    call,
                    asking: false,
                    deadline,
                });
                out.push(Self::arm(Timer::Check, CHECK_RETRY, self.epoch));
                return out;
            }
            Err(e) => {
                log::warn!(
                    "could not find out whether the last call on {} was applied: {e}",
                    self.id
                );
                self.give_up(call, &mut out);
                self.owe_reload(&mut out);
                return out;
            }
        };
        match call {
            Call::Write { plan, .. } if checked.last_op => {
                self.commit(plan, &mut out);
                self.settle(checked.current, false, &mut out);
            }
            Call::Write { plan, expected, .. } if checked.current.expect() == expected => {
                // Nothing changed since we sent it, and the store answers in order: the write
                // was never applied.
                fail_writes(plan, Error::Unavailable, &mut out);
            }
            Call::Delete { reply, .. } if checked.last_op => {
                self.delete_applied(reply, checked.current.version, &mut out);
            }
            Call::Delete { reply, before, .. } if checked.current == before => {
                // Nothing changed since it was sent (a conditional delete that did not match
                // also changes nothing; asking again finds out).
                out.push(Effect::Reply(
                    reply,
                    Answer::Delete(Err(Error::Unavailable)),
                ));
            }
            Call::Delete { reply, before, .. }
                if before.exists() && checked.current.version < before.version =>
            {
                // The store lost the record meanwhile (Redis restarted empty): whether or not
                // our delete ran, deleting it is what was asked, so make it true.
                self.deleted_over_lost_data(reply, before.version, &mut out);
                return out;
            }
            Call::Delete { reply, before, .. } if !checked.current.exists() => {
                // Gone at the version we knew (someone's delete, maybe ours), or it never was.
                let known = before.exists() && checked.current.version == before.version;
                let answer = Ok(known.then_some(before.version));
                out.push(Effect::Reply(reply, Answer::Delete(answer)));
                self.settle(checked.current, false, &mut out);
            }
            call => {
                // Others changed the record since: ours may be among the changes or not.
                self.give_up(call, &mut out);
                // Whatever was applied is persisted: the state now includes it if it was.
                if let Some(value) = &checked.current.value {
                    out.push(Effect::Persist {
                        value: Arc::clone(value),
                        version: checked.current.version,
                    });
                }
                self.settle(checked.current, false, &mut out);
            }
        }
        self.carry_on(&mut out);
        out
    }

    /// The answer to [`Effect::Load`].
    pub fn loaded(&mut self, result: Result<Stored, StoreError>) -> Effects<R> {
        let mut out = Vec::new();
        if !matches!(self.phase, Phase::Loading) {
            log::error!("record {}: a load answer with no load in flight", self.id);
            return out;
        }
        self.set_phase(Phase::Ready);
        match result {
            Ok(current) => {
                self.stale = false;
                self.settle(current, false, &mut out);
            }
            Err(e) => {
                log::warn!("reloading {} failed: {e}", self.id);
                self.owe_reload(&mut out);
            }
        }
        self.carry_on(&mut out);
        out
    }

    /// The answer to [`Effect::WriteBack`]: how many records were written (0 or 1).
    pub fn written_back(&mut self, result: Result<usize, StoreError>) -> Effects<R> {
        let mut out = Vec::new();
        let Phase::WritingBack { record } = std::mem::replace(&mut self.phase, Phase::Ready) else {
            log::error!(
                "record {}: a write-back answer with none in flight",
                self.id
            );
            return out;
        };
        self.epoch += 1;
        match result {
            Ok(1) => {
                // Subscribers move to the new version with the value they have (a resync).
                self.record = record;
                self.forget_history();
                if let Some(value) = &self.record.value {
                    let (value, version) = (Arc::clone(value), self.record.version);
                    out.push(Effect::Resync { value, version });
                }
            }
            // The store has something as new meanwhile: read it.
            Ok(_) => self.reload(&mut out),
            Err(e) => {
                log::warn!("writing back {} failed: {e}", self.id);
                self.owe_reload(&mut out);
            }
        }
        self.carry_on(&mut out);
        out
    }

    // ---- published changes and timers -------------------------------------------------

    /// A change published for this record.
    pub fn remote(&mut self, change: RemoteChange) -> Effects<R> {
        let mut out = Vec::new();
        if self.busy() {
            self.backlog.push_back(change);
        } else {
            self.apply_remote(change, &mut out);
            self.pump(&mut out);
        }
        out
    }

    /// A timer asked for with [`Effect::Timer`] fired.
    pub fn timer(&mut self, timer: Timer, epoch: u64) -> Effects<R> {
        let mut out = Vec::new();
        match timer {
            Timer::Reload => {
                if !self.stale {
                    return out;
                }
                if self.busy() {
                    out.push(Self::arm(Timer::Reload, RELOAD_RETRY, self.epoch));
                } else if matches!(self.phase, Phase::Ready | Phase::CatchingUp { .. }) {
                    self.reload(&mut out);
                }
            }
            _ if epoch != self.epoch => {}
            Timer::CatchUp => {
                if let Phase::CatchingUp { target } = self.phase {
                    log::debug!(
                        "record {}: published versions up to {target} did not arrive; reloading",
                        self.id
                    );
                    self.reload(&mut out);
                }
            }
            Timer::Check => {
                if let Phase::Checking { call, asking, .. } = &mut self.phase
                    && !*asking
                {
                    *asking = true;
                    out.push(Effect::Check { op: call.op() });
                }
            }
        }
        self.pump(&mut out);
        out
    }

    fn apply_remote(&mut self, change: RemoteChange, out: &mut Effects<R>) {
        match change {
            RemoteChange::Updated {
                version,
                value,
                patch,
            } => {
                if version <= self.record.version {
                    // Our own echo, or older than what we hold.
                } else if version == self.record.version + 1 {
                    let previous = self.record.value.replace(Arc::clone(&value));
                    self.record.version = version;
                    // A patch only continues the history from a live value.
                    let patch = patch.filter(|_| previous.is_some());
                    self.remember(patch.clone(), version);
                    out.push(Effect::Update {
                        previous,
                        current: value,
                        version,
                        patch,
                    });
                } else {
                    self.reload(out);
                    return;
                }
            }
            RemoteChange::Deleted { version } => {
                let ours = &self.record;
                let news = version > ours.version || (version == ours.version && ours.exists());
                if news {
                    self.apply_deletion(version, out);
                }
            }
            RemoteChange::Resync => {
                self.reload(out);
                return;
            }
        }
        if let Phase::CatchingUp { target } = self.phase
            && self.record.version >= target
        {
            self.set_phase(Phase::Ready);
        }
    }

    // ---- transitions ------------------------------------------------------------------

    /// Reads the store (the caller made sure nothing is in flight).
    fn reload(&mut self, out: &mut Effects<R>) {
        out.push(Effect::Load);
        self.set_phase(Phase::Loading);
    }

    /// A reload could not happen: try again later.
    fn owe_reload(&mut self, out: &mut Effects<R>) {
        self.stale = true;
        out.push(Self::arm(Timer::Reload, RELOAD_RETRY, self.epoch));
    }

    /// Takes the store's state as the truth (see the module docs). `follow`: after a lost
    /// race the newer versions are on their way through the channel, so apply them as they
    /// come instead of jumping (subscribers then get every version).
    fn settle(&mut self, current: Stored, follow: bool, out: &mut Effects<R>) {
        let ours = &self.record;
        if current.version > ours.version {
            match &current.value {
                None => self.apply_deletion(current.version, out),
                Some(_) if follow => {
                    self.set_phase(Phase::CatchingUp {
                        target: current.version,
                    });
                    out.push(Self::arm(Timer::CatchUp, CATCH_UP_WAIT, self.epoch));
                }
                Some(value) => {
                    let (value, version) = (Arc::clone(value), current.version);
                    self.record = current;
                    self.forget_history();
                    out.push(Effect::Resync { value, version });
                }
            }
        } else if current.version == ours.version {
            match (&current.value, ours.exists()) {
                (None, true) => self.apply_deletion(current.version, out),
                (Some(value), false) => {
                    // Only a store that lost data and was written again gets here.
                    let (value, version) = (Arc::clone(value), current.version);
                    self.record = current;
                    self.forget_history();
                    out.push(Effect::Resync { value, version });
                }
                _ => {}
            }
        } else {
            // Lower than ours with no tombstone to explain it: the store lost data.
            log::warn!(
                "store lost record {} (has version {}, we had {}); writing ours back",
                self.id,
                current.version,
                ours.version
            );
            let back = Stored {
                value: ours.value.clone(),
                version: ours.version.saturating_add(WRITE_BACK_JUMP),
            };
            self.write_back(back, out);
        }
    }

    /// Writes `record` to a store that lost ours (see [`WRITE_BACK_JUMP`]).
    fn write_back(&mut self, record: Stored, out: &mut Effects<R>) {
        out.push(Effect::WriteBack(record.clone()));
        self.set_phase(Phase::WritingBack { record });
    }

    /// The record is gone as of `version`.
    fn apply_deletion(&mut self, version: Version, out: &mut Effects<R>) {
        self.record = Stored::absent(version.max(self.record.version));
        self.forget_history();
        out.push(Effect::Deleted {
            version: self.record.version,
        });
    }

    /// Our delete was applied at `version`.
    fn delete_applied(&mut self, reply: R, version: Version, out: &mut Effects<R>) {
        self.apply_deletion(version, out);
        out.push(Effect::PersistDeletion { version });
        out.push(Effect::Reply(reply, Answer::Delete(Ok(Some(version)))));
    }

    /// A delete of the record we hold at `version`, which the store lost: deleted as asked,
    /// and the tombstone written back so versions stay unique.
    fn deleted_over_lost_data(&mut self, reply: R, version: Version, out: &mut Effects<R>) {
        self.delete_applied(reply, version, out);
        self.write_back(Stored::absent(version.saturating_add(WRITE_BACK_JUMP)), out);
    }

    /// The store accepted the batch: apply each value in turn, persist, reply.
    fn commit(&mut self, plan: Plan<R>, out: &mut Effects<R>) {
        for new in plan.values {
            let previous = self.record.value.replace(Arc::clone(&new.value));
            self.record.version += 1;
            self.remember(new.patch.clone(), self.record.version);
            out.push(Effect::Update {
                previous,
                current: new.value,
                version: self.record.version,
                patch: new.patch,
            });
        }
        // Queued for the database before anyone is told the write succeeded, so a final
        // flush at shutdown always includes every acknowledged write.
        if let Some(value) = &self.record.value {
            out.push(Effect::Persist {
                value: Arc::clone(value),
                version: self.record.version,
            });
        }
        let batch = Plan {
            values: Vec::new(),
            ..plan
        };
        reply_planned(batch, out);
    }

    /// Lost a race: the writes go back in front, in order, to be computed again on the
    /// record's new state; those past their deadline fail.
    fn requeue(&mut self, plan: Plan<R>, now: Instant, out: &mut Effects<R>) {
        for write in plan.writes.into_iter().rev() {
            if now.duration_since(write.queued_at) < CONFLICT_DEADLINE {
                metrics().write(Counted::ConflictRetried);
                self.pending.push_front(Op::Write(write));
            } else {
                metrics().write(Counted::Failed);
                out.push(Effect::Reply(
                    write.reply,
                    Answer::Write(Err(Error::Conflict)),
                ));
            }
        }
    }

    /// Nobody can tell whether the call was applied.
    fn give_up(&mut self, call: Call<R>, out: &mut Effects<R>) {
        match call {
            Call::Write { plan, .. } => fail_writes(plan, Error::Unknown, out),
            Call::Delete { reply, .. } => {
                out.push(Effect::Reply(reply, Answer::Delete(Err(Error::Unknown))));
            }
        }
    }
}

/// Answers each write of an applied (or no-op) batch with its planned outcome.
fn reply_planned<R>(plan: Plan<R>, out: &mut Effects<R>) {
    for (write, outcome) in plan.writes.into_iter().zip(plan.outcomes) {
        metrics().write(match &outcome {
            Ok(WriteOutcome { changed: true, .. }) => Counted::Applied,
            Ok(_) => Counted::Unchanged,
            Err(_) => Counted::Refused,
        });
        out.push(Effect::Reply(write.reply, Answer::Write(outcome)));
    }
}

/// Answers every write of a batch that was not (or maybe not) applied.
fn fail_writes<R>(plan: Plan<R>, error: Error, out: &mut Effects<R>) {
    for (write, outcome) in plan.writes.into_iter().zip(plan.outcomes) {
        let answer = match outcome {
            // A write refused on its own stays refused whatever the store did.
            Err(refused) => Err(refused),
            Ok(_) => {
                metrics().write(Counted::Failed);
                Err(error.clone())
            }
        };
        out.push(Effect::Reply(write.reply, Answer::Write(answer)));
    }
}
