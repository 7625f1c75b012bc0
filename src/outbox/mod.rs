//! A session's outbound queue: bounded in bytes, filled without blocking by any actor, drained
//! by the connection's writer ([`OutboxDrain`]: the socket task of `ws::writer`, or the
//! response body [`OutboxBody`](drain::OutboxBody) when the route is mounted in someone else's actix-web app).
//!
//! The queue itself is a swap-out `VecDeque` behind a mutex with one waker: producers push and
//! wake, the writer swaps the whole queue out in one lock and encodes it. An empty `VecDeque`
//! owns no memory, so an idle connection's queue costs nothing until its first push, and the
//! writer lets go of its copy whenever it has drained it.
//!
//! Why not the session actor's mailbox: a client that stops reading must cost a bounded amount
//! of memory and must never stall the producer (a `RecordActor` fanning out to thousands).
//! Nothing here ever waits.
//!
//! Slow consumers: once queued bytes would pass `budget`, record updates are no longer queued;
//! their records are marked *stale* and the session is told it is congested. When the body
//! has drained the queue to a quarter of the budget, the session asks each stale record for
//! one full value (the protocol's resync), so patch subscribers stay correct and versions
//! still only increase. Until a record is resynced, its updates stay skipped, so no push can
//! reach the client out of order. Replies, pings and deletions are never skipped; if they
//! would pass twice the budget, the client is cut off at once.

mod drain;
mod texts;

pub use drain::{CHUNK_BYTES, OutboxDrain};
pub use texts::TextDrain;

use crate::model::{Frame, RecordId};
use actix_web::web::Bytes;
use actix_ws::CloseReason;
use std::collections::{HashSet, VecDeque};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// One item for the socket.
#[derive(Debug)]
pub enum Outgoing {
    /// A JSON text frame.
    Text(Frame),
    /// A WebSocket pong answering a client ping.
    Pong(Bytes),
    /// Send a close frame and stop writing.
    Close(Option<CloseReason>),
}

/// A change in a session's queue that its session acts on, sent to the session as a message
/// (no future waits for it, so an idle session spends no memory on watching its queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, actix::Message)]
#[rtype(result = "()")]
pub enum Signal {
    /// Updates started being skipped for lack of room.
    Congested,
    /// A congested queue has drained to a quarter of the budget.
    Drained,
    /// Even the hard limit was reached: cut the client off.
    Overflowed,
}

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// Even the hard limit is reached: the client is being cut off.
    Full,
    /// The session has ended; drop this subscriber.
    Closed,
}

#[derive(Debug)]
struct Shared {
    queued_bytes: AtomicUsize,
    budget: usize,
    congested: AtomicBool,
    overflowed: AtomicBool,
    closed: AtomicBool,
    /// Set when the connection's body has ended: its close frame went to the socket, or the
    /// connection is gone (the socket no longer needs a push to close).
    writer_done: AtomicBool,
    /// Fast path: true while `stale` may be non-empty.
    any_stale: AtomicBool,
    stale: Mutex<HashSet<RecordId>>,
    queue: Mutex<Queue>,
    /// Set when `Drained` was sent for the current congestion, so it is sent once.
    drained_sent: AtomicBool,
    /// The session, told about [`Signal`]s (set once it has started).
    session: OnceLock<actix::Recipient<Signal>>,
}

/// Items pushed and not yet taken by the writer, and the writer's waker.
#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Outgoing>,
    waker: Option<Waker>,
}

