//! Records that expire (`ttl_seconds`, `Records::expire_record`) through whole servers: the
//! deletion reaches subscribers on every instance within its precision, the tombstone rule
//! holds, a rewrite moves the deadline, and the persisted row goes.

use crate::common;

use common::{Backend, Client, TestServer, eventually, patience, start, unique_prefix};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How long past its deadline a record may live: the sweep interval of these configs (100 ms)
/// plus room for a busy test machine.
fn precision() -> Duration {
    Duration::from_millis(1500) + patience() / 5
}

fn config(prefix: &str, extra: &str) -> String {
    format!(
        r#"
[records]
expiry_sweep_ms = 100

[store]
key_prefix = "{prefix}"

[[records.expose]]
pattern = "^tmp:"
writable = true
ttl_seconds = 0.6

[[records.expose]]
pattern = "^long:"
writable = true
ttl_seconds = 1.5

[[records.expose]]
pattern = "^doc:"
writable = true
{extra}
"#
    )
}

on_every_store!(
    with_cluster:
    an_expiring_record_is_deleted_within_its_precision,
    a_rewrite_moves_the_deadline,
    expire_record_sets_and_takes_away_a_deadline,
);

/// Waits for `record`'s deletion push on `client`; answers its version and when it came.
async fn deletion_of(client: &mut Client, record: &str) -> (u64, Instant) {
    loop {
        let push = client.next_push().await;
        if push["command"] == "mesh/record-deleted" && push["payload"]["recordId"] == record {
            return (push["payload"]["version"].as_u64().unwrap(), Instant::now());
        }
    }
}

async fn an_expiring_record_is_deleted_within_its_precision(backend: Backend) {
    let prefix = unique_prefix("expiring");
    let server = start(backend, &config(&prefix, "")).await;
    let mut writer = server.client().await;
    let mut watcher = server.client().await;
    assert_eq!(
        writer.publish("tmp:1", json!({"x": 1})).await["success"],
        true
    );
    let written = Instant::now();
    assert_eq!(
        writer.publish("tmp:1", json!({"x": 2})).await["success"],
        true
    );
    let last_write = Instant::now();
    assert_eq!(watcher.subscribe("tmp:1", "full").await["version"], 2);
    let (version, at) = deletion_of(&mut watcher, "tmp:1").await;
    assert_eq!(version, 2, "the tombstone keeps the last version");
    let lived = at - written;
    assert!(
        lived >= Duration::from_millis(600),
        "deleted early: {lived:?}"
    );
    assert!(
        at - last_write <= Duration::from_millis(600) + precision(),
        "deleted late: {:?} after the last write",
        at - last_write
    );
    assert_eq!(server.records().get_record("tmp:1").await.unwrap(), None);
    // The tombstone rule: written again, it goes on from the old version.
    assert_eq!(
        writer.publish("tmp:1", json!({"x": 3})).await["success"],
        true
    );
    let again = server.records().get_record("tmp:1").await.unwrap().unwrap();
    assert_eq!(again.version, 3);
    // Records under an exposure without a ttl stay.
    server.write("doc:1", json!({"stays": true})).await;
    tokio::time::sleep(Duration::from_millis(600) + precision()).await;
    assert!(
        server
            .records()
            .get_record("doc:1")
            .await
            .unwrap()
            .is_some()
    );
    server.stop().await;
}

async fn a_rewrite_moves_the_deadline(backend: Backend) {
    let prefix = unique_prefix("expiring");
    let server = start(backend, &config(&prefix, "")).await;
    let mut writer = server.client().await;
    let mut watcher = server.client().await;
    assert_eq!(
        writer.publish("long:2", json!({"n": 0})).await["success"],
        true
    );
    watcher.subscribe("long:2", "full").await;
    // Written every 300 ms for 3 s, twice past the first deadline (1.5 s): it stays.
    let mut last_write = Instant::now();
    for n in 1..=10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let reply = writer.publish("long:2", json!({ "n": n })).await;
        assert_eq!(
            reply["success"], true,
            "write {n}: {reply} (expired while written?)"
        );
        last_write = Instant::now();
    }
    let (version, at) = deletion_of(&mut watcher, "long:2").await;
    assert_eq!(version, 11);
    assert!(
        at - last_write >= Duration::from_millis(1500),
        "{:?}",
        at - last_write
    );
    server.stop().await;
}

