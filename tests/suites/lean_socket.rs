//! The WebSocket path served off the HTTP/1 dispatcher (src/ws/): what a client sees of the
//! handshake, of frames it splits or sends early, and of the connection count. A raw TCP
//! client speaks the protocol by hand here, so every byte on the wire is under the test's
//! control.

use crate::common;

use common::{Backend, eventually, start};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OPCODE_TEXT: u8 = 0x1;
const OPCODE_CONTINUATION: u8 = 0x0;
const OPCODE_CLOSE: u8 = 0x8;

fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A client frame (masked, as RFC 6455 requires of clients).
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

struct RawClient {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    /// Connects and sends the upgrade request followed, in the same write, by `early`.
    async fn connect(http: &str, path: &str, early: &[u8]) -> (RawClient, String) {
        let addr = http.trim_start_matches("http://");
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut request = upgrade_request(path).into_bytes();
        request.extend_from_slice(early);
        tcp.write_all(&request).await.unwrap();
        let mut client = RawClient {
            tcp,
            buf: Vec::new(),
        };
        let head = loop {
            if let Some(end) = client.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&client.buf[..end]).into_owned();
                client.buf.drain(..end + 4);
                break head;
            }
            assert!(
                client.read_more().await,
                "connection closed before the answer"
            );
        };
        (client, head)
    }

    async fn read_more(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(common::patience() * 2, self.tcp.read(&mut chunk))
            .await
            .expect("the server answers")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The next server frame (opcode, payload), or `None` when the connection closed.
    async fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let opcode = self.buf[0] & 0x0f;
                let (len, start) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => {
                        let mut n = [0u8; 8];
                        n.copy_from_slice(&self.buf[2..10]);
                        (u64::from_be_bytes(n) as usize, 10)
                    }
                    n if n < 126 => (n as usize, 2),
                    _ => (usize::MAX, 0),
                };
                if len != usize::MAX && self.buf.len() >= start + len {
                    let payload = self.buf[start..start + len].to_vec();
                    self.buf.drain(..start + len);
                    return Some((opcode, payload));
                }
            }
            if !self.read_more().await {
                return None;
            }
        }
    }

    /// The reply to request `id`, skipping pushes.
    async fn reply_to(&mut self, id: u64) -> Value {
        while let Some((opcode, payload)) = self.next_frame().await {
            if opcode == OPCODE_TEXT {
                let message: Value = serde_json::from_slice(&payload).unwrap();
                if message["id"] == json!(id) {
                    return message;
                }
            }
        }
        panic!("connection closed before the reply to {id}");
    }

    /// The close code the server sent, skipping other frames.
    async fn close_code(&mut self) -> Option<u16> {
        while let Some((opcode, payload)) = self.next_frame().await {
            if opcode == OPCODE_CLOSE {
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
        }
        None
    }
}

fn noop(id: u64) -> Vec<u8> {
    json!({"id": id, "command": "mesh/noop", "payload": {}})
        .to_string()
        .into_bytes()
}

#[actix_web::test]
async fn fragmented_messages_are_joined() {
    let server = start(Backend::Memory, "").await;
    let (mut client, head) = RawClient::connect(&server.http, "/ws", &[]).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let text = noop(1);
    let (a, rest) = text.split_at(5);
    let (b, c) = rest.split_at(7);
    let mut bytes = frame(false, OPCODE_TEXT, a);
    bytes.extend(frame(false, OPCODE_CONTINUATION, b));
    // A ping between fragments is answered and does not disturb the message.
    bytes.extend(frame(true, 0x9, b"hi"));
    bytes.extend(frame(true, OPCODE_CONTINUATION, c));
    client.tcp.write_all(&bytes).await.unwrap();
    assert_eq!(client.reply_to(1).await["payload"], json!(true));
    server.stop().await;
}

#[actix_web::test]
async fn fragmented_messages_over_the_frame_limit_close_with_1009() {
    let server = start(Backend::Memory, "[server]\nmax_frame_bytes = 1024\n").await;
    let (mut client, _) = RawClient::connect(&server.http, "/ws", &[]).await;
    // Each fragment fits the limit; together they do not.
    let part = vec![b'x'; 600];
    let mut bytes = frame(false, OPCODE_TEXT, &part);
    bytes.extend(frame(true, OPCODE_CONTINUATION, &part));
    client.tcp.write_all(&bytes).await.unwrap();
    assert_eq!(client.close_code().await, Some(1009));
    server.stop().await;
}

#[actix_web::test]
async fn frames_sent_with_the_upgrade_request_are_served() {
    let server = start(Backend::Memory, "").await;
    let mut early = frame(true, OPCODE_TEXT, &noop(1));
    early.extend(frame(true, OPCODE_TEXT, &noop(2)));
    let (mut client, head) = RawClient::connect(&server.http, "/ws", &early).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(client.reply_to(1).await["payload"], json!(true));
    assert_eq!(client.reply_to(2).await["payload"], json!(true));
    server.stop().await;
}

#[actix_web::test]
async fn upgrades_elsewhere_are_refused_and_plain_http_still_works() {
    let server = start(Backend::Memory, "").await;
    let (_, head) = RawClient::connect(&server.http, "/not-the-socket", &[]).await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let health = awc::Client::new()
        .get(format!("{}/health", server.http))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(health, 200);
    server.stop().await;
}

#[actix_web::test]
async fn a_connection_counts_until_its_socket_closes() {
    let server = start(Backend::Memory, "").await;
    let (mut client, _) = RawClient::connect(&server.http, "/ws", &[]).await;
    client
        .tcp
        .write_all(&frame(true, OPCODE_TEXT, &noop(1)))
        .await
        .unwrap();
    assert_eq!(client.reply_to(1).await["payload"], json!(true));
    assert_eq!(server.records().connection_count(), 1);
    drop(client);
    let records = server.records().clone();
    eventually(
        "the slot to be given back",
        common::patience(),
        async || records.connection_count() == 0,
    )
    .await;
    server.stop().await;
}
