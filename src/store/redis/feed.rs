//! The change feed's subscriber: one task per [`RedisStore`](super::RedisStore) that holds a
//! classic `SUBSCRIBE` to `<prefix>collection:record-change` while at least one
//! [`Store::watch_all`](super::Store::watch_all) sink is registered, and calls every sink with
//! each id published there.
//!
//! It has a connection of its own rather than a place in the record router (`pubsub`):
//! - the messages are bare ids for every feed sink, not record changes for one record's sinks;
//! - on a cluster the record router speaks sharded pub/sub, one slot per command, while the
//!   feed is one classic channel that every node delivers (a classic `PUBLISH` is broadcast
//!   over the cluster bus), so one connection to any node hears every script on every slot;
//! - it connects only when someone watches and disconnects when the last sink goes: an
//!   instance without collections holds no extra connection, and the record router's
//!   reconnects and resyncs are not tied to it.
//!
//! What stays true, as in the record router: a watch resolves once Redis confirmed the
//! SUBSCRIBE (or it already was). A lost connection (closed, or a ping unanswered) is reopened
//! with backoff, trying each configured node in turn, and every sink gets
//! [`FeedEvent::Resync`] only once the channel is subscribed again, so a reload started on it
//! misses nothing later. Meanwhile watches fail at once (`Unavailable`) and unwatches take
//! effect. Commands travel on an unbounded channel: at most two per `watch_all`, like the
//! router's.

use super::CONNECT_TIMEOUT;
use super::pubsub::bounded;
use crate::model::RecordId;
use crate::store::{FeedEvent, FeedSink, StoreError, WatchToken, deliver_feed};
use futures_util::StreamExt;
use redis::Client;
use redis::aio::PubSub;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep, timeout};

/// First wait before reconnecting; doubled after each failed round of every node.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait between reconnection rounds: bounds how long collections stay stale after
/// Redis comes back.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often the connection is checked: a peer that vanished without closing TCP is noticed
/// within this plus the response timeout.
const PING_EVERY: Duration = Duration::from_secs(5);

/// Handle on the feed task; clones share it. The task ends when the last clone is dropped.
#[derive(Clone)]
pub(super) struct Feed {
    commands: mpsc::UnboundedSender<FeedCommand>,
}

enum FeedCommand {
    /// Register a sink once the channel is subscribed.
    Watch {
        token: WatchToken,
        sink: FeedSink,
        /// Answered once the channel is confirmed (or could not be).
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Remove one sink; the connection goes with the last.
    Unwatch { token: WatchToken },
}

impl Feed {
    /// Spawns the task on the current tokio runtime; it connects (to `nodes`, in turn) only
    /// when the first sink is registered. `nodes` must not be empty.
    pub fn start(nodes: Vec<Client>, channel: String) -> Feed {
        let (commands, receiver) = mpsc::unbounded_channel();
        let task = FeedTask {
            nodes,
            first: 0,
            channel,
            commands: receiver,
            sinks: Vec::new(),
        };
        tokio::spawn(task.run());
        Feed { commands }
    }

    /// Registers `sink` and waits until Redis confirmed the subscription.
    pub async fn watch(&self, sink: FeedSink) -> Result<WatchToken, StoreError> {
        let token = WatchToken::next();
        let (done, confirmed) = oneshot::channel();
        self.commands
            .send(FeedCommand::Watch { token, sink, done })
            .map_err(|_| stopped())?;
        // If this future is dropped before the answer, the task sees the closed `done` and
        // removes the sink itself.
        confirmed.await.map_err(|_| stopped())??;
        Ok(token)
    }

    /// Removes the sink registered under `token`.
    pub fn unwatch(&self, token: WatchToken) {
        // A stopped task holds no sinks: nothing left to remove.
        let _ = self.commands.send(FeedCommand::Unwatch { token });
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("redis change feed task has stopped".into())
}

/// Why [`FeedTask::serve`] or [`FeedTask::reconnect`] returned.
enum Ended {
    /// Every store handle is gone: stop.
    Closed,
    /// The last sink left: drop the connection and wait for a watch.
    Idle,
    /// The connection failed: reconnect.
    Lost(String),
}

struct FeedTask {
    /// Every node that may serve the subscription (one node; a cluster's configured ones).
    nodes: Vec<Client>,
    /// The node tried first: the last one that worked.
    first: usize,
    channel: String,
    commands: mpsc::UnboundedReceiver<FeedCommand>,
    sinks: Vec<(WatchToken, FeedSink)>,
}

impl FeedTask {
    async fn run(mut self) {
        loop {
            // Idle: no sink, no connection, until a watch comes.
            let Some(command) = self.commands.recv().await else {
                return;
            };
            let FeedCommand::Watch { token, sink, done } = command else {
                continue;
            };
            let mut pubsub = match open(&self.nodes, self.first, &self.channel).await {
                Ok((pubsub, node)) => {
                    self.first = node;
                    pubsub
                }
                Err(reason) => {
                    let _ = done.send(Err(StoreError::Unavailable(reason)));
                    continue;
                }
            };
            self.add(token, sink, done);
            loop {
                if self.sinks.is_empty() {
                    break;
                }
                let reason = match self.serve(pubsub).await {
                    Ended::Closed => return,
                    Ended::Idle => break,
                    Ended::Lost(reason) => reason,
                };
                log::warn!("redis change feed connection lost ({reason}); reconnecting");
                pubsub = match self.reconnect().await {
                    Ok(pubsub) => pubsub,
                    Err(Ended::Closed) => return,
                    Err(_) => break,
                };
                crate::metrics::metrics().redis_reconnects.inc();
                log::info!("redis change feed subscribed again; collections reload");
                // Only now: a reload started on `Resync` cannot miss a later change.
                for (_, sink) in &self.sinks {
                    deliver_feed(sink, FeedEvent::Resync);
                }
            }
        }
    }

