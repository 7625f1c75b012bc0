//! Ending a TCP connection whose peer stopped reading.
//!
//! Closing a session queues a close frame behind everything the peer has not read, so the
//! connection would stay established. Shutting the socket down ends it at once. We note
//! the socket's descriptor and inode when the connection is accepted (no duplicate descriptor:
//! that would halve how many connections fit under the descriptor limit) and check the inode
//! again before shutting down, so a reused descriptor number is never touched.

use std::any::Any;
use std::os::fd::{AsRawFd, RawFd};

/// The accepted connection's socket, as noted by [`on_connect`].
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSocket {
    fd: RawFd,
    inode: u64,
}

fn inode_of(fd: RawFd) -> Option<u64> {
    // SAFETY: fstat only writes into the zeroed struct we pass; an invalid fd returns -1.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstat(fd, &mut stat) };
    (rc == 0).then_some(stat.st_ino)
}

impl ConnectionSocket {
    /// Ends the connection at once, if the descriptor still belongs to it: unsent data is
    /// discarded and the peer gets a reset.
    ///
    /// A plain shutdown is not enough for a peer that stopped reading: its receive window is
    /// zero, so the FIN queued behind megabytes of unsent data never leaves and the connection
    /// sat in FIN-WAIT-1 (measured). With a zero linger time, the close that follows (the
    /// socket's reader sees end-of-stream after `SHUT_RD`, its writer a failed write, and the
    /// last of them drops the socket; on the actix-ws path, the dispatcher) sends a reset.
    ///
    /// Call it only from the connection's own worker thread (where its session runs): the
    /// descriptor is closed on that thread, so it cannot change between the check and the call.
    pub fn shutdown(&self) {
        if inode_of(self.fd) == Some(self.inode) {
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: the descriptor is open and is this connection's socket (checked above);
            // setsockopt reads exactly `size_of::<linger>()` bytes from a valid struct.
            unsafe {
                libc::setsockopt(
                    self.fd,
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
                libc::shutdown(self.fd, libc::SHUT_RDWR);
            }
        }
    }
}

/// Pass to `HttpServer::on_connect` (`start` installs it itself): turns off Nagle's algorithm (pushes go out at once) and
/// lets sessions cut off clients that stop reading.
/// Without it, such clients are still dropped from every record, but their TCP connection
/// lingers until the kernel gives up on it.
pub fn on_connect(connection: &dyn Any, data: &mut actix_web::dev::Extensions) {
    if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        // Pushes are small frames that must leave at once; with Nagle's algorithm a push
        // written right after a reply waited ~40 ms for the client's delayed ACK (measured).
        let _ = tcp.set_nodelay(true);
        let fd = tcp.as_raw_fd();
        if let Some(inode) = inode_of(fd) {
            data.insert(ConnectionSocket { fd, inode });
        }
    }
}
