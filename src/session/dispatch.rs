//! Client requests: parsing a frame, checking it, and sending it on to the registry, a record
//! actor or a command handler. Each request that is answered later takes the frame's in-flight
//! permit along and drops it with its reply (`crate::inflight`).

use super::large::ValueSize;
use super::{ActiveSubscription, SessionActor};
use crate::access::Operation;
use crate::actors::record::{ApplyWrite, Subscribe, Unsubscribe};
use crate::actors::registry::Leased;
use crate::actors::route::Access;
use crate::commands::{CommandContext, Commands};
use crate::error::Error;
use crate::inflight::Permit;
use crate::model::{Mode, RecordId, Strategy};
use crate::protocol::{self, BadFrame, Command, Request, commands};
use actix::prelude::*;
use serde_json::{Number, Value, json};
use std::sync::Arc;

impl SessionActor {
    pub(super) fn handle_text(&mut self, text: &str, ctx: &mut Context<Self>) {
        self.value_size = ValueSize::Unmeasured {
            frame_len: text.len(),
        };
        self.handle_parsed(protocol::parse_request(text), ctx);
    }

    /// Handles a parsed frame; `value_size` says what is known of its value's size.
    pub(super) fn handle_parsed(
        &mut self,
        parsed: Result<Request, BadFrame>,
        ctx: &mut Context<Self>,
    ) {
        match parsed {
            Ok(request) => self.dispatch(request, ctx),
            Err(bad) => match bad.id {
                Some(id) => {
                    let command = bad.command.unwrap_or_default();
                    self.send(protocol::error_frame(
                        &id,
                        &command,
                        &Error::Invalid(bad.reason),
                    ));
                }
                None => self.frame_dropped(bad.reason),
            },
        }
    }

    fn dispatch(&mut self, request: Request, ctx: &mut Context<Self>) {
        let Request {
            id,
            command,
            payload,
        } = request;
        if protocol::is_keepalive(&command) {
            self.awaiting_pong = false;
            self.missed_pongs = 0;
            return;
        }
        if !self.limiter.allow() {
            self.reply(&id, &command, Err(Error::RateLimited));
            // Read nothing more until a request would be allowed again: a client sending far
            // over the rate costs one refusal per token, not one per frame.
            return self.pause_until_allowed(ctx);
        }
        let max_id = self.services.settings.max_record_id_bytes;
        let name = command;
        match protocol::decode_command(&name, payload, max_id) {
            Err(e) => self.reply(&id, &name, Err(e)),
            Ok(Command::Noop) => self.reply(&id, &name, Ok(Value::Bool(true))),
            Ok(Command::Subscribe {
                record_id,
                mode,
                since,
            }) => self.subscribe(id, record_id, mode, since, ctx),
            Ok(Command::Unsubscribe { record_id }) => self.unsubscribe(id, record_id),
            Ok(Command::Publish {
                record_id,
                value,
                strategy,
                expected_version,
            }) => self.publish(id, record_id, value, (strategy, expected_version), ctx),
            Ok(Command::GetMetadata) => {
                let metadata = self.connection.metadata();
                self.reply(&id, &name, Ok(json!({ "metadata": metadata })));
            }
            Ok(Command::SetMetadata(proposed)) => self.set_metadata(id, proposed, ctx),
            Ok(Command::RefreshToken { token }) => self.refresh_token(id, &token, ctx),
            Ok(Command::SubscribeCollection {
                collection_id,
                mode,
                held,
            }) => self.subscribe_collection(id, collection_id, (mode, held), ctx),
            Ok(Command::UnsubscribeCollection { collection_id }) => {
                self.unsubscribe_collection(id, collection_id)
            }
            Ok(Command::Custom(payload)) => self.custom_command(id, name, payload, ctx),
        }
    }

