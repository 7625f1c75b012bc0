//! Wiring: the `RecordServer` handle (library API), its builder, the actix-web routes, and
//! starting/stopping a whole HTTP server for the binary and the tests.

use crate::access::Exposure;
use crate::actors::record::{ApplyWrite, DeleteRecord, GetHistory, GetSnapshot, WriteOutcome};
use crate::actors::registry::{AddExposure, RegistryActor, send_to_record};
use crate::actors::session::{SessionActor, SessionServices, SessionSettings};
use crate::auth::{AuthRejection, Authenticator, UpgradeRequest};
use crate::commands::{CommandContext, CommandRequest, CommandResult, Commands};
use crate::config::{Config, StoreBackend};
use crate::connection::{Connection, ConnectionIds};
use crate::error::{Error, Result};
use crate::outbox::Outbox;
use crate::persistence::{
    PersistOptions, PersistRoutes, PersistRule, RestoreReport, SharedAdapter, adapter_from_config,
    restore,
};
use crate::record::{RecordId, Strategy, Version, Versioned};
use crate::socket::ConnectionSocket;
use crate::store::{MemoryStore, SharedStore};
use actix::prelude::*;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

type HookFuture = Pin<Box<dyn Future<Output = Result<Value>> + Send>>;

/// Decides whether a client may change its own metadata, and to what.
#[derive(Clone)]
pub struct MetadataHook(Arc<dyn Fn(Connection, Value) -> HookFuture + Send + Sync>);

impl MetadataHook {
    /// A hook from an async function (connection, proposed metadata) → metadata to set.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn(Connection, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value>> + Send + 'static,
    {
        MetadataHook(Arc::new(move |conn, value| Box::pin(f(conn, value))))
    }

    pub(crate) fn check(&self, conn: Connection, value: Value) -> HookFuture {
        (self.0)(conn, value)
    }
}

/// Rows read from the database per page when restoring.
const RESTORE_PAGE: usize = 1000;

struct Inner {
    registry: Addr<RegistryActor>,
    store: SharedStore,
    persist: Arc<PersistRoutes>,
    persistence_config: crate::config::PersistenceConfig,
    default_adapter: tokio::sync::OnceCell<SharedAdapter>,
    session_settings: Arc<SessionSettings>,
    ws_path: String,
    max_frame_bytes: usize,
    max_outbound_bytes: usize,
    max_connections: usize,
    commands: Arc<Commands>,
    authenticator: Authenticator,
    metadata_hook: Option<MetadataHook>,
    admin_token: Option<String>,
    demo: bool,
    live_records: Arc<AtomicUsize>,
    connections: AtomicUsize,
    ids: ConnectionIds,
    shutdown: watch::Sender<bool>,
    arbiters: Mutex<Vec<Arbiter>>,
}

/// The records server as a library handle: server-side record API plus the actix-web routes.
/// Cheap to clone.
#[derive(Clone)]
pub struct RecordServer {
    inner: Arc<Inner>,
}

/// Builds a [`RecordServer`]; see [`RecordServer::builder`].
pub struct RecordServerBuilder {
    config: Config,
    exposures: Vec<Exposure>,
    store: Option<SharedStore>,
    commands: Commands,
    authenticator: Option<Authenticator>,
    metadata_hook: Option<MetadataHook>,
    record_threads: usize,
    persist: Vec<(PersistRule, PersistOptions)>,
}

impl RecordServerBuilder {
    /// Adds an exposure after those from the config.
    pub fn expose(mut self, exposure: Exposure) -> Self {
        self.exposures.push(exposure);
        self
    }

    /// Uses this store instead of the one the config names.
    pub fn store(mut self, store: SharedStore) -> Self {
        self.store = Some(store);
        self
    }

