//! Restore: reading the persisted records back into a store at startup, before the server
//! accepts connections.

use super::{PersistedRecord, PersistenceAdapter, PersistenceError};
use crate::model::{RecordId, Versioned};
use crate::store::Store;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// What a restore did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreReport {
    /// Rows read from the database.
    pub records: usize,
    /// Rows the store took (it keeps what it already holds at an equal or newer version).
    pub written: usize,
    /// Rows left out because their id or value could not be read (each one is logged).
    pub skipped: usize,
    /// How long the whole restore took.
    pub elapsed: Duration,
}

/// Copies every persisted record whose id matches `like_pattern` (SQL `LIKE`, escape `\`)
/// into `store`, `page_size` rows at a time in id order. The store writes a record only where
/// it has nothing newer, so running restore against a live store never goes backwards.
///
/// Reading, parsing and storing overlap: pages are parsed on tokio's blocking threads, so this
/// must run inside a tokio runtime (actix's is one) and never parses on the async thread. Ids
/// are accepted at any length, since they were valid
/// when they were persisted.
///
/// Fails when `page_size` is 0, when the database cannot be read, or when the store refuses a
/// page; pages before the failure stay restored, and running it again is harmless.
/// A progress line every this many records read.
const PROGRESS_EVERY: usize = 100_000;

pub async fn restore(
    adapter: &dyn PersistenceAdapter,
    store: &dyn Store,
    like_pattern: &str,
    page_size: usize,
) -> Result<RestoreReport, PersistenceError> {
    if page_size == 0 {
        return Err(PersistenceError::Invalid(
            "restore page size must be at least 1".to_owned(),
        ));
    }
    let started = Instant::now();
    let mut report = RestoreReport {
        records: 0,
        written: 0,
        skipped: 0,
        elapsed: Duration::ZERO,
    };
    // Three stages overlap: the adapter reads page n + 1 (SQLite on its own thread), a blocking
    // thread parses page n, and this task hands page n - 1 to the store.
    let mut next_page = Some(adapter.load_matching(like_pattern, None, page_size));
    let mut parsing: Option<JoinHandle<Decoded>> = None;
    while let Some(page) = next_page.take() {
        let page = page.await?;
        if page.len() == page_size
            && let Some(last) = page.last()
        {
            next_page = Some(adapter.load_matching(like_pattern, Some(&last.id), page_size));
        }
        let before = report.records;
        report.records += page.len();
        // A long restore shows progress (the server accepts no connection until it is done).
        if report.records / PROGRESS_EVERY > before / PROGRESS_EVERY {
            log::info!(
                "restoring {like_pattern:?}: {} persisted records read so far ({:?})",
                report.records,
                started.elapsed()
            );
        }
        let parsed = tokio::task::spawn_blocking(move || decode_page(page));
        if let Some(previous) = parsing.replace(parsed) {
            report.write(store, previous).await?;
        }
    }
    if let Some(last) = parsing {
        report.write(store, last).await?;
    }
    report.elapsed = started.elapsed();
    log::info!(
        "restored {} of {} persisted records matching {:?} in {:?} ({} unreadable)",
        report.written,
        report.records,
        like_pattern,
        report.elapsed,
        report.skipped
    );
    Ok(report)
}

impl RestoreReport {
    /// Waits for a parsed page and writes it to the store.
    async fn write(
        &mut self,
        store: &dyn Store,
        parsing: JoinHandle<Decoded>,
    ) -> Result<(), PersistenceError> {
        let decoded = parsing.await.map_err(|e| {
            PersistenceError::Invalid(format!("a restore page could not be parsed: {e}"))
        })?;
        self.skipped += decoded.skipped;
        self.written += store
            .restore(
                decoded
                    .records
                    .into_iter()
                    .map(|(id, record)| (id, record.into()))
                    .collect(),
            )
            .await
            .map_err(|e| PersistenceError::Store(e.to_string()))?;
        Ok(())
    }
}

/// One page, parsed.
struct Decoded {
    records: Vec<(RecordId, Versioned)>,
    /// Rows that could not be read.
    skipped: usize,
}

/// Parses ids and values; a bad row is logged and counted, not fatal, so one corrupt row does
/// not keep the server from starting.
fn decode_page(page: Vec<PersistedRecord>) -> Decoded {
    let mut skipped = 0;
    let mut batch = Vec::with_capacity(page.len());
    for row in page {
        let id = match RecordId::parse(&row.id, usize::MAX) {
            Ok(id) => id,
            Err(e) => {
                log::warn!("skipping persisted record {:?}: {e}", row.id);
                skipped += 1;
                continue;
            }
        };
        match serde_json::from_str::<Value>(&row.value_json) {
            Ok(value) => batch.push((
                id,
                Versioned {
                    value: Arc::new(value),
                    version: row.version,
                },
            )),
            Err(e) => {
                log::warn!("skipping persisted record {id}: its value is not JSON: {e}");
                skipped += 1;
            }
        }
    }
    Decoded {
        records: batch,
        skipped,
    }
}
