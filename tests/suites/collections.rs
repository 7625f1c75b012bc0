//! Collections over real WebSocket connections (`mesh/subscribe-collection`): Mesh's wire
//! shapes and behaviours (snapshot, diffs with gap-free versions, member updates, deletes,
//! unsubscribe), and what this server adds (read guards filter members, collection guards,
//! sort and limit, patch mode, many instances). Every test runs on each store backend.

use crate::common;

use common::{Backend, Client, TestServer, start, start_with, unique_prefix, user_from_query};
use mesh_records::collections::CollectionExposure;
use mesh_records::{Exposure, Guard};
use serde_json::{Value, json};
use std::collections::BTreeSet;

const SUBSCRIBE: &str = "mesh/subscribe-collection";
const UNSUBSCRIBE: &str = "mesh/unsubscribe-collection";
const DIFF: &str = "mesh/collection-diff";

const LISTS: &str = r#"
[[records.expose]]
pattern = "^item:"
writable = true

[[collections.expose]]
pattern = "^list:(\\w+)$"
members = "item:{1}:*"

[[collections.expose]]
id = "members-only"
members = "item:*"
guard = { require_metadata = "userId" }

[[collections.expose]]
pattern = "^top:(\\w+)$"
members = "item:{1}:*"
sort = "/order"
limit = 2
"#;

on_every_store!(
    with_cluster:
    the_snapshot_lists_members_in_mesh_shape,
    adds_updates_and_deletes_arrive_as_mesh_sends_them,
    unexposed_and_guarded_collections_are_refused_in_mesh_shape,
    members_a_connection_may_not_read_are_left_out,
    a_new_first_member_pushes_the_last_one_out_in_the_same_diff,
    versions_stay_gap_free_under_churn,
    patch_mode_sends_member_changes_as_patches,
    a_metadata_change_runs_the_guards_again,
    unsubscribe_and_disconnect_end_the_pushes,
    a_returning_client_resumes_with_only_what_changed,
);

/// `item:s:*` records, readable only by the connection whose `userId` is "boss".
fn boss_only() -> Exposure {
    let boss = Guard::sync(|conn, _| conn.metadata_field("userId") == Some(json!("boss")));
    Exposure::pattern("^item:s:").unwrap().guard(boss)
}

async fn subscribe(client: &mut Client, collection: &str) -> Value {
    client
        .request(SUBSCRIBE, json!({"collectionId": collection}))
        .await
}

/// The next push that is a collection diff or a record update (pings skipped).
async fn next_change(client: &mut Client) -> Value {
    loop {
        let push = client.next_push().await;
        if push["command"] != "ping" {
            return push;
        }
    }
}

/// Writes `marker`, a new member of a collection `client` follows, and waits for the diff that
/// adds it and then its value, failing on any other push (but pings) that comes first. The
/// collection handles its members' changes in order, so this shows that nothing was coming
/// from what happened before. Returns the diff's version.
async fn expect_member_marker(server: &TestServer, client: &mut Client, marker: &str) -> u64 {
    server.write(marker, common::fresh_marker()).await;
    let diff = next_change(client).await;
    assert_eq!(
        diff["command"], DIFF,
        "a push before the marker {marker}: {diff}"
    );
    assert_eq!(
        diff["payload"]["added"][0]["id"], marker,
        "a diff before the marker: {diff}"
    );
    let update = next_change(client).await;
    assert_eq!(update["payload"]["recordId"], marker, "{update}");
    diff["payload"]["version"].as_u64().unwrap()
}

async fn the_snapshot_lists_members_in_mesh_shape(backend: Backend) {
    let server = start(backend, LISTS).await;
    server.write("item:a:2", json!({"title": "two"})).await;
    server
        .write("item:a:1", json!({"title": "one", "id": "ignored"}))
        .await;
    server.write("item:a:3", json!(3)).await;
    server
        .write("item:b:1", json!({"title": "other list"}))
        .await;
    let mut client = server.client().await;
    let reply = subscribe(&mut client, "list:a").await;
    assert_eq!(
        reply,
        json!({
            "success": true,
            "ids": ["item:a:1", "item:a:2", "item:a:3"],
            "records": [
                {"id": "item:a:1", "record": {"title": "one", "id": "item:a:1"}, "version": 1},
                {"id": "item:a:2", "record": {"title": "two", "id": "item:a:2"}, "version": 1},
                {"id": "item:a:3", "record": {"value": 3, "id": "item:a:3"}, "version": 1},
            ],
            "version": 1
        })
    );
    let empty = subscribe(&mut client, "list:nothing").await;
    assert_eq!(
        empty,
        json!({"success": true, "ids": [], "records": [], "version": 1})
    );
    server.stop().await;
}

