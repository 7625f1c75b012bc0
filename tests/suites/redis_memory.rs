//! Redis at its memory limit, on a Redis (or Redis Cluster) of the test's own: a write or a
//! restore Redis refuses for memory changes nothing anywhere and is reported as such, while a
//! delete still runs; an evicting `maxmemory-policy` stops the server at start unless the config
//! accepts it (then an evicted value reads as a deletion, as docs/deployment.md says), and a
//! Redis that will not tell its policy is used with a warning.

use crate::common;

use common::own_redis::{OwnRedis, run};
use common::{Client, TestServer, patience, start_as_configured};
use serde_json::{Value, json};
use std::time::Instant;

fn config(prefix: &str, redis_url: &str, extra: &str) -> String {
    format!(
        r#"
[server]
max_requests_per_second = 0
record_linger_ms = 60000

[store]
backend = "redis"
redis_url = "{redis_url}"
key_prefix = "{prefix}"
{extra}

[[records.expose]]
pattern = "^doc:"
writable = true
"#
    )
}

/// The next record push of `client`, skipping pings.
async fn next_update(client: &mut Client) -> Value {
    let deadline = Instant::now() + patience();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let push = client.try_next_push(remaining).await.expect("a push");
        if push["command"] != "ping" {
            return push;
        }
    }
}

async fn redis_get(raw: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query_async(raw).await.unwrap()
}

/// How many filler keys [`fill`] adds, 64 KiB each: 2 MiB, four times what Redis is put over
/// its limit by.
const FILLERS: usize = 32;

/// Puts Redis over its `maxmemory`, with `noeviction`: adds filler keys (`<filler><n>`), then
/// sets the limit 512 KiB below what Redis then uses, and checks that it refuses a `SET`.
/// On a cluster node, `filler` carries a hash tag of a slot the node serves.
async fn fill(raw: &mut redis::aio::MultiplexedConnection, filler_key: &str) {
    run(raw, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]).await;
    let filler = "x".repeat(64 * 1024);
    for n in 0..FILLERS {
        run(raw, &["SET", &format!("{filler_key}{n}"), &filler]).await;
    }
    // Other tests share the node and free keys now and then: when used memory fell below the
    // limit between the reading and the probe, read it again.
    for _ in 0..5 {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(raw)
            .await
            .unwrap();
        let used: u64 = info
            .lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("used_memory in INFO");
        let limit = (used - 512 * 1024).to_string();
        run(raw, &["CONFIG", "SET", "maxmemory", &limit]).await;
        let probe: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("{filler_key}probe"))
            .arg("x")
            .query_async(raw)
            .await;
        if let Err(err) = probe {
            assert!(err.to_string().contains("OOM"), "{err}");
            return;
        }
    }
    panic!("Redis is never over its maxmemory");
}

/// Deletes the filler keys [`fill`] added.
async fn free(raw: &mut redis::aio::MultiplexedConnection, filler_key: &str) {
    let keys: Vec<String> = (0..FILLERS).map(|n| format!("{filler_key}{n}")).collect();
    let _: () = redis::cmd("DEL").arg(keys).query_async(raw).await.unwrap();
}

/// Two instances on one store, a subscriber on each, and `id` written once through the first
/// (both subscribers saw version 1): (instance a, instance b, writer on a, on_a, on_b).
async fn written_once(toml: &str, id: &str) -> (TestServer, TestServer, Client, Client, Client) {
    let (a, b) = (
        start_as_configured(toml).await,
        start_as_configured(toml).await,
    );
    let (mut on_a, mut on_b) = (a.client().await, b.client().await);
    on_a.subscribe(id, "full").await;
    on_b.subscribe(id, "full").await;
    let mut writer = a.client().await;
    assert_eq!(
        writer.publish(id, json!({"n": 1})).await,
        json!({"success": true})
    );
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(next_update(client).await["payload"]["version"], 1);
    }
    (a, b, writer, on_a, on_b)
}

