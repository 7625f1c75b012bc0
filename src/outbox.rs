//! A session's outbound queue: bounded in bytes, filled without blocking by any actor, drained
//! by one writer task that owns the `actix_ws::Session`.
//!
//! Why not the session actor's mailbox: a client that stops reading must cost a bounded amount
//! of memory and must never stall the producer (a `RecordActor` fanning out to thousands).
//! `push` never waits; when the budget is exhausted it refuses and raises the overflow signal,
//! and the session applies its slow-consumer policy.

use crate::record::Frame;
use actix_web::web::Bytes;
use actix_ws::CloseReason;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::{Notify, mpsc};

/// One item for the writer task.
#[derive(Debug)]
pub enum Outgoing {
    /// A JSON text frame.
    Text(Frame),
    /// A WebSocket pong answering a client ping.
    Pong(Bytes),
    /// Send a close frame and stop writing.
    Close(Option<CloseReason>),
}

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The byte budget is used up: the client is not reading fast enough.
    Full,
    /// The session has ended; drop this subscriber.
    Closed,
}

#[derive(Debug)]
struct Shared {
    queued_bytes: AtomicUsize,
    budget: usize,
    overflowed: AtomicBool,
    closed: AtomicBool,
    /// Set when the writer task has ended (the socket no longer needs a push to close).
    writer_done: AtomicBool,
    overflow: Notify,
}

/// Producer side of a session's queue. Cheap to clone; `RecordActor`s hold one per subscriber.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Outgoing>,
    shared: Arc<Shared>,
}

/// Consumer side, owned by the writer task.
#[derive(Debug)]
pub struct OutboxReceiver {
    rx: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
}

impl Outbox {
    /// A queue that holds at most `budget_bytes` of frames (a single frame larger than the
    /// budget is still accepted when the queue is empty, so big records remain deliverable).
    pub fn new(budget_bytes: usize) -> (Outbox, OutboxReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            queued_bytes: AtomicUsize::new(0),
            budget: budget_bytes,
            overflowed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            writer_done: AtomicBool::new(false),
            overflow: Notify::new(),
        });
        let receiver = OutboxReceiver {
            rx,
            shared: Arc::clone(&shared),
        };
        (Outbox { tx, shared }, receiver)
    }

    /// Queues a frame unless the session is closed or over budget. Never waits.
    pub fn push(&self, frame: Frame) -> Result<(), PushError> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(PushError::Closed);
        }
        if shared.overflowed.load(Ordering::Acquire) {
            return Err(PushError::Full);
        }
        let len = frame.len();
        let before = shared.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if before > 0 && before + len > shared.budget {
            shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            if !shared.overflowed.swap(true, Ordering::AcqRel) {
                shared.overflow.notify_one();
            }
            return Err(PushError::Full);
        }
        self.tx.send(Outgoing::Text(frame)).map_err(|_| {
            shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            PushError::Closed
        })
    }

    /// Queues a control item (pong, close) outside the budget: these are tiny and bounded by
    /// the session's own behaviour, not by other clients.
    pub fn push_control(&self, item: Outgoing) {
        if item_is_close(&item) {
            self.shared.closed.store(true, Ordering::Release);
        }
        let _ = self.tx.send(item);
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

    /// Whether the writer task has ended.
    pub fn writer_done(&self) -> bool {
        self.shared.writer_done.load(Ordering::Acquire)
    }

    /// Bytes queued and not yet handed to the socket.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued_bytes.load(Ordering::Acquire)
    }

    /// Completes when a push has been refused for lack of budget.
    pub async fn overflowed(&self) {
        self.shared.overflow.notified().await;
    }
}

fn item_is_close(item: &Outgoing) -> bool {
    matches!(item, Outgoing::Close(_))
}

impl OutboxReceiver {
    /// Drains the queue into the WebSocket until a close item, a send failure, or every
    /// producer is gone. Run it as the session's one writer task.
    pub async fn run(mut self, mut session: actix_ws::Session) {
        while let Some(item) = self.rx.recv().await {
            let sent = match item {
                Outgoing::Text(frame) => {
                    let len = frame.len();
                    let sent = session.text(frame).await;
                    self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                    sent
                }
                Outgoing::Pong(bytes) => session.pong(&bytes).await,
                Outgoing::Close(reason) => {
                    let _ = session.close(reason).await;
                    break;
                }
            };
            if sent.is_err() {
                break;
            }
        }
        self.shared.closed.store(true, Ordering::Release);
        self.shared.writer_done.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_refuses_and_signals_once_full() {
        let (outbox, _rx) = Outbox::new(10);
        assert_eq!(outbox.push(Frame::from("123456")), Ok(()));
        assert_eq!(outbox.push(Frame::from("123456")), Err(PushError::Full));
        assert_eq!(outbox.queued_bytes(), 6);
        // Once overflowed, the session must act; further pushes keep failing.
        assert_eq!(outbox.push(Frame::from("1")), Err(PushError::Full));
    }

    #[test]
    fn an_oversized_frame_passes_when_the_queue_is_empty() {
        let (outbox, _rx) = Outbox::new(4);
        assert_eq!(outbox.push(Frame::from("0123456789")), Ok(()));
    }

    #[test]
    fn closed_queues_refuse() {
        let (outbox, rx) = Outbox::new(100);
        drop(rx);
        assert_eq!(outbox.push(Frame::from("x")), Err(PushError::Closed));
        let (outbox, _rx) = Outbox::new(100);
        outbox.close(None);
        assert_eq!(outbox.push(Frame::from("x")), Err(PushError::Closed));
    }
}
