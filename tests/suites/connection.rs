//! Connection behaviour over real WebSockets: id assignment, keepalive, malformed input,
//! frame limits, authentication, connection metadata and config guards.

use crate::common;

use common::{Backend, Client, ConnectError, start, start_with};
use mesh_records::auth::sign_hs256;
use serde_json::{Value, json};
use std::time::Duration;

const SECRET: &str = "test-secret";

#[actix_web::test]
async fn each_connection_gets_its_own_id() {
    let server = start(Backend::Memory, "").await;
    let a = server.client().await;
    let b = server.client().await;
    assert!(!a.id.is_empty());
    assert_ne!(a.id, b.id);
    server.stop().await;
}

#[actix_web::test]
async fn noop_answers_true_and_keepalive_answers_get_no_reply() {
    let server = start(Backend::Memory, "").await;
    let mut client = server.client().await;
    // The Mesh client sends pong and latency:response with an id; they must not be answered.
    client
        .send_json(&json!({"id": 1, "command": "pong", "payload": {}}))
        .await;
    client
        .send_json(&json!({"id": 2, "command": "latency:response", "payload": {}}))
        .await;
    // Answers come in order: the noop's must be the first (and no push came before it).
    client.send_request(3, "mesh/noop", json!({})).await;
    let reply = client.reply_to_only(3).await;
    assert_eq!(
        reply,
        json!({"id": 3, "command": "mesh/noop", "payload": true})
    );
    assert_eq!(client.try_next_push(Duration::ZERO).await, None);
    server.stop().await;
}

#[actix_web::test]
async fn unknown_commands_get_enotfound() {
    let server = start(Backend::Memory, "").await;
    let mut client = server.client().await;
    let reply = client.request("no/such", json!({})).await;
    assert_eq!(
        reply,
        json!({"error": "Command \"no/such\" not found", "code": "ENOTFOUND", "name": "CommandError"})
    );
    server.stop().await;
}

