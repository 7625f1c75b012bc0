//! HTTP: the routes a [`RecordServer`] mounts (`configure`), the actix-ws upgrade for apps
//! that serve it from their own actix-web `HttpServer`, and the HTTP server of
//! [`crate::start`]: actix-http's service with the WebSocket upgrade taken off the dispatcher
//! (`crate::ws`) and every other request served by the actix-web `App`. It stands in for
//! `actix_web::HttpServer`, which has no way to install an upgrade service.

use super::RecordServer;
use crate::error::{Error, Result};
use crate::outbox::Outbox;
use crate::session::Sessions;
use crate::socket::ConnectionSocket;
use actix_http::HttpService;
use actix_service::{IntoServiceFactory as _, ServiceFactoryExt as _, fn_service, map_config};
use actix_web::dev::AppConfig;
use actix_web::{HttpRequest, HttpResponse, web};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

/// Pending connections the kernel queues for accept, as actix-web's own default.
const BACKLOG: i32 = 1024;

impl RecordServer {
    /// Mounts the WebSocket route, `GET /health` and, when an admin token is set and
    /// `[admin] bind` is not, the admin API. Use as
    /// `App::new().configure(|cfg| records.configure(cfg))`.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        let sessions = self.inner.sessions.clone();
        cfg.route(
            self.inner.sessions.ws_path(),
            web::get().to(move |req: HttpRequest, body: web::Payload| {
                let sessions = sessions.clone();
                async move { upgrade(&sessions, req, body).await }
            }),
        );
        cfg.route(
            "/health",
            web::get().to(|| async { HttpResponse::Ok().body("ok") }),
        );
        let readiness = self.clone();
        cfg.route(
            "/ready",
            web::get().to(move || {
                let records = readiness.clone();
                async move { records.readiness().await }
            }),
        );
        cfg.route(
            "/metrics",
            web::get().to(|| async {
                HttpResponse::Ok()
                    .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
                    .body(crate::metrics::metrics().render())
            }),
        );
        if !self.inner.admin_apart {
            self.configure_admin(cfg);
        }
        if self.inner.demo {
            crate::demo::configure(cfg);
            // A first visit to the bare address lands on the demo rather than a 404.
            cfg.route(
                "/",
                web::get().to(|| async {
                    HttpResponse::Found()
                        .insert_header(("location", "/demo/"))
                        .finish()
                }),
            );
        }
    }

    /// `GET /ready`: 200 `{"ready": true}` while serving; 503 `{"ready": false, "reason"}`
    /// while draining (a stop began) or when the store does not answer a read within a
    /// second. (Before the server is ready its port refuses connections altogether.)
    async fn readiness(&self) -> HttpResponse {
        let not_ready = |reason: &str| {
            HttpResponse::ServiceUnavailable().json(serde_json::json!({
                "ready": false, "reason": reason
            }))
        };
        if self.inner.sessions.is_shutting_down() {
            return not_ready("draining: the server is stopping");
        }
        let probe =
            crate::model::RecordId::parse("mesh-records:ready", 64).expect("a valid record id");
        let read = self.inner.store.load(&probe);
        match tokio::time::timeout(std::time::Duration::from_secs(1), read).await {
            Ok(Ok(_)) => HttpResponse::Ok().json(serde_json::json!({ "ready": true })),
            Ok(Err(_)) | Err(_) => not_ready("the record store does not answer"),
        }
    }

    /// Mounts the admin API alone (nothing when no admin token is set): what [`crate::start`]
    /// serves on `[admin] bind`, for an app that serves that address from its own `HttpServer`.
    pub fn configure_admin(&self, cfg: &mut web::ServiceConfig) {
        if let Some(settings) = &self.inner.admin {
            crate::admin::configure(
                cfg,
                (self.records().clone(), self.collections().clone()),
                settings,
            );
        }
    }
}

