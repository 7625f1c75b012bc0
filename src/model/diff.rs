//! A JSON Patch diff whose cost is bounded by the values it compares.
//!
//! `json_patch::diff` builds every operation's path as its own string, so a write of
//! `{K: [0, 0, …]}` over `{K: []}` costs len(K) × N bytes: two 40 KB frames allocated a
//! gigabyte (FIELD-NOTES). This diff knows what replacing each part of the new value costs
//! (one pass measures them all) and never spends more on a part's operations than replacing
//! that part would take, so its memory is linear in the old and new values' sizes whatever
//! their shape. A change that does not fit the whole budget becomes one `replace` of the
//! whole value ([`change_patch`]), which is what a subscriber would be sent anyway.

use super::serialized_len;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// The patch from `old` to `new`, if its JSON is at most `max_bytes` long; `None` when it
/// would be longer. Applying it to `old` gives `new`.
///
/// Objects are compared key by key, arrays by position; a part of `new` whose operations
/// would be longer than the part itself is replaced whole. Memory is O(size of `old` + size
/// of `new`); time too, times the nesting depth in the worst case.
pub fn bounded_diff(old: &Value, new: &Value, max_bytes: usize) -> Option<Value> {
    let mut sizes = HashMap::new();
    measure(new, &mut sizes);
    diff_within(old, new, sizes, max_bytes)
}

/// The patch that leads from `previous` to `next`: the element-wise one when it is no longer
/// than `next` itself, else a single `replace` of the whole document (RFC 6902 allows the
/// empty path), so history and resume work the same either way.
pub fn change_patch(previous: &Value, next: &Value) -> Value {
    shorter_patch(previous, next).unwrap_or_else(|| replace_all(next))
}

/// The element-wise patch from `previous` to `next` if it is no longer than `next` itself
/// (the one pass measuring `next` gives the budget too).
pub fn shorter_patch(previous: &Value, next: &Value) -> Option<Value> {
    let mut sizes = HashMap::new();
    let whole = measure(next, &mut sizes);
    diff_within(previous, next, sizes, whole)
}

/// One operation replacing the whole document.
pub fn replace_all(value: &Value) -> Value {
    json!([{"op": "replace", "path": "", "value": value}])
}

fn diff_within(old: &Value, new: &Value, sizes: Sizes, max_bytes: usize) -> Option<Value> {
    // Even an empty patch, `[]`, is two bytes.
    if max_bytes < 2 {
        return None;
    }
    let mut diff = Diff {
        ops: Vec::new(),
        path: String::new(),
        // The enclosing `[` and `]`.
        spent: 2,
        budget: max_bytes,
        sizes,
    };
    diff.values(old, new).ok()?;
    Some(Value::Array(diff.ops))
}

/// The serialized length of each object and array of a value, by address (the value is
/// borrowed for the whole diff, so addresses stay put).
type Sizes = HashMap<*const Value, usize>;

/// The serialized length of `value`, recording every container's in `sizes`.
fn measure(value: &Value, sizes: &mut Sizes) -> usize {
    let size = match value {
        Value::Object(fields) => {
            // Braces, commas, and for each field its quoted key and a colon.
            let mut size = 2 + fields.len().saturating_sub(1);
            for (key, field) in fields {
                size += serialized_len(key) + 1 + measure(field, sizes);
            }
            size
        }
        Value::Array(items) => {
            let mut size = 2 + items.len().saturating_sub(1);
            for item in items {
                size += measure(item, sizes);
            }
            size
        }
        leaf => return serialized_len(leaf),
    };
    sizes.insert(value as *const Value, size);
    size
}

/// The budget ran out.
struct OverBudget;

/// The patch being built.
struct Diff {
    ops: Vec<Value>,
    /// The JSON pointer of the values being compared, grown and cut as the walk descends.
    path: String,
    /// Bytes the patch's JSON has so far (an upper bound: escapes are counted as written).
    spent: usize,
    /// Most bytes the patch may have at this point of the walk.
    budget: usize,
    sizes: Sizes,
}

/// Bytes an operation's JSON has besides its path and value:
/// `{"op":"replace","path":"","value":},` — the longest op name, and a separating comma.
const OP_OVERHEAD: usize = 36;