async fn adds_updates_and_deletes_arrive_as_mesh_sends_them(backend: Backend) {
    let server = start(backend, LISTS).await;
    server.write("item:a:1", json!({"n": 1})).await;
    let mut client = server.client().await;
    subscribe(&mut client, "list:a").await;

    // A new member: the diff, then its value as a record update (Mesh's `changed`).
    let mut writer = server.client().await;
    writer.publish("item:a:2", json!({"n": 2})).await;
    let diff = next_change(&mut client).await;
    assert_eq!(
        diff,
        json!({"command": DIFF, "payload": {"collectionId": "list:a",
            "added": [{"n": 2, "id": "item:a:2"}], "removed": [], "version": 2}})
    );
    let update = next_change(&mut client).await;
    assert_eq!(
        update["payload"],
        json!({"recordId": "item:a:2", "full": {"n": 2}, "version": 1})
    );

    // A member's new value: a record update, no diff.
    writer.publish("item:a:1", json!({"n": 10})).await;
    let update = next_change(&mut client).await;
    assert_eq!(update["command"], "mesh/record-update");
    assert_eq!(
        update["payload"],
        json!({"recordId": "item:a:1", "full": {"n": 10}, "version": 2})
    );

    // A write outside the collection: nothing (the next diff is a marker's, at version 3).
    writer.publish("item:b:1", json!({"n": 0})).await;
    assert_eq!(
        expect_member_marker(&server, &mut client, "item:a:m1").await,
        3
    );

    // A deleted member: removed, by id; and nothing after it.
    server.records().delete_record("item:a:2").await.unwrap();
    let diff = next_change(&mut client).await;
    assert_eq!(
        diff["payload"],
        json!({"collectionId": "list:a", "added": [], "removed": [{"id": "item:a:2"}],
            "version": 4})
    );
    assert_eq!(
        expect_member_marker(&server, &mut client, "item:a:m2").await,
        5
    );
    server.stop().await;
}

async fn unexposed_and_guarded_collections_are_refused_in_mesh_shape(backend: Backend) {
    let refused = json!({"success": false, "ids": [], "records": [], "version": 0});
    let server = start_with(backend, LISTS, |b| b.authenticate(user_from_query())).await;
    server.write("item:x:1", json!({"n": 1})).await;
    let mut anonymous = server.client().await;
    assert_eq!(subscribe(&mut anonymous, "nothing:here").await, refused);
    assert_eq!(subscribe(&mut anonymous, "members-only").await, refused);
    let mut member = Client::connect(&format!("{}?user=ann", server.ws)).await;
    let reply = subscribe(&mut member, "members-only").await;
    assert_eq!(
        (reply["success"].clone(), reply["ids"].clone()),
        (json!(true), json!(["item:x:1"]))
    );
    // A bad collection id is an error, not a refusal.
    let bad = anonymous
        .request(SUBSCRIBE, json!({"collectionId": ""}))
        .await;
    assert_eq!(bad["code"], "EINVALID");
    server.stop().await;
}

async fn members_a_connection_may_not_read_are_left_out(backend: Backend) {
    // Records under item:s: are readable only by "boss" (a guard added in Rust); item:h: are
    // not exposed at all.
    let config = r#"
[[records.expose]]
pattern = "^item:v:"
[[collections.expose]]
id = "everything"
members = "item:*"
"#;
    let server = start_with(backend, config, |b| {
        b.authenticate(user_from_query()).expose(boss_only())
    })
    .await;
    server.write("item:v:1", json!({"n": 1})).await;
    server.write("item:s:1", json!({"n": 2})).await;
    server.write("item:h:1", json!({"n": 3})).await;
    let mut boss = Client::connect(&format!("{}?user=boss", server.ws)).await;
    let mut other = Client::connect(&format!("{}?user=ann", server.ws)).await;
    assert_eq!(
        subscribe(&mut boss, "everything").await["ids"],
        json!(["item:s:1", "item:v:1"])
    );
    assert_eq!(
        subscribe(&mut other, "everything").await["ids"],
        json!(["item:v:1"])
    );

    server.write("item:s:2", json!({"n": 4})).await;
    server.write("item:h:2", json!({"n": 5})).await;
    server.write("item:v:2", json!({"n": 6})).await;
    let boss_diff = next_change(&mut boss).await;
    assert_eq!(
        boss_diff["payload"]["added"],
        json!([{"n": 4, "id": "item:s:2"}])
    );
    // The other connection hears only of what it may read, with no gap in its versions.
    let diff = next_change(&mut other).await;
    assert_eq!(
        diff["payload"]["added"],
        json!([{"n": 6, "id": "item:v:2"}])
    );
    assert_eq!(diff["payload"]["version"], 2);
    server.stop().await;
}

