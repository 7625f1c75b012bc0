//! A record's subscribers and the frames they are sent: each update is diffed at most once and
//! serialized at most once per mode, and the same bytes go to every subscriber of that mode.

use crate::metrics::metrics;
use crate::model::{
    Frame, Mode, RecordId, Version, deleted_frame, full_frame, patch_frame, serialized_len,
    serializes_longer_than, shorter_patch,
};
use crate::outbox::{Outbox, PushError};
use serde_json::Value;
use std::collections::HashMap;

use super::messages::{OnEnd, SubscriptionEnded};

/// One session's subscription.
pub(super) struct Subscriber {
    mode: Mode,
    pub(super) outbox: Outbox,
    token: u64,
    ended: OnEnd,
}

impl Subscriber {
    pub(super) fn new(mode: Mode, outbox: Outbox, token: u64, ended: OnEnd) -> Self {
        metrics().subscriptions(mode).inc();
        Subscriber {
            mode,
            outbox,
            token,
            ended,
        }
    }
}

impl Drop for Subscriber {
    /// However a subscription ends (unsubscribe, deletion, closed session), the gauge follows.
    fn drop(&mut self) {
        metrics().subscriptions(self.mode).dec();
        if let OnEnd::CloseQueue = self.ended {
            self.outbox.close(None);
        }
    }
}

/// Subscribers by session id. Many records have one subscriber (a connection's own record),
/// held inline: a hash table even of one entry is a ~220-byte allocation per record actor.
/// The table is made at the second subscriber and dropped when the last one leaves (boxed, so
/// that the enum is no larger than `One`).
#[derive(Default)]
pub(super) enum Subscribers {
    #[default]
    None,
    One(u64, Subscriber),
    // The box keeps this variant one word wide: the point of the enum (see above).
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<u64, Subscriber>>),
}

impl Subscribers {
    pub(super) fn is_empty(&self) -> bool {
        match self {
            Subscribers::None => true,
            Subscribers::One(..) => false,
            Subscribers::Many(map) => map.is_empty(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Subscribers::None => 0,
            Subscribers::One(..) => 1,
            Subscribers::Many(map) => map.len(),
        }
    }

    pub(super) fn get(&self, session: u64) -> Option<&Subscriber> {
        match self {
            Subscribers::One(id, subscriber) if *id == session => Some(subscriber),
            Subscribers::Many(map) => map.get(&session),
            _ => None,
        }
    }

    /// Adds (or replaces) `session`'s subscriber.
    pub(super) fn insert(&mut self, session: u64, subscriber: Subscriber) {
        match std::mem::take(self) {
            Subscribers::None => *self = Subscribers::One(session, subscriber),
            Subscribers::One(id, _) if id == session => {
                *self = Subscribers::One(session, subscriber)
            }
            Subscribers::One(id, first) => {
                let map = HashMap::from([(id, first), (session, subscriber)]);
                *self = Subscribers::Many(Box::new(map));
            }
            Subscribers::Many(mut map) => {
                map.insert(session, subscriber);
                *self = Subscribers::Many(map);
            }
        }
    }

    pub(super) fn remove(&mut self, session: u64) -> Option<Subscriber> {
        let removed = match self {
            Subscribers::One(id, _) if *id == session => match std::mem::take(self) {
                Subscribers::One(_, subscriber) => Some(subscriber),
                _ => unreachable!("matched One above"),
            },
            Subscribers::Many(map) => map.remove(&session),
            _ => None,
        };
        self.forget_empty_table();
        removed
    }

    /// Keeps the subscribers for which `keep` says so.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Subscriber) -> bool) {
        match self {
            Subscribers::None => {}
            Subscribers::One(_, subscriber) => {
                if !keep(subscriber) {
                    *self = Subscribers::None;
                }
            }
            Subscribers::Many(map) => map.retain(|_, subscriber| keep(subscriber)),
        }
        self.forget_empty_table();
    }

