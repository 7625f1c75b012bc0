//! The memory store's [`Store::watch_all`](crate::store::Store::watch_all) sinks, called by the writing thread once its change
//! is applied and the map's lock released.

use crate::model::RecordId;
use crate::store::{FeedEvent, FeedSink, WatchToken, deliver_feed};
use std::fmt;
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
