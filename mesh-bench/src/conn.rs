//! One client WebSocket connection speaking the Mesh protocol.

use crate::wire::{self, Incoming, Mode, Payload};
use actix_codec::Framed;
use actix_rt::net::TcpStream;
use actix_service::ServiceExt;
use actix_tls::connect::Connection as TcpConnection;
use awc::BoxedSocket;
use awc::http::Uri;
use awc::ws::{Codec, Frame, Message};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;

/// Time for the TCP connect, the upgrade and the server's `mesh/assign-id`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a reply during setup (a subscribe).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest frame accepted from the server (a full push carries the whole value).
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// An HTTP client for one thread's connections. Each open WebSocket holds one of the
/// connector's pool permits for its whole life, so the default limit of 100 would cap
/// the connections a thread can hold: the limit is lifted. Sockets get TCP_NODELAY, as
/// browsers' WebSockets do: with Nagle's algorithm a small frame sent while an earlier
/// one is unacknowledged waits for the peer's delayed ACK (up to 40 ms on Linux), and the
/// tool would measure its own delay.
pub fn http_client() -> awc::Client {
    http_client_with(CONNECT_TIMEOUT, CONNECT_TIMEOUT)
}

/// [`http_client`] with other limits: `connect` for the TCP connect, `request` for an HTTP
/// request or a WebSocket upgrade.
pub fn http_client_with(connect: Duration, request: Duration) -> awc::Client {
    let tcp = actix_tls::connect::Connector::default().service().map(
        |connection: TcpConnection<Uri, TcpStream>| {
            // Best effort: a socket without the option only measures a little slower.
            let _ = connection.io_ref().set_nodelay(true);
            connection
        },
    );
    let connector = awc::Connector::new()
        .connector(tcp)
        .limit(0)
        .timeout(connect);
    awc::Client::builder()
        .connector(connector)
        .timeout(request)
        .finish()
}

/// A connected, identified WebSocket; request ids count up from 1.
pub struct Conn {
    framed: Framed<BoxedSocket, Codec>,
    next_id: u64,
}

impl Conn {
    /// Connects and waits for the server's `mesh/assign-id`; fails after a timeout.
    pub async fn open(client: &awc::Client, url: &str) -> Result<Conn, String> {
        tokio::time::timeout(CONNECT_TIMEOUT, Self::handshake(client, url))
            .await
            .map_err(|_| "connect timed out".to_owned())?
    }

    async fn handshake(client: &awc::Client, url: &str) -> Result<Conn, String> {
        let (_response, framed) = client
            .ws(url)
            .max_frame_size(MAX_FRAME)
            .connect()
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut conn = Conn { framed, next_id: 0 };
        let first = conn.recv().await.ok_or("closed before mesh/assign-id")?;
        wire::assigned_id(&first)?;
        Ok(conn)
    }

    /// A fresh request id.
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Sends one text frame and flushes it.
    pub async fn send(&mut self, text: String) -> Result<(), String> {
        self.framed
            .send(Message::Text(text.into()))
            .await
            .map_err(|e| format!("send: {e}"))
    }

    /// Sends one binary frame (the protocol has none: the hostile scenario's garbage).
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<(), String> {
        self.framed
            .send(Message::Binary(bytes.into()))
            .await
            .map_err(|e| format!("send: {e}"))
    }

    /// Queues one text frame without flushing: a batch then goes out in one write.
    pub async fn feed(&mut self, text: String) -> Result<(), String> {
        self.framed
            .feed(Message::Text(text.into()))
            .await
            .map_err(|e| format!("send: {e}"))
    }

    /// Sends whatever `feed` queued.
    pub async fn flush(&mut self) -> Result<(), String> {
        self.framed.flush().await.map_err(|e| format!("send: {e}"))
    }

    /// Answers the server's `ping` push.
    pub async fn pong(&mut self) -> Result<(), String> {
        self.send(wire::PONG.to_owned()).await
    }

