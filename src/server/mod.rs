//! Wiring: the [`RecordServer`] an app embeds — the record API ([`Records`], which it
//! dereferences to), persistence rules, the actix-web routes — and starting and stopping a
//! whole HTTP server for the binary and the tests.
//!
//! - `builder`: config and app extensions → a started `RecordServer`;
//! - `http`: the routes (`configure`), the actix-ws upgrade for apps with their own
//!   `HttpServer`, and the lean HTTP server of [`start`];
//! - `run`: [`start`], [`run`], and the bounded stop.
//!
//! Nothing below this module imports it: sessions, commands and the admin API hold a
//! [`Records`], the WebSocket path a `session::Sessions`.

mod builder;
mod http;
mod run;

pub use builder::{RecordServerBuilder, store_from_config};
pub use run::{RunningServer, StopReport, run, start, start_with};

use crate::actors::persistence::{Abandon, PersistRoutes, PersistenceActor, Shutdown};
use crate::database::{
    PersistOptions, PersistRule, RestoreReport, SharedAdapter, adapter_from_config, restore,
};
use crate::error::{Error, Result};
use crate::records::Records;
use crate::session::Sessions;
use crate::store::SharedStore;
use actix::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Rows read from the database per page when restoring.
const RESTORE_PAGE: usize = 1000;

struct Inner {
    records: Records,
    collections: crate::collections::Collections,
    sessions: Sessions,
    store: SharedStore,
    persist: Arc<PersistRoutes>,
    persistence_config: crate::config::PersistenceConfig,
    default_adapter: tokio::sync::OnceCell<SharedAdapter>,
    /// The admin API's settings when `[admin] token` is set.
    admin: Option<crate::admin::AdminSettings>,
    /// `[admin] bind` is set: the admin API is served on its own listener, not in `configure`.
    admin_apart: bool,
    demo: bool,
    arbiters: Mutex<Vec<Arbiter>>,
}

/// The records server as a library handle: the record API (it dereferences to [`Records`]),
/// persistence, the actix-web routes, and the stop. Cheap to clone.
#[derive(Clone)]
pub struct RecordServer {
    inner: Arc<Inner>,
}

/// `server.write_record(..)` and the rest of the record API work on the server handle itself;
/// [`RecordServer::records`] gives the handle alone, for code that needs nothing else.
impl std::ops::Deref for RecordServer {
    type Target = Records;

    fn deref(&self) -> &Records {
        &self.inner.records
    }
}

impl RecordServer {
    /// A builder starting from `config` (its exposures, auth, admin and limits).
    pub fn builder(config: crate::config::Config) -> RecordServerBuilder {
        RecordServerBuilder::new(config)
    }

    /// The record API alone, for command handlers, actors and tasks of the app.
    pub fn records(&self) -> &Records {
        &self.inner.records
    }

    /// The server's collections.
    pub fn collections(&self) -> &crate::collections::Collections {
        &self.inner.collections
    }

    /// Exposes collections at runtime, after the existing rules.
    ///
    /// Fails with [`Error::Unavailable`] when the store's change feed cannot be followed
    /// (the rule is added anyway; collections then miss changes until it can).
    pub async fn expose_collection(
        &self,
        rule: crate::collections::CollectionExposure,
    ) -> Result<()> {
        self.inner.collections.expose(rule);
        self.inner
            .collections
            .start_feed()
            .await
            .map_err(|_| Error::Unavailable)
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
        let handle = PersistenceActor::new(adapter, options.batching).spawn();
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

    /// How many WebSocket connections are open.
    pub fn connection_count(&self) -> usize {
        self.inner.sessions.count()
    }

    /// Closes every session with "going away" and refuses new ones; waits up to `grace` for
    /// their connections to be gone, then up to `grace` again for the record actors living on
    /// the HTTP workers to finish their work and retire (actors started from now on run on
    /// the record threads). Call it before stopping the HTTP server: a worker's actors die with
    /// it.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.sessions.shutdown(grace).await;
        let staying = self.inner.records.release_workers(grace).await;
        if staying > 0 {
            log::warn!("{staying} record actors were still busy when the HTTP workers stopped");
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
