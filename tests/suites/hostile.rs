//! Hostile clients over real sockets: what one anonymous connection can make the server do
//! is bounded by what it sent (issue 18's findings, each reproduced as a client would).

use crate::common;

use common::process::{serve, sigterm, write_config};
use common::{Backend, Client, free_port, start, wait_for_health};
use serde_json::json;
use std::time::Instant;

const EXPOSE: &str = "[[records.expose]]\npattern = \"^doc:\"\nwritable = true\n";

/// The resident memory of a process, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[actix_web::test]
async fn two_small_frames_cost_their_size_not_their_product() {
    // {K: []} then {K: [0; N]}: an element-wise JSON Patch names K in each of N operations;
    // on json_patch::diff this grew the server by 939 MiB.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        &format!("[server]\nport = {port}\ndemo = false\n\n{EXPOSE}"),
    );
    let mut child = serve(&config);
    wait_for_health(port).await;
    let mut watcher = Client::connect(&format!("ws://127.0.0.1:{port}/ws")).await;
    watcher.subscribe("doc:big", "patch").await;
    let mut client = Client::connect(&format!("ws://127.0.0.1:{port}/ws")).await;
    let key = "k".repeat(20_000);
    let reply = client.publish("doc:big", json!({ key.clone(): [] })).await;
    assert_eq!(reply, json!({"success": true}));
    assert_eq!(watcher.next_push().await["payload"]["version"], 1);
    let before = rss_bytes(child.id());
    let started = Instant::now();
    let reply = client
        .publish("doc:big", json!({ key.clone(): vec![0; 20_000] }))
        .await;
    let answered = started.elapsed();
    assert_eq!(reply, json!({"success": true}));
    // The patch subscriber gets the whole value: it is shorter than any patch.
    let push = watcher.next_push().await;
    assert_eq!(push["payload"]["version"], 2);
    assert_eq!(
        push["payload"]["full"][&key].as_array().unwrap().len(),
        20_000
    );
    let growth = rss_bytes(child.id()).saturating_sub(before);
    eprintln!("second frame answered in {answered:?}, RSS grew {growth} bytes");
    assert!(growth < 20 << 20, "RSS grew by {growth} bytes");
    sigterm(&child);
    child.wait().unwrap();
}

#[actix_web::test]
async fn values_are_counted_as_stored_not_as_sent() {
    // `1e15` is stored as `1000000000000000.0`: a frame under the limit can store a value
    // four times over it.
    let server = start(
        Backend::Memory,
        &format!("[server]\nmax_value_bytes = 1000\n{EXPOSE}"),
    )
    .await;
    let mut watcher = server.client().await;
    watcher.subscribe("doc:n", "full").await;
    let mut client = server.client().await;
    // Sent as text: serializing a parsed value here would expand the numbers already.
    let numbers = vec!["1e15"; 150].join(",");
    client
        .send_text(&format!(
            r#"{{"id":1,"command":"mesh/publish-record-update","payload":{{"recordId":"doc:n","newValue":[{numbers}]}}}}"#
        ))
        .await;
    let reply = client.reply_to(1).await["payload"].take();
    assert_eq!(reply["code"], "ELIMIT", "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("as stored"),
        "{reply}"
    );
    assert_eq!(server.records().get_record("doc:n").await.unwrap(), None);
    server
        .assert_nothing_pushed_before_marker(&mut watcher, "doc:marker")
        .await;
    // The same limit holds for values written by server code.
    let big = json!(vec!["x"; 400]);
    let written = server
        .records()
        .write_record("doc:n", big, mesh_records::Strategy::Replace);
    assert!(written.await.is_err());
    server.stop().await;
}

#[actix_web::test]
async fn the_memory_store_keeps_its_budget_and_says_so() {
    // One anonymous connection writing 64 KB values to new ids stored ~64 MB/s until the
    // machine ran out of memory.
    let server = start(
        Backend::Memory,
        &format!("[store]\nmax_memory_bytes = 2000000\n\n{EXPOSE}"),
    )
    .await;
    let mut client = server.client().await;
    let value = json!({ "blob": "x".repeat(64 * 1024) });
    let mut stored = 0;
    let refusal = loop {
        let reply = client
            .publish(&format!("doc:{stored}"), value.clone())
            .await;
        if reply != json!({"success": true}) {
            break reply;
        }
        stored += 1;
        assert!(stored < 100, "the budget never refused a write");
    };
    assert_eq!(refusal["code"], "ELIMIT", "{refusal}");
    assert!(
        refusal["error"]
            .as_str()
            .unwrap()
            .contains("max_memory_bytes")
    );
    assert!(
        (20..=31).contains(&stored),
        "{stored} values of 64 KB fit in 2 MB"
    );
    // Nothing of the refused write is there; the server goes on serving.
    let refused_id = format!("doc:{stored}");
    assert_eq!(
        server.records().get_record(&refused_id).await.unwrap(),
        None
    );
    assert_eq!(
        client.publish("doc:0", json!({"small": true})).await,
        json!({"success": true})
    );
    assert_eq!(
        client.publish(&refused_id, value).await,
        json!({"success": true})
    );
    server.stop().await;
}
