//! Transitions shared by the events: settling on the store's state, deletions, write-backs,
//! committing or requeueing a batch, and answering writes.

use super::*;

impl<R: Replies> Core<R> {
    // ---- transitions ------------------------------------------------------------------

    /// Reads the store (the caller made sure nothing is in flight).
    pub(super) fn reload(&mut self, out: &mut Effects<R>) {
        out.push(Effect::Load);
        self.set_phase(Phase::Loading);
    }

    /// A reload could not happen: try again later.
    pub(super) fn owe_reload(&mut self, out: &mut Effects<R>) {
        self.stale = true;
        out.push(Self::arm(
            Timer::Reload,
            self.limits.deadlines.reload_retry,
            self.epoch,
        ));
    }

    /// Takes the store's state as the truth (see the module docs). `follow`: after a lost
    /// race the newer versions are on their way through the channel, so apply them as they
    /// come instead of jumping (subscribers then get every version).
    pub(super) fn settle(&mut self, current: Stored, follow: bool, out: &mut Effects<R>) {
        let ours = &self.record;
        if current.version > ours.version {
            match &current.value {
                None => self.apply_deletion(current.version, out),
                Some(_) if follow => {
                    self.set_phase(Phase::CatchingUp {
                        target: current.version,
                    });
                    out.push(Self::arm(
                        Timer::CatchUp,
                        self.limits.deadlines.catch_up,
                        self.epoch,
                    ));
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
    pub(super) fn write_back(&mut self, record: Stored, out: &mut Effects<R>) {
        out.push(Effect::WriteBack(record.clone()));
        self.set_phase(Phase::WritingBack { record });
    }

    /// The record is gone as of `version`.
    pub(super) fn apply_deletion(&mut self, version: Version, out: &mut Effects<R>) {
        self.record = Stored::absent(version.max(self.record.version));
        self.forget_history();
        out.push(Effect::Deleted {
            version: self.record.version,
        });
    }

    /// Our delete was applied at `version`.
    pub(super) fn delete_applied(
        &mut self,
        reply: R::Delete,
        version: Version,
        out: &mut Effects<R>,
    ) {
        self.apply_deletion(version, out);
        out.push(Effect::PersistDeletion { version });
        push_reply(out, Reply::Delete(reply, Ok(Some(version))));
    }

    /// A delete of the record we hold at `version`, which the store lost: deleted as asked,
    /// and the tombstone written back so versions stay unique.
    pub(super) fn deleted_over_lost_data(
        &mut self,
        reply: R::Delete,
        version: Version,
        out: &mut Effects<R>,
    ) {
        self.delete_applied(reply, version, out);
        self.write_back(Stored::absent(version.saturating_add(WRITE_BACK_JUMP)), out);
    }

    /// The store accepted the batch: apply each value in turn, persist, reply.
    pub(super) fn commit(&mut self, plan: Plan<R::Write>, out: &mut Effects<R>) {
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
    pub(super) fn requeue(&mut self, plan: Plan<R::Write>, now: Instant, out: &mut Effects<R>) {
        for write in plan.writes.into_iter().rev() {
            if now.duration_since(write.queued_at) < self.limits.deadlines.conflict {
                out.push(Effect::Count(Counted::ConflictRetried));
                self.pending.push_front(Op::Write(write));
            } else {
                out.push(Effect::Count(Counted::Failed));
                push_reply(out, Reply::Write(write.reply, Err(Error::Conflict)));
            }
        }
    }

    /// Nobody can tell whether the call was applied.
    pub(super) fn give_up(&mut self, call: Call<R>, out: &mut Effects<R>) {
        match call {
            Call::Write { plan, .. } => fail_writes(*plan, Error::Unknown, out),
            Call::Delete { reply, .. } => {
                push_reply(out, Reply::Delete(reply, Err(Error::Unknown)));
            }
        }
    }
}

/// Queues `reply`, after an [`Effect::Vouch`] when it changed nothing and nothing was persisted
/// earlier in this step (a persist earlier in the step already covers the state it vouches
/// for).
pub(super) fn push_reply<R: Replies>(out: &mut Effects<R>, reply: Reply<R>) {
    let changed_nothing = matches!(
        &reply,
        Reply::Write(_, Ok(WriteOutcome { changed: false, .. })) | Reply::Delete(_, Ok(None))
    );
    let covered = out.iter().any(|effect| {
        matches!(
            effect,
            Effect::Persist { .. } | Effect::PersistDeletion { .. } | Effect::Vouch
        )
    });
    if changed_nothing && !covered {
        out.push(Effect::Vouch);
    }
    out.push(Effect::Reply(reply));
}

/// Answers each write of an applied (or no-op) batch with its planned outcome.
pub(super) fn reply_planned<R: Replies>(plan: Plan<R::Write>, out: &mut Effects<R>) {
    for (write, outcome) in plan.writes.into_iter().zip(plan.outcomes) {
        out.push(Effect::Count(match &outcome {
            Ok(WriteOutcome { changed: true, .. }) => Counted::Applied,
            Ok(_) => Counted::Unchanged,
            Err(_) => Counted::Refused,
        }));
        push_reply(out, Reply::Write(write.reply, outcome));
    }
}

/// Answers every write of a batch that was not (or maybe not) applied.
pub(super) fn fail_writes<R: Replies>(plan: Plan<R::Write>, error: Error, out: &mut Effects<R>) {
    for (write, outcome) in plan.writes.into_iter().zip(plan.outcomes) {
        let answer = match outcome {
            // A write refused on its own stays refused whatever the store did.
            Err(refused) => Err(refused),
            Ok(_) => {
                out.push(Effect::Count(Counted::Failed));
                Err(error.clone())
            }
        };
        push_reply(out, Reply::Write(write.reply, answer));
    }
}
