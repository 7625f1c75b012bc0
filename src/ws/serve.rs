//! The HTTP server of [`crate::start`]: actix-http's service with the WebSocket upgrade
//! taken off the dispatcher ([`super::upgrade`]) and every other request served by the
//! records server's actix-web `App`.

use crate::error::{Error, Result};
use crate::server::RecordServer;
use actix_http::HttpService;
use actix_service::{IntoServiceFactory as _, ServiceFactoryExt as _, fn_service, map_config};
use actix_web::dev::AppConfig;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

/// Pending connections the kernel queues for accept, as actix-web's own default.
const BACKLOG: i32 = 1024;

/// Binds `host:port` and builds (not yet runs) the server with `workers` threads.
pub(crate) fn http_server(
    records: RecordServer,
    host: &str,
    port: u16,
    workers: usize,
) -> Result<(SocketAddr, actix_web::dev::Server)> {
    let cannot_bind = |e: std::io::Error| {
        Error::Config(format!(
            "server.host/server.port: cannot bind {host}:{port}: {e}"
        ))
    };
    let listener = std::net::TcpListener::bind((host, port)).map_err(cannot_bind)?;
    // std listens with a backlog of 128; a burst of connecting clients needs more.
    // SAFETY: the descriptor is the listening socket we own; listen() only changes its backlog.
    unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) };
    let addr = listener.local_addr().map_err(cannot_bind)?;
    let server = actix_server::Server::build()
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(2)
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
        .map_err(cannot_bind)?
        .run();
    Ok((addr, server))
}