async fn a_new_first_member_pushes_the_last_one_out_in_the_same_diff(backend: Backend) {
    let server = start(backend, LISTS).await;
    server.write("item:t:x", json!({"order": 2})).await;
    server.write("item:t:y", json!({"order": 3})).await;
    server.write("item:t:z", json!({"order": 4})).await;
    let mut client = server.client().await;
    assert_eq!(
        subscribe(&mut client, "top:t").await["ids"],
        json!(["item:t:x", "item:t:y"])
    );
    server.write("item:t:w", json!({"order": 1})).await;
    let diff = next_change(&mut client).await;
    assert_eq!(
        diff["payload"],
        json!({"collectionId": "top:t", "added": [{"order": 1, "id": "item:t:w"}],
            "removed": [{"order": 3, "id": "item:t:y"}], "version": 2})
    );
    // The new member's value follows its diff, as Mesh sends it.
    assert_eq!(
        next_change(&mut client).await["payload"]["recordId"],
        "item:t:w"
    );
    // Moving a shown member past the limit swaps it with the next one.
    server.write("item:t:x", json!({"order": 9})).await;
    let diff = next_change(&mut client).await;
    assert_eq!(
        diff["payload"]["added"],
        json!([{"order": 3, "id": "item:t:y"}])
    );
    assert_eq!(
        diff["payload"]["removed"],
        json!([{"order": 9, "id": "item:t:x"}])
    );
    assert_eq!(diff["payload"]["version"], 3);
    server.stop().await;
}

async fn versions_stay_gap_free_under_churn(backend: Backend) {
    let server = start(backend, LISTS).await;
    let mut client = server.client().await;
    subscribe(&mut client, "list:c").await;
    let mut writer = server.client().await;
    let mut expected = BTreeSet::new();
    for n in 0..40 {
        let id = format!("item:c:{}", n % 7);
        if expected.contains(&id) && n % 3 == 0 {
            server.records().delete_record(&id).await.unwrap();
            expected.remove(&id);
        } else {
            writer.publish(&id, json!({"n": n})).await;
            expected.insert(id);
        }
    }
    // Diffs add up to the store's membership, each version one more than the last: read
    // them up to the one adding a marker member written after every other write.
    let marker = "item:c:marker";
    writer.publish(marker, json!({"marker": true})).await;
    expected.insert(marker.to_owned());
    let mut seen = BTreeSet::new();
    let mut version = 1;
    while !seen.contains(marker) {
        let push = client.next_push().await;
        if push["command"] != DIFF {
            continue;
        }
        version += 1;
        assert_eq!(push["payload"]["version"], version, "{push}");
        for added in push["payload"]["added"].as_array().unwrap() {
            assert!(seen.insert(added["id"].as_str().unwrap().to_owned()));
        }
        for removed in push["payload"]["removed"].as_array().unwrap() {
            assert!(seen.remove(removed["id"].as_str().unwrap()));
        }
    }
    assert_eq!(seen, expected);
    let fresh = subscribe(&mut server.client().await, "list:c").await;
    let ids: BTreeSet<String> = serde_json::from_value(fresh["ids"].clone()).unwrap();
    assert_eq!(ids, expected);
    server.stop().await;
}

