//! Persistence when the database's link misbehaves (PostgreSQL behind a test-controlled
//! proxy): a hung link bounds every call and the stop, rows the database rejects are dropped
//! without blocking the rest, and a long outage is bounded in memory.

use crate::common;

use actix::Actor;
use common::persistence::{TestSchema, all_rows, postgres_params, row};
use common::process::{mesh_records, sigterm};
use common::proxy::{Proxy, Scope};
use common::{Client, free_port, wait_for_health};
use mesh_records::actors::persistence::{
    Flush, GetStatus, Persist, PersistRoutes, PersistenceActor, PersistenceOptions,
};
use mesh_records::database::{
    PersistRule, PersistedDeletion, PersistedRecord, PersistenceAdapter, PersistenceError,
    PersistenceFuture, PostgresAdapter, PostgresOptions, SharedAdapter, SqliteAdapter,
};
use mesh_records::model::RecordId;
use serde_json::json;
use std::io::Read;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The PostgreSQL the proxy forwards to (the local test server).
fn postgres_addr() -> std::net::SocketAddr {
    "127.0.0.1:5432".parse().unwrap()
}

fn id(s: &str) -> RecordId {
    RecordId::parse(s, 256).unwrap()
}

#[actix_web::test]
async fn a_hung_postgres_link_fails_calls_within_the_statement_timeout_and_recovers() {
    common::persistence::init_logging();
    let schema = TestSchema::new("hung_call");
    let proxy = Proxy::start(postgres_addr()).await;
    let options = PostgresOptions {
        connect_timeout: Duration::from_millis(500),
        statement_timeout: Duration::from_millis(500),
    };
    let adapter =
        PostgresAdapter::connect_with(postgres_params(proxy.port), Some(&schema.name), options)
            .await
            .unwrap();
    adapter
        .store_batch(vec![row("doc:1", 1, "1", false)])
        .await
        .unwrap();
    proxy.hang(Scope::OpenAndNew);
    let started = Instant::now();
    let failed = adapter.store_batch(vec![row("doc:1", 2, "2", false)]).await;
    assert!(
        matches!(failed, Err(PersistenceError::Unavailable(_))),
        "{failed:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert!(adapter.load_matching("doc:%", None, 10).await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    proxy.heal();
    // Recovers: a call after the heal succeeds. Its first try may still time out on a busy
    // machine (a new connection has 500 ms here, and PostgreSQL forks a backend for it), so
    // it is retried until the tests' patience runs out.
    common::eventually(
        "a stored batch after the heal",
        common::patience(),
        || async {
            match adapter.store_batch(vec![row("doc:1", 3, "3", false)]).await {
                Ok(()) => true,
                Err(e) => {
                    eprintln!("after the heal: {e}; again");
                    false
                }
            }
        },
    )
    .await;
    let rows = all_rows(&adapter, "doc:%").await;
    assert_eq!((rows.len(), rows[0].version), (1, 3));
    drop(proxy);
}

#[actix_web::test]
async fn sigterm_ends_the_process_in_time_with_a_hung_database_and_names_the_loss() {
    let schema = TestSchema::new("hung_stop");
    let proxy = Proxy::start(postgres_addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("config.toml");
    // The statement timeout is far longer than the stop budget: the stop must not wait for it.
    std::fs::write(
        &config,
        format!(
            r#"
[server]
port = {port}
shutdown_timeout_ms = 3000

[persistence]
adapter = "postgres"
postgres_url = "host=127.0.0.1 port={} user=postgres dbname=postgres"
postgres_schema = "{}"
postgres_statement_timeout_ms = 120000

[[records.persist]]
write_pattern = "^doc:"
restore_pattern = "doc:%"
flush_interval_ms = 600000

[[records.expose]]
pattern = "^doc:"
writable = true
"#,
            proxy.port, schema.name
        ),
    )
    .unwrap();
    let mut child = mesh_records()
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_health(port).await;
    let mut client = Client::connect(&format!("ws://127.0.0.1:{port}/ws")).await;
    for n in 1..=3 {
        let reply = client.publish(&format!("doc:{n}"), json!({"n": n})).await;
        assert_eq!(reply, json!({"success": true}));
    }
    proxy.hang(Scope::OpenAndNew);
    let started = Instant::now();
    sigterm(&child);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > common::patience() * 4 {
            break None;
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    };
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "still running {:?} after SIGTERM with the database hung",
            started.elapsed()
        );
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "stop took {:?}",
        started.elapsed()
    );
    // Losing acknowledged writes is a failed stop, and it says how many.
    assert!(!status.success(), "exit status {status}; stderr: {stderr}");
    assert!(stderr.contains("3 records not written"), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    drop(proxy);
}

/// A flush whose batch holds rows the database refuses: those rows are dropped (and counted),
/// every other row lands, and nothing stays buffered to be retried forever.
async fn rejected_rows_are_dropped_and_the_rest_lands(adapter: SharedAdapter) {
    let rejected_before = mesh_records::metrics::metrics().persistence_rejected.get();
    let options = PersistenceOptions {
        flush_interval: Duration::from_secs(3600),
        ..PersistenceOptions::default()
    };
    let actor = PersistenceActor::new(Arc::clone(&adapter), options).start();
    for name in ["doc:a", "doc:bad", "doc:c"] {
        actor.do_send(Persist {
            id: id(name),
            version: 1,
            value: Arc::new(json!({"id": name})),
        });
    }
    actor
        .send(Flush)
        .await
        .unwrap()
        .expect("the batch is written around the bad row");
    let ids: Vec<String> = all_rows(adapter.as_ref(), "doc:%")
        .await
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec!["doc:a".to_owned(), "doc:c".to_owned()]);
    let status = actor.send(GetStatus).await.unwrap();
    assert_eq!((status.buffered, status.consecutive_failures), (0, 0));
    assert!(mesh_records::metrics::metrics().persistence_rejected.get() > rejected_before);
    // Later writes are not held up by it.
    actor.do_send(Persist {
        id: id("doc:d"),
        version: 1,
        value: Arc::new(json!(1)),
    });
    actor.send(Flush).await.unwrap().unwrap();
    assert_eq!(all_rows(adapter.as_ref(), "doc:%").await.len(), 3);
}

