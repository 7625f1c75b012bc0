//! Every configured limit: exceeding it gives a clear error and changes nothing.

use crate::common;

use common::{Backend, Client, ConnectError, start};
use mesh_bench::wire::PUBLISH;
use serde_json::json;

const EXPOSE: &str = "[[records.expose]]\npattern = \"^doc:\"\nwritable = true\n";

#[actix_web::test]
async fn record_ids_are_bounded() {
    let server = start(
        Backend::Memory,
        &format!("[server]\nmax_record_id_bytes = 16\n{EXPOSE}"),
    )
    .await;
    let mut client = server.client().await;
    let long = format!("doc:{}", "x".repeat(20));
    let reply = client.publish(&long, json!({"a": 1})).await;
    assert_eq!(reply["code"], "EINVALID");
    assert!(reply["error"].as_str().unwrap().contains("16 bytes"));
    assert_eq!(client.subscribe(&long, "full").await["code"], "EINVALID");
    assert!(server.records().get_record(&long).await.is_err());
    assert_eq!(
        client.publish("doc:short", json!(1)).await,
        json!({"success": true})
    );
    server.stop().await;
}

#[actix_web::test]
async fn values_are_bounded_including_merge_results() {
    let server = start(
        Backend::Memory,
        &format!("[server]\nmax_value_bytes = 100\n{EXPOSE}"),
    )
    .await;
    let mut client = server.client().await;
    let reply = client
        .publish("doc:v", json!({"blob": "y".repeat(200)}))
        .await;
    assert_eq!(reply["code"], "ELIMIT");
    assert_eq!(server.records().get_record("doc:v").await.unwrap(), None);
    assert_eq!(
        client.publish("doc:v", json!({"a": "x".repeat(60)})).await,
        json!({"success": true})
    );
    let merge = json!({"recordId": "doc:v", "newValue": {"b": "z".repeat(60)}, "options": {"strategy": "merge"}});
    let reply = client.request("mesh/publish-record-update", merge).await;
    assert_eq!(reply["code"], "ELIMIT");
    let stored = server.records().get_record("doc:v").await.unwrap().unwrap();
    assert_eq!(
        (stored.version, &*stored.value),
        (1, &json!({"a": "x".repeat(60)}))
    );
    server.stop().await;
}

#[actix_web::test]
async fn subscriptions_per_connection_are_bounded() {
    let server = start(
        Backend::Memory,
        &format!("[server]\nmax_subscriptions_per_connection = 2\n{EXPOSE}"),
    )
    .await;
    let mut client = server.client().await;
    assert_eq!(client.subscribe("doc:1", "full").await["success"], true);
    assert_eq!(client.subscribe("doc:2", "full").await["success"], true);
    let reply = client.subscribe("doc:3", "full").await;
    assert_eq!(reply["code"], "ELIMIT");
    // Changing the mode of an existing subscription is not a new one.
    assert_eq!(client.subscribe("doc:2", "patch").await["success"], true);
    server.write("doc:3", json!(1)).await;
    // doc:3 was refused: the next push is the marker on doc:2 (a third subscription, even
    // to a marker, would be refused).
    server
        .assert_nothing_pushed_before_marker(&mut client, "doc:2")
        .await;
    client
        .request("mesh/unsubscribe-record", json!({"recordId": "doc:1"}))
        .await;
    assert_eq!(client.subscribe("doc:3", "full").await["success"], true);
    server.stop().await;
}

#[actix_web::test]
async fn requests_per_second_are_bounded() {
    let server = start(
        Backend::Memory,
        &format!("[server]\nmax_requests_per_second = 5\n{EXPOSE}"),
    )
    .await;
    let mut client = server.client().await;
    for n in 1..=20u64 {
        let write = json!({"recordId": "doc:rate", "newValue": {"n": n}});
        client.send_request(n, PUBLISH, write).await;
    }
    let mut accepted = 0;
    for n in 1..=20u64 {
        let reply = client.reply_to(n).await["payload"].take();
        if reply == json!({"success": true}) {
            accepted += 1;
        } else {
            assert_eq!(reply["code"], "ERATELIMIT", "{reply}");
        }
    }
    // The first 5 (the burst) pass; after each refusal the socket rests until a request would
    // pass again, so the rest alternate: refused, allowed (one refusal per token, at most).
    assert!((5..=13).contains(&accepted), "accepted {accepted}");
    assert!(20 - accepted >= 7, "refused {}", 20 - accepted);
    let stored = server
        .records()
        .get_record("doc:rate")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, accepted);
    // Keepalive answers are never limited, and the bucket refills: the refill is time itself
    // (5 a second), so this waits for two tokens' worth of it.
    actix_rt::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(client.request("mesh/noop", json!({})).await, json!(true));
    server.stop().await;
}

#[actix_web::test]
async fn total_connections_are_bounded() {
    let server = start(Backend::Memory, "[server]\nmax_connections = 2\n").await;
    let a = server.client().await;
    let _b = server.client().await;
    assert!(matches!(
        Client::try_connect(&server.ws, None).await,
        Err(ConnectError::Status(503))
    ));
    a.close().await;
    let records = server.records().clone();
    common::eventually("a slot to free up", common::patience(), async || {
        records.connection_count() < 2
    })
    .await;
    let mut c = server.client().await;
    assert_eq!(c.request("mesh/noop", json!({})).await, json!(true));
    server.stop().await;
}

#[actix_web::test]
async fn requests_in_flight_per_connection_are_bounded_by_not_reading_more() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (r, m) = (Arc::clone(&running), Arc::clone(&most));
    let server = common::start_with(
        Backend::Memory,
        &format!("[server]\nmax_in_flight_requests = 2\nmax_requests_per_second = 0\n{EXPOSE}"),
        move |b| {
            b.command("slow", move |_, _| {
                let (running, most) = (Arc::clone(&r), Arc::clone(&m));
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    actix_rt::time::sleep(std::time::Duration::from_millis(50)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(json!("done"))
                }
            })
        },
    )
    .await;
    let mut client = server.client().await;
    // Eight requests sent at once: the server reads the next only when one has answered.
    for id in 1..=8u64 {
        client
            .send_json(&json!({"id": id, "command": "slow", "payload": {}}))
            .await;
    }
    for id in 1..=8u64 {
        assert_eq!(client.reply_to(id).await["payload"], json!("done"));
    }
    assert_eq!(most.load(Ordering::SeqCst), 2);
    server.stop().await;
}
