//! Collections under store faults: subscribers on one instance of a fleet sharing a Redis of
//! the test's own see the true membership again after a pub/sub outage and after Redis
//! restarted empty, and a restarted server serves members restored from the database.
//!
//! A subscriber's view is rebuilt from what it was sent (snapshot, then diffs whose versions
//! must follow one another) and compared with the store's own listing.

use crate::common;

use common::own_redis::{OwnRedis, end_blackout, pubsub_blackout};
use common::{Client, TestServer, eventually, patience, start_as_configured, unique_prefix};
use mesh_records::Strategy;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

fn config(prefix: &str, redis_url: &str, extra: &str) -> String {
    format!(
        r#"
[server]
max_requests_per_second = 0
# Record actors stay loaded through the test, as they would with steady traffic.
record_linger_ms = 60000

[store]
backend = "redis"
redis_url = "{redis_url}"
key_prefix = "{prefix}"

[[records.expose]]
pattern = "^item:"
writable = true

[[collections.expose]]
pattern = "^list:(\\w+)$"
members = "item:{{1}}:*"
{extra}
"#
    )
}

/// The ids of the records the store holds under `glob`, read through `server`.
async fn listed(server: &TestServer, glob: &str) -> BTreeSet<String> {
    let listed = server
        .records()
        .collections()
        .list_records_matching(glob, None, 0, usize::MAX)
        .await
        .unwrap();
    listed.into_iter().map(|(id, _)| id.to_string()).collect()
}

/// What one client was told about one collection: the members, and the version of the last
/// diff (each must be the one before plus one).
struct Followed {
    client: Client,
    members: BTreeSet<String>,
    version: u64,
}

impl Followed {
    async fn subscribe(mut client: Client, collection: &str) -> Followed {
        let reply = client
            .request(
                "mesh/subscribe-collection",
                json!({"collectionId": collection}),
            )
            .await;
        assert_eq!(reply["success"], true, "{reply}");
        let members = ids(&reply["ids"]);
        let version = reply["version"].as_u64().unwrap();
        Followed {
            client,
            members,
            version,
        }
    }

    /// Takes in the pushes that arrive within `wait`.
    async fn drain(&mut self, wait: Duration) {
        while let Some(push) = self.client.try_next_push(wait).await {
            if push["command"] != "mesh/collection-diff" {
                continue;
            }
            let diff = &push["payload"];
            assert_eq!(diff["version"], self.version + 1, "a gap: {push}");
            self.version += 1;
            for id in ids_of_members(&diff["removed"]) {
                self.members.remove(&id);
            }
            self.members.extend(ids_of_members(&diff["added"]));
        }
    }

