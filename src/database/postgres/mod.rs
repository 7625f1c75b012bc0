//! `PostgresAdapter`: the `records` table in PostgreSQL, shared by any number of instances.
//!
//! A batch is one transaction and, in the common case, one statement: the rows travel as three
//! arrays that `UNNEST` turns back into rows, and `ON CONFLICT ... WHERE records.version <
//! EXCLUDED.version` keeps the newest version even when several instances write the same
//! record (measured: 1,000 rows in about 10 ms). Rows that replace a deleted record are first
//! deleted by a second statement in the same transaction. Deletions travel the same way and
//! remove a row only up to their own version.
//!
//! `jsonb` cannot hold U+0000 in a string or key. The adapter says so
//! ([`PersistenceAdapter::refuses_nul`]) and record actors refuse such writes when they arrive
//! (`EINVALID`); a value that still reaches a batch (stored before a rule covered its record)
//! makes the batch fail as `Rejected`, so the actor lands the other rows one by one and drops
//! only that one (it cannot block every batch behind it).
//!
//! `record_id` uses the `"C"` collation: ids sort in byte order as in SQLite, which keeps
//! keyset pagination identical on both backends, and `LIKE 'prefix%'` can use the primary-key
//! index.

mod errors;

use super::{
    PersistedDeletion, PersistedRecord, PersistenceAdapter, PersistenceError, PersistenceFuture,
    like_literal_prefix, newest_per_id, prefix_upper_bound, version_from_db, version_to_db,
};
use deadpool_postgres::{ManagerConfig, Pool, PoolConfig, RecyclingMethod, Runtime, Timeouts};
use errors::{bounded, ignore_creation_race, pg_error, pool_error};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::NoTls;

/// How long the client waits beyond the server's `statement_timeout` before it gives up on a
/// connection: the server cancels a slow statement itself, but over a hung link (packets
/// dropped, no reset) its answer never arrives, and only the client's own clock ends the call.
const CLIENT_GRACE: Duration = Duration::from_secs(1);
/// Connections kept by the pool: the actor uses one at a time; restore and tools may add some.
const POOL_SIZE: usize = 4;

/// Where the PostgreSQL server is: a URL, or its parts.
#[derive(Clone, PartialEq, Eq)]
pub enum PostgresConfig {
    /// A libpq-style URL or key-value string, such as `postgres://user@host:5432/db`.
    Url(String),
    /// The connection parameters one by one.
    Params {
        /// Host name or IP address.
        host: String,
        /// TCP port, usually 5432.
        port: u16,
        /// Database name.
        dbname: String,
        /// Role to connect as.
        user: String,
        /// Password, when the server asks for one.
        password: Option<String>,
    },
}

impl From<&str> for PostgresConfig {
    fn from(url: &str) -> Self {
        PostgresConfig::Url(url.to_owned())
    }
}

impl From<String> for PostgresConfig {
    fn from(url: String) -> Self {
        PostgresConfig::Url(url)
    }
}

/// Hides the password (a URL may carry one too), since configs end up in logs.
impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PostgresConfig::Url(_) => f.write_str("PostgresConfig::Url(<hidden>)"),
            PostgresConfig::Params {
                host,
                port,
                dbname,
                user,
                password,
            } => f
                .debug_struct("PostgresConfig::Params")
                .field("host", host)
                .field("port", port)
                .field("dbname", dbname)
                .field("user", user)
                .field("password", &password.as_ref().map(|_| "<hidden>"))
                .finish(),
        }
    }
}

/// Time limits of a [`PostgresAdapter`].
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Connecting, or waiting for a pooled connection, fails after this. Default 5 s.
    pub connect_timeout: Duration,
    /// The server cancels a statement running longer (`statement_timeout`); the client drops
    /// a connection that has not answered one second after it. Default 5 s.
    pub statement_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// The statements of one table, built once with its (quoted) name.
