//! Ready means ready: until a server can serve, its port refuses connections (never accepts
//! and leaves them unanswered, never resets them); `GET /ready` answers 200 while serving and
//! 503 while draining or when the store does not answer; `GET /health` only says "alive".

use crate::common;

use common::own_redis::OwnRedis;
use common::persistence::TestSchema;
use common::proxy::{Proxy, Scope};
use common::{Client, eventually, patience};
use std::net::SocketAddr;
use std::time::Duration;

fn postgres_addr() -> SocketAddr {
    "127.0.0.1:5432".parse().unwrap()
}

/// The status of `GET path` on `port`, or `None` when the connection is refused.
async fn get(port: u16, path: &str) -> Option<u16> {
    let response = awc::Client::new()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(patience())
        .send()
        .await;
    match response {
        Ok(response) => Some(response.status().as_u16()),
        Err(awc::error::SendRequestError::Connect(_)) => None,
        Err(e) => panic!("GET {path}: neither answered nor refused: {e}"),
    }
}

/// A client connecting while the server waits for its database (behind a proxy that holds
/// every byte) is refused at once; once the database answers, the same port serves.
#[actix_web::test]
async fn nothing_is_accepted_before_the_server_can_serve() {
    let schema = TestSchema::new("ready_start");
    let proxy = Proxy::start(postgres_addr()).await;
    proxy.hang(Scope::OpenAndNew);
    let port = common::free_port();
    let toml = format!(
        r#"
[persistence]
adapter = "postgres"
postgres_url = "host=127.0.0.1 port={} user=postgres dbname=postgres"
postgres_schema = "{}"
postgres_connect_timeout_ms = 20000

[[records.persist]]
write_pattern = "^doc:"
restore_pattern = "doc:%"

[[records.expose]]
pattern = "^doc:"
"#,
        proxy.port, schema.name
    );
    let mut config = common::test_config(&toml);
    config.server.port = port;
    let starting = actix_rt::spawn(mesh_records::start(config));
    // The start has reached the database (and is held there by the proxy): from now on it
    // waits, and its port must refuse everyone.
    eventually("the start to reach the database", patience(), async || {
        proxy.accepted() > 0
    })
    .await;
    for _ in 0..5 {
        let connect = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
        let refused = connect.expect_err("refused while starting");
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        assert_eq!(get(port, "/health").await, None);
    }
    assert!(
        !starting.is_finished(),
        "the start does not wait for the database"
    );

    proxy.heal();
    let running = starting
        .await
        .unwrap()
        .expect("starts once the database answers");
    assert_eq!(get(port, "/ready").await, Some(200));
    assert_eq!(get(port, "/health").await, Some(200));
    let mut client = Client::connect(&format!("ws://127.0.0.1:{port}/ws")).await;
    let reply = client.request("mesh/noop", serde_json::json!({})).await;
    assert_eq!(reply, serde_json::json!(true));
    running.stop().await;
}

/// A start that fails (the database never answers within the connect timeout) never
/// accepted anyone, so nobody is reset; the error names the setting.
#[actix_web::test]
async fn a_database_that_never_answers_stops_the_start_with_the_setting_named() {
    let proxy = Proxy::start(postgres_addr()).await;
    proxy.hang(Scope::OpenAndNew);
    let port = common::free_port();
    let toml = format!(
        "[persistence]\nadapter = \"postgres\"\n\
         postgres_url = \"host=127.0.0.1 port={} user=postgres dbname=postgres\"\n\
         postgres_connect_timeout_ms = 1000\n\
         [[records.persist]]\nwrite_pattern = \"^doc:\"\nrestore_pattern = \"doc:%\"\n",
        proxy.port
    );
    let mut config = common::test_config(&toml);
    config.server.port = port;
    let starting = actix_rt::spawn(mesh_records::start(config));
    eventually("the start to reach the database", patience(), async || {
        proxy.accepted() > 0
    })
    .await;
    assert_eq!(get(port, "/health").await, None, "refused while starting");
    let error = match starting.await.unwrap() {
        Ok(_) => panic!("started without its database"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("postgres_connect_timeout_ms"), "{error}");
    assert_eq!(get(port, "/health").await, None, "and after");
}

/// `/ready` follows the store: 503 while Redis is down, 200 again once it is back; `/health`
/// stays 200 throughout (the process is alive).
#[actix_web::test]
async fn ready_follows_the_store_and_health_only_says_alive() {
    let mut redis = OwnRedis::start();
    let prefix = common::unique_prefix("ready");
    let toml = format!(
        "[store]\nbackend = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"\n",
        redis.url()
    );
    let running = mesh_records::start(common::test_config(&toml))
        .await
        .unwrap();
    let port = running.addr.port();
    assert_eq!(get(port, "/ready").await, Some(200));
    redis.kill();
    eventually("/ready 503 without Redis", patience(), async || {
        get(port, "/ready").await == Some(503)
    })
    .await;
    assert_eq!(get(port, "/health").await, Some(200));
    redis.restart();
    eventually("/ready 200 with Redis back", patience() * 3, async || {
        get(port, "/ready").await == Some(200)
    })
    .await;
    running.stop().await;
}

/// Draining: once a stop begins (sessions are closed first, the HTTP server stopped after),
/// `/ready` answers 503 while the port still answers.
#[actix_web::test]
async fn ready_is_503_while_draining() {
    let running = mesh_records::start(common::test_config("")).await.unwrap();
    let port = running.addr.port();
    assert_eq!(get(port, "/ready").await, Some(200));
    // The first step of `stop`, on its own: the HTTP server keeps running.
    running.records.shutdown(Duration::from_millis(100)).await;
    assert_eq!(get(port, "/ready").await, Some(503));
    assert_eq!(get(port, "/health").await, Some(200));
    running.stop().await;
}
