//! The messages a `RecordActor` handles, and the settings and environment it runs with.
//! Kept apart from the actor so senders (sessions, the server API) depend on this file only.

use crate::error::Error;
use crate::model::{Mode, RecordId, Strategy, Version, Versioned};
use crate::outbox::Outbox;
use crate::store::{RemoteChange, SharedStore};
use actix::WeakRecipient;
use actix::prelude::*;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use super::RecordActor;
use super::queue::{UpdateFn, WriteOutcome};

/// Settings every `RecordActor` follows.
#[derive(Clone)]
pub struct RecordSettings {
    /// Where writes of persisted records go.
    pub persist: Arc<crate::actors::persistence::PersistRoutes>,
    /// How long an unused actor stays alive.
    pub linger: Duration,
    /// Largest value a merge may produce, serialized.
    pub max_value_bytes: usize,
    /// Most queued writes sent to the store in one call (1 = no batching).
    pub max_write_batch: usize,
    /// Most bytes of values sent to the store in one call (one value always goes).
    pub max_write_batch_bytes: usize,
    /// Most writes and deletes queued for one record; more are refused with `ELIMIT`.
    pub max_pending_writes: usize,
    /// How much history each record keeps (resume, the admin API's history).
    pub history: crate::store::HistoryLimits,
    /// How long the actor waits for the store in each situation (not configurable: the
    /// defaults; tests shorten them).
    pub deadlines: super::state::Deadlines,
}

impl RecordSettings {
    /// The settings `config` gives, with the live persistence routes.
    pub fn from_config(
        config: &crate::config::Config,
        persist: Arc<crate::actors::persistence::PersistRoutes>,
    ) -> Self {
        let s = &config.server;
        RecordSettings {
            persist,
            linger: s.record_linger(),
            max_value_bytes: s.value_limit(),
            max_write_batch: s.max_write_batch,
            max_write_batch_bytes: s.max_write_batch_bytes,
            max_pending_writes: s.max_pending_writes,
            history: config.records.history(),
            deadlines: Default::default(),
        }
    }
}

/// What every `RecordActor` shares: the store, settings and counters.
pub struct RecordEnv {
    /// Where values live.
    pub store: SharedStore,
    /// Linger and limits.
    pub settings: RecordSettings,
    /// Live `RecordActor` count.
    pub live: Arc<AtomicUsize>,
    /// Told when an actor stops, so the directory forgets it.
    pub registry: Recipient<RecordActorStopped>,
    /// Asked by an idle actor whether it may stop.
    pub retire: Recipient<RetireRecordActor>,
    /// The core limits of every actor whose rules set no size of their own, made by the
    /// first one: one copy instead of ~130 bytes in each actor.
    pub(crate) shared_limits: std::sync::OnceLock<Arc<super::state::CoreLimits>>,
}

/// Adds a subscriber and answers with the snapshot it starts from.
#[derive(Message, Clone)]
#[rtype(result = "Result<Option<Versioned>, Error>")]
pub struct Subscribe {
    /// The session's numeric id (one subscription per session and record).
    pub session: u64,
    /// Full or patch.
    pub mode: Mode,
    /// Where pushes go.
    pub outbox: Outbox,
    /// Echoed in `SubscriptionEnded` so a stale notice cannot end a newer subscription.
    pub token: u64,
    /// What happens when the subscription ends from this side (record deleted).
    pub ended: OnEnd,
    /// The request id to answer; the reply is queued here, ahead of any later push.
    pub reply_to: Option<serde_json::Number>,
    /// `sinceVersion`: the version the client holds, to resume from instead of a snapshot.
    /// `Some(None)`: the client asked but the value was not a version (not resumed).
    pub since: Option<Option<Version>>,
}

/// Removes a session's subscription; answers whether there was one.
#[derive(Message, Clone)]
#[rtype(result = "bool")]
pub struct Unsubscribe {
    /// The session's numeric id.
    pub session: u64,
    /// Pushed to the session right after its subscription is removed, so that it is the
    /// last frame of the subscription (no update of this record follows it).
    pub farewell: Option<crate::model::Frame>,
}

