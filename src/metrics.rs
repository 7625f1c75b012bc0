//! Prometheus metrics, served at `GET /metrics` as OpenMetrics text.
//!
//! One set of metrics per process (a process runs one server). Updating a metric is a relaxed
//! atomic operation, cheap enough for the per-delivery hot path.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::OnceLock;

/// Labels of `mesh_subscriptions`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabels {
    /// `full` or `patch`.
    pub mode: &'static str,
}

/// What happened to a write.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// Stored with a new version.
    Applied,
    /// Equal to the current value: nothing changed.
    Unchanged,
    /// Refused: not exposed, guard denied, invalid or over a limit.
    Refused,
    /// Lost a race with another instance and was re-applied.
    ConflictRetried,
    /// The store could not be reached.
    Failed,
}

impl Outcome {
    /// Every outcome, in discriminant order.
    const ALL: [Outcome; 5] = [
        Outcome::Applied,
        Outcome::Unchanged,
        Outcome::Refused,
        Outcome::ConflictRetried,
        Outcome::Failed,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Refused => "refused",
            Outcome::ConflictRetried => "conflict_retried",
            Outcome::Failed => "failed",
        }
    }
}

/// Labels of `mesh_writes`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `applied`, `unchanged`, `refused`, `conflict_retried` or `failed`.
    pub outcome: &'static str,
}

