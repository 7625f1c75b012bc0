//! The store's answers, published changes and timers: the events that move a record's
//! phase on.

use super::*;

impl<R: Replies> Core<R> {
    // ---- store answers ----------------------------------------------------------------

    /// The answer to [`Effect::Write`].
    pub fn written(&mut self, result: Result<WriteResult, StoreError>, now: Instant) -> Effects<R> {
        let mut out = Vec::new();
        let taken = self.take_phase(|phase| matches!(phase, Phase::Calling(Call::Write { .. })));
        let Some(Phase::Calling(Call::Write { plan, expected, op })) = taken else {
            log::error!("record {}: a write answer with no write in flight", self.id);
            return out;
        };
        match result {
            Ok(WriteResult::Applied { .. }) => self.commit(*plan, &mut out),
            Ok(WriteResult::Conflict { current }) => {
                self.requeue(*plan, now, &mut out);
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
                    deadline: now + self.limits.deadlines.check,
                });
                return out;
            }
            Err(StoreError::Full(reason)) => {
                log::debug!("write of {} refused: {reason}", self.id);
                fail_writes(*plan, Error::Limit(reason), &mut out);
            }
            Err(e) => {
                log::warn!("write of {} failed: {e}", self.id);
                fail_writes(*plan, Error::Unavailable, &mut out);
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
        let taken = self.take_phase(|phase| matches!(phase, Phase::Calling(Call::Delete { .. })));
        let Some(Phase::Calling(Call::Delete {
            reply,
            before,
            op,
            if_version,
        })) = taken
        else {
            log::error!(
                "record {}: a delete answer with no delete in flight",
                self.id
            );
            return out;
        };
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
                push_reply(&mut out, Reply::Delete(reply, Ok(None)));
                self.settle(Stored::absent(version), false, &mut out);
            }
            Ok(DeleteResult::Mismatch { current }) => {
                let version = if current.exists() { current.version } else { 0 };
                let error = Error::VersionMismatch { current: version };
                push_reply(&mut out, Reply::Delete(reply, Err(error)));
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
                    deadline: now + self.limits.deadlines.check,
                });
                return out;
            }
            Err(e) => {
                log::warn!("delete of {} failed: {e}", self.id);
                push_reply(&mut out, Reply::Delete(reply, Err(Error::Unavailable)));
            }
        }
        self.carry_on(&mut out);
        out
    }

    /// The answer to [`Effect::Check`].
    pub fn checked(&mut self, result: Result<Checked, StoreError>, now: Instant) -> Effects<R> {
        let mut out = Vec::new();
        let taken = self.take_phase(|phase| matches!(phase, Phase::Checking { asking: true, .. }));
        let Some(Phase::Checking { call, deadline, .. }) = taken else {
            log::error!("record {}: a check answer with no check in flight", self.id);
            return out;
        };
        let checked = match result {
            Ok(checked) => checked,
            Err(e) if now < deadline => {
                log::debug!("checking the last call on {} failed: {e}", self.id);
                self.set_phase(Phase::Checking {
                    call,
                    asking: false,
                    deadline,
                });
                out.push(Self::arm(
                    Timer::Check,
                    self.limits.deadlines.check_retry,
                    self.epoch,
                ));
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
                self.commit(*plan, &mut out);
                self.settle(checked.current, false, &mut out);
            }
            Call::Write { plan, expected, .. } if checked.current.expect() == expected => {
                // Nothing changed since we sent it, and the store answers in order: the write
                // was never applied.
                fail_writes(*plan, Error::Unavailable, &mut out);
            }
            Call::Delete { reply, .. } if checked.last_op => {
                self.delete_applied(reply, checked.current.version, &mut out);
            }
            Call::Delete { reply, before, .. } if checked.current == before => {
                // Nothing changed since it was sent (a conditional delete that did not match
                // also changes nothing; asking again finds out).
                push_reply(&mut out, Reply::Delete(reply, Err(Error::Unavailable)));
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
                push_reply(&mut out, Reply::Delete(reply, answer));
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
        if self
            .take_phase(|phase| matches!(phase, Phase::Loading))
            .is_none()
        {
            log::error!("record {}: a load answer with no load in flight", self.id);
            return out;
        }
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
        let taken = self.take_phase(|phase| matches!(phase, Phase::WritingBack { .. }));
        let Some(Phase::WritingBack { record }) = taken else {
            log::error!(
                "record {}: a write-back answer with none in flight",
                self.id
            );
            return out;
        };
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
            self.backlog.get_or_insert_default().push_back(change);
        } else {
            self.apply_remote(change, &mut out);
            self.pump(&mut out);
        }
        out
    }

    /// A timer asked for with [`Effect::Timer`] fired.
    pub fn timer(&mut self, timer: Timer, epoch: u64) -> Effects<R> {
        let mut out = Vec::new();
        // The reload timer belongs to no phase: it fires while a reload is owed (`stale`),
        // whatever happened meanwhile. The others belong to the phase that armed them.
        let current = epoch == self.epoch;
        match timer {
            Timer::Reload if self.stale => {
                if self.busy() {
                    out.push(Self::arm(
                        Timer::Reload,
                        self.limits.deadlines.reload_retry,
                        self.epoch,
                    ));
                } else {
                    self.reload(&mut out);
                }
            }
            Timer::Reload => return out,
            Timer::CatchUp if current => {
                if let Phase::CatchingUp { target } = self.phase {
                    log::debug!(
                        "record {}: published versions up to {target} did not arrive; reloading",
                        self.id
                    );
                    self.reload(&mut out);
                }
            }
            Timer::Check if current => {
                if let Phase::Checking { call, asking, .. } = &mut self.phase
                    && !*asking
                {
                    *asking = true;
                    out.push(Effect::Check { op: call.op() });
                }
            }
            // A timer of an earlier phase.
            Timer::CatchUp | Timer::Check => {}
        }
        self.pump(&mut out);
        out
    }

    pub(super) fn apply_remote(&mut self, change: RemoteChange, out: &mut Effects<R>) {
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
}
