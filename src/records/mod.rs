//! [`Records`]: the record API as server code sees it — command handlers, the admin API, an
//! embedding app. A thin handle on the registry: each call resolves the record's actor and
//! sends it one message, so server-side writes are serialized, versioned, pushed and
//! persisted exactly like a client's.
//!
//! It sits below sessions, commands, the admin API and the server: they hold a `Records`, and
//! nothing here knows about HTTP, sockets or the builder.

mod subscription;

pub use subscription::{RecordSubscription, SUBSCRIPTION_BUDGET};

use crate::access::Exposure;
use crate::actors::record::{
    ApplyWrite, DeleteRecord, GetHistory, GetSnapshot, UpdateRecord, WriteOutcome,
};
use crate::actors::registry::{Directory, RegistryActor, ReleaseWorkers};
use crate::actors::route::RecordRoute;
use crate::error::{Error, Result};
use crate::model::{Mode, RecordId, Strategy, Version, Versioned};
use crate::store::{SharedStore, StoreError};
use actix::Addr;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The server-side record API. Cheap to clone. No exposure or guard applies to its calls:
/// code that acts for a client (a custom command) checks what that client may touch.
#[derive(Clone)]
pub struct Records {
    route: RecordRoute,
    /// For expiry deadlines, which change no version and so need no record actor.
    store: SharedStore,
    max_record_id_bytes: usize,
    live_records: Arc<AtomicUsize>,
}

impl Records {
    pub(crate) fn new(
        (registry, directory): (Addr<RegistryActor>, Arc<Directory>),
        store: SharedStore,
        max_record_id_bytes: usize,
        live_records: Arc<AtomicUsize>,
    ) -> Self {
        Records {
            route: RecordRoute::new(registry, directory),
            store,
            max_record_id_bytes,
            live_records,
        }
    }

    /// The route to record actors, for the sessions (the same one these methods take).
    pub(crate) fn route(&self) -> &RecordRoute {
        &self.route
    }

    /// Longest record id accepted (`[server] max_record_id_bytes`).
    pub fn max_record_id_bytes(&self) -> usize {
        self.max_record_id_bytes
    }

    /// Sends `msg` to the record's actor, through the route (no access check: server code).
    async fn send<M>(&self, id: &RecordId, msg: M) -> Result<M::Result>
    where
        M: actix::Message + Clone + Send + 'static,
        M::Result: Send,
        crate::actors::record::RecordActor: actix::Handler<M>,
    {
        self.route.send(id, None, msg).await
    }

    fn record_id(&self, id: &str) -> Result<RecordId> {
        RecordId::parse(id, self.max_record_id_bytes)
    }

    /// Writes a record as the server.
    ///
    /// Returns the new version and whether anything changed; fails with
    /// [`Error::Unavailable`] when the store cannot be reached (nothing was written).
    pub async fn write_record(
        &self,
        id: &str,
        value: Value,
        strategy: Strategy,
    ) -> Result<WriteOutcome> {
        self.write(id, value, strategy, WriteAs::default()).await
    }

    /// Writes a record as the server without checking it against its exposure's JSON Schema:
    /// for data the server trusts (a migration, a value built by its own code) where a
    /// schema check would cost or refuse what must be stored. Everything else is as
    /// [`Records::write_record`].
    pub async fn write_record_unchecked(
        &self,
        id: &str,
        value: Value,
        strategy: Strategy,
    ) -> Result<WriteOutcome> {
        let unchecked = WriteAs {
            expected_version: None,
            skip_schema: true,
        };
        self.write(id, value, strategy, unchecked).await
    }

    /// Writes a record only if it is at `expected_version` (0: only if it does not exist);
    /// otherwise fails with [`Error::VersionMismatch`] carrying the current version, and
    /// nothing is written. Checked atomically with the write, also across instances.
    pub async fn write_record_if(
        &self,
        id: &str,
        value: Value,
        strategy: Strategy,
        expected_version: Version,
    ) -> Result<WriteOutcome> {
        let conditional = WriteAs {
            expected_version: Some(expected_version),
            skip_schema: false,
        };
        self.write(id, value, strategy, conditional).await
    }

    async fn write(
        &self,
        id: &str,
        value: Value,
        strategy: Strategy,
        how: WriteAs,
    ) -> Result<WriteOutcome> {
        if value.is_null() {
            return Err(Error::invalid("a record value must not be null"));
        }
        let id = self.record_id(id)?;
        let msg = ApplyWrite {
            value: Arc::new(value),
            strategy,
            expected_version: how.expected_version,
            writer: None,
            skip_schema: how.skip_schema,
        };
        self.send(&id, msg).await?
    }

