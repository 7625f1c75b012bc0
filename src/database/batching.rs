//! How a persistence rule batches its writes and retries a failing database.

use std::time::Duration;

/// How the actor batches and retries.
#[derive(Debug, Clone)]
pub struct PersistenceOptions {
    /// Longest time a buffered write waits before a flush starts. Default 500 ms. Also the
    /// first retry delay after a failure.
    pub flush_interval: Duration,
    /// A flush starts as soon as this many records are buffered. Default 100.
    pub max_buffer_size: usize,
    /// The retry delay doubles per failure up to this. Default 30 s.
    pub max_retry_delay: Duration,
    /// Retries `Shutdown` makes after its first attempt fails; its delays restart at
    /// `flush_interval`, so with the defaults it gives up after about 3.5 s plus the attempts'
    /// own time. Default 3.
    pub shutdown_retries: u32,
    /// Records held unwritten (buffered plus in flight) at which
    /// `PersistenceHandle::has_room` (in the actor) turns false. Default 100,000.
    pub max_buffered_records: usize,
    /// `ack = "flushed"`: a write is answered only once the batch holding it committed, and
    /// waits for that at most this long (then `EUNKNOWN`). `None` (the default, `ack =
    /// "stored"`): answered once queued for the database.
    pub confirm_within: Option<Duration>,
}

impl Default for PersistenceOptions {
    fn default() -> Self {
        PersistenceOptions {
            flush_interval: Duration::from_millis(500),
            max_buffer_size: 100,
            max_retry_delay: Duration::from_secs(30),
            shutdown_retries: 3,
            max_buffered_records: 100_000,
            confirm_within: None,
        }
    }
}
