//! Access that changes under a connection. When its metadata changes (a token refresh, the
//! metadata hook, app code), each subscription's read guard runs again with the new metadata,
//! and a subscription no longer allowed ends with a `mesh/subscription-ended` push: guards
//! that ran only at subscribe time would let a connection keep what it may no longer read.

use super::SessionActor;
use crate::access::{Decision, Operation};
use crate::actors::record::Unsubscribe;
use crate::model::RecordId;
use crate::protocol::{self, commands};
use actix::prelude::*;
use serde_json::json;

/// A subscription to check: its record and the token that names this subscription of it.
type Checked = (RecordId, u64);

impl SessionActor {
    /// Runs the read guards of every subscription again if the metadata changed since they
    /// last ran. Called after every request that can change metadata, and on each ping.
    /// One pass runs at a time: a client that refreshes faster than its guards answer gets
    /// one more pass when the current one ends, not a pile of them.
    pub(super) fn recheck_access(&mut self, ctx: &mut Context<Self>) {
        let changes = self.connection.metadata_changes();
        if changes == self.access_checked_at || self.rechecking {
            return;
        }
        self.access_checked_at = changes;
        for addr in self.collections.values() {
            addr.do_send(crate::collections::actor::Recheck {
                session: self.number,
            });
        }
        let subscriptions = self
            .subscriptions
            .iter()
            .map(|(id, active)| (id.clone(), active.token))
            .collect();
        self.check_read_access(subscriptions, ctx);
    }

    /// Ends those of `subscriptions` whose read guard (run now, with the current metadata)
    /// refuses them.
    pub(super) fn check_read_access(
        &mut self,
        subscriptions: Vec<Checked>,
        ctx: &mut Context<Self>,
    ) {
        let route = self.services.records.route();
        let mut refused = Vec::new();
        let mut guarded = Vec::new();
        for (id, token) in subscriptions {
            match route.decide(&id, Operation::Read) {
                Decision::Allowed => {}
                Decision::NotExposed => refused.push((id, token)),
                Decision::Guarded(guard) => guarded.push((id, token, guard)),
            }
        }
        self.end_refused(refused);
        if guarded.is_empty() {
            return;
        }
        let connection = self.connection.clone();
        self.rechecking = true;
        async move {
            let mut refused = Vec::new();
            for (id, token, guard) in guarded {
                if !guard.allows(connection.clone(), id.clone()).await {
                    refused.push((id, token));
                }
            }
            refused
        }
        .into_actor(self)
        .map(|refused, act, ctx| {
            act.rechecking = false;
            act.end_refused(refused);
            // Metadata that changed meanwhile gets its own pass.
            act.recheck_access(ctx);
        })
        .spawn(ctx);
    }

    /// Ends each subscription still current (same token); the record actor pushes the notice
    /// after removing it, so no update of that record follows it.
    fn end_refused(&mut self, refused: Vec<Checked>) {
        for (id, token) in refused {
            if self.subscriptions.get(&id).is_none_or(|a| a.token != token) {
                continue;
            }
            let Some(active) = self.subscriptions.remove(&id) else {
                continue;
            };
            crate::metrics::metrics().guard_denials.inc();
            let notice = protocol::push_frame(
                commands::SUBSCRIPTION_ENDED,
                &json!({ "recordId": id.as_str(), "reason": "forbidden" }),
            );
            active.unsubscribe(Unsubscribe {
                session: self.number,
                farewell: Some(notice),
            });
        }
    }
}
