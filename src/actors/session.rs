//! `SessionActor`: one per WebSocket connection.
//!
//! Owns the connection (id, metadata), the producer side of its outbound queue, and its
//! subscriptions (record id → actor and token). Talks to: the registry (`ResolveAccess`), record
//! actors (subscribe, unsubscribe, write), custom command handlers. Receives the client's frames
//! as a stream and `SubscriptionEnded` from record actors.
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
//!   (`server::ConnectionSlot`): it is given back when the socket closes.
//! - A client that misses pongs or cannot keep up is disconnected and its socket shut down.
//! - A connection whose token expires (`exp` plus leeway) is closed with 4001 unless it sent
//!   `mesh/refresh-token` first; a refresh takes effect before the next request is read.

use super::record::{ApplyWrite, RecordActor, ResyncSubscriber, Subscribe, Unsubscribe};
use super::registry::{Leased, RegistryActor, ResolveAccess, send_to_record};
use crate::access::Operation;
use crate::auth::{Authenticator, SessionToken};
use crate::commands::{CommandContext, Commands};
use crate::connection::Connection;
use crate::error::Error;
use crate::inflight::Permit;
use crate::outbox::{Outbox, Outgoing, Signal};
use crate::protocol::{self, Command, Request, commands};
use crate::record::{Mode, RecordId, Strategy};
use crate::server::{MetadataHook, RecordServer};
use actix::prelude::*;
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError};
use serde_json::{Number, Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// WebSocket close code sent to a client that could not keep up with its updates.
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// WebSocket close code sent to a client that stopped answering pings.
pub const CLOSE_PING_TIMEOUT: u16 = 4000;
/// WebSocket close code sent when the connection's token expired without a refresh.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;

/// Longest single wait of the token-expiry timer; it re-arms, so far-off `exp` values never
/// overflow a timer, and a wall clock that jumps is looked at again at least this often.
const TOKEN_CHECK_MAX: Duration = Duration::from_secs(3600);

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
    /// How long a congested connection may take to drain before it is cut off.
    pub slow_consumer_timeout: Duration,
    /// Requests worked on at once; the socket is not read while this many are.
    pub max_in_flight_requests: usize,
}

/// A token bucket: `rate` tokens per second, holding at most `rate`.
struct RateLimiter {
    rate: f64,
    tokens: f64,
    last: std::time::Instant,
}

impl RateLimiter {
    fn new(rate: u32) -> Self {
        RateLimiter {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: std::time::Instant::now(),
        }
    }

    /// Takes one token if there is one. A rate of 0 never limits.
    fn allow(&mut self) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let now = std::time::Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a session needs from the server.
#[derive(Clone)]
pub struct SessionServices {
    /// Exposures and the record directory.
    pub registry: Addr<RegistryActor>,
    /// Shared settings.
    pub settings: Arc<SessionSettings>,
    /// Custom commands.
    pub commands: Arc<Commands>,
    /// Validates `mesh/set-my-connection-metadata`; none = refuse.
    pub metadata_hook: Option<MetadataHook>,
    /// The server handle given to command handlers.
    pub records: RecordServer,
    /// Flips to true when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// Checks tokens sent with `mesh/refresh-token`.
    pub authenticator: Authenticator,
}

/// A record actor ended this session's subscription (the record was deleted).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscriptionEnded {
    /// The record.
    pub record_id: RecordId,
    /// The token of the subscription that ended.
    pub token: u64,
}

struct ActiveSubscription {
    addr: Addr<RecordActor>,
    token: u64,
}

/// The session (see the module docs).
pub struct SessionActor {
    number: u64,
    connection: Connection,
    outbox: Outbox,
    services: SessionServices,
    socket: Option<crate::socket::ConnectionSocket>,
    subscriptions: HashMap<RecordId, ActiveSubscription>,
    /// Subscribes sent to record actors and not yet answered (they count toward the limit).
    pending_subscribes: usize,
    limiter: RateLimiter,
    /// Length of the frame being handled, to skip measuring values in small frames.
    frame_len: usize,
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
}

impl SessionActor {
    /// A session for an upgraded connection. `socket` (from [`crate::socket::on_connect`])
    /// lets it really end the TCP connection of a client that stopped reading.
    pub fn new(
        number: u64,
        connection: Connection,
        outbox: Outbox,
        services: SessionServices,
        socket: Option<crate::socket::ConnectionSocket>,
    ) -> Self {
        let rate = services.settings.max_requests_per_second;
        SessionActor {
            number,
            connection,
            outbox,
            services,
            socket,
            subscriptions: HashMap::new(),
            pending_subscribes: 0,
            limiter: RateLimiter::new(rate),
            frame_len: 0,
            congestion_epoch: 0,
            next_token: 0,
            awaiting_pong: false,
            missed_pongs: 0,
            permit: None,
            token: SessionToken::default(),
        }
    }

