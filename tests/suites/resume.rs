//! Beyond Mesh: resuming a subscription from a version, conditional writes, and the history
//! behind both, over real WebSockets, on the memory store and on two instances sharing Redis.

use crate::common;

use common::{Backend, Client, TestServer, start, unique_prefix};
use mesh_bench::wire::PUBLISH;
use mesh_records::Strategy;
use serde_json::{Value, json};

const OPEN: &str = r#"
[admin]
token = "admin-secret"

[[records.expose]]
pattern = "^doc:"
writable = true
"#;

on_every_store!(
    with_cluster:
    a_patch_subscriber_resumes_from_the_version_it_holds,
    resume_falls_back_to_a_snapshot_when_it_cannot_follow,
    history_is_trimmed_by_count_and_by_bytes,
    a_deleted_and_recreated_record_is_never_resumed,
    conditional_writes_apply_only_at_the_expected_version,
    the_admin_api_has_etags_if_match_and_history,
);

async fn put(server: &TestServer, id: &str, value: Value) -> u64 {
    server
        .records()
        .write_record(id, value, Strategy::Replace)
        .await
        .unwrap()
        .version
}

async fn subscribe_since(client: &mut Client, id: &str, mode: &str, since: Value) -> Value {
    client
        .request(
            "mesh/subscribe-record",
            json!({"recordId": id, "mode": mode, "sinceVersion": since}),
        )
        .await
}

/// Applies a patch push to `value`, checking it is exactly the next version.
fn follow(value: &mut Value, version: &mut u64, push: &Value) {
    let payload = &push["payload"];
    assert_eq!(payload["version"], *version + 1, "{push}");
    let patch: json_patch::Patch = serde_json::from_value(payload["patch"].clone())
        .unwrap_or_else(|_| panic!("a patch push: {push}"));
    json_patch::patch(value, &patch).unwrap();
    *version += 1;
}

fn doc(n: u64) -> Value {
    json!({"title": "a long enough title that patches stay smaller", "n": n, "tags": ["a", "b"]})
}

async fn a_patch_subscriber_resumes_from_the_version_it_holds(backend: Backend) {
    let server = start(backend, OPEN).await;
    put(&server, "doc:r", doc(1)).await;
    let mut first = server.client().await;
    let reply = first.subscribe("doc:r", "patch").await;
    let (mut value, mut version) = (reply["record"].clone(), 1u64);
    first.close().await;
    // Missed while away.
    for n in 2..=4 {
        put(&server, "doc:r", doc(n)).await;
    }
    let mut again = server.client().await;
    let reply = subscribe_since(&mut again, "doc:r", "patch", json!(1)).await;
    assert_eq!(
        reply,
        json!({"success": true, "resumed": true, "version": 1})
    );
    for _ in 2..=4 {
        let push = again.next_push().await;
        follow(&mut value, &mut version, &push);
    }
    assert_eq!(value, doc(4));
    // Then live updates continue from there.
    put(&server, "doc:r", doc(5)).await;
    let push = again.next_push().await;
    follow(&mut value, &mut version, &push);
    assert_eq!(value, doc(5));
    // Holding the current version: resumed, nothing sent; in full mode too.
    let mut current = server.client().await;
    for mode in ["patch", "full"] {
        let reply = subscribe_since(&mut current, "doc:r", mode, json!(5)).await;
        assert_eq!(
            reply,
            json!({"success": true, "resumed": true, "version": 5})
        );
    }
    server
        .assert_nothing_pushed_before_marker(&mut current, "doc:marker")
        .await;
    server.stop().await;
}

async fn resume_falls_back_to_a_snapshot_when_it_cannot_follow(backend: Backend) {
    let server = start(backend, OPEN).await;
    for n in 1..=3 {
        put(&server, "doc:f", doc(n)).await;
    }
    let mut client = server.client().await;
    let snapshot = json!({"success": true, "record": doc(3), "version": 3, "resumed": false});
    // Ahead of the record, not a version, or a full-mode subscriber that missed versions.
    for since in [json!(7), json!(-1), json!("2"), json!(1.5)] {
        let reply = subscribe_since(&mut client, "doc:f", "patch", since).await;
        assert_eq!(reply, snapshot);
    }
    let reply = subscribe_since(&mut client, "doc:f", "full", json!(2)).await;
    assert_eq!(reply, snapshot);
    // A Mesh client never sends it and sees the reply it always saw.
    let reply = client.subscribe("doc:f", "patch").await;
    assert_eq!(
        reply,
        json!({"success": true, "record": doc(3), "version": 3})
    );
    server.stop().await;
}