    /// Registers a custom command served by an async function.
    pub fn command<F, Fut>(mut self, name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(CommandContext, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CommandResult> + Send + 'static,
    {
        self.commands.register(name, handler);
        self
    }

    /// Registers a custom command served by a user actor (one `M` message per request).
    pub fn actor_command<A, M>(mut self, name: impl Into<String>, addr: Addr<A>) -> Self
    where
        A: Actor + Handler<M>,
        A::Context: actix::dev::ToEnvelope<A, M>,
        M: Message<Result = CommandResult> + From<CommandRequest> + Send + 'static,
    {
        self.commands.actor::<A, M>(name, addr);
        self
    }

    /// Replaces the config's authentication (JWT or anonymous) with the app's own.
    pub fn authenticate(mut self, authenticator: Authenticator) -> Self {
        self.authenticator = Some(authenticator);
        self
    }

    /// Lets clients change their metadata through this hook (refused without one).
    pub fn on_set_metadata(mut self, hook: MetadataHook) -> Self {
        self.metadata_hook = Some(hook);
        self
    }

    /// Persists writes matching the rule and restores its rows before the server starts
    /// (after the config's `[[records.persist]]` rules).
    pub fn persist(mut self, rule: PersistRule, options: PersistOptions) -> Self {
        self.persist.push((rule, options));
        self
    }

    /// Threads (arbiters) record actors are spread over; default: one per core.
    pub fn record_threads(mut self, threads: usize) -> Self {
        self.record_threads = threads.max(1);
        self
    }

    /// Starts the actors. Call inside an actix system (for example in `#[actix_web::main]`).
    ///
    /// Fails with [`Error::Config`] on an invalid config or when the store cannot be reached.
    pub async fn build(self) -> Result<RecordServer> {
        self.config.validate()?;
        let mut exposures = self.config.exposures()?;
        exposures.extend(self.exposures);
        let store = match self.store {
            Some(store) => store,
            None => store_from_config(&self.config).await?,
        };
        let s = &self.config.server;
        let arbiters: Vec<Arbiter> = (0..self.record_threads).map(|_| Arbiter::new()).collect();
        let handles = arbiters.iter().map(Arbiter::handle).collect();
        let live_records = Arc::new(AtomicUsize::new(0));
        let persist = Arc::new(PersistRoutes::default());
        let mut persist_rules = Vec::new();
        for rule in &self.config.records.persist {
            let mut options = PersistOptions::from_config(rule);
            options.batching.max_buffered_records = self.config.persistence.max_buffered_records;
            persist_rules.push((PersistRule::from_config(rule)?, options));
        }
        persist_rules.extend(self.persist);
        let registry = RegistryActor::new(
            crate::access::ExposureTable::new(exposures),
            Arc::clone(&store),
            handles,
            crate::actors::record::RecordSettings {
                persist: Arc::clone(&persist),
                linger: s.record_linger(),
                max_value_bytes: s.max_value_bytes,
                max_write_batch: s.max_write_batch,
                max_write_batch_bytes: s.max_write_batch_bytes,
                max_pending_writes: s.max_pending_writes,
                history: self.config.records.history(),
            },
            Arc::clone(&live_records),
        )
        .start();
        let authenticator =
            self.authenticator
                .unwrap_or_else(|| match self.config.auth.jwt_verifier() {
                    Some(verifier) => Authenticator::with_jwt(verifier, self.config.auth.required),
                    None => Authenticator::anonymous(),
                });
        let server = RecordServer {
            inner: Arc::new(Inner {
                registry,
                store,
                persist,
                persistence_config: self.config.persistence.clone(),
                default_adapter: tokio::sync::OnceCell::new(),
                session_settings: Arc::new(SessionSettings {
                    ping_interval: s.ping_interval(),
                    max_missed_pongs: s.max_missed_pongs,
                    max_record_id_bytes: s.max_record_id_bytes,
                    max_value_bytes: s.max_value_bytes,
                    max_subscriptions: s.max_subscriptions_per_connection,
                    max_requests_per_second: s.max_requests_per_second,
                    slow_consumer_timeout: std::time::Duration::from_millis(
                        s.slow_consumer_timeout_ms,
                    ),
                    max_in_flight_requests: s.max_in_flight_requests,
                }),
                max_connections: s.max_connections,
                ws_path: s.ws_path.clone(),
                max_frame_bytes: s.max_frame_bytes,
                max_outbound_bytes: s.max_outbound_bytes,
                commands: Arc::new(self.commands),
                authenticator,
                metadata_hook: self.metadata_hook,
                admin_token: self.config.admin.token.clone(),
                demo: s.demo,
                live_records,
                connections: AtomicUsize::new(0),
                ids: ConnectionIds::default(),
                shutdown: watch::channel(false).0,
                arbiters: Mutex::new(arbiters),
            }),
        };
        // Restore runs before anything can connect: the HTTP server starts after `build`.
        for (rule, options) in persist_rules {
            server.enable_record_persistence(rule, options).await?;
        }
        Ok(server)
    }
}

/// The store the config names.
pub async fn store_from_config(config: &Config) -> Result<SharedStore> {
    match config.store.backend {
        StoreBackend::Memory => Ok(Arc::new(MemoryStore::new())),
        StoreBackend::Redis => {
            let store = crate::store::RedisStore::connect(
                &config.store.redis_url,
                &config.store.key_prefix,
            )
            .await
            .map_err(|e| Error::Config(format!("store.redis_url: {e}")))?;
            Ok(Arc::new(store))
        }
        StoreBackend::RedisCluster => Ok(Arc::new(
            crate::store::RedisStore::connect_cluster(
                &config.store.redis_url,
                &config.store.redis_cluster_urls,
                &config.store.key_prefix,
            )
            .await
            .map_err(|e| Error::Config(format!("store.redis_url: {e}")))?,
        )),
    }
}

impl RecordServer {
    /// A builder starting from `config` (its exposures, auth, admin and limits).
    pub fn builder(config: Config) -> RecordServerBuilder {
        RecordServerBuilder {
            config,
            exposures: Vec::new(),
            store: None,
            commands: Commands::default(),
            authenticator: None,
            metadata_hook: None,
            record_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            persist: Vec::new(),
        }
    }

    /// Persists writes to records matching `rule.write` from now on, after loading the rows
    /// matching `rule.restore_pattern` into the store (only where the store has nothing newer).
    ///
    /// Fails with [`Error::Config`] when the database cannot be opened, or
    /// [`Error::Unavailable`] when the restore could not read it or write the store.
    pub async fn enable_record_persistence(
        &self,
        rule: PersistRule,
        options: PersistOptions,
    ) -> Result<RestoreReport> {
        let adapter = match options.adapter {
            Some(adapter) => adapter,
            None => self
                .inner
                .default_adapter
                .get_or_try_init(|| adapter_from_config(&self.inner.persistence_config))
                .await?
                .clone(),
        };
        let report = restore(
            adapter.as_ref(),
            self.inner.store.as_ref(),
            &rule.restore_pattern,
            RESTORE_PAGE,
        )
        .await
        .map_err(|e| {
            log::error!("restoring {:?} failed: {e}", rule.restore_pattern);
            Error::Unavailable
        })?;
        // `restore` logs how many rows and how long.
        let handle =
            crate::actors::persistence::PersistenceActor::new(adapter, options.batching).spawn();
        self.inner.persist.add(rule.write, handle);
        Ok(report)
    }

    /// Flushes every persistence buffer to its database and stops the persistence actors;
    /// call once at process stop, after the sessions have closed. Waits as long as the final
    /// flushes take (each gives up after a few failed retries); see [`RecordServer::close_within`].
    pub async fn close(&self) {
        self.close_within(Duration::MAX).await;
    }

    /// Like [`RecordServer::close`], but gives up after `limit` (a database that does not
    /// answer): the actors still flushing are stopped, and what they held is logged as lost.
    /// Returns how many persisted records were not written.
    pub async fn close_within(&self, limit: Duration) -> usize {
        use crate::actors::persistence::{Abandon, Shutdown};
        let named = self.inner.persist.named_actors();
        let handles: Vec<_> = named.iter().map(|(_, handle)| handle.clone()).collect();
        let flushes =
            futures_util::future::join_all(named.iter().map(|(rule, handle)| async move {
                match handle.addr.send(Shutdown).await {
                    Ok(Ok(0)) => {
                        log::info!("final persistence flush ({rule}): nothing left to write")
                    }
                    Ok(Ok(1)) => log::info!("final persistence flush ({rule}): 1 record written"),
                    Ok(Ok(n)) => {
                        log::info!("final persistence flush ({rule}): {n} records written")
                    }
                    Ok(Err(e)) => log::error!("final persistence flush ({rule}) failed: {e}"),
                    Err(_) => {}
                }
            }));
        if tokio::time::timeout(limit, flushes).await.is_err() {
            log::error!("the final persistence flush did not finish within {limit:?}");
        }
        let mut lost = 0;
        for handle in &handles {
            // An actor still running is abandoned; one that stopped left its loss behind.
            lost += match handle.addr.send(Abandon).await {
                Ok(lost) => lost,
                Err(_) => handle.held(),
            };
        }
        if lost > 0 {
            log::error!("{lost} persisted records were not written to the database");
        }
        lost
    }

    fn record_id(&self, id: &str) -> Result<RecordId> {
        RecordId::parse(id, self.inner.session_settings.max_record_id_bytes)
    }

    /// Writes a record as the server (no exposure or guard applies).
    ///
    /// Returns the new version and whether anything changed; fails with
    /// [`Error::Unavailable`] when the store cannot be reached (nothing was written).
    pub async fn write_record(
        &self,
        id: &str,
        value: Value,
        strategy: Strategy,
    ) -> Result<WriteOutcome> {
        self.write(id, value, strategy, None).await
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
        self.write(id, value, strategy, Some(expected_version))
            .await
    }

    async fn write(
        &self,
        id: &str,
        value: Value,
        strategy: Strategy,
        expected_version: Option<Version>,
    ) -> Result<WriteOutcome> {
        if value.is_null() {
            return Err(Error::invalid("a record value must not be null"));
        }
        let id = self.record_id(id)?;
        let msg = ApplyWrite {
            value: Arc::new(value),
            strategy,
            expected_version,
        };
        send_to_record(&self.inner.registry, &id, None, msg).await?
    }

    /// Changes a record with a function of its current value (`None` when it does not exist),
    /// atomically: the function runs inside the record's actor, so no other write lands in
    /// between, and runs again on the fresh value if another instance wrote first. Returning an
    /// error refuses the write. The result is versioned, pushed and persisted like any write.
    ///
    /// ```no_run
    /// # async fn demo(records: mesh_records::RecordServer) -> mesh_records::Result<()> {
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
        let msg = crate::actors::record::UpdateRecord {
            update: Arc::new(update),
            expected_version: None,
        };
        send_to_record(&self.inner.registry, &id, None, msg).await?
    }

    /// The record's value and version, or `None` when absent.
    pub async fn get_record(&self, id: &str) -> Result<Option<Versioned>> {
        let id = self.record_id(id)?;
        send_to_record(&self.inner.registry, &id, None, GetSnapshot).await?
    }

    /// Deletes a record; returns its last version, or `None` when it did not exist (no-op).
    pub async fn delete_record(&self, id: &str) -> Result<Option<Version>> {
        let id = self.record_id(id)?;
        let msg = DeleteRecord::default();
        send_to_record(&self.inner.registry, &id, None, msg).await?
    }

    /// Deletes a record only if it exists at `version`; otherwise fails with
    /// [`Error::VersionMismatch`] (current version, 0 when absent) and nothing changes.
    pub async fn delete_record_if(&self, id: &str, version: Version) -> Result<Option<Version>> {
        let id = self.record_id(id)?;
        let msg = DeleteRecord {
            if_version: Some(version),
        };
        send_to_record(&self.inner.registry, &id, None, msg).await?
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
        send_to_record(&self.inner.registry, &id, None, GetHistory { since }).await?
    }

    /// Adds an exposure at runtime, after all existing ones.
    pub fn expose(&self, exposure: Exposure) {
        self.inner.registry.do_send(AddExposure { exposure });
    }

    /// How many `RecordActor`s are alive.
    pub fn live_record_actors(&self) -> usize {
        self.inner.live_records.load(Ordering::Relaxed)
    }

    /// How many WebSocket sessions are open.
    pub fn connection_count(&self) -> usize {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// Takes a place under `max_connections` for a new connection, if one is free.
    pub(crate) fn try_acquire_slot(&self) -> Option<ConnectionSlot> {
        // Counted first, so concurrent upgrades cannot exceed the limit.
        if self.inner.connections.fetch_add(1, Ordering::AcqRel) >= self.inner.max_connections {
            self.inner.connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        crate::metrics::metrics().connections.inc();
        Some(ConnectionSlot {
            server: self.clone(),
        })
    }

    pub(crate) fn ws_path(&self) -> &str {
        &self.inner.ws_path
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    pub(crate) fn authenticator(&self) -> &Authenticator {
        &self.inner.authenticator
    }

    pub(crate) fn max_frame_bytes(&self) -> usize {
        self.inner.max_frame_bytes
    }

    pub(crate) fn max_outbound_bytes(&self) -> usize {
        self.inner.max_outbound_bytes
    }

    /// Mounts the WebSocket route, `GET /health` and, when an admin token is set, the admin
    /// API. Use as `App::new().configure(|cfg| records.configure(cfg))`.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        let server = self.clone();
        cfg.route(
            &self.inner.ws_path,
            web::get().to(move |req: HttpRequest, body: web::Payload| {
                let server = server.clone();
                async move { server.upgrade(req, body).await }
            }),
        );
        cfg.route(
            "/health",
            web::get().to(|| async { HttpResponse::Ok().body("ok") }),
        );
        cfg.route(
            "/metrics",
            web::get().to(|| async {
                HttpResponse::Ok()
                    .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
                    .body(crate::metrics::metrics().render())
            }),
        );
        if let Some(token) = &self.inner.admin_token {
            crate::admin::configure(cfg, self.clone(), token.clone());
        }
        if self.inner.demo {
            crate::demo::configure(cfg);
            // A first visit to the bare address lands on the demo rather than a 404.
            cfg.route(
                "/",
                web::get().to(|| async {
                    HttpResponse::Found()
                        .insert_header(("location", "/demo/"))
                        .finish()
                }),
            );
        }
    }

    /// Upgrades one request to a WebSocket session through actix-ws: the path of an app that
    /// mounts [`RecordServer::configure`] in its own actix-web server. [`start`] serves the
    /// upgrade itself instead (`crate::ws`), with far less memory per connection.
    async fn upgrade(
        &self,
        req: HttpRequest,
        body: web::Payload,
    ) -> actix_web::Result<HttpResponse> {
        if self.is_shutting_down() {
            return Ok(HttpResponse::ServiceUnavailable().body("shutting down"));
        }
        let request = UpgradeRequest::new(req.head());
        let grant = match self.inner.authenticator.authenticate(&request).await {
            Ok(grant) => grant,
            Err(AuthRejection(why)) => {
                return Ok(HttpResponse::Unauthorized().json(json!({ "error": why })));
            }
        };
        let Some(slot) = self.try_acquire_slot() else {
            let body = json!({ "error": "too many connections" });
            return Ok(HttpResponse::ServiceUnavailable().json(body));
        };
        let (response, session, stream) = actix_ws::handle(&req, body)?;
        let max = self.inner.max_frame_bytes;
        let stream = stream
            .max_frame_size(max)
            .aggregate_continuations()
            .max_continuation_size(max);
        // actix-ws's `Session` (a writer task per connection feeding a 32-frame channel) is
        // not used: the body drains the outbox itself, one wake and one write per burst.
        drop(session);
        let (outbox, receiver) = Outbox::new(self.inner.max_outbound_bytes);
        let response = response
            .map_body(|_, upgrade_body| receiver.into_body(upgrade_body, slot))
            .map_into_boxed_body();
        let socket = req.conn_data::<ConnectionSocket>().copied();
        self.start_session(grant, outbox, stream, socket);
        Ok(response)
    }

    /// Starts the session actor of an upgraded connection, reading client frames from
    /// `frames` (gated by `max_in_flight_requests`) and answering through `outbox`.
    pub(crate) fn start_session<S>(
        &self,
        grant: crate::auth::Grant,
        outbox: Outbox,
        frames: S,
        socket: Option<ConnectionSocket>,
    ) where
        S: futures_util::Stream<
                Item = Result<actix_ws::AggregatedMessage, actix_ws::ProtocolError>,
            > + Unpin
            + 'static,
    {
        let (number, id) = self.inner.ids.next();
        let services = SessionServices {
            registry: self.inner.registry.clone(),
            settings: Arc::clone(&self.inner.session_settings),
            commands: Arc::clone(&self.inner.commands),
            metadata_hook: self.inner.metadata_hook.clone(),
            records: self.clone(),
            shutdown: self.inner.shutdown.subscribe(),
            authenticator: self.inner.authenticator.clone(),
        };
        let token = crate::auth::SessionToken::new(&grant);
        let connection = Connection::new(id, grant.metadata);
        let max_in_flight = self.inner.session_settings.max_in_flight_requests;
        SessionActor::create(|ctx| {
            ctx.add_stream(crate::inflight::Gated::new(frames, max_in_flight));
            SessionActor::new(number, connection, outbox, services, socket).with_token(token)
        });
    }

    /// Closes every session with "going away" and refuses new ones; waits up to `grace` for
    /// them to finish.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        let _ = self.inner.shutdown.send(true);
        let deadline = std::time::Instant::now() + grace;
        while self.connection_count() > 0 && std::time::Instant::now() < deadline {
            actix::clock::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    fn stop_arbiters(&self) {
        let arbiters = std::mem::take(
            &mut *self
                .inner
                .arbiters
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for arbiter in arbiters {
            arbiter.stop();
        }
    }
}

/// One connection's place under `max_connections`, given back when dropped (when the
/// connection's socket is closed, not when its session ends: a closing connection still holds
/// a descriptor). Also the `connections` gauge.
pub(crate) struct ConnectionSlot {
    server: RecordServer,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.server.inner.connections.fetch_sub(1, Ordering::AcqRel);
        crate::metrics::metrics().connections.dec();
    }
}

/// A running HTTP server with its records server.
pub struct RunningServer {
    /// The library handle.
    pub records: RecordServer,
    /// Where it listens.
    pub addr: SocketAddr,
    http: actix_web::dev::ServerHandle,
    task: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
    /// `[server] shutdown_timeout_ms`: the whole of `stop` fits in it.
    shutdown_timeout: Duration,
}

/// What a stop left undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopReport {
    /// Persisted records that were not written to the database (it did not answer in time).
    pub unpersisted: usize,
}

impl RunningServer {
    /// Closes sessions, stops the HTTP server, flushes persistence and stops the record
    /// threads, within `[server] shutdown_timeout_ms` even when a database hangs.
    pub async fn stop(self) -> StopReport {
        let deadline = Instant::now() + self.shutdown_timeout;
        // Sessions and HTTP get a short share; the final flush gets the rest.
        let grace = (self.shutdown_timeout / 5).min(Duration::from_secs(2));
        self.records.shutdown(grace).await;
        let http = self.http;
        let task = self.task;
        let stopped = async move {
            http.stop(true).await;
            let _ = task.await;
        };
        if tokio::time::timeout(left(deadline), stopped).await.is_err() {
            log::warn!("the HTTP server did not stop in time");
        }
        let unpersisted = self.records.close_within(left(deadline)).await;
        self.records.stop_arbiters();
        StopReport { unpersisted }
    }
}

/// Time until `deadline`, zero once passed.
fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// actix-web's graceful stop timeout (whole seconds): a fifth of the stop budget, 1–2 s.
fn http_shutdown_secs(budget: Duration) -> u64 {
    (budget.as_secs() / 5).clamp(1, 2)
}

/// Builds the records server from `config` and serves it over HTTP.
///
/// Fails when the config is invalid, the store is unreachable or the address cannot be bound.
pub async fn start(config: Config) -> Result<RunningServer> {
    let builder = RecordServer::builder(config.clone());
    start_with(config, builder).await
}

/// Like [`start`], with a builder the caller extended (exposures, commands, store).
///
/// The listener is bound first: a second instance started on a taken port fails at once,
/// before it opens a database, restores records or starts any actor.
pub async fn start_with(config: Config, builder: RecordServerBuilder) -> Result<RunningServer> {
    let s = &config.server;
    let listener = std::net::TcpListener::bind((s.host.as_str(), s.port)).map_err(|e| {
        Error::Config(format!(
            "server.host/server.port: cannot bind {}:{}: {e}",
            s.host, s.port
        ))
    })?;
    let records = builder.build().await?;
    let workers = match s.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let shutdown_secs = http_shutdown_secs(s.shutdown_timeout());
    let (addr, server) =
        crate::ws::serve::http_server(records.clone(), listener, workers, shutdown_secs)?;
    let handle = server.handle();
    let task = actix_web::rt::spawn(server);
    Ok(RunningServer {
        records,
        addr,
        http: handle,
        task,
        shutdown_timeout: s.shutdown_timeout(),
    })
}

/// Runs until SIGINT or SIGTERM, then stops gracefully within `[server] shutdown_timeout_ms`.
///
/// Fails when the server cannot start; the report says what the stop left unwritten.
pub async fn run(config: Config) -> Result<StopReport> {
    let running = start(config).await?;
    let addr = running.addr;
    log::info!("mesh-records listening on {addr}");
    // Where a newcomer goes next, with the real bound address.
    log::info!(
        "WebSocket endpoint: ws://{addr}{}",
        running.records.ws_path()
    );
    if running.records.inner.demo {
        log::info!("demo page: http://{addr}/demo/ (open it in two tabs)");
    }
    wait_for_signal().await;
    log::info!("stopping");
    Ok(running.stop().await)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
