//! The task writing a session's outbox into its taken-over socket.
//!
//! Frames are encoded into a per-thread buffer and written from there; only what the socket
//! does not take at once is copied into the connection's own buffer, which is let go as soon
//! as it has been written. An idle connection's writer therefore holds no buffer at all.

use super::LeanSocket;
use crate::outbox::{CHUNK_BYTES, OutboxDrain};
use actix_web::web::{Buf as _, BytesMut};
use std::cell::RefCell;
use std::future::Future;
use std::io::ErrorKind;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

/// Socket writes in one poll before yielding to other connections on the thread.
const WRITES_PER_POLL: usize = 16;

thread_local! {
    /// Where frames are encoded before the write; shared by the thread's connections.
    static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// The writer task (see the module docs); ends when the close frame is written or the socket
/// fails.
pub(crate) struct Writer {
    socket: Rc<LeanSocket>,
    drain: OutboxDrain,
    /// What the socket has not taken yet: empty (no allocation) unless it is slow.
    pending: BytesMut,
}

impl Writer {
    pub(crate) fn new(socket: Rc<LeanSocket>, drain: OutboxDrain) -> Self {
        Writer {
            socket,
            drain,
            pending: BytesMut::new(),
        }
    }

    /// Encodes what is queued and writes it; the unwritten rest goes to `pending`.
    fn write_fresh(&mut self, cx: &mut Context<'_>) -> std::io::Result<bool> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            scratch.clear();
            self.drain.fill(cx, &mut scratch);
            if scratch.is_empty() {
                return Ok(false);
            }
            let written = match self.socket.io.try_write(&scratch) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            if written < scratch.len() {
                self.pending.extend_from_slice(&scratch[written..]);
            }
            if scratch.capacity() > 2 * CHUNK_BYTES {
                // A huge frame passed through: do not keep its room for the thread's lifetime.
                *scratch = BytesMut::new();
            }
            Ok(true)
        })
    }
}

impl Future for Writer {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // A push wakes this task at once, but what goes with it is often still on its way:
        // the record actor pushes a write's update and only then answers the writing
        // session, whose task queues the acknowledgement. Going once to the back of the
        // thread's queue lets those tasks run first, so both leave in one socket write.
        if this.pending.is_empty() && this.drain.defer_once() {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        for _ in 0..WRITES_PER_POLL {
            if !this.pending.is_empty() {
                match this.socket.io.poll_write_ready(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(_)) => return this.fail(),
                    Poll::Ready(Ok(())) => {}
                }
                match this.socket.io.try_write(&this.pending) {
                    Ok(n) => this.pending.advance(n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                    Err(_) => return this.fail(),
                }
                if !this.pending.is_empty() {
                    continue;
                }
                this.pending = BytesMut::new();
            }
            if this.drain.is_done() {
                return Poll::Ready(());
            }
            match this.write_fresh(cx) {
                Ok(true) => {}
                // Nothing queued: the next push wakes this task.
                Ok(false) => return Poll::Pending,
                Err(_) => return this.fail(),
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Writer {
    /// The socket failed (the peer is gone): stop taking pushes.
    fn fail(&mut self) -> Poll<()> {
        self.drain.finish();
        self.pending = BytesMut::new();
        Poll::Ready(())
    }
}
