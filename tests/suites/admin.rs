//! The admin HTTP API and the health route.

use crate::common;

use common::raw_http::RawHttp;
use common::{Backend, start};
use serde_json::{Value, json};

const CONFIG: &str = r#"
[admin]
token = "admin-secret"

[[records.expose]]
pattern = "^doc:"
"#;

/// One admin API call: status and JSON body (`null` when the body is not JSON).
pub(crate) async fn call(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let client = awc::Client::default();
    let mut request = match method {
        "GET" => client.get(url),
        "PUT" => client.put(url),
        "DELETE" => client.delete(url),
        _ => unreachable!(),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let mut response = match body {
        Some(body) => request
            .insert_header(("content-type", "application/json"))
            .send_body(body.to_owned())
            .await
            .unwrap(),
        None => request.send().await.unwrap(),
    };
    let bytes = response.body().await.unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (response.status().as_u16(), value)
}

#[actix_web::test]
async fn every_admin_route_needs_the_token() {
    let server = start(Backend::Memory, CONFIG).await;
    let url = format!("{}/api/records/doc:1", server.http);
    for token in [None, Some("wrong"), Some("admin-secret-but-longer")] {
        assert_eq!(call("GET", &url, token, None).await.0, 401);
        assert_eq!(call("PUT", &url, token, Some("{\"a\":1}")).await.0, 401);
        assert_eq!(call("DELETE", &url, token, None).await.0, 401);
    }
    assert_eq!(server.records().get_record("doc:1").await.unwrap(), None);
    server.stop().await;
}

#[actix_web::test]
async fn admin_api_gets_puts_and_deletes_on_memory() {
    admin_api_gets_puts_and_deletes(Backend::Memory).await;
}

#[actix_web::test]
async fn admin_api_gets_puts_and_deletes_on_redis() {
    admin_api_gets_puts_and_deletes(Backend::Redis).await;
}

async fn admin_api_gets_puts_and_deletes(backend: Backend) {
    let server = start(backend, CONFIG).await;
    let mut watcher = server.client().await;
    watcher.subscribe("doc:1", "full").await;
    let url = format!("{}/api/records/doc:1", server.http);
    let token = Some("admin-secret");
    assert_eq!(call("GET", &url, token, None).await.0, 404);
    let (status, body) = call("PUT", &url, token, Some(r#"{"a":1,"b":{"c":1}}"#)).await;
    assert_eq!(
        (status, body),
        (200, json!({"version": 1, "changed": true}))
    );
    assert_eq!(watcher.next_push().await["payload"]["version"], 1);
    let (status, body) = call(
        "PUT",
        &format!("{url}?strategy=deepMerge"),
        token,
        Some(r#"{"b":{"d":2}}"#),
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({"version": 2, "changed": true}))
    );
    assert_eq!(watcher.next_push().await["payload"]["version"], 2);
    let (status, body) = call("PUT", &url, token, Some(r#"{"a":1,"b":{"c":1,"d":2}}"#)).await;
    assert_eq!(
        (status, body),
        (200, json!({"version": 2, "changed": false}))
    );
    let (status, body) = call("GET", &url, token, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"recordId": "doc:1", "value": {"a": 1, "b": {"c": 1, "d": 2}}, "version": 2})
    );
    assert_eq!(call("PUT", &url, token, Some("{not json")).await.0, 400);
    assert_eq!(
        call("PUT", &format!("{url}?strategy=x"), token, Some("{}"))
            .await
            .0,
        400
    );
    let (status, body) = call("DELETE", &url, token, None).await;
    assert_eq!((status, body), (200, json!({"version": 2})));
    assert_eq!(watcher.next_push().await["command"], "mesh/record-deleted");
    assert_eq!(call("DELETE", &url, token, None).await.0, 404);
    server.stop().await;
}

#[actix_web::test]
async fn health_answers_and_admin_is_off_without_a_token() {
    let server = start(Backend::Memory, "").await;
    let (status, _) = call("GET", &format!("{}/health", server.http), None, None).await;
    assert_eq!(status, 200);
    let (status, _) = call(
        "GET",
        &format!("{}/api/records/doc:1", server.http),
        Some("x"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    server.stop().await;
}

#[actix_web::test]
async fn demo_page_is_served_when_enabled() {
    let server = start(Backend::Memory, "[server]\ndemo = true\n").await;
    let client = awc::Client::default();
    for (path, content_type) in [
        ("/demo/", "text/html"),
        ("/demo/app.js", "text/javascript"),
        ("/demo/mesh-client.js", "text/javascript"),
        ("/demo/fast-json-patch.min.js", "text/javascript"),
        ("/demo/style.css", "text/css"),
    ] {
        let response = client
            .get(format!("{}{path}", server.http))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let got = response
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(got.starts_with(content_type), "{path}: {got}");
    }
    let missing = client
        .get(format!("{}/demo/nope.js", server.http))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    server.stop().await;
    let server = start(Backend::Memory, "").await;
    let off = client
        .get(format!("{}/demo/", server.http))
        .send()
        .await
        .unwrap();
    assert_eq!(off.status().as_u16(), 404);
    server.stop().await;
}

/// The head of a PUT of `doc:1` announcing a body of `length` bytes (or a chunked one).
fn put_head(token: Option<&str>, length: Option<usize>) -> String {
    let mut head = "PUT /api/records/doc:1 HTTP/1.1\r\nHost: localhost\r\n\
                    Content-Type: application/json\r\n"
        .to_owned();
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    match length {
        Some(n) => head.push_str(&format!("Content-Length: {n}\r\n")),
        None => head.push_str("Transfer-Encoding: chunked\r\n"),
    }
    head + "\r\n"
}

#[actix_web::test]
async fn a_put_without_the_token_is_refused_before_its_body() {
    let server = start(Backend::Memory, CONFIG).await;
    for token in [None, Some("wrong")] {
        for length in [Some(16 * 1024 * 1024), None] {
            // Only the head goes out: the answer cannot wait for the body.
            let mut tcp = RawHttp::send(&server.http, put_head(token, length).as_bytes()).await;
            let response = tcp.response().await;
            assert_eq!(response.status, 401, "{token:?} {length:?}: {response:?}");
            let body: Value = serde_json::from_str(&response.body).unwrap();
            assert_eq!(body["error"], "missing or wrong admin token");
            // The unsent body is not waited for, announced or chunked: the server hangs up.
            assert_eq!(response.header("connection"), Some("close"));
            assert!(
                tcp.closes().await,
                "{token:?} {length:?}: the connection stays open"
            );
        }
    }
    assert_eq!(server.records().get_record("doc:1").await.unwrap(), None);
    server.stop().await;
}

#[actix_web::test]
async fn an_admin_body_over_max_body_bytes_is_refused_with_413() {
    let config = CONFIG.replace("[admin]\n", "[admin]\nmax_body_bytes = 1024\n");
    let server = start(Backend::Memory, &config).await;
    let url = format!("{}/api/records/doc:1", server.http);
    let token = Some("admin-secret");
    let fits = format!("{{\"a\":\"{}\"}}", "x".repeat(1000));
    assert_eq!(fits.len(), 1008);
    assert_eq!(call("PUT", &url, token, Some(&fits)).await.0, 200);
    let over = format!("{{\"a\":\"{}\"}}", "y".repeat(1017));
    assert_eq!(over.len(), 1025);
    let (status, body) = call("PUT", &url, token, Some(&over)).await;
    assert_eq!(status, 413);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("admin.max_body_bytes"),
        "{body}"
    );
    // Announced over the limit: refused from the head, the body never sent.
    let mut tcp = RawHttp::send(&server.http, put_head(token, Some(1 << 30)).as_bytes()).await;
    assert_eq!(tcp.response().await.status, 413);
    assert!(tcp.closes().await);
    // Chunked (no length announced): refused at the chunk that crosses the limit.
    let mut tcp = RawHttp::send(&server.http, put_head(token, None).as_bytes()).await;
    for _ in 0..3 {
        let chunk = format!("200\r\n{}\r\n", "z".repeat(0x200));
        if tcp.write(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    assert_eq!(tcp.response().await.status, 413);
    assert!(
        tcp.closes().await,
        "the rest of a chunked body is not drained"
    );
    // Nothing over the limit was written.
    let record = server.records().get_record("doc:1").await.unwrap().unwrap();
    assert_eq!(
        (record.version, &*record.value),
        (1, &serde_json::from_str::<Value>(&fits).unwrap())
    );
    server.stop().await;
}

#[actix_web::test]
async fn with_admin_bind_the_admin_api_is_only_on_its_own_port() {
    let config = CONFIG.replace(
        "token = \"admin-secret\"",
        "token = \"admin-secret\"\nbind = \"127.0.0.1:0\"",
    );
    let server = start(Backend::Memory, &config).await;
    let admin = format!(
        "http://{}",
        server.running.admin_addr.expect("admin listener")
    );
    assert_ne!(admin, server.http);
    let token = Some("admin-secret");
    let public_url = format!("{}/api/records/doc:1", server.http);
    let admin_url = format!("{admin}/api/records/doc:1");
    assert_eq!(
        call("PUT", &public_url, token, Some("{\"a\":1}")).await.0,
        404
    );
    assert_eq!(call("GET", &public_url, token, None).await.0, 404);
    assert_eq!(
        call("PUT", &admin_url, None, Some("{\"a\":1}")).await.0,
        401
    );
    let (status, body) = call("PUT", &admin_url, token, Some("{\"a\":2}")).await;
    assert_eq!(
        (status, body),
        (200, json!({"version": 1, "changed": true}))
    );
    // Same records: a WebSocket client on the public port sees the admin's write.
    let mut client = server.client().await;
    let snapshot = client.subscribe("doc:1", "full").await;
    assert_eq!(snapshot["record"], json!({"a": 2}), "{snapshot}");
    let (status, body) = call("GET", &admin_url, token, None).await;
    assert_eq!((status, body["value"].clone()), (200, json!({"a": 2})));
    // The admin port serves nothing else.
    let (status, _) = call("GET", &format!("{admin}/health"), None, None).await;
    assert_eq!(status, 404);
    server.stop().await;
}

/// `GET /api/collections/{id}`: the members now, sorted and limited as the rule says, each
/// with its record version; 404 for an id no rule covers; the token first, as everywhere.
#[actix_web::test]
async fn the_admin_api_shows_a_collections_members() {
    let config = format!(
        "{CONFIG}\n[[collections.expose]]\npattern = \"^docs:(\\\\w)$\"\nmembers = \"doc:{{1}}*\"\nsort = \"/rank\"\nlimit = 2\n"
    );
    let server = start(Backend::Memory, &config).await;
    for (id, rank) in [("doc:a1", 3), ("doc:a2", 1), ("doc:a3", 2), ("doc:b1", 0)] {
        let value = json!({ "rank": rank });
        server.write(id, value).await;
    }
    server.write("doc:a2", json!({"rank": 1, "x": true})).await;
    let url = format!("{}/api/collections/docs:a", server.http);
    assert_eq!(call("GET", &url, None, None).await.0, 401);
    let (status, body) = call("GET", &url, Some("admin-secret"), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"collectionId": "docs:a", "ids": ["doc:a2", "doc:a3"], "members": [
            {"id": "doc:a2", "version": 2, "record": {"rank": 1, "x": true, "id": "doc:a2"}},
            {"id": "doc:a3", "version": 1, "record": {"rank": 2, "id": "doc:a3"}},
        ]})
    );
    let missing = format!("{}/api/collections/nothing", server.http);
    assert_eq!(
        call("GET", &missing, Some("admin-secret"), None).await.0,
        404
    );
    server.stop().await;
}
