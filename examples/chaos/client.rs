//! One WebSocket connection to an instance: requests matched to replies by id, and
//! everything else (pushes, and replies nobody waits for) delivered in arrival order.
//!
//! Order matters to the subscribers: a subscribe reply and the pushes after it must be seen
//! in the order the server sent them, so a subscriber sends with [`Client::send`] and reads
//! its replies from the event channel; the writers use [`Client::request`] and get their
//! replies directly.

use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use mesh_bench::wire::{self, error_code};
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Time for the TCP connect, the upgrade and `mesh/assign-id`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a request ended, from the point of view of "did it happen?".
#[derive(Debug)]
pub enum Reply {
    /// A reply without an error.
    Ok,
    /// An error reply with its code (`EUNAVAILABLE`, `EUNKNOWN`, ...).
    Err(String),
    /// Sent, but no reply: the connection ended or the timeout passed.
    Unknown(&'static str),
    /// Never sent: the connection was already gone.
    NotSent,
}

struct Shared {
    out: mpsc::UnboundedSender<Message>,
    waiting: RefCell<HashMap<u64, oneshot::Sender<Value>>>,
    next_id: Cell<u64>,
    open: Cell<bool>,
}

/// A handle to the connection; cheap to clone, all clones share it.
#[derive(Clone)]
pub struct Client(Rc<Shared>);

/// What arrives without a waiting requester: a frame parsed as JSON.
pub type Events = mpsc::UnboundedReceiver<Value>;

impl Client {
    /// Connects and waits for `mesh/assign-id`; the connection then runs in two local tasks
    /// (one reading, one writing) until either side ends it.
    pub async fn connect(http: &awc::Client, url: &str) -> Result<(Client, Events), String> {
        tokio::time::timeout(CONNECT_TIMEOUT, Self::open(http, url))
            .await
            .map_err(|_| "connect timed out".to_owned())?
    }

    async fn open(http: &awc::Client, url: &str) -> Result<(Client, Events), String> {
        let (_response, framed) = http
            .ws(url)
            .max_frame_size(16 * 1024 * 1024)
            .connect()
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sink, mut stream) = framed.split();
        match stream.next().await {
            Some(Ok(Frame::Text(bytes))) => wire::assigned_id(&bytes)?,
            _ => return Err("no mesh/assign-id".into()),
        };
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (events_tx, events) = mpsc::unbounded_channel();
        let shared = Rc::new(Shared {
            out,
            waiting: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
            open: Cell::new(true),
        });
        actix_rt::spawn(async move {
            while let Some(message) = out_rx.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let reader = shared.clone();
        actix_rt::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                let bytes = match frame {
                    Frame::Text(bytes) | Frame::Binary(bytes) => bytes,
                    Frame::Ping(data) => {
                        let _ = reader.out.send(Message::Pong(data));
                        continue;
                    }
                    Frame::Close(_) => break,
                    _ => continue,
                };
                let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
                    continue;
                };
                if wire::is_ping(&value) {
                    let _ = reader.out.send(Message::Text(wire::PONG.into()));
                    continue;
                }
                let waiter = value["id"]
                    .as_u64()
                    .and_then(|id| reader.waiting.borrow_mut().remove(&id));
                match waiter {
                    Some(waiter) => {
                        let _ = waiter.send(value);
                    }
                    None => {
                        let _ = events_tx.send(value);
                    }
                }
            }
            // Dropping the waiters tells every pending request that its answer is lost;
            // closing `out` ends the writing task.
            reader.open.set(false);
            reader.waiting.borrow_mut().clear();
            let _ = reader.out.send(Message::Close(None));
        });
        Ok((Client(shared), events))
    }

    /// Whether the connection is still up.
    pub fn is_open(&self) -> bool {
        self.0.open.get()
    }

    /// Sends a request whose reply will arrive on the event channel; its id, or `None` when
    /// the connection is gone.
    pub fn send(&self, command: &str, payload: Value) -> Option<u64> {
        let id = self.0.next_id.get() + 1;
        self.0.next_id.set(id);
        let frame = wire::request(id, command, &payload);
        (self.is_open() && self.0.out.send(Message::Text(frame.into())).is_ok()).then_some(id)
    }

    /// Sends a request and waits up to `timeout` for its reply.
    pub async fn request(&self, command: &str, payload: Value, timeout: Duration) -> Reply {
        if !self.is_open() {
            return Reply::NotSent;
        }
        let id = self.0.next_id.get() + 1;
        let (tx, rx) = oneshot::channel();
        self.0.waiting.borrow_mut().insert(id, tx);
        if self.send(command, payload).is_none() {
            self.0.waiting.borrow_mut().remove(&id);
            return Reply::NotSent;
        }
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => {
                self.0.waiting.borrow_mut().remove(&id);
                Reply::Unknown("no reply in time")
            }
            Ok(Err(_)) => Reply::Unknown("connection ended"),
            Ok(Ok(frame)) => match error_code(&frame["payload"]) {
                Some(code) => Reply::Err(code),
                None => Reply::Ok,
            },
        }
    }

    /// Closes the connection (best effort).
    pub fn close(&self) {
        let _ = self.0.out.send(Message::Close(None));
    }
}

/// An HTTP client for the run's WebSockets and admin calls (mesh-bench's, with this run's
/// connect timeout).
pub fn http_client() -> awc::Client {
    mesh_bench::conn::http_client_with(CONNECT_TIMEOUT, Duration::from_secs(10))
}
