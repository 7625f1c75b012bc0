//! The processes a run owns: one private `redis-server` and two mesh-records instances.
//!
//! Each is started with its own log in the run directory and its pid written to
//! `pids/<name>.pid`, so `scripts/chaos.sh` can kill whatever is left if the driver itself
//! dies; the driver kills them all when it ends ([`Cluster`] does it on drop too).

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The admin API token the instances are started with (loopback only, private instances).
pub const ADMIN_TOKEN: &str = "chaos-admin-token";

/// Instance names, by index.
pub const NAMES: [&str; 2] = ["a", "b"];

/// What to start and where.
pub struct ClusterSpec {
    pub dir: PathBuf,
    pub binary: PathBuf,
    pub redis_server: PathBuf,
    pub prefix: String,
}

/// The running processes and the ports they keep across restarts.
pub struct Cluster {
    spec: ClusterSpec,
    pub redis_port: u16,
    pub ports: [u16; 2],
    redis: Option<Child>,
    instances: [Option<Child>; 2],
}

impl Cluster {
    /// Picks free ports, starts Redis and both instances, and waits until they answer.
    pub fn start(spec: ClusterSpec) -> Result<Cluster, String> {
        fs::create_dir_all(spec.dir.join("pids")).map_err(|e| format!("run dir: {e}"))?;
        let mut cluster = Cluster {
            redis_port: free_port()?,
            ports: [free_port()?, free_port()?],
            spec,
            redis: None,
            instances: [None, None],
        };
        for i in 0..2 {
            let config = cluster.config(i);
            fs::write(cluster.config_path(i), config).map_err(|e| format!("config: {e}"))?;
        }
        cluster.start_redis()?;
        for i in 0..2 {
            cluster.start_instance(i)?;
        }
        Ok(cluster)
    }

