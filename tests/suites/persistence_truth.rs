//! Nothing acknowledged is then dropped by persistence: values PostgreSQL cannot store are
//! refused when they arrive, a late deletion from one instance never removes a record another
//! instance re-created, and `ack = "flushed"` answers only what the database committed (a
//! `kill -9` right after the answer loses nothing).

use crate::common;

use common::persistence::{TestSchema, all_rows, postgres_url};
use common::process::{serve, write_config};
use common::{Backend, Client, eventually, free_port, patience, start, start_with, unique_prefix};
use mesh_records::database::{
    PersistOptions, PersistRule, PersistedDeletion, PersistedRecord, PersistenceAdapter,
    PersistenceError, PersistenceFuture, PostgresAdapter, SqliteAdapter,
};
use mesh_records::{Error, Strategy};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const PUBLISH: &str = "mesh/publish-record-update";

/// The rows of a SQLite file under `pattern`, as (id, version, value).
async fn sqlite_rows(path: &Path, pattern: &str) -> Vec<(String, u64, Value)> {
    let adapter = SqliteAdapter::open(path).await.unwrap();
    parsed(all_rows(&adapter, pattern).await)
}

fn parsed(rows: Vec<PersistedRecord>) -> Vec<(String, u64, Value)> {
    rows.into_iter()
        .map(|r| {
            let value = serde_json::from_str(&r.value_json).unwrap();
            (r.id, r.version, value)
        })
        .collect()
}

// ---- U+0000 and PostgreSQL ------------------------------------------------------------

#[actix_web::test]
async fn postgres_refuses_a_nul_value_at_write_time_and_keeps_the_last_good_one() {
    let schema = TestSchema::new("nul");
    let config = format!(
        r#"
[persistence]
adapter = "postgres"
postgres_url = "{}"
postgres_schema = "{}"

[[records.persist]]
write_pattern = "^doc:"
restore_pattern = "doc:%"
flush_interval_ms = 20

[[records.expose]]
pattern = "^doc:"
writable = true
"#,
        postgres_url(),
        schema.name
    );
    let server = start(Backend::Memory, &config).await;
    let mut client = server.client().await;
    assert_eq!(
        client.publish("doc:nul", json!({"s": "good"})).await,
        json!({"success": true})
    );
    // In a string, in a key (merged in), deep inside: refused with a clear reason.
    let refused = [
        json!({"s": "a\u{0}b"}),
        json!({"k\u{0}": 1}),
        json!({"list": [1, {"deep": ["\u{0}"]}]}),
    ];
    for value in refused {
        let reply = client
            .request(
                PUBLISH,
                json!({"recordId": "doc:nul", "newValue": value, "options": {"strategy": "merge"}}),
            )
            .await;
        assert_eq!(reply["code"], "EINVALID", "{value} → {reply}");
        let message = reply["error"].as_str().unwrap();
        assert!(message.contains("U+0000"), "{message}");
        assert!(message.contains("PostgreSQL"), "{message}");
    }
    // Server code is held to the same rule: an update computing such a value is refused.
    let update = server
        .records()
        .update_record("doc:nul", |_| Ok(json!({"s": "x\u{0}"})))
        .await;
    assert!(matches!(update, Err(Error::Invalid(_))), "{update:?}");
    // Nothing changed: not the store, not the database.
    let current = server
        .records()
        .get_record("doc:nul")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (current.version, &*current.value),
        (1, &json!({"s": "good"}))
    );
    let adapter = PostgresAdapter::connect(postgres_url(), Some(&schema.name))
        .await
        .unwrap();
    eventually("the good value's row", patience(), async || {
        parsed(all_rows(&adapter, "doc:%").await)
            == vec![("doc:nul".into(), 1, json!({"s": "good"}))]
    })
    .await;
    // The six characters `\u0000` are ordinary text and are stored.
    assert_eq!(
        client.publish("doc:nul", json!({"s": "\\u0000"})).await,
        json!({"success": true})
    );
    eventually("the escaped text's row", patience(), async || {
        parsed(all_rows(&adapter, "doc:%").await)
            == vec![("doc:nul".into(), 2, json!({"s": "\\u0000"}))]
    })
    .await;
    server.stop().await;
    // And what a restart restores is what the clients were told.
    let again = start(Backend::Memory, &config).await;
    let restored = again
        .records()
        .get_record("doc:nul")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (restored.version, &*restored.value),
        (2, &json!({"s": "\\u0000"}))
    );
    again.stop().await;
}