#[actix_web::test]
async fn postgres_rows_violating_a_constraint_are_dropped_alone() {
    let schema = TestSchema::new("rejected");
    let adapter = PostgresAdapter::connect(common::persistence::postgres_url(), Some(&schema.name))
        .await
        .unwrap();
    schema
        .admin(&format!(
            "ALTER TABLE {} ADD CONSTRAINT no_bad CHECK (record_id <> 'doc:bad')",
            schema.table()
        ))
        .await;
    rejected_rows_are_dropped_and_the_rest_lands(Arc::new(adapter)).await;
}

#[actix_web::test]
async fn sqlite_rows_violating_a_constraint_are_dropped_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.db");
    // A table an operator made stricter; the adapter keeps an existing table as it is.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE records (record_id TEXT PRIMARY KEY NOT NULL, version BIGINT NOT NULL,
         value TEXT NOT NULL, updated_at BIGINT NOT NULL, CHECK (record_id <> 'doc:bad'))",
    )
    .unwrap();
    drop(conn);
    let adapter = SqliteAdapter::open(&path).await.unwrap();
    rejected_rows_are_dropped_and_the_rest_lands(Arc::new(adapter)).await;
}

/// An adapter whose database is down until told otherwise.
struct Switchable {
    up: AtomicBool,
}

impl PersistenceAdapter for Switchable {
    fn store_batch(&self, _records: Vec<PersistedRecord>) -> PersistenceFuture<()> {
        let up = self.up.load(Ordering::SeqCst);
        Box::pin(async move {
            if up {
                Ok(())
            } else {
                Err(PersistenceError::Unavailable("down".into()))
            }
        })
    }

    fn delete_batch(&self, _deletions: Vec<PersistedDeletion>) -> PersistenceFuture<()> {
        self.store_batch(Vec::new())
    }

