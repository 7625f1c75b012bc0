//! Test harness: a real server on a free port and a WebSocket client speaking the Mesh protocol.
#![allow(dead_code)]

pub mod own_cluster;
pub mod own_redis;
pub mod persistence;
pub mod process;

/// Declares each named `async fn(Backend)` test once per store: `memory::name` and
/// `redis::name` (used with `#[macro_use] mod common;`). Starting the list with
/// `with_cluster:` adds `redis_cluster::name`, on the test binary's own Redis Cluster.
#[macro_export]
macro_rules! on_every_store {
    (with_cluster: $($name:ident),* $(,)?) => {
        on_every_store!($($name),*);
        mod redis_cluster {
            $(#[actix_web::test] async fn $name() {
                super::$name(super::Backend::RedisCluster).await
            })*
        }
    };
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[actix_web::test] async fn $name() { super::$name(super::Backend::Memory).await })*
        }
        mod redis {
            $(#[actix_web::test] async fn $name() { super::$name(super::Backend::Redis).await })*
        }
    };
}
pub mod keys;
pub mod proxy;
pub mod raw_http;
pub mod scenario;

use actix_codec::Framed;
use actix_web::web::Bytes;
use awc::BoxedSocket;
use awc::ws::{Codec, Frame, Message};
use futures_util::{SinkExt, StreamExt};
use mesh_bench::wire;
use mesh_records::server::{RecordServerBuilder, RunningServer};
use mesh_records::{Config, RecordServer};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::Duration;

/// How long any expected event may take before the test fails: 5 s, times the factor in
/// `MESH_TEST_PATIENCE` (say `3` on a loaded machine; default 1). Every deadline in the tests
/// is this or a multiple of it, so that one variable makes the whole suite more patient.
/// Passing tests never wait for it: they wait for events, and a deadline only ends a failing
/// wait.
pub fn patience() -> Duration {
    static PATIENCE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *PATIENCE.get_or_init(|| {
        let factor = std::env::var("MESH_TEST_PATIENCE")
            .ok()
            .map(|f| f.parse::<f64>().expect("MESH_TEST_PATIENCE is a number"))
            .unwrap_or(1.0);
        Duration::from_secs(5).mul_f64(factor)
    })
}

/// Which store a test runs against.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Memory,
    Redis,
    /// The test binary's own Redis Cluster (see `own_cluster`).
    RedisCluster,
}

/// The Redis the tests use (`MESH_TEST_REDIS_URL` overrides).
pub fn redis_url() -> String {
    std::env::var("MESH_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test (or run) uses.
pub fn unique_prefix(what: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("test:{what}:{}:{nanos:x}:{n}:", std::process::id())
}

/// Deletes every key under `prefix` (taken literally, glob characters and all).
pub async fn delete_redis_prefix(url: &str, prefix: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg(format!("{}*", mesh_records::model::Glob::escape(prefix)))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// Runs `work` to completion on a thread and runtime of its own: for cleanup in `Drop`, which
/// may run inside a runtime (where blocking on it would panic) or while a test unwinds.
pub fn run_on_own_runtime<F>(work: F) -> std::thread::Result<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("cleanup runtime")
            .block_on(work)
    })
    .join()
}

/// Deletes every key under a prefix when dropped, on a single Redis or on the shared Redis
/// Cluster: a test's keys go even when the test panics half-way.
pub struct Keys {
    prefix: String,
    /// The single Redis's URL; `None`: the binary's shared Redis Cluster.
    redis: Option<String>,
}

impl Keys {
    /// The keys under `prefix` on the shared Redis ([`redis_url`]).
    pub fn on_redis(prefix: &str) -> Keys {
        Keys::at(&redis_url(), prefix)
    }