    /// The next text frame; `None` once the connection has ended. WebSocket-level pings
    /// are answered here.
    pub async fn recv(&mut self) -> Option<Bytes> {
        loop {
            match self.framed.next().await? {
                Ok(Frame::Text(bytes) | Frame::Binary(bytes)) => return Some(bytes),
                Ok(Frame::Ping(data)) => self.framed.send(Message::Pong(data)).await.ok()?,
                Ok(Frame::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Subscribes and returns the version in the reply. Setup only: anything else that
    /// arrives before the reply (other than a ping) is dropped.
    pub async fn subscribe(&mut self, record: &str, mode: Mode) -> Result<u64, String> {
        let id = self.next_id();
        self.send(wire::subscribe(id, record, mode)).await?;
        tokio::time::timeout(REPLY_TIMEOUT, self.subscribe_reply(id))
            .await
            .map_err(|_| "no subscribe reply in time".to_owned())?
    }

    async fn subscribe_reply(&mut self, id: u64) -> Result<u64, String> {
        let bytes = self.reply_to(id).await?;
        let frame: Incoming =
            serde_json::from_slice(&bytes).map_err(|e| format!("unreadable frame: {e}"))?;
        match frame.payload.0 {
            Some(payload) if payload.succeeded() => Ok(payload.version.unwrap_or(0)),
            Some(payload) => Err(format!("subscribe refused: {}", payload.describe())),
            None => Err("subscribe refused".into()),
        }
    }

    /// Subscribes to a collection and returns how many members the snapshot holds. Setup
    /// only, like [`Conn::subscribe`].
    pub async fn subscribe_collection(
        &mut self,
        collection: &str,
        mode: Mode,
    ) -> Result<usize, String> {
        let id = self.next_id();
        self.send(wire::subscribe_collection(id, collection, mode))
            .await?;
        let bytes = tokio::time::timeout(REPLY_TIMEOUT, self.reply_to(id))
            .await
            .map_err(|_| "no subscribe-collection reply in time".to_owned())??;
        let frame: Incoming =
            serde_json::from_slice(&bytes).map_err(|e| format!("unreadable frame: {e}"))?;
        match frame.payload.0 {
            Some(payload) if payload.succeeded() && payload.version == Some(1) => {
                Ok(payload.ids.0.unwrap_or(0))
            }
            Some(payload) if payload.succeeded() => Err(format!(
                "subscribe-collection answered version {:?}, not 1",
                payload.version
            )),
            Some(payload) => Err(format!(
                "subscribe-collection {collection} refused: {}",
                payload.describe()
            )),
            None => Err(format!("subscribe-collection {collection} refused")),
        }
    }

    /// Reads until the reply to request `id`; pings are answered and other frames dropped
    /// meanwhile.
    pub async fn reply_to(&mut self, id: u64) -> Result<Bytes, String> {
        loop {
            let bytes = self
                .recv()
                .await
                .ok_or("closed while waiting for a reply")?;
            let frame: Incoming =
                serde_json::from_slice(&bytes).map_err(|e| format!("unreadable frame: {e}"))?;
            if frame.id == Some(id) {
                return Ok(bytes);
            }
            if frame.id.is_none() && frame.command == wire::PING {
                self.pong().await?;
            }
        }
    }

    /// Sends `count` requests, the `i`th built by `request(id, i)`, keeping at most `window`
    /// unanswered, and hands each reply's payload to `on_reply` (in the order the replies
    /// come). Setup only: pushes are dropped meanwhile (pings answered). Fails when the
    /// connection fails or no reply comes for `REPLY_TIMEOUT`.
    pub async fn pipeline(
        &mut self,
        count: usize,
        window: usize,
        mut request: impl FnMut(u64, usize) -> String,
        mut on_reply: impl FnMut(Option<&Payload>),
    ) -> Result<(), String> {
        let (mut sent, mut answered) = (0, 0);
        while answered < count {
            let mut fed = false;
            while sent < count && sent - answered < window.max(1) {
                let id = self.next_id();
                self.feed(request(id, sent)).await?;
                sent += 1;
                fed = true;
            }
            if fed {
                self.flush().await?;
            }
            let bytes = tokio::time::timeout(REPLY_TIMEOUT, self.recv())
                .await
                .map_err(|_| format!("no reply in time ({answered} of {count} answered)"))?
                .ok_or_else(|| format!("closed after {answered} of {count} replies"))?;
            let frame: Incoming =
                serde_json::from_slice(&bytes).map_err(|e| format!("unreadable frame: {e}"))?;
            if frame.id.is_some() {
                answered += 1;
                on_reply(frame.payload.0.as_ref());
            } else if frame.command == wire::PING {
                self.pong().await?;
            }
        }
        Ok(())
    }
}
