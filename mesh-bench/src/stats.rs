//! Counters and latency histograms.

use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What the tool counts. Each thread has its own set; the main thread adds them up.
#[derive(Clone, Copy, Debug)]
pub enum Ctr {
    /// WebSocket handshakes that succeeded.
    Connected,
    /// Connections that failed to open or to subscribe.
    ConnectFailed,
    /// Connections set up as the scenario needs (subscribed, or a connected writer).
    Ready,
    /// Connections the server ended while the bench ran.
    Closed,
    WritesSent,
    /// Publishes answered `{"success": true}`.
    WritesAcked,
    /// Publishes answered with an error payload.
    WriteErrors,
    /// `mesh/record-update` pushes received.
    Deliveries,
    /// Pushes whose version skipped ahead of the previous one + 1 (for `collection`, the
    /// subscriber's diff versions).
    Gaps,
    /// Full pushes received by a patch subscriber: a resync after skipped updates, or a
    /// patch that would have been larger than the value (the first write of a record).
    FullPushes,
    /// Pushes whose version equals the previous one.
    Duplicates,
    /// Pushes whose version is below the previous one.
    OutOfOrder,
    /// Frames that did not parse.
    BadFrames,
    /// Race writers that have finished (or could not start).
    WritersDone,
    /// The server's `ping` pushes answered.
    Pings,
    /// Open-loop writes sent more than `openloop::LATE` after their scheduled time.
    LateWrites,
    /// `hostile`: connections the hostile clients opened.
    HostileConnects,
    /// `hostile`: frames the hostile clients sent.
    HostileFrames,
    /// `hostile`: error replies the hostile clients got.
    HostileRefused,
    /// `hostile`: hostile connections the server closed or refused.
    HostileCutOff,
    /// `collection`: subscriptions the server accepted.
    Subscriptions,
    /// `collection`: `mesh/collection-diff` pushes received.
    Diffs,
    /// `collection`: members entering, summed over the diffs received.
    MembersAdded,
    /// `collection`: members leaving, summed over the diffs received.
    MembersRemoved,
    /// `collection`: writes sent that create a new member.
    Creates,
    /// `collection`: pushes no write of the run should have caused (a diff or an update to
    /// a subscriber of a collection the writes do not touch).
    Unexpected,
}

const COUNTERS: usize = 26;

impl Ctr {
    const ALL: [Ctr; COUNTERS] = [
        Ctr::Connected,
        Ctr::ConnectFailed,
        Ctr::Ready,
        Ctr::Closed,
        Ctr::WritesSent,
        Ctr::WritesAcked,
        Ctr::WriteErrors,
        Ctr::Deliveries,
        Ctr::Gaps,
        Ctr::FullPushes,
        Ctr::Duplicates,
        Ctr::OutOfOrder,
        Ctr::BadFrames,
        Ctr::WritersDone,
        Ctr::Pings,
        Ctr::LateWrites,
        Ctr::HostileConnects,
        Ctr::HostileFrames,
        Ctr::HostileRefused,
        Ctr::HostileCutOff,
        Ctr::Subscriptions,
        Ctr::Diffs,
        Ctr::MembersAdded,
        Ctr::MembersRemoved,
        Ctr::Creates,
        Ctr::Unexpected,
    ];

    /// The counter's name in progress lines and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Ctr::Connected => "connected",
            Ctr::ConnectFailed => "connect_failed",
            Ctr::Ready => "ready",
            Ctr::Closed => "closed",
            Ctr::WritesSent => "writes_sent",
            Ctr::WritesAcked => "writes_acked",
            Ctr::WriteErrors => "write_errors",
            Ctr::Deliveries => "deliveries",
            Ctr::Gaps => "gaps",
            Ctr::FullPushes => "full_pushes",
            Ctr::Duplicates => "duplicates",
            Ctr::OutOfOrder => "out_of_order",
            Ctr::BadFrames => "bad_frames",
            Ctr::WritersDone => "writers_done",
            Ctr::Pings => "pings",
            Ctr::LateWrites => "late_writes",
            Ctr::HostileConnects => "hostile_connects",
            Ctr::HostileFrames => "hostile_frames",
            Ctr::HostileRefused => "hostile_refused",
            Ctr::HostileCutOff => "hostile_cut_off",
            Ctr::Subscriptions => "subscriptions",
            Ctr::Diffs => "diffs",
            Ctr::MembersAdded => "members_added",
            Ctr::MembersRemoved => "members_removed",
            Ctr::Creates => "creates",
            Ctr::Unexpected => "unexpected",
        }
    }
}

