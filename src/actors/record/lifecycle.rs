//! When a record actor may stop, as a small state machine without actix: the actor reports
//! what happens (it was used, a tick passed, its thread is leaving, the registry answered)
//! and does what the answer says. Pure code, unit-tested in `tests/lifecycle.rs`.
//!
//! Rules it keeps:
//! - An actor lingers: it asks to retire only after a whole tick (`linger`) in which nobody
//!   used it and it was idle (no subscriber, nothing queued or in flight).
//! - A leaving actor (its thread is stopping) asks as soon as it is idle, linger or not.
//! - One question to the registry at a time; only the registry's yes stops the actor (only
//!   the registry knows whether someone is about to send it a message).

/// What the actor must do after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Nothing.
    Stay,
    /// Ask the registry whether it may stop; answer with [`Lifecycle::answered`].
    AskToRetire,
    /// Check for idleness every short interval from now on ([`Lifecycle::leaving_check`]).
    CheckOften,
    /// Stop.
    Stop,
}

/// Where the actor stands on stopping.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    /// Someone used the actor since the last tick.
    used: bool,
    /// A question to the registry is out.
    asking: bool,
    /// Its thread is stopping.
    leaving: bool,
}

impl Default for Lifecycle {
    /// A new actor counts as used: it lingers a whole tick first.
    fn default() -> Self {
        Lifecycle {
            used: true,
            asking: false,
            leaving: false,
        }
    }
}

impl Lifecycle {
    /// A request reached the actor.
    pub fn used(&mut self) {
        self.used = true;
    }

    /// The linger tick: ask to retire if nobody used the actor for a whole tick and it is idle.
    pub fn tick(&mut self, idle: bool) -> Next {
        if std::mem::take(&mut self.used) || !idle {
            return Next::Stay;
        }
        self.ask()
    }

    /// The actor's thread is stopping: from now on it checks often and leaves once idle.
    pub fn leave(&mut self) -> Next {
        if std::mem::replace(&mut self.leaving, true) {
            return Next::Stay;
        }
        Next::CheckOften
    }

    /// The frequent check of a leaving actor.
    pub fn leaving_check(&mut self, idle: bool) -> Next {
        if self.leaving && idle {
            self.ask()
        } else {
            Next::Stay
        }
    }

    /// The registry answered the question.
    pub fn answered(&mut self, granted: bool) -> Next {
        self.asking = false;
        if granted { Next::Stop } else { Next::Stay }
    }

    fn ask(&mut self) -> Next {
        if std::mem::replace(&mut self.asking, true) {
            return Next::Stay;
        }
        Next::AskToRetire
    }
}