/// Upgrades one request to a WebSocket session through actix-ws: the path of an app that
/// mounts [`RecordServer::configure`] in its own actix-web server. [`crate::start`] serves the
/// upgrade itself instead (`crate::ws`), with far less memory per connection.
async fn upgrade(
    sessions: &Sessions,
    req: HttpRequest,
    body: web::Payload,
) -> actix_web::Result<HttpResponse> {
    let (grant, permit) = match sessions.admit(req.head()).await {
        Ok(admitted) => admitted,
        Err(refusal) => {
            return Ok(HttpResponse::build(refusal.status)
                .content_type(refusal.content_type)
                .body(refusal.body));
        }
    };
    let (response, session, stream) = actix_ws::handle(&req, body)?;
    let max = sessions.max_frame_bytes();
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    // actix-ws's `Session` (a writer task per connection feeding a 32-frame channel) is
    // not used: the body drains the outbox itself, one wake and one write per burst.
    drop(session);
    let (outbox, receiver) = Outbox::new(sessions.max_outbound_bytes());
    let response = response
        .map_body(|_, upgrade_body| receiver.into_body(upgrade_body, permit))
        .map_into_boxed_body();
    let socket = req.conn_data::<ConnectionSocket>().copied();
    sessions.start(grant, outbox, stream, socket);
    Ok(response)
}

/// Binds `addr` without listening: the port is taken (a second server fails here, at once)
/// but connecting to it is refused until [`http_server`] listens. `SO_REUSEADDR` as usual,
/// so a restart does not wait out the previous process's closing connections.
pub(super) fn bind_only(
    addr: impl std::net::ToSocketAddrs,
) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr = addr.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    })?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Starts accepting connections on a socket [`bind_only`] bound.
fn listen(listener: &std::net::TcpListener) -> std::io::Result<()> {
    // SAFETY: the descriptor is the bound socket we were given; listen() only makes it
    // accept connections.
    match unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// The listeners [`http_server`] serves.
pub(super) struct Listeners {
    /// `[server] host`/`port`: WebSockets and every route of [`RecordServer::configure`].
    pub public: std::net::TcpListener,
    /// `[admin] bind`: the admin API alone.
    pub admin: Option<std::net::TcpListener>,
}

/// Where a built server listens.
pub(super) struct Bound {
    pub public: SocketAddr,
    pub admin: Option<SocketAddr>,
}

/// Builds (not yet runs) the server on `listeners` with `workers` threads (shared by both
/// listeners); actix-server waits up to `shutdown_secs` for HTTP requests in progress when
/// stopped.
pub(super) fn http_server(
    records: RecordServer,
    listeners: Listeners,
    workers: usize,
    shutdown_secs: u64,
) -> Result<(Bound, actix_web::dev::Server)> {
    let cannot_listen =
        |e: std::io::Error| Error::Config(format!("server.host/server.port: cannot listen: {e}"));
    let listener = listeners.public;
    // Everything is ready: from here on connections are accepted (a burst of connecting
    // clients needs more than the usual backlog of 128).
    listen(&listener).map_err(cannot_listen)?;
    let addr = listener.local_addr().map_err(cannot_listen)?;
    let mut builder = actix_server::Server::build()
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(shutdown_secs);
    let mut bound = Bound {
        public: addr,
        admin: None,
    };
    if let Some(admin) = listeners.admin {
        let cannot_listen =
            |e: std::io::Error| Error::Config(format!("admin.bind: cannot listen: {e}"));
        listen(&admin).map_err(cannot_listen)?;
        bound.admin = Some(admin.local_addr().map_err(cannot_listen)?);
        let records = records.clone();
        // Plain HTTP with the admin API alone: no WebSocket upgrade, no other route.
        builder = builder
            .listen("mesh-records-admin", admin, move || {
                let records = records.clone();
                let app = actix_web::App::new()
                    .configure(move |cfg| records.configure_admin(cfg))
                    .into_factory()
                    .map_err(|e: actix_web::Error| e.error_response());
                HttpService::build()
                    .client_disconnect_timeout(std::time::Duration::from_secs(1))
                    .finish(map_config(app, |_| AppConfig::default()))
                    .tcp()
            })
            .map_err(cannot_listen)?;
    }
    let server = builder
        .listen("mesh-records", listener, move || {
            let app_records = records.clone();
            let app = actix_web::App::new()
                .configure(move |cfg| app_records.configure(cfg))
                .into_factory()
                .map_err(|e: actix_web::Error| e.error_response());
            let sessions = records.inner.sessions.clone();
            let upgrade = fn_service(move |(req, framed)| {
                crate::ws::serve_upgrade(sessions.clone(), req, framed)
            });
            HttpService::build()
                .client_disconnect_timeout(std::time::Duration::from_secs(1))
                .local_addr(addr)
                .on_connect_ext(|io: &_, data: &mut _| {
                    crate::socket::on_connect(io as &dyn std::any::Any, data)
                })
                .upgrade(upgrade)
                .finish(map_config(app, |_| AppConfig::default()))
                .tcp()
        })
        .map_err(cannot_listen)?
        .run();
    Ok((bound, server))
}
