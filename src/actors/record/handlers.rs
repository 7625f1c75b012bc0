//! The record actor's message handlers. Each one notes the use (`Lifecycle::used`), then
//! hands its request to `Core` and carries out the effects, or answers from `Core`'s state.

use super::RecordActor;
use super::answer::Answer;
use super::fanout::Subscriber;
use super::messages::{
    ApplyWrite, DeleteRecord, GetHistory, GetSnapshot, RemoteChanged, ResyncSubscriber,
    RetireWhenIdle, Subscribe, Unsubscribe, UpdateRecord,
};
use super::queue::{Edit, QueuedWrite, WriteOutcome};
use super::state::{Joining, Resume};
use crate::actors::clock::Tick;
use crate::error::Error;
use crate::metrics::metrics;
use crate::model::{Frame, Version, Versioned, full_frame, patch_frame};
use crate::outbox::PushError;
use crate::protocol::{self, commands};
use crate::store::Stored;
use actix::prelude::*;
use serde_json::{Number, Value};

/// The reply to a subscribe, as `joining` decided.
fn joining_reply(request_id: &Number, joining: &Joining, record: &Stored) -> Frame {
    const CMD: &str = commands::SUBSCRIBE_RECORD;
    match joining {
        Joining::Resumed { since, .. } => {
            let reply = protocol::ResumeReply {
                success: true,
                resumed: true,
                version: *since,
            };
            protocol::reply_frame(request_id, CMD, &reply)
        }
        Joining::Snapshot { resumed } => {
            let reply = protocol::SubscribeReply {
                success: true,
                record: record.value.as_deref().unwrap_or(&Value::Null),
                version: record.version,
                resumed: *resumed,
            };
            protocol::reply_frame(request_id, CMD, &reply)
        }
    }
}

impl Handler<Subscribe> for RecordActor {
    type Result = Result<Option<Versioned>, Error>;

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Context<Self>) -> Self::Result {
        self.lifecycle.used();
        let core = self.core()?;
        let joining = core.join(msg.since, msg.mode);
        let record = core.record();
        if let Some(request_id) = &msg.reply_to {
            let _ = msg.outbox.push(joining_reply(request_id, &joining, record));
        }
        if let Joining::Resumed { changes, .. } = &joining {
            // The missed versions go out now, ahead of any newer update.
            metrics().pushes.inc_by(changes.len() as u64);
            for change in changes {
                let frame = patch_frame(&self.id, &*change.patch, change.version);
                let _ = msg.outbox.push_update(&self.id, frame);
            }
        }
        let snapshot = record.versioned();
        let subscriber = Subscriber::new(msg.mode, msg.outbox, msg.token, msg.ended);
        self.subscribers.insert(msg.session, subscriber);
        Ok(snapshot)
    }
}

impl Handler<GetHistory> for RecordActor {
    type Result = Result<Option<(Version, Vec<crate::store::Change>)>, Error>;

    fn handle(&mut self, msg: GetHistory, _ctx: &mut Context<Self>) -> Self::Result {
        self.lifecycle.used();
        let core = self.core()?;
        Ok(match core.resume(msg.since) {
            Resume::Changes(changes) => Some((core.record().version, changes)),
            Resume::Full => None,
        })
    }
}

impl Handler<Unsubscribe> for RecordActor {
    type Result = bool;

    fn handle(&mut self, msg: Unsubscribe, _ctx: &mut Context<Self>) -> bool {
        self.lifecycle.used();
        let Some(subscriber) = self.subscribers.remove(msg.session) else {
            return false;
        };
        if let Some(frame) = msg.farewell {
            subscriber.outbox.forget_stale(&self.id);
            let _ = subscriber.outbox.push(frame);
        }
        true
    }
}

/// Who a write comes from, as its rules see it.
struct Source {
    /// The client writing (its value guard runs); `None`: the server.
    writer: Option<crate::connection::Connection>,
    /// The server opted out of the schema.
    skip_schema: bool,
}

