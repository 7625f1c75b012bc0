//! [`Store::write`](crate::store::Store::write) on Redis: one record's write as a segment of
//! `write.lua`, sent through its thread's batcher on one node (see `batch`) or alone on a
//! cluster, and the script's answer as a [`WriteResult`].

use super::RedisStore;
use super::batch::{self, Answer, Batchers, KEYS_PER_RECORD, Segment};
use super::codec::{corrupt, json_text, outcome_unknown, parse_version, stored};
use super::expiry::{self, Filing};
use crate::model::RecordId;
use crate::store::{
    Expect, HistoryLimits, NewVersion, OpId, StoreError, StoreFuture, WriteResult, ready,
};
use std::sync::Arc;
use std::time::Duration;

/// How one write reaches Redis.
enum Route {
    /// Through this thread's batcher (one node).
    Batched(Arc<Batchers>),
    /// As a call of its own (a cluster), with the feed channel and the store's origin tag.
    Alone(String, Arc<str>),
}

impl RedisStore {
    /// [`Store::write`](crate::store::Store::write).
    pub(super) fn write_now(
        &self,
        id: &RecordId,
        expected: Expect,
        values: Vec<NewVersion>,
        op: OpId,
        history: HistoryLimits,
        ttl: Option<Duration>,
    ) -> StoreFuture<WriteResult> {
        if let Some(problem) = self.keys.slot_problem(Some(id)) {
            return ready(Err(StoreError::Unavailable(problem)));
        }
        // Only a write that sets a deadline (and has a value to write) files the record in the
        // expiry index (see `expiry`): on one node inside its own script, on a cluster (where
        // the index is in another slot) by a call before it. A plain write sends one segment.
        let filing = self.filing(id, ttl.filter(|_| !values.is_empty()));
        let (index, file_here) = match &filing {
            Filing::InScript(index) => (index.clone(), "1"),
            _ => (self.keys.expires(id), "0"),
        };
        let keys: [String; KEYS_PER_RECORD] = [
            self.keys.value(id),
            self.keys.version(id),
            self.keys.last_op(id),
            self.keys.history(id),
            self.keys.history_bytes(id),
            self.keys.expires(id),
            index,
        ];
        let mut args = Vec::with_capacity(10 + 3 * values.len());
        args.extend([
            expected.version.to_string(),
            if expected.exists { "1" } else { "0" }.to_owned(),
            self.keys.channel(id),
            op.0.to_string(),
            history.versions.to_string(),
            history.bytes.to_string(),
            id.as_str().to_owned(),
            expiry::ttl_arg(ttl),
            file_here.to_owned(),
            values.len().to_string(),
        ]);
        let mut version = expected.version;
        for new in &values {
            let (json, patch) = match (
                json_text(id, Some(&new.value)),
                json_text(id, new.patch.as_ref()),
            ) {
                (Ok(json), Ok(patch)) => (json, patch),
                (Err(e), _) | (_, Err(e)) => return ready(Err(e)),
            };
            version = match version.checked_add(1) {
                Some(next) => next,
                None => return ready(Err(corrupt(id, "version overflow"))),
            };
            args.extend([version.to_string(), json, patch]);
        }
        let segment = Segment { keys, args };
        let hint = match filing {
            Filing::Before(hint) => Some(hint),
            _ => None,
        };
        let conn = self.commands.clone();
        // The batcher reads the feed flag itself when it sends; only a lone call needs it here.
        let route = match &self.writes {
            Some(writes) => Route::Batched(Arc::clone(writes)),
            None => Route::Alone(self.feed_arg(), Arc::clone(&self.origin)),
        };
        let id = id.clone();
        Box::pin(async move {
            let moved = match &hint {
                Some(hint) => expiry::file(&conn, hint).await?,
                None => true,
            };
            let (status, version, value): Answer = match route {
                Route::Batched(writes) => writes.here().write(segment).await?,
                Route::Alone(feed, origin) => {
                    batch::call(&conn, &conn.scripts().write, [&feed, &origin], &[segment])
                        .await
                        .map_err(|err| outcome_unknown("write", &err))?
                        .pop()
                        .ok_or_else(|| corrupt(&id, "no answer from write.lua"))?
                }
            };
            match status {
                1 => {
                    if let Some(hint) = hint.filter(|_| !moved) {
                        expiry::file_again(&conn, &hint, id.as_str()).await;
                    }
                    Ok(WriteResult::Applied {
                        version: parse_version(&id, &version)?,
                    })
                }
                0 => Ok(WriteResult::Conflict {
                    current: stored(&id, value, Some(version))?,
                }),
                // Redis refused one of the record's commands part-way: it may be half
                // written, so the outcome is unknown (the record actor asks again).
                -2 => Err(StoreError::Indeterminate(format!("redis write: {version}"))),
                _ => Err(corrupt(&id, &format!("version is {version:?}"))),
            }
        })
    }
}
