//! What collections need from a store, on every store (memory, one Redis node, a Redis
//! Cluster): `list_matching` returns exactly the live records a glob selects, and `watch_all`
//! names every record changed by any instance; on Redis the change feed is published only when
//! switched on (seen from a raw subscriber) and resyncs after a reconnect.
//!
//! Each Redis test works under its own key prefix (with glob-special characters in it) and
//! deletes its keys at the end. Events are awaited with timeouts; nothing sleeps and hopes.

use crate::common;

use common::own_cluster::{self, shared_cluster_url};
use common::own_redis::OwnRedis;
use common::scenario::*;
use common::{Keys, patience, redis_url, unique_prefix};
use futures_util::StreamExt;
use mesh_records::model::Glob;
use mesh_records::store::{
    FeedEvent, FeedSink, KeyLayout, MemoryStore, OpId, RedisKeys, RedisStore, Store, StoreError,
    Stored, WriteResult,
};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Live records under `item:`, with glob-special and non-ASCII characters.
const LIVE: [&str; 7] = [
    "item:1", "item:2", "item:10", "item:*x", "item:[a]", "item:a?b", "item:é",
];
/// Live records the `item:*` globs must not select.
const OTHERS: [&str; 2] = ["other:1", "itemx:1"];
/// A deleted record under `item:` (a tombstone).
const DELETED: &str = "item:dead";
/// Records beyond a few read chunks of the Redis listing.
const BULK: usize = 600;

/// A prefix no other test uses, with every glob-special character but braces (the cluster
/// layout refuses those).
fn special_prefix(test: &str) -> String {
    format!("{}sp*[x]?\\:", unique_prefix(test))
}

async fn put(store: &dyn Store, record: &str, v: Value) -> u64 {
    put_over(store, &id(record), v, None).await
}

async fn fill(store: &dyn Store) {
    for (n, record) in LIVE.iter().chain(&OTHERS).enumerate() {
        put(store, record, json!({ "n": n })).await;
    }
    put(store, "item:10", json!({"n": "ten"})).await;
    put(store, DELETED, json!(0)).await;
    store
        .delete(&id(DELETED), OpId::next(), None)
        .await
        .expect("delete");
    let bulk = (0..BULK)
        .map(|n| (id(&format!("bulk:{n}")), restored(json!(n), 3)))
        .collect();
    assert_eq!(store.restore(bulk).await.expect("restore"), BULK);
}

/// (id, value, version) of each record listed, sorted by id.
async fn listed(
    store: &dyn Store,
    pattern: &str,
    max: usize,
) -> Result<Vec<(String, Value, u64)>, StoreError> {
    let glob = Glob::new(pattern).expect("a valid glob");
    let mut found: Vec<_> = store
        .list_matching(&glob, max)
        .await?
        .into_iter()
        .map(|(id, record)| (id.to_string(), (*record.value).clone(), record.version))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

async fn ids_listed(store: &dyn Store, pattern: &str) -> Vec<String> {
    let found = listed(store, pattern, 10_000).await.expect("listing");
    found.into_iter().map(|(id, _, _)| id).collect()
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    ids.sort();
    ids
}

/// The listing scenario every store passes.
async fn listing_scenario(store: &dyn Store) {
    fill(store).await;
    let all = listed(store, "item:*", 100).await.expect("listing");
    let ids: Vec<&str> = all.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, sorted(&LIVE));
    let by_id: HashMap<&str, (&Value, u64)> =
        all.iter().map(|(i, v, n)| (&i[..], (v, *n))).collect();
    assert_eq!(by_id["item:10"], (&json!({"n": "ten"}), 2));
    assert_eq!(by_id["item:1"], (&json!({"n": 0}), 1));

    // `?` takes one character, also a non-ASCII one (Redis's takes one byte).
    assert_eq!(
        ids_listed(store, "item:?").await,
        sorted(&["item:1", "item:2", "item:é"])
    );
    assert_eq!(
        ids_listed(store, "item:[0-9]*").await,
        sorted(&["item:1", "item:10", "item:2"])
    );
    assert_eq!(
        ids_listed(store, "item:[^0-9]*").await,
        sorted(&["item:*x", "item:[a]", "item:a?b", "item:é"])
    );
    // Special characters in ids, taken literally once escaped.
    let star = format!("{}*", Glob::escape("item:*"));
    assert_eq!(ids_listed(store, &star).await, ["item:*x"]);
    assert_eq!(
        ids_listed(store, &Glob::escape("item:[a]")).await,
        ["item:[a]"]
    );
    assert_eq!(
        ids_listed(store, &Glob::escape("item:a?b")).await,
        ["item:a?b"]
    );
    assert_eq!(ids_listed(store, "item:a?b").await, ["item:a?b"]);
    assert!(
        ids_listed(store, DELETED).await.is_empty(),
        "tombstones are not listed"
    );
    assert!(ids_listed(store, "nothing:*").await.is_empty());

    // `max` live records are fine, one more fails, whatever the number of chunks.
    assert_eq!(
        listed(store, "item:*", LIVE.len())
            .await
            .expect("at max")
            .len(),
        LIVE.len()
    );
    let err = listed(store, "item:*", LIVE.len() - 1)
        .await
        .expect_err("over max");
    assert!(
        matches!(err, StoreError::TooMany { max, .. } if max == LIVE.len() - 1),
        "{err}"
    );
    let bulk = listed(store, "bulk:*", BULK).await.expect("bulk");
    assert_eq!(bulk.len(), BULK);
    assert!(
        bulk.iter()
            .all(|(id, v, n)| *n == 3 && format!("bulk:{v}") == *id)
    );
    let err = listed(store, "bulk:*", BULK - 1)
        .await
        .expect_err("over max");
    assert!(matches!(err, StoreError::TooMany { .. }), "{err}");
    assert!(
        listed(store, "nothing:*", 0)
            .await
            .expect("empty")
            .is_empty()
    );
}