    /// The keys under `prefix` on the single Redis at `url`.
    pub fn at(url: &str, prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
            redis: Some(url.to_owned()),
        }
    }

    /// The keys under `prefix` on the binary's shared Redis Cluster.
    pub fn on_cluster(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
            redis: None,
        }
    }

    /// Keeps the keys after all (the test hands them on, and their cleanup with them).
    pub fn keep(mut self) {
        self.prefix.clear();
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        if self.prefix.is_empty() {
            return;
        }
        let (prefix, redis) = (self.prefix.clone(), self.redis.clone());
        let deleted = run_on_own_runtime(async move {
            match redis {
                Some(url) => delete_redis_prefix(&url, &prefix).await,
                None => {
                    own_cluster::delete_prefix(&own_cluster::shared_cluster_url(), &prefix).await
                }
            }
        });
        if deleted.is_err() {
            eprintln!("could not delete the test keys under {}", self.prefix);
        }
    }
}

pub struct TestServer {
    pub running: RunningServer,
    pub ws: String,
    pub http: String,
    /// The keys this server's store holds on the shared Redis (or Redis Cluster), deleted
    /// when the server is stopped or dropped (also when the test panics).
    pub keys: Option<Keys>,
}

impl TestServer {
    /// Writes `value` to record `id` through the Rust API (replace), failing the test if
    /// the write fails.
    pub async fn write(&self, id: &str, value: Value) {
        self.records()
            .write_record(id, value, mesh_records::Strategy::Replace)
            .await
            .unwrap_or_else(|e| panic!("writing {id}: {e}"));
    }

    /// Asserts that nothing has been pushed to `client` so far, against a positive signal
    /// rather than a quiet period: subscribes `client` to `marker` (a record the config lets
    /// it read; already following it is fine), writes a fresh value there, and fails on any
    /// push but pings that arrives before that write's update. Whatever the server sent the
    /// client before the marker write is queued ahead of the marker's update (one connection,
    /// one queue), so the marker arriving first shows that nothing else was on its way.
    pub async fn assert_nothing_pushed_before_marker(&self, client: &mut Client, marker: &str) {
        let reply = client.subscribe(marker, "full").await;
        assert_eq!(
            reply["success"], true,
            "subscribing to the marker {marker}: {reply}"
        );
        let written = self
            .records()
            .write_record(marker, fresh_marker(), mesh_records::Strategy::Replace)
            .await
            .unwrap_or_else(|e| panic!("writing the marker {marker}: {e}"));
        client.expect_marker(marker, written.version).await;
    }

    pub fn records(&self) -> &RecordServer {
        &self.running.records
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.ws).await
    }

    /// Stops the server, then deletes its keys.
    pub async fn stop(self) {
        self.running.stop().await;
    }

    /// Stops the server and leaves its keys for the next server on the same prefix (the test
    /// then owns their cleanup, usually with a [`Keys`] of its own).
    pub async fn stop_keeping_keys(mut self) {
        if let Some(keys) = self.keys.take() {
            keys.keep();
        }
        self.running.stop().await;
    }
}

/// A value no earlier write used, to write as a marker.
pub fn fresh_marker() -> Value {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    json!({"marker": NEXT.fetch_add(1, Ordering::Relaxed)})
}

/// Parses a test config and makes it local: port 0, one worker, short record linger.
pub fn test_config(toml: &str) -> Config {
    let mut config = Config::parse(toml).expect("test config parses");
    config.server.host = "127.0.0.1".into();
    config.server.port = 0;
    config.server.workers = 1;
    if !toml.contains("record_linger_ms") {
        config.server.record_linger_ms = 100;
    }
    config
}

pub async fn start(backend: Backend, toml: &str) -> TestServer {
    start_with(backend, toml, |b| b).await
}

/// A server on exactly the store `toml` names (such as a Redis of the test's own), left as
/// it is afterwards: the test owns that store and cleans it up.
pub async fn start_as_configured(toml: &str) -> TestServer {
    let running = mesh_records::start(test_config(toml))
        .await
        .expect("server starts");
    let addr = running.addr;
    TestServer {
        ws: format!("ws://{addr}/ws"),
        http: format!("http://{addr}"),
        running,
        keys: None,
    }
}

/// `?user=NAME` on the upgrade becomes metadata `{"userId": NAME}` (none: `null`).
pub fn user_from_query() -> mesh_records::Authenticator {
    mesh_records::Authenticator::new(|request| {
        let user = request
            .query_string()
            .strip_prefix("user=")
            .map(str::to_owned);
        async move { Ok(json!({ "userId": user })) }
    })
}

