//! `RedisStore`: records in Redis, shared by any number of instances.
//!
//! Every change is one Lua script (`lua/*.lua`), so the version check, the write and the
//! publish happen atomically in Redis and concurrent writers on any instance can never reuse
//! a version. Commands go through a [`Transport`]: one `ConnectionManager` (cheap to clone,
//! reconnects by itself) on a single node, or a cluster connection (see `cluster`); changes
//! of watched records arrive over separate pub/sub connections owned by a router task
//! (`pubsub`: one node or a cluster).
//!
//! Key names come from [`RedisKeys`]; see there for the two layouts.
//!
//! Records that expire keep their deadline beside their other keys and are found through an
//! expiry index that sweeps claim with a lease (`expiry`).
//!
//! Collections use two more parts: listing records by glob (`listing`) and the change feed,
//! which the scripts publish when [`RedisStore::set_change_feed`] is on and a `feed` task
//! receives.
//!
//! # Layout
//! - `keys`: every Redis key and channel name, in one of two [`KeyLayout`]s.
//! - `transport`: sends commands and the Lua scripts (`lua/`) to one node or a cluster.
//! - `write`: [`Store::write`] as a segment of `write.lua`; `batch`: writes to different
//!   records leave together as one call (one node).
//! - `codec`: what replies mean (values, versions, history) and the errors failures become.
//! - `cluster`: connecting to a Redis Cluster; `slots` computes hash slots and who owns them.
//! - `pubsub`: the [`ChangeSink`]s' router task (`single` node or `cluster`, sharing the
//!   `subscriptions` table and the command batching).
//! - `listing`: [`Store::list_matching`] (SCAN per master, then MGET).
//! - `feed`: [`Store::watch_all`]: the task owning the change feed's subscription.
//! - `expiry`: [`Store::set_expiry`] and [`Store::expire_due`]: the expiry index and the
//!   sweeps' claims on it.
//! - `preflight`: the checks made once at start (it keeps keys when full, it is Redis 7+);
//!   [`Unsuitable`] says why a Redis is refused.

mod batch;
mod cluster;
mod codec;
mod expiry;
mod feed;
mod keys;
mod listing;
mod preflight;
mod pubsub;
pub(crate) mod slots;
mod transport;
mod write;

pub use keys::{DEFAULT_KEY_PREFIX, EXPIRY_INDEX_SHARDS, KeyLayout, RedisKeys};
pub use preflight::Unsuitable;

use super::{
    Change, ChangeSink, Checked, DeleteResult, Expect, ExpiredBatch, FeedSink, HistoryLimits,
    NewVersion, OpId, Store, StoreError, StoreFuture, Stored, WatchToken, WriteResult, ready,
};
use crate::model::{Glob, RecordId, Version, Versioned};
use batch::Batchers;
use codec::{
    corrupt, json_text, leading_to, outcome_unknown, parse_history, parse_value, parse_version,
    stored, unavailable,
};
use feed::Feed;
use futures_util::StreamExt;
use pubsub::Router;
use redis::Client;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use transport::{NodeConns, Transport};

/// Longest wait for a TCP connection to Redis. Connections are local or nearby: a longer
/// wait only delays the error a client gets.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Longest wait for any reply, so a stalled Redis turns into `Unavailable` instead of a
/// write that hangs while its client waits.
pub(super) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Records per restore script call: large enough that a restore of many records takes few
/// round trips, small enough that one call does not block Redis for long.
const RESTORE_CHUNK: usize = 500;

/// On a cluster, how many slot groups a restore writes at once.
const RESTORE_CONCURRENCY: usize = 16;

