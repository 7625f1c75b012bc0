//! Helpers for the persistence test files: rows, a throw-away PostgreSQL schema, and a TCP
//! proxy that plays a PostgreSQL server going down and up.

use mesh_records::database::{
    PersistedDeletion, PersistedRecord, PersistenceAdapter, PostgresConfig,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The PostgreSQL every test uses (trust auth on this machine); override with
/// `MESH_TEST_POSTGRES_URL`.
pub fn postgres_url() -> String {
    std::env::var("MESH_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=postgres".to_owned())
}

/// Sends the crate's log lines to the test output (`RUST_LOG=info` to see them).
pub fn init_logging() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// A row to store.
pub fn row(id: &str, version: u64, value: &str, replaces_deleted: bool) -> PersistedRecord {
    PersistedRecord {
        id: id.to_owned(),
        version,
        value_json: Arc::from(value),
        replaces_deleted,
    }
}

/// A deletion of `id`, which was at `version`.
pub fn deletion(id: &str, version: u64) -> PersistedDeletion {
    PersistedDeletion {
        id: id.to_owned(),
        version,
    }
}

/// Every row matching `pattern`, read in pages of 1,000.
pub async fn all_rows(adapter: &dyn PersistenceAdapter, pattern: &str) -> Vec<PersistedRecord> {
    let mut rows: Vec<PersistedRecord> = Vec::new();
    loop {
        let after = rows.last().map(|r| r.id.clone());
        let page = adapter
            .load_matching(pattern, after.as_deref(), 1000)
            .await
            .expect("load_matching");
        let done = page.len() < 1000;
        rows.extend(page);
        if done {
            return rows;
        }
    }
}

/// A schema only this test uses, dropped when the guard goes (even when the test panics).
pub struct TestSchema {
    /// The schema name.
    pub name: String,
}

impl TestSchema {
    /// A fresh unique name; the adapter creates the schema when it connects.
    pub fn new(test: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        TestSchema {
            name: format!(
                "mesh_test_{test}_{}_{nanos}_{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    /// Runs SQL as the admin on the test database.
    pub async fn admin(&self, sql: &str) {
        admin_execute(sql).await;
    }

    /// The schema-qualified table.
    pub fn table(&self) -> String {
        format!("\"{}\".records", self.name)
    }
}

/// Runs SQL on the test database through its own connection.
pub async fn admin_execute(sql: &str) {
    let (client, connection) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)
        .await
        .expect("admin connection to PostgreSQL");
    let task = tokio::spawn(connection);
    client.batch_execute(sql).await.expect("admin SQL");
    drop(client);
    let _ = task.await;
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Drop runs outside any async context we could await in, so the cleanup gets its
        // own thread and runtime.
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name);
        if super::run_on_own_runtime(async move { admin_execute(&sql).await }).is_err() {
            eprintln!("could not drop test schema {}", self.name);
        }
    }
}

/// Parameters pointing at `port` on localhost, for the proxy tests.
pub fn postgres_params(port: u16) -> PostgresConfig {
    PostgresConfig::Params {
        host: "127.0.0.1".to_owned(),
        port,
        dbname: "postgres".to_owned(),
        user: "postgres".to_owned(),
        password: None,
    }
}

/// A TCP forwarder to the real PostgreSQL on a port of its own: stopping it refuses new
/// connections and cuts the open ones, as a server going down does.
pub struct PgProxy {
    /// The port it listens on (kept across restarts).
    pub port: u16,
    accept: Option<JoinHandle<()>>,
}

impl PgProxy {
    /// Listens on a free port and forwards to PostgreSQL.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        PgProxy {
            port,
            accept: Some(tokio::spawn(forward(listener))),
        }
    }

    /// Refuses connections from now on and cuts the forwarded ones.
    pub async fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("re-bind proxy port");
        self.accept = Some(tokio::spawn(forward(listener)));
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
    }
}

/// Accepts and forwards until aborted; aborting drops the set, which aborts every forwarder.
async fn forward(listener: TcpListener) {
    let target = target_addr();
    let mut forwarders = tokio::task::JoinSet::new();
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let target = target.clone();
        forwarders.spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
        // Reap finished forwarders so the set does not grow.
        while forwarders.try_join_next().is_some() {}
    }
}

/// Host and port of the real server, from the test URL when it is in key=value form.
fn target_addr() -> String {
    let url = postgres_url();
    let field = |key: &str| {
        url.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).map(str::to_owned))
    };
    format!(
        "{}:{}",
        field("host=").unwrap_or_else(|| "127.0.0.1".to_owned()),
        field("port=").unwrap_or_else(|| "5432".to_owned())
    )
}

/// Every row of the SQLite database at `path` whose id matches the LIKE `pattern`, as (id,
/// version, value).
pub async fn sqlite_rows(
    path: &std::path::Path,
    pattern: &str,
) -> Vec<(String, u64, serde_json::Value)> {
    let adapter = mesh_records::database::SqliteAdapter::open(path)
        .await
        .unwrap();
    all_rows(&adapter as &dyn PersistenceAdapter, pattern)
        .await
        .into_iter()
        .map(|r| {
            (
                r.id,
                r.version,
                serde_json::from_str(&r.value_json).unwrap(),
            )
        })
        .collect()
}
