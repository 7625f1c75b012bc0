//! The persistence actor's message handlers: each buffers, flushes or reports, through the
//! actor's own methods.

use super::*;

impl Handler<Persist> for PersistenceActor {
    type Result = ();

    fn handle(&mut self, msg: Persist, ctx: &mut Context<Self>) {
        self.buffer.persist(msg.id, msg.version, msg.value);
        self.report_buffer();
        self.pump(ctx);
    }
}

impl Handler<PersistDeletion> for PersistenceActor {
    type Result = ();

    fn handle(&mut self, msg: PersistDeletion, ctx: &mut Context<Self>) {
        self.buffer.delete(msg.id, msg.version);
        self.report_buffer();
        self.pump(ctx);
    }
}

impl Handler<ConfirmWhenLanded<Persist>> for PersistenceActor {
    type Result = ();

    fn handle(&mut self, msg: ConfirmWhenLanded<Persist>, ctx: &mut Context<Self>) {
        let Persist { id, version, value } = msg.message;
        self.buffer.persist(id.clone(), version, value);
        self.wait_for(id, msg.landed);
        self.report_buffer();
        self.pump(ctx);
    }
}

impl Handler<ConfirmWhenLanded<PersistDeletion>> for PersistenceActor {
    type Result = ();

    fn handle(&mut self, msg: ConfirmWhenLanded<PersistDeletion>, ctx: &mut Context<Self>) {
        let PersistDeletion { id, version } = msg.message;
        self.buffer.delete(id.clone(), version);
        self.wait_for(id, msg.landed);
        self.report_buffer();
        self.pump(ctx);
    }
}

impl Handler<Flush> for PersistenceActor {
    type Result = ResponseFuture<Result<usize, PersistenceError>>;

    fn handle(&mut self, _msg: Flush, ctx: &mut Context<Self>) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        self.flush_waiters.push(reply);
        self.pump(ctx);
        Box::pin(async move { answer.await.unwrap_or(Err(PersistenceError::Stopped)) })
    }
}

impl Handler<Shutdown> for PersistenceActor {
    type Result = ResponseFuture<Result<usize, PersistenceError>>;

    fn handle(&mut self, _msg: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        match &mut self.stopping {
            Some(stopping) => stopping.replies.push(reply),
            None => {
                self.stopping = Some(Stopping {
                    replies: vec![reply],
                    failures: 0,
                    landed: 0,
                });
                // The final flush does not wait out a backoff from before.
                self.retry_at = None;
            }
        }
        self.pump(ctx);
        Box::pin(async move { answer.await.unwrap_or(Err(PersistenceError::Stopped)) })
    }
}

impl Handler<Abandon> for PersistenceActor {
    type Result = usize;

    fn handle(&mut self, _msg: Abandon, ctx: &mut Context<Self>) -> usize {
        let lost = self.report_loss();
        // Stopping drops the flush in flight (and with it the hung database call).
        ctx.stop();
        lost
    }
}

impl Handler<GetStatus> for PersistenceActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _msg: GetStatus, _ctx: &mut Context<Self>) -> Self::Result {
        MessageResult(PersistenceStatus {
            buffered: self.buffer.len(),
            in_flight: self.in_flight,
            consecutive_failures: self.failures,
            failing_since: self.failing_since,
            rows_landed: self.rows_landed,
        })
    }
}
