//! Client requests: parsing a frame, decoding its command (`protocol::decode_command`, the one
//! decoder the fuzzer drives) and handing it to the file that serves it. Each request that is
//! answered later takes the frame's in-flight permit along and drops it with its reply
//! (`crate::inflight`).
//!
//! One file per command: `subscribe` (and unsubscribe), `publish`, `metadata`, `collections`,
//! `custom`; `mesh/refresh-token` is served with the token's expiry (`session/keepalive.rs`).
//! Requests for a record reach its actor through [`RecordRoute`](crate::actors::route::RecordRoute)
//! (`resolve_access` here).

mod collections;
mod custom;
mod metadata;
mod publish;
mod subscribe;

use super::SessionActor;
use super::large::ValueSize;
use super::subscriptions::ActiveSubscription;
use crate::access::Operation;
use crate::actors::record::{ApplyWrite, OnEnd, Subscribe, Unsubscribe};
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
}
