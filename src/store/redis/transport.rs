//! How [`RedisStore`](super::RedisStore) sends its commands: to one Redis node through a
//! `ConnectionManager`, or to a Redis Cluster through the `redis` crate's cluster connection,
//! which routes each command by its key's slot and follows `MOVED`/`ASK` itself. Everything
//! above this (scripts, key names, parsing answers) is the same for both.
//!
//! On one node each thread sends on a connection of its own ([`NodeConns`]), opened the first
//! time it sends: a record actor lives on one thread, so its calls stay in the order it made
//! them (a check after a write that timed out must not overtake it), and a command and its
//! reply never cross threads (each crossing is a wake-up, the largest cost of a write here).

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Script, ScriptInvocation, Value,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::thread::ThreadId;

/// Where commands go. Cheap to clone: clones share the connections.
#[derive(Clone)]
pub(super) enum Transport {
    /// One Redis node, a connection per thread.
    Node(Arc<NodeConns>),
    /// A Redis Cluster.
    Cluster(ClusterConnection),
}

/// The connections of one node, one per thread that sends commands; each reconnects by
/// itself. They close when the last store clone is dropped.
pub(super) struct NodeConns {
    client: redis::Client,
    config: ConnectionManagerConfig,
    by_thread: Mutex<HashMap<ThreadId, ConnectionManager>>,
}

impl NodeConns {
    /// Connections to the node `client` names, `first` serving the calling thread.
    pub fn new(
        client: redis::Client,
        config: ConnectionManagerConfig,
        first: ConnectionManager,
    ) -> NodeConns {
        let thread = std::thread::current().id();
        NodeConns {
            client,
            config,
            by_thread: Mutex::new(HashMap::from([(thread, first)])),
        }
    }

    /// This thread's connection, opened now if it has none. Its task runs on this thread.
    async fn here(&self) -> RedisResult<ConnectionManager> {
        let thread = std::thread::current().id();
        if let Some(conn) = self.lock().get(&thread) {
            return Ok(conn.clone());
        }
        let conn =
            ConnectionManager::new_with_config(self.client.clone(), self.config.clone()).await?;
        // Another call on this thread may have opened one meanwhile: the first stays.
        Ok(self.lock().entry(thread).or_insert(conn).clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ThreadId, ConnectionManager>> {
        // The map is whole after any panic: inserts are single calls.
        self.by_thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The Lua scripts, built for one way of publishing.
///
/// Which may run while Redis is over `maxmemory` (`noeviction`) is set by each one's shebang:
pub(super) struct Scripts {
    /// Refused up front when Redis is full (the caller gets `Unavailable`, nothing changed).
    pub write: Script,
    /// Runs when Redis is full (`allow-oom`): it frees the value and the history and adds only
    /// the last-operation key, so it is how a full Redis gets room again through the server.
    pub delete: Script,
    /// Refused up front when Redis is full, like `write`.
    pub restore: Script,
    /// Runs when Redis is full, as `delete` does: an expiry only frees memory.
    pub expire: Script,
    /// Refused up front when Redis is full.
    pub set_expiry: Script,
    /// The expiry index's scripts (`expiry.rs`). Filing an entry is part of a write and is
    /// refused with it; claiming and settling entries run when full (they add nothing), so
    /// a full Redis can still expire records.
    pub index_hint: Script,
    /// Claims due entries for one sweep (allow-oom).
    pub index_claim: Script,
    /// Ends a sweep's claim on its entries (allow-oom).
    pub index_settle: Script,
}

/// Each script: its shebang, which publish command to use, then the shared helpers, then the
/// script.
///
/// The shebang must be the very first line. With it (Redis 7 script flags), a script without
/// `allow-oom` is refused whole, before it runs, while Redis is over `maxmemory`; without one,
/// Redis would run it and refuse only its first command that may grow memory, after any
/// command before it had taken effect. Every key a script touches is passed in `KEYS`, which
/// is what flagged scripts must do on a cluster.
macro_rules! lua {
    ($shebang:literal, $publish:literal, $file:literal) => {
        Script::new(concat!(
            $shebang,
            "\nlocal PUBLISH = '",
            $publish,
            "'\n",
            include_str!("lua/common.lua"),
            include_str!($file)
        ))
    };
}

/// Scripts that `PUBLISH` (one node: every subscriber is on it).
static NODE_SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    write: lua!("#!lua", "PUBLISH", "lua/write.lua"),
    delete: lua!("#!lua flags=allow-oom", "PUBLISH", "lua/delete.lua"),
    restore: lua!("#!lua", "PUBLISH", "lua/restore.lua"),
    expire: lua!("#!lua flags=allow-oom", "PUBLISH", "lua/expire.lua"),
    set_expiry: lua!("#!lua", "PUBLISH", "lua/set_expiry.lua"),
    index_hint: lua!("#!lua", "PUBLISH", "lua/index_hint.lua"),
    index_claim: lua!("#!lua flags=allow-oom", "PUBLISH", "lua/index_claim.lua"),
    index_settle: lua!("#!lua flags=allow-oom", "PUBLISH", "lua/index_settle.lua"),
});

/// Scripts that `SPUBLISH` (a cluster: the message stays on the shard owning the record).
static CLUSTER_SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    write: lua!("#!lua", "SPUBLISH", "lua/write.lua"),
    delete: lua!("#!lua flags=allow-oom", "SPUBLISH", "lua/delete.lua"),
    restore: lua!("#!lua", "SPUBLISH", "lua/restore.lua"),
    expire: lua!("#!lua flags=allow-oom", "SPUBLISH", "lua/expire.lua"),
    set_expiry: lua!("#!lua", "SPUBLISH", "lua/set_expiry.lua"),
    index_hint: lua!("#!lua", "SPUBLISH", "lua/index_hint.lua"),
    index_claim: lua!("#!lua flags=allow-oom", "SPUBLISH", "lua/index_claim.lua"),
    index_settle: lua!("#!lua flags=allow-oom", "SPUBLISH", "lua/index_settle.lua"),
});

