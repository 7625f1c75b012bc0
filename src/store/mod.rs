//! The store boundary: where record values and versions live.
//!
//! `RecordActor` is the only writer of a record within one process and always says which
//! version it expects to replace, so a store only has to compare and set atomically. Redis
//! makes that hold across processes too.
//!
//! Other instances' changes reach a `RecordActor` through [`Store::watch`]: the store calls
//! the actor's [`ChangeSink`] with every [`RemoteChange`] published for that record by others
//! (a store may leave out the updates it wrote itself: their writer already has them).
//!
//! Records may expire: a write with a ttl or [`Store::set_expiry`] gives a record a deadline,
//! and [`Store::expire_due`], called every so often by a sweeper, deletes the records whose
//! deadline has passed exactly as [`Store::delete`] does (tombstone, publish, change feed).
//! Nothing deletes a record at its deadline by itself, so a record outlives it by up to the
//! caller's sweep interval (more while a sweep's claim on Redis is held by an instance that
//! died: see `redis::expiry`).
//!
//! Collections (live lists of the records whose ids match a [`Glob`]) read their members with
//! [`Store::list_matching`] and follow them with [`Store::watch_all`], which names every record
//! any instance changes ([`FeedEvent`]); the collection then loads what it needs.
//!
//! # Layout
//! - `memory/`: [`MemoryStore`], the embedded single-instance store.
//! - `redis/`: [`RedisStore`], the shared store for any number of instances, on one node or
//!   a Redis Cluster: its keys, Lua scripts, pub/sub routers, listing, change feed and
//!   preflight checks (see its own layout).
//! - `history`: [`History`], a record's recent changes bounded in count and bytes.
//! - `changes`: the JSON published on a record's channel, parsed into [`RemoteChange`].

mod changes;
mod history;
mod memory;
mod redis;

pub use history::History;
pub use memory::{MemoryLimits, MemoryStore, default_memory_budget};
pub use redis::{
    DEFAULT_KEY_PREFIX, EXPIRY_INDEX_SHARDS, KeyLayout, RedisKeys, RedisStore, Unsuitable,
};

use crate::model::{Glob, RecordId, Version, Versioned};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Future returned by store operations.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// A store failure. The text is for logs, never for clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or refused the command: nothing was changed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The command was sent but no answer came back (a timeout or a dropped connection): it
    /// may or may not have been applied. Find out with [`Store::check`].
    #[error("store outcome unknown: {0}")]
    Indeterminate(String),
    /// The store has no room for the write (the memory store's budget): nothing was changed.
    #[error("store full: {0}")]
    Full(String),
    /// More records match a listing than its caller allows ([`Store::list_matching`]'s
    /// `max`): nothing is returned, so a huge collection fails loudly instead of filling
    /// memory.
    #[error("more than {max} records match {pattern:?}")]
    TooMany {
        /// The most the caller allowed.
        max: usize,
        /// The glob, as given.
        pattern: String,
    },
    /// A stored value could not be read back.
    #[error("record {id} is corrupt in the store: {detail}")]
    Corrupt {
        /// The record.
        id: String,
        /// What was wrong.
        detail: String,
    },
}

/// What the store holds for one record.
///
/// A record that was deleted keeps its last version as a *tombstone* (`value` is `None`,
/// `version` the version it was deleted at), so a record created again continues at
/// tombstone + 1 and a version never names two values. `version` 0 means never written (or
/// lost by the store with everything else).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stored {
    /// The current value; `None` when the record does not exist.
    pub value: Option<Arc<Value>>,
    /// The current version, or the tombstone's when the record does not exist.
    pub version: Version,
}

impl Stored {
    /// A record that exists with this value at this version.
    pub fn live(value: Arc<Value>, version: Version) -> Self {
        Stored {
            value: Some(value),
            version,
        }
    }

    /// A record deleted at `version` (0: never written).
    pub fn absent(version: Version) -> Self {
        Stored {
            value: None,
            version,
        }
    }

    /// Whether the record exists.
    pub fn exists(&self) -> bool {
        self.value.is_some()
    }