#[actix_web::test]
async fn malformed_frames_never_wedge_the_session() {
    let server = start(
        Backend::Memory,
        "[[records.expose]]\npattern = \"^doc:\"\nwritable = true\n",
    )
    .await;
    let mut client = server.client().await;
    for junk in [
        "null",
        "[]",
        "[1,2]",
        "42",
        "\"str\"",
        "true",
        "{",
        "",
        "{\"payload\":1}",
        "{\"command\":7}",
        "{\"id\":\"x\",\"command\":\"mesh/noop\",\"payload\":{}}",
    ] {
        client.send_text(junk).await;
    }
    client.send_binary(&[0xff, 0x00, 0x12]).await;
    // With an integer id, the client learns what was wrong.
    client.send_json(&json!({"id": 7, "payload": {}})).await;
    let reply = client.reply_to(7).await;
    assert_eq!(reply["payload"]["code"], "EINVALID");
    let bad_payloads = [
        ("mesh/subscribe-record", json!(null)),
        ("mesh/subscribe-record", json!({"recordId": 5})),
        (
            "mesh/subscribe-record",
            json!({"recordId": "doc:1", "mode": "sideways"}),
        ),
        ("mesh/subscribe-record", json!({"recordId": ""})),
        ("mesh/unsubscribe-record", json!([])),
        ("mesh/publish-record-update", json!({"recordId": "doc:1"})),
        (
            "mesh/publish-record-update",
            json!({"recordId": "doc:1", "newValue": 1, "options": {"strategy": 3}}),
        ),
    ];
    for (command, payload) in bad_payloads {
        let reply = client.request(command, payload.clone()).await;
        assert_eq!(reply["code"], "EINVALID", "{command} {payload} → {reply}");
    }
    assert_eq!(server.records().get_record("doc:1").await.unwrap(), None);
    // Binary frames holding JSON are read like text (as Mesh servers do).
    client
        .send_binary(br#"{"id":99,"command":"mesh/noop","payload":{}}"#)
        .await;
    assert_eq!(client.reply_to(99).await["payload"], json!(true));
    // A fresh connection works too: nothing else was disturbed.
    let mut other = server.client().await;
    assert_eq!(other.request("mesh/noop", json!({})).await, json!(true));
    server.stop().await;
}

/// Waits for the `mesh/error` push and checks it is `EINVALID` saying `about`.
async fn expect_error(client: &mut Client, about: &str) {
    let push = client.next_push_of("mesh/error").await;
    let payload = &push["payload"];
    assert_eq!(
        (&payload["code"], &payload["name"]),
        (&json!("EINVALID"), &json!("ValidationError")),
        "{push}"
    );
    let message = payload["error"].as_str().unwrap();
    assert!(message.contains(about), "{about:?} in {push}");
}

#[actix_web::test]
async fn frames_with_no_id_to_reply_to_are_answered_by_a_mesh_error_push() {
    let server = start(
        Backend::Memory,
        "[[records.expose]]\npattern = \"^doc:\"\nwritable = true\n",
    )
    .await;
    let mut client = server.client().await;
    client.send_text("hello").await;
    expect_error(
        &mut client,
        "frame is not JSON: expected value at line 1 column 1",
    )
    .await;
    client.send_text("[1]").await;
    expect_error(&mut client, "not a JSON object").await;
    client.send_text(r#"{"payload":{}}"#).await;
    expect_error(&mut client, "no string \"command\"").await;
    client.send_binary(&[0xff, 0xfe]).await;
    expect_error(&mut client, "not UTF-8").await;
    // An id that is not an integer: the request is not run (its sender would wait forever for
    // a reply that cannot carry that id).
    client
        .send_json(&json!({"id": "1", "command": "mesh/publish-record-update",
            "payload": {"recordId": "doc:1", "newValue": {"a": 1}}}))
        .await;
    expect_error(&mut client, "\"id\" must be an integer").await;
    assert_eq!(server.records().get_record("doc:1").await.unwrap(), None);
    // Frames without an id that are well formed are run and never answered: no push.
    client
        .send_json(&json!({"command": "mesh/publish-record-update",
            "payload": {"recordId": "doc:2", "newValue": {"a": 1}}}))
        .await;
    client
        .send_json(&json!({"id": "x", "command": "pong"}))
        .await;
    assert_eq!(client.request("mesh/noop", json!({})).await, json!(true));
    assert!(
        server
            .records()
            .get_record("doc:2")
            .await
            .unwrap()
            .is_some()
    );
    server
        .assert_nothing_pushed_before_marker(&mut client, "doc:marker")
        .await;
    server.stop().await;
}

#[actix_web::test]
async fn null_frame_right_after_connecting_is_harmless() {
    let server = start(Backend::Memory, "").await;
    for _ in 0..3 {
        let mut client = server.client().await;
        client.send_text("null").await;
    }
    let mut client = server.client().await;
    assert_eq!(client.request("mesh/noop", json!({})).await, json!(true));
    server.stop().await;
}

#[actix_web::test]
async fn oversized_frames_close_the_connection() {
    let server = start(Backend::Memory, "[server]\nmax_frame_bytes = 1024\n").await;
    let mut client = server.client().await;
    let big = format!(
        r#"{{"id":1,"command":"mesh/noop","payload":"{}"}}"#,
        "x".repeat(2048)
    );
    client.send_text(&big).await;
    assert_eq!(client.closed().await, Some(1009));
    let mut other = server.client().await;
    assert_eq!(other.request("mesh/noop", json!({})).await, json!(true));
    server.stop().await;
}

#[actix_web::test]
async fn server_pings_and_closes_silent_clients() {
    let server = start(
        Backend::Memory,
        "[server]\nping_interval_ms = 100\nmax_missed_pongs = 1\n",
    )
    .await;
    let mut silent = server.client().await;
    silent.auto_pong = false;
    // This one answers each ping by hand, so the test sees them.
    let mut lively = server.client().await;
    lively.auto_pong = false;
    let ping = silent.next_push().await;
    assert_eq!(ping, json!({"command": "ping", "payload": {}}));
    // Two pings unanswered (more than max_missed_pongs = 1): closed. Meanwhile the client that
    // answers stays connected, through three more pings after that.
    let keep_answering = async {
        loop {
            answer_ping(&mut lively).await;
        }
    };
    tokio::select! {
        _ = silent.closed() => {}
        _ = keep_answering => {}
    }
    for _ in 0..3 {
        answer_ping(&mut lively).await;
    }
    assert_eq!(lively.request("mesh/noop", json!({})).await, json!(true));
    server.stop().await;
}

/// Reads the next push, which must be a ping, and answers it.
async fn answer_ping(client: &mut Client) {
    let push = client.next_push().await;
    assert_eq!(push["command"], "ping", "{push}");
    client.send_text(r#"{"command":"pong"}"#).await;
}

fn jwt_config(required: bool) -> String {
    format!(
        r#"
[auth]
jwt_secret = "{SECRET}"
required = {required}

[[records.expose]]
pattern = "^user:(\\d+)$"
writable = true
guard = {{ require_metadata = "userId" }}
write_guard = {{ metadata_equals_capture = {{ key = "userId", group = 1 }} }}
"#
    )
}

#[actix_web::test]
async fn jwt_claims_become_metadata_from_query_or_header() {
    let server = start(Backend::Memory, &jwt_config(false)).await;
    let token = sign_hs256(&json!({"userId": "5", "role": "a"}), SECRET.as_bytes());
    let mut by_query = Client::connect(&format!("{}?token={token}", server.ws)).await;
    let reply = by_query
        .request("mesh/get-my-connection-metadata", json!({}))
        .await;
    assert_eq!(reply, json!({"metadata": {"userId": "5", "role": "a"}}));
    let mut by_header = Client::try_connect(&server.ws, Some(&token)).await.unwrap();
    let reply = by_header
        .request("mesh/get-my-connection-metadata", json!({}))
        .await;
    assert_eq!(reply["metadata"]["userId"], "5");
    let mut anonymous = server.client().await;
    let reply = anonymous
        .request("mesh/get-my-connection-metadata", json!({}))
        .await;
    assert_eq!(reply, json!({"metadata": null}));
    server.stop().await;
}

#[actix_web::test]
async fn bad_tokens_are_refused_at_the_upgrade() {
    let server = start(Backend::Memory, &jwt_config(false)).await;
    let wrong_secret = sign_hs256(&json!({"userId": "5"}), b"other");
    let expired = sign_hs256(&json!({"userId": "5", "exp": 1}), SECRET.as_bytes());
    // Same claims, header switched to `alg: none` (signature dropped) or HS512 (kept).
    let good = sign_hs256(&json!({"userId": "5"}), SECRET.as_bytes());
    let mut parts = good.split('.');
    let (_, claims, signature) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let alg_none = format!("{}.{claims}.", b64.encode(br#"{"alg":"none","typ":"JWT"}"#));
    let hs512 = format!(
        "{}.{claims}.{signature}",
        b64.encode(br#"{"alg":"HS512","typ":"JWT"}"#)
    );
    for token in [
        wrong_secret.as_str(),
        expired.as_str(),
        "not-a-jwt",
        &alg_none,
        &hs512,
    ] {
        match Client::try_connect(&format!("{}?token={token}", server.ws), None).await {
            Err(ConnectError::Status(401)) => {}
            Err(other) => panic!("expected 401, got {other:?}"),
            Ok(_) => panic!("expected 401, got a connection"),
        }
    }
    server.stop().await;
    let server = start(Backend::Memory, &jwt_config(true)).await;
    assert!(matches!(
        Client::try_connect(&server.ws, None).await,
        Err(ConnectError::Status(401))
    ));
    server.stop().await;
}

#[actix_web::test]
async fn clients_cannot_set_their_own_metadata() {
    let server = start(Backend::Memory, &jwt_config(false)).await;
    let mut client = server.client().await;
    let reply = client
        .request("mesh/set-my-connection-metadata", json!({"userId": "5"}))
        .await;
    assert_eq!(reply["code"], "EFORBIDDEN");
    // One name per code: the same as a refused write's (docs/protocol.md, "Errors").
    assert_eq!(reply["name"], "ForbiddenError");
    let reply = client
        .request("mesh/get-my-connection-metadata", json!({}))
        .await;
    assert_eq!(reply, json!({"metadata": null}));
    // And so cannot pass a guard written for user 5.
    let refused = client.publish("user:5", json!({"name": "mallory"})).await;
    assert_eq!(
        (&refused["code"], &refused["name"]),
        (&json!("EFORBIDDEN"), &json!("ForbiddenError"))
    );
    server.stop().await;
}

#[actix_web::test]
async fn metadata_hook_lets_the_app_validate_changes() {
    let server = start_with(Backend::Memory, "", |b| {
        b.on_set_metadata(mesh_records::MetadataHook::new(
            |_conn, proposed: Value| async move {
                match proposed.get("nickname") {
                    Some(Value::String(n)) if n.len() <= 16 => Ok(json!({"nickname": n})),
                    _ => Err(mesh_records::Error::invalid(
                        "only a short nickname may be set",
                    )),
                }
            },
        ))
    })
    .await;
    let mut client = server.client().await;
    let reply = client
        .request(
            "mesh/set-my-connection-metadata",
            json!({"nickname": "kit", "userId": "5"}),
        )
        .await;
    assert_eq!(reply, json!({"success": true}));
    let reply = client
        .request("mesh/get-my-connection-metadata", json!({}))
        .await;
    assert_eq!(reply, json!({"metadata": {"nickname": "kit"}}));
    let reply = client
        .request("mesh/set-my-connection-metadata", json!({"userId": "5"}))
        .await;
    assert_eq!(reply["code"], "EINVALID");
    server.stop().await;
}

#[actix_web::test]
async fn config_guards_check_metadata_and_captures() {
    let server = start(Backend::Memory, &jwt_config(false)).await;
    let five = sign_hs256(&json!({"userId": "5"}), SECRET.as_bytes());
    let six = sign_hs256(&json!({"userId": 6}), SECRET.as_bytes());
    let mut user5 = Client::connect(&format!("{}?token={five}", server.ws)).await;
    let mut user6 = Client::connect(&format!("{}?token={six}", server.ws)).await;
    let mut anonymous = server.client().await;
    // require_metadata guards reads.
    assert_eq!(
        anonymous.subscribe("user:5", "full").await,
        json!({"success": false})
    );
    assert_eq!(user6.subscribe("user:5", "full").await["success"], true);
    // metadata_equals_capture guards writes: only user 5 writes user:5 (numbers compare as text).
    assert_eq!(
        user5.publish("user:5", json!({"n": 1})).await,
        json!({"success": true})
    );
    assert_eq!(
        user6.publish("user:5", json!({"n": 2})).await["code"],
        "EFORBIDDEN"
    );
    assert_eq!(
        user6.publish("user:6", json!({"n": 3})).await,
        json!({"success": true})
    );
    let push = user6.next_push_of("mesh/record-update").await;
    assert_eq!(push["payload"]["full"], json!({"n": 1}));
    let v = server
        .records()
        .get_record("user:5")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((v.version, &*v.value), (1, &json!({"n": 1})));
    server.stop().await;
}

#[actix_web::test]
async fn library_authenticate_can_refuse() {
    let server = start_with(Backend::Memory, "", |b| {
        b.authenticate(mesh_records::Authenticator::new(|req| {
            let ok = req.headers().contains_key("authorization");
            async move {
                if ok {
                    Ok(json!({"via": "app"}))
                } else {
                    Err(mesh_records::AuthRejection("who are you?".into()))
                }
            }
        }))
    })
    .await;
    assert!(matches!(
        Client::try_connect(&server.ws, None).await,
        Err(ConnectError::Status(401))
    ));
    let mut client = Client::try_connect(&server.ws, Some("anything"))
        .await
        .unwrap();
    let reply = client
        .request("mesh/get-my-connection-metadata", json!({}))
        .await;
    assert_eq!(reply, json!({"metadata": {"via": "app"}}));
    server.stop().await;
}