#[actix_rt::test]
async fn memory_lists_live_matching_records() {
    listing_scenario(&MemoryStore::new()).await;
}

#[actix_rt::test]
async fn redis_lists_live_matching_records() {
    let prefix = special_prefix("list");
    let _keys = Keys::on_redis(&prefix);
    let store = RedisStore::connect(&redis_url(), &prefix)
        .await
        .expect("redis");
    listing_scenario(&store).await;

    let mut raw = raw_node().await;
    let p = &prefix;
    // A value without a version is no record; an unreadable value is skipped.
    for (key, text) in [
        (format!("{p}record:item:stray"), "1"),
        (format!("{p}record:item:bad"), "{not json"),
        (format!("{p}record-version:item:bad"), "1"),
    ] {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(text)
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    assert_eq!(ids_listed(&store, "item:*").await, sorted(&LIVE));

    // The SCAN pattern finds value keys only, never `record-version:` ones.
    let pattern = store.keys().value_match(&Glob::new("*").unwrap());
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(keys.len() > BULK, "{pattern}: {}", keys.len());
    assert!(
        keys.iter().all(|k| k.starts_with(&format!("{p}record:"))),
        "{keys:?}"
    );
}

#[actix_rt::test]
async fn redis_cluster_lists_live_matching_records() {
    let url = shared_cluster_url();
    let prefix = special_prefix("cl-list");
    let _keys = Keys::on_cluster(&prefix);
    let store = RedisStore::connect_cluster(&url, &[], &prefix)
        .await
        .expect("cluster");
    listing_scenario(&store).await;

    // The tagged layout's pattern (`<prefix>record:{<glob>}`) finds value keys only.
    let keys = RedisKeys::with_layout(prefix.as_str(), KeyLayout::Tagged);
    let mut raw = own_cluster::connect(&url).await;
    let pattern = keys.value_match(&Glob::new("item:*").unwrap());
    let found: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut raw)
        .await
        .unwrap();
    let mut expected: Vec<String> = LIVE.iter().map(|i| keys.value(&id(i))).collect();
    expected.sort();
    let mut found = found;
    found.sort();
    assert_eq!(found, expected);
    let versions = format!("{}record-version:*", Glob::escape(&prefix));
    let versions: Vec<String> = redis::cmd("KEYS")
        .arg(versions)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(
        versions.len() > BULK,
        "the version keys exist and were not matched"
    );
}

// ---- the change feed ------------------------------------------------------------------------

fn feed_sink() -> (FeedSink, mpsc::UnboundedReceiver<FeedEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sink: FeedSink = Arc::new(move |event| {
        let _ = tx.send(event);
    });
    (sink, rx)
}

fn changed(record: &str) -> FeedEvent {
    FeedEvent::Changed(id(record))
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<FeedEvent>, within: Duration) -> FeedEvent {
    timeout(within, rx.recv())
        .await
        .expect("a feed event within the timeout")
        .expect("sink still registered")
}

/// The events before `marker`'s.
async fn events_until(rx: &mut mpsc::UnboundedReceiver<FeedEvent>, marker: &str) -> Vec<FeedEvent> {
    let mut events = Vec::new();
    loop {
        match next_event(rx, patience()).await {
            event if event == changed(marker) => return events,
            event => events.push(event),
        }
    }
}

