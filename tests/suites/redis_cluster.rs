//! `RedisStore` on a Redis Cluster (`connect_cluster`): the store scenario and fan-out on the
//! test binary's shared cluster, then faults on private clusters: a node restart with two
//! watched slots on it, a slot migration under a subscribed record, and a master failover in
//! the middle of writes with subscribers on two server instances.

use crate::common;

use common::own_cluster::{self, NODE_TIMEOUT_MS, OwnCluster, shared_cluster_url};
use common::scenario::*;
use common::{Backend, Client, Keys, start, unique_prefix};
use mesh_records::store::{
    ChangeSink, KeyLayout, MemoryStore, RedisKeys, RedisStore, RemoteChange, Store, Stored,
    WriteResult,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Longest wait for a change that should come promptly.
/// How long a cluster event (a failover, a reconnect) may take.
fn event() -> Duration {
    common::patience() * 2
}

async fn store(url: &str, prefix: &str) -> RedisStore {
    RedisStore::connect_cluster(url, &[], prefix)
        .await
        .expect("connects to the test cluster")
}

fn channel_sink() -> (ChangeSink, mpsc::UnboundedReceiver<RemoteChange>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sink: ChangeSink = Arc::new(move |change| {
        let _ = tx.send(change);
    });
    (sink, rx)
}

/// Waits for an update to `want` (skipping resyncs and older versions).
async fn wait_for_value(rx: &mut mpsc::UnboundedReceiver<RemoteChange>, want: &Value) {
    let deadline = tokio::time::Instant::now() + event();
    loop {
        let change = timeout(deadline - tokio::time::Instant::now(), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no update to {want} in time"))
            .expect("sink registered");
        if let RemoteChange::Updated { value, .. } = change
            && *value == *want
        {
            return;
        }
    }
}

/// Waits until the watcher knows of `want` for `record`: an update carrying it, or a resync
/// after which a load finds it (a publish made while the channel was being subscribed again
/// is missed by design; the resync that follows the new subscription tells the watcher to
/// reload, which is what a record actor does).
async fn wait_until_known(
    rx: &mut mpsc::UnboundedReceiver<RemoteChange>,
    watcher: &RedisStore,
    record: &str,
    want: &Value,
) {
    let deadline = tokio::time::Instant::now() + event();
    loop {
        let change = timeout(deadline - tokio::time::Instant::now(), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("neither an update to {want} nor a resync in time"))
            .expect("sink registered");
        match change {
            RemoteChange::Updated { value, .. } if *value == *want => return,
            RemoteChange::Resync => {
                let loaded = watcher
                    .load(&id(record))
                    .await
                    .expect("loads after a resync");
                if loaded.value.as_deref() == Some(want) {
                    return;
                }
            }
            _ => {}
        }
    }
}

/// Writes `value` on top of whatever the store holds, retrying while the cluster heals.
async fn put(store: &RedisStore, record: &str, value: Value, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let rid = id(record);
        let attempt = async {
            let current = store.load(&rid).await?;
            store
                .write(
                    &rid,
                    current.expect(),
                    vals(vec![Arc::new(value.clone())]),
                    mesh_records::store::OpId::next(),
                    NO_HISTORY,
                    None,
                )
                .await
        };
        match attempt.await {
            Ok(WriteResult::Applied { version }) => return version,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "write did not succeed: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[actix_rt::test]
async fn behaves_like_the_memory_store() {
    let prefix = unique_prefix("cl-like-memory");
    let _keys = Keys::on_cluster(&prefix);
    let cluster = store(&shared_cluster_url(), &prefix).await;
    let expected = scenario(&MemoryStore::new()).await;
    let actual = scenario(&cluster).await;
    for (step, (want, got)) in expected.iter().zip(&actual).enumerate() {
        assert_eq!(want, got, "step {step}");
    }
    assert_eq!(expected.len(), actual.len());
}

#[actix_rt::test]
async fn every_key_of_a_record_is_in_one_slot() {
    let prefix = unique_prefix("cl-slot");
    let _keys = Keys::on_cluster(&prefix);
    let url = shared_cluster_url();
    let s = store(&url, &prefix).await;
    put(&s, "user:1", json!({"a": 1}), event()).await;
    s.delete(&id("user:1"), mesh_records::store::OpId::next(), None)
        .await
        .unwrap();
    put(&s, "user:1", json!({"a": 2}), event()).await;
    let keys = RedisKeys::with_layout(prefix.as_str(), KeyLayout::Tagged);
    let mut raw = own_cluster::connect(&url).await;
    let mut slots = Vec::new();
    for key in [
        keys.value(&id("user:1")),
        keys.version(&id("user:1")),
        keys.last_op(&id("user:1")),
        keys.channel(&id("user:1")),
    ] {
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
        slots.push(slot);
    }
    assert!(slots.iter().all(|s| *s == slots[0]), "{slots:?}");
    let version: String = redis::cmd("GET")
        .arg(keys.version(&id("user:1")))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(version, "2");
    // A prefix with a brace would become the hash tag: refused at startup.
    assert!(
        RedisStore::connect_cluster(&url, &[], "a{b}:")
            .await
            .is_err()
    );
}

#[actix_rt::test]
async fn watchers_of_records_on_every_shard_get_their_changes() {
    let prefix = unique_prefix("cl-fanout");
    let _keys = Keys::on_cluster(&prefix);
    let url = shared_cluster_url();
    let (writer, watcher) = (store(&url, &prefix).await, store(&url, &prefix).await);
    let mut sinks = Vec::new();
    for n in 0..30 {
        let (sink, rx) = channel_sink();
        let token = watcher.watch(&id(&format!("r{n}")), sink).await.unwrap();
        sinks.push((n, token, rx));
    }
    for (n, _, _) in &sinks {
        put(&writer, &format!("r{n}"), json!({"n": n}), event()).await;
    }
    for (n, _, rx) in &mut sinks {
        wait_for_value(rx, &json!({"n": *n})).await;
    }
    // Unwatching half leaves the others subscribed.
    for (n, token, _) in &sinks[..15] {
        watcher.unwatch(&id(&format!("r{n}")), *token);
    }
    for (n, _, _) in &sinks {
        put(&writer, &format!("r{n}"), json!({"again": n}), event()).await;
    }
    for (n, _, rx) in &mut sinks[15..] {
        wait_for_value(rx, &json!({"again": *n})).await;
    }
    // A restore spans slots, one script per slot group; newer records stay.
    let restored = writer
        .restore(vec![
            (id("r0"), Stored::live(Arc::new(json!("old")), 1)),
            (id("fresh-a"), Stored::live(Arc::new(json!("a")), 5)),
            (id("fresh-b"), Stored::live(Arc::new(json!("b")), 6)),
        ])
        .await
        .unwrap();
    assert_eq!(restored, 2);
    assert_eq!(writer.load(&id("fresh-b")).await.unwrap().version, 6);
}

/// Two record ids whose slots differ but are served by the same master; that master.
fn two_ids_on_one_master(cluster: &OwnCluster, keys: &RedisKeys) -> (String, String, usize) {
    let mut by_master: HashMap<usize, Vec<(String, u16)>> = HashMap::new();
    for n in 0..500 {
        let record = format!("r{n}");
        let slot = mesh_records_slot(&keys.channel(&id(&record)));
        let master = cluster.master_of(slot, 0).expect("slot served");
        let list = by_master.entry(master).or_default();
        if let Some((other, _)) = list.iter().find(|(_, s)| *s != slot) {
            return (other.clone(), record, master);
        }
        list.push((record, slot));
    }
    panic!("no two slots on one master");
}

/// The slot of a name, as the shared cluster computes it.
fn mesh_records_slot(name: &str) -> u16 {
    let url = shared_cluster_url();
    let port = url.rsplit(':').next().unwrap().to_string();
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port, "cluster", "keyslot", name])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[actix_rt::test]
async fn two_watched_slots_on_one_node_survive_its_restart() {
    let mut cluster = OwnCluster::start();
    let prefix = unique_prefix("cl-restart");
    let keys = RedisKeys::with_layout(prefix.as_str(), KeyLayout::Tagged);
    let (first, second, master) = two_ids_on_one_master(&cluster, &keys);
    let url = cluster.url(if master == 0 { 1 } else { 0 });
    let watcher = store(&url, &prefix).await;
    let (sink_a, mut rx_a) = channel_sink();
    let (sink_b, mut rx_b) = channel_sink();
    watcher.watch(&id(&first), sink_a).await.unwrap();
    watcher.watch(&id(&second), sink_b).await.unwrap();
    cluster.restart(master);
    cluster.wait_healthy(common::patience() * 6);
    let writer = store(&url, &prefix).await;
    put(&writer, &first, json!("a after restart"), event() * 2).await;
    put(&writer, &second, json!("b after restart"), event() * 2).await;
    wait_until_known(&mut rx_a, &watcher, &first, &json!("a after restart")).await;
    wait_until_known(&mut rx_b, &watcher, &second, &json!("b after restart")).await;
}

#[actix_rt::test]
async fn a_migrated_slot_keeps_its_subscribers() {
    let cluster = OwnCluster::start();
    let prefix = unique_prefix("cl-migrate");
    let keys = RedisKeys::with_layout(prefix.as_str(), KeyLayout::Tagged);
    let record = "moving";
    let slot = mesh_records_slot(&keys.channel(&id(record)));
    let source = cluster.master_of(slot, 0).unwrap();
    let target = *cluster
        .masters()
        .iter()
        .find(|&&m| m != source)
        .expect("another master");
    let url = cluster.url(source);
    let (writer, watcher) = (store(&url, &prefix).await, store(&url, &prefix).await);
    let (sink, mut rx) = channel_sink();
    watcher.watch(&id(record), sink).await.unwrap();
    put(&writer, record, json!("before"), event()).await;
    wait_for_value(&mut rx, &json!("before")).await;

    // Move the slot by hand, the way redis-cli --cluster reshard does.
    let slot_text = slot.to_string();
    let (source_id, target_id) = (cluster.node_id(source), cluster.node_id(target));
    cluster.cli(
        target,
        &["cluster", "setslot", &slot_text, "importing", &source_id],
    );
    cluster.cli(
        source,
        &["cluster", "setslot", &slot_text, "migrating", &target_id],
    );
    let listed = cluster.cli(source, &["cluster", "getkeysinslot", &slot_text, "100"]);
    let moving: Vec<&str> = listed.lines().filter(|l| !l.is_empty()).collect();
    assert!(!moving.is_empty(), "the record's keys are in the slot");
    let target_port = cluster.port(target).to_string();
    let mut migrate = vec![
        "migrate",
        "127.0.0.1",
        &target_port,
        "",
        "0",
        "5000",
        "keys",
    ];
    migrate.extend(moving.iter().copied());
    cluster.cli(source, &migrate);
    for node in [target, source] {
        cluster.cli(
            node,
            &["cluster", "setslot", &slot_text, "node", &target_id],
        );
    }
    for node in cluster.masters() {
        cluster.cli(
            node,
            &["cluster", "setslot", &slot_text, "node", &target_id],
        );
    }
    cluster.wait_healthy(common::patience() * 6);
    assert_eq!(cluster.master_of(slot, target), Some(target));

    // Writes follow MOVED; the subscriber, unsubscribed by the source, is subscribed again on
    // the target and hears them.
    for n in 0..3 {
        put(&writer, record, json!({"after": n}), event()).await;
    }
    wait_until_known(&mut rx, &watcher, record, &json!({"after": 2})).await;
}

/// A config for a server instance on a private cluster.
fn failover_config(url: &str, prefix: &str) -> String {
    format!(
        r#"
[server]
max_requests_per_second = 0

[store]
backend = "redis-cluster"
redis_url = "{url}"
key_prefix = "{prefix}"

[[records.expose]]
pattern = "^doc:"
writable = true
"#
    )
}

/// A full-mode subscriber that remembers the value it saw at each version.
struct Watcher {
    client: Client,
    last: u64,
    seen: HashMap<u64, Value>,
}

impl Watcher {
    async fn new(server: &common::TestServer, record: &str) -> Watcher {
        let mut client = server.client().await;
        let reply = client.subscribe(record, "full").await;
        assert_eq!(reply["success"], true, "{reply}");
        let last = reply["version"].as_u64().unwrap_or(0);
        Watcher {
            client,
            last,
            seen: HashMap::new(),
        }
    }

    /// Reads pushes until `version` and `value`, checking versions only increase.
    async fn follow_to(&mut self, version: u64, value: &Value) {
        let deadline = Instant::now() + event() * 2;
        while self.last < version || self.seen.get(&self.last) != Some(value) {
            assert!(Instant::now() < deadline, "never reached v{version}");
            let Some(push) = self.client.try_next_push(event()).await else {
                continue;
            };
            if push["command"] != "mesh/record-update" {
                continue;
            }
            let payload = &push["payload"];
            let v = payload["version"].as_u64().unwrap();
            assert!(v > self.last, "version went from {} to {v}", self.last);
            self.last = v;
            self.seen.insert(v, payload["full"].clone());
        }
    }
}

#[actix_web::test]
async fn a_master_failover_mid_writes_resumes_and_resyncs_every_instance() {
    let mut cluster = OwnCluster::start();
    let prefix = unique_prefix("cl-failover");
    let keys = RedisKeys::with_layout(prefix.as_str(), KeyLayout::Tagged);
    let record = "doc:f";
    let slot = mesh_records_slot(&keys.channel(&id(record)));
    let master = cluster.master_of(slot, 0).unwrap();
    let entry = (0..6).find(|&i| i != master).unwrap();
    let toml = failover_config(&cluster.url(entry), &prefix);
    let a = start(Backend::RedisCluster, &toml).await;
    let b = start(Backend::RedisCluster, &toml).await;
    let mut watchers = vec![
        Watcher::new(&a, record).await,
        Watcher::new(&b, record).await,
    ];
    let mut writer = a.client().await;
    let mut n = 0u64;
    for _ in 0..20 {
        n += 1;
        assert_eq!(
            writer.publish(record, json!({"n": n})).await,
            json!({"success": true})
        );
    }
    cluster.kill(master);
    let killed = Instant::now();
    // Writes fail (unavailable or unknown outcome) until the replica is promoted, then go on.
    let resumed = loop {
        n += 1;
        let reply = writer.publish(record, json!({"n": n})).await;
        if reply == json!({"success": true}) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < common::patience() * 6,
            "writes did not resume: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for _ in 0..20 {
        n += 1;
        assert_eq!(
            writer.publish(record, json!({"n": n})).await,
            json!({"success": true})
        );
    }
    let last = json!({"n": n});
    let stored = a.records().get_record(record).await.unwrap().unwrap();
    assert_eq!(*stored.value, last);
    // B hears of the last writes once its subscription on the promoted replica is back (on
    // the disconnect, or at the latest at the once-a-second slot check) and it has reloaded.
    let deadline = Instant::now() + event() * 2;
    loop {
        let on_b = b.records().get_record(record).await.unwrap().unwrap();
        if on_b.version == stored.version {
            assert_eq!(*on_b.value, last);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "instance B stayed at v{} (A at v{})",
            on_b.version,
            stored.version
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut shown: HashMap<u64, Value> = HashMap::new();
    for watcher in &mut watchers {
        watcher.follow_to(stored.version, &last).await;
        for (version, value) in &watcher.seen {
            let first = shown.entry(*version).or_insert_with(|| value.clone());
            assert_eq!(first, value, "version {version} named two values");
        }
    }
    eprintln!(
        "failover: writes resumed {resumed:?} after the kill (node timeout {NODE_TIMEOUT_MS} ms)"
    );
    assert!(
        resumed < Duration::from_millis(NODE_TIMEOUT_MS) * 10,
        "writes resumed only after {resumed:?}"
    );
    a.stop().await;
    b.stop().await;
}

/// `scripts/migrate-keys.sh` moves records (value, version, tombstones, deadlines) from the
/// single-node layout to the cluster's and back.
#[actix_rt::test]
async fn migrate_keys_moves_values_versions_and_tombstones_between_layouts() {
    let single = "redis://127.0.0.1:6379";
    let back = "redis://127.0.0.1:6379/1";
    let prefix = unique_prefix("migrate");
    let _keys = (
        Keys::at(single, &prefix),
        Keys::at(back, &prefix),
        Keys::on_cluster(&prefix),
    );
    let flat = RedisStore::connect(single, &prefix).await.unwrap();
    put(&flat, "doc:1", json!({"v": 1}), event()).await;
    put(&flat, "doc:1", json!({"v": 2}), event()).await;
    put(&flat, "doc:gone", json!("soon deleted"), event()).await;
    let deleted = flat
        .delete(&id("doc:gone"), mesh_records::store::OpId::next(), None)
        .await
        .unwrap();
    let mesh_records::store::DeleteResult::Deleted { version: tombstone } = deleted else {
        panic!("doc:gone was not deleted: {deleted:?}");
    };
    // A record that expires takes its deadline along, and the cluster's sweep finds it.
    let brief = put(&flat, "doc:brief", json!("expires"), event()).await;
    let life = Duration::from_secs(2);
    assert!(flat.set_expiry(&id("doc:brief"), Some(life)).await.unwrap());
    let expiring = Instant::now();

    let migrate = |args: &[&str]| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/migrate-keys.sh");
        let status = std::process::Command::new("bash")
            .arg(script)
            .args(args)
            .status()
            .expect("runs the script");
        assert!(status.success(), "migrate-keys {args:?} failed");
    };
    let cluster_url = shared_cluster_url();
    migrate(&[single, &cluster_url, &prefix]);
    let tagged = store(&cluster_url, &prefix).await;
    assert_eq!(
        tagged.load(&id("doc:1")).await.unwrap(),
        restored(json!({"v": 2}), 2)
    );
    let gone = tagged.load(&id("doc:gone")).await.unwrap();
    assert_eq!(
        (gone.value, gone.version),
        (None, tombstone),
        "the tombstone came along"
    );
    loop {
        let swept = tagged.expire_due(10).await.unwrap();
        if swept.deleted == vec![(id("doc:brief"), brief)] {
            assert!(expiring.elapsed() >= life - Duration::from_millis(5));
            break;
        }
        assert!(swept.deleted.is_empty(), "{swept:?}");
        assert!(
            expiring.elapsed() < life + event(),
            "doc:brief never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    migrate(&["--to-flat", &cluster_url, back, &prefix]);
    let flat_again = RedisStore::connect(back, &prefix).await.unwrap();
    assert_eq!(
        flat_again.load(&id("doc:1")).await.unwrap(),
        restored(json!({"v": 2}), 2)
    );
    let gone = flat_again.load(&id("doc:gone")).await.unwrap();
    assert_eq!((gone.value, gone.version), (None, tombstone));
}
