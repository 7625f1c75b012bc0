//! What the server checks once, at start, about the Redis a [`RedisStore`] uses: that it keeps
//! every key when full (`maxmemory-policy noeviction`) and that it runs flagged scripts (Redis
//! 7 or later; see `transport.rs`). On a cluster each master is asked.
//!
//! An evicting policy breaks what the records promise without any error: Redis removes a
//! record's value key or version key silently, and the record then reads as deleted (value
//! gone, tombstone left) or as lost (version gone). A Redis that answers neither question
//! (managed services often rename `CONFIG`) is used with a warning: the check is a guard
//! rail, not a requirement.

use super::RedisStore;
use redis::{RedisResult, Value};

/// Why the server must not run on this Redis.
#[derive(Debug, thiserror::Error)]
pub enum Unsuitable {
    /// Redis evicts keys when full.
    #[error("{}", evicting_message(policy, node.as_deref()))]
    EvictingPolicy {
        /// The `maxmemory-policy`.
        policy: String,
        /// The master that has it, on a cluster.
        node: Option<String>,
    },
    /// Redis is older than 7 and cannot run the scripts.
    #[error(
        "Redis {version}{} is too old: mesh-records needs Redis 7 or later (its scripts carry \
         flags so that Redis refuses a write whole when it is out of memory)",
        on(node.as_deref())
    )]
    TooOld {
        /// `redis_version` as `INFO server` reports it.
        version: String,
        /// The master that runs it, on a cluster.
        node: Option<String>,
    },
}

impl RedisStore {
    /// Checks every master's `maxmemory-policy` and version.
    ///
    /// Fails with [`Unsuitable::TooOld`] below Redis 7, and with
    /// [`Unsuitable::EvictingPolicy`] on an evicting policy unless `allow_evicting` (then it
    /// logs a warning). A question Redis does not answer is logged as a warning and skipped.
    pub async fn check_suitable(&self, allow_evicting: bool) -> Result<(), Unsuitable> {
        self.check_version().await?;
        self.check_policy(allow_evicting).await
    }

    /// Redis 7 or later on every master (the scripts' shebangs need it).
    async fn check_version(&self) -> Result<(), Unsuitable> {
        let info = redis::cmd("INFO").arg("server").clone();
        for (node, answer) in self.ask_every_master(&info).await {
            let version = match answer.map(|reply| redis_version(&reply)) {
                Ok(Some(version)) => version,
                Ok(None) => {
                    log::warn!("no redis_version in INFO server{}", on(node.as_deref()));
                    continue;
                }
                Err(err) => {
                    log::warn!(
                        "could not read the Redis version{}: {err}",
                        on(node.as_deref())
                    );
                    continue;
                }
            };
            match major(&version) {
                Some(major) if major >= 7 => {}
                Some(_) => return Err(Unsuitable::TooOld { version, node }),
                None => log::warn!(
                    "unreadable Redis version {version:?}{}",
                    on(node.as_deref())
                ),
            }
        }
        Ok(())
    }

    /// `noeviction` on every master, or a warning when evicting is allowed.
    async fn check_policy(&self, allow_evicting: bool) -> Result<(), Unsuitable> {
        let policy = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .clone();
        for (node, answer) in self.ask_every_master(&policy).await {
            match answer.map(|reply| config_value(&reply)) {
                Ok(Some(policy)) if policy == "noeviction" => {}
                Ok(Some(policy)) if allow_evicting => log::warn!(
                    "[store] allow_evicting_policy = true: Redis{} has maxmemory-policy {policy}; \
                     when full it evicts keys, and an evicted record reads as deleted \
                     (docs/deployment.md)",
                    on(node.as_deref())
                ),
                Ok(Some(policy)) => return Err(Unsuitable::EvictingPolicy { policy, node }),
                Ok(None) | Err(_) => log::warn!(
                    "could not read maxmemory-policy of Redis{} (CONFIG GET refused or renamed); \
                     make sure it is noeviction: an evicted record reads as deleted",
                    on(node.as_deref())
                ),
            }
        }
        Ok(())
    }

