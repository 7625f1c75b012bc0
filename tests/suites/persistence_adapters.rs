//! Both persistence adapters against real databases (SQLite files in a temp dir, the local
//! PostgreSQL with a schema per test), and restore into `MemoryStore`.
//!
//! Every rule is checked by one backend-neutral function run on both adapters, so the two
//! stay interchangeable.

use crate::common;

use common::persistence::{TestSchema, all_rows, deletion, postgres_url, row};
use mesh_records::database::{
    PersistenceAdapter, PersistenceError, PostgresAdapter, SqliteAdapter, like_prefix, restore,
};
use mesh_records::store::{MemoryStore, Store};
use mesh_records::{RecordId, Versioned};
use serde_json::{Value, json};
use std::sync::Arc;

async fn sqlite() -> (tempfile::TempDir, SqliteAdapter) {
    let dir = tempfile::tempdir().expect("tempdir");
    let adapter = SqliteAdapter::open(dir.path().join("records.db"))
        .await
        .expect("open sqlite");
    (dir, adapter)
}

async fn postgres(test: &str) -> (TestSchema, PostgresAdapter) {
    let schema = TestSchema::new(test);
    let adapter = PostgresAdapter::connect(postgres_url(), Some(&schema.name))
        .await
        .expect("connect postgres");
    (schema, adapter)
}

/// The stored (version, value) of one id.
async fn get(adapter: &dyn PersistenceAdapter, id: &str) -> Option<(u64, Value)> {
    let rows = adapter
        .load_matching(&like_prefix(id), None, 10)
        .await
        .expect("load");
    rows.into_iter().find(|r| r.id == id).map(|r| {
        let value = serde_json::from_str(&r.value_json).expect("stored JSON");
        (r.version, value)
    })
}

