//! Flow control: the request-rate limit, and what a session does when its outbound queue
//! congests (a deadline to catch up), drains (resync the records whose updates were skipped)
//! or overflows (cut off).

use super::{CLOSE_SLOW_CONSUMER, SessionActor};
use crate::actors::record::ResyncSubscriber;
use crate::actors::registry::send_to_record;
use crate::outbox::Signal;
use actix::prelude::*;
use actix_ws::CloseCode;

/// A token bucket: `rate` tokens per second, holding at most `rate`.
pub(super) struct RateLimiter {
    rate: f64,
    tokens: f64,
    last: std::time::Instant,
}

impl RateLimiter {
    pub(super) fn new(rate: u32) -> Self {
        RateLimiter {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: std::time::Instant::now(),
        }
    }

    /// Takes one token if there is one. A rate of 0 never limits.
    pub(super) fn allow(&mut self) -> bool {
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

impl SessionActor {
    /// Updates are being skipped: the client has `slow_consumer_timeout` to catch up.
    pub(super) fn on_congested(&mut self, ctx: &mut Context<Self>) {
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
    pub(super) fn on_drained(&mut self) {
        self.congestion_epoch += 1;
        self.outbox.clear_congestion();
        for record_id in self.outbox.stale_records() {
            let registry = self.services.records.registry().clone();
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