    /// Removes every subscriber.
    fn drain(&mut self) -> Vec<Subscriber> {
        match std::mem::take(self) {
            Subscribers::None => Vec::new(),
            Subscribers::One(_, subscriber) => vec![subscriber],
            Subscribers::Many(map) => map.into_values().collect(),
        }
    }

    fn forget_empty_table(&mut self) {
        if matches!(self, Subscribers::Many(map) if map.is_empty()) {
            *self = Subscribers::None;
        }
    }

    /// Sends one update to every subscriber, as a patch or whole per its mode.
    pub(super) fn update(
        &mut self,
        id: &RecordId,
        previous: Option<&Value>,
        current: &Value,
        version: Version,
        computed: Option<&Value>,
    ) {
        if self.is_empty() {
            return;
        }
        let mut frames = UpdateFrames {
            id,
            previous,
            current,
            version,
            computed,
            full: None,
            patch: None,
        };
        metrics().pushes.inc_by(self.len() as u64);
        self.retain(|subscriber| {
            let frame = match subscriber.mode {
                Mode::Full => frames.full(),
                Mode::Patch => frames.patch(),
            };
            subscriber.outbox.push_update(frames.id, frame) != Err(PushError::Closed)
        });
    }

    /// Sends the whole value to every subscriber: versions between were skipped.
    pub(super) fn resync(&mut self, id: &RecordId, value: &Value, version: Version) {
        if self.is_empty() {
            return;
        }
        let frame = full_frame(id, value, version);
        metrics().resyncs.inc_by(self.len() as u64);
        self.retain(|s| s.outbox.push_update(id, frame.clone()) != Err(PushError::Closed));
    }

    /// Tells every subscriber the record was deleted and ends their subscriptions.
    pub(super) fn deleted(&mut self, id: &RecordId, version: Version) {
        if self.is_empty() {
            return;
        }
        let frame = deleted_frame(id, version);
        metrics().pushes.inc_by(self.len() as u64);
        for subscriber in self.drain() {
            subscriber.outbox.forget_stale(id);
            let _ = subscriber.outbox.push(frame.clone());
            // A server-side subscription's queue is closed as the subscriber drops.
            if let OnEnd::Notify(session) = &subscriber.ended
                && let Some(session) = session.upgrade()
            {
                session.do_send(SubscriptionEnded {
                    record_id: id.clone(),
                    token: subscriber.token,
                });
            }
        }
    }
}

/// Lazily built frames for one update.
struct UpdateFrames<'a> {
    id: &'a RecordId,
    previous: Option<&'a Value>,
    current: &'a Value,
    version: Version,
    /// The patch from `previous`, when the writer already computed it (for the history).
    computed: Option<&'a Value>,
    full: Option<Frame>,
    patch: Option<Frame>,
}

impl UpdateFrames<'_> {
    fn full(&mut self) -> Frame {
        self.full
            .get_or_insert_with(|| full_frame(self.id, self.current, self.version))
            .clone()
    }

    /// The patch frame, or the full frame when the patch would be larger (the client takes a
    /// full value as a resync, and it costs fewer bytes).
    fn patch(&mut self) -> Frame {
        if let Some(frame) = &self.patch {
            return frame.clone();
        }
        let frame = match self.computed {
            Some(patch) => self.smaller(patch),
            None => {
                let empty = Value::Object(Default::default());
                let previous = self.previous.unwrap_or(&empty);
                // Bounded by the value's length: a longer patch would not be sent anyway.
                match shorter_patch(previous, self.current) {
                    Some(patch) => self.smaller(&patch),
                    None => self.full(),
                }
            }
        };
        self.patch = Some(frame.clone());
        frame
    }

    /// The smaller of the patch and the full frame, decided by counting so that only the
    /// frame sent is built. The frames differ only in `"patch":<patch>` against
    /// `"full":<value>`: the patch frame is the longer one exactly when the value is no
    /// longer than the patch.
    fn smaller(&mut self, patch: &impl serde::Serialize) -> Frame {
        if serializes_longer_than(self.current, serialized_len(patch)) {
            patch_frame(self.id, patch, self.version)
        } else {
            self.full()
        }
    }
}
