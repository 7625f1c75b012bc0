//! What the fuzz targets share: a generator of JSON values shaped like hostile writes, and the
//! checks every write must pass whatever the values (strategy, diff, replay, push frames).
//!
//! Kept as a library so `frames` (values decoded from wire frames) and `patch` (values built
//! straight from fuzz bytes) assert exactly the same things.

use arbitrary::Unstructured;
use mesh_records::model::{RecordId, Strategy, apply_strategy, full_frame, patch_frame};
use serde_json::{Map, Number, Value};
use std::sync::Arc;

/// Deepest value the generator builds: the deepest `newValue` a request frame can carry (the
/// server's parser stops at 128 levels, two of them the frame's own).
pub const MAX_DEPTH: usize = 126;

/// Longest key or string the generator builds. Long enough to show a cost that grows with
/// key length × array length (the bounded diff must not; json_patch::diff did).
pub const MAX_LONG: usize = 2_000;

/// Longest array the generator builds.
pub const MAX_ARRAY: usize = 500;

/// A JSON value from fuzz bytes, biased toward what a hostile writer sends: a few short keys
/// (so two values overlap and the diff has work to do), long keys, long arrays of one element,
/// numbers that re-serialize longer (`1e15`), deep nesting.
pub fn value(u: &mut Unstructured, depth: usize) -> arbitrary::Result<Value> {
    let leaf_only = depth >= 6;
    Ok(match u.int_in_range(0..=if leaf_only { 5 } else { 10 })? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::from(u.int_in_range(-3i64..=3)?),
        3 => number(u)?,
        4 => Value::String(short_key(u)?),
        5 => Value::String(long_text(u)?),
        6 | 7 => {
            let len = u.int_in_range(0..=4)?;
            let mut fields = Map::new();
            for _ in 0..len {
                fields.insert(key(u)?, value(u, depth + 1)?);
            }
            Value::Object(fields)
        }
        8 => {
            let len = u.int_in_range(0..=4)?;
            let items = (0..len)
                .map(|_| value(u, depth + 1))
                .collect::<arbitrary::Result<_>>()?;
            Value::Array(items)
        }
        // A long array of one repeated element: `[0, 0, …]`, `[1e15, …]`, `[{}, …]`.
        9 => {
            let len = u.int_in_range(0..=MAX_ARRAY)?;
            let item = value(u, 6)?;
            Value::Array(vec![item; len])
        }
        // Deep nesting: the inner value wrapped in objects or arrays, up to the wire's limit.
        _ => {
            let levels = u.int_in_range(1..=MAX_DEPTH.saturating_sub(depth).max(1))?;
            let in_objects: bool = u.arbitrary()?;
            let wrap_key = key(u)?;
            let mut inner = value(u, 6)?;
            for _ in 0..levels {
                inner = if in_objects {
                    Value::Object(Map::from_iter([(wrap_key.clone(), inner)]))
                } else {
                    Value::Array(vec![inner])
                };
            }
            inner
        }
    })
}

/// A second value related to `old`, so the diff sees shared structure: kept, changed, removed
/// and added parts, at any depth.
pub fn mutated(u: &mut Unstructured, old: &Value, depth: usize) -> arbitrary::Result<Value> {
    match u.int_in_range(0..=3)? {
        0 => return Ok(old.clone()),
        1 => return value(u, depth),
        _ => {}
    }
    Ok(match old {
        Value::Object(fields) => {
            let mut next = Map::new();
            for (k, v) in fields {
                match u.int_in_range(0..=3)? {
                    0 => {}
                    1 => {
                        next.insert(k.clone(), v.clone());
                    }
                    _ => {
                        next.insert(k.clone(), mutated(u, v, depth + 1)?);
                    }
                }
            }
            if u.arbitrary()? {
                next.insert(key(u)?, value(u, depth + 1)?);
            }
            Value::Object(next)
        }
        Value::Array(items) => {
            let mut next = Vec::with_capacity(items.len() + 1);
            for item in items {
                match u.int_in_range(0..=3)? {
                    0 => {}
                    1 => next.push(item.clone()),
                    _ => next.push(mutated(u, item, depth + 1)?),
                }
            }
            if u.arbitrary()? {
                next.push(value(u, depth + 1)?);
            }
            Value::Array(next)
        }
        _ => value(u, depth)?,
    })
}

/// One of the three write strategies.
pub fn strategy(u: &mut Unstructured) -> arbitrary::Result<Strategy> {
    Ok(*u.choose(&[Strategy::Replace, Strategy::Merge, Strategy::DeepMerge])?)
}

fn number(u: &mut Unstructured) -> arbitrary::Result<Value> {
    Ok(match u.int_in_range(0..=3)? {
        0 => Value::from(1e15),
        1 => Value::from(u.arbitrary::<u64>()?),
        2 => Value::from(u.arbitrary::<i64>()?),
        // Any finite float; NaN and the infinities have no JSON form.
        _ => Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
    })
}

