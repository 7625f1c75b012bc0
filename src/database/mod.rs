//! The persistence boundary: a durable copy of records in SQLite or PostgreSQL.
//!
//! The store (memory or Redis) is where records live while the server runs; the persistence
//! database is what survives a restart of everything. `PersistenceActor`
//! ([`crate::actors::persistence`]) batches writes to an adapter, and [`restore`] reads them
//! back into a store at startup.
//!
//! Every adapter keeps one table, `records(record_id, version, value, updated_at)`, and obeys
//! the same rules so the two backends are interchangeable:
//! - a row is only replaced by a higher version, unless the incoming row says it
//!   [replaces a deleted record](PersistedRecord::replaces_deleted) (versions restart at 1);
//! - a deletion removes a row only if the row's version is not newer than the deletion's: a
//!   late deletion from one instance never removes the row of a record another instance
//!   re-created since (re-creation continues after the tombstone's version);
//! - each batch is one transaction: all of it lands or none of it;
//! - `load_matching` pages through ids in byte order with a raw SQL `LIKE` pattern whose escape
//!   character is `\` on both backends.

mod batching;
pub(crate) mod buffer;
mod postgres;
mod restore;
mod rules;
mod sqlite;

pub use batching::PersistenceOptions;
pub use postgres::{PostgresAdapter, PostgresConfig, PostgresOptions};
pub use restore::{RestoreReport, restore};
pub use rules::{PersistOptions, PersistRule, adapter_from_config};
pub use sqlite::{SqliteAdapter, SqliteOptions};

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Future returned by adapter operations; boxed so the trait stays object-safe.
pub type PersistenceFuture<T> = Pin<Box<dyn Future<Output = Result<T, PersistenceError>> + Send>>;

/// A persistence failure. The text is for logs, never for clients.
///
/// It is `Clone` because one failed flush answers every caller that waited for it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PersistenceError {
    /// The database could not be reached (connect, pool or worker thread failure).
    #[error("persistence database unavailable: {0}")]
    Unavailable(String),
    /// The database was reached but refused a statement for a reason outside the rows (a
    /// missing table, permissions); retried, since an operator can fix it.
    #[error("persistence statement failed: {0}")]
    Database(String),
    /// The database refused the rows themselves (constraint or data error): the same rows
    /// will never be accepted. The actor then retries row by row and drops only those.
    #[error("persistence database rejected the data: {0}")]
    Rejected(String),
    /// A stored row could not be read back.
    #[error("record {id} is corrupt in the persistence database: {detail}")]
    Corrupt {
        /// The record.
        id: String,
        /// What was wrong.
        detail: String,
    },
    /// The caller passed something unusable (bad configuration, version out of range).
    #[error("invalid persistence request: {0}")]
    Invalid(String),
    /// The store refused records during a restore.
    #[error("store refused restored records: {0}")]
    Store(String),
    /// The persistence actor stopped before it could answer.
    #[error("persistence actor stopped")]
    Stopped,
}

/// One row of the `records` table as adapters write and read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistedRecord {
    /// The record id, as text.
    pub id: String,
    /// The record's version (at least 1).
    pub version: u64,
    /// The value serialized as JSON; shared so a retried batch is not re-serialized.
    pub value_json: Arc<str>,
    /// The record was deleted and re-created since the last write that could have reached the
    /// database, so its versions restarted at 1: the row is replaced whatever version it holds.
    /// Always `false` in rows read back by `load_matching`.
    pub replaces_deleted: bool,
}

/// The deletion of one record, as adapters apply it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistedDeletion {
    /// The record id, as text.
    pub id: String,
    /// The version the record had when it was deleted: a row at a higher version belongs to a
    /// later life of the record (re-created, maybe by another instance) and is kept.
    pub version: u64,
}

