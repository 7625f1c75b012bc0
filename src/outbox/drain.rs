//! From the queue to the socket: [`OutboxDrain`] encodes queued items into WebSocket frames
//! for whichever writer owns the socket, and [`OutboxBody`] is that drain as the response
//! body of an upgrade (the lean connection's writer).

use super::{OutboxReceiver, Outgoing, Signal};
use actix_codec::Encoder;
use actix_http::ws;
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::web::{Bytes, BytesMut};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

/// Most bytes encoded in one go: the rest stays queued and counted against the budget while
/// the socket is slow, instead of piling up in a write buffer.
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Largest control frame payload (RFC 6455); a close frame spends 2 bytes on its code.
const MAX_CONTROL_PAYLOAD: usize = 125;

/// Encodes a session's queued items into WebSocket frames for whichever writer owns the
/// socket. Everything queued by the time it runs goes into one buffer, so a burst of updates
/// costs one wake and one socket write.
#[derive(Debug)]
pub struct OutboxDrain {
    receiver: OutboxReceiver,
    codec: ws::Codec,
    low_water: usize,
    /// A close frame was encoded: nothing follows it.
    done: bool,
    /// The writer has put off this drain once already (see [`OutboxDrain::defer_once`]).
    deferred: bool,
}

impl OutboxDrain {
    /// Encodes queued items into `buf` until it holds [`CHUNK_BYTES`] or the queue is empty
    /// (then the waker is stored and the next push wakes it).
    pub fn fill(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) {
        let mut text_bytes = 0;
        while !self.done && buf.len() < CHUNK_BYTES {
            match self.receiver.poll_recv(cx) {
                Poll::Ready(Outgoing::Text(frame)) => {
                    text_bytes += frame.len();
                    self.encode(ws::Message::Text(frame), buf);
                }
                Poll::Ready(Outgoing::Pong(mut bytes)) => {
                    bytes.truncate(MAX_CONTROL_PAYLOAD);
                    self.encode(ws::Message::Pong(bytes), buf);
                }
                Poll::Ready(Outgoing::Close(mut reason)) => {
                    if let Some(description) = reason.as_mut().and_then(|r| r.description.as_mut())
                    {
                        let mut end = description.len().min(MAX_CONTROL_PAYLOAD - 2);
                        while !description.is_char_boundary(end) {
                            end -= 1;
                        }
                        description.truncate(end);
                    }
                    self.encode(ws::Message::Close(reason), buf);
                    self.finish();
                }
                Poll::Pending => break,
            }
        }
        if text_bytes > 0 {
            let shared = &self.receiver.shared;
            let left = shared.queued_bytes.fetch_sub(text_bytes, Ordering::AcqRel) - text_bytes;
            if left <= self.low_water
                && shared.congested.load(Ordering::Acquire)
                && !shared.drained_sent.swap(true, Ordering::AcqRel)
            {
                shared.signal(Signal::Drained);
            }
        }
    }

    /// True every other call: a writer asks before each drain and, on true, puts it off by
    /// one turn of its thread (kept here, in the drain's spare bytes, so the writer task
    /// stays in its size class).
    pub fn defer_once(&mut self) -> bool {
        self.deferred = !self.deferred;
        self.deferred
    }

    /// Whether the close frame has been encoded (or the writer gave up): once the buffer is
    /// written, the connection is finished.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn encode(&mut self, message: ws::Message, buf: &mut BytesMut) {
        if let Err(e) = self.codec.encode(message, buf) {
            // The server-side codec only fails on frames it cannot express; end the
            // connection rather than send a corrupt stream.
            log::warn!("encoding a WebSocket frame failed: {e}");
            self.finish();
        }
    }

    /// Nothing more will be written: later pushes fail with `Closed`.
    pub fn finish(&mut self) {
        self.done = true;
        self.receiver.finish();
    }
}

/// The response body of a connection upgraded by `actix_ws::handle` (the route mounted with
/// [`crate::RecordServer::configure`] in an app's own actix-web server). The HTTP dispatcher
/// polls it directly: a push wakes the connection's own task.
pub struct OutboxBody {
    drain: OutboxDrain,
    buf: BytesMut,
    /// actix-ws's body, never polled: dropping it ends the client's message stream, which
    /// must happen when the connection goes, not when the upgrade handler returns.
    _upgrade_body: BoxBody,
    _slot: Box<dyn std::any::Any>,
}

impl MessageBody for OutboxBody {
    type Error = std::convert::Infallible;

    fn size(&self) -> BodySize {
        BodySize::Stream
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        this.drain.fill(cx, &mut this.buf);
        if !this.buf.is_empty() {
            // `split` leaves the spare capacity for the next chunk (reclaimed once the
            // dispatcher has copied this one); a buffer grown by a huge frame is let go.
            let chunk = if this.buf.capacity() > 2 * CHUNK_BYTES {
                std::mem::take(&mut this.buf)
            } else {
                this.buf.split()
            };
            return Poll::Ready(Some(Ok(chunk.freeze())));
        }
        if this.drain.is_done() {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

impl OutboxReceiver {
    /// A writer encoding this queue's items as server WebSocket frames.
    pub fn into_drain(self) -> OutboxDrain {
        OutboxDrain {
            low_water: self.shared.budget / 4,
            receiver: self,
            codec: ws::Codec::new(),
            done: false,
            deferred: false,
        }
    }

    /// The connection's response body, draining this queue into the socket. `upgrade_body`
    /// is the body `actix_ws::handle` made; it is kept, unpolled, until the connection ends.
    /// `slot` is the connection's place under `max_connections`, held as long as the body.
    pub fn into_body<S: 'static>(self, upgrade_body: BoxBody, slot: S) -> OutboxBody {
        OutboxBody {
            drain: self.into_drain(),
            buf: BytesMut::new(),
            _upgrade_body: upgrade_body,
            _slot: Box::new(slot),
        }
    }
}