    /// Changes a record with a function of its current value (`None` when it does not exist),
    /// atomically: the function runs inside the record's actor, so no other write lands in
    /// between, and runs again on the fresh value if another instance wrote first. Returning an
    /// error refuses the write. The result is versioned, pushed and persisted like any write.
    /// On success, the function's last run returned the value now at the outcome's version
    /// (to answer with it, keep it from inside the function, as `examples/counter.rs` does:
    /// reading the record afterwards may see a later write).
    ///
    /// ```no_run
    /// # async fn demo(records: mesh_records::Records) -> mesh_records::Result<()> {
    /// // An atomic counter.
    /// records
    ///     .update_record("counter:visits", |current| {
    ///         Ok(serde_json::json!(current.and_then(|v| v.as_i64()).unwrap_or(0) + 1))
    ///     })
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn update_record<F>(&self, id: &str, update: F) -> Result<WriteOutcome>
    where
        F: Fn(Option<&Value>) -> Result<Value> + Send + Sync + 'static,
    {
        let id = self.record_id(id)?;
        let msg = UpdateRecord {
            update: Arc::new(update),
            expected_version: None,
        };
        self.send(&id, msg).await?
    }

    /// The record's value and version, or `None` when absent.
    pub async fn get_record(&self, id: &str) -> Result<Option<Versioned>> {
        let id = self.record_id(id)?;
        self.send(&id, GetSnapshot).await?
    }

    /// Deletes a record; returns its last version, or `None` when it did not exist (no-op).
    pub async fn delete_record(&self, id: &str) -> Result<Option<Version>> {
        let id = self.record_id(id)?;
        let msg = DeleteRecord::default();
        self.send(&id, msg).await?
    }

    /// Deletes a record only if it exists at `version`; otherwise fails with
    /// [`Error::VersionMismatch`] (current version, 0 when absent) and nothing changes.
    pub async fn delete_record_if(&self, id: &str, version: Version) -> Result<Option<Version>> {
        let id = self.record_id(id)?;
        let msg = DeleteRecord {
            if_version: Some(version),
        };
        self.send(&id, msg).await?
    }

    /// The record's changes after version `since` as RFC 6902 patches, oldest first, with the
    /// current version; `None` when the history does not reach back to `since` (or the record
    /// does not exist).
    pub async fn record_history(
        &self,
        id: &str,
        since: Version,
    ) -> Result<Option<(Version, Vec<crate::store::Change>)>> {
        let id = self.record_id(id)?;
        self.send(&id, GetHistory { since }).await?
    }

    /// Subscribes server code to a record, as a WebSocket client would (no access check):
    /// the [`RecordSubscription`] gets the same push frames, in `mode`, through the same route
    /// and record actor (see there). Call it on the server's runtime (a handler, a command, an
    /// actor).
    pub async fn subscribe_record(&self, id: &str, mode: Mode) -> Result<RecordSubscription> {
        let id = self.record_id(id)?;
        RecordSubscription::start(self.route.clone(), id, mode).await
    }

    /// Gives the record a deadline `ttl` from now (`None`: takes its deadline away): past it,
    /// it is deleted as by [`Records::delete_record`] (subscribers get `mesh/record-deleted`,
    /// its persisted row goes), within about a second (`[records] expiry_sweep_ms`). A later
    /// write through an exposure with `ttl_seconds` moves the deadline; other writes leave it.
    /// Changes no version and pushes nothing. Answers `false` when the record does not exist.
    pub async fn expire_record(&self, id: &str, ttl: Option<Duration>) -> Result<bool> {
        let id = self.record_id(id)?;
        self.store.set_expiry(&id, ttl).await.map_err(|e| match e {
            StoreError::Indeterminate(_) => Error::Unknown,
            _ => Error::Unavailable,
        })
    }

    /// Adds an exposure at runtime, after all existing ones.
    pub fn expose(&self, exposure: Exposure) {
        self.route.expose(exposure);
    }

    /// Moves record actors off the HTTP workers before they stop (see `ReleaseWorkers`):
    /// waits up to `within` for those living there to finish what they are doing and retire.
    /// Returns how many were still there at the deadline.
    pub(crate) async fn release_workers(&self, within: Duration) -> usize {
        let Ok(leaving) = self.route.registry().send(ReleaseWorkers).await else {
            return 0;
        };
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let staying = leaving.iter().filter(|addr| addr.connected()).count();
            if staying == 0 || tokio::time::Instant::now() >= deadline {
                return staying;
            }
            // Shutdown only: a short poll is simpler than a stop signal from every actor.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// How many `RecordActor`s are alive.
    pub fn live_record_actors(&self) -> usize {
        self.live_records.load(Ordering::Relaxed)
    }
}

/// How the server's write goes: on a condition, or around the schema.
#[derive(Default)]
struct WriteAs {
    expected_version: Option<Version>,
    skip_schema: bool,
}
