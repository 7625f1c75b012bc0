//! Records never lie under store faults: two instances on a Redis of the test's own, whose
//! pub/sub connections are cut and kept from reconnecting, which is stalled past the response
//! timeout, and a database restore after a deletion elsewhere.
//!
//! Each test names the promise it checks (see README "What the server promises").

use crate::common;

use common::own_redis::{OwnRedis, end_blackout, pubsub_blackout, run};
use common::{Client, eventually, patience, start_as_configured, unique_prefix};
use mesh_records::Strategy;
use mesh_records::database::{PersistenceAdapter, SqliteAdapter};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn config(prefix: &str, redis_url: &str, extra: &str) -> String {
    format!(
        r#"
[server]
max_requests_per_second = 0
# Record actors stay loaded through the test, as they would with steady traffic.
record_linger_ms = 60000

[store]
backend = "redis"
redis_url = "{redis_url}"
key_prefix = "{prefix}"

[[records.expose]]
pattern = "^doc:"
writable = true
{extra}
"#
    )
}

/// Persists `doc:` records to the SQLite file `db` (flushed every 50 ms).
fn sqlite_rule(db: &std::path::Path) -> String {
    format!(
        r#"
[persistence]
sqlite_path = "{}"

[[records.persist]]
write_pattern = "^doc:"
restore_pattern = "doc:%"
flush_interval_ms = 50
"#,
        db.display()
    )
}

async fn redis_get(raw: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query_async(raw).await.unwrap()
}

/// Reads pushes of `record` until one at `version`; returns its payload.
async fn push_at(client: &mut Client, version: u64) -> Value {
    let deadline = Instant::now() + patience();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let push = client
            .try_next_push(remaining)
            .await
            .unwrap_or_else(|| panic!("no push at version {version}"));
        if push["payload"]["version"] == version {
            return push;
        }
    }
}

#[actix_web::test]
async fn a_deletion_during_a_pubsub_outage_reaches_subscribers_and_stays() {
    let redis = OwnRedis::start();
    let mut raw = redis.connect().await;
    let prefix = unique_prefix("faults-delete");
    let toml = config(&prefix, &redis.url(), "");
    let (a, b) = (
        start_as_configured(&toml).await,
        start_as_configured(&toml).await,
    );
    let mut on_a = a.client().await;
    on_a.subscribe("doc:x", "full").await;
    b.write("doc:x", json!({"v": 1})).await;
    push_at(&mut on_a, 1).await;

    pubsub_blackout(&mut raw).await;
    assert_eq!(b.records().delete_record("doc:x").await.unwrap(), Some(1));
    end_blackout(&mut raw).await;

    // A reconnects, reloads, and learns of the deletion instead of undoing it.
    let push = on_a.next_push_of("mesh/record-deleted").await;
    assert_eq!(push["payload"], json!({"recordId": "doc:x", "version": 1}));
    // A write-back of the old value would come from A's record actor while it handles the
    // reload; a new subscriber there is answered after that, and sees the tombstone.
    let mut late = a.client().await;
    let reply = late.subscribe("doc:x", "full").await;
    assert_eq!(
        (&reply["record"], &reply["version"]),
        (&Value::Null, &json!(1)),
        "{reply}"
    );
    let value_key = format!("{prefix}record:doc:x");
    assert_eq!(redis_get(&mut raw, &value_key).await, None, "resurrected");
    assert_eq!(a.records().get_record("doc:x").await.unwrap(), None);
    assert_eq!(b.records().get_record("doc:x").await.unwrap(), None);
    a.stop().await;
    b.stop().await;
}

