//! Configuration: serde structs with defaults, environment overrides and validation.
//!
//! The commented `config.toml` at the repository root documents every key. Unknown keys,
//! invalid regexes and missing secrets fail at startup with a message naming the key.

pub use persistence::{PersistAck, PersistConfig, PersistenceBackend, PersistenceConfig};

use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`
    pub server: ServerConfig,
    /// `[store]`
    pub store: StoreConfig,
    /// `[auth]`
    pub auth: AuthConfig,
    /// `[admin]`
    pub admin: AdminConfig,
    /// `[records]`
    pub records: RecordsConfig,
    /// `[persistence]`
    pub persistence: PersistenceConfig,
    /// `[collections]`
    pub collections: CollectionsConfig,
    /// The folder relative paths in the file are read from (the config file's own; `None`:
    /// the working directory).
    #[serde(skip)]
    pub base_dir: Option<std::path::PathBuf>,
}

/// `[server]`: listener, keepalive and per-connection limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind.
    pub host: String,
    /// Port to bind (0 picks a free one).
    pub port: u16,
    /// Path of the WebSocket endpoint.
    pub ws_path: String,
    /// HTTP worker threads; 0 = one per core.
    pub workers: usize,
    /// Server ping period.
    pub ping_interval_ms: u64,
    /// Consecutive unanswered pings tolerated before closing.
    pub max_missed_pongs: u32,
    /// Largest inbound frame (close code 1009 above it).
    pub max_frame_bytes: usize,
    /// Outbound bytes queued per connection before updates are skipped (then resynced).
    pub max_outbound_bytes: usize,
    /// How long a connection may stay behind before it is cut off.
    pub slow_consumer_timeout_ms: u64,
    /// Longest record id.
    pub max_record_id_bytes: usize,
    /// Largest record value, serialized (checked on client writes and on merge results).
    pub max_value_bytes: usize,
    /// Records one connection may watch at once.
    pub max_subscriptions_per_connection: usize,
    /// Requests per second one connection may make (burst: one second's worth); 0 = no limit.
    pub max_requests_per_second: u32,
    /// Bytes per second one connection may send (burst: one second's worth, at least one
    /// frame); past it the socket is not read until the budget refills; 0 = no limit.
    pub max_inbound_bytes_per_second: u64,
    /// Open WebSocket connections; more are refused with HTTP 503 at the upgrade.
    pub max_connections: usize,
    /// How long a record's actor stays in memory unused.
    pub record_linger_ms: u64,
    /// Most writes queued behind an in-flight write that go to the store together.
    pub max_write_batch: usize,
    /// Most bytes of values in one store write (one value always goes), so one batch stays
    /// far below Redis's pub/sub output-buffer limits.
    pub max_write_batch_bytes: usize,
    /// Writes and deletes queued for one record; more are refused with `ELIMIT`.
    pub max_pending_writes: usize,
    /// Requests of one connection being worked on at once; at the limit the server stops
    /// reading that connection until one finishes (back-pressure, nothing is refused).
    pub max_in_flight_requests: usize,
    /// Serve the collaborative demo page at `/demo/`.
    pub demo: bool,
    /// Longest time a stop (SIGTERM, `RunningServer::stop`) takes, even with a hung database;
    /// persisted records still unwritten then are logged as lost.
    pub shutdown_timeout_ms: u64,
    /// Origins (`https://app.example.com`) whose pages may open a WebSocket; `"*"` allows any.
    /// Empty: the request's own host and loopback pages. Requests without `Origin` (clients
    /// that are not browsers) are always allowed.
    pub allowed_origins: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 3000,
            ws_path: "/ws".into(),
            workers: 0,
            ping_interval_ms: 30_000,
            max_missed_pongs: 1,
            max_frame_bytes: 1024 * 1024,
            max_outbound_bytes: 1024 * 1024,
            slow_consumer_timeout_ms: 10_000,
            max_record_id_bytes: crate::model::DEFAULT_MAX_RECORD_ID_BYTES,
            max_value_bytes: 1024 * 1024,
            max_subscriptions_per_connection: 1000,
            max_requests_per_second: 1000,
            max_inbound_bytes_per_second: 4 * 1024 * 1024,
            max_connections: 10_000,
            record_linger_ms: 5_000,
            max_write_batch: 64,
            max_write_batch_bytes: 4 * 1024 * 1024,
            max_pending_writes: 1024,
            max_in_flight_requests: 64,
            demo: false,
            shutdown_timeout_ms: 10_000,
            allowed_origins: Vec::new(),
        }
    }
}

impl ServerConfig {
    /// `ping_interval_ms` as a duration.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }

    /// `record_linger_ms` as a duration.
    pub fn record_linger(&self) -> Duration {
        Duration::from_millis(self.record_linger_ms)
    }