/// The edge the admission cannot see: a value with U+0000 stored before a rule covered its
/// record, then merged with a clean value. PostgreSQL refuses that row alone; the other rows
/// of the batch land, and under `ack = "flushed"` the write is told it is not durable.
#[actix_web::test]
async fn postgres_drops_only_an_old_nul_value_and_a_flushed_ack_says_so() {
    let schema = TestSchema::new("nul_edge");
    let config = format!(
        "[persistence]\nadapter = \"postgres\"\npostgres_url = \"{}\"\npostgres_schema = \"{}\"\n\n\
         [[records.expose]]\npattern = \"^doc:\"\nwritable = true\n",
        postgres_url(),
        schema.name
    );
    let server = start(Backend::Memory, &config).await;
    let mut client = server.client().await;
    // Not persisted yet: accepted.
    assert_eq!(
        client.publish("doc:old", json!({"s": "a\u{0}b"})).await,
        json!({"success": true})
    );
    let mut options = PersistOptions::default();
    options.batching.flush_interval = Duration::from_millis(20);
    options.batching.confirm_within = Some(Duration::from_secs(5));
    server
        .records()
        .enable_record_persistence(PersistRule::pattern("^doc:", "doc:%").unwrap(), options)
        .await
        .unwrap();
    let rejected = mesh_records::metrics::metrics().persistence_rejected.get();
    let id = 900;
    let merge = |record: &str, value: Value| json!({"recordId": record, "newValue": value, "options": {"strategy": "merge"}});
    client
        .send_request(id, PUBLISH, merge("doc:old", json!({"t": 1})))
        .await;
    client
        .send_request(id + 1, PUBLISH, merge("doc:fine", json!({"t": 1})))
        .await;
    let old = client.reply_to(id).await;
    assert_eq!(old["payload"]["code"], "EUNKNOWN", "{old}");
    assert_eq!(
        client.reply_to(id + 1).await["payload"],
        json!({"success": true})
    );
    assert!(mesh_records::metrics::metrics().persistence_rejected.get() > rejected);
    let adapter = PostgresAdapter::connect(postgres_url(), Some(&schema.name))
        .await
        .unwrap();
    assert_eq!(
        parsed(all_rows(&adapter, "doc:%").await),
        vec![("doc:fine".into(), 1, json!({"t": 1}))]
    );
    server.stop().await;
}

#[actix_web::test]
async fn sqlite_keeps_nul_losslessly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.db");
    let config = format!(
        "[persistence]\nadapter = \"sqlite\"\nsqlite_path = \"{}\"\n\n\
         [[records.persist]]\nwrite_pattern = \"^doc:\"\nrestore_pattern = \"doc:%\"\n\
         flush_interval_ms = 20\n\n[[records.expose]]\npattern = \"^doc:\"\nwritable = true\n",
        path.display()
    );
    let server = start(Backend::Memory, &config).await;
    let mut client = server.client().await;
    let value = json!({"s": "a\u{0}b", "k\u{0}": true});
    assert_eq!(
        client.publish("doc:nul", value.clone()).await,
        json!({"success": true})
    );
    eventually("the row", patience(), async || {
        sqlite_rows(&path, "doc:%").await == vec![("doc:nul".into(), 1, value.clone())]
    })
    .await;
    server.stop().await;
}

// ---- late deletions across instances ------------------------------------------------------

