//! Every Redis key and channel name the store uses, built in this one place.
//!
//! A record `<id>` lives in two keys, exactly as Mesh lays them out so data written by
//! Mesh carries over unchanged:
//!
//! - `<prefix>record:<id>`: the value as JSON text;
//! - `<prefix>record-version:<id>`: its version as a decimal integer.
//!
//! A deleted record keeps its version key (the tombstone) and loses its value key; see
//! `lua/common.lua`. The id of the last write or delete is kept for a minute under
//! `<prefix>record-op:<id>`, so an instance whose call timed out can find out whether it
//! was applied.
//!
//! Recent changes (patches) are kept in `<prefix>record-history:<id>`, with their total size
//! in `<prefix>record-history-bytes:<id>`, written by the same scripts as the value.
//!
//! Changes are published on `<prefix>record-updates:<id>`, one channel per record, so an
//! instance only receives the records its sessions watch.
//!
//! # Why the two keys are not forced into one Cluster hash slot
//!
//! The write script touches both keys of a record, which Redis Cluster only allows when they
//! hash to the same slot. The usual fix is a `{...}` hash tag around the id, but Mesh's key
//! names have none, and adding one here would rename every key: existing Mesh data would no
//! longer be found. This store talks to a single Redis node through one
//! `ConnectionManager`, so slots never matter to it, and Redis Cluster is not supported.
//! Ids that already contain a `{tag}` (say `{user:1}:profile`) hash on that tag in both keys
//! and so land in one slot anyway.

use crate::record::RecordId;

/// Prefix Mesh uses, kept as the default so existing data is found.
pub const DEFAULT_KEY_PREFIX: &str = "mesh:";

/// Builds key and channel names under one prefix, so instances that share a Redis can be
/// kept apart (or made to share records) by configuration alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisKeys {
    prefix: String,
}

impl RedisKeys {
    /// Names under `prefix`, used verbatim (include any separator, as in `"mesh:"`).
    pub fn new(prefix: impl Into<String>) -> Self {
        RedisKeys {
            prefix: prefix.into(),
        }
    }

    /// The prefix every name starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Key holding the record's JSON value.
    pub fn value(&self, id: &RecordId) -> String {
        self.build("record:", id)
    }

    /// Key holding the record's version.
    pub fn version(&self, id: &RecordId) -> String {
        self.build("record-version:", id)
    }

    /// Key holding the id of the record's last write or delete (expires after a minute).
    pub fn last_op(&self, id: &RecordId) -> String {
        self.build("record-op:", id)
    }

    /// List holding the record's recent history: one `{"version","patch"}` JSON per change.
    pub fn history(&self, id: &RecordId) -> String {
        self.build("record-history:", id)
    }

    /// The total size in bytes of the history list's entries.
    pub fn history_bytes(&self, id: &RecordId) -> String {
        self.build("record-history-bytes:", id)
    }

    /// Pub/sub channel carrying the record's changes to other instances.
    pub fn channel(&self, id: &RecordId) -> String {
        self.build("record-updates:", id)
    }

    fn build(&self, kind: &str, id: &RecordId) -> String {
        let id = id.as_str();
        let mut name = String::with_capacity(self.prefix.len() + kind.len() + id.len());
        name.push_str(&self.prefix);
        name.push_str(kind);
        name.push_str(id);
        name
    }
}

impl Default for RedisKeys {
    /// Mesh's layout: names under `"mesh:"`.
    fn default() -> Self {
        RedisKeys::new(DEFAULT_KEY_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(raw: &str) -> RecordId {
        RecordId::parse(raw, 256).expect("valid id")
    }

    #[test]
    fn default_layout_matches_mesh() {
        let keys = RedisKeys::default();
        assert_eq!(keys.prefix(), "mesh:");
        assert_eq!(keys.value(&id("user:123")), "mesh:record:user:123");
        assert_eq!(
            keys.version(&id("user:123")),
            "mesh:record-version:user:123"
        );
        assert_eq!(
            keys.channel(&id("user:123")),
            "mesh:record-updates:user:123"
        );
    }

    #[test]
    fn prefix_is_used_verbatim() {
        let keys = RedisKeys::new("app1/");
        assert_eq!(keys.value(&id("a")), "app1/record:a");
        assert_eq!(keys.version(&id("a")), "app1/record-version:a");
        assert_eq!(keys.channel(&id("a")), "app1/record-updates:a");

        let bare = RedisKeys::new("");
        assert_eq!(bare.value(&id("a")), "record:a");
    }

    #[test]
    fn names_of_one_record_are_distinct() {
        let keys = RedisKeys::default();
        let rid = id("doc");
        let names = [keys.value(&rid), keys.version(&rid), keys.channel(&rid)];
        assert_ne!(names[0], names[1]);
        assert_ne!(names[1], names[2]);
        assert_ne!(names[0], names[2]);
    }

    #[test]
    fn ids_keep_their_hash_tag() {
        // Both keys carry the id's own `{tag}` untouched, so Redis hashes them alike.
        let keys = RedisKeys::default();
        let rid = id("{user:1}:profile");
        assert_eq!(keys.value(&rid), "mesh:record:{user:1}:profile");
        assert_eq!(keys.version(&rid), "mesh:record-version:{user:1}:profile");
    }

    #[test]
    fn unicode_ids_are_kept_as_is() {
        let keys = RedisKeys::default();
        assert_eq!(keys.value(&id("café/ü")), "mesh:record:café/ü");
    }
}
