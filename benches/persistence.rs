//! Persistence throughput, printed as plain numbers (`cargo bench --bench persistence`).
//!
//! - `store_batch` of 1,000-row batches on SQLite (file, WAL) and PostgreSQL (local server,
//!   a throw-away schema), every row a real update: median and mean per batch, rows/s.
//! - `PersistenceActor` end to end on SQLite: 100,000 `Persist` messages over 10,000 records
//!   with batches of 1,000, timed until everything has landed.
//! - Restore of 1,000,000 records from SQLite into `MemoryStore`
//!   (`MESH_BENCH_RESTORE_RECORDS` changes the count).
//!
//! PostgreSQL is found at `MESH_TEST_POSTGRES_URL` (default: local, user postgres); without a
//! server that part is skipped with a note.

use actix::prelude::*;
use mesh_records::RecordId;
use mesh_records::actors::persistence::{
    Flush, GetStatus, Persist, PersistenceActor, PersistenceOptions,
};
use mesh_records::database::{
    PersistedRecord, PersistenceAdapter, PostgresAdapter, SqliteAdapter, restore,
};
use mesh_records::store::MemoryStore;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCH: usize = 1_000;
const WARMUP: u64 = 3;
const ROUNDS: u64 = 30;

fn value_json(n: usize, version: u64) -> String {
    format!(
        r#"{{"id":{n},"name":"record {n}","tags":["a","b"],"active":true,"version":{version}}}"#
    )
}

fn batch(offset: usize, len: usize, version: u64) -> Vec<PersistedRecord> {
    (offset..offset + len)
        .map(|n| PersistedRecord {
            id: format!("bench:{n:08}"),
            version,
            value_json: Arc::from(value_json(n, version)),
            replaces_deleted: false,
        })
        .collect()
}

/// Times `ROUNDS` batches of 1,000 updates (after `WARMUP` unmeasured ones).
async fn flush_throughput(name: &str, adapter: &dyn PersistenceAdapter) {
    let mut times = Vec::new();
    for version in 1..=WARMUP + ROUNDS {
        let rows = batch(0, BATCH, version);
        let started = Instant::now();
        adapter.store_batch(rows).await.expect("store_batch");
        if version > WARMUP {
            times.push(started.elapsed());
        }
    }
    times.sort();
    let median = times[times.len() / 2];
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!(
        "{name:<10} store_batch 1,000 rows: median {:>7.2} ms, mean {:>7.2} ms, min {:>7.2} ms \
         -> {:>9.0} rows/s (median)",
        ms(median),
        ms(mean),
        ms(times[0]),
        BATCH as f64 / median.as_secs_f64()
    );
}

async fn actor_throughput(adapter: Arc<SqliteAdapter>) {
    const MESSAGES: usize = 100_000;
    const RECORDS: usize = 10_000;
    let actor = PersistenceActor::new(
        adapter,
        PersistenceOptions {
            flush_interval: Duration::from_millis(50),
            max_buffer_size: BATCH,
            ..PersistenceOptions::default()
        },
    )
    .start();
    let ids: Vec<RecordId> = (0..RECORDS)
        .map(|n| RecordId::parse(&format!("actor:{n:05}"), 256).expect("id"))
        .collect();
    let value = Arc::new(serde_json::json!({"name": "x", "tags": ["a", "b"], "n": 1}));
    let started = Instant::now();
    for m in 0..MESSAGES {
        actor
            .send(Persist {
                id: ids[m % RECORDS].clone(),
                version: (m / RECORDS + 1) as u64,
                value: Arc::clone(&value),
            })
            .await
            .expect("send");
    }
    actor.send(Flush).await.expect("send").expect("flush");
    let elapsed = started.elapsed();
    let status = actor.send(GetStatus).await.expect("status");
    println!(
        "actor      {MESSAGES} Persist over {RECORDS} records (SQLite): {:>7.1} ms, {:>9.0} \
         messages/s, {} rows written",
        ms(elapsed),
        MESSAGES as f64 / elapsed.as_secs_f64(),
        status.rows_landed
    );
}

async fn restore_bench(adapter: &SqliteAdapter, total: usize) {
    const FILL_BATCH: usize = 10_000;
    let started = Instant::now();
    let mut offset = 0;
    while offset < total {
        let len = FILL_BATCH.min(total - offset);
        adapter
            .store_batch(batch(offset, len, 1))
            .await
            .expect("fill");
        offset += len;
    }
    let fill = started.elapsed();
    println!(
        "restore    filled SQLite with {total} rows in {:.2} s ({:.0} rows/s, batches of \
         {FILL_BATCH})",
        fill.as_secs_f64(),
        total as f64 / fill.as_secs_f64()
    );
    for page_size in [1_000, 10_000] {
        let store = MemoryStore::new();
        let cpu_before = cpu_time();
        let report = restore(adapter, &store, "bench:%", page_size)
            .await
            .expect("restore");
        let cpu = cpu_time().saturating_sub(cpu_before);
        assert_eq!(report.written, total);
        println!(
            "restore    {total} records SQLite -> MemoryStore, pages of {page_size:>6}: {:>6.2} s \
             ({:.0} records/s), {:.2} s CPU in all threads",
            report.elapsed.as_secs_f64(),
            total as f64 / report.elapsed.as_secs_f64(),
            cpu.as_secs_f64()
        );
        let probe = RecordId::parse("bench:00000042", 256).expect("id");
        let got = mesh_records::store::Store::load(&store, &probe)
            .await
            .expect("load");
        assert_eq!(got.versioned().map(|v| v.version), Some(1));
    }
}

/// CPU time used by every thread of this process so far (user + system), which other load on
/// the machine does not inflate the way it inflates wall time.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given, which is zero-initialized here.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo test --all-targets` runs bench binaries without `--bench`: measure only under
    // `cargo bench`, where the build is optimized.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("persistence bench: run it with `cargo bench --bench persistence`");
        return;
    }
    let restore_records: usize = std::env::var("MESH_BENCH_RESTORE_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    System::new().block_on(async move {
        let sqlite = Arc::new(
            SqliteAdapter::open(dir.path().join("bench.db"))
                .await
                .expect("open sqlite"),
        );
        flush_throughput("SQLite", &*sqlite).await;

        let url = std::env::var("MESH_TEST_POSTGRES_URL").unwrap_or_else(|_| {
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres".to_owned()
        });
        let schema = format!("mesh_bench_{}", std::process::id());
        match PostgresAdapter::connect(url.as_str(), Some(&schema)).await {
            Ok(postgres) => {
                flush_throughput("PostgreSQL", &postgres).await;
                drop_schema(&url, &schema).await;
            }
            Err(e) => println!("PostgreSQL skipped: {e}"),
        }

        actor_throughput(Arc::clone(&sqlite)).await;

        let restore_db = SqliteAdapter::open(dir.path().join("restore.db"))
            .await
            .expect("open sqlite");
        restore_bench(&restore_db, restore_records).await;
    });
}

async fn drop_schema(url: &str, schema: &str) {
    let Ok((client, connection)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await else {
        return;
    };
    let task = actix_rt::spawn(connection);
    let _ = client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await;
    drop(client);
    let _ = task.await;
}