    /// The value with its version, when the record exists.
    pub fn versioned(&self) -> Option<Versioned> {
        self.value.as_ref().map(|value| Versioned {
            value: Arc::clone(value),
            version: self.version,
        })
    }

    /// What a compare-and-set against this state expects.
    pub fn expect(&self) -> Expect {
        Expect {
            version: self.version,
            exists: self.exists(),
        }
    }
}

impl From<Versioned> for Stored {
    fn from(record: Versioned) -> Self {
        Stored::live(record.value, record.version)
    }
}

/// The state a compare-and-set requires: the version, and whether the record exists at it
/// (a live record at 7 and a record deleted at 7 are different states).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expect {
    /// The version (live or tombstone).
    pub version: Version,
    /// Whether the record exists.
    pub exists: bool,
}

/// Names one store write or delete, so that after a timeout [`Store::check`] can tell
/// whether it was applied. Unique across instances (random start, then counting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpId(pub u64);

impl OpId {
    /// A fresh id.
    pub fn next() -> Self {
        use std::hash::BuildHasher;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        static BASE: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
            // A per-process random start, so two instances never hand out the same ids.
            std::collections::hash_map::RandomState::new().hash_one(std::process::id())
        });
        OpId(BASE.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)))
    }
}

/// One new version in a write: its value, and the RFC 6902 patch from the version before
/// (`None` when the record did not exist before: creations start no history).
#[derive(Clone, Debug, PartialEq)]
pub struct NewVersion {
    /// The value.
    pub value: Arc<Value>,
    /// The patch from the previous version, kept in the record's history.
    pub patch: Option<Arc<Value>>,
}

impl NewVersion {
    /// A version with no patch (history is off, or the record is new).
    pub fn value(value: Arc<Value>) -> Self {
        NewVersion { value, patch: None }
    }
}

/// How much history a store keeps per record: the patches of the last `versions` changes,
/// fewer when they add up to more than `bytes`. `versions` 0 keeps none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HistoryLimits {
    /// Most changes kept.
    pub versions: usize,
    /// Most bytes of serialized patches kept.
    pub bytes: usize,
}

/// One change in a record's history: the patch that turned `version - 1` into `version`.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The version the patch leads to.
    pub version: Version,
    /// The RFC 6902 patch, as JSON.
    pub patch: Arc<Value>,
}

/// The result of a compare-and-set write.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteResult {
    /// All values were stored; the record is now at this version.
    Applied {
        /// The version of the last value written.
        version: Version,
    },
    /// The record was not in the expected state; nothing was written.
    Conflict {
        /// What the store holds now.
        current: Stored,
    },
}

/// The result of a delete.
#[derive(Debug, Clone, PartialEq)]
pub enum DeleteResult {
    /// The record existed and was deleted; its tombstone keeps this version.
    Deleted {
        /// The last version it had.
        version: Version,
    },
    /// The record did not exist; this is its tombstone version (0: never written).
    Absent {
        /// The tombstone version.
        version: Version,
    },
    /// The delete required a version the live record does not have; nothing changed.
    Mismatch {
        /// What the store holds.
        current: Stored,
    },
}

/// What one [`Store::expire_due`] call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpiredBatch {
    /// The records this call deleted, each with its tombstone version (its last version).
    pub deleted: Vec<(RecordId, Version)>,
    /// Records whose expiry was sent but whose answer was lost: each may or may not have been
    /// deleted (load it to know). Redis retries them after the claim's lease either way.
    pub unknown: Vec<RecordId>,
    /// More records were due than the call's `max`: call again soon.
    pub more: bool,
}

/// What [`Store::check`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The record now.
    pub current: Stored,
    /// Whether the operation asked about is the last one applied to the record.
    pub last_op: bool,
}