fn key(u: &mut Unstructured) -> arbitrary::Result<String> {
    if u.ratio(1u8, 6)? {
        long_text(u)
    } else {
        short_key(u)
    }
}

/// Few distinct keys, so generated objects share some; `~` and `/` need escaping in a JSON
/// pointer, the empty key is legal too.
fn short_key(u: &mut Unstructured) -> arbitrary::Result<String> {
    Ok((*u.choose(&["a", "b", "c", "", "~", "/", "a/b", "~1", "é"])?).to_owned())
}

fn long_text(u: &mut Unstructured) -> arbitrary::Result<String> {
    let len = u.int_in_range(1..=MAX_LONG)?;
    let c = *u.choose(&['k', '/', '~', 'é'])?;
    Ok(std::iter::repeat_n(c, len).collect())
}

/// The patch sent to patch-mode subscribers for `old` → `new`, or `None` when it would be
/// longer than `max_bytes` (then the full value is sent instead): the server's bounded diff.
pub fn diff_within(old: &Value, new: &Value, max_bytes: usize) -> Option<Value> {
    let patch = mesh_records::model::bounded_diff(old, new, max_bytes)?;
    let len = serde_json::to_vec(&patch)
        .expect("a JSON value serializes")
        .len();
    assert!(
        len <= max_bytes,
        "a bounded patch of {len} bytes passed its budget of {max_bytes}"
    );
    Some(patch)
}

/// Everything a write of `incoming` over `current` with `strategy` must satisfy: the strategy
/// gives what the protocol says, the patch replays to the new value and is no longer than the
/// full value, and both push frames are JSON carrying exactly the value sent.
pub fn check_write(current: Option<&Arc<Value>>, incoming: Arc<Value>, strategy: Strategy) {
    let next = apply_strategy(current, &incoming, strategy);
    assert_eq!(
        next.as_ref(),
        &expected(current.map(Arc::as_ref), &incoming, strategy),
        "apply_strategy({strategy:?}) disagrees with the protocol's definition"
    );

    let old = current.map_or(&Value::Null, Arc::as_ref);
    let full_len = serde_json::to_vec(next.as_ref())
        .expect("a JSON value serializes")
        .len();
    let id = RecordId::parse("fuzz:record", 64).expect("a valid id");
    if let Some(patch) = diff_within(old, &next, full_len) {
        let ops: json_patch::Patch =
            serde_json::from_value(patch.clone()).expect("the diff is a JSON Patch");
        let mut replayed = old.clone();
        json_patch::patch(&mut replayed, &ops).expect("a computed patch applies");
        assert_eq!(
            &replayed,
            next.as_ref(),
            "diff then patch gives the new value"
        );
        let frame = parse_frame(&patch_frame(&id, &patch, 2));
        assert_eq!(
            frame["payload"]["patch"], patch,
            "the patch frame carries the patch"
        );
    }
    let frame = parse_frame(&full_frame(&id, &next, 1));
    assert_eq!(
        &frame["payload"]["full"],
        next.as_ref(),
        "the full frame carries the value (numbers included) unchanged"
    );
}

/// Parses a push frame without serde_json's 128-level limit: a patch frame nests its values
/// up to four levels below the frame (`payload`, `patch`, the operation, `value`), two more
/// than a request, so a value the server accepted can come back deeper than serde_json's
/// default limit. JSON itself has no limit (browsers parse far deeper).
fn parse_frame(frame: &str) -> Value {
    let mut reader = serde_json::Deserializer::from_str(frame);
    reader.disable_recursion_limit();
    serde::Deserialize::deserialize(&mut reader).expect("a push frame is JSON")
}

/// The value a write should produce, written from `Strategy`'s documented meaning and
/// independently of `apply_strategy`: replace takes the new value; merge overwrites top-level
/// keys; deepMerge merges objects key by key at every depth. A side that is not an object
/// (or an absent record) means the new value replaces.
fn expected(current: Option<&Value>, incoming: &Value, strategy: Strategy) -> Value {
    match (current, incoming, strategy) {
        (Some(Value::Object(old)), Value::Object(new), Strategy::Merge) => {
            let mut out = old.clone();
            for (k, v) in new {
                out.insert(k.clone(), v.clone());
            }
            Value::Object(out)
        }
        (Some(Value::Object(old)), Value::Object(new), Strategy::DeepMerge) => {
            let mut out = old.clone();
            for (k, v) in new {
                let merged = match (old.get(k), v) {
                    (Some(existing @ Value::Object(_)), Value::Object(_)) => {
                        expected(Some(existing), v, Strategy::DeepMerge)
                    }
                    _ => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        _ => incoming.clone(),
    }
}
