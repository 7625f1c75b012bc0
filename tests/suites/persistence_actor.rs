//! `PersistenceActor` against real databases: flush triggers, newest-wins buffering,
//! deletions, outages (SQLite locked by another connection, PostgreSQL going down and up, a
//! PostgreSQL table made unusable) and the final flush at shutdown.

use crate::common;
use common::patience;

use actix::prelude::*;
use common::eventually;
use common::persistence::{PgProxy, TestSchema, all_rows, postgres_params, postgres_url};
use mesh_records::RecordId;
use mesh_records::actors::persistence::{
    Flush, GetStatus, Persist, PersistDeletion, PersistenceActor, PersistenceOptions, Shutdown,
};
use mesh_records::database::{
    PersistenceAdapter, PostgresAdapter, SharedAdapter, SqliteAdapter, SqliteOptions,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn id(s: &str) -> RecordId {
    RecordId::parse(s, 256).expect("valid id")
}

fn persist(record: &str, version: u64, value: Value) -> Persist {
    Persist {
        id: id(record),
        version,
        value: Arc::new(value),
    }
}

fn options(flush_interval: Duration, max_buffer_size: usize) -> PersistenceOptions {
    PersistenceOptions {
        flush_interval,
        max_buffer_size,
        ..PersistenceOptions::default()
    }
}

async fn sqlite() -> (tempfile::TempDir, Arc<SqliteAdapter>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let adapter = SqliteAdapter::open(dir.path().join("records.db"))
        .await
        .expect("open sqlite");
    (dir, Arc::new(adapter))
}

async fn count(adapter: &dyn PersistenceAdapter) -> usize {
    all_rows(adapter, "%").await.len()
}

/// (version, value) of every stored row, by id.
async fn contents(adapter: &dyn PersistenceAdapter) -> Vec<(String, u64, Value)> {
    all_rows(adapter, "%")
        .await
        .into_iter()
        .map(|r| {
            let value = serde_json::from_str(&r.value_json).expect("json");
            (r.id, r.version, value)
        })
        .collect()
}

#[actix_rt::test]
async fn flushes_when_the_interval_elapses() {
    let (_dir, adapter) = sqlite().await;
    let shared: SharedAdapter = adapter.clone();
    let actor = PersistenceActor::new(shared, options(Duration::from_millis(50), 1000)).start();
    for n in 0..3 {
        actor
            .send(persist(&format!("i:{n}"), 1, json!(n)))
            .await
            .expect("send");
    }
    eventually("the interval flush", patience() * 2, || async {
        count(&*adapter).await == 3
    })
    .await;
    let status = actor.send(GetStatus).await.expect("status");
    assert_eq!((status.buffered, status.rows_landed), (0, 3));
}

#[actix_rt::test]
async fn flushes_when_the_buffer_is_full() {
    let (_dir, adapter) = sqlite().await;
    let shared: SharedAdapter = adapter.clone();
    // The interval never elapses during the test: only the size can trigger.
    let actor = PersistenceActor::new(shared, options(Duration::from_secs(3600), 10)).start();
    for n in 0..9 {
        actor
            .send(persist(&format!("s:{n}"), 1, json!(n)))
            .await
            .expect("send");
    }
    let status = actor.send(GetStatus).await.expect("status");
    assert_eq!((status.buffered, status.in_flight), (9, 0));
    assert_eq!(count(&*adapter).await, 0);
    // Rewriting a buffered record does not grow the buffer.
    actor
        .send(persist("s:0", 2, json!("again")))
        .await
        .expect("send");
    assert_eq!(actor.send(GetStatus).await.expect("status").buffered, 9);
    actor.send(persist("s:9", 1, json!(9))).await.expect("send");
    eventually("the size flush", patience() * 2, || async {
        count(&*adapter).await == 10
    })
    .await;
}

#[actix_rt::test]
async fn buffer_keeps_the_newest_version() {
    let (_dir, adapter) = sqlite().await;
    let shared: SharedAdapter = adapter.clone();
    let actor = PersistenceActor::new(shared, options(Duration::from_secs(3600), 1000)).start();
    actor
        .send(persist("a", 1, json!("v1")))
        .await
        .expect("send");
    actor
        .send(persist("a", 3, json!("v3")))
        .await
        .expect("send");
    actor
        .send(persist("a", 2, json!("v2")))
        .await
        .expect("send");
    assert_eq!(actor.send(GetStatus).await.expect("status").buffered, 1);
    assert_eq!(actor.send(Flush).await.expect("send").expect("flush"), 1);
    assert_eq!(
        contents(&*adapter).await,
        vec![("a".to_owned(), 3, json!("v3"))]
    );
    // A late older version after the flush does not win in the database either.
    actor
        .send(persist("a", 2, json!("v2")))
        .await
        .expect("send");
    assert_eq!(actor.send(Flush).await.expect("send").expect("flush"), 1);
    assert_eq!(
        contents(&*adapter).await,
        vec![("a".to_owned(), 3, json!("v3"))]
    );
    // Nothing buffered: a flush writes nothing.
    assert_eq!(actor.send(Flush).await.expect("send").expect("flush"), 0);
}

#[actix_rt::test]
async fn deletions_remove_rows_and_recreation_restarts_versions() {
    let (_dir, adapter) = sqlite().await;
    let shared: SharedAdapter = adapter.clone();
    let actor = PersistenceActor::new(shared, options(Duration::from_secs(3600), 1000)).start();
    actor
        .send(persist("x", 5, json!("old")))
        .await
        .expect("send");
    actor.send(persist("y", 2, json!("y"))).await.expect("send");
    actor.send(Flush).await.expect("send").expect("flush");

    // Deleted and re-created between two flushes: v1 of the new life replaces v5.
    actor
        .send(PersistDeletion {
            id: id("x"),
            version: 5,
        })
        .await
        .expect("send");
    actor
        .send(persist("x", 1, json!("new")))
        .await
        .expect("send");
    actor
        .send(PersistDeletion {
            id: id("y"),
            version: 2,
        })
        .await
        .expect("send");
    assert_eq!(actor.send(Flush).await.expect("send").expect("flush"), 2);
    assert_eq!(
        contents(&*adapter).await,
        vec![("x".to_owned(), 1, json!("new"))]
    );

    // Deleted in one flush, re-created in the next: a plain insert.
    actor
        .send(PersistDeletion {
            id: id("x"),
            version: 1,
        })
        .await
        .expect("send");
    actor.send(Flush).await.expect("send").expect("flush");
    assert_eq!(count(&*adapter).await, 0);
    actor
        .send(persist("x", 1, json!("third")))
        .await
        .expect("send");
    actor.send(Flush).await.expect("send").expect("flush");
    assert_eq!(
        contents(&*adapter).await,
        vec![("x".to_owned(), 1, json!("third"))]
    );
}

/// Writes 40 records, some of them again during the outage, and checks that the newest of
/// each is what finally landed.
async fn outage_scenario(
    actor: &Addr<PersistenceActor>,
    reader: &dyn PersistenceAdapter,
    mut database_up: impl AsyncFnMut(bool),
) {
    common::persistence::init_logging();
    for n in 0..20 {
        actor
            .send(persist(&format!("o:{n:02}"), 1, json!({"n": n, "v": 1})))
            .await
            .expect("send");
    }
    assert_eq!(actor.send(Flush).await.expect("send").expect("flush"), 20);

    database_up(false).await;
    for n in 0..40 {
        actor
            .send(persist(&format!("o:{n:02}"), 2, json!({"n": n, "v": 2})))
            .await
            .expect("send");
    }
    eventually("repeated failures", patience() * 2, || async {
        actor
            .send(GetStatus)
            .await
            .expect("status")
            .consecutive_failures
            >= 2
    })
    .await;
    // The failed rows are back in the buffer, newer writes keep coming in, the actor answers.
    for n in 0..10 {
        actor
            .send(persist(&format!("o:{n:02}"), 3, json!({"n": n, "v": 3})))
            .await
            .expect("send");
    }
    actor
        .send(PersistDeletion {
            id: id("o:39"),
            version: 2,
        })
        .await
        .expect("send");
    let status = actor.send(GetStatus).await.expect("status");
    assert!(status.failing_since.is_some());
    assert_eq!(status.buffered + status.in_flight, 40);

    database_up(true).await;
    eventually("recovery", patience() * 2, || async {
        let status = actor.send(GetStatus).await.expect("status");
        status.consecutive_failures == 0 && status.buffered == 0 && status.in_flight == 0
    })
    .await;
    let rows = contents(reader).await;
    assert_eq!(rows.len(), 39, "o:39 was deleted");
    for (record, version, value) in rows {
        let n: u64 = record[2..].parse().expect("number");
        let expected = if n < 10 { 3 } else { 2 };
        assert_eq!(version, expected, "{record}");
        assert_eq!(value, json!({"n": n, "v": expected}), "{record}");
    }
}

#[actix_rt::test]
async fn sqlite_locked_then_released_everything_lands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("records.db");
    let adapter = Arc::new(
        SqliteAdapter::open_with(
            &path,
            SqliteOptions {
                busy_timeout: Duration::from_millis(20),
            },
        )
        .await
        .expect("open"),
    );
    let shared: SharedAdapter = adapter.clone();
    let actor = PersistenceActor::new(shared, options(Duration::from_millis(20), 1000)).start();
    // Another connection (another process, a backup) holds the write lock.
    let locker = rusqlite::Connection::open(&path).expect("second connection");
    outage_scenario(&actor, &*adapter, async |up| {
        let sql = if up { "COMMIT" } else { "BEGIN IMMEDIATE" };
        locker.execute_batch(sql).expect("lock or unlock");
    })
    .await;
}