async fn expire_record_sets_and_takes_away_a_deadline(backend: Backend) {
    let prefix = unique_prefix("expiring");
    let server = start(backend, &config(&prefix, "")).await;
    let records = server.records();
    let ttl = Some(Duration::from_millis(800));
    assert!(!records.expire_record("doc:none", ttl).await.unwrap());
    server.write("doc:kept", json!(1)).await;
    server.write("doc:gone", json!(1)).await;
    assert!(records.expire_record("doc:kept", ttl).await.unwrap());
    assert!(records.expire_record("doc:gone", ttl).await.unwrap());
    assert!(records.expire_record("doc:kept", None).await.unwrap());
    // A write through an exposure without a ttl leaves the deadline alone.
    server.write("doc:gone", json!(2)).await;
    let mut watcher = server.client().await;
    watcher.subscribe("doc:gone", "full").await;
    let (version, _) = deletion_of(&mut watcher, "doc:gone").await;
    assert_eq!(version, 2);
    tokio::time::sleep(Duration::from_millis(800) + precision()).await;
    let kept = records.get_record("doc:kept").await.unwrap();
    assert_eq!(kept.map(|r| r.version), Some(1));
    server.stop().await;
}

/// Every instance on one Redis (or cluster) sees the deletion, whichever instance swept it.
async fn every_instance_converges(backend: Backend) {
    let prefix = unique_prefix("expiring");
    let a = start(backend, &config(&prefix, "")).await;
    let b = start(backend, &config(&prefix, "")).await;
    let mut on_a = a.client().await;
    let mut on_b = b.client().await;
    let mut writer = a.client().await;
    for n in 0..5 {
        let id = format!("tmp:fleet:{n}");
        assert_eq!(
            writer.publish(&id, json!({ "n": n })).await["success"],
            true
        );
        on_a.subscribe(&id, "patch").await;
        on_b.subscribe(&id, "patch").await;
    }
    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    for _ in 0..5 {
        seen_a.push(next_deleted(&mut on_a).await);
        seen_b.push(next_deleted(&mut on_b).await);
    }
    seen_a.sort();
    seen_b.sort();
    let expected: Vec<String> = (0..5).map(|n| format!("tmp:fleet:{n}")).collect();
    assert_eq!(seen_a, expected);
    assert_eq!(seen_b, expected);
    for server in [&a, &b] {
        for id in &expected {
            assert_eq!(server.records().get_record(id).await.unwrap(), None);
        }
    }
    b.stop().await;
    a.stop().await;
}

async fn next_deleted(client: &mut Client) -> String {
    loop {
        let push = client.next_push().await;
        if push["command"] == "mesh/record-deleted" {
            return push["payload"]["recordId"].as_str().unwrap().to_owned();
        }
    }
}

mod fleet {
    #[actix_web::test]
    async fn on_redis() {
        super::every_instance_converges(super::Backend::Redis).await
    }

    #[actix_web::test]
    async fn on_redis_cluster() {
        super::every_instance_converges(super::Backend::RedisCluster).await
    }
}

async fn rows(path: &std::path::Path) -> Vec<(String, u64, Value)> {
    common::persistence::sqlite_rows(path, "tmp:%").await
}

async fn its_row_leaves_the_database(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.db");
    let persist = format!(
        r#"
[persistence]
adapter = "sqlite"
sqlite_path = "{}"

[[records.persist]]
write_pattern = "^tmp:"
restore_pattern = "tmp:%"
flush_interval_ms = 50
"#,
        path.display()
    );
    let prefix = unique_prefix("expiring");
    let server: TestServer = start(backend, &config(&prefix, &persist)).await;
    server.write("tmp:row", json!({"kept": "briefly"})).await;
    // Flushed (50 ms), then expired and its row deleted.
    let mut watcher = server.client().await;
    watcher.subscribe("tmp:row", "full").await;
    eventually("the row is written", patience(), async || {
        rows(&path).await.len() == 1
    })
    .await;
    deletion_of(&mut watcher, "tmp:row").await;
    eventually("the row is deleted", patience(), async || {
        rows(&path).await.is_empty()
    })
    .await;
    server.stop().await;
}

mod database {
    #[actix_web::test]
    async fn memory() {
        super::its_row_leaves_the_database(super::Backend::Memory).await
    }

    #[actix_web::test]
    async fn redis() {
        super::its_row_leaves_the_database(super::Backend::Redis).await
    }
}

#[actix_web::test]
async fn ttl_seconds_must_be_positive() {
    for bad in ["0", "-1", "1e30"] {
        let text = format!(
            "[[records.expose]]\npattern = \"^t:\"\nwritable = true\nttl_seconds = {bad}\n"
        );
        let err = mesh_records::Config::parse(&text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("records.expose[0].ttl_seconds"),
            "{bad}: {err}"
        );
    }
}
