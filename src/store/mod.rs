//! The store boundary: where record values and versions live.
//!
//! `RecordActor` is the only writer of a record within one process and always says which
//! version it expects to replace, so a store only has to compare and set atomically. Redis
//! makes that hold across processes too.

mod memory;

pub use memory::MemoryStore;

use crate::record::{RecordId, Version, Versioned};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

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
}

/// Shared handle on a store.
pub type SharedStore = Arc<dyn Store>;