impl Transport {
    /// The scripts that publish the way this transport's subscribers listen.
    pub fn scripts(&self) -> &'static Scripts {
        match self {
            Transport::Node(_) => &NODE_SCRIPTS,
            Transport::Cluster(_) => &CLUSTER_SCRIPTS,
        }
    }

    /// Runs `request` on this thread's connection (one node) or the cluster connection.
    ///
    /// On one node a refused connection is tried once more: while Redis is down, the manager
    /// keeps the failed connection attempt and only starts a new one when a call fails on it,
    /// so without this the first call after Redis returns would still fail. A refused
    /// connection means nothing was sent, so a second try cannot apply a write twice; every
    /// other error is returned as it is.
    async fn on_connection<T, F, Fut>(&self, request: F) -> RedisResult<T>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        match self {
            Transport::Node(nodes) => {
                let conn = nodes.here().await?;
                match request(Conn::Node(conn.clone())).await {
                    Err(err) if err.is_connection_refusal() => request(Conn::Node(conn)).await,
                    other => other,
                }
            }
            Transport::Cluster(conn) => request(Conn::Cluster(conn.clone())).await,
        }
    }

    /// Runs one command.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        self.on_connection(|mut conn| async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// Runs a command that only reads, once more if the connection failed under it: after
    /// Redis restarted, a thread's connection learns it is broken from its first call.
    pub async fn read<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self.query(cmd).await {
            Err(err) if lost(&err) => self.query(cmd).await,
            other => other,
        }
    }

    /// Runs a pipeline that only reads (on a cluster, every key in it must share one slot),
    /// once more if the connection failed under it (see [`Transport::read`]).
    pub async fn pipe<T: FromRedisValue>(&self, pipe: &Pipeline) -> RedisResult<T> {
        match self.pipe_once(pipe).await {
            Err(err) if lost(&err) => self.pipe_once(pipe).await,
            other => other,
        }
    }

    async fn pipe_once<T: FromRedisValue>(&self, pipe: &Pipeline) -> RedisResult<T> {
        self.on_connection(|mut conn| async move { pipe.query_async(&mut conn).await })
            .await
    }

    /// Runs a script (EVALSHA, loading it on NOSCRIPT). On a cluster it is routed by its first
    /// key; all its keys must share that slot.
    pub async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        self.on_connection(|mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await
    }
}

impl Transport {
    /// Loads `script` into Redis (after `NOSCRIPT`: Redis restarted or its scripts were
    /// flushed).
    pub async fn load(&self, script: &Script) -> RedisResult<String> {
        self.on_connection(|mut conn| async move { script.load_async(&mut conn).await })
            .await
    }

    /// Runs `cmd` on every master (one node: on it, named `None`), each answer beside the
    /// master's address. Fails as a whole only when no node could be asked.
    pub async fn on_every_master(
        &self,
        cmd: &Cmd,
    ) -> RedisResult<Vec<(Option<String>, RedisResult<Value>)>> {
        match self {
            Transport::Node(_) => Ok(vec![(None, self.query(cmd).await)]),
            Transport::Cluster(conn) => {
                let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                // Without a response policy the answers come back as a map: address → answer.
                let answers = conn.clone().route_command(cmd.clone(), routing).await?;
                let Value::Map(answers) = answers else {
                    return Ok(vec![(None, Ok(answers))]);
                };
                Ok(answers
                    .into_iter()
                    .map(|(node, answer)| {
                        let node = String::from_redis_value(node).ok();
                        (node, answer.extract_error())
                    })
                    .collect())
            }
        }
    }
}

impl Transport {
    /// The nodes a `SCAN` must walk to see every key: the one node (`None`), or each master
    /// of the cluster by host and port, as the slot map names them now.
    pub async fn scan_targets(&self) -> Result<Vec<Option<(String, u16)>>, String> {
        match self {
            Transport::Node(_) => Ok(vec![None]),
            Transport::Cluster(conn) => {
                let owners = super::slots::SlotOwners::fetch(&mut conn.clone()).await?;
                Ok(owners.masters().into_iter().map(Some).collect())
            }
        }
    }

    /// One `SCAN` step on `node` (from [`Transport::scan_targets`]): the next cursor (0 when
    /// done) and the keys matching `pattern`, as bytes (keys need not be text).
    pub async fn scan(
        &self,
        node: Option<&(String, u16)>,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> RedisResult<(u64, Vec<Vec<u8>>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        match (self, node) {
            (Transport::Cluster(conn), Some((host, port))) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                let reply = conn.clone().route_command(cmd, routing).await?;
                Ok(redis::from_redis_value(reply)?)
            }
            _ => self.read(&cmd).await,
        }
    }
}

/// A connection of either kind, so that each kind of request is written once.
enum Conn {
    Node(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Node(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipe: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Node(conn) => conn.req_packed_commands(pipe, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipe, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Node(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Whether `err` says the connection broke (rather than Redis answering with an error).
fn lost(err: &redis::RedisError) -> bool {
    err.is_io_error() || err.is_connection_dropped() || err.is_unrecoverable_error()
}