async fn a_metadata_change_runs_the_guards_again(backend: Backend) {
    let config =
        format!("{LISTS}\n[[collections.expose]]\nid = \"secrets\"\nmembers = \"item:*\"\n");
    let server = start_with(backend, &config, |b| {
        b.authenticate(user_from_query())
            .on_set_metadata(mesh_records::MetadataHook::new(|_, proposed| async move {
                Ok(proposed)
            }))
            .expose(boss_only())
    })
    .await;
    server.write("item:s:1", json!({"n": 1})).await;
    server.write("item:p:1", json!({"n": 2})).await;
    let mut client = Client::connect(&format!("{}?user=boss", server.ws)).await;
    assert_eq!(
        subscribe(&mut client, "secrets").await["ids"],
        json!(["item:p:1", "item:s:1"])
    );
    assert_eq!(
        subscribe(&mut client, "members-only").await["success"],
        true
    );

    // No longer the boss: the guarded member goes, in a diff like any other, from both
    // collections that held it.
    let set = client
        .request("mesh/set-my-connection-metadata", json!({"userId": "ann"}))
        .await;
    assert_eq!(set, json!({"success": true}));
    let mut diffs = [
        next_change(&mut client).await,
        next_change(&mut client).await,
    ];
    diffs.sort_by_key(|d| d["payload"]["collectionId"].as_str().unwrap().to_owned());
    for (diff, collection) in diffs.iter().zip(["members-only", "secrets"]) {
        assert_eq!(
            diff["payload"],
            json!({"collectionId": collection, "added": [],
                "removed": [{"n": 1, "id": "item:s:1"}], "version": 2})
        );
    }
    // No user at all: the collection's own guard ends that subscription.
    client
        .request("mesh/set-my-connection-metadata", json!({}))
        .await;
    let ended = next_change(&mut client).await;
    assert_eq!(
        ended,
        json!({"command": "mesh/subscription-ended",
            "payload": {"collectionId": "members-only", "reason": "forbidden"}})
    );
    server.write("item:p:2", json!({"n": 3})).await;
    let diff = next_change(&mut client).await;
    assert_eq!(diff["payload"]["collectionId"], "secrets");
    server.stop().await;
}

async fn patch_mode_sends_member_changes_as_patches(backend: Backend) {
    let server = start(backend, LISTS).await;
    server
        .write(
            "item:p:1",
            json!({"a": 1, "b": "long enough to prefer a patch"}),
        )
        .await;
    let mut client = server.client().await;
    let reply = client
        .request(
            SUBSCRIBE,
            json!({"collectionId": "list:p", "mode": "patch"}),
        )
        .await;
    assert_eq!(reply["ids"], json!(["item:p:1"]));
    server
        .write(
            "item:p:1",
            json!({"a": 2, "b": "long enough to prefer a patch"}),
        )
        .await;
    let update = next_change(&mut client).await;
    assert_eq!(
        update["payload"],
        json!({"recordId": "item:p:1", "patch": [{"op": "replace", "path": "/a", "value": 2}],
            "version": 2})
    );
    server.stop().await;
}

async fn unsubscribe_and_disconnect_end_the_pushes(backend: Backend) {
    let server = start(backend, LISTS).await;
    let mut client = server.client().await;
    subscribe(&mut client, "list:u").await;
    let mut staying = server.client().await;
    subscribe(&mut staying, "list:u").await;
    let mut leaving = server.client().await;
    subscribe(&mut leaving, "list:u").await;
    leaving.close().await;
    assert_eq!(
        client
            .request(UNSUBSCRIBE, json!({"collectionId": "list:u"}))
            .await,
        json!(true)
    );
    assert_eq!(
        client
            .request(UNSUBSCRIBE, json!({"collectionId": "list:u"}))
            .await,
        json!(false)
    );
    // The collection tells a subscriber that stayed; by then anything for `client` would
    // have been queued ahead of a marker.
    server.write("item:u:1", json!({"n": 1})).await;
    let diff = next_change(&mut staying).await;
    assert_eq!(diff["payload"]["added"][0]["id"], "item:u:1", "{diff}");
    server
        .assert_nothing_pushed_before_marker(&mut client, "item:marker")
        .await;
    server.stop().await;
}

