//! The collection actor's message handlers: a subscription joins or leaves, the store's
//! feed names changed ids.

use super::*;

impl Handler<Join> for CollectionActor {
    type Result = AtomicResponse<Self, Admission>;

    fn handle(&mut self, join: Join, ctx: &mut Context<Self>) -> Self::Result {
        let answer = |admission| AtomicResponse::new(Box::pin(fut::ready(admission)));
        if self.closing {
            return answer(Admission::Retry);
        }
        self.activity += 1;
        if let Some(error) = self.failed.clone() {
            if let Some(request) = &join.reply_to {
                let frame = match error {
                    Error::Forbidden => frames::refusal(request),
                    _ => protocol::error_frame(request, commands::SUBSCRIBE_COLLECTION, &error),
                };
                let _ = join.outbox.push(frame);
            }
            // Refused: the next join starts over with a fresh listing.
            self.close(ctx);
            return answer(Admission::Refused);
        }
        // Atomic: no batch lands between the listing, the read checks and the snapshot.
        let idle = self.subscribers.is_empty() && !self.loading;
        if idle && self.per_connection.is_none() && !self.fresh {
            return AtomicResponse::new(self.relist_and_admit(join));
        }
        AtomicResponse::new(self.admit(join))
    }
}

impl Handler<Leave> for CollectionActor {
    type Result = bool;

    fn handle(&mut self, leave: Leave, ctx: &mut Context<Self>) -> bool {
        self.activity += 1;
        let was = self.subscribers.remove(&leave.session).is_some();
        if self.subscribers.is_empty() {
            self.linger(ctx);
        }
        was
    }
}

impl Handler<Feed> for CollectionActor {
    type Result = ();

    fn handle(&mut self, feed: Feed, ctx: &mut Context<Self>) {
        match feed {
            Feed::Changed(id) => {
                self.pending.insert(id);
            }
            Feed::Resync => self.resync = true,
        }
        self.start_load(ctx);
    }
}
