//! Client frames read straight from a taken-over socket.
//!
//! Bytes are read into a stack buffer and kept only while they hold an unfinished frame, so
//! an idle connection owns no read buffer. Fragmented messages are joined here (up to the
//! frame limit), and the items are the same as actix-ws's, so the session handles both paths
//! alike.

use super::LeanSocket;
use actix_codec::Decoder as _;
use actix_http::ws::{Codec, Frame, Item, ProtocolError};
use actix_web::rt::net::TcpStream;
use actix_web::web::{Bytes, BytesMut};
use actix_ws::AggregatedMessage;
use bytestring::ByteString;
use futures_util::Stream;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use tokio::io::Interest;

/// Bytes read from the socket at a time (on the stack, copied out only when kept).
const READ_CHUNK: usize = 16 * 1024;

/// One frame result, as the session's stream handler takes it.
pub(crate) type FrameResult = Result<AggregatedMessage, ProtocolError>;

/// A fragmented message being joined.
struct Partial {
    text: bool,
    data: BytesMut,
}

/// The session's stream of client frames (see the module docs).
pub(crate) struct SocketFrames {
    socket: Rc<LeanSocket>,
    codec: Codec,
    /// Unparsed bytes: empty (no allocation) unless a frame is unfinished.
    buf: BytesMut,
    partial: Option<Partial>,
    max_message: usize,
    ended: bool,
}

impl SocketFrames {
    /// Frames from `socket`, starting with `early` (bytes the client sent right behind its
    /// upgrade request); frames and joined messages over `max_frame_bytes` are refused.
    pub(crate) fn new(socket: Rc<LeanSocket>, early: &[u8], max_frame_bytes: usize) -> Self {
        SocketFrames {
            socket,
            codec: Codec::new().max_size(max_frame_bytes),
            buf: BytesMut::from(early),
            partial: None,
            max_message: max_frame_bytes,
            ended: false,
        }
    }

    /// Turns a decoded frame into a message, or `None` while a fragmented one is unfinished.
    fn message(&mut self, frame: Frame) -> Option<FrameResult> {
        let (first, bytes, last) = match frame {
            Frame::Text(bytes) => return Some(text(bytes)),
            Frame::Binary(bytes) => return Some(Ok(AggregatedMessage::Binary(bytes))),
            Frame::Ping(bytes) => return Some(Ok(AggregatedMessage::Ping(bytes))),
            Frame::Pong(bytes) => return Some(Ok(AggregatedMessage::Pong(bytes))),
            Frame::Close(reason) => return Some(Ok(AggregatedMessage::Close(reason))),
            Frame::Continuation(Item::FirstText(bytes)) => (Some(true), bytes, false),
            Frame::Continuation(Item::FirstBinary(bytes)) => (Some(false), bytes, false),
            Frame::Continuation(Item::Continue(bytes)) => (None, bytes, false),
            Frame::Continuation(Item::Last(bytes)) => (None, bytes, true),
        };
        if let Some(text) = first {
            self.partial = Some(Partial {
                text,
                data: BytesMut::new(),
            });
        }
        // The codec refuses continuations out of order; this is only a second line.
        let Some(partial) = self.partial.as_mut() else {
            return Some(Err(ProtocolError::ContinuationNotStarted));
        };
        if partial.data.len() + bytes.len() > self.max_message {
            self.partial = None;
            return Some(Err(ProtocolError::Overflow));
        }
        partial.data.extend_from_slice(&bytes);
        if !last {
            return None;
        }
        let Partial {
            text: is_text,
            data,
        } = self.partial.take()?;
        let data = data.freeze();
        Some(if is_text {
            text(data)
        } else {
            Ok(AggregatedMessage::Binary(data))
        })
    }

    /// Ends the stream after an error: the session closes on it anyway.
    fn fail(&mut self, error: ProtocolError) -> Poll<Option<FrameResult>> {
        self.ended = true;
        self.buf = BytesMut::new();
        self.partial = None;
        Poll::Ready(Some(Err(error)))
    }
}

/// Reads what the socket holds. A read that does not fill `buf` has emptied the socket, so
/// its readiness is cleared on the spot (as tokio's own `poll_read` does): the next poll waits
/// for new bytes instead of spending a system call to learn there are none. `try_io` clears
/// readiness when its closure reports `WouldBlock`, so a short read is reported that way and
/// its length kept aside; tokio ignores the clear if new bytes were signalled meanwhile.
fn read_draining(io: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut short = None;
    let read = io.try_io(Interest::READABLE, || match io.try_read(buf)? {
        n if n > 0 && n < buf.len() => {
            short = Some(n);
            Err(std::io::ErrorKind::WouldBlock.into())
        }
        n => Ok(n),
    });
    match (read, short) {
        (_, Some(n)) => Ok(n),
        (read, None) => read,
    }
}

fn text(bytes: Bytes) -> FrameResult {
    ByteString::try_from(bytes)
        .map(AggregatedMessage::Text)
        .map_err(|e| ProtocolError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

impl Stream for SocketFrames {
    type Item = FrameResult;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FrameResult>> {
        let this = self.get_mut();
        loop {
            while !this.buf.is_empty() {
                match this.codec.decode(&mut this.buf) {
                    Ok(Some(frame)) => {
                        if let Some(message) = this.message(frame) {
                            return Poll::Ready(Some(message));
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return this.fail(e),
                }
            }
            if this.ended {
                return Poll::Ready(None);
            }
            if this.buf.is_empty() && this.buf.capacity() > 0 {
                // Idle again: let the buffer go (frames still using it keep their part).
                this.buf = BytesMut::new();
            }
            match this.socket.io.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return this.fail(ProtocolError::Io(e)),
                Poll::Ready(Ok(())) => {}
            }
            let mut scratch = [0u8; READ_CHUNK];
            match read_draining(&this.socket.io, &mut scratch) {
                Ok(0) => this.ended = true,
                Ok(n) => this.buf.extend_from_slice(&scratch[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return this.fail(ProtocolError::Io(e)),
            }
        }
    }
}