async fn history_is_trimmed_by_count_and_by_bytes(backend: Backend) {
    let by_count = format!("[records]\nhistory_versions = 3\n{OPEN}");
    let server = start(backend, &by_count).await;
    for n in 1..=10 {
        put(&server, "doc:c", doc(n)).await;
    }
    let mut client = server.client().await;
    // Versions 8, 9 and 10 are kept: 7 can resume, 6 cannot.
    let reply = subscribe_since(&mut client, "doc:c", "patch", json!(7)).await;
    assert_eq!(reply["resumed"], true);
    let reply = subscribe_since(&mut client, "doc:c", "patch", json!(6)).await;
    assert_eq!(reply["resumed"], false);
    server.stop().await;

    // Each change of this record is about 60 bytes: 150 bytes keep two of them.
    let by_bytes = format!("[records]\nhistory_bytes = 150\n{OPEN}");
    let server = start(backend, &by_bytes).await;
    for n in 1..=10 {
        put(&server, "doc:b", json!({"n": n})).await;
    }
    let mut client = server.client().await;
    let reply = subscribe_since(&mut client, "doc:b", "patch", json!(8)).await;
    assert_eq!(reply["resumed"], true);
    let reply = subscribe_since(&mut client, "doc:b", "patch", json!(5)).await;
    assert_eq!(reply["resumed"], false);
    server.stop().await;

    // history_versions = 0 turns it off.
    let off = format!("[records]\nhistory_versions = 0\n{OPEN}");
    let server = start(backend, &off).await;
    put(&server, "doc:o", json!(1)).await;
    put(&server, "doc:o", json!(2)).await;
    let mut client = server.client().await;
    let reply = subscribe_since(&mut client, "doc:o", "patch", json!(1)).await;
    assert_eq!(reply["resumed"], false);
    server.stop().await;
}

async fn a_deleted_and_recreated_record_is_never_resumed(backend: Backend) {
    let server = start(backend, OPEN).await;
    put(&server, "doc:d", doc(1)).await;
    put(&server, "doc:d", doc(2)).await;
    server.records().delete_record("doc:d").await.unwrap();
    assert_eq!(put(&server, "doc:d", doc(9)).await, 3);
    let mut client = server.client().await;
    for since in [1, 2] {
        let reply = subscribe_since(&mut client, "doc:d", "patch", json!(since)).await;
        assert_eq!(
            reply,
            json!({"success": true, "record": doc(9), "version": 3, "resumed": false})
        );
    }
    // While deleted, nothing can be resumed either.
    server.records().delete_record("doc:d").await.unwrap();
    let reply = subscribe_since(&mut client, "doc:d", "patch", json!(3)).await;
    assert_eq!(reply["resumed"], false);
    assert_eq!(reply["record"], Value::Null);
    server.stop().await;
}

