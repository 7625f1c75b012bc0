//! A [`RedisStore`] on a Redis Cluster: the same scripts and guarantees as on one node, with
//! every name of a record in one hash slot ([`KeyLayout::Tagged`]), publishing with `SPUBLISH`
//! and receiving through sharded subscriptions ([`cluster_router`](super::cluster_router)).
//! The change feed is the exception: one classic channel, `PUBLISH`ed by scripts on any slot
//! and received over one plain subscription to any configured node ([`feed`](super::feed)).
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
use super::redis::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
use super::transport::Transport;
use super::{KeyLayout, RedisKeys, RedisStore, StoreError};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{PushInfo, Value};
use std::collections::BTreeMap;
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
        let router = super::cluster_router::start(subscriber, received).await?;
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

/// Which master serves each slot, as one node answered `CLUSTER SLOTS`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct SlotOwners {
    /// First slot of each range → (last slot, master as `host:port`).
    ranges: BTreeMap<u16, (u16, String)>,
}

impl SlotOwners {
    /// Asks any node.
    pub async fn fetch(conn: &mut ClusterConnection) -> Result<SlotOwners, String> {
        let request = conn.route_command(
            redis::cmd("CLUSTER").arg("SLOTS").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        );
        match tokio::time::timeout(RESPONSE_TIMEOUT, request).await {
            Ok(Ok(reply)) => SlotOwners::parse(&reply),
            Ok(Err(err)) => Err(format!("redis cluster slots: {err}")),
            Err(_) => Err("redis cluster slots: timed out".into()),
        }
    }

    /// Parses `[[start, end, [host, port, id, ...], replicas...], ...]`.
    fn parse(reply: &Value) -> Result<SlotOwners, String> {
        let Value::Array(entries) = reply else {
            return Err(format!("unexpected CLUSTER SLOTS reply: {reply:?}"));
        };
        let mut owners = SlotOwners::default();
        for entry in entries {
            let parsed = match entry {
                Value::Array(fields) if fields.len() >= 3 => {
                    match (&fields[0], &fields[1], &fields[2]) {
                        (Value::Int(start), Value::Int(end), Value::Array(master))
                            if master.len() >= 2 =>
                        {
                            text(&master[0]).zip(text(&master[1])).map(|(host, port)| {
                                (*start as u16, *end as u16, format!("{host}:{port}"))
                            })
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            let (start, end, master) =
                parsed.ok_or_else(|| format!("unexpected CLUSTER SLOTS entry: {entry:?}"))?;
            owners.ranges.insert(start, (end, master));
        }
        Ok(owners)
    }

    /// Every master serving some slot, once each, as host and port.
    pub fn masters(&self) -> Vec<(String, u16)> {
        let mut masters: Vec<(String, u16)> = self
            .ranges
            .values()
            .filter_map(|(_, master)| {
                let (host, port) = master.rsplit_once(':')?;
                Some((host.to_string(), port.parse().ok()?))
            })
            .collect();
        masters.sort();
        masters.dedup();
        masters
    }

    /// The master serving `slot`, if the cluster has one.
    pub fn owner(&self, slot: u16) -> Option<&str> {
        self.ranges
            .range(..=slot)
            .next_back()
            .filter(|(_, (end, _))| slot <= *end)
            .map(|(_, (_, master))| master.as_str())
    }
}

/// A reply field as text (hosts are strings, ports integers).
fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The channel and payload of a sharded message push, if `push` is one.
pub(super) fn push_text(push: &PushInfo, index: usize) -> Option<&[u8]> {
    match push.data.get(index)? {
        Value::BulkString(bytes) => Some(bytes),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn slot_owners_from_cluster_slots() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7000), bulk("id1")]),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7003), bulk("id4")]),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7001), bulk("id2")]),
            ]),
        ]);
        let owners = SlotOwners::parse(&reply).unwrap();
        assert_eq!(owners.owner(0), Some("127.0.0.1:7000"));
        assert_eq!(owners.owner(5460), Some("127.0.0.1:7000"));
        assert_eq!(owners.owner(5461), Some("127.0.0.1:7001"));
        assert_eq!(owners.owner(16383), Some("127.0.0.1:7001"));
        assert_eq!(
            owners.masters(),
            [
                ("127.0.0.1".to_string(), 7000),
                ("127.0.0.1".to_string(), 7001)
            ]
        );
        assert!(SlotOwners::parse(&Value::Int(1)).is_err());
        let gap = Value::Array(vec![Value::Array(vec![
            Value::Int(10),
            Value::Int(20),
            Value::Array(vec![bulk("h"), Value::Int(1)]),
        ])]);
        let owners = SlotOwners::parse(&gap).unwrap();
        assert_eq!(owners.owner(5), None);
        assert_eq!(owners.owner(21), None);
    }
}
