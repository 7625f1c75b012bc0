//! [`RecordServerBuilder`]: from a [`Config`] plus what the embedding app adds (exposures,
//! commands, a store, authentication, persistence rules) to a started [`RecordServer`].

use super::{Inner, RecordServer};
use crate::access::{Exposure, ExposureTable};
use crate::actors::expiry::ExpirySweeper;
use crate::actors::persistence::PersistRoutes;
use crate::actors::record::RecordSettings;
use crate::actors::registry::RegistryActor;
use crate::auth::Authenticator;
use crate::collections::{CollectionExposure, CollectionTable, Collections, exposures_from_config};
use crate::commands::{CommandContext, CommandRequest, CommandResult, Commands};
use crate::config::{Config, StoreBackend};
use crate::connection::MetadataHook;
use crate::database::{PersistOptions, PersistRule};
use crate::error::{Error, Result};
use crate::records::Records;
use crate::session::{SessionSettings, Sessions, SessionsConfig};
use crate::store::{MemoryStore, SharedStore};
use actix::prelude::*;
use serde_json::Value;
use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

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
    collections: Vec<CollectionExposure>,
}

impl RecordServerBuilder {
    pub(super) fn new(config: Config) -> Self {
        RecordServerBuilder {
            config,
            exposures: Vec::new(),
            store: None,
            commands: Commands::default(),
            authenticator: None,
            metadata_hook: None,
            record_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            persist: Vec::new(),
            collections: Vec::new(),
        }
    }

    /// Adds an exposure after those from the config.
    pub fn expose(mut self, exposure: Exposure) -> Self {
        self.exposures.push(exposure);
        self
    }