/// Instance A deletes a record but flushes late; instance B re-creates it and its row lands
/// first. A's deletion (at the old version) must not remove B's row.
#[actix_web::test]
async fn a_late_delete_from_one_instance_keeps_the_row_another_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.db");
    let prefix = unique_prefix("late-delete");
    let config = |flush_interval_ms: u64| {
        format!(
            "[store]\nkey_prefix = \"{prefix}\"\n\n[persistence]\nadapter = \"sqlite\"\n\
             sqlite_path = \"{}\"\n\n[[records.persist]]\nwrite_pattern = \"^doc:\"\n\
             restore_pattern = \"doc:%\"\nflush_interval_ms = {flush_interval_ms}\n",
            path.display()
        )
    };
    // A flushes only when it stops; B every 20 ms.
    let a = start(Backend::Redis, &config(600_000)).await;
    let b = start(Backend::Redis, &config(20)).await;
    b.write("doc:x", json!({"life": 1})).await;
    eventually("B's first row", patience(), async || {
        sqlite_rows(&path, "doc:%").await == vec![("doc:x".into(), 1, json!({"life": 1}))]
    })
    .await;
    assert_eq!(a.records().delete_record("doc:x").await.unwrap(), Some(1));
    // B re-creates it after the tombstone (version 2).
    let recreated = b
        .records()
        .write_record("doc:x", json!({"life": 2}), Strategy::Replace)
        .await
        .unwrap();
    assert_eq!(recreated.version, 2);
    eventually("B's row of the new life", patience(), async || {
        sqlite_rows(&path, "doc:%").await == vec![("doc:x".into(), 2, json!({"life": 2}))]
    })
    .await;
    // A's deletion reaches the database now, in its final flush.
    a.stop().await;
    assert_eq!(
        sqlite_rows(&path, "doc:%").await,
        vec![("doc:x".into(), 2, json!({"life": 2}))],
        "A's late deletion removed the record B re-created"
    );
    b.stop().await;
}

// ---- ack = "flushed" -----------------------------------------------------------------

/// A config for the binary: SQLite at `db`, `doc:` records persisted with `ack`, and no
/// interval flush to speak of (only acknowledgements and the buffer size start one).
fn binary_config(port: u16, db: &Path, ack: &str) -> String {
    format!(
        "[server]\nport = {port}\n\n[persistence]\nadapter = \"sqlite\"\n\
         sqlite_path = \"{}\"\n\n[[records.persist]]\nwrite_pattern = \"^doc:\"\n\
         restore_pattern = \"doc:%\"\nflush_interval_ms = 600000\nmax_buffer_size = 100000\n\
         ack = \"{ack}\"\n\n[[records.expose]]\npattern = \"^doc:\"\nwritable = true\n",
        db.display()
    )
}

/// What the rounds wrote, which must all be in the database: one record per write of the
/// sequential part, and one record merged by all pipelined writes.
struct Written {
    singles: Vec<(String, Value)>,
    merged: serde_json::Map<String, Value>,
}

/// `rounds` times: start the binary, make writes (one at a time, then 40 pipelined), and
/// kill it with SIGKILL as soon as the last answer is in.
async fn write_then_kill(dir: &Path, ack: &str, rounds: usize) -> Written {
    let db = dir.join("records.db");
    let mut written = Written {
        singles: Vec::new(),
        merged: serde_json::Map::new(),
    };
    for round in 0..rounds {
        let port = free_port();
        let config = write_config(dir, &binary_config(port, &db, ack));
        let mut child = serve(&config);
        common::wait_for_health(port).await;
        let mut client = Client::connect(&format!("ws://127.0.0.1:{port}/ws")).await;
        for n in 0..60 {
            let id = format!("doc:r{round}:{n}");
            let value = json!({"round": round, "n": n});
            assert_eq!(
                client.publish(&id, value.clone()).await,
                json!({"success": true})
            );
            written.singles.push((id, value));
        }
        let first = 1000 * (round as u64 + 1);
        for n in 0..40 {
            let key = format!("r{round}n{n}");
            let mut value = serde_json::Map::new();
            value.insert(key.clone(), json!(n));
            let payload = json!({
                "recordId": "doc:merged",
                "newValue": value,
                "options": {"strategy": "merge"},
            });
            client.send_request(first + n, PUBLISH, payload).await;
            written.merged.insert(key, json!(n));
        }
        for n in 0..40 {
            let reply = client.reply_to(first + n).await;
            assert_eq!(reply["payload"], json!({"success": true}), "{reply}");
        }
        child.kill().unwrap(); // SIGKILL: no final flush.
        child.wait().unwrap();
    }
    written
}

