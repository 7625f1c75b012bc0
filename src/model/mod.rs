//! Records as pure data: ids, versions, write strategies, push frames and the globs that
//! select them. No actix here.

mod diff;
mod frames;
mod glob;
mod strategy;

pub use diff::{bounded_diff, change_patch, replace_all, shorter_patch};
pub use frames::{Frame, deleted_frame, full_frame, patch_frame};
pub use glob::Glob;
pub use strategy::{Strategy, apply_strategy};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::sync::Arc;

/// Longest record id accepted unless configured otherwise, in bytes.
pub const DEFAULT_MAX_RECORD_ID_BYTES: usize = 256;

/// A record's id, such as `user:123`. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId(Arc<str>);

/// Ids compare, hash and order as their text, so a map keyed by id can be searched by `&str`.
impl std::borrow::Borrow<str> for RecordId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl RecordId {
    /// Validates an id: non-empty, at most `max_bytes`, no control characters.
    ///
    /// Fails with [`crate::Error::Invalid`] naming the problem.
    pub fn parse(raw: &str, max_bytes: usize) -> crate::Result<Self> {
        if raw.is_empty() {
            return Err(crate::Error::invalid("recordId must not be empty"));
        }
        if raw.len() > max_bytes {
            return Err(crate::Error::invalid(format!(
                "recordId is longer than {max_bytes} bytes"
            )));
        }
        if raw.chars().any(char::is_control) {
            return Err(crate::Error::invalid(
                "recordId must not contain control characters",
            ));
        }
        Ok(RecordId(Arc::from(raw)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordId({:?})", &*self.0)
    }
}

/// A record's version: 0 means absent, every change adds exactly one.
pub type Version = u64;

/// A value together with the version it has.
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned {
    /// The JSON value, shared so fan-out and the store never copy it.
    pub value: Arc<Value>,
    /// Its version (at least 1 for a stored record).
    pub version: Version,
}

/// The length of `value` serialized as JSON, without building the text.
pub fn serialized_len(value: &impl serde::Serialize) -> usize {
    let mut counter = ByteCounter {
        count: 0,
        limit: usize::MAX,
    };
    // Counting bytes cannot fail below the limit: the writer never errors.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.count
}

/// Whether `value` serialized as JSON is longer than `limit` bytes. Stops counting once past
/// the limit, so asking about a large value costs about `limit`, not its whole size.
pub fn serializes_longer_than(value: &impl serde::Serialize, limit: usize) -> bool {
    let mut counter = ByteCounter { count: 0, limit };
    // The counter errors exactly when the limit is passed.
    serde_json::to_writer(&mut counter, value).is_err()
}

/// Counts bytes written to it; fails once more than `limit` have been written.
struct ByteCounter {
    count: usize,
    limit: usize,
}

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.count += buf.len();
        if self.count > self.limit {
            return Err(std::io::Error::other("limit passed"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How a subscriber wants updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The whole value on every change.
    #[default]
    Full,
    /// An RFC 6902 patch from the previous version.
    Patch,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lengths_are_counted_as_serialized() {
        let value = json!({"name": "Ada", "tags": ["a", "é"], "n": 12.5});
        let text = serde_json::to_string(&value).unwrap();
        assert_eq!(serialized_len(&value), text.len());
        assert!(serializes_longer_than(&value, text.len() - 1));
        assert!(!serializes_longer_than(&value, text.len()));
        assert!(!serializes_longer_than(&json!(null), 4));
    }
}