#[actix_web::test]
async fn a_write_redis_refuses_for_memory_changes_nothing_anywhere() {
    let redis = OwnRedis::start();
    let mut raw = redis.connect().await;
    let prefix = common::unique_prefix("redis-oom");
    let toml = config(&prefix, &redis.url(), "");
    let (a, b, mut writer, mut on_a, mut on_b) = written_once(&toml, "doc:m").await;

    fill(&mut raw, "filler:").await;
    let refused = writer.publish("doc:m", json!({"n": 2})).await;
    assert_eq!(refused["code"], "EUNAVAILABLE", "{refused}");
    let version_key = format!("{prefix}record-version:doc:m");
    let value_key = format!("{prefix}record:doc:m");
    assert_eq!(
        redis_get(&mut raw, &version_key).await.as_deref(),
        Some("1")
    );
    assert_eq!(
        redis_get(&mut raw, &value_key).await.as_deref(),
        Some(r#"{"n":1}"#)
    );

    // Memory freed, the next write takes the next version, and it is the first change either
    // subscriber hears of: the refused value was never published.
    free(&mut raw, "filler:").await;
    assert_eq!(
        writer.publish("doc:m", json!({"n": 3})).await,
        json!({"success": true})
    );
    for client in [&mut on_a, &mut on_b] {
        let push = next_update(client).await;
        assert_eq!(push["payload"]["version"], 2, "{push}");
        assert_eq!(push["payload"]["full"], json!({"n": 3}), "{push}");
    }
    assert_eq!(
        redis_get(&mut raw, &version_key).await.as_deref(),
        Some("2")
    );
    for server in [&a, &b] {
        let record = server.records().get_record("doc:m").await.unwrap().unwrap();
        assert_eq!((record.version, &*record.value), (2, &json!({"n": 3})));
    }
    a.stop().await;
    b.stop().await;
}

#[actix_web::test]
async fn a_delete_runs_while_redis_is_full_and_makes_room() {
    let redis = OwnRedis::start();
    let mut raw = redis.connect().await;
    let prefix = common::unique_prefix("redis-oom-delete");
    let toml = config(&prefix, &redis.url(), "");
    let (a, b) = (
        start_as_configured(&toml).await,
        start_as_configured(&toml).await,
    );
    let mut on_b = b.client().await;
    on_b.subscribe("doc:d", "full").await;
    let mut writer = a.client().await;
    assert_eq!(
        writer.publish("doc:d", json!({"n": 1})).await,
        json!({"success": true})
    );
    assert_eq!(next_update(&mut on_b).await["payload"]["version"], 1);

    fill(&mut raw, "filler:").await;
    // Deleting frees memory, so Redis being full does not stop it; the tombstone stays.
    assert_eq!(a.records().delete_record("doc:d").await.unwrap(), Some(1));
    let push = next_update(&mut on_b).await;
    assert_eq!(push["command"], "mesh/record-deleted", "{push}");
    assert_eq!(push["payload"]["version"], 1, "{push}");
    let version_key = format!("{prefix}record-version:doc:d");
    assert_eq!(
        redis_get(&mut raw, &version_key).await.as_deref(),
        Some("1")
    );
    assert_eq!(b.records().get_record("doc:d").await.unwrap(), None);
    a.stop().await;
    b.stop().await;
}

/// Starting on `policy` fails with the message; the error text.
async fn refused_start(redis: &OwnRedis, policy: &str) -> String {
    let mut raw = redis.connect().await;
    run(&mut raw, &["CONFIG", "SET", "maxmemory-policy", policy]).await;
    let prefix = common::unique_prefix("redis-policy");
    let toml = config(&prefix, &redis.url(), "");
    match mesh_records::start(common::test_config(&toml)).await {
        Ok(running) => {
            running.stop().await;
            panic!("started on maxmemory-policy {policy}")
        }
        Err(err) => err.to_string(),
    }
}

#[actix_web::test]
async fn an_evicting_policy_stops_the_server_at_start_unless_allowed() {
    let redis = OwnRedis::start();
    let refused = refused_start(&redis, "allkeys-lru").await;
    assert!(
        refused.contains("maxmemory-policy allkeys-lru"),
        "{refused}"
    );
    assert!(refused.contains("reads as a deletion"), "{refused}");
    assert!(
        refused.contains("allow_evicting_policy = true"),
        "{refused}"
    );
    let refused = refused_start(&redis, "volatile-lru").await;
    assert!(
        refused.contains("volatile-* policies evict only"),
        "{refused}"
    );

    // Told to, it runs (with a warning in the log) and serves.
    let mut raw = redis.connect().await;
    run(
        &mut raw,
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"],
    )
    .await;
    let prefix = common::unique_prefix("redis-policy");
    let server = start_as_configured(&config(
        &prefix,
        &redis.url(),
        "allow_evicting_policy = true",
    ))
    .await;
    let mut client = server.client().await;
    assert_eq!(
        client.publish("doc:p", json!({"n": 1})).await,
        json!({"success": true})
    );
    server.stop().await;
}

#[actix_web::test]
async fn an_evicted_value_reads_as_a_deletion_when_evicting_is_allowed() {
    let redis = OwnRedis::start();
    let mut raw = redis.connect().await;
    run(
        &mut raw,
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"],
    )
    .await;
    let prefix = common::unique_prefix("redis-evicted");
    let toml = config(&prefix, &redis.url(), "allow_evicting_policy = true");
    let (a, b) = (
        start_as_configured(&toml).await,
        start_as_configured(&toml).await,
    );
    let mut on_a = a.client().await;
    on_a.subscribe("doc:e", "full").await;
    let mut writer = a.client().await;
    assert_eq!(
        writer.publish("doc:e", json!({"n": 1})).await,
        json!({"success": true})
    );
    assert_eq!(next_update(&mut on_a).await["payload"]["version"], 1);

    // Redis evicts the value key: it removes the key and tells nobody, as DEL does here (which
    // key LRU picks under real memory pressure is not up to the test).
    run(&mut raw, &["DEL", &format!("{prefix}record:doc:e")]).await;
    // An instance that loads the record now finds the tombstone: deleted at version 1.
    let mut on_b = b.client().await;
    assert_eq!(
        on_b.subscribe("doc:e", "full").await,
        json!({"success": true, "record": null, "version": 1})
    );
    // The instance that held the value learns it at its next write: its subscribers get the
    // deletion, and a merge lands on nothing (the evicted fields are gone for good).
    let merged = writer
        .request(
            "mesh/publish-record-update",
            json!({"recordId": "doc:e", "newValue": {"m": 1}, "options": {"strategy": "merge"}}),
        )
        .await;
    assert_eq!(merged, json!({"success": true}));
    let push = next_update(&mut on_a).await;
    assert_eq!(push["command"], "mesh/record-deleted", "{push}");
    assert_eq!(push["payload"]["version"], 1, "{push}");
    // The other instance hears of version 2 through pub/sub, a moment later.
    let records = b.records();
    common::eventually("instance b sees version 2", patience(), async || {
        let record = records.get_record("doc:e").await.unwrap();
        record.is_some_and(|r| r.version == 2 && *r.value == json!({"m": 1}))
    })
    .await;
    a.stop().await;
    b.stop().await;
}

#[actix_web::test]
async fn on_a_cluster_every_masters_policy_is_checked() {
    let cluster = common::own_cluster::OwnCluster::start();
    // One master evicts; the server is pointed at another node.
    let masters = cluster.masters();
    let evicting = *masters.last().unwrap();
    cluster.cli(
        evicting,
        &["config", "set", "maxmemory-policy", "allkeys-lfu"],
    );
    let entry = (0..6).find(|&i| i != evicting).unwrap();
    let prefix = common::unique_prefix("redis-policy-cluster");
    let toml = format!(
        r#"
[store]
backend = "redis-cluster"
redis_url = "{}"
key_prefix = "{prefix}"
"#,
        cluster.url(entry)
    );
    let refused = match mesh_records::start(common::test_config(&toml)).await {
        Ok(running) => {
            running.stop().await;
            panic!("started with an evicting master")
        }
        Err(err) => err.to_string(),
    };
    let node = format!("Redis on 127.0.0.1:{}", cluster.port(evicting));
    assert!(refused.contains(&node), "{refused}");
    assert!(
        refused.contains("maxmemory-policy allkeys-lfu"),
        "{refused}"
    );

    cluster.cli(
        evicting,
        &["config", "set", "maxmemory-policy", "noeviction"],
    );
    let running = mesh_records::start(common::test_config(&toml))
        .await
        .expect("starts once every master keeps its keys");
    running.stop().await;
}

#[actix_web::test]
async fn on_a_cluster_a_write_refused_for_memory_changes_nothing_anywhere() {
    let cluster = common::own_cluster::OwnCluster::start();
    let prefix = common::unique_prefix("redis-oom-cluster");
    let toml = format!(
        r#"
[server]
max_requests_per_second = 0
record_linger_ms = 60000

[store]
backend = "redis-cluster"
redis_url = "{}"
key_prefix = "{prefix}"

[[records.expose]]
pattern = "^doc:"
writable = true
"#,
        cluster.url(0)
    );
    let (a, b, mut writer, mut on_a, mut on_b) = written_once(&toml, "doc:c").await;

    // The master owning the record's slot is full; fillers share the slot (same hash tag).
    let slot: u16 = cluster
        .cli(0, &["cluster", "keyslot", "doc:c"])
        .trim()
        .parse()
        .unwrap();
    let master = cluster
        .master_of(slot, 0)
        .expect("a master serves the slot");
    let mut raw = redis::Client::open(cluster.url(master))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    fill(&mut raw, "{doc:c}filler:").await;
    let refused = writer.publish("doc:c", json!({"n": 2})).await;
    assert_eq!(refused["code"], "EUNAVAILABLE", "{refused}");
    let version_key = format!("{prefix}record-version:{{doc:c}}");
    assert_eq!(
        redis_get(&mut raw, &version_key).await.as_deref(),
        Some("1")
    );

    free(&mut raw, "{doc:c}filler:").await;
    assert_eq!(
        writer.publish("doc:c", json!({"n": 3})).await,
        json!({"success": true})
    );
    for client in [&mut on_a, &mut on_b] {
        let push = next_update(client).await;
        assert_eq!(push["payload"]["version"], 2, "{push}");
        assert_eq!(push["payload"]["full"], json!({"n": 3}), "{push}");
    }
    a.stop().await;
    b.stop().await;
}

#[actix_web::test]
async fn a_restore_redis_refuses_for_memory_stores_and_publishes_nothing() {
    use common::scenario::{id, restored};
    use mesh_records::store::{ChangeSink, RedisStore, RemoteChange, Store, StoreError};
    use std::sync::Arc;

    let redis = OwnRedis::start();
    let mut raw = redis.connect().await;
    let prefix = common::unique_prefix("redis-oom-restore");
    let store = RedisStore::connect(&redis.url(), &prefix).await.unwrap();
    let rid = id("doc:r");
    let (tx, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let sink: ChangeSink = Arc::new(move |change| {
        let _ = tx.send(change);
    });
    store.watch(&rid, sink).await.expect("watch");

    fill(&mut raw, "filler:").await;
    let refused = store
        .restore(vec![(rid.clone(), restored(json!("x"), 5))])
        .await;
    assert!(
        matches!(refused, Err(StoreError::Unavailable(_))),
        "{refused:?}"
    );
    let version_key = format!("{prefix}record-version:doc:r");
    assert_eq!(redis_get(&mut raw, &version_key).await, None);

    free(&mut raw, "filler:").await;
    let written = store
        .restore(vec![(rid.clone(), restored(json!("y"), 6))])
        .await;
    assert_eq!(written.unwrap(), 1);
    // The first change published is the restore that was stored.
    let first = tokio::time::timeout(patience(), changes.recv())
        .await
        .unwrap();
    assert_eq!(
        first,
        Some(RemoteChange::Updated {
            version: 6,
            value: Arc::new(json!("y")),
            patch: None
        })
    );
}

#[actix_web::test]
async fn a_redis_that_refuses_config_is_used_with_a_warning() {
    let redis = OwnRedis::start();
    let mut raw = redis.connect().await;
    // An evicting policy the server would refuse, but CONFIG is not allowed (as on managed
    // Redis services), so it cannot read it: it starts, with a warning.
    run(
        &mut raw,
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"],
    )
    .await;
    run(&mut raw, &["ACL", "SETUSER", "default", "-config"]).await;
    let prefix = common::unique_prefix("redis-no-config");
    let server = start_as_configured(&config(&prefix, &redis.url(), "")).await;
    let mut client = server.client().await;
    assert_eq!(
        client.publish("doc:q", json!({"n": 1})).await,
        json!({"success": true})
    );
    server.stop().await;
}