    fn send(&self, frame: crate::record::Frame) {
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

    fn handle_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        self.frame_len = text.len();
        match protocol::parse_request(text) {
            Ok(request) => self.dispatch(request, ctx),
            Err(bad) => match bad.id {
                Some(id) => {
                    let command = bad.command.unwrap_or_default();
                    self.send(protocol::error_frame(
                        &id,
                        &command,
                        &Error::Invalid(bad.reason),
                    ));
                }
                None => log::debug!("session {}: dropped frame: {}", self.number, bad.reason),
            },
        }
    }

    fn dispatch(&mut self, request: Request, ctx: &mut Context<Self>) {
        let Request {
            id,
            command,
            payload,
        } = request;
        if protocol::is_keepalive(&command) {
            self.awaiting_pong = false;
            self.missed_pongs = 0;
            return;
        }
        if !self.limiter.allow() {
            return self.reply(&id, &command, Err(Error::RateLimited));
        }
        let max_id = self.services.settings.max_record_id_bytes;
        let name = command;
        match protocol::decode_command(&name, payload, max_id) {
            Err(e) => self.reply(&id, &name, Err(e)),
            Ok(Command::Noop) => self.reply(&id, &name, Ok(Value::Bool(true))),
            Ok(Command::Subscribe {
                record_id,
                mode,
                since,
            }) => self.subscribe(id, record_id, mode, since, ctx),
            Ok(Command::Unsubscribe { record_id }) => self.unsubscribe(id, record_id),
            Ok(Command::Publish {
                record_id,
                value,
                strategy,
                expected_version,
            }) => self.publish(id, record_id, value, (strategy, expected_version), ctx),
            Ok(Command::GetMetadata) => {
                let metadata = self.connection.metadata();
                self.reply(&id, &name, Ok(json!({ "metadata": metadata })));
            }
            Ok(Command::SetMetadata(proposed)) => self.set_metadata(id, proposed, ctx),
            Ok(Command::RefreshToken { token }) => self.refresh_token(id, &token, ctx),
            Ok(Command::Custom(payload)) => self.custom_command(id, name, payload, ctx),
        }
    }

    fn subscribe(
        &mut self,
        id: Option<Number>,
        record_id: RecordId,
        mode: Mode,
        since: Option<Option<u64>>,
        ctx: &mut Context<Self>,
    ) {
        const CMD: &str = commands::SUBSCRIBE_RECORD;
        let max = self.services.settings.max_subscriptions;
        if !self.subscriptions.contains_key(&record_id)
            && self.subscriptions.len() + self.pending_subscribes >= max
        {
            let error = Error::Limit(format!("a connection may watch at most {max} records"));
            return self.reply(&id, CMD, Err(error));
        }
        self.pending_subscribes += 1;
        let permit = self.permit.take();
        let resolve = self.services.registry.send(ResolveAccess {
            id: record_id.clone(),
            op: Operation::Read,
            connection: self.connection.clone(),
        });
        resolve
            .into_actor(self)
            .map(move |resolved, act, ctx| {
                let result = match resolved {
                    Ok(Ok(leased)) => {
                        let request = (id, record_id, mode, since);
                        return act.finish_subscribe(request, leased, permit, ctx);
                    }
                    Ok(Err(Error::Forbidden)) => Ok(json!({ "success": false })),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(Error::Internal),
                };
                act.pending_subscribes -= 1;
                act.reply(&id, CMD, result);
            })
            .wait(ctx);
    }

    fn finish_subscribe(
        &mut self,
        (request_id, record_id, mode, since): (Option<Number>, RecordId, Mode, Option<Option<u64>>),
        leased: Leased,
        permit: Option<Permit>,
        ctx: &mut Context<Self>,
    ) {
        self.next_token += 1;
        let token = self.next_token;
        let message = Subscribe {
            session: self.number,
            mode,
            outbox: self.outbox.clone(),
            token,
            ended: ctx.address().recipient(),
            reply_to: request_id.clone(),
            since,
        };
        let registry = self.services.registry.clone();
        let addr = leased.addr.clone();
        let id = record_id.clone();
        async move { send_to_record(&registry, &id, Some(leased), message).await }
            .into_actor(self)
            .map(move |result, act, _| {
                drop(permit);
                act.pending_subscribes -= 1;
                match result {
                    Ok(Ok(_)) => {
                        act.subscriptions
                            .insert(record_id, ActiveSubscription { addr, token });
                    }
                    Ok(Err(e)) | Err(e) => {
                        act.reply(&request_id, commands::SUBSCRIBE_RECORD, Err(e))
                    }
                }
            })
            .spawn(ctx);
    }