/// The store for running several instances on one Redis node or one Redis Cluster. Cheap to
/// clone: clones share the connections and the pub/sub router, which stops when the last clone
/// is dropped.
#[derive(Clone)]
pub struct RedisStore {
    /// Commands and scripts; multiplexed, so concurrent calls never wait for each other.
    commands: Transport,
    pub(super) keys: Arc<RedisKeys>,
    router: Router,
    /// Receives the change feed for [`Store::watch_all`].
    feed: Feed,
    /// Whether this instance's scripts publish on the change feed; shared by clones.
    pub(super) feed_on: Arc<AtomicBool>,
    /// On one node, gathers writes into shared `write.lua` calls; `None` on a cluster, where
    /// each write is its own call.
    writes: Option<Arc<Batchers>>,
    /// This store's tag on the updates it publishes, so that its router drops them unread
    /// (its record actors applied them already); unique per store, so two stores in one
    /// process (tests, tools) still hear each other.
    origin: Arc<str>,
}

/// A fresh tag for a store's published updates (see `RedisStore::origin`).
fn origin_tag() -> String {
    format!("{:016x}", OpId::next().0)
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://host:port/db`) with every key and channel
    /// under `key_prefix` (Mesh's is [`super::DEFAULT_KEY_PREFIX`]).
    ///
    /// Must be called inside a tokio runtime (an actix system is one): the pub/sub router
    /// task is spawned on it and lives as long as a clone of the store does.
    ///
    /// Fails with [`StoreError::Unavailable`] when the URL is invalid or Redis cannot be
    /// reached now: a misconfigured instance should stop at startup, not on its first write.
    pub async fn connect(url: &str, key_prefix: &str) -> Result<RedisStore, StoreError> {
        let client = Client::open(url).map_err(|err| unavailable("url", &err))?;
        // One quick retry, then an error: while Redis is down a call fails within a few
        // hundred milliseconds (refused) or the timeouts above (no answer), instead of
        // queueing behind the manager's default backoff of six retries. The next call tries
        // to reconnect again.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(200));
        let first = ConnectionManager::new_with_config(client.clone(), config.clone())
            .await
            .map_err(|err| unavailable("connect", &err))?;
        let commands = Transport::Node(Arc::new(NodeConns::new(client.clone(), config, first)));
        let keys = RedisKeys::new(key_prefix);
        let feed = Feed::start(vec![client.clone()], keys.feed_channel());
        let origin = origin_tag();
        let router = Router::start(client, origin.clone()).await?;
        let feed_on = Arc::<AtomicBool>::default();
        let writes = Batchers::new(
            commands.clone(),
            (keys.feed_channel(), Arc::clone(&feed_on)),
            origin.clone(),
        );
        Ok(RedisStore {
            commands,
            keys: Arc::new(keys),
            router,
            feed,
            feed_on,
            writes: Some(Arc::new(writes)),
            origin: origin.into(),
        })
    }

    /// The key and channel names this store uses, for tools and tests that look at Redis
    /// directly.
    pub fn keys(&self) -> &RedisKeys {
        &self.keys
    }

    /// Whether every write, delete and restore through this store (and its clones) also
    /// publishes the record's id on the change feed (`<prefix>collection:record-change`),
    /// which collections on every instance follow. Off by default: it costs one more
    /// `PUBLISH` per change, delivered to every instance with a collection. Mesh instances
    /// publish it too, so a mixed fleet keeps its collections live.
    pub fn set_change_feed(&self, on: bool) {
        // Only this flag is read: no other memory depends on it.
        self.feed_on.store(on, Ordering::Relaxed);
    }

    /// The feed channel the scripts publish on, or "" (their "off").
    fn feed_arg(&self) -> String {
        if self.feed_on.load(Ordering::Relaxed) {
            self.keys.feed_channel()
        } else {
            String::new()
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.keys.prefix())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Reads value, version and last operation in one MGET (scripts change them together).
    async fn read(
        conn: &Transport,
        cmd: &redis::Cmd,
        id: &RecordId,
    ) -> Result<(Stored, Option<String>), StoreError> {
        let (value, version, op): (Option<Vec<u8>>, Option<String>, Option<String>) = conn
            .read(cmd)
            .await
            .map_err(|err| unavailable("load", &err))?;
        let stored = match (value, version) {
            // A value without a version is no record (see lua/common.lua).
            (_, None) => Stored::absent(0),
            (None, Some(version)) => Stored::absent(parse_version(id, &version)?),
            (Some(value), Some(version)) => {
                Stored::live(parse_value(id, &value)?, parse_version(id, &version)?)
            }
        };
        Ok((stored, op))
    }

    fn mget(&self, id: &RecordId) -> redis::Cmd {
        let mut cmd = redis::cmd("MGET");
        cmd.arg(self.keys.value(id))
            .arg(self.keys.version(id))
            .arg(self.keys.last_op(id));
        cmd
    }
}

impl Store for RedisStore {
    fn load_with_history(&self, id: &RecordId) -> StoreFuture<(Stored, Vec<Change>)> {
        let conn = self.commands.clone();
        let mut pipe = redis::pipe();
        // MULTI/EXEC: the value and its history at one instant.
        pipe.atomic()
            .cmd("MGET")
            .arg(self.keys.value(id))
            .arg(self.keys.version(id))
            .cmd("LRANGE")
            .arg(self.keys.history(id))
            .arg(0)
            .arg(-1);
        let id = id.clone();
        Box::pin(async move {
            type Read = ((Option<Vec<u8>>, Option<String>), Vec<Vec<u8>>);
            let ((value, version), entries): Read = conn
                .pipe(&pipe)
                .await
                .map_err(|err| unavailable("load", &err))?;
            let record = stored(&id, value, version)?;
            Ok((
                record.clone(),
                leading_to(&record, parse_history(&id, &entries)),
            ))
        })
    }

    fn load(&self, id: &RecordId) -> StoreFuture<Stored> {
        let conn = self.commands.clone();
        let cmd = self.mget(id);
        let id = id.clone();
        Box::pin(async move { Ok(Self::read(&conn, &cmd, &id).await?.0) })
    }

    fn check(&self, id: &RecordId, op: OpId) -> StoreFuture<Checked> {
        let conn = self.commands.clone();
        let cmd = self.mget(id);
        let id = id.clone();
        Box::pin(async move {
            let (current, last) = Self::read(&conn, &cmd, &id).await?;
            Ok(Checked {
                current,
                last_op: last.as_deref() == Some(op.0.to_string().as_str()),
            })
        })
    }

    fn write(
        &self,
        id: &RecordId,
        expected: Expect,
        values: Vec<NewVersion>,
        op: OpId,
        history: HistoryLimits,
        ttl: Option<Duration>,
    ) -> StoreFuture<WriteResult> {
        self.write_now(id, expected, values, op, history, ttl)
    }

    fn delete(
        &self,
        id: &RecordId,
        op: OpId,
        if_version: Option<Version>,
    ) -> StoreFuture<DeleteResult> {
        if let Some(problem) = self.keys.slot_problem(Some(id)) {
            return ready(Err(StoreError::Unavailable(problem)));
        }
        let mut invocation = self.commands.scripts().delete.prepare_invoke();
        invocation
            .key(self.keys.value(id))
            .key(self.keys.version(id))
            .key(self.keys.last_op(id))
            .key(self.keys.history(id))
            .key(self.keys.history_bytes(id))
            .key(self.keys.expires(id))
            .arg(self.keys.channel(id))
            .arg(op.0.to_string())
            .arg(if_version.map(|v| v.to_string()).unwrap_or_default())
            .arg(self.feed_arg())
            .arg(id.as_str());
        let conn = self.commands.clone();
        let id = id.clone();
        Box::pin(async move {
            let (status, version, value): (i64, String, Option<Vec<u8>>) = conn
                .invoke(&invocation)
                .await
                .map_err(|err| outcome_unknown("delete", &err))?;
            match status {
                1 => Ok(DeleteResult::Deleted {
                    version: parse_version(&id, &version)?,
                }),
                0 => Ok(DeleteResult::Absent {
                    version: parse_version(&id, &version)?,
                }),
                2 => Ok(DeleteResult::Mismatch {
                    current: stored(&id, value, Some(version))?,
                }),
                _ => Err(corrupt(&id, &format!("version is {version:?}"))),
            }
        })
    }

    fn set_expiry(&self, id: &RecordId, ttl: Option<Duration>) -> StoreFuture<bool> {
        self.set_expiry_now(id, ttl)
    }

    fn expire_due(&self, max: usize) -> StoreFuture<ExpiredBatch> {
        self.expire_due_now(max)
    }

    fn restore(&self, records: Vec<(RecordId, Stored)>) -> StoreFuture<usize> {
        // One script call touches one slot on a cluster: group the records per slot, keeping
        // their order within each group (one node needs no groups).
        let groups = match self.keys.layout() {
            KeyLayout::Flat => vec![records],
            KeyLayout::Tagged => {
                let mut by_slot: HashMap<u16, Vec<(RecordId, Stored)>> = HashMap::new();
                for (id, record) in records {
                    if let Some(problem) = self.keys.slot_problem(Some(&id)) {
                        return ready(Err(StoreError::Unavailable(problem)));
                    }
                    let slot = slots::of(&self.keys.version(&id));
                    by_slot.entry(slot).or_default().push((id, record));
                }
                by_slot.into_values().collect()
            }
        };
        // Serialize up front, so the future holds only text and the calls only send.
        let mut chunks = Vec::new();
        let feed = self.feed_arg();
        for chunk in groups.iter().flat_map(|group| group.chunks(RESTORE_CHUNK)) {
            let mut invocation = self.commands.scripts().restore.prepare_invoke();
            invocation.arg(&feed);
            for (id, record) in chunk {
                let json = match json_text(id, record.value.as_ref()) {
                    Ok(json) => json,
                    Err(e) => return ready(Err(e)),
                };
                invocation
                    .key(self.keys.value(id))
                    .key(self.keys.version(id))
                    .key(self.keys.history(id))
                    .key(self.keys.history_bytes(id))
                    .key(self.keys.expires(id))
                    .arg(record.version.to_string())
                    .arg(json)
                    .arg(self.keys.channel(id))
                    .arg(id.as_str());
            }
            chunks.push(invocation);
        }
        let conn = self.commands.clone();
        // One chunk after another on one node: a record that appears twice keeps the newest
        // version, whichever chunks the two land in. On a cluster, slot groups run side by side;
        // both copies of a record are in one group, and the script keeps the newer either way.
        let concurrency = match self.keys.layout() {
            KeyLayout::Flat => 1,
            KeyLayout::Tagged => RESTORE_CONCURRENCY,
        };
        // Each call owns its clone of the connection and its invocation.
        let calls: Vec<_> = chunks
            .into_iter()
            .map(|invocation| {
                let conn = conn.clone();
                async move {
                    conn.invoke::<usize>(&invocation)
                        .await
                        .map_err(|err| outcome_unknown("restore", &err))
                }
            })
            .collect();
        Box::pin(async move {
            let mut counts = futures_util::stream::iter(calls).buffered(concurrency);
            let mut written = 0;
            while let Some(count) = counts.next().await {
                written += count?;
            }
            Ok(written)
        })
    }

    fn watch(&self, id: &RecordId, sink: ChangeSink) -> StoreFuture<WatchToken> {
        let router = self.router.clone();
        let channel = self.keys.channel(id);
        Box::pin(async move { router.watch(channel, sink).await })
    }

    fn unwatch(&self, id: &RecordId, token: WatchToken) {
        self.router.unwatch(self.keys.channel(id), token);
    }

    fn list_matching(&self, glob: &Glob, max: usize) -> StoreFuture<Vec<(RecordId, Versioned)>> {
        let (conn, keys, glob) = (self.commands.clone(), Arc::clone(&self.keys), glob.clone());
        Box::pin(async move { listing::list(conn, &keys, &glob, max).await })
    }

    fn watch_all(&self, sink: FeedSink) -> StoreFuture<WatchToken> {
        let feed = self.feed.clone();
        Box::pin(async move { feed.watch(sink).await })
    }

    fn unwatch_all(&self, token: WatchToken) {
        self.feed.unwatch(token);
    }
}
