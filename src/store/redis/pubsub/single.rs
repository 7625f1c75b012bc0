//! The single-node pub/sub task behind [`Router`]: it owns the dedicated pub/sub connection
//! and hands each record's changes to the sinks watching it.
//!
//! Who talks to it: [`Router::watch`] and [`Router::unwatch`] send commands over a channel;
//! Redis sends messages over the pub/sub connection. The task alone owns the [`Subscriptions`]
//! table, so there is no lock.
//!
//! What stays true:
//! - A watch resolves only after Redis confirmed the SUBSCRIBE (or the channel already was
//!   subscribed), so anything published later reaches the sink.
//! - A channel is subscribed while it has a sink and unsubscribed when its last sink goes.
//! - When the connection ends or stops answering pings, the task reconnects with backoff
//!   (50 ms doubling to 2 s), subscribes every channel again, and only then sends
//!   [`RemoteChange::Resync`] to every sink. Meanwhile watches fail at once (`Unavailable`)
//!   and unwatches still take effect.
//!
//! Commands travel on an unbounded channel: there are at most two per watch (one when a
//! `RecordActor` starts, one when it stops), so their number is bounded by actor churn, and
//! `unwatch` must never be dropped or wait.

use super::subscriptions::{ChannelChanges, Subscriptions};
use super::{Router, RouterCommand, bounded, deliver, dispatch, take_batch, take_commands};
use crate::store::redis::CONNECT_TIMEOUT;
use crate::store::{RemoteChange, StoreError};
use futures_util::StreamExt;
use redis::aio::{PubSub, PubSubSink};
use redis::{Client, Msg};
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep, timeout};

/// First wait before reconnecting; doubled after each failed attempt.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest wait between reconnection attempts: bounds how stale watchers are after Redis
/// comes back.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How often an idle connection is checked. A peer that vanished without closing TCP is
/// noticed within this plus [`RESPONSE_TIMEOUT`].
const PING_EVERY: Duration = Duration::from_secs(5);
/// Most channels in one SUBSCRIBE, so resubscribing many records does not build one huge
/// command.
const SUBSCRIBE_CHUNK: usize = 1000;
/// Why [`RouterTask::serve`] returned.
enum Ended {
    /// Every store handle is gone: stop.
    Closed,
    /// The connection failed: reconnect.
    Lost(String),
}

impl Router {
    /// Opens the pub/sub connection and spawns the task on the current tokio runtime.
    ///
    /// Fails with [`StoreError::Unavailable`] when Redis cannot be reached.
    /// `origin` is the tag this instance's writes carry (see `dispatch`).
    pub async fn start(client: Client, origin: String) -> Result<Router, StoreError> {
        let pubsub = open(&client).await.map_err(StoreError::Unavailable)?;
        let (commands, receiver) = mpsc::unbounded_channel();
        let task = RouterTask {
            client,
            commands: receiver,
            table: Subscriptions::default(),
            origin,
        };
        tokio::spawn(task.run(pubsub));
        Ok(Router { commands })
    }
}

/// Opens a pub/sub connection within [`CONNECT_TIMEOUT`].
async fn open(client: &Client) -> Result<PubSub, String> {
    match timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await {
        Ok(Ok(pubsub)) => Ok(pubsub),
        Ok(Err(err)) => Err(format!("redis pub/sub connect: {err}")),
        Err(_) => Err("redis pub/sub connect: timed out".into()),
    }
}

/// The task's state.
struct RouterTask {
    /// Opens new pub/sub connections after a loss.
    client: Client,
    commands: mpsc::UnboundedReceiver<RouterCommand>,
    table: Subscriptions,
    /// This instance's tag on what it publishes (see `dispatch`).
    origin: String,
}

impl RouterTask {
    /// Serves connection after connection until every store handle is gone.
    async fn run(mut self, first: PubSub) {
        let mut next = Some(first);
        let mut resync = false;
        loop {
            let pubsub = match next.take() {
                Some(pubsub) => pubsub,
                None => match self.reconnect().await {
                    Some(pubsub) => pubsub,
                    None => return,
                },
            };
            match self.serve(pubsub, resync).await {
                Ended::Closed => return,
                Ended::Lost(reason) => {
                    log::warn!("redis pub/sub connection lost ({reason}); reconnecting");
                    self.table.connection_lost();
                    resync = true;
                }
            }
        }
    }