pub async fn start_with(
    backend: Backend,
    toml: &str,
    extend: impl FnOnce(RecordServerBuilder) -> RecordServerBuilder,
) -> TestServer {
    let mut config = test_config(toml);
    let mut keys = None;
    match backend {
        Backend::Memory => {}
        Backend::RedisCluster => {
            let prefix = if config.store.key_prefix.starts_with("test:") {
                config.store.key_prefix.clone()
            } else {
                unique_prefix("server")
            };
            config.store.key_prefix = prefix.clone();
            // A config naming the cluster backend brings its own (private) cluster, which
            // goes with its keys; otherwise the binary's shared cluster, cleaned up on stop.
            if config.store.backend != mesh_records::config::StoreBackend::RedisCluster {
                config.store.backend = mesh_records::config::StoreBackend::RedisCluster;
                config.store.redis_url = own_cluster::shared_cluster_url();
                keys = Some(Keys::on_cluster(&prefix));
            }
        }
        Backend::Redis => {
            let prefix = if config.store.key_prefix.starts_with("test:") {
                config.store.key_prefix.clone()
            } else {
                unique_prefix("server")
            };
            config.store.backend = mesh_records::config::StoreBackend::Redis;
            config.store.redis_url = redis_url();
            keys = Some(Keys::on_redis(&prefix));
            config.store.key_prefix = prefix;
        }
    }
    let builder = RecordServer::builder(config.clone()).record_threads(2);
    let running = mesh_records::start_with(config.clone(), extend(builder))
        .await
        .expect("server starts");
    let addr = running.addr;
    TestServer {
        ws: format!("ws://{addr}{}", config.server.ws_path),
        http: format!("http://{addr}"),
        running,
        keys,
    }
}

