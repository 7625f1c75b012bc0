//! Custom commands the embedding app registered (`Commands`): the handler's answer is the
//! reply; it may change the connection's metadata, so read guards run again.

use super::super::SessionActor;
use super::*;

impl SessionActor {
    pub(super) fn custom_command(
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
