//! Which records are persisted, where, and how they come back at startup.

use super::{
    PersistenceError, PersistenceOptions, PostgresAdapter, PostgresConfig, PostgresOptions,
    SharedAdapter, SqliteAdapter,
};
use crate::access::Matcher;
use crate::config::{PersistAck, PersistConfig, PersistenceBackend, PersistenceConfig};
use crate::error::{Error, Result};
use std::sync::Arc;
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
}

impl TryFrom<&PersistConfig> for PersistRule {
    type Error = Error;

    /// The rule a `[[records.persist]]` entry describes (validated by `Config::validate`).
    fn try_from(rule: &PersistConfig) -> Result<Self> {
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

impl From<&PersistConfig> for PersistOptions {
    /// The options of a `[[records.persist]]` entry.
    fn from(rule: &PersistConfig) -> Self {
        PersistOptions {
            batching: PersistenceOptions {
                flush_interval: Duration::from_millis(rule.flush_interval_ms),
                max_buffer_size: rule.max_buffer_size,
                confirm_within: (rule.ack == PersistAck::Flushed)
                    .then(|| Duration::from_millis(rule.ack_timeout_ms)),
                ..PersistenceOptions::default()
            },
            adapter: None,
        }
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
            log::info!("persistence: SQLite database {} open", config.sqlite_path);
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
            log::info!(
                "persistence: connecting to PostgreSQL (waiting at most \
                 persistence.postgres_connect_timeout_ms = {} ms)",
                config.postgres_connect_timeout_ms
            );
            let adapter =
                PostgresAdapter::connect_with(target, config.postgres_schema.as_deref(), options)
                    .await
                    .map_err(|e| {
                        Error::Config(format!(
                            "persistence.postgres_url: {e} (waited at most \
                             persistence.postgres_connect_timeout_ms = {} ms)",
                            config.postgres_connect_timeout_ms
                        ))
                    })?;
            log::info!("persistence: PostgreSQL connected");
            Ok(Arc::new(adapter))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushed_acks_carry_their_timeout_into_the_options() {
        let rule = "[[records.persist]]\nwrite_pattern = \"^t:\"\nrestore_pattern = \"t:%\"\n";
        let stored = crate::config::Config::parse(rule).expect("parses");
        let options = PersistOptions::from(&stored.records.persist[0]);
        assert_eq!(options.batching.confirm_within, None);
        let flushed =
            crate::config::Config::parse(&format!("{rule}ack = \"flushed\"\n")).expect("parses");
        let options = PersistOptions::from(&flushed.records.persist[0]);
        assert_eq!(
            options.batching.confirm_within,
            Some(Duration::from_millis(5_000))
        );
    }
}
