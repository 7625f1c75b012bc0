//! What the core asks its actor to do ([`Effect`]), the answers it hands out ([`Reply`]), the
//! timers it sets ([`Timer`]) and the deadlines they follow ([`Deadlines`]).

use super::super::queue::{Replies, WriteOutcome};
use crate::error::Error;
use crate::metrics::Outcome as Counted;
use crate::model::Version;
use crate::rules::{ProposedWrite, ValueGuard};
use crate::store::{Expect, HistoryLimits, NewVersion, OpId, Stored};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Every deadline and pause the core asks for (the defaults are the server's; tests shorten
/// them, and the core never reads a clock: `now` comes with each event).
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// How long a write keeps being re-applied after losing races before it fails with
    /// `ECONFLICT`.
    pub conflict: Duration,
    /// How long to wait for the published changes that explain a lost race before reloading.
    pub catch_up: Duration,
    /// How long to keep asking the store what became of a call whose answer was lost.
    pub check: Duration,
    /// Pause between two such questions.
    pub check_retry: Duration,
    /// Pause before reading the store again after a failed reload.
    pub reload_retry: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            conflict: Duration::from_secs(10),
            catch_up: Duration::from_millis(500),
            check: Duration::from_secs(3),
            check_retry: Duration::from_millis(250),
            reload_retry: Duration::from_secs(1),
        }
    }
}

/// An answer and where it goes: a write's outcome only ever to a write's reply.
pub(crate) enum Reply<R: Replies> {
    /// A write's outcome.
    Write(R::Write, Result<WriteOutcome, Error>),
    /// A delete's outcome: the version deleted at, or `None` when there was no record.
    Delete(R::Delete, Result<Option<Version>, Error>),
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
pub(crate) enum Effect<R: Replies> {
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
        /// The record's new deadline is this far ahead (its exposure's `ttl_seconds`).
        ttl: Option<Duration>,
    },
    /// Run the app's async value guard on this proposal; answer with [`Core::guarded`].
    Guard {
        /// The guard.
        guard: ValueGuard,
        /// What it judges.
        proposal: ProposedWrite,
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
    /// Under `ack = "flushed"`, persist the record's current state again and let the replies
    /// after it in this step wait for it: the reply that follows changed nothing (a write of
    /// the value it already had, a delete of an absent record), so it vouches for a state that
    /// may not have landed in the database yet (a client retrying a write answered `EUNKNOWN`
    /// gets here). Asked for only when nothing was persisted before it in the step.
    Vouch,
    /// Answer a request.
    Reply(Reply<R>),
    /// Count a write's outcome (`mesh_writes_total`).
    Count(Counted),
}
