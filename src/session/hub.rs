//! [`Sessions`]: the server's WebSocket connections — admitting them under `max_connections`,
//! starting their session actors, and closing them all at shutdown.
//!
//! Lifecycle by ownership: each admitted connection holds a [`ConnectionPermit`] until its
//! socket is closed. The permit is a place in a semaphore (the limit and the count) and a
//! clone of a channel sender. Shutdown drops the hub's own sender and waits on the receiver,
//! which yields `None` exactly when the last permit is gone — no counter kept by hand, no
//! polling.

use super::{SessionActor, SessionServices, SessionSettings};
use crate::auth::{AuthRejection, Authenticator, Grant, SessionToken, UpgradeRequest};
use crate::commands::Commands;
use crate::connection::{Connection, ConnectionIds, MetadataHook};
use crate::inflight::Gated;
use crate::origin::OriginPolicy;
use crate::outbox::Outbox;
use crate::records::Records;
use crate::socket::ConnectionSocket;
use actix::prelude::*;
use actix_http::{RequestHead, StatusCode, header};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

/// What the hub is built from.
pub(crate) struct SessionsConfig {
    pub records: Records,
    pub collections: crate::collections::Collections,
    pub settings: SessionSettings,
    pub commands: Commands,
    pub metadata_hook: Option<MetadataHook>,
    pub authenticator: Authenticator,
    pub ws_path: String,
    pub max_connections: usize,
    pub max_frame_bytes: usize,
    pub max_outbound_bytes: usize,
    /// `[server] allowed_origins`, checked before authentication.
    pub origins: OriginPolicy,
}

/// The server's connections (see the module docs). Cheap to clone.
#[derive(Clone)]
pub(crate) struct Sessions {
    hub: Arc<Hub>,
}

struct Hub {
    services: Arc<SessionServices>,
    ws_path: String,
    max_frame_bytes: usize,
    max_outbound_bytes: usize,
    origins: OriginPolicy,
    ids: ConnectionIds,
    places: Arc<Semaphore>,
    max_connections: usize,
    shutdown: watch::Sender<bool>,
    /// Cloned into every permit; taken (dropped) at shutdown so `all_closed` can end.
    open: Mutex<Option<mpsc::Sender<()>>>,
    /// Yields `None` once the hub's sender and every permit's clone are dropped.
    all_closed: tokio::sync::Mutex<mpsc::Receiver<()>>,
}

/// One connection's place under `max_connections`, given back when dropped (when the
/// connection's socket is closed, not when its session ends: a closing connection still holds
/// a descriptor). Also the `connections` gauge.
pub(crate) struct ConnectionPermit {
    _place: OwnedSemaphorePermit,
    _open: mpsc::Sender<()>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        crate::metrics::metrics().connections.dec();
    }
}

/// Why an upgrade was refused: the HTTP status and body to answer with.
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub body: String,
    pub content_type: &'static str,
}

impl Refusal {
    /// `{"error": <error>}`.
    pub(crate) fn json(status: StatusCode, error: &str) -> Self {
        Refusal {
            status,
            body: serde_json::json!({ "error": error }).to_string(),
            content_type: "application/json",
        }
    }

    fn text(status: StatusCode, text: &str) -> Self {
        Refusal {
            status,
            body: text.to_owned(),
            content_type: "text/plain; charset=utf-8",
        }
    }
}

impl Sessions {
    pub(crate) fn new(config: SessionsConfig) -> Self {
        let max_connections = config.max_connections.min(Semaphore::MAX_PERMITS);
        let (open, all_closed) = mpsc::channel(1);
        let shutdown = watch::channel(false).0;
        Sessions {
            hub: Arc::new(Hub {
                services: Arc::new(SessionServices {
                    records: config.records,
                    settings: Arc::new(config.settings),
                    commands: Arc::new(config.commands),
                    metadata_hook: config.metadata_hook,
                    shutdown: shutdown.subscribe(),
                    authenticator: config.authenticator,
                    collections: config.collections,
                }),
                ws_path: config.ws_path,
                max_frame_bytes: config.max_frame_bytes,
                max_outbound_bytes: config.max_outbound_bytes,
                origins: config.origins,
                ids: ConnectionIds::default(),
                places: Arc::new(Semaphore::new(max_connections)),
                max_connections,
                shutdown,
                open: Mutex::new(Some(open)),
                all_closed: tokio::sync::Mutex::new(all_closed),
            }),
        }
    }

