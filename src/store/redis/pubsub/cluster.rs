//! The sharded pub/sub router of a [`RedisStore`](super::RedisStore) on a Redis Cluster: one
//! task that `SSUBSCRIBE`s each watched record's channel on the master owning its slot and
//! hands the messages to the sinks watching it. It takes the same [`RouterCommand`]s as the
//! single-node router (`single`), through the same [`Router`] handle.
//!
//! The `redis` crate's cluster connection sends the commands (routing them by slot, following
//! `MOVED`/`ASK`, reconnecting to nodes) and forwards every push (messages, confirmations,
//! disconnections) to this task. Its own resubscription is not trusted: it groups channels per
//! node into one `SSUBSCRIBE`, which Redis refuses when they span slots, and it forgets a
//! channel Redis unsubscribed during a slot migration. The truth is this task's
//! [`Subscriptions`] table (wanted channels and those Redis confirmed), and it resubscribes
//! **one slot per command**:
//! - on an unsolicited `sunsubscribe` of a wanted channel (its slot moved, or its master was
//!   demoted): that channel;
//! - on a disconnection from any node: every channel;
//! - every [`CHECK_EVERY`]: channels whose slot is now served by another master than the one
//!   they were confirmed under (a failover seen by the cluster), plus any still unconfirmed.
//!
//! Failed resubscriptions are retried with backoff. A sink whose channel was lost gets
//! [`RemoteChange::Resync`] once the channel is confirmed again (never before, so a reload
//! started on it cannot miss a later change). Duplicate subscriptions are harmless: Redis
//! keeps one per connection.

use super::subscriptions::Subscriptions;
use super::{Router, RouterCommand, bounded, deliver, dispatch, take_batch, take_commands};
use crate::store::redis::slots::{self as slot, SlotOwners, push_text};
use crate::store::{RemoteChange, StoreError};
use futures_util::{StreamExt, stream};
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until};

/// How often the slot map is compared with the masters the channels were confirmed under.
/// A failover is noticed within this even when no connection closed.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(1);
/// First wait before retrying a failed resubscription; doubled up to [`MAX_RETRY`].
const MIN_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(2);
/// Most slots (un)subscribed at once: one command per slot, so a batch of watches or a
/// resubscription after a failover must not wait for each slot in turn.
const PARALLEL: usize = 128;

/// Starts the task on a connection whose pushes arrive on `pushes`.
pub(in crate::store::redis) async fn start(
    mut conn: ClusterConnection,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    origin: String,
) -> Result<Router, StoreError> {
    let owners = SlotOwners::fetch(&mut conn)
        .await
        .map_err(StoreError::Unavailable)?;
    let (commands, receiver) = mpsc::unbounded_channel();
    let task = ClusterRouter {
        conn,
        commands: receiver,
        pushes,
        table: Subscriptions::default(),
        owners,
        confirmed_under: HashMap::new(),
        lost: HashSet::new(),
        leaving: HashMap::new(),
        retry: None,
        backoff: MIN_RETRY,
        origin,
    };
    tokio::spawn(task.run());
    Ok(Router::new(commands))
}

struct ClusterRouter {
    /// Sends (S)SUBSCRIBE and friends; its pushes come back on `pushes`.
    conn: ClusterConnection,
    commands: mpsc::UnboundedReceiver<RouterCommand>,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    /// Wanted channels, their sinks, and which Redis confirmed.
    table: Subscriptions,
    /// The slot map as last fetched.
    owners: SlotOwners,
    /// The master each confirmed channel's slot had (per `owners`) when it was confirmed.
    confirmed_under: HashMap<String, Option<String>>,
    /// Wanted channels whose subscription was lost: their sinks get `Resync` once it is back.
    lost: HashSet<String>,
    /// `sunsubscribe` confirmations still due for our own SUNSUBSCRIBEs, so they are not
    /// taken for Redis dropping a channel.
    leaving: HashMap<String, usize>,
    /// When to retry the unconfirmed channels, if any are.
    retry: Option<Instant>,
    backoff: Duration,
    /// This instance's tag on what it publishes (see `dispatch`).
    origin: String,
}

