//! The faults, injected one at a time at random intervals from a thread of their own (they
//! block: `DEBUG SLEEP`, process restarts), each logged with the time since the start.
//!
//! Faults never overlap, and each is over (Redis answers, both instances listen) before the
//! next gap starts: the checker's tolerance for a Redis restart relies on both instances
//! being up, holding every record, when Redis comes back empty.

use crate::procs::{Cluster, NAMES, connections_to};
use crate::rng::Rng;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The kinds of fault, selectable with `--faults`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// `CLIENT KILL TYPE pubsub`: every instance loses its pub/sub connection.
    PubsubKill,
    /// One instance loses every Redis connection and cannot reconnect for a few seconds
    /// (`maxclients` lowered to the connections that remain, then restored).
    BlockReconnect,
    /// `DEBUG SLEEP 3`: Redis stalls past the instances' 2 s response timeout.
    DebugSleep,
    /// Redis is SIGKILLed and started again, empty, on the same port.
    RedisRestart,
    /// One instance is SIGKILLed mid-stream and started again.
    InstanceKill,
}

impl FaultKind {
    /// Every kind, in the order `--faults` documents them.
    pub const ALL: [FaultKind; 5] = [
        FaultKind::PubsubKill,
        FaultKind::BlockReconnect,
        FaultKind::DebugSleep,
        FaultKind::RedisRestart,
        FaultKind::InstanceKill,
    ];

    /// The name used on the command line and in the log.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::PubsubKill => "pubsub-kill",
            FaultKind::BlockReconnect => "block-reconnect",
            FaultKind::DebugSleep => "debug-sleep",
            FaultKind::RedisRestart => "redis-restart",
            FaultKind::InstanceKill => "instance-kill",
        }
    }

    /// The kind with that name.
    pub fn from_name(name: &str) -> Option<FaultKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// When each fault began (seconds since the start) and its kind, for placing findings in time.
pub type History = Arc<std::sync::Mutex<Vec<(f64, FaultKind)>>>;

/// "t=12.3s, 0.4 s after fault 2 (debug-sleep) began", for a finding made at `at`.
pub fn context(history: &History, at: f64) -> String {
    let history = history.lock().map(|h| h.clone()).unwrap_or_default();
    match history
        .iter()
        .enumerate()
        .rev()
        .find(|(_, (t, _))| *t <= at)
    {
        Some((i, (t, kind))) => format!(
            "t={at:.1}s, {:.1} s after fault {} ({}) began",
            at - t,
            i + 1,
            kind.name()
        ),
        None => format!("t={at:.1}s, before any fault"),
    }
}

/// What the fault thread hands back when it stops: the cluster (still running) and its log.
pub struct FaultReport {
    pub cluster: Cluster,
    pub injected: u64,
    /// Instances that exited without being killed.
    pub crashes: Vec<String>,
}

/// Injects faults until `stop` is set, then returns the cluster.
pub fn run(
    mut cluster: Cluster,
    kinds: Vec<FaultKind>,
    gap: Duration,
    mut rng: Rng,
    started: Instant,
    stop: Arc<AtomicBool>,
    history: History,
) -> FaultReport {
    let mut report_crashes = Vec::new();
    let mut injected = 0;
    loop {
        let wait = gap + Duration::from_millis(rng.below(gap.as_millis() as u64 + 1));
        let until = Instant::now() + wait;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
            for crash in cluster.reap_crashed() {
                log(started, &format!("CRASH {crash}"));
                report_crashes.push(crash);
            }
        }
        if stop.load(Ordering::SeqCst) || kinds.is_empty() {
            break;
        }
        let kind = kinds[rng.below(kinds.len() as u64) as usize];
        injected += 1;
        if let Ok(mut history) = history.lock() {
            history.push((started.elapsed().as_secs_f64(), kind));
        }
        let what = inject(&mut cluster, kind, &mut rng);
        log(
            started,
            &format!("fault {injected} {}: {what}", kind.name()),
        );
        if let Err(e) = settle(&mut cluster) {
            log(started, &format!("after fault {injected}: {e}"));
        }
    }
    for crash in cluster.reap_crashed() {
        log(started, &format!("CRASH {crash}"));
        report_crashes.push(crash);
    }
    FaultReport {
        cluster,
        injected,
        crashes: report_crashes,
    }
}