    /// Takes a place under `max_connections` for a new connection, if one is free and the
    /// server is not shutting down.
    pub(crate) fn try_admit(&self) -> Option<ConnectionPermit> {
        let open = lock(&self.hub.open).clone()?;
        let place = Arc::clone(&self.hub.places).try_acquire_owned().ok()?;
        crate::metrics::metrics().connections.inc();
        Some(ConnectionPermit {
            _place: place,
            _open: open,
        })
    }

    /// Admits an upgrade request, for both WebSocket paths: refused with 503 while shutting
    /// down or over `max_connections`, 403 when its `Origin` is not allowed (before the
    /// authenticator runs), 401 when authentication fails; otherwise the grant and
    /// the connection's permit (taken before the answer, so concurrent upgrades cannot exceed
    /// the limit).
    pub(crate) async fn admit(
        &self,
        head: &RequestHead,
    ) -> Result<(Grant, ConnectionPermit), Refusal> {
        if self.is_shutting_down() {
            return Err(Refusal::text(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down",
            ));
        }
        self.check_origin(head)?;
        let grant = self
            .hub
            .services
            .authenticator
            .authenticate(&UpgradeRequest::new(head))
            .await
            .map_err(|AuthRejection(why)| {
                let uri = head.uri.to_string();
                log::debug!(
                    "upgrade refused ({why}): {}",
                    crate::auth::redact_token(&uri)
                );
                Refusal::json(StatusCode::UNAUTHORIZED, &why)
            })?;
        let permit = self.try_admit().ok_or_else(|| {
            Refusal::json(StatusCode::SERVICE_UNAVAILABLE, "too many connections")
        })?;
        Ok((grant, permit))
    }

    /// Refuses (403) a request whose `Origin` header names a page `allowed_origins` does not
    /// allow; a request without one is not from a browser page and passes.
    fn check_origin(&self, head: &RequestHead) -> Result<(), Refusal> {
        let Some(origin) = head.headers().get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or_default();
        let host = match head.headers().get(header::HOST) {
            Some(host) => host.to_str().ok(),
            None => head.uri.authority().map(|a| a.as_str()),
        };
        if self.hub.origins.allows(origin, host) {
            return Ok(());
        }
        crate::metrics::metrics().origin_refusals.inc();
        Err(Refusal::json(
            StatusCode::FORBIDDEN,
            &format!("origin {origin:?} is not allowed here (see server.allowed_origins)"),
        ))
    }

    /// How many connections hold a place.
    pub(crate) fn count(&self) -> usize {
        self.hub.max_connections - self.hub.places.available_permits()
    }

    pub(crate) fn ws_path(&self) -> &str {
        &self.hub.ws_path
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.hub.shutdown.borrow()
    }

    pub(crate) fn max_frame_bytes(&self) -> usize {
        self.hub.max_frame_bytes
    }

    pub(crate) fn max_outbound_bytes(&self) -> usize {
        self.hub.max_outbound_bytes
    }

    /// Starts the session actor of an upgraded connection, reading client frames from
    /// `frames` (gated by `max_in_flight_requests`) and answering through `outbox`.
    pub(crate) fn start<S>(
        &self,
        grant: Grant,
        outbox: Outbox,
        frames: S,
        socket: Option<ConnectionSocket>,
    ) where
        S: futures_util::Stream<
                Item = Result<actix_ws::AggregatedMessage, actix_ws::ProtocolError>,
            > + Unpin
            + 'static,
    {
        let (number, id) = self.hub.ids.next();
        let services = self.hub.services.clone();
        let token = SessionToken::new(&grant);
        let connection = Connection::new(id, grant.metadata);
        let max_in_flight = services.settings.max_in_flight_requests;
        SessionActor::create(|ctx| {
            ctx.add_stream(Gated::new(frames, max_in_flight));
            SessionActor::new(number, connection, outbox, services, socket).with_token(token)
        });
    }

    /// Closes every session with "going away" and refuses new connections; waits up to
    /// `grace` for the last connection to be gone.
    pub(crate) async fn shutdown(&self, grace: Duration) {
        let _ = self.hub.shutdown.send(true);
        drop(lock(&self.hub.open).take());
        let mut all_closed = self.hub.all_closed.lock().await;
        // Nothing is ever sent: `recv` ends when every sender is dropped.
        let _ = tokio::time::timeout(grace, all_closed.recv()).await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
