//! `SessionActor`: one per WebSocket connection, and [`Sessions`], the server's connections.
//!
//! The session owns the connection (id, metadata), the producer side of its outbound queue,
//! and its subscriptions (record id → actor and token). Talks to: the registry
//! (`ResolveAccess`), record actors (subscribe, unsubscribe, write), custom command handlers.
//! Receives the client's frames as a stream, `SubscriptionEnded` from record actors and
//! `Signal`s from its outbox. Its parts: [`dispatch`] (requests), [`flow`] (rate limit and
//! congestion), [`keepalive`] (pings and token expiry), [`hub`] (starting sessions, the
//! connection limit, shutdown), [`subscriptions`] (the record subscriptions, one inline).
//!
//! Invariants:
//! - Access checks of one connection run in arrival order (`ctx.wait`), and the message to the
//!   record actor is enqueued before the next request is looked at, so one client's writes to
//!   a record apply in the order it sent them. Replies may still overtake each other (they
//!   carry the request id).
//! - The subscribe reply is queued by the record actor itself, before any push that follows it.
//! - Nothing here blocks on the socket: frames go to the outbox, which the connection's
//!   writer drains (`ws::writer`, or the response body on the actix-ws path).
//! - The connection's place under `max_connections` is held by its socket, not by the session
//!   ([`ConnectionPermit`]): it is given back when the socket closes.
//! - A client that misses pongs or cannot keep up is disconnected and its socket shut down.
//! - A connection whose token expires (`exp` plus leeway) is closed with 4001 unless it sent
//!   `mesh/refresh-token` first; a refresh takes effect before the next request is read.

mod flow;
mod hub;
mod keepalive;
mod large;
mod mistakes;
mod requests;
mod revoke;
mod subscriptions;

pub(crate) use hub::{ConnectionPermit, Refusal, Sessions, SessionsConfig};