#[derive(Debug)]
struct Statements {
    upsert: String,
    /// Removes rows whatever their version (before re-inserting a re-created record).
    delete_replaced: String,
    /// Removes each row only up to the deletion's version.
    delete: String,
    /// `load_matching` for [lower bound inclusive or not][bounded above or not].
    load: [[String; 2]; 2],
}

impl Statements {
    fn new(table: &str) -> Self {
        // The range comes from the pattern's literal prefix and the last id seen, so a page is
        // one index range scan even when the server uses a generic plan, which cannot derive
        // a range from a `LIKE` parameter.
        let load = |after_last_id: bool, bounded_above: bool| {
            let lower = if after_last_id { ">" } else { ">=" };
            let (upper, limit) = if bounded_above {
                (" AND record_id < $3", "$4")
            } else {
                ("", "$3")
            };
            format!(
                "SELECT record_id, version, value::text FROM {table}
                 WHERE record_id {lower} $2{upper} AND record_id LIKE $1
                 ORDER BY record_id LIMIT {limit}"
            )
        };
        Statements {
            upsert: format!(
                "INSERT INTO {table} AS records (record_id, version, value, updated_at)
                 SELECT r.id, r.version, r.value::jsonb, now()
                 FROM UNNEST($1::text[], $2::int8[], $3::text[]) AS r(id, version, value)
                 ON CONFLICT (record_id) DO UPDATE SET
                     version = EXCLUDED.version, value = EXCLUDED.value,
                     updated_at = EXCLUDED.updated_at
                 WHERE records.version < EXCLUDED.version"
            ),
            delete_replaced: format!("DELETE FROM {table} WHERE record_id = ANY($1::text[])"),
            delete: format!(
                "DELETE FROM {table} AS records
                 USING UNNEST($1::text[], $2::int8[]) AS d(id, version)
                 WHERE records.record_id = d.id AND records.version <= d.version"
            ),
            load: [
                [load(false, false), load(false, true)],
                [load(true, false), load(true, true)],
            ],
        }
    }
}

/// The persistence adapter for PostgreSQL (see the module docs).
#[derive(Clone)]
pub struct PostgresAdapter {
    pool: Pool,
    sql: Arc<Statements>,
    /// How long one call may wait for the server's answers.
    answer_within: Duration,
}

impl fmt::Debug for PostgresAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresAdapter")
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

impl PostgresAdapter {
    /// Connects a pool and creates `schema` (when given) and its `records` table if missing.
    /// Without a schema the table is found through the server's `search_path`. A schema per
    /// test or per deployment keeps tables apart in one database.
    ///
    /// The pool's connections run on the tokio runtime that first creates them, so call this
    /// (and use the adapter) from a runtime that lives as long as the adapter.
    ///
    /// Fails when the configuration is invalid, the server cannot be reached within 5 s, or
    /// the schema or table cannot be created.
    pub async fn connect(
        config: impl Into<PostgresConfig>,
        schema: Option<&str>,
    ) -> Result<Self, PersistenceError> {
        Self::connect_with(config, schema, PostgresOptions::default()).await
    }