/// One timestamped line on stdout.
pub fn log(started: Instant, line: &str) {
    println!("chaos: [{:6.1}s] {line}", started.elapsed().as_secs_f64());
}

/// Performs one fault; returns what was done, for the log.
fn inject(cluster: &mut Cluster, kind: FaultKind, rng: &mut Rng) -> String {
    let result = match kind {
        FaultKind::PubsubKill => cluster.connect_redis().and_then(|mut con| {
            redis::cmd("CLIENT")
                .arg(&["KILL", "TYPE", "pubsub"])
                .query::<i64>(&mut con)
                .map(|n| format!("killed {n} pub/sub connections"))
                .map_err(|e| e.to_string())
        }),
        FaultKind::BlockReconnect => block_reconnect(cluster, rng.below(2) as usize),
        FaultKind::DebugSleep => cluster.connect_redis().and_then(|mut con| {
            redis::cmd("DEBUG")
                .arg(&["SLEEP", "3"])
                .query::<String>(&mut con)
                .map(|_| "Redis stalled for 3 s".to_owned())
                .map_err(|e| e.to_string())
        }),
        FaultKind::RedisRestart => {
            cluster.kill_redis();
            std::thread::sleep(Duration::from_millis(500 + rng.below(1500)));
            cluster
                .start_redis()
                .map(|()| "Redis killed and restarted empty".to_owned())
        }
        FaultKind::InstanceKill => {
            let i = rng.below(2) as usize;
            cluster.kill_instance(i);
            std::thread::sleep(Duration::from_millis(500 + rng.below(1500)));
            cluster
                .start_instance(i)
                .map(|()| format!("instance {} killed (SIGKILL) and restarted", NAMES[i]))
        }
    };
    result.unwrap_or_else(|e| format!("FAILED to inject: {e}"))
}

/// Cuts instance `i` off Redis and keeps it off for 3 to 5 s.
fn block_reconnect(cluster: &mut Cluster, i: usize) -> Result<String, String> {
    let pid = cluster.instance_pid(i).ok_or("instance not running")?;
    let ports = connections_to(pid, cluster.redis_port);
    let mut con = cluster.connect_redis()?;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut con)
        .map_err(|e| e.to_string())?;
    let total = list.lines().count();
    let old: Vec<String> = redis::cmd("CONFIG")
        .arg(&["GET", "maxclients"])
        .query(&mut con)
        .map_err(|e| e.to_string())?;
    let old = old.get(1).cloned().unwrap_or_else(|| "10000".into());
    // Redis refuses a new client once `maxclients` are connected: after the kills, the
    // clients that remain fill every slot.
    let keep = total.saturating_sub(ports.len()).max(1);
    redis::cmd("CONFIG")
        .arg(&["SET", "maxclients", &keep.to_string()])
        .query::<()>(&mut con)
        .map_err(|e| e.to_string())?;
    let mut killed = 0;
    for port in &ports {
        let addr = format!("127.0.0.1:{port}");
        if redis::cmd("CLIENT")
            .arg(&["KILL", "ADDR", &addr])
            .query::<()>(&mut con)
            .is_ok()
        {
            killed += 1;
        }
    }
    let hold = Duration::from_millis(3000 + (u64::from(pid) % 2000));
    std::thread::sleep(hold);
    let restored = redis::cmd("CONFIG")
        .arg(&["SET", "maxclients", &old])
        .query::<()>(&mut con)
        .map_err(|e| e.to_string());
    restored.map(|()| {
        format!(
            "instance {}: killed {killed} of its {} Redis connections, no reconnect for {:.1} s",
            NAMES[i],
            ports.len(),
            hold.as_secs_f64()
        )
    })
}

/// Waits until Redis answers and both instances listen (each fault ends with all up).
fn settle(cluster: &mut Cluster) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let redis_up = cluster
            .connect_redis()
            .and_then(|mut con| {
                redis::cmd("PING")
                    .query::<String>(&mut con)
                    .map_err(|e| e.to_string())
            })
            .is_ok();
        let instances_up = cluster
            .ports
            .iter()
            .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok());
        if redis_up && instances_up {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not settled after 20 s (redis up: {redis_up}, instances up: {instances_up})"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