    /// `shutdown_timeout_ms` as a duration.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

/// Which store backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// In-process map; one instance, nothing external.
    #[default]
    Memory,
    /// Redis; any number of instances.
    Redis,
    /// Redis Cluster (sharded pub/sub, hash-tagged keys); any number of instances.
    #[serde(rename = "redis-cluster")]
    RedisCluster,
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `memory`, `redis` or `redis-cluster`.
    pub backend: StoreBackend,
    /// Redis URL (env `MESH_REDIS_URL`); with `redis-cluster`, any one node.
    pub redis_url: String,
    /// With `redis-cluster`: more nodes to try when `redis_url` does not answer at startup.
    pub redis_cluster_urls: Vec<String>,
    /// Prefix of every Redis key and channel.
    pub key_prefix: String,
    /// With `memory`: most bytes of records it holds before refusing writes that grow it
    /// (`ELIMIT`); 0 = half of the machine's memory (or of the cgroup's limit, if lower).
    pub max_memory_bytes: usize,
    /// With `memory`: most tombstones (deleted records' last versions) kept; the oldest go
    /// first, and such a record, written again, starts over at version 1.
    pub max_tombstones: usize,
    /// Start on a Redis whose `maxmemory-policy` evicts keys (anything but `noeviction`), with
    /// a warning, instead of refusing to: an evicted record then reads as deleted.
    pub allow_evicting_policy: bool,
    /// With Redis: every write also publishes the record's id on
    /// `<key_prefix>collection:record-change` (Mesh's channel), which instances serving
    /// collections follow (and Mesh instances sharing the Redis too). Turn off only when no
    /// instance on this Redis serves collections.
    pub change_feed: bool,
}

impl ServerConfig {
    /// The largest value stored: `max_value_bytes`, but never more than `max_frame_bytes`.
    /// Every value reaches subscribers in one frame, so this bounds every frame the server
    /// sends (a patch is sent only when shorter than the value).
    pub fn value_limit(&self) -> usize {
        self.max_value_bytes.min(self.max_frame_bytes)
    }
}

impl StoreConfig {
    /// The memory store's budget: `max_memory_bytes`, or half of what the machine (or its
    /// cgroup) allows.
    pub fn memory_limits(&self) -> crate::store::MemoryLimits {
        let max_bytes = match self.max_memory_bytes {
            0 => crate::store::default_memory_budget(),
            bytes => bytes,
        };
        crate::store::MemoryLimits {
            max_bytes,
            max_tombstones: self.max_tombstones,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Memory,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_cluster_urls: Vec::new(),
            key_prefix: "mesh:".into(),
            max_memory_bytes: 0,
            max_tombstones: 100_000,
            allow_evicting_policy: false,
            change_feed: true,
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Bearer token for `/api/records` (env `MESH_ADMIN_TOKEN`); unset = admin API off.
    pub token: Option<String>,
    /// Largest request body the admin API reads (HTTP 413 above it); a body is held whole
    /// while it is parsed, so this bounds one admin request's memory.
    pub max_body_bytes: usize,
    /// `host:port` the admin API listens on, alone; unset = on the public listener.
    pub bind: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            token: None,
            // Twice the default `server.max_value_bytes`: a value at the clients' limit still
            // fits when pretty-printed or escaped.
            max_body_bytes: 2 * 1024 * 1024,
            bind: None,
        }
    }
}

/// `[records]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordsConfig {
    /// Changes (patches) kept per record for resuming subscribers and the history API;
    /// 0 keeps none.
    pub history_versions: usize,
    /// Most bytes of patches kept per record (older changes go first).
    pub history_bytes: usize,
    /// How often this instance deletes the records whose expiry passed (`ttl_seconds`):
    /// a record goes within about this long after its deadline.
    pub expiry_sweep_ms: u64,
    /// `[[records.expose]]` rules, in order.
    pub expose: Vec<ExposeConfig>,
    /// `[[records.persist]]` rules.
    pub persist: Vec<PersistConfig>,
}

impl Default for RecordsConfig {
    fn default() -> Self {
        RecordsConfig {
            history_versions: 100,
            history_bytes: 256 * 1024,
            expiry_sweep_ms: 250,
            expose: Vec::new(),
            persist: Vec::new(),
        }
    }
}

impl RecordsConfig {
    /// How often expired records are deleted.
    pub fn expiry_sweep(&self) -> Duration {
        Duration::from_millis(self.expiry_sweep_ms)
    }

    /// The history limits every record follows.
    pub fn history(&self) -> crate::store::HistoryLimits {
        crate::store::HistoryLimits {
            versions: self.history_versions,
            bytes: self.history_bytes,
        }
    }
}

/// One `[[records.expose]]` rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExposeConfig {
    /// Exact record id.
    pub id: Option<String>,
    /// Regex over record ids.
    pub pattern: Option<String>,
    /// Clients may write (and read).
    pub writable: bool,
    /// Read guard.
    pub guard: Option<GuardConfig>,
    /// Write guard.
    pub write_guard: Option<GuardConfig>,
    /// JSON Schema (draft 2020-12) every stored value must satisfy: a file path (relative to
    /// the config file) or the schema inline as a table. Writable exposures only.
    pub schema: Option<SchemaSource>,
    /// A record not written for this many seconds is deleted. Writable exposures only.
    pub ttl_seconds: Option<f64>,
    /// Largest value stored under this exposure, serialized, instead of
    /// `server.max_value_bytes` (at most `server.max_frame_bytes`). Writable exposures only.
    pub max_value_bytes: Option<usize>,
}