    fn unsubscribe(&mut self, id: Option<Number>, record_id: RecordId) {
        let was_subscribed = match self.subscriptions.remove(&record_id) {
            Some(active) => {
                active.addr.do_send(Unsubscribe {
                    session: self.number,
                });
                true
            }
            None => false,
        };
        self.reply(
            &id,
            commands::UNSUBSCRIBE_RECORD,
            Ok(Value::Bool(was_subscribed)),
        );
    }

    fn publish(
        &mut self,
        id: Option<Number>,
        record_id: RecordId,
        value: Value,
        (strategy, expected_version): (Strategy, Option<u64>),
        ctx: &mut Context<Self>,
    ) {
        const CMD: &str = commands::PUBLISH_RECORD_UPDATE;
        let max = self.services.settings.max_value_bytes;
        // A value is never larger than the frame that carried it.
        if self.frame_len > max && crate::record::serialized_len(&value) > max {
            let error = Error::Limit(format!("newValue exceeds {max} bytes"));
            crate::metrics::metrics().write(crate::metrics::Outcome::Refused);
            return self.reply(&id, CMD, Err(error));
        }
        let permit = self.permit.take();
        let resolve = self.services.registry.send(ResolveAccess {
            id: record_id.clone(),
            op: Operation::Write,
            connection: self.connection.clone(),
        });
        resolve
            .into_actor(self)
            .map(move |resolved, act, ctx| {
                let leased = match resolved {
                    Ok(Ok(leased)) => leased,
                    Ok(Err(e)) => {
                        crate::metrics::metrics().write(crate::metrics::Outcome::Refused);
                        return act.reply(&id, CMD, Err(e));
                    }
                    Err(_) => return act.reply(&id, CMD, Err(Error::Internal)),
                };
                let message = ApplyWrite {
                    value: Arc::new(value),
                    strategy,
                    expected_version,
                };
                // Enqueue now, before the next request is read, to keep this client's order.
                // The lease keeps the actor from stopping until it has answered, so the
                // message cannot be dropped and resent behind a later one.
                let Leased { addr, lease } = leased;
                let first = addr.send(message.clone());
                let registry = act.services.registry.clone();
                async move {
                    let result = match first.await {
                        Ok(result) => Ok(result),
                        Err(_) => send_to_record(&registry, &record_id, None, message).await,
                    };
                    drop(lease);
                    result
                }
                .into_actor(act)
                .map(move |result, act, _| {
                    let result = result.and_then(|r| r).map(|_| json!({ "success": true }));
                    act.reply(&id, CMD, result);
                    drop(permit);
                })
                .spawn(ctx);
            })
            .wait(ctx);
    }

    fn set_metadata(&mut self, id: Option<Number>, payload: Value, ctx: &mut Context<Self>) {
        const CMD: &str = commands::SET_METADATA;
        let Some(hook) = self.services.metadata_hook.clone() else {
            return self.reply(
                &id,
                CMD,
                Err(Error::command(
                    "EFORBIDDEN",
                    "connection metadata can only be set by the server",
                )),
            );
        };
        let connection = self.connection.clone();
        let permit = self.permit.take();
        async move {
            let accepted = hook.check(connection.clone(), payload).await?;
            connection.set_metadata(accepted);
            Ok(json!({ "success": true }))
        }
        .into_actor(self)
        .map(move |result, act, _| {
            act.reply(&id, CMD, result);
            drop(permit);
        })
        .spawn(ctx);
    }

    fn custom_command(
        &mut self,
        id: Option<Number>,
        command: String,
        payload: Value,
        ctx: &mut Context<Self>,
    ) {
        let Some(handler) = self.services.commands.get(&command) else {
            let error = Error::UnknownCommand(command.clone());
            return self.reply(&id, &command, Err(error));
        };
        let context = CommandContext {
            connection: self.connection.clone(),
            records: self.services.records.clone(),
        };
        let permit = self.permit.take();
        Commands::call(handler, context, payload)
            .into_actor(self)
            .map(move |result, act, _| {
                act.reply(&id, &command, result);
                drop(permit);
            })
            .spawn(ctx);
    }

    /// Updates are being skipped: the client has `slow_consumer_timeout` to catch up.
    fn on_congested(&mut self, ctx: &mut Context<Self>) {
        let epoch = self.congestion_epoch;
        ctx.run_later(
            self.services.settings.slow_consumer_timeout,
            move |act, ctx| {
                if act.congestion_epoch == epoch && act.outbox.is_congested() {
                    log::info!("session {}: slow consumer, disconnecting", act.number);
                    crate::metrics::metrics().slow_consumer_closes.inc();
                    act.close(
                        ctx,
                        CloseCode::Other(CLOSE_SLOW_CONSUMER),
                        "slow consumer",
                        true,
                    );
                }
            },
        );
    }

