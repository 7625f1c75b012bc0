//! Writes to different records, sent to Redis together.
//!
//! `write.lua` takes any number of records, each as one [`Segment`] (its keys and its part of
//! the arguments), and handles each on its own: one record's conflict or error leaves the
//! others alone. On one node every write goes through its thread's [`Batcher`] (see
//! [`Batchers`]): a write that finds a free call slot leaves at once, alone; writes that
//! arrive while [`IN_FLIGHT`] calls are out wait for the next free slot and leave together, as
//! one `EVALSHA`. So an idle store adds no delay, and a busy one pays the per-call costs
//! (Redis parsing the call and setting up the script, the socket reads and writes on both
//! sides) once per batch instead of once per write.
//!
//! On a cluster a script may only touch one slot, and records rarely share one, so each write
//! is a call of its own ([`call`] with one segment).

use super::codec::outcome_unknown;
use super::transport::Transport;
use crate::store::StoreError;
use redis::{Cmd, ErrorKind, RedisResult, Script, ServerErrorKind, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Keys of one record in `write.lua`.
pub(super) const KEYS_PER_RECORD: usize = 7;

/// Most records in one call: bounds how long one script holds Redis (tens of microseconds
/// per record).
const MAX_RECORDS: usize = 64;

/// A call takes no more records once its arguments pass this many bytes: large values go in
/// smaller batches (a single large write still goes, alone).
const MAX_BYTES: usize = 256 * 1024;

/// Calls in flight at once. Two keep Redis busy while the next batch gathers; more would
/// only make the batches smaller.
const IN_FLIGHT: usize = 2;

/// One record's part of a `write.lua` call.
pub(super) struct Segment {
    /// The record's keys, in the script's order.
    pub keys: [String; KEYS_PER_RECORD],
    /// The record's arguments: the head, then one triple per value.
    pub args: Vec<String>,
}

impl Segment {
    fn bytes(&self) -> usize {
        self.keys.iter().chain(&self.args).map(String::len).sum()
    }
}

/// What the script answered for one record: status, version (or the error's text) and the
/// current value on a conflict.
pub(super) type Answer = (i64, String, Option<Vec<u8>>);

/// A write waiting in the queue.
struct Queued {
    segment: Segment,
    answer: oneshot::Sender<Result<Answer, StoreError>>,
}

/// The batchers of one node's store, one per thread that writes: a write, its call and its
/// answer stay on the thread of the record actor that made it, on that thread's connection
/// (see transport.rs), so a record's calls keep their order.
pub(super) struct Batchers {
    conn: Transport,
    feed: (String, Arc<AtomicBool>),
    origin: String,
    by_thread: Mutex<HashMap<ThreadId, Batcher>>,
}

impl Batchers {
    /// No batcher yet: each starts with the first write of its thread. `feed` is the change
    /// feed's channel and whether it is on (read at each call), `origin` the store's tag on
    /// what it publishes.
    pub fn new(conn: Transport, feed: (String, Arc<AtomicBool>), origin: String) -> Batchers {
        Batchers {
            conn,
            feed,
            origin,
            by_thread: Mutex::default(),
        }
    }

    /// This thread's batcher, started now (its task on this thread) if it has none.
    pub fn here(&self) -> Batcher {
        let thread = std::thread::current().id();
        let mut by_thread = self
            .by_thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        by_thread
            .entry(thread)
            .or_insert_with(|| {
                Batcher::start(
                    self.conn.clone(),
                    &self.conn.scripts().write,
                    self.feed.clone(),
                    self.origin.clone(),
                )
            })
            .clone()
    }
}

/// Handle on the task that sends the queued writes of one thread. Clones share it; the task
/// ends when the last clone is dropped.
#[derive(Clone)]
pub(super) struct Batcher {
    /// Unbounded: a record has at most one write call in flight, so the queue holds at most
    /// one entry per live record.
    queue: mpsc::UnboundedSender<Queued>,
}

impl Batcher {
    /// Spawns the task on the current tokio runtime. `feed` is the change feed's channel and
    /// whether it is on (read at each call), `origin` the store's tag on what it publishes.
    pub fn start(
        conn: Transport,
        script: &'static Script,
        feed: (String, Arc<AtomicBool>),
        origin: String,
    ) -> Batcher {
        let (queue, receiver) = mpsc::unbounded_channel();
        let task = Task {
            conn,
            script,
            feed: feed.0,
            feed_on: feed.1,
            origin,
        };
        tokio::spawn(task.run(receiver));
        Batcher { queue }
    }

    /// Queues one record's write and waits for its answer.
    pub async fn write(&self, segment: Segment) -> Result<Answer, StoreError> {
        let (answer, answered) = oneshot::channel();
        let stopped = || StoreError::Unavailable("redis write batcher has stopped".into());
        self.queue
            .send(Queued { segment, answer })
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

/// The batcher's task.
struct Task {
    conn: Transport,
    script: &'static Script,
    feed: String,
    feed_on: Arc<AtomicBool>,
    origin: String,
}

impl Task {
    async fn run(self, mut queue: mpsc::UnboundedReceiver<Queued>) {
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let task = Arc::new(self);
        loop {
            // Wait for a slot first: what arrives meanwhile gathers in the queue.
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut bytes = first.segment.bytes();
            let mut batch = vec![first];
            while batch.len() < MAX_RECORDS && bytes < MAX_BYTES {
                match queue.try_recv() {
                    Ok(next) => {
                        bytes += next.segment.bytes();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            let task = Arc::clone(&task);
            tokio::spawn(async move {
                task.send(batch).await;
                drop(slot);
            });
        }
    }

    async fn send(&self, batch: Vec<Queued>) {
        let feed = if self.feed_on.load(Ordering::Relaxed) {
            self.feed.as_str()
        } else {
            ""
        };
        let (segments, answers): (Vec<Segment>, Vec<_>) = batch
            .into_iter()
            .map(|queued| (queued.segment, queued.answer))
            .unzip();
        match call(&self.conn, self.script, [feed, &self.origin], &segments).await {
            Ok(replies) => {
                for (answer, reply) in answers.into_iter().zip(replies) {
                    // The writer may have given up waiting; its answer is of no use then.
                    let _ = answer.send(Ok(reply));
                }
            }
            Err(err) => {
                for answer in answers {
                    let _ = answer.send(Err(outcome_unknown("write", &err)));
                }
            }
        }
    }
}

/// Sends `segments` as one `write.lua` call and answers one [`Answer`] per segment, in order.
/// `head` is the change feed's channel ("" = off) and the store's origin tag. On a cluster all
/// segments must share a slot.
pub(super) async fn call(
    conn: &Transport,
    script: &Script,
    head: [&str; 2],
    segments: &[Segment],
) -> RedisResult<Vec<Answer>> {
    let mut cmd = Cmd::new();
    cmd.arg("EVALSHA")
        .arg(script.get_hash())
        .arg(segments.len() * KEYS_PER_RECORD);
    for segment in segments {
        for key in &segment.keys {
            cmd.arg(key);
        }
    }
    cmd.arg(head[0]).arg(head[1]);
    for segment in segments {
        for arg in &segment.args {
            cmd.arg(arg);
        }
    }
    let reply: Value = match conn.query(&cmd).await {
        Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            conn.load(script).await?;
            conn.query(&cmd).await?
        }
        other => other?,
    };
    let flat: Vec<Value> = redis::from_redis_value(reply)?;
    let mut answers = Vec::with_capacity(segments.len());
    let mut entries = flat.into_iter();
    while let (Some(status), Some(version), Some(value)) =
        (entries.next(), entries.next(), entries.next())
    {
        answers.push((
            redis::from_redis_value(status)?,
            redis::from_redis_value(version)?,
            redis::from_redis_value(value)?,
        ));
    }
    if answers.len() != segments.len() {
        return Err(redis::RedisError::from((
            ErrorKind::Parse,
            "write.lua answered for a different number of records",
        )));
    }
    Ok(answers)
}
