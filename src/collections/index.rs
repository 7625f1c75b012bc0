//! Which active collections a changed record can belong to, without looking at the others.
//!
//! Each collection's glob starts with literal text (`item:42:` for `item:42:*`). Entries are
//! filed under that prefix, grouped by its length, so a record id is checked against one hash
//! lookup per distinct prefix length in use, then the globs filed there: a write to a record
//! no collection can hold costs a few lookups, whatever the number of collections, and
//! nothing at all when none is active.

use crate::model::Glob;
use std::collections::{BTreeMap, HashMap};

/// The entries filed under one literal prefix: key, glob, entry.
type Filed<K, T> = Vec<(K, Glob, T)>;

/// Entries (`T`, such as an actor address) filed by glob.
#[derive(Debug)]
pub struct GlobIndex<K, T> {
    /// Prefix length → prefix → entries.
    by_prefix: BTreeMap<usize, HashMap<String, Filed<K, T>>>,
}

impl<K, T> Default for GlobIndex<K, T> {
    fn default() -> Self {
        GlobIndex {
            by_prefix: BTreeMap::new(),
        }
    }
}

impl<K: PartialEq, T: Clone> GlobIndex<K, T> {
    /// Files `entry` under `key`, for the records `glob` matches.
    pub fn insert(&mut self, key: K, glob: Glob, entry: T) {
        let prefix = glob.literal_prefix().to_owned();
        self.by_prefix
            .entry(prefix.len())
            .or_default()
            .entry(prefix)
            .or_default()
            .push((key, glob, entry));
    }

    /// Removes what was filed under `key` with `glob`.
    pub fn remove(&mut self, key: &K, glob: &Glob) {
        let prefix = glob.literal_prefix();
        let Some(level) = self.by_prefix.get_mut(&prefix.len()) else {
            return;
        };
        if let Some(entries) = level.get_mut(prefix) {
            entries.retain(|(k, _, _)| k != key);
            if entries.is_empty() {
                level.remove(prefix);
            }
        }
        if level.is_empty() {
            self.by_prefix.remove(&prefix.len());
        }
    }

    /// Whether nothing is filed.
    pub fn is_empty(&self) -> bool {
        self.by_prefix.is_empty()
    }

    /// Every entry filed.
    pub fn entries(&self) -> impl Iterator<Item = &T> {
        self.by_prefix
            .values()
            .flat_map(|level| level.values())
            .flat_map(|filed| filed.iter().map(|(_, _, entry)| entry))
    }

    /// The entries whose glob matches `id`.
    pub fn lookup(&self, id: &str) -> Vec<T> {
        let mut found = Vec::new();
        for (&len, level) in self.by_prefix.range(..=id.len()) {
            let Some(prefix) = id.get(..len) else {
                continue; // not a character boundary: no prefix of that length
            };
            if let Some(entries) = level.get(prefix) {
                found.extend(
                    entries
                        .iter()
                        .filter(|(_, glob, _)| glob.matches(id))
                        .map(|(_, _, entry)| entry.clone()),
                );
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(text: &str) -> Glob {
        Glob::new(text).unwrap()
    }

    #[test]
    fn only_collections_whose_glob_matches_are_found() {
        let mut index = GlobIndex::default();
        index.insert("a", glob("item:1:*"), 1);
        index.insert("b", glob("item:12:*"), 2);
        index.insert("c", glob("*"), 3);
        index.insert("d", glob("item:1:?"), 4);
        let mut found = index.lookup("item:1:x");
        found.sort();
        assert_eq!(found, vec![1, 3, 4]);
        assert_eq!(index.lookup("item:12:x").len(), 2);
        assert_eq!(index.lookup("user:1"), vec![3]);
    }

    #[test]
    fn removed_entries_are_gone_and_an_empty_index_says_so() {
        let mut index = GlobIndex::default();
        index.insert("a", glob("item:*"), 1);
        index.insert("b", glob("item:*"), 2);
        index.remove(&"a", &glob("item:*"));
        assert_eq!(index.lookup("item:x"), vec![2]);
        index.remove(&"b", &glob("item:*"));
        assert!(index.is_empty());
        assert!(index.lookup("item:x").is_empty());
    }

    #[test]
    fn ids_with_multibyte_characters_are_looked_up_safely() {
        let mut index = GlobIndex::default();
        index.insert("a", glob("ab*"), 1);
        assert!(index.lookup("aé").is_empty());
        assert_eq!(index.lookup("abé"), vec![1]);
    }
}