    /// Routes messages and commands over one connection until it fails.
    async fn serve(&mut self, pubsub: PubSub, resync: bool) -> Ended {
        let (mut conn, mut stream) = pubsub.split();
        if resync {
            let channels = self.table.wanted();
            if let Err(reason) = subscribe(&mut conn, &channels).await {
                return Ended::Lost(reason);
            }
            self.table.confirm(&channels);
            crate::metrics::metrics().redis_reconnects.inc();
            log::info!(
                "redis pub/sub reconnected; {} record channels watched again",
                channels.len()
            );
            // Only now: a sink that reloads on `Resync` cannot miss a later change.
            for each in self.table.all_sinks() {
                deliver(each, RemoteChange::Resync);
            }
        }
        let mut ping = interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = self.commands.recv() => {
                    let Some(command) = command else { return Ended::Closed };
                    let batch = take_batch(&mut self.commands, command);
                    if let Err(reason) = self.apply(&mut conn, batch).await {
                        return Ended::Lost(reason);
                    }
                }
                message = stream.next() => match message {
                    Some(message) => self.dispatch(&message),
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

    /// Applies a batch of commands to the table and to Redis, then answers the watches.
    ///
    /// Fails with log text when the connection failed; the watches that needed it have been
    /// answered with an error and their sinks removed.
    async fn apply(
        &mut self,
        conn: &mut PubSubSink,
        mut batch: Vec<RouterCommand>,
    ) -> Result<(), String> {
        // Loops only to clean up after watches whose callers went away meanwhile.
        loop {
            let (touched, waiting) = take_commands(&mut self.table, batch.drain(..));
            let plan = self.table.plan(touched);
            let outcome = self.execute(conn, &plan).await;
            let failed: HashSet<&String> = match outcome {
                Ok(()) => HashSet::new(),
                Err(_) => plan.subscribe.iter().collect(),
            };
            for (channel, token, done) in waiting {
                let answer = if failed.contains(&channel) {
                    self.table.remove(&channel, token);
                    let reason = outcome.as_ref().err().cloned().unwrap_or_default();
                    Err(StoreError::Unavailable(reason))
                } else {
                    Ok(())
                };
                let registered = answer.is_ok();
                if done.send(answer).is_err() && registered {
                    batch.push(RouterCommand::Unwatch { channel, token });
                }
            }
            outcome?;
            if batch.is_empty() {
                return Ok(());
            }
        }
    }

    /// Sends the plan's UNSUBSCRIBE and SUBSCRIBE and records what Redis confirmed.
    async fn execute(
        &mut self,
        conn: &mut PubSubSink,
        plan: &ChannelChanges,
    ) -> Result<(), String> {
        if plan.is_empty() {
            return Ok(());
        }
        if !plan.unsubscribe.is_empty() {
            bounded("unsubscribe", conn.unsubscribe(&plan.unsubscribe)).await?;
            self.table.forget(&plan.unsubscribe);
        }
        subscribe(conn, &plan.subscribe).await?;
        self.table.confirm(&plan.subscribe);
        Ok(())
    }

    /// Hands one message to the sinks of its channel.
    fn dispatch(&self, message: &Msg) {
        let channel = message.get_channel_name();
        dispatch(
            channel,
            message.get_payload_bytes(),
            &self.origin,
            self.table.sinks(channel),
        );
    }

    /// Opens a new connection, waiting with backoff between attempts. Keeps handling
    /// commands meanwhile: watches fail at once, unwatches take effect. `None` once every
    /// store handle is gone.
    async fn reconnect(&mut self) -> Option<PubSub> {
        let mut delay = MIN_BACKOFF;
        loop {
            let wait = sleep(delay);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    command = self.commands.recv() => self.apply_offline(command?),
                }
            }
            // A clone shares the client's configuration; the attempt must not borrow `self`
            // while commands are handled beside it.
            let client = self.client.clone();
            let attempt = async move { open(&client).await };
            tokio::pin!(attempt);
            let result = loop {
                tokio::select! {
                    result = &mut attempt => break result,
                    command = self.commands.recv() => self.apply_offline(command?),
                }
            };
            match result {
                Ok(pubsub) => return Some(pubsub),
                Err(reason) => log::debug!("redis pub/sub reconnect failed: {reason}"),
            }
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }

    /// Handles a command while there is no connection.
    fn apply_offline(&mut self, command: RouterCommand) {
        match command {
            RouterCommand::Watch { done, .. } => {
                let _ = done.send(Err(StoreError::Unavailable(
                    "redis pub/sub connection is down; reconnecting".into(),
                )));
            }
            RouterCommand::Unwatch { channel, token } => self.table.remove(&channel, token),
        }
    }
}

/// SUBSCRIBEs `channels` in chunks, each confirmed by Redis before the next is sent.
async fn subscribe(conn: &mut PubSubSink, channels: &[String]) -> Result<(), String> {
    for chunk in channels.chunks(SUBSCRIBE_CHUNK) {
        bounded("subscribe", conn.subscribe(chunk)).await?;
    }
    Ok(())
}
