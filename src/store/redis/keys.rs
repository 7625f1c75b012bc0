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
//! A record that expires has its deadline (Redis server time, milliseconds since the epoch, as
//! a decimal integer) in `<prefix>record-expires:<id>`, beside its other keys: only the
//! record's own scripts read or change it, atomically with the value.
//!
//! Finding the due records without reading every deadline takes an index that is not any one
//! record's: the sorted set `<prefix>record-expiry-index` (member: the raw id, score: a hint of
//! its deadline, never later than it). On a cluster it is split over
//! [`EXPIRY_INDEX_SHARDS`] sets `<prefix>record-expiry-index:{<n>}`, each in a slot of its
//! own, so one shard does not carry every record's expiry; a record's entry is in the set
//! [`RedisKeys::expiry_index`] names. How the index is kept and claimed: see `expiry.rs`.
//!
//! Changes are published on `<prefix>record-updates:<id>`, one channel per record, so an
//! instance only receives the records its sessions watch.
//!
//! When the change feed is on (`RedisStore::set_change_feed`), every script that changes a
//! record also publishes the raw id on `<prefix>collection:record-change` (one channel for
//! all records, Mesh's name and payload, so Mesh instances in the same fleet keep working),
//! which collections follow. It has no hash tag in either layout: on a cluster it goes by
//! classic `PUBLISH`, which every node delivers, never by `SPUBLISH`, which would tie it to
//! one slot.
//!
//! # Redis Cluster
//!
//! The scripts touch every key of a record and publish on its channel, which Redis Cluster only
//! allows when they all hash to one slot. Mesh's names have no hash tag, and adding one would
//! rename every key (existing data would no longer be found), so the layout is a choice:
//! [`KeyLayout::Flat`] (Mesh's, the default, for one Redis node) or [`KeyLayout::Tagged`] (for a
//! cluster), where the id is wrapped in a `{...}` hash tag, as in `mesh:record:{user:1}`. Every
//! name of one record then carries the same tag and lands in one slot.
//! `scripts/migrate-keys.sh` copies records from one layout to the other.

use crate::model::{Glob, RecordId};

/// Prefix Mesh uses, kept as the default so existing data is found.
pub const DEFAULT_KEY_PREFIX: &str = "mesh:";

/// How many sets the expiry index is split into in the cluster layout: enough to spread the
/// sweeps' load over the masters of a small cluster, few enough that an idle sweep (one call
/// per set) stays cheap.
pub const EXPIRY_INDEX_SHARDS: usize = 8;

/// How a record id is placed in its key and channel names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyLayout {
    /// `<prefix>record:<id>`: Mesh's names, for one Redis node.
    #[default]
    Flat,
    /// `<prefix>record:{<id>}`: every name of a record in one Redis Cluster hash slot.
    Tagged,
}

/// Builds key and channel names under one prefix, so instances that share a Redis can be
/// kept apart (or made to share records) by configuration alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisKeys {
    prefix: String,
    layout: KeyLayout,
}