    /// [`PostgresAdapter::connect`] with explicit time limits. A URL's own `options` are
    /// replaced (they would carry the statement timeout).
    ///
    /// Fails like [`PostgresAdapter::connect`], within the given limits.
    pub async fn connect_with(
        config: impl Into<PostgresConfig>,
        schema: Option<&str>,
        options: PostgresOptions,
    ) -> Result<Self, PersistenceError> {
        let timeout = options.connect_timeout;
        let mut pool_config = deadpool_postgres::Config::new();
        match config.into() {
            PostgresConfig::Url(url) => pool_config.url = Some(url),
            PostgresConfig::Params {
                host,
                port,
                dbname,
                user,
                password,
            } => {
                pool_config.host = Some(host);
                pool_config.port = Some(port);
                pool_config.dbname = Some(dbname);
                pool_config.user = Some(user);
                pool_config.password = password;
            }
        }
        pool_config.connect_timeout = Some(timeout);
        pool_config.options = Some(format!(
            "-c statement_timeout={}",
            options.statement_timeout.as_millis().max(1)
        ));
        pool_config.manager = Some(ManagerConfig {
            // A broken connection is noticed by the failing batch, which is retried.
            recycling_method: RecyclingMethod::Fast,
        });
        pool_config.pool = Some(PoolConfig {
            max_size: POOL_SIZE,
            timeouts: Timeouts {
                wait: Some(timeout),
                create: Some(timeout),
                recycle: Some(timeout),
            },
            ..PoolConfig::default()
        });
        let pool = pool_config
            .create_pool(Some(Runtime::Tokio1), NoTls)
            .map_err(|e| PersistenceError::Invalid(format!("PostgreSQL config: {e}")))?;

        let table = match schema {
            Some(schema) => format!("{}.records", quote_ident(schema)),
            None => "records".to_owned(),
        };
        let answer_within = options.statement_timeout.saturating_add(CLIENT_GRACE);
        let client = pool.get().await.map_err(pool_error)?;
        let create_table = format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                record_id TEXT COLLATE \"C\" PRIMARY KEY,
                version BIGINT NOT NULL,
                value JSONB NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )"
        );
        bounded(client, answer_within, async |client| {
            if let Some(schema) = schema {
                let create = format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(schema));
                ignore_creation_race(client.batch_execute(&create).await)?;
            }
            ignore_creation_race(client.batch_execute(&create_table).await)
        })
        .await?;
        Ok(PostgresAdapter {
            pool,
            sql: Arc::new(Statements::new(&table)),
            answer_within,
        })
    }
}

impl PersistenceAdapter for PostgresAdapter {
    fn store_batch(&self, records: Vec<PersistedRecord>) -> PersistenceFuture<()> {
        let pool = self.pool.clone();
        let sql = Arc::clone(&self.sql);
        let answer_within = self.answer_within;
        Box::pin(async move {
            let rows: Vec<PersistedRecord> = newest_per_id(records);
            // jsonb cannot hold U+0000. Such a row is refused as the rows' own fault, so the
            // actor retries the batch row by row, lands the others and drops only it (logged,
            // counted, and an `ack = "flushed"` write of it is answered as not durable).
            if let Some(row) = rows.iter().find(|row| has_nul_escape(&row.value_json)) {
                return Err(PersistenceError::Rejected(format!(
                    "record {} v{} contains \\u0000, which PostgreSQL jsonb cannot store",
                    row.id, row.version
                )));
            }
            if rows.is_empty() {
                return Ok(());
            }
            let mut ids = Vec::with_capacity(rows.len());
            let mut versions = Vec::with_capacity(rows.len());
            let mut values = Vec::with_capacity(rows.len());
            let mut replaced = Vec::new();
            for row in &rows {
                ids.push(row.id.as_str());
                versions.push(version_to_db(&row.id, row.version)?);
                values.push(&*row.value_json);
                if row.replaces_deleted {
                    replaced.push(row.id.as_str());
                }
            }
            let client = pool.get().await.map_err(pool_error)?;
            bounded(client, answer_within, async |client| {
                let tx = client.transaction().await.map_err(pg_error)?;
                if !replaced.is_empty() {
                    let delete = tx
                        .prepare_cached(&sql.delete_replaced)
                        .await
                        .map_err(pg_error)?;
                    tx.execute(&delete, &[&replaced]).await.map_err(pg_error)?;
                }
                let upsert = tx.prepare_cached(&sql.upsert).await.map_err(pg_error)?;
                tx.execute(&upsert, &[&ids, &versions, &values])
                    .await
                    .map_err(pg_error)?;
                tx.commit().await.map_err(pg_error)
            })
            .await
        })
    }

