//! Liveness and credentials: the ping/pong keepalive, and the token's expiry and refresh.

use super::{CLOSE_PING_TIMEOUT, CLOSE_TOKEN_EXPIRED, SessionActor};
use crate::actors::clock::Tick;
use crate::auth::SessionToken;
use crate::error::Error;
use crate::protocol::{self, commands};
use actix::prelude::*;
use actix_ws::CloseCode;
use serde_json::{Number, json};
use std::time::Duration;

/// Longest single wait of the token-expiry timer; it re-arms, so far-off `exp` values never
/// overflow a timer, and a wall clock that jumps is looked at again at least this often.
const TOKEN_CHECK_MAX: Duration = Duration::from_secs(3600);

/// From the thread's clock (joined in `started`): a ping period, or the server shutting down.
impl Handler<Tick> for SessionActor {
    type Result = ();

    fn handle(&mut self, tick: Tick, ctx: &mut Context<Self>) {
        match tick {
            // After the frames already waiting: actix handles mailbox messages before it
            // polls the socket's stream, and a pong that came in just before this tick must
            // count (as it did when the ping timer was a future polled after the stream).
            Tick::Period => {
                ctx.spawn(actix::fut::ready(()).map(|(), act: &mut Self, ctx| act.keepalive(ctx)));
            }
            Tick::Shutdown => self.close(ctx, CloseCode::Away, "server shutting down", false),
        }
    }
}

impl SessionActor {
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
        // Metadata changed by app code outside any request is noticed here at the latest.
        self.recheck_access(ctx);
    }

    /// The token the connection authenticated with (untokened by default: never expires).
    pub fn with_token(mut self, token: SessionToken) -> Self {
        self.token = token;
        self
    }

    /// Closes the connection when its token runs out. The timer carries the token's epoch and
    /// does nothing once a refresh has replaced it; it re-checks the wall clock when it fires,
    /// because `exp` is wall-clock time and the timer is monotonic.
    pub(super) fn arm_token_expiry(&mut self, ctx: &mut Context<Self>) {
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
    pub(super) fn refresh_token(
        &mut self,
        id: Option<Number>,
        token: &str,
        ctx: &mut Context<Self>,
    ) {
        // Waited for (no request is read meanwhile), so the next one sees the new claims.
        self.services
            .authenticator
            .refresh(token)
            .into_actor(self)
            .map(move |verified, act, ctx| {
                match verified.and_then(|grant| act.token.refresh(grant)) {
                    Ok(metadata) => {
                        act.connection.set_metadata(metadata);
                        act.arm_token_expiry(ctx);
                        act.recheck_access(ctx);
                        act.reply(&id, commands::REFRESH_TOKEN, Ok(json!({ "success": true })));
                    }
                    Err(rejection) => {
                        let error = Error::Auth(rejection.0);
                        act.reply(&id, commands::REFRESH_TOKEN, Err(error));
                    }
                }
            })
            .wait(ctx);
    }
}