async fn check_newest_wins(adapter: &dyn PersistenceAdapter) {
    adapter
        .store_batch(vec![row("a", 2, r#"{"v":2}"#, false)])
        .await
        .expect("store v2");
    adapter
        .store_batch(vec![row("a", 1, r#"{"v":1}"#, false)])
        .await
        .expect("store v1");
    assert_eq!(get(adapter, "a").await, Some((2, json!({"v": 2}))));
    adapter
        .store_batch(vec![row("a", 3, r#"{"v":3}"#, false)])
        .await
        .expect("store v3");
    assert_eq!(get(adapter, "a").await, Some((3, json!({"v": 3}))));
    // The same id twice in one batch: the highest version counts, wherever it is.
    adapter
        .store_batch(vec![
            row("b", 5, r#"{"v":5}"#, false),
            row("b", 4, r#"{"v":4}"#, false),
            row("c", 1, r#"[1,2]"#, false),
        ])
        .await
        .expect("store batch with duplicates");
    assert_eq!(get(adapter, "b").await, Some((5, json!({"v": 5}))));
    assert_eq!(get(adapter, "c").await, Some((1, json!([1, 2]))));
    // An equal version does not rewrite the row.
    adapter
        .store_batch(vec![row("b", 5, r#"{"v":"other"}"#, false)])
        .await
        .expect("store equal version");
    assert_eq!(get(adapter, "b").await, Some((5, json!({"v": 5}))));
}

async fn check_replaces_deleted(adapter: &dyn PersistenceAdapter) {
    adapter
        .store_batch(vec![row("r", 5, r#"{"life":1}"#, false)])
        .await
        .expect("store v5");
    adapter
        .store_batch(vec![row("r", 1, r#"{"life":2}"#, true)])
        .await
        .expect("re-created v1");
    assert_eq!(get(adapter, "r").await, Some((1, json!({"life": 2}))));
    // After that, the ordinary rule applies to the new life again.
    adapter
        .store_batch(vec![row("r", 1, r#"{"life":"stale"}"#, false)])
        .await
        .expect("stale v1");
    assert_eq!(get(adapter, "r").await, Some((1, json!({"life": 2}))));
    // A re-creation of a record with no row is a plain insert.
    adapter
        .store_batch(vec![row("fresh", 1, r#"true"#, true)])
        .await
        .expect("re-created absent");
    assert_eq!(get(adapter, "fresh").await, Some((1, json!(true))));
    // Mixed in one batch with ordinary rows.
    adapter
        .store_batch(vec![
            row("r", 9, r#"{"life":2,"v":9}"#, false),
            row("s", 1, r#"{}"#, false),
        ])
        .await
        .expect("mixed");
    adapter
        .store_batch(vec![
            row("r", 1, r#"{"life":3}"#, true),
            row("s", 2, r#"{"v":2}"#, false),
        ])
        .await
        .expect("mixed with re-creation");
    assert_eq!(get(adapter, "r").await, Some((1, json!({"life": 3}))));
    assert_eq!(get(adapter, "s").await, Some((2, json!({"v": 2}))));
}

async fn check_delete(adapter: &dyn PersistenceAdapter) {
    adapter
        .store_batch(vec![
            row("d:1", 1, "1", false),
            row("d:2", 1, "2", false),
            row("d:3", 1, "3", false),
        ])
        .await
        .expect("store");
    adapter
        .delete_batch(vec![
            deletion("d:1", 1),
            deletion("d:3", 1),
            deletion("d:missing", 1),
        ])
        .await
        .expect("delete");
    let ids: Vec<String> = all_rows(adapter, "d:%")
        .await
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, vec!["d:2".to_owned()]);
    // A deleted record can come back as a new row.
    adapter
        .store_batch(vec![row("d:1", 1, "10", false)])
        .await
        .expect("store again");
    assert_eq!(get(adapter, "d:1").await, Some((1, json!(10))));
}

/// Instance A deleted the record at v3, instance B re-created it (v4, after the tombstone) and
/// its row landed first: A's late deletion must leave B's row alone, and remove only what is
/// not newer than itself.
async fn check_late_delete_keeps_newer_row(adapter: &dyn PersistenceAdapter) {
    adapter
        .store_batch(vec![row("late", 4, r#"{"life":2}"#, false)])
        .await
        .expect("re-created by B");
    adapter
        .delete_batch(vec![deletion("late", 3)])
        .await
        .expect("A's late deletion");
    assert_eq!(get(adapter, "late").await, Some((4, json!({"life": 2}))));
    // A deletion at the row's own version, or later, removes it.
    adapter
        .delete_batch(vec![deletion("late", 4)])
        .await
        .expect("deletion at v4");
    assert_eq!(get(adapter, "late").await, None);
    adapter
        .store_batch(vec![
            row("late:a", 2, "2", false),
            row("late:b", 9, "9", false),
        ])
        .await
        .expect("store two");
    adapter
        .delete_batch(vec![deletion("late:a", 5), deletion("late:b", 5)])
        .await
        .expect("one batch, one older and one newer row");
    assert_eq!(get(adapter, "late:a").await, None);
    assert_eq!(get(adapter, "late:b").await, Some((9, json!(9))));
}

async fn check_load_matching(adapter: &dyn PersistenceAdapter) {
    let mut rows: Vec<_> = (1..=25)
        .map(|n| row(&format!("user:{n}"), n, &format!("{{\"n\":{n}}}"), false))
        .collect();
    rows.push(row("room:1", 1, "{}", false));
    rows.push(row("user_x", 1, "{}", false));
    rows.push(row("User:upper", 1, "{}", false));
    rows.push(row("userA", 1, "{}", false));
    adapter.store_batch(rows).await.expect("store");

    // Pages of 10 in byte order, no duplicate, no gap.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = adapter
            .load_matching("user:%", after.as_deref(), 10)
            .await
            .expect("page");
        pages += 1;
        assert!(page.len() <= 10);
        after = page.last().map(|r| r.id.clone());
        let done = page.len() < 10;
        for r in page {
            assert!(!r.replaces_deleted);
            let value: Value = serde_json::from_str(&r.value_json).expect("json");
            assert_eq!(value["n"].as_u64(), Some(r.version));
            seen.push(r.id);
        }
        if done {
            break;
        }
    }
    assert_eq!(pages, 3);
    // A starting point before or after the pattern's range.
    let from_start = adapter.load_matching("user:%", Some("a"), 100).await;
    assert_eq!(from_start.expect("page").len(), 25);
    let past_end = adapter.load_matching("user:%", Some("user;"), 100).await;
    assert!(past_end.expect("page").is_empty());
    let mut expected: Vec<String> = (1..=25).map(|n| format!("user:{n}")).collect();
    expected.sort(); // byte order: user:1, user:10, user:11, ...
    assert_eq!(seen, expected);

    // `_` is a wildcard unless escaped; LIKE is case-sensitive on both backends.
    let wild: Vec<String> = all_rows(adapter, "user_%")
        .await
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(wild.len(), 27, "user_% matches user:*, user_x and userA");
    let literal: Vec<String> = all_rows(adapter, &like_prefix("user_"))
        .await
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(literal, vec!["user_x".to_owned()]);
    assert_eq!(all_rows(adapter, "User:%").await.len(), 1);
    assert_eq!(all_rows(adapter, "%").await.len(), 29);
}

/// Restore into a store that already holds some records: values and versions come back, and
/// a newer version in the store is never overwritten.
async fn check_restore(adapter: &dyn PersistenceAdapter) {
    let rows: Vec<_> = (0..250)
        .map(|n| {
            let id = format!("doc:{n:03}");
            row(&id, n + 1, &format!(r#"{{"id":"{id}","n":{n}}}"#), false)
        })
        .collect();
    adapter.store_batch(rows).await.expect("store");
    adapter
        .store_batch(vec![row("other:1", 1, "{}", false)])
        .await
        .expect("store other");

    let store = MemoryStore::new();
    let newer = RecordId::parse("doc:010", 256).expect("id");
    let older = RecordId::parse("doc:020", 256).expect("id");
    let kept = Versioned {
        value: Arc::new(json!("live")),
        version: 100,
    };
    store
        .restore(vec![
            (newer.clone(), kept.clone().into()),
            (
                older.clone(),
                Versioned {
                    value: Arc::new(json!("old")),
                    version: 1,
                }
                .into(),
            ),
        ])
        .await
        .expect("seed store");

    let report = restore(adapter, &store, "doc:%", 100)
        .await
        .expect("restore");
    assert_eq!(report.records, 250);
    assert_eq!(report.written, 249, "the newer doc:010 is kept");
    assert_eq!(report.skipped, 0);

    assert_eq!(store.load(&newer).await.expect("load"), kept.into());
    for n in [0u64, 20, 99, 100, 249] {
        let id = RecordId::parse(&format!("doc:{n:03}"), 256).expect("id");
        let got = store.load(&id).await.expect("load");
        let got = got.versioned().expect("restored");
        assert_eq!(got.version, n + 1);
        assert_eq!(*got.value, json!({"id": id.as_str(), "n": n}));
    }
    let other = RecordId::parse("other:1", 256).expect("id");
    assert!(!store.load(&other).await.expect("load").exists());

    // Running it again changes nothing.
    let again = restore(adapter, &store, "doc:%", 7).await.expect("again");
    assert_eq!((again.records, again.written), (250, 0));
}

#[actix_rt::test]
async fn sqlite_newest_version_wins() {
    let (_dir, adapter) = sqlite().await;
    check_newest_wins(&adapter).await;
}

#[actix_rt::test]
async fn sqlite_replaces_deleted_overrides_version() {
    let (_dir, adapter) = sqlite().await;
    check_replaces_deleted(&adapter).await;
}

#[actix_rt::test]
async fn sqlite_delete_removes_rows() {
    let (_dir, adapter) = sqlite().await;
    check_delete(&adapter).await;
}

#[actix_rt::test]
async fn sqlite_late_delete_keeps_a_newer_row() {
    let (_dir, adapter) = sqlite().await;
    check_late_delete_keeps_newer_row(&adapter).await;
}

#[actix_rt::test]
async fn sqlite_load_matching_paginates_with_like() {
    let (_dir, adapter) = sqlite().await;
    check_load_matching(&adapter).await;
}

#[actix_rt::test]
async fn sqlite_restore_into_memory_store() {
    let (_dir, adapter) = sqlite().await;
    check_restore(&adapter).await;
}

#[actix_rt::test]
async fn sqlite_in_memory_database_works() {
    let adapter = SqliteAdapter::open(":memory:").await.expect("open");
    check_newest_wins(&adapter).await;
}

#[actix_rt::test]
async fn sqlite_creates_parent_dir_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/deeper/records.db");
    {
        let adapter = SqliteAdapter::open(&path).await.expect("open");
        adapter
            .store_batch(vec![row("k", 3, r#"{"kept":true}"#, false)])
            .await
            .expect("store");
    }
    let adapter = SqliteAdapter::open(&path).await.expect("reopen");
    assert_eq!(get(&adapter, "k").await, Some((3, json!({"kept": true}))));
}

#[actix_rt::test]
async fn sqlite_corrupt_rows_are_skipped_at_restore() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("records.db");
    let adapter = SqliteAdapter::open(&path).await.expect("open");
    adapter
        .store_batch(vec![
            row("ok", 1, "{}", false),
            row("bad", 1, "not json", false),
        ])
        .await
        .expect("store");
    let store = MemoryStore::new();
    let report = restore(&adapter, &store, "%", 10).await.expect("restore");
    assert_eq!((report.records, report.written, report.skipped), (2, 1, 1));
}

#[actix_rt::test]
async fn postgres_newest_version_wins() {
    let (_schema, adapter) = postgres("newest").await;
    check_newest_wins(&adapter).await;
}

#[actix_rt::test]
async fn postgres_replaces_deleted_overrides_version() {
    let (_schema, adapter) = postgres("replaces").await;
    check_replaces_deleted(&adapter).await;
}

#[actix_rt::test]
async fn postgres_delete_removes_rows() {
    let (_schema, adapter) = postgres("delete").await;
    check_delete(&adapter).await;
}

#[actix_rt::test]
async fn postgres_late_delete_keeps_a_newer_row() {
    let (_schema, adapter) = postgres("late_delete").await;
    check_late_delete_keeps_newer_row(&adapter).await;
}

#[actix_rt::test]
async fn postgres_load_matching_paginates_with_like() {
    let (_schema, adapter) = postgres("load").await;
    check_load_matching(&adapter).await;
}

#[actix_rt::test]
async fn postgres_restore_into_memory_store() {
    let (_schema, adapter) = postgres("restore").await;
    check_restore(&adapter).await;
}

#[actix_rt::test]
async fn postgres_stores_jsonb_and_connects_twice() {
    let (schema, adapter) = postgres("jsonb").await;
    let j = row("j", 1, r#"{"b":[1,2.5,"x"],"a":{"n":null}}"#, false);
    // jsonb cannot hold U+0000: the batch is refused as the rows' own fault (the actor then
    // lands the others one by one and drops only that row), and nothing of it is written.
    let refused = adapter
        .store_batch(vec![j.clone(), row("nul", 1, r#"{"s":"a\u0000b"}"#, false)])
        .await;
    assert!(
        matches!(&refused, Err(PersistenceError::Rejected(e)) if e.contains("nul v1")),
        "{refused:?}"
    );
    assert_eq!(get(&adapter, "j").await, None);
    adapter.store_batch(vec![j]).await.expect("store");
    assert_eq!(
        get(&adapter, "j").await,
        Some((1, json!({"a": {"n": null}, "b": [1, 2.5, "x"]})))
    );
    assert_eq!(get(&adapter, "nul").await, None);
    // A second adapter on the same schema finds the table (creation is idempotent).
    let second = PostgresAdapter::connect(postgres_url(), Some(&schema.name))
        .await
        .expect("connect again");
    assert_eq!(get(&second, "j").await.map(|(v, _)| v), Some(1));
}

#[actix_rt::test]
async fn postgres_connect_with_params_and_unreachable_server_fails() {
    let schema = TestSchema::new("params");
    let adapter = PostgresAdapter::connect(
        common::persistence::postgres_params(5432),
        Some(&schema.name),
    )
    .await
    .expect("connect with params");
    adapter
        .store_batch(vec![row("p", 1, "1", false)])
        .await
        .expect("store");
    // Nothing listens on port 1.
    let err = PostgresAdapter::connect(common::persistence::postgres_params(1), None)
        .await
        .expect_err("no server on port 1");
    assert!(
        matches!(
            err,
            mesh_records::database::PersistenceError::Unavailable(_)
        ),
        "{err:?}"
    );
}