impl Diff {
    /// Adds the operations from `old` to `new` at the current path.
    fn values(&mut self, old: &Value, new: &Value) -> Result<(), OverBudget> {
        match (old, new) {
            (Value::Object(old_fields), Value::Object(new_fields)) => {
                self.container(new, |diff| diff.objects(old_fields, new_fields))
            }
            (Value::Array(old_items), Value::Array(new_items)) => {
                self.container(new, |diff| diff.arrays(old_items, new_items))
            }
            (old, new) if old == new => Ok(()),
            (_, new) => self.op("replace", Some(new)),
        }
    }

    /// Diffs inside a container, spending at most what replacing it would cost; when that is
    /// not enough, replaces it. Work wasted on a part is then at most the part's size.
    fn container(
        &mut self,
        new: &Value,
        inside: impl FnOnce(&mut Self) -> Result<(), OverBudget>,
    ) -> Result<(), OverBudget> {
        let (ops, spent, outer, depth) = (self.ops.len(), self.spent, self.budget, self.path.len());
        self.budget = outer.min(spent + self.op_len(Some(new)));
        let elementwise = inside(self);
        self.budget = outer;
        if elementwise.is_ok() {
            return Ok(());
        }
        // Back to this container: the walk stopped somewhere inside it.
        self.ops.truncate(ops);
        self.spent = spent;
        self.path.truncate(depth);
        self.op("replace", Some(new))
    }

    fn objects(
        &mut self,
        old: &Map<String, Value>,
        new: &Map<String, Value>,
    ) -> Result<(), OverBudget> {
        for (key, old_value) in old {
            let depth = self.enter(key);
            match new.get(key) {
                Some(new_value) => self.values(old_value, new_value)?,
                None => self.op("remove", None)?,
            }
            self.path.truncate(depth);
        }
        for (key, new_value) in new {
            if !old.contains_key(key) {
                let depth = self.enter(key);
                self.op("add", Some(new_value))?;
                self.path.truncate(depth);
            }
        }
        Ok(())
    }

    /// Position by position: common elements compared, the rest added or removed.
    fn arrays(&mut self, old: &[Value], new: &[Value]) -> Result<(), OverBudget> {
        for (index, (old_value, new_value)) in old.iter().zip(new).enumerate() {
            let depth = self.enter_index(index);
            self.values(old_value, new_value)?;
            self.path.truncate(depth);
        }
        for (index, new_value) in new.iter().enumerate().skip(old.len()) {
            let depth = self.enter_index(index);
            self.op("add", Some(new_value))?;
            self.path.truncate(depth);
        }
        // From the end, so each index still names the element meant.
        for index in (new.len()..old.len()).rev() {
            let depth = self.enter_index(index);
            self.op("remove", None)?;
            self.path.truncate(depth);
        }
        Ok(())
    }

    /// Appends one path segment (escaped per RFC 6901); returns the length to cut back to.
    fn enter(&mut self, key: &str) -> usize {
        let depth = self.path.len();
        self.path.push('/');
        for c in key.chars() {
            match c {
                '~' => self.path.push_str("~0"),
                '/' => self.path.push_str("~1"),
                c => self.path.push(c),
            }
        }
        depth
    }

    fn enter_index(&mut self, index: usize) -> usize {
        let depth = self.path.len();
        self.path.push('/');
        self.path.push_str(&index.to_string());
        depth
    }

    /// The length of an operation at the current path with `value` (a part of the new value:
    /// containers were measured up front, leaves cost their own size to measure).
    fn op_len(&self, value: Option<&Value>) -> usize {
        let value_len = match value {
            None => 0,
            Some(value @ (Value::Object(_) | Value::Array(_))) => {
                self.sizes[&(value as *const Value)]
            }
            Some(leaf) => serialized_len(leaf),
        };
        OP_OVERHEAD + self.path.len() + value_len
    }