impl RedisKeys {
    /// Names under `prefix`, used verbatim (include any separator, as in `"mesh:"`), in Mesh's
    /// flat layout.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self::with_layout(prefix, KeyLayout::Flat)
    }

    /// Names under `prefix` in the given layout.
    pub fn with_layout(prefix: impl Into<String>, layout: KeyLayout) -> Self {
        RedisKeys {
            prefix: prefix.into(),
            layout,
        }
    }

    /// The layout of the names.
    pub fn layout(&self) -> KeyLayout {
        self.layout
    }

    /// Why these names cannot keep a record in one cluster slot, if they cannot: a brace in
    /// the prefix would become (part of) the hash tag, and an id starting with `}` makes an
    /// empty tag, which Redis ignores (it then hashes the whole name).
    pub fn slot_problem(&self, id: Option<&RecordId>) -> Option<String> {
        if self.layout == KeyLayout::Flat {
            return None;
        }
        if self.prefix.contains(['{', '}']) {
            return Some(format!(
                "key prefix {:?} contains a brace, which Redis Cluster would take as the hash tag",
                self.prefix
            ));
        }
        match id {
            Some(id) if id.as_str().starts_with('}') => Some(format!(
                "record id {id:?} starts with '}}', which Redis Cluster cannot keep in one slot"
            )),
            _ => None,
        }
    }

    /// The original id of a value key name in this layout (for tools that scan keys).
    pub fn id_of_value_key<'a>(&self, key: &'a str) -> Option<&'a str> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix("record:")?;
        match self.layout {
            KeyLayout::Flat => Some(rest),
            KeyLayout::Tagged => rest.strip_prefix('{')?.strip_suffix('}'),
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

    /// Key holding the record's deadline, when it has one (see the module docs).
    pub fn expires(&self, id: &RecordId) -> String {
        self.build("record-expires:", id)
    }

    /// The expiry index set that holds `id`'s entry: the one set on one node, one of
    /// [`EXPIRY_INDEX_SHARDS`] by the id's hash slot on a cluster.
    pub fn expiry_index(&self, id: &RecordId) -> String {
        match self.layout {
            KeyLayout::Flat => self.expiry_index_shard(0),
            KeyLayout::Tagged => {
                let slot = usize::from(super::slots::of(&self.version(id)));
                self.expiry_index_shard(slot % EXPIRY_INDEX_SHARDS)
            }
        }
    }

    /// Every expiry index set, each once.
    pub fn expiry_indexes(&self) -> Vec<String> {
        let shards = match self.layout {
            KeyLayout::Flat => 1,
            KeyLayout::Tagged => EXPIRY_INDEX_SHARDS,
        };
        (0..shards).map(|n| self.expiry_index_shard(n)).collect()
    }

    fn expiry_index_shard(&self, n: usize) -> String {
        match self.layout {
            KeyLayout::Flat => format!("{}record-expiry-index", self.prefix),
            KeyLayout::Tagged => format!("{}record-expiry-index:{{{n}}}", self.prefix),
        }
    }

    /// Pub/sub channel carrying the record's changes to other instances.
    pub fn channel(&self, id: &RecordId) -> String {
        self.build("record-updates:", id)
    }

    /// Pub/sub channel naming every changed record (the change feed; see the module docs).
    pub fn feed_channel(&self) -> String {
        format!("{}collection:record-change", self.prefix)
    }

    /// The `SCAN MATCH` pattern of the value keys of records whose id `glob` matches: the
    /// prefix escaped (it is taken literally), the glob where the id goes. It may also match
    /// a few other keys (see [`Glob::redis_pattern`]): check each id found with the glob.
    pub fn value_match(&self, glob: &Glob) -> String {
        let ids = glob.redis_pattern();
        match self.layout {
            KeyLayout::Flat => format!("{}record:{ids}", Glob::escape(&self.prefix)),
            KeyLayout::Tagged => format!("{}record:{{{ids}}}", Glob::escape(&self.prefix)),
        }
    }

    fn build(&self, kind: &str, id: &RecordId) -> String {
        let id = id.as_str();
        let mut name = String::with_capacity(self.prefix.len() + kind.len() + id.len() + 2);
        name.push_str(&self.prefix);
        name.push_str(kind);
        match self.layout {
            KeyLayout::Flat => name.push_str(id),
            KeyLayout::Tagged => {
                name.push('{');
                name.push_str(id);
                name.push('}');
            }
        }
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
    fn tagged_layout_puts_a_record_in_one_slot() {
        let keys = RedisKeys::with_layout("mesh:", KeyLayout::Tagged);
        let rid = id("user:1");
        assert_eq!(keys.value(&rid), "mesh:record:{user:1}");
        assert_eq!(keys.version(&rid), "mesh:record-version:{user:1}");
        assert_eq!(keys.channel(&rid), "mesh:record-updates:{user:1}");
        let slot = super::super::slots::of(&keys.value(&rid));
        for name in [
            keys.version(&rid),
            keys.last_op(&rid),
            keys.history(&rid),
            keys.history_bytes(&rid),
            keys.expires(&rid),
            keys.channel(&rid),
        ] {
            assert_eq!(super::super::slots::of(&name), slot, "{name}");
        }
        assert_eq!(keys.id_of_value_key("mesh:record:{user:1}"), Some("user:1"));
        assert_eq!(keys.id_of_value_key("mesh:record-version:{user:1}"), None);
        assert_eq!(keys.slot_problem(Some(&rid)), None);
        assert!(keys.slot_problem(Some(&id("}x"))).is_some());
        assert!(
            RedisKeys::with_layout("a{", KeyLayout::Tagged)
                .slot_problem(None)
                .is_some()
        );
        assert_eq!(RedisKeys::new("a{").slot_problem(Some(&id("}x"))), None);
    }

    #[test]
    fn the_expiry_index_is_one_set_on_a_node_and_spread_on_a_cluster() {
        let flat = RedisKeys::new("p:");
        assert_eq!(flat.expires(&id("a")), "p:record-expires:a");
        assert_eq!(flat.expiry_index(&id("a")), "p:record-expiry-index");
        assert_eq!(flat.expiry_indexes(), ["p:record-expiry-index"]);
        let tagged = RedisKeys::with_layout("p:", KeyLayout::Tagged);
        assert_eq!(tagged.expires(&id("a")), "p:record-expires:{a}");
        let all = tagged.expiry_indexes();
        assert_eq!(all.len(), EXPIRY_INDEX_SHARDS);
        let slots: std::collections::BTreeSet<u16> =
            all.iter().map(|key| super::super::slots::of(key)).collect();
        assert_eq!(slots.len(), EXPIRY_INDEX_SHARDS, "one slot per set");
        // Every id's set is one of them, and ids spread over all of them.
        let used: std::collections::BTreeSet<String> = (0..200)
            .map(|n| tagged.expiry_index(&id(&format!("r:{n}"))))
            .collect();
        assert_eq!(used.into_iter().collect::<Vec<_>>(), {
            let mut sorted = all.clone();
            sorted.sort();
            sorted
        });
    }

    #[test]
    fn the_feed_channel_is_meshs() {
        assert_eq!(
            RedisKeys::default().feed_channel(),
            "mesh:collection:record-change"
        );
        assert_eq!(
            RedisKeys::with_layout("p:", KeyLayout::Tagged).feed_channel(),
            "p:collection:record-change"
        );
    }

    #[test]
    fn value_key_patterns_escape_the_prefix() {
        let glob = Glob::new("item:*").unwrap();
        assert_eq!(
            RedisKeys::default().value_match(&glob),
            "mesh:record:item:*"
        );
        assert_eq!(
            RedisKeys::new("a*[b]?\\:").value_match(&glob),
            "a\\*\\[b\\]\\?\\\\:record:item:*"
        );
        assert_eq!(
            RedisKeys::with_layout("mesh:", KeyLayout::Tagged).value_match(&glob),
            "mesh:record:{item:*}"
        );
    }

    #[test]
    fn unicode_ids_are_kept_as_is() {
        let keys = RedisKeys::default();
        assert_eq!(keys.value(&id("café/ü")), "mesh:record:café/ü");
    }
}
