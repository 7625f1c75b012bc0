//! Which records are persisted, where, and how they come back at startup.

use super::{
    PersistenceError, PostgresAdapter, PostgresConfig, PostgresOptions, SharedAdapter,
    SqliteAdapter,
};
use crate::access::Matcher;
use crate::actors::persistence::{PersistenceActor, PersistenceHandle, PersistenceOptions};
use crate::config::{PersistConfig, PersistenceBackend, PersistenceConfig};
use crate::error::{Error, Result};
use actix::Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A persistence rule: writes to records matching `write` are persisted; rows matching the
/// SQL `LIKE` pattern `restore_pattern` are loaded into the store when the rule is enabled.
#[derive(Clone, Debug)]
pub struct PersistRule {
    /// Which records' writes go to the database (regex, or exact id — never a prefix).
    pub write: Matcher,
    /// Which rows are restored, as a raw SQL `LIKE` pattern (escape character `\`).
    pub restore_pattern: String,
}

impl PersistRule {
    /// Persists writes to ids the regex matches. Fails with [`Error::Config`] on a bad regex.
    pub fn pattern(write_pattern: &str, restore_pattern: impl Into<String>) -> Result<Self> {
        let re = regex::Regex::new(write_pattern)
            .map_err(|e| Error::Config(format!("invalid regex {write_pattern:?}: {e}")))?;
        Ok(PersistRule {
            write: Matcher::Pattern(re),
            restore_pattern: restore_pattern.into(),
        })
    }

    /// Persists writes to exactly this id.
    pub fn id(write_id: impl Into<String>, restore_pattern: impl Into<String>) -> Self {
        PersistRule {
            write: Matcher::Exact(write_id.into()),
            restore_pattern: restore_pattern.into(),
        }
    }

    /// The rule a `[[records.persist]]` entry describes (validated by `Config::validate`).
    pub fn from_config(rule: &PersistConfig) -> Result<Self> {
        match (&rule.write_pattern, &rule.write_id) {
            (Some(pattern), None) => Self::pattern(pattern, rule.restore_pattern.clone()),
            (None, Some(id)) => Ok(Self::id(id.clone(), rule.restore_pattern.clone())),
            _ => Err(Error::Config(format!(
                "records.persist (restore_pattern {:?}): give exactly one of write_pattern and \
                 write_id",
                rule.restore_pattern
            ))),
        }
    }
}

/// How a rule batches (see [`PersistenceOptions`] for the retry settings), and which database
/// it uses.
#[derive(Clone, Default)]
pub struct PersistOptions {
    /// Batching and retries.
    pub batching: PersistenceOptions,
    /// The database; `None` uses the server's (`[persistence]`).
    pub adapter: Option<SharedAdapter>,
}

impl PersistOptions {
    /// The options of a `[[records.persist]]` entry.
    pub fn from_config(rule: &PersistConfig) -> Self {
        PersistOptions {
            batching: PersistenceOptions {
                flush_interval: Duration::from_millis(rule.flush_interval_ms),
                max_buffer_size: rule.max_buffer_size,
                ..PersistenceOptions::default()
            },
            adapter: None,
        }
    }
}

/// The live rules: record id → the `PersistenceActor` its writes go to. Record actors look
/// their route up once and again only when `generation` changes.
#[derive(Default)]
pub struct PersistRoutes {
    routes: RwLock<Vec<(Matcher, PersistenceHandle)>>,
    generation: AtomicU64,
}

impl PersistRoutes {
    /// Adds a route after the existing ones (the first matching rule wins).
    pub fn add(&self, write: Matcher, handle: PersistenceHandle) {
        self.routes
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push((write, handle));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Changes whenever a route is added.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The actor persisting `id`, if a rule covers it.
    pub fn route(&self, id: &str) -> Option<Addr<PersistenceActor>> {
        self.handle(id).map(|handle| handle.addr)
    }

    /// The actor persisting `id` with its buffer counter, if a rule covers it.
    pub fn handle(&self, id: &str) -> Option<PersistenceHandle> {
        let routes = self
            .routes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        routes
            .iter()
            .find(|(matcher, _)| matcher.matches(id))
            .map(|(_, handle)| handle.clone())
    }

    /// Whether a write to `id` may be applied: `Ok` when `id` is not persisted or its rule's
    /// buffer has room; otherwise [`Error::Unavailable`] (counted in
    /// `mesh_persistence_refused_writes_total`), and the write must not be applied, since it
    /// could not be persisted. Record actors call this before applying a write.
    pub fn admit(&self, id: &str) -> Result<()> {
        match self.handle(id) {
            Some(handle) if !handle.has_room() => {
                crate::metrics::metrics().persistence_refused.inc();
                // Debug only: during an outage this runs for every refused write.
                log::debug!(
                    "refusing a write to {id}: {} records wait for the persistence database",
                    handle.held()
                );
                Err(Error::Unavailable)
            }
            _ => Ok(()),
        }
    }

    /// Every persistence actor, for the final flush.
    pub fn actors(&self) -> Vec<PersistenceHandle> {
        let routes = self
            .routes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        routes.iter().map(|(_, handle)| handle.clone()).collect()
    }

    /// Every persistence actor with its rule as config spells it (`write_pattern "^todo:"`),
    /// so the final flush log says which rule each line is about.
    pub fn named_actors(&self) -> Vec<(String, PersistenceHandle)> {
        let routes = self
            .routes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        routes
            .iter()
            .map(|(matcher, handle)| {
                let rule = match matcher {
                    Matcher::Pattern(re) => format!("write_pattern {:?}", re.as_str()),
                    Matcher::Exact(id) => format!("write_id {id:?}"),
                };
                (rule, handle.clone())
            })
            .collect()
    }
}

/// Opens the database `[persistence]` names.
///
/// Fails with [`Error::Config`] naming the setting when it cannot be opened or reached.
pub async fn adapter_from_config(config: &PersistenceConfig) -> Result<SharedAdapter> {
    let describe =
        |key: &str, e: PersistenceError| Error::Config(format!("persistence.{key}: {e}"));
    match config.adapter {
        PersistenceBackend::Sqlite => {
            let adapter = SqliteAdapter::open(&config.sqlite_path)
                .await
                .map_err(|e| describe("sqlite_path", e))?;
            Ok(Arc::new(adapter))
        }
        PersistenceBackend::Postgres => {
            let target = match &config.postgres_url {
                Some(url) => PostgresConfig::Url(url.clone()),
                None => PostgresConfig::Params {
                    host: config.postgres_host.clone(),
                    port: config.postgres_port,
                    dbname: config.postgres_dbname.clone(),
                    user: config.postgres_user.clone(),
                    password: config.postgres_password.clone(),
                },
            };
            let options = PostgresOptions {
                connect_timeout: Duration::from_millis(config.postgres_connect_timeout_ms),
                statement_timeout: Duration::from_millis(config.postgres_statement_timeout_ms),
            };
            let adapter =
                PostgresAdapter::connect_with(target, config.postgres_schema.as_deref(), options)
                    .await
                    .map_err(|e| describe("postgres_url", e))?;
            Ok(Arc::new(adapter))
        }
    }
}
