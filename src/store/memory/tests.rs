//! The memory store's budget, tombstones and ordered id index.
use super::*;
use crate::store::Stored;
use serde_json::json;

const HISTORY: HistoryLimits = HistoryLimits {
    versions: 10,
    bytes: 1000,
};

fn id(n: usize) -> RecordId {
    RecordId::parse(&format!("r:{n}"), 64).unwrap()
}

async fn put(store: &MemoryStore, id: &RecordId, value: Value) -> Result<Version, StoreError> {
    let current = store.load(id).await?;
    let values = vec![NewVersion {
        value: Arc::new(value),
        patch: None,
    }];
    match store
        .write(id, current.expect(), values, OpId::next(), HISTORY, None)
        .await?
    {
        WriteResult::Applied { version } => Ok(version),
        WriteResult::Conflict { .. } => panic!("no one else writes"),
    }
}

#[actix_rt::test]
async fn writes_past_the_budget_are_refused_and_shrinking_still_works() {
    let store = MemoryStore::with_limits(MemoryLimits {
        max_bytes: 20_000,
        max_tombstones: 10,
    });
    let big = json!("x".repeat(4_000));
    let mut written = 0;
    let refused = loop {
        match put(&store, &id(written), big.clone()).await {
            Ok(_) => written += 1,
            Err(e) => break e,
        }
    };
    assert!(matches!(refused, StoreError::Full(_)), "{refused:?}");
    assert_eq!(written, 4);
    // The refused id left nothing behind.
    assert!(!store.map().entries.contains_key(&id(written)));
    // Smaller values fit where bigger ones were; deleting makes room.
    assert_eq!(put(&store, &id(0), json!("small")).await.unwrap(), 2);
    put(&store, &id(written), big.clone()).await.unwrap();
    store.delete(&id(1), OpId::next(), None).await.unwrap();
    put(&store, &id(written + 1), big).await.unwrap();
}

#[actix_rt::test]
async fn the_oldest_tombstones_beyond_the_limit_are_forgotten() {
    let store = MemoryStore::with_limits(MemoryLimits {
        max_bytes: usize::MAX,
        max_tombstones: 2,
    });
    for n in 0..3 {
        put(&store, &id(n), json!(n)).await.unwrap();
        store.delete(&id(n), OpId::next(), None).await.unwrap();
    }
    // r:1 was written again: its old tombstone must not take the new value with it.
    put(&store, &id(1), json!("again")).await.unwrap();
    put(&store, &id(3), json!(3)).await.unwrap();
    store.delete(&id(3), OpId::next(), None).await.unwrap();
    assert_eq!(store.load(&id(0)).await.unwrap(), Stored::default());
    assert_eq!(store.load(&id(1)).await.unwrap().version, 2);
    assert_eq!(store.load(&id(2)).await.unwrap().version, 1);
    assert_eq!(store.load(&id(3)).await.unwrap().version, 1);
    assert_eq!(store.map().tombstones.len(), 2);
    // The ordered ids follow the entries as they come and go.
    let map = store.map();
    assert!(
        map.ids
            .iter()
            .eq(map.ids.iter().filter(|i| map.entries.contains_key(*i)))
    );
    assert_eq!(map.ids.len(), map.entries.len());
}

#[actix_rt::test]
async fn a_listing_reads_only_the_ids_under_the_glob_prefix_and_skips_the_deleted() {
    let store = MemoryStore::new();
    let at = |text: &str| RecordId::parse(text, 64).unwrap();
    for text in ["item:a:1", "item:a:2", "item:ab:1", "item:b:1", "itel:a:1"] {
        put(&store, &at(text), json!(text)).await.unwrap();
    }
    store
        .delete(&at("item:a:2"), OpId::next(), None)
        .await
        .unwrap();
    let listed = |glob: &str| {
        let glob = Glob::new(glob).unwrap();
        let ids: Vec<String> = store.map().under(&glob).map(|i| i.to_string()).collect();
        ids
    };
    // Under the prefix, in order, tombstones included (the listing skips those).
    assert_eq!(listed("item:a:*"), ["item:a:1", "item:a:2"]);
    assert_eq!(listed("item:a*"), ["item:a:1", "item:a:2", "item:ab:1"]);
    let glob = Glob::new("item:a*:1").unwrap();
    let found = store.list_matching(&glob, 10).await.unwrap();
    let ids: Vec<&str> = found.iter().map(|(i, _)| i.as_str()).collect();
    assert_eq!(ids, ["item:a:1", "item:ab:1"]);
    assert_eq!(listed("*").len(), 5);
}

#[actix_rt::test]
async fn deadlines_are_counted_and_an_expired_record_keeps_only_its_tombstone() {
    use std::time::Duration;
    let store = MemoryStore::new();
    put(&store, &id(1), json!({"a": "b"})).await.unwrap();
    put(&store, &id(2), json!("stays")).await.unwrap();
    let plain = store.map().used;
    assert!(
        store
            .set_expiry(&id(1), Some(Duration::ZERO))
            .await
            .unwrap()
    );
    assert_eq!(store.map().used, plain + DEADLINE_OVERHEAD);
    assert!(store.set_expiry(&id(1), None).await.unwrap());
    assert_eq!(store.map().used, plain);
    assert!(
        store
            .set_expiry(&id(1), Some(Duration::ZERO))
            .await
            .unwrap()
    );
    assert!(
        store
            .set_expiry(&id(2), Some(Duration::from_secs(3600)))
            .await
            .unwrap()
    );

    let batch = store.expire_due(10).await.unwrap();
    assert_eq!(batch.deleted, vec![(id(1), 1)]);
    assert!(!batch.more);
    let map = store.map();
    let counted: usize = map.entries.values().map(|e| e.counted).sum();
    assert_eq!(map.used, counted);
    for (rid, entry) in &map.entries {
        assert_eq!(entry.counted, entry.footprint(rid), "{rid}");
    }
    assert_eq!(map.entries[&id(1)].deadline, None);
    assert_eq!(map.deadlines.len(), 1, "only r:2's deadline is left");
    assert!(map.tombstones.iter().eq([&(id(1), 1)]));
}
