//! Sessions respect their tokens, over real WebSockets: expiry closes with 4001, a refresh
//! keeps the connection (same subject only), guards see refreshed claims, `aud`/`iss` and the
//! leeway apply at the upgrade, and the Bearer scheme is matched in any case.

use crate::common;

use common::{Backend, Client, ConnectError, TestServer, patience, start};
use futures_util::StreamExt;
use mesh_records::auth::sign_hs256;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

const SECRET: &str = "auth-test-secret";
const OTHER_SECRET: &str = "not-the-secret";

/// JWT auth with no leeway, so expiries come a couple of seconds after the token's `exp`.
fn config(extra_auth: &str) -> String {
    format!(
        r#"
[auth]
jwt_secret = "{SECRET}"
leeway_seconds = 0
{extra_auth}

[admin]
token = "admin-secret"

[[records.expose]]
pattern = "^doc:"
writable = true
write_guard = {{ require_metadata = "editor" }}
"#
    )
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Unix seconds `delta` from now, as a JWT `exp`/`nbf`.
fn at(delta: i64) -> i64 {
    unix_now() as i64 + delta
}

fn token(claims: Value) -> String {
    sign_hs256(&claims, SECRET.as_bytes())
}

async fn connect(server: &TestServer, token: &str) -> Client {
    Client::connect(&format!("{}?token={token}", server.ws)).await
}

async fn refresh(client: &mut Client, token: &str) -> Value {
    client
        .request("mesh/refresh-token", json!({ "token": token }))
        .await
}

/// Waits for the server's close frame; returns its code and reason.
async fn close_frame(
    framed: &mut actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
) -> (u16, String) {
    let read = async {
        while let Some(frame) = framed.next().await {
            if let Ok(awc::ws::Frame::Close(reason)) = frame {
                let reason = reason.expect("the close frame has a code");
                return (
                    u16::from(reason.code),
                    reason.description.unwrap_or_default(),
                );
            }
        }
        panic!("the connection ended without a close frame");
    };
    tokio::time::timeout(patience(), read)
        .await
        .expect("the server closes the connection")
}

#[actix_web::test]
async fn an_expired_token_closes_the_connection_with_4001() {
    let server = start(Backend::Memory, &config("")).await;
    let exp = at(2);
    let jwt = token(json!({"sub": "alice", "editor": true, "exp": exp}));
    let mut client = connect(&server, &jwt).await;
    assert_eq!(
        client.publish("doc:1", json!({"n": 1})).await,
        json!({"success": true})
    );
    assert_eq!(client.closed().await, Some(4001));
    // Not before the token's `exp` (leeway 0).
    assert!(unix_now() >= exp as f64 - 0.05, "closed before exp");
    // The close frame says why.
    let (_, mut framed) = awc::Client::new()
        .ws(format!(
            "{}?token={}",
            server.ws,
            token(json!({"exp": at(2)}))
        ))
        .connect()
        .await
        .unwrap();
    assert_eq!(
        close_frame(&mut framed).await,
        (4001, "token expired".into())
    );
    server.stop().await;
}

#[actix_web::test]
async fn a_refresh_keeps_the_connection_open_past_the_old_expiry() {
    let server = start(Backend::Memory, &config("")).await;
    let old_exp = at(2);
    let mut client = connect(
        &server,
        &token(json!({"sub": "alice", "editor": true, "exp": old_exp})),
    )
    .await;
    // A second connection on a token with the same expiry, never refreshed: its close is the
    // sign that the old expiry has passed and the server acted on it.
    let mut unrefreshed = connect(
        &server,
        &token(json!({"sub": "bob", "editor": true, "exp": old_exp})),
    )
    .await;
    let fresh = token(json!({"sub": "alice", "editor": true, "exp": at(60)}));
    assert_eq!(refresh(&mut client, &fresh).await, json!({"success": true}));
    assert_eq!(unrefreshed.closed().await, Some(4001));
    // Past the old expiry the refreshed connection still works, and was not closed.
    assert_eq!(client.try_next_push(Duration::ZERO).await, None);
    assert_eq!(
        client.publish("doc:1", json!({"n": 2})).await,
        json!({"success": true})
    );
    server.stop().await;
}

#[actix_web::test]
async fn a_bad_refresh_is_refused_and_the_old_expiry_still_closes() {
    let server = start(Backend::Memory, &config("")).await;
    let exp = at(2);
    let claims = json!({"sub": "alice", "exp": exp});
    let mut client = connect(&server, &token(claims.clone())).await;
    let later = at(60);
    let refused = [
        sign_hs256(
            &json!({"sub": "alice", "exp": later}),
            OTHER_SECRET.as_bytes(),
        ),
        // Another subject, or none: a connection cannot change identity.
        token(json!({"sub": "bob", "exp": later})),
        token(json!({"exp": later})),
        token(json!({"sub": "alice", "exp": at(-10)})),
        "not-a-jwt".to_owned(),
    ];
    for bad in &refused {
        let reply = refresh(&mut client, bad).await;
        assert_eq!(reply["code"], "EAUTH", "{reply}");
        assert_eq!(reply["name"], "AuthError", "{reply}");
    }
    let reply = client
        .request("mesh/refresh-token", json!({"jwt": "x"}))
        .await;
    assert_eq!(reply["code"], "EINVALID", "{reply}");
    // Nothing changed: same metadata, and the old token still ends the connection.
    let reply = client
        .request("mesh/get-my-connection-metadata", json!({}))
        .await;
    assert_eq!(reply, json!({ "metadata": claims }));
    assert_eq!(client.closed().await, Some(4001));
    assert!(unix_now() >= exp as f64 - 0.05, "closed before exp");

    // An anonymous connection has no token to refresh, so it cannot log in this way.
    let mut anonymous = server.client().await;
    let reply = refresh(&mut anonymous, &token(json!({"sub": "alice"}))).await;
    assert_eq!(reply["code"], "EAUTH", "{reply}");
    let reply = anonymous
        .request("mesh/get-my-connection-metadata", json!({}))
        .await;
    assert_eq!(reply, json!({"metadata": null}));
    server.stop().await;
}

#[actix_web::test]
async fn guards_see_the_new_claims_after_a_refresh() {
    let server = start(Backend::Memory, &config("")).await;
    let mut client = connect(&server, &token(json!({"sub": "alice", "exp": at(60)}))).await;
    assert_eq!(
        client.publish("doc:g", json!({"n": 1})).await["code"],
        "EFORBIDDEN"
    );
    let editor = json!({"sub": "alice", "editor": true, "exp": at(60)});
    assert_eq!(
        refresh(&mut client, &token(editor.clone())).await,
        json!({"success": true})
    );
    assert_eq!(
        client.publish("doc:g", json!({"n": 1})).await,
        json!({"success": true})
    );
    let reply = client
        .request("mesh/get-my-connection-metadata", json!({}))
        .await;
    assert_eq!(reply, json!({ "metadata": editor }));
    // And claims taken away are gone too.
    let plain = token(json!({"sub": "alice", "exp": at(60)}));
    assert_eq!(refresh(&mut client, &plain).await, json!({"success": true}));
    assert_eq!(
        client.publish("doc:g", json!({"n": 2})).await["code"],
        "EFORBIDDEN"
    );
    let stored = server.records().get_record("doc:g").await.unwrap().unwrap();
    assert_eq!(*stored.value, json!({"n": 1}));
    server.stop().await;
}

#[actix_web::test]
async fn audience_and_issuer_mismatches_are_refused() {
    let server = start(
        Backend::Memory,
        &config("audience = \"app\"\nissuer = \"idp\""),
    )
    .await;
    let good = json!({"sub": "alice", "aud": ["app", "other"], "iss": "idp"});
    let mut client = connect(&server, &token(good)).await;
    for claims in [
        json!({"sub": "alice", "aud": "other", "iss": "idp"}),
        json!({"sub": "alice", "aud": "app", "iss": "evil"}),
        json!({"sub": "alice", "iss": "idp"}),
        json!({"sub": "alice", "aud": "app"}),
    ] {
        let url = format!("{}?token={}", server.ws, token(claims.clone()));
        match Client::try_connect(&url, None).await {
            Err(ConnectError::Status(401)) => {}
            Err(other) => panic!("{claims}: expected 401, got {other:?}"),
            Ok(_) => panic!("{claims}: expected 401, got a connection"),
        }
        // Refreshing to such a token is refused the same way.
        assert_eq!(refresh(&mut client, &token(claims)).await["code"], "EAUTH");
    }
    server.stop().await;
}

#[actix_web::test]
async fn the_leeway_applies_at_the_upgrade_and_to_the_close() {
    let server = start(
        Backend::Memory,
        &config("").replace("leeway_seconds = 0", "leeway_seconds = 3"),
    )
    .await;
    // Expired a second ago, and valid only from two seconds ahead: both within the leeway.
    let exp = at(-1);
    let mut client = connect(&server, &token(json!({"exp": exp, "nbf": at(2)}))).await;
    assert_eq!(client.request("mesh/noop", json!({})).await, json!(true));
    assert_eq!(client.closed().await, Some(4001));
    assert!(
        unix_now() >= (exp + 3) as f64 - 0.05,
        "closed before exp + leeway"
    );
    // Beyond the leeway: refused at the upgrade.
    let url = format!("{}?token={}", server.ws, token(json!({"exp": at(-5)})));
    assert!(matches!(
        Client::try_connect(&url, None).await,
        Err(ConnectError::Status(401))
    ));
    server.stop().await;
}

#[actix_web::test]
async fn the_bearer_scheme_is_matched_in_any_case() {
    let server = start(Backend::Memory, &config("required = true")).await;
    let jwt = token(json!({"sub": "alice"}));
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let upgrade = awc::Client::new()
            .ws(&server.ws)
            .header("authorization", format!("{scheme} {jwt}"))
            .connect()
            .await;
        let (response, _framed) = upgrade.unwrap_or_else(|e| panic!("{scheme}: {e}"));
        assert_eq!(response.status().as_u16(), 101, "{scheme}");

        let response = awc::Client::new()
            .get(format!("{}/api/records/doc:none", server.http))
            .insert_header(("authorization", format!("{scheme} admin-secret")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404, "{scheme}: admin API");
    }
    // Another scheme is still refused.
    let refused = awc::Client::new()
        .get(format!("{}/api/records/doc:none", server.http))
        .insert_header(("authorization", "Basic admin-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    server.stop().await;
}

#[actix_web::test]
async fn a_token_without_the_identity_claim_cannot_refresh_into_someone_else() {
    // Opened as {userId: "a"} with no `sub`: refreshing to {userId: "b"} swapped identities.
    let server = start(Backend::Memory, &config("")).await;
    let mut client = connect(&server, &token(json!({"userId": "a", "exp": at(60)}))).await;
    let reply = refresh(&mut client, &token(json!({"userId": "b", "exp": at(60)}))).await;
    assert_eq!(reply["code"], "EAUTH", "{reply}");
    let reply = client
        .request("mesh/get-my-connection-metadata", json!({}))
        .await;
    assert_eq!(reply["metadata"]["userId"], "a");
    server.stop().await;
}

#[actix_web::test]
async fn the_identity_claim_is_configurable() {
    let server = start(Backend::Memory, &config("identity_claim = \"userId\"")).await;
    let mut client = connect(&server, &token(json!({"userId": "a", "exp": at(60)}))).await;
    let same = token(json!({"userId": "a", "sub": "other", "exp": at(90)}));
    assert_eq!(refresh(&mut client, &same).await, json!({"success": true}));
    let other = token(json!({"userId": "b", "exp": at(90)}));
    assert_eq!(refresh(&mut client, &other).await["code"], "EAUTH");
    server.stop().await;
}

#[actix_web::test]
async fn a_subscription_the_new_claims_may_not_read_ends_with_a_push() {
    let guarded = "[[records.expose]]\npattern = \"^secret:\"\nguard = { require_metadata = \"clearance\" }\n";
    let server = start(Backend::Memory, &format!("{}\n{guarded}", config(""))).await;
    let cleared = token(json!({"sub": "alice", "clearance": true, "exp": at(60)}));
    let mut client = connect(&server, &cleared).await;
    assert_eq!(client.subscribe("secret:1", "full").await["success"], true);
    assert_eq!(client.subscribe("doc:open", "full").await["success"], true);
    let records = server.records();
    let write = |id: &'static str, n: i64| {
        records.write_record(id, json!({ "n": n }), mesh_records::Strategy::Replace)
    };
    write("secret:1", 1).await.unwrap();
    assert_eq!(client.next_push().await["payload"]["recordId"], "secret:1");

    let plain = token(json!({"sub": "alice", "exp": at(60)}));
    assert_eq!(refresh(&mut client, &plain).await, json!({"success": true}));
    let ended = client.next_push_of("mesh/subscription-ended").await;
    assert_eq!(
        ended["payload"],
        json!({"recordId": "secret:1", "reason": "forbidden"})
    );
    // Nothing more of the secret; the open record still streams.
    write("secret:1", 2).await.unwrap();
    write("doc:open", 1).await.unwrap();
    let next = client.next_push_of("mesh/record-update").await;
    assert_eq!(next["payload"]["recordId"], "doc:open");
    // Resubscribing is refused like any subscribe the guard refuses.
    assert_eq!(client.subscribe("secret:1", "full").await["success"], false);
    server.stop().await;
}
