//! The memory store's sinks, called by the thread that made the change once it is applied and
//! the map's lock released: the change feed's ([`Feed`]) and the record watchers' ([`Watchers`]).

use crate::model::{RecordId, Version};
use crate::store::{ChangeSink, FeedEvent, FeedSink, RemoteChange, WatchToken, deliver_feed};
use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The [`Store::watch_all`](crate::store::Store::watch_all) sinks.
#[derive(Default)]
pub(super) struct Feed {
    /// Whether `sinks` is non-empty: what every change checks first.
    ///
    /// A relaxed load suffices. A watcher registers (this store, then the mutex's release)
    /// before it lists the records, and listing takes the map's lock; a write that listing did
    /// not see takes the map's lock after it, so its load happens after the store here and
    /// sees it. A write the listing saw needs no event.
    active: AtomicBool,
    /// Replaced whole on every change, so a notification only clones the `Arc` under the lock
    /// and calls the sinks outside it.
    sinks: Mutex<Arc<Vec<(WatchToken, FeedSink)>>>,
}

impl Feed {
    fn sinks(&self) -> MutexGuard<'_, Arc<Vec<(WatchToken, FeedSink)>>> {
        // The sections below only swap a whole `Arc`: a poisoned lock still holds a valid one.
        self.sinks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Tells every sink that these records changed.
    pub(super) fn changed<'a>(&self, ids: impl IntoIterator<Item = &'a RecordId>) {
        if !self.active.load(Ordering::Relaxed) {
            return;
        }
        let sinks = Arc::clone(&*self.sinks());
        for id in ids {
            for (_, sink) in sinks.iter() {
                deliver_feed(sink, FeedEvent::Changed(id.clone()));
            }
        }
    }

    pub(super) fn add(&self, sink: FeedSink) -> WatchToken {
        let token = WatchToken::next();
        let mut sinks = self.sinks();
        let mut next = Vec::clone(&sinks);
        next.push((token, sink));
        *sinks = Arc::new(next);
        self.active.store(true, Ordering::Relaxed);
        token
    }

    pub(super) fn remove(&self, token: WatchToken) {
        let mut sinks = self.sinks();
        let next: Vec<_> = sinks.iter().filter(|(t, _)| *t != token).cloned().collect();
        self.active.store(!next.is_empty(), Ordering::Relaxed);
        *sinks = Arc::new(next);
    }
}

impl fmt::Debug for Feed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feed")
            .field("sinks", &self.sinks().len())
            .finish()
    }
}

/// The [`Store::watch`](crate::store::Store::watch) sinks by record. A record actor is the only
/// writer of its record here and needs to hear of nothing it did itself; only an expiry,
/// which the store does on a sweeper's call, is delivered.
#[derive(Default)]
pub(super) struct Watchers {
    sinks: Mutex<HashMap<RecordId, Vec<(WatchToken, ChangeSink)>>>,
}

impl Watchers {
    fn sinks(&self) -> MutexGuard<'_, HashMap<RecordId, Vec<(WatchToken, ChangeSink)>>> {
        // Each section below leaves the map whole: a poisoned lock still holds a valid one.
        self.sinks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn add(&self, id: &RecordId, sink: ChangeSink) -> WatchToken {
        let token = WatchToken::next();
        // Room for one: a record has one actor, so one watcher but for moments (an old actor
        // stopping as a new one starts); `or_default` would allocate room for four.
        self.sinks()
            .entry(id.clone())
            .or_insert_with(|| Vec::with_capacity(1))
            .push((token, sink));
        token
    }

    pub(super) fn remove(&self, id: &RecordId, token: WatchToken) {
        let mut sinks = self.sinks();
        if let Some(watching) = sinks.get_mut(id) {
            watching.retain(|(t, _)| *t != token);
            if watching.is_empty() {
                sinks.remove(id);
            }
        }
    }

    /// Tells each deleted record's watchers, outside the lock (a sink may call back into the
    /// store); a panicking sink loses the change, not the caller.
    pub(super) fn deleted(&self, records: &[(RecordId, Version)]) {
        let mut calls = Vec::new();
        {
            let sinks = self.sinks();
            for (id, version) in records {
                for (_, sink) in sinks.get(id).into_iter().flatten() {
                    calls.push((Arc::clone(sink), *version));
                }
            }
        }
        for (sink, version) in calls {
            let change = RemoteChange::Deleted { version };
            if catch_unwind(AssertUnwindSafe(|| sink(change))).is_err() {
                log::error!("a record change sink panicked; the change was dropped for it");
            }
        }
    }
}

impl fmt::Debug for Watchers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watchers")
            .field("records", &self.sinks().len())
            .finish()
    }
}
