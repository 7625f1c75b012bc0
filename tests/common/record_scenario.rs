// The store operations a record actor makes on one record, with each outcome written down:
// run against the memory store, a Redis, a Redis Cluster (through `scenario.rs`) and the record
// actor's scripted fake store (`src/actors/record/tests/fake_store.rs`), so the fake the state
// machine is tested on is held to what the real stores do.
//
// Included with `include!` by both, so it names no crate: the includer imports `Store`,
// `RecordId`, `Expect`, `NewVersion`, `OpId`, `Stored`, `Arc`, `Value` and `json!`.

/// Every outcome of one record's load, compare-and-set, delete (plain and conditional),
/// check and restore, in order.
pub async fn record_scenario(store: &dyn Store, id: &RecordId) -> Vec<String> {
    let mut log = Vec::new();
    let live = |version| Expect {
        version,
        exists: true,
    };
    let absent = |version| Expect {
        version,
        exists: false,
    };
    let values = |values: Vec<Value>| -> Vec<NewVersion> {
        values
            .into_iter()
            .map(|v| NewVersion::value(Arc::new(v)))
            .collect()
    };
    let history = HistoryLimits {
        versions: 0,
        bytes: 0,
    };
    macro_rules! step {
        ($e:expr) => {
            log.push(format!("{:?}", $e.await.map_err(|e| e.to_string())))
        };
    }
    let (first, second, third) = (OpId(101), OpId(102), OpId(103));
    step!(store.load(id));
    // A record that never existed is created only by expecting nothing at version 0.
    step!(store.write(id, live(0), values(vec![json!(1)]), first, history, None));
    step!(store.write(id, absent(0), values(vec![json!(1)]), first, history, None));
    step!(store.check(id, first));
    step!(store.check(id, second));
    // A batch moves the version by its length; a stale expectation changes nothing.
    step!(store.write(id, live(1), values(vec![json!(2), json!({"x": 3})]), second, history, None));
    step!(store.write(id, live(1), values(vec![json!("stale")]), third, history, None));
    step!(store.check(id, second));
    step!(store.load(id));
    // Conditional deletes: only at the live version.
    step!(store.delete(id, third, Some(2)));
    step!(store.delete(id, third, Some(3)));
    step!(store.check(id, third));
    step!(store.delete(id, first, None));
    step!(store.delete(id, first, Some(3)));
    step!(store.load(id));
    // The tombstone keeps the version: re-creating continues after it.
    step!(store.write(id, absent(0), values(vec![json!("again")]), first, history, None));
    step!(store.write(id, absent(3), values(vec![json!("again")]), first, history, None));
    // A restore writes only over something older.
    step!(store.restore(vec![(id.clone(), Stored::live(Arc::new(json!("old")), 2))]));
    step!(store.restore(vec![(id.clone(), Stored::live(Arc::new(json!("new")), 9))]));
    step!(store.load(id));
    step!(store.check(id, first));
    step!(store.restore(vec![(id.clone(), Stored::absent(10))]));
    step!(store.load(id));
    step!(store.delete(id, second, None));
    // Deadlines: only a live record takes one; one that has passed is swept as a delete would
    // (tombstone at its version), and the tombstone takes none.
    let hour = Some(std::time::Duration::from_secs(3600));
    step!(store.set_expiry(id, hour));
    step!(store.write(id, absent(10), values(vec![json!("brief")]), third, history, hour));
    step!(store.expire_due(10));
    step!(store.set_expiry(id, Some(std::time::Duration::ZERO)));
    step!(store.expire_due(10));
    step!(store.load(id));
    step!(store.check(id, third));
    step!(store.set_expiry(id, None));
    log
}
