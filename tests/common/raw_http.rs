//! A raw HTTP/1.1 client over TCP, for tests that control every byte: a request head sent
//! without its body, an answer read before the body would have gone out, and whether the
//! server then closes the connection.

use super::patience;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One connection, with the bytes read but not yet taken.
pub struct RawHttp {
    tcp: TcpStream,
    buf: Vec<u8>,
}

/// A response's status, head (the lines after the status line) and body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl RawResponse {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

impl RawHttp {
    /// Connects to `addr` (`host:port`, or an `http://` URL) and sends `bytes` as they are.
    pub async fn send(addr: &str, bytes: &[u8]) -> RawHttp {
        let addr = addr.trim_start_matches("http://");
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(bytes).await.unwrap();
        RawHttp {
            tcp,
            buf: Vec::new(),
        }
    }

    /// Sends more bytes on the same connection.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tcp.write_all(bytes).await
    }

    /// Reads one response (its body by `Content-Length`; none for 101); fails the test when
    /// none comes within [`patience`].
    pub async fn response(&mut self) -> RawResponse {
        let end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            assert!(self.read_more().await, "closed before a response");
        };
        let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let (status_line, head) = text.split_once("\r\n").unwrap_or((&text, ""));
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
        let mut response = RawResponse {
            status,
            head: head.replace("\r\n", "\n"),
            body: String::new(),
        };
        let length: usize = response
            .header("content-length")
            .map_or(0, |n| n.parse().unwrap());
        while self.buf.len() < length {
            assert!(self.read_more().await, "closed inside a response body");
        }
        response.body = String::from_utf8_lossy(&self.buf[..length]).into_owned();
        self.buf.drain(..length);
        response
    }

    /// Whether the server closes the connection within [`patience`] (whatever it sends first).
    pub async fn closes(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + patience();
        loop {
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.tcp.read(&mut chunk)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }

    async fn read_more(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(patience(), self.tcp.read(&mut chunk))
            .await
            .expect("the server answers in time")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }
}
