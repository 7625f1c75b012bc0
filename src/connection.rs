//! A connection as guards and command handlers see it: its id and its metadata, and the
//! hook that decides what a client may set its own metadata to.

use crate::error::Result;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// A handle on one client connection. Cheap to clone; all clones share the metadata.
#[derive(Clone, Debug)]
pub struct Connection {
    id: Arc<str>,
    metadata: Arc<RwLock<Value>>,
    /// How many times the metadata was replaced: the session runs the read guards of its
    /// subscriptions again when this moves.
    changes: Arc<AtomicU64>,
}

impl Connection {
    /// A connection with the given id and metadata (set by authentication).
    pub fn new(id: impl Into<Arc<str>>, metadata: Value) -> Self {
        Connection {
            id: id.into(),
            metadata: Arc::new(RwLock::new(metadata)),
            changes: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The id pushed to the client in `mesh/assign-id`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A copy of the metadata (`null` for an anonymous connection).
    pub fn metadata(&self) -> Value {
        // A poisoned lock only means a writer panicked mid-assignment of a whole value; the
        // value itself is still a complete `Value`, so reading it is safe.
        self.metadata
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// One metadata field, if the metadata is an object that has it.
    pub fn metadata_field(&self, key: &str) -> Option<Value> {
        let guard = self
            .metadata
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.get(key).cloned()
    }

    /// Replaces the metadata. Only server-side code calls this: clients cannot (see PROTOCOL).
    /// The connection's subscriptions are then checked against their read guards again, and
    /// those no longer allowed end (`mesh/subscription-ended`).
    pub fn set_metadata(&self, metadata: Value) {
        *self
            .metadata
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = metadata;
        self.changes.fetch_add(1, Ordering::Release);
    }

    /// Changes with every [`Connection::set_metadata`].
    pub fn metadata_changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }
}

/// Makes connection ids that are unique within this process and unlikely to repeat across
/// restarts or instances (a random per-process prefix and a counter).
#[derive(Debug)]
pub struct ConnectionIds {
    prefix: u64,
    next: AtomicU64,
}

impl Default for ConnectionIds {
    fn default() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        hasher.write_u32(std::process::id());
        ConnectionIds {
            prefix: hasher.finish(),
            next: AtomicU64::new(1),
        }
    }
}

impl ConnectionIds {
    /// The next id, as text, and its numeric part (unique in this process).
    pub fn next(&self) -> (u64, String) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (n, format!("{:012x}-{n:x}", self.prefix & 0xffff_ffff_ffff))
    }
}

type HookFuture = Pin<Box<dyn Future<Output = Result<Value>> + Send>>;

/// Decides whether a client may change its own metadata, and to what.
#[derive(Clone)]
pub struct MetadataHook(Arc<dyn Fn(Connection, Value) -> HookFuture + Send + Sync>);

impl MetadataHook {
    /// A hook from an async function (connection, proposed metadata) → metadata to set.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(Connection, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value>> + Send + 'static,
    {
        MetadataHook(Arc::new(move |conn, value| Box::pin(f(conn, value))))
    }

    pub(crate) fn check(&self, conn: Connection, value: Value) -> HookFuture {
        (self.0)(conn, value)
    }
}