    fn delete_batch(&self, deletions: Vec<PersistedDeletion>) -> PersistenceFuture<()> {
        let pool = self.pool.clone();
        let sql = Arc::clone(&self.sql);
        let answer_within = self.answer_within;
        Box::pin(async move {
            if deletions.is_empty() {
                return Ok(());
            }
            let mut ids = Vec::with_capacity(deletions.len());
            let mut versions = Vec::with_capacity(deletions.len());
            for deletion in &deletions {
                ids.push(deletion.id.as_str());
                versions.push(version_to_db(&deletion.id, deletion.version)?);
            }
            // One statement is one transaction.
            let client = pool.get().await.map_err(pool_error)?;
            bounded(client, answer_within, async |client| {
                let delete = client.prepare_cached(&sql.delete).await.map_err(pg_error)?;
                client
                    .execute(&delete, &[&ids, &versions])
                    .await
                    .map_err(pg_error)?;
                Ok(())
            })
            .await
        })
    }

    fn refuses_nul(&self) -> bool {
        true
    }

    fn load_matching(
        &self,
        like_pattern: &str,
        after_id: Option<&str>,
        limit: usize,
    ) -> PersistenceFuture<Vec<PersistedRecord>> {
        let pool = self.pool.clone();
        let sql = Arc::clone(&self.sql);
        let answer_within = self.answer_within;
        let pattern = like_pattern.to_owned();
        let prefix = like_literal_prefix(like_pattern);
        let upper = prefix_upper_bound(&prefix);
        // Start after the last id seen unless the pattern's prefix starts later.
        let (lower, after_last_id) = match after_id {
            Some(after) if after >= prefix.as_str() => (after.to_owned(), true),
            _ => (prefix, false),
        };
        // LIMIT takes a bigint; more rows than that do not exist.
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Box::pin(async move {
            let client = pool.get().await.map_err(pool_error)?;
            let sql = &sql.load[usize::from(after_last_id)][usize::from(upper.is_some())];
            let rows = bounded(client, answer_within, async |client| {
                let query = client.prepare_cached(sql).await.map_err(pg_error)?;
                match &upper {
                    Some(upper) => {
                        client
                            .query(&query, &[&pattern, &lower, upper, &limit])
                            .await
                    }
                    None => client.query(&query, &[&pattern, &lower, &limit]).await,
                }
                .map_err(pg_error)
            })
            .await?;
            rows.iter()
                .map(|row| {
                    let id: String = row.try_get(0).map_err(pg_error)?;
                    let corrupt = |e: tokio_postgres::Error| PersistenceError::Corrupt {
                        id: id.clone(),
                        detail: e.to_string(),
                    };
                    let version: i64 = row.try_get(1).map_err(corrupt)?;
                    let value: String = row.try_get(2).map_err(corrupt)?;
                    Ok(PersistedRecord {
                        version: version_from_db(&id, version)?,
                        id,
                        value_json: value.into(),
                        replaces_deleted: false,
                    })
                })
                .collect()
        })
    }
}

/// Quotes an SQL identifier (schema name) so any text is taken literally.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether serialized JSON contains the escape `\u0000` (not a literal backslash followed by
/// `u0000`, which is the escape `\\` and then plain text).
fn has_nul_escape(json: &str) -> bool {
    let bytes = json.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1..i + 6) == Some(b"u0000".as_slice()) {
                return true;
            }
            // Skip the escaped character, so `\\` does not start another escape.
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_escape_detection() {
        assert!(has_nul_escape(r#"{"a":"x\u0000y"}"#));
        assert!(!has_nul_escape(r#"{"a":"x\\u0000y"}"#));
        assert!(has_nul_escape(r#"{"a":"x\\\u0000y"}"#));
        assert!(!has_nul_escape(r#"{"a":"\u0001"}"#));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn config_debug_hides_passwords() {
        let url = PostgresConfig::from("postgres://u:secret@h/db");
        assert!(!format!("{url:?}").contains("secret"));
        let params = PostgresConfig::Params {
            host: "h".into(),
            port: 5432,
            dbname: "db".into(),
            user: "u".into(),
            password: Some("secret".into()),
        };
        assert!(!format!("{params:?}").contains("secret"));
    }
}