/// A change to a record that some instance (possibly this one) made through the store.
///
/// Delivered to [`ChangeSink`]s registered with [`Store::watch`]. Changes of one record arrive
/// in the order the store applied them, but a sink can see a change it already knows about
/// (its own write, or one older than the snapshot it loaded): ignore versions at or below
/// the one held, and reload on a jump ahead.
#[derive(Clone, Debug, PartialEq)]
pub enum RemoteChange {
    /// The record now has this value at this version.
    Updated {
        /// The new version.
        version: Version,
        /// The new value, parsed once and shared by every sink of the record.
        value: Arc<Value>,
        /// The patch from the version before, when the writer kept history.
        patch: Option<Arc<Value>>,
    },
    /// The record was deleted at this version (its tombstone).
    Deleted {
        /// The last version the record had.
        version: Version,
    },
    /// The watch connection was lost and re-established: changes may have been missed, so
    /// reload the record. Sent only once the record is watched again, so a load started on
    /// receipt cannot miss a later change.
    Resync,
}

/// Receives a record's [`RemoteChange`]s.
///
/// Called on the store's own task, one change at a time: it must return quickly and never
/// block (hand the change to an actor with `try_send`/`do_send` and return). A panic is caught
/// and logged, and that change is lost for that sink.
pub type ChangeSink = Arc<dyn Fn(RemoteChange) + Send + Sync>;

/// What [`Store::watch_all`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedEvent {
    /// This record was written, deleted or restored by some instance (this one included).
    /// Only the id: load the record to know its state now.
    Changed(RecordId),
    /// The feed's connection was lost and is back: changes may have been missed, so reload
    /// everything. Sent only once the feed is subscribed again, so a reload started on
    /// receipt cannot miss a later change.
    Resync,
}

/// Receives [`FeedEvent`]s. The same rules as a [`ChangeSink`]: called on the store's task or
/// on the writer's thread, it must return quickly and never block; a panic is caught and
/// logged, and that event is lost for that sink.
pub type FeedSink = Arc<dyn Fn(FeedEvent) + Send + Sync>;

/// Names one [`Store::watch`] registration, so that [`Store::unwatch`] removes exactly that
/// sink even when a newer actor for the same record has registered its own meanwhile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WatchToken(u64);

