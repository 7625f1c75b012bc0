//! What a write costs in memory is bounded by what the client sent: the peak bytes allocated
//! while computing a write's stored value, its patch and its frames stay within a multiple of
//! the old and new values' serialized sizes, for adversarial shapes (long keys over long
//! arrays, deep nesting, wide objects) and random ones.
//!
//! Its own test binary: the global allocator here counts the bytes live on this thread.

use mesh_records::model::{
    RecordId, Strategy as How, apply_strategy, change_patch, full_frame, patch_frame,
    serialized_len,
};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

/// The bound this test holds the write path to: peak ≤ FACTOR × (old + new) + SLACK bytes.
/// A parsed JSON value takes up to ~16× its text (a `0,` is a 32-byte `Value`), and a write
/// holds at most the new value, one copy in its patch, and the patch's operations.
const FACTOR: usize = 48;
const SLACK: usize = 64 * 1024;

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrink(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        shrink(layout.size());
        grow(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn grow(bytes: usize) {
    let _ = LIVE.try_with(|live| {
        live.set(live.get() + bytes);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(live.get())));
    });
}

fn shrink(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(bytes)));
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated at the peak of one write of `incoming` over `old`, beyond what was live
/// before it: the stored value, its patch, the full and patch frames.
fn peak_of_write(old: &Arc<Value>, incoming: &Arc<Value>, strategy: How) -> usize {
    let id = RecordId::parse("cost:1", 256).unwrap();
    let before = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(before));
    {
        let next = apply_strategy(Some(old), incoming, strategy);
        let patch = change_patch(old, &next);
        let full = full_frame(&id, &next, 2);
        let patched = patch_frame(&id, &patch, 2);
        std::hint::black_box((&full, &patched));
    }
    PEAK.with(Cell::get) - before
}

fn assert_bounded(old: Value, new: Value, strategy: How) {
    let size = serialized_len(&old) + serialized_len(&new);
    let (old, new) = (Arc::new(old), Arc::new(new));
    let peak = peak_of_write(&old, &new, strategy);
    assert!(
        peak <= FACTOR * size + SLACK,
        "a write of {size} bytes of JSON peaked at {peak} bytes (bound {})",
        FACTOR * size + SLACK
    );
}

#[test]
fn a_long_key_over_a_long_array_costs_its_size_not_their_product() {
    // FIELD-NOTES: two ~40 KB frames made json_patch::diff allocate 939 MiB.
    let key = "k".repeat(20_000);
    let old = json!({ key.clone(): [] });
    let new = json!({ key: vec![0; 20_000] });
    assert_bounded(old, new, How::Replace);
}

#[test]
fn long_keys_over_deep_nesting_and_wide_objects_stay_bounded() {
    let key = "k".repeat(2_000);
    let mut deep_old = json!([]);
    let mut deep_new = json!(vec![1; 500]);
    for _ in 0..100 {
        deep_old = json!({ key.clone(): deep_old });
        deep_new = json!({ key.clone(): deep_new });
    }
    assert_bounded(deep_old, deep_new, How::Replace);

    let wide = |n: usize| Value::Object((0..n).map(|i| (format!("{key}{i}"), json!(i))).collect());
    assert_bounded(wide(200), wide(400), How::DeepMerge);
    assert_bounded(
        json!(vec![vec![0; 50]; 200]),
        json!(vec![vec![1; 50]; 200]),
        How::Merge,
    );
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-z]{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 200, 30, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..30).prop_map(Value::from),
            prop::collection::btree_map("[a-c]{1,300}", inner, 0..10)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn strategy() -> impl Strategy<Value = How> {
    prop_oneof![Just(How::Replace), Just(How::Merge), Just(How::DeepMerge)]
}

proptest! {
    #[test]
    fn random_writes_stay_bounded(old in json_value(), new in json_value(), how in strategy()) {
        assert_bounded(old, new, how);
    }
}