#[actix_web::test]
async fn flushed_acks_survive_sigkill_right_after_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_then_kill(dir.path(), "flushed", 3).await;
    let rows = sqlite_rows(&dir.path().join("records.db"), "doc:%").await;
    for (id, value) in &written.singles {
        let row = rows.iter().find(|(r, _, _)| r == id);
        assert_eq!(
            row.map(|(_, v, value)| (*v, value)),
            Some((1, value)),
            "{id}"
        );
    }
    let merged = rows.iter().find(|(r, _, _)| r == "doc:merged").unwrap();
    assert_eq!(merged.2, Value::Object(written.merged.clone()));
    // And a restarted server serves them (restored from the database).
    let port = free_port();
    let db = dir.path().join("records.db");
    let config = write_config(dir.path(), &binary_config(port, &db, "flushed"));
    let mut child = serve(&config);
    common::wait_for_health(port).await;
    let mut client = Client::connect(&format!("ws://127.0.0.1:{port}/ws")).await;
    let snapshot = client.subscribe("doc:merged", "patch").await;
    assert_eq!(snapshot["record"], Value::Object(written.merged));
    assert_eq!(snapshot["version"], 120);
    let (id, value) = written.singles.last().unwrap();
    assert_eq!(client.subscribe(id, "patch").await["record"], *value);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The contrast: with `ack = "stored"` the answer comes before the database has the write,
/// so a SIGKILL before the next flush loses it from the database (the store kept it while the
/// process lived).
#[actix_web::test]
async fn stored_acks_before_a_flush_are_lost_by_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    write_then_kill(dir.path(), "stored", 1).await;
    assert_eq!(
        sqlite_rows(&dir.path().join("records.db"), "doc:%").await,
        vec![]
    );
}

/// An adapter that fails every call while `down`.
struct Switchable {
    down: AtomicBool,
}

impl Switchable {
    fn answer(&self) -> PersistenceFuture<()> {
        let down = self.down.load(Ordering::SeqCst);
        Box::pin(async move {
            if down {
                Err(PersistenceError::Unavailable("down".into()))
            } else {
                Ok(())
            }
        })
    }
}

impl PersistenceAdapter for Switchable {
    fn store_batch(&self, _records: Vec<PersistedRecord>) -> PersistenceFuture<()> {
        self.answer()
    }

