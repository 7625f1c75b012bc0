//! One scenario of every store operation, run against the memory store and a Redis store so
//! their outcomes can be compared step by step (shared by redis_store.rs and redis_cluster.rs).

use mesh_records::RecordId;
use mesh_records::store::{
    Expect, HistoryLimits, NewVersion, OpId, Store, StoreFuture, Stored, WriteResult,
};
use serde_json::{Value, json};
use std::sync::Arc;

// `record_scenario`: what the record actor's fake store is held to as well.
include!("record_scenario.rs");

pub fn id(raw: &str) -> RecordId {
    RecordId::parse(raw, 256).expect("valid id")
}

pub fn value(v: Value) -> Arc<Value> {
    Arc::new(v)
}

/// A compare-and-set expectation: the record live at `version`.
pub fn live(version: u64) -> Expect {
    Expect {
        version,
        exists: true,
    }
}

/// A compare-and-set expectation: no record, with this tombstone (0 = never written).
pub fn absent(version: u64) -> Expect {
    Expect {
        version,
        exists: false,
    }
}

/// No history kept: these tests are about values and versions.
pub const NO_HISTORY: HistoryLimits = HistoryLimits {
    versions: 0,
    bytes: 0,
};

pub fn vals(values: Vec<Arc<Value>>) -> Vec<NewVersion> {
    values.into_iter().map(NewVersion::value).collect()
}

/// Writes one value to `rid` if the record is as `expected`, as operation `op`, keeping no
/// history: the store write most store tests make.
pub fn write_one(
    store: &dyn Store,
    rid: &RecordId,
    expected: Expect,
    v: Value,
    op: OpId,
) -> StoreFuture<WriteResult> {
    store.write(rid, expected, vals(vec![value(v)]), op, NO_HISTORY, None)
}

/// Writes `v` over whatever `rid` holds (with `ttl`), as the only writer; returns the new
/// version.
pub async fn put_over(
    store: &dyn Store,
    rid: &RecordId,
    v: Value,
    ttl: Option<std::time::Duration>,
) -> u64 {
    let current = store.load(rid).await.expect("load");
    let values = vals(vec![value(v)]);
    match store
        .write(rid, current.expect(), values, OpId::next(), NO_HISTORY, ttl)
        .await
    {
        Ok(WriteResult::Applied { version }) => version,
        other => panic!("no one else writes {rid}: {other:?}"),
    }
}

pub fn restored(v: Value, version: u64) -> Stored {
    Stored::live(value(v), version)
}

/// One scenario of every operation, with each outcome written down, so two stores can be
/// compared step by step.
pub async fn scenario(store: &dyn Store) -> Vec<String> {
    let a = id("a");
    let b = id("b");
    let op = OpId(7);
    let mut log = Vec::new();
    macro_rules! step {
        ($e:expr) => {
            log.push(format!("{:?}", $e.await.map_err(|e| e.to_string())))
        };
    }
    step!(store.load(&a));
    step!(write_one(store, &a, live(1), json!(1), op));
    step!(write_one(store, &a, live(0), json!(1), op));
    step!(store.write(&a, absent(0), vals(vec![]), op, NO_HISTORY, None));
    step!(store.load(&a));
    step!(write_one(store, &a, absent(0), json!({"x": 1}), op));
    step!(store.check(&a, op));
    step!(store.check(&a, OpId(8)));
    step!(write_one(store, &a, absent(0), json!({"x": 2}), op));
    step!(store.write(
        &a,
        live(1),
        vals(vec![value(json!(null)), value(json!([1, "two"]))]),
        op,
        NO_HISTORY,
        None
    ));
    step!(store.load(&a));
    step!(store.write(&a, live(3), vals(vec![]), op, NO_HISTORY, None));
    step!(write_one(store, &a, live(2), json!("stale"), op));
    step!(store.delete(&a, OpId(9), None));
    step!(store.check(&a, OpId(9)));
    step!(store.delete(&a, op, None));
    step!(store.load(&a));
    // Deleted at 3: a write expecting the live record fails, and so does one expecting a
    // record that never existed; the re-created record continues at 4.
    step!(write_one(store, &a, live(3), json!("gone"), op));
    step!(write_one(store, &a, absent(0), json!("again"), op));
    step!(write_one(store, &a, absent(3), json!("again"), op));
    step!(store.load(&a));
    step!(store.restore(vec![
        (a.clone(), restored(json!("old"), 1)),
        (b.clone(), restored(json!("b5"), 5)),
        (b.clone(), restored(json!("b4"), 4)),
        (b.clone(), restored(json!("b6"), 6)),
    ]));
    step!(store.load(&a));
    step!(store.load(&b));
    step!(store.restore(vec![(a.clone(), restored(json!("newer"), 9))]));
    step!(store.load(&a));
    step!(write_one(store, &a, live(9), json!(true), op));
    step!(store.load(&a));
    // A tombstone restored over an older record deletes it; an older one changes nothing.
    step!(store.restore(vec![(b.clone(), Stored::absent(7))]));
    step!(store.load(&b));
    step!(store.restore(vec![(b.clone(), restored(json!("b7"), 7))]));
    step!(store.load(&b));
    log.extend(record_scenario(store, &id("one-record")).await);
    log
}