#[actix_rt::test]
async fn postgres_down_then_up_everything_lands() {
    let schema = TestSchema::new("outage");
    let mut proxy = PgProxy::start().await;
    let adapter = PostgresAdapter::connect(postgres_params(proxy.port), Some(&schema.name))
        .await
        .expect("connect through the proxy");
    // Reads go around the proxy.
    let reader = PostgresAdapter::connect(postgres_url(), Some(&schema.name))
        .await
        .expect("connect directly");
    let actor =
        PersistenceActor::new(Arc::new(adapter), options(Duration::from_millis(20), 1000)).start();
    let port = proxy.port;
    outage_scenario(&actor, &reader, async |up| {
        if up {
            // The server really was gone: new connections were refused.
            assert!(
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_err()
            );
            proxy.restart().await;
        } else {
            proxy.stop().await;
        }
    })
    .await;
}

#[actix_rt::test]
async fn postgres_table_unusable_then_fixed_everything_lands() {
    let schema = TestSchema::new("renamed");
    let adapter = Arc::new(
        PostgresAdapter::connect(postgres_url(), Some(&schema.name))
            .await
            .expect("connect"),
    );
    let shared: SharedAdapter = adapter.clone();
    let actor = PersistenceActor::new(shared, options(Duration::from_millis(20), 1000)).start();
    let table = schema.table();
    let name = schema.name.clone();
    outage_scenario(&actor, &*adapter, async |up| {
        let sql = if up {
            format!("ALTER TABLE \"{name}\".parked RENAME TO records")
        } else {
            format!("ALTER TABLE {table} RENAME TO parked")
        };
        schema.admin(&sql).await;
    })
    .await;
}

