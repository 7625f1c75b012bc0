//! Records that expire, at the store: deadlines set by writes and `set_expiry`, and
//! `expire_due` deleting what is due exactly as a delete does, on every store (memory, one
//! Redis node, the shared Redis Cluster). On Redis, also: several instances sweeping at once
//! delete each record once, a record whose deadline moved later after its index entry came
//! due is left alone, and a claim left by a sweeper that died comes back after its lease.
//!
//! Each Redis test works under its own key prefix and deletes its keys at the end. Deadlines
//! are short (a few hundred milliseconds) and waited for by sweeping until the record goes,
//! with a timeout; "not before" is checked only while the clock says the deadline is ahead.

use crate::common;

use common::own_cluster::{self, shared_cluster_url};
use common::scenario::*;
use common::{Backend, Keys, patience, redis_url, unique_prefix};
use futures_util::future::join_all;
use mesh_records::store::{
    ChangeSink, ExpiredBatch, FeedEvent, FeedSink, MemoryStore, OpId, RedisStore, RemoteChange,
    Store, Stored, WriteResult,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::timeout;

on_every_store!(
    with_cluster:
    a_record_is_deleted_after_its_deadline_and_not_before,
    a_rewrite_with_a_ttl_moves_the_deadline_and_one_without_keeps_it,
    set_expiry_sets_and_clears_a_live_records_deadline,
    a_delete_clears_the_deadline,
    sweepers_together_delete_each_record_once,
    a_record_whose_deadline_moved_later_after_its_entry_came_due_is_kept,
    a_conflict_or_a_write_of_nothing_sets_no_deadline,
);

/// A short life, long enough to check that a record is still there before it ends.
const SHORT: Duration = Duration::from_millis(300);
/// A life no test outlives.
const LONG: Duration = Duration::from_secs(3600);
/// How much earlier than the local clock says Redis may end a life: it keeps whole
/// milliseconds of its own (wall) clock.
const ROUNDING: Duration = Duration::from_millis(5);

/// One store under test, and the instances and raw access a test may need.
struct Under {
    store: Arc<dyn Store>,
    /// The Redis store behind `store`, to open more instances on the same keys.
    redis: Option<RedisStore>,
    backend: Backend,
    prefix: String,
    _keys: Option<Keys>,
}

impl Under {
    async fn open(backend: Backend, test: &str) -> Under {
        let prefix = unique_prefix(test);
        let (redis, keys) = match backend {
            Backend::Memory => (None, None),
            Backend::Redis => (
                Some(RedisStore::connect(&redis_url(), &prefix).await.unwrap()),
                Some(Keys::on_redis(&prefix)),
            ),
            Backend::RedisCluster => (
                Some(
                    RedisStore::connect_cluster(&shared_cluster_url(), &[], &prefix)
                        .await
                        .unwrap(),
                ),
                Some(Keys::on_cluster(&prefix)),
            ),
        };
        let store: Arc<dyn Store> = match &redis {
            Some(redis) => {
                redis.set_change_feed(true);
                Arc::new(redis.clone())
            }
            None => Arc::new(MemoryStore::new()),
        };
        Under {
            store,
            redis,
            backend,
            prefix,
            _keys: keys,
        }
    }

    /// Another instance on the same records (on memory: the same store, shared).
    async fn other(&self) -> Arc<dyn Store> {
        let other = match self.backend {
            Backend::Memory => return Arc::clone(&self.store),
            Backend::Redis => RedisStore::connect(&redis_url(), &self.prefix).await,
            Backend::RedisCluster => {
                RedisStore::connect_cluster(&shared_cluster_url(), &[], &self.prefix).await
            }
        };
        let other = other.unwrap();
        other.set_change_feed(true);
        Arc::new(other)
    }

    /// Entries in the expiry index sets (none on memory, which has no separate index).
    async fn index_entries(&self) -> usize {
        let Some(redis) = &self.redis else {
            return 0;
        };
        let mut raw = Raw::open(self.backend).await;
        let mut total = 0;
        for index in redis.keys().expiry_indexes() {
            let count: usize = raw.query(::redis::cmd("ZCARD").arg(&index)).await;
            total += count;
        }
        total
    }
}

/// A raw connection to the Redis under test, for looking behind the store.
enum Raw {
    Node(::redis::aio::MultiplexedConnection),
    Cluster(::redis::cluster_async::ClusterConnection),
}

impl Raw {
    async fn open(backend: Backend) -> Raw {
        match backend {
            Backend::RedisCluster => {
                Raw::Cluster(own_cluster::connect(&shared_cluster_url()).await)
            }
            _ => Raw::Node(
                ::redis::Client::open(redis_url())
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap(),
            ),
        }
    }

    async fn query<T: ::redis::FromRedisValue>(&mut self, cmd: &::redis::Cmd) -> T {
        match self {
            Raw::Node(conn) => cmd.query_async(conn).await.unwrap(),
            Raw::Cluster(conn) => cmd.query_async(conn).await.unwrap(),
        }
    }
}

/// Writes `v` over whatever the record holds, with `ttl`; returns the new version.
async fn put(store: &dyn Store, rid: &str, v: Value, ttl: Option<Duration>) -> u64 {
    put_over(store, &id(rid), v, ttl).await
}

/// Sweeps until nothing is due: every record deleted, by id (an id deleted twice fails).
async fn sweep_all(store: &dyn Store) -> BTreeMap<String, u64> {
    let mut deleted = BTreeMap::new();
    loop {
        let batch = store.expire_due(100).await.unwrap();
        assert_eq!(batch.unknown, vec![], "no answer is lost here");
        for (rid, version) in batch.deleted {
            assert!(
                deleted.insert(rid.to_string(), version).is_none(),
                "{rid} twice"
            );
        }
        if !batch.more {
            return deleted;
        }
    }
}

/// Sweeps every 20 ms until `rid` is deleted; returns its tombstone version.
async fn sweep_until_gone(store: &dyn Store, rid: &str) -> u64 {
    let deadline = Instant::now() + patience();
    loop {
        if let Some(version) = sweep_all(store).await.get(rid) {
            return *version;
        }
        assert!(Instant::now() < deadline, "{rid} was not expired in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn channel_sink() -> (ChangeSink, mpsc::UnboundedReceiver<RemoteChange>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Arc::new(move |change| drop(tx.send(change))), rx)
}

fn feed_sink() -> (FeedSink, mpsc::UnboundedReceiver<FeedEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Arc::new(move |event| drop(tx.send(event))), rx)
}

async fn a_record_is_deleted_after_its_deadline_and_not_before(backend: Backend) {
    let under = Under::open(backend, "exp-basic").await;
    let (store, other) = (&*under.store, under.other().await);
    let rid = id("brief");
    // Another instance's watcher and change feed hear of the expiry as of a delete (on the
    // memory store, the store's own watchers and feed).
    let (sink, mut changes) = channel_sink();
    other.watch(&rid, sink).await.unwrap();
    let (feed, mut events) = feed_sink();
    other.watch_all(feed).await.unwrap();

    let started = Instant::now();
    let version = put(store, "brief", json!({"n": 1}), Some(SHORT)).await;
    let early = sweep_all(store).await;
    if started.elapsed() < SHORT {
        assert!(early.is_empty(), "expired before its deadline: {early:?}");
        assert!(store.load(&rid).await.unwrap().exists());
    }
    assert_eq!(sweep_until_gone(store, "brief").await, version);
    assert!(
        started.elapsed() >= SHORT - ROUNDING,
        "{:?}",
        started.elapsed()
    );
    assert_eq!(store.load(&rid).await.unwrap(), Stored::absent(version));

    let deleted = loop {
        match timeout(patience(), changes.recv()).await.unwrap().unwrap() {
            RemoteChange::Updated { .. } | RemoteChange::Resync => {}
            change => break change,
        }
    };
    assert_eq!(deleted, RemoteChange::Deleted { version });
    // The feed names the record twice: written, then expired.
    let mut named = 0;
    while named < 2 {
        let event = timeout(patience(), events.recv()).await;
        if event.expect("the feed names the record").unwrap() == FeedEvent::Changed(rid.clone()) {
            named += 1;
        }
    }

    // The tombstone keeps the version: the record comes back after it, with no deadline.
    let again = put(store, "brief", json!({"n": 2}), None).await;
    assert_eq!(again, version + 1);
    tokio::time::sleep(SHORT + Duration::from_millis(100)).await;
    assert!(sweep_all(store).await.is_empty());
    assert_eq!(
        under.index_entries().await,
        0,
        "the entry went with the expiry"
    );
}

async fn a_rewrite_with_a_ttl_moves_the_deadline_and_one_without_keeps_it(backend: Backend) {
    let under = Under::open(backend, "exp-rewrite").await;
    let store = &*under.store;
    let rid = id("moved");
    put(store, "moved", json!(1), Some(SHORT)).await;
    let later = put(store, "moved", json!(2), Some(LONG)).await;
    tokio::time::sleep(SHORT + Duration::from_millis(200)).await;
    assert!(
        sweep_all(store).await.is_empty(),
        "its deadline moved later"
    );
    assert_eq!(store.load(&rid).await.unwrap().version, later);

    // A deadline moved earlier again, then a plain write: the deadline stays.
    let started = Instant::now();
    put(store, "moved", json!(3), Some(SHORT)).await;
    let plain = put(store, "moved", json!(4), None).await;
    assert_eq!(sweep_until_gone(store, "moved").await, plain);
    assert!(started.elapsed() >= SHORT - ROUNDING);
}

async fn set_expiry_sets_and_clears_a_live_records_deadline(backend: Backend) {
    let under = Under::open(backend, "exp-set").await;
    let store = &*under.store;
    let rid = id("doc");
    assert!(
        !store.set_expiry(&rid, Some(SHORT)).await.unwrap(),
        "no record"
    );
    let version = put(store, "doc", json!({"a": 1}), None).await;
    assert!(store.set_expiry(&rid, Some(SHORT)).await.unwrap());
    assert!(store.set_expiry(&rid, None).await.unwrap());
    tokio::time::sleep(SHORT + Duration::from_millis(200)).await;
    assert!(
        sweep_all(store).await.is_empty(),
        "the deadline was cleared"
    );
    assert_eq!(
        under.index_entries().await,
        0,
        "its entry went on the sweep"
    );

    let started = Instant::now();
    assert!(store.set_expiry(&rid, Some(SHORT)).await.unwrap());
    // Neither the value nor the version moved.
    let held = store.load(&rid).await.unwrap();
    assert_eq!(held, Stored::live(value(json!({"a": 1})), version));
    assert_eq!(sweep_until_gone(store, "doc").await, version);
    assert!(started.elapsed() >= SHORT - ROUNDING);
    assert!(
        !store.set_expiry(&rid, Some(LONG)).await.unwrap(),
        "a tombstone"
    );
    assert!(!store.set_expiry(&rid, None).await.unwrap());
}

async fn a_delete_clears_the_deadline(backend: Backend) {
    let under = Under::open(backend, "exp-delete").await;
    let store = &*under.store;
    let rid = id("gone");
    let first = put(store, "gone", json!(1), Some(SHORT)).await;
    store.delete(&rid, OpId::next(), None).await.unwrap();
    // Created again: it must not inherit the deadline of the record deleted before.
    let second = put(store, "gone", json!(2), None).await;
    assert_eq!(second, first + 1);
    tokio::time::sleep(SHORT + Duration::from_millis(200)).await;
    assert!(sweep_all(store).await.is_empty());
    assert_eq!(store.load(&rid).await.unwrap().version, second);
    assert_eq!(
        under.index_entries().await,
        0,
        "the stale entry went on the sweep"
    );
    // A restored tombstone is a deletion too.
    assert!(store.set_expiry(&rid, Some(SHORT)).await.unwrap());
    store
        .restore(vec![(rid.clone(), Stored::absent(second + 1))])
        .await
        .unwrap();
    put(store, "gone", json!(3), None).await;
    tokio::time::sleep(SHORT + Duration::from_millis(200)).await;
    assert!(sweep_all(store).await.is_empty());
    assert!(store.load(&rid).await.unwrap().exists());
}

async fn sweepers_together_delete_each_record_once(backend: Backend) {
    let under = Under::open(backend, "exp-together").await;
    const RECORDS: usize = 40;
    for n in 0..RECORDS {
        put(&*under.store, &format!("r:{n}"), json!(n), Some(SHORT)).await;
    }
    tokio::time::sleep(SHORT + Duration::from_millis(100)).await;
    let mut instances = vec![Arc::clone(&under.store)];
    for _ in 0..2 {
        instances.push(under.other().await);
    }
    // Three instances sweep a few records at a time until none is left for them.
    let sweeps = instances.iter().map(|store| async move {
        let mut mine: Vec<(String, u64)> = Vec::new();
        loop {
            let ExpiredBatch {
                deleted,
                unknown,
                more,
            } = store.expire_due(3).await.unwrap();
            assert_eq!(unknown, vec![]);
            let idle = deleted.is_empty() && !more;
            mine.extend(deleted.into_iter().map(|(rid, v)| (rid.to_string(), v)));
            if idle {
                return mine;
            }
        }
    });
    let mut seen = BTreeMap::new();
    for (rid, version) in join_all(sweeps).await.into_iter().flatten() {
        assert!(
            seen.insert(rid.clone(), version).is_none(),
            "{rid} deleted twice"
        );
    }
    assert_eq!(seen.len(), RECORDS, "{seen:?}");
    for (rid, version) in &seen {
        assert_eq!(*version, 1);
        assert_eq!(under.store.load(&id(rid)).await.unwrap(), Stored::absent(1));
    }
    assert_eq!(under.index_entries().await, 0);
}

async fn a_record_whose_deadline_moved_later_after_its_entry_came_due_is_kept(backend: Backend) {
    let under = Under::open(backend, "exp-later").await;
    let store = &*under.store;
    let rid = id("kept");
    put(store, "kept", json!(1), Some(SHORT)).await;
    // The second write files no later hint (entries only move earlier), so the entry comes
    // due at the first deadline while the record's own deadline is an hour away.
    let version = put(store, "kept", json!(2), Some(LONG)).await;
    tokio::time::sleep(SHORT + Duration::from_millis(100)).await;
    assert!(sweep_all(store).await.is_empty());
    assert_eq!(store.load(&rid).await.unwrap().version, version);
    if let Some(redis) = &under.redis {
        // The sweep moved the entry to the record's deadline.
        let mut raw = Raw::open(backend).await;
        let score: f64 = raw
            .query(
                ::redis::cmd("ZSCORE")
                    .arg(redis.keys().expiry_index(&rid))
                    .arg(rid.as_str()),
            )
            .await;
        let now: (u64, u64) = raw.query(&::redis::cmd("TIME")).await;
        let now_ms = (now.0 * 1000 + now.1 / 1000) as f64;
        assert!(
            score > now_ms + 3_000_000.0,
            "entry at {score}, now {now_ms}"
        );
    }
}

async fn a_conflict_or_a_write_of_nothing_sets_no_deadline(backend: Backend) {
    let under = Under::open(backend, "exp-conflict").await;
    let store = &*under.store;
    let rid = id("contested");
    let version = put(store, "contested", json!(1), None).await;
    let now = Some(Duration::ZERO);
    let stale = store
        .write(
            &rid,
            live(version + 5),
            vals(vec![value(json!(2))]),
            OpId::next(),
            NO_HISTORY,
            now,
        )
        .await
        .unwrap();
    assert!(matches!(stale, WriteResult::Conflict { .. }), "{stale:?}");
    let nothing = store
        .write(
            &rid,
            live(version),
            vals(vec![]),
            OpId::next(),
            NO_HISTORY,
            now,
        )
        .await
        .unwrap();
    assert_eq!(nothing, WriteResult::Applied { version });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(sweep_all(store).await.is_empty());
    assert!(store.load(&rid).await.unwrap().exists());
    // The entry the conflicting write filed was checked by that sweep and dropped.
    assert_eq!(under.index_entries().await, 0);
}

/// The claim script as the store sends it, run by hand: a sweeper that claims and then dies.
fn claim_script() -> ::redis::Script {
    ::redis::Script::new(concat!(
        "#!lua flags=allow-oom\nlocal PUBLISH = 'PUBLISH'\n",
        include_str!("../../src/store/redis/lua/common.lua"),
        include_str!("../../src/store/redis/lua/index_claim.lua")
    ))
}

/// A sweeper claims a due record and dies before expiring it: nobody else takes the record
/// while the claim's lease runs, and it is expired once the lease is over.
async fn a_claim_left_by_a_dead_sweeper_comes_back_after_its_lease(backend: Backend) {
    const LEASE: Duration = Duration::from_millis(800);
    let under = Under::open(backend, "exp-lease").await;
    let (store, redis) = (&*under.store, under.redis.as_ref().unwrap());
    let rid = id("claimed");
    let version = put(store, "claimed", json!(1), Some(Duration::ZERO)).await;
    let mut raw = Raw::open(backend).await;
    let script = claim_script();
    let mut claim = script.prepare_invoke();
    claim
        .key(redis.keys().expiry_index(&rid))
        .arg(10)
        .arg(LEASE.as_millis() as u64);
    let claimed_at = Instant::now();
    let (_, more, ids): (String, i64, Vec<String>) = match &mut raw {
        Raw::Node(conn) => claim.invoke_async(conn).await.unwrap(),
        Raw::Cluster(conn) => claim.invoke_async(conn).await.unwrap(),
    };
    assert_eq!((more, ids), (0, vec!["claimed".to_string()]));
    let meanwhile = sweep_all(store).await;
    if claimed_at.elapsed() < LEASE {
        assert!(
            meanwhile.is_empty(),
            "taken during the lease: {meanwhile:?}"
        );
    }
    assert_eq!(sweep_until_gone(store, "claimed").await, version);
    assert!(claimed_at.elapsed() >= LEASE - ROUNDING);
    assert_eq!(under.index_entries().await, 0);
}

mod leases {
    use super::*;

    #[actix_web::test]
    async fn on_redis() {
        a_claim_left_by_a_dead_sweeper_comes_back_after_its_lease(Backend::Redis).await
    }

    #[actix_web::test]
    async fn on_the_cluster() {
        a_claim_left_by_a_dead_sweeper_comes_back_after_its_lease(Backend::RedisCluster).await
    }
}
