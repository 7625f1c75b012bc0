//! A Redis Cluster of the test's own: 3 masters and 3 replicas on free ports, in a temporary
//! directory, with a short node timeout so failovers take a second or two.
//!
//! [`OwnCluster::start`] makes one a test may break (kill, restart, migrate slots); it is
//! stopped and its files removed on drop. [`shared_cluster_url`] gives the test binary one
//! cluster for the tests that only need a working cluster (or `MESH_TEST_REDIS_CLUSTER_URL`).
//! Every cluster also has a watchdog shell that kills its nodes and removes its directory
//! when the test process is gone, so nothing is left behind even when drop never runs (the
//! shared cluster lives in a static; a test binary can abort).

use redis::cluster_async::ClusterConnection;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `cluster-node-timeout`: how long a master may be unreachable before its replica is
/// promoted.
pub const NODE_TIMEOUT_MS: u64 = 1500;

/// One node: its client port, its cluster bus port, its process.
struct Node {
    port: u16,
    bus: u16,
    child: Option<Child>,
}

pub struct OwnCluster {
    dir: PathBuf,
    nodes: Vec<Node>,
    watchdog: Option<Child>,
}

/// The cluster the test binary shares (started on first use), or the one named by
/// `MESH_TEST_REDIS_CLUSTER_URL`.
pub fn shared_cluster_url() -> String {
    if let Ok(url) = std::env::var("MESH_TEST_REDIS_CLUSTER_URL") {
        return url;
    }
    static SHARED: OnceLock<String> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let cluster = OwnCluster::start();
            let url = cluster.url(0);
            // Never dropped: the watchdog cleans up when the process ends.
            std::mem::forget(cluster);
            url
        })
        .clone()
}

impl OwnCluster {
    /// Starts six nodes and joins them: three masters, each with one replica. A port taken
    /// by someone else between choosing and binding it fails an attempt: up to three.
    pub fn start() -> OwnCluster {
        let mut failure = String::new();
        for _ in 0..3 {
            match Self::try_start() {
                Ok(cluster) => return cluster,
                Err(why) => failure = why,
            }
        }
        panic!("could not start a test cluster: {failure}");
    }

    fn try_start() -> Result<OwnCluster, String> {
        let dir = std::env::temp_dir().join(format!(
            "mesh-records-cluster-{}-{}",
            std::process::id(),
            super::unique_prefix("c").replace(':', "-")
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut cluster = OwnCluster {
            dir,
            nodes: Vec::new(),
            watchdog: None,
        };
        // Twelve distinct ports, outside the ephemeral range (see `free_port`): a node killed
        // and restarted gets its port back.
        let ports: Vec<u16> = (0..12).map(|_| super::free_port()).collect();
        for pair in ports.chunks(2) {
            cluster.nodes.push(Node {
                port: pair[0],
                bus: pair[1],
                child: None,
            });
        }
        for index in 0..6 {
            cluster.spawn(index);
        }
        cluster.start_watchdog();
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli is installed");
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        cluster.wait_healthy(super::patience() * 6);
        Ok(cluster)
    }

    /// The URL of node `index`.
    pub fn url(&self, index: usize) -> String {
        format!("redis://127.0.0.1:{}", self.nodes[index].port)
    }

    pub fn port(&self, index: usize) -> u16 {
        self.nodes[index].port
    }

    /// The index of the node listening on `port`.
    pub fn index_of(&self, port: u16) -> usize {
        self.nodes.iter().position(|n| n.port == port).unwrap()
    }

    fn spawn(&mut self, index: usize) {
        let node = &self.nodes[index];
        let conf = format!("nodes-{}.conf", node.port);
        let child = Command::new("redis-server")
            .args(["--port", &node.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &node.bus.to_string(),
            ])
            .args(["--cluster-config-file", &conf])
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", self.dir.to_str().unwrap()])
            .args(["--enable-debug-command", "yes"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/services.sh installs it)");
        let port = node.port;
        self.nodes[index].child = Some(child);
        let deadline = Instant::now() + super::patience() * 2;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A shell that outlives nothing: once this process is gone it kills the nodes and
    /// removes the directory.
    fn start_watchdog(&mut self) {
        if let Some(mut old) = self.watchdog.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
        let pids: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(|c| c.id().to_string()))
            .collect();
        let script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done; kill -9 {} 2>/dev/null; rm -rf '{}'",
            std::process::id(),
            pids.join(" "),
            self.dir.display()
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh");
        self.watchdog = Some(child);
    }

    /// Kills node `index` (SIGKILL: no goodbye to the cluster).
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `index` again with its cluster config (and no data).
    pub fn restart(&mut self, index: usize) {
        self.kill(index);
        self.spawn(index);
        self.start_watchdog();
    }

    /// One line per node of `CLUSTER INFO`/`ROLE` facts, from each live node.
    fn node_info(&self, index: usize, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.nodes[index].port.to_string()])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until every live node says the cluster is ok and every live replica is in sync.
    pub fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let healthy = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].child.is_some())
                .all(|i| {
                    let ok = self
                        .node_info(i, &["cluster", "info"])
                        .is_some_and(|info| info.contains("cluster_state:ok"));
                    let synced = self
                        .node_info(i, &["info", "replication"])
                        .is_some_and(|r| {
                            r.contains("role:master") || r.contains("master_link_status:up")
                        });
                    ok && synced
                });
            if healthy {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the test cluster did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The index of the master serving `slot`, as node `asking` sees it.
    pub fn master_of(&self, slot: u16, asking: usize) -> Option<usize> {
        let out = self.node_info(asking, &["cluster", "nodes"])?;
        for line in out.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let port: u16 = fields[1].split(['@', ':']).nth(1)?.parse().ok()?;
            for range in &fields[8..] {
                let (start, end) = match range.split_once('-') {
                    Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                    None => match range.parse::<u16>() {
                        Ok(one) => (one, one),
                        Err(_) => continue,
                    },
                };
                if (start..=end).contains(&slot) {
                    return Some(self.index_of(port));
                }
            }
        }
        None
    }

    /// The node id of node `index`.
    pub fn node_id(&self, index: usize) -> String {
        self.node_info(index, &["cluster", "myid"])
            .expect("node answers")
            .trim()
            .to_string()
    }

    /// Runs a command on node `index` through redis-cli; its output.
    pub fn cli(&self, index: usize, args: &[&str]) -> String {
        self.node_info(index, args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} on node {index} failed"))
    }

    /// The indexes of the masters that have a live, in-sync replica.
    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].child.is_some())
            .filter(|&i| {
                self.node_info(i, &["info", "replication"])
                    .is_some_and(|r| r.contains("role:master"))
            })
            .collect()
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A cluster connection of the test's own.
pub async fn connect(url: &str) -> ClusterConnection {
    redis::cluster::ClusterClient::new(vec![url])
        .unwrap()
        .get_async_connection()
        .await
        .expect("connect to the test cluster")
}

/// Deletes every key under `prefix` (taken literally, glob characters and all) on every
/// master of the cluster at `url`.
pub async fn delete_prefix(url: &str, prefix: &str) {
    let mut conn = connect(url).await;
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg(format!("{}*", mesh_records::model::Glob::escape(prefix)))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    for key in keys {
        let _: Result<(), _> = redis::cmd("DEL").arg(key).query_async(&mut conn).await;
    }
}