use crate::actors::record::{SubscriptionEnded, Unsubscribe};
use crate::auth::{Authenticator, SessionToken};
use crate::commands::Commands;
use crate::config::ServerConfig;
use crate::connection::{Connection, MetadataHook};
use crate::error::Error;
use crate::inflight::Permit;
use crate::model::RecordId;
use crate::outbox::{Outbox, Outgoing};
use crate::protocol::{self, commands};
use crate::records::Records;
use actix::prelude::*;
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError};
use flow::TokenBucket;
use serde_json::{Number, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use subscriptions::Subscriptions;
use tokio::sync::watch;

/// WebSocket close code sent to a client that could not keep up with its updates.
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// WebSocket close code sent to a client that stopped answering pings.
pub const CLOSE_PING_TIMEOUT: u16 = 4000;
/// WebSocket close code sent when the connection's token expired without a refresh.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;

/// How long a closing connection may take to send its close frame before its socket is shut.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Settings every session shares.
#[derive(Clone, Debug)]
pub struct SessionSettings {
    /// How often the server pings.
    pub ping_interval: Duration,
    /// Consecutive unanswered pings tolerated before closing.
    pub max_missed_pongs: u32,
    /// Longest record id accepted.
    pub max_record_id_bytes: usize,
    /// Largest value a client may write, serialized.
    pub max_value_bytes: usize,
    /// Records one connection may watch at once.
    pub max_subscriptions: usize,
    /// Requests per second (burst: one second's worth); 0 = unlimited.
    pub max_requests_per_second: u32,
    /// Inbound bytes per second (burst: one second's worth, at least one frame); 0 = unlimited.
    pub max_inbound_bytes_per_second: u64,
    /// Largest inbound frame.
    pub max_frame_bytes: usize,
    /// Collection subscribes per second (burst: one second's worth); 0 = unlimited.
    pub max_collection_subscribes_per_second: u32,
    /// How long a congested connection may take to drain before it is cut off.
    pub slow_consumer_timeout: Duration,
    /// Requests worked on at once; the socket is not read while this many are.
    pub max_in_flight_requests: usize,
}

impl From<&ServerConfig> for SessionSettings {
    fn from(s: &ServerConfig) -> Self {
        SessionSettings {
            ping_interval: s.ping_interval(),
            max_missed_pongs: s.max_missed_pongs,
            max_record_id_bytes: s.max_record_id_bytes,
            max_value_bytes: s.value_limit(),
            max_subscriptions: s.max_subscriptions_per_connection,
            max_requests_per_second: s.max_requests_per_second,
            max_inbound_bytes_per_second: s.max_inbound_bytes_per_second,
            max_frame_bytes: s.max_frame_bytes,
            max_collection_subscribes_per_second: 0,
            slow_consumer_timeout: Duration::from_millis(s.slow_consumer_timeout_ms),
            max_in_flight_requests: s.max_in_flight_requests,
        }
    }
}

/// What a session needs from the server, one copy for all of them: each session holds an
/// `Arc` of it (inline, its ~140 bytes would be in every session actor's task).
pub(crate) struct SessionServices {
    /// The record API: its registry resolves access; command handlers get a clone.
    pub records: Records,
    /// Shared settings.
    pub settings: Arc<SessionSettings>,
    /// Custom commands.
    pub commands: Arc<Commands>,
    /// Validates `mesh/set-my-connection-metadata`; none = refuse.
    pub metadata_hook: Option<MetadataHook>,
    /// Flips to true when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// Checks tokens sent with `mesh/refresh-token`.
    pub authenticator: Authenticator,
    /// The server's collections.
    pub collections: crate::collections::Collections,
}

/// The session (see the module docs).
pub(crate) struct SessionActor {
    number: u64,
    connection: Connection,
    outbox: Outbox,
    services: Arc<SessionServices>,
    socket: Option<crate::socket::ConnectionSocket>,
    subscriptions: Subscriptions,
    /// Subscribes sent to record actors and not yet answered (they count toward the limit).
    pending_subscribes: usize,
    /// Collections subscribed to (each counts as one subscription toward the limit).
    collections: HashMap<RecordId, Addr<crate::collections::actor::CollectionActor>>,
    /// Requests per second.
    limiter: TokenBucket,
    /// Inbound bytes per second.
    inbound: TokenBucket,
    /// Collection subscribes per second.
    collection_subscribes: TokenBucket,
    /// What is known of the size of the value in the frame being handled.
    value_size: large::ValueSize,
    /// Bumped whenever congestion ends, so an older slow-consumer deadline does nothing.
    congestion_epoch: u64,
    next_token: u64,
    awaiting_pong: bool,
    missed_pongs: u32,
    /// The in-flight permit of the frame being handled; a request answered later takes it
    /// along and drops it with its reply.
    permit: Option<Permit>,
    /// The credential's deadline and identity (see [`SessionActor::with_token`]).
    token: SessionToken,
    /// The connection's metadata generation the subscriptions' read guards last ran with.
    access_checked_at: u64,
    /// A pass of guards is running (see `revoke.rs`).
    rechecking: bool,
}

impl SessionActor {
    /// A session for an upgraded connection. `socket` (from [`crate::socket::on_connect`])
    /// lets it really end the TCP connection of a client that stopped reading.
    pub(crate) fn new(
        number: u64,
        connection: Connection,
        outbox: Outbox,
        services: Arc<SessionServices>,
        socket: Option<crate::socket::ConnectionSocket>,
    ) -> Self {
        let settings = &services.settings;
        let rate = u64::from(settings.max_requests_per_second);
        let bytes = settings.max_inbound_bytes_per_second;
        let byte_burst = bytes.max(settings.max_frame_bytes as u64);
        let collection_rate = u64::from(settings.max_collection_subscribes_per_second);
        let access_checked_at = connection.metadata_changes();
        SessionActor {
            number,
            connection,
            outbox,
            services,
            socket,
            subscriptions: Subscriptions::default(),
            pending_subscribes: 0,
            collections: HashMap::new(),
            limiter: TokenBucket::new(rate, rate),
            inbound: TokenBucket::new(bytes, byte_burst),
            collection_subscribes: TokenBucket::new(collection_rate, collection_rate),
            value_size: large::ValueSize::Unmeasured { frame_len: 0 },
            congestion_epoch: 0,
            next_token: 0,
            awaiting_pong: false,
            missed_pongs: 0,
            permit: None,
            token: SessionToken::default(),
            access_checked_at,
            rechecking: false,
        }
    }

    fn send(&self, frame: crate::model::Frame) {
        // A refused push raises the overflow signal; the policy runs in `slow_consumer`.
        let _ = self.outbox.push(frame);
    }

    fn reply(&self, id: &Option<Number>, command: &str, result: Result<Value, Error>) {
        let Some(id) = id else { return };
        let frame = match result {
            Ok(payload) => protocol::reply_frame(id, command, &payload),
            Err(error) => protocol::error_frame(id, command, &error),
        };
        self.send(frame);
    }

    /// Closes the connection with a close frame. `abrupt` shuts the socket down at once, for
    /// peers that are not reading (the frame would sit behind their unread data forever);
    /// otherwise the socket is shut down only if the close frame has not gone out after
    /// [`CLOSE_GRACE`].
    fn close(&mut self, ctx: &mut Context<Self>, code: CloseCode, reason: &str, abrupt: bool) {
        self.outbox.close(Some(CloseReason {
            code,
            description: Some(reason.to_owned()),
        }));
        if let Some(socket) = self.socket {
            if abrupt {
                socket.shutdown();
            } else {
                // Runs on this worker thread, where the socket lives (see `socket`).
                let outbox = self.outbox.clone();
                actix_web::rt::spawn(async move {
                    actix::clock::sleep(CLOSE_GRACE).await;
                    if !outbox.writer_done() {
                        socket.shutdown();
                    }
                });
            }
        }
        ctx.stop();
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The session's own mailbox only carries rare notices; frames never pass through it.
        self.send(protocol::push_frame(
            commands::ASSIGN_ID,
            &self.connection.id(),
        ));
        // Pings and the server's shutdown come from this thread's clock, not from a timer
        // and a watcher in each session (~260 bytes of an idle connection).
        crate::actors::clock::join(
            self.services.settings.ping_interval,
            Some(&self.services.shutdown),
            ctx.address().downgrade(),
        );
        self.arm_token_expiry(ctx);

        // Congestion, drain and overflow arrive as `Signal` messages.
        self.outbox.signal_to(ctx.address().recipient());
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.outbox.close(None);
        for (_, addr) in self.collections.drain() {
            addr.do_send(crate::collections::actor::Leave {
                session: self.number,
            });
        }
        for active in self.subscriptions.drain() {
            active.unsubscribe(Unsubscribe {
                session: self.number,
                farewell: None,
            });
        }
    }
}

impl StreamHandler<(Result<AggregatedMessage, ProtocolError>, Permit)> for SessionActor {
    fn handle(
        &mut self,
        (item, permit): (Result<AggregatedMessage, ProtocolError>, Permit),
        ctx: &mut Context<Self>,
    ) {
        let len = match &item {
            Ok(AggregatedMessage::Text(text)) => text.len(),
            Ok(AggregatedMessage::Binary(bytes)) => bytes.len(),
            _ => 0,
        };
        // Requests answered later take the permit; for the rest it is dropped below.
        self.permit = Some(permit);
        self.handle_frame(item, ctx);
        self.permit = None;
        self.pace_inbound(len as u64, ctx);
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl SessionActor {
    fn handle_frame(
        &mut self,
        item: Result<AggregatedMessage, ProtocolError>,
        ctx: &mut Context<Self>,
    ) {
        match item {
            Ok(AggregatedMessage::Text(text)) if text.len() > large::LARGE_FRAME_BYTES => {
                self.handle_large(text, ctx)
            }
            Ok(AggregatedMessage::Text(text)) => self.handle_text(&text, ctx),
            // Mesh servers read binary frames holding JSON too; so do we.
            Ok(AggregatedMessage::Binary(bytes)) => match bytestring::ByteString::try_from(bytes) {
                Ok(text) if text.len() > large::LARGE_FRAME_BYTES => self.handle_large(text, ctx),
                Ok(text) => self.handle_text(&text, ctx),
                Err(_) => self.frame_dropped("binary frame is not UTF-8 text".into()),
            },
            Ok(AggregatedMessage::Ping(bytes)) => self.outbox.push_control(Outgoing::Pong(bytes)),
            Ok(AggregatedMessage::Pong(_)) => {
                self.awaiting_pong = false;
                self.missed_pongs = 0;
            }
            Ok(AggregatedMessage::Close(_)) => self.close(ctx, CloseCode::Normal, "bye", false),
            Err(ProtocolError::Overflow) => {
                self.close(ctx, CloseCode::Size, "frame too large", false);
            }
            Err(e) => {
                log::debug!("session {}: protocol error: {e}", self.number);
                self.close(ctx, CloseCode::Protocol, "protocol error", false);
            }
        }
    }
}

impl Handler<SubscriptionEnded> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: SubscriptionEnded, _ctx: &mut Context<Self>) {
        if self
            .subscriptions
            .get(&msg.record_id)
            .is_some_and(|active| active.token == msg.token)
        {
            self.subscriptions.remove(&msg.record_id);
        }
    }
}