/// Every kind of change, made through `writer`, reaches `watcher`'s feed once per record and
/// call; refused changes send nothing; after `unwatch_all` the sink is dropped.
async fn feed_scenario(watcher: &dyn Store, writer: &dyn Store) {
    let (sink, mut rx) = feed_sink();
    let token = watcher.watch_all(sink).await.expect("watch_all");
    let (one, two) = (id("item:1"), id("item:2"));
    let two_versions = vals(vec![value(json!(1)), value(json!(2))]);
    let written = writer
        .write(
            &one,
            absent(0),
            two_versions,
            OpId::next(),
            NO_HISTORY,
            None,
        )
        .await;
    assert_eq!(written.unwrap(), WriteResult::Applied { version: 2 });
    let conflict = write_one(writer, &one, absent(0), json!(3), OpId::next());
    assert!(matches!(conflict.await, Ok(WriteResult::Conflict { .. })));
    writer
        .delete(&one, OpId::next(), None)
        .await
        .expect("delete");
    writer
        .delete(&one, OpId::next(), None)
        .await
        .expect("delete again");
    let restored_count = writer
        .restore(vec![
            (two.clone(), restored(json!("a"), 1)),
            (two, restored(json!("b"), 2)),
            (id("item:3"), Stored::absent(5)),
            (one, restored(json!("old"), 1)),
        ])
        .await
        .expect("restore");
    assert_eq!(restored_count, 3);
    put(writer, "marker", json!(true)).await;
    assert_eq!(
        events_until(&mut rx, "marker").await,
        [
            changed("item:1"),
            changed("item:1"),
            changed("item:2"),
            changed("item:3")
        ]
    );
    watcher.unwatch_all(token);
    timeout(patience(), async { while rx.recv().await.is_some() {} })
        .await
        .expect("the sink is dropped after unwatch_all");
}

#[actix_rt::test]
async fn memory_feed_names_every_change() {
    let store = MemoryStore::new();
    feed_scenario(&store, &store.clone()).await;
}

#[actix_rt::test]
async fn redis_feed_names_changes_of_every_instance() {
    let prefix = special_prefix("feed");
    let _keys = Keys::on_redis(&prefix);
    let watcher = RedisStore::connect(&redis_url(), &prefix)
        .await
        .expect("redis");
    let writer = RedisStore::connect(&redis_url(), &prefix)
        .await
        .expect("redis");
    writer.set_change_feed(true);
    feed_scenario(&watcher, &writer).await;

    // The watcher's own changes too, once its feed is on.
    let (sink, mut rx) = feed_sink();
    let token = watcher.watch_all(sink).await.expect("watch_all");
    watcher.set_change_feed(true);
    put(&watcher, "mine", json!(1)).await;
    assert_eq!(next_event(&mut rx, patience()).await, changed("mine"));
    watcher.unwatch_all(token);
}

