//! Persistence through the whole server: which writes are persisted, flushes, restore at
//! startup on both stores, deletions, newer store versions, PostgreSQL, and SIGTERM.

use crate::common;

use common::persistence::TestSchema;
use common::{Backend, TestServer, eventually, patience, start, start_with, unique_prefix};
use mesh_records::Strategy;
use serde_json::json;
use std::time::Duration;

fn sqlite_config(path: &std::path::Path, prefix: &str, rules: &str) -> String {
    format!(
        r#"
[store]
key_prefix = "{prefix}"

[persistence]
adapter = "sqlite"
sqlite_path = "{}"

{rules}

[[records.expose]]
pattern = "^doc:"
writable = true
"#,
        path.display()
    )
}

const DOC_RULE: &str = r#"
[[records.persist]]
write_pattern = "^doc:"
restore_pattern = "doc:%"
flush_interval_ms = 50
"#;

/// Writes a record as the server (replace) and expects it to succeed.
async fn put(server: &TestServer, id: &str, value: serde_json::Value) {
    server.write(id, value).await;
}

async fn rows(path: &std::path::Path, pattern: &str) -> Vec<(String, u64, serde_json::Value)> {
    common::persistence::sqlite_rows(path, pattern).await
}

#[actix_web::test]
async fn only_matching_records_are_persisted_and_exact_ids_are_not_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.db");
    let rules = format!(
        "{DOC_RULE}\n[[records.persist]]\nwrite_id = \"cfg\"\nrestore_pattern = \"cfg\"\nflush_interval_ms = 50\n"
    );
    let server = start(Backend::Memory, &sqlite_config(&path, "mesh:", &rules)).await;
    let records = server.records();
    for id in ["doc:1", "tmp:1", "cfg", "cfgx", "xdoc:1"] {
        records
            .write_record(id, json!({"id": id}), Strategy::Replace)
            .await
            .unwrap();
    }
    records
        .write_record("doc:1", json!({"id": "doc:1", "v": 2}), Strategy::Replace)
        .await
        .unwrap();
    // Two rows may be there before the second write of doc:1 is: wait for exactly these.
    let expected = vec![
        ("cfg".to_owned(), 1, json!({"id": "cfg"})),
        ("doc:1".to_owned(), 2, json!({"id": "doc:1", "v": 2})),
    ];
    eventually("doc:1 v2 and cfg in the database", patience(), async || {
        rows(&path, "%").await == expected
    })
    .await;
    server.stop().await;
}

#[actix_web::test]
async fn a_full_buffer_flushes_before_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.db");
    let rule = "[[records.persist]]\nwrite_pattern = \"^doc:\"\nrestore_pattern = \"doc:%\"\nflush_interval_ms = 600000\nmax_buffer_size = 3\n";
    let server = start(Backend::Memory, &sqlite_config(&path, "mesh:", rule)).await;
    for n in 0..3 {
        let id = format!("doc:{n}");
        put(&server, &id, json!(n)).await;
    }
    eventually("three rows", patience(), async || {
        rows(&path, "doc:%").await.len() == 3
    })
    .await;
    server.stop().await;
}

async fn restart_restores(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.db");
    let prefix = unique_prefix("persist");
    let config = sqlite_config(&path, &prefix, DOC_RULE);
    let first = start(backend, &config).await;
    for n in 1..=3 {
        put(&first, "doc:keep", json!({"n": n})).await;
    }
    put(&first, "doc:gone", json!(1)).await;
    put(&first, "doc:gone", json!(2)).await;
    first.records().delete_record("doc:gone").await.unwrap();
    // Stopping flushes everything; the store's data is then lost (memory: process; Redis: keys).
    first.stop().await;

    let second = start(backend, &config).await;
    let kept = second
        .records()
        .get_record("doc:keep")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((kept.version, &*kept.value), (3, &json!({"n": 3})));
    assert_eq!(
        second.records().get_record("doc:gone").await.unwrap(),
        None,
        "a deleted record came back"
    );
    let next = second
        .records()
        .write_record("doc:keep", json!({"n": 4}), Strategy::Replace)
        .await
        .unwrap();
    assert_eq!(next.version, 4, "versions continue from the restored one");
    let mut client = second.client().await;
    let reply = client.subscribe("doc:keep", "patch").await;
    assert_eq!(reply["version"], 4);
    second.stop().await;
}

#[actix_web::test]
async fn restart_restores_values_and_versions_on_memory() {
    restart_restores(Backend::Memory).await;
}

#[actix_web::test]
async fn restart_restores_values_and_versions_on_redis() {
    restart_restores(Backend::Redis).await;
}

#[actix_web::test]
async fn restore_never_overwrites_a_newer_redis_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.db");
    let prefix = unique_prefix("newer");
    let _keys = common::Keys::on_redis(&prefix);
    let persisted = sqlite_config(&path, &prefix, DOC_RULE);
    let not_persisted = sqlite_config(&path, &prefix, "");
    // v3 reaches the database; later versions only reach Redis.
    let first = start(Backend::Redis, &persisted).await;
    for n in 1..=3 {
        put(&first, "doc:n", json!({"n": n})).await;
    }
    first.stop_keeping_keys().await;
    let second = start(Backend::Redis, &not_persisted).await;
    for n in 4..=10 {
        put(&second, "doc:n", json!({"n": n})).await;
    }
    second.stop_keeping_keys().await;
    let third = start(Backend::Redis, &persisted).await;
    let current = third.records().get_record("doc:n").await.unwrap().unwrap();
    assert_eq!((current.version, &*current.value), (10, &json!({"n": 10})));
    third.stop().await;
}

#[actix_web::test]
async fn postgres_persists_and_restores() {
    let schema = TestSchema::new("server");
    let config = format!(
        r#"
[persistence]
adapter = "postgres"
postgres_url = "{}"
postgres_schema = "{}"

{DOC_RULE}
"#,
        common::persistence::postgres_url(),
        schema.name
    );
    let first = start(Backend::Memory, &config).await;
    for n in 1..=5 {
        first
            .records()
            .write_record("doc:pg", json!({"n": n}), Strategy::Merge)
            .await
            .unwrap();
    }
    put(&first, "doc:pg-gone", json!(1)).await;
    first.records().delete_record("doc:pg-gone").await.unwrap();
    first.stop().await;
    let second = start(Backend::Memory, &config).await;
    let restored = second
        .records()
        .get_record("doc:pg")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((restored.version, &*restored.value), (5, &json!({"n": 5})));
    assert_eq!(
        second.records().get_record("doc:pg-gone").await.unwrap(),
        None
    );
    second.stop().await;
}

#[actix_web::test]
async fn library_rules_persist_at_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.db");
    let config = sqlite_config(&path, "mesh:", "");
    let server = start_with(Backend::Memory, &config, |b| b).await;
    let rule = mesh_records::database::PersistRule::pattern("^doc:lib", "doc:lib%").unwrap();
    let mut options = mesh_records::database::PersistOptions::default();
    options.batching.flush_interval = Duration::from_millis(20);
    server
        .records()
        .enable_record_persistence(rule, options)
        .await
        .unwrap();
    put(&server, "doc:lib1", json!(true)).await;
    eventually("the runtime rule's row", patience(), async || {
        rows(&path, "doc:lib%").await.len() == 1
    })
    .await;
    server.stop().await;
}