async fn conditional_writes_apply_only_at_the_expected_version(backend: Backend) {
    let server = start(backend, OPEN).await;
    let mut client = server.client().await;
    let write = |value: Value, expected: Value| json!({"recordId": "doc:c", "newValue": value, "options": {"expectedVersion": expected}});
    // 0: only if it does not exist.
    let created = client
        .request(
            "mesh/publish-record-update",
            write(json!({"a": 1}), json!(0)),
        )
        .await;
    assert_eq!(created, json!({"success": true}));
    let again = client
        .request(
            "mesh/publish-record-update",
            write(json!({"a": 2}), json!(0)),
        )
        .await;
    assert_eq!(
        again,
        json!({"error": "the record is at version 1, not the expected one",
               "code": "EVERSION", "name": "VersionMismatchError", "version": 1})
    );
    let ok = client
        .request(
            "mesh/publish-record-update",
            write(json!({"a": 3}), json!(1)),
        )
        .await;
    assert_eq!(ok, json!({"success": true}));
    let bad = client
        .request(
            "mesh/publish-record-update",
            write(json!({"a": 4}), json!("2")),
        )
        .await;
    assert_eq!(bad["code"], "EINVALID");
    let stored = server.records().get_record("doc:c").await.unwrap().unwrap();
    assert_eq!((stored.version, &*stored.value), (2, &json!({"a": 3})));

    // Eight writers expecting the same version: exactly one wins.
    let mut writers = Vec::new();
    for _ in 0..8 {
        writers.push(server.client().await);
    }
    for (n, writer) in writers.iter_mut().enumerate() {
        writer
            .send_request(1, PUBLISH, write(json!({"writer": n}), json!(2)))
            .await;
    }
    let mut wins = 0;
    for writer in &mut writers {
        let reply = writer.reply_to(1).await["payload"].clone();
        if reply == json!({"success": true}) {
            wins += 1;
        } else {
            assert_eq!(reply["code"], "EVERSION", "{reply}");
            assert_eq!(reply["version"], 3);
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(
        server
            .records()
            .write_record_if("doc:c", json!(0), Strategy::Replace, 2)
            .await
            .unwrap_err()
            .code(),
        "EVERSION"
    );
    server.stop().await;
}

async fn the_admin_api_has_etags_if_match_and_history(backend: Backend) {
    let server = start(backend, OPEN).await;
    let url = format!("{}/api/records/doc:h", server.http);
    let client = awc::Client::default();
    let auth = ("authorization", "Bearer admin-secret");
    for n in 1..=3 {
        put(&server, "doc:h", doc(n)).await;
    }
    let response = client.get(&url).insert_header(auth).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers().get("etag").unwrap(), "\"3\"");

    let mut stale = client
        .put(&url)
        .insert_header(auth)
        .insert_header(("if-match", "\"2\""))
        .send_body(r#"{"n":"stale"}"#)
        .await
        .unwrap();
    assert_eq!(stale.status().as_u16(), 412);
    let body: Value = serde_json::from_slice(&stale.body().await.unwrap()).unwrap();
    assert_eq!(body["version"], 3);
    let fresh = client
        .put(&url)
        .insert_header(auth)
        .insert_header(("if-match", "\"3\""))
        .send_body(serde_json::to_string(&doc(4)).unwrap())
        .await
        .unwrap();
    assert_eq!(fresh.status().as_u16(), 200);

    let mut history = client
        .get(format!("{url}/history?since=2"))
        .insert_header(auth)
        .send()
        .await
        .unwrap();
    assert_eq!(history.status().as_u16(), 200);
    let body: Value = serde_json::from_slice(&history.body().await.unwrap()).unwrap();
    assert_eq!(body["recordId"], "doc:h");
    assert_eq!(body["version"], 4);
    let changes = body["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2);
    let mut value = doc(2);
    for (change, version) in changes.iter().zip([3, 4]) {
        assert_eq!(change["version"], version);
        let patch: json_patch::Patch = serde_json::from_value(change["patch"].clone()).unwrap();
        json_patch::patch(&mut value, &patch).unwrap();
    }
    assert_eq!(value, doc(4));
    let gone = client
        .get(format!("{url}/history?since=0"))
        .insert_header(auth)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status().as_u16(), 410);

    let wrong = client
        .delete(&url)
        .insert_header(auth)
        .insert_header(("if-match", "\"3\""))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 412);
    let right = client
        .delete(&url)
        .insert_header(auth)
        .insert_header(("if-match", "\"4\""))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status().as_u16(), 200);
    server.stop().await;
}

#[actix_web::test]
async fn a_client_resumes_on_another_instance_for_writes_made_on_the_first() {
    let prefix = unique_prefix("resume");
    let toml = format!("[store]\nkey_prefix = \"{prefix}\"\n{OPEN}");
    let a = start(Backend::Redis, &toml).await;
    let b = start(Backend::Redis, &toml).await;
    put(&a, "doc:x", doc(1)).await;
    let mut on_a = a.client().await;
    let reply = on_a.subscribe("doc:x", "patch").await;
    let (mut value, mut version) = (reply["record"].clone(), 1u64);
    on_a.close().await;
    for n in 2..=3 {
        put(&a, "doc:x", doc(n)).await;
    }
    // B has never loaded doc:x: it reads the history from Redis.
    let mut on_b = b.client().await;
    let reply = subscribe_since(&mut on_b, "doc:x", "patch", json!(1)).await;
    assert_eq!(reply["resumed"], true);
    for _ in 2..=3 {
        let push = on_b.next_push().await;
        follow(&mut value, &mut version, &push);
    }
    assert_eq!(value, doc(3));
    // And B, now following, resumes the next client from its own copy.
    put(&a, "doc:x", doc(4)).await;
    follow(&mut value, &mut version, &on_b.next_push().await);
    let mut later = b.client().await;
    let reply = subscribe_since(&mut later, "doc:x", "patch", json!(3)).await;
    assert_eq!(reply["resumed"], true);
    a.stop().await;
    b.stop().await;
}