/// One thread's counters, on their own cache lines so threads never contend.
#[repr(align(128))]
#[derive(Default)]
pub struct Counters([AtomicU64; COUNTERS]);

impl Counters {
    pub fn add(&self, counter: Ctr, n: u64) {
        self.0[counter as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn bump(&self, counter: Ctr) {
        self.add(counter, 1);
    }
}

/// Totals over all threads at one moment.
#[derive(Clone, Copy, Default)]
pub struct Snapshot([u64; COUNTERS]);

impl Snapshot {
    /// Adds up every thread's counters (each read on its own: totals are approximate
    /// while the load runs, exact once it has stopped).
    pub fn of(all: &[Arc<Counters>]) -> Snapshot {
        let mut totals = [0; COUNTERS];
        for counters in all {
            for (total, counter) in totals.iter_mut().zip(&counters.0) {
                *total += counter.load(Ordering::Relaxed);
            }
        }
        Snapshot(totals)
    }

    pub fn get(&self, counter: Ctr) -> u64 {
        self.0[counter as usize]
    }

    /// Counts between `earlier` and this snapshot.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let mut delta = [0; COUNTERS];
        for (i, d) in delta.iter_mut().enumerate() {
            *d = self.0[i].saturating_sub(earlier.0[i]);
        }
        Snapshot(delta)
    }

    /// Every counter by name, for the JSON line.
    pub fn to_json(self) -> serde_json::Map<String, serde_json::Value> {
        Ctr::ALL
            .iter()
            .map(|&c| (c.name().to_owned(), self.get(c).into()))
            .collect()
    }
}

/// Microsecond latencies, 1 µs to 60 s at 3 significant digits.
pub type Latency = Histogram<u64>;

/// An empty latency histogram.
pub fn new_latency() -> Latency {
    // Setup: fixed, valid bounds cannot fail.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// The histogram the connection tasks of one thread record into.
pub type LocalLatency = Rc<RefCell<Latency>>;

/// The latencies one thread recorded since the last progress tick, for the per-second
/// percentiles. A mutex rather than the whole-run `RefCell` because the main thread empties it
/// once a second; the thread's own locks are otherwise uncontended.
pub struct RecentLatency(Mutex<Latency>);

impl Default for RecentLatency {
    fn default() -> RecentLatency {
        RecentLatency(Mutex::new(new_latency()))
    }
}

impl RecentLatency {
    /// Records one latency; the whole-run histogram gets it too (the caller records both).
    pub fn record(&self, us: u64) {
        if let Ok(mut h) = self.0.lock() {
            h.saturating_record(us);
        }
    }

    /// Adds what was recorded since the last call to `into`, and starts over.
    pub fn drain_into(&self, into: &mut Latency) {
        if let Ok(mut h) = self.0.lock() {
            // Same bounds on both sides: adding cannot fail.
            let _ = into.add(&*h);
            h.reset();
        }
    }
}

/// Version bookkeeping for one subscriber: pushed versions must go up by exactly one.
pub fn check_sequence(counters: &Counters, last: &mut u64, version: u64) {
    let expected = *last + 1;
    if version > expected {
        counters.bump(Ctr::Gaps);
    } else if version == *last {
        counters.bump(Ctr::Duplicates);
    } else if version < *last {
        counters.bump(Ctr::OutOfOrder);
    }
    *last = (*last).max(version);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_anomalies_are_told_apart() {
        let counters = Counters::default();
        let mut last = 3;
        for version in [4, 5, 7, 7, 6, 8] {
            check_sequence(&counters, &mut last, version);
        }
        let snapshot = Snapshot::of(&[Arc::new(counters)]);
        assert_eq!(snapshot.get(Ctr::Gaps), 1);
        assert_eq!(snapshot.get(Ctr::Duplicates), 1);
        assert_eq!(snapshot.get(Ctr::OutOfOrder), 1);
        assert_eq!(last, 8);
    }
}
