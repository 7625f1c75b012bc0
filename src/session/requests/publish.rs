//! `mesh/publish-record-update`: size checked, the write guard through the route, then queued
//! on the record's actor before the next request is read (a client's writes keep their order).

use super::super::SessionActor;
use super::*;

impl SessionActor {
    /// Answers a write refused before it reached the record (too large, not writable, its
    /// guard said no). Counted here; every write that reaches the record is counted by its
    /// actor's `Core`, so each write is counted once, in one of these two places.
    fn refuse_write(&self, id: &Option<Number>, error: Error) {
        // A registry that did not answer refused nothing.
        if !matches!(error, Error::Internal) {
            crate::metrics::metrics().write(crate::metrics::Outcome::Refused);
        }
        self.reply(id, commands::PUBLISH_RECORD_UPDATE, Err(error));
    }

    pub(super) fn publish(
        &mut self,
        id: Option<Number>,
        record_id: RecordId,
        value: Value,
        (strategy, expected_version): (Strategy, Option<u64>),
        ctx: &mut Context<Self>,
    ) {
        let max = self.services.settings.max_value_bytes;
        if self.value_size.exceeds(&value, max) {
            let error = Error::Limit(format!("newValue exceeds {max} bytes"));
            return self.refuse_write(&id, error);
        }
        let permit = self.permit.take();
        let message = ApplyWrite {
            value: Arc::new(value),
            strategy,
            expected_version,
            writer: Some(self.connection.clone()),
            skip_schema: false,
        };
        let request = (id, record_id.clone(), message);
        self.resolve_access(
            &record_id,
            Operation::Write,
            ctx,
            move |act, resolved, ctx| act.publish_resolved(request, resolved, permit, ctx),
        );
    }

    pub(super) fn publish_resolved(
        &mut self,
        (id, record_id, message): (Option<Number>, RecordId, ApplyWrite),
        resolved: Result<Leased, Error>,
        permit: Option<Permit>,
        ctx: &mut Context<Self>,
    ) {
        let leased = match resolved {
            Ok(leased) => leased,
            Err(e) => {
                if matches!(e, Error::Forbidden) {
                    log::debug!(
                        "session {}: write to {:?} refused: not exposed as writable, or its \
                         write guard said no",
                        self.number,
                        record_id.as_str()
                    );
                }
                return self.refuse_write(&id, e);
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
                act.reply(&id, commands::PUBLISH_RECORD_UPDATE, result);
                drop(permit);
            })
            .spawn(ctx);
    }
}
