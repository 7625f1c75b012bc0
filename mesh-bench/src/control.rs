//! Worker threads and the phases the main thread walks them through.

use crate::conn::{self, Conn};
use crate::stats::{Counters, Ctr, Latency, LocalLatency, RecentLatency, new_latency};
use crate::wire::Payload;
use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

/// Where a run is. Only the main thread moves it, always forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    /// Connecting and subscribing.
    Setup = 0,
    /// Load runs but is not measured.
    Warmup = 1,
    /// Load runs and latencies are recorded.
    Measuring = 2,
    /// Load may still run; nothing more is recorded.
    Draining = 3,
    /// Every connection task is ended.
    Done = 4,
}

/// Shared by the main thread and every worker.
pub struct Control {
    /// Mirror of the watch value for the hot path (a load instead of a lock).
    phase: AtomicU8,
    changes: watch::Sender<Phase>,
    /// The zero of `sent_us` stamps; `Instant` is the same clock on every thread.
    start: Instant,
    /// The first error a connection met, for the report.
    first_error: Mutex<Option<String>>,
}

impl Control {
    /// A run in `Phase::Setup`; its clock starts now.
    pub fn new() -> Arc<Control> {
        Arc::new(Control {
            phase: AtomicU8::new(Phase::Setup as u8),
            changes: watch::Sender::new(Phase::Setup),
            start: Instant::now(),
            first_error: Mutex::new(None),
        })
    }

    /// Moves the run to `phase` and wakes the tasks waiting for it.
    pub fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
        self.changes.send_replace(phase);
    }

    /// The current phase, read without a lock.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Setup,
            1 => Phase::Warmup,
            2 => Phase::Measuring,
            3 => Phase::Draining,
            _ => Phase::Done,
        }
    }

    /// Whether latencies are recorded now.
    pub fn measuring(&self) -> bool {
        self.phase() == Phase::Measuring
    }

    /// Waits until the run has reached `phase` (or a later one).
    pub async fn reached(&self, phase: Phase) {
        let mut changes = self.changes.subscribe();
        // The sender lives in `self`, so waiting cannot fail for a closed channel.
        let _ = changes.wait_for(|&now| now >= phase).await;
    }

    /// Microseconds since the tool started: the `sent_us` clock.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// The moment `us` microseconds after the tool started (the inverse of [`Control::now_us`]),
    /// for timers that wake at a stamped due time.
    pub fn instant_at(&self, us: u64) -> Instant {
        self.start + Duration::from_micros(us)
    }

    /// Keeps the first error for the report (later ones only count).
    pub fn note_error(&self, error: String) {
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(error);
        }
    }

    /// The first error noted, if any.
    pub fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|first| first.clone())
    }
}

/// What the connection tasks of one worker thread share.
#[derive(Clone)]
pub struct Worker {
    pub index: usize,
    pub ctl: Arc<Control>,
    pub counters: Arc<Counters>,
    pub latency: LocalLatency,
    /// This second's latencies, emptied by the main thread at each progress tick.
    pub recent: Arc<RecentLatency>,
    client: awc::Client,
    /// Bounds the handshakes in progress, so thousands of connections open smoothly.
    connect_slots: Rc<Semaphore>,
    tasks: Rc<RefCell<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Worker {
    /// Runs a connection task on this thread until it ends or the run is done.
    pub fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        self.tasks.borrow_mut().push(actix_rt::spawn(task));
    }

    /// Opens a connection, counting the outcome.
    pub async fn open(&self, url: &str) -> Option<Conn> {
        let _slot = self.connect_slots.acquire().await.ok()?;
        self.counted(Conn::open(&self.client, url).await)
    }

    /// Opens a connection outside the setup counts and the handshake slots (the hostile
    /// clients: their failures are what they measure, not a failed setup).
    pub async fn dial(&self, url: &str) -> Result<Conn, String> {
        Conn::open(&self.client, url).await
    }

    /// Opens a connection and subscribes; returns it with the subscribed version.
    pub async fn open_subscribed(
        &self,
        url: &str,
        record: &str,
        mode: crate::wire::Mode,
    ) -> Option<(Conn, u64)> {
        self.open_ready(url, async |conn| conn.subscribe(record, mode).await)
            .await
    }