#[actix_rt::test]
async fn redis_feed_is_published_only_when_on() {
    let prefix = special_prefix("feed-off");
    let _keys = Keys::on_redis(&prefix);
    let store = RedisStore::connect(&redis_url(), &prefix)
        .await
        .expect("redis");
    let channel = store.keys().feed_channel();
    assert_eq!(
        channel,
        format!("{prefix}collection:record-change"),
        "Mesh's channel"
    );
    let client = redis::Client::open(redis_url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
    pubsub.subscribe(&channel).await.expect("subscribe");

    put(&store, "quiet", json!(1)).await;
    store
        .delete(&id("quiet"), OpId::next(), None)
        .await
        .expect("delete");
    store
        .restore(vec![(id("quiet"), restored(json!(2), 9))])
        .await
        .expect("restore");
    store.set_change_feed(true);
    put(&store, "loud:é", json!(1)).await;
    let mut messages = pubsub.on_message();
    let first = timeout(patience(), messages.next())
        .await
        .expect("a message")
        .expect("open");
    assert_eq!(
        first.get_payload_bytes(),
        "loud:é".as_bytes(),
        "the raw id, nothing before"
    );
    drop(messages);
}

#[actix_rt::test]
async fn redis_feed_resyncs_after_a_reconnect() {
    let mut redis = OwnRedis::start();
    let watcher = RedisStore::connect(&redis.url(), "resync:")
        .await
        .expect("redis");
    let writer = RedisStore::connect(&redis.url(), "resync:")
        .await
        .expect("redis");
    writer.set_change_feed(true);
    let (sink, mut rx) = feed_sink();
    watcher.watch_all(sink).await.expect("watch_all");
    put_retrying(&writer, "before").await;
    assert_eq!(next_event(&mut rx, patience()).await, changed("before"));

    redis.restart();
    // Resync comes once the feed is subscribed again: a write after it is seen.
    assert_eq!(next_event(&mut rx, patience() * 2).await, FeedEvent::Resync);
    put_retrying(&writer, "after").await;
    assert_eq!(next_event(&mut rx, patience()).await, changed("after"));
}

#[actix_rt::test]
async fn redis_cluster_feed_reaches_a_subscriber_from_every_slot_owner() {
    let url = shared_cluster_url();
    let prefix = special_prefix("cl-feed");
    let _keys = Keys::on_cluster(&prefix);
    let watcher = RedisStore::connect_cluster(&url, &[], &prefix)
        .await
        .expect("cluster");
    let writer = RedisStore::connect_cluster(&url, &[], &prefix)
        .await
        .expect("cluster");
    writer.set_change_feed(true);
    let (sink, mut rx) = feed_sink();
    let token = watcher.watch_all(sink).await.expect("watch_all");

    // One record on each master: the watcher's one classic subscription hears them all.
    let records = one_record_per_master(&url, &prefix).await;
    let mut expected: HashMap<String, usize> = HashMap::new();
    for record in &records {
        put(&writer, record, json!(1)).await;
        writer
            .delete(&id(record), OpId::next(), None)
            .await
            .expect("delete");
        *expected.entry(record.clone()).or_default() += 2;
    }
    let again = records
        .iter()
        .map(|r| (id(r), restored(json!(2), 5)))
        .collect();
    assert_eq!(writer.restore(again).await.expect("restore"), records.len());
    for record in &records {
        *expected.entry(record.clone()).or_default() += 1;
    }
    // Messages from different nodes may arrive in any order: count them.
    let deadline = Instant::now() + patience();
    while expected.values().any(|n| *n > 0) {
        let left = deadline.saturating_duration_since(Instant::now());
        match next_event(&mut rx, left).await {
            FeedEvent::Changed(changed) => {
                let due = expected.get_mut(changed.as_str()).expect("an expected id");
                assert!(*due > 0, "{changed} once too often");
                *due -= 1;
            }
            FeedEvent::Resync => {}
        }
    }
    watcher.unwatch_all(token);
}

/// Ids whose keys land on each master of the cluster, one per master.
async fn one_record_per_master(url: &str, prefix: &str) -> Vec<String> {
    let mut raw = own_cluster::connect(url).await;
    let slots: redis::Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut raw)
        .await
        .unwrap();
    let redis::Value::Array(ranges) = slots else {
        panic!("CLUSTER SLOTS: {slots:?}")
    };
    let mut owner: Vec<(i64, i64, String)> = Vec::new();
    for range in ranges {
        let redis::Value::Array(fields) = range else {
            continue;
        };
        let (redis::Value::Int(start), redis::Value::Int(end)) = (&fields[0], &fields[1]) else {
            continue;
        };
        owner.push((*start, *end, format!("{:?}", fields[2])));
    }
    let masters: BTreeSet<&String> = owner.iter().map(|(_, _, m)| m).collect();
    let keys = RedisKeys::with_layout(prefix, KeyLayout::Tagged);
    let (mut chosen, mut covered) = (Vec::new(), BTreeSet::new());
    for n in 0.. {
        let record = format!("cover:{n}");
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(keys.value(&id(&record)))
            .query_async(&mut raw)
            .await
            .unwrap();
        let master = &owner
            .iter()
            .find(|(s, e, _)| *s <= slot && slot <= *e)
            .unwrap()
            .2;
        if covered.insert(master) {
            chosen.push(record);
        }
        if covered.len() == masters.len() {
            break;
        }
    }
    assert!(masters.len() >= 3, "the test cluster has three masters");
    chosen
}

/// Writes `record` on top of whatever is stored, retrying while Redis comes back.
async fn put_retrying(store: &RedisStore, record: &str) {
    let deadline = Instant::now() + patience() * 2;
    loop {
        let rid = id(record);
        let attempt = async {
            let current = store.load(&rid).await?;
            let values = vals(vec![value(json!(1))]);
            store
                .write(
                    &rid,
                    current.expect(),
                    values,
                    OpId::next(),
                    NO_HISTORY,
                    None,
                )
                .await
        };
        match attempt.await {
            Ok(WriteResult::Applied { .. }) => return,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "write did not succeed: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn raw_node() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}
