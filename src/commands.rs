//! Custom commands: library users register `name → handler`; sessions dispatch to them.

use crate::connection::Connection;
use crate::error::Error;
use crate::records::Records;
use actix::prelude::*;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a handler returns: the reply payload, or an error sent as an error payload.
pub type CommandResult = Result<Value, Error>;

type CommandFuture = Pin<Box<dyn Future<Output = CommandResult> + Send>>;
type HandlerFn = dyn Fn(CommandContext, Value) -> CommandFuture + Send + Sync;

/// What a handler knows about the request.
#[derive(Clone)]
pub struct CommandContext {
    /// The calling connection (id and metadata; server code may change the metadata).
    pub connection: Connection,
    /// The server, to read and write records.
    pub records: Records,
}

/// A request for a user actor that serves a command (see [`Commands::actor`]).
pub struct CommandRequest {
    /// Who asked.
    pub context: CommandContext,
    /// The request payload.
    pub payload: Value,
}

/// The table of custom commands. Built before the server starts, read-only afterwards.
#[derive(Clone, Default)]
pub struct Commands {
    handlers: HashMap<String, Arc<HandlerFn>>,
}

impl Commands {
    /// Registers an async handler. A later registration of the same name replaces it.
    pub fn register<F, Fut>(&mut self, name: impl Into<String>, handler: F)
    where
        F: Fn(CommandContext, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = CommandResult> + Send + 'static,
    {
        self.handlers.insert(
            name.into(),
            Arc::new(move |ctx, payload| Box::pin(handler(ctx, payload))),
        );
    }

    /// Registers a command served by a user actor: each request becomes one `M` message.
    pub fn actor<A, M>(&mut self, name: impl Into<String>, addr: Addr<A>)
    where
        A: Actor + Handler<M>,
        A::Context: actix::dev::ToEnvelope<A, M>,
        M: Message<Result = CommandResult> + From<CommandRequest> + Send + 'static,
    {
        self.register(name, move |context, payload| {
            let request = addr.send(M::from(CommandRequest { context, payload }));
            async move { request.await.map_err(|_| Error::Internal)? }
        });
    }

    /// The handler for `name`, if registered.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<HandlerFn>> {
        self.handlers.get(name).cloned()
    }

    /// Runs a handler, turning a panic into an internal error.
    pub(crate) fn call(
        handler: Arc<HandlerFn>,
        context: CommandContext,
        payload: Value,
    ) -> impl Future<Output = CommandResult> {
        let run = crate::app_code::guarded(move || handler(context, payload));
        async move {
            run.await.unwrap_or_else(|_| {
                log::error!("command handler panicked");
                Err(Error::Internal)
            })
        }
    }
}
