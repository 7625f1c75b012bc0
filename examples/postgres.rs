//! Persistence to PostgreSQL from code: `doc:*` records are kept in PostgreSQL and restored at
//! startup, so they survive restarts of everything.
//!
//! Run: `MESH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run --example postgres`
//! (default: that URL). Write `doc:1` twice, stop with Ctrl-C, run it again: `doc:1` comes back
//! at its version. The table is `mesh_example.records`.

use mesh_records::config::{PersistenceBackend, PersistenceConfig};
use mesh_records::database::{PersistOptions, PersistRule};
use mesh_records::{Config, Exposure, Strategy};
use serde_json::json;
use std::time::Duration;

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let url = std::env::var("MESH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut config = Config::default();
    config.server.port = 3000;
    config.persistence = PersistenceConfig {
        adapter: PersistenceBackend::Postgres,
        postgres_url: Some(url),
        postgres_schema: Some("mesh_example".to_owned()),
        ..PersistenceConfig::default()
    };
    let mut options = PersistOptions::default();
    options.batching.flush_interval = Duration::from_millis(200);
    let builder = mesh_records::RecordServer::builder(config.clone())
        .expose(
            Exposure::pattern(r"^doc:\w+$")
                .map_err(std::io::Error::other)?
                .writable(),
        )
        // Restore rows LIKE 'doc:%' before serving, then persist every doc write.
        .persist(
            PersistRule::pattern(r"^doc:", "doc:%").map_err(std::io::Error::other)?,
            options,
        );
    let running = mesh_records::start_with(config, builder)
        .await
        .map_err(std::io::Error::other)?;
    let records = running.records.clone();
    let before = records
        .get_record("doc:1")
        .await
        .map_err(std::io::Error::other)?;
    match before {
        Some(doc) => println!(
            "doc:1 at startup: version {}, restored from PostgreSQL: {}",
            doc.version, doc.value
        ),
        None => println!("doc:1 at startup: not stored yet (first run, or the table was emptied)"),
    }
    let outcome = records
        .write_record(
            "doc:1",
            json!({"title": "hello", "edits": 1}),
            Strategy::Merge,
        )
        .await
        .map_err(std::io::Error::other)?;
    println!(
        "wrote doc:1, now at version {}; serving ws://{}/ws (Ctrl-C stops and flushes to \
         PostgreSQL; run again to see doc:1 come back)",
        outcome.version, running.addr
    );
    let _ = tokio::signal::ctrl_c().await;
    running.stop().await;
    Ok(())
}
