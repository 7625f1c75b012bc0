//! Write strategies: how an incoming value combines with the current one.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// How `newValue` is combined with the stored value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Strategy {
    /// The new value replaces the old one.
    #[default]
    Replace,
    /// Top-level keys of the new object overwrite those of the old object.
    Merge,
    /// Objects merge key by key, recursively.
    DeepMerge,
}

impl std::str::FromStr for Strategy {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "replace" => Ok(Strategy::Replace),
            "merge" => Ok(Strategy::Merge),
            "deepMerge" => Ok(Strategy::DeepMerge),
            other => Err(crate::Error::invalid(format!(
                "unknown strategy {other:?} (expected replace, merge or deepMerge)"
            ))),
        }
    }
}

/// The value a write produces. When either side is not an object, the incoming value replaces.
///
/// `Replace` never copies: the incoming `Arc` is returned as is.
pub fn apply_strategy(
    current: Option<&Arc<Value>>,
    incoming: &Arc<Value>,
    strategy: Strategy,
) -> Arc<Value> {
    let (Some(current), Value::Object(new_fields)) = (current, incoming.as_ref()) else {
        return Arc::clone(incoming);
    };
    let Value::Object(old_fields) = current.as_ref() else {
        return Arc::clone(incoming);
    };
    let mut merged = match strategy {
        // Before any copy: replacing an object must not clone the old one.
        Strategy::Replace => return Arc::clone(incoming),
        Strategy::Merge | Strategy::DeepMerge => old_fields.clone(),
    };
    for (key, value) in new_fields {
        match (strategy, merged.get_mut(key)) {
            (Strategy::DeepMerge, Some(existing)) => deep_merge_into(existing, value),
            _ => {
                merged.insert(key.clone(), value.clone());
            }
        }
    }
    Arc::new(Value::Object(merged))
}

/// Merges `incoming` into `target`: objects key by key, anything else replaced.
fn deep_merge_into(target: &mut Value, incoming: &Value) {
    match (target, incoming) {
        (Value::Object(target_fields), Value::Object(new_fields)) => {
            for (key, value) in new_fields {
                match target_fields.get_mut(key) {
                    Some(existing) => deep_merge_into(existing, value),
                    None => {
                        target_fields.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (target, incoming) => *target = incoming.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::Strategy as S;
    use super::{Arc, Value, apply_strategy};
    use proptest::prelude::*;
    use serde_json::json;

    fn apply(current: Value, incoming: Value, strategy: S) -> Value {
        let current = Arc::new(current);
        let incoming = Arc::new(incoming);
        apply_strategy(Some(&current), &incoming, strategy)
            .as_ref()
            .clone()
    }

    #[test]
    fn replace_takes_the_new_value() {
        assert_eq!(
            apply(json!({"a": 1}), json!({"b": 2}), S::Replace),
            json!({"b": 2})
        );
    }

    #[test]
    fn merge_is_shallow() {
        let merged = apply(
            json!({"a": 1, "n": {"x": 1, "y": 2}}),
            json!({"b": 2, "n": {"x": 9}}),
            S::Merge,
        );
        assert_eq!(merged, json!({"a": 1, "b": 2, "n": {"x": 9}}));
    }

    #[test]
    fn deep_merge_recurses_into_objects_only() {
        let merged = apply(
            json!({"a": 1, "n": {"x": 1, "y": 2}, "l": [1, 2]}),
            json!({"n": {"x": 9}, "l": [3]}),
            S::DeepMerge,
        );
        assert_eq!(merged, json!({"a": 1, "n": {"x": 9, "y": 2}, "l": [3]}));
    }

    #[test]
    fn non_objects_are_replaced_by_every_strategy() {
        for strategy in [S::Merge, S::DeepMerge] {
            assert_eq!(
                apply(json!([1]), json!({"a": 1}), strategy),
                json!({"a": 1})
            );
            assert_eq!(apply(json!({"a": 1}), json!("s"), strategy), json!("s"));
        }
        let incoming = Arc::new(json!({"a": 1}));
        assert_eq!(
            *apply_strategy(None, &incoming, S::DeepMerge),
            json!({"a": 1})
        );
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            "[a-z]{0,4}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-d]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn merge_keeps_old_keys_and_takes_new_ones(old in json_value(), new in json_value()) {
            let merged = apply(old.clone(), new.clone(), S::Merge);
            match (&old, &new) {
                (Value::Object(o), Value::Object(n)) => {
                    for (k, v) in n { prop_assert_eq!(&merged[k], v); }
                    for (k, v) in o { if !n.contains_key(k) { prop_assert_eq!(&merged[k], v); } }
                }
                _ => prop_assert_eq!(&merged, &new),
            }
        }

        #[test]
        fn diff_then_patch_gives_the_new_value(old in json_value(), new in json_value()) {
            let patch = json_patch::diff(&old, &new);
            let mut replayed = old.clone();
            prop_assert!(json_patch::patch(&mut replayed, &patch).is_ok());
            prop_assert_eq!(replayed, new);
        }

        #[test]
        fn deep_merge_with_itself_is_identity(v in json_value()) {
            prop_assert_eq!(apply(v.clone(), v.clone(), S::DeepMerge), v);
        }

        #[test]
        fn deep_merge_leaves_are_the_new_ones(old in json_value(), new in json_value()) {
            let merged = apply(old, new.clone(), S::DeepMerge);
            if let Value::Object(n) = &new {
                for (k, v) in n {
                    if !v.is_object() { prop_assert_eq!(&merged[k], v); }
                }
            } else {
                prop_assert_eq!(&merged, &new);
            }
        }
    }
}
