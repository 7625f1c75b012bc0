//! How PostgreSQL failures become [`PersistenceError`]s: a call that took too long, a pool
//! that could not give a connection, a statement the server refused (rejected data apart from
//! an unreachable database), and the harmless race of two instances creating the table.

use super::super::PersistenceError;
use deadpool_postgres::PoolError;
use std::time::Duration;
use tokio_postgres::error::SqlState;

/// Runs `work` on a pooled connection, giving up after `limit`. A connection that did not
/// answer in time is taken out of the pool and closed rather than handed to the next batch:
/// over a hung link it would hang that batch too, and it may still be inside a transaction.
pub(super) async fn bounded<T>(
    mut client: deadpool_postgres::Object,
    limit: Duration,
    work: impl AsyncFnOnce(&mut deadpool_postgres::Object) -> Result<T, PersistenceError>,
) -> Result<T, PersistenceError> {
    match tokio::time::timeout(limit, work(&mut client)).await {
        Ok(result) => result,
        Err(_) => {
            drop(deadpool_postgres::Object::take(client));
            Err(PersistenceError::Unavailable(format!(
                "PostgreSQL did not answer within {limit:?}"
            )))
        }
    }
}

/// Two processes creating the same schema or table at once: one of them gets a duplicate
/// error although the object now exists, which is what it wanted.
pub(super) fn ignore_creation_race(
    result: Result<(), tokio_postgres::Error>,
) -> Result<(), PersistenceError> {
    match result {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.code(),
                Some(c) if *c == SqlState::UNIQUE_VIOLATION
                    || *c == SqlState::DUPLICATE_SCHEMA
                    || *c == SqlState::DUPLICATE_TABLE
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(pg_error(e)),
    }
}

pub(super) fn pool_error(e: PoolError) -> PersistenceError {
    match e {
        PoolError::Backend(e) => pg_error(e),
        other => PersistenceError::Unavailable(other.to_string()),
    }
}

/// Sorts a failure by what retrying can do (see [`PersistenceError`]): the rows' own data
/// refused (SQLSTATE classes 22 data exception, 23 integrity constraint, 54 program limit,
/// such as a value too large) is `Rejected`; a server in trouble (classes 08 connection, 40
/// serialization/deadlock, 53 resources, 57 operator intervention such as the statement
/// timeout, 58 system, and lock timeouts) is `Unavailable`; any other refusal (missing table,
/// permissions) is `Database`, which an operator can fix, so it is retried too. Anything that
/// is not a server answer (connect, I/O, closed connection) is `Unavailable`.
pub(super) fn pg_error(e: tokio_postgres::Error) -> PersistenceError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let text = format!("{} ({code}): {}", db.severity(), db.message());
        return match code.get(..2) {
            Some("22" | "23" | "54") => PersistenceError::Rejected(text),
            Some("08" | "40" | "53" | "57" | "58") => PersistenceError::Unavailable(text),
            _ if code == "55P03" => PersistenceError::Unavailable(text),
            _ => PersistenceError::Database(text),
        };
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    PersistenceError::Unavailable(text)
}