/// Where an exposure's JSON Schema comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SchemaSource {
    /// A JSON file, relative to the config file's folder.
    File(String),
    /// The schema itself.
    Inline(serde_json::Value),
}

/// `[collections]`: live lists of records (`mesh/subscribe-collection`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectionsConfig {
    /// Most records one collection may hold; a subscription to a larger one fails with
    /// `ELIMIT`.
    pub max_members: usize,
    /// Collection subscribes one connection may make per second (burst: one second's worth;
    /// `ERATELIMIT` beyond): the first subscriber of a collection makes the instance list the
    /// store. 0 = no limit.
    pub max_subscribes_per_second: u32,
    /// `[[collections.expose]]` rules, in order; the first covering a collection id decides.
    pub expose: Vec<CollectionExposeConfig>,
}

impl Default for CollectionsConfig {
    fn default() -> Self {
        CollectionsConfig {
            max_members: 10_000,
            max_subscribes_per_second: 20,
            expose: Vec::new(),
        }
    }
}

/// One `[[collections.expose]]` rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectionExposeConfig {
    /// Exact collection id.
    pub id: Option<String>,
    /// Regex over collection ids.
    pub pattern: Option<String>,
    /// Glob over record ids; `{N}` is capture group N of `pattern`.
    pub members: String,
    /// Who may subscribe (the guard sees the collection id).
    pub guard: Option<GuardConfig>,
    /// JSON pointer into each member to sort by, ascending (ties and default: by id).
    pub sort: Option<String>,
    /// Only the first `limit` members by sort order.
    pub limit: Option<usize>,
}

/// A guard written in config; every condition given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// The metadata must have this key with a non-null value.
    pub require_metadata: Option<String>,
    /// The metadata value at `key`, as a string, must equal regex capture `group` of the id.
    pub metadata_equals_capture: Option<CaptureRule>,
}

/// See [`GuardConfig::metadata_equals_capture`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureRule {
    /// Metadata key.
    pub key: String,
    /// Capture group number of the exposure's pattern.
    pub group: usize,
}

impl Config {
    /// Reads a TOML file, applies environment overrides and validates.
    ///
    /// Fails with [`Error::Config`] naming the file or key at fault.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        let mut config = Self::parse(&text)
            .map_err(|e| Error::Config(format!("{}: {}", path.display(), validate::detail(e))))?;
        config.base_dir = path.parent().map(Path::to_path_buf);
        config.apply_env(|key| std::env::var(key).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text (no environment, no validation).
    pub fn parse(text: &str) -> Result<Config> {
        toml::from_str(text).map_err(|e| Error::Config(e.to_string()))
    }

    /// Applies the environment overrides listed in [`ENV_VARS`] (`MESH_PORT`, `MESH_REDIS_URL`,
    /// `MESH_JWT_SECRET`, `MESH_ADMIN_TOKEN`, `MESH_POSTGRES_URL`, `MESH_POSTGRES_PASSWORD`).
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<()> {
        if let Some(port) = var("MESH_PORT") {
            self.server.port = port
                .parse()
                .map_err(|_| Error::Config(format!("MESH_PORT: not a port number: {port:?}")))?;
        }
        if let Some(url) = var("MESH_REDIS_URL") {
            self.store.redis_url = url;
        }
        if let Some(secret) = var("MESH_JWT_SECRET") {
            self.auth.jwt_secret = Some(secret);
        }
        if let Some(token) = var("MESH_ADMIN_TOKEN") {
            self.admin.token = Some(token);
        }
        if let Some(url) = var("MESH_POSTGRES_URL") {
            self.persistence.postgres_url = Some(url);
        }
        if let Some(password) = var("MESH_POSTGRES_PASSWORD") {
            self.persistence.postgres_password = Some(password);
        }
        Ok(())
    }
}

/// The environment variables [`Config::apply_env`] reads, with the setting each overrides
/// (shown by `mesh-records --help`).
pub const ENV_VARS: [(&str, &str); 6] = [
    ("MESH_PORT", "server.port"),
    ("MESH_REDIS_URL", "store.redis_url"),
    ("MESH_JWT_SECRET", "auth.jwt_secret"),
    ("MESH_ADMIN_TOKEN", "admin.token"),
    ("MESH_POSTGRES_URL", "persistence.postgres_url"),
    ("MESH_POSTGRES_PASSWORD", "persistence.postgres_password"),
];

mod auth;
mod persistence;
#[cfg(test)]
mod tests;
mod validate;

pub use auth::AuthConfig;