/// A durable table of records. Implementations must make each batch one transaction.
pub trait PersistenceAdapter: Send + Sync + 'static {
    /// Upserts `records` in one transaction: a row is written where the stored version is lower
    /// or absent, or unconditionally when the record `replaces_deleted`. The same id may appear
    /// more than once; [`newest_per_id`] decides which entry counts.
    ///
    /// Fails when the database is unreachable or refuses the statement; nothing is written then.
    fn store_batch(&self, records: Vec<PersistedRecord>) -> PersistenceFuture<()>;

    /// Removes, in one transaction, the row of each deletion whose stored version is at most
    /// the deletion's (absent ids are fine; a newer row is left alone).
    ///
    /// Fails when the database is unreachable or refuses the statement; nothing is removed then.
    fn delete_batch(&self, deletions: Vec<PersistedDeletion>) -> PersistenceFuture<()>;

    /// Whether this database cannot hold the character U+0000 in a string or key
    /// (PostgreSQL's `jsonb`). Writes of such values to records it persists are refused when
    /// they arrive ([`has_nul`]) rather than acknowledged and then left out of the database.
    fn refuses_nul(&self) -> bool {
        false
    }

    /// Up to `limit` rows whose id matches the SQL `LIKE` pattern (escape character `\`) and
    /// sorts after `after_id` in byte order, ordered by id: keyset pagination that stays
    /// correct while rows are written.
    ///
    /// Fails when the database is unreachable or a row cannot be read back.
    fn load_matching(
        &self,
        like_pattern: &str,
        after_id: Option<&str>,
        limit: usize,
    ) -> PersistenceFuture<Vec<PersistedRecord>>;
}

/// Shared handle on an adapter.
pub type SharedAdapter = Arc<dyn PersistenceAdapter>;

/// Collapses a batch to one entry per id, sorted by id.
///
/// Entries of one id are read in batch order: an entry that `replaces_deleted` starts a new life
/// and supersedes everything before it; otherwise the higher version wins. The kept entry
/// `replaces_deleted` if any entry of its life did, because the row of the old life must still
/// be replaced. Sorting makes concurrent writers lock rows in the same order (no deadlock on
/// PostgreSQL). PostgreSQL needs the dedupe: one `INSERT ... ON CONFLICT` cannot touch a row
/// twice.
pub fn newest_per_id(records: Vec<PersistedRecord>) -> Vec<PersistedRecord> {
    let mut newest: HashMap<String, PersistedRecord> = HashMap::with_capacity(records.len());
    for record in records {
        match newest.get_mut(&record.id) {
            None => {
                newest.insert(record.id.clone(), record);
            }
            Some(kept) if record.replaces_deleted => *kept = record,
            Some(kept) if record.version > kept.version => {
                let replaces_deleted = kept.replaces_deleted;
                *kept = record;
                kept.replaces_deleted = replaces_deleted;
            }
            Some(_) => {}
        }
    }
    let mut out: Vec<PersistedRecord> = newest.into_values().collect();
    out.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Whether `value` holds U+0000 in a string or an object key, which PostgreSQL `jsonb` cannot
/// store. Walks the value once with its own stack (no recursion, whatever the depth).
pub fn has_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::String(s) if s.contains('\0') => return true,
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                for (key, item) in map {
                    if key.contains('\0') {
                        return true;
                    }
                    stack.push(item);
                }
            }
            _ => {}
        }
    }
    false
}

