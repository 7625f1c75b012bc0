//! The router's table of watched channels: which sinks each channel feeds, and which channels
//! Redis has confirmed on the current connection. Pure data, so the bookkeeping is tested
//! without Redis.
//!
//! What must stay true: a channel is subscribed in Redis exactly while it has at least one
//! sink, once the router has carried out the [`ChannelChanges`] for the channels a batch touched.

use crate::store::{ChangeSink, WatchToken};
use std::collections::{HashMap, HashSet};

/// Sinks by channel, plus what Redis has confirmed.
#[derive(Default)]
pub(super) struct Subscriptions {
    /// Every registered sink; a channel is present only while it has at least one.
    sinks: HashMap<String, Vec<(WatchToken, ChangeSink)>>,
    /// Channels whose SUBSCRIBE Redis confirmed on the current connection.
    confirmed: HashSet<String>,
}

/// The commands that bring Redis in line with the table for the channels a batch touched.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ChannelChanges {
    /// Wanted but not yet subscribed.
    pub subscribe: Vec<String>,
    /// Subscribed but no longer wanted.
    pub unsubscribe: Vec<String>,
}

impl ChannelChanges {
    /// Whether Redis needs no command.
    pub fn is_empty(&self) -> bool {
        self.subscribe.is_empty() && self.unsubscribe.is_empty()
    }
}

impl Subscriptions {
    /// Registers `sink` for `channel` under `token`.
    pub fn add(&mut self, channel: String, token: WatchToken, sink: ChangeSink) {
        self.sinks.entry(channel).or_default().push((token, sink));
    }

    /// Removes the sink registered under `token`, if it is still there.
    pub fn remove(&mut self, channel: &str, token: WatchToken) {
        if let Some(sinks) = self.sinks.get_mut(channel) {
            sinks.retain(|(t, _)| *t != token);
            if sinks.is_empty() {
                self.sinks.remove(channel);
            }
        }
    }

    /// The sinks of `channel` (none if nobody watches it).
    pub fn sinks(&self, channel: &str) -> impl Iterator<Item = &ChangeSink> {
        self.sinks
            .get(channel)
            .into_iter()
            .flat_map(|sinks| sinks.iter().map(|(_, sink)| sink))
    }

    /// Every sink of every channel.
    pub fn all_sinks(&self) -> impl Iterator<Item = &ChangeSink> {
        self.sinks.values().flatten().map(|(_, sink)| sink)
    }

    /// Every channel that has a sink.
    pub fn wanted(&self) -> Vec<String> {
        self.sinks.keys().cloned().collect()
    }

    /// Whether `channel` has a sink.
    pub fn is_wanted(&self, channel: &str) -> bool {
        self.sinks.contains_key(channel)
    }

    /// Every channel that has a sink but no confirmed subscription (the cluster router's
    /// repair list).
    pub fn unconfirmed(&self) -> Vec<String> {
        self.sinks
            .keys()
            .filter(|channel| !self.confirmed.contains(*channel))
            .cloned()
            .collect()
    }

    /// What Redis must be told so that, for each of `touched`, the channel is subscribed
    /// exactly when it has a sink.
    pub fn plan(&self, touched: impl IntoIterator<Item = String>) -> ChannelChanges {
        let mut plan = ChannelChanges::default();
        let mut seen = HashSet::new();
        for channel in touched {
            if !seen.insert(channel.clone()) {
                continue;
            }
            let wanted = self.sinks.contains_key(&channel);
            let confirmed = self.confirmed.contains(&channel);
            if wanted && !confirmed {
                plan.subscribe.push(channel);
            } else if !wanted && confirmed {
                plan.unsubscribe.push(channel);
            }
        }
        plan
    }

    /// Records that Redis confirmed the subscription of these channels.
    pub fn confirm(&mut self, channels: &[String]) {
        self.confirmed.extend(channels.iter().cloned());
    }

    /// Records that Redis confirmed leaving these channels.
    pub fn forget(&mut self, channels: &[String]) {
        for channel in channels {
            self.confirmed.remove(channel);
        }
    }

    /// The connection is gone, and with it every subscription.
    pub fn connection_lost(&mut self) {
        self.confirmed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RemoteChange;
    use std::sync::Arc;

    fn sink() -> ChangeSink {
        Arc::new(|_: RemoteChange| {})
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn first_sink_subscribes_and_last_unsubscribes() {
        let mut table = Subscriptions::default();
        let (a, b) = (WatchToken::next(), WatchToken::next());
        table.add("c".into(), a, sink());
        let plan = table.plan(names(&["c"]));
        assert_eq!(plan.subscribe, names(&["c"]));
        table.confirm(&plan.subscribe);

        table.add("c".into(), b, sink());
        assert!(table.plan(names(&["c"])).is_empty());
        assert_eq!(table.sinks("c").count(), 2);

        table.remove("c", a);
        assert!(table.plan(names(&["c"])).is_empty());
        table.remove("c", b);
        let plan = table.plan(names(&["c"]));
        assert_eq!(plan.unsubscribe, names(&["c"]));
        table.forget(&plan.unsubscribe);
        assert_eq!(table.sinks("c").count(), 0);
        assert!(table.wanted().is_empty());
    }

    #[test]
    fn unwatch_removes_only_its_own_sink() {
        let mut table = Subscriptions::default();
        let (old, new) = (WatchToken::next(), WatchToken::next());
        table.add("c".into(), old, sink());
        table.add("c".into(), new, sink());
        table.remove("c", old);
        table.remove("c", old);
        table.remove("other", new);
        assert_eq!(table.sinks("c").count(), 1);
    }

    #[test]
    fn watch_and_unwatch_in_one_batch_cancel_out() {
        let mut table = Subscriptions::default();
        let token = WatchToken::next();
        table.add("c".into(), token, sink());
        table.remove("c", token);
        assert!(table.plan(names(&["c", "c"])).is_empty());
    }

    #[test]
    fn replacing_the_last_sink_keeps_the_subscription() {
        let mut table = Subscriptions::default();
        let (old, new) = (WatchToken::next(), WatchToken::next());
        table.add("c".into(), old, sink());
        table.confirm(&names(&["c"]));
        table.remove("c", old);
        table.add("c".into(), new, sink());
        assert!(table.plan(names(&["c", "c"])).is_empty());
    }

    #[test]
    fn a_lost_connection_needs_every_channel_again() {
        let mut table = Subscriptions::default();
        table.add("a".into(), WatchToken::next(), sink());
        table.add("b".into(), WatchToken::next(), sink());
        table.confirm(&names(&["a", "b"]));
        table.connection_lost();
        let mut wanted = table.wanted();
        wanted.sort();
        assert_eq!(wanted, names(&["a", "b"]));
        let mut plan = table.plan(wanted);
        plan.subscribe.sort();
        assert_eq!(plan.subscribe, names(&["a", "b"]));
        assert_eq!(table.all_sinks().count(), 2);
    }
}
