//! Restore: reading the persisted records back into a store at startup, before the server
//! accepts connections.

use super::{PersistedRecord, PersistenceAdapter, PersistenceError};
use crate::record::{RecordId, Versioned};
use crate::store::Store;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
/// While one page goes into the store the next is already being read where the adapter allows
/// it (SQLite works on its own thread). Ids are accepted at any length, since they were valid
/// when they were persisted.
///
/// Fails when `page_size` is 0, when the database cannot be read, or when the store refuses a
/// page; pages before the failure stay restored, and running it again is harmless.
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
    let mut next_page = Some(adapter.load_matching(like_pattern, None, page_size));
    while let Some(page) = next_page.take() {
        let page = page.await?;
        if page.len() == page_size
            && let Some(last) = page.last()
        {
            next_page = Some(adapter.load_matching(like_pattern, Some(&last.id), page_size));
        }
        report.records += page.len();
        let batch = decode_page(page, &mut report.skipped);
        report.written += store
            .restore(batch)
            .await
            .map_err(|e| PersistenceError::Store(e.to_string()))?;
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

/// Parses ids and values; a bad row is logged and counted, not fatal, so one corrupt row does
/// not keep the server from starting.
fn decode_page(page: Vec<PersistedRecord>, skipped: &mut usize) -> Vec<(RecordId, Versioned)> {
    let mut batch = Vec::with_capacity(page.len());
    for row in page {
        let id = match RecordId::parse(&row.id, usize::MAX) {
            Ok(id) => id,
            Err(e) => {
                log::warn!("skipping persisted record {:?}: {e}", row.id);
                *skipped += 1;
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
                *skipped += 1;
            }
        }
    }
    batch
}
