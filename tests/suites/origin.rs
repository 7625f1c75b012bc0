//! The Origin check at the WebSocket upgrade (`[server] allowed_origins`), over real sockets on
//! both WebSocket paths: the lean upgrade service of `mesh_records::start`, and actix-ws in an
//! app's own actix-web `HttpServer` (`RecordServer::configure`). A page from another site gets
//! 403 and no connection; same-host pages, loopback pages, listed origins and clients without
//! an `Origin` (not browsers) get their WebSocket.

use crate::common;

use common::raw_http::{RawHttp, RawResponse};
use common::{Backend, start, test_config};
use mesh_records::RecordServer;
use serde_json::Value;

/// Which WebSocket path serves the upgrade.
#[derive(Clone, Copy, Debug)]
enum Path {
    /// `mesh_records::start`: actix-http's upgrade service (`src/ws/`).
    Lean,
    /// `RecordServer::configure` in the app's own `HttpServer`: actix-ws.
    ActixWs,
}

/// A server on one path, and how to stop it.
struct Served {
    http: String,
    records: RecordServer,
    stop: Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>>,
}

async fn serve(path: Path, toml: &str) -> Served {
    match path {
        Path::Lean => {
            let server = start(Backend::Memory, toml).await;
            Served {
                http: server.http.clone(),
                records: server.records().clone(),
                stop: Box::new(move || Box::pin(server.stop())),
            }
        }
        Path::ActixWs => {
            let records = RecordServer::builder(test_config(toml))
                .record_threads(1)
                .build()
                .await
                .expect("records server builds");
            let app_records = records.clone();
            let http = actix_web::HttpServer::new(move || {
                let records = app_records.clone();
                actix_web::App::new().configure(move |cfg| records.configure(cfg))
            })
            .workers(1)
            .disable_signals()
            .bind(("127.0.0.1", 0))
            .unwrap();
            let addr = http.addrs()[0];
            let http = http.run();
            let handle = http.handle();
            actix_web::rt::spawn(http);
            let stopping = records.clone();
            Served {
                http: format!("http://{addr}"),
                records,
                stop: Box::new(move || {
                    Box::pin(async move {
                        stopping.shutdown(std::time::Duration::from_secs(1)).await;
                        handle.stop(true).await;
                        stopping.close().await;
                    })
                }),
            }
        }
    }
}

/// Sends an upgrade request with this `Host` and `Origin` (none when `None`) and reads the
/// answer; the connection goes with the returned client.
async fn upgrade(http: &str, host: &str, origin: Option<&str>) -> (RawResponse, RawHttp) {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\n{origin}Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let mut tcp = RawHttp::send(http, request.as_bytes()).await;
    (tcp.response().await, tcp)
}

/// The default (empty list): the request's own host and loopback pages, and no `Origin`.
async fn default_allows_own_host_and_loopback(path: Path) {
    let served = serve(path, "").await;
    let host = "records.example.net:3000";
    let (refused, _tcp) = upgrade(&served.http, host, Some("https://evil.example")).await;
    assert_eq!(refused.status, 403, "{path:?}: {refused:?}");
    let body: Value = serde_json::from_str(&refused.body).unwrap();
    let why = body["error"].as_str().unwrap();
    assert!(why.contains("https://evil.example") && why.contains("server.allowed_origins"));
    // Another port of the same host is another origin.
    let (other_port, _) =
        upgrade(&served.http, host, Some("http://records.example.net:3001")).await;
    assert_eq!(other_port.status, 403, "{path:?}");
    assert_eq!(
        served.records.connection_count(),
        0,
        "{path:?}: a refused upgrade connected"
    );
    let mut open = Vec::new();
    for origin in [
        None,
        Some("http://records.example.net:3000"),
        Some("https://RECORDS.example.net:3000"),
        Some("http://localhost:5173"),
        Some("https://127.0.0.1"),
        Some("http://[::1]:8080"),
    ] {
        let (answer, tcp) = upgrade(&served.http, host, origin).await;
        assert_eq!(answer.status, 101, "{path:?} {origin:?}: {answer:?}");
        open.push(tcp);
    }
    common::eventually("every upgrade connected", common::patience(), async || {
        served.records.connection_count() == open.len()
    })
    .await;
    drop(open);
    (served.stop)().await;
}

/// A list replaces the default; `"*"` allows any page.
async fn listed_origins_replace_the_default(path: Path) {
    let toml = "[server]\nallowed_origins = [\"https://app.example.com\"]\n";
    let served = serve(path, toml).await;
    let host = "records.internal:3000";
    for (origin, status) in [
        (Some("https://app.example.com"), 101),
        (None, 101),
        (Some("https://evil.example"), 403),
        (Some("http://records.internal:3000"), 403),
        (Some("http://localhost:3000"), 403),
    ] {
        let (answer, _tcp) = upgrade(&served.http, host, origin).await;
        assert_eq!(answer.status, status, "{path:?} {origin:?}: {answer:?}");
    }
    (served.stop)().await;
    let served = serve(path, "[server]\nallowed_origins = [\"*\"]\n").await;
    let (answer, _tcp) = upgrade(&served.http, "x:1", Some("https://evil.example")).await;
    assert_eq!(answer.status, 101, "{path:?}: {answer:?}");
    (served.stop)().await;
}

#[actix_web::test]
async fn lean_path_allows_own_host_and_loopback_by_default() {
    default_allows_own_host_and_loopback(Path::Lean).await;
}

#[actix_web::test]
async fn actix_ws_path_allows_own_host_and_loopback_by_default() {
    default_allows_own_host_and_loopback(Path::ActixWs).await;
}

#[actix_web::test]
async fn lean_path_follows_the_listed_origins() {
    listed_origins_replace_the_default(Path::Lean).await;
}

#[actix_web::test]
async fn actix_ws_path_follows_the_listed_origins() {
    listed_origins_replace_the_default(Path::ActixWs).await;
}
