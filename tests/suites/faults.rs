//! Faults: the server killed with SIGKILL while writes flow with persistence on.

use crate::common;

use common::process::{serve, write_config};
use common::{Client, free_port, wait_for_health};
use mesh_records::database::{PersistenceAdapter, SqliteAdapter};
use serde_json::json;
use std::collections::HashMap;

async fn flushed_versions(db: &std::path::Path) -> HashMap<String, u64> {
    let adapter = SqliteAdapter::open(db).await.unwrap();
    adapter
        .load_matching("doc:%", None, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.version))
        .collect()
}

#[actix_web::test]
async fn sigkill_loses_nothing_that_was_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("records.db");
    let port = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[server]
port = {port}
max_requests_per_second = 0

[persistence]
sqlite_path = "{}"

[[records.persist]]
write_pattern = "^doc:"
restore_pattern = "doc:%"
flush_interval_ms = 50

[[records.expose]]
pattern = "^doc:"
writable = true
"#,
            db.display()
        ),
    );
    let mut server = serve(&config);
    wait_for_health(port).await;
    let url = format!("ws://127.0.0.1:{port}/ws");

    // Four writers, each on its own records, write until the server dies.
    let mut writers = Vec::new();
    for w in 0..4 {
        let url = url.clone();
        writers.push(actix_rt::spawn(async move {
            let mut client = Client::connect(&url).await;
            let mut acked: HashMap<String, u64> = HashMap::new();
            for n in 1u64.. {
                let id = format!("doc:{w}:{}", n % 5);
                let payload = json!({"recordId": id, "newValue": {"n": n}});
                let reply = client
                    .try_request("mesh/publish-record-update", payload)
                    .await;
                match reply {
                    Some(reply) if reply == json!({"success": true}) => {
                        *acked.entry(id).or_default() += 1;
                    }
                    _ => break,
                }
            }
            acked
        }));
    }
    // Let writes flow until some have been flushed, note what the database holds, then
    // kill -9.
    common::eventually("some writes flushed", common::patience(), async || {
        !flushed_versions(&db).await.is_empty()
    })
    .await;
    let flushed = flushed_versions(&db).await;
    server.kill().unwrap();
    server.wait().unwrap();
    let mut acked = HashMap::new();
    for writer in writers {
        acked.extend(writer.await.unwrap());
    }

    let mut server = serve(&config);
    wait_for_health(port).await;
    let mut client = Client::connect(&url).await;
    for (id, version) in &flushed {
        let reply = client.subscribe(id, "full").await;
        let restored = reply["version"].as_u64().unwrap();
        assert!(
            restored >= *version,
            "{id}: restored v{restored} < flushed v{version}"
        );
        // Never more than was written: each acknowledged write is one version, plus at most the
        // one write per writer in flight when the server died.
        let acks = acked.get(id).copied().unwrap_or(0);
        assert!(
            restored <= acks + 1,
            "{id}: v{restored} but only {acks} acks"
        );
    }
    server.kill().unwrap();
    server.wait().unwrap();
}
