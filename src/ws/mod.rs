//! The WebSocket connection path of [`crate::start`]: lean per-connection memory.
//!
//! actix-web serves every HTTP/1 connection with a dispatcher holding an 8 KiB read and an
//! 8 KiB write buffer for as long as the connection lives, plus the server's connection task;
//! for an idle WebSocket that was most of its ~20 KB. Here the upgrade is served by actix-http's
//! upgrade service instead (the rest of HTTP stays the actix-web `App`): the request is checked
//! and answered from its head ([`upgrade`]), then the socket leaves the dispatcher and is served
//! by two small parts on the same worker thread, each holding memory only while it has bytes:
//!
//! - [`reader::SocketFrames`], the session actor's stream of client frames (read straight from
//!   the socket, so the in-flight gate stops reading by not polling it);
//! - [`writer::Writer`], a spawned task draining the session's outbox into the socket.
//!
//! actix-server neither counts these connections nor waits for them at shutdown: the socket
//! holds a `session::ConnectionPermit` (the server's own count and limit) and sessions
//! close on the server's shutdown signal.

pub(crate) mod reader;
pub(crate) mod upgrade;

pub(crate) use upgrade::serve as serve_upgrade;
pub(crate) mod writer;

use crate::session::ConnectionPermit;
use actix_web::rt::net::TcpStream;

/// A taken-over connection's socket, shared by its reader and its writer; the connection's
/// permit is given back when both are gone (and the descriptor closed).
pub(crate) struct LeanSocket {
    pub(crate) io: TcpStream,
    _permit: ConnectionPermit,
}

impl LeanSocket {
    pub(crate) fn new(io: TcpStream, permit: ConnectionPermit) -> Self {
        LeanSocket {
            io,
            _permit: permit,
        }
    }
}