    /// Exposes collections after those from the config (`[[collections.expose]]`).
    pub fn expose_collection(mut self, rule: CollectionExposure) -> Self {
        self.collections.push(rule);
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

    /// Threads (arbiters) for the record actors that server-side calls start (`Records`, the
    /// admin API), spread by id hash; default: one per core. A record actor that a client's
    /// request starts runs on that client's HTTP worker instead.
    pub fn record_threads(mut self, threads: usize) -> Self {
        self.record_threads = threads.max(1);
        self
    }

    /// Checks the whole configuration without opening anything (no store, no database, no
    /// socket, no key set fetched): `Config::validate`, the `[[collections.expose]]` and
    /// `[[records.persist]]` rules, the token key source unless the app authenticates itself.
    /// `start_with` runs it before binding, so a config error reads the same whether or not
    /// the port is free.
    ///
    /// Fails with [`Error::Config`] naming the key at fault.
    pub(super) async fn check_config(&self) -> Result<()> {
        self.config.validate()?;
        exposures_from_config(&self.config)?;
        for rule in &self.config.records.persist {
            PersistRule::try_from(rule)?;
        }
        if self.authenticator.is_none() {
            self.config.auth.check_key_source().await?;
        }
        Ok(())
    }

    /// Starts the actors. Call inside an actix system (for example in `#[actix_web::main]`).
    ///
    /// Fails with [`Error::Config`] on an invalid config or when the store cannot be reached.
    pub async fn build(self) -> Result<RecordServer> {
        self.check_config().await?;
        let mut exposures = self.config.exposures()?;
        exposures.extend(self.exposures);
        let frame = self.config.server.max_frame_bytes;
        for exposure in &mut exposures {
            // A value larger than a frame could never reach a client.
            if let Some(bytes) = &mut exposure.rules.max_value_bytes {
                *bytes = (*bytes).min(frame);
            }
        }
        let exposures = ExposureTable::new(exposures);
        // Sessions refuse larger values before parsing them: the largest any exposure allows.
        let session_value_limit = exposures
            .largest_value_limit()
            .map_or(self.config.server.value_limit(), |largest| {
                largest.max(self.config.server.value_limit())
            });
        let store = match self.store {
            Some(store) => store,
            None => store_from_config(&self.config).await?,
        };
        let s = &self.config.server;
        let arbiters: Vec<Arbiter> = (0..self.record_threads).map(|_| Arbiter::new()).collect();
        let handles = arbiters.iter().map(Arbiter::handle).collect();
        let sweeper_arbiter = arbiters.first().map(Arbiter::handle);
        let live_records = Arc::new(AtomicUsize::new(0));
        let persist = Arc::new(PersistRoutes::default());
        let mut persist_rules = Vec::new();
        for rule in &self.config.records.persist {
            let mut options = PersistOptions::from(rule);
            options.batching.max_buffered_records = self.config.persistence.max_buffered_records;
            persist_rules.push((PersistRule::try_from(rule)?, options));
        }
        persist_rules.extend(self.persist);
        let registry = RegistryActor::new(
            exposures,
            Arc::clone(&store),
            handles,
            RecordSettings::from_config(&self.config, Arc::clone(&persist)),
            Arc::clone(&live_records),
        );
        let directory = registry.directory();
        let mut table = CollectionTable::default();
        for rule in exposures_from_config(&self.config)?
            .into_iter()
            .chain(self.collections)
        {
            table.push(rule);
        }
        let collections = Collections::new(
            Arc::clone(&store),
            Arc::clone(&directory),
            table,
            (self.config.collections.max_members, s.max_frame_bytes),
        );
        if collections.any_exposed() {
            collections
                .start_feed()
                .await
                .map_err(|e| Error::Config(format!("store: following its change feed: {e}")))?;
        }
        let records = Records::new(
            (registry.start(), directory),
            Arc::clone(&store),
            s.max_record_id_bytes,
            live_records,
        );
        let authenticator = match self.authenticator {
            Some(authenticator) => authenticator,
            None => match self.config.auth.jwt_verifier().await? {
                Some(verifier) => Authenticator::with_jwt(verifier, self.config.auth.required),
                None => Authenticator::anonymous(),
            },
        };
        let sessions = Sessions::new(SessionsConfig {
            records: records.clone(),
            collections: collections.clone(),
            settings: SessionSettings {
                max_collection_subscribes_per_second: self
                    .config
                    .collections
                    .max_subscribes_per_second,
                max_value_bytes: session_value_limit,
                ..s.into()
            },
            commands: self.commands,
            metadata_hook: self.metadata_hook,
            authenticator,
            ws_path: s.ws_path.clone(),
            max_connections: s.max_connections,
            max_frame_bytes: s.max_frame_bytes,
            max_outbound_bytes: s.max_outbound_bytes,
            origins: self.config.origin_policy()?,
        });
        let server =
            RecordServer {
                inner: Arc::new(Inner {
                    records,
                    collections,
                    sessions,
                    store,
                    persist,
                    persistence_config: self.config.persistence.clone(),
                    default_adapter: tokio::sync::OnceCell::new(),
                    admin: self.config.admin.token.clone().map(|token| {
                        crate::admin::AdminSettings {
                            token,
                            max_body_bytes: self.config.admin.max_body_bytes,
                        }
                    }),
                    admin_apart: self.config.admin.bind.is_some(),
                    demo: s.demo,
                    arbiters: Mutex::new(arbiters),
                }),
            };
        let sweeper = ExpirySweeper::new(
            Arc::clone(&server.inner.store),
            Arc::clone(&server.inner.persist),
            self.config.records.expiry_sweep(),
        );
        // On a record arbiter, so that it stops with the server's own threads.
        match sweeper_arbiter {
            Some(arbiter) => {
                ExpirySweeper::start_in_arbiter(&arbiter, |_| sweeper);
            }
            None => {
                sweeper.start();
            }
        }
        // Restore runs before anything can connect: the HTTP server starts after `build`.
        for (rule, options) in persist_rules {
            server.enable_record_persistence(rule, options).await?;
        }
        Ok(server)
    }
}

/// The store the config names.
///
/// Fails with [`Error::Config`] when Redis cannot be reached, or is unsuitable (an evicting
/// `maxmemory-policy` without `[store] allow_evicting_policy`, a version before 7).
pub async fn store_from_config(config: &Config) -> Result<SharedStore> {
    let store = match config.store.backend {
        StoreBackend::Memory => {
            let limits = config.store.memory_limits();
            log::info!(
                "memory store: at most {} bytes of records",
                limits.max_bytes
            );
            return Ok(Arc::new(MemoryStore::with_limits(limits)));
        }
        StoreBackend::Redis => {
            crate::store::RedisStore::connect(&config.store.redis_url, &config.store.key_prefix)
                .await
                .inspect(|store| store.set_change_feed(config.store.change_feed))
        }
        StoreBackend::RedisCluster => crate::store::RedisStore::connect_cluster(
            &config.store.redis_url,
            &config.store.redis_cluster_urls,
            &config.store.key_prefix,
        )
        .await
        .inspect(|store| store.set_change_feed(config.store.change_feed)),
    }
    .map_err(|e| Error::Config(format!("store.redis_url: {e}")))?;
    store
        .check_suitable(config.store.allow_evicting_policy)
        .await
        .map_err(|e| Error::Config(format!("store: {e}")))?;
    Ok(Arc::new(store))
}
