//! The HTTP server of [`crate::start`]: actix-http's service with the WebSocket upgrade
//! taken off the dispatcher ([`super::upgrade`]) and every other request served by the
//! records server's actix-web `App`. Stands in for `actix_web::HttpServer`, which has no way
//! to install an upgrade service.

use crate::error::{Error, Result};
use crate::server::RecordServer;
use actix_http::HttpService;
use actix_service::{IntoServiceFactory as _, ServiceFactoryExt as _, fn_service, map_config};
use actix_web::dev::AppConfig;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

/// Pending connections the kernel queues for accept, as actix-web's own default.
const BACKLOG: i32 = 1024;

/// Builds (not yet runs) the server on `listener` with `workers` threads; actix-server waits
/// up to `shutdown_secs` for HTTP requests in progress when stopped.
pub(crate) fn http_server(
    records: RecordServer,
    listener: std::net::TcpListener,
    workers: usize,
    shutdown_secs: u64,
) -> Result<(SocketAddr, actix_web::dev::Server)> {
    let cannot_listen =
        |e: std::io::Error| Error::Config(format!("server.host/server.port: cannot listen: {e}"));
    // std listens with a backlog of 128; a burst of connecting clients needs more.
    // SAFETY: the descriptor is the listening socket we were given; listen() only changes
    // its backlog.
    unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) };
    let addr = listener.local_addr().map_err(cannot_listen)?;
    let server = actix_server::Server::build()
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(shutdown_secs)
        .listen("mesh-records", listener, move || {
            let app_records = records.clone();
            let app = actix_web::App::new()
                .configure(move |cfg| app_records.configure(cfg))
                .into_factory()
                .map_err(|e: actix_web::Error| e.error_response());
            let upgrade_records = records.clone();
            let upgrade = fn_service(move |(req, framed)| {
                super::upgrade::serve(upgrade_records.clone(), req, framed)
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
    Ok((addr, server))
}
