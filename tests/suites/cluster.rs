//! Several server instances sharing one Redis (or one Redis Cluster): cross-instance fan-out,
//! concurrent writers with no lost, duplicated or reordered versions, and Redis outages.

use crate::common;

use common::own_redis::OwnRedis;
use common::{Backend, Client, TestServer, start, unique_prefix};
use mesh_bench::wire::PUBLISH;
use mesh_records::Strategy;
use serde_json::{Value, json};
use std::time::Duration;

fn config(prefix: &str, extra: &str) -> String {
    format!(
        r#"
[server]
max_requests_per_second = 0
{extra}

[store]
key_prefix = "{prefix}"

[[records.expose]]
pattern = "^doc:"
writable = true
"#
    )
}

async fn two_instances(backend: Backend, extra: &str) -> (TestServer, TestServer) {
    let prefix = unique_prefix("cluster");
    let a = start(backend, &config(&prefix, extra)).await;
    let b = start(backend, &config(&prefix, extra)).await;
    (a, b)
}

/// The cross-instance tests, on one Redis and on a Redis Cluster (the test binary's own).
macro_rules! on_both_redis_backends {
    ($($name:ident),* $(,)?) => {
        mod redis {
            $(#[actix_web::test] async fn $name() { super::$name(super::Backend::Redis).await })*
        }
        mod redis_cluster {
            $(#[actix_web::test] async fn $name() {
                super::$name(super::Backend::RedisCluster).await
            })*
        }
    };
}

on_both_redis_backends!(
    writes_on_one_instance_reach_subscribers_on_the_other,
    concurrent_writers_on_two_instances_lose_nothing,
);

/// Follows a subscription: checks every push is exactly the next version and keeps the value.
struct Follower {
    client: Client,
    value: Value,
    version: u64,
}

impl Follower {
    async fn subscribe(server: &TestServer, record: &str, mode: &str) -> Follower {
        let mut client = server.client().await;
        let reply = client.subscribe(record, mode).await;
        assert_eq!(reply["success"], true, "{reply}");
        Follower {
            client,
            value: reply["record"].clone(),
            version: reply["version"].as_u64().unwrap(),
        }
    }

    async fn follow_to(&mut self, last: u64) {
        while self.version < last {
            let push = self.client.next_push_of("mesh/record-update").await;
            let payload = &push["payload"];
            let version = payload["version"].as_u64().unwrap();
            assert_eq!(version, self.version + 1, "gap or duplicate: {push}");
            if let Some(full) = payload.get("full") {
                self.value = full.clone();
            } else {
                if self.value.is_null() {
                    self.value = json!({});
                }
                let patch: json_patch::Patch =
                    serde_json::from_value(payload["patch"].clone()).unwrap();
                json_patch::patch(&mut self.value, &patch).unwrap();
            }
            self.version = version;
        }
    }
}

async fn writes_on_one_instance_reach_subscribers_on_the_other(backend: Backend) {
    let (a, b) = two_instances(backend, "").await;
    let mut full = Follower::subscribe(&b, "doc:x", "full").await;
    let mut patch = Follower::subscribe(&b, "doc:x", "patch").await;
    let mut writer = a.client().await;
    for n in 1..=5u64 {
        let value = json!({"n": n, "text": "some text that keeps patches smaller than values"});
        assert_eq!(
            writer.publish("doc:x", value).await,
            json!({"success": true})
        );
    }
    full.follow_to(5).await;
    patch.follow_to(5).await;
    assert_eq!(full.value, patch.value);
    assert_eq!(patch.value["n"], 5);
    // A deletion on A ends the subscriptions on B.
    assert_eq!(a.records().delete_record("doc:x").await.unwrap(), Some(5));
    for follower in [&mut full, &mut patch] {
        let push = follower.client.next_push_of("mesh/record-deleted").await;
        assert_eq!(push["payload"], json!({"recordId": "doc:x", "version": 5}));
    }
    // And a write on B after that creates it again, continuing after the tombstone (6), seen
    // on A: a version never names two values.
    let mut on_a = Follower::subscribe(&a, "doc:x", "patch").await;
    b.write("doc:x", json!({"again": true})).await;
    on_a.follow_to(6).await;
    assert_eq!(on_a.value, json!({"again": true}));
    a.stop().await;
    b.stop().await;
}