/// Two instances on one Redis: a write on either reaches collection subscribers on both.
#[actix_web::test]
async fn writes_on_one_instance_reach_collection_subscribers_on_another() {
    let prefix = unique_prefix("collections-fleet");
    let config = format!("[store]\nkey_prefix = \"{prefix}\"\n{LISTS}");
    let a = start(Backend::Redis, &config).await;
    let b = start(Backend::Redis, &config).await;
    let mut on_a = a.client().await;
    let mut on_b = b.client().await;
    subscribe(&mut on_a, "list:m").await;
    subscribe(&mut on_b, "list:m").await;
    a.write("item:m:1", json!({"from": "a"})).await;
    for client in [&mut on_a, &mut on_b] {
        let diff = next_change(client).await;
        assert_eq!(
            diff["payload"]["added"],
            json!([{"from": "a", "id": "item:m:1"}])
        );
        assert_eq!(diff["payload"]["version"], 2);
    }
    b.records().delete_record("item:m:1").await.unwrap();
    for client in [&mut on_a, &mut on_b] {
        let diff = loop {
            let push = next_change(client).await;
            if push["command"] == DIFF {
                break push;
            }
        };
        assert_eq!(diff["payload"]["removed"], json!([{"id": "item:m:1"}]));
        assert_eq!(diff["payload"]["version"], 3);
    }
    a.stop().await;
    b.stop().await;
}

/// The library API: a collection exposed from Rust, at build time and at runtime.
#[actix_web::test]
async fn collections_exposed_from_rust_work_like_configured_ones() {
    let server = start_with(
        Backend::Memory,
        "[[records.expose]]\npattern = \"^doc:\"\n",
        |b| b.expose_collection(CollectionExposure::id("docs", "doc:*").unwrap()),
    )
    .await;
    server.write("doc:1", json!({"t": 1})).await;
    let later = CollectionExposure::pattern(r"^by:(\d)$", "doc:{1}*").unwrap();
    server.records().expose_collection(later).await.unwrap();
    let mut client = server.client().await;
    assert_eq!(
        subscribe(&mut client, "docs").await["ids"],
        json!(["doc:1"])
    );
    assert_eq!(
        subscribe(&mut client, "by:1").await["ids"],
        json!(["doc:1"])
    );
    server.stop().await;
}

/// No frame the server sends is larger than one it would accept: a snapshot over
/// `max_frame_bytes` is refused with `ELIMIT`, and so is a collection over `max_members`.
#[actix_web::test]
async fn snapshots_and_memberships_are_bounded() {
    let config =
        format!("[server]\nmax_frame_bytes = 2000\n[collections]\nmax_members = 40\n{LISTS}");
    let server = start(Backend::Memory, &config).await;
    for n in 0..30 {
        server
            .write(&format!("item:big:{n}"), json!({"pad": "x".repeat(100)}))
            .await;
    }
    for n in 0..41 {
        server.write(&format!("item:many:{n}"), json!(n)).await;
    }
    let mut client = server.client().await;
    let reply = client
        .request(SUBSCRIBE, json!({"collectionId": "list:big"}))
        .await;
    assert_eq!(reply["code"], "ELIMIT", "{reply}");
    let reply = client
        .request(SUBSCRIBE, json!({"collectionId": "list:many"}))
        .await;
    assert_eq!(reply["code"], "ELIMIT", "{reply}");
    server.stop().await;
}

/// Subscribing to a collection may start it, and starting one lists the store: a connection
/// gets its own budget of collection subscribes (`ERATELIMIT` beyond).
#[actix_web::test]
async fn collection_subscribes_have_a_budget_per_connection() {
    let config = format!("[collections]\nmax_subscribes_per_second = 3\n{LISTS}");
    let server = start(Backend::Memory, &config).await;
    let mut client = server.client().await;
    let mut refused = 0;
    for n in 0..6 {
        let reply = client
            .request(SUBSCRIBE, json!({"collectionId": format!("list:l{n}")}))
            .await;
        if reply["code"] == "ERATELIMIT" {
            refused += 1;
        } else {
            assert_eq!(reply["success"], true, "{reply}");
        }
    }
    assert!(refused >= 2, "refused {refused}");
    // Another connection has its own budget.
    let mut other = server.client().await;
    assert_eq!(subscribe(&mut other, "list:x").await["success"], true);
    server.stop().await;
}

