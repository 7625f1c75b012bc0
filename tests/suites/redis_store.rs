//! `RedisStore` against a real Redis: the shared one at 127.0.0.1:6379 (override with
//! `MESH_TEST_REDIS_URL`), and for the restart test a `redis-server` of its own.
//!
//! Each test works under its own key prefix and deletes its keys at the end. Events are
//! awaited with timeouts; nothing sleeps and hopes.

use crate::common;

use common::own_redis::OwnRedis;
use common::{Keys, free_port, patience, redis_url, unique_prefix};
use futures_util::future::join_all;
use mesh_records::model::RecordId;
use mesh_records::store::{
    ChangeSink, DeleteResult, HistoryLimits, MemoryStore, NewVersion, OpId, RedisStore,
    RemoteChange, Store, StoreError, Stored, WriteResult,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::timeout;

use common::scenario::*;

/// A store on the shared Redis under a fresh prefix, plus a raw connection for setup. Its
/// keys are deleted when it is dropped, also when the test panics.
struct Fixture {
    store: RedisStore,
    prefix: String,
    raw: redis::aio::MultiplexedConnection,
    _keys: Keys,
}

impl Fixture {
    async fn new(test: &str) -> Fixture {
        let prefix = unique_prefix(test);
        let store = RedisStore::connect(&redis_url(), &prefix)
            .await
            .expect("redis at MESH_TEST_REDIS_URL or 127.0.0.1:6379 (is redis-server running?)");
        let raw = redis::Client::open(redis_url())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("raw connection");
        Fixture {
            store,
            _keys: Keys::on_redis(&prefix),
            prefix,
            raw,
        }
    }

    /// A second instance on the same Redis and prefix.
    async fn other_instance(&self) -> RedisStore {
        RedisStore::connect(&redis_url(), &self.prefix)
            .await
            .expect("second instance")
    }

    async fn set(&mut self, key: &str, text: &str) {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(text)
            .query_async(&mut self.raw)
            .await
            .expect("SET");
    }

    async fn publish(&mut self, channel: &str, text: &str) {
        let _: () = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(text)
            .query_async(&mut self.raw)
            .await
            .expect("PUBLISH");
    }
}

/// A sink that forwards every change into a channel the test reads.
fn channel_sink() -> (ChangeSink, mpsc::UnboundedReceiver<RemoteChange>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sink: ChangeSink = Arc::new(move |change| {
        let _ = tx.send(change);
    });
    (sink, rx)
}

async fn next_change(rx: &mut mpsc::UnboundedReceiver<RemoteChange>) -> RemoteChange {
    timeout(patience(), rx.recv())
        .await
        .expect("a change within the timeout")
        .expect("sink still registered")
}

fn updated(version: u64, v: Value) -> RemoteChange {
    RemoteChange::Updated {
        version,
        value: Arc::new(v),
        patch: None,
    }
}

#[actix_rt::test]
async fn behaves_like_the_memory_store() {
    let fx = Fixture::new("like_memory").await;
    let expected = scenario(&MemoryStore::new()).await;
    let actual = scenario(&fx.store).await;
    for (step, (want, got)) in expected.iter().zip(&actual).enumerate() {
        assert_eq!(want, got, "step {step}");
    }
    assert_eq!(expected.len(), actual.len());
}

#[actix_rt::test]
async fn writes_use_the_mesh_key_layout() {
    let mut fx = Fixture::new("layout").await;
    let rid = id("user:1");
    let result = write_one(
        &fx.store,
        &rid,
        absent(0),
        json!({"name": "Ada"}),
        OpId(100),
    )
    .await
    .expect("write");
    assert_eq!(result, WriteResult::Applied { version: 1 });
    let stored: (String, String) = redis::cmd("MGET")
        .arg(format!("{}record:user:1", fx.prefix))
        .arg(format!("{}record-version:user:1", fx.prefix))
        .query_async(&mut fx.raw)
        .await
        .expect("MGET");
    assert_eq!(stored, (r#"{"name":"Ada"}"#.to_string(), "1".to_string()));

    // Data written by Mesh (or anyone using the layout) is read back.
    fx.set(&format!("{}record:doc", fx.prefix), r#"{"n":41}"#)
        .await;
    fx.set(&format!("{}record-version:doc", fx.prefix), "41")
        .await;
    let loaded = fx.store.load(&id("doc")).await.expect("load");
    assert_eq!(loaded, restored(json!({"n": 41}), 41));
    assert_eq!(
        write_one(&fx.store, &id("doc"), live(41), json!({"n": 42}), OpId(1))
            .await
            .expect("write"),
        WriteResult::Applied { version: 42 }
    );
}

#[actix_rt::test]
async fn corrupt_records_are_reported() {
    let mut fx = Fixture::new("corrupt").await;
    let p = fx.prefix.clone();

    fx.set(&format!("{p}record:bad-json"), "{not json").await;
    fx.set(&format!("{p}record-version:bad-json"), "3").await;
    let err = fx.store.load(&id("bad-json")).await.expect_err("corrupt");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");

    fx.set(&format!("{p}record:bad-version"), "1").await;
    fx.set(&format!("{p}record-version:bad-version"), "three")
        .await;
    let err = fx
        .store
        .load(&id("bad-version"))
        .await
        .expect_err("corrupt");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let err = write_one(&fx.store, &id("bad-version"), live(3), json!(2), OpId(1))
        .await
        .expect_err("corrupt");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    let err = fx
        .store
        .delete(&id("bad-version"), OpId(2), None)
        .await
        .expect_err("corrupt");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");

    // A value whose version key was evicted is no record (not a corrupt one forever): it
    // loads as absent and a write creating the record replaces it.
    fx.set(&format!("{p}record:no-version"), "1").await;
    let loaded = fx.store.load(&id("no-version")).await.expect("load");
    assert_eq!(loaded, Stored::absent(0));
    let created = write_one(&fx.store, &id("no-version"), absent(0), json!(2), OpId(3))
        .await
        .expect("write");
    assert_eq!(created, WriteResult::Applied { version: 1 });
}

#[actix_rt::test]
async fn restore_works_in_chunks_and_keeps_newer_records() {
    let fx = Fixture::new("restore").await;
    // More records than one script call takes, so several chunks run.
    let records: Vec<_> = (0..1234u64)
        .map(|i| (id(&format!("r{i}")), restored(json!({"i": i}), 10)))
        .collect();
    assert_eq!(
        fx.store.restore(records.clone()).await.expect("restore"),
        1234
    );
    // Nothing newer: a second restore of the same records writes none.
    assert_eq!(fx.store.restore(records).await.expect("restore"), 0);

    let r7 = id("r7");
    assert_eq!(
        write_one(&fx.store, &r7, live(10), json!("live"), OpId(1))
            .await
            .expect("write"),
        WriteResult::Applied { version: 11 }
    );
    let written = fx
        .store
        .restore(vec![
            (r7.clone(), restored(json!("older"), 11)),
            (id("r8"), restored(json!("newer"), 12)),
            (id("fresh"), restored(json!("new"), 3)),
        ])
        .await
        .expect("restore");
    assert_eq!(written, 2);
    let load = |raw: &'static str| fx.store.load(&id(raw));
    assert_eq!(load("r7").await.expect("load").version, 11);
    assert_eq!(
        load("r8").await.expect("load"),
        restored(json!("newer"), 12)
    );
    assert_eq!(load("fresh").await.expect("load").version, 3);
    assert_eq!(fx.store.restore(Vec::new()).await.expect("restore"), 0);
}

/// Writes to many records at once leave together (one call carries the ones that queued), and
/// each is still judged on its own: a conflict in the middle changes nothing for the others.
#[actix_rt::test]
async fn writes_to_many_records_at_once_are_answered_each_on_its_own() {
    let fx = Fixture::new("batch").await;
    let watcher = fx.other_instance().await;
    let ids: Vec<RecordId> = (0..50).map(|n| id(&format!("b{n}"))).collect();
    let (sink, mut rx) = channel_sink();
    watcher.watch(&ids[20], sink).await.expect("watch");
    write_one(&fx.store, &ids[7], absent(0), json!("first"), OpId(1))
        .await
        .expect("write");

    let writes = ids
        .iter()
        .zip(0u64..)
        .map(|(rid, n)| write_one(&fx.store, rid, absent(0), json!(n), OpId(100 + n)));
    let results = join_all(writes).await;

    for (n, result) in results.into_iter().enumerate() {
        let result = result.expect("answered");
        if n == 7 {
            let current = Stored::live(value(json!("first")), 1);
            assert_eq!(result, WriteResult::Conflict { current });
        } else {
            assert_eq!(result, WriteResult::Applied { version: 1 }, "record {n}");
            assert_eq!(
                fx.store.load(&ids[n]).await.expect("load"),
                Stored::live(value(json!(n)), 1)
            );
        }
    }
    assert_eq!(next_change(&mut rx).await, updated(1, json!(20)));
}

/// A record Redis refuses to write (a key of the wrong type, put there by hand) fails alone:
/// the other records in the same call are written, and it is left as it was.
#[actix_rt::test]
async fn a_broken_record_does_not_fail_the_others_in_its_call() {
    let mut fx = Fixture::new("broken").await;
    let (broken, fine) = (id("broken"), id("fine"));
    write_one(&fx.store, &broken, absent(0), json!(1), OpId(1))
        .await
        .expect("write");
    let history = fx.store.keys().history(&broken);
    fx.set(&history, "not a list").await;

    let with_history = HistoryLimits {
        versions: 10,
        bytes: 10_000,
    };
    let patched = NewVersion {
        value: value(json!(2)),
        patch: Some(value(json!([{"op": "replace", "path": "", "value": 2}]))),
    };
    let (broken_write, fine_write) = futures_util::future::join(
        fx.store
            .write(&broken, live(1), vec![patched], OpId(2), with_history, None),
        write_one(&fx.store, &fine, absent(0), json!("ok"), OpId(3)),
    )
    .await;

    assert!(
        matches!(broken_write, Err(StoreError::Indeterminate(_))),
        "{broken_write:?}"
    );
    assert_eq!(
        fine_write.expect("write"),
        WriteResult::Applied { version: 1 }
    );
    assert_eq!(
        fx.store.load(&broken).await.expect("load"),
        Stored::live(value(json!(1)), 1)
    );
}

#[actix_rt::test]
async fn exactly_one_of_a_hundred_concurrent_writes_wins() {
    let fx = Fixture::new("race").await;
    let other = fx.other_instance().await;
    let rid = id("contended");
    let writes = (0..100).map(|i| {
        // Half the writers on each instance, like two servers racing.
        let store: &dyn Store = if i % 2 == 0 { &fx.store } else { &other };
        write_one(store, &rid, absent(0), json!({"writer": i}), OpId(i))
    });
    let results: Vec<WriteResult> = join_all(writes)
        .await
        .into_iter()
        .map(|r| r.expect("write"))
        .collect();
    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| **r == WriteResult::Applied { version: 1 })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let winner = restored(json!({"writer": winners[0]}), 1);
    for (i, result) in results.iter().enumerate() {
        if i != winners[0] {
            assert_eq!(
                *result,
                WriteResult::Conflict {
                    current: winner.clone()
                }
            );
        }
    }
    assert_eq!(fx.store.load(&rid).await.expect("load"), winner);
}

#[actix_rt::test]
async fn watchers_get_every_change_in_order() {
    let fx = Fixture::new("watch").await;
    let writer = fx.other_instance().await;
    let rid = id("watched");
    let (sink, mut rx) = channel_sink();
    fx.store.watch(&rid, sink).await.expect("watch");

    write_one(&writer, &rid, absent(0), json!({"n": 1}), OpId(1))
        .await
        .expect("write");
    writer
        .write(
            &rid,
            live(1),
            vals(vec![
                value(json!({"n": 2})),
                value(json!(null)),
                value(json!("four")),
            ]),
            OpId(2),
            NO_HISTORY,
            None,
        )
        .await
        .expect("batch write");
    writer.delete(&rid, OpId(3), None).await.expect("delete");

    assert_eq!(next_change(&mut rx).await, updated(1, json!({"n": 1})));
    assert_eq!(next_change(&mut rx).await, updated(2, json!({"n": 2})));
    assert_eq!(next_change(&mut rx).await, updated(3, json!(null)));
    assert_eq!(next_change(&mut rx).await, updated(4, json!("four")));
    assert_eq!(
        next_change(&mut rx).await,
        RemoteChange::Deleted { version: 4 }
    );
}

#[actix_rt::test]
async fn a_store_does_not_hand_its_own_writes_back() {
    let fx = Fixture::new("own").await;
    let other = fx.other_instance().await;
    let rid = id("own");
    let (own_sink, mut own_rx) = channel_sink();
    let (other_sink, mut other_rx) = channel_sink();
    fx.store.watch(&rid, own_sink).await.expect("watch");
    other.watch(&rid, other_sink).await.expect("watch");

    write_one(&fx.store, &rid, absent(0), json!("mine"), OpId(1))
        .await
        .expect("write");
    write_one(&other, &rid, live(1), json!("theirs"), OpId(2))
        .await
        .expect("write");
    fx.store.delete(&rid, OpId(3), None).await.expect("delete");

    // Each instance hears the other's write, never its own; deletions reach everyone.
    assert_eq!(next_change(&mut other_rx).await, updated(1, json!("mine")));
    assert_eq!(
        next_change(&mut other_rx).await,
        RemoteChange::Deleted { version: 2 }
    );
    assert_eq!(next_change(&mut own_rx).await, updated(2, json!("theirs")));
    assert_eq!(
        next_change(&mut own_rx).await,
        RemoteChange::Deleted { version: 2 }
    );
}

#[actix_rt::test]
async fn conflicts_publish_nothing_and_restores_publish_what_they_wrote() {
    let fx = Fixture::new("quiet").await;
    let watcher = fx.other_instance().await;
    let rid = id("quiet");
    let (sink, mut rx) = channel_sink();
    watcher.watch(&rid, sink).await.expect("watch");

    let conflict = write_one(&fx.store, &rid, live(5), json!(1), OpId(1))
        .await
        .expect("write");
    assert_eq!(
        conflict,
        WriteResult::Conflict {
            current: Stored::absent(0)
        }
    );
    assert_eq!(
        fx.store
            .delete(&id("never-existed"), OpId(2), None)
            .await
            .expect("delete"),
        DeleteResult::Absent { version: 0 }
    );
    let written = fx
        .store
        .restore(vec![(rid.clone(), restored(json!("r"), 7))])
        .await
        .expect("restore");
    assert_eq!(written, 1);
    // Not newer: written nowhere, published nowhere.
    let written = fx
        .store
        .restore(vec![(rid.clone(), restored(json!("old"), 6))])
        .await
        .expect("restore");
    assert_eq!(written, 0);
    write_one(&fx.store, &rid, live(7), json!("w"), OpId(3))
        .await
        .expect("write");

    // Messages of one record arrive in publish order: the restore's, then the write's.
    assert_eq!(next_change(&mut rx).await, updated(7, json!("r")));
    assert_eq!(next_change(&mut rx).await, updated(8, json!("w")));
}

#[actix_rt::test]
async fn unwatch_stops_only_its_own_sink() {
    let fx = Fixture::new("unwatch").await;
    let watcher = fx.other_instance().await;
    let rid = id("shared");
    let (old_sink, mut old_rx) = channel_sink();
    let (new_sink, mut new_rx) = channel_sink();
    let old = watcher.watch(&rid, old_sink).await.expect("watch");
    let new = watcher.watch(&rid, new_sink).await.expect("watch");
    assert_ne!(old, new);

    write_one(&fx.store, &rid, absent(0), json!(1), OpId(100))
        .await
        .expect("write");
    assert_eq!(next_change(&mut old_rx).await, updated(1, json!(1)));
    assert_eq!(next_change(&mut new_rx).await, updated(1, json!(1)));

    watcher.unwatch(&rid, old);
    write_one(&fx.store, &rid, live(1), json!(2), OpId(101))
        .await
        .expect("write");
    assert_eq!(next_change(&mut new_rx).await, updated(2, json!(2)));
    // The router handled the second message before the new sink saw it, so the old sink
    // would have it by now.
    assert!(old_rx.try_recv().is_err(), "unwatched sink still called");

    // The last sink leaving unsubscribes; a later watch subscribes again.
    watcher.unwatch(&rid, new);
    let (again_sink, mut again_rx) = channel_sink();
    watcher.watch(&rid, again_sink).await.expect("watch");
    write_one(&fx.store, &rid, live(2), json!(3), OpId(102))
        .await
        .expect("write");
    assert_eq!(next_change(&mut again_rx).await, updated(3, json!(3)));
    assert!(new_rx.try_recv().is_err(), "unwatched sink still called");
}

#[actix_rt::test]
async fn malformed_messages_are_skipped() {
    let mut fx = Fixture::new("malformed").await;
    let watcher = fx.other_instance().await;
    let rid = id("noisy");
    let (sink, mut rx) = channel_sink();
    watcher.watch(&rid, sink).await.expect("watch");
    let channel = fx.store.keys().channel(&rid);
    fx.publish(&channel, "not json").await;
    fx.publish(&channel, r#"{"version":"1","value":1}"#).await;
    fx.publish(&channel, r#"{"version":1}"#).await;
    write_one(&fx.store, &rid, absent(0), json!("ok"), OpId(100))
        .await
        .expect("write");
    assert_eq!(next_change(&mut rx).await, updated(1, json!("ok")));
}

#[actix_rt::test]
async fn a_panicking_sink_does_not_stop_the_router() {
    let fx = Fixture::new("panic").await;
    let watcher = fx.other_instance().await;
    let rid = id("p");
    let panicking: ChangeSink = Arc::new(|_| panic!("sink failure (expected by the test)"));
    watcher.watch(&rid, panicking).await.expect("watch");
    let (sink, mut rx) = channel_sink();
    watcher.watch(&rid, sink).await.expect("watch");
    write_one(&fx.store, &rid, absent(0), json!(1), OpId(100))
        .await
        .expect("write");
    write_one(&fx.store, &rid, live(1), json!(2), OpId(101))
        .await
        .expect("write");
    assert_eq!(next_change(&mut rx).await, updated(1, json!(1)));
    assert_eq!(next_change(&mut rx).await, updated(2, json!(2)));
}

#[actix_rt::test]
async fn connect_fails_fast_when_redis_is_unreachable() {
    let port = free_port();
    let started = Instant::now();
    let result = RedisStore::connect(&format!("redis://127.0.0.1:{port}"), "x:").await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    let result = RedisStore::connect("not a url", "x:").await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
}

#[actix_rt::test]
async fn a_redis_restart_fails_fast_then_resyncs_watchers() {
    let mut redis = OwnRedis::start();
    let url = redis.url();
    let store = RedisStore::connect(&url, "restart:")
        .await
        .expect("connect");
    // Watched through a second instance: a store does not hand its own writes back.
    let watcher = RedisStore::connect(&url, "restart:")
        .await
        .expect("connect");
    let rid = id("survivor");
    let (sink, mut rx) = channel_sink();
    watcher.watch(&rid, sink).await.expect("watch");
    write_one(&store, &rid, absent(0), json!(1), OpId(100))
        .await
        .expect("write");
    assert_eq!(next_change(&mut rx).await, updated(1, json!(1)));

    redis.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let result = write_one(&store, &rid, live(1), json!(2), OpId(101)).await;
        // A write sent on the connection Redis dropped may or may not have run: the store
        // says so instead of claiming nothing was written.
        assert!(
            matches!(
                result,
                Err(StoreError::Unavailable(_) | StoreError::Indeterminate(_))
            ),
            "{result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    assert!(matches!(
        store.load(&rid).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
    let (late_sink, _late_rx) = channel_sink();
    assert!(matches!(
        watcher.watch(&id("late"), late_sink).await,
        Err(StoreError::Unavailable(_))
    ));

    // Not waiting for an event: this is the outage itself. It outlasts the command
    // connection's own reconnect attempt (one retry, at most 200 ms apart), so the first
    // write after the restart meets a failed attempt, as after any real outage.
    tokio::time::sleep(Duration::from_millis(600)).await;
    redis.restart();
    assert_eq!(next_change(&mut rx).await, RemoteChange::Resync);
    // The restarted server is empty; a writer that reloaded starts again from version 0.
    let result = write_one(&store, &rid, absent(0), json!("after"), OpId(100)).await;
    assert_eq!(
        result.expect("write after restart"),
        WriteResult::Applied { version: 1 }
    );
    assert_eq!(next_change(&mut rx).await, updated(1, json!("after")));
}

#[actix_rt::test]
async fn a_killed_pubsub_connection_is_replaced_and_resynced() {
    let redis = OwnRedis::start();
    let url = redis.url();
    let store = RedisStore::connect(&url, "kill:").await.expect("connect");
    // Watched through a second instance: a store does not hand its own writes back.
    let watcher = RedisStore::connect(&url, "kill:").await.expect("connect");
    let (rid, other) = (id("a"), id("b"));
    let (sink, mut rx) = channel_sink();
    let (other_sink, mut other_rx) = channel_sink();
    watcher.watch(&rid, sink).await.expect("watch");
    watcher.watch(&other, other_sink).await.expect("watch");

    let mut admin = redis::Client::open(url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection");
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut admin)
        .await
        .expect("CLIENT KILL");
    assert_eq!(killed, 1);

    assert_eq!(next_change(&mut rx).await, RemoteChange::Resync);
    assert_eq!(next_change(&mut other_rx).await, RemoteChange::Resync);
    // Both channels are subscribed again on the new connection.
    write_one(&store, &rid, absent(0), json!("a1"), OpId(100))
        .await
        .expect("write");
    write_one(&store, &other, absent(0), json!("b1"), OpId(100))
        .await
        .expect("write");
    assert_eq!(next_change(&mut rx).await, updated(1, json!("a1")));
    assert_eq!(next_change(&mut other_rx).await, updated(1, json!("b1")));
}

#[actix_rt::test]
async fn a_hung_redis_times_out_then_resyncs_watchers() {
    let redis = OwnRedis::start();
    let url = redis.url();
    let store = RedisStore::connect(&url, "hung:").await.expect("connect");
    // Watched through a second instance: a store does not hand its own writes back.
    let watcher = RedisStore::connect(&url, "hung:").await.expect("connect");
    let rid = id("r");
    let (sink, mut rx) = channel_sink();
    watcher.watch(&rid, sink).await.expect("watch");

    redis.signal(libc::SIGSTOP);
    let frozen = Instant::now();
    // Another record: Redis may still run these writes once it thaws, and their messages
    // must not mix with the watched record's.
    let stalled = id("stalled");
    for _ in 0..2 {
        let started = Instant::now();
        let result = write_one(&store, &stalled, absent(0), json!(1), OpId(100)).await;
        // Sent, never answered: Redis may still run it once it thaws.
        assert!(
            matches!(result, Err(StoreError::Indeterminate(_))),
            "{result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
    // The outage itself, not a wait for an event: long enough for the router's ping (every
    // 5 s, answered within 2 s) to find the connection dead.
    let outage = Duration::from_millis(7500);
    tokio::time::sleep(outage.saturating_sub(frozen.elapsed())).await;
    redis.signal(libc::SIGCONT);

    assert_eq!(next_change(&mut rx).await, RemoteChange::Resync);
    assert_eq!(
        store.load(&rid).await.expect("load after thaw"),
        Stored::absent(0)
    );
    let result = write_one(&store, &rid, absent(0), json!("after"), OpId(100)).await;
    assert_eq!(
        result.expect("write after thaw"),
        WriteResult::Applied { version: 1 }
    );
    assert_eq!(next_change(&mut rx).await, updated(1, json!("after")));
}
