//! `mesh/set-my-connection-metadata`: the app's metadata hook decides; the subscriptions'
//! read guards run again with the new metadata.

use super::super::SessionActor;
use super::*;

impl SessionActor {
    pub(super) fn set_metadata(
        &mut self,
        id: Option<Number>,
        payload: Value,
        ctx: &mut Context<Self>,
    ) {
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
}
