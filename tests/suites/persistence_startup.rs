//! Starting up next to others: several processes opening one fresh SQLite file at the same
//! moment must all succeed (the lock is waited for, the schema creation may race).

use crate::common;

use common::persistence::{all_rows, row};
use futures_util::future::join_all;
use mesh_records::database::{PersistenceAdapter, SqliteAdapter};

#[actix_web::test]
async fn adapters_opening_one_fresh_sqlite_file_at_once_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    // Several fresh files, so the race between opening, switching to WAL and creating the
    // table is hit many times rather than once.
    for round in 0..20 {
        let path = dir.path().join(format!("round-{round}")).join("records.db");
        let opened = join_all((0..6).map(|_| SqliteAdapter::open(path.clone()))).await;
        let adapters: Vec<SqliteAdapter> = opened
            .into_iter()
            .enumerate()
            .map(|(n, result)| {
                result.unwrap_or_else(|e| panic!("round {round}, adapter {n} failed to open: {e}"))
            })
            .collect();
        // Every one of them can write, and they all see one table.
        join_all(adapters.iter().enumerate().map(|(n, adapter)| {
            adapter.store_batch(vec![row(&format!("doc:{n}"), 1, "{}", false)])
        }))
        .await
        .into_iter()
        .for_each(|stored| stored.expect("store_batch after a racing open"));
        let rows = all_rows(&adapters[0] as &dyn PersistenceAdapter, "doc:%").await;
        assert_eq!(rows.len(), adapters.len(), "round {round}");
    }
}
