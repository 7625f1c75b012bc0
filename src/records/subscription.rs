//! [`RecordSubscription`]: server code watching a record the way a WebSocket subscriber does,
//! through the same route and the same record actor, receiving the same push frames.

use crate::actors::record::{OnEnd, Subscribe};
use crate::actors::route::RecordRoute;
use crate::error::Result;
use crate::model::{Mode, RecordId, Versioned};
use crate::outbox::{Outbox, TextDrain};
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Most bytes of pushes held for a subscription nobody reads. Past it, updates are dropped and
/// the subscription gets the record's full value once it has caught up, as a slow WebSocket
/// client does: memory stays bounded, and versions still arrive in order.
pub const SUBSCRIPTION_BUDGET: usize = 4 << 20;

/// How often a waiting subscription checks for a congested queue that drained unnoticed (the
/// producer can mark its record stale just after the last frame was taken).
const RECHECK: Duration = Duration::from_secs(1);

/// Subscriber numbers for server subscriptions, far from the sessions' (which count up from 1).
static NEXT_SUBSCRIBER: AtomicU64 = AtomicU64::new(1 << 62);

/// A server-side subscription to one record ([`Records::subscribe_record`]).
///
/// [`next`](Self::next) gives the `mesh/record-update` push frames (JSON text) a WebSocket
/// subscriber in the same mode gets: every version after the [`snapshot`](Self::snapshot)
/// once and in order, as a patch or whole (whole after the subscription fell behind), and the
/// deletion, after which it ends (also when the record's actor stops without one, at
/// shutdown). Dropping it ends it: the record actor lets it go at its next push or linger
/// tick.
///
/// [`Records::subscribe_record`]: crate::Records::subscribe_record
pub struct RecordSubscription {
    id: RecordId,
    snapshot: Option<Versioned>,
    outbox: Outbox,
    texts: TextDrain,
    route: RecordRoute,
    subscriber: u64,
}

impl RecordSubscription {
    /// Subscribes through `route` (no access check: server code). Runs on an actix runtime.
    pub(crate) async fn start(route: RecordRoute, id: RecordId, mode: Mode) -> Result<Self> {
        let (outbox, receiver) = Outbox::new(SUBSCRIPTION_BUDGET);
        let subscriber = NEXT_SUBSCRIBER.fetch_add(1, Ordering::Relaxed);
        let message = Subscribe {
            session: subscriber,
            mode,
            outbox: outbox.clone(),
            token: 0,
            // The queue ends after the deletion push, or when the record actor goes away.
            ended: OnEnd::CloseQueue,
            reply_to: None,
            since: None,
        };
        let snapshot = route.send(&id, None, message).await??;
        Ok(RecordSubscription {
            id,
            snapshot,
            outbox,
            texts: receiver.into_texts(),
            route,
            subscriber,
        })
    }

    /// The record's id.
    pub fn id(&self) -> &str {
        self.id.as_str()
    }

    /// The value and version the pushes continue from (`None`: the record did not exist).
    pub fn snapshot(&self) -> Option<&Versioned> {
        self.snapshot.as_ref()
    }

    /// The next push frame, waiting for one; `None` once the record was deleted (its
    /// deletion push came just before).
    pub async fn next(&mut self) -> Option<String> {
        loop {
            if self.texts.take_drained() || (self.outbox.is_congested() && self.texts.is_low()) {
                self.catch_up().await;
            }
            let waited = tokio::time::timeout(RECHECK, poll_fn(|cx| self.texts.poll_text(cx)));
            if let Ok(frame) = waited.await {
                return frame.map(|frame| frame.to_string());
            }
        }
    }

    /// The queue had overflowed and has drained: ask for the full value the dropped updates
    /// lead to (the session does the same for a slow client).
    async fn catch_up(&mut self) {
        self.route.resync_stale(&self.outbox, self.subscriber).await;
    }
}