#[actix_web::test]
async fn history_lost_with_redis_is_never_resumed_across() {
    use common::own_redis::{OwnRedis, run};
    let redis = OwnRedis::start();
    let prefix = unique_prefix("resume-lost");
    let toml = format!(
        "[server]\nrecord_linger_ms = 60000\n[store]\nbackend = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"\n{OPEN}",
        redis.url()
    );
    let start_own = || async {
        let running = mesh_records::start(common::test_config(&toml))
            .await
            .unwrap();
        let ws = format!("ws://{}/ws", running.addr);
        (running, ws)
    };
    let (a, a_ws) = start_own().await;
    let mut watcher = Client::connect(&a_ws).await;
    watcher.subscribe("doc:l", "patch").await;
    for n in 1..=3 {
        a.records
            .write_record("doc:l", doc(n), Strategy::Replace)
            .await
            .unwrap();
    }
    // Redis loses everything; A writes its copy back, past any version shown before (3 plus
    // the write-back jump), without history.
    let mut raw = redis.connect().await;
    run(&mut raw, &["FLUSHALL"]).await;
    run(&mut raw, &["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    let version_key = format!("{prefix}record-version:doc:l");
    common::eventually("the write-back", common::patience() * 2, async || {
        let version: Option<String> = ::redis::cmd("GET")
            .arg(&version_key)
            .query_async(&mut raw)
            .await
            .unwrap();
        version.as_deref() == Some("1000003")
    })
    .await;
    // A second instance loads from Redis: there is no history to resume from.
    let (b, b_ws) = start_own().await;
    let mut client = Client::connect(&b_ws).await;
    let reply = subscribe_since(&mut client, "doc:l", "patch", json!(2)).await;
    assert_eq!(reply["resumed"], false);
    assert_eq!(reply["version"], 1_000_003);
    a.stop().await;
    b.stop().await;
}

#[actix_web::test]
async fn eight_conditional_writers_on_two_instances_exactly_one_wins() {
    let prefix = unique_prefix("conditional");
    let toml = format!("[store]\nkey_prefix = \"{prefix}\"\n{OPEN}");
    let a = start(Backend::Redis, &toml).await;
    let b = start(Backend::Redis, &toml).await;
    put(&a, "doc:race", json!({"n": 0})).await;
    // Both instances hold version 1 before the race.
    assert_eq!(
        b.records()
            .get_record("doc:race")
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    for round in 0..5u64 {
        let expected = round + 1;
        let mut writers = Vec::new();
        for n in 0..8 {
            let server = if n % 2 == 0 { &a } else { &b };
            writers.push(server.client().await);
        }
        for (n, writer) in writers.iter_mut().enumerate() {
            let payload = json!({"recordId": "doc:race", "newValue": {"writer": n, "round": round},
                                 "options": {"expectedVersion": expected}});
            writer.send_request(1, PUBLISH, payload).await;
        }
        let mut wins = Vec::new();
        for (n, writer) in writers.iter_mut().enumerate() {
            let reply = writer.reply_to(1).await["payload"].clone();
            if reply == json!({"success": true}) {
                wins.push(n);
            } else {
                assert_eq!(reply["code"], "EVERSION", "{reply}");
                assert_eq!(reply["version"], expected + 1, "{reply}");
            }
        }
        assert_eq!(wins.len(), 1, "round {round}: winners {wins:?}");
        let stored = a.records().get_record("doc:race").await.unwrap().unwrap();
        assert_eq!(stored.version, expected + 1);
        assert_eq!(*stored.value, json!({"writer": wins[0], "round": round}));
    }
    a.stop().await;
    b.stop().await;
}
