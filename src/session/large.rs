//! Large frames are read off the worker thread, at low priority.
//!
//! Parsing a 1 MiB frame and measuring its value takes milliseconds; done on the worker it
//! delays every other session that thread serves. A frame above [`LARGE_FRAME_BYTES`] is
//! parsed, and its `newValue` measured against the value limit, on a small pool of threads
//! of their own (one per core) running at a lower CPU priority (nice 10), so the workers
//! take the cores first when both want them; a value over the limit is dropped there too.
//! The session waits for its own frame (`ctx.wait`), so its requests keep their order.

use super::SessionActor;
use crate::protocol::{self, BadFrame, Request};
use actix::prelude::*;
use serde_json::Value;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::oneshot;

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
                frame_len > max && crate::model::serializes_longer_than(value, max)
            }
            ValueSize::Within => false,
            ValueSize::Over => true,
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The CPU priority of the pool's threads (a nice value: 0 is normal, 19 lowest).
const POOL_NICE: i32 = 10;

/// The pool's queue; its threads start on first use.
fn pool() -> &'static Mutex<Sender<Job>> {
    static POOL: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        for n in 0..threads {
            let queue = Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name(format!("mesh-large-frames-{n}"))
                .spawn(move || work(&queue));
            if let Err(e) = spawned {
                log::error!("cannot start a large-frame thread: {e}");
            }
        }
        Mutex::new(jobs)
    })
}

fn work(queue: &Mutex<Receiver<Job>>) {
    // SAFETY: setpriority on this thread's own id (`which` = PRIO_PROCESS with a thread id
    // is per thread on Linux) only changes its scheduling weight.
    #[cfg(target_os = "linux")]
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, POOL_NICE);
    }
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// Runs `f` on the pool; `None` if it panicked (or the pool is gone).
async fn on_pool<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (done, result) = oneshot::channel();
    let job: Job = Box::new(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = done.send(outcome.ok());
    });
    let sent = match pool().lock() {
        Ok(jobs) => jobs.send(job).is_ok(),
        Err(poisoned) => poisoned.into_inner().send(job).is_ok(),
    };
    if !sent {
        return None;
    }
    result.await.ok().flatten()
}

/// Parses `text` and measures its `newValue` against `max_value_bytes` (see the module docs).
fn parse_and_measure(text: &str, max_value_bytes: usize) -> (Result<Request, BadFrame>, ValueSize) {
    let mut parsed = protocol::parse_request(text);
    let mut size = ValueSize::Within;
    if let Ok(request) = parsed.as_mut()
        && let Some(value) = request.payload.get_mut("newValue")
        && crate::model::serializes_longer_than(&*value, max_value_bytes)
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
        on_pool(move || parse_and_measure(text.as_ref(), max))
            .into_actor(self)
            .map(move |outcome, act, ctx| {
                let Some((parsed, size)) = outcome else {
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

    #[actix_rt::test]
    async fn the_pool_runs_jobs_and_outlives_a_panicking_one() {
        assert_eq!(on_pool(|| 2 + 2).await, Some(4));
        assert_eq!(on_pool(|| -> u8 { panic!("bad frame") }).await, None);
        assert_eq!(on_pool(|| 5).await, Some(5));
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
