//! The messages a `PersistenceActor` takes: from record actors (`Persist`, `PersistDeletion`,
//! either one wrapped in `ConfirmWhenLanded` for `ack = "flushed"`) and from the server
//! (`Flush`, `Shutdown`, `Abandon`, `GetStatus`).

use crate::database::PersistenceError;
use crate::model::{RecordId, Version};
use actix::prelude::*;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Buffers a record's new value; it reaches the database with the next flush unless a newer
/// version replaces it first.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct Persist {
    /// The record.
    pub id: RecordId,
    /// The version `value` has.
    pub version: Version,
    /// The value (shared with the store; serialized only when flushed).
    pub value: Arc<Value>,
}

/// Buffers the deletion of a record, so it never comes back at restore.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct PersistDeletion {
    /// The record.
    pub id: RecordId,
    /// The version the record had when it was deleted.
    pub version: Version,
}

/// Where the news that an operation is in the database goes: `Ok` once a flush committed it
/// (or a newer state of its record); `Err(Rejected)` when the database refused its row for
/// good. Dropped unanswered when the actor stops first.
pub type Landed = oneshot::Sender<Result<(), PersistenceError>>;

/// `message` (a [`Persist`] or [`PersistDeletion`]), answered on `landed` once the batch
/// holding it committed. One message, so the operation and its waiter enter the buffer
/// together: no flush can take the one without the other.
#[derive(Debug)]
pub struct ConfirmWhenLanded<M> {
    /// What to persist.
    pub message: M,
    /// Where to say it landed.
    pub landed: Landed,
}

impl<M> Message for ConfirmWhenLanded<M> {
    type Result = ();
}

/// Flushes now, ignoring any backoff. Answers the number of rows the answering flush wrote;
/// `Ok` means everything buffered before this message has landed.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<usize, PersistenceError>")]
pub struct Flush;

/// Final flush at process stop: flushes until the buffer is empty (`Ok` with the rows written
/// meanwhile) or `shutdown_retries` retries failed (`Err` with the last error; what was still
/// buffered is logged as lost), then stops the actor. Later messages are refused.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "Result<usize, PersistenceError>")]
pub struct Shutdown;

/// Stops now without waiting for the database (the stop deadline passed). What is buffered or
/// in flight is logged as not persisted (count at error level, ids at debug level); answers
/// that count.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "usize")]
pub struct Abandon;

/// Reports the buffer and retry state, for health checks and tests.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "PersistenceStatus")]
pub struct GetStatus;

/// The answer to [`GetStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersistenceStatus {
    /// Records waiting in the buffer.
    pub buffered: usize,
    /// Records in the flush in flight (0 when none is).
    pub in_flight: usize,
    /// Flushes failed in a row (0 when the database is healthy).
    pub consecutive_failures: u32,
    /// When the current outage started, if one is going on.
    pub failing_since: Option<Instant>,
    /// Rows written since the actor started.
    pub rows_landed: u64,
}
