//! A glob collection's members in order, and the window of the first `limit` that its
//! subscribers see. Pure data: the collection actor feeds it the records its glob matches and
//! fans out what [`Membership::apply`] reports.
//!
//! Order: ascending by the value at the sort pointer (see [`SortKey`]), ties and unsorted
//! collections by record id. Computed once per change for every subscriber.

use crate::model::{RecordId, Version, Versioned};
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Where a member sorts: the value at the sort pointer, or none. Values order by type first
/// (null, booleans, numbers, strings, arrays, objects), then by value (arrays and objects by
/// their JSON text); members without the field come after all others.
#[derive(Clone, Debug, PartialEq)]
pub struct SortKey(Option<Value>);

impl SortKey {
    fn of(value: &Value, pointer: Option<&str>) -> SortKey {
        SortKey(pointer.and_then(|p| value.pointer(p)).cloned())
    }
}

fn rank(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

fn compare_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            a.total_cmp(&b)
        }
        (Value::String(a), Value::String(b)) => a.cmp(b),
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => {
            a.to_string().cmp(&b.to_string())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

impl Eq for SortKey {}

impl Ord for SortKey {
    fn cmp(&self, other: &Self) -> Ordering {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => compare_values(a, b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }
}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One member: its value, version and place in the order.
#[derive(Clone, Debug)]
pub struct Member {
    /// The record's value.
    pub value: Arc<Value>,
    /// The record's version.
    pub version: Version,
    key: SortKey,
}

/// What one batch of changes did to the window.
#[derive(Debug, Default, PartialEq)]
pub struct WindowChange {
    /// Ids that entered the window, in window order.
    pub added: Vec<RecordId>,
    /// Ids that left it (deleted, or pushed out by the limit).
    pub removed: Vec<RecordId>,
    /// Ids whose value changed and that are in the window now (entered ones included),
    /// with what they were before (`None` when they were not members).
    pub updated: Vec<(RecordId, Option<Versioned>)>,
}

impl WindowChange {
    /// Whether subscribers have anything to hear.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.updated.is_empty()
    }
}

/// Every matching record, ordered, and the window (see the module docs).
#[derive(Debug)]
pub struct Membership {
    sort: Option<String>,
    limit: Option<usize>,
    members: HashMap<RecordId, Member>,
    order: BTreeSet<(SortKey, RecordId)>,
    window: HashSet<RecordId>,
}

impl Membership {
    /// An empty membership sorted by the value at JSON pointer `sort` (by id when none),
    /// showing the first `limit` (all when none).
    pub fn new(sort: Option<String>, limit: Option<usize>) -> Self {
        Membership {
            sort,
            limit,
            members: HashMap::new(),
            order: BTreeSet::new(),
            window: HashSet::new(),
        }
    }

    /// The member `id`, if it is one.
    pub fn get(&self, id: &RecordId) -> Option<&Member> {
        self.members.get(id)
    }

    /// How many records match (the window may show fewer).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether no record matches.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every member's id.
    pub fn ids(&self) -> Vec<RecordId> {
        self.members.keys().cloned().collect()
    }

    /// The ids in the window, in order.
    pub fn window(&self) -> Vec<RecordId> {
        let shown = self.limit.unwrap_or(usize::MAX);
        self.order
            .iter()
            .take(shown)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// Whether `id` is in the window.
    pub fn shows(&self, id: &RecordId) -> bool {
        self.window.contains(id)
    }

    /// Applies the current state of each record in `batch` (`None`: absent or deleted) and
    /// says what changed in the window. A state older than the one held is ignored.
    pub fn apply(&mut self, batch: Vec<(RecordId, Option<Versioned>)>) -> WindowChange {
        let mut touched = Vec::new();
        for (id, state) in batch {
            let held = self.members.get(&id).map_or(0, |m| m.version);
            match state {
                Some(record) if record.version > held => {
                    let before = self.remove(&id);
                    let key = SortKey::of(&record.value, self.sort.as_deref());
                    self.order.insert((key.clone(), id.clone()));
                    let member = Member {
                        value: record.value,
                        version: record.version,
                        key,
                    };
                    self.members.insert(id.clone(), member);
                    touched.push((id, before));
                }
                Some(_) => {}
                None => {
                    if let Some(before) = self.remove(&id) {
                        touched.push((id, Some(before)));
                    }
                }
            }
        }
        let window = self.window();
        let now: HashSet<RecordId> = window.iter().cloned().collect();
        let mut change = WindowChange {
            added: window
                .iter()
                .filter(|id| !self.window.contains(*id))
                .cloned()
                .collect(),
            removed: self.window.difference(&now).cloned().collect(),
            updated: Vec::new(),
        };
        change.removed.sort();
        change.updated = touched
            .into_iter()
            .filter(|(id, _)| now.contains(id))
            .collect();
        self.window = now;
        change
    }

    /// Removes `id`, returning what it was.
    fn remove(&mut self, id: &RecordId) -> Option<Versioned> {
        let old = self.members.remove(id)?;
        self.order.remove(&(old.key, id.clone()));
        Some(Versioned {
            value: old.value,
            version: old.version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(text: &str) -> RecordId {
        RecordId::parse(text, 64).unwrap()
    }

    fn live(text: &str, value: Value, version: Version) -> (RecordId, Option<Versioned>) {
        let record = Versioned {
            value: Arc::new(value),
            version,
        };
        (id(text), Some(record))
    }

    fn ids(list: &[&str]) -> Vec<RecordId> {
        list.iter().map(|t| id(t)).collect()
    }

    #[test]
    fn unsorted_members_are_in_id_order_and_every_change_is_reported() {
        let mut m = Membership::new(None, None);
        let first = m.apply(vec![live("b", json!(1), 1), live("a", json!(2), 3)]);
        assert_eq!(first.added, ids(&["a", "b"]));
        assert_eq!(first.updated, vec![(id("b"), None), (id("a"), None)]);
        let change = m.apply(vec![live("a", json!(5), 4), (id("b"), None)]);
        assert_eq!(change.added, vec![]);
        assert_eq!(change.removed, ids(&["b"]));
        let was = Versioned {
            value: Arc::new(json!(2)),
            version: 3,
        };
        assert_eq!(change.updated, vec![(id("a"), Some(was))]);
        assert_eq!(m.window(), ids(&["a"]));
    }

    #[test]
    fn stale_states_are_ignored() {
        let mut m = Membership::new(None, None);
        m.apply(vec![live("a", json!(1), 5)]);
        assert!(m.apply(vec![live("a", json!(0), 4)]).is_empty());
        assert_eq!(*m.get(&id("a")).unwrap().value, json!(1));
    }

    #[test]
    fn a_new_first_member_pushes_the_last_one_out_in_the_same_change() {
        let mut m = Membership::new(Some("/order".into()), Some(2));
        m.apply(vec![
            live("x", json!({"order": 2}), 1),
            live("y", json!({"order": 3}), 1),
            live("z", json!({"order": 4}), 1),
        ]);
        assert_eq!(m.window(), ids(&["x", "y"]));
        let change = m.apply(vec![live("w", json!({"order": 1}), 1)]);
        assert_eq!(change.added, ids(&["w"]));
        assert_eq!(change.removed, ids(&["y"]));
        assert_eq!(change.updated, vec![(id("w"), None)]);
        assert_eq!(m.window(), ids(&["w", "x"]));
    }

    #[test]
    fn a_value_change_can_move_a_member_out_of_the_window() {
        let mut m = Membership::new(Some("/order".into()), Some(1));
        m.apply(vec![
            live("x", json!({"order": 1}), 1),
            live("y", json!({"order": 2}), 1),
        ]);
        let change = m.apply(vec![live("x", json!({"order": 9}), 2)]);
        assert_eq!(change.added, ids(&["y"]));
        assert_eq!(change.removed, ids(&["x"]));
        assert!(change.updated.is_empty());
        // Deleting the one shown brings the next one in.
        let change = m.apply(vec![(id("y"), None)]);
        assert_eq!((change.added, change.removed), (ids(&["x"]), ids(&["y"])));
    }

    #[test]
    fn sort_keys_order_by_type_then_value_and_missing_fields_go_last() {
        let mut m = Membership::new(Some("/k".into()), None);
        m.apply(vec![
            live("none", json!({}), 1),
            live("str", json!({"k": "a"}), 1),
            live("big", json!({"k": 10}), 1),
            live("small", json!({"k": 2.5}), 1),
            live("null", json!({"k": null}), 1),
            live("tie-b", json!({"k": true}), 1),
            live("tie-a", json!({"k": true}), 1),
            live("scalar", json!(7), 1),
        ]);
        let order = [
            "null", "tie-a", "tie-b", "small", "big", "str", "none", "scalar",
        ];
        assert_eq!(m.window(), ids(&order));
    }
}