    fn delete_batch(&self, _deletions: Vec<PersistedDeletion>) -> PersistenceFuture<()> {
        self.answer()
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

/// While the database is down, a flushed write is applied (subscribers get it) but answered
/// `EUNKNOWN` after `ack_timeout`, and so is a retry of it that changes nothing; once the
/// database is back, the same retry is answered `success` (its state landed), and so are new
/// writes.
#[actix_web::test]
async fn flushed_ack_answers_eunknown_when_the_database_does_not_confirm_in_time() {
    let config = "[[records.expose]]\npattern = \"^doc:\"\nwritable = true\n";
    let server = start_with(Backend::Memory, config, |b| b).await;
    let adapter = Arc::new(Switchable {
        down: AtomicBool::new(true),
    });
    let mut options = PersistOptions::default();
    options.batching.flush_interval = Duration::from_millis(20);
    options.batching.max_retry_delay = Duration::from_millis(50);
    options.batching.confirm_within = Some(Duration::from_millis(300));
    options.adapter = Some(adapter.clone());
    server
        .records()
        .enable_record_persistence(PersistRule::pattern("^doc:", "doc:%").unwrap(), options)
        .await
        .unwrap();
    let unconfirmed = mesh_records::metrics::metrics()
        .persistence_unconfirmed
        .get();
    let mut watcher = server.client().await;
    watcher.subscribe("doc:d", "patch").await;
    let mut client = server.client().await;
    let reply = client.publish("doc:d", json!({"n": 1})).await;
    assert_eq!(reply["code"], "EUNKNOWN", "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("database"),
        "{reply}"
    );
    assert!(
        mesh_records::metrics::metrics()
            .persistence_unconfirmed
            .get()
            > unconfirmed
    );
    // Applied all the same: the subscriber got it and the record has it.
    assert_eq!(watcher.next_push().await["payload"]["version"], 1);
    let current = server.records().get_record("doc:d").await.unwrap().unwrap();
    assert_eq!(*current.value, json!({"n": 1}));
    // Retrying the same write changes nothing, and must not vouch for a state the database
    // does not have either.
    let retried = client.publish("doc:d", json!({"n": 1})).await;
    assert_eq!(retried["code"], "EUNKNOWN", "{retried}");
    adapter.down.store(false, Ordering::SeqCst);
    assert_eq!(
        client.publish("doc:d", json!({"n": 1})).await,
        json!({"success": true})
    );
    assert_eq!(
        client.publish("doc:d", json!({"n": 2})).await,
        json!({"success": true})
    );
    assert_eq!(
        server.records().delete_record("doc:d").await.unwrap(),
        Some(2)
    );
    server.stop().await;
}

/// An adapter whose batches wait for the test: each call reports its rows, then waits for a
/// permit; it fails while `failing`.
struct Gated {
    entered: tokio::sync::mpsc::UnboundedSender<Vec<(String, u64)>>,
    permits: Arc<tokio::sync::Semaphore>,
    failing: Arc<AtomicBool>,
}

impl PersistenceAdapter for Gated {
    fn store_batch(&self, records: Vec<PersistedRecord>) -> PersistenceFuture<()> {
        let mut rows: Vec<_> = records.iter().map(|r| (r.id.clone(), r.version)).collect();
        rows.sort();
        let _ = self.entered.send(rows);
        let permits = Arc::clone(&self.permits);
        let failing = Arc::clone(&self.failing);
        Box::pin(async move {
            permits.acquire().await.unwrap().forget();
            if failing.load(Ordering::SeqCst) {
                Err(PersistenceError::Unavailable("down".into()))
            } else {
                Ok(())
            }
        })
    }

    fn delete_batch(&self, _deletions: Vec<PersistedDeletion>) -> PersistenceFuture<()> {
        Box::pin(async { Ok(()) })
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

/// Group commit, step by step: a confirmed write starts a flush at once (no interval); writes
/// arriving while it is in flight wait for the next one, which starts as soon as it lands and
/// holds them all; a failed flush keeps its waiters until the retry lands.
#[actix_web::test]
async fn confirmations_follow_their_batch_and_writes_during_a_flush_make_the_next_one() {
    use mesh_records::actors::persistence::{Persist, PersistenceActor, PersistenceOptions};
    use tokio::sync::oneshot::error::TryRecvError;
    let (entered, mut batches) = tokio::sync::mpsc::unbounded_channel();
    let adapter = Arc::new(Gated {
        entered,
        permits: Arc::new(tokio::sync::Semaphore::new(0)),
        failing: Arc::new(AtomicBool::new(false)),
    });
    let options = PersistenceOptions {
        flush_interval: Duration::from_secs(3600),
        max_retry_delay: Duration::from_millis(20),
        confirm_within: Some(Duration::from_secs(5)),
        ..PersistenceOptions::default()
    };
    let handle = PersistenceActor::new(adapter.clone(), options).spawn();
    let persist = |id: &str, version: u64| Persist {
        id: mesh_records::RecordId::parse(id, 64).unwrap(),
        version,
        value: Arc::new(json!(version)),
    };
    let mut a1 = handle.persist_confirmed(persist("a", 1));
    let first = tokio::time::timeout(patience(), batches.recv())
        .await
        .unwrap();
    assert_eq!(first, Some(vec![("a".into(), 1)]), "flushed at once");
    let mut b1 = handle.persist_confirmed(persist("b", 1));
    let mut a2 = handle.persist_confirmed(persist("a", 2));
    // Both wait behind the flush in flight; nothing has landed.
    handle
        .addr
        .send(mesh_records::actors::persistence::GetStatus)
        .await
        .unwrap();
    assert!(matches!(a1.try_recv(), Err(TryRecvError::Empty)));
    adapter.permits.add_permits(1);
    assert!(matches!(
        tokio::time::timeout(patience(), &mut a1).await,
        Ok(Ok(Ok(())))
    ));
    let second = tokio::time::timeout(patience(), batches.recv())
        .await
        .unwrap();
    assert_eq!(
        second,
        Some(vec![("a".into(), 2), ("b".into(), 1)]),
        "the writes that arrived during the first flush, in one batch"
    );
    assert!(matches!(b1.try_recv(), Err(TryRecvError::Empty)));
    assert!(matches!(a2.try_recv(), Err(TryRecvError::Empty)));
    // That batch fails: its waiters stay until the retry lands.
    adapter.failing.store(true, Ordering::SeqCst);
    adapter.permits.add_permits(1);
    let retry = tokio::time::timeout(patience(), batches.recv())
        .await
        .unwrap();
    assert_eq!(retry, Some(vec![("a".into(), 2), ("b".into(), 1)]));
    assert!(matches!(b1.try_recv(), Err(TryRecvError::Empty)));
    adapter.failing.store(false, Ordering::SeqCst);
    adapter.permits.add_permits(1);
    assert!(matches!(
        tokio::time::timeout(patience(), &mut b1).await,
        Ok(Ok(Ok(())))
    ));
    assert!(matches!(
        tokio::time::timeout(patience(), &mut a2).await,
        Ok(Ok(Ok(())))
    ));
}
