//! A `redis-server` of the test's own on a free port, for tests that break Redis: kill and
//! restart it (empty), stall it (`DEBUG SLEEP`) or freeze it (`SIGSTOP`), cut or refuse
//! connections.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private Redis without persistence; killed on drop.
pub struct OwnRedis {
    pub port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    pub fn start() -> OwnRedis {
        let port = super::free_port();
        let mut redis = OwnRedis { port, child: None };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, empty) on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "yes"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/services.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + super::patience() * 2;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` to the server: `SIGSTOP` freezes it (connections stay open but
    /// nothing answers, like a hung host), `SIGCONT` thaws it.
    pub fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("redis-server is running");
        // SAFETY: kill only sends a signal to our own child process.
        let sent = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        assert_eq!(sent, 0, "kill({signal})");
    }

    /// A connection of the test's own, for commands such as `CLIENT KILL`.
    pub async fn connect(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test's redis")
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How many connections Redis has turned away so far (`rejected_connections` in `INFO stats`:
/// for lack of room under `maxclients`).
pub async fn rejected_connections(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(conn)
        .await
        .expect("INFO stats");
    info.lines()
        .find_map(|line| line.strip_prefix("rejected_connections:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("INFO stats has rejected_connections")
}

/// Keeps new connections out (`maxclients` 1: `conn` is the one) and cuts every pub/sub
/// connection; returns once an instance has tried to subscribe again and been turned away,
/// so the outage is one the instances have met, not one that might end before they notice.
pub async fn pubsub_blackout(conn: &mut redis::aio::MultiplexedConnection) {
    let before = rejected_connections(conn).await;
    run(conn, &["CONFIG", "SET", "maxclients", "1"]).await;
    run(conn, &["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    super::eventually(
        "an instance to be turned away",
        super::patience(),
        async || rejected_connections(conn).await > before,
    )
    .await;
}

/// Lets connections in again after [`pubsub_blackout`].
pub async fn end_blackout(conn: &mut redis::aio::MultiplexedConnection) {
    run(conn, &["CONFIG", "SET", "maxclients", "10000"]).await;
}

/// Runs one command on `conn`, expecting success.
pub async fn run(conn: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> redis::Value {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async(conn).await.expect("redis command")
}
