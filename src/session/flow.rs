//! Flow control: the request-rate and inbound-bytes limits, and what a session does when its outbound queue
//! congests (a deadline to catch up), drains (resync the records whose updates were skipped)
//! or overflows (cut off).

use super::{CLOSE_SLOW_CONSUMER, SessionActor};
use crate::outbox::Signal;
use actix::prelude::*;
use actix_ws::CloseCode;
use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens per second, holding at most `burst`. A rate of 0 never
/// limits.
pub(super) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub(super) fn new(rate: u64, burst: u64) -> Self {
        TokenBucket {
            rate: rate as f64,
            burst: burst as f64,
            tokens: burst as f64,
            last: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
    }

    /// Takes one token if there is one.
    pub(super) fn allow(&mut self) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        self.refill();
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until a token is there (zero when one is).
    pub(super) fn until_next(&mut self) -> Duration {
        if self.rate == 0.0 {
            return Duration::ZERO;
        }
        self.refill();
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }

    /// Takes `n` tokens, going into debt if need be; how long until the debt is paid.
    pub(super) fn take(&mut self, n: u64) -> Duration {
        if self.rate == 0.0 || n == 0 {
            return Duration::ZERO;
        }
        self.refill();
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

impl SessionActor {
    /// Counts a frame of `len` bytes against the inbound budget; past it, the socket is not
    /// read (the session handles nothing more) until the budget has refilled.
    pub(super) fn pace_inbound(&mut self, len: u64, ctx: &mut Context<Self>) {
        let pause = self.inbound.take(len);
        if !pause.is_zero() {
            actix::clock::sleep(pause).into_actor(self).wait(ctx);
        }
    }

    /// After a request refused for the rate: the socket is not read until the next request
    /// would be allowed.
    pub(super) fn pause_until_allowed(&mut self, ctx: &mut Context<Self>) {
        let pause = self.limiter.until_next();
        if !pause.is_zero() {
            actix::clock::sleep(pause).into_actor(self).wait(ctx);
        }
    }

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
        let route = self.services.records.route();
        actix::spawn(route.resync_stale(&self.outbox, self.number));
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

#[cfg(test)]
mod tests {
    use super::TokenBucket;
    use std::time::Duration;

    #[test]
    fn a_bucket_lends_past_its_burst_and_says_how_long_the_debt_takes() {
        let mut bytes = TokenBucket::new(1000, 1000);
        assert_eq!(bytes.take(1000), Duration::ZERO);
        let pause = bytes.take(500);
        assert!(pause > Duration::from_millis(400) && pause <= Duration::from_millis(500));
        assert!(!bytes.allow());
    }

    #[test]
    fn an_empty_bucket_says_when_the_next_token_comes() {
        let mut requests = TokenBucket::new(100, 1);
        assert_eq!(requests.until_next(), Duration::ZERO);
        assert!(requests.allow());
        let wait = requests.until_next();
        assert!(wait > Duration::from_millis(5) && wait <= Duration::from_millis(10));
    }

    #[test]
    fn a_rate_of_zero_never_limits() {
        let mut unlimited = TokenBucket::new(0, 0);
        assert_eq!(unlimited.until_next(), Duration::ZERO);
        assert!(unlimited.allow());
        assert_eq!(unlimited.take(u64::MAX), Duration::ZERO);
    }
}
