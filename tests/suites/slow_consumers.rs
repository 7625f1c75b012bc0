//! Clients that read slowly or not at all: bounded queues, coalesced resyncs, cut-off.

use crate::common;

use common::{Backend, StuckClient, eventually, start};
use mesh_records::Strategy;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[server]
max_outbound_bytes = 65536
slow_consumer_timeout_ms = 1500

[[records.expose]]
pattern = "^doc:"
writable = true
"#;

fn big_value(n: u64) -> Value {
    // Every version changes the whole pad, so patches are as large as the value.
    json!({"n": n, "pad": n.to_string().repeat(4_000), "tail": [n, n + 1]})
}

/// Applies a push to a client's copy; panics on a patch that does not follow its version.
fn apply(value: &mut Value, version: &mut u64, push: &Value) {
    let payload = &push["payload"];
    let v = payload["version"].as_u64().unwrap();
    assert!(v > *version, "version went from {version} to {v}");
    if let Some(full) = payload.get("full") {
        *value = full.clone();
    } else {
        assert_eq!(v, *version + 1, "a patch skipped versions");
        let patch: json_patch::Patch = serde_json::from_value(payload["patch"].clone()).unwrap();
        json_patch::patch(value, &patch).unwrap();
    }
    *version = v;
}

#[actix_web::test]
async fn a_client_that_never_reads_is_cut_off_and_others_get_everything() {
    let server = start(Backend::Memory, CONFIG).await;
    let mut stuck = StuckClient::subscribe(server.running.addr, "/ws", "doc:hot").await;
    let mut healthy = server.client().await;
    healthy.subscribe("doc:hot", "patch").await;
    let records = server.records().clone();
    let writes = 400u64;
    let writer = actix_rt::spawn(async move {
        for n in 1..=writes {
            records
                .write_record("doc:hot", big_value(n), Strategy::Replace)
                .await
                .unwrap();
        }
    });
    let started = Instant::now();
    let (mut value, mut version) = (json!({}), 0);
    while version < writes {
        let push = healthy.next_push().await;
        apply(&mut value, &mut version, &push);
    }
    writer.await.unwrap();
    assert_eq!(value, big_value(writes));
    // The stuck client is cut off once its timeout passes; the healthy one stays.
    let records = server.records().clone();
    eventually(
        "the stuck client to be cut off",
        common::patience(),
        async || records.connection_count() == 1,
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(healthy.request("mesh/noop", json!({})).await, json!(true));
    // The TCP connection really ended (not just the WebSocket session).
    stuck.read_until_closed(common::patience()).await;
    server.stop().await;
}

#[actix_web::test]
async fn a_client_that_pauses_catches_up_through_a_resync() {
    let server = start(Backend::Memory, CONFIG).await;
    let mut paused = server.client().await;
    let reply = paused.subscribe("doc:burst", "patch").await;
    let (mut value, mut version) = (reply["record"].clone(), 0);
    let records = server.records().clone();
    let writes = 300u64;
    let writer = actix_rt::spawn(async move {
        for n in 1..=writes {
            records
                .write_record("doc:burst", big_value(n), Strategy::Replace)
                .await
                .unwrap();
        }
    });
    // Read nothing while the burst is written (well under the 1.5 s timeout): each write
    // has been queued for the client (or skipped, its record marked stale) by the time it is
    // acknowledged, so the queue overflowed during the burst, not after it...
    writer.await.unwrap();
    // ...then catch up: versions only increase, patches never skip, and the end is exact.
    if value.is_null() {
        value = json!({});
    }
    let mut fulls = 0;
    while version < writes {
        let push = paused.next_push().await;
        fulls += push["payload"].get("full").is_some() as u32;
        apply(&mut value, &mut version, &push);
    }
    assert_eq!(value, big_value(writes));
    assert!(fulls >= 1, "the pause should have needed a resync");
    assert_eq!(server.records().connection_count(), 1);
    assert_eq!(paused.request("mesh/noop", json!({})).await, json!(true));
    server.stop().await;
}