/// A client that comes back with `sinceVersion` and the members it holds (id → record version)
/// gets every member's id but only the values it lacks, and its diffs count on from there.
async fn a_returning_client_resumes_with_only_what_changed(backend: Backend) {
    let server = start(backend, LISTS).await;
    for n in 1..=3 {
        server.write(&format!("item:a:{n}"), json!({"n": n})).await;
    }
    let mut client = server.client().await;
    let snapshot = subscribe(&mut client, "list:a").await;
    let held: serde_json::Map<String, Value> = snapshot["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r["version"].clone()))
        .collect();
    assert_eq!(held.len(), 3);
    client.close().await;
    // Another subscriber stays, so the changes below have reached the collection when the
    // first one comes back (a snapshot or resume shows what its instance has applied; a
    // change still on its way arrives as the next diff).
    let mut watcher = server.client().await;
    subscribe(&mut watcher, "list:a").await;

    // While it is away: one member changes, one goes, one comes.
    server.write("item:a:2", json!({"n": 20})).await;
    server.records().delete_record("item:a:3").await.unwrap();
    server.write("item:a:4", json!({"n": 4})).await;
    // (On a cluster the three may arrive in any order: they went through different nodes.)
    let mut seen = BTreeSet::new();
    while seen.len() < 3 {
        let push = next_change(&mut watcher).await;
        let p = &push["payload"];
        if p["recordId"] == "item:a:2" && p["version"] == 2 {
            seen.insert("changed");
        }
        if p["removed"][0]["id"] == "item:a:3" {
            seen.insert("removed");
        }
        if p["added"][0]["id"] == "item:a:4" {
            seen.insert("added");
        }
    }

    let mut back = server.client().await;
    let resume = json!({"collectionId": "list:a", "sinceVersion": 1, "members": held});
    let reply = back.request(SUBSCRIBE, resume).await;
    assert_eq!(
        reply,
        json!({
            "success": true,
            "resumed": true,
            "ids": ["item:a:1", "item:a:2", "item:a:4"],
            "records": [
                {"id": "item:a:2", "record": {"n": 20, "id": "item:a:2"}, "version": 2},
                {"id": "item:a:4", "record": {"n": 4, "id": "item:a:4"}, "version": 1},
            ],
            "version": 2
        })
    );
    server.write("item:a:5", json!({"n": 5})).await;
    let diff = next_change(&mut back).await;
    assert_eq!(diff["payload"]["version"], 3);

    // A sinceVersion that is not a version: the usual snapshot, saying it did not resume.
    let reply = back
        .request(
            SUBSCRIBE,
            json!({"collectionId": "list:b", "sinceVersion": "x"}),
        )
        .await;
    assert_eq!(
        reply,
        json!({"success": true, "resumed": false, "ids": [], "records": [], "version": 1})
    );
    let reply = back
        .request(
            SUBSCRIBE,
            json!({"collectionId": "list:c", "sinceVersion": 1, "members": ["item:c:1"]}),
        )
        .await;
    assert_eq!(reply["code"], "EINVALID", "{reply}");
    server.stop().await;
}

/// A change too big for one frame (here: 30 members a metadata change reveals at once, with
/// `max_frame_bytes` 2000) arrives as several diffs with consecutive versions, none larger
/// than a frame the server would accept.
#[actix_web::test]
async fn a_change_too_big_for_one_frame_arrives_in_several_diffs() {
    let config = format!(
        "[server]\nmax_frame_bytes = 2000\n{LISTS}\n\
         [[collections.expose]]\nid = \"secrets\"\nmembers = \"item:s:*\"\n"
    );
    let server = start_with(Backend::Memory, &config, |b| {
        b.authenticate(user_from_query())
            .on_set_metadata(mesh_records::MetadataHook::new(|_, proposed| async move {
                Ok(proposed)
            }))
            .expose(boss_only())
    })
    .await;
    for n in 0..30 {
        let value = json!({"pad": "x".repeat(100)});
        server.write(&format!("item:s:{n:02}"), value).await;
    }
    let mut client = Client::connect(&format!("{}?user=ann", server.ws)).await;
    assert_eq!(subscribe(&mut client, "secrets").await["ids"], json!([]));
    let set = client
        .request("mesh/set-my-connection-metadata", json!({"userId": "boss"}))
        .await;
    assert_eq!(set, json!({"success": true}));
    let (mut seen, mut version, mut diffs) = (BTreeSet::new(), 1, 0);
    while seen.len() < 30 {
        let diff = next_change(&mut client).await;
        assert_eq!(diff["command"], DIFF, "{diff}");
        assert!(
            diff.to_string().len() <= 2000,
            "a diff of {} bytes",
            diff.to_string().len()
        );
        assert_eq!(diff["payload"]["version"], version + 1);
        version += 1;
        diffs += 1;
        for member in diff["payload"]["added"].as_array().unwrap() {
            seen.insert(member["id"].as_str().unwrap().to_owned());
        }
    }
    assert!(diffs >= 2, "one diff of 30 members would not fit");
    server.stop().await;
}
