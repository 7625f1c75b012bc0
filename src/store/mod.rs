//! The store boundary: where record values and versions live.
//!
//! `RecordActor` is the only writer of a record within one process and always says which
//! version it expects to replace, so a store only has to compare and set atomically. Redis
//! makes that hold across processes too.
//!
//! Other instances' changes reach a `RecordActor` through [`Store::watch`]: the store calls
//! the actor's [`ChangeSink`] with every [`RemoteChange`] published for that record.
//!
//! # Layout
//! - `memory`: [`MemoryStore`], the embedded single-instance store.
//! - `keys`: [`RedisKeys`], every Redis key and channel name.
//! - `redis`: [`RedisStore`], the shared store for any number of instances, with its Lua
//!   scripts in `lua/`.
//! - `changes`: the JSON published on a record's channel, parsed into [`RemoteChange`].
//! - `router`: the task owning the pub/sub connection that feeds every [`ChangeSink`].
//! - `subscriptions`: the router's table of channels and sinks (pure data).

mod changes;
mod keys;
mod memory;
mod redis;
mod router;
mod subscriptions;

pub use keys::{DEFAULT_KEY_PREFIX, RedisKeys};
pub use memory::MemoryStore;
pub use redis::RedisStore;

use crate::record::{RecordId, Version, Versioned};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Future returned by store operations.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// A store failure. The text is for logs, never for clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or refused the command.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be read back.
    #[error("record {id} is corrupt in the store: {detail}")]
    Corrupt {
        /// The record.
        id: String,
        /// What was wrong.
        detail: String,
    },
}

/// The result of a compare-and-set write.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteResult {
    /// All values were stored; the record is now at this version.
    Applied {
        /// The version of the last value written.
        version: Version,
    },
    /// The record was not at the expected version; nothing was written.
    Conflict {
        /// What the store holds now.
        current: Option<Versioned>,
    },
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
    },
    /// The record was deleted; it had this version.
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
    /// The record's value and version, or `None` when absent.
    fn load(&self, id: &RecordId) -> StoreFuture<Option<Versioned>>;

    /// If the record is at `expected` (0 = absent), stores `values` as versions
    /// `expected + 1 ..= expected + n` (the last one stays) and publishes each; otherwise
    /// changes nothing and reports the current state.
    fn write(
        &self,
        id: &RecordId,
        expected: Version,
        values: Vec<Arc<Value>>,
    ) -> StoreFuture<WriteResult>;

    /// Removes the record; returns the version it had, or `None` if it was absent.
    fn delete(&self, id: &RecordId) -> StoreFuture<Option<Version>>;

    /// Writes restored records where the store has nothing newer; returns how many were written.
    fn restore(&self, records: Vec<(RecordId, Versioned)>) -> StoreFuture<usize>;

    /// Calls `sink` with every change published for the record from now on, until
    /// [`Store::unwatch`] with the returned token.
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
}

/// A store future that is already complete (answers known without a round trip).
pub(crate) fn ready<T: Send + 'static>(value: Result<T, StoreError>) -> StoreFuture<T> {
    Box::pin(std::future::ready(value))
}

/// Shared handle on a store.
pub type SharedStore = Arc<dyn Store>;
