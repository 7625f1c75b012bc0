//! A connection's metadata changed: its collection subscriptions are checked again (the
//! collection's guard, then each member's read guard) and it is told the difference.

use super::{CollectionActor, Recheck};
use crate::collections::frames;
use crate::collections::visible::Visible;
use crate::model::RecordId;
use crate::protocol::{self, commands};
use actix::prelude::*;
use std::collections::HashSet;

impl Handler<Recheck> for CollectionActor {
    type Result = ();

    fn handle(&mut self, recheck: Recheck, ctx: &mut Context<Self>) {
        let Some(s) = self.subscribers.get(&recheck.session) else {
            return;
        };
        let connection = s.connection.clone();
        let guard = self.guard.clone();
        let id = self.id.clone();
        let members = self.readable(&connection, self.membership.window());
        async move {
            let allowed = match guard {
                Some(guard) => guard.allows(connection, id).await,
                None => true,
            };
            (allowed, members.await)
        }
        .into_actor(self)
        .map(move |(allowed, members), act, ctx| {
            act.rechecked(recheck.session, allowed, members);
            if act.per_connection.is_some() && !act.subscribers.is_empty() {
                // Its members may depend on the metadata too: ask the resolver again.
                act.resync = true;
                act.start_load(ctx);
            }
        })
        .wait(ctx);
    }
}

impl CollectionActor {
    /// Applies a recheck: ends the subscription if the collection's guard now refuses,
    /// else sends the difference between what the subscriber saw and what it may see now.
    fn rechecked(&mut self, session: u64, allowed: bool, members: Vec<RecordId>) {
        let Some(s) = self.subscribers.get_mut(&session) else {
            return;
        };
        if !allowed {
            let payload = serde_json::json!({
                "collectionId": self.id.as_str(),
                "reason": "forbidden",
            });
            let _ = s
                .outbox
                .push(protocol::push_frame(commands::SUBSCRIPTION_ENDED, &payload));
            self.subscribers.remove(&session);
            return;
        }
        let window_len = self.membership.window().len();
        let seen = s.visible.ids(&self.membership);
        let now: HashSet<RecordId> = members.iter().cloned().collect();
        let text =
            |id: &RecordId| frames::member_text(id, self.membership.get(id).map(|m| &*m.value));
        let mut added: Vec<&RecordId> = now.difference(&seen).collect();
        let mut removed: Vec<&RecordId> = seen.difference(&now).collect();
        if added.is_empty() && removed.is_empty() {
            return;
        }
        added.sort();
        removed.sort();
        let added: Vec<String> = added.into_iter().map(text).collect();
        let removed: Vec<String> = removed.into_iter().map(text).collect();
        let added: Vec<&str> = added.iter().map(String::as_str).collect();
        let removed: Vec<&str> = removed.iter().map(String::as_str).collect();
        let max_bytes = self.hub.max_snapshot_bytes();
        let mut ok = true;
        for frame in frames::diffs(&self.id, (&added, &removed), s.version + 1, max_bytes) {
            s.version += 1;
            ok &= s.outbox.push(frame).is_ok();
        }
        s.visible = Visible::from_readable(window_len, members);
        if !ok {
            self.subscribers.remove(&session);
        }
    }
}