/// Every metric the server exports.
pub struct Metrics {
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// Subscriptions by mode.
    pub subscriptions: Family<ModeLabels, Gauge>,
    /// Live `RecordActor`s.
    pub record_actors: Gauge,
    /// Writes by outcome.
    pub writes: Family<OutcomeLabels, Counter>,
    /// Record pushes queued to subscribers (updates and deletions).
    pub pushes: Counter,
    /// Full values sent to resync a subscriber that skipped updates or missed changes.
    pub resyncs: Counter,
    /// Connections cut off for not reading.
    pub slow_consumer_closes: Counter,
    /// Reads and writes a guard refused.
    pub guard_denials: Counter,
    /// Records waiting in persistence buffers.
    pub persistence_buffered: Gauge,
    /// Duration of persistence flushes.
    pub persistence_flush_seconds: Histogram,
    /// Persistence flushes that failed.
    pub persistence_flush_failures: Counter,
    /// Records the persistence database rejected for their data (dropped, logged).
    pub persistence_rejected: Counter,
    /// Writes to persisted records refused because the persistence buffer was full.
    pub persistence_refused: Counter,
    /// Writes the memory store refused: they would pass `[store] max_memory_bytes`.
    pub store_full_refusals: Counter,
    /// Bytes the memory store counts against `[store] max_memory_bytes`.
    pub store_memory_bytes: Gauge,
    /// Writes answered `EUNKNOWN` under `ack = "flushed"`: applied, but the database did not
    /// confirm them in time.
    pub persistence_unconfirmed: Counter,
    /// Records this instance deleted because their expiry passed (`ttl_seconds`).
    pub records_expired: Counter,
    /// Redis commands that failed.
    pub redis_errors: Counter,
    /// Times the Redis pub/sub connection was re-established.
    pub redis_reconnects: Counter,
    /// WebSocket upgrades refused for their `Origin` (`[server] allowed_origins`).
    pub origin_refusals: Counter,
    /// Admin API requests refused for a missing or wrong token, or a body over
    /// `[admin] max_body_bytes`.
    pub admin_refusals: Counter,
    /// `writes` for each [`Outcome`], indexed by its discriminant.
    write_counters: Vec<Counter>,
    registry: Registry,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("mesh");
        let metrics = Metrics {
            connections: Gauge::default(),
            subscriptions: Family::default(),
            record_actors: Gauge::default(),
            writes: Family::default(),
            pushes: Counter::default(),
            resyncs: Counter::default(),
            slow_consumer_closes: Counter::default(),
            guard_denials: Counter::default(),
            persistence_buffered: Gauge::default(),
            persistence_flush_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            persistence_flush_failures: Counter::default(),
            persistence_rejected: Counter::default(),
            persistence_refused: Counter::default(),
            store_full_refusals: Counter::default(),
            store_memory_bytes: Gauge::default(),
            persistence_unconfirmed: Counter::default(),
            records_expired: Counter::default(),
            redis_errors: Counter::default(),
            redis_reconnects: Counter::default(),
            origin_refusals: Counter::default(),
            admin_refusals: Counter::default(),
            write_counters: Vec::new(),
            registry: Registry::default(),
        };
        let write_counters = Outcome::ALL
            .iter()
            .map(|outcome| {
                let labels = OutcomeLabels {
                    outcome: outcome.label(),
                };
                metrics.writes.get_or_create(&labels).clone()
            })
            .collect();
        let m = &metrics;
        registry.register(
            "connections",
            "Open WebSocket connections",
            m.connections.clone(),
        );
        registry.register(
            "subscriptions",
            "Record subscriptions by mode",
            m.subscriptions.clone(),
        );
        registry.register(
            "record_actors",
            "Live record actors",
            m.record_actors.clone(),
        );
        registry.register("writes", "Record writes by outcome", m.writes.clone());
        registry.register(
            "pushes",
            "Record pushes queued to subscribers",
            m.pushes.clone(),
        );
        registry.register(
            "resyncs",
            "Full values sent to resync subscribers",
            m.resyncs.clone(),
        );
        registry.register(
            "slow_consumer_closes",
            "Connections cut off for not reading",
            m.slow_consumer_closes.clone(),
        );
        registry.register("guard_denials", "Guard refusals", m.guard_denials.clone());
        registry.register(
            "records_expired",
            "Records this instance deleted because their expiry passed",
            m.records_expired.clone(),
        );
        registry.register(
            "persistence_buffered_records",
            "Records waiting in persistence buffers",
            m.persistence_buffered.clone(),
        );
        registry.register(
            "persistence_flush_seconds",
            "Duration of persistence flushes",
            m.persistence_flush_seconds.clone(),
        );
        registry.register(
            "persistence_flush_failures",
            "Failed persistence flushes",
            m.persistence_flush_failures.clone(),
        );
        registry.register(
            "persistence_rejected_records",
            "Records the persistence database rejected for their data, dropped",
            m.persistence_rejected.clone(),
        );
        registry.register(
            "persistence_refused_writes",
            "Writes to persisted records refused while the persistence buffer was full",
            m.persistence_refused.clone(),
        );
        registry.register(
            "store_full_refused_writes",
            "Writes the memory store refused because they would pass [store] max_memory_bytes",
            m.store_full_refusals.clone(),
        );
        registry.register(
            "store_memory_bytes",
            "Bytes of records, history and tombstones the memory store counts against its budget",
            m.store_memory_bytes.clone(),
        );
        registry.register(
            "persistence_unconfirmed_writes",
            "Writes applied but answered EUNKNOWN: the database did not confirm them in time \
             (ack = \"flushed\")",
            m.persistence_unconfirmed.clone(),
        );
        registry.register(
            "redis_errors",
            "Failed Redis commands",
            m.redis_errors.clone(),
        );
        registry.register(
            "redis_reconnects",
            "Redis pub/sub reconnections",
            m.redis_reconnects.clone(),
        );
        registry.register(
            "origin_refusals",
            "WebSocket upgrades refused for their Origin",
            m.origin_refusals.clone(),
        );
        registry.register(
            "admin_refusals",
            "Admin API requests refused (token, body size)",
            m.admin_refusals.clone(),
        );
        Metrics {
            registry,
            write_counters,
            ..metrics
        }
    }

    /// Counts a write outcome. Runs for every write, so the labelled counters are looked up
    /// once at startup rather than in the family's locked map each time.
    pub fn write(&self, outcome: Outcome) {
        self.write_counters[outcome as usize].inc();
    }

    /// The gauge of subscriptions in `mode`.
    pub fn subscriptions(&self, mode: crate::model::Mode) -> Gauge {
        let mode = match mode {
            crate::model::Mode::Full => "full",
            crate::model::Mode::Patch => "patch",
        };
        self.subscriptions
            .get_or_create(&ModeLabels { mode })
            .clone()
    }

    /// Everything, as OpenMetrics text (which Prometheus scrapes).
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}
