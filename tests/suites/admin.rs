//! The admin HTTP API and the health route.

use crate::common;

use common::{Backend, start};
use serde_json::{Value, json};

const CONFIG: &str = r#"
[admin]
token = "admin-secret"

[[records.expose]]
pattern = "^doc:"
"#;

async fn call(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> (u16, Value) {
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