async fn concurrent_writers_on_two_instances_lose_nothing(backend: Backend) {
    const WRITERS: u64 = 8;
    const WRITES: u64 = 500;
    let (a, b) = two_instances(backend, "").await;
    let mut followers = Vec::new();
    for server in [&a, &b] {
        for mode in ["full", "patch"] {
            followers.push(Follower::subscribe(server, "doc:hot", mode).await);
        }
    }
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let url = if w % 2 == 0 {
            a.ws.clone()
        } else {
            b.ws.clone()
        };
        writers.push(actix_rt::spawn(async move {
            let mut client = Client::connect(&url).await;
            // Pipelined, 16 in flight, as a busy client would.
            let mut acknowledged = 0;
            for k in 0..WRITES {
                let write = json!({"recordId": "doc:hot", "newValue": {"writer": w, "seq": k}});
                client.send_request(k + 1, PUBLISH, write).await;
                if k >= 16 {
                    let reply = client.reply_to(k + 1 - 16).await;
                    assert_eq!(reply["payload"], json!({"success": true}), "{reply}");
                    acknowledged += 1;
                }
            }
            for k in (WRITES - 16)..WRITES {
                let reply = client.reply_to(k + 1).await;
                assert_eq!(reply["payload"], json!({"success": true}), "{reply}");
                acknowledged += 1;
            }
            acknowledged
        }));
    }
    let mut acknowledged = 0;
    for writer in writers {
        acknowledged += writer.await.unwrap();
    }
    assert_eq!(acknowledged, WRITERS * WRITES);
    let total = WRITERS * WRITES;
    // Instance a learns b's last writes by pub/sub, which may still be on its way when the
    // last acknowledgement reaches the test.
    common::eventually(
        "instance a holds the last version",
        common::patience(),
        async || {
            let held = a.records().get_record("doc:hot").await.unwrap().unwrap();
            held.version >= total
        },
    )
    .await;
    let stored = a.records().get_record("doc:hot").await.unwrap().unwrap();
    assert_eq!(
        stored.version, total,
        "every acknowledged write has its own version"
    );
    assert_eq!(
        stored.value["seq"],
        WRITES - 1,
        "the final value is some writer's last write"
    );
    // A marker written after the last write: each follower's next update is exactly it, so
    // no duplicate of an earlier version was on its way.
    let marker = a
        .records()
        .write_record("doc:hot", common::fresh_marker(), Strategy::Replace)
        .await
        .unwrap();
    assert_eq!(marker.version, total + 1);
    for follower in &mut followers {
        follower.follow_to(total).await;
        assert_eq!(follower.value, *stored.value);
        follower.client.expect_marker("doc:hot", total + 1).await;
    }
    a.stop().await;
    b.stop().await;
}

/// Reads pushes until `version`, asserting that versions only ever increase.
async fn read_increasing(client: &mut Client, last: &mut u64, until: u64) {
    while *last < until {
        let push = client.next_push_of("mesh/record-update").await;
        let version = push["payload"]["version"].as_u64().unwrap();
        assert!(version > *last, "version went from {last} to {version}");
        *last = version;
    }
}

