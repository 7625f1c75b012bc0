//! Large frames are read off the worker thread.
//!
//! Parsing a 1 MiB frame and measuring its value takes milliseconds; done on the worker it
//! delays every other session that thread serves. A frame above [`LARGE_FRAME_BYTES`] is
//! parsed, and its `newValue` measured against the value limit, on the blocking pool, at most
//! [`parallel_jobs`] at a time; a value over the limit is dropped there too. The session
//! waits for its own frame (`ctx.wait`), so its requests keep their order.

use super::SessionActor;
use crate::protocol::{self, BadFrame, Request};
use actix::prelude::*;
use serde_json::Value;
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;

/// Frames longer than this are parsed on the blocking pool.
pub(super) const LARGE_FRAME_BYTES: usize = 64 * 1024;

/// What is known of the size of the `newValue` in the frame being handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ValueSize {
    /// Not measured; the frame was this long (a value is never longer than its frame).
    Unmeasured { frame_len: usize },
    /// Measured: within the limit.
    Within,
    /// Measured: over the limit (the value was dropped).
    Over,
}

impl ValueSize {
    /// Whether `value` (this frame's `newValue`) serializes longer than `max`.
    pub(super) fn exceeds(self, value: &Value, max: usize) -> bool {
        match self {
            ValueSize::Unmeasured { frame_len } => {
                frame_len > max && crate::record::serializes_longer_than(value, max)
            }
            ValueSize::Within => false,
            ValueSize::Over => true,
        }
    }
}

/// Large frames parsed at once, server-wide: the machine's cores (hostile senders of big
/// frames then queue behind each other, not in front of everyone else).
fn parallel_jobs() -> &'static Arc<Semaphore> {
    static JOBS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    JOBS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(Semaphore::new(cores))
    })
}

/// Parses `text` and measures its `newValue` against `max_value_bytes` (see the module docs).
fn parse_and_measure(text: &str, max_value_bytes: usize) -> (Result<Request, BadFrame>, ValueSize) {
    let mut parsed = protocol::parse_request(text);
    let mut size = ValueSize::Within;
    if let Ok(request) = parsed.as_mut()
        && let Some(value) = request.payload.get_mut("newValue")
        && crate::record::serializes_longer_than(&*value, max_value_bytes)
    {
        // Dropped here, off the worker; any non-null placeholder keeps the request well formed.
        drop(std::mem::replace(value, Value::Bool(false)));
        size = ValueSize::Over;
    }
    (parsed, size)
}

impl SessionActor {
    /// Handles a frame of more than [`LARGE_FRAME_BYTES`] (see the module docs).
    pub(super) fn handle_large(
        &mut self,
        text: impl AsRef<str> + Send + 'static,
        ctx: &mut Context<Self>,
    ) {
        let max = self.services.settings.max_value_bytes;
        let permit = self.permit.take();
        async move {
            let _job = parallel_jobs().clone().acquire_owned().await;
            actix_web::rt::task::spawn_blocking(move || parse_and_measure(text.as_ref(), max)).await
        }
        .into_actor(self)
        .map(move |outcome, act, ctx| {
            let Ok((parsed, size)) = outcome else {
                log::error!("session {}: large frame parser panicked", act.number);
                return;
            };
            act.permit = permit;
            act.value_size = size;
            act.handle_parsed(parsed, ctx);
            act.permit = None;
        })
        .wait(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_over_the_limit_is_dropped_and_marked() {
        let text = r#"{"id":1,"command":"mesh/publish-record-update","payload":{"recordId":"a","newValue":[1e15,1e15]}}"#;
        let (parsed, size) = parse_and_measure(text, 20);
        assert_eq!(size, ValueSize::Over);
        assert_eq!(parsed.unwrap().payload["newValue"], Value::Bool(false));
        let (parsed, size) = parse_and_measure(text, 100);
        assert_eq!(size, ValueSize::Within);
        assert_eq!(
            parsed.unwrap().payload["newValue"][0],
            serde_json::json!(1e15)
        );
    }

    #[test]
    fn unmeasured_small_frames_are_measured_only_when_longer_than_the_limit() {
        let value = serde_json::json!([1e15]);
        let short = ValueSize::Unmeasured { frame_len: 10 };
        assert!(!short.exceeds(&value, 10));
        let long = ValueSize::Unmeasured { frame_len: 100 };
        assert!(long.exceeds(&value, 10));
        assert!(!long.exceeds(&value, 100));
    }
}
