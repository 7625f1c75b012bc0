//! Record behaviour over real WebSocket connections: exposure, writes, deletes, gets,
//! subscriptions and pushes. Every test runs on each store backend.

use crate::common;

use common::{Backend, Client, eventually, start, start_with};
use mesh_bench::wire::PUBLISH;
use mesh_records::{Exposure, Guard, Mode, RecordSubscription, Strategy};
use serde_json::{Value, json};
use std::time::Duration;

const OPEN: &str = r#"
[[records.expose]]
pattern = "^doc:"
writable = true

[[records.expose]]
pattern = "^ro:"

[[records.expose]]
id = "exact:1"
writable = true
"#;

on_every_store!(
    with_cluster:
    records_are_invisible_unless_exposed,
    exact_ids_are_not_prefixes,
    read_only_exposures_refuse_writes,
    guards_decide_per_operation,
    failing_guards_deny,
    server_writes_bump_versions_and_push,
    identical_writes_change_nothing,
    strategies_combine_values,
    every_json_type_is_a_record,
    deletes_end_subscriptions_and_versions_continue,
    get_returns_value_and_version,
    subscribe_reply_and_first_push_follow_the_snapshot,
    subscribing_again_replaces_the_mode,
    unsubscribe_and_disconnect_drop_subscriptions,
    client_writes_are_acknowledged_and_pushed,
    patch_pushes_reproduce_the_value,
    subscribers_of_one_mode_get_identical_bytes,
    one_clients_writes_apply_in_order,
    pipelined_writes_keep_their_order_while_record_actors_retire,
    server_code_subscribes_like_a_client,
    a_server_subscription_nobody_reads_stays_bounded_and_catches_up_whole,
    a_server_subscription_ends_when_the_server_stops,
);

