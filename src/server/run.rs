//! Starting and stopping a whole server: [`start`] checks the config, binds, then builds; [`run`]
//! waits for a signal, and [`RunningServer::stop`] fits in `[server] shutdown_timeout_ms`
//! even when a database hangs.

use super::{RecordServer, RecordServerBuilder};
use crate::config::Config;
use crate::error::{Error, Result};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A running HTTP server with its records server.
pub struct RunningServer {
    /// The library handle.
    pub records: RecordServer,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where the admin API listens when `[admin] bind` is set.
    pub admin_addr: Option<SocketAddr>,
    http: actix_web::dev::ServerHandle,
    task: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
    /// `[server] shutdown_timeout_ms`: the whole of `stop` fits in it.
    shutdown_timeout: Duration,
}

/// What a stop left undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopReport {
    /// Persisted records that were not written to the database (it did not answer in time).
    pub unpersisted: usize,
}

impl RunningServer {
    /// Closes sessions, lets the record actors on the HTTP workers retire, stops the HTTP
    /// server, flushes persistence and stops the record threads, within
    /// `[server] shutdown_timeout_ms` even when a database hangs.
    pub async fn stop(self) -> StopReport {
        let deadline = Instant::now() + self.shutdown_timeout;
        // Sessions and HTTP get a short share; the final flush gets the rest.
        let grace = (self.shutdown_timeout / 5).min(Duration::from_secs(2));
        self.records.shutdown(grace).await;
        let http = self.http;
        let task = self.task;
        let stopped = async move {
            http.stop(true).await;
            let _ = task.await;
        };
        if tokio::time::timeout(left(deadline), stopped).await.is_err() {
            log::warn!("the HTTP server did not stop in time");
        }
        let unpersisted = self.records.close_within(left(deadline)).await;
        self.records.stop_arbiters();
        StopReport { unpersisted }
    }
}

/// Time until `deadline`, zero once passed.
fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// actix-web's graceful stop timeout (whole seconds): a fifth of the stop budget, 1–2 s.
fn http_shutdown_secs(budget: Duration) -> u64 {
    (budget.as_secs() / 5).clamp(1, 2)
}

/// Builds the records server from `config` and serves it over HTTP.
///
/// Fails when the config is invalid, the store is unreachable or the address cannot be bound.
pub async fn start(config: Config) -> Result<RunningServer> {
    let builder = RecordServer::builder(config.clone());
    start_with(config, builder).await
}

/// Like [`start`], with a builder the caller extended (exposures, commands, store).
///
/// The config is checked first (`RecordServerBuilder::check_config`), then the listener is
/// bound: a second instance started on a taken port fails at once, before it opens a
/// database, restores records or starts any actor. It listens only once everything is ready:
/// until then a client connecting is refused by the kernel (so a load balancer or an
/// orchestrator sees "not up"), never accepted and left unanswered, and never accepted and
/// then reset because the start failed.
pub async fn start_with(config: Config, builder: RecordServerBuilder) -> Result<RunningServer> {
    // Every config error first: the same config fails the same way whether the port is free.
    builder.check_config().await?;
    let s = &config.server;
    let listener = super::http::bind_only((s.host.as_str(), s.port)).map_err(|e| {
        Error::Config(format!(
            "server.port: cannot bind {}:{}: {e} (is another server running there? choose \
             another port with MESH_PORT or [server] port)",
            s.host, s.port
        ))
    })?;
    let admin = match &config.admin.bind {
        Some(bind) if config.admin.token.is_some() => Some(
            super::http::bind_only(bind.as_str())
                .map_err(|e| Error::Config(format!("admin.bind: cannot bind {bind}: {e}")))?,
        ),
        _ => None,
    };
    log::info!(
        "starting: {}:{} bound; connections are refused until the server can serve",
        s.host,
        s.port
    );
    let records = builder.build().await?;
    let workers = match s.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let shutdown_secs = http_shutdown_secs(s.shutdown_timeout());
    let listeners = super::http::Listeners {
        public: listener,
        admin,
    };
    let (bound, server) =
        super::http::http_server(records.clone(), listeners, workers, shutdown_secs)?;
    let handle = server.handle();
    let task = actix_web::rt::spawn(server);
    Ok(RunningServer {
        records,
        addr: bound.public,
        admin_addr: bound.admin,
        http: handle,
        task,
        shutdown_timeout: s.shutdown_timeout(),
    })
}

/// Runs until SIGINT or SIGTERM, then stops gracefully within `[server] shutdown_timeout_ms`.
///
/// Fails when the server cannot start; the report says what the stop left unwritten.
pub async fn run(config: Config) -> Result<StopReport> {
    let running = start(config).await?;
    let addr = running.addr;
    log::info!("mesh-records listening on {addr}");
    if let Some(admin) = running.admin_addr {
        log::info!("admin API listening on {admin}");
    }
    // Where a newcomer goes next, with the real bound address.
    log::info!(
        "WebSocket endpoint: ws://{addr}{}",
        running.records.inner.sessions.ws_path()
    );
    if running.records.inner.demo {
        log::info!("demo page: http://{addr}/demo/ (open it in two tabs)");
    }
    wait_for_signal().await;
    log::info!("stopping");
    Ok(running.stop().await)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