/// Writes a value with a strategy.
#[derive(Message, Clone)]
#[rtype(result = "Result<WriteOutcome, Error>")]
pub struct ApplyWrite {
    /// The incoming value (shared: a replace stores it without copying).
    pub value: Arc<Value>,
    /// How it combines with the current value.
    pub strategy: Strategy,
    /// Applied only if the record is at this version (0: only if it does not exist);
    /// otherwise `Error::VersionMismatch`.
    pub expected_version: Option<Version>,
    /// The client writing, whose write its exposure's value guard judges; `None`: the server.
    pub writer: Option<crate::connection::Connection>,
    /// The server's write skips the exposure's schema (`Records::write_record_unchecked`).
    pub skip_schema: bool,
}

/// Changes the record with a function of its current value, inside its actor (an atomic
/// read-modify-write: nothing else writes in between, and after a lost race with another
/// instance the function runs again on the fresh value).
#[derive(Message, Clone)]
#[rtype(result = "Result<WriteOutcome, Error>")]
pub struct UpdateRecord {
    /// The new value from the current one (`None`: the record does not exist).
    pub update: UpdateFn,
    /// Applied only if the record is at this version (0: only if it does not exist).
    pub expected_version: Option<Version>,
}

/// Deletes the record; answers the version it had, or `None` if it was absent.
#[derive(Message, Clone, Default)]
#[rtype(result = "Result<Option<Version>, Error>")]
pub struct DeleteRecord {
    /// Deletes only if the live record is at this version; otherwise
    /// `Error::VersionMismatch`.
    pub if_version: Option<Version>,
}

/// The record's recent history: the changes after `since`, or `None` when the history does
/// not reach back that far (or the record does not exist).
#[derive(Message, Clone)]
#[rtype(result = "Result<Option<(Version, Vec<crate::store::Change>)>, Error>")]
pub struct GetHistory {
    /// The version the caller holds.
    pub since: Version,
}

/// A change the store published for this record (another instance's write or our own echo).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RemoteChanged {
    /// What changed.
    pub change: RemoteChange,
}

/// A subscriber's client fell behind and skipped updates: send it the current full value.
/// Answers whether the session is (still) subscribed.
#[derive(Message, Clone)]
#[rtype(result = "bool")]
pub struct ResyncSubscriber {
    /// The session's numeric id.
    pub session: u64,
}

/// The current value and version.
#[derive(Message, Clone)]
#[rtype(result = "Result<Option<Versioned>, Error>")]
pub struct GetSnapshot;

/// What a record actor does when it ends a subscription from its side (the record was deleted).
#[derive(Clone)]
pub enum OnEnd {
    /// Tells the session. Held weakly: the session lives by its socket, and a strong address
    /// (~110 bytes of sender state) in every subscription is a good part of what an idle
    /// connection costs.
    Notify(WeakRecipient<SubscriptionEnded>),
    /// Closes the subscription's queue after the deletion push, and also when the subscription
    /// goes away without one (its record actor stopped with its thread): a server-side
    /// subscription (`Records::subscribe_record`), which ends with its queue.
    CloseQueue,
}

/// Tells a session that a record actor ended its subscription (the record was deleted).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscriptionEnded {
    /// The record.
    pub record_id: RecordId,
    /// The token of the subscription that ended.
    pub token: u64,
}

/// Stop as soon as nothing is queued or in flight (the registry still has to agree): the
/// thread this actor runs on is about to stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RetireWhenIdle;

/// A record actor stopped; forget it unless a newer one replaced it already.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordActorStopped {
    /// The record.
    pub id: RecordId,
    /// The actor that stopped.
    pub addr: Addr<RecordActor>,
}

/// An idle record actor asks to stop. Granted (and the actor forgotten) only when it is the
/// current actor for its id and no lease on it is out.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct RetireRecordActor {
    /// The record.
    pub id: RecordId,
    /// The actor asking.
    pub addr: Addr<RecordActor>,
}