    /// Waits until the members it was told are the store's under `glob`, listed again each
    /// round (write-backs after a restart may still be landing).
    async fn converges_to_store(&mut self, server: &TestServer, glob: &str) {
        let deadline = tokio::time::Instant::now() + patience();
        loop {
            let expected = listed(server, glob).await;
            if self.members == expected {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "told {:?}, the store holds {expected:?}",
                self.members
            );
            self.drain(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the members it was told are `expected`.
    async fn converges_to(&mut self, expected: &BTreeSet<String>) {
        let deadline = tokio::time::Instant::now() + patience();
        while &self.members != expected {
            assert!(
                tokio::time::Instant::now() < deadline,
                "told {:?}, the store holds {expected:?}",
                self.members
            );
            self.drain(Duration::from_millis(100)).await;
        }
    }
}

fn ids(list: &Value) -> BTreeSet<String> {
    let list = list.as_array().expect("a list of ids");
    list.iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

fn ids_of_members(list: &Value) -> Vec<String> {
    let list = list.as_array().expect("a list of members");
    list.iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Changes made on B while A hears nothing reach A's collection subscribers once pub/sub is
/// back: A lists the collection again instead of trusting what it held.
#[actix_web::test]
async fn a_collection_catches_up_after_a_pubsub_outage() {
    let redis = OwnRedis::start();
    let mut raw = redis.connect().await;
    let prefix = unique_prefix("collection-faults-pubsub");
    let toml = config(&prefix, &redis.url(), "");
    let (a, b) = (
        start_as_configured(&toml).await,
        start_as_configured(&toml).await,
    );
    b.write("item:a:1", json!({"n": 1})).await;
    b.write("item:a:2", json!({"n": 2})).await;
    let mut followed = Followed::subscribe(a.client().await, "list:a").await;
    assert_eq!(followed.members, listed(&b, "item:a:*").await);
    // B follows item:a:3 before the outage, so it can create it during the outage (a record
    // an instance does not follow yet cannot be written while pub/sub is down).
    let mut on_b = b.client().await;
    on_b.subscribe("item:a:3", "full").await;

    // Cut every pub/sub connection and keep new ones out.
    pubsub_blackout(&mut raw).await;
    b.write("item:a:3", json!({"n": 3})).await;
    assert_eq!(
        b.records().delete_record("item:a:1").await.unwrap(),
        Some(1)
    );
    end_blackout(&mut raw).await;

    let expected = BTreeSet::from(["item:a:2".to_owned(), "item:a:3".to_owned()]);
    assert_eq!(listed(&b, "item:a:*").await, expected);
    followed.converges_to(&expected).await;
    // And it keeps following.
    b.write("item:a:4", json!({"n": 4})).await;
    followed.converges_to(&listed(&b, "item:a:*").await).await;
    a.stop().await;
    b.stop().await;
}

/// Redis restarts empty under a subscribed collection: what subscribers are told comes back
/// to what the store holds, and writes after the restart reach them.
#[actix_web::test]
async fn a_collection_follows_the_store_after_redis_restarted_empty() {
    let mut redis = OwnRedis::start();
    let prefix = unique_prefix("collection-faults-restart");
    let a = start_as_configured(&config(&prefix, &redis.url(), "")).await;
    a.write("item:r:1", json!({"n": 1})).await;
    a.write("item:r:2", json!({"n": 2})).await;
    let mut followed = Followed::subscribe(a.client().await, "list:r").await;

    redis.restart();
    // Writes fail until the instance has reconnected; then one lands.
    eventually("a write after the restart", patience(), async || {
        a.records()
            .write_record("item:r:3", json!({"n": 3}), Strategy::Replace)
            .await
            .is_ok()
    })
    .await;
    // The store holds what survived (write-backs of records the instance held) plus the new
    // write; subscribers converge to exactly that.
    eventually("the store settles", patience(), async || {
        listed(&a, "item:r:*").await.contains("item:r:3")
    })
    .await;
    followed.converges_to_store(&a, "item:r:*").await;
    a.stop().await;
}

/// A server started on an empty Redis restores persisted members from the database before it
/// serves: a collection subscribed then lists them.
#[actix_web::test]
async fn a_restarted_server_serves_members_restored_from_the_database() {
    let mut redis = OwnRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("records.db");
    let persisted = format!(
        r#"
[persistence]
sqlite_path = "{}"

[[records.persist]]
write_pattern = "^item:"
restore_pattern = "item:%"
flush_interval_ms = 50
"#,
        db.display()
    );
    let prefix = unique_prefix("collection-faults-restore");
    let toml = config(&prefix, &redis.url(), &persisted);
    let a = start_as_configured(&toml).await;
    for n in 1..=3 {
        a.write(&format!("item:p:{n}"), json!({"n": n})).await;
    }
    assert_eq!(
        a.records().delete_record("item:p:2").await.unwrap(),
        Some(1)
    );
    a.stop().await;

    redis.restart();
    let b = start_as_configured(&toml).await;
    let followed = Followed::subscribe(b.client().await, "list:p").await;
    let expected = BTreeSet::from(["item:p:1".to_owned(), "item:p:3".to_owned()]);
    assert_eq!(followed.members, expected);
    b.stop().await;
}