impl Shared {
    fn signal(&self, signal: Signal) {
        if let Some(session) = self.session.get() {
            session.do_send(signal);
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Pushing and swapping never leave the queue half-changed.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends an item and wakes the writer; `Err` (item dropped) once the writer is gone.
    fn send(&self, item: Outgoing) -> Result<(), Outgoing> {
        let waker = {
            let mut queue = self.queue();
            if self.writer_done.load(Ordering::Acquire) {
                return Err(item);
            }
            queue.items.push_back(item);
            queue.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    fn stale(&self) -> MutexGuard<'_, HashSet<RecordId>> {
        // The set is always left consistent; a poisoned lock still guards valid data.
        self.stale
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn hard_limit(&self) -> usize {
        self.budget.saturating_mul(2)
    }
}

/// Producer side of a session's queue. Cheap to clone; `RecordActor`s hold one per subscriber.
#[derive(Clone, Debug)]
pub struct Outbox {
    shared: Arc<Shared>,
}

/// Consumer side, turned into the connection's writer ([`OutboxDrain`]).
#[derive(Debug)]
pub struct OutboxReceiver {
    shared: Arc<Shared>,
    /// The batch swapped out of the shared queue, being encoded.
    local: VecDeque<Outgoing>,
}

impl Outbox {
    /// A queue for about `budget_bytes` of record updates (a single frame larger than the
    /// budget is still accepted when the queue is empty, so big records remain deliverable).
    pub fn new(budget_bytes: usize) -> (Outbox, OutboxReceiver) {
        let shared = Arc::new(Shared {
            queued_bytes: AtomicUsize::new(0),
            budget: budget_bytes,
            congested: AtomicBool::new(false),
            overflowed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            writer_done: AtomicBool::new(false),
            any_stale: AtomicBool::new(false),
            stale: Mutex::new(HashSet::new()),
            queue: Mutex::new(Queue::default()),
            drained_sent: AtomicBool::new(false),
            session: OnceLock::new(),
        });
        let receiver = OutboxReceiver {
            shared: Arc::clone(&shared),
            local: VecDeque::new(),
        };
        (Outbox { shared }, receiver)
    }

    /// Reserves room for `len` bytes under `limit`; an empty queue takes any frame.
    fn reserve(&self, len: usize, limit: usize) -> bool {
        let before = self.shared.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before + len > limit {
            self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn enqueue(&self, frame: Frame) -> Result<(), PushError> {
        let len = frame.len();
        self.shared.send(Outgoing::Text(frame)).map_err(|_| {
            self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            PushError::Closed
        })
    }

    /// Queues a reply, ping or deletion: never skipped, refused only past the hard limit
    /// (twice the budget), which cuts the client off.
    pub fn push(&self, frame: Frame) -> Result<(), PushError> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(PushError::Closed);
        }
        if shared.overflowed.load(Ordering::Acquire) {
            return Err(PushError::Full);
        }
        if !self.reserve(frame.len(), shared.hard_limit()) {
            if !shared.overflowed.swap(true, Ordering::AcqRel) {
                shared.signal(Signal::Overflowed);
            }
            return Err(PushError::Full);
        }
        self.enqueue(frame)
    }

    /// Queues an update of `record`, or marks the record stale when the client is behind
    /// (then `Ok` too: the record will be resynced). Never waits.
    pub fn push_update(&self, record: &RecordId, frame: Frame) -> Result<(), PushError> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(PushError::Closed);
        }
        if shared.any_stale.load(Ordering::Acquire) && shared.stale().contains(record) {
            return Ok(());
        }
        if !self.reserve(frame.len(), shared.budget) {
            self.mark_stale(record);
            return Ok(());
        }
        self.enqueue(frame)
    }

    fn mark_stale(&self, record: &RecordId) {
        let shared = &self.shared;
        {
            let mut stale = shared.stale();
            stale.insert(record.clone());
            shared.any_stale.store(true, Ordering::Release);
        }
        if !shared.congested.swap(true, Ordering::AcqRel) {
            shared.drained_sent.store(false, Ordering::Release);
            shared.signal(Signal::Congested);
        }
    }

    /// Sends `record`'s full value and ends its staleness, in one step so no update of the
    /// record can slip in between. If it does not fit yet, the record stays stale.
    pub fn resync(&self, record: &RecordId, full: Frame) -> Result<(), PushError> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(PushError::Closed);
        }
        let mut stale = shared.stale();
        if !stale.contains(record) {
            return Ok(());
        }
        if !self.reserve(full.len(), shared.budget) {
            drop(stale);
            self.mark_stale(record);
            return Ok(());
        }
        stale.remove(record);
        shared.any_stale.store(!stale.is_empty(), Ordering::Release);
        self.enqueue(full)
    }

    /// Records currently waiting for a resync.
    pub fn stale_records(&self) -> Vec<RecordId> {
        self.shared.stale().iter().cloned().collect()
    }

    /// Forgets a stale record (its subscription ended).
    pub fn forget_stale(&self, record: &RecordId) {
        let mut stale = self.shared.stale();
        stale.remove(record);
        self.shared
            .any_stale
            .store(!stale.is_empty(), Ordering::Release);
    }

    /// Whether updates are being skipped for lack of room.
    pub fn is_congested(&self) -> bool {
        self.shared.congested.load(Ordering::Acquire)
    }

    /// Ends the congested state (the session calls this when the queue has drained).
    pub fn clear_congestion(&self) {
        self.shared.congested.store(false, Ordering::Release);
    }

    /// Queues a control item (pong, close) outside the budget: these are tiny and bounded by
    /// the session's own behaviour, not by other clients.
    pub fn push_control(&self, item: Outgoing) {
        if matches!(item, Outgoing::Close(_)) {
            self.shared.closed.store(true, Ordering::Release);
        }
        let _ = self.shared.send(item);
    }