    /// Adds an operation at the current path, unless it would pass the budget. The path is
    /// copied and the value cloned only once they are known to fit.
    fn op(&mut self, name: &str, value: Option<&Value>) -> Result<(), OverBudget> {
        let len = self.op_len(value);
        if self.spent + len > self.budget {
            return Err(OverBudget);
        }
        self.spent += len;
        let mut op = Map::new();
        op.insert("op".into(), Value::from(name));
        op.insert("path".into(), Value::from(self.path.as_str()));
        if let Some(value) = value {
            op.insert("value".into(), value.clone());
        }
        self.ops.push(Value::Object(op));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn replayed(old: &Value, patch: &Value) -> Value {
        let patch: json_patch::Patch = serde_json::from_value(patch.clone()).unwrap();
        let mut doc = old.clone();
        json_patch::patch(&mut doc, &patch).unwrap();
        doc
    }

    #[test]
    fn small_changes_are_small_patches() {
        let bio = "x".repeat(500);
        let old = json!({"bio": bio, "tags": ["a", "b"], "n": {"x": 1}});
        let new = json!({"bio": bio, "tags": ["a", "b", "c"], "n": {"x": 2}, "new": true});
        let patch = change_patch(&old, &new);
        assert_eq!(
            patch,
            json!([
                {"op": "replace", "path": "/n/x", "value": 2},
                {"op": "add", "path": "/tags/2", "value": "c"},
                {"op": "add", "path": "/new", "value": true},
            ])
        );
    }

    #[test]
    fn keys_are_escaped_in_paths() {
        let bio = "x".repeat(500);
        let old = json!({"a/b": 1, "c~d": 1, "bio": bio});
        let patch = change_patch(&old, &json!({"a/b": 2, "c~d": 2, "bio": bio}));
        assert_eq!(patch[0]["path"], "/a~1b");
        assert_eq!(patch[1]["path"], "/c~0d");
    }

    #[test]
    fn an_array_that_changes_everywhere_is_replaced_whole() {
        let keep = "x".repeat(500);
        let old = json!({"list": (0..50).collect::<Vec<_>>(), "keep": keep});
        let new = json!({"list": (1..51).collect::<Vec<_>>(), "keep": keep});
        let patch = change_patch(&old, &new);
        assert_eq!(patch.as_array().unwrap().len(), 1);
        assert_eq!(patch[0]["path"], "/list");
        assert_eq!(replayed(&old, &patch), new);
    }

    #[test]
    fn the_long_key_attack_costs_one_replace() {
        // {K: []} then {K: [0; N]}: element-wise this is N adds each naming K.
        let key = "k".repeat(20_000);
        let old = json!({ key.clone(): [] });
        let new = json!({ key: vec![0; 20_000] });
        let patch = change_patch(&old, &new);
        assert_eq!(patch.as_array().unwrap().len(), 1);
        assert!(serialized_len(&patch) < serialized_len(&new) + 20_100);
        assert_eq!(replayed(&old, &patch), new);
    }

    #[test]
    fn over_the_budget_there_is_no_patch() {
        let old = json!({"a": 1});
        let new = json!({"a": "a long string value"});
        assert!(bounded_diff(&old, &new, 10).is_none());
        assert!(bounded_diff(&old, &new, 1000).is_some());
        // Under two bytes not even `[]` fits.
        assert!(bounded_diff(&json!([]), &json!([]), 1).is_none());
        assert_eq!(bounded_diff(&json!([]), &json!([]), 2), Some(json!([])));
        assert_eq!(
            change_patch(&json!(1), &json!("x")),
            replace_all(&json!("x"))
        );
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            "[a-z/~]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map("[a-d/~]{1,3}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_patch_replays_to_the_new_value(old in json_value(), new in json_value()) {
            let patch = change_patch(&old, &new);
            prop_assert_eq!(replayed(&old, &patch), new);
        }

        #[test]
        fn a_bounded_patch_is_within_its_budget(
            old in json_value(), new in json_value(), budget in 0usize..400
        ) {
            if let Some(patch) = bounded_diff(&old, &new, budget) {
                prop_assert!(serialized_len(&patch) <= budget);
                prop_assert_eq!(replayed(&old, &patch), new);
            }
        }

        #[test]
        fn the_patch_is_never_much_longer_than_the_value(old in json_value(), new in json_value()) {
            let patch = change_patch(&old, &new);
            prop_assert!(serialized_len(&patch) <= serialized_len(&new) + 40);
        }
    }
}