    fn load_matching(
        &self,
        _like_pattern: &str,
        _after_id: Option<&str>,
        _limit: usize,
    ) -> PersistenceFuture<Vec<PersistedRecord>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

#[actix_web::test]
async fn a_full_buffer_refuses_persisted_writes_until_the_database_is_back() {
    let adapter = Arc::new(Switchable {
        up: AtomicBool::new(false),
    });
    let options = PersistenceOptions {
        flush_interval: Duration::from_secs(3600),
        max_buffered_records: 3,
        ..PersistenceOptions::default()
    };
    let handle = PersistenceActor::new(adapter.clone(), options).spawn();
    let routes = PersistRoutes::default();
    routes.add(
        PersistRule::pattern("^doc:", "doc:%").unwrap().write,
        handle.clone(),
    );
    let refused_before = mesh_records::metrics::metrics().persistence_refused.get();
    for n in 0..3 {
        routes
            .admit(&format!("doc:{n}"))
            .expect("room while below the cap");
        handle.addr.do_send(Persist {
            id: id(&format!("doc:{n}")),
            version: 1,
            value: Arc::new(json!(n)),
        });
    }
    assert!(
        handle.addr.send(Flush).await.unwrap().is_err(),
        "the database is down"
    );
    assert!(!handle.has_room());
    assert!(matches!(
        routes.admit("doc:3"),
        Err(mesh_records::Error::Unavailable)
    ));
    assert!(
        routes.admit("other:1").is_ok(),
        "records not persisted are not limited"
    );
    assert_eq!(
        mesh_records::metrics::metrics().persistence_refused.get(),
        refused_before + 1
    );
    adapter.up.store(true, Ordering::SeqCst);
    handle.addr.send(Flush).await.unwrap().unwrap();
    assert!(handle.has_room());
    assert!(routes.admit("doc:3").is_ok());
}

/// Issue item 4: instance B deletes `doc:gone` while its PostgreSQL link is hung, so the row
/// stays; instance A restarts meanwhile and restores from that row. The deletion must hold:
/// the store keeps a tombstone newer than the row, and restore skips it. (Before tombstones,
/// the restore wrote the value back.)
#[actix_web::test]
async fn a_deletion_stuck_behind_a_hung_link_is_not_undone_by_a_restart_elsewhere() {
    let schema = TestSchema::new("stuck_delete");
    let proxy_b = Proxy::start(postgres_addr()).await;
    let prefix = common::unique_prefix("stuck_delete");
    let config = |pg_port: u16| {
        format!(
            r#"
[server]
shutdown_timeout_ms = 1000

[store]
key_prefix = "{prefix}"

[persistence]
adapter = "postgres"
postgres_url = "host=127.0.0.1 port={pg_port} user=postgres dbname=postgres"
postgres_schema = "{}"

[[records.persist]]
write_pattern = "^doc:"
restore_pattern = "doc:%"
flush_interval_ms = 50

[[records.expose]]
pattern = "^doc:"
writable = true
"#,
            schema.name
        )
    };
    let a = common::start(common::Backend::Redis, &config(5432)).await;
    let b = common::start(common::Backend::Redis, &config(proxy_b.port)).await;
    a.write("doc:gone", json!({"x": 1})).await;
    let check = PostgresAdapter::connect(common::persistence::postgres_url(), Some(&schema.name))
        .await
        .unwrap();
    common::eventually("the row of doc:gone", common::patience(), || async {
        all_rows(&check, "doc:%").await.len() == 1
    })
    .await;
    proxy_b.hang(Scope::OpenAndNew);
    assert!(
        b.records()
            .delete_record("doc:gone")
            .await
            .unwrap()
            .is_some()
    );
    // A restarts while B's deletion cannot reach the database (its Redis keys stay:
    // `TestServer::stop` would delete the prefix).
    a.running.stop().await;
    let a = common::start(common::Backend::Redis, &config(5432)).await;
    assert_eq!(
        all_rows(&check, "doc:%").await.len(),
        1,
        "the row is still there"
    );
    assert!(
        a.records().get_record("doc:gone").await.unwrap().is_none(),
        "the restore brought a deleted record back"
    );
    assert!(b.records().get_record("doc:gone").await.unwrap().is_none());
    proxy_b.heal();
    b.stop().await;
    a.stop().await;
    drop(proxy_b);
}

/// A client write to a persisted record while the database has been unreachable long enough to
/// fill the buffer is refused (`EUNAVAILABLE`) and not applied: it could not be persisted.
#[actix_web::test]
async fn a_client_write_is_refused_not_applied_while_the_persistence_buffer_is_full() {
    let schema = TestSchema::new("full_buffer");
    let proxy = Proxy::start(postgres_addr()).await;
    let toml = format!(
        r#"
[server]
shutdown_timeout_ms = 1000

[persistence]
adapter = "postgres"
postgres_url = "host=127.0.0.1 port={} user=postgres dbname=postgres"
postgres_schema = "{}"
max_buffered_records = 2

[[records.persist]]
write_pattern = "^doc:"
restore_pattern = "doc:%"
flush_interval_ms = 50

[[records.expose]]
pattern = "^(doc|tmp):"
writable = true
"#,
        proxy.port, schema.name
    );
    let server = common::start(common::Backend::Memory, &toml).await;
    let mut client = server.client().await;
    proxy.hang(Scope::OpenAndNew);
    for n in 1..=2 {
        let reply = client.publish(&format!("doc:{n}"), json!({"n": n})).await;
        assert_eq!(reply, json!({"success": true}));
    }
    let refused = client.publish("doc:3", json!({"n": 3})).await;
    assert_eq!(refused["code"], "EUNAVAILABLE", "{refused}");
    assert!(
        server
            .records()
            .get_record("doc:3")
            .await
            .unwrap()
            .is_none()
    );
    // Records no rule persists are not held back.
    assert_eq!(
        client.publish("tmp:1", json!(1)).await,
        json!({"success": true})
    );
    proxy.heal();
    server.stop().await;
}
