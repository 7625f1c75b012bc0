//! Hash slots and who serves them: the Redis Cluster hash slot of a key or shard channel name,
//! computed here so the cluster store can group channels and records per slot without asking
//! Redis (the `redis` crate keeps its own function private); [`SlotOwners`], which master
//! serves each slot; reading sharded message pushes.
//!
//! Redis hashes the text between the first `{` and the next `}` when that text is not empty,
//! otherwise the whole name; the slot is CRC16 (XMODEM) of that, modulo 16384.

use super::RESPONSE_TIMEOUT;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{PushInfo, Value};
use std::collections::BTreeMap;

/// Number of hash slots in a Redis Cluster.
pub(crate) const SLOTS: u16 = 16384;

/// The hash slot of `name`.
pub(crate) fn of(name: &str) -> u16 {
    crc16(hashed_part(name.as_bytes())) % SLOTS
}

/// What Redis hashes: the hash tag, when there is a non-empty one, else the whole name.
fn hashed_part(name: &[u8]) -> &[u8] {
    let Some(open) = name.iter().position(|&b| b == b'{') else {
        return name;
    };
    let after = &name[open + 1..];
    match after.iter().position(|&b| b == b'}') {
        Some(close) if close > 0 => &after[..close],
        _ => name,
    }
}

/// CRC16 with polynomial 0x1021, initial value 0, no reflection (CRC-16/XMODEM).
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
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

    #[test]
    fn matches_redis_cluster_keyslot() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(of("foo"), 12182);
        assert_eq!(of("bar"), 5061);
        assert_eq!(of("{user1000}.following"), of("{user1000}.followers"));
        assert_eq!(of("foo{}{bar}"), of("foo{}{bar}"));
        assert_ne!(of("foo{}{bar}"), of("bar"));
        assert_eq!(of("foo{{bar}}zap"), of("{bar"));
        assert_eq!(of("foo{bar}{zap}"), of("bar"));
    }

    // Who serves each slot.

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