#[actix_rt::test]
async fn flush_during_an_outage_fails_and_keeps_the_buffer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("records.db");
    let adapter = SqliteAdapter::open_with(
        &path,
        SqliteOptions {
            busy_timeout: Duration::from_millis(10),
        },
    )
    .await
    .expect("open");
    let actor =
        PersistenceActor::new(Arc::new(adapter), options(Duration::from_secs(3600), 1000)).start();
    let locker = rusqlite::Connection::open(&path).expect("second connection");
    locker.execute_batch("BEGIN IMMEDIATE").expect("lock");
    actor.send(persist("f", 1, json!(1))).await.expect("send");
    let result = actor.send(Flush).await.expect("send");
    assert!(result.is_err(), "{result:?}");
    let status = actor.send(GetStatus).await.expect("status");
    assert_eq!((status.buffered, status.consecutive_failures), (1, 1));
    locker.execute_batch("COMMIT").expect("unlock");
    // An explicit flush does not wait for the backoff.
    assert_eq!(actor.send(Flush).await.expect("send").expect("flush"), 1);
}

#[actix_rt::test]
async fn shutdown_flushes_everything_then_stops() {
    let (_dir, adapter) = sqlite().await;
    let shared: SharedAdapter = adapter.clone();
    let actor = PersistenceActor::new(shared, options(Duration::from_secs(3600), 1000)).start();
    for n in 0..30 {
        actor
            .send(persist(&format!("z:{n}"), 1, json!(n)))
            .await
            .expect("send");
    }
    actor
        .send(PersistDeletion {
            id: id("gone"),
            version: 1,
        })
        .await
        .expect("send");
    assert_eq!(
        actor.send(Shutdown).await.expect("send").expect("final"),
        31
    );
    assert_eq!(count(&*adapter).await, 30);
    eventually("the actor to stop", patience() * 2, || async {
        !actor.connected()
    })
    .await;
    assert!(actor.send(persist("late", 1, json!(0))).await.is_err());
}

#[actix_rt::test]
async fn shutdown_gives_up_after_bounded_retries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("records.db");
    let adapter = SqliteAdapter::open_with(
        &path,
        SqliteOptions {
            busy_timeout: Duration::from_millis(10),
        },
    )
    .await
    .expect("open");
    let actor = PersistenceActor::new(
        Arc::new(adapter),
        PersistenceOptions {
            flush_interval: Duration::from_millis(20),
            shutdown_retries: 2,
            ..PersistenceOptions::default()
        },
    )
    .start();
    let locker = rusqlite::Connection::open(&path).expect("second connection");
    locker.execute_batch("BEGIN IMMEDIATE").expect("lock");
    actor.send(persist("q", 1, json!(1))).await.expect("send");
    let started = Instant::now();
    let result = actor.send(Shutdown).await.expect("send");
    assert!(result.is_err(), "{result:?}");
    // 3 attempts with 20 + 40 ms between them, each waiting 10 ms for the lock.
    assert!(started.elapsed() < Duration::from_secs(5));
    eventually("the actor to stop", patience() * 2, || async {
        !actor.connected()
    })
    .await;
}
