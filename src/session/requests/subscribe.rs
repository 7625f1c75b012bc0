//! `mesh/subscribe-record` and `mesh/unsubscribe-record`: the read guard through the route,
//! then the record actor queues the reply (snapshot or resumed) ahead of any push.

use super::super::SessionActor;
use super::*;

impl SessionActor {
    pub(super) fn subscribe(
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

    pub(super) fn subscribe_resolved(
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

    pub(super) fn finish_subscribe(
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
            ended: OnEnd::Notify(ctx.address().downgrade().recipient()),
            reply_to: request_id.clone(),
            since,
        };
        let addr = leased.addr.downgrade();
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

    pub(super) fn unsubscribe(&mut self, id: Option<Number>, record_id: RecordId) {
        let was_subscribed = match self.subscriptions.remove(&record_id) {
            Some(active) => {
                active.unsubscribe(Unsubscribe {
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
}
