//! Changes of watched records over Redis pub/sub: the [`Router`] handle a [`RedisStore`]
//! watches through, and the task behind it: `single` on one node (classic `SUBSCRIBE`),
//! `cluster` on a Redis Cluster (sharded `SSUBSCRIBE` per slot owner). Both keep their wanted
//! channels in a `subscriptions` table and apply commands in batches with the helpers here.
//!
//! [`RedisStore`]: super::RedisStore

mod cluster;
mod single;
mod subscriptions;

pub(super) use cluster::start as start_cluster;

use crate::store::changes::{parse_change, published_by};
use crate::store::redis::RESPONSE_TIMEOUT;
use crate::store::{ChangeSink, RemoteChange, StoreError, WatchToken};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use subscriptions::Subscriptions;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

/// Most queued commands handled together; their SUBSCRIBEs share one round trip.
const BATCH: usize = 256;

/// Handle on the router task (either one); clones share it. The task ends when the last clone is dropped.
#[derive(Clone)]
pub(super) struct Router {
    commands: mpsc::UnboundedSender<RouterCommand>,
}

/// What the store asks of the task (of either router: this one or the cluster's).
enum RouterCommand {
    /// Register a sink and confirm its channel's subscription.
    Watch {
        channel: String,
        token: WatchToken,
        sink: ChangeSink,
        /// Answered once the channel is confirmed (or could not be).
        done: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Remove one sink; the channel goes when its last sink does.
    Unwatch { channel: String, token: WatchToken },
}

/// `first` plus whatever else is already queued, up to [`BATCH`] (both routers apply
/// commands in batches, so a burst of watches costs one round of subscribes).
fn take_batch(
    commands: &mut mpsc::UnboundedReceiver<RouterCommand>,
    first: RouterCommand,
) -> Vec<RouterCommand> {
    let mut batch = vec![first];
    while batch.len() < BATCH {
        match commands.try_recv() {
            Ok(command) => batch.push(command),
            Err(_) => break,
        }
    }
    batch
}

/// A watch waiting for its channel's confirmation.
type Waiting = (String, WatchToken, oneshot::Sender<Result<(), StoreError>>);

/// Applies a batch of commands to the table of wanted channels; answers the channels they
/// touched (for the table's plan) and the watches waiting for a confirmation. Shared by the
/// single-node and the cluster router.
fn take_commands(
    table: &mut Subscriptions,
    batch: impl IntoIterator<Item = RouterCommand>,
) -> (Vec<String>, Vec<Waiting>) {
    let mut touched = Vec::new();
    let mut waiting = Vec::new();
    for command in batch {
        match command {
            RouterCommand::Watch {
                channel,
                token,
                sink,
                done,
            } => {
                table.add(channel.clone(), token, sink);
                touched.push(channel.clone());
                waiting.push((channel, token, done));
            }
            RouterCommand::Unwatch { channel, token } => {
                table.remove(&channel, token);
                touched.push(channel);
            }
        }
    }
    (touched, waiting)
}

impl Router {
    /// A handle on a task that serves `commands` (the cluster router's).
    fn new(commands: mpsc::UnboundedSender<RouterCommand>) -> Router {
        Router { commands }
    }

    /// Registers `sink` for `channel` and waits until Redis confirmed the subscription.
    pub async fn watch(&self, channel: String, sink: ChangeSink) -> Result<WatchToken, StoreError> {
        let token = WatchToken::next();
        let (done, confirmed) = oneshot::channel();
        self.commands
            .send(RouterCommand::Watch {
                channel,
                token,
                sink,
                done,
            })
            .map_err(|_| stopped())?;
        // If this future is dropped before the answer, the task notices the closed
        // `done` and removes the sink itself.
        confirmed.await.map_err(|_| stopped())??;
        Ok(token)
    }

    /// Removes the sink registered under `token`.
    pub fn unwatch(&self, channel: String, token: WatchToken) {
        // A stopped task holds no sinks, so there is nothing left to remove.
        let _ = self
            .commands
            .send(RouterCommand::Unwatch { channel, token });
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("redis pub/sub router has stopped".into())
}

/// Runs `request` within [`RESPONSE_TIMEOUT`], flattening both failures into log text.
pub(super) async fn bounded<T>(
    what: &str,
    request: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match timeout(RESPONSE_TIMEOUT, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(format!("redis {what}: {err}")),
        Err(_) => Err(format!("redis {what}: timed out")),
    }
}

/// Hands a message on `channel` to the channel's `sinks`, unless this instance published it
/// (tagged `origin`): its record actor applied that write already and would ignore it, so it
/// is dropped before it is parsed.
fn dispatch<'a>(
    channel: &str,
    payload: &[u8],
    origin: &str,
    mut sinks: impl Iterator<Item = &'a ChangeSink>,
) {
    if published_by(payload, origin) {
        return;
    }
    // A message can still arrive just after its channel's last sink left.
    let Some(first) = sinks.next() else {
        return;
    };
    match parse_change(payload) {
        Ok(change) => {
            for each in sinks {
                deliver(each, change.clone());
            }
            deliver(first, change);
        }
        Err(err) => log::warn!("ignoring a malformed message on {channel}: {err}"),
    }
}

/// Hands one change to one sink; a panicking sink loses the change but not the router.
fn deliver(sink: &ChangeSink, change: RemoteChange) {
    if catch_unwind(AssertUnwindSafe(|| sink(change))).is_err() {
        log::error!("a record change sink panicked; the change was dropped for it");
    }
}