    /// Registers a sink on a confirmed subscription and answers its watch.
    fn add(
        &mut self,
        token: WatchToken,
        sink: FeedSink,
        done: oneshot::Sender<Result<(), StoreError>>,
    ) {
        self.sinks.push((token, sink));
        // The caller went away meanwhile: its sink must not stay.
        if done.send(Ok(())).is_err() {
            self.remove(token);
        }
    }

    fn remove(&mut self, token: WatchToken) {
        self.sinks.retain(|(t, _)| *t != token);
    }

    /// Delivers messages and handles commands over one subscribed connection until it
    /// fails, the last sink leaves or every store handle is gone.
    async fn serve(&mut self, pubsub: PubSub) -> Ended {
        let (mut conn, mut stream) = pubsub.split();
        let mut ping = interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    None => return Ended::Closed,
                    Some(FeedCommand::Watch { token, sink, done }) => self.add(token, sink, done),
                    Some(FeedCommand::Unwatch { token }) => {
                        self.remove(token);
                        if self.sinks.is_empty() {
                            return Ended::Idle;
                        }
                    }
                },
                message = stream.next() => match message {
                    Some(message) => self.dispatch(message.get_payload_bytes()),
                    None => return Ended::Lost("connection closed".into()),
                },
                _ = ping.tick() => {
                    if let Err(reason) = bounded("ping", conn.ping::<redis::Value>()).await {
                        return Ended::Lost(reason);
                    }
                }
            }
        }
    }

    /// Hands one published id to every sink.
    fn dispatch(&self, payload: &[u8]) {
        let id = std::str::from_utf8(payload)
            .ok()
            .and_then(|text| RecordId::parse(text, usize::MAX).ok());
        let Some(id) = id else {
            log::warn!(
                "ignoring a message on {} that is not a record id ({} bytes)",
                self.channel,
                payload.len()
            );
            return;
        };
        for (_, sink) in &self.sinks {
            deliver_feed(sink, FeedEvent::Changed(id.clone()));
        }
    }

    /// Opens and subscribes a new connection, waiting with backoff between rounds. Handles
    /// commands meanwhile: watches fail at once, unwatches take effect. `Err(Idle)` once the
    /// last sink left, `Err(Closed)` once every store handle is gone.
    async fn reconnect(&mut self) -> Result<PubSub, Ended> {
        let mut delay = MIN_BACKOFF;
        loop {
            let wait = sleep(delay);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    command = self.commands.recv() => self.apply_offline(command)?,
                }
            }
            // Clones, so the attempt does not borrow `self` while commands are handled.
            let (nodes, channel) = (self.nodes.clone(), self.channel.clone());
            let first = self.first;
            let attempt = async move { open(&nodes, first, &channel).await };
            tokio::pin!(attempt);
            let result = loop {
                tokio::select! {
                    result = &mut attempt => break result,
                    command = self.commands.recv() => self.apply_offline(command)?,
                }
            };
            match result {
                Ok((pubsub, node)) => {
                    self.first = node;
                    return Ok(pubsub);
                }
                Err(reason) => log::debug!("redis change feed reconnect failed: {reason}"),
            }
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }

    /// Handles a command while there is no connection.
    fn apply_offline(&mut self, command: Option<FeedCommand>) -> Result<(), Ended> {
        match command {
            None => return Err(Ended::Closed),
            Some(FeedCommand::Watch { done, .. }) => {
                let _ = done.send(Err(StoreError::Unavailable(
                    "redis change feed connection is down; reconnecting".into(),
                )));
            }
            Some(FeedCommand::Unwatch { token }) => self.remove(token),
        }
        if self.sinks.is_empty() {
            return Err(Ended::Idle);
        }
        Ok(())
    }
}

/// Opens a pub/sub connection and subscribes `channel`, trying each node once from `first`;
/// returns the connection and the node that served it, or why the last attempt failed.
async fn open(nodes: &[Client], first: usize, channel: &str) -> Result<(PubSub, usize), String> {
    let mut failure = String::from("no redis node to subscribe on");
    for step in 0..nodes.len() {
        let node = (first + step) % nodes.len();
        let mut pubsub = match timeout(CONNECT_TIMEOUT, nodes[node].get_async_pubsub()).await {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(err)) => {
                failure = format!("redis change feed connect: {err}");
                continue;
            }
            Err(_) => {
                failure = "redis change feed connect: timed out".into();
                continue;
            }
        };
        match bounded("subscribe", pubsub.subscribe(channel)).await {
            Ok(()) => return Ok((pubsub, node)),
            Err(reason) => failure = reason,
        }
    }
    Err(failure)
}
