//! The queue as text frames, one at a time, for a subscriber inside the server (no socket):
//! [`Records::subscribe_record`](crate::Records::subscribe_record). Bytes are counted off as
//! frames are taken, as the socket's drain does, so the budget and the stale-marking of a slow
//! consumer work the same; where the socket's drain signals its session that a congested queue
//! has drained, this one raises a flag its owner reads.

use super::{OutboxReceiver, Outgoing};
use crate::model::Frame;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

/// See the module docs.
#[derive(Debug)]
pub struct TextDrain {
    receiver: OutboxReceiver,
    low_water: usize,
    drained: bool,
}

impl OutboxReceiver {
    /// This queue's text frames, for an in-server subscriber.
    pub fn into_texts(self) -> TextDrain {
        TextDrain {
            low_water: self.shared.budget / 4,
            receiver: self,
            drained: false,
        }
    }
}

impl TextDrain {
    /// The next text frame; `Ready(None)` once the queue is closed (nothing follows).
    pub fn poll_text(&mut self, cx: &mut Context<'_>) -> Poll<Option<Frame>> {
        loop {
            return match self.receiver.poll_recv(cx) {
                Poll::Ready(Outgoing::Text(frame)) => {
                    self.count_off(frame.len());
                    Poll::Ready(Some(frame))
                }
                // No client to answer.
                Poll::Ready(Outgoing::Pong(_)) => continue,
                Poll::Ready(Outgoing::Close(_)) => {
                    self.receiver.finish();
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            };
        }
    }

    /// Whether a congested queue has drained since the last call: the records marked stale
    /// meanwhile need their full value.
    pub fn take_drained(&mut self) -> bool {
        std::mem::take(&mut self.drained)
    }

    /// Whether the queue is down to a quarter of its budget.
    pub fn is_low(&self) -> bool {
        self.receiver.shared.queued_bytes.load(Ordering::Acquire) <= self.low_water
    }

    fn count_off(&mut self, bytes: usize) {
        let shared = &self.receiver.shared;
        let left = shared.queued_bytes.fetch_sub(bytes, Ordering::AcqRel) - bytes;
        if left <= self.low_water
            && shared.congested.load(Ordering::Acquire)
            && !shared.drained_sent.swap(true, Ordering::AcqRel)
        {
            self.drained = true;
        }
    }
}
