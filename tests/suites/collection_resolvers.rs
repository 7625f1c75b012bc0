//! Collections whose members an app function decides per connection (Mesh's
//! `exposeCollection(pattern, resolver)`), over real WebSocket connections on every store:
//! each connection sees its own members, kept current as records change and as its metadata
//! changes; what the resolver returns is still limited to the rule's glob and filtered by
//! read guards; a resolver that fails refuses the subscription and harms nothing else.

use crate::common;

use common::{Backend, Client, TestServer, start_with, user_from_query};
use mesh_records::collections::{CollectionExposure, Resolver};
use mesh_records::{Exposure, Guard, RecordServer};
use serde_json::{Value, json};

const SUBSCRIBE: &str = "mesh/subscribe-collection";

const CONFIG: &str = r#"
[[records.expose]]
pattern = "^(doc|other):"
writable = true
"#;

on_every_store!(
    with_cluster:
    each_connection_sees_the_members_its_resolver_returns,
);

/// `mine`: the `doc:*` records whose `owner` is the connection's user, read from the store as
/// a Mesh app's resolver would (plus two ids the rule must leave out: one outside its glob,
/// one whose read guard refuses).
fn mine(records: RecordServer) -> CollectionExposure {
    let resolver = Resolver::new(move |conn, _collection| {
        let records = records.clone();
        async move {
            let user = conn.metadata_field("userId");
            let docs = records
                .collections()
                .list_records_matching("doc:*", None, 0, 1000)
                .await?;
            let mut ids: Vec<String> = docs
                .into_iter()
                .filter(|(_, r)| r.value.get("owner") == user.as_ref())
                .map(|(id, _)| id.to_string())
                .collect();
            ids.extend(["other:1".to_owned(), "doc:hidden".to_owned()]);
            Ok(ids)
        }
    });
    CollectionExposure::resolved("^mine$", resolver)
        .unwrap()
        .within("doc:*")
        .unwrap()
}

async fn start(
    backend: Backend,
    extra: impl FnOnce(RecordServer) -> Vec<CollectionExposure>,
) -> TestServer {
    let hidden = Exposure::id("doc:hidden").guard(Guard::sync(|_, _| false));
    let server = start_with(backend, CONFIG, |b| {
        b.authenticate(user_from_query())
            .on_set_metadata(mesh_records::MetadataHook::new(|_, proposed| async move {
                Ok(proposed)
            }))
            .expose(hidden)
    })
    .await;
    for rule in extra(server.records().clone()) {
        server.records().expose_collection(rule).await.unwrap();
    }
    server
}

async fn connect(server: &TestServer, user: &str) -> Client {
    Client::connect(&format!("{}?user={user}", server.ws)).await
}

/// The next collection diff or record update (pings skipped).
async fn next_change(client: &mut Client) -> Value {
    loop {
        let push = client.next_push().await;
        if push["command"] != "ping" {
            return push;
        }
    }
}

/// Shows that nothing was on its way to `client` (whose `userId` is `owner`): a doc of
/// `owner`'s written now must be the next thing `client` hears of (its diff, then its value),
/// and is then deleted again (one more diff). Moves `client`'s collection on two versions.
async fn expect_marker_member(server: &TestServer, client: &mut Client, owner: &str) {
    let marker = format!("doc:marker-{owner}");
    server.write(&marker, json!({"owner": owner})).await;
    let diff = next_change(client).await;
    assert_eq!(
        diff["payload"]["added"],
        json!([{"owner": owner, "id": marker}]),
        "a push before the marker: {diff}"
    );
    let update = next_change(client).await;
    assert_eq!(update["payload"]["recordId"], marker.as_str(), "{update}");
    server.records().delete_record(&marker).await.unwrap();
    let diff = next_change(client).await;
    assert_eq!(
        diff["payload"]["removed"],
        json!([{"id": marker}]),
        "{diff}"
    );
}