    fn subscribe(
        &mut self,
        id: Option<Number>,
        record_id: RecordId,
        mode: Mode,
        since: Option<Option<u64>>,
        ctx: &mut Context<Self>,
    ) {
        const CMD: &str = commands::SUBSCRIBE_RECORD;
        let max = self.services.settings.max_subscriptions;
        if !self.subscriptions.contains_key(&record_id) && self.watching() >= max {
            let error = Error::Limit(format!("a connection may watch at most {max} records"));
            return self.reply(&id, CMD, Err(error));
        }
        self.pending_subscribes += 1;
        let permit = self.permit.take();
        let request = (id, record_id.clone(), mode, since);
        self.resolve_access(
            &record_id,
            Operation::Read,
            ctx,
            move |act, resolved, ctx| act.subscribe_resolved(request, resolved, permit, ctx),
        );
    }

    /// Resolves access to `record_id` for `op` and hands the outcome to `then`: at once when
    /// the directory can decide, otherwise when the registry answers (a guard runs, or the
    /// actor starts on this thread), holding the session's later frames meanwhile so that its
    /// requests keep their order. A registry that does not answer is [`Error::Internal`].
    fn resolve_access(
        &mut self,
        record_id: &RecordId,
        op: Operation,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, Result<Leased, Error>, &mut Context<Self>) + 'static,
    ) {
        let route = self.services.records.route();
        match route.resolve(record_id, op, &self.connection) {
            Access::Now(resolved) => then(self, resolved, ctx),
            Access::Later(resolving) => resolving
                .into_actor(self)
                .map(move |resolved, act, ctx| then(act, resolved, ctx))
                .wait(ctx),
        }
    }

    fn subscribe_resolved(
        &mut self,
        request: (Option<Number>, RecordId, Mode, Option<Option<u64>>),
        resolved: Result<Leased, Error>,
        permit: Option<Permit>,
        ctx: &mut Context<Self>,
    ) {
        let result = match resolved {
            Ok(leased) => return self.finish_subscribe(request, leased, permit, ctx),
            Err(Error::Forbidden) => {
                log::debug!(
                    "session {}: subscribe to {:?} refused: not exposed for reading, or its read \
                     guard said no",
                    self.number,
                    request.1.as_str()
                );
                Ok(json!({ "success": false }))
            }
            Err(e) => Err(e),
        };
        self.pending_subscribes -= 1;
        self.reply(&request.0, commands::SUBSCRIBE_RECORD, result);
    }

    fn finish_subscribe(
        &mut self,
        (request_id, record_id, mode, since): (Option<Number>, RecordId, Mode, Option<Option<u64>>),
        leased: Leased,
        permit: Option<Permit>,
        ctx: &mut Context<Self>,
    ) {
        self.next_token += 1;
        let token = self.next_token;
        let message = Subscribe {
            session: self.number,
            mode,
            outbox: self.outbox.clone(),
            token,
            ended: ctx.address().recipient(),
            reply_to: request_id.clone(),
            since,
        };
        let addr = leased.addr.clone();
        // The metadata the read guard just ran with; if it changes before the subscription is
        // in place, the recheck of the others would miss this one.
        let seen = self.connection.metadata_changes();
        let route = self.services.records.route();
        route
            .send(&record_id, Some(leased), message)
            .into_actor(self)
            .map(move |result, act, ctx| {
                drop(permit);
                act.pending_subscribes -= 1;
                match result {
                    Ok(Ok(_)) => {
                        act.subscriptions
                            .insert(record_id.clone(), ActiveSubscription { addr, token });
                        if act.connection.metadata_changes() != seen {
                            act.check_read_access(vec![(record_id, token)], ctx);
                        }
                    }
                    Ok(Err(e)) | Err(e) => {
                        act.reply(&request_id, commands::SUBSCRIBE_RECORD, Err(e))
                    }
                }
            })
            .spawn(ctx);
    }

    fn unsubscribe(&mut self, id: Option<Number>, record_id: RecordId) {
        let was_subscribed = match self.subscriptions.remove(&record_id) {
            Some(active) => {
                active.addr.do_send(Unsubscribe {
                    session: self.number,
                    farewell: None,
                });
                true
            }
            None => false,
        };
        self.reply(
            &id,
            commands::UNSUBSCRIBE_RECORD,
            Ok(Value::Bool(was_subscribed)),
        );
    }

    fn publish(
        &mut self,
        id: Option<Number>,
        record_id: RecordId,
        value: Value,
        (strategy, expected_version): (Strategy, Option<u64>),
        ctx: &mut Context<Self>,
    ) {
        const CMD: &str = commands::PUBLISH_RECORD_UPDATE;
        let max = self.services.settings.max_value_bytes;
        if self.value_size.exceeds(&value, max) {
            let error = Error::Limit(format!("newValue exceeds {max} bytes"));
            crate::metrics::metrics().write(crate::metrics::Outcome::Refused);
            return self.reply(&id, CMD, Err(error));
        }
        let permit = self.permit.take();
        let message = ApplyWrite {
            value: Arc::new(value),
            strategy,
            expected_version,
        };
        let request = (id, record_id.clone(), message);
        self.resolve_access(
            &record_id,
            Operation::Write,
            ctx,
            move |act, resolved, ctx| act.publish_resolved(request, resolved, permit, ctx),
        );
    }

    fn publish_resolved(
        &mut self,
        (id, record_id, message): (Option<Number>, RecordId, ApplyWrite),
        resolved: Result<Leased, Error>,
        permit: Option<Permit>,
        ctx: &mut Context<Self>,
    ) {
        const CMD: &str = commands::PUBLISH_RECORD_UPDATE;
        let leased = match resolved {
            Ok(leased) => leased,
            Err(e) => {
                // A registry that did not answer refused nothing.
                if !matches!(e, Error::Internal) {
                    crate::metrics::metrics().write(crate::metrics::Outcome::Refused);
                }
                if matches!(e, Error::Forbidden) {
                    log::debug!(
                        "session {}: write to {:?} refused: not exposed as writable, or its \
                         write guard said no",
                        self.number,
                        record_id.as_str()
                    );
                }
                return self.reply(&id, CMD, Err(e));
            }
        };
        // Queued on the actor now, before the next request is read, to keep this client's
        // order; its lease keeps the actor from stopping until it has answered, so the
        // message cannot be dropped and resent behind a later one.
        let route = self.services.records.route();
        route
            .send(&record_id, Some(leased), message)
            .into_actor(self)
            .map(move |result, act, _| {
                let result = result.and_then(|r| r).map(|_| json!({ "success": true }));
                act.reply(&id, CMD, result);
                drop(permit);
            })
            .spawn(ctx);
    }

    fn set_metadata(&mut self, id: Option<Number>, payload: Value, ctx: &mut Context<Self>) {
        const CMD: &str = commands::SET_METADATA;
        let Some(hook) = self.services.metadata_hook.clone() else {
            return self.reply(
                &id,
                CMD,
                Err(Error::command(
                    "EFORBIDDEN",
                    "connection metadata can only be set by the server",
                )),
            );
        };
        let connection = self.connection.clone();
        let permit = self.permit.take();
        async move {
            let accepted = hook.check(connection.clone(), payload).await?;
            connection.set_metadata(accepted);
            Ok(json!({ "success": true }))
        }
        .into_actor(self)
        .map(move |result, act, ctx| {
            act.reply(&id, CMD, result);
            drop(permit);
            act.recheck_access(ctx);
        })
        .spawn(ctx);
    }

    fn custom_command(
        &mut self,
        id: Option<Number>,
        command: String,
        payload: Value,
        ctx: &mut Context<Self>,
    ) {
        let Some(handler) = self.services.commands.get(&command) else {
            let error = Error::UnknownCommand(command.clone());
            return self.reply(&id, &command, Err(error));
        };
        let context = CommandContext {
            connection: self.connection.clone(),
            records: self.services.records.clone(),
        };
        let permit = self.permit.take();
        Commands::call(handler, context, payload)
            .into_actor(self)
            .map(move |result, act, ctx| {
                act.reply(&id, &command, result);
                drop(permit);
                // A handler may have changed the connection's metadata.
                act.recheck_access(ctx);
            })
            .spawn(ctx);
    }
}
