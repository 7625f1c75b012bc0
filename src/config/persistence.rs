//! The `[persistence]` section and each `[[records.persist]]` rule: which database persisted
//! records go to, how writes are batched, and what an acknowledgement waits for.

use serde::Deserialize;

/// Which database persisted records go to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PersistenceBackend {
    /// A SQLite file (or `:memory:`).
    #[default]
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// `[persistence]`: the database behind every `[[records.persist]]` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersistenceConfig {
    /// `sqlite` or `postgres`.
    pub adapter: PersistenceBackend,
    /// SQLite file (its folder is created); `:memory:` keeps nothing across restarts.
    pub sqlite_path: String,
    /// PostgreSQL URL (env `MESH_POSTGRES_URL`); or the discrete settings below.
    pub postgres_url: Option<String>,
    /// PostgreSQL host (when no URL is given).
    pub postgres_host: String,
    /// PostgreSQL port.
    pub postgres_port: u16,
    /// PostgreSQL database.
    pub postgres_dbname: String,
    /// PostgreSQL user.
    pub postgres_user: String,
    /// PostgreSQL password (env `MESH_POSTGRES_PASSWORD`).
    pub postgres_password: Option<String>,
    /// Schema holding the `records` table (created if missing); default: the search path.
    pub postgres_schema: Option<String>,
    /// Longest a PostgreSQL statement may run (server-side `statement_timeout`); the client
    /// also gives up on a connection that has not answered a little after it (hung link).
    pub postgres_statement_timeout_ms: u64,
    /// Longest connecting to PostgreSQL (or waiting for a pooled connection) may take.
    pub postgres_connect_timeout_ms: u64,
    /// Records one persistence rule may hold unwritten (database down); writes to further
    /// persisted records are refused (`EUNAVAILABLE`, nothing applied) until it drains.
    pub max_buffered_records: usize,
}

impl Default for PersistenceConfig {
    fn default() -> Self {
        PersistenceConfig {
            adapter: PersistenceBackend::Sqlite,
            sqlite_path: ":memory:".into(),
            postgres_url: None,
            postgres_host: "127.0.0.1".into(),
            postgres_port: 5432,
            postgres_dbname: "postgres".into(),
            postgres_user: "postgres".into(),
            postgres_password: None,
            postgres_schema: None,
            postgres_statement_timeout_ms: 5_000,
            postgres_connect_timeout_ms: 5_000,
            max_buffered_records: 100_000,
        }
    }
}

/// One `[[records.persist]]` rule: which writes are persisted and which rows are restored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistConfig {
    /// Regex over record ids whose writes are persisted.
    #[serde(default)]
    pub write_pattern: Option<String>,
    /// Exact record id whose writes are persisted (never a prefix).
    #[serde(default)]
    pub write_id: Option<String>,
    /// SQL `LIKE` pattern of the rows loaded into the store at startup.
    pub restore_pattern: String,
    /// Longest time a write waits in the buffer.
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// A flush starts as soon as this many records are buffered.
    #[serde(default = "default_max_buffer_size")]
    pub max_buffer_size: usize,
    /// When a write (or delete) of a matching record is answered: once the store has it
    /// (`stored`), or once the database committed it too (`flushed`).
    #[serde(default)]
    pub ack: PersistAck,
    /// With `ack = "flushed"`: how long a reply waits for the database before it is
    /// `EUNKNOWN` (applied in the store, not confirmed durable).
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
}

/// When the answer to a persisted write is sent (`[[records.persist]] ack`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PersistAck {
    /// Once the store applied it and it is queued for the database (a crash before the next
    /// flush loses it from the database, not from a shared store).
    #[default]
    Stored,
    /// Once the database transaction holding it committed (group commit: writes arriving
    /// during a flush go in the next one, started as soon as it ends).
    Flushed,
}

fn default_ack_timeout_ms() -> u64 {
    5_000
}

fn default_flush_interval_ms() -> u64 {
    500
}

fn default_max_buffer_size() -> usize {
    100
}
