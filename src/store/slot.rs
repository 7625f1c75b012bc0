//! The Redis Cluster hash slot of a key or shard channel name, computed here so the cluster
//! store can group channels and records per slot without asking Redis (the `redis` crate keeps
//! its own function private).
//!
//! Redis hashes the text between the first `{` and the next `}` when that text is not empty,
//! otherwise the whole name; the slot is CRC16 (XMODEM) of that, modulo 16384.

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
}