    /// Opens a connection and sets it up with `setup` (its subscriptions), holding a
    /// handshake slot throughout; counts it ready once `setup` succeeds, failed otherwise.
    /// Returns it with what `setup` returned.
    pub async fn open_ready<T>(
        &self,
        url: &str,
        setup: impl AsyncFnOnce(&mut Conn) -> Result<T, String>,
    ) -> Option<(Conn, T)> {
        let _slot = self.connect_slots.acquire().await.ok()?;
        let mut conn = self.counted(Conn::open(&self.client, url).await)?;
        match setup(&mut conn).await {
            Ok(done) => {
                self.counters.bump(Ctr::Ready);
                Some((conn, done))
            }
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    fn counted(&self, opened: Result<Conn, String>) -> Option<Conn> {
        match opened {
            Ok(conn) => {
                self.counters.bump(Ctr::Connected);
                Some(conn)
            }
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    fn fail(&self, error: String) {
        self.counters.bump(Ctr::ConnectFailed);
        self.ctl.note_error(error);
    }

    /// Counts a publish reply; keeps the first error's text for the report.
    pub fn count_ack(&self, payload: Option<&Payload>) {
        match payload {
            Some(p) if p.succeeded() => self.counters.bump(Ctr::WritesAcked),
            other => {
                self.counters.bump(Ctr::WriteErrors);
                let text = other.map_or("unreadable reply".into(), |p| p.describe());
                self.ctl.note_error(format!("publish: {text}"));
            }
        }
    }

    /// Answers the server's `ping` push, counting it.
    pub async fn pong(&self, conn: &mut Conn) -> Result<(), String> {
        self.counters.bump(Ctr::Pings);
        conn.pong().await
    }

    /// Records `now - sent_us` while measuring; returns what it recorded (µs).
    pub fn record_latency(&self, sent_us: u64) -> Option<u64> {
        if !self.ctl.measuring() {
            return None;
        }
        let us = self.ctl.now_us().saturating_sub(sent_us).max(1);
        self.latency.borrow_mut().saturating_record(us);
        self.recent.record(us);
        Some(us)
    }
}

/// The worker threads of a run.
pub struct Workers {
    pub counters: Vec<Arc<Counters>>,
    /// Each thread's latencies since the last progress tick.
    pub recent: Vec<Arc<RecentLatency>>,
    handles: Vec<JoinHandle<Latency>>,
}

/// Starts `threads` threads, each on its own actix-rt System (awc connections are tied to
/// one thread). `body` runs once per thread and spawns that thread's connection tasks;
/// they are ended when the run reaches `Phase::Done`.
pub fn spawn_workers<F, Fut>(
    threads: usize,
    connect_concurrency: usize,
    ctl: &Arc<Control>,
    body: F,
) -> Workers
where
    F: Fn(Worker) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let body = Arc::new(body);
    let counters: Vec<Arc<Counters>> = (0..threads).map(|_| Arc::default()).collect();
    let recent: Vec<Arc<RecentLatency>> = (0..threads).map(|_| Arc::default()).collect();
    let slots = connect_concurrency.div_ceil(threads);
    let handles = (0..threads)
        .map(|index| {
            let (body, ctl) = (body.clone(), ctl.clone());
            let (counters, recent) = (counters[index].clone(), recent[index].clone());
            std::thread::Builder::new()
                .name(format!("bench-{index}"))
                .spawn(move || {
                    let thread = run_thread(index, ctl, counters, recent, slots, body);
                    actix_rt::System::new().block_on(thread)
                })
                // Setup: without its threads the tool cannot run at all.
                .expect("spawn a worker thread")
        })
        .collect();
    Workers {
        counters,
        recent,
        handles,
    }
}

async fn run_thread<F, Fut>(
    index: usize,
    ctl: Arc<Control>,
    counters: Arc<Counters>,
    recent: Arc<RecentLatency>,
    slots: usize,
    body: Arc<F>,
) -> Latency
where
    F: Fn(Worker) -> Fut,
    Fut: Future<Output = ()>,
{
    let worker = Worker {
        index,
        ctl: ctl.clone(),
        counters,
        latency: Rc::new(RefCell::new(new_latency())),
        recent,
        client: conn::http_client(),
        connect_slots: Rc::new(Semaphore::new(slots)),
        tasks: Rc::default(),
    };
    body(worker.clone()).await;
    ctl.reached(Phase::Done).await;
    for task in worker.tasks.borrow_mut().drain(..) {
        task.abort();
    }
    worker.latency.borrow().clone()
}

impl Workers {
    /// Waits for the threads (after `Phase::Done`) up to `limit`; merges their histograms.
    /// A thread still running after the limit is left behind: the process ends anyway.
    pub fn finish(self, limit: Duration) -> Latency {
        let until = Instant::now() + limit;
        let mut merged = new_latency();
        for handle in self.handles {
            while !handle.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            if !handle.is_finished() {
                eprintln!("mesh-bench: a worker thread did not stop in time");
                continue;
            }
            if let Ok(latency) = handle.join() {
                // Same bounds on both sides: adding cannot fail.
                let _ = merged.add(&latency);
            }
        }
        merged
    }
}

/// A record id no earlier run used.
pub fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

/// Time allowed to open `connections` connections.
pub fn setup_limit(connections: usize) -> Duration {
    Duration::from_secs(30 + connections as u64 / 100).min(Duration::from_secs(300))
}

/// Time allowed for worker threads to stop after `Phase::Done`.
pub const STOP_LIMIT: Duration = Duration::from_secs(10);