#[actix_web::test]
async fn a_redis_restart_fails_writes_fast_then_resyncs_without_going_back() {
    let mut redis = OwnRedis::start();
    // SAFETY of the env var: only this test binary's Redis tests read it, at server start.
    let prefix = unique_prefix("restart");
    let toml = config(&prefix, "").replace(
        "[store]",
        &format!(
            "[store]\nbackend = \"redis\"\nredis_url = \"{}\"",
            redis.url()
        ),
    );
    let start_on_own_redis = || async {
        let config = common::test_config(&toml);
        let running = mesh_records::start(config)
            .await
            .expect("starts on the test's Redis");
        format!("ws://{}/ws", running.addr)
            .parse::<String>()
            .map(|ws| (running, ws))
            .unwrap()
    };
    let (a, a_ws) = start_on_own_redis().await;
    let (b, b_ws) = start_on_own_redis().await;
    let mut on_a = Client::connect(&a_ws).await;
    let mut on_b = Client::connect(&b_ws).await;
    on_a.subscribe("doc:r", "patch").await;
    on_b.subscribe("doc:r", "full").await;
    let mut writer = Client::connect(&a_ws).await;
    for n in 1..=20u64 {
        assert_eq!(
            writer.publish("doc:r", json!({"n": n})).await,
            json!({"success": true})
        );
    }
    let (mut seen_a, mut seen_b) = (0, 0);
    read_increasing(&mut on_a, &mut seen_a, 20).await;
    read_increasing(&mut on_b, &mut seen_b, 20).await;

    // Load through the outage: another client writes on B all along, ignoring failures.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load = {
        let (stop, acknowledged, url) = (stop.clone(), acknowledged.clone(), b_ws.clone());
        actix_rt::spawn(async move {
            let mut client = Client::connect(&url).await;
            let mut n = 1000u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let reply = client
                    .try_request(
                        "mesh/publish-record-update",
                        json!({"recordId": "doc:r", "newValue": {"n": n}}),
                    )
                    .await;
                if reply == Some(json!({"success": true})) {
                    acknowledged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    };
    // The kill lands in the middle of the load: a few of its writes have gone through.
    common::eventually("the load to be writing", common::patience(), async || {
        acknowledged.load(std::sync::atomic::Ordering::Relaxed) >= 3
    })
    .await;
    redis.kill();
    let started = std::time::Instant::now();
    // The first write after the kill goes out on the dead connection: whether Redis ran it
    // cannot be known, and the reply says so. Once the connection is known dead, writes are
    // refused at once and say nothing was written.
    let reply = writer.publish("doc:r", json!({"n": 999})).await;
    assert!(
        ["EUNAVAILABLE", "EUNKNOWN"].contains(&reply["code"].as_str().unwrap_or_default())
            || reply == json!({"success": true}),
        "{reply}"
    );
    let reply = loop {
        let reply = writer.publish("doc:r", json!({"n": 998})).await;
        if reply["code"] != "EUNKNOWN" {
            break reply;
        }
    };
    assert_eq!(reply["code"], "EUNAVAILABLE", "{reply}");
    // The client learns what happened, never the Redis error text.
    assert_eq!(reply["error"], "record store unavailable, try again");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    // Sessions stay connected through the outage.
    assert_eq!(on_b.request("mesh/noop", json!({})).await, json!(true));

    redis.restart();
    // Redis came back empty; the records' actors write their state back, and writes go on
    // from version 21 on both instances.
    let deadline = std::time::Instant::now() + common::patience() * 3;
    loop {
        let reply = writer.publish("doc:r", json!({"n": 21})).await;
        if reply == json!({"success": true}) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "writes did not recover: {reply}"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();
    let last = writer.publish("doc:r", json!({"n": "last"})).await;
    assert_eq!(last, json!({"success": true}));
    let stored = a.records.get_record("doc:r").await.unwrap().unwrap();
    assert_eq!(&*stored.value, &json!({"n": "last"}));
    // Every subscriber, on either instance, reaches the last version and never went back.
    read_increasing(&mut on_a, &mut seen_a, stored.version).await;
    read_increasing(&mut on_b, &mut seen_b, stored.version).await;
    a.stop().await;
    b.stop().await;
}