impl RecordActor {
    /// Queues a write; the answer comes when the store has taken it (or refused).
    fn queue_write(
        &mut self,
        mut change: Edit,
        expected_version: Option<Version>,
        from: Source,
        ctx: &mut Context<Self>,
    ) -> Answer<WriteOutcome> {
        self.lifecycle.used();
        if self.core.is_none() {
            return Answer::ready(Err(Error::Unavailable));
        }
        let admitted = self.admit(&mut change);
        let outcome = Answer::pending();
        let reply = outcome.keep();
        let write = QueuedWrite {
            change,
            queued_at: super::now(),
            expected_version,
            writer: from.writer,
            skip_schema: from.skip_schema,
            approved: None,
            asks: 0,
            reply,
        };
        self.step(ctx, |core, _| match admitted {
            Ok(()) => core.write(write),
            Err(refused) => core.refuse(write, refused),
        });
        // Dropped unanswered (the actor went away with the call in flight), it answers
        // `Error::Unknown`.
        outcome
    }
}

impl Handler<ApplyWrite> for RecordActor {
    type Result = Answer<WriteOutcome>;

    fn handle(&mut self, msg: ApplyWrite, ctx: &mut Context<Self>) -> Self::Result {
        let change = Edit::Value {
            value: msg.value,
            strategy: msg.strategy,
        };
        let from = Source {
            writer: msg.writer,
            skip_schema: msg.skip_schema,
        };
        self.queue_write(change, msg.expected_version, from, ctx)
    }
}

impl Handler<UpdateRecord> for RecordActor {
    type Result = Answer<WriteOutcome>;

    fn handle(&mut self, msg: UpdateRecord, ctx: &mut Context<Self>) -> Self::Result {
        let from = Source {
            writer: None,
            skip_schema: false,
        };
        self.queue_write(Edit::Update(msg.update), msg.expected_version, from, ctx)
    }
}

impl Handler<DeleteRecord> for RecordActor {
    type Result = Answer<Option<Version>>;

    fn handle(&mut self, msg: DeleteRecord, ctx: &mut Context<Self>) -> Self::Result {
        self.lifecycle.used();
        if self.core.is_none() {
            return Answer::ready(Err(Error::Unavailable));
        }
        let outcome = Answer::pending();
        let reply = outcome.keep();
        self.step(ctx, |core, _| core.delete(reply, msg.if_version));
        outcome
    }
}

impl Handler<RemoteChanged> for RecordActor {
    type Result = ();

    fn handle(&mut self, msg: RemoteChanged, ctx: &mut Context<Self>) {
        self.step(ctx, |core, _| core.remote(msg.change));
    }
}

impl Handler<ResyncSubscriber> for RecordActor {
    type Result = bool;

    fn handle(&mut self, msg: ResyncSubscriber, _ctx: &mut Context<Self>) -> bool {
        let Some(subscriber) = self.subscribers.get(msg.session) else {
            return false;
        };
        let frame = match self.core.as_ref().map(|core| core.record()) {
            Some(Stored {
                value: Some(value),
                version,
            }) => full_frame(&self.id, value, *version),
            // Absent values produce no updates, so nothing can be stale; nothing to send.
            _ => return true,
        };
        metrics().resyncs.inc();
        if subscriber.outbox.resync(&self.id, frame) == Err(PushError::Closed) {
            self.subscribers.remove(msg.session);
        }
        true
    }
}

impl Handler<GetSnapshot> for RecordActor {
    type Result = Result<Option<Versioned>, Error>;

    fn handle(&mut self, _msg: GetSnapshot, _ctx: &mut Context<Self>) -> Self::Result {
        self.lifecycle.used();
        Ok(self.core()?.record().versioned())
    }
}

impl Handler<RetireWhenIdle> for RecordActor {
    type Result = ();

    fn handle(&mut self, _: RetireWhenIdle, ctx: &mut Context<Self>) {
        let next = self.lifecycle.leave();
        self.follow(next, ctx);
    }
}

impl Handler<Tick> for RecordActor {
    type Result = ();

    /// Only periods: record actors join their clock without a shutdown signal.
    fn handle(&mut self, _: Tick, ctx: &mut Context<Self>) {
        self.linger_tick(ctx);
    }
}