#[actix_web::test]
async fn a_write_through_a_stale_instance_lands_on_the_recreated_record() {
    let redis = OwnRedis::start();
    let mut raw = redis.connect().await;
    let prefix = unique_prefix("faults-recreate");
    let toml = config(&prefix, &redis.url(), "");
    let (a, b) = (
        start_as_configured(&toml).await,
        start_as_configured(&toml).await,
    );
    let mut on_a = a.client().await;
    on_a.subscribe("doc:y", "full").await;
    for n in 1..=10 {
        a.write("doc:y", json!({"old": n})).await;
    }
    push_at(&mut on_a, 10).await;
    // B has the record loaded too, so it can act while pub/sub is down.
    assert_eq!(
        b.records()
            .get_record("doc:y")
            .await
            .unwrap()
            .unwrap()
            .version,
        10
    );

    // Deleted and created again through B while A hears nothing.
    pubsub_blackout(&mut raw).await;
    assert_eq!(b.records().delete_record("doc:y").await.unwrap(), Some(10));
    let created = b
        .records()
        .write_record("doc:y", json!({"new": 1}), Strategy::Replace)
        .await
        .unwrap();
    assert_eq!(created.version, 11, "versions continue after the tombstone");

    // A client merges through A, which still holds the old value at version 10.
    let mut writer = a.client().await;
    let reply = writer
        .request(
            "mesh/publish-record-update",
            json!({"recordId": "doc:y", "newValue": {"a": 1}, "options": {"strategy": "merge"}}),
        )
        .await;
    assert_eq!(reply, json!({"success": true}));
    let value: Value = serde_json::from_str(
        &redis_get(&mut raw, &format!("{prefix}record:doc:y"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(value, json!({"new": 1, "a": 1}), "the old value came back");
    let version = redis_get(&mut raw, &format!("{prefix}record-version:doc:y")).await;
    assert_eq!(version.as_deref(), Some("12"));
    // A's subscriber saw the record it did not follow as a whole value, then the merge.
    let push = push_at(&mut on_a, 12).await;
    assert_eq!(push["payload"]["full"], json!({"new": 1, "a": 1}));

    end_blackout(&mut raw).await;
    let deadline = Instant::now() + patience();
    loop {
        let on_b = b.records().get_record("doc:y").await.unwrap().unwrap();
        if on_b.version == 12 {
            assert_eq!(*on_b.value, json!({"new": 1, "a": 1}));
            break;
        }
        assert!(Instant::now() < deadline, "B stayed at {}", on_b.version);
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    a.stop().await;
    b.stop().await;
}

#[actix_web::test]
async fn a_write_whose_answer_timed_out_is_acknowledged_pushed_and_persisted() {
    let redis = OwnRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("records.db");
    let prefix = unique_prefix("faults-stall");
    let persisted = sqlite_rule(&db);
    let a = start_as_configured(&config(&prefix, &redis.url(), &persisted)).await;
    let b = start_as_configured(&config(&prefix, &redis.url(), "")).await;
    let (mut on_a, mut on_b) = (a.client().await, b.client().await);
    on_a.subscribe("doc:z", "full").await;
    on_b.subscribe("doc:z", "patch").await;
    let mut writer = a.client().await;
    assert_eq!(
        writer.publish("doc:z", json!({"n": 1})).await,
        json!({"success": true})
    );

    // Redis stalls for longer than the 2 s response timeout while the next write is sent:
    // every client's commands wait 3 s, from the moment the pause is answered.
    let mut stall = redis.connect().await;
    run(&mut stall, &["CLIENT", "PAUSE", "3000", "ALL"]).await;
    let started = Instant::now();
    let reply = writer.publish("doc:z", json!({"n": 2})).await;
    // It was applied once Redis woke up, so the reply says so (it used to say EUNAVAILABLE).
    assert_eq!(
        reply,
        json!({"success": true}),
        "after {:?}",
        started.elapsed()
    );
    assert_eq!(
        push_at(&mut on_a, 2).await["payload"]["full"],
        json!({"n": 2})
    );
    push_at(&mut on_b, 2).await;

    // And the instance that made it persisted it.
    eventually(
        "version 2 of doc:z in the database",
        patience(),
        async || {
            let adapter = SqliteAdapter::open(&db).await.unwrap();
            let rows = adapter.load_matching("doc:%", None, 10).await.unwrap();
            rows.iter().any(|r| r.id == "doc:z" && r.version == 2)
        },
    )
    .await;
    a.stop().await;
    b.stop().await;
}

#[actix_web::test]
async fn a_restore_at_startup_does_not_bring_back_a_record_deleted_elsewhere() {
    let redis = OwnRedis::start();
    let mut raw = redis.connect().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("records.db");
    let prefix = unique_prefix("faults-restore");
    let persisted = sqlite_rule(&db);
    let a = start_as_configured(&config(&prefix, &redis.url(), &persisted)).await;
    a.write("doc:gone", json!({"x": 1})).await;
    eventually("doc:gone in the database", patience(), async || {
        let adapter = SqliteAdapter::open(&db).await.unwrap();
        let rows = adapter.load_matching("doc:gone", None, 10).await.unwrap();
        !rows.is_empty()
    })
    .await;
    // B deletes it, but its deletion never reaches the database (as when B's database link
    // hangs): the row stays.
    let b = start_as_configured(&config(&prefix, &redis.url(), "")).await;
    assert_eq!(
        b.records().delete_record("doc:gone").await.unwrap(),
        Some(1)
    );
    a.stop().await;
    b.stop().await;

    // A rolling restart: the new instance restores from the database before serving.
    let c = start_as_configured(&config(&prefix, &redis.url(), &persisted)).await;
    assert_eq!(c.records().get_record("doc:gone").await.unwrap(), None);
    let value_key = format!("{prefix}record:doc:gone");
    assert_eq!(redis_get(&mut raw, &value_key).await, None, "resurrected");
    // Writing it again is still possible, and continues after the tombstone.
    let again = c
        .records()
        .write_record("doc:gone", json!({"x": 2}), Strategy::Replace)
        .await
        .unwrap();
    assert_eq!(again.version, 2);
    c.stop().await;
}