    /// The Redis URL of the private server.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.redis_port)
    }

    /// The key prefix both instances use.
    pub fn prefix(&self) -> &str {
        &self.spec.prefix
    }

    fn config_path(&self, i: usize) -> PathBuf {
        self.spec.dir.join(format!("instance-{}.toml", NAMES[i]))
    }

    /// An instance's config: the Redis store under the run's prefix, `chaos:` records
    /// writable, no rate limit, the admin API on, nothing persisted.
    fn config(&self, i: usize) -> String {
        format!(
            r#"[server]
host = "127.0.0.1"
port = {port}
demo = false
max_requests_per_second = 0
max_subscriptions_per_connection = 10000

[store]
backend = "redis"
redis_url = "{url}"
key_prefix = "{prefix}"

[admin]
token = "{ADMIN_TOKEN}"

[persistence]
adapter = "sqlite"
sqlite_path = ":memory:"

[[records.expose]]
pattern = "^chaos:"
writable = true
"#,
            port = self.ports[i],
            url = self.redis_url(),
            prefix = self.spec.prefix,
        )
    }

    /// Starts Redis on its port, empty, and waits for PING.
    pub fn start_redis(&mut self) -> Result<(), String> {
        let port = self.redis_port.to_string();
        let child = spawn(
            &self.spec.dir,
            "redis",
            Command::new(&self.spec.redis_server).args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--enable-debug-command",
                "yes",
                "--dir",
                &self.spec.dir.to_string_lossy(),
            ]),
        )?;
        self.redis = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ping = self.connect_redis().and_then(|mut con| {
                redis::cmd("PING")
                    .query::<String>(&mut con)
                    .map_err(|e| e.to_string())
            });
            match ping {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(format!("redis: {e}")),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// SIGKILLs Redis (its data is gone: no persistence).
    pub fn kill_redis(&mut self) {
        if let Some(child) = self.redis.take() {
            kill(&self.spec.dir, "redis", child);
        }
    }

    /// A new connection to the private Redis, with timeouts longer than `DEBUG SLEEP 3`.
    pub fn connect_redis(&self) -> Result<redis::Connection, String> {
        let client = redis::Client::open(self.redis_url()).map_err(|e| e.to_string())?;
        let con = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .map_err(|e| e.to_string())?;
        con.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        con.set_write_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        Ok(con)
    }

    /// Starts instance `i` and waits until it accepts connections.
    pub fn start_instance(&mut self, i: usize) -> Result<(), String> {
        let mut command = Command::new(&self.spec.binary);
        command.arg("--config").arg(self.config_path(i));
        // The environment would override the file (MESH_PORT, MESH_REDIS_URL, ...).
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("MESH_")) {
            command.env_remove(key);
        }
        command.env("RUST_LOG", "info");
        let name = format!("instance-{}", NAMES[i]);
        self.instances[i] = Some(spawn(&self.spec.dir, &name, &mut command)?);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.ports[i])).is_err() {
            if Instant::now() > deadline {
                return Err(format!("{name} did not start listening"));
            }
            if let Some(Some(_)) = self.instances[i]
                .as_mut()
                .map(|c| c.try_wait().ok().flatten())
            {
                return Err(format!("{name} exited at startup; see its log"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// SIGKILLs instance `i`.
    pub fn kill_instance(&mut self, i: usize) {
        if let Some(child) = self.instances[i].take() {
            kill(&self.spec.dir, &format!("instance-{}", NAMES[i]), child);
        }
    }

    /// The pid of instance `i`, while it runs.
    pub fn instance_pid(&self, i: usize) -> Option<u32> {
        self.instances[i].as_ref().map(Child::id)
    }

    /// Instances that exited without being killed by the run (crashes), with their status;
    /// each is started again so the run can go on.
    pub fn reap_crashed(&mut self) -> Vec<String> {
        let mut crashed = Vec::new();
        for (i, name) in NAMES.iter().enumerate() {
            let status = self.instances[i]
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = status {
                self.instances[i] = None;
                crashed.push(format!("instance {name} exited by itself: {status}"));
                if let Err(e) = self.start_instance(i) {
                    crashed.push(format!("instance {name} did not restart: {e}"));
                }
            }
        }
        crashed
    }

    /// Kills everything still running.
    pub fn shutdown(&mut self) {
        for i in 0..2 {
            self.kill_instance(i);
        }
        self.kill_redis();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts `command` with output appended to `<dir>/<name>.log`, and records its pid.
fn spawn(dir: &Path, name: &str, command: &mut Command) -> Result<Child, String> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))
        .map_err(|e| format!("{name} log: {e}"))?;
    let err = log.try_clone().map_err(|e| format!("{name} log: {e}"))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    fs::write(pid_file(dir, name), child.id().to_string())
        .map_err(|e| format!("{name} pid file: {e}"))?;
    Ok(child)
}

fn kill(dir: &Path, name: &str, mut child: Child) {
    // SIGKILL on purpose: the faults are crashes, and a stop needs no grace either.
    let _ = child.kill();
    let _ = child.wait();
    let _ = fs::remove_file(pid_file(dir, name));
}

fn pid_file(dir: &Path, name: &str) -> PathBuf {
    dir.join("pids").join(format!("{name}.pid"))
}

/// A port nobody listens on right now (the OS picks it; it is free again once dropped).
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// The local ports of process `pid`'s TCP connections to `remote_port` on loopback, read
/// from /proc: these name its connections in Redis's `CLIENT LIST` (`addr=127.0.0.1:<port>`).
pub fn connections_to(pid: u32, remote_port: u16) -> Vec<u16> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: Vec<String> = fds
        .filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = hex_port(fields.get(1)?)?;
            let remote = hex_port(fields.get(2)?)?;
            let inode = fields.get(9)?;
            (remote == remote_port && inodes.iter().any(|i| i == inode)).then_some(local)
        })
        .collect()
}

fn hex_port(address: &str) -> Option<u16> {
    u16::from_str_radix(address.rsplit(':').next()?, 16).ok()
}