/// Every `.rs` file under `dir`, into `out` (the layout and docs tests read the sources).
pub fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A free port below Linux's ephemeral range (32768 and up), so that neither an outgoing
/// connection nor a `bind` to port 0 anywhere can take it while a test's server is down
/// between a stop and its restart on the same port (with tests running 8 at a time, that
/// happened). Ports are handed out in turn from a base that depends on the process id, so test
/// binaries running side by side start apart, and each is checked free by binding it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = (std::process::id() % 220) * 100;
    loop {
        let port = (LOW + (base + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Waits until a server process answers `GET /health` on `port`.
pub async fn wait_for_health(port: u16) {
    let deadline = std::time::Instant::now() + patience() * 4;
    let url = format!("http://127.0.0.1:{port}/health");
    loop {
        let response = awc::Client::default().get(&url).send().await;
        if response.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server did not come up"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` every 10 ms until it holds; fails the test naming `what` after `within`
/// (usually [`patience`]). The one polling helper: `async || cond` for a plain condition,
/// `|| async { ... }` for one that awaits.
pub async fn eventually(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

pub struct Client {
    framed: Framed<BoxedSocket, Codec>,
    pub id: String,
    next_id: u64,
    pushes: VecDeque<Value>,
    replies: VecDeque<Value>,
    /// Answer the server's `ping` pushes with `pong` automatically.
    pub auto_pong: bool,
}

/// How a connection attempt ended.
#[derive(Debug)]
pub enum ConnectError {
    Status(u16),
    Other(String),
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        Self::try_connect(url, None).await.expect("connects")
    }

    pub async fn try_connect(url: &str, bearer: Option<&str>) -> Result<Client, ConnectError> {
        let mut request = awc::Client::builder()
            .timeout(patience())
            .finish()
            .ws(url)
            .max_frame_size(64 * 1024 * 1024);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let (_response, framed) = request.connect().await.map_err(|e| match e {
            awc::error::WsClientError::InvalidResponseStatus(status) => {
                ConnectError::Status(status.as_u16())
            }
            other => ConnectError::Other(other.to_string()),
        })?;
        let mut client = Client {
            framed,
            id: String::new(),
            next_id: 0,
            pushes: VecDeque::new(),
            replies: VecDeque::new(),
            auto_pong: true,
        };
        let first = tokio::time::timeout(patience(), client.read_bytes())
            .await
            .ok()
            .flatten()
            .expect("assign-id arrives");
        client.id = wire::assigned_id(&first).expect("the first frame assigns an id");
        Ok(client)
    }

    pub async fn send_text(&mut self, text: &str) {
        self.framed
            .send(Message::Text(text.to_owned().into()))
            .await
            .expect("send");
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.framed
            .send(Message::Binary(bytes.to_vec().into()))
            .await
            .expect("send");
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends a request with the given id without waiting for its reply (pipelining);
    /// [`Client::reply_to`] reads the reply.
    pub async fn send_request(&mut self, id: u64, command: &str, payload: Value) {
        self.send_text(&wire::request(id, command, &payload)).await;
    }

    /// An id no earlier request of this client's own numbering used.
    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Sends a request and returns its whole reply frame.
    pub async fn request_frame(&mut self, command: &str, payload: Value) -> Value {
        let id = self.fresh_id();
        self.send_request(id, command, payload).await;
        self.reply_to(id).await
    }

    /// Sends a request and returns the reply payload.
    pub async fn request(&mut self, command: &str, payload: Value) -> Value {
        self.request_frame(command, payload).await["payload"].take()
    }

    /// Sends a request and returns its reply payload, or `None` if the connection ends first.
    pub async fn try_request(&mut self, command: &str, payload: Value) -> Option<Value> {
        let id = self.fresh_id();
        let frame = wire::request(id, command, &payload);
        self.framed.send(Message::Text(frame.into())).await.ok()?;
        loop {
            let mut frame = self.next_frame().await?;
            if frame["id"] == id {
                return Some(frame["payload"].take());
            }
            self.stash(frame);
        }
    }

    /// Waits for the reply with this id, keeping pushes for later.
    pub async fn reply_to(&mut self, id: u64) -> Value {
        if let Some(pos) = self.replies.iter().position(|r| r["id"] == id) {
            return self.replies.remove(pos).unwrap();
        }
        loop {
            let frame = self
                .next_frame()
                .await
                .unwrap_or_else(|| panic!("no reply to request {id}"));
            if frame["id"] == id {
                return frame;
            }
            self.stash(frame);
        }
    }

    fn stash(&mut self, frame: Value) {
        if frame.get("id").is_some() {
            self.replies.push_back(frame);
        } else {
            self.pushes.push_back(frame);
        }
    }

    pub async fn subscribe(&mut self, record: &str, mode: &str) -> Value {
        self.request(wire::SUBSCRIBE, json!({"recordId": record, "mode": mode}))
            .await
    }

    pub async fn publish(&mut self, record: &str, value: Value) -> Value {
        self.request(
            wire::PUBLISH,
            json!({"recordId": record, "newValue": value}),
        )
        .await
    }

    /// The next push (a frame without id), failing the test after [`patience`].
    pub async fn next_push(&mut self) -> Value {
        self.try_next_push(patience())
            .await
            .expect("a push arrives")
    }

    /// The next push of this command, skipping others (pings, ...).
    pub async fn next_push_of(&mut self, command: &str) -> Value {
        loop {
            let push = self.next_push().await;
            if push["command"] == command {
                return push;
            }
        }
    }

    /// The next push within `wait`, if any.
    pub async fn try_next_push(&mut self, wait: Duration) -> Option<Value> {
        if let Some(push) = self.pushes.pop_front() {
            return Some(push);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = match tokio::time::timeout(remaining, self.read_text()).await {
                Ok(Some(frame)) => frame,
                Ok(None) | Err(_) => return None,
            };
            if frame.get("id").is_none() {
                return Some(frame);
            }
            self.replies.push_back(frame);
        }
    }

    /// Waits for the update of `record` at `version` (a marker written after whatever must
    /// not have happened), failing on any other push but pings that comes first.
    pub async fn expect_marker(&mut self, record: &str, version: u64) {
        loop {
            let push = self.next_push().await;
            if push["command"] == "ping" {
                continue;
            }
            let payload = &push["payload"];
            assert!(
                push["command"] == "mesh/record-update"
                    && payload["recordId"] == record
                    && payload["version"] == version,
                "a push before the marker ({record} v{version}): {push}"
            );
            return;
        }
    }

    /// Waits for the reply to request `id`, failing on any other reply that comes first
    /// (a connection answers in order, so an unwanted answer to an earlier request would).
    pub async fn reply_to_only(&mut self, id: u64) -> Value {
        if let Some(earlier) = self.replies.pop_front() {
            panic!("a reply before the one to request {id}: {earlier}");
        }
        loop {
            let frame = self
                .next_frame()
                .await
                .unwrap_or_else(|| panic!("no reply to request {id}"));
            if frame.get("id").is_none() {
                self.pushes.push_back(frame);
                continue;
            }
            assert_eq!(
                frame["id"], id,
                "a reply before the one to request {id}: {frame}"
            );
            return frame;
        }
    }

    /// The next text frame of any kind (None when the connection ended or after [`patience`]).
    pub async fn next_frame(&mut self) -> Option<Value> {
        tokio::time::timeout(patience(), self.read_text())
            .await
            .ok()
            .flatten()
    }

    /// The next text (or binary) frame parsed as JSON. With `auto_pong`, a `ping` push is
    /// answered and skipped: the server pings whenever its clock says (the first within one
    /// ping interval of connecting), so no test can expect to see or not see one.
    async fn read_text(&mut self) -> Option<Value> {
        loop {
            let bytes = self.read_bytes().await?;
            let frame: Value = serde_json::from_slice(&bytes).expect("server sends JSON");
            if self.auto_pong && wire::is_ping(&frame) {
                let _ = self.framed.send(Message::Text(wire::PONG.into())).await;
                continue;
            }
            return Some(frame);
        }
    }

    /// The next text (or binary) frame as sent; `None` once the connection has ended.
    async fn read_bytes(&mut self) -> Option<Bytes> {
        loop {
            match self.framed.next().await? {
                Ok(Frame::Text(bytes)) | Ok(Frame::Binary(bytes)) => return Some(bytes),
                Ok(Frame::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Reads until the server closes; returns the close code (None if the socket just ended).
    pub async fn closed(&mut self) -> Option<u16> {
        let read = async {
            loop {
                match self.framed.next().await {
                    Some(Ok(Frame::Close(reason))) => return reason.map(|r| u16::from(r.code)),
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return None,
                }
            }
        };
        tokio::time::timeout(patience(), read)
            .await
            .expect("the server closes the connection")
    }

    pub async fn close(mut self) {
        let _ = self.framed.send(Message::Close(None)).await;
    }
}

/// A raw WebSocket client with a tiny receive buffer that stops reading after subscribing:
/// the worst kind of slow consumer, independent of the machine's TCP buffer tuning.
pub struct StuckClient {
    pub socket: tokio::net::TcpStream,
}

impl StuckClient {
    pub async fn subscribe(addr: std::net::SocketAddr, path: &str, record: &str) -> StuckClient {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut socket = socket.connect(addr).await.unwrap();
        let handshake = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        socket.write_all(handshake.as_bytes()).await.unwrap();
        let request = wire::request(
            1,
            wire::SUBSCRIBE,
            &json!({"recordId": record, "mode": "patch"}),
        );
        socket
            .write_all(&masked_text_frame(request.as_bytes()))
            .await
            .unwrap();
        // Read until the subscribe reply has arrived, then never read again.
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&seen).contains("\"mesh/subscribe-record\"") {
            let n = tokio::time::timeout(patience(), socket.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "connection ended during setup");
            seen.extend_from_slice(&buf[..n]);
        }
        StuckClient { socket }
    }

    /// Reads whatever is buffered until the server ends the connection; panics after `wait`.
    pub async fn read_until_closed(&mut self, wait: Duration) {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        let drain = async {
            loop {
                match self.socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        };
        tokio::time::timeout(wait, drain)
            .await
            .expect("the server ended the TCP connection");
    }
}

/// One client-to-server text frame (clients must mask their frames).
fn masked_text_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}
