//! A [`RedisStore`] on a Redis Cluster: the same scripts and guarantees as on one node, with
//! every name of a record in one hash slot ([`KeyLayout::Tagged`]), publishing with `SPUBLISH`
//! and receiving through sharded subscriptions (`pubsub`).
//! The change feed is the exception: one classic channel, `PUBLISH`ed by scripts on any slot
//! and received over one plain subscription to any configured node (`feed`).
//!
//! Commands go through the `redis` crate's cluster connection: it discovers the nodes from
//! any one of them, routes each command (and each script, by its first key) to the master
//! owning the slot, and follows `MOVED`/`ASK`. It also resends a command whose connection
//! dropped; the scripts recognize a resent copy of an operation they already applied (by its
//! [`OpId`](super::OpId)) and answer as the first copy did, so a resend never turns an applied
//! write into a reported conflict.
//!
//! # What a failover can lose
//! Redis replicates asynchronously and acknowledges a write before its replica has it. When a
//! master dies, writes it acknowledged within the last moments (typically well under a
//! second; bounded by its replication backlog in flight) may be missing on the replica that
//! takes over: those records are back at an older version there. What happens next:
//! - every instance's record actors resync once their subscriptions are back; an actor that
//!   holds a newer version than the store writes it back, a million versions further on (the
//!   store-lost-data path, see `WRITE_BACK_JUMP`), so the value acknowledged to its client
//!   survives and no version shown to anyone names another value afterwards;
//! - a lost write that no running actor holds any more (no subscriber, and its actor already
//!   stopped) is gone, and its version can be given to the next write of that record;
//! - in the moments between the failover and the resync, a write through an instance that did
//!   not hold the record can take a lost version number for another value; the write-back
//!   above then moves past it, but subscribers that saw the lost value at that number keep it
//!   until the next change.
//!
//! Deletions are writes too: a lost delete brings the record back unless an actor holding the
//! deletion writes its tombstone back. On a single node without persistence, a restart loses
//! everything instead; this store is no weaker than that.

use super::feed::Feed;
use super::transport::Transport;
use super::{CONNECT_TIMEOUT, KeyLayout, RESPONSE_TIMEOUT, RedisKeys, RedisStore};
use crate::store::StoreError;
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Most resends of one command (redirections included) within [`RESPONSE_TIMEOUT`].
const RETRIES: u32 = 8;
/// First wait before a resend; the crate's default (1.28 s) would eat most of the timeout.
const MIN_RETRY_WAIT: Duration = Duration::from_millis(50);
/// Longest wait before a resend.
const MAX_RETRY_WAIT: Duration = Duration::from_millis(500);

impl RedisStore {
    /// Connects to the Redis Cluster that `url` (and `more_urls`, tried too when `url` does
    /// not answer) belong to, with every key and channel under `key_prefix` in the cluster
    /// layout (`<prefix>record:{<id>}`).
    ///
    /// Must be called inside a tokio runtime: the sharded pub/sub router task is spawned on it.
    /// Fails with [`StoreError::Unavailable`] when no node can be reached, a URL is invalid, or
    /// the prefix contains a brace (it would become the hash tag).
    pub async fn connect_cluster(
        url: &str,
        more_urls: &[String],
        key_prefix: &str,
    ) -> Result<RedisStore, StoreError> {
        let keys = RedisKeys::with_layout(key_prefix, KeyLayout::Tagged);
        if let Some(problem) = keys.slot_problem(None) {
            return Err(StoreError::Unavailable(problem));
        }
        let mut nodes = vec![url.to_string()];
        nodes.extend(more_urls.iter().cloned());
        let client = builder(&nodes)
            .build()
            .map_err(|err| unavailable("cluster url", err))?;
        let commands = connect(&client).await?;
        let (pushes, received) = mpsc::unbounded_channel();
        let subscriber = builder(&nodes)
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes)
            .build()
            .map_err(|err| unavailable("cluster url", err))?;
        let subscriber = connect(&subscriber).await?;
        let origin = super::origin_tag();
        let router = super::pubsub::start_cluster(subscriber, received, origin.clone()).await?;
        // The change feed is classic pub/sub, which every node delivers: any configured node
        // can serve it (see feed.rs).
        let seeds = nodes
            .iter()
            .map(|url| redis::Client::open(url.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| unavailable("cluster url", err))?;
        let feed = Feed::start(seeds, keys.feed_channel());
        Ok(RedisStore {
            commands: Transport::Cluster(commands),
            keys: Arc::new(keys),
            router,
            feed,
            feed_on: Arc::default(),
            writes: None,
            origin: origin.into(),
        })
    }
}

/// Timeouts and resend policy shared by the command and the subscription connections.
fn builder(nodes: &[String]) -> ClusterClientBuilder {
    ClusterClientBuilder::new(nodes.to_vec())
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        .retries(RETRIES)
        .min_retry_wait(MIN_RETRY_WAIT.as_millis() as u64)
        .max_retry_wait(MAX_RETRY_WAIT.as_millis() as u64)
}

async fn connect(client: &ClusterClient) -> Result<ClusterConnection, StoreError> {
    match tokio::time::timeout(RESPONSE_TIMEOUT * 2, client.get_async_connection()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(err)) => Err(unavailable("cluster connect", err)),
        Err(_) => Err(StoreError::Unavailable(
            "redis cluster connect: timed out".into(),
        )),
    }
}

fn unavailable(what: &str, err: redis::RedisError) -> StoreError {
    crate::metrics::metrics().redis_errors.inc();
    StoreError::Unavailable(format!("redis {what}: {err}"))
}
