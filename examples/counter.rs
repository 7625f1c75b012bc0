//! Extending the server with an atomic operation: a `counter/increment` command that adds to a
//! record inside the record's own actor, so concurrent increments from any number of clients
//! (and instances) are never lost, and every subscriber sees each new total like any write.
//! docs/extending.md walks through it.
//!
//! Run: `cargo run --example counter`, connect a Mesh client to ws://127.0.0.1:3000/ws,
//! subscribe to `counter:visits`, and send
//! `{"id":1,"command":"counter/increment","payload":{"recordId":"counter:visits","by":1}}`.

use mesh_records::{CommandContext, CommandResult, Config, Error, Exposure, RecordServer};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Only records under this prefix can be incremented: server-side writes skip exposures, so a
/// command decides itself what it may touch.
const PREFIX: &str = "counter:";

/// `counter/increment {recordId, by}` → `{"version", "value"}`: the counter's version and
/// value right after this increment.
async fn increment(ctx: CommandContext, payload: Value) -> CommandResult {
    let id = payload["recordId"]
        .as_str()
        .filter(|id| id.starts_with(PREFIX))
        .ok_or_else(|| Error::invalid(format!("recordId: a string starting with {PREFIX:?}")))?;
    let by = payload["by"]
        .as_i64()
        .ok_or_else(|| Error::invalid("by: an integer"))?;
    // The value this update wrote, kept from inside the update function. Its last run is the
    // one written at `outcome.version` (it runs again on the fresh value when another instance
    // won a race); reading the record afterwards instead could return a later increment's
    // value beside this one's version.
    let total = Arc::new(AtomicI64::new(0));
    let written = Arc::clone(&total);
    let outcome = ctx
        .records
        .update_record(id, move |current| {
            let now = current.map_or(Some(0), Value::as_i64).ok_or_else(|| {
                Error::command("ENOTCOUNTER", "the record does not hold an integer")
            })?;
            let next = now
                .checked_add(by)
                .ok_or_else(|| Error::command("EOVERFLOW", "the counter would overflow"))?;
            written.store(next, Ordering::SeqCst);
            Ok(json!(next))
        })
        .await?;
    let value = total.load(Ordering::SeqCst);
    Ok(json!({ "version": outcome.version, "value": value }))
}

/// The server: counters are readable by anyone, and change only through the command.
fn builder(config: Config) -> mesh_records::server::RecordServerBuilder {
    RecordServer::builder(config)
        .expose(Exposure::pattern("^counter:").expect("a valid pattern"))
        .command("counter/increment", increment)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    env_logger::init();
    let config = Config::default();
    let running = mesh_records::start_with(config.clone(), builder(config))
        .await
        .map_err(std::io::Error::other)?;
    println!("counter example: ws://{}/ws (Ctrl-C to stop)", running.addr);
    actix_web::rt::signal::ctrl_c().await?;
    running.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::future::join_all;

    #[actix_web::test]
    async fn concurrent_increments_are_never_lost() {
        let mut config = Config::default();
        config.server.port = 0;
        let running = mesh_records::start_with(config.clone(), builder(config))
            .await
            .unwrap();
        let records = running.records.records().clone();
        let calls = (0..50).map(|_| {
            let context = CommandContext {
                connection: mesh_records::Connection::new("test", Value::Null),
                records: records.clone(),
            };
            increment(context, json!({"recordId": "counter:visits", "by": 2}))
        });
        // Each answer is one consistent state: the value at the version it names (every
        // increment adds 2), and every version from 1 to 50 is some caller's.
        let mut versions = Vec::new();
        for result in join_all(calls).await {
            let answer = result.unwrap();
            let version = answer["version"].as_u64().unwrap();
            assert_eq!(answer["value"], json!(2 * version), "{answer}");
            versions.push(version);
        }
        versions.sort_unstable();
        assert_eq!(versions, (1..=50).collect::<Vec<u64>>());
        let total = records.get_record("counter:visits").await.unwrap().unwrap();
        assert_eq!((*total.value).clone(), json!(100));
        assert_eq!(total.version, 50);

        // Refused changes write nothing.
        records
            .write_record(
                "counter:text",
                json!("abc"),
                mesh_records::Strategy::Replace,
            )
            .await
            .unwrap();
        let context = CommandContext {
            connection: mesh_records::Connection::new("test", Value::Null),
            records: records.clone(),
        };
        let refused = increment(context, json!({"recordId": "counter:text", "by": 1})).await;
        assert_eq!(refused.unwrap_err().code(), "ENOTCOUNTER");
        assert_eq!(
            records
                .get_record("counter:text")
                .await
                .unwrap()
                .unwrap()
                .version,
            1
        );
        running.stop().await;
    }
}
