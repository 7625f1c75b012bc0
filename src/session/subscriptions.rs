//! A session's record subscriptions: record id → the record actor and the token naming this
//! subscription. Most connections hold one (often their own record), so one is held inline:
//! a hash table even of one entry is a ~220-byte allocation per connection. The table is made
//! at the second subscription and dropped when the last one ends (boxed, so that the enum is
//! no larger than `One`), as the record actor's subscribers are.

use crate::actors::record::{RecordActor, Unsubscribe};
use crate::model::RecordId;
use std::collections::HashMap;

/// One subscription of the session.
pub(super) struct ActiveSubscription {
    /// Weak: a strong `Addr` clone costs two small allocations per subscription, and the
    /// record actor does not retire while it has this subscriber (the registry holds it).
    /// A failed upgrade is an actor already gone, as a `do_send` to it would find.
    pub(super) addr: actix::WeakAddr<RecordActor>,
    pub(super) token: u64,
}

impl ActiveSubscription {
    /// Tells the record actor, if it is still there.
    pub(super) fn unsubscribe(&self, msg: Unsubscribe) {
        if let Some(addr) = self.addr.upgrade() {
            addr.do_send(msg);
        }
    }
}

/// The session's subscriptions by record id (see the module docs).
#[derive(Default)]
pub(super) enum Subscriptions {
    #[default]
    None,
    One(RecordId, ActiveSubscription),
    // The box keeps this variant one word wide: the point of the enum (see above).
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<RecordId, ActiveSubscription>>),
}

impl Subscriptions {
    pub(super) fn len(&self) -> usize {
        match self {
            Subscriptions::None => 0,
            Subscriptions::One(..) => 1,
            Subscriptions::Many(map) => map.len(),
        }
    }

    pub(super) fn contains_key(&self, id: &RecordId) -> bool {
        self.get(id).is_some()
    }

    pub(super) fn get(&self, id: &RecordId) -> Option<&ActiveSubscription> {
        match self {
            Subscriptions::One(held, active) if held == id => Some(active),
            Subscriptions::Many(map) => map.get(id),
            _ => None,
        }
    }

    /// Adds (or replaces) the subscription to `id`.
    pub(super) fn insert(&mut self, id: RecordId, active: ActiveSubscription) {
        *self = match std::mem::take(self) {
            Subscriptions::None => Subscriptions::One(id, active),
            Subscriptions::One(held, _) if held == id => Subscriptions::One(id, active),
            Subscriptions::One(held, first) => {
                Subscriptions::Many(Box::new(HashMap::from([(held, first), (id, active)])))
            }
            Subscriptions::Many(mut map) => {
                map.insert(id, active);
                Subscriptions::Many(map)
            }
        };
    }

    pub(super) fn remove(&mut self, id: &RecordId) -> Option<ActiveSubscription> {
        let (rest, removed) = match std::mem::take(self) {
            Subscriptions::One(held, active) if held == *id => (Subscriptions::None, Some(active)),
            Subscriptions::Many(mut map) => {
                let removed = map.remove(id);
                let rest = if map.is_empty() {
                    Subscriptions::None
                } else {
                    Subscriptions::Many(map)
                };
                (rest, removed)
            }
            other => (other, None),
        };
        *self = rest;
        removed
    }

    /// Every subscription, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&RecordId, &ActiveSubscription)> {
        let (one, many) = match self {
            Subscriptions::None => (None, None),
            Subscriptions::One(id, active) => (Some((id, active)), None),
            Subscriptions::Many(map) => (None, Some(map.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// Removes every subscription.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = ActiveSubscription> + use<> {
        let (one, many) = match std::mem::take(self) {
            Subscriptions::None => (None, None),
            Subscriptions::One(_, active) => (Some(active), None),
            Subscriptions::Many(map) => (None, Some(map.into_values())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> RecordId {
        RecordId::parse(text, 64).expect("a valid id")
    }

    /// A subscription to no running actor: only its token matters here.
    fn active(token: u64) -> ActiveSubscription {
        let (sender, _) = actix::dev::channel::channel::<RecordActor>(1);
        ActiveSubscription {
            addr: actix::Addr::new(sender).downgrade(),
            token,
        }
    }

    fn tokens(subscriptions: &Subscriptions) -> Vec<(String, u64)> {
        let mut all: Vec<_> = subscriptions
            .iter()
            .map(|(id, active)| (id.as_str().to_owned(), active.token))
            .collect();
        all.sort();
        all
    }

    #[test]
    fn one_subscription_is_held_inline_and_a_second_makes_the_table() {
        let mut subscriptions = Subscriptions::default();
        assert_eq!(subscriptions.len(), 0);
        subscriptions.insert(id("a"), active(1));
        assert!(matches!(subscriptions, Subscriptions::One(..)));
        assert!(subscriptions.contains_key(&id("a")));
        assert!(!subscriptions.contains_key(&id("b")));

        // Subscribing again replaces, inline.
        subscriptions.insert(id("a"), active(2));
        assert!(matches!(subscriptions, Subscriptions::One(..)));
        assert_eq!(tokens(&subscriptions), [("a".to_owned(), 2)]);

        subscriptions.insert(id("b"), active(3));
        assert!(matches!(subscriptions, Subscriptions::Many(_)));
        assert_eq!(subscriptions.len(), 2);
        assert_eq!(subscriptions.get(&id("b")).map(|a| a.token), Some(3));
        assert_eq!(
            tokens(&subscriptions),
            [("a".to_owned(), 2), ("b".to_owned(), 3)]
        );
    }

    #[test]
    fn removing_the_last_subscription_drops_the_table() {
        let mut subscriptions = Subscriptions::default();
        subscriptions.insert(id("a"), active(1));
        assert!(subscriptions.remove(&id("b")).is_none());
        assert_eq!(subscriptions.len(), 1);
        assert_eq!(subscriptions.remove(&id("a")).map(|a| a.token), Some(1));
        assert!(matches!(subscriptions, Subscriptions::None));
        assert!(subscriptions.remove(&id("a")).is_none());

        subscriptions.insert(id("a"), active(1));
        subscriptions.insert(id("b"), active(2));
        assert_eq!(subscriptions.remove(&id("a")).map(|a| a.token), Some(1));
        assert_eq!(tokens(&subscriptions), [("b".to_owned(), 2)]);
        assert_eq!(subscriptions.remove(&id("b")).map(|a| a.token), Some(2));
        assert!(matches!(subscriptions, Subscriptions::None));
    }

    #[test]
    fn drain_takes_every_subscription() {
        let mut subscriptions = Subscriptions::default();
        assert_eq!(subscriptions.drain().count(), 0);
        subscriptions.insert(id("a"), active(1));
        assert_eq!(
            subscriptions.drain().map(|a| a.token).collect::<Vec<_>>(),
            [1]
        );
        assert_eq!(subscriptions.len(), 0);
        subscriptions.insert(id("a"), active(1));
        subscriptions.insert(id("b"), active(2));
        let mut drained: Vec<_> = subscriptions.drain().map(|a| a.token).collect();
        drained.sort();
        assert_eq!(drained, [1, 2]);
        assert!(matches!(subscriptions, Subscriptions::None));
    }
}
