//! What Redis replies mean: stored values, versions and history entries parsed (a reply that
//! does not parse is [`StoreError::Corrupt`]-style text naming the record), and the errors a
//! failed command becomes: refused before it ran, or of unknown outcome.

use crate::model::{RecordId, Version};
use crate::store::{Change, StoreError, Stored};
use redis::{ErrorKind, RedisError};
use serde_json::Value;
use std::sync::Arc;

/// A Redis failure as the store reports it; the text only goes to logs.
pub(super) fn unavailable(what: &str, err: &RedisError) -> StoreError {
    crate::metrics::metrics().redis_errors.inc();
    StoreError::Unavailable(format!("redis {what}: {err}"))
}

/// A failed script call that changes data. Redis answering with an error (or refusing the
/// connection) means nothing ran; anything else (a timeout, a dropped connection, an answer
/// that could not be read) leaves the outcome unknown.
pub(super) fn outcome_unknown(what: &str, err: &RedisError) -> StoreError {
    let answered = matches!(err.kind(), ErrorKind::Server(_) | ErrorKind::Extension);
    if answered || err.is_connection_refusal() {
        return unavailable(what, err);
    }
    crate::metrics::metrics().redis_errors.inc();
    StoreError::Indeterminate(format!("redis {what}: {err}"))
}

pub(super) fn corrupt(id: &RecordId, detail: &str) -> StoreError {
    StoreError::Corrupt {
        id: id.to_string(),
        detail: detail.to_string(),
    }
}

pub(super) fn parse_value(id: &RecordId, raw: &[u8]) -> Result<Arc<Value>, StoreError> {
    serde_json::from_slice(raw)
        .map(Arc::new)
        .map_err(|err| corrupt(id, &format!("value is not JSON: {err}")))
}

/// A value as the scripts take it: JSON text, or "" for none (a tombstone, a creation's patch).
///
/// `serde_json::Value` always serializes (its map keys are strings), so a failure would be a
/// serde_json bug; it is reported rather than panicking.
pub(super) fn json_text(id: &RecordId, value: Option<&Arc<Value>>) -> Result<String, StoreError> {
    match value {
        None => Ok(String::new()),
        Some(value) => serde_json::to_string(&**value)
            .map_err(|err| corrupt(id, &format!("unserializable: {err}"))),
    }
}

/// A record's state from its two keys: a value without a version is no record, a version
/// without a value a tombstone (see lua/common.lua).
pub(super) fn stored(
    id: &RecordId,
    value: Option<Vec<u8>>,
    version: Option<String>,
) -> Result<Stored, StoreError> {
    Ok(match (value, version) {
        (_, None) => Stored::absent(0),
        (None, Some(version)) => Stored::absent(parse_version(id, &version)?),
        (Some(value), Some(version)) => {
            Stored::live(parse_value(id, &value)?, parse_version(id, &version)?)
        }
    })
}

/// History entries as stored; an unreadable entry is logged and ends what can be used.
pub(super) fn parse_history(id: &RecordId, entries: &[Vec<u8>]) -> Vec<Change> {
    let mut changes = Vec::with_capacity(entries.len());
    for raw in entries {
        let parsed: Result<Value, _> = serde_json::from_slice(raw);
        let change = parsed.ok().and_then(|mut entry| {
            let version = entry.get("version")?.as_u64()?;
            let patch = entry.get_mut("patch")?.take();
            Some(Change {
                version,
                patch: Arc::new(patch),
            })
        });
        match change {
            Some(change) => changes.push(change),
            None => {
                log::warn!("record {id}: unreadable history entry; history cut there");
                changes.clear();
            }
        }
    }
    changes
}

/// The contiguous run of `changes` that ends at the record's version (none for a deleted
/// record): only that run can bring a client up to date.
pub(super) fn leading_to(record: &Stored, changes: Vec<Change>) -> Vec<Change> {
    if !record.exists() || changes.last().map(|c| c.version) != Some(record.version) {
        return Vec::new();
    }
    let mut start = changes.len() - 1;
    while start > 0 && changes[start - 1].version + 1 == changes[start].version {
        start -= 1;
    }
    changes.into_iter().skip(start).collect()
}

pub(super) fn parse_version(id: &RecordId, raw: &str) -> Result<Version, StoreError> {
    raw.parse()
        .map_err(|_| corrupt(id, &format!("version {raw:?} is not a number")))
}