async fn records_are_invisible_unless_exposed(backend: Backend) {
    let server = start(backend, OPEN).await;
    server.write("hidden:1", json!({"a": 1})).await;
    let mut client = server.client().await;
    assert_eq!(
        client.subscribe("hidden:1", "full").await,
        json!({"success": false})
    );
    let reply = client.publish("hidden:1", json!({"a": 2})).await;
    assert_eq!(reply["code"], "EFORBIDDEN");
    assert_eq!(
        server
            .records()
            .get_record("hidden:1")
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    server.stop().await;
}

async fn exact_ids_are_not_prefixes(backend: Backend) {
    let server = start(backend, OPEN).await;
    let mut client = server.client().await;
    assert_eq!(client.subscribe("exact:1", "full").await["success"], true);
    assert_eq!(
        client.subscribe("exact:10", "full").await,
        json!({"success": false})
    );
    assert_eq!(
        client.subscribe("xexact:1", "full").await,
        json!({"success": false})
    );
    server.stop().await;
}

async fn read_only_exposures_refuse_writes(backend: Backend) {
    let server = start(backend, OPEN).await;
    let mut client = server.client().await;
    assert_eq!(client.subscribe("ro:1", "full").await["success"], true);
    let reply = client.publish("ro:1", json!({"a": 1})).await;
    assert_eq!(reply["code"], "EFORBIDDEN");
    assert!(reply["error"].is_string());
    assert_eq!(server.records().get_record("ro:1").await.unwrap(), None);
    server
        .assert_nothing_pushed_before_marker(&mut client, "doc:marker")
        .await;
    server.stop().await;
}

async fn guards_decide_per_operation(backend: Backend) {
    // Reads need metadata "reader"; writes need "writer". The read guard never sees writes.
    let server = start_with(backend, "", |b| {
        b.expose(
            Exposure::pattern("^g:")
                .unwrap()
                .writable()
                .guard(Guard::sync(|c, _| c.metadata_field("reader").is_some()))
                .write_guard(Guard::sync(|c, _| c.metadata_field("writer").is_some())),
        )
        .authenticate(mesh_records::Authenticator::new(|req| {
            let q = req.query_string().to_owned();
            async move {
                let mut meta = serde_json::Map::new();
                for role in q.split('&').filter(|r| !r.is_empty()) {
                    meta.insert(role.to_owned(), json!(true));
                }
                Ok(Value::Object(meta))
            }
        }))
    })
    .await;
    let mut reader = Client::connect(&format!("{}?reader", server.ws)).await;
    let mut writer = Client::connect(&format!("{}?writer", server.ws)).await;
    assert_eq!(reader.subscribe("g:1", "full").await["success"], true);
    assert_eq!(
        writer.subscribe("g:1", "full").await,
        json!({"success": false})
    );
    assert_eq!(
        reader.publish("g:1", json!({"x": 1})).await["code"],
        "EFORBIDDEN"
    );
    assert_eq!(
        writer.publish("g:1", json!({"x": 2})).await,
        json!({"success": true})
    );
    let push = reader.next_push().await;
    assert_eq!(
        push["payload"],
        json!({"recordId": "g:1", "full": {"x": 2}, "version": 1})
    );
    server.stop().await;
}

async fn failing_guards_deny(backend: Backend) {
    let server = start_with(backend, "", |b| {
        b.expose(
            Exposure::pattern("^err:")
                .unwrap()
                .writable()
                .guard(Guard::new(|_, _| async { Err("database down".into()) }))
                .write_guard(Guard::new(|_, _| async { Err("database down".into()) })),
        )
        .expose(
            Exposure::pattern("^panic:")
                .unwrap()
                .writable()
                .guard(Guard::new(|_, _| async { panic!("bug in guard") }))
                .write_guard(Guard::sync(|_, _| panic!("bug in guard"))),
        )
    })
    .await;
    let mut client = server.client().await;
    for id in ["err:1", "panic:1"] {
        assert_eq!(
            client.subscribe(id, "full").await,
            json!({"success": false})
        );
        assert_eq!(client.publish(id, json!(1)).await["code"], "EFORBIDDEN");
    }
    // The session survived the panics.
    assert_eq!(client.request("mesh/noop", json!({})).await, json!(true));
    server.stop().await;
}

async fn server_writes_bump_versions_and_push(backend: Backend) {
    let server = start(backend, OPEN).await;
    let mut client = server.client().await;
    client.subscribe("doc:1", "full").await;
    for n in 1..=3u64 {
        let outcome = server
            .records()
            .write_record("doc:1", json!({"n": n}), Strategy::Replace)
            .await
            .unwrap();
        assert_eq!((outcome.version, outcome.changed), (n, true));
        let push = client.next_push().await;
        assert_eq!(push["command"], "mesh/record-update");
        assert_eq!(
            push["payload"],
            json!({"recordId": "doc:1", "full": {"n": n}, "version": n})
        );
    }
    server.stop().await;
}

async fn identical_writes_change_nothing(backend: Backend) {
    let server = start(backend, OPEN).await;
    let records = server.records();
    records
        .write_record("doc:same", json!({"a": {"b": 1}}), Strategy::Replace)
        .await
        .unwrap();
    let mut client = server.client().await;
    client.subscribe("doc:same", "patch").await;
    let again = records
        .write_record("doc:same", json!({"a": {"b": 1}}), Strategy::Replace)
        .await
        .unwrap();
    assert_eq!((again.version, again.changed), (1, false));
    let merged = records
        .write_record("doc:same", json!({"a": {"b": 1}}), Strategy::DeepMerge)
        .await
        .unwrap();
    assert_eq!((merged.version, merged.changed), (1, false));
    assert_eq!(
        client.publish("doc:same", json!({"a": {"b": 1}})).await,
        json!({"success": true})
    );
    server
        .assert_nothing_pushed_before_marker(&mut client, "doc:marker")
        .await;
    assert_eq!(
        records
            .get_record("doc:same")
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    server.stop().await;
}

async fn strategies_combine_values(backend: Backend) {
    let server = start(backend, OPEN).await;
    let mut client = server.client().await;
    let base = json!({"name": "a", "prefs": {"theme": "dark", "font": 12}, "tags": [1, 2]});
    server.write("doc:s", base).await;
    let publish = |strategy: &str, value: Value| json!({"recordId": "doc:s", "newValue": value, "options": {"strategy": strategy}});
    let r = client
        .request(
            "mesh/publish-record-update",
            publish("merge", json!({"prefs": {"font": 14}, "x": 1})),
        )
        .await;
    assert_eq!(r, json!({"success": true}));
    let v = server.records().get_record("doc:s").await.unwrap().unwrap();
    assert_eq!(
        *v.value,
        json!({"name": "a", "prefs": {"font": 14}, "tags": [1, 2], "x": 1})
    );
    client
        .request(
            "mesh/publish-record-update",
            publish(
                "deepMerge",
                json!({"prefs": {"theme": "light"}, "tags": [3]}),
            ),
        )
        .await;
    let v = server.records().get_record("doc:s").await.unwrap().unwrap();
    assert_eq!(
        *v.value,
        json!({"name": "a", "prefs": {"font": 14, "theme": "light"}, "tags": [3], "x": 1})
    );
    assert_eq!(v.version, 3);
    // Non-objects are replaced whatever the strategy.
    client
        .request("mesh/publish-record-update", publish("merge", json!([1])))
        .await;
    let v = server.records().get_record("doc:s").await.unwrap().unwrap();
    assert_eq!((&*v.value, v.version), (&json!([1]), 4));
    let bad = client
        .request("mesh/publish-record-update", publish("sideways", json!(1)))
        .await;
    assert_eq!(bad["code"], "EINVALID");
    assert_eq!(
        server
            .records()
            .get_record("doc:s")
            .await
            .unwrap()
            .unwrap()
            .version,
        4
    );
    server.stop().await;
}

async fn every_json_type_is_a_record(backend: Backend) {
    let server = start(backend, OPEN).await;
    let mut client = server.client().await;
    let values = [
        json!({"o": 1}),
        json!([1, "2"]),
        json!("text"),
        json!(42.5),
        json!(false),
    ];
    for (i, value) in values.iter().enumerate() {
        let id = format!("doc:t{i}");
        client.subscribe(&id, "patch").await;
        assert_eq!(
            client.publish(&id, value.clone()).await,
            json!({"success": true})
        );
        let push = client.next_push().await;
        assert_eq!(push["payload"]["version"], 1);
        let got = server.records().get_record(&id).await.unwrap().unwrap();
        assert_eq!(*got.value, *value);
    }
    assert_eq!(
        client.publish("doc:null", Value::Null).await["code"],
        "EINVALID"
    );
    server.stop().await;
}

async fn deletes_end_subscriptions_and_versions_continue(backend: Backend) {
    let server = start(backend, OPEN).await;
    let records = server.records();
    let mut full = server.client().await;
    let mut patch = server.client().await;
    full.subscribe("doc:d", "full").await;
    patch.subscribe("doc:d", "patch").await;
    records
        .write_record("doc:d", json!({"a": 1}), Strategy::Replace)
        .await
        .unwrap();
    records
        .write_record("doc:d", json!({"a": 2}), Strategy::Replace)
        .await
        .unwrap();
    for client in [&mut full, &mut patch] {
        client.next_push().await;
        client.next_push().await;
    }
    assert_eq!(records.delete_record("doc:d").await.unwrap(), Some(2));
    for client in [&mut full, &mut patch] {
        let push = client.next_push().await;
        assert_eq!(
            push,
            json!({"command": "mesh/record-deleted", "payload": {"recordId": "doc:d", "version": 2}})
        );
    }
    assert_eq!(records.get_record("doc:d").await.unwrap(), None);
    assert_eq!(records.delete_record("doc:d").await.unwrap(), None);
    let outcome = records
        .write_record("doc:d", json!({"b": 1}), Strategy::Replace)
        .await
        .unwrap();
    // Versions continue after the tombstone: version 1 and 2 keep meaning what they meant.
    assert_eq!(outcome.version, 3);
    // A new subscriber sees the new record; one to a deleted record sees null at the tombstone.
    let mut late = server.client().await;
    let reply = late.subscribe("doc:d", "full").await;
    assert_eq!(reply["version"], 3);
    assert_eq!(records.delete_record("doc:d").await.unwrap(), Some(3));
    late.next_push_of("mesh/record-deleted").await;
    let reply = late.subscribe("doc:d", "full").await;
    assert_eq!(reply["record"], Value::Null);
    assert_eq!(reply["version"], 3);
    // The subscriptions ended with the deletion: no pushes, and unsubscribing says so.
    server
        .assert_nothing_pushed_before_marker(&mut full, "doc:marker")
        .await;
    server
        .assert_nothing_pushed_before_marker(&mut patch, "doc:marker")
        .await;
    let r = full
        .request("mesh/unsubscribe-record", json!({"recordId": "doc:d"}))
        .await;
    assert_eq!(r, json!(false));
    server.stop().await;
}

async fn get_returns_value_and_version(backend: Backend) {
    let server = start(backend, OPEN).await;
    let records = server.records();
    assert_eq!(records.get_record("doc:g").await.unwrap(), None);
    records
        .write_record("doc:g", json!({"v": 1}), Strategy::Replace)
        .await
        .unwrap();
    records
        .write_record("doc:g", json!({"v": 2}), Strategy::Replace)
        .await
        .unwrap();
    let got = records.get_record("doc:g").await.unwrap().unwrap();
    assert_eq!((&*got.value, got.version), (&json!({"v": 2}), 2));
    assert!(records.get_record("").await.is_err());
    server.stop().await;
}

async fn subscribe_reply_and_first_push_follow_the_snapshot(backend: Backend) {
    let server = start(backend, OPEN).await;
    let mut client = server.client().await;
    assert_eq!(
        client.subscribe("doc:new", "full").await,
        json!({"success": true, "record": null, "version": 0})
    );
    // A writer keeps writing while subscribers join: each one's first push is snapshot + 1,
    // then every version follows with no gap.
    let records = server.records().clone();
    let writer = actix_rt::spawn(async move {
        for n in 1..=300u64 {
            records
                .write_record("doc:race", json!({"n": n}), Strategy::Replace)
                .await
                .unwrap();
        }
    });
    let mut subscribers = Vec::new();
    for _ in 0..5 {
        let mut c = server.client().await;
        let reply = c.subscribe("doc:race", "patch").await;
        let version = reply["version"].as_u64().unwrap();
        subscribers.push((c, version, reply["record"].clone()));
    }
    writer.await.unwrap();
    for (client, snapshot, value) in &mut subscribers {
        let mut expected = *snapshot + 1;
        while expected <= 300 {
            let push = client.next_push().await;
            assert_eq!(push["payload"]["version"], expected, "{push}");
            apply_push(value, &push);
            expected += 1;
        }
        assert_eq!(*value, json!({"n": 300}));
    }
    server.stop().await;
}

/// Applies a full or patch push to a client's copy of the value.
fn apply_push(value: &mut Value, push: &Value) {
    let payload = &push["payload"];
    if let Some(full) = payload.get("full") {
        *value = full.clone();
    } else {
        if value.is_null() {
            *value = json!({});
        }
        let patch: json_patch::Patch = serde_json::from_value(payload["patch"].clone()).unwrap();
        json_patch::patch(value, &patch).unwrap();
    }
}

async fn subscribing_again_replaces_the_mode(backend: Backend) {
    let server = start(backend, OPEN).await;
    let mut client = server.client().await;
    client.subscribe("doc:m", "full").await;
    let text = "a long text that makes a full value larger than a small patch";
    let value = |a: u64| json!({"a": a, "text": text});
    server.write("doc:m", value(1)).await;
    assert!(client.next_push().await["payload"].get("full").is_some());
    let reply = client.subscribe("doc:m", "patch").await;
    assert_eq!(reply["version"], 1);
    server.write("doc:m", value(2)).await;
    let push = client.next_push().await;
    assert_eq!(
        push["payload"]["patch"],
        json!([{"op": "replace", "path": "/a", "value": 2}])
    );
    server
        .assert_nothing_pushed_before_marker(&mut client, "doc:marker")
        .await;
    server.stop().await;
}

async fn unsubscribe_and_disconnect_drop_subscriptions(backend: Backend) {
    let server = start(backend, OPEN).await;
    let mut client = server.client().await;
    let mut other = server.client().await;
    client.subscribe("doc:u", "full").await;
    other.subscribe("doc:u", "full").await;
    other.subscribe("doc:u2", "patch").await;
    assert!(server.records().live_record_actors() >= 2);
    let r = client
        .request("mesh/unsubscribe-record", json!({"recordId": "doc:u"}))
        .await;
    assert_eq!(r, json!(true));
    let r = client
        .request("mesh/unsubscribe-record", json!({"recordId": "doc:u"}))
        .await;
    assert_eq!(r, json!(false));
    server.write("doc:u", json!(1)).await;
    server
        .assert_nothing_pushed_before_marker(&mut client, "doc:marker")
        .await;
    other.next_push().await;
    other.close().await;
    client.close().await;
    let records = server.records().clone();
    eventually("record actors to stop", common::patience(), async || {
        records.live_record_actors() == 0
    })
    .await;
    eventually("sessions to end", common::patience(), async || {
        records.connection_count() == 0
    })
    .await;
    server.stop().await;
}

async fn client_writes_are_acknowledged_and_pushed(backend: Backend) {
    let server = start(backend, OPEN).await;
    let mut writer = server.client().await;
    let mut watcher = server.client().await;
    watcher.subscribe("doc:w", "full").await;
    let reply = writer
        .request_frame(
            "mesh/publish-record-update",
            json!({"recordId": "doc:w", "newValue": {"t": "hi"}}),
        )
        .await;
    assert_eq!(reply["command"], "mesh/publish-record-update");
    assert_eq!(reply["payload"], json!({"success": true}));
    let push = watcher.next_push().await;
    assert_eq!(
        push["payload"],
        json!({"recordId": "doc:w", "full": {"t": "hi"}, "version": 1})
    );
    server.stop().await;
}

async fn patch_pushes_reproduce_the_value(backend: Backend) {
    let server = start(backend, OPEN).await;
    let mut client = server.client().await;
    let reply = client.subscribe("doc:p", "patch").await;
    let mut value = reply["record"].clone();
    let steps = [
        json!({"title": "x", "items": [1, 2, 3]}),
        json!({"title": "y", "items": [1, 2, 3, 4]}),
        json!({"items": [4], "nested": {"deep": [true]}}),
        json!("now a string"),
        json!({"back": "to an object"}),
    ];
    for (i, step) in steps.iter().enumerate() {
        server.write("doc:p", step.clone()).await;
        let push = client.next_push().await;
        assert_eq!(push["payload"]["version"], i as u64 + 1);
        apply_push(&mut value, &push);
        assert_eq!(&value, step);
    }
    server.stop().await;
}

async fn subscribers_of_one_mode_get_identical_bytes(backend: Backend) {
    let server = start(backend, OPEN).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.subscribe("doc:bytes", "patch").await;
    b.subscribe("doc:bytes", "patch").await;
    server
        .write("doc:bytes", json!({"k": [1, 2], "z": "é"}))
        .await;
    let (pa, pb) = (a.next_push().await, b.next_push().await);
    assert_eq!(pa.to_string(), pb.to_string());
    server.stop().await;
}

async fn one_clients_writes_apply_in_order(backend: Backend) {
    let server = start(backend, OPEN).await;
    let mut client = server.client().await;
    client.subscribe("doc:order", "full").await;
    // Pipelined: send all, then read all replies.
    for n in 1..=50u64 {
        let write = json!({"recordId": "doc:order", "newValue": {"n": n}});
        client.send_request(1000 + n, PUBLISH, write).await;
    }
    for n in 1..=50u64 {
        assert_eq!(
            client.reply_to(1000 + n).await["payload"],
            json!({"success": true})
        );
    }
    for n in 1..=50u64 {
        let push = client.next_push().await;
        assert_eq!(push["payload"]["full"], json!({"n": n}));
        assert_eq!(push["payload"]["version"], n);
    }
    server.stop().await;
}

async fn pipelined_writes_keep_their_order_while_record_actors_retire(backend: Backend) {
    // Record actors retire as soon as they are idle (a 10 ms tick), so pipelined writes keep
    // arriving while the actor they were routed to is about to stop.
    let server = start(backend, &format!("[server]\nrecord_linger_ms = 1\n{OPEN}")).await;
    let mut client = server.client().await;
    let mut last = std::collections::HashMap::new();
    let mut next_id = 10_000u64;
    for round in 0..60u64 {
        let record = format!("doc:churn{}", round % 3);
        for n in 0..4u64 {
            next_id += 1;
            let value = json!({"round": round, "n": n});
            let write = json!({"recordId": record, "newValue": value});
            client.send_request(next_id, PUBLISH, write).await;
            last.insert(record.clone(), value);
        }
        for id in next_id - 3..=next_id {
            assert_eq!(
                client.reply_to(id).await["payload"],
                json!({"success": true})
            );
        }
        // Let the actor go idle and ask to retire, at varying moments.
        actix_rt::time::sleep(Duration::from_millis(round % 13)).await;
    }
    for (record, value) in last {
        let stored = server.records().get_record(&record).await.unwrap().unwrap();
        assert_eq!(*stored.value, value, "{record} ended on an older write");
    }
    server.stop().await;
}

#[actix_web::test]
async fn an_exposure_added_at_runtime_applies_to_the_next_request() {
    let server = start(Backend::Memory, OPEN).await;
    let mut client = server.client().await;
    assert_eq!(
        client.subscribe("late:1", "full").await,
        json!({"success": false})
    );
    server
        .records()
        .expose(Exposure::pattern("^late:").unwrap().writable());
    // No delay: the session sees the new rule on its very next request.
    assert_eq!(client.subscribe("late:1", "full").await["success"], true);
    assert_eq!(
        client.publish("late:1", json!({"x": 1})).await,
        json!({"success": true})
    );
    assert_eq!(client.next_push().await["payload"]["version"], 1);
    server.stop().await;
}

#[actix_web::test]
async fn record_actors_leave_the_http_workers_before_they_stop() {
    // A client's record actor runs on the client's HTTP worker; stopping the server must let
    // it finish and retire before the worker goes, and later server-side calls still work.
    let server = start(Backend::Memory, OPEN).await;
    let mut client = server.client().await;
    client.subscribe("doc:1", "full").await;
    assert_eq!(
        client.publish("doc:1", json!({"n": 1})).await,
        json!({"success": true})
    );
    assert_eq!(server.records().live_record_actors(), 1);
    server.records().shutdown(Duration::from_secs(2)).await;
    assert_eq!(
        server.records().live_record_actors(),
        0,
        "the worker's record actor retired during shutdown"
    );
    let outcome = server
        .records()
        .write_record("doc:1", json!({"n": 2}), Strategy::Replace)
        .await
        .unwrap();
    assert_eq!(outcome.version, 2);
    server.stop().await;
}

/// The next push of a server subscription, parsed.
async fn next_push(subscription: &mut RecordSubscription) -> Option<Value> {
    let frame = tokio::time::timeout(common::patience(), subscription.next())
        .await
        .expect("a push within patience")?;
    Some(serde_json::from_str(&frame).expect("a push is JSON"))
}

async fn server_code_subscribes_like_a_client(backend: Backend) {
    // Long enough that a patch changing `n` is shorter than the value (a patch subscriber
    // gets whichever is shorter).
    let note = "a value long enough that a patch of one number is the shorter push";
    let server = start(backend, OPEN).await;
    server
        .write("doc:watched", json!({"n": 0, "note": note}))
        .await;
    let records = server.records();
    let mut watching = records
        .subscribe_record("doc:watched", Mode::Patch)
        .await
        .unwrap();
    assert_eq!(watching.snapshot().unwrap().version, 1);
    // A client's write and the server's reach it alike, in order, as patches.
    let mut client = server.client().await;
    assert_eq!(
        client
            .publish("doc:watched", json!({"n": 1, "note": note}))
            .await,
        json!({"success": true})
    );
    server
        .write("doc:watched", json!({"n": 2, "note": note}))
        .await;
    for version in [2, 3] {
        let push = next_push(&mut watching).await.unwrap();
        assert_eq!(push["command"], "mesh/record-update");
        assert_eq!(push["payload"]["version"], version);
        assert!(push["payload"]["patch"].is_array(), "{push}");
    }
    // The deletion is its last frame.
    records.delete_record("doc:watched").await.unwrap();
    let push = next_push(&mut watching).await.unwrap();
    assert_eq!(push["command"], "mesh/record-deleted");
    assert_eq!(next_push(&mut watching).await, None);
    server.stop().await;
}

async fn a_server_subscription_nobody_reads_stays_bounded_and_catches_up_whole(backend: Backend) {
    let server = start(backend, OPEN).await;
    server.write("doc:flood", json!({"n": 0})).await;
    let records = server.records();
    let mut watching = records
        .subscribe_record("doc:flood", Mode::Full)
        .await
        .unwrap();
    // About three times the subscription's budget, written while nobody reads.
    let filler = "x".repeat(64 * 1024);
    let writes = 3 * mesh_records::records::SUBSCRIPTION_BUDGET / filler.len();
    for n in 1..=writes {
        server
            .write("doc:flood", json!({"n": n, "filler": filler}))
            .await;
    }
    let last = 1 + writes as u64;
    // Reading now: versions only go up, some were skipped (the queue was full), and the
    // last one arrives whole.
    let mut seen = Vec::new();
    while seen.last() != Some(&last) {
        let push = next_push(&mut watching).await.unwrap();
        seen.push(push["payload"]["version"].as_u64().unwrap());
        assert!(push["payload"]["full"].is_object(), "full mode");
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert!(
        seen.len() < writes,
        "nothing was skipped: {} pushes",
        seen.len()
    );
    server.stop().await;
}

async fn a_server_subscription_ends_when_the_server_stops(backend: Backend) {
    let server = start(backend, OPEN).await;
    server.write("doc:until-stop", json!({"n": 0})).await;
    let mut watching = server
        .records()
        .subscribe_record("doc:until-stop", Mode::Full)
        .await
        .unwrap();
    server.stop().await;
    // Its record actor stopped with the server, without a deletion: the subscription ends
    // instead of waiting forever.
    assert_eq!(next_push(&mut watching).await, None);
}