impl ClusterRouter {
    async fn run(mut self) {
        let mut check = interval(CHECK_EVERY);
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let retry_at = self.retry;
            tokio::select! {
                command = self.commands.recv() => {
                    let Some(command) = command else { return };
                    let batch = take_batch(&mut self.commands, command);
                    self.apply(batch).await;
                }
                push = self.pushes.recv() => match push {
                    Some(push) => self.on_push(push),
                    None => return,
                },
                _ = check.tick() => self.check().await,
                _ = sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                    self.retry = None;
                    self.repair().await;
                }
            }
        }
    }

    /// Applies watches and unwatches, then answers the watches: `Ok` once their channel is
    /// confirmed, an error (and the sink removed) when its slot's master refused or did not
    /// answer.
    async fn apply(&mut self, batch: Vec<RouterCommand>) {
        let (touched, waiting) = take_commands(&mut self.table, batch);
        let plan = self.table.plan(touched);
        self.unsubscribe(plan.unsubscribe).await;
        let mut failed = HashMap::new();
        for (channels, reason) in self.subscribe(plan.subscribe).await {
            for channel in channels {
                failed.insert(channel, reason.clone());
            }
        }
        let mut unwatch = Vec::new();
        for (channel, token, done) in waiting {
            let answer = match failed.get(&channel) {
                Some(reason) => {
                    self.table.remove(&channel, token);
                    Err(StoreError::Unavailable(reason.clone()))
                }
                None => Ok(()),
            };
            let registered = answer.is_ok();
            // The caller went away meanwhile: its sink must not stay.
            if done.send(answer).is_err() && registered {
                unwatch.push(RouterCommand::Unwatch { channel, token });
            }
        }
        // Channels nobody waits for any more but other sinks still want (a failed subscribe
        // of a lost channel) stay unconfirmed: the repair retries them.
        self.schedule_repair();
        if !unwatch.is_empty() {
            Box::pin(self.apply(unwatch)).await;
        }
    }

    /// SSUBSCRIBEs `channels`, one command per slot, and records the confirmations; sinks of
    /// channels that had been lost get `Resync`. Returns the groups that failed, with why.
    async fn subscribe(&mut self, channels: Vec<String>) -> Vec<(Vec<String>, String)> {
        let conn = &self.conn;
        let mut results = stream::iter(by_slot(channels).into_values())
            .map(|group| async move {
                let mut conn = conn.clone();
                let outcome = bounded("ssubscribe", conn.ssubscribe(&group)).await;
                (group, outcome)
            })
            .buffer_unordered(PARALLEL);
        let mut done = Vec::new();
        while let Some(result) = results.next().await {
            done.push(result);
        }
        drop(results);
        let mut failed = Vec::new();
        for (group, outcome) in done {
            match outcome {
                Ok(()) => self.confirmed(&group),
                Err(reason) => failed.push((group, reason)),
            }
        }
        failed
    }

    /// Redis confirmed these channels (of one slot).
    fn confirmed(&mut self, channels: &[String]) {
        let Some(first) = channels.first() else {
            return;
        };
        let owner = self.owners.owner(slot::of(first)).map(str::to_string);
        self.table.confirm(channels);
        for channel in channels {
            self.confirmed_under.insert(channel.clone(), owner.clone());
            if self.lost.remove(channel) {
                for sink in self.table.sinks(channel) {
                    deliver(sink, RemoteChange::Resync);
                }
            }
        }
    }

    /// SUNSUBSCRIBEs channels nobody wants any more, one command per slot. A failure is only
    /// logged: at worst messages keep arriving for a channel without sinks, and are dropped.
    async fn unsubscribe(&mut self, channels: Vec<String>) {
        if channels.is_empty() {
            return;
        }
        for channel in &channels {
            *self.leaving.entry(channel.clone()).or_default() += 1;
            self.confirmed_under.remove(channel);
            self.lost.remove(channel);
        }
        self.table.forget(&channels);
        let conn = &self.conn;
        let mut results = stream::iter(by_slot(channels).into_values())
            .map(|group| async move {
                let mut conn = conn.clone();
                bounded("sunsubscribe", conn.sunsubscribe(&group)).await
            })
            .buffer_unordered(PARALLEL);
        while let Some(result) = results.next().await {
            if let Err(reason) = result {
                log::debug!("{reason}");
            }
        }
    }

    fn on_push(&mut self, push: PushInfo) {
        match push.kind {
            PushKind::SMessage => self.dispatch(&push),
            PushKind::SUnsubscribe => {
                let Some(channel) = push_text(&push, 0) else {
                    return;
                };
                let channel = String::from_utf8_lossy(channel).into_owned();
                if let Some(due) = self.leaving.get_mut(&channel) {
                    *due -= 1;
                    if *due == 0 {
                        self.leaving.remove(&channel);
                    }
                } else if self.table.is_wanted(&channel) {
                    log::info!("redis dropped the subscription of {channel} (slot moved)");
                    self.mark_lost(vec![channel]);
                }
            }
            PushKind::Disconnection => {
                log::warn!("a redis cluster pub/sub connection was lost; resubscribing");
                self.mark_lost(self.table.wanted());
            }
            _ => {}
        }
    }

    /// Hands one sharded message to the sinks of its channel.
    fn dispatch(&self, push: &PushInfo) {
        let (Some(channel), Some(payload)) = (push_text(push, 0), push_text(push, 1)) else {
            return;
        };
        let channel = String::from_utf8_lossy(channel);
        dispatch(&channel, payload, &self.origin, self.table.sinks(&channel));
    }

    /// These channels' subscriptions are gone (or may be): subscribe them again soon.
    fn mark_lost(&mut self, channels: Vec<String>) {
        if channels.is_empty() {
            return;
        }
        self.table.forget(&channels);
        for channel in channels {
            self.confirmed_under.remove(&channel);
            self.lost.insert(channel);
        }
        crate::metrics::metrics().redis_reconnects.inc();
        self.backoff = MIN_RETRY;
        self.retry = Some(Instant::now());
    }

    /// Fetches the slot map, marks channels whose slot changed master, and repairs.
    async fn check(&mut self) {
        match SlotOwners::fetch(&mut self.conn).await {
            Ok(owners) => {
                if owners != self.owners {
                    self.owners = owners;
                    let moved: Vec<String> = self
                        .confirmed_under
                        .iter()
                        .filter(|(channel, under)| {
                            self.owners.owner(slot::of(channel)) != under.as_deref()
                        })
                        .map(|(channel, _)| channel.clone())
                        .collect();
                    if !moved.is_empty() {
                        log::info!("{} watched channels changed master", moved.len());
                    }
                    self.mark_lost(moved);
                }
            }
            Err(reason) => log::debug!("{reason}"),
        }
        if self.retry.is_none() && !self.table.unconfirmed().is_empty() {
            self.repair().await;
        }
    }

    /// Subscribes every wanted, unconfirmed channel, one slot at a time; schedules a retry
    /// for the slots that failed.
    async fn repair(&mut self) {
        self.lost.retain(|channel| self.table.is_wanted(channel));
        let had_lost = !self.lost.is_empty();
        let failed = self.subscribe(self.table.unconfirmed()).await;
        if let Some((_, reason)) = failed.first() {
            log::debug!("resubscribing {} slots failed: {reason}", failed.len());
        }
        if failed.is_empty() {
            if had_lost {
                log::info!("redis cluster subscriptions restored");
            }
            self.backoff = MIN_RETRY;
        } else {
            self.backoff = (self.backoff * 2).min(MAX_RETRY);
        }
        self.schedule_repair();
    }

    /// Arms the retry timer when some wanted channel is unconfirmed.
    fn schedule_repair(&mut self) {
        if self.retry.is_none() && !self.table.unconfirmed().is_empty() {
            self.retry = Some(Instant::now() + self.backoff);
        }
    }
}

/// Channels grouped per hash slot (one SSUBSCRIBE may only name channels of one slot).
fn by_slot(channels: Vec<String>) -> BTreeMap<u16, Vec<String>> {
    let mut groups: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for channel in channels {
        groups.entry(slot::of(&channel)).or_default().push(channel);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_grouped_per_slot() {
        let groups = by_slot(vec![
            "p:record-updates:{a}".into(),
            "p:record-updates:{b}".into(),
            "q:record-updates:{a}".into(),
        ]);
        assert_eq!(groups.len(), 2);
        let a = &groups[&slot::of("{a}")];
        assert_eq!(
            a,
            &vec![
                "p:record-updates:{a}".to_string(),
                "q:record-updates:{a}".to_string()
            ]
        );
    }
}
