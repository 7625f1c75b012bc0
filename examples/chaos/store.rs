//! Reads the records straight from Redis with the project's key layout, bypassing the
//! instances: `<prefix>record:<id>` holds the JSON value, `<prefix>record-version:<id>` the
//! version. A version key without a value key is a deletion's tombstone: the record is absent.

use serde_json::Value;

/// A record as the store holds it.
#[derive(Clone, Debug, PartialEq)]
pub enum Stored {
    Absent,
    /// The value (unparsable JSON is kept as a string, so it shows in the report) and version
    /// (`None` when the version key is missing or not a number).
    Present {
        value: Value,
        version: Option<u64>,
    },
}

/// The id of record `i`.
pub fn record_id(i: usize) -> String {
    format!("chaos:r{i}")
}

/// The index of a record id, if it is one of the run's.
pub fn record_index(id: &str) -> Option<usize> {
    id.strip_prefix("chaos:r")?.parse().ok()
}

/// Every record's stored state, in one pipelined round trip.
pub fn read_all(
    con: &mut redis::Connection,
    prefix: &str,
    records: usize,
) -> Result<Vec<Stored>, String> {
    let mut pipe = redis::pipe();
    for i in 0..records {
        let id = record_id(i);
        pipe.cmd("GET").arg(format!("{prefix}record:{id}"));
        pipe.cmd("GET").arg(format!("{prefix}record-version:{id}"));
    }
    let answers: Vec<Option<String>> = pipe.query(con).map_err(|e| e.to_string())?;
    Ok(answers
        .chunks(2)
        .map(|pair| match (&pair[0], &pair[1]) {
            (None, _) => Stored::Absent,
            (Some(text), version) => Stored::Present {
                value: serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone())),
                version: version.as_deref().and_then(|v| v.parse().ok()),
            },
        })
        .collect())
}