async fn each_connection_sees_the_members_its_resolver_returns(backend: Backend) {
    let server = start(backend, |records| vec![mine(records)]).await;
    server.write("doc:1", json!({"owner": "ann"})).await;
    server.write("doc:2", json!({"owner": "bob"})).await;
    server.write("doc:hidden", json!({"owner": "ann"})).await;
    server.write("other:1", json!({"owner": "ann"})).await;
    let mut ann = connect(&server, "ann").await;
    let mut bob = connect(&server, "bob").await;
    let reply = ann
        .request(SUBSCRIBE, json!({"collectionId": "mine"}))
        .await;
    assert_eq!(
        reply,
        json!({"success": true, "ids": ["doc:1"], "version": 1,
            "records": [{"id": "doc:1", "record": {"owner": "ann", "id": "doc:1"}, "version": 1}]})
    );
    let reply = bob
        .request(SUBSCRIBE, json!({"collectionId": "mine"}))
        .await;
    assert_eq!(reply["ids"], json!(["doc:2"]));

    // A new doc of ann's: her diff and its value; bob hears nothing.
    server.write("doc:3", json!({"owner": "ann"})).await;
    let diff = next_change(&mut ann).await;
    assert_eq!(
        diff["payload"],
        json!({"collectionId": "mine", "added": [{"owner": "ann", "id": "doc:3"}],
            "removed": [], "version": 2})
    );
    assert_eq!(next_change(&mut ann).await["payload"]["recordId"], "doc:3");
    expect_marker_member(&server, &mut bob, "bob").await;

    // doc:1 changes hands: out of ann's collection (as `{"id"}`: the collection no longer
    // holds its value), into bob's, in one diff each.
    server.write("doc:1", json!({"owner": "bob"})).await;
    let diff = next_change(&mut ann).await;
    assert_eq!(diff["payload"]["removed"], json!([{"id": "doc:1"}]));
    assert_eq!(diff["payload"]["version"], 3);
    let diff = next_change(&mut bob).await;
    assert_eq!(
        diff["payload"]["added"],
        json!([{"owner": "bob", "id": "doc:1"}])
    );
    assert_eq!(diff["payload"]["version"], 4, "after bob's marker's two");

    // A member's new value (still ann's): a record update, no diff.
    server
        .write("doc:3", json!({"owner": "ann", "title": "three"}))
        .await;
    let update = next_change(&mut ann).await;
    assert_eq!(update["command"], "mesh/record-update");
    assert_eq!(update["payload"]["full"]["title"], "three");
    // Writes outside the rule's glob send nothing.
    server
        .write("other:1", json!({"owner": "ann", "n": 2}))
        .await;
    expect_marker_member(&server, &mut ann, "ann").await;

    // Ann becomes bob: the resolver runs again for her connection.
    let set = ann
        .request("mesh/set-my-connection-metadata", json!({"userId": "bob"}))
        .await;
    assert_eq!(set, json!({"success": true}));
    let diff = next_change(&mut ann).await;
    assert_eq!(diff["payload"]["version"], 6, "after ann's marker's two");
    let added: Vec<&str> = diff["payload"]["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(added, ["doc:1", "doc:2"]);
    assert_eq!(diff["payload"]["removed"], json!([{"id": "doc:3"}]));
    server.stop().await;
}

/// A resolver that fails or panics refuses the subscription in Mesh's shape; the connection
/// and the server carry on.
#[actix_web::test]
async fn a_failing_resolver_refuses_the_subscription() {
    let server = start(Backend::Memory, |_| {
        let failing = Resolver::new(|_, _| async { Err("the directory is down".into()) });
        let panicking = Resolver::sync(|_, _| panic!("a bug in the app"));
        vec![
            CollectionExposure::resolved("^failing$", failing).unwrap(),
            CollectionExposure::resolved("^panicking$", panicking).unwrap(),
        ]
    })
    .await;
    let mut client = connect(&server, "ann").await;
    let refused = json!({"success": false, "ids": [], "records": [], "version": 0});
    for collection in ["failing", "panicking"] {
        let reply = client
            .request(SUBSCRIBE, json!({"collectionId": collection}))
            .await;
        assert_eq!(reply, refused, "{collection}");
    }
    let ok = client.publish("doc:1", json!({"owner": "ann"})).await;
    assert_eq!(ok, json!({"success": true}));
    server.stop().await;
}

/// Each subscription to a per-connection collection has an actor of its own, gone when the
/// connection unsubscribes or leaves.
#[actix_web::test]
async fn per_connection_collections_end_with_their_subscription() {
    let server = start(Backend::Memory, |records| vec![mine(records)]).await;
    let live = || server.records().collections().live_collections();
    let mut ann = connect(&server, "ann").await;
    let mut bob = connect(&server, "bob").await;
    for client in [&mut ann, &mut bob] {
        let reply = client
            .request(SUBSCRIBE, json!({"collectionId": "mine"}))
            .await;
        assert_eq!(reply["success"], true);
    }
    assert_eq!(live(), 2);
    let reply = ann
        .request(
            "mesh/unsubscribe-collection",
            json!({"collectionId": "mine"}),
        )
        .await;
    assert_eq!(reply, json!(true));
    bob.close().await;
    common::eventually("both actors gone", common::patience(), async || live() == 0).await;
    server.stop().await;
}
