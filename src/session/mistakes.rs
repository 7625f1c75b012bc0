//! Client mistakes the server cannot answer with a reply (a frame that is not JSON, not an
//! object, without a string `command`, or whose `id` is not an integer) made visible: the
//! client gets a `mesh/error` push (see `SessionActor::handle_parsed`), the operator a log
//! line. The log is shared by every connection, so one client sending garbage cannot flood it:
//! at most one `info` line per [`LOG_EVERY`] for the whole process, counting the dropped frames
//! it left out; each dropped frame is still logged at `debug`.

use super::SessionActor;
use crate::error::Error;
use crate::protocol;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The least time between two `info` lines about dropped frames.
pub(super) const LOG_EVERY: Duration = Duration::from_secs(10);

/// At most one event per interval, counting the events turned away meanwhile.
struct Throttle {
    /// Times are kept as milliseconds since the first event.
    start: OnceLock<Instant>,
    /// No event is let through before this (milliseconds since `start`).
    next_ms: AtomicU64,
    /// Events turned away since the last one let through.
    skipped: AtomicU64,
}

impl Throttle {
    const fn new() -> Self {
        Throttle {
            start: OnceLock::new(),
            next_ms: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// `Some(events turned away since the last one let through)` when this one may pass.
    fn allow(&self, now: Instant, every: Duration) -> Option<u64> {
        let start = *self.start.get_or_init(|| now);
        let at = now.saturating_duration_since(start).as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        let every = every.as_millis() as u64;
        // Of several threads arriving together, the one whose exchange succeeds logs.
        if at >= next
            && self
                .next_ms
                .compare_exchange(next, at + every, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.skipped.swap(0, Ordering::Relaxed));
        }
        self.skipped.fetch_add(1, Ordering::Relaxed);
        None
    }
}

static DROPPED_FRAMES: Throttle = Throttle::new();

/// Logs that session `session` dropped a frame for `reason` (never the frame's text: it may
/// hold anything).
pub(super) fn log_dropped_frame(session: u64, reason: &str) {
    match DROPPED_FRAMES.allow(Instant::now(), LOG_EVERY) {
        Some(skipped) => {
            let left_out = match skipped {
                0 => String::new(),
                n => format!("; {n} more since the last such line"),
            };
            log::info!(
                "session {session}: dropped a frame it cannot answer: {reason} (the client got \
                 a mesh/error push{left_out}; at most one such line per {} s, each one at \
                 debug level)",
                LOG_EVERY.as_secs()
            )
        }
        None => log::debug!("session {session}: dropped a frame: {reason}"),
    }
}

impl SessionActor {
    /// A frame dropped with no id to reply to: the client gets a `mesh/error` push with the
    /// reason (such frames count against its request rate; beyond it they are dropped without
    /// one), the operator a log line.
    pub(super) fn frame_dropped(&mut self, reason: String) {
        log_dropped_frame(self.number, &reason);
        if self.limiter.allow() {
            let error = Error::Invalid(reason).to_wire();
            self.send(protocol::push_frame(protocol::commands::ERROR, &error));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_interval_passes_and_the_rest_are_counted() {
        let throttle = Throttle::new();
        let t0 = Instant::now();
        let every = Duration::from_secs(10);
        assert_eq!(throttle.allow(t0, every), Some(0));
        assert_eq!(throttle.allow(t0 + Duration::from_secs(1), every), None);
        assert_eq!(throttle.allow(t0 + Duration::from_secs(9), every), None);
        assert_eq!(throttle.allow(t0 + Duration::from_secs(10), every), Some(2));
        assert_eq!(throttle.allow(t0 + Duration::from_secs(11), every), None);
        assert_eq!(throttle.allow(t0 + Duration::from_secs(60), every), Some(1));
    }
}
