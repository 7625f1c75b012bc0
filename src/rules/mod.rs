//! Write rules: what a writable exposure demands of every value stored under it, checked in
//! the record's actor against the value that *would be stored* (after a merge), so no write
//! path can go around them.
//!
//! - [`Schema`]: a JSON Schema (draft 2020-12) the value must satisfy (`ESCHEMA` otherwise).
//! - [`ValueGuard`]: the app's check of a client's proposed value against the current one
//!   ("only the owner may change `owner`").
//! - `ttl`: the record is deleted when it has not been written for that long.
//! - `max_value_bytes`: this exposure's own size limit, instead of the server's.
//!
//! The rules of a record are those of the first writable exposure covering its id (the one
//! that decides its writes); its record actor reads them when it starts.

mod schema;
mod value_guard;

pub use crate::error::Violation;
pub use schema::{LISTED_UP_TO, MAX_TEXT, MAX_VIOLATIONS, Schema};
pub use value_guard::{ProposedWrite, ValueGuard};

use std::sync::Arc;
use std::time::Duration;

/// The rules one writable exposure sets for the records it covers. Empty by default.
#[derive(Clone, Debug, Default)]
pub struct WriteRules {
    /// Every stored value must satisfy it (every write path, unless the server's own write
    /// opts out with [`crate::Records::write_record_unchecked`]).
    pub schema: Option<Arc<Schema>>,
    /// Decides each client write with its proposed value; server writes skip it.
    pub value_guard: Option<ValueGuard>,
    /// A write sets the record's deadline this far ahead; past it the record is deleted.
    pub ttl: Option<Duration>,
    /// Largest value stored, serialized, instead of `server.max_value_bytes`.
    pub max_value_bytes: Option<usize>,
}

impl WriteRules {
    /// Whether any rule is set.
    pub fn is_empty(&self) -> bool {
        self.schema.is_none()
            && self.value_guard.is_none()
            && self.ttl.is_none()
            && self.max_value_bytes.is_none()
    }
}