    /// The queue drained: resync every record whose updates were skipped.
    fn on_drained(&mut self) {
        self.congestion_epoch += 1;
        self.outbox.clear_congestion();
        for record_id in self.outbox.stale_records() {
            let registry = self.services.registry.clone();
            let outbox = self.outbox.clone();
            let message = ResyncSubscriber {
                session: self.number,
            };
            actix::spawn(async move {
                let subscribed = send_to_record(&registry, &record_id, None, message).await;
                if !matches!(subscribed, Ok(true)) {
                    outbox.forget_stale(&record_id);
                }
            });
        }
    }

    fn keepalive(&mut self, ctx: &mut Context<Self>) {
        if self.awaiting_pong {
            self.missed_pongs += 1;
            if self.missed_pongs > self.services.settings.max_missed_pongs {
                log::debug!("session {}: ping timeout", self.number);
                return self.close(
                    ctx,
                    CloseCode::Other(CLOSE_PING_TIMEOUT),
                    "ping timeout",
                    // A peer that reads but does not answer still gets the close frame; a
                    // vanished one has its socket shut after the grace period.
                    false,
                );
            }
        }
        self.awaiting_pong = true;
        self.send(protocol::push_frame(commands::PING, &json!({})));
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
        ctx.run_interval(self.services.settings.ping_interval, Self::keepalive);
        self.arm_token_expiry(ctx);

        // Congestion, drain and overflow arrive as `Signal` messages.
        self.outbox.signal_to(ctx.address().recipient());

        let mut shutdown = self.services.shutdown.clone();
        async move {
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        }
        .into_actor(self)
        .map(|_, act, ctx| act.close(ctx, CloseCode::Away, "server shutting down", false))
        .spawn(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.outbox.close(None);
        for (_, active) in self.subscriptions.drain() {
            active.addr.do_send(Unsubscribe {
                session: self.number,
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
        // Requests answered later take the permit; for the rest it is dropped below.
        self.permit = Some(permit);
        self.handle_frame(item, ctx);
        self.permit = None;
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
            Ok(AggregatedMessage::Text(text)) => self.handle_text(&text, ctx),
            Ok(AggregatedMessage::Binary(bytes)) => match std::str::from_utf8(&bytes) {
                // Mesh servers read binary frames holding JSON too; so do we.
                Ok(text) => self.handle_text(text, ctx),
                Err(_) => log::debug!("session {}: dropped non-UTF-8 binary frame", self.number),
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

impl Handler<Signal> for SessionActor {
    type Result = ();

    fn handle(&mut self, signal: Signal, ctx: &mut Context<Self>) {
        match signal {
            Signal::Congested => self.on_congested(ctx),
            Signal::Drained => self.on_drained(),
            Signal::Overflowed => {
                log::info!(
                    "session {}: outbound queue overflowed, disconnecting",
                    self.number
                );
                let code = CloseCode::Other(CLOSE_SLOW_CONSUMER);
                self.close(ctx, code, "slow consumer", true);
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

/// Token expiry and refresh.
impl SessionActor {
    /// The token the connection authenticated with (untokened by default: never expires).
    pub fn with_token(mut self, token: SessionToken) -> Self {
        self.token = token;
        self
    }

    /// Closes the connection when its token runs out. The timer carries the token's epoch and
    /// does nothing once a refresh has replaced it; it re-checks the wall clock when it fires,
    /// because `exp` is wall-clock time and the timer is monotonic.
    fn arm_token_expiry(&mut self, ctx: &mut Context<Self>) {
        let Some(remaining) = self.token.remaining(std::time::SystemTime::now()) else {
            return;
        };
        let epoch = self.token.epoch();
        ctx.run_later(remaining.min(TOKEN_CHECK_MAX), move |act, ctx| {
            if act.token.epoch() != epoch {
                return;
            }
            if act.token.expired(std::time::SystemTime::now()) {
                log::debug!("session {}: token expired", act.number);
                let code = CloseCode::Other(CLOSE_TOKEN_EXPIRED);
                act.close(ctx, code, "token expired", false);
            } else {
                act.arm_token_expiry(ctx);
            }
        });
    }

    /// `mesh/refresh-token`: verified and applied before the next request is read, so guards
    /// see the new claims from then on. A refused token changes nothing: the old one still
    /// closes the connection when it expires.
    fn refresh_token(&mut self, id: Option<Number>, token: &str, ctx: &mut Context<Self>) {
        let result = self
            .services
            .authenticator
            .refresh(token)
            .and_then(|grant| self.token.refresh(grant));
        match result {
            Ok(metadata) => {
                self.connection.set_metadata(metadata);
                self.arm_token_expiry(ctx);
                self.reply(&id, commands::REFRESH_TOKEN, Ok(json!({ "success": true })));
            }
            Err(rejection) => {
                let error = Error::Auth(rejection.0);
                self.reply(&id, commands::REFRESH_TOKEN, Err(error));
            }
        }
    }
}