impl WatchToken {
    /// A token no other call in this process has received, for backends to hand out.
    pub fn next() -> Self {
        // Only uniqueness matters, not ordering with other memory operations.
        static NEXT: AtomicU64 = AtomicU64::new(1);
        WatchToken(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Where records live. Implementations must make each call atomic per record.
pub trait Store: Send + Sync + 'static {
    /// The record's state (value or tombstone).
    fn load(&self, id: &RecordId) -> StoreFuture<Stored>;

    /// The record's state and its history, read at one instant: the changes leading to
    /// `Stored::version`, oldest first, contiguous (possibly none).
    fn load_with_history(&self, id: &RecordId) -> StoreFuture<(Stored, Vec<Change>)>;

    /// If the record is in the `expected` state, stores `values` as versions
    /// `expected.version + 1 ..= expected.version + n` (the last one stays), appends their
    /// patches to the history (trimmed to `history`), remembers `op` as the record's last
    /// operation, and publishes each version; otherwise changes nothing and reports the current
    /// state. Fails with [`StoreError::Indeterminate`] when it cannot know whether the write
    /// happened.
    ///
    /// With `ttl`, an applied write (of at least one value) also sets the record's deadline to
    /// now + `ttl`, replacing any it had; without, the deadline stays as it was (and the write
    /// costs nothing more). A conflict changes no deadline.
    fn write(
        &self,
        id: &RecordId,
        expected: Expect,
        values: Vec<NewVersion>,
        op: OpId,
        history: HistoryLimits,
        ttl: Option<Duration>,
    ) -> StoreFuture<WriteResult>;

    /// Sets the live record's deadline to now + `ttl`, or clears it (`None`), leaving its value
    /// and version alone. `Ok(false)` when there is no live record (nothing changed).
    fn set_expiry(&self, id: &RecordId, ttl: Option<Duration>) -> StoreFuture<bool>;

    /// Deletes up to `max` records whose deadline has passed, each exactly as [`Store::delete`]
    /// would (tombstone at its version, history dropped, the deletion published to every
    /// instance's watchers and on the change feed).
    ///
    /// Safe to call from every instance at once: each record is deleted by one call only, and
    /// a record whose deadline was moved later since it became due is left alone. Fails only
    /// when nothing could be asked; records whose own expiry failed are retried by a later
    /// call.
    fn expire_due(&self, max: usize) -> StoreFuture<ExpiredBatch>;

    /// Deletes the record (only if it is live at `if_version`, when given), keeping its version
    /// as a tombstone, dropping its history and its deadline, and publishes the deletion.
    fn delete(
        &self,
        id: &RecordId,
        op: OpId,
        if_version: Option<Version>,
    ) -> StoreFuture<DeleteResult>;

    /// The record's state and whether `op` is the last operation applied to it: how a caller
    /// finds out what became of a write or delete that failed with
    /// [`StoreError::Indeterminate`]. Calls on one store are answered in order, so a check
    /// sent after an operation sees its effect if it had any.
    fn check(&self, id: &RecordId, op: OpId) -> StoreFuture<Checked>;

    /// Writes each record whose stored version (live or tombstone) is lower, drops its
    /// history (it would no longer lead to the restored value), and publishes it; returns how
    /// many were written. Used at startup (restore from the database) and by a
    /// `RecordActor` whose store lost data: a tombstone at or above the incoming version
    /// means the record was deleted since, and wins. A restored tombstone clears the record's
    /// deadline (as a delete does); a restored value keeps any deadline it had.
    fn restore(&self, records: Vec<(RecordId, Stored)>) -> StoreFuture<usize>;

    /// Calls `sink` with every change published for the record from now on, until
    /// [`Store::unwatch`] with the returned token. Updates written through this same store
    /// (or a clone) may be left out: their writer applied them already (the Redis store drops
    /// them unread). Deletions and resyncs are always delivered.
    ///
    /// Resolves once the backend delivers every later change, so a [`Store::load`] started
    /// after it cannot miss one. `sink` may be called before the future resolves. Fails
    /// with [`StoreError::Unavailable`] when the backend cannot confirm the watch; the sink is
    /// then not registered. Backends without other instances resolve at once and never call
    /// the sink.
    fn watch(&self, id: &RecordId, sink: ChangeSink) -> StoreFuture<WatchToken>;

    /// Stops calling the sink registered under `token`; other sinks of the record stay.
    /// Does nothing if the token is unknown.
    fn unwatch(&self, id: &RecordId, token: WatchToken);

    /// Every live record (tombstones excluded) whose id matches `glob`, with its value and
    /// version, in no particular order; each record is read at one instant, the list is not
    /// (start [`Store::watch_all`] first to hear of changes made meanwhile).
    ///
    /// Fails with [`StoreError::TooMany`] when more than `max` match, and with
    /// [`StoreError::Unavailable`] when the backend cannot be read.
    fn list_matching(&self, glob: &Glob, max: usize) -> StoreFuture<Vec<(RecordId, Versioned)>>;

    /// Calls `sink` with the id of every record written, deleted or restored from now on by
    /// any instance sharing this store (this one included), until [`Store::unwatch_all`] with
    /// the returned token; and with [`FeedEvent::Resync`] after its connection came back.
    ///
    /// Resolves once changes are delivered (on Redis: the subscription is confirmed), so a
    /// [`Store::list_matching`] started after it misses nothing. On Redis, only instances
    /// whose change feed is on publish (see `RedisStore::set_change_feed`). Fails with
    /// [`StoreError::Unavailable`] when the subscription cannot be confirmed; the sink is then
    /// not registered.
    fn watch_all(&self, sink: FeedSink) -> StoreFuture<WatchToken>;

    /// Stops calling the sink registered under `token` by [`Store::watch_all`]. Does nothing
    /// if the token is unknown.
    fn unwatch_all(&self, token: WatchToken);
}

/// Hands one feed event to one sink; a panicking sink loses the event, not the caller.
pub(crate) fn deliver_feed(sink: &FeedSink, event: FeedEvent) {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    if catch_unwind(AssertUnwindSafe(|| sink(event))).is_err() {
        log::error!("a change feed sink panicked; the event was dropped for it");
    }
}

/// A store future that is already complete (answers known without a round trip).
pub(crate) fn ready<T: Send + 'static>(value: Result<T, StoreError>) -> StoreFuture<T> {
    Box::pin(std::future::ready(value))
}

/// Shared handle on a store.
pub type SharedStore = Arc<dyn Store>;
