//! A write's or delete's answer, sent straight into the requester's channel.
//!
//! With actix's `ResponseFuture` every write spawned a task that waited for the answer and
//! then forwarded it: one task per write, and the requesting session heard of it one scheduler
//! round after the record actor answered. By then the session's socket writer had already sent
//! the write's update alone, so the acknowledgement took a second socket write. An [`Answer`]
//! is both the actor's reply handle and the handler's response: actix hands it the
//! requester's sender right after the handler returns, and the answer goes into that sender
//! when it is known (or at once, if it already is).

use crate::error::Error;
use actix::dev::{MessageResponse, OneshotSender};
use actix::{Actor, Message};
use std::cell::RefCell;
use std::rc::Rc;

/// The record actor's answer to a write or a delete: the `Result` of its `ApplyWrite`,
/// `UpdateRecord` and `DeleteRecord` handlers. Awaiting `addr.send(..)` gives its value, as
/// with any actix response. (Inside the actor, one handle goes to its queue and the other is
/// the handler's response; see the module docs.)
pub struct Answer<T>(Rc<RefCell<Slot<T>>>);

/// Where an answer stands. Dropped while a requester waits (the actor went away with the
/// request in flight), it answers [`Error::Unknown`]: the request may have been applied.
struct Slot<T> {
    state: State<T>,
}

enum State<T> {
    /// Neither the answer nor the requester's sender yet.
    Waiting,
    /// Answered before actix handed over the sender.
    Known(Result<T, Error>),
    /// The requester's sender, waiting for the answer.
    To(OneshotSender<Result<T, Error>>),
    /// Answered, or nobody waits (`do_send`).
    Done,
}

impl<T> Answer<T> {
    /// An answer to be given later through [`Answer::send`].
    pub(crate) fn pending() -> Self {
        Answer(Rc::new(RefCell::new(Slot {
            state: State::Waiting,
        })))
    }

    /// An answer known already.
    pub(crate) fn ready(result: Result<T, Error>) -> Self {
        Answer(Rc::new(RefCell::new(Slot {
            state: State::Known(result),
        })))
    }

    /// The handle to keep while the answer is worked out (the other one is the response).
    pub(crate) fn keep(&self) -> Self {
        Answer(Rc::clone(&self.0))
    }

    /// Gives the answer; a requester that stopped waiting is no error.
    pub(crate) fn send(self, result: Result<T, Error>) {
        let mut slot = self.0.borrow_mut();
        match std::mem::replace(&mut slot.state, State::Done) {
            State::To(to) => drop(to.send(result)),
            State::Waiting => slot.state = State::Known(result),
            State::Known(_) | State::Done => {}
        }
    }
}

impl<T> Drop for Slot<T> {
    fn drop(&mut self) {
        if let State::To(to) = std::mem::replace(&mut self.state, State::Done) {
            drop(to.send(Err(Error::Unknown)));
        }
    }
}

impl<A, M, T> MessageResponse<A, M> for Answer<T>
where
    A: Actor,
    M: Message<Result = Result<T, Error>>,
    T: 'static,
{
    fn handle(self, _: &mut A::Context, to: Option<OneshotSender<Result<T, Error>>>) {
        let mut slot = self.0.borrow_mut();
        let Some(to) = to else {
            slot.state = State::Done;
            return;
        };
        match std::mem::replace(&mut slot.state, State::Done) {
            State::Known(result) => drop(to.send(result)),
            State::Waiting => slot.state = State::To(to),
            State::To(_) | State::Done => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    struct Probe;
    impl Actor for Probe {
        type Context = actix::Context<Self>;
    }
    struct Ask;
    impl Message for Ask {
        type Result = Result<u32, Error>;
    }

    /// Hands `answer` the requester's sender, as actix does after the handler returns.
    fn hand_over(answer: Answer<u32>) -> oneshot::Receiver<Result<u32, Error>> {
        let (to, from) = oneshot::channel();
        let mut ctx = actix::Context::<Probe>::new();
        <Answer<u32> as MessageResponse<Probe, Ask>>::handle(answer, &mut ctx, Some(to));
        from
    }

    #[actix::test]
    async fn an_answer_given_after_the_hand_over_reaches_the_requester() {
        let answer = Answer::pending();
        let kept = answer.keep();
        let mut from = hand_over(answer);
        assert!(from.try_recv().is_err());
        kept.send(Ok(7));
        assert_eq!(from.await.unwrap().unwrap(), 7);
    }

    #[actix::test]
    async fn an_answer_known_before_the_hand_over_is_sent_at_once() {
        let answer = Answer::pending();
        answer.keep().send(Ok(3));
        assert_eq!(hand_over(answer).await.unwrap().unwrap(), 3);
        assert_eq!(hand_over(Answer::ready(Ok(4))).await.unwrap().unwrap(), 4);
    }

    #[actix::test]
    async fn an_answer_dropped_unsent_tells_the_requester_the_outcome_is_unknown() {
        let answer = Answer::<u32>::pending();
        let kept = answer.keep();
        let from = hand_over(answer);
        drop(kept);
        assert!(matches!(from.await.unwrap(), Err(Error::Unknown)));
    }
}