    /// The answer of every master to `cmd`; a failure to ask at all is one failed answer.
    async fn ask_every_master(
        &self,
        cmd: &redis::Cmd,
    ) -> Vec<(Option<String>, RedisResult<Value>)> {
        match self.commands.on_every_master(cmd).await {
            Ok(answers) => answers,
            Err(err) => vec![(None, Err(err))],
        }
    }
}

/// What the refusal of an evicting policy says, naming the setting that overrides it.
fn evicting_message(policy: &str, node: Option<&str>) -> String {
    let mut message = format!(
        "Redis{} has maxmemory-policy {policy}: when full it evicts keys, and an evicted record \
         value reads as a deletion (subscribers get mesh/record-deleted while a database row \
         stays), an evicted version key as lost data.",
        on(node)
    );
    if policy.starts_with("volatile-") {
        message.push_str(
            " volatile-* policies evict only keys with a time to live: record values have none, \
             but the last-operation keys do (they tell whether a write whose answer was lost \
             was applied), and other applications' keys may; once none are left Redis refuses \
             writes as under noeviction.",
        );
    }
    message.push_str(
        " Set maxmemory-policy noeviction (a full Redis then refuses writes, clients get \
         EUNAVAILABLE and nothing is half-written), or set [store] allow_evicting_policy = true \
         to run anyway.",
    );
    message
}

/// " on <node>" for a cluster master, nothing on one node.
fn on(node: Option<&str>) -> String {
    node.map(|node| format!(" on {node}")).unwrap_or_default()
}

/// The value in a `CONFIG GET <one name>` answer: `[name, value]` (RESP2) or `{name: value}`
/// (RESP3); `None` when Redis does not know the name.
fn config_value(reply: &Value) -> Option<String> {
    let value = match reply {
        Value::Array(items) => items.get(1)?,
        Value::Map(pairs) => &pairs.first()?.1,
        _ => return None,
    };
    redis::from_redis_value_ref::<String>(value).ok()
}

/// `redis_version` from an `INFO server` answer.
fn redis_version(reply: &Value) -> Option<String> {
    let text: String = redis::from_redis_value_ref(reply).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(|version| version.trim().to_string())
}

/// The major number of a version such as "7.0.15".
fn major(version: &str) -> Option<u32> {
    version.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn reads_config_get_in_both_protocols() {
        let resp2 = Value::Array(vec![bulk("maxmemory-policy"), bulk("allkeys-lru")]);
        assert_eq!(config_value(&resp2).as_deref(), Some("allkeys-lru"));
        let resp3 = Value::Map(vec![(bulk("maxmemory-policy"), bulk("noeviction"))]);
        assert_eq!(config_value(&resp3).as_deref(), Some("noeviction"));
        assert_eq!(config_value(&Value::Array(vec![])), None);
    }

    #[test]
    fn reads_the_version_from_info() {
        let info = bulk("# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n");
        assert_eq!(redis_version(&info).as_deref(), Some("7.0.15"));
        assert_eq!(major("7.0.15"), Some(7));
        assert_eq!(major("6.2.14"), Some(6));
        assert_eq!(major("unknown"), None);
    }

    #[test]
    fn the_refusal_names_the_policy_and_the_way_out() {
        let allkeys = Unsuitable::EvictingPolicy {
            policy: "allkeys-lru".into(),
            node: None,
        }
        .to_string();
        assert!(
            allkeys.contains("maxmemory-policy allkeys-lru"),
            "{allkeys}"
        );
        assert!(
            allkeys.contains("allow_evicting_policy = true"),
            "{allkeys}"
        );
        assert!(!allkeys.contains("volatile-*"), "{allkeys}");
        let volatile = Unsuitable::EvictingPolicy {
            policy: "volatile-ttl".into(),
            node: Some("10.0.0.6:6379".into()),
        }
        .to_string();
        assert!(volatile.contains("Redis on 10.0.0.6:6379"), "{volatile}");
        assert!(volatile.contains("volatile-* policies"), "{volatile}");
    }
}