/// A `LIKE` pattern matching every id that starts with `prefix` (its `%`, `_` and `\` escaped).
pub fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The literal text every id matching a `LIKE` pattern (escape `\`) starts with: the pattern
/// up to its first unescaped wildcard, escapes removed.
pub(crate) fn like_literal_prefix(pattern: &str) -> String {
    let mut prefix = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' | '_' => break,
            '\\' => match chars.next() {
                Some(escaped) => prefix.push(escaped),
                None => break,
            },
            c => prefix.push(c),
        }
    }
    prefix
}

/// The smallest string above every string that starts with `prefix`, in byte order: the
/// prefix with its last character incremented (UTF-8 keeps code point order in byte order and
/// is prefix-free). `None` when no such string exists (empty prefix, or only U+10FFFF).
pub(crate) fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// A version as the databases store it (`BIGINT`).
///
/// Fails for versions above `i64::MAX`, which no record reaches one change at a time.
pub(crate) fn version_to_db(id: &str, version: u64) -> Result<i64, PersistenceError> {
    i64::try_from(version).map_err(|_| {
        PersistenceError::Invalid(format!("version {version} of {id} does not fit in BIGINT"))
    })
}

/// A stored version read back; negative or zero means the row is corrupt.
pub(crate) fn version_from_db(id: &str, version: i64) -> Result<u64, PersistenceError> {
    match u64::try_from(version) {
        Ok(v) if v >= 1 => Ok(v),
        _ => Err(PersistenceError::Corrupt {
            id: id.to_owned(),
            detail: format!("version {version} is not positive"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, version: u64, value: &str, replaces_deleted: bool) -> PersistedRecord {
        PersistedRecord {
            id: id.to_owned(),
            version,
            value_json: Arc::from(value),
            replaces_deleted,
        }
    }

    #[test]
    fn newest_per_id_keeps_highest_version_sorted() {
        let out = newest_per_id(vec![
            rec("b", 2, "2", false),
            rec("a", 1, "1", false),
            rec("b", 5, "5", false),
            rec("b", 3, "3", false),
        ]);
        assert_eq!(out, vec![rec("a", 1, "1", false), rec("b", 5, "5", false)]);
    }

    #[test]
    fn newest_per_id_replaces_deleted_starts_a_new_life() {
        let out = newest_per_id(vec![
            rec("a", 5, "old", false),
            rec("a", 1, "new", true),
            rec("a", 2, "newer", false),
        ]);
        assert_eq!(out, vec![rec("a", 2, "newer", true)]);
        // A lower version after the re-creation is stale within the new life.
        let out = newest_per_id(vec![rec("a", 3, "x", true), rec("a", 2, "y", false)]);
        assert_eq!(out, vec![rec("a", 3, "x", true)]);
    }

    #[test]
    fn has_nul_looks_in_strings_and_keys_at_any_depth() {
        use serde_json::json;
        assert!(!has_nul(&json!({"a": ["b", 1, null, {"c": "d"}]})));
        assert!(has_nul(&json!("a\u{0}b")));
        assert!(has_nul(&json!({"a": [1, {"b": "\u{0}"}]})));
        assert!(has_nul(&json!({"a": {"k\u{0}": 1}})));
        // The six characters `\u0000` are not the character.
        assert!(!has_nul(&json!("\\u0000")));
        let mut deep = json!("\u{0}");
        for _ in 0..1_000 {
            deep = json!([deep]);
        }
        assert!(has_nul(&deep));
    }

    #[test]
    fn like_prefix_escapes_wildcards() {
        assert_eq!(like_prefix("user:"), "user:%");
        assert_eq!(like_prefix("a_b%c\\"), "a\\_b\\%c\\\\%");
    }

    #[test]
    fn like_bounds() {
        assert_eq!(like_literal_prefix("user:%"), "user:");
        assert_eq!(like_literal_prefix("a\\_b_c"), "a_b");
        assert_eq!(like_literal_prefix("%x"), "");
        assert_eq!(like_literal_prefix("exact"), "exact");
        assert_eq!(prefix_upper_bound("user:").as_deref(), Some("user;"));
        assert_eq!(
            prefix_upper_bound("a\u{D7FF}").as_deref(),
            Some("a\u{E000}")
        );
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound(""), None);
        for id in ["user:", "user:1", "user:\u{10FFFF}\u{10FFFF}", "user:zzz"] {
            assert!(id < "user;");
        }
    }

    #[test]
    fn versions_round_trip_and_reject_out_of_range() {
        assert_eq!(version_to_db("a", 7).ok(), Some(7));
        assert!(version_to_db("a", u64::MAX).is_err());
        assert_eq!(version_from_db("a", 7).ok(), Some(7));
        assert!(version_from_db("a", 0).is_err());
        assert!(version_from_db("a", -1).is_err());
    }
}
