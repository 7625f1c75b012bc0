//! [`Store::list_matching`](super::Store::list_matching) on Redis: `SCAN` every master for the
//! value keys whose id the glob may match ([`RedisKeys::value_match`]), check each id with the
//! glob itself, then read values and versions with one `MGET` per chunk of ids.
//!
//! Costs and limits:
//! - `SCAN` walks the node's whole keyspace, whatever the glob: a listing costs about one
//!   round trip per [`SCAN_COUNT`] keys held by the Redis (all prefixes, all data), not per
//!   match. Collections are listed when they start and on a resync, not per change.
//! - Tombstones have no value key, so they are never scanned. A value key without a version
//!   key (no record, see `lua/common.lua`) and a record deleted between `SCAN` and `MGET` are
//!   skipped; `SCAN` may return a key twice, so ids are deduplicated.
//! - The list is not one snapshot: each record is read at one instant, the whole is not. The
//!   caller watches the change feed first and reloads what changes meanwhile.
//! - Memory stays within `max` records plus one chunk: past `max` live records the listing
//!   stops with [`StoreError::TooMany`].
//! - On a cluster each master is scanned by address, one after the other. A slot migrating
//!   during the scan can hide its keys from it (they move from a master not yet scanned to
//!   one already scanned); the listing is then short of those records until they change.
//! - A record whose value is not JSON is skipped with a warning rather than failing the
//!   whole collection.

use super::RedisKeys;
use super::codec::stored;
use super::transport::Transport;
use crate::metrics::metrics;
use crate::model::{Glob, RecordId, Versioned};
use crate::store::StoreError;
use std::collections::HashSet;

/// Keys asked per `SCAN` call: enough to make few round trips, few enough that one call
/// blocks Redis only briefly.
const SCAN_COUNT: usize = 500;
/// Records read per `MGET` (two keys each).
const READ_CHUNK: usize = 250;

/// Every live record whose id matches `glob`, at most `max`.
pub(super) async fn list(
    conn: Transport,
    keys: &RedisKeys,
    glob: &Glob,
    max: usize,
) -> Result<Vec<(RecordId, Versioned)>, StoreError> {
    let pattern = keys.value_match(glob);
    let nodes = conn.scan_targets().await.map_err(unavailable)?;
    let mut listing = Listing {
        conn: &conn,
        keys,
        glob,
        max,
        seen: HashSet::new(),
        pending: Vec::new(),
        found: Vec::new(),
    };
    for node in &nodes {
        let mut cursor = 0;
        loop {
            let (next, batch) = conn
                .scan(node.as_ref(), cursor, &pattern, SCAN_COUNT)
                .await
                .map_err(|err| unavailable(format!("redis scan: {err}")))?;
            for key in batch {
                listing.take(&key).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    listing.read().await?;
    Ok(listing.found)
}

/// A listing in progress.
struct Listing<'a> {
    conn: &'a Transport,
    keys: &'a RedisKeys,
    glob: &'a Glob,
    max: usize,
    /// Ids scanned so far (SCAN may repeat a key).
    seen: HashSet<RecordId>,
    /// Ids scanned and not read yet.
    pending: Vec<RecordId>,
    found: Vec<(RecordId, Versioned)>,
}

impl Listing<'_> {
    /// Takes one scanned key: its id if the glob matches it, read once a chunk is full.
    async fn take(&mut self, key: &[u8]) -> Result<(), StoreError> {
        let id = std::str::from_utf8(key)
            .ok()
            .and_then(|key| self.keys.id_of_value_key(key))
            .filter(|id| self.glob.matches(id))
            .and_then(|id| RecordId::parse(id, usize::MAX).ok());
        if let Some(id) = id
            && self.seen.insert(id.clone())
        {
            self.pending.push(id);
            if self.pending.len() >= READ_CHUNK {
                self.read().await?;
            }
        }
        Ok(())
    }

    /// Reads the pending ids' values and versions; fails once more than `max` are live.
    async fn read(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("MGET");
        for id in &self.pending {
            cmd.arg(self.keys.value(id)).arg(self.keys.version(id));
        }
        // On a cluster the client splits this per slot; a record's two keys share one.
        let answers: Vec<Option<Vec<u8>>> = self
            .conn
            .read(&cmd)
            .await
            .map_err(|err| unavailable(format!("redis listing read: {err}")))?;
        if answers.len() != 2 * self.pending.len() {
            return Err(unavailable(format!(
                "redis listing read: {} answers for {} keys",
                answers.len(),
                2 * self.pending.len()
            )));
        }
        let mut answers = answers.into_iter();
        for id in self.pending.drain(..) {
            let (value, version) = (answers.next().flatten(), answers.next().flatten());
            let version = version.map(|raw| String::from_utf8_lossy(&raw).into_owned());
            match stored(&id, value, version) {
                Ok(record) => {
                    if let Some(record) = record.versioned() {
                        self.found.push((id, record));
                    }
                }
                Err(err) => log::warn!("listing {}: skipped: {err}", self.glob),
            }
        }
        if self.found.len() > self.max {
            return Err(StoreError::TooMany {
                max: self.max,
                pattern: self.glob.as_str().to_string(),
            });
        }
        Ok(())
    }
}

fn unavailable(reason: String) -> StoreError {
    metrics().redis_errors.inc();
    StoreError::Unavailable(reason)
}