    /// Marks the queue closed: later pushes fail with [`PushError::Closed`].
    pub fn close(&self, reason: Option<CloseReason>) {
        if !self.shared.closed.load(Ordering::Acquire) {
            self.push_control(Outgoing::Close(reason));
        }
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Whether the connection's body has ended (see `Shared::writer_done`).
    pub fn writer_done(&self) -> bool {
        self.shared.writer_done.load(Ordering::Acquire)
    }

    /// Bytes queued and not yet handed to the socket (what the tests check).
    #[cfg(test)]
    fn queued_bytes(&self) -> usize {
        self.shared.queued_bytes.load(Ordering::Acquire)
    }

    /// Sends this queue's [`Signal`]s to `session` from now on (the first call wins).
    pub fn signal_to(&self, session: actix::Recipient<Signal>) {
        let _ = self.shared.session.set(session);
    }
}

impl OutboxReceiver {
    /// The next item, or `Pending` with the waker stored for the next push.
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Outgoing> {
        if let Some(item) = self.local.pop_front() {
            return Poll::Ready(item);
        }
        let mut queue = self.shared.queue();
        if queue.items.is_empty() {
            if !queue
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                queue.waker = Some(cx.waker().clone());
            }
            drop(queue);
            // Idle: hold no memory for the batch (the shared queue may keep its own, small).
            self.local = VecDeque::new();
            return Poll::Pending;
        }
        std::mem::swap(&mut queue.items, &mut self.local);
        drop(queue);
        match self.local.pop_front() {
            Some(item) => Poll::Ready(item),
            None => unreachable!("a non-empty batch was just swapped in"),
        }
    }

    /// Nothing more will be taken: later pushes fail with `Closed`, and what is still queued
    /// is let go.
    fn finish(&mut self) {
        let shared = &self.shared;
        shared.closed.store(true, Ordering::Release);
        let left = {
            let mut queue = shared.queue();
            shared.writer_done.store(true, Ordering::Release);
            queue.waker = None;
            std::mem::take(&mut queue.items)
        };
        drop(left);
        self.local = VecDeque::new();
    }
}

impl Drop for OutboxReceiver {
    /// The connection is gone (or finished): later pushes fail with `Closed`.
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> RecordId {
        RecordId::parse(s, 64).unwrap()
    }

    #[test]
    fn updates_past_the_budget_mark_the_record_stale() {
        let (outbox, _rx) = Outbox::new(10);
        let a = id("a");
        assert_eq!(outbox.push_update(&a, Frame::from("123456")), Ok(()));
        assert_eq!(outbox.push_update(&a, Frame::from("123456")), Ok(()));
        assert_eq!(outbox.queued_bytes(), 6);
        assert!(outbox.is_congested());
        assert_eq!(outbox.stale_records(), vec![a.clone()]);
        // While stale, even small updates of that record are skipped, so order is kept.
        assert_eq!(outbox.push_update(&a, Frame::from("1")), Ok(()));
        assert_eq!(outbox.queued_bytes(), 6);
        // Other records still get through while there is room.
        assert_eq!(outbox.push_update(&id("b"), Frame::from("12")), Ok(()));
        assert_eq!(outbox.queued_bytes(), 8);
    }

    #[test]
    fn resync_sends_the_full_value_once_and_ends_staleness() {
        let (outbox, rx) = Outbox::new(10);
        let a = id("a");
        outbox.push_update(&a, Frame::from("123456")).unwrap();
        outbox.push_update(&a, Frame::from("123456")).unwrap();
        // Not enough room yet: stays stale.
        outbox.resync(&a, Frame::from("full!")).unwrap();
        assert_eq!(outbox.stale_records().len(), 1);
        // The body drains, then the resync fits.
        let _ = rx.shared.queue().items.pop_front();
        outbox.shared.queued_bytes.fetch_sub(6, Ordering::AcqRel);
        outbox.resync(&a, Frame::from("full!")).unwrap();
        assert!(outbox.stale_records().is_empty());
        assert_eq!(outbox.queued_bytes(), 5);
    }

    #[test]
    fn replies_pass_until_the_hard_limit() {
        let (outbox, _rx) = Outbox::new(4);
        assert_eq!(outbox.push(Frame::from("123")), Ok(()));
        assert_eq!(outbox.push(Frame::from("123")), Ok(()));
        assert_eq!(outbox.push(Frame::from("123")), Err(PushError::Full));
        assert_eq!(outbox.push(Frame::from("1")), Err(PushError::Full));
    }

    #[test]
    fn an_oversized_frame_passes_when_the_queue_is_empty() {
        let (outbox, _rx) = Outbox::new(4);
        assert_eq!(
            outbox.push_update(&id("a"), Frame::from("0123456789")),
            Ok(())
        );
        assert_eq!(outbox.queued_bytes(), 10);
    }

    #[test]
    fn closed_queues_refuse() {
        let (outbox, rx) = Outbox::new(100);
        drop(rx);
        assert_eq!(outbox.push(Frame::from("x")), Err(PushError::Closed));
        let (outbox, _rx) = Outbox::new(100);
        outbox.close(None);
        assert_eq!(
            outbox.push_update(&id("a"), Frame::from("x")),
            Err(PushError::Closed)
        );
    }
}
